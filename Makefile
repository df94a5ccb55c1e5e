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

test: $(STAMP)
	scripts/ensure-services.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything but the tests that start processes (Celery workers, beat, flower, the demo, the CLI, python -c).
test-fast: $(STAMP)
	scripts/ensure-services.sh
	$(BIN)/pytest -m "not subprocess" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check reactivation celery_app tests bench alembic
	$(BIN)/mypy

bench: $(STAMP)
	scripts/ensure-services.sh
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
