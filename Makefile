# neonops.storage: build, lint and test machinery. `make test` on a fresh clone needs nothing else.
# Targets: deps lint typecheck tooling unit sanity ansible-lint test-neonsim test-integration molecule test demo bench
#          chaos build clean distclean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# `test` chains its steps in order and stops at the first failure, even under `make -j`.
.NOTPARALLEL:

VENV := .venv
PYTHON := $(CURDIR)/$(VENV)/bin/python
# The collection is importable as ansible_collections.neonops.storage from this tree (a symlink, made by deps).
COLLECTIONS := $(CURDIR)/.collections

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# Interpreter discovery picks a broken pyenv shim on our machines; tools that start Ansible use the venv.
export ANSIBLE_PYTHON_INTERPRETER ?= $(PYTHON)
export ANSIBLE_NOCOLOR ?= 1
export PY_COLORS ?= 0

# Fleet-starting suites run on two workers; one worker per test file so module-scoped fleets start once.
XDIST ?= -n 2 --dist loadfile
PYTEST_ARGS ?=
SANITY_ARGS ?=

.PHONY: deps lint typecheck tooling unit sanity ansible-lint test-neonsim test-integration molecule test demo bench chaos \
	build clean distclean

deps:
	@scripts/deps.sh

lint: deps
	ruff check .
	ruff format --check .
	antsibull-changelog lint

# mypy over neonsim and plugins/module_utils (files and options in pyproject.toml): a stale type import or a
# call that no longer fits fails.
typecheck: deps
	mypy

# Tests of this tooling (collection installer, suite runner).
tooling: deps
	@scripts/run-pytest-suite.sh scripts/tests -q -p no:cacheprovider $(PYTEST_ARGS)

unit: deps
	@PYTHONPATH=$(COLLECTIONS) scripts/run-pytest-suite.sh tests/unit -q $(PYTEST_ARGS)

sanity: deps
	@scripts/sanity.sh $(SANITY_ARGS)

ansible-lint: deps
	ansible-lint

test-neonsim: deps
	@PYTHONPATH=$(CURDIR) scripts/run-pytest-suite.sh tests/neonsim -q $(XDIST) $(PYTEST_ARGS)

test-integration: deps
	@PYTHONPATH=$(CURDIR):$(COLLECTIONS) scripts/run-pytest-suite.sh tests/integration -q $(XDIST) $(PYTEST_ARGS)

molecule: deps
	@scripts/molecule.sh

test: deps lint typecheck tooling unit sanity ansible-lint test-neonsim test-integration molecule
	@echo "make test: all steps passed"

# The main job on the local simulated fleet; the migration runbook provides scripts/demo.sh.
demo: deps
	@if [[ -x scripts/demo.sh ]]; then scripts/demo.sh; \
	elif [[ -f scripts/demo.sh ]]; then bash scripts/demo.sh; \
	else echo "make demo: the demo arrives with the migration runbook issue (scripts/demo.sh); nothing to run yet"; fi

bench: deps
	@if [[ -f benchmarks/run.sh ]]; then bash benchmarks/run.sh; \
	else echo "make bench: no benchmarks yet (benchmarks/run.sh)"; fi

# The randomized fault campaign (tests/chaos/campaign.py, docs/reliability.md): ITERATIONS seeded iterations from
# SEED (random when empty), JOBS fleets at once. A failing iteration prints its one-line reproduction.
SEED ?=
ITERATIONS ?= 20
JOBS ?= 2
CHAOS_ARGS ?=
chaos: deps
	@PYTHONPATH=$(CURDIR):$(COLLECTIONS) $(PYTHON) -m tests.chaos.campaign $(if $(SEED),--seed $(SEED)) \
		--iterations $(ITERATIONS) --jobs $(JOBS) $(CHAOS_ARGS)

# The release artifact; galaxy.yml build_ignore keeps the dev environment, neonsim and its suites out.
build: deps
	@rm -rf build/artifact && mkdir -p build/artifact
	ansible-galaxy collection build --force --output-path build/artifact .

clean:
	rm -rf build tests/output reports .pytest_cache .ruff_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Also drops the venv and the installed dependency collections (the neonops/storage link is recreated by deps).
distclean: clean
	rm -rf $(VENV) .collections
