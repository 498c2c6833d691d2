"""OCI image layouts (image-spec ``image-layout.md``): reading one from any file source, and
:class:`LayoutStore`, a layout directory as a :class:`Source`, :class:`Destination` and :class:`Committer`.

Owns the layout format: the ``oci-layout`` marker, ``index.json`` (top-level descriptors, tags as
``org.opencontainers.image.ref.name`` annotations, image-spec ``annotations.md``) and content-addressed
``blobs/<alg>/<hex>``. :class:`LayoutReader` resolves tags and digests over a :class:`LayoutFiles` (a
directory here, a tar in :mod:`regcopy.stores.archive`). Writing never shows a partial file: blobs go
to a temp file in the layout, are fsynced, size-checked and renamed into place; ``index.json`` is
merged with what is on disk (under a lock on the layout directory, so concurrent writers merge) and
replaced the same way on :meth:`LayoutStore.commit`. Temp files are locked by their writer and a
writer's ``open`` removes the ones no live process holds (:mod:`regcopy.stores.scratch`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import stat
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import anyio

from regcopy.digest import Digest
from regcopy.errors import InvalidReference, RegcopyError, SizeMismatch, StoreError
from regcopy.manifest import MAX_MANIFEST_SIZE, OCI_INDEX, Descriptor, Manifest
from regcopy.referrer import artifact_type
from regcopy.stores.base import BlobOpener, IndexOutcome, ReferrerList, close_stream
from regcopy.stores.layoutreferrers import LayoutSubjects, layout_referrers
from regcopy.stores.scratch import Claim, ScratchArea

__all__ = (
    "CHUNK", "REF_NAME", "DirFiles", "LayoutFiles", "LayoutReader", "LayoutStore", "atomic_write", "blob_name",
    "fsync_dir", "parse_index",
)

log = logging.getLogger(__name__)

CHUNK: Final = 1 << 20
"""Bytes per read or write: memory per blob in flight stays at one chunk, whatever the blob size."""
REF_NAME: Final = "org.opencontainers.image.ref.name"
_LAYOUT_FILE: Final = "oci-layout"
_INDEX_FILE: Final = "index.json"
_LAYOUT_VERSION: Final = b'{"imageLayoutVersion":"1.0.0"}'
_MAX_INDEX_SIZE: Final = 16 * 1024 * 1024


def blob_name(digest: Digest) -> str:
    """The path of a blob inside a layout (image-layout.md §Blobs: ``blobs/<alg>/<encoded>``)."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


class LayoutFiles(Protocol):
    """Read access to the files of a layout by relative path (a directory, or members of a tar)."""

    def where(self, name: str) -> str:
        """A display path for ``name``, used in error messages."""
        ...

    async def size(self, name: str) -> int | None:
        """The size of file ``name``, or None when it does not exist."""
        ...

    async def read(self, name: str, limit: int) -> bytes:
        """The whole (small) file; :class:`StoreError` when missing or larger than ``limit``."""
        ...

    def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The file's bytes in pieces of at most :data:`CHUNK`."""
        ...


class DirFiles:
    """:class:`LayoutFiles` of a directory; every call runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def where(self, name: str) -> str:
        return str(self.root / name)

    async def size(self, name: str) -> int | None:
        try:
            st = await anyio.Path(self.root / name).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    async def read(self, name: str, limit: int) -> bytes:
        size = await self.size(name)
        if size is None:
            raise StoreError(f"{self.where(name)}: missing")
        if size > limit:
            raise StoreError(f"{self.where(name)}: {size} bytes is more than the {limit}-byte limit")
        return await anyio.Path(self.root / name).read_bytes()

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self.root / name, "rb") as f:
            while chunk := await f.read(CHUNK):
                yield chunk


def _ref_name(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def _as_digest(ref: str) -> Digest | None:
    try:
        return Digest.parse(ref)
    except InvalidReference:
        return None


class LayoutReader:
    """The read side of a layout: ``index.json`` entries, tag and digest lookup, verified manifests.

    :param files: where the layout's files live
    :param name: display name of the layout (``oci:/path``)
    """

    def __init__(self, files: LayoutFiles, name: str) -> None:
        self.files = files
        self.name = name
        self.index = _empty_index()
        self.entries: list[dict[str, Any]] = []

    async def load(self) -> None:
        """Read and validate ``oci-layout`` and ``index.json``.

        :raises StoreError: a file is missing or malformed (the message names it)
        """
        marker = await self.files.read(_LAYOUT_FILE, 4096)
        version = _json(marker, self.files.where(_LAYOUT_FILE)).get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise StoreError(f"{self.files.where(_LAYOUT_FILE)}: unsupported imageLayoutVersion {version!r}")
        self.index = parse_index(await self.files.read(_INDEX_FILE, _MAX_INDEX_SIZE), self.files.where(_INDEX_FILE))
        self.entries = self.index["manifests"]

    def find(self, ref: str) -> Descriptor | None:
        """The top-level descriptor tagged ``ref`` (ref-name annotation), else the one with digest ``ref``."""
        for entry in self.entries:
            if _ref_name(entry) == ref:
                return Descriptor.from_json(entry)
        digest = _as_digest(ref)
        for entry in self.entries:
            if digest is not None and entry.get("digest") == str(digest):
                return Descriptor.from_json(entry)
        return None

    def default_ref(self) -> str:
        """The identifier of the only image: its ref name, else its digest.

        :raises StoreError: the layout holds no image or several
        """
        # Untagged referrers (a signature, an SBOM) are entries too, typed by their artifactType: not images.
        images = [e for e in self.entries if _ref_name(e) is not None or "artifactType" not in e]
        if len(images) == 1:
            entry = images[0]
            return _ref_name(entry) or str(entry["digest"])
        where = self.files.where(_INDEX_FILE)
        if not images:
            raise StoreError(f"{where}: the layout holds no image")
        names = ", ".join(_ref_name(e) or str(e["digest"]) for e in images)
        raise StoreError(f"{where}: the layout holds {len(images)} images ({names}); name one")

    async def head(self, ref: str) -> Digest | None:
        """The digest ``ref`` names here, or None (a digest counts when its blob exists)."""
        desc = self.find(ref)
        if desc is not None:
            return desc.digest
        digest = _as_digest(ref)
        if digest is not None and await self.files.size(blob_name(digest)) is not None:
            return digest
        return None

    async def resolve(self, ref: str) -> Manifest:
        """The manifest tagged ``ref``, or with digest ``ref`` (a child manifest too)."""
        desc = self.find(ref)
        if desc is not None:
            return await self.manifest(desc.digest, desc.media_type, desc.size)
        digest = _as_digest(ref)
        if digest is not None:
            return await self.manifest(digest)
        known = ", ".join(sorted(self.tags())) or "none"
        raise StoreError(f"{self.files.where(_INDEX_FILE)}: no image named {ref!r} (tags: {known})")

    async def manifest(self, digest: Digest, media_type: str | None = None, size: int | None = None) -> Manifest:
        """Read a manifest blob and verify its size and digest.

        :raises StoreError: missing, of the wrong size, or not hashing to ``digest``
        """
        name = blob_name(digest)
        data = await self.files.read(name, MAX_MANIFEST_SIZE)
        if size is not None and len(data) != size:
            raise StoreError(f"{self.files.where(name)}: {len(data)} bytes, the descriptor says {size}")
        try:
            return Manifest.parse(data, media_type, digest=digest)
        except RegcopyError as exc:
            raise StoreError(f"{self.files.where(name)}: {exc}") from exc

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """The bytes of a blob, after checking that it exists with the descriptor's size."""
        name = blob_name(desc.digest)
        size = await self.files.size(name)
        if size is None:
            raise StoreError(f"{self.files.where(name)}: blob missing")
        if size != desc.size:
            raise StoreError(f"{self.files.where(name)}: {size} bytes, the descriptor says {desc.size}")
        chunks = self.files.chunks(name)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)  # its open file is closed in this task

    def tags(self) -> list[str]:
        """Every ref name in ``index.json``, sorted."""
        return sorted({n for e in self.entries if (n := _ref_name(e)) is not None})


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StoreError(f"{where}: not valid JSON ({str(exc)[:120]})") from exc
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: must be a JSON object")
    return obj


def parse_index(data: bytes, where: str) -> dict[str, Any]:
    """Parse and validate an ``index.json`` (every entry must be a valid descriptor).

    :raises StoreError: bad JSON or a malformed entry (the message names ``where``)
    """
    obj = _json(data, where)
    entries = obj.get("manifests", [])
    if not isinstance(entries, list):
        raise StoreError(f"{where}: 'manifests' must be a list")
    for i, entry in enumerate(entries):
        try:
            Descriptor.from_json(entry, where=f"manifests[{i}]")
        except RegcopyError as exc:
            raise StoreError(f"{where}: {exc}") from exc
    obj["manifests"] = entries
    return obj


def atomic_write(path: Path, data: bytes, scratch: ScratchArea | None = None) -> None:
    """Write ``path`` via a fsynced temp file and a rename (blocking: call in a worker thread).

    :param scratch: where the temp file goes (locked while it exists); default: beside ``path``
    """
    claim = (scratch or ScratchArea.beside(path)).new_file()
    try:
        with os.fdopen(os.dup(claim.fd), "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(claim.path, path)
    except BaseException:
        claim.discard()
        raise
    claim.close()


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (blocking)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# One writer of index.json per layout: commits of several stores on the same layout (several images
# copied at once) merge instead of overwriting each other. The thread lock orders this process's
# commits; the flock on the layout directory orders them with other processes'.
_commit_locks: dict[str, threading.Lock] = {}
_commit_locks_guard = threading.Lock()


def _commit_lock(path: str) -> threading.Lock:
    with _commit_locks_guard:
        return _commit_locks.setdefault(path, threading.Lock())


class _DirLock:
    """``flock`` on a directory for the duration of a block (no lock file to leave behind)."""

    def __init__(self, path: Path, *, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self.fd = -1

    def __enter__(self) -> None:
        if not self.enabled:
            return
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:  # a filesystem without locks: this process's thread lock still holds
            log.debug("no lock on %s: %s", self.path, exc)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


class _Change:
    """One pending ``index.json`` change: a tagged entry, or an untagged root candidate."""

    __slots__ = ("entry", "tag")

    def __init__(self, entry: dict[str, Any], tag: str | None) -> None:
        self.entry = entry
        self.tag = tag

    def apply(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        digest = self.entry["digest"]
        if self.tag is None:
            return entries if any(e.get("digest") == digest for e in entries) else [*entries, self.entry]
        # Re-tagging replaces the entry with that ref name; an untagged entry of the same image is redundant.
        kept = [e for e in entries if _ref_name(e) != self.tag and not (e.get("digest") == digest
                                                                        and _ref_name(e) is None)]
        return [*kept, self.entry]


class LayoutStore:
    """An OCI image layout directory, bound to an optional image name (the location's ref).

    Call :meth:`open` before use and :meth:`aclose` after (``open_local`` does both).

    :param root: the layout directory (created on the first write when writable)
    :param image: the image name of the location, used as the default identifier
    :param writable: allow writes; a read-only store refuses them with :class:`StoreError`
    :param exclusive: the directory is this store's alone and already locked by its owner (an
        archive's spool): no sweep for leftovers and no lock around ``index.json``
    """

    def __init__(self, root: str | os.PathLike[str], image: str | None = None, *, writable: bool = False,
                 exclusive: bool = False) -> None:
        self._display = os.fspath(root)
        self.root = Path(os.path.abspath(root))
        self.image = image
        self.writable = writable
        self.reader = LayoutReader(DirFiles(self.root), f"oci:{self._display}")
        self._changes: list[_Change] = []
        self._children: set[str] = set()
        self._temps: dict[Path, Claim] = {}
        self._dirs: set[Path] = set()
        self.scratch = ScratchArea.for_layout(self.root)
        self._exclusive = exclusive
        self._subjects: LayoutSubjects = {}

    async def open(self) -> None:
        """Load the layout; a writable store may start from a missing or empty directory, and first
        removes the temp files of earlier runs that no live process holds.

        :raises StoreError: not a layout (read-only), or a corrupt ``oci-layout``/``index.json``
        """
        if self.writable and not self._exclusive:
            await anyio.to_thread.run_sync(self.scratch.sweep)
        marker = await self.reader.files.size(_LAYOUT_FILE)
        index = await self.reader.files.size(_INDEX_FILE)
        if self.writable and index is None:
            return  # a new layout (or one never committed): commit() creates both files
        if marker is None:
            raise StoreError(f"{self.root / _LAYOUT_FILE}: missing, {self._display} is not an OCI image layout")
        await self.reader.load()

    async def aclose(self) -> None:
        """Remove temp files left by failed or cancelled writes (committed data stays)."""
        temps, self._temps = list(self._temps.values()), {}
        with anyio.CancelScope(shield=True):
            for claim in temps:
                await anyio.to_thread.run_sync(claim.discard)

    # -- identity
    @property
    def name(self) -> str:
        return self.reader.name

    @property
    def origin(self) -> None:
        return None

    @property
    def synthesized(self) -> bool:
        return False

    @property
    def served_by(self) -> None:
        return None

    @property
    def storage_id(self) -> str:
        return f"layout:{self.root}"

    @property
    def shares_blobs(self) -> bool:
        return True

    @property
    def repository(self) -> str:
        return self.image or ""

    # -- source
    async def default_identifier(self) -> str:
        """The image name bound to the store, else the only image of the layout."""
        return self.image if self.image is not None else self.reader.default_ref()

    async def head(self, ref: str) -> Digest | None:
        return await self.reader.head(ref)

    async def resolve(self, ref: str) -> Manifest:
        return await self.reader.resolve(ref)

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await self.reader.manifest(digest)

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        return self.reader.open_blob(desc)

    async def list_tags(self) -> list[str]:
        return self.reader.tags()

    # -- referrers
    @property
    def keeps_referrers(self) -> bool:
        return True

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = (), path: str = "") -> ReferrerList:
        """Entries whose manifest names ``subject``, a fallback tag's index, cosign tags (of ``path``)."""
        return await layout_referrers(self.reader, subject, path=path, artifact_types=artifact_types,
                                      seen=self._subjects)

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        """Nothing to do: a referrer pushed by digest is an untagged ``index.json`` entry on commit."""
        return IndexOutcome("layout")

    # -- destination
    async def has_blob(self, desc: Descriptor) -> bool:
        return await self.reader.files.size(blob_name(desc.digest)) == desc.size

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        final = await self._blob_dir(desc.digest)
        # In the layout root, so the rename into blobs/ stays on one filesystem.
        claim = await anyio.to_thread.run_sync(self.scratch.new_file)
        self._temps[claim.path] = claim
        try:
            written = await _write_stream(claim.path, opener())
            if written != desc.size:  # the opener verified the digest; a short file must still never land
                raise SizeMismatch(desc.size, written, what=f"blob {desc.digest.short}")
            await anyio.to_thread.run_sync(os.replace, claim.path, final)
            claim.close()
        finally:
            if self._temps.pop(claim.path, None) is not None and claim.fd >= 0:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(claim.discard)
        return written

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        final = await self._blob_dir(manifest.digest)
        if await self.reader.files.size(blob_name(manifest.digest)) != len(manifest.data):
            await anyio.to_thread.run_sync(atomic_write, final, manifest.data, self.scratch)
        # Children are reachable from their index; only roots get top-level entries (as c/image does).
        self._children.update(str(d.digest) for d in manifest.children())
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(manifest.digest),
                                 "size": len(manifest.data)}
        if manifest.subject is not None and tag is None:
            # An untagged referrer stays reachable as an index.json entry (the layout's auxiliary
            # descriptors, image-layout.md "index.json file"; oras-go's OCI store does the same), typed.
            kind = artifact_type(manifest)
            if kind is not None:
                entry["artifactType"] = kind
        if tag is not None:
            entry["annotations"] = {REF_NAME: tag}
        change = _Change(entry, tag)
        self._changes.append(change)
        if tag is not None or manifest.subject is not None:
            # Seen at once by this store's referrers(), before the commit writes index.json.
            self.reader.entries[:] = change.apply(self.reader.entries)

    async def commit(self) -> None:
        """Write ``index.json`` (merged with the file on disk) and ``oci-layout``, atomically and durably.

        :raises StoreError: the ``index.json`` on disk is corrupt
        """
        self._check_writable()
        changes = [c for c in self._changes if c.tag is not None or c.entry["digest"] not in self._children]
        merged = await anyio.to_thread.run_sync(self._commit_sync, changes, sorted(self._dirs))
        self._changes.clear()
        self.reader.index = merged
        self.reader.entries = merged["manifests"]

    def _commit_sync(self, changes: Iterable[_Change], dirs: list[Path]) -> dict[str, Any]:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in dirs:
            fsync_dir(d)
        with _commit_lock(str(self.root)), _DirLock(self.root, enabled=not self._exclusive):
            if not (self.root / _LAYOUT_FILE).exists():
                atomic_write(self.root / _LAYOUT_FILE, _LAYOUT_VERSION, self.scratch)
            path = self.root / _INDEX_FILE
            index = parse_index(path.read_bytes(), str(path)) if path.exists() else _empty_index()
            entries: list[dict[str, Any]] = index["manifests"]
            for change in changes:
                entries = change.apply(entries)
            index["manifests"] = entries
            atomic_write(path, json.dumps(index, separators=(",", ":")).encode(), self.scratch)
            fsync_dir(self.root)
        return index

    # -- helpers
    def _check_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.name} was opened read-only")

    async def _blob_dir(self, digest: Digest) -> Path:
        self._check_writable()
        final = self.root / blob_name(digest)
        if final.parent not in self._dirs:
            await anyio.Path(final.parent).mkdir(parents=True, exist_ok=True)
            self._dirs.update((final.parent, final.parent.parent))
        return final


async def _write_stream(path: Path, chunks: AsyncIterator[bytes]) -> int:
    """Write ``chunks`` to ``path`` and fsync it; returns the byte count.

    Small network chunks are gathered up to :data:`CHUNK` so a worker thread is not woken per 16 KiB.
    ``chunks`` is closed here, whatever happens (:func:`~regcopy.stores.base.close_stream`).
    """
    written = 0
    pending = bytearray()
    try:
        async with await anyio.open_file(path, "wb") as f:
            async for chunk in chunks:
                pending += chunk
                if len(pending) >= CHUNK:
                    await f.write(bytes(pending))
                    written += len(pending)
                    pending.clear()
            if pending:
                await f.write(bytes(pending))
                written += len(pending)
            await f.flush()
            await anyio.to_thread.run_sync(_fsync_0644, f.wrapped.fileno())
    finally:
        await close_stream(chunks)
    return written


def _fsync_0644(fd: int) -> None:
    # mkstemp creates 0600; layouts are shared with skopeo and people, as c/image writes them.
    os.fchmod(fd, 0o644)
    os.fsync(fd)

