#!/usr/bin/env bash
# Run one pytest suite: scripts/run-pytest-suite.sh DIR [pytest args...]
# A suite that does not exist yet, or collects no tests (pytest exit 5), is reported and skipped;
# every other non-zero exit fails the run.
set -euo pipefail

suite="$1"
shift
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if [[ ! -d "$suite" ]] || [[ -z "$(find "$suite" \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit)" ]]; then
    echo "== $suite: no test files yet, skipped"
    exit 0
fi

echo "== $suite: pytest $*"
status=0
.venv/bin/python -m pytest "$suite" "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "== $suite: no tests collected, skipped"
    exit 0
fi
exit $status
