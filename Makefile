# The two commands: `make demo` (embedded default, no servers) and `make test` (whole suite on real services).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/reactivation demo

# The layers contract first: an import that breaks a layer fails the run at once (CI runs `make test`).
test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	scripts/ensure-services.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything but the tests that start processes (Celery workers, beat, flower, the demo, the CLI, python -c).
test-fast: $(STAMP)
	scripts/ensure-services.sh
	$(BIN)/pytest -m "not subprocess" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check reactivation celery_app tests bench alembic
	$(BIN)/ruff format --check reactivation celery_app tests bench alembic
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: $(STAMP)
	scripts/ensure-services.sh
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
