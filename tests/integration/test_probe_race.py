"""A registry on a port-less address (``127.x.y.z`` → :80) whose https port (:443) accepts connections
and never answers, as a firewall that drops packets or a wedged proxy does (docs/protocol.md#the-probe).

Other clients try https first and hang until a timeout (go-containerregistry before pingParallel in
pkg/v1/remote/transport/ping.go, skopeo's sequential fallback, buildah). regcopy races both probes and
must answer over http within a second. The time bound here is the behaviour under test (a hang versus
no hang), not a benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import regcopy
from conftest import free_loopback_address, make_client  # type: ignore[import-not-found]
from servers.blackhole import Blackhole
from servers.registry import RegistryServer


@pytest.fixture
def portless(registry_factory: Any) -> Iterator[tuple[RegistryServer, Blackhole, str]]:
    addr = free_loopback_address()
    with Blackhole(addr, 443) as hole:
        registry = registry_factory("http", bind_host=addr, port=80)
        yield registry, hole, addr


async def test_ping_and_a_real_copy_succeed_over_http_within_a_second(
    portless: tuple[RegistryServer, Blackhole, str], http_registry: RegistryServer, seed: Any
) -> None:
    registry, hole, addr = portless
    digest = seed(http_registry, "oci", "src/app")
    async with make_client(http_registry) as client:
        started = time.monotonic()
        result = await client.ping(addr)  # the name has no port: https means :443, http means :80
        elapsed = time.monotonic() - started
        assert result.scheme == "http"
        assert elapsed < 1.0, f"probe took {elapsed:.2f}s"
        https = next(p for p in result.probes if p.scheme == "https")
        assert https.status is None  # never answered: cancelled when the grace window closed
        assert hole.accepted >= 1  # the https probe really did reach the black hole

        started = time.monotonic()
        copied = await client.copy(f"{http_registry.host}/src/app:oci", f"{addr}/dst/app:v1")
        assert copied.digest == digest
        assert await client.tags(f"{addr}/dst/app") == ["v1"]
        assert time.monotonic() - started < 1.0
    assert any(e.method == "PUT" and e.route == "/v2/dst/app/manifests/v1" for e in registry.access_log())


def test_cli_ping_answers_within_a_second(portless: tuple[RegistryServer, Blackhole, str], tmp_path: Path) -> None:
    _, hole, addr = portless
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "regcopy", "ping", addr, "-o", "json", "--authfile", str(auth)],
                         capture_output=True, text=True, timeout=60, check=False)
    wall = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["scheme"] == "http"
    http = next(p for p in data["probes"] if p["scheme"] == "http")
    https = next(p for p in data["probes"] if p["scheme"] == "https")
    assert http["status"] == 200 and https["status"] is None
    # Interpreter start-up is included in the wall time; the probe itself is well under a second.
    assert http["seconds"] < 0.5 and wall < 3.0
    assert hole.accepted >= 1


async def test_the_same_name_with_https_policy_hangs_until_the_probe_timeout(
    portless: tuple[RegistryServer, Blackhole, str],
) -> None:
    # The contrast that shows why the race matters: https only means waiting for the timeout.
    _, hole, addr = portless
    settings = {addr: regcopy.RegistrySettings(scheme="https", probe_timeout=1.5)}
    async with regcopy.Client(settings=settings) as client:
        started = time.monotonic()
        with pytest.raises(regcopy.TransportError, match="timed out"):
            await client.ping(addr)
        assert time.monotonic() - started >= 1.4
    # A timed-out probe is tried exactly once more (each try costs a whole probe_timeout).
    assert hole.accepted == 2

