#!/usr/bin/env bash
# Installs what regcopy's demo and tests need on a Debian machine; idempotent and quiet when done.
#  - apt: docker-registry (CNCF distribution 2.8.2, the real registry the tests run),
#         skopeo (the independent client that seeds and verifies), apache2-utils (htpasswd),
#         iproute2 (network namespaces in the probe-race tests), redis-server (the scale-out queue and ledger),
#         podman and umoci (independent consumers of archives and OCI layouts in the interop tests)
#  - a virtualenv in .venv with regcopy installed editable plus its test and scale extras
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg_bin in docker-registry:docker-registry skopeo:skopeo apache2-utils:htpasswd iproute2:ip time:/usr/bin/time redis-server:redis-server podman:podman umoci:umoci; do
  command -v "${pkg_bin#*:}" >/dev/null 2>&1 || need+=("${pkg_bin%%:*}")
done
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]} with apt-get" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.regcopy-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[test,scale]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import regcopy, aiohttp, trustme, jwt, hypothesis, boto3, dramatiq, redis, pyte, zstandard" 
  touch "$stamp"
fi
