"""Referrers in a sync: which tags are images, whether an up-to-date image's referrers are in sync too,
and what a dry run would copy (docs/architecture.md, "Referrers").

A no-op re-sync must cost no more than today's: referrer tags (cosign's ``.sig``/``.att``/``.sbom``
and the fallback ``sha256-<hex>``) are compared as today's unfiltered sync compares every tag, one
HEAD per side, once per pair of repositories (:class:`PairCheck`); a fallback index whose digest
differs (the destination's may hold more entries, merged from elsewhere) is read on both sides and
is in sync when the destination lists everything the source does. Untagged referrers only the
referrers API or a layout shows are asked of the source per image; a registry without the API
answers its one 404 once and costs nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio

from regcopy.artifacts import ReferrerPolicy, discover, subjects_of
from regcopy.digest import Digest
from regcopy.engine import ImagePlan
from regcopy.errors import RegcopyError
from regcopy.referrer import index_descriptors, parse_referrer_tag
from regcopy.stores.base import Destination, Referrers, Source

__all__ = ("PairCheck", "ReferrersCheck", "dry_run_referrers", "image_tags", "referrer_tags", "untagged_referrers")


def referrer_tags(tags: Sequence[str]) -> list[str]:
    """The tags of a listing that name referrers rather than images."""
    return [t for t in tags if parse_referrer_tag(t) is not None]


def image_tags(tags: Sequence[str], referrers: bool) -> list[str]:
    """The tags a tag filter chooses from: with ``referrers`` on, referrer tags travel with their
    subjects instead (a filter never drops a selected image's signatures, nor selects them alone)."""
    return [t for t in tags if parse_referrer_tag(t) is None] if referrers else list(tags)


class PairCheck:
    """Whether the referrer tags of one source repository are on its target as they are on the source.

    Computed once per pair (concurrent callers wait for the first): HEAD each referrer tag the
    source lists on both sides; a tag missing on the target, or a cosign tag on another digest, is
    out of sync; a fallback index on another digest is read on both sides and is in sync when the
    target lists everything the source does.
    """

    def __init__(self, source: Source, destination: Destination, src_tags: Sequence[str], dst_tags: set[str]) -> None:
        self.source = source
        self.destination = destination
        self.tags = referrer_tags(src_tags)
        self.dst_tags = dst_tags
        self._lock = anyio.Lock()
        self._result: bool | None = None

    async def in_sync(self) -> bool:
        """True when every referrer tag of the source is matched on the target."""
        async with self._lock:
            if self._result is None:
                self._result = await self._compute()
            return self._result

    async def _compute(self) -> bool:
        if any(t not in self.dst_tags for t in self.tags):
            return False
        verdicts: list[bool] = []

        async def one(tag: str) -> None:
            verdicts.append(await self._tag_in_sync(tag))

        async with anyio.create_task_group() as tg:
            for tag in self.tags:
                tg.start_soon(one, tag)
        return all(verdicts)

    async def _tag_in_sync(self, tag: str) -> bool:
        src, dst = await self.source.head(tag), await self.destination.head(tag)
        if src is None or src == dst:
            return True
        parsed = parse_referrer_tag(tag)
        if parsed is None or parsed.kind != "fallback" or dst is None:
            return False
        return await _covered(self.source, self.destination, src, dst)


async def _covered(source: Source, destination: Destination, src: Digest, dst: Digest) -> bool:
    """Whether the target's fallback index lists every referrer the source's does."""
    if not isinstance(destination, Source):
        return False  # cannot read it back: let the copy merge (idempotent)
    mine, theirs = await source.get_manifest(src), await destination.get_manifest(dst)
    try:
        wanted = {d.digest for d in index_descriptors(json.loads(mine.data), where="source referrers index")}
        listed = {d.digest for d in index_descriptors(json.loads(theirs.data), where="target referrers index")}
    except (RegcopyError, ValueError):
        return False
    return wanted <= listed


class ReferrersCheck:
    """The check phase's question for an up-to-date image: are its referrers in sync too?

    :param backend: the run's stores (``source``/``destination`` by repository)
    :param src_tags: the source repositories' listings from discovery
    :param dst_tags: the target repositories' tags from discovery
    """

    def __init__(self, backend: _Stores, src_tags: Mapping[Any, list[str]], dst_tags: Mapping[Any, set[str]],
                 limit: anyio.CapacityLimiter) -> None:
        self.backend = backend
        self.src_tags = src_tags
        self.dst_tags = dst_tags
        self.limit = limit
        self._pairs: dict[tuple[object, object], PairCheck] = {}

    async def in_sync(self, job: _Job, root: Digest) -> bool:
        """True when ``job`` carries no referrers, or they are on the target as on the source."""
        if not job.referrers.enabled:
            return True
        source, destination = self.backend.source(job.source.repo), self.backend.destination(job.target.repo)
        async with self.limit:
            if await untagged_referrers(source, root, job.referrers):
                return False  # the copy checks each one (a HEAD apiece) and the target's index
        key = (job.source.repo, job.target.repo)
        if key not in self._pairs:
            self._pairs[key] = PairCheck(source, destination, self.src_tags.get(job.source.repo, []),
                                         self.dst_tags.get(job.target.repo, set()))
        return await self._pairs[key].in_sync()


class _Stores(Protocol):
    def source(self, repo: Any) -> Source: ...

    def destination(self, repo: Any) -> Destination: ...


class _Job(Protocol):
    @property
    def referrers(self) -> ReferrerPolicy: ...

    @property
    def source(self) -> Any: ...

    @property
    def target(self) -> Any: ...


async def untagged_referrers(source: Source, root: Digest, policy: ReferrerPolicy) -> bool:
    """Whether the source shows referrers of ``root`` that no tag names: through the referrers API
    (its host probed once) or a layout's entries. No request on a registry known to lack the API."""
    if not isinstance(source, Referrers):
        return False
    listed = await source.referrers(root, tags=(), artifact_types=policy.artifact_types)
    return bool(listed.descriptors)


async def dry_run_referrers(source: Source, destination: Destination, plan: ImagePlan, policy: ReferrerPolicy,
                            tags: Sequence[str] | None) -> dict[str, object]:
    """What a copy would do with the referrers of ``plan``: found on the source, and how many are
    missing on the destination (HEAD by digest, or the cosign tag's digest)."""
    found = await discover(source, subjects_of(plan), policy, tags=tags)
    every = [a for top in found for a in top.walk()]
    missing = 0
    for item in every:
        there = await destination.head(item.tag or str(item.digest))
        missing += there != item.digest
    return {"found": len(every), "to_copy": missing}
