"""Docker schema 2 ↔ OCI manifest conversion: media types mapped, blobs untouched, refusals named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.convert import convert_manifests, not_an_image
from regcopy.digest import Digest
from regcopy.errors import UnsupportedMediaType
from regcopy.manifest import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Manifest,
)

ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


def _d(seed: str, media_type: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(Digest.of(seed.encode())), "size": size, **extra}


def _image(media_type: str, config: str, layers: list[dict[str, Any]], **extra: Any) -> Manifest:
    obj = {"schemaVersion": 2, "mediaType": media_type, "config": _d("cfg", config), "layers": layers, **extra}
    return Manifest.parse(json.dumps(obj, indent=3).encode())


def _index(media_type: str, children: list[Manifest], **extra: Any) -> Manifest:
    arches = ["amd64", "arm64"][:len(children)]
    entries = [{"mediaType": c.media_type, "digest": str(c.digest), "size": len(c.data),
                "platform": {"os": "linux", "architecture": arch}} for c, arch in zip(children, arches, strict=True)]
    return Manifest.parse(json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries,
                                      **extra}).encode())


def test_docker_image_to_oci_maps_every_type_and_keeps_the_blobs() -> None:
    docker = _image(DOCKER_MANIFEST, DOCKER_CONFIG, [_d("l1", DOCKER_LAYER, 5),
                                                      _d("l2", DOCKER_FOREIGN_LAYER, 7, urls=["https://x/l2"])])
    oci = convert_manifests([docker], "oci")[docker.digest]
    assert oci.media_type == OCI_MANIFEST and oci.digest != docker.digest
    assert oci.config is not None and (oci.config.media_type, oci.config.digest) == (OCI_CONFIG, docker.config.digest)  # type: ignore[union-attr]
    assert [(layer.media_type, layer.digest, layer.size, layer.urls) for layer in oci.layers] == [
        (OCI_LAYER, docker.layers[0].digest, 5, ()), (NONDIST, docker.layers[1].digest, 7, ("https://x/l2",))]
    back = convert_manifests([oci], "v2s2")[oci.digest]
    assert back.media_type == DOCKER_MANIFEST
    assert [layer.media_type for layer in back.layers] == [DOCKER_LAYER, DOCKER_FOREIGN_LAYER]
    assert back.blobs() == docker.blobs()  # the same config and layers, by digest and size


def test_index_entries_point_at_the_converted_children() -> None:
    children = [_image(DOCKER_MANIFEST, DOCKER_CONFIG, [_d(f"l{i}", DOCKER_LAYER)]) for i in range(2)]
    index = _index(DOCKER_MANIFEST_LIST, children)
    new = convert_manifests([*children, index], "oci")
    root = new[index.digest]
    assert root.media_type == OCI_INDEX
    assert [(e.digest, e.media_type, e.size) for e in root.manifests] == [
        (new[c.digest].digest, OCI_MANIFEST, len(new[c.digest].data)) for c in children]
    assert [str(e.platform) for e in root.manifests] == ["linux/amd64", "linux/arm64"]


def test_what_is_already_in_the_target_format_keeps_its_bytes() -> None:
    oci = _image(OCI_MANIFEST, OCI_CONFIG, [_d("l", OCI_LAYER), _d("z", ZSTD)], annotations={"a": "b"})
    index = _index(OCI_INDEX, [oci])
    new = convert_manifests([oci, index], "oci")
    assert new[oci.digest] is oci and new[index.digest] is index


def test_oci_annotations_stay_in_oci_and_are_not_carried_into_schema2() -> None:
    docker = _image(DOCKER_MANIFEST, DOCKER_CONFIG, [_d("l", DOCKER_LAYER)])
    oci = _image(OCI_MANIFEST, OCI_CONFIG, [_d("l", OCI_LAYER, annotations={"x": "y"})], annotations={"a": "b"})
    assert "annotations" not in json.loads(convert_manifests([oci], "v2s2")[oci.digest].data)
    assert "annotations" not in json.loads(convert_manifests([oci], "v2s2")[oci.digest].data)["layers"][0]
    assert json.loads(convert_manifests([docker], "oci")[docker.digest].data)["layers"][0].keys() == {
        "mediaType", "digest", "size"}


@pytest.mark.parametrize(("manifest", "match"), [
    (_image(OCI_MANIFEST, OCI_CONFIG, [_d("z", ZSTD)]), r"tar\+zstd has no v2s2 equivalent"),
    (_image(OCI_MANIFEST, "application/vnd.unknown.config.v1+json", [_d("f", "application/spdx+json")]),
     r"artifact \(config media type application/vnd.unknown.config.v1\+json\)"),
    (_image(OCI_MANIFEST, "application/vnd.oci.empty.v1+json", [_d("f", "text/plain")],
            artifactType="application/vnd.example+json"), r"artifactType application/vnd.example\+json"),
    (_image(OCI_MANIFEST, OCI_CONFIG, [_d("s", "application/vnd.dev.cosign.simplesigning.v1+json")]),
     r"layer of media type application/vnd.dev.cosign"),
    (_image(OCI_MANIFEST, OCI_CONFIG, [_d("l", OCI_LAYER)], subject=_d("s", OCI_MANIFEST)), "has a subject"),
], ids=["zstd", "oras", "artifact-type", "cosign", "subject"])
def test_what_schema2_cannot_say_is_refused_by_name(manifest: Manifest, match: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=match):
        convert_manifests([manifest], "v2s2")


def test_an_index_with_an_artifact_child_is_refused_whole() -> None:
    art = _image(OCI_MANIFEST, "application/vnd.unknown.config.v1+json", [_d("f", "text/plain")])
    image = _image(OCI_MANIFEST, OCI_CONFIG, [_d("l", OCI_LAYER)])
    with pytest.raises(UnsupportedMediaType, match=art.digest.short):
        convert_manifests([image, art, _index(OCI_INDEX, [image, art])], "v2s2")


def test_not_an_image() -> None:
    assert not_an_image(_image(DOCKER_MANIFEST, DOCKER_CONFIG, [_d("l", DOCKER_LAYER)])) is None
    assert not_an_image(_index(OCI_INDEX, [])) is None
    assert "artifact" in (not_an_image(_image(OCI_MANIFEST, "application/x", [])) or "")


DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"


@given(layers=st.lists(st.sampled_from([DOCKER_LAYER, DOCKER_FOREIGN_LAYER, DOCKER_TAR]), max_size=5))
def test_round_trip_docker_oci_docker_gives_back_the_same_digest(layers: list[str]) -> None:
    """Docker → OCI → Docker is the identity on a compact schema 2 manifest with only Docker's fields."""
    obj = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": _d("cfg", DOCKER_CONFIG),
           "layers": [_d(f"l{i}", t) for i, t in enumerate(layers)]}
    docker = Manifest.parse(json.dumps(obj, separators=(",", ":")).encode())
    oci = convert_manifests([docker], "oci")[docker.digest]
    assert convert_manifests([oci], "v2s2")[oci.digest].digest == docker.digest
