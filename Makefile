# Everything a newcomer needs. `make run` and `make test` install what they need into .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CHECKOV_VENV := .venv-checkov
# The SageMaker image's pins hold here too (as constraints, extras stripped, as pip wants them), so the
# suite runs the versions the image ships. Re-install when either file changes.
PINS := mlserver/sagemaker/requirements.txt
CONSTRAINTS := $(VENV)/constraints.txt
DEPS_HASH := $(shell cat pyproject.toml $(PINS) | sha1sum | cut -c1-12)
RUN_STAMP := $(VENV)/.run-$(DEPS_HASH)
TEST_STAMP := $(VENV)/.test-$(DEPS_HASH)
CHECKOV_VERSION := 3.3.30
PYTEST_ARGS ?= -n 4

.PHONY: run test lint fmt typecheck clean install install-test system-deps checkov previews bench soak

# rembg imports pymatting, whose numba kernels compile on first import (about 40 s) and are cached beside
# them: compile once at install, not in the first product upload (or the first test that cuts one out).
WARM_CUTOUT = $(PY) -c 'import rembg'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip

$(RUN_STAMP): $(VENV)/bin/python pyproject.toml $(PINS)
	sed 's/\[[^]]*\]//' $(PINS) > $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[cutout]'
	$(WARM_CUTOUT)
	@rm -f $(VENV)/.run-* && touch $@

# torch: the CPU build, installed before the `lora` extra so pip never picks a CUDA build.
$(TEST_STAMP): $(RUN_STAMP)
	$(PIP) install -q 'torch==2.13.0'
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,lora,cutout]'
	$(WARM_CUTOUT)
	@rm -f $(VENV)/.test-* && touch $@

install: $(RUN_STAMP)
install-test: $(TEST_STAMP) checkov system-deps

# checkov pins old boto3/botocore: it lives in its own venv.
$(CHECKOV_VENV)/bin/checkov:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
checkov: $(CHECKOV_VENV)/bin/checkov

# The browser tests drive Debian's chromium; systemd-analyze verifies the units; wrk loads the API in bench/.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium chromium-driver"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	  else echo "install these Debian packages first: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

## run: the whole stack on the embedded defaults (emulator 8188/8189, template sandbox 8190, API 8000, dispatcher, UI 8501). Ctrl-C stops it.
run: $(RUN_STAMP)
	@mkdir -p var
	@$(PY) -m backend.devstack check
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho -f Procfile start

## test: lint, format and types first (`make lint`), then the full suite (SQLite and PostgreSQL, emulator,
## browser, AWS tools). CI runs exactly this.
test: install-test lint
	$(PY) -m pytest $(PYTEST_ARGS)

## previews: render each style's preview image through the running stack (start it with `make run` first)
previews: $(RUN_STAMP)
	$(PY) -m loras.render_previews --backend-url $${BACKEND_URL:-http://127.0.0.1:8000} --token $${STUDIO_TOKEN:-studio-demo-token}

## soak: thousands of jobs through the real processes under production's faults (processes, PostgreSQL server, storage); lost/duplicated must be 0. SOAK_ARGS="--database postgresql --storage s3" for the other pair
SOAK_ARGS ?= --jobs 2000
soak: $(TEST_STAMP)
	$(PY) -m bench.soak $(SOAK_ARGS)

## bench: the benchmarks against the emulator: prints a table, writes bench/results/<time>.json
bench: $(TEST_STAMP)
	$(PY) -m bench

## lint: what pre-commit checks at each commit (.pre-commit-config.yaml), over the whole tree
lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/cfn-lint

fmt: $(TEST_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(TEST_STAMP)
	$(VENV)/bin/mypy

clean:
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
