"""Image archives: what both archive stores share, and ``oci-archive`` (a tar of an OCI layout).

Owns the archive store's identity and its blob spool, and the oci-archive format. Reading indexes the
tar once (:mod:`regcopy.stores.tarfiles`) and serves each file as a byte range of the uncompressed tar,
so reading one image never unpacks the archive. Writing spools blobs into a :class:`LayoutStore` in a
temp directory beside the target (bounded memory) and on :meth:`commit` writes the whole tar
sequentially to a temp file renamed into place, so a reader never sees a half-written archive; the
target is replaced, as skopeo does. The spool and the partial tar are locked by their writer while they
exist, and a writer's ``open`` first removes this archive's leftovers that no live process holds
(:mod:`regcopy.stores.scratch`). A cancelled commit stops between 1 MiB pieces and removes its partial
tar: the old archive stays as it was. ``docker-archive`` is :mod:`regcopy.stores.dockerarchive`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio

from regcopy.digest import Digest
from regcopy.errors import StoreError
from regcopy.manifest import Descriptor, Manifest
from regcopy.stores.base import BlobOpener, IndexOutcome, ReferrerList
from regcopy.stores.layout import LayoutReader, LayoutStore
from regcopy.stores.layoutreferrers import LayoutSubjects, layout_referrers
from regcopy.stores.scratch import Claim, ScratchArea
from regcopy.stores.tarfiles import TarEntry, TarFiles, index_tar, write_tar

__all__ = ("OciArchiveStore",)


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
        """As a layout keeps them (:func:`~regcopy.stores.layoutreferrers.layout_referrers`)."""
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
