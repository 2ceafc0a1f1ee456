# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format test-fast test-faults clean loadtest

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## run: set everything up and start all services (Ctrl-C stops them)
run: $(STAMP)
	$(BIN)/relief up

## test: lint, type-check and the test suite against real PostgreSQL and Redis
##       (the slow fault tests run separately: make test-faults)
test: lint
	$(BIN)/python -m pytest -m "not faults"

## test-faults: kill workers, relays, Redis and PostgreSQL under load; reconcile (~5 min)
test-faults: $(STAMP)
	$(BIN)/python -m pytest -m faults

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## test-fast: the suite without the end-to-end tests that start processes
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not faults"

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## loadtest: locust against the platform: SHAPE=daily|sweep|spike [SPEED=100] [HEADLESS=1|0];
##           starts `relief up` (per-IP limits raised) unless LOADTEST_HOST names a running one;
##           reports in runs/loadtest/<timestamp>-<shape>/, web UI on :8089 with HEADLESS=0
loadtest: $(STAMP)
	RELIEF_RATE_LOGIN_PER_IP=$${RELIEF_RATE_LOGIN_PER_IP:-100000/minute} \
	RELIEF_RATE_SUBMIT_PER_IP=$${RELIEF_RATE_SUBMIT_PER_IP:-1000000/hour} \
	$(BIN)/python -m loadtests.run --shape $(or $(SHAPE),daily) --speed $(or $(SPEED),100) \
		--headless $(or $(HEADLESS),1)

## clean: remove the virtualenv and the embedded servers' state
clean:
	-$(BIN)/python -c "from shared.embedded import EmbeddedPostgres as P, EmbeddedRedis as R; from pathlib import Path; [s(Path('.relief')).stop() for s in (P, R)]" 2>/dev/null
	rm -rf $(VENV) .relief .pytest_cache .mypy_cache .ruff_cache
