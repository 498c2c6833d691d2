"""Local stores by location: ``oci:`` layouts, ``oci-archive:`` and ``docker-archive:`` tars, ``dir:`` images.

Owns the mapping from a :class:`~regcopy.reference.LocalLocation` to its store and the store's life:
:func:`open_local` opens (indexes an archive, loads a layout) and always closes, removing temp files
and spools, so a writable store that was never committed leaves no partial output. Committing is the
engine's job (:class:`~regcopy.stores.base.Committer`), never implicit on exit.

Also owns how a store's refs name repositories (:func:`split_ref`) and :class:`RepositoryView`, one
repository of a store that a sync run shares between many images.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

import anyio

from regcopy.digest import Digest
from regcopy.manifest import Descriptor, Manifest
from regcopy.reference import LocalLocation
from regcopy.stores.archive import OciArchiveStore
from regcopy.stores.base import Admitter, BlobOpener, Committer, Destination, IndexOutcome, ReferrerList, Source
from regcopy.stores.directory import DirectoryStore
from regcopy.stores.dockerarchive import DockerArchiveStore
from regcopy.stores.layout import LayoutStore

__all__ = ("LocalReferrers", "LocalStore", "RepositoryView", "join_ref", "local_identifier", "open_local",
           "repositories", "split_ref")


@runtime_checkable
class LocalStore(Source, Destination, Committer, Protocol):
    """A local store: a :class:`Source`, a :class:`Destination` (when writable) and a :class:`Committer`."""

    async def default_identifier(self) -> str:
        """The location's ref, else the only image the store holds.

        :raises StoreError: no ref was given and the store holds no image or several
        """
        ...

    async def aclose(self) -> None:
        """Release temp files and spools (committed output stays)."""
        ...


@runtime_checkable
class LocalReferrers(Protocol):
    """A local store that keeps referrers (an OCI layout, an oci-archive), per repository of its refs."""

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = (), path: str = "") -> ReferrerList:
        """What refers to ``subject``; cosign and fallback tags are those of repository ``path``."""
        ...

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        """Make pushed referrers discoverable (kept as untagged entries on commit)."""
        ...


@asynccontextmanager
async def open_local(location: LocalLocation, *, writable: bool, tree: bool = False) -> AsyncIterator[LocalStore]:
    """Open the store for ``location``; closed (temp files removed) when the block exits.

    Reading indexes an archive or loads a layout up front. Writing an archive spools blobs beside
    it and replaces the file only on ``commit()`` (the engine's last step); a layout is updated in
    place (blobs renamed in, ``index.json`` merged and replaced on commit).

    ```python
    async with open_local(LocalLocation.parse("oci:./out:v1"), writable=True) as dst:
        await copy_image(src, dst, "v1", target_tag="v1")
    ```

    :param location: the parsed location
    :param writable: open as a destination; read-only stores refuse writes with ``StoreError``
    :param tree: a ``dir:`` location is a tree of image directories (a sync plan's), not one image
    :returns: an async context manager yielding the store
    :raises StoreError: missing or corrupt layout or archive (the message names the file)
    """
    store: LayoutStore | OciArchiveStore | DockerArchiveStore | DirectoryStore
    if location.transport == "dir":
        store = DirectoryStore(location.path, writable=writable, tree=tree)
    elif location.transport == "oci":
        store = LayoutStore(location.path, location.ref, writable=writable)
    elif location.transport == "oci-archive":
        store = OciArchiveStore(location.path, location.ref, writable=writable)
    else:
        store = DockerArchiveStore(location.path, location.ref, writable=writable)
    try:
        await store.open()
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


async def local_identifier(location: LocalLocation, store: LocalStore) -> str:
    """The tag, digest or ``@N`` to resolve in a source store opened for ``location``.

    :param location: the location the store was opened for
    :param store: the open store
    :returns: ``location.ref`` when given, else the store's only image
    :raises StoreError: no ref and the store holds no image or several
    """
    return location.ref if location.ref is not None else await store.default_identifier()


class RepositoryView:
    """One repository inside a shared local store, for a sync run that puts many into one store.

    Tags map to the store's refs (``v1`` → ``ns/app:v1``; see :mod:`regcopy.locations`);
    digests pass through. Not a :class:`Committer`: the run commits the shared store once, at its end.

    :param store: the open store (shared by every view on it)
    :param path: the repository path inside it ("" for bare refs)
    """

    def __init__(self, store: LocalStore, path: str) -> None:
        self.store = store
        self.path = path

    def _ref(self, ref: str) -> str:
        return join_ref(self.path, ref)

    @property
    def name(self) -> str:
        return f"{self.store.name}:{self.path}" if self.path else self.store.name

    @property
    def origin(self) -> None:
        return None

    @property
    def synthesized(self) -> bool:
        return self.store.synthesized

    @property
    def served_by(self) -> None:
        return None

    @property
    def storage_id(self) -> str:
        return self.store.storage_id

    @property
    def shares_blobs(self) -> bool:
        return self.store.shares_blobs

    @property
    def repository(self) -> str:
        return self.path

    async def head(self, ref: str) -> Digest | None:
        return await self.store.head(self._ref(ref))

    async def resolve(self, ref: str) -> Manifest:
        return await self.store.resolve(self._ref(ref))

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await self.store.get_manifest(digest)

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        return self.store.open_blob(desc)

    async def list_tags(self) -> list[str]:
        """The tags of this repository (refs ``path:tag``; bare refs when the path is empty)."""
        return sorted(tag for repo, tag in map(split_ref, await self.store.list_tags()) if repo == self.path and tag)

    async def has_blob(self, desc: Descriptor) -> bool:
        return await self.store.has_blob(desc)

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        return await self.store.put_blob(desc, opener)

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        await self.store.put_manifest(manifest, None if tag is None else self._ref(tag))

    def admit(self, manifests: Sequence[Manifest]) -> None:
        """The store's own refusal (:class:`~regcopy.stores.base.Admitter`), before a blob moves."""
        if isinstance(self.store, Admitter):
            self.store.admit(manifests)

    @property
    def keeps_referrers(self) -> bool:
        return isinstance(self.store, LocalReferrers)

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = ()) -> ReferrerList:
        """The store's referrers of ``subject``, with this repository's cosign and fallback tags
        (none from a store that keeps no referrers: a docker-archive)."""
        if not isinstance(self.store, LocalReferrers):
            return ReferrerList(subject)
        return await self.store.referrers(subject, artifact_types=artifact_types, path=self.path)

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        if not isinstance(self.store, LocalReferrers):
            return IndexOutcome("none")
        return await self.store.index_referrers(subject, referrers)


def join_ref(path: str, ref: str) -> str:
    """The store ref for tag ``ref`` of repository ``path`` (``ns/app`` + ``v1`` → ``ns/app:v1``); a
    digest, an ``@N`` index or an unnamed repository's tag pass unchanged. The inverse of :func:`split_ref`."""
    algorithm, colon, rest = ref.partition(":")
    digest = bool(colon) and algorithm in ("sha256", "sha512") and bool(rest) and "/" not in rest
    if not path or ref.startswith("@") or digest:
        return ref
    return f"{path}:{ref}"


def split_ref(ref: str) -> tuple[str, str]:
    """``(repository path, tag)`` of a store ref: ``ns/app:v1`` → ``("ns/app", "v1")``, a bare ``v1``
    → ``("", "v1")``, a tagless ``ns/app`` or ``host:5000/app`` → ``("ns/app", "")``."""
    head, colon, tail = ref.rpartition(":")
    if "/" in tail:  # no tag: a bare name (``ns/app``), or the ':' was a port's
        return ref, ""
    if not colon:
        return "", ref
    return head, tail


async def repositories(store: LocalStore) -> list[str]:
    """The repository paths of a local store's tagged refs, sorted ("" for bare refs such as ``v1``)."""
    return sorted({repo for repo, tag in map(split_ref, await store.list_tags()) if tag})
