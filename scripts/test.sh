#!/usr/bin/env bash
# The test command: installs what it needs, then lint, types and the suite.
#   bash scripts/test.sh            ruff, mypy --strict, and every test not marked slow (about 10 minutes)
#   bash scripts/test.sh --slow     only the tests marked slow (scale, soak, long fault runs)
#   bash scripts/test.sh ARGS...    ruff, mypy, then pytest with ARGS instead of the default selection
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--slow" ]; then
  shift
  echo "== pytest -m slow"
  .venv/bin/pytest -q -m slow "$@" || [ $? -eq 5 ]  # 5: none marked slow yet
  exit 0
fi
echo "== ruff" && .venv/bin/ruff check src tests benchmarks examples
echo "== mypy --strict src" && .venv/bin/mypy
if [ "$#" -eq 0 ]; then
  set -- -m "not slow"
fi
echo "== pytest" && .venv/bin/pytest -q "$@"
