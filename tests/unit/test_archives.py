"""Tests for :mod:`regcopy.stores.archive`, :mod:`regcopy.stores.dockerarchive` and
:mod:`regcopy.stores.tarfiles`: oci-archive and docker-archive read/write without sockets."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import pytest

from regcopy.digest import Digest
from regcopy.engine import copy_image
from regcopy.errors import StoreError
from regcopy.manifest import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, Platform
from regcopy.reference import LocalLocation
from regcopy.stores.archive import OciArchiveStore
from regcopy.stores.dockerarchive import DockerArchiveStore
from regcopy.stores.local import LocalStore, local_identifier, open_local
from regcopy.stores.tarfiles import index_tar
from servers.images import ImageSpec, IndexSpec, LayerSpec, blob_path, layout_contents, read_blob, write_layout

KB = 1024
MB = 1024 * KB
BASE = LayerSpec(30 * KB, "arch-base")
IMAGES = {
    "a": ImageSpec(layers=[BASE, LayerSpec(8 * KB, "arch-a", "text")]),
    "b": ImageSpec(layers=[BASE, LayerSpec(9 * KB, "arch-b")], media="docker"),
    "multi": IndexSpec(children=[ImageSpec(layers=[BASE, LayerSpec(3 * KB, "arch-m1")]),
                                 ImageSpec(layers=[LayerSpec(3 * KB, "arch-m2")], arch="arm64")]),
}


@pytest.fixture
def source(tmp_path: Path, image_cache_dir: Path) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    return src, write_layout(src, IMAGES, cache_dir=image_cache_dir)


async def _copy(src: str, dst: str, tag: str | None, *, platforms: Iterable[str] = ()) -> tuple[str, str]:
    s, d = LocalLocation.parse(src), LocalLocation.parse(dst)
    async with open_local(s, writable=False) as a, open_local(d, writable=True) as b:
        result = await copy_image(a, b, await local_identifier(s, a), target_tag=tag,
                                  platforms=[Platform.parse(p) for p in platforms])
    return result.source_digest, result.digest


def _members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _tar(path: Path, files: dict[str, bytes | Path], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, Path):
                info.size = content.stat().st_size
                with open(content, "rb") as f:
                    tar.addfile(info, f)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _gunzip_to(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rb") as f, open(dst, "wb") as out:
        shutil.copyfileobj(f, out, MB)
    return dst


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(MB):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _docker_save(layout: Path, tags: dict[str, list[str]], out: Path, *, compressed: bool = False,
                 symlinks: bool = False) -> Path:
    """A classic ``docker save`` archive of layout tags: uncompressed ``<id>/layer.tar`` + config."""
    work = out.parent / f"{out.name}.work"
    work.mkdir()
    files: dict[str, bytes | Path] = {}
    links: dict[str, str] = {}
    entries = []
    for tag, repo_tags in tags.items():
        manifest = json.loads(read_blob(layout, layout_contents(layout, tag).root.digest))
        config = manifest["config"]["digest"].split(":")[1]
        files[f"{config}.json"] = read_blob(layout, manifest["config"]["digest"])
        names = []
        for layer in manifest["layers"]:
            gz = blob_path(layout, layer["digest"])
            data = gz if compressed else _gunzip_to(gz, work / layer["digest"].split(":")[1])
            hex_ = _sha(data).split(":")[1]
            if symlinks:  # skopeo's layout: <hex>.tar plus legacy <id>/layer.tar links to it
                files[f"{hex_}.tar"] = data
                links[f"{hex_[:20]}/layer.tar"] = f"../{hex_}.tar"
            else:
                files[f"{hex_}/layer.tar"] = data
            names.append(f"{hex_[:20]}/layer.tar" if symlinks else f"{hex_}/layer.tar")
        entries.append({"Config": f"{config}.json", "RepoTags": repo_tags, "Layers": names})
    files["manifest.json"] = json.dumps(entries).encode()
    return _tar(out, files, links)


# ---------------------------------------------------------------- oci-archive


async def test_oci_archive_round_trip(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    archive = tmp_path / "out.tar"
    s, d = LocalLocation.parse(f"oci:{src}"), LocalLocation.parse(f"oci-archive:{archive}")
    async with open_local(s, writable=False) as a, open_local(d, writable=True) as b:
        for tag in digests:  # several images through one store: commit rewrites the whole archive
            await copy_image(a, b, tag, target_tag=tag)
    names = _members(archive)
    assert names[:4] == ["oci-layout", "index.json", "blobs", "blobs/sha256"]
    wanted = set().union(*(layout_contents(src, t).all_digests for t in digests))
    assert sorted(n for n in names[4:]) == sorted(f"blobs/sha256/{d.split(':')[1]}" for d in wanted)
    for tag, digest in digests.items():
        assert await _copy(f"oci-archive:{archive}:{tag}", f"oci:{tmp_path / 'back'}:{tag}", tag) == (digest, digest)
        assert layout_contents(tmp_path / "back", tag).all_digests == layout_contents(src, tag).all_digests
    assert _names(tmp_path) == ["back", "out.tar", "src"]  # no spool left


async def test_oci_archive_store_api(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    await _copy(f"oci:{src}:a", f"oci-archive:{tmp_path / 'a.tar'}:a", "a")
    store = OciArchiveStore(tmp_path / "a.tar")
    await store.open()
    try:
        assert await store.list_tags() == ["a"]
        assert await store.default_identifier() == "a"
        assert str(await store.head("a")) == digests["a"]
        assert store.name == f"oci-archive:{tmp_path / 'a.tar'}" and store.origin is None
        with pytest.raises(StoreError, match="read-only"):
            await store.put_manifest(await store.resolve("a"), "x")
        with pytest.raises(StoreError, match=r"a.tar:index.json: no image named 'zz'"):
            await store.resolve("zz")
    finally:
        await store.aclose()
    assert isinstance(store, LocalStore)


async def test_uncommitted_archives_leave_nothing(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    for transport in ("oci-archive", "docker-archive"):
        target = tmp_path / f"{transport}.tar"
        async with open_local(LocalLocation.parse(f"oci:{src}"), writable=False) as a, \
                open_local(LocalLocation.parse(f"{transport}:{target}"), writable=True) as b:
            manifest = await a.resolve("a")
            for blob in manifest.blobs():
                await b.put_blob(blob, lambda blob=blob: a.open_blob(blob))
            await b.put_manifest(manifest, "x:a")
        assert not target.exists()
    assert _names(tmp_path) == ["src"]


async def test_archive_is_replaced_atomically(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    archive = tmp_path / "a.tar"
    await _copy(f"oci:{src}:a", f"oci-archive:{archive}:a", "a")
    old = archive.read_bytes()
    with pytest.raises(StoreError, match="single-platform"):
        await _copy(f"oci:{src}:multi", f"docker-archive:{archive}:x:y", "x:y")
    assert archive.read_bytes() == old
    await _copy(f"oci:{src}:b", f"oci-archive:{archive}:b", "b")  # replaced, as skopeo does
    store = OciArchiveStore(archive)
    await store.open()
    assert await store.list_tags() == ["b"]
    await store.aclose()


def _cut(src: Path, dst: Path, size: int) -> Path:
    dst.write_bytes(src.read_bytes()[:size])
    return dst


async def test_truncated_and_bad_archives(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    archive = tmp_path / "a.tar"
    await _copy(f"oci:{src}:a", f"oci-archive:{archive}:a", "a")
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1]
    end_of_last = last.offset_data + -(-last.size // 512) * 512
    cases = {
        "mid-blob.tar": (last.offset_data + last.size // 2, "cut off"),
        "at-boundary.tar": (end_of_last, "no end-of-archive marker"),
        "mid-header.tar": (last.offset + 100, "no end-of-archive marker"),
    }
    for name, (size, message) in cases.items():
        cut = _cut(archive, tmp_path / name, size)
        with pytest.raises(StoreError, match=f"{cut}: truncated archive .*({message})"):
            await _copy(f"oci-archive:{cut}", f"oci:{tmp_path / 'x'}", None)
    (tmp_path / "gz.tar").write_bytes(gzip.compress(archive.read_bytes()))
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 2048)
    for name, message in [("gz.tar", "the archive is gzip-compressed"), ("junk.tar", "not a readable tar"),
                          ("none.tar", "cannot open archive")]:
        with pytest.raises(StoreError, match=f"{tmp_path / name}: {message}"):
            await _copy(f"oci-archive:{tmp_path / name}", f"oci:{tmp_path / 'x'}", None)


async def test_oci_archive_missing_blob_and_bad_index(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    layer = next(d for d in layout_contents(src, "a").blobs.values() if "layer" in d.media_type)
    blob_path(src, layer.digest).unlink()
    files: dict[str, bytes | Path] = {"oci-layout": src / "oci-layout", "index.json": src / "index.json"}
    for digest in layout_contents(src, "a").all_digests:
        if digest != layer.digest:
            files[f"blobs/sha256/{digest.split(':')[1]}"] = blob_path(src, digest)
    _tar(tmp_path / "missing.tar", files)
    with pytest.raises(StoreError, match=f"missing.tar:blobs/sha256/{layer.digest.split(':')[1]}: blob missing"):
        await _copy(f"oci-archive:{tmp_path / 'missing.tar'}:a", f"oci:{tmp_path / 'x'}:a", "a")
    _tar(tmp_path / "bad.tar", {"oci-layout": src / "oci-layout", "index.json": b"{"})
    with pytest.raises(StoreError, match=r"bad\.tar:index\.json: not valid JSON"):
        await _copy(f"oci-archive:{tmp_path / 'bad.tar'}", f"oci:{tmp_path / 'x'}", None)
    _tar(tmp_path / "nolayout.tar", {"index.json": src / "index.json"})
    with pytest.raises(StoreError, match=r"nolayout\.tar:oci-layout: missing"):
        await _copy(f"oci-archive:{tmp_path / 'nolayout.tar'}", f"oci:{tmp_path / 'x'}", None)


# ---------------------------------------------------------------- docker-archive: reading


async def test_classic_docker_archive_is_synthesised(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    archive = _docker_save(src, {"a": ["foo:v1"], "b": ["docker.io/org/bar:v2", "org/bar:latest"]},
                           tmp_path / "d.tar")
    store = DockerArchiveStore(archive)
    await store.open()
    try:
        assert store.synthesized
        assert await store.list_tags() == ["docker.io/org/bar:v2", "foo:v1", "org/bar:latest"]
        with pytest.raises(StoreError, match=r"holds 2 images \(foo:v1, docker.io/org/bar:v2, org/bar:latest\)"):
            await store.default_identifier()
        manifest = await store.resolve("docker.io/library/foo:v1")  # normalised names match
        assert manifest.media_type == DOCKER_MANIFEST
        assert (await store.resolve("@0")).digest == manifest.digest == await store.head("foo:v1")
        assert (await store.resolve("org/bar:v2")).digest != manifest.digest
        original = json.loads(read_blob(src, layout_contents(src, "a").root.digest))
        assert manifest.config is not None and str(manifest.config.digest) == original["config"]["digest"]
        assert manifest.config.media_type == DOCKER_CONFIG
        for ours, theirs in zip(manifest.layers, original["layers"], strict=True):
            assert ours.media_type == DOCKER_LAYER
            data = b"".join([c async for c in store.open_blob(ours)])
            assert Digest.of(data) == ours.digest and len(data) == ours.size
            assert gzip.decompress(data) == gzip.decompress(blob_path(src, theirs["digest"]).read_bytes())
        with pytest.raises(StoreError, match=r"no image tagged 'nope:1' \(RepoTags: foo:v1, "):
            await store.resolve("nope:1")
        with pytest.raises(StoreError, match="no image @5"):
            await store.resolve("@5")
        assert await store.head("nope:1") is None
    finally:
        await store.aclose()
    source_digest, digest = await _copy(f"docker-archive:{archive}:foo:v1", f"oci:{tmp_path / 'out'}:v1", "v1")
    assert source_digest == digest == str(manifest.digest)


async def test_gzip_and_symlinked_layers_keep_their_bytes(
    source: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    src, _ = source
    archive = _docker_save(src, {"a": ["foo:v1"]}, tmp_path / "d.tar", compressed=True, symlinks=True)
    async with open_local(LocalLocation.parse(f"docker-archive:{archive}"), writable=False) as store:
        assert await store.default_identifier() == "@0"
        manifest = await store.resolve("@0")
    original = json.loads(read_blob(src, layout_contents(src, "a").root.digest))
    assert [str(layer.digest) for layer in manifest.layers] == [layer["digest"] for layer in original["layers"]]


async def test_docker_archive_with_oci_layout_keeps_digests(
    source: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """docker >= 25 writes an OCI layout plus manifest.json pointing into blobs/ (moby #44598)."""
    src, digests = source
    manifest = json.loads(read_blob(src, digests["a"]))
    files: dict[str, bytes | Path] = {"oci-layout": src / "oci-layout", "index.json": src / "index.json"}
    for digest in layout_contents(src, "a").all_digests:
        files[f"blobs/sha256/{digest.split(':')[1]}"] = blob_path(src, digest)
    entry = {"Config": f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}", "RepoTags": ["app:1"],
             "Layers": [f"blobs/sha256/{layer['digest'].split(':')[1]}" for layer in manifest["layers"]]}
    files["manifest.json"] = json.dumps([entry]).encode()
    archive = _tar(tmp_path / "d.tar", files)
    store = DockerArchiveStore(archive)
    await store.open()
    try:
        assert not store.synthesized
        assert str((await store.resolve("app:1")).digest) == digests["a"]
        assert not store.synthesized
    finally:
        await store.aclose()
    assert await _copy(f"docker-archive:{archive}:app:1", f"oci:{tmp_path / 'out'}:a", "a") == (digests["a"],) * 2


async def test_bad_docker_archives(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    _tar(tmp_path / "empty.tar", {"x": b"1"})
    _tar(tmp_path / "badjson.tar", {"manifest.json": b"{"})
    _tar(tmp_path / "shape.tar", {"manifest.json": b'[{"Config": 1}]'})
    good = _docker_save(src, {"a": ["foo:v1"]}, tmp_path / "good.tar")
    with tarfile.open(good) as tar:
        layer = next(m.name for m in tar.getmembers() if m.name.endswith("layer.tar"))
    names = {n: c for n, c in _read_all(good).items() if n != layer}
    _tar(tmp_path / "nolayer.tar", names)
    for name, message in [("empty.tar", "empty.tar:manifest.json: missing"),
                          ("badjson.tar", "badjson.tar:manifest.json: not valid JSON"),
                          ("shape.tar", "shape.tar:manifest.json: entry 0 needs Config"),
                          ("nolayer.tar", f"nolayer.tar:{layer}: missing from the archive")]:
        with pytest.raises(StoreError, match=message):
            await _copy(f"docker-archive:{tmp_path / name}", f"oci:{tmp_path / 'x'}", None)


def _read_all(path: Path) -> dict[str, bytes | Path]:
    with tarfile.open(path) as tar:
        return {m.name: f.read() for m in tar.getmembers() if m.isreg() and (f := tar.extractfile(m))}


# ---------------------------------------------------------------- docker-archive: writing


async def test_docker_archive_write_and_read_back(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    archive = tmp_path / "out.tar"
    s, d = LocalLocation.parse(f"oci:{src}"), LocalLocation.parse(f"docker-archive:{archive}:docker.io/org/app:v1")
    async with open_local(s, writable=False) as a, open_local(d, writable=True) as b:
        await copy_image(a, b, "a", target_tag=None)  # the location's ref names it
        await copy_image(a, b, "b", target_tag="v2")  # a bare tag joins the location's repository
        await copy_image(a, b, "multi", target_tag="quay.io/x/y:arm", platforms=[Platform.parse("linux/arm64")])
        assert await b.list_tags() == ["org/app:v1", "org/app:v2", "quay.io/x/y:arm"]
        assert str(await b.head("org/app:v2")) == digests["b"]
    files = _read_all(archive)
    manifest_json = json.loads(files["manifest.json"])
    assert [e["RepoTags"] for e in manifest_json] == [["org/app:v1"], ["org/app:v2"], ["quay.io/x/y:arm"]]
    original = json.loads(read_blob(src, digests["a"]))
    assert manifest_json[0]["Config"] == original["config"]["digest"].split(":")[1] + ".json"
    assert manifest_json[0]["Layers"] == [layer["digest"].split(":")[1] + ".tar" for layer in original["layers"]]
    assert json.loads(files["repositories"]) == {
        "org/app": {"v1": original["layers"][-1]["digest"].split(":")[1],
                    "v2": json.loads(read_blob(src, digests["b"]))["layers"][-1]["digest"].split(":")[1]},
        "quay.io/x/y": {"arm": manifest_json[2]["Layers"][-1].removesuffix(".tar")},
    }
    # Read back: layers are the gzip blobs, so config and layer digests survive (the manifest is new).
    async with open_local(LocalLocation.parse(f"docker-archive:{archive}:org/app:v1"), writable=False) as back:
        manifest = await back.resolve("org/app:v1")
    assert [str(x.digest) for x in manifest.blobs()] == [original["config"]["digest"],
                                                        *(layer["digest"] for layer in original["layers"])]


async def test_docker_archive_refuses_indexes_and_digest_refs(
    source: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    src, _ = source
    with pytest.raises(StoreError, match="multi-platform index; pass --platform"):
        await _copy(f"oci:{src}:multi", f"docker-archive:{tmp_path / 'x.tar'}:a:b", "a:b")
    with pytest.raises(StoreError, match="a destination needs repo:tag"):
        await _copy(f"oci:{src}:a", f"docker-archive:{tmp_path / 'x.tar'}:@0", None)
    # The failed index leaves nothing behind in a store that goes on to write another image.
    s, d = LocalLocation.parse(f"oci:{src}"), LocalLocation.parse(f"docker-archive:{tmp_path / 'y.tar'}:y:1")
    async with open_local(s, writable=False) as a, open_local(d, writable=True) as b:
        with pytest.raises(StoreError, match="--platform"):
            await copy_image(a, b, "multi", target_tag=None)
        await copy_image(a, b, "a", target_tag=None)
    assert [e["RepoTags"] for e in json.loads(_read_all(tmp_path / "y.tar")["manifest.json"])] == [["y:1"]]
    await _copy(f"oci:{src}:a", f"docker-archive:{tmp_path / 'untagged.tar'}", "v1")  # no repository: no RepoTags
    assert json.loads(_read_all(tmp_path / "untagged.tar")["manifest.json"])[0]["RepoTags"] == []
    assert not (tmp_path / "x.tar").exists()


# ---------------------------------------------------------------- memory


async def test_big_layer_through_archives_in_bounded_memory(tmp_path: Path, image_cache_dir: Path) -> None:
    size = 64 * MB
    write_layout(tmp_path / "big", {"big": ImageSpec(layers=[LayerSpec(size, "big-64m")])}, cache_dir=image_cache_dir)
    manifest = json.loads(read_blob(tmp_path / "big", layout_contents(tmp_path / "big", "big").root.digest))
    archive = _docker_save(tmp_path / "big", {"big": ["big:1"]}, tmp_path / "big-docker.tar")
    peaks = {}
    for name, steps in {
        "oci-archive": [(f"oci:{tmp_path / 'big'}:big", f"oci-archive:{tmp_path / 'big.tar'}:big", "big"),
                        (f"oci-archive:{tmp_path / 'big.tar'}:big", f"oci:{tmp_path / 'back'}:big", "big")],
        "docker-archive": [(f"docker-archive:{archive}", f"oci:{tmp_path / 'back2'}:big", "big")],
    }.items():
        tracemalloc.start()
        try:
            for src, dst, tag in steps:
                await _copy(src, dst, tag)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert all(p < 8 * MB for p in peaks.values()), {k: f"{v / MB:.1f} MiB" for k, v in peaks.items()}
    assert layout_contents(tmp_path / "back", "big").all_digests == layout_contents(tmp_path / "big", "big").all_digests
    assert index_tar(tmp_path / "big.tar")[f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"].size \
        == manifest["layers"][0]["size"]
