#!/usr/bin/env bash
# The test command: installs what it needs, then lint, types and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff" && .venv/bin/ruff check src tests benchmarks examples
echo "== mypy --strict src" && .venv/bin/mypy
echo "== pytest" && .venv/bin/pytest -q "$@"
