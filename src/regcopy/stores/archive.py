"""Image archives: ``oci-archive`` (a tar of an OCI layout) and ``docker-archive`` (``docker save``).

Owns tar access without extraction and both archive formats. Reading indexes the tar once in a
worker thread (member → data offset and size, symlinks and hard links resolved) and serves each
file as a byte range of the uncompressed tar, so reading one image never unpacks the archive.
Writing spools blobs into a :class:`LayoutStore` in a temp directory beside the target (bounded
memory) and on :meth:`commit` writes the whole tar sequentially to a temp file renamed into place,
so a reader never sees a half-written archive; the target is replaced, as skopeo does. The spool and
the partial tar are locked by their writer while they exist, and a writer's ``open`` first removes
this archive's leftovers that no live process holds (:mod:`regcopy.stores.scratch`). A cancelled
commit stops between 1 MiB pieces and removes its partial tar: the old archive stays as it was.

A docker-archive is read through its OCI layout when it has one (docker ≥ 25 writes ``index.json``
and ``blobs/`` besides ``manifest.json``; digests preserved). A classic archive has no manifest, so
one is synthesised (Docker schema 2, config bytes verbatim, layers gzip-compressed once into temp
files unless already gzip): those digests are new, and :attr:`DockerArchiveStore.synthesized` says so.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import anyio

from regcopy.digest import Digest, Hasher
from regcopy.errors import InvalidReference, StoreError
from regcopy.manifest import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, Descriptor, Manifest
from regcopy.reference import Reference
from regcopy.stores.base import BlobOpener, IndexOutcome, ReferrerList, close_stream
from regcopy.stores.layout import CHUNK, LayoutReader, LayoutStore, blob_name, fsync_dir
from regcopy.stores.referrers import LayoutSubjects, layout_referrers
from regcopy.stores.scratch import Claim, ScratchArea

__all__ = ("DockerArchiveStore", "OciArchiveStore", "TarFiles", "TarMember", "index_tar", "write_tar")

log = logging.getLogger(__name__)

GZIP_MAGIC: Final = b"\x1f\x8b"
GZIP_LEVEL: Final = 6  # what docker and c/image use (Go's gzip.DefaultCompression)
MAX_CONFIG: Final = 16 * 1024 * 1024
MAX_METADATA: Final = 16 * 1024 * 1024
LAYER_JOBS: Final = 4


@dataclass(frozen=True, slots=True)
class TarMember:
    """Where a regular file's data lies in an uncompressed tar."""

    offset: int
    size: int


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def index_tar(path: Path) -> dict[str, TarMember]:
    """Index a tar's regular files by normalised name, links resolved (blocking: run in a thread).

    :raises StoreError: missing, compressed, not a tar, or truncated (a member or the end marker cut off)
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; tarfile does not own it
    except OSError as exc:
        raise StoreError(f"{path}: cannot open archive ({exc.strerror})") from exc
    with f:
        if f.read(2) == GZIP_MAGIC:
            raise StoreError(f"{path}: the archive is gzip-compressed; decompress it first (gunzip)")
        f.seek(0)
        files, links, end = _scan(f, path)
        size = os.fstat(f.fileno()).st_size
        for name, member in files.items():
            if member.offset + member.size > size:
                raise StoreError(f"{path}: truncated archive ({name} ends past the end of the file)")
        # Every tar writer ends with zero blocks (POSIX: two 512-byte blocks); a cut exactly between
        # members leaves a well-formed prefix that only this check catches.
        f.seek(end)
        marker = f.read(512)
        if len(marker) < 512 or marker.strip(b"\0"):
            raise StoreError(f"{path}: truncated archive (no end-of-archive marker after the last member)")
    for name in links:
        target = _follow(name, files, links)
        if target is not None:
            files[name] = target
    return files


def _scan(f: IO[bytes], path: Path) -> tuple[dict[str, TarMember], dict[str, str], int]:
    files: dict[str, TarMember] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:  # headers only: iteration seeks over the data
                name = _norm(m.name)
                if m.isreg():
                    files[name] = TarMember(m.offset_data, m.size)
                    links.pop(name, None)
                elif m.issym():
                    links[name] = _norm(posixpath.join(posixpath.dirname(name), m.linkname))
                elif m.islnk():
                    links[name] = _norm(m.linkname)
            end = tar.offset
    except (tarfile.TarError, EOFError) as exc:
        if "unexpected end of data" in str(exc):  # tarfile's check that the previous member's data is whole
            raise StoreError(f"{path}: truncated archive (a member's data is cut off)") from exc
        raise StoreError(f"{path}: not a readable tar archive ({exc})") from exc
    return files, links, end


def _follow(name: str, files: dict[str, TarMember], links: dict[str, str]) -> TarMember | None:
    for _ in range(16):  # bounded: a link loop resolves to nothing
        name = links.get(name, name)
        if name in files:
            return files[name]
        if name not in links:
            return None
    return None


def _read_range(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise StoreError(f"{path}: truncated archive (the file shrank while reading)")
    return data


async def _range_chunks(path: Path, offset: int, size: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(offset)
        left = size
        while left:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                raise StoreError(f"{path}: truncated archive (the file shrank while reading)")
            left -= len(chunk)
            yield chunk


class TarFiles:
    """:class:`regcopy.stores.layout.LayoutFiles` over an indexed tar: files are byte ranges of it."""

    def __init__(self, path: Path, members: dict[str, TarMember]) -> None:
        self.path = path
        self.members = members

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    async def size(self, name: str) -> int | None:
        member = self.members.get(_norm(name))
        return None if member is None else member.size

    def member(self, name: str) -> TarMember:
        """The member ``name``. :raises StoreError: not in the archive"""
        member = self.members.get(_norm(name))
        if member is None:
            raise StoreError(f"{self.where(name)}: missing from the archive")
        return member

    async def read(self, name: str, limit: int) -> bytes:
        member = self.member(name)
        if member.size > limit:
            raise StoreError(f"{self.where(name)}: {member.size} bytes is more than the {limit}-byte limit")
        return await anyio.to_thread.run_sync(_read_range, self.path, member.offset, member.size)

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        member = self.member(name)
        return _range_chunks(self.path, member.offset, member.size)


TarEntry = tuple[str, Path | bytes | None]
"""An archive entry to write: name and a file to copy, literal bytes, or None for a directory."""


def write_tar(target: Path, entries: Sequence[TarEntry], checkpoint: Callable[[], None] = lambda: None) -> None:
    """Write ``entries`` as an uncompressed tar to a temp file beside ``target``, then rename (blocking).

    Headers are pinned (mtime 0, root owner, 0644/0755) so equal content gives equal archives.

    :param checkpoint: called before every 1 MiB piece; what it raises (a cancellation) stops the
        write and removes the temp file, leaving ``target`` untouched
    """
    claim = ScratchArea.beside(target).new_file()
    try:
        with os.fdopen(os.dup(claim.fd), "wb") as out:
            with tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
                for name, content in entries:
                    checkpoint()
                    _add(tar, name, content, checkpoint)
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(claim.path, target)
        fsync_dir(target.parent)
    except BaseException:
        claim.discard()
        raise
    claim.close()


def _add(tar: tarfile.TarFile, name: str, content: Path | bytes | None, checkpoint: Callable[[], None]) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    if content is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    elif isinstance(content, bytes):
        info.size, info.mode = len(content), 0o644
        tar.addfile(info, _BytesReader(content))
    else:
        info.size, info.mode = content.stat().st_size, 0o644
        with open(content, "rb") as f:
            tar.addfile(info, _Checked(f, checkpoint))


class _Checked:
    """A file object whose every read first calls ``checkpoint`` (tarfile copies in CHUNK reads)."""

    def __init__(self, f: IO[bytes], checkpoint: Callable[[], None]) -> None:
        self._f = f
        self._checkpoint = checkpoint

    def read(self, n: int = -1) -> bytes:
        self._checkpoint()
        return self._f.read(n)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) if n < 0 else n
        out, self._data = bytes(self._data[:n]), self._data[n:]
        return out


class _Archive:
    """What both archive stores share: identity, and a blob spool when writing."""

    transport: str = ""
    synthesized: bool = False
    """True when the manifest last resolved was built by regcopy (a classic docker-archive): new digests."""

    def __init__(self, path: str | os.PathLike[str], ref: str | None, *, writable: bool) -> None:
        self._display = os.fspath(path)
        self.path = Path(os.path.abspath(path))
        self.ref = ref
        self.writable = writable
        self._spool: LayoutStore | None = None
        self._spool_claim: Claim | None = None

    async def _open_spool(self) -> LayoutStore:
        """Remove this archive's leftovers no live process holds, then make (and lock) a spool."""
        scratch = ScratchArea.beside(self.path)

        def make() -> Claim:
            try:
                scratch.sweep()
                return scratch.new_dir()
            except OSError as exc:
                raise StoreError(f"{self.path.parent}: cannot write beside the archive ({exc.strerror})") from exc

        self._spool_claim = await anyio.to_thread.run_sync(make)
        spool = LayoutStore(self._spool_claim.path, writable=True, exclusive=True)
        self._spool = spool
        await spool.open()
        return spool

    async def aclose(self) -> None:
        """Remove the spool and temp files; an archive that was never committed leaves nothing behind."""
        spool, self._spool = self._spool, None
        claim, self._spool_claim = self._spool_claim, None
        with anyio.CancelScope(shield=True):
            if spool is not None:
                await spool.aclose()
            if claim is not None:
                await anyio.to_thread.run_sync(claim.discard)

    @property
    def name(self) -> str:
        return f"{self.transport}:{self._display}"

    @property
    def origin(self) -> None:
        return None

    @property
    def served_by(self) -> None:
        return None

    @property
    def storage_id(self) -> str:
        # A writer's blobs live in its own spool until commit: another store on the same path does
        # not hold them, so the engine's ledger must not dedup across the two.
        suffix = f"#{self._spool.root.name}" if self._spool is not None else ""
        return f"{self.transport}:{self.path}{suffix}"

    @property
    def repository(self) -> str:
        return self.ref or ""

    @property
    def shares_blobs(self) -> bool:
        return True  # one spool layout for every image written

    def _writer(self) -> LayoutStore:
        if self._spool is None:
            raise StoreError(f"{self.name} was opened read-only")
        return self._spool

    async def has_blob(self, desc: Descriptor) -> bool:
        return await self._writer().has_blob(desc)

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        return await self._writer().put_blob(desc, opener)


class OciArchiveStore(_Archive):
    """An ``oci-archive:`` tar; reading serves byte ranges of it, writing replaces it on commit.

    :param path: the archive file
    :param ref: the image name of the location (default identifier when reading)
    :param writable: open for writing (a new archive; an existing file is replaced on commit)
    """

    transport = "oci-archive"

    def __init__(self, path: str | os.PathLike[str], ref: str | None = None, *, writable: bool = False) -> None:
        super().__init__(path, ref, writable=writable)
        self._reader: LayoutReader | None = None
        self._subjects: LayoutSubjects = {}

    async def open(self) -> None:
        """Index the archive (reading) or create the spool (writing). :raises StoreError: unreadable"""
        if self.writable:
            await self._open_spool()
            return
        members = await anyio.to_thread.run_sync(index_tar, self.path)
        reader = LayoutReader(TarFiles(self.path, members), self.name)
        await reader.load()
        self._reader = reader

    def _source(self) -> LayoutReader:
        return self._reader if self._reader is not None else self._writer().reader

    async def default_identifier(self) -> str:
        """The location's ref, else the only image of the archive."""
        return self.ref if self.ref is not None else self._source().default_ref()

    async def head(self, ref: str) -> Digest | None:
        return await self._source().head(ref)

    async def resolve(self, ref: str) -> Manifest:
        return await self._source().resolve(ref)

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await self._source().manifest(digest)

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        return self._source().open_blob(desc)

    async def list_tags(self) -> list[str]:
        return self._source().tags()

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        await self._writer().put_manifest(manifest, tag)

    @property
    def keeps_referrers(self) -> bool:
        return True

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = (), path: str = "") -> ReferrerList:
        """As a layout keeps them (:func:`~regcopy.stores.referrers.layout_referrers`)."""
        return await layout_referrers(self._source(), subject, path=path, artifact_types=artifact_types,
                                      seen=self._subjects)

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        """Nothing to do: the spooled layout keeps them as untagged entries."""
        return IndexOutcome("layout")

    async def commit(self) -> None:
        """Write the spooled layout as the archive: oci-layout, index.json, then blobs (sequential)."""
        spool = self._writer()
        await spool.commit()
        entries = await anyio.to_thread.run_sync(_layout_entries, spool.root)
        await anyio.to_thread.run_sync(write_tar, self.path, entries, anyio.from_thread.check_cancelled)


def _layout_entries(root: Path) -> list[TarEntry]:
    entries: list[TarEntry] = [("oci-layout", root / "oci-layout"), ("index.json", root / "index.json"),
                               ("blobs/", None)]
    blobs = root / "blobs"
    for alg in sorted(p for p in blobs.iterdir() if p.is_dir()) if blobs.is_dir() else []:
        entries.append((f"blobs/{alg.name}/", None))
        entries.extend((f"blobs/{alg.name}/{p.name}", p) for p in sorted(alg.iterdir()) if p.is_file())
    return entries


@dataclass(frozen=True, slots=True)
class _DockerEntry:
    """One ``manifest.json`` entry of a docker-archive."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def _parse_docker_manifest(data: bytes, where: str) -> list[_DockerEntry]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StoreError(f"{where}: not valid JSON ({str(exc)[:120]})") from exc
    if not isinstance(obj, list):
        raise StoreError(f"{where}: must be a JSON list")
    out = []
    for i, item in enumerate(obj):
        config = item.get("Config") if isinstance(item, dict) else None
        tags = (item.get("RepoTags") or []) if isinstance(item, dict) else None
        layers = item.get("Layers") if isinstance(item, dict) else None
        if not isinstance(config, str) or not isinstance(tags, list) or not isinstance(layers, list) \
                or not all(isinstance(x, str) for x in (*tags, *layers)):
            raise StoreError(f"{where}: entry {i} needs Config (string), RepoTags and Layers (string lists)")
        out.append(_DockerEntry(config, tuple(tags), tuple(layers)))
    return out


def _normal_tag(text: str) -> str | None:
    """``repo:tag`` in canonical form (registry, library/), or None when not a docker reference."""
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return None
    return None if ref.digest is not None else f"{ref.name}:{ref.tag}"


def _familiar(text: str) -> str:
    """``repo:tag`` as ``docker save`` writes RepoTags (``alpine:3.20``, not ``docker.io/library/…``)."""
    ref = Reference.parse(text)
    if ref.digest is not None:
        raise StoreError(f"docker-archive tags cannot name a digest: {text!r}")
    name = ref.name.removeprefix("docker.io/")
    if name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")
    return f"{name}:{ref.tag}"


_LayerSource = TarMember | Path | bytes


class _HashingFile:
    """A write-only file object that hashes what passes to the real file."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hasher = Hasher()

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _layer_blob(archive: Path, member: TarMember, tmpdir: Path,
                checkpoint: Callable[[], None] = lambda: None) -> tuple[Digest, int, _LayerSource]:
    """A layer as a registry blob: gzip tars keep their bytes, others are compressed into ``tmpdir``.

    Blocking (a worker thread); memory stays at one :data:`CHUNK` whatever the layer size.
    ``checkpoint`` is called before every piece, so a cancellation stops a long layer.
    """
    with open(archive, "rb") as f:
        f.seek(member.offset)
        compressed = f.read(2) == GZIP_MAGIC
        f.seek(member.offset)
        if compressed:
            hasher = Hasher()
            for chunk in _pieces(f, member.size, checkpoint):
                hasher.update(chunk)
            return hasher.digest(), hasher.size, member
        fd, tmp = tempfile.mkstemp(dir=tmpdir, suffix=".tar.gz")
        with os.fdopen(fd, "wb") as out:
            hashing = _HashingFile(out)
            with gzip.GzipFile(filename="", mode="wb", fileobj=hashing,
                               compresslevel=GZIP_LEVEL, mtime=0) as gz:
                for chunk in _pieces(f, member.size, checkpoint):
                    gz.write(chunk)
        return hashing.hasher.digest(), hashing.hasher.size, Path(tmp)


def _pieces(f: IO[bytes], size: int, checkpoint: Callable[[], None]) -> Iterator[bytes]:
    """``size`` bytes of ``f`` in :data:`CHUNK` pieces (fewer if it ends early), each after a checkpoint."""
    left = size
    while left:
        checkpoint()
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            return
        left -= len(chunk)
        yield chunk


@dataclass(slots=True)
class _Written:
    manifest: Manifest
    tags: list[str] = field(default_factory=list)


class DockerArchiveStore(_Archive):
    """A ``docker-archive:`` tar (``docker save`` / ``docker load`` format), single-platform images.

    :param path: the archive file
    :param ref: ``repo:tag`` or ``@N`` selecting an image when reading; the RepoTag when writing
    :param writable: open for writing (a new archive; an existing file is replaced on commit)
    """

    transport = "docker-archive"

    def __init__(self, path: str | os.PathLike[str], ref: str | None = None, *, writable: bool = False) -> None:
        super().__init__(path, ref, writable=writable)
        self._files: TarFiles | None = None
        self._entries: list[_DockerEntry] | None = None
        self._oci: LayoutReader | None = None
        self._resolved: dict[int, Manifest] = {}
        self._manifests: dict[Digest, Manifest] = {}
        self._blobs: dict[Digest, _LayerSource] = {}
        self._layers: dict[str, tuple[Digest, int, _LayerSource]] = {}
        self._tmpdir: Path | None = None
        self._lock = anyio.Lock()
        self._written: dict[Digest, _Written] = {}
        self._last_untagged: Digest | None = None

    async def open(self) -> None:
        """Index the archive (reading) or create the spool (writing). :raises StoreError: unreadable"""
        if self.writable:
            if self.ref is not None and self.ref.startswith("@"):
                raise StoreError(f"{self.name}: '{self.ref}' selects a source image; a destination needs repo:tag")
            await self._open_spool()
            return
        members = await anyio.to_thread.run_sync(index_tar, self.path)
        files = self._files = TarFiles(self.path, members)
        if "index.json" in members and "oci-layout" in members:
            self._oci = LayoutReader(files, self.name)
            await self._oci.load()
        if "manifest.json" in members:
            self._entries = _parse_docker_manifest(await files.read("manifest.json", MAX_METADATA),
                                                   files.where("manifest.json"))
        elif self._oci is None:
            raise StoreError(f"{files.where('manifest.json')}: missing, {self._display} is not a docker-archive")
        self.synthesized = self._oci is None

    async def aclose(self) -> None:
        """Remove the spool and the compressed-layer temp files."""
        tmpdir, self._tmpdir = self._tmpdir, None
        with anyio.CancelScope(shield=True):
            await super().aclose()
            if tmpdir is not None:
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(tmpdir, ignore_errors=True))

    # -- source
    async def default_identifier(self) -> str:
        """The location's ref, else ``@0`` when the archive holds exactly one image."""
        if self.ref is not None:
            return self.ref
        if self._entries is None:
            return self._oci_reader().default_ref()
        if len(self._entries) != 1:
            tags = ", ".join(t for e in self._entries for t in e.repo_tags) or "untagged"
            raise StoreError(f"{self.name} holds {len(self._entries)} images ({tags}); name one as :repo:tag or :@N")
        return "@0"

    async def head(self, ref: str) -> Digest | None:
        if self._spool is not None:
            found = self._find_written(ref)
            return None if found is None else found.digest
        try:
            return (await self.resolve(ref)).digest
        except StoreError:
            return None

    async def resolve(self, ref: str) -> Manifest:
        digest = _as_digest(ref)
        if digest is not None:
            return await self.get_manifest(digest)
        if self._spool is not None:
            found = self._find_written(ref)
            if found is None:
                raise StoreError(f"{self.name}: no image {ref!r} written yet")
            return found
        if self._entries is None:
            return await self._oci_reader().resolve(ref)
        index = self._select(ref)
        async with self._lock:
            manifest = self._resolved.get(index)
            if manifest is None:
                manifest = await self._load(self._entries[index])
                self._resolved[index] = manifest
        self.synthesized = manifest.digest in self._manifests
        return manifest

    async def get_manifest(self, digest: Digest) -> Manifest:
        if digest in self._written:
            return self._written[digest].manifest
        if digest in self._manifests:
            return self._manifests[digest]
        if self._oci is not None:
            return await self._oci.manifest(digest)
        raise StoreError(f"{self.name}: no manifest {digest} (resolve the image first)")

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        chunks = self._spool.open_blob(desc) if self._spool is not None else self._blob_chunks(desc)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)  # its open file is closed in this task

    def _blob_chunks(self, desc: Descriptor) -> AsyncIterator[bytes]:
        source = self._blobs.get(desc.digest)
        if source is None:
            if self._oci is None:
                raise StoreError(f"{self.name}: no blob {desc.digest} (resolve the image first)")
            return self._oci.open_blob(desc)
        if isinstance(source, bytes):
            return _one(source)
        if isinstance(source, Path):
            return _range_chunks(source, 0, desc.size)
        return _range_chunks(self.path, source.offset, source.size)

    async def list_tags(self) -> list[str]:
        if self._spool is not None:
            return sorted({t for _, tags in self._images() for t in tags})
        if self._entries is None:
            return self._oci_reader().tags()
        return sorted({t for e in self._entries for t in e.repo_tags})

    def _oci_reader(self) -> LayoutReader:
        assert self._oci is not None  # open() refuses an archive with neither manifest.json nor a layout
        return self._oci

    def _select(self, ref: str) -> int:
        assert self._entries is not None
        if ref.startswith("@"):
            if not ref[1:].isdigit() or int(ref[1:]) >= len(self._entries):
                raise StoreError(f"{self.name}: no image {ref} (the archive holds {len(self._entries)})")
            return int(ref[1:])
        want = _normal_tag(ref)
        for i, entry in enumerate(self._entries):
            if want is not None and want in {_normal_tag(t) for t in entry.repo_tags}:
                return i
        known = ", ".join(t for e in self._entries for t in e.repo_tags) or "none"
        raise StoreError(f"{self.name}: no image tagged {ref!r} (RepoTags: {known})")

    async def _load(self, entry: _DockerEntry) -> Manifest:
        assert self._files is not None
        config = await self._files.read(entry.config, MAX_CONFIG)
        found = await self._oci_image(Digest.of(config)) if self._oci is not None else None
        return found if found is not None else await self._synthesize(entry, config)

    async def _oci_image(self, config: Digest) -> Manifest | None:
        """The image manifest of the archive's OCI layout with this config, all its blobs present."""
        reader = self._oci_reader()
        pending = [Descriptor.from_json(e) for e in reader.entries]
        while pending:
            desc = pending.pop(0)
            if not desc.is_manifest or await reader.files.size(blob_name(desc.digest)) is None:
                continue  # docker's containerd store lists whole indexes with only one platform present
            manifest = await reader.manifest(desc.digest, desc.media_type, desc.size)
            pending.extend(manifest.children())
            if manifest.config is not None and manifest.config.digest == config and await self._complete(manifest):
                return manifest
        return None

    async def _complete(self, manifest: Manifest) -> bool:
        reader = self._oci_reader()
        return all([await reader.files.size(blob_name(b.digest)) == b.size for b in manifest.blobs()])

    async def _synthesize(self, entry: _DockerEntry, config: bytes) -> Manifest:
        """A Docker schema 2 manifest for a classic entry: config verbatim, layers as gzip blobs."""
        if self._tmpdir is None:
            self._tmpdir = Path(await anyio.to_thread.run_sync(lambda: tempfile.mkdtemp(prefix="regcopy-layers-")))
        limiter = anyio.CapacityLimiter(LAYER_JOBS)
        try:
            async with anyio.create_task_group() as tg:
                for name in dict.fromkeys(entry.layers):
                    tg.start_soon(self._prepare_layer, name, limiter)
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        config_digest = Digest.of(config)
        self._blobs[config_digest] = config
        layers = [self._layers[_norm(name)] for name in entry.layers]
        obj: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": str(config_digest)},
            "layers": [{"mediaType": DOCKER_LAYER, "size": size, "digest": str(d)} for d, size, _ in layers],
        }
        for digest, _, source in layers:
            self._blobs[digest] = source
        manifest = Manifest.parse(json.dumps(obj, indent=3).encode())
        self._manifests[manifest.digest] = manifest
        return manifest

    async def _prepare_layer(self, name: str, limiter: anyio.CapacityLimiter) -> None:
        assert self._files is not None and self._tmpdir is not None
        key = _norm(name)
        if key not in self._layers:
            member = self._files.member(name)
            self._layers[key] = await anyio.to_thread.run_sync(
                _layer_blob, self.path, member, self._tmpdir, anyio.from_thread.check_cancelled, limiter=limiter)

    # -- destination
    def _images(self) -> list[tuple[Manifest, list[str]]]:
        """Written images with their RepoTags; the location's ``repo:tag`` goes to the last image put
        without a tag (the root of that copy), unless another image holds it."""
        default = _familiar(self.ref) if self.ref is not None else None
        if default is not None and any(default in w.tags for w in self._written.values()):
            default = None  # an explicit tag took it
        return [(w.manifest, [*w.tags, default] if default is not None and d == self._last_untagged else w.tags)
                for d, w in self._written.items()]

    def _find_written(self, ref: str) -> Manifest | None:
        want = _normal_tag(ref)
        return next((m for m, tags in self._images() if want in {_normal_tag(t) for t in tags}), None)

    def _repo_tag(self, tag: str) -> str | None:
        """The RepoTag for ``tag``: a bare tag joins the location's repository."""
        if ":" in tag or "/" in tag:
            return _familiar(tag)
        if self.ref is None:
            log.warning("%s: tag %r has no repository; the image is written without RepoTags", self.name, tag)
            return None
        return _familiar(f"{Reference.parse(self.ref).name}:{tag}")

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        self._writer()
        if manifest.is_index:
            for child in manifest.children():  # its platforms were put untagged just before: drop them
                if (written := self._written.get(child.digest)) is not None and not written.tags:
                    del self._written[child.digest]
            self._last_untagged = None
            raise StoreError(f"{self.name}: a docker-archive holds single-platform images, and {manifest.digest.short}"
                             " is a multi-platform index; pass --platform to pick one")
        written = self._written.setdefault(manifest.digest, _Written(manifest))
        repo_tag = self._repo_tag(tag) if tag is not None else None
        if tag is None:
            self._last_untagged = manifest.digest
        elif repo_tag is not None:
            for other in self._written.values():  # a tag names one image
                other.tags[:] = [t for t in other.tags if t != repo_tag]
            written.tags.append(repo_tag)

    async def commit(self) -> None:
        """Write ``manifest.json``, ``repositories``, configs (``<hex>.json``) and layers (``<hex>.tar``).

        Layer files hold the layer blobs as copied (usually gzip): ``docker load`` and c/image
        (``skopeo copy docker-archive:…``) both decompress them (c/image tarfile/src.go).
        """
        spool = self._writer()
        manifest_json: list[dict[str, Any]] = []
        repositories: dict[str, dict[str, str]] = {}
        files: dict[str, Path] = {}
        for m, tags in self._images():
            if m.config is None:
                raise StoreError(f"{self.name}: {m.digest.short} has no config; it is not a container image")
            for blob in (m.config, *m.layers):
                if not await spool.has_blob(blob):
                    raise StoreError(f"{self.name}: blob {blob.digest.short} of {m.digest.short} was not copied"
                                     " (a foreign layer?)")
            names = [f"{layer.digest.hex}.tar" for layer in m.layers]
            manifest_json.append({"Config": f"{m.config.digest.hex}.json", "RepoTags": tags, "Layers": names})
            files[f"{m.config.digest.hex}.json"] = spool.root / blob_name(m.config.digest)
            files.update((n, spool.root / blob_name(layer.digest)) for n, layer in zip(names, m.layers, strict=True))
            for t in tags:  # legacy: repository → tag → top layer id (docker load reads manifest.json first)
                repo, _, tag = t.rpartition(":")
                repositories.setdefault(repo, {})[tag] = m.layers[-1].digest.hex if m.layers else ""
        entries: list[TarEntry] = [
            ("manifest.json", json.dumps(manifest_json, separators=(",", ":")).encode()),
            ("repositories", json.dumps(repositories, separators=(",", ":")).encode()),
            *sorted(files.items()),
        ]
        await anyio.to_thread.run_sync(write_tar, self.path, entries, anyio.from_thread.check_cancelled)


def _as_digest(ref: str) -> Digest | None:
    try:
        return Digest.parse(ref)
    except InvalidReference:
        return None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a fail-fast group that is not a sibling's cancellation (so callers can
    catch :class:`StoreError` itself, ARCHITECTURE §8.3)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = exc.exceptions
        else:
            leaves.append(exc)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])
