# One entry point for dev tasks; the README names the same commands.
PYTHON ?= python

.PHONY: test lint typecheck pytest bench

## Everything CI checks: lint, types, then the whole test suite (unit, integration, e2e).
test: lint typecheck pytest

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

pytest:
	$(PYTHON) -m pytest

## Jobyard side by side with bare Dramatiq and Celery (needs the bench extra and wrk); ~5 minutes.
bench:
	$(PYTHON) -m bench
