# Every target runs inside the project's virtualenv at .venv/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# The native stack's owner role runs the migrations (`allocation prepare`) and creates the tests'
# throwaway databases; the service's role (DATABASE_URL) owns nothing. Defaulted only with
# DATABASE_URL unset: for another database, say which role migrates it.
ifeq ($(origin DATABASE_URL),undefined)
export MIGRATION_DATABASE_URL ?= postgresql://allocation_owner:allocation_owner@127.0.0.1:5432/allocation
endif

.PHONY: help venv stack-up stack-down stack-status lint typecheck test test-unit test-security run bench bench-quick bench-retention bench-scaleout chaos chaos-cluster clean \
	observability-check observe observe-down prometheus-installed asyncapi-validate

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project with its dev extras

stack-up:  ## start Kafka, the schema registry and PostgreSQL natively (idempotent)
	@bash stack/stack.sh up

stack-down:  ## stop the native stack; leaves no process behind
	@bash stack/stack.sh down

stack-status:  ## show what the native stack is running
	@bash stack/stack.sh status

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check allocation tests bench testkit
	$(BIN)/ruff format --check allocation tests bench testkit

typecheck: $(STAMP)  ## mypy --strict on allocation/, bench/ and testkit/
	$(BIN)/mypy

test-unit: $(STAMP)  ## unit tests only (no server needed)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

test: $(STAMP) lint typecheck stack-up  ## the README's test command: lint, types, then every test on the real stack
	$(BIN)/pytest $(PYTEST_ARGS)

test-security: $(STAMP)  ## e2e tests on a secured stack of their own (SASL_SSL, ACLs, TLS; ~2 min)
	STACK_SECURITY_TESTS=on $(BIN)/pytest tests/e2e/test_security.py $(PYTEST_ARGS)

run: $(STAMP) stack-up  ## the main job: stack up, then `allocation prepare` (migrate, topics, schemas) and `allocation run`
	$(BIN)/allocation prepare
	$(BIN)/allocation run

bench: $(STAMP) stack-up  ## every benchmark figure (median of 3 runs) -> bench/results/ (~10 min)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP) stack-up  ## the same figures at small sizes (2-3 minutes)
	$(BIN)/python -m bench --quick --out bench/results/tmp/quick.json

bench-scaleout: $(STAMP) stack-up  ## N = 1, 2, 3 consumers, each CPU-capped (cgroup v1, root), on 12 partitions (~6 min)
	$(BIN)/python -m bench --only scaleout --out bench/results/scaleout.json $(BENCH_ARGS)

bench-retention: $(STAMP) stack-up  ## pruning 2 M expired inbox and outbox rows: chained deletes vs partitions (~3 min)
	$(BIN)/python -m bench.retention $(BENCH_ARGS)

chaos: $(STAMP) stack-up  ## fault-injection scenarios at full scale (20 s outages, 10-min soak), table at the end
	CHAOS_SIZE=full $(BIN)/pytest tests/e2e/test_chaos.py tests/e2e/test_chaos_half_failures.py tests/integration/test_api_fuzz.py --timeout 1800 $(PYTEST_ARGS)

.PHONY: chaos-cluster
chaos-cluster: $(STAMP)  ## the cluster topology (3 brokers, Patroni) of its own, under node faults (~5 min)
	STACK_TOPOLOGY_TESTS=cluster $(BIN)/pytest tests/e2e/test_cluster.py --timeout 900 $(PYTEST_ARGS)

# Debian's prometheus package brings promtool and /usr/bin/prometheus; no recommends (a node
# exporter). Quick when both are there; needs root (as CI runs) the first time.
prometheus-installed:
	@command -v promtool >/dev/null && test -x /usr/bin/prometheus || { \
		echo "installing Debian's prometheus (promtool, prometheus)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

observability-check: prometheus-installed  ## promtool: the Prometheus config, the alert rules and their unit tests
	promtool check config observability/prometheus.yml
	promtool check rules observability/rules.yml
	promtool test rules observability/rules_test.yml

observe: prometheus-installed  ## Prometheus on 127.0.0.1:9090 scraping `make run`'s processes (natively)
	@bash observability/observe.sh up

observe-down:  ## stop the Prometheus of make observe
	@bash observability/observe.sh down

# The AsyncAPI CLI, pinned by tools/asyncapi/package-lock.json, installed there (not globally).
ASYNCAPI := tools/asyncapi/node_modules/.bin/asyncapi
$(ASYNCAPI): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	npm ci --prefix tools/asyncapi --no-audit --no-fund --loglevel=error
	touch $(ASYNCAPI)

asyncapi-validate: $(ASYNCAPI)  ## validate asyncapi.yaml (and the .avsc files it references) with the AsyncAPI CLI
	ASYNCAPI_METRICS_CONFIG_PATH=$(CURDIR)/tools/asyncapi/analytics.json $(ASYNCAPI) validate asyncapi.yaml

clean:  ## remove caches (keeps .venv and the stack's downloads)
	rm -rf .pytest_cache .mypy_cache .ruff_cache
