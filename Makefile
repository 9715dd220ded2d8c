# `make run` serves the API; `make test` runs the suite. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-perf lint format test-pg test-motor superuser bench loadtest fuzz clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	DEBUG=$${DEBUG:-1} $(PY) -m devstack

superuser: $(STAMP)
	DEBUG=$${DEBUG:-1} $(PY) manage.py createsuperuser

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	DEBUG=1 $(PY) -m pytest

# The wall-clock checks (`perf` marker) that `make test` skips: run them on a quiet machine.
test-perf: $(STAMP)
	DEBUG=1 $(PY) -m pytest -m perf

# The suite against the local PostgreSQL (CI runs this too).
test-pg: $(STAMP)
	DEBUG=1 DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/enrollment} \
		$(PY) -m pytest --create-db

# The MongoDB-layer tests under the Motor driver.
test-motor: $(STAMP)
	DEBUG=1 MONGO_DRIVER=motor $(PY) -m pytest tests/mongo tests/courses

# The performance ladder (bench/README.md): starts its own stack (stand-in unless
# MONGODB_URI is set) and writes bench/results/<timestamp>.{json,md,png}.
# BENCH_QUICK=1: ~2 minute smoke run; BENCH_PROFILE=1: py-spy the enroll and floor rungs.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) db.sqlite3 .standin-data.bson

# Headless locust run against a stack it starts itself (stand-in unless MONGODB_URI is set),
# then checks zero failures and the docs/api.md guarantees; see loadtest/run.py for the knobs
# (LOADTEST_USERS, LOADTEST_DURATION, LOADTEST_SCENARIO, WEB_CONCURRENCY, ...).
LOADTEST_STAMP := $(VENV)/.installed-loadtest

$(LOADTEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(LOADTEST_STAMP)

loadtest: $(LOADTEST_STAMP)
	$(PY) loadtest/run.py

# Schemathesis against /api/schema/ on a real server it starts (stand-in, temp SQLite),
# anonymous, as a user and as an admin; fails on any 5xx or schema mismatch.
FUZZ_STAMP := $(VENV)/.installed-fuzz

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	$(PY) -m tests.reliability.fuzz $(FUZZ_ARGS)
