# The allocation service's image: `allocation` is the entrypoint, so the command picks the process
# (run, consumer, relay, api, prepare, ...). docker-compose.kafka.yml's `service` profile uses it:
#   docker compose -f docker-compose.kafka.yml --profile service up
# Settings come from the environment as everywhere (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL,
# DATABASE_URL, ...; see allocation/config.py). Only `prepare` needs MIGRATION_DATABASE_URL, the
# database owner's URL: the service's role owns nothing and cannot migrate.

# --- builder: the project's wheel and its dependencies' wheels -------------------------------
FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY allocation ./allocation
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheels installed, no compiler, no sources, a user without privileges -------
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin allocation
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels allocation \
    && rm -rf /wheels
USER allocation
WORKDIR /home/allocation
# The API must listen beyond the container's loopback to be published.
ENV API_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
ENTRYPOINT ["allocation"]
CMD ["run"]
