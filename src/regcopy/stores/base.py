"""The store contract: :class:`Source`, :class:`Destination` and the optional abilities.

Every store (a registry repository, an OCI layout, an archive, a mirror set) implements these small
protocols. What a caller needs to know about a store is a member of the contract
(:attr:`Source.origin`, :attr:`Source.synthesized`, :attr:`Source.served_by`,
:attr:`Destination.storage_id`, :attr:`Destination.shares_blobs`), never a check on a concrete class;
optional abilities (cross-repository mounts, a final commit, ranged reads, deletes) are separate
``runtime_checkable`` protocols probed with ``isinstance`` (docs/architecture.md, "The store contract").
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import anyio

from regcopy.digest import Digest
from regcopy.manifest import Descriptor, Manifest, ManifestInfo

__all__ = (
    "Admitter", "BlobOpener", "Committer", "Deleter", "Destination", "DigestMounter", "IndexOutcome", "ManifestHead",
    "Mounter", "Origin", "RangeReader", "ReferrerList", "Referrers", "ReferrersVia", "Source", "UploadJournal",
    "close_stream",
)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a source's blobs live: a repository of a blob storage, so a destination in the same
    storage can mount them from there instead of uploading.

    :ivar storage_id: the storage, as :attr:`Destination.storage_id` names it (``registry:host``)
    :ivar repository: the repository inside it
    """

    storage_id: str
    repository: str


async def close_stream(stream: AsyncIterator[bytes]) -> None:
    """Close a blob stream now, in this task, even while the task is being cancelled.

    A blob stream is a chain of async generators holding ``async with`` blocks (a request slot, a
    response, an open file). One left suspended is closed later by the event loop in another task, or
    at its shutdown, where those blocks exit in the wrong task: anyio refuses to release a
    CapacityLimiter token from a task that did not take it, and prints the error as a traceback.
    """
    if isinstance(stream, AsyncGenerator):
        with anyio.CancelScope(shield=True):
            await stream.aclose()


class BlobOpener(Protocol):
    """Opens the source bytes of a blob, verified while they flow; called again to restart or resume.

    ``opener()`` yields the whole blob; ``opener(offset)`` yields it from byte ``offset`` on (a
    resumed upload) and still checks the size and digest of the whole blob when the bytes end.
    """

    def __call__(self, offset: int = 0, /) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset``."""
        ...


@runtime_checkable
class Source(Protocol):
    """Where an image is read from (one repository, layout or archive)."""

    @property
    def name(self) -> str:
        """A display name such as ``host/repo`` or ``oci:/path``."""
        ...

    @property
    def origin(self) -> Origin | None:
        """Where the source's blobs live when a destination could mount them (a registry), else None."""
        ...

    @property
    def synthesized(self) -> bool:
        """Whether the manifest last resolved was built by the store rather than read (a classic
        docker-archive has no registry manifest): its digests exist nowhere else."""
        ...

    @property
    def served_by(self) -> list[str] | None:
        """Which stores served the reads so far, in the order first used (pull-through mirrors, then
        the upstream), or None for a source that reads from one place only."""
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
class RangeReader(Protocol):
    """A source that can start a blob at a byte offset without reading what precedes it (HTTP Range)."""

    def open_blob_at(self, desc: Descriptor, offset: int) -> AsyncIterator[bytes]:
        """The bytes of a blob from ``offset`` on (unverified)."""
        ...


@runtime_checkable
class ManifestHead(Protocol):
    """A source that answers a manifest HEAD with the media type and size, not only the digest
    (a registry: distribution-spec, "Checking if content exists in the registry")."""

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        """Digest, media type and size of what a tag or digest points to, or None when absent."""
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

    @property
    def shares_blobs(self) -> bool:
        """Whether a blob put into one repository of the storage is present in every other (a local
        store keeps one blob store for all its images; a registry repository needs a mount)."""
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
class DigestMounter(Protocol):
    """A destination that may find a blob anywhere in its storage by digest alone (distribution spec,
    "Mounting a blob from another repository": ``from`` MAY be optional), asked as it opens the upload."""

    async def put_or_mount(self, desc: Descriptor, opener: BlobOpener) -> bool:
        """Make the blob present: True when the storage mounted it by digest (nothing sent), False when
        it was uploaded from ``opener`` as :meth:`Destination.put_blob` does."""
        ...


ReferrersVia = Literal["api", "fallback", "layout", "none"]


@dataclass(frozen=True, slots=True)
class ReferrerList:
    """What refers to one subject in a store (distribution spec, "Listing Referrers").

    :ivar descriptors: referrer manifests by digest: the referrers API's answer, the fallback tag's
        index, or a layout's entries whose manifest has this subject
    :ivar tags: cosign tag-scheme referrers (``sha256-<hex>.sig``/``.att``/``.sbom``) in the repository
    :ivar via: where ``descriptors`` came from
    :ivar index_tag: the fallback tag read, when the list came from one
    """

    subject: Digest
    descriptors: tuple[Descriptor, ...] = ()
    tags: tuple[str, ...] = ()
    via: ReferrersVia = "none"
    index_tag: str | None = None


@dataclass(frozen=True, slots=True)
class IndexOutcome:
    """How a destination made pushed referrers discoverable.

    :ivar via: ``api`` (the registry indexes them), ``fallback`` (the fallback tag's index), ``layout``
    :ivar written: the fallback index was written (False: it already listed every one)
    :ivar rounds: read-merge-write rounds until a read showed every entry (concurrent writers cost more)
    """

    via: ReferrersVia
    written: bool = False
    rounds: int = 0


@runtime_checkable
class Referrers(Protocol):
    """A store that can list the referrers of a manifest and, written to, make pushed ones discoverable."""

    @property
    def keeps_referrers(self) -> bool:
        """Whether referrers written here are kept and found again (not so for a docker-archive)."""
        ...

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = ()) -> ReferrerList:
        """What refers to ``subject``.

        :param tags: the repository's tag list when the caller already has it (cosign tags and the
            fallback tag are found there without another request); None: the store lists them
        :param artifact_types: keep only referrers of these artifact types (descriptors only: cosign
            tags carry no type until their manifest is read)
        """
        ...

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        """After ``referrers`` (manifests whose subject is ``subject``) were pushed by digest: make them
        discoverable (check the API lists them, or merge them into the fallback index)."""
        ...


@runtime_checkable
class Deleter(Protocol):
    """A store that can delete manifests (a registry repository; local stores cannot)."""

    async def delete_manifest(self, digest: Digest) -> None:
        """Delete a manifest by digest; every tag pointing at it goes with it."""
        ...


@runtime_checkable
class Admitter(Protocol):
    """A destination that holds only some kinds of manifest (a docker-archive: single-platform container
    images), asked before anything of a copy is written, so a refusal moves no blob."""

    def admit(self, manifests: Sequence[Manifest]) -> None:
        """Refuse what this destination cannot hold: raise ``StoreError`` naming the manifest and why.

        :param manifests: every manifest of the copy, leaves first, the root last
        """
        ...


@runtime_checkable
class Committer(Protocol):
    """A destination that must finish writing after the last manifest (layouts, archives)."""

    async def commit(self) -> None:
        """Make everything written so far durable and visible."""
        ...


class UploadJournal(Protocol):
    """Where a run records its open upload sessions, so a later run can resume them.

    A process that is killed (SIGKILL, power loss) cannot DELETE its sessions; on a registry that
    keeps the bytes of a session (docs/protocol.md#upload-sessions; not 2.8.2) the next run asks
    :meth:`session_for`, GETs the session's status and sends only the rest. Keys are the
    destination's ``storage_id``, repository and blob digest. Locations are secrets (2.8.2 signs
    state into them): store them like credentials. Methods are called on the event loop and must
    not block for long; a failing journal fails the upload.
    """

    def session_for(self, storage_id: str, repository: str, digest: Digest) -> str | None:
        """The newest Location an earlier run left open for this blob, or None."""
        ...

    def session_opened(self, storage_id: str, repository: str, digest: Digest, location: str) -> None:
        """A new upload session was opened at ``location``."""
        ...

    def session_moved(self, storage_id: str, repository: str, digest: Digest, location: str) -> None:
        """The session's newest Location changed (at most once per PATCH or status request)."""
        ...

    def session_closed(self, storage_id: str, repository: str, digest: Digest) -> None:
        """The session is over: committed, cancelled, or found gone. Forget it."""
        ...
