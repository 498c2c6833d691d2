"""Cancelling ``client.sync`` at many points: never a tag on a partial image, every upload
session regcopy opened is committed or DELETEd, no task left running, and a re-run finishes the job."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

from conftest import make_client  # type: ignore[import-not-found]
from regcopy.sync import SyncOptions, parse_plan
from servers import skopeo
from servers.registry import RegistryServer

IMAGES = [("shared-a", "apps/a"), ("shared-b", "apps/b"), ("multi", "apps/multi"), ("big", "apps/big")]
DELAYS = [0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.35, 0.6]


async def test_sync_cancelled_at_many_points_leaves_only_complete_images(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    digests = {repo: seed(http_registry, sample, repo, "v1") for sample, repo in IMAGES}
    dst = registry_factory("http")
    uploads_root = dst.root / "docker" / "registry" / "v2" / "repositories"
    outcomes = []
    for i, delay in enumerate(DELAYS):
        plan = parse_plan({"sync": [{"source": f"{http_registry.host}/apps", "type": "namespace",
                                     "target": f"{dst.host}/m{i}"}]})
        async with make_client(http_registry, dst) as client:
            with anyio.move_on_after(delay) as scope:
                await client.sync(plan, options=SyncOptions(images=2, blob_jobs=2))
        outcomes.append(scope.cancelled_caught)
        for _, repo in IMAGES:
            target = f"m{i}/{repo.split('/', 1)[1]}"
            if (uploads_root / target / "_manifests" / "tags" / "v1").exists():
                skopeo.verify(dst, f"{target}:v1", digests[repo])  # a tag only on a complete image
            for session in (uploads_root / target / "_uploads").glob("*"):
                if (session / "startedat").exists():  # open: regcopy tried to close it (see test_copy.py)
                    delete = dst.wait_for_access(lambda e, name=session.name: e.method == "DELETE" and name in e.path)
                    assert delete.status == 404, (delay, session.name)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        assert pending == [], (delay, pending)
        if scope.cancelled_caught:  # the interrupted mirror finishes on a re-run
            async with make_client(http_registry, dst) as client:
                again = await client.sync(plan, options=SyncOptions())
            assert again.ok and len(again.images) == len(IMAGES), again.to_json()
            for _, repo in IMAGES:
                skopeo.verify(dst, f"m{i}/{repo.split('/', 1)[1]}:v1", digests[repo])
    assert True in outcomes  # the schedule did interrupt runs
