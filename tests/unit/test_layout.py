"""Tests for :mod:`regcopy.stores.layout`: OCI layouts through the engine, atomic writes, corrupt input."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from regcopy.digest import Digest
from regcopy.engine import copy_image
from regcopy.errors import DigestMismatch, SizeMismatch, StoreError
from regcopy.ledger import BlobLedger
from regcopy.manifest import OCI_LAYER, Descriptor
from regcopy.reference import LocalLocation
from regcopy.stores import layout as layout_mod
from regcopy.stores.layout import REF_NAME, LayoutStore
from regcopy.stores.local import LocalStore, local_identifier, open_local
from servers.images import ImageSpec, IndexSpec, LayerSpec, blob_path, layout_contents, write_layout

KB = 1024
MB = 1024 * KB
BASE = LayerSpec(40 * KB, "base")
IMAGES = {
    "a": ImageSpec(layers=[BASE, LayerSpec(8 * KB, "a")]),
    "b": ImageSpec(layers=[BASE, LayerSpec(9 * KB, "b", "text")], media="docker"),
    "multi": IndexSpec(children=[ImageSpec(layers=[BASE, LayerSpec(3 * KB, "m1")]),
                                 ImageSpec(layers=[LayerSpec(3 * KB, "m2")], arch="arm64", variant="v8")]),
}


@pytest.fixture
def source(tmp_path: Path, image_cache_dir: Path) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    return src, write_layout(src, IMAGES, cache_dir=image_cache_dir)


def _blob_files(layout: Path) -> list[Path]:
    return sorted(p for p in (layout / "blobs").rglob("*") if p.is_file())


async def _copy(src: str, dst: str, tag: str | None, ledger: BlobLedger | None = None) -> str:
    s, d = LocalLocation.parse(src), LocalLocation.parse(dst)
    async with open_local(s, writable=False) as a, open_local(d, writable=True) as b:
        result = await copy_image(a, b, await local_identifier(s, a), target_tag=tag, ledger=ledger)
    assert result.digest == result.source_digest
    return result.digest


async def test_round_trip_keeps_digests_and_bytes(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    for tag in digests:
        assert await _copy(f"oci:{src}:{tag}", f"oci:{tmp_path / 'dst'}:{tag}", tag) == digests[tag]
    dst = tmp_path / "dst"
    for tag in digests:
        assert layout_contents(dst, tag).all_digests == layout_contents(src, tag).all_digests
    for path in _blob_files(dst):  # content-addressed: every file hashes to its name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    assert json.loads((dst / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((dst / "index.json").read_text())
    # Children of the index are reachable from it: only the three roots are top-level entries.
    assert sorted(e["annotations"][REF_NAME] for e in index["manifests"]) == ["a", "b", "multi"]
    assert not list(dst.glob(".regcopy-*"))


async def test_shared_blobs_are_stored_once(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    dst = tmp_path / "dst"
    ledger = BlobLedger()
    await _copy(f"oci:{src}:a", f"oci:{dst}:a", "a", ledger)
    before = {p.name: p.stat().st_ino for p in _blob_files(dst)}
    async with open_local(LocalLocation.parse(f"oci:{src}"), writable=False) as a, \
            open_local(LocalLocation.parse(f"oci:{dst}"), writable=True) as b:
        result = await copy_image(a, b, "b", target_tag="b", ledger=ledger)
    assert result.blobs_skipped == 1  # the shared base layer
    files = _blob_files(dst)
    wanted = set(layout_contents(src, "a").all_digests) | set(layout_contents(src, "b").all_digests)
    assert sorted(f"sha256:{p.name}" for p in files) == sorted(wanted)
    assert all(before[p.name] == p.stat().st_ino for p in files if p.name in before)  # not rewritten


async def test_source_lookup(source: tuple[Path, dict[str, str]]) -> None:
    src, digests = source
    store = LayoutStore(src)
    await store.open()
    assert await store.list_tags() == ["a", "b", "multi"]
    assert str((await store.resolve("a")).digest) == digests["a"]
    assert str((await store.resolve(digests["b"])).digest) == digests["b"]
    assert str(await store.head("multi")) == digests["multi"]
    child = (await store.resolve("multi")).manifests[0]
    assert (await store.get_manifest(child.digest)).digest == child.digest  # children by digest
    assert await store.head(str(child.digest)) == child.digest
    assert await store.head("nope") is None
    with pytest.raises(StoreError, match=r"index.json: no image named 'nope' \(tags: a, b, multi\)"):
        await store.resolve("nope")
    with pytest.raises(StoreError, match="holds 3 images"):
        await store.default_identifier()
    assert store.storage_id == f"layout:{src}" and store.origin is None


async def test_default_identifier_single_image(tmp_path: Path, image_cache_dir: Path) -> None:
    write_layout(tmp_path / "one", {"only": IMAGES["a"]}, cache_dir=image_cache_dir)
    loc = LocalLocation.parse(f"oci:{tmp_path / 'one'}")
    async with open_local(loc, writable=False) as store:
        assert await local_identifier(loc, store) == "only"
    # Untagged (skopeo oci:DIR without a ref): the digest identifies it.
    digest = await _copy(f"oci:{tmp_path / 'one'}", f"oci:{tmp_path / 'untagged'}", None)
    loc = LocalLocation.parse(f"oci:{tmp_path / 'untagged'}")
    async with open_local(loc, writable=False) as store:
        assert await local_identifier(loc, store) == digest
        assert await store.list_tags() == []
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')  # no index.json yet
    async with open_local(LocalLocation.parse(f"oci:{tmp_path / 'empty'}"), writable=True) as store:
        with pytest.raises(StoreError, match="holds no image"):
            await store.default_identifier()


async def test_retag_replaces_entry_and_merges_concurrent_stores(
    source: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    src, digests = source
    dst = tmp_path / "dst"
    await _copy(f"oci:{src}:a", f"oci:{dst}:latest", "latest")
    await _copy(f"oci:{src}:b", f"oci:{dst}:latest", "latest")
    index = json.loads((dst / "index.json").read_text())
    assert [(e["digest"], e["annotations"][REF_NAME]) for e in index["manifests"]] == [(digests["b"], "latest")]
    # Two stores on one layout at once (a sync into a layout): both commits land.
    async with anyio.create_task_group() as tg:
        for tag in ("a", "multi"):
            tg.start_soon(_copy, f"oci:{src}:{tag}", f"oci:{dst}:{tag}", tag)
    tags = sorted(e["annotations"][REF_NAME] for e in json.loads((dst / "index.json").read_text())["manifests"])
    assert tags == ["a", "latest", "multi"]


async def _chunks(*parts: bytes, fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if fail:
        raise OSError("source went away")


def _desc(data: bytes) -> Descriptor:
    return Descriptor(OCI_LAYER, Digest.of(data), len(data))


async def test_failed_put_blob_leaves_nothing(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "dst", writable=True)
    await store.open()
    data = os.urandom(3 * MB)
    desc = _desc(data)
    with pytest.raises(OSError, match="went away"):
        await store.put_blob(desc, lambda: _chunks(data[:MB], data[MB:2 * MB], fail=True))
    with pytest.raises(SizeMismatch):
        await store.put_blob(desc, lambda: _chunks(data[:MB]))
    assert not await store.has_blob(desc)
    assert _blob_files(tmp_path / "dst") == []
    assert not list((tmp_path / "dst").glob(".regcopy-*"))
    assert await store.put_blob(desc, lambda: _chunks(data[:MB], data[MB:])) == len(data)
    assert await store.has_blob(desc)
    await store.aclose()


async def test_cancelled_put_blob_leaves_nothing(tmp_path: Path) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await anyio.lowlevel.checkpoint()

    store = LayoutStore(tmp_path / "dst", writable=True)
    await store.open()
    with anyio.move_on_after(0.2):
        await store.put_blob(_desc(b"never"), endless)
    await store.aclose()
    assert [p for p in (tmp_path / "dst").rglob("*") if p.is_file()] == []


async def test_index_json_is_replaced_atomically(
    source: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = source
    dst = tmp_path / "dst"
    await _copy(f"oci:{src}:a", f"oci:{dst}:a", "a")
    old = (dst / "index.json").read_bytes()
    real_replace = os.replace

    def failing_replace(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        if Path(b).name == "index.json":
            raise OSError("disk full")
        real_replace(a, b)

    monkeypatch.setattr(layout_mod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        await _copy(f"oci:{src}:b", f"oci:{dst}:b", "b")
    assert (dst / "index.json").read_bytes() == old  # the old index, whole
    assert not list(dst.glob(".regcopy-*"))  # its temp file was removed
    monkeypatch.undo()
    await _copy(f"oci:{src}:b", f"oci:{dst}:b", "b")
    assert len(json.loads((dst / "index.json").read_text())["manifests"]) == 2


async def test_read_only_store_refuses_writes(source: tuple[Path, dict[str, str]]) -> None:
    src, _ = source
    async with open_local(LocalLocation.parse(f"oci:{src}"), writable=False) as store:
        with pytest.raises(StoreError, match="read-only"):
            await store.put_blob(_desc(b"x"), lambda: _chunks(b"x"))
        with pytest.raises(StoreError, match="read-only"):
            await store.commit()


# ---------------------------------------------------------------- corrupt layouts


async def _open_and_copy(src: Path, tag: str, tmp_path: Path) -> None:
    await _copy(f"oci:{src}:{tag}", f"oci:{tmp_path / 'out'}:{tag}", tag)


async def test_missing_oci_layout(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, _ = source
    (src / "oci-layout").unlink()
    with pytest.raises(StoreError, match=f"{src / 'oci-layout'}: missing, .* not an OCI image layout"):
        await _open_and_copy(src, "a", tmp_path)
    with pytest.raises(StoreError, match="oci-layout: missing"):
        await _open_and_copy(tmp_path / "does-not-exist", "a", tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"[]", "must be a JSON object"),
     (b'{"manifests": {}}', "'manifests' must be a list"),
     (b'{"manifests": [{"digest": "sha256:x", "size": 1}]}', "manifests\\[0\\]")],
)
async def test_bad_index_json(
    source: tuple[Path, dict[str, str]], tmp_path: Path, content: bytes, message: str
) -> None:
    src, _ = source
    (src / "index.json").write_bytes(content)
    with pytest.raises(StoreError, match=f"{src / 'index.json'}: .*{message}"):
        await _open_and_copy(src, "a", tmp_path)
    # A destination whose index.json is corrupt is refused too, before anything is written.
    with pytest.raises(StoreError, match=r"index\.json"):
        async with open_local(LocalLocation.parse(f"oci:{src}"), writable=True):
            pass


async def test_missing_and_wrong_size_blobs(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    contents = layout_contents(src, "a")
    layer = next(d for d in contents.blobs.values() if d.media_type == OCI_LAYER)
    path = blob_path(src, layer.digest)
    data = path.read_bytes()
    path.write_bytes(data + b"x")
    with pytest.raises(StoreError, match=f"{path}: {layer.size + 1} bytes, the descriptor says {layer.size}"):
        await _open_and_copy(src, "a", tmp_path)
    path.unlink()
    with pytest.raises(StoreError, match=f"{path}: blob missing"):
        await _open_and_copy(src, "a", tmp_path)
    manifest = blob_path(src, digests["a"])
    manifest.unlink()
    with pytest.raises(StoreError, match=f"{manifest}: missing"):
        await _open_and_copy(src, "a", tmp_path)


async def test_corrupt_manifest_and_blob_content(source: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, digests = source
    shared = layout_contents(src, "a").blobs
    manifest = blob_path(src, digests["a"])
    data = bytearray(manifest.read_bytes())
    data[-2:] = b" }"  # same size, different bytes
    manifest.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"{manifest}: .*digest"):
        await _open_and_copy(src, "a", tmp_path)
    # A layer of the right size but wrong content: the engine's verification catches it.
    layer = next(d for d in layout_contents(src, "b").blobs.values() if "rootfs" in d.media_type
                 and d.digest not in shared)
    path = blob_path(src, layer.digest)
    path.write_bytes(b"\0" * layer.size)
    with pytest.raises(DigestMismatch):
        await _open_and_copy(src, "b", tmp_path)
    assert not (tmp_path / "out" / "blobs" / "sha256" / layer.digest.split(":")[1]).exists()


def test_store_satisfies_the_protocols(tmp_path: Path) -> None:
    assert isinstance(LayoutStore(tmp_path), LocalStore)


# ---------------------------------------------------------------- memory


async def test_big_layer_streams_in_bounded_memory(tmp_path: Path, image_cache_dir: Path) -> None:
    size = 64 * MB
    write_layout(tmp_path / "big", {"big": ImageSpec(layers=[LayerSpec(size, "big-64m")])}, cache_dir=image_cache_dir)
    tracemalloc.start()
    try:
        await _copy(f"oci:{tmp_path / 'big'}:big", f"oci:{tmp_path / 'copy'}:big", "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB while copying a {size // MB} MiB layer"
    assert layout_contents(tmp_path / "copy", "big").all_digests == layout_contents(tmp_path / "big", "big").all_digests


async def test_index_json_waits_for_another_process_committing_to_the_same_layout(tmp_path: Path) -> None:
    """Two processes merging index.json at once would lose one's entries: a commit takes a flock on the
    layout directory, so it waits while another process (a real child here) holds it."""
    import sys

    src = tmp_path / "src"  # its own blobs: tests above corrupt blobs hard-linked from the shared cache
    write_layout(src, {t: ImageSpec(layers=[LayerSpec(4 * KB, f"lock-{t}")]) for t in ("a", "b")})
    dst = tmp_path / "dst"
    await _copy(f"oci:{src}:a", f"oci:{dst}:a", "a")
    hold = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('held', flush=True); sys.stdin.read()")
    async with await anyio.open_process([sys.executable, "-c", hold, str(dst)]) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert (await holder.stdout.receive()).startswith(b"held")
        done = anyio.Event()

        async def commit_b() -> None:
            await _copy(f"oci:{src}:b", f"oci:{dst}:b", "b")
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(commit_b)
            with anyio.move_on_after(1.5):
                await done.wait()
            assert not done.is_set()  # blocked on the other process's lock
            entries = json.loads((dst / "index.json").read_text())["manifests"]
            assert [e["annotations"][REF_NAME] for e in entries] == ["a"]
            await holder.stdin.aclose()  # the other process exits, releasing its lock
            await holder.wait()
    names = sorted(e["annotations"][REF_NAME] for e in json.loads((dst / "index.json").read_text())["manifests"])
    assert names == ["a", "b"]
