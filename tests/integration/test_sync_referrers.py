"""Sync carries referrers: tag filters keep signatures, no-op re-syncs cost what they did, dry runs
count referrers, delete_extra leaves referrer tags, ``targets:`` fans one source read out to three
registries (one failing uploads)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from referrer_cases import fallback_digests, sign  # type: ignore[import-not-found]

from conftest import make_client  # type: ignore[import-not-found]
from regcopy.sync import SyncOptions, parse_plan
from servers import artifacts as A
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer


def _seed_releases(server: RegistryServer, seed: Any) -> dict[str, Any]:
    signed = {}
    for tag, sample in (("v1.0.0", "docker"), ("v1.1.0", "oci"), ("v2.0.0", "multi")):
        seed(server, sample, "apps/a", tag)
        signed[tag] = sign(server.url, server.host, "apps/a", tag, api=False, name=tag)
    return signed


async def test_a_tag_filtered_sync_keeps_signatures_sboms_and_the_sbom_signatures(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    signed = _seed_releases(http_registry, seed)
    plan = parse_plan({"sync": [{"source": f"{http_registry.host}/apps/a", "target": f"{dst.host}/m/a",
                                 "tags": {"semver": ">=1.1"}}]})
    async with make_client(http_registry, dst) as client:
        report = await client.sync(plan)
    assert report.ok, report.to_json()
    assert sorted(r.target.rsplit(":", 1)[1] for r in report.images) == ["v1.1.0", "v2.0.0"]
    tags = set(A.tags_list(dst.url, "m/a"))
    for tag in ("v1.1.0", "v2.0.0"):
        s = signed[tag]
        assert set(s.tags()) <= tags
        assert fallback_digests(dst.url, "m/a", s.root.digest) == [s.sbom.digest]
        for ref in (tag, *s.tags()):
            skopeo.verify(dst, f"m/a:{ref}")
        skopeo.verify(dst, f"m/a@{s.sbom.digest}", s.sbom.digest)
    old = signed["v1.0.0"]
    assert not set(old.tags()) & tags and A.referrers_tag(old.root.digest) not in tags


async def test_a_no_op_resync_costs_one_probe_more_than_without_referrers(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    _seed_releases(http_registry, seed)
    entry = {"source": f"{http_registry.host}/apps/a", "target": f"{dst.host}/m/a"}
    async with make_client(http_registry, dst) as client:
        assert (await client.sync(parse_plan({"sync": [entry]}))).ok
    counts = {}
    for referrers in (True, False):
        before_src, before_dst = len(http_registry.access_log()), len(dst.access_log())
        async with make_client(http_registry, dst) as client:
            report = await client.sync(parse_plan({"sync": [{**entry, "referrers": referrers}]}))
        assert report.ok and {r.status for r in report.images} == {"up-to-date"}
        src_log, dst_log = http_registry.access_log()[before_src:], dst.access_log()[before_dst:]
        counts[referrers] = (Counter(e.method for e in src_log), Counter(e.method for e in dst_log))
        assert not [e for e in src_log + dst_log if e.method == "GET" and "/manifests/" in e.path]
        assert not [e for e in dst_log if e.method in ("PUT", "POST", "PATCH")]
    (src_on, dst_on), (src_off, dst_off) = counts[True], counts[False]
    # Without referrers their tags are ordinary tags (two HEADs each, as before); with them, the same
    # HEADs compare them, plus the one referrers-API probe that learns 2.8.2 has none.
    assert src_on - src_off == Counter({"GET": 1}) and dst_on == dst_off


async def test_dry_run_counts_referrers_and_delete_extra_keeps_their_tags(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http", delete=True)
    signed = _seed_releases(http_registry, seed)
    entry = {"source": f"{http_registry.host}/apps/a", "target": f"{dst.host}/m/a", "delete_extra": True}
    async with make_client(http_registry, dst) as client:
        dry = await client.sync(parse_plan({"sync": [entry]}), options=SyncOptions(dry_run=True))
        planned = {r.target.rsplit(":", 1)[1]: r.referrers for r in dry.images}
        assert planned["v1.1.0"] == {"found": 3, "to_copy": 3}
        assert planned["v2.0.0"] == {"found": signed["v2.0.0"].count(), "to_copy": signed["v2.0.0"].count()}
        assert dry.totals()["referrers_to_copy"] == sum(s.count() for s in signed.values())
        assert (await client.sync(parse_plan({"sync": [entry]}))).ok
        again = await client.sync(parse_plan({"sync": [{**entry, "tags": {"exact": ["v2.0.0"]}}]}))
    assert again.deletions is not None and again.extra_tags == 2, again.deletions.to_json()
    tags = set(A.tags_list(dst.url, "m/a"))
    assert "v1.0.0" not in tags and "v1.1.0" not in tags and "v2.0.0" in tags
    for s in signed.values():  # referrer tags are never extra: the kept image's, and the others' too
        assert set(s.tags()) <= tags


async def test_targets_fan_out_one_source_read_to_three_registries_one_failing_uploads(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    one, two, flaky = registry_factory("http"), registry_factory("http"), registry_factory("http")
    seed(http_registry, "big", "apps/a", "v1")
    seed(http_registry, "shared-a", "apps/a", "v2")
    seed(http_registry, "shared-b", "apps/a", "v3")
    with FaultyProxy(flaky.url) as proxy:
        proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=64 * 1024, times=2))
        plan = parse_plan({"sync": [{"name": "a", "source": f"{http_registry.host}/apps/a",
                                     "targets": [f"{one.host}/m/a", f"{two.host}/m/a", f"{proxy.host}/m/a"]}]})
        async with make_client(http_registry, one, two, flaky) as client:
            report = await client.sync(plan)
        broken = [r for r in proxy.requests if r.action == "request_reset_after_bytes"]
    assert report.ok, report.to_json()
    assert len(report.images) == 9 and {r.status for r in report.images} == {"copied"}
    gets = Counter(e.path for e in http_registry.access_log() if e.method == "GET" and "/blobs/sha256:" in e.path)
    reread = [p for p, n in gets.items() if n > 1]
    assert len(broken) == 2 and len(reread) == 1 and gets[reread[0]] == 3  # the big layer, for the flaky one
    for server in (one, two, flaky):
        for tag in ("v1", "v2", "v3"):
            skopeo.verify(server, f"m/a:{tag}")
