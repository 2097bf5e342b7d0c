# mlops-workbook: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The newest Python pyproject admits (3.13, 3.12, 3.11: PATH first, then pyenv);
# PYTHON=/path/to/python3.X overrides it. VENV=.venv-3.12 keeps a second environment.
PYTHON ?= $(shell bash tools/find_python.sh)
PY_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV := $(BIN)/uv pip install --python $(BIN)/python --compile-bytecode --quiet --excludes requirements/excludes.txt
STAMP := $(VENV)/.installed-python$(PY_VERSION)
PYTEST_NOTEBOOKS := --nbval --nbval-current-env --nbval-sanitize-with tests/notebooks/sanitize.cfg

export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_LOGGING_LEVEL := WARNING
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export GIT_PYTHON_REFRESH := quiet

.PHONY: help install doctor run lab browser nginx test test-unit test-notebooks test-lab lint format notebooks lock mlflow-server orchestrator bench clean clean-workspace

help: ## list every target
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements/test.lock requirements/excludes.txt pyproject.toml
	@test -n "$(PY_VERSION)" || { echo "error: no Python 3.11, 3.12 or 3.13 found (tools/find_python.sh looked on PATH and in pyenv); install one or pass PYTHON=/path/to/python3.13"; exit 1; }
	@echo "creating $(VENV) with Python $(PY_VERSION): $(PYTHON)"
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) -r requirements/test.lock
	$(UV) --no-deps -e .
	@touch $@

install: $(STAMP) ## create .venv with the newest Python 3.11-3.13 found (PYTHON= overrides), install the lock and the package (idempotent)

doctor: install ## check the set-up: Python, locked versions, kernel, workspace, tracking store, a free port
	$(BIN)/mlops-workbook doctor

run: install nginx ## execute the whole workbook headless and print a summary (ARGS="-p seed 7" to override)
	$(BIN)/mlops-workbook run $(ARGS)

lab: install nginx ## open JupyterLab on the notebooks, kernels started the usual way (LAB_ARGS=--no-browser to open it yourself)
	cd notebooks && ../$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: install browser nginx ## run every test: unit, integration, nbval on every notebook, papermill runs, JupyterLab in a browser
	$(BIN)/pytest -n 2 --dist loadscope --no-loadscope-reorder tests notebooks $(PYTEST_NOTEBOOKS)

test-unit: install nginx ## run the unit tests only (fast; doctor's check of nginx among them)
	$(BIN)/pytest -n 2 tests/unit

test-notebooks: install nginx ## run nbval on the committed notebooks only
	$(BIN)/pytest -n 2 --dist loadscope notebooks $(PYTEST_NOTEBOOKS)

nginx: ## make sure nginx exists for the production endpoint's tests (as root: apt-get install nginx-light)
	@bash tools/ensure_nginx.sh

browser: ## make sure a Chromium exists for the browser test (as root: apt-get install chromium; never a download)
	@bash tools/ensure_browser.sh

test-lab: install browser ## open every notebook in JupyterLab in headless Chromium, Run All, check outputs, save screenshots
	$(BIN)/pytest -p no:xdist tests/lab -v

lint: install ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

notebooks: install ## re-execute the committed notebooks in place (stored outputs nbval compares)
	$(BIN)/mlops-workbook refresh $(NB)

# One lock for Python 3.11 to 3.13: resolved for the oldest, so every pin has wheels for all
# three (numpy 2.5 and scipy 1.18 need 3.12 and are not taken) and nbval's outputs are the same.
lock: install ## re-resolve requirements/test.lock from pyproject.toml (needs the network)
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --no-header --quiet --excludes requirements/excludes.txt -o requirements/test.lock

orchestrator: install ## run the Dagster UI and daemon on 127.0.0.1:3070 with the daily pipeline (instance in the workspace)
	$(BIN)/mlops-workbook orchestrator $(ARGS)

bench: install ## run every benchmark and write benchmarks/RESULTS.md (about 20 minutes on 2 cores)
	$(BIN)/python benchmarks/run_all.py

mlflow-server: install ## run a team MLflow tracking server on 127.0.0.1:5000 (sqlite + served artifacts)
	$(BIN)/mlops-workbook tracking-server --port $(or $(PORT),5000)

clean-workspace: ## delete the workspace (generated data, mlflow.db, artifacts, runs)
	rm -rf workspace

clean: clean-workspace ## delete the workspace, .venv and caches
	rm -rf $(VENV) .venv-3.* .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
