"""A sync probes its destination registries while it lists its sources (``SyncStores.warm_up``), against
real registries: the destination is probed once for the whole run, and a destination that does not answer
fails the run exactly as it did without the warm-up (the listing reports it)."""

from __future__ import annotations

import socket
from typing import Any

from conftest import Seeder, make_client  # type: ignore[import-not-found]
from regcopy.context import LocalStores, SyncStores
from regcopy.sync import SyncOptions, SyncPlan, parse_plan
from servers.registry import RegistryServer


def _plan(src: RegistryServer, target: str) -> SyncPlan:
    return parse_plan({"version": 1, "sync": [{"source": f"{src.host}/lib/app", "target": target}]})


def _probes(server: RegistryServer) -> int:
    return sum(1 for e in server.access_log() if e.method == "GET" and e.path == "/v2/")


async def test_destination_probed_once_and_synced(registry_factory: Any, seed: Seeder) -> None:
    src, dst = registry_factory("http"), registry_factory("http")
    digest = seed(src, "shared-a", "lib/app", "v1")
    plan = _plan(src, f"{dst.host}/mirror/app")
    async with make_client(src, dst) as client:
        report = await client.sync(plan, options=SyncOptions())
    assert report.ok and [(i.status, i.target_digest) for i in report.images] == [("copied", digest)]
    dst.wait_for_access(lambda e: e.method == "PUT" and "/manifests/" in e.path)
    assert _probes(dst) == 1  # the warm-up's probe served the listing and the copy


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens there


async def test_a_dead_destination_is_reported_by_the_run_not_the_warm_up(registry_factory: Any,
                                                                           seed: Seeder) -> None:
    src = registry_factory("http")
    seed(src, "shared-a", "lib/app", "v1")
    plan = _plan(src, f"127.0.0.1:{_closed_port()}/mirror/app")
    async with make_client(src) as client:
        await SyncStores(client.context(), LocalStores()).warm_up(plan)  # no raise
        report = await client.sync(plan, options=SyncOptions())
    assert not report.ok and report.errors
    assert "127.0.0.1" in " ".join(report.errors) and not [i for i in report.images if i.status == "copied"]
