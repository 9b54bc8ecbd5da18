# One entry point for dev tasks; the README names the same commands. Every target builds what it
# needs first (scripts/setup: system packages, .venv with torch's CPU build first, constraints.txt),
# and that set-up returns at once when nothing changed.
#
#   make up      run the whole farm (http://127.0.0.1:8000), embedded Postgres and Redis included
#   make test    lint, types, the docs, the whole suite on Python 3.11, and the unit suite plus a
#                `jobyard up` smoke on Python 3.12
#
# Knobs: PYTHON (the interpreter the venv is made from), TORCH_SPEC (e.g. TORCH_SPEC='torch==2.13.0'
# for the CPU build, the default; TORCH_SPEC=torch for PyPI's CUDA build on a GPU machine),
# PY312 (the second interpreter; found with pyenv when not on PATH), PYTEST_ARGS, PYTEST_WORKERS.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= test,embeddings,docs
BIN := $(VENV)/bin
# The second supported Python: on PATH, else pyenv's.
PY312 ?= $(shell command -v python3.12 >/dev/null 2>&1 && python3.12 -c 1 2>/dev/null && echo python3.12 \
	|| ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
VENV312 ?= .venv-3.12
PYTEST_ARGS ?=
# Test processes side by side (pytest-xdist, a test file's tests in one process); 1 runs them in one.
PYTEST_WORKERS ?= 2

.PHONY: setup setup-system up test lint typecheck docs docs-serve pytest test-py312 bench constraints

## The virtualenv; Chromium when it can be installed (scrape jobs need it).
setup:
	@scripts/setup --python '$(PYTHON)' --venv '$(VENV)' --torch '$(TORCH_SPEC)' --extras '$(EXTRAS)' --system optional

## The same, and the system packages the tests need are required (installed as root, else the command to run).
setup-system:
	@scripts/setup --python '$(PYTHON)' --venv '$(VENV)' --torch '$(TORCH_SPEC)' --extras '$(EXTRAS)' --system required

## The whole farm until Ctrl-C: API, workers, scheduler, embedded Postgres and Redis under .jobyard/.
up: setup
	$(BIN)/jobyard up

## Everything CI checks: lint (ruff, the import layers), types, the docs, then the whole test suite
## (unit, integration, e2e) on Python 3.11, then the unit suite and a `jobyard up` smoke on Python 3.12.
test: setup-system lint typecheck docs pytest test-py312

lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/import-cycles core control_api workers

typecheck: setup
	$(BIN)/python -m mypy

## The docs site, strictly: a broken link or a page missing from the nav fails.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8001

# Each run gets a temporary directory of its own: in pytest's shared /tmp/pytest-of-<user>, another
# run on the same machine may remove this one's (and the embedded Postgres inside it) mid-run. Kept
# when the run fails, for its logs.
RUN_PYTEST = tmp=$$(mktemp -d /tmp/jobyard-pytest.XXXXXX); \
	if $(1) -m pytest --basetemp=$$tmp $(2); then rm -rf $$tmp; \
	else echo "pytest: the run's files are in $$tmp" >&2; exit 1; fi

# The 20 slowest tests are listed at the end: the suite's time is watched (well under 25 minutes).
pytest: setup
	@$(call RUN_PYTEST,$(BIN)/python,-n $(PYTEST_WORKERS) --dist loadfile --durations=20 $(PYTEST_ARGS))

## Python 3.12 in a venv of its own, without torch (PyPI has only CUDA builds of it for 3.12): the
## unit suite and `jobyard up` end to end. The 3.11 run above covers the rest.
test-py312:
	@if [ -z "$(PY312)" ]; then \
		echo "test-py312: no Python 3.12 found (set PY312=/path/to/python3.12)" >&2; \
		if [ "$${CI:-}" = true ]; then exit 1; fi; \
		echo "test-py312: SKIPPED outside CI" >&2; exit 0; fi
	@scripts/setup --python '$(PY312)' --venv '$(VENV312)' --no-torch --extras test-base --system skip
	@$(call RUN_PYTEST,$(VENV312)/bin/python,tests/unit tests/e2e/test_up.py $(PYTEST_ARGS))

## Jobyard side by side with bare Dramatiq, Celery, procrastinate, PgQueuer, Oban and arq (needs wrk:
## apt-get install wrk). Oban (Python >= 3.12) and arq (redis-py < 6) go in .venv-peers, made with the
## second Python when there is one; without it the report names them as not run.
bench: EXTRAS := $(EXTRAS),bench
bench: setup
	@if [ -n "$(PY312)" ]; then \
		[ -x .venv-peers/bin/python ] || $(PY312) -m venv .venv-peers; \
		.venv-peers/bin/pip install -q 'oban>=0.7' 'arq>=0.26'; \
	else echo "bench: no Python 3.12 for .venv-peers: Oban and arq will not run" >&2; fi
	$(BIN)/python -m bench

## Freeze the venv of a green run into constraints.txt (torch stays out: TORCH_SPEC decides it).
constraints: setup
	scripts/freeze-constraints $(BIN)/python
