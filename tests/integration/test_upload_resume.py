"""Resumable uploads: continue a broken upload from the offset the registry holds.

Against :class:`servers.spec_registry.SpecRegistry` (keeps the bytes of a cut PATCH, as the spec
allows) a cut upload resumes and re-sends little; against distribution 2.8.2 (cancels the session,
docs/registry-quirks.md) it restarts with a fresh session. A run journal (``UploadJournal``) lets a new run
resume what a killed one left open. The engine's opener keeps verifying the whole blob on resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import regcopy
from regcopy.digest import Digest
from regcopy.engine import blob_opener, copy_image
from regcopy.manifest import Descriptor
from regcopy.reference import LocalLocation, Repository
from regcopy.registry import blobs
from regcopy.stores import UploadPolicy
from regcopy.stores.local import open_local
from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.images import layout_contents, read_blob
from servers.registry import RegistryServer
from servers.spec_registry import SpecRegistry

FAST = {"backoff": 0.05, "backoff_max": 0.2}
UNKNOWN = json.dumps({"errors": [{"code": "BLOB_UPLOAD_UNKNOWN", "message": "upload unknown"}]}).encode()


@pytest.fixture
def spec() -> Iterator[SpecRegistry]:
    with SpecRegistry() as registry:
        yield registry


@pytest.fixture
def spec_proxy(spec: SpecRegistry) -> Iterator[FaultyProxy]:
    with FaultyProxy(spec.url) as proxy:
        yield proxy


def client(upload: UploadPolicy | None = None) -> regcopy.Client:
    return regcopy.Client(default_settings=regcopy.RegistrySettings(scheme="http", **FAST),
                          credentials=regcopy.StaticCredentials({}), upload=upload)


def big_blob(layout: Path) -> tuple[str, int]:
    """The digest and size of the sample "big" image's 3 MiB layer (the only blob over 1 MiB)."""
    found = max(layout_contents(layout, "big").blobs.values(), key=lambda d: d.size)
    return found.digest, found.size


def total_blob_bytes(layout: Path) -> int:
    return sum(d.size for d in layout_contents(layout, "big").blobs.values())


async def read_back(host: str, tag: str, tmp_path: Path) -> str:
    """Copy ``host/dst/app:tag`` into a layout (every digest verified on the way); its root digest."""
    async with client() as c:
        result = await c.copy(f"{host}/dst/app:{tag}", f"oci:{tmp_path / 'back'}:{tag}")
    return result.digest


def posts(proxy: FaultyProxy) -> int:
    return len([r for r in proxy.requests if r.method == "POST" and "/blobs/uploads/" in r.path])


# ---------------------------------------------------------------------------------- spec registry


@pytest.mark.parametrize("source", ["layout", "registry"])
async def test_cut_stream_upload_resumes_from_the_committed_offset(
    source: str, spec: SpecRegistry, spec_proxy: FaultyProxy, sample_layout: tuple[Path, dict[str, str]],
    registry_factory: Any, seed: Any, tmp_path: Path,
) -> None:
    layout, digests = sample_layout
    digest, size = big_blob(layout)
    if source == "registry":  # the rest is re-read with Range (RangeReader)
        src = registry_factory("http")
        seed(src, "big", "src/app")
        ref = f"{src.host}/src/app:big"
    else:  # no Range in a layout: the engine skips the prefix it re-reads
        ref = f"oci:{layout}:big"
    # Blobs up to 1 MiB go monolithic: the only PATCH is the big layer's, cut at 90 %.
    fault = spec_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=size * 9 // 10))
    async with client() as c:
        result = await c.copy(ref, f"{spec_proxy.host}/dst/app:v1", jobs=1)
        stats = c.upload_policy(spec_proxy.host).stats
    assert fault.hits == 1
    assert result.digest == digests["big"] and result.blobs_uploaded == 3
    assert (stats.resumed, stats.restarted, stats.sessions) == (1, 0, 3)
    # What the registry received for the blob: the 90 % before the cut and the rest, nothing twice.
    assert size <= spec.blob_bytes(digest) < size * 1.15
    assert spec.upload_bytes() < total_blob_bytes(layout) + size * 0.15
    status = [r for r in spec_proxy.requests if r.method == "GET" and "/blobs/uploads/" in r.path]
    assert [r.status for r in status] == [204]
    assert posts(spec_proxy) == 3  # no fresh session
    assert spec.open_sessions() == {}
    assert hashlib.sha256(spec.blob(digest)).hexdigest() == digest.split(":")[1]
    assert await read_back(spec.host, "v1", tmp_path) == digests["big"]
    skopeo.verify(spec, "dst/app:v1", digests["big"])  # type: ignore[arg-type]  # an independent client


async def test_cut_chunked_upload_resumes_mid_chunk(
    spec: SpecRegistry, spec_proxy: FaultyProxy, sample_layout: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    layout, digests = sample_layout
    digest, size = big_blob(layout)
    mib = 1 << 20
    # The third 1 MiB chunk of the 3 MiB layer is cut after 500 kB: the registry keeps up to 2 MiB + 500 kB.
    fault = spec_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", skip=2, request_reset_after_bytes=500_000))
    async with client(UploadPolicy(strategy="chunked", chunk_size=mib)) as c:
        await c.copy(f"oci:{layout}:big", f"{spec_proxy.host}/dst/app:v1", jobs=1)
        stats = c.upload_policy(spec_proxy.host).stats
    assert fault.hits == 1
    assert (stats.resumed, stats.restarted) == (1, 0)
    assert size <= spec.blob_bytes(digest) < size * 1.15
    patches = [r for r in spec_proxy.requests if r.method == "PATCH"]
    assert [(r.status, r.request_bytes) for r in patches] == [(202, mib), (202, mib), (None, 500_000)]
    # The rest (less than a chunk) rode on the closing PUT, from the offset the registry held.
    put = next(r for r in spec_proxy.requests if r.method == "PUT" and "/blobs/uploads/" in r.path)
    assert put.status == 201 and size - 2 * mib - 500_000 <= put.request_bytes < size - 2 * mib
    assert spec.open_sessions() == {}
    assert await read_back(spec.host, "v1", tmp_path) == digests["big"]


async def test_status_saying_unknown_starts_a_fresh_session(
    spec: SpecRegistry, spec_proxy: FaultyProxy, sample_layout: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    layout, digests = sample_layout
    digest, size = big_blob(layout)
    spec_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=size // 2))
    gone = spec_proxy.add(Fault(method="GET", path=r"/blobs/uploads/", status=404, body=UNKNOWN,
                                headers={"Content-Type": "application/json"}))
    async with client() as c:
        await c.copy(f"oci:{layout}:big", f"{spec_proxy.host}/dst/app:v1", jobs=1)
        stats = c.upload_policy(spec_proxy.host).stats
    assert gone.hits == 1
    assert (stats.resumed, stats.restarted, stats.sessions) == (0, 1, 4)
    assert posts(spec_proxy) == 4
    assert spec.blob_bytes(digest) == size  # the fresh session alone was committed
    assert await read_back(spec.host, "v1", tmp_path) == digests["big"]


async def test_a_wrong_offset_on_resume_is_asked_again(
    spec: SpecRegistry, spec_proxy: FaultyProxy, sample_layout: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """A status claiming less than the registry holds gets a 416 on the resumed PATCH (spec), not a
    corrupt blob: the store asks again and continues where the registry really stands."""
    layout, digests = sample_layout
    digest, size = big_blob(layout)
    spec_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=size * 9 // 10))
    lie = spec_proxy.add(Fault(method="GET", path=r"/blobs/uploads/", set_headers={"Range": "0-1048575"}))
    async with client() as c:
        await c.copy(f"oci:{layout}:big", f"{spec_proxy.host}/dst/app:v1", jobs=1)
        stats = c.upload_policy(spec_proxy.host).stats
    assert lie.hits == 1
    assert stats.resumed == 2 and stats.restarted == 0
    assert [r.status for r in spec_proxy.requests if r.method == "PATCH"][1:] == [416, 202]
    assert size <= spec.blob_bytes(digest) < size * 1.15
    assert await read_back(spec.host, "v1", tmp_path) == digests["big"]


# ---------------------------------------------------------------------------------- distribution 2.8.2


async def test_cut_upload_on_2_8_2_restarts_fresh_after_the_status_says_gone(
    http_registry: RegistryServer, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    layout, digests = sample_layout
    _, size = big_blob(layout)
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=size * 9 // 10))
        async with client() as c:
            await c.copy(f"oci:{layout}:big", f"{proxy.host}/dst/app:v1", jobs=1)
            stats = c.upload_policy(proxy.host).stats
        status = [r.status for r in proxy.requests if r.method == "GET" and "/blobs/uploads/" in r.path]
    assert status == [404]  # BLOB_UPLOAD_INVALID: 2.8.2 cancelled the session (docs/registry-quirks.md)
    assert (stats.resumed, stats.restarted, stats.sessions) == (0, 1, 4)
    skopeo.verify(http_registry, "dst/app:v1", digests["big"])


# ---------------------------------------------------------------------------------- journal


class MemoryJournal:
    """An UploadJournal in a dict, with a log of the calls."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str, Digest], str] = {}
        self.calls: list[tuple[str, str]] = []

    def session_for(self, storage_id: str, repository: str, digest: Digest) -> str | None:
        return self.sessions.get((storage_id, repository, digest))

    def session_opened(self, storage_id: str, repository: str, digest: Digest, location: str) -> None:
        self.calls.append(("opened", str(digest)))
        self.sessions[storage_id, repository, digest] = location

    def session_moved(self, storage_id: str, repository: str, digest: Digest, location: str) -> None:
        self.calls.append(("moved", str(digest)))
        self.sessions[storage_id, repository, digest] = location

    def session_closed(self, storage_id: str, repository: str, digest: Digest) -> None:
        self.calls.append(("closed", str(digest)))
        self.sessions.pop((storage_id, repository, digest), None)


async def killed_run(host: str, data: bytes, how: str) -> tuple[str, int]:
    """What a SIGKILLed run leaves: an open session holding part of ``data`` and its newest Location.

    ``chunk``: killed after a PATCH of 60 % was answered; ``cut``: killed while a PATCH of the
    whole blob was at 60 % (the Location is the POST's); ``gone``: the session was deleted since.
    """
    async with client() as c:
        t = c.transport(host)
        location, _ = await blobs.upload_start(t, "dst/app")
        part = len(data) * 6 // 10
        if how == "cut":
            async def body() -> AsyncIterator[bytes]:
                yield data

            with pytest.raises(regcopy.TransportError):
                await blobs.upload_stream(t, "dst/app", location, body(), len(data))
        else:
            location, held = await blobs.upload_chunk(t, "dst/app", location, data[:part], 0)
            assert held == part
        if how == "gone":
            assert await blobs.upload_cancel(t, "dst/app", location)
    return location, part


async def resume_run(host: str, layout: Path, journal: MemoryJournal) -> tuple[regcopy.CopyResult, Any]:
    async with client() as c, open_local(LocalLocation.parse(f"oci:{layout}:big"), writable=False) as src:
        dst = c.registry_store(Repository.parse(f"{host}/dst/app"), writable=True)
        dst.journal = journal
        result = await copy_image(src, dst, "big", target_tag="v1", blob_jobs=1)
        return result, c.upload_policy(host).stats


@pytest.mark.parametrize("how", ["chunk", "cut", "gone"])
async def test_a_new_run_resumes_the_session_a_killed_run_left(
    how: str, spec: SpecRegistry, spec_proxy: FaultyProxy, sample_layout: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    layout, digests = sample_layout
    digest, size = big_blob(layout)
    data = read_blob(layout, digest)
    if how == "cut":
        spec_proxy.add(Fault(method="PATCH", path=r"/blobs/uploads/", request_reset_after_bytes=size * 6 // 10))
    location, part = await killed_run(spec_proxy.host, data, how)
    (session_id,) = spec.session_bytes()
    held = spec.open_sessions().get(session_id, 0)
    assert held == (0 if how == "gone" else part) or (how == "cut" and 0 < held <= part)
    journal = MemoryJournal()
    key = (f"registry:{spec_proxy.host}", "dst/app", Digest.parse(digest))
    journal.sessions[key] = location
    result, stats = await resume_run(spec_proxy.host, layout, journal)
    assert result.digest == digests["big"]
    assert journal.sessions == {}  # every session closed
    others = total_blob_bytes(layout) - size
    if how == "gone":
        assert (stats.resumed, stats.sessions) == (0, 3)
        assert stats.bytes_sent == total_blob_bytes(layout)
    else:
        # Only the rest of the big blob was sent, in the session the killed run opened.
        assert (stats.resumed, stats.sessions) == (1, 2)
        assert stats.bytes_sent == others + size - held
        assert spec.session_bytes()[session_id] == size == spec.blob_bytes(digest)
        assert ("opened", digest) not in journal.calls and ("closed", digest) in journal.calls
    assert spec.open_sessions() == {}
    assert await read_back(spec.host, "v1", tmp_path) == digests["big"]


async def test_journal_resume_on_2_8_2_between_requests(
    http_registry: RegistryServer, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    """2.8.2 cannot resume a cut PATCH, but a run killed between requests left a Location whose
    signed offset is current: its status is good and the upload continues there."""
    layout, digests = sample_layout
    digest, _ = big_blob(layout)
    location, part = await killed_run(http_registry.host, read_blob(layout, digest), "chunk")
    journal = MemoryJournal()
    journal.sessions[f"registry:{http_registry.host}", "dst/app", Digest.parse(digest)] = location
    _, stats = await resume_run(http_registry.host, layout, journal)
    assert (stats.resumed, stats.sessions) == (1, 2)
    assert stats.bytes_sent == total_blob_bytes(layout) - part
    assert journal.sessions == {}
    skopeo.verify(http_registry, "dst/app:v1", digests["big"])


@pytest.mark.parametrize("server", ["spec", "2.8.2"])
async def test_journal_hears_of_each_new_location_once(
    server: str, spec: SpecRegistry, registry_factory: Any, sample_layout: tuple[Path, dict[str, str]]
) -> None:
    layout, _ = sample_layout
    digest, size = big_blob(layout)
    host = spec.host if server == "spec" else registry_factory("http").host
    journal = MemoryJournal()
    mib = 1 << 20
    async with client(UploadPolicy(strategy="chunked", chunk_size=mib)) as c, \
            open_local(LocalLocation.parse(f"oci:{layout}:big"), writable=False) as src:
        dst = c.registry_store(Repository.parse(f"{host}/dst/app"), writable=True)
        dst.journal = journal
        await copy_image(src, dst, "big", target_tag="v1")
    mine = [kind for kind, d in journal.calls if d == digest]
    # 2.8.2 signs a new Location into every PATCH answer; the spec registry keeps one per session.
    moves = size // mib if server == "2.8.2" else 0
    assert mine == ["opened", *["moved"] * moves, "closed"]
    assert journal.sessions == {}


# ---------------------------------------------------------------------------------- the engine's opener


class _Source:
    """A source of one blob, optionally serving wrong bytes after an offset, recording what it opened."""

    def __init__(self, data: bytes, *, ranged: bool, corrupt_at: int | None = None) -> None:
        self.data = data
        self.ranged = ranged
        self.corrupt_at = corrupt_at
        self.opened: list[int] = []

    async def _chunks(self, offset: int) -> AsyncIterator[bytes]:
        self.opened.append(offset)
        data = bytearray(self.data)
        if self.corrupt_at is not None:
            data[self.corrupt_at] ^= 1
        for i in range(offset, len(data), 100_000):
            await anyio.lowlevel.checkpoint()
            yield bytes(data[i : i + 100_000])

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        return self._chunks(0)


class _RangedSource(_Source):
    def open_blob_at(self, desc: Descriptor, offset: int) -> AsyncIterator[bytes]:
        return self._chunks(offset)


async def _read(chunks: AsyncIterator[bytes], limit: int | None = None) -> bytes:
    out = bytearray()
    async for chunk in chunks:
        out += chunk
        if limit is not None and len(out) >= limit:
            break
    return bytes(out)


@pytest.mark.parametrize("ranged", [True, False])
async def test_opener_resumes_from_a_checkpoint_and_verifies_the_whole_blob(ranged: bool) -> None:
    data = bytes(range(256)) * 20_000  # 5 MB: checkpoints every 1 MiB
    desc = Descriptor("application/octet-stream", Digest.of(data), len(data))
    source = (_RangedSource if ranged else _Source)(data, ranged=ranged)
    opener = blob_opener(source, "dst", desc, lambda event: None)  # type: ignore[arg-type]
    await _read(opener(), limit=4_500_000)  # a first pass broken at 4.5 MB
    offset = 4_200_000
    assert await _read(opener(offset)) == data[offset:]
    # The second pass started at the last checkpoint before the offset (at most 1 MiB and a chunk
    # back) when the source has Range, else it re-read the stream from 0 (hashing from the checkpoint).
    if ranged:
        assert source.opened[0] == 0 and offset - (1 << 20) - 100_000 <= source.opened[1] <= offset
    else:
        assert source.opened == [0, 0]
    # A resume with no checkpoint of its own (a journal's) re-hashes from 0.
    fresh = blob_opener(source, "dst", desc, lambda event: None)  # type: ignore[arg-type]
    assert await _read(fresh(offset)) == data[offset:]


async def test_opener_on_resume_still_catches_wrong_bytes_before_the_offset() -> None:
    data = bytes(range(256)) * 20_000
    desc = Descriptor("application/octet-stream", Digest.of(data), len(data))
    source = _RangedSource(data, ranged=True, corrupt_at=4_100_000)  # between the checkpoint and the offset
    opener = blob_opener(source, "dst", desc, lambda event: None)  # type: ignore[arg-type]
    with pytest.raises(regcopy.DigestMismatch):
        await _read(opener(4_200_000))
