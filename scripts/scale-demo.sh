#!/usr/bin/env bash
# The scale-out demo: a local redis-server, two registries, two `regcopy worker`s and a plan run through
# them (`regcopy sync PLAN --redis URL`), then every image verified with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/scale_demo.py "$@"
