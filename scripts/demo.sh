#!/usr/bin/env bash
# The demo: two local registries, a generated sample set pushed by skopeo, copied by regcopy, verified.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
