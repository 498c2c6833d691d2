"""The blob ledger and the blob decision: skip, mount (from which repositories) or upload.

:class:`BlobLedger` is what a run knows about blobs on each destination storage; :meth:`BlobLedger.decide`
is the one rule for a blob, used by the engine's copy and by a sync dry run alike, so a dry run
predicts what a run does (short of a mount the registry refuses, which the run follows with an upload).
A dry run decides on :meth:`BlobLedger.simulation`, a copy that takes what it notes as present.

Two seams let a ledger shared by several processes (``regcopy.scale``) extend it without the engine
knowing: :meth:`BlobLedger.upload_lease` (always granted here: :attr:`BlobLedger.flights` already
serialises one process's copies) and :meth:`BlobLedger.forget` (a mount the registry refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Literal

from regcopy.digest import Digest
from regcopy.manifest import Descriptor
from regcopy.singleflight import SingleFlight
from regcopy.stores.base import Destination, Mounter, Origin

__all__ = ("BlobAction", "BlobDecision", "BlobLedger")

BlobAction = Literal["uploaded", "mounted", "skipped"]

_MOUNT_TRIES: Final = 3
"""Mount candidates tried before uploading: each refused mount costs a round trip."""


@dataclass(frozen=True, slots=True)
class BlobDecision:
    """What to do with one blob for one destination.

    :ivar action: ``skipped`` (present), ``mounted`` (try ``candidates`` in order; upload if every
        one is refused) or ``uploaded``
    :ivar candidates: repositories of the destination's storage to mount from, best first
    """

    action: BlobAction
    candidates: tuple[str, ...] = ()


class BlobLedger:
    """What a run knows about blobs on each destination storage.

    ``holders[(storage, digest)]`` is the set of repositories known to hold the blob (mount
    candidates); ``flights`` makes sure one blob is uploaded once per storage at a time: a second
    copy of the same blob waits, then mounts or skips (docs/architecture.md, "Blob ledger").
    """

    def __init__(self) -> None:
        self.holders: dict[tuple[str, Digest], set[str]] = {}
        self.flights: SingleFlight[tuple[str, Digest], BlobAction] = SingleFlight()
        self.empty: set[tuple[str, str]] = set()
        self._simulated = False

    def simulation(self) -> BlobLedger:
        """A copy for a dry run: it decides as this ledger would, and takes a blob it noted as present
        (nothing is written, so a HEAD would not find it); this ledger is left as it was."""
        sim = BlobLedger()
        sim.holders = {key: set(repos) for key, repos in self.holders.items()}
        sim.empty = set(self.empty)
        sim._simulated = True
        return sim

    def set_empty(self, storage: str, repository: str, empty: bool) -> None:
        """Record whether a destination repository was found not to exist (a sync's tag listing).

        Blobs the ledger has not seen go there cannot be present, so their HEAD (a certain 404) is
        skipped; blobs moved there during the run are in :attr:`holders`.
        """
        if empty:
            self.empty.add((storage, repository))
        else:
            self.empty.discard((storage, repository))

    def known(self, storage: str, digest: Digest, repository: str, *, shared: bool = False) -> bool | None:
        """Whether ``digest`` is in ``repository``, when the ledger knows for sure (else None).

        It knows for a repository this run found empty: everything in it was put there by this run,
        so a HEAD (a certain 404, or a certain 200 for a blob just moved there) is skipped. A
        simulation also knows every blob it noted: in ``repository``, or anywhere in a storage whose
        repositories share their blobs (``shared``, :attr:`Destination.shares_blobs`).
        """
        holders = self.holders.get((storage, digest), ())
        if self._simulated and (repository in holders or (shared and holders)):
            return True
        if (storage, repository) not in self.empty:
            return None
        return repository in holders

    def note(self, storage: str, digest: Digest, repository: str) -> None:
        """Record that ``repository`` of ``storage`` holds ``digest``."""
        self.holders.setdefault((storage, digest), set()).add(repository)

    def forget(self, storage: str, digest: Digest, repository: str) -> None:
        """``repository`` refused to mount ``digest``: it is not a holder after all (a stale hint)."""
        self.holders.get((storage, digest), set()).discard(repository)

    @asynccontextmanager
    async def upload_lease(self, destination: Destination, blob: Descriptor) -> AsyncIterator[bool]:
        """The right to upload ``blob`` into ``destination``'s storage, held for the block.

        Yields True: upload it. A ledger shared between processes may wait for another process's
        upload of the same blob and yield False: decide again (it is present or mountable now). One
        process needs no lease: :attr:`flights` already lets one copy per (storage, digest) run.
        """
        yield True

    def candidates(self, storage: str, digest: Digest, exclude: str) -> list[str]:
        """Repositories of ``storage`` known to hold ``digest``, other than ``exclude``."""
        return sorted(r for r in self.holders.get((storage, digest), ()) if r != exclude)

    async def decide(self, destination: Destination, blob: Descriptor, origin: Origin | None) -> BlobDecision:
        """Skip, mount or upload ``blob`` into ``destination``, reading ``origin`` (the source's).

        Skipped when present (known to the ledger, else a HEAD); else, on a :class:`Mounter`, mounted
        from the source's own repository when it is in the same storage, then from repositories the
        ledger knows hold the blob; else uploaded.
        """
        storage, repository = destination.storage_id, destination.repository
        present = self.known(storage, blob.digest, repository, shared=destination.shares_blobs)
        if present is None:
            present = await destination.has_blob(blob)
        if present:
            return BlobDecision("skipped")
        if isinstance(destination, Mounter):
            candidates = self._mount_candidates(destination, blob.digest, origin)
            if candidates:
                return BlobDecision("mounted", candidates)
        return BlobDecision("uploaded")

    def _mount_candidates(self, destination: Destination, digest: Digest, origin: Origin | None) -> tuple[str, ...]:
        found = self.candidates(destination.storage_id, digest, exclude=destination.repository)
        if (origin is not None and origin.storage_id == destination.storage_id
                and origin.repository != destination.repository):
            # Same storage: the source repository holds the blob by definition.
            found = [origin.repository, *(r for r in found if r != origin.repository)]
        return tuple(found[:_MOUNT_TRIES])
