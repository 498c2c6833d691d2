"""The referrers API operation against the spec registry: pages, filters, the origin rule, hostile answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import regcopy
from conftest import make_client  # type: ignore[import-not-found]
from regcopy.digest import Digest
from regcopy.registry.referrers import referrers_list
from servers import artifacts as A
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry

TYPES = ("application/spdx+json", "application/vnd.cyclonedx+json", "application/spdx+json")


def _seeded(spec: SpecRegistry) -> tuple[A.Pushed, list[A.Pushed]]:
    layer = A.put_blob(spec.url, "app", b"layer")
    config = A.put_blob(spec.url, "app", b"{}")
    image = A.put_manifest(spec.url, "app", "v1", {
        "schemaVersion": 2, "mediaType": A.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}]})
    found = [A.attach(spec.host, "app", image, kind, f'{{"n":{i}}}'.encode()) for i, kind in enumerate(TYPES)]
    return image, found


@pytest.fixture
def paged() -> Iterator[SpecRegistry]:
    with SpecRegistry(referrers_page=1, referrers_filter=False) as spec:
        yield spec


async def test_every_page_is_followed_and_an_unapplied_filter_is_applied_here(paged: SpecRegistry) -> None:
    image, found = _seeded(paged)
    async with regcopy.Client() as client:
        t = client.transport(paged.host)
        await t.ping()
        every = await referrers_list(t, "app", Digest.parse(image.digest))
        spdx = await referrers_list(t, "app", Digest.parse(image.digest), artifact_type=TYPES[0])
    assert every is not None and every.pages == 3
    assert [str(d.digest) for d in every.descriptors] == [f.digest for f in found]
    assert spdx is not None and not spdx.filtered
    assert [str(d.digest) for d in spdx.descriptors] == [found[0].digest, found[2].digest]


async def test_a_filter_the_registry_applied_is_trusted() -> None:
    with SpecRegistry() as spec:
        image, found = _seeded(spec)
        async with regcopy.Client() as client:
            t = client.transport(spec.host)
            await t.ping()
            answer = await referrers_list(t, "app", Digest.parse(image.digest), artifact_type=TYPES[1])
        asked = [r.path for r in spec.requests if "/referrers/" in r.path]
    assert answer is not None and answer.filtered and [str(d.digest) for d in answer.descriptors] == [found[1].digest]
    assert asked == [f"/v2/app/referrers/{image.digest}?artifactType=application%2Fvnd.cyclonedx%2Bjson"]


async def test_a_page_on_another_origin_is_refused(paged: SpecRegistry) -> None:
    image, _ = _seeded(paged)
    with FaultyProxy(paged.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/referrers/", times=-1,
                        set_headers={"Link": '<http://203.0.113.9:1/v2/app/referrers/x?page=1>; rel="next"'}))
        async with regcopy.Client() as client:
            t = client.transport(proxy.host)
            await t.ping()
            with pytest.raises(regcopy.ProtocolViolation, match="is not the registry"):
                await referrers_list(t, "app", Digest.parse(image.digest))


@pytest.mark.parametrize("garbage", [b"not json", b'{"manifests": {"a": 1}}', b'{"manifests": [{"digest": 1}]}'])
async def test_a_hostile_answer_is_a_protocol_violation(paged: SpecRegistry, garbage: bytes) -> None:
    image, _ = _seeded(paged)
    with FaultyProxy(paged.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/referrers/", garbage=garbage, times=-1))
        async with regcopy.Client() as client:
            t = client.transport(proxy.host)
            await t.ping()
            with pytest.raises(regcopy.ProtocolViolation, match="referrers answer"):
                await referrers_list(t, "app", Digest.parse(image.digest))


async def test_no_api_is_none(http_registry: RegistryServer, seed: Any) -> None:
    digest = seed(http_registry, "oci", "src/app")
    async with make_client(http_registry) as client:
        t = client.transport(http_registry.host)
        await t.ping()
        assert await referrers_list(t, "src/app", Digest.parse(digest)) is None
