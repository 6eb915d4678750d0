# The two set-up commands: `make demo` and `make test`. Both create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_BASE := $(VENV)/.installed-base
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test test-fast lint format clean bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_BASE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[train,dev,cohort,review,pandas]"
	touch $@ $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(BIN)/glomkit demo -o demo_out

test: $(STAMP_DEV)
	$(BIN)/python -m pytest -p no:cacheprovider tests

# the fast lane: every test not marked slow (under a minute on 2 cores); `make test` runs them all
test-fast: $(STAMP_DEV)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not slow" tests

lint: $(STAMP_DEV)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP_DEV)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf demo_out .pytest_cache build dist src/*.egg-info
