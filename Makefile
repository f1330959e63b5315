# The two commands from the README are `make demo` and `make test`; everything else here serves them.
# Only Python 3.11, git and make are assumed: the virtual environment is built from the lock file.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= data/demo
export USERNAME ?= $(or $(USER),stockcast)
export METAFLOW_CLIENT_CACHE_PATH ?= $(CURDIR)/.metaflow_client_cache
export BENTOML_DO_NOT_TRACK ?= True

.PHONY: install demo test lint format lock bench bench-features bench-training clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"stockcast needs Python 3.11, found {sys.version}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## demo: the main job end to end on embedded defaults (generated data, local Metaflow datastore).
demo: install
	$(BIN)/stockcast-generate --out $(DEMO_DIR)
	$(BIN)/python flows/ingest.py run --prices $(DEMO_DIR)/stock_price.csv --financials $(DEMO_DIR)/financial_info.csv
	$(BIN)/python flows/train.py run --max-workers 4

## test: lint, format check and the whole test suite (starts its own S3 server on 127.0.0.1).
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## lock: re-resolve requirements.lock from pyproject.toml (needs network access to the package index).
lock:
	$(PYTHON) -m pip install --quiet uv && $(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

## bench: every benchmark; copy their sections (also written to bench/results/) into BENCHMARKS.md.
bench: bench-features bench-training

bench-features: install
	$(BIN)/python bench/features.py

bench-training: install
	$(BIN)/python bench/training.py --runs 3 --max-workers 4

clean:
	rm -rf $(VENV) .metaflow .metaflow_client_cache data/demo catboost_info .pytest_cache .ruff_cache
