# `make run` serves the API; `make test` runs the suite. Both install what they need.
# `make help` lists the targets (the `## ` text after each target).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install lock run manage test test-perf lint format test-pg test-motor superuser bench bench-jobs loadtest fuzz clean

help: ## List the targets
	@grep -E '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | \
		awk -F '\t' '{ printf "  make %-11s %s\n", $$1, $$2 }'

# Pinned, hashed dependencies (requirements/*.lock, from pyproject.toml by `make lock`).
LOCK_DEV := requirements/dev.lock
LOCK_PROD := requirements/prod.lock

$(STAMP): pyproject.toml $(LOCK_DEV)
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK_DEV)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the locked dependencies (requirements/dev.lock)

# uv resolves for every platform (--universal) and records every file's hash.
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--generate-hashes --quiet

lock: ## Re-resolve requirements/{prod,dev}.lock after changing pyproject.toml dependencies
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'uv>=0.5,<1'
	$(UV_COMPILE) -o $(LOCK_PROD)
	$(UV_COMPILE) --extra dev -o $(LOCK_DEV)

# `exec`: python replaces the shell, so make's SIGTERM reaches the launcher, which stops
# the whole stack (devstack/__main__.py). PORT=8765 serves on another port.
run: $(STAMP) ## Serve the API on :8000 with the stand-in, migrated and seeded (Ctrl-C stops all)
	DEBUG=$${DEBUG:-1} exec $(PY) -m devstack

manage: $(STAMP) ## manage.py ARGS="..." against the running `make run` stack (.devstack.env)
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py $(ARGS)

# Without a terminal (CI, scripts) createsuperuser runs with --noinput and reads
# DJANGO_SUPERUSER_USERNAME, DJANGO_SUPERUSER_EMAIL and DJANGO_SUPERUSER_PASSWORD.
superuser: $(STAMP) ## Create an admin (no terminal: from DJANGO_SUPERUSER_* variables)
	@if [ -t 0 ]; then \
		DEBUG=$${DEBUG:-1} exec $(PY) manage.py createsuperuser; \
	else \
		echo "superuser: no terminal; createsuperuser --noinput from DJANGO_SUPERUSER_USERNAME," \
			"DJANGO_SUPERUSER_EMAIL, DJANGO_SUPERUSER_PASSWORD"; \
		DEBUG=$${DEBUG:-1} exec $(PY) manage.py createsuperuser --noinput; \
	fi

lint: $(STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## Fix lint findings and format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint ## Lint, then the whole suite (SQLite, the stand-in)
	DEBUG=1 $(PY) -m pytest

# The wall-clock checks (`perf` marker) that `make test` skips: run them on a quiet machine.
test-perf: $(STAMP) ## The wall-clock checks (perf marker) that `make test` skips
	DEBUG=1 $(PY) -m pytest -m perf

# The suite against the local PostgreSQL (CI runs this too).
test-pg: $(STAMP) ## The suite against the local PostgreSQL
	DEBUG=1 DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/enrollment} \
		$(PY) -m pytest --create-db

# The MongoDB-layer tests under the Motor driver.
test-motor: $(STAMP) ## The MongoDB-layer tests under the Motor driver
	DEBUG=1 MONGO_DRIVER=motor $(PY) -m pytest tests/mongo tests/courses

# The performance ladder (bench/README.md): starts its own stack (stand-in unless
# MONGODB_URI is set) and writes bench/results/<timestamp>.{json,md,png}.
# BENCH_QUICK=1: ~2 minute smoke run; BENCH_PROFILE=1: py-spy the enroll and floor rungs.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(VENV)/bin/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## The performance ladder (bench/README.md); BENCH_QUICK=1: ~2 min
	$(PY) -m bench

# Assignment jobs: a 100,000-user CSV job by user_id, then by email (BENCH_JOB_SIZES="100000
# 1000000" adds the million; BENCH_JOB_IDENTIFIERS=user_id keeps to ids).
BENCH_JOB_SIZES ?= 100000
BENCH_JOB_IDENTIFIERS ?= user_id email
bench-jobs: $(STAMP) ## Assignment-job throughput (bench/jobs.py): users created, jobs timed
	$(PY) -m bench.jobs --sizes $(BENCH_JOB_SIZES) --identifier $(BENCH_JOB_IDENTIFIERS)

clean: ## Remove .venv, the dev databases and the stand-in's data file
	rm -rf $(VENV) db.sqlite3 .standin-data.bson .standin-data.bson.lock

# Headless locust run against a stack it starts itself (stand-in unless MONGODB_URI is set),
# then checks zero failures and the docs/api.md guarantees; see loadtest/run.py for the knobs
# (LOADTEST_USERS, LOADTEST_DURATION, LOADTEST_SCENARIO, WEB_CONCURRENCY, ...).
LOADTEST_STAMP := $(VENV)/.installed-loadtest

$(LOADTEST_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(LOADTEST_STAMP)

loadtest: $(LOADTEST_STAMP) ## Headless locust run against its own stack, then invariant checks
	$(PY) loadtest/run.py

# Schemathesis against /api/schema/ on a real server it starts (stand-in, temp SQLite),
# anonymous, as a user and as an admin; fails on any 5xx or schema mismatch.
FUZZ_STAMP := $(VENV)/.installed-fuzz

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP) ## Schemathesis against a real server from /api/schema/
	$(PY) -m tests.reliability.fuzz $(FUZZ_ARGS)
