"""Tests of the deterministic image generator in ``tests/servers/images.py`` (no sockets, no skopeo)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from servers.images import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    REF_NAME,
    ImageSpec,
    IndexSpec,
    LayerSpec,
    _PrngReader,
    blob_path,
    layer_blob,
    layout_contents,
    read_blob,
    tag_digest,
    write_layout,
)

BASE = LayerSpec(3000, "base")
APP = LayerSpec(20_000, "app", "text")
ARM = LayerSpec(1500, "arm")

SPECS: dict[str, ImageSpec | IndexSpec] = {
    "oci": ImageSpec([BASE, APP], labels={"org.example.kind": "oci"}),
    "docker": ImageSpec([BASE, APP], media="docker"),
    "multi": IndexSpec([ImageSpec([BASE]), ImageSpec([ARM], arch="arm64", variant="v8")]),
    "dlist": IndexSpec(
        [ImageSpec([BASE], media="docker"), ImageSpec([ARM], arch="arm64", variant="v8", media="docker")],
        media="docker",
    ),
    "nested": IndexSpec(
        [IndexSpec([ImageSpec([BASE]), ImageSpec([ARM], arch="arm64", variant="v8")]), ImageSpec([APP], arch="s390x")]
    ),
}


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def test_same_spec_gives_same_bytes(tmp_path: Path) -> None:
    # Separate layouts *and* separate caches: nothing may be shared but the algorithm.
    first = write_layout(tmp_path / "a", SPECS, cache_dir=tmp_path / "cache-a")
    second = write_layout(tmp_path / "b", SPECS, cache_dir=tmp_path / "cache-b")
    assert first == second
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert (tmp_path / "a" / "index.json").read_bytes() == (tmp_path / "b" / "index.json").read_bytes()
    # Different seeds or kinds really give different layers.
    digests = {layer_blob(spec, tmp_path / "cache-a")[0].digest for spec in (BASE, APP, ARM, LayerSpec(3000, "x"))}
    assert len(digests) == 4


def test_layout_files_and_index(tmp_path: Path) -> None:
    digests = write_layout(tmp_path / "lay", SPECS, cache_dir=tmp_path / "cache")
    assert json.loads((tmp_path / "lay" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "lay" / "index.json").read_text())
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    by_tag = {e["annotations"][REF_NAME]: e for e in index["manifests"]}
    assert set(by_tag) == set(SPECS)
    for tag, entry in by_tag.items():
        assert entry["digest"] == digests[tag] == tag_digest(tmp_path / "lay", tag)
        assert entry["size"] == len(read_blob(tmp_path / "lay", entry["digest"]))
    assert by_tag["docker"]["mediaType"] == DOCKER_MANIFEST
    assert by_tag["dlist"]["mediaType"] == DOCKER_LIST
    assert by_tag["nested"]["mediaType"] == OCI_INDEX


def test_shared_layers_are_stored_once(tmp_path: Path) -> None:
    write_layout(tmp_path / "lay", SPECS, cache_dir=tmp_path / "cache")
    base_digest = layer_blob(BASE, tmp_path / "cache")[0].digest
    users = [tag for tag in SPECS if base_digest in layout_contents(tmp_path / "lay", tag).blobs]
    assert sorted(users) == ["dlist", "docker", "multi", "nested", "oci"]
    blob_files = list((tmp_path / "lay" / "blobs" / "sha256").iterdir())
    assert len(blob_files) == len({p.name for p in blob_files})
    # The cache generated each distinct layer once; the layout hard-links it rather than copying.
    assert len(list((tmp_path / "cache" / "layers").glob("*.json"))) == 3
    assert blob_path(tmp_path / "lay", base_digest).stat().st_nlink >= 2


def test_cache_is_reused(tmp_path: Path) -> None:
    info, path = layer_blob(APP, tmp_path)
    before = path.stat().st_mtime_ns
    again, path2 = layer_blob(APP, tmp_path)
    assert (again, path2) == (info, path)
    assert path.stat().st_mtime_ns == before
    # A truncated cached blob is detected and regenerated, not served.
    path.write_bytes(b"corrupt")
    fixed, path3 = layer_blob(APP, tmp_path)
    assert fixed == info and path3.stat().st_size == info.size


def _check_tree(layout: Path, media_type: str, digest: str, size: int, seen: dict[str, str]) -> None:
    raw = read_blob(layout, digest)
    assert _sha(raw) == digest and len(raw) == size
    doc: dict[str, Any] = json.loads(raw)
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == media_type, "manifest mediaType must match its descriptor"
    seen[digest] = media_type
    if media_type in (OCI_INDEX, DOCKER_LIST):
        for child in doc["manifests"]:
            if child["mediaType"] in (OCI_MANIFEST, DOCKER_MANIFEST):
                assert {"os", "architecture"} <= set(child["platform"])
            else:
                assert "platform" not in child
            _check_tree(layout, child["mediaType"], child["digest"], child["size"], seen)
        return
    docker = media_type == DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == (DOCKER_CONFIG if docker else OCI_CONFIG)
    for d in (doc["config"], *doc["layers"]):
        data = read_blob(layout, d["digest"])
        assert _sha(data) == d["digest"] and len(data) == d["size"]
    config = json.loads(read_blob(layout, doc["config"]["digest"]))
    diff_ids = []
    for layer in doc["layers"]:
        assert layer["mediaType"] == (DOCKER_LAYER if docker else OCI_LAYER)
        diff_ids.append(_sha(gzip.decompress(read_blob(layout, layer["digest"]))))
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert len(config["history"]) == len(diff_ids)


@pytest.mark.parametrize("tag", list(SPECS))
def test_descriptors_are_consistent(tmp_path: Path, tag: str) -> None:
    write_layout(tmp_path / "lay", SPECS, cache_dir=tmp_path / "cache")
    contents = layout_contents(tmp_path / "lay", tag)
    seen: dict[str, str] = {}
    _check_tree(tmp_path / "lay", contents.root.media_type, contents.root.digest, contents.root.size, seen)
    assert seen == {d: m.media_type for d, m in contents.manifests.items()}


def test_index_platforms_and_nesting(tmp_path: Path) -> None:
    digests = write_layout(tmp_path / "lay", SPECS, cache_dir=tmp_path / "cache")
    multi = json.loads(read_blob(tmp_path / "lay", digests["multi"]))
    assert [m["platform"] for m in multi["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    nested = json.loads(read_blob(tmp_path / "lay", digests["nested"]))
    assert [m["mediaType"] for m in nested["manifests"]] == [OCI_INDEX, OCI_MANIFEST]
    inner = json.loads(read_blob(tmp_path / "lay", nested["manifests"][0]["digest"]))
    # The inner index is the same bytes as the "multi" tag: same spec, same digest.
    assert nested["manifests"][0]["digest"] == digests["multi"]
    assert inner == multi
    contents = layout_contents(tmp_path / "lay", "nested")
    assert len(contents.manifests) == 5  # root, inner index, its 2 images, the s390x image
    config = json.loads(
        read_blob(tmp_path / "lay", json.loads(read_blob(tmp_path / "lay", digests["oci"]))["config"]["digest"])
    )
    assert config["config"]["Labels"] == {"org.example.kind": "oci"}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_layer_bytes(tmp_path: Path) -> None:
    info, path = layer_blob(LayerSpec((5 << 20) // 2, 7), tmp_path)
    data = path.read_bytes()
    # gzip header pinned: no mtime (bytes 4-8) and no FNAME flag, or the digest would change per run.
    assert data[:3] == b"\x1f\x8b\x08" and data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0"
    raw = gzip.decompress(data)
    assert _sha(raw) == info.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["data", "data/blob-7.bin"]
        assert {m.mtime for m in members} == {1_700_000_000} and {m.uid for m in members} == {0}
        payload = tar.extractfile(members[1])
        assert payload is not None
        content = payload.read()
    assert len(content) == (5 << 20) // 2
    assert len(data) >= len(content)  # random bytes do not compress
    text_info, _ = layer_blob(LayerSpec(200_000, 1, "text"), tmp_path)
    assert text_info.size < 200_000 // 2  # text does


@pytest.mark.parametrize("chunk", [1, 4095, 65536, 1 << 20, 3 << 20])
def test_prng_stream_independent_of_read_size(chunk: int) -> None:
    size = (5 << 20) // 2 + 3
    reference = _PrngReader("s", size).read()
    assert len(reference) == size
    reader = _PrngReader("s", size)
    got = bytearray()
    while part := reader.read(chunk if chunk > 1 else 7919):
        got += part
    assert bytes(got) == reference


def test_write_layout_extends_existing_index(tmp_path: Path) -> None:
    lay = tmp_path / "lay"
    first = write_layout(lay, {"a": SPECS["oci"], "b": SPECS["docker"]}, cache_dir=tmp_path / "cache")
    second = write_layout(lay, {"b": SPECS["multi"], "c": SPECS["oci"]}, cache_dir=tmp_path / "cache")
    index = json.loads((lay / "index.json").read_text())
    tags = {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]}
    assert tags == {"a": first["a"], "b": second["b"], "c": first["a"]}
