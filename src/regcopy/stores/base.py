"""The protocols the engine speaks: :class:`Source`, :class:`Destination` and optional abilities.

Backends (registry repositories now; OCI layouts and archives later) implement these small
protocols; optional abilities such as cross-repository mounts or a final commit are separate
``runtime_checkable`` protocols the engine probes with ``isinstance`` (ARCHITECTURE §0 rule 1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeAlias, runtime_checkable

from regcopy.digest import Digest
from regcopy.manifest import Descriptor, Manifest

__all__ = ("BlobOpener", "Committer", "Destination", "Mounter", "Source")

BlobOpener: TypeAlias = Callable[[], AsyncIterator[bytes]]
"""Opens the source bytes of a blob afresh, verified while they flow; called again to restart."""


@runtime_checkable
class Source(Protocol):
    """Where an image is read from (one repository, layout or archive)."""

    @property
    def name(self) -> str:
        """A display name such as ``host/repo`` or ``oci:/path``."""
        ...

    @property
    def origin(self) -> tuple[str, str] | None:
        """``(registry, repository)`` when the source is a registry (a mount candidate), else None."""
        ...

    async def head(self, ref: str) -> Digest | None:
        """The digest a tag or digest resolves to, cheaply (HEAD), or None when absent."""
        ...

    async def resolve(self, ref: str) -> Manifest:
        """The manifest a tag or digest points to, as exact bytes."""
        ...

    async def get_manifest(self, digest: Digest) -> Manifest:
        """A manifest by digest, verified."""
        ...

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """The bytes of a blob (unverified; the engine verifies)."""
        ...

    async def list_tags(self) -> list[str]:
        """Every tag, sorted."""
        ...


@runtime_checkable
class Destination(Protocol):
    """Where an image is written to."""

    @property
    def name(self) -> str:
        """A display name."""
        ...

    @property
    def storage_id(self) -> str:
        """Identity of the blob storage behind this destination (a registry host, a layout path):
        blobs are deduplicated per storage across a whole run."""
        ...

    @property
    def repository(self) -> str:
        """The repository (or image name) inside the storage."""
        ...

    async def has_blob(self, desc: Descriptor) -> bool:
        """Whether the blob is already present here."""
        ...

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        """Store a blob from ``opener``; returns the bytes sent. Never leaves a partial blob visible."""
        ...

    async def head(self, ref: str) -> Digest | None:
        """The digest a tag points to here, or None."""
        ...

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        """Store exact manifest bytes, under ``tag`` or by digest when ``tag`` is None."""
        ...

    async def list_tags(self) -> list[str]:
        """Every tag, sorted (empty when the repository does not exist yet)."""
        ...


@runtime_checkable
class Mounter(Protocol):
    """A destination that can link a blob from another repository of the same storage."""

    async def mount_blob(self, desc: Descriptor, from_repository: str) -> bool:
        """Try to mount; True when the blob is now present."""
        ...


@runtime_checkable
class Committer(Protocol):
    """A destination that must finish writing after the last manifest (layouts, archives)."""

    async def commit(self) -> None:
        """Make everything written so far durable and visible."""
        ...
