"""Referrers travel with their images: discovery (API, fallback tag, cosign tags), copy after the
subject, the fallback index kept on 2.8.2, platform subsets, layouts, verified with skopeo.

Artifacts are made by other tools (:mod:`integration.referrer_cases`: oras-py and raw HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from referrer_cases import SPDX, fallback_digests, sign, subject  # type: ignore[import-not-found]

from conftest import make_client  # type: ignore[import-not-found]
from regcopy.artifacts import ReferrerPolicy
from servers import artifacts as A
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry


@pytest.fixture
def spec() -> Iterator[SpecRegistry]:
    with SpecRegistry() as registry:
        yield registry


def _verify_all(server: Any, repo: str, tags: list[str], digests: list[str]) -> None:
    for tag in tags:
        skopeo.verify(server, f"{repo}:{tag}")
    for digest in digests:
        skopeo.verify(server, f"{repo}@{digest}", digest)


async def test_copy_carries_signatures_sbom_and_its_signature_to_a_registry_without_the_api(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "multi", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "multi", api=False)
    async with make_client(http_registry, dst) as client:
        result = await client.copy(f"{http_registry.host}/src/app:multi", f"{dst.host}/dst/app:v1")
    assert result.referrers is not None
    assert result.referrers["found"] == signed.count() == result.referrers["copied"]
    tags = set(A.tags_list(dst.url, "dst/app"))
    assert set(signed.tags()) <= tags and A.referrers_tag(signed.root.digest) in tags
    assert fallback_digests(dst.url, "dst/app", signed.root.digest) == [signed.sbom.digest]
    index = json.loads(A.get_manifest(dst.url, "dst/app", A.referrers_tag(signed.root.digest)) or b"{}")
    assert index["manifests"][0]["artifactType"] == SPDX
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    _verify_all(dst, "dst/app", ["v1", *signed.tags()], [signed.sbom.digest])


async def test_a_rerun_copies_nothing_and_does_not_rewrite_the_fallback_index(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "oci", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "oci", api=False, children=False)
    for _ in range(2):
        async with make_client(http_registry, dst) as client:
            result = await client.copy(f"{http_registry.host}/src/app:oci", f"{dst.host}/dst/app:v1")
    assert result.up_to_date and result.referrers is not None
    assert result.referrers["copied"] == 0 and result.referrers["present"] == signed.count()
    tag = A.referrers_tag(signed.root.digest)
    index_puts = [e for e in dst.access_log() if e.method == "PUT" and e.path.endswith(f"/manifests/{tag}")]
    assert len(index_puts) == 1


async def test_api_source_to_fallback_destination_and_back(
    spec: SpecRegistry, http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    seed(http_registry, "oci", "seed/app")
    async with make_client(http_registry) as client:  # the image onto the spec registry, without referrers
        await client.copy(f"{http_registry.host}/seed/app:oci", f"{spec.host}/src/app:v1", referrers=False)
    signed = sign(spec.url, spec.host, "src/app", "v1", api=True, children=False)
    assert A.referrers_tag(signed.root.digest) not in spec.tags["src/app"]  # found through the API only
    async with make_client(http_registry) as client:
        there = await client.copy(f"{spec.host}/src/app:v1", f"{http_registry.host}/fallback/app:v1")
        back = registry_factory("http")
    assert there.referrers is not None and there.referrers["indexed"] == {"fallback": 1}
    assert fallback_digests(http_registry.url, "fallback/app", signed.root.digest) == [signed.sbom.digest]
    with SpecRegistry() as again:
        async with make_client(http_registry, back) as client:
            result = await client.copy(f"{http_registry.host}/fallback/app:v1", f"{again.host}/api/app:v1")
        assert result.referrers is not None and result.referrers["indexed"] == {"api": 1}
        listed = [d["digest"] for d in again.referrer_descriptors("api/app", signed.root.digest)]
        assert listed == [signed.sbom.digest]
        assert A.referrers_tag(signed.root.digest) not in again.tags["api/app"]  # the API indexes it: no tag
        _verify_all(again, "api/app", ["v1", *signed.tags()], [signed.sbom.digest])


async def test_the_api_is_asked_once_per_registry(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    for sample in ("oci", "docker", "multi"):
        seed(http_registry, sample, "src/app")
    async with make_client(http_registry, dst) as client, anyio.create_task_group() as tg:
        for sample in ("oci", "docker", "multi"):
            tg.start_soon(client.copy, f"{http_registry.host}/src/app:{sample}", f"{dst.host}/dst/app:{sample}")
    probes = [e for e in http_registry.access_log() if "/referrers/" in e.path]
    assert len(probes) == 1 and probes[0].status == 404
    assert not [e for e in dst.access_log() if "/referrers/" in e.path]  # learned from the PUT answers


async def test_merge_keeps_what_another_client_put_in_the_fallback_index(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "oci", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "oci", api=False, children=False)
    seed(dst, "oci", "dst/app", "v1")
    theirs = A.attach(dst.host, "dst/app", subject(dst.url, "dst/app", "v1"), "application/vnd.example.vex+json",
                      b'{"vex":true}')
    before = A.add_to_fallback_index(dst.url, "dst/app", signed.root.digest, theirs)
    async with make_client(http_registry, dst) as client:
        await client.copy(f"{http_registry.host}/src/app:oci", f"{dst.host}/dst/app:v1")
    after = json.loads(A.get_manifest(dst.url, "dst/app", A.referrers_tag(signed.root.digest)) or b"{}")
    assert after["manifests"][0] == json.loads(before.data)["manifests"][0]  # verbatim, first
    assert [e["digest"] for e in after["manifests"]] == [theirs.digest, signed.sbom.digest]


async def test_two_concurrent_copies_of_referrers_of_one_subject_both_land(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "oci", "one/app")
    seed(http_registry, "oci", "two/app")
    one = sign(http_registry.url, http_registry.host, "one/app", "oci", api=False, children=False, name="one")
    two = sign(http_registry.url, http_registry.host, "two/app", "oci", api=False, children=False, name="two")
    assert one.root.digest == two.root.digest and one.sbom.digest != two.sbom.digest
    with FaultyProxy(dst.url) as proxy:
        # The first writer's index PUT is held for 1 s: the second reads the index before it lands.
        proxy.add(Fault(method="PUT", path=r"/manifests/sha256-[0-9a-f]{64}$", stall=1.0))
        async with make_client(http_registry, dst) as slow, make_client(http_registry, dst) as fast:
            slow.features(proxy.host).settle = fast.features(dst.host).settle = 1.5
            results: list[Any] = []

            async def first() -> None:
                results.append(await slow.copy(f"{http_registry.host}/one/app:oci", f"{proxy.host}/dst/app:v1"))

            async def second() -> None:
                with anyio.fail_after(20):
                    # The proxy lives on its own thread: its log is polled, no event crosses over.
                    while not any(r.action == "stall" for r in proxy.requests):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                results.append(await fast.copy(f"{http_registry.host}/two/app:oci", f"{dst.host}/dst/app:v1"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(first)
                tg.start_soon(second)
    listed = fallback_digests(dst.url, "dst/app", one.root.digest)
    assert sorted(listed) == sorted([one.sbom.digest, two.sbom.digest])
    assert max(r.referrers["rounds"] for r in results) >= 2  # one writer saw its entry lost and merged again


async def test_platform_subset_carries_the_children_referrers_and_reports_the_root_ones_left_behind(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "multi", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "multi", api=False)
    kept = {c["digest"] for c in signed.children if c["platform"]["architecture"] in ("amd64", "arm64")}
    async with make_client(http_registry, dst) as client:
        result = await client.copy(f"{http_registry.host}/src/app:multi", f"{dst.host}/dst/app:two",
                                   platforms=["linux/amd64", "linux/arm64"])
    assert result.new_digest and result.referrers is not None
    assert result.referrers["left_behind"] == 2  # the root's signature and SBOM refer to the old index
    assert "not carried" in result.referrers["notes"][0]
    tags = set(A.tags_list(dst.url, "dst/app"))
    for child in signed.attestations:
        assert (f"{A.referrers_tag(child)}.att" in tags) == (child in kept)
    assert f"{A.referrers_tag(signed.root.digest)}.sig" not in tags
    _verify_all(dst, "dst/app", ["two", *(f"{A.referrers_tag(c)}.att" for c in kept)], [])


@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
async def test_export_to_an_oci_layout_and_back_keeps_the_referrers(
    transport: str, http_registry: RegistryServer, registry_factory: Any, seed: Any, tmp_path: Path
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "multi", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "multi", api=False)
    layout = tmp_path / "export"
    async with make_client(http_registry, dst) as client:
        out = await client.copy(f"{http_registry.host}/src/app:multi", f"{transport}:{layout}:v1")
        if transport == "oci":
            entries = json.loads((layout / "index.json").read_text())["manifests"]
            # The SBOM is an untagged entry of index.json, typed (image-layout.md "index.json file").
            assert any(e["digest"] == signed.sbom.digest and e.get("artifactType") == SPDX
                       and "annotations" not in e for e in entries)
        back = await client.copy(f"{transport}:{layout}:v1", f"{dst.host}/back/app:v1")
    assert out.referrers is not None and back.referrers is not None
    assert out.referrers["copied"] == back.referrers["copied"] == signed.count()
    assert fallback_digests(dst.url, "back/app", signed.root.digest) == [signed.sbom.digest]
    _verify_all(dst, "back/app", ["v1", *signed.tags()], [signed.sbom.digest])


async def test_artifact_types_filter_what_travels(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "oci", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "oci", api=False, children=False)
    async with make_client(http_registry, dst) as client:
        result = await client.copy(f"{http_registry.host}/src/app:oci", f"{dst.host}/dst/app:v1",
                                   referrers=ReferrerPolicy(artifact_types=(SPDX,)))
    assert result.referrers is not None and result.referrers["copied"] == 1
    assert fallback_digests(dst.url, "dst/app", signed.root.digest) == [signed.sbom.digest]
    assert A.get_manifest(dst.url, "dst/app", f"{A.referrers_tag(signed.root.digest)}.sig") is None


async def test_no_referrers_copies_the_image_alone(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "oci", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "oci", api=False, children=False)
    async with make_client(http_registry, dst) as client:
        result = await client.copy(f"{http_registry.host}/src/app:oci", f"{dst.host}/dst/app:v1", referrers=False)
    assert result.referrers is None
    assert A.get_manifest(dst.url, "dst/app", A.referrers_tag(signed.root.digest)) is None
    assert not [e for e in http_registry.access_log() if "/referrers/" in e.path or "/tags/list" in e.path]


def _cli(*args: str, authfile: Path) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "regcopy", *args, "--authfile", str(authfile)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_referrers_tree_and_json(http_registry: RegistryServer, seed: Any, empty_authfile: Path) -> None:
    seed(http_registry, "multi", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "multi", api=False)
    out = _cli("referrers", f"{http_registry.host}/src/app:multi", "-o", "json", authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["digest"] == signed.root.digest
    root = doc["manifests"][0]
    by_digest = {r["digest"]: r for r in root["referrers"]}
    assert by_digest[signed.sbom.digest]["artifactType"] == SPDX and by_digest[signed.sbom.digest]["via"] == "fallback"
    assert [c["digest"] for c in by_digest[signed.sbom.digest]["referrers"]] == [signed.sbom_signature.digest]
    assert by_digest[signed.signature.digest]["tag"] == f"{A.referrers_tag(signed.root.digest)}.sig"
    atts = {m["digest"]: [r["artifactType"] for r in m["referrers"]] for m in doc["manifests"][1:]}
    assert atts == {child: [A.DSSE] for child in signed.attestations}
    text = _cli("referrers", f"{http_registry.host}/src/app:multi", authfile=empty_authfile).stdout
    assert f"└── {signed.sbom_signature.digest} {A.SIMPLESIGNING}" in text and "linux/arm64" in text


def test_cli_copy_to_several_destinations_with_and_without_referrers(
    http_registry: RegistryServer, registry_factory: Any, seed: Any, empty_authfile: Path
) -> None:
    one, two = registry_factory("http"), registry_factory("http")
    digest = seed(http_registry, "oci", "src/app")
    signed = sign(http_registry.url, http_registry.host, "src/app", "oci", api=False, children=False)
    out = _cli("copy", f"{http_registry.host}/src/app:oci", f"{one.host}/a/app:v1", f"{two.host}/b/app:v1",
               "-o", "json", "--progress", "none", authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    reports = json.loads(out.stdout)
    assert [r["digest"] for r in reports] == [digest, digest]
    assert [r["referrers"]["copied"] for r in reports] == [signed.count(), signed.count()]
    for server, repo in ((one, "a/app"), (two, "b/app")):
        assert fallback_digests(server.url, repo, signed.root.digest) == [signed.sbom.digest]
        skopeo.verify(server, f"{repo}:v1", digest)
    bare = registry_factory("http")
    out = _cli("copy", "--no-referrers", f"{http_registry.host}/src/app:oci", f"{bare.host}/c/app:v1",
               authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    assert A.tags_list(bare.url, "c/app") == ["v1"]
