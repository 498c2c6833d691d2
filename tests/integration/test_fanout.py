"""Fan-out: one source read feeds several destinations; a failing destination reads alone; same-registry
destinations mount; a registry that mounts by digest alone is asked with the upload's own POST."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import regcopy
from conftest import SAMPLES, make_client  # type: ignore[import-not-found]
from regcopy.progress import BlobMounted, Event
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry


def _blob_gets(server: RegistryServer) -> Counter[str]:
    return Counter(e.path.rsplit("/", 1)[1] for e in server.access_log()
                   if e.method == "GET" and "/blobs/sha256:" in e.path)


async def test_three_destinations_one_failing_uploads_each_blob_read_once_except_its_rereads(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    digest = seed(http_registry, "big", "src/app")
    ok1, ok2, flaky = registry_factory("http"), registry_factory("http"), registry_factory("http")
    with FaultyProxy(flaky.url) as proxy:
        # Every upload body to the flaky registry breaks after 64 KiB, twice: its store restarts the
        # blob, which the tee answers with a source read of its own.
        proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=64 * 1024, times=2))
        async with make_client(http_registry, ok1, ok2, flaky) as client:
            results = await client.copy_fanout(
                f"{http_registry.host}/src/app:big",
                [f"{ok1.host}/a/app:v1", f"{ok2.host}/b/app:v1", f"{proxy.host}/c/app:v1"])
        broken = [r for r in proxy.requests if r.action == "request_reset_after_bytes"]
    assert [isinstance(r, regcopy.CopyResult) for r in results] == [True, True, True], results
    gets = _blob_gets(http_registry)
    big = {str(b.digest) for b in (await _plan(http_registry, "src/app:big")).blobs if b.size > 1024 * 1024}
    assert len(broken) == 2
    for blob, count in gets.items():
        # Once for the tee; a blob the flaky destination broke is read again for it alone.
        assert count == (1 + 2 if blob in big else 1), (blob, count)
    for server, repo in ((ok1, "a/app"), (ok2, "b/app"), (flaky, "c/app")):
        skopeo.verify(server, f"{repo}:v1", digest)


async def _plan(server: RegistryServer, ref: str) -> regcopy.engine.ImagePlan:
    async with make_client(server) as client:
        store = client.registry_store(regcopy.Reference.parse(f"{server.host}/{ref}"))
        return await regcopy.engine.plan_image(store, ref.split(":")[1])


async def test_destinations_on_one_registry_get_one_upload_then_mounts(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    digest = seed(http_registry, "multi", "src/app")
    dst, other = registry_factory("http"), registry_factory("http")
    events: list[Event] = []
    async with make_client(http_registry, dst, other) as client:
        results = await client.copy_fanout(
            f"{http_registry.host}/src/app:multi",
            [f"{dst.host}/one/app:v1", f"{dst.host}/two/app:v1", f"{other.host}/three/app:v1"],
            reporter=events.append)
    one, two, three = results
    assert isinstance(one, regcopy.CopyResult) and isinstance(two, regcopy.CopyResult)
    assert isinstance(three, regcopy.CopyResult)
    blobs = one.blobs_uploaded
    assert blobs > 0 and two.blobs_uploaded == 0 and two.blobs_mounted == blobs and three.blobs_uploaded == blobs
    assert all(c == 1 for c in _blob_gets(http_registry).values())
    assert {e.from_repository for e in events if isinstance(e, BlobMounted)} == {"one/app"}
    for server, repo in ((dst, "one/app"), (dst, "two/app"), (other, "three/app")):
        skopeo.verify(server, f"{repo}:v1", digest)


@pytest.mark.parametrize("mounts", [True, False])
async def test_mount_by_digest_alone_is_asked_with_the_upload_post(
    mounts: bool, http_registry: RegistryServer, seed: Any
) -> None:
    seed(http_registry, "oci", "src/app")
    with SpecRegistry(mount_anywhere=mounts) as spec:
        async with make_client(http_registry) as client:
            await client.copy(f"{http_registry.host}/src/app:oci", f"{spec.host}/first/app:v1", referrers=False)
        before = len(spec.requests)
        async with make_client(http_registry) as client:  # a new client: its ledger knows nothing of first/app
            result = await client.copy(f"{http_registry.host}/src/app:oci", f"{spec.host}/second/app:v1",
                                       referrers=False)
            learned = client.features(spec.host).mount_anywhere
        requests = spec.requests[before:]
    posts = [r for r in requests if r.method == "POST"]
    assert posts and all("?mount=sha256:" in r.path and "from=" not in r.path for r in posts)
    if mounts:
        assert result.blobs_mounted == len(posts) and result.blobs_uploaded == 0 and learned is True
        assert not [r for r in requests if r.method in ("PATCH", "PUT") and "/blobs/" in r.path]
    else:  # 202: the POST opened the upload's own session; no request was added for asking
        assert result.blobs_uploaded == len(posts) and learned is None
        assert len([r for r in requests if r.method == "PUT" and "/blobs/uploads/" in r.path]) == len(posts)


async def test_a_registry_refusing_mount_without_from_is_asked_once(
    http_registry: RegistryServer, registry_factory: Any, seed: Any
) -> None:
    seed(http_registry, "multi", "src/app")
    dst = registry_factory("http")
    with FaultyProxy(dst.url) as proxy:
        proxy.add(Fault(method="POST", path=r"\?mount=sha256:[0-9a-f]+$", status=400, times=-1,
                        body=b'{"errors":[{"code":"UNSUPPORTED","message":"from is required"}]}'))
        async with make_client(http_registry, dst) as client:
            result = await client.copy(f"{http_registry.host}/src/app:multi", f"{proxy.host}/dst/app:v1")
            assert client.features(proxy.host).mount_anywhere is False
        refused = [r for r in proxy.requests if r.status == 400]
    assert len(refused) == 1 and result.blobs_uploaded > 1
    skopeo.verify(dst, "dst/app:v1", result.digest)


def test_samples_have_a_blob_above_the_monolithic_size() -> None:
    big = SAMPLES["big"]
    assert isinstance(big, object) and max(layer.size for layer in big.layers) > 1024 * 1024  # type: ignore[attr-defined]
