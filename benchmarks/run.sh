#!/usr/bin/env bash
# make bench: read availability during a tenant move (runbook warm / cold / naive) -> docs/benchmarks.md
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export ANSIBLE_COLLECTIONS_PATH="$repo/.collections"
export ANSIBLE_PYTHON_INTERPRETER="$repo/.venv/bin/python"
export PYTHONPATH="$repo:$repo/.collections${PYTHONPATH:+:$PYTHONPATH}"
exec "$repo/.venv/bin/python" benchmarks/bench.py "$@"
