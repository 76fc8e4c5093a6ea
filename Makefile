# Every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip

.PHONY: help venv install install-local lint typecheck test test-unit test-local demo record bench clean

help:
	@echo "make demo        start the embedded local endpoint and run examples/quickstart.py against it"
	@echo "make test        lint, type-check and run the offline test suite"
	@echo "make test-local  run the live suites against the embedded local endpoint (real models)"
	@echo "make record      re-record the cassettes against the embedded local endpoint"
	@echo "make bench       run the benchmarks"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps make re-installs cheap: they are redone only when pyproject.toml changes.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[test,lint]"
	@touch $@

venv install: $(VENV)/.installed-test

lint: install
	$(BIN)/ruff check langchain_servingx tests benchmarks examples
	$(BIN)/ruff format --check langchain_servingx tests benchmarks examples

typecheck: install
	$(BIN)/mypy

test-unit: install
	$(BIN)/pytest -q

test: lint typecheck test-unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
