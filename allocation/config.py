"""One typed settings object, read from the environment once and passed in.

Every field maps to the upper-case environment variable of the same name
(``database_url`` <- ``DATABASE_URL``). Defaults are the ones of the design
contract, so a developer machine with ``make stack-up`` needs no variable at all.

Secrets can come from files instead (``<NAME>_FILE``), and librdkafka properties the
settings do not name pass through as ``KAFKA_CONFIG_<PROPERTY>`` (``settings_sources``).
No secret is shown by ``repr(settings)``: secrets are ``SecretStr`` and the
password of DATABASE_URL is masked.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from allocation.settings_sources import (
    DEFAULT_DATABASE_URL,
    ConfigurationError,
    FromFilesAndPassThrough,
    check_pass_through,
    mask_password,
    masked_property,
    sqlalchemy_form,
)

__all__ = ["ConfigurationError", "Settings", "load_settings", "mask_password", "settings_from"]

logger = logging.getLogger(__name__)

# Variables renamed, old -> new; the old name still works, with a warning.
RENAMED = {"CONSUMER_BATCH_SIZE": "CONSUMER_POLL_SIZE", "RELAY_BATCH_SIZE": "RELAY_CHUNK_SIZE"}


class Settings(BaseSettings):
    """Every setting of the service; see the README's Configuration section."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (librdkafka's security.protocol).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None  # PEM file of the CA(s) that signed the brokers
    # librdkafka properties passed through as they are (KAFKA_CONFIG_<PROPERTY>).
    kafka_config: dict[str, str] = Field(default_factory=dict)
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    # HTTP basic auth to the registry, Confluent's convention: "user:password".
    schema_registry_basic_auth_user_info: SecretStr | None = None
    schema_registry_ca_location: str | None = None  # PEM file to verify an https:// registry
    # TLS to PostgreSQL goes in the URL: ?sslmode=verify-full&sslrootcert=/path/ca.pem
    database_url: str = DEFAULT_DATABASE_URL
    # The role migrations run as (`allocation db upgrade` / `prepare`): the database's owner.
    # Unset, DATABASE_URL's role migrates. Least privilege: the service's role owns nothing.
    migration_database_url: str | None = None

    topic_add_batch: str = "add-batch"
    topic_allocate: str = "allocate"
    topic_batch_quantity: str = "batch-quantity"
    topic_line_allocated: str = "line-allocated"
    topic_line_deallocated: str = "line-deallocated"
    topic_out_of_stock: str = "out-of-stock"
    topic_command_rejected: str = "command-rejected"
    topic_dlq: str = "allocation-dlq"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    consumer_group: str = "allocation"
    # How many messages one poll takes, applied in one transaction.
    consumer_poll_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        validation_alias=AliasChoices("consumer_poll_size", "consumer_batch_size"),
    )
    # Static group membership: a consumer restarted with the same id gets its
    # partitions back at once instead of waiting out a rebalance.
    consumer_instance_id: str | None = None
    # "consumer": KIP-848's broker-driven rebalances (the broker sets the session timeout);
    # "classic": the older protocol, cooperative-sticky, with the timeout below.
    consumer_group_protocol: Literal["consumer", "classic"] = "consumer"
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # /metrics, /livez and /readyz of each process; 0 serves nothing. Several consumers
    # or relays on one host each need a port of their own.
    consumer_metrics_port: int = Field(default=9101, ge=0, le=65535)
    relay_metrics_port: int = Field(default=9102, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # A log line per request costs ~8% of the API's CPU; http_requests_total counts them anyway.
    api_access_log: bool = False
    # Unset, the API has no authentication; set, every route but /livez, /readyz and
    # /metrics needs `Authorization: Bearer <token>`.
    api_token: SecretStr | None = None

    # How many outbox rows the relay publishes per round trip. From a full outbox 5,000 drained
    # about twice as fast as 1,000 on the 2-core bench machine: fewer waits on the database and
    # the broker per row (the relay's own CPU per row is the same).
    relay_chunk_size: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        validation_alias=AliasChoices("relay_chunk_size", "relay_batch_size"),
    )
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    # How long the consumer waits for the broker to acknowledge a poll's dead letters before
    # it purges them and tries again on a new producer (its offsets stay uncommitted meanwhile).
    dead_letter_ack_timeout_s: float = Field(default=30.0, gt=0, le=300)
    # After a NOTIFY, the relay reads no sooner than this after its previous read began, so
    # that commits arriving close together go out in one read, produce request and mark.
    relay_gather_s: float = Field(default=0.005, ge=0, le=1.0)
    relay_max_attempts: int = Field(default=10, ge=1)
    # First delay before a row the broker refused is tried again; doubles per attempt.
    relay_retry_base_s: float = Field(default=2.0, gt=0)
    # Retention, in the relay's process: a pass every interval, in chunks of rows, for at most
    # pass_s, then pause_s before the next pass while expired rows are left.
    relay_prune_interval_s: float = Field(default=60.0, gt=0)
    retention_chunk_rows: int = Field(default=5_000, ge=1, le=1_000_000)
    retention_pass_s: float = Field(default=5.0, gt=0)
    retention_pause_s: float = Field(default=5.0, ge=0)
    outbox_retention_hours: float = Field(default=24.0 * 7, gt=0)
    inbox_retention_hours: float = Field(default=24.0 * 7, gt=0)
    idempotency_retention_hours: float = Field(default=24.0, gt=0)
    dlq_retention_days: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Traces: "console" prints spans; an OTLP endpoint exports them; neither, no SDK at all.
    otel_traces_exporter: str | None = None
    otel_exporter_otlp_endpoint: str | None = None

    # Optimistic-concurrency conflicts: how many times one unit of work is attempted.
    max_attempts: int = Field(default=5, ge=1)
    # An Allocate read from a topic before its sku has a batch waits this long for the sku's
    # first CreateBatch, then is rejected as InvalidSku; 0: rejected at once. How often the
    # consumer looks for orders whose wait is over.
    unknown_sku_wait_s: float = Field(default=900.0, ge=0)
    waiting_sweep_interval_s: float = Field(default=5.0, gt=0)
    # How long the consumer may fetch nothing from a partition before it compares the
    # partition's end with its stored offset; messages waiting at two such samples in a row
    # replace its Kafka client (entrypoints/starvation.py).
    consumer_starved_after_s: float = Field(default=20.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if getattr(cls, "_values_only", False):  # settings_from(): the environment is not read
            return (init_settings,)
        return (init_settings, FromFilesAndPassThrough(settings_cls), env_settings)

    @field_validator("migration_database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # MIGRATION_DATABASE_URL= (compose files say so): DATABASE_URL's role

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg2://")):
            raise ValueError("must be a postgresql:// URL")  # the URL itself is never echoed
        return value

    @field_validator("kafka_security_protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        value = value.upper()
        if value not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ValueError("must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        return value

    @field_validator("schema_registry_basic_auth_user_info")
    @classmethod
    def _user_colon_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must be user:password")
        return value

    @field_validator("api_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        token = None if value is None else value.get_secret_value()
        if token is not None and (not token or any(c.isspace() for c in token)):
            raise ValueError("must be non-empty, without spaces (unset it: no authentication)")
        return value

    @field_validator("kafka_config")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        check_pass_through(value)
        return value

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in _URLS and isinstance(value, str):
                yield name, mask_password(value)
            elif name == "kafka_config" and isinstance(value, dict):
                yield name, {k: masked_property(k, v) for k, v in value.items()}
            else:
                yield name, value

    def with_prefix(self, prefix: str, **changes: object) -> Settings:
        """A copy whose topics and consumer group are all named ``<prefix>-<name>``.

        Gives a test or a benchmark a world of its own on a shared broker.
        """
        named = {
            field: f"{prefix}-{getattr(self, field)}"
            for field in type(self).model_fields
            if field.startswith("topic_") and isinstance(getattr(self, field), str)
        }
        named["consumer_group"] = f"{prefix}-{self.consumer_group}"
        return self.model_copy(update={**named, **changes})

    @property
    def sqlalchemy_url(self) -> str:
        """DATABASE_URL with the driver SQLAlchemy should use spelled out (``sqlalchemy_form``)."""
        return sqlalchemy_form(self.database_url)

    @property
    def migration_sqlalchemy_url(self) -> str:
        """MIGRATION_DATABASE_URL, or DATABASE_URL when it is unset, for SQLAlchemy."""
        return sqlalchemy_form(self.migration_database_url or self.database_url)

    @property
    def command_topics(self) -> tuple[str, str, str]:
        """The topics the service consumes."""
        return (self.topic_add_batch, self.topic_allocate, self.topic_batch_quantity)

    @property
    def event_topics(self) -> tuple[str, str, str, str]:
        """The topics the relay publishes to."""
        return (
            self.topic_line_allocated,
            self.topic_line_deallocated,
            self.topic_out_of_stock,
            self.topic_command_rejected,
        )

    @property
    def all_topics(self) -> tuple[str, ...]:
        """Every topic of the contract, the DLQ included."""
        return (*self.command_topics, *self.event_topics, self.topic_dlq)


_URLS = ("database_url", "migration_database_url", "schema_registry_url")


class _ExplicitSettings(Settings):
    _values_only: ClassVar[bool] = True


def settings_from(**values: Any) -> Settings:
    """Settings from these values and the defaults alone: the environment is not read."""
    return _ExplicitSettings(**values)


def load_settings() -> Settings:
    """Build the settings from the environment, naming the variable at fault on error."""
    for old, new in RENAMED.items():
        if old in os.environ:
            logger.warning("%s is deprecated and will be removed; set %s instead", old, new)
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
