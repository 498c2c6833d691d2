"""Referrers in registry stores: what one registry host supports, listing referrers in a registry
repository, and keeping a destination's fallback index (the registry side of
:class:`~regcopy.stores.base.Referrers`; a layout's side is :mod:`regcopy.stores.layoutreferrers`).

:class:`RegistryFeatures` is what a run learns about one registry host, once: whether it has the
referrers API (one 404 on a repository that exists says no, distribution spec "Unavailable Referrers
API"; a manifest PUT answering ``OCI-Subject`` says yes) and whether it mounts a blob by digest alone.

:class:`RegistryReferrers` lists referrers through the API or the fallback tag plus cosign's tags, and
maintains the fallback index on a destination without the API: read, merge (never dropping an entry
someone else wrote), write on the condition the tag did not change (``If-Match``, honoured where the
registry supports it), then wait :attr:`RegistryFeatures.settle` and read again, until a read shows
every entry. Within a process one lock per (repository, subject) orders the writers; across
processes on a registry without conditional writes (2.8.2) the re-read catches a writer that
overwrote this one while it waited, and a later run repairs what a slower one dropped
(docs/architecture.md, "Referrers").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import anyio

from regcopy.digest import Digest
from regcopy.errors import RegistryError
from regcopy.manifest import Manifest
from regcopy.referrer import cosign_tags, fallback_tag, filter_types, index_descriptors, merge_index, referrer_entry
from regcopy.registry import referrers as ops
from regcopy.registry.transport import Transport
from regcopy.stores.base import IndexOutcome, ReferrerList

__all__ = ("RegistryFeatures", "RegistryReferrers")

log = logging.getLogger(__name__)

_MAX_ROUNDS: Final = 6
"""Read-merge-write rounds on one fallback index before giving up (each after a concurrent writer)."""


@dataclass(slots=True)
class RegistryFeatures:
    """What a run learned about one registry host (shared by every store on it).

    :ivar referrers_api: True (it answered the API, or a PUT with ``OCI-Subject``), False (404), None
        (not asked yet)
    :ivar mount_anywhere: True (a mount without ``from`` answered 201), False (it refused one with an
        error: never asked again), None (not asked, or only ever answered by opening an upload)
    :ivar settle: seconds to wait after writing a fallback index before reading it back
    """

    referrers_api: bool | None = None
    mount_anywhere: bool | None = None
    settle: float = 0.5
    probes: int = 0
    """Requests spent learning (API probes and refused mounts): at most one of each per host."""
    mount_asked: bool = False
    """A mount without ``from`` was answered once (201, 202 or a refusal): later ones need no lock."""
    mount_learning: anyio.Lock = field(default_factory=anyio.Lock)
    _learning: anyio.Lock = field(default_factory=anyio.Lock)
    _subjects: dict[tuple[str, Digest], anyio.Lock] = field(default_factory=dict)

    def refuses_mount(self) -> bool:
        """Whether the host refused a mount without ``from`` (never asked again)."""
        return self.mount_anywhere is False

    def subject_lock(self, repository: str, subject: Digest) -> anyio.Lock:
        """The lock ordering this process's writers of one fallback index."""
        return self._subjects.setdefault((repository, subject), anyio.Lock())


class RegistryReferrers:
    """Referrers of one registry repository."""

    def __init__(self, transport: Transport, repository: str, features: RegistryFeatures) -> None:
        self.transport = transport
        self.repository = repository
        self.features = features

    async def listing(self, subject: Digest, tags: Sequence[str], artifact_types: Sequence[str]) -> ReferrerList:
        """Through the API when the host has it, else the fallback tag (when ``tags`` lists it); plus
        cosign's tags from ``tags``."""
        signed = cosign_tags(subject, tags)
        answer = await self._api(subject, artifact_types)
        if answer is not None:
            return ReferrerList(subject, filter_types(answer.descriptors, artifact_types), signed, "api")
        tag = fallback_tag(subject)
        if tag not in tags:
            return ReferrerList(subject, (), signed, "none")
        read = await ops.index_read(self.transport, self.repository, tag)
        if read.index is None:  # deleted since the listing
            return ReferrerList(subject, (), signed, "none")
        found = index_descriptors(_json(read.index), where=f"{self.transport.registry}/{self.repository}:{tag}")
        return ReferrerList(subject, filter_types(found, artifact_types), signed, "fallback", tag)

    async def _api(self, subject: Digest, artifact_types: Sequence[str]) -> ops.ReferrersAnswer | None:
        if self.features.referrers_api is False:
            return None
        wanted = artifact_types[0] if len(artifact_types) == 1 else None
        if self.features.referrers_api is None:
            async with self.features._learning:  # one probe per host, however many images ask at once
                if self.features.referrers_api is None:
                    answer = await ops.referrers_list(self.transport, self.repository, subject, artifact_type=wanted)
                    self.features.referrers_api = answer is not None
                    if answer is None:
                        self.features.probes += 1
                        log.info("%s has no referrers API (404): using the fallback tag", self.transport.registry)
                    return answer
        if not self.features.referrers_api:
            return None
        return await ops.referrers_list(self.transport, self.repository, subject, artifact_type=wanted)

    async def index(self, subject: Digest, pushed: Sequence[Manifest]) -> IndexOutcome:
        """Make ``pushed`` discoverable: on a host with the API, check it lists them (and write the
        fallback index too when it does not); elsewhere, merge them into the fallback index."""
        if not pushed:
            return IndexOutcome("api" if self.features.referrers_api else "fallback")
        if self.features.referrers_api:
            answer = await ops.referrers_list(self.transport, self.repository, subject)
            listed = {d.digest for d in answer.descriptors} if answer is not None else set()
            if all(m.digest in listed for m in pushed):
                return IndexOutcome("api")
            log.warning("%s/%s: the referrers API does not list what was pushed for %s; writing the fallback tag",
                        self.transport.registry, self.repository, subject.short)
        return await self._merge(subject, [referrer_entry(m) for m in pushed])

    async def _merge(self, subject: Digest, entries: list[dict[str, object]]) -> IndexOutcome:
        tag = fallback_tag(subject)
        written = False
        async with self.features.subject_lock(self.repository, subject):
            for rounds in range(1, _MAX_ROUNDS + 1):
                read = await ops.index_read(self.transport, self.repository, tag)
                merged = merge_index(read.index, entries)
                if merged is None:
                    return IndexOutcome("fallback", written, rounds)
                if rounds > 1:
                    log.info("%s/%s:%s lost entries to another writer; merging again (round %d)",
                             self.transport.registry, self.repository, tag, rounds)
                if await ops.index_write(self.transport, self.repository, tag, merged, read):
                    written = True
                    # No conditional PUT on 2.8.2: read again once a concurrent writer's PUT would have landed.
                    await anyio.sleep(self.features.settle)
        raise RegistryError(f"the fallback index {tag} kept changing under concurrent writers ({_MAX_ROUNDS} rounds)",
                            registry=self.transport.registry)


def _json(manifest: Manifest) -> object:
    return json.loads(manifest.data)
