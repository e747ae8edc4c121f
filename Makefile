# skewless: setup, tests, lint, demo, benchmarks and the tools' UIs.
# `make setup && make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DO_NOT_TRACK := 1
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: setup postgres chromium java wrk lock test fuzz lint format bench demo airflow mlflow serve clean

setup: $(BIN)/skewless postgres chromium java

# PostgreSQL server binaries (Debian's package) for tests/dbt/test_postgres.py, the second dbt
# engine. Installed once when missing; without root or apt the test fails with this hint.
postgres:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null; then :; \
	else sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends postgresql \
	  || echo "warning: could not install postgresql (apt-get install postgresql): tests/dbt/test_postgres.py will fail"; fi

# A Java runtime (Debian's openjdk-17-jre-headless) for pyspark: tests/dbt/test_spark.py builds
# the dbt models on Spark. Installed once when missing; without root or apt the test fails with
# this hint.
java:
	@if command -v java >/dev/null; then :; \
	else sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless \
	  || echo "warning: could not install java (apt-get install openjdk-17-jre-headless): tests/dbt/test_spark.py will fail"; fi

# Debian's chromium and its chromedriver for tests/monitoring/test_skew_browser.py, which renders the
# skew report's page in a real headless browser. Installed once when missing (~50 s with apt-get
# update); without root or apt the test fails with this hint.
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver \
	  || echo "warning: could not install chromium (apt-get install chromium chromium-driver): tests/monitoring/test_skew_browser.py will fail"; fi

# uv installs the pinned set in seconds (plain pip takes ~1.5 minutes); it comes from PyPI too.
# Bytecode is compiled at install: this environment sets PYTHONDONTWRITEBYTECODE, and without .pyc
# files every dbt, feast and airflow process would recompile its imports (~2x slower start).
$(BIN)/skewless: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(BIN)/skewless

lock:
	$(BIN)/uv pip compile --python-version 3.11 requirements.in -o requirements.txt

test: setup
	$(BIN)/pytest

# The property tests with random generation (tests/properties.py): FUZZ_SCALE x each test's
# examples, from SEED (printed; pass SEED=... to replay a run). Failures are kept in var/hypothesis.
FUZZ_SCALE ?= 10
fuzz: setup
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "make fuzz: seed $$seed, scale $(FUZZ_SCALE) (replay with make fuzz SEED=$$seed)"; \
	HYPOTHESIS_PROFILE=fuzz SKEWLESS_FUZZ_SCALE=$(FUZZ_SCALE) \
	  $(BIN)/pytest -m hypothesis --hypothesis-seed=$$seed --hypothesis-show-statistics -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/skewless dbtgen --check

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: setup
	$(BIN)/skewless demo --fresh

# Airflow UI on http://127.0.0.1:8080 (user admin, password admin); Ctrl-C stops it.
airflow: setup
	$(BIN)/skewless airflow standalone

# MLflow UI on http://127.0.0.1:5000 over var/mlflow; Ctrl-C stops it.
mlflow: setup
	$(BIN)/skewless mlflow-ui

# The sidecar under gunicorn on http://127.0.0.1:8000 (serving/README.md); Ctrl-C stops it.
# e.g. make serve SERVE_ARGS="--mode exact --port 8001"
serve: setup
	$(BIN)/skewless serve $(SERVE_ARGS)

# Every benchmark by default (bench/README.md); one with e.g. `make bench BENCH=sidecar`, and its
# options with BENCH_ARGS="--duration 30".
BENCH ?= features sidecar quality hot_entity skew
bench: setup wrk
	for name in $(BENCH); do $(BIN)/python -m bench.$$name $(BENCH_ARGS) || exit 1; done

# Debian's wrk, the outside HTTP client bench.sidecar cross-checks its own load generator with.
# Installed once when missing; without root or apt the wrk phase is skipped and says so.
wrk:
	@if command -v wrk >/dev/null; then :; \
	else sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends wrk \
	  || echo "warning: could not install wrk (apt-get install wrk): bench.sidecar skips its wrk runs"; fi

clean:
	rm -rf var dbt_project/target dbt_project/logs
