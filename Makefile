# Developer entry points. `make test` is what CI runs (through .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV         := .venv
PYTHON       ?= 3.11
SERVICES     := bash deployments/local/services.sh
DAGSTER_HOME := $(CURDIR)/.derive/dagster_home
PYTEST_ARGS  ?=

# uv from PATH, or installed with pip on first use. PIP_BREAK_SYSTEM_PACKAGES lets pip install it on a
# Debian python3 marked "externally managed" (older pips ignore the variable); `python3 -m uv` also works
# when pip put the binary in a directory that is not on PATH (e.g. ~/.local/bin).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: help venv demo dev services lint test clean

help:
	@echo "make venv      create .venv and install derive[test] (no-op when pyproject.toml is unchanged)"
	@echo "make demo      generate sample data and materialize every asset"
	@echo "make dev       run 'dagster dev' on workspace.yaml"
	@echo "make services  install (if needed) and start PostgreSQL, MariaDB, the BigQuery emulator, FerretDB and Cassandra for the tests"
	@echo "make lint      ruff check, ruff format --check, pyright"
	@echo "make test      venv + services + lint + pytest (what CI runs)"
	@echo "make clean     remove .derive (generated data, Dagster home)"

venv: $(VENV)/.installed

# The stamp is newer than pyproject.toml once the install succeeded; a changed pyproject.toml reinstalls.
$(VENV)/.installed: pyproject.toml
	@echo "==> installing derive[test] into $(VENV)"
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
		PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q uv
	@# Create the venv only once: re-creating it would throw away every installed package.
	@[ -x $(VENV)/bin/python ] || $(UV) venv -q $(VENV) --python $(PYTHON)
	@# --compile-bytecode: the machine sets PYTHONDONTWRITEBYTECODE, so without it every run compiles again.
	@$(UV) pip install -q --python $(VENV)/bin/python --compile-bytecode -e '.[test]'
	@touch $@

# The local instance: dagster.yaml of the repository (telemetry off, run monitoring on); refreshed when it changes.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(@D)
	@cp dagster.yaml $@

demo: venv $(DAGSTER_HOME)/dagster.yaml
	@echo "==> derive pools, derive demo (DAGSTER_HOME=$(DAGSTER_HOME))"
	DAGSTER_HOME=$(DAGSTER_HOME) $(VENV)/bin/derive pools
	DAGSTER_HOME=$(DAGSTER_HOME) $(VENV)/bin/derive demo

dev: venv $(DAGSTER_HOME)/dagster.yaml
	@echo "==> derive pools, dagster dev (DAGSTER_HOME=$(DAGSTER_HOME))"
	@# The concurrency pools' limits (sources' max_concurrent_extractions, tables) into the instance first.
	DAGSTER_HOME=$(DAGSTER_HOME) $(VENV)/bin/derive pools
	DAGSTER_HOME=$(DAGSTER_HOME) $(VENV)/bin/dagster dev -w workspace.yaml

services:
	@echo "==> installing and starting services (PostgreSQL, MariaDB, BigQuery emulator, FerretDB, Cassandra)"
	@$(SERVICES) install start

lint: venv
	@echo "==> ruff check"
	@$(VENV)/bin/ruff check .
	@echo "==> ruff format --check"
	@$(VENV)/bin/ruff format --check .
	@echo "==> pyright"
	@$(VENV)/bin/pyright

# Lint runs as a sub-make (not a prerequisite) so it always runs after venv and services, even under -j.
test: venv services
	@$(MAKE) --no-print-directory lint
	@echo "==> pytest"
	@# --durations: every CI log lists the slowest tests, to keep the suite well under its time limit.
	@eval "$$($(SERVICES) env)" && $(VENV)/bin/pytest -p no:cacheprovider --durations=30 $(PYTEST_ARGS)

clean:
	@echo "==> removing .derive"
	rm -rf .derive
