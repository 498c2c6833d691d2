"""Sync's exact-mirror option ``delete_extra`` against a real registry with deletes enabled: target tags no
entry selected are deleted (docs/architecture.md#bulk-sync-sync)."""

from __future__ import annotations

from typing import Any

import pytest

import regcopy
from conftest import make_client, settings_for  # type: ignore[import-not-found]
from regcopy.sync import SyncOptions, parse_plan
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer


def _plan(src_host: str, dst: RegistryServer, delete_extra: object) -> Any:
    return parse_plan({"registries": {src_host: {"tls": "http"}, dst.host: {"tls": "http"}}, "sync": [
        {"name": "apps", "source": f"{src_host}/apps/a", "target": f"{dst.host}/m/a",
         "tags": {"allow": ["v.*"]}, "delete_extra": delete_extra}]})


@pytest.fixture
def mirrored(http_registry: RegistryServer, delete_registry: RegistryServer, seed: Any) -> RegistryServer:
    """Source apps/a: v1, v2. Destination m/a: v1 plus extras: old1, old2 (v1's digest), keep-1 (protected),
    old3 and old4 (each its own digest)."""
    seed(http_registry, "shared-a", "apps/a", "v1")
    seed(http_registry, "shared-b", "apps/a", "v2")
    dst = delete_registry
    seed(dst, "shared-a", "m/a", "v1")
    seed(dst, "oci", "m/a", "old1")
    seed(dst, "shared-a", "m/a", "old2")
    seed(dst, "docker", "m/a", "keep-1")
    seed(dst, "multi", "m/a", "old3")
    seed(dst, "nested", "m/a", "old4")
    return dst


async def test_dry_run_reports_extras_and_deletes_nothing(
    http_registry: RegistryServer, mirrored: RegistryServer
) -> None:
    before = skopeo.list_tags(mirrored, "m/a")
    async with make_client(http_registry, mirrored) as client:
        report = await client.sync(_plan(http_registry.host, mirrored, {"protect": ["keep-.*"]}),
                                   options=SyncOptions(dry_run=True))
    assert report.deletions is not None and report.deletions.dry_run
    [repo] = report.deletions.repositories
    assert sorted(d.tag for d in repo.would_delete) == ["old1", "old3", "old4"]
    kept = {d.tag: d.reason for d in repo.kept}
    assert "v1" in kept["old2"] and "keep-1" in kept
    assert report.extra_tags == 3
    assert skopeo.list_tags(mirrored, "m/a") == before
    assert not [e for e in mirrored.access_log() if e.method == "DELETE"]


async def test_real_run_deletes_extras_within_the_cap_and_keeps_shared_and_protected(
    http_registry: RegistryServer, mirrored: RegistryServer
) -> None:
    async with make_client(http_registry, mirrored) as client:
        report = await client.sync(_plan(http_registry.host, mirrored, {"protect": ["keep-.*"], "cap": 2}),
                                   options=SyncOptions())
    assert report.ok, (report.errors, report.deletions and report.deletions.to_json())
    assert report.deletions is not None
    [repo] = report.deletions.repositories
    assert len(repo.manifests_deleted) == 2 and len(repo.skipped) == 1  # the cap held one back
    remaining = skopeo.list_tags(mirrored, "m/a")
    assert {"v1", "v2", "old2", "keep-1"} <= set(remaining)
    assert len(set(remaining) & {"old1", "old3", "old4"}) == 1
    skopeo.verify(mirrored, "m/a:v1")  # the digest old2 shared with v1 is intact
    skopeo.verify(mirrored, "m/a:v2")
    # Without a cap the last extra goes too, and a second run finds nothing left to delete.
    async with make_client(http_registry, mirrored) as client:
        again = await client.sync(_plan(http_registry.host, mirrored, {"protect": ["keep-.*"]}),
                                  options=SyncOptions())
        assert again.ok and again.extra_tags == 1
        third = await client.sync(_plan(http_registry.host, mirrored, True), options=SyncOptions())
    assert third.ok and third.extra_tags == 1  # keep-1, no longer protected
    assert sorted(skopeo.list_tags(mirrored, "m/a")) == ["old2", "v1", "v2"]


async def test_an_unlistable_source_deletes_nothing(http_registry: RegistryServer, mirrored: RegistryServer) -> None:
    before = skopeo.list_tags(mirrored, "m/a")
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/tags/list", status=500, times=-1))
        settings = settings_for(http_registry, mirrored, retries=0)
        settings[proxy.host] = settings[http_registry.host]
        async with make_client(http_registry, mirrored, settings=settings) as client:
            report = await client.sync(_plan(proxy.host, mirrored, True), options=SyncOptions())
    assert not report.ok and report.deletions is not None
    assert any("discovery failed" in e for e in report.deletions.errors)
    assert skopeo.list_tags(mirrored, "m/a") == before


def test_delete_extra_has_a_default_cap() -> None:
    """An exact mirror deletes at most DEFAULT_DELETE_EXTRA_CAP manifests per entry and run unless the plan
    says otherwise (the enforcement of a cap: test_real_run_deletes_extras_within_the_cap_...)."""
    from regcopy.sync.model import DEFAULT_DELETE_EXTRA_CAP

    def cap(value: object) -> object:
        plan = parse_plan({"sync": [{"source": "a.example/x", "target": "b.example/x", "delete_extra": value}]})
        assert plan.entries[0].delete_extra is not None
        return plan.entries[0].delete_extra.cap

    assert DEFAULT_DELETE_EXTRA_CAP == 100
    assert cap(True) == cap({"protect": ["keep-.*"]}) == 100
    assert cap({"cap": 5}) == 5 and cap({"cap": None}) is None


def test_delete_extra_is_validated() -> None:
    for value, message in [("yes", "must be true, false or a mapping"), ({"cap": 0}, "cap"),
                           ({"protect": ["("]}, "protect"), ({"nope": 1}, "nope")]:
        with pytest.raises(regcopy.ConfigError, match=message):
            parse_plan({"sync": [{"source": "a.example/x", "target": "b.example/x", "delete_extra": value}]})
    with pytest.raises(regcopy.ConfigError, match="registry target"):
        parse_plan({"sync": [{"source": "a.example/x", "target": "oci:/tmp/x", "delete_extra": True}]})
