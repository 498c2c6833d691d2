"""The deletion core: inventory one repository, then delete its doomed manifests by digest, parents first.

Owns :func:`delete_tags` (sync's ``delete_extra`` and :func:`regcopy.retention.run_prune` build on
it): every tag is HEADed for its digest and media type, indexes are read for their children, image
configs for their ``created`` time where a rule needs one; the planner decides, and the executor
DELETEs level by level (an index before the manifests it references), recording every outcome in a
:class:`~regcopy.retention.model.RepositoryReport`. Failures are reported, never raised.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Protocol, runtime_checkable

import anyio

from regcopy.digest import Digest, verify_chunks
from regcopy.errors import ManifestNotFound, RegcopyError, Unsupported
from regcopy.manifest import INDEX_TYPES, MANIFEST_TYPES, Manifest
from regcopy.retention.model import DeletionBudget, PruneReport, RepositoryPlan, RepositoryReport
from regcopy.retention.planner import parse_created, plan_deletions
from regcopy.stores.base import Deleter, ManifestHead, Source

__all__ = ("Inventory", "PruneStore", "delete_tags", "execute", "for_each", "inventory", "load_created")

log = logging.getLogger(__name__)

_CREATED_ANNOTATION: Final = "org.opencontainers.image.created"
_MAX_CONFIG: Final = 8 * 1024 * 1024
_LOOKUPS: Final = 16  # HEADs and GETs in flight per repository
_DELETES: Final = 8  # DELETEs in flight per repository


@runtime_checkable
class PruneStore(Source, ManifestHead, Deleter, Protocol):
    """A repository retention can inventory and delete from: a :class:`~regcopy.stores.base.Source`
    that HEADs manifests with their media type and deletes them by digest (a registry repository,
    :class:`~regcopy.stores.registry.RegistryStore`)."""


@dataclass(slots=True)
class Inventory:
    """What the executor learned about one repository."""

    tags: dict[str, str] = field(default_factory=dict)
    media: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created: dict[str, datetime | None] = field(default_factory=dict)


async def for_each(items: Iterable[Any], fn: Callable[[Any], Any], limit: int) -> None:
    """``await fn(item)`` for every item, at most ``limit`` at once; the first failure cancels the rest."""
    limiter = anyio.CapacityLimiter(limit)

    async def one(item: Any) -> None:
        async with limiter:
            await fn(item)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)


async def inventory(target: PruneStore) -> Inventory:
    """Every tag's digest (HEAD), and the manifests under every tagged index (GET)."""
    inv = Inventory()

    async def head(tag: str) -> None:
        info = await target.head_manifest(tag)
        if info is None:
            log.info("%s:%s vanished while listing", target.name, tag)
            return
        inv.tags[tag] = str(info.digest)
        inv.media[str(info.digest)] = info.media_type

    await for_each(await target.list_tags(), head, _LOOKUPS)
    # Walk indexes level by level: a child's media type comes from its descriptor.
    level = {d for d, mt in inv.media.items() if mt in INDEX_TYPES or mt not in MANIFEST_TYPES}
    while level:
        await for_each(sorted(level), lambda d: _fetch(target, inv, d), _LOOKUPS)
        nxt: set[str] = set()
        for digest in level:
            manifest = inv.manifests[digest]
            inv.children[digest] = tuple(str(c.digest) for c in manifest.manifests)
            for child in manifest.manifests:
                inv.media.setdefault(str(child.digest), child.media_type)
                if child.media_type in INDEX_TYPES and str(child.digest) not in inv.manifests:
                    nxt.add(str(child.digest))
        level = nxt
    return inv


async def _fetch(target: PruneStore, inv: Inventory, digest: str) -> Manifest:
    manifest = inv.manifests.get(digest)
    if manifest is None:
        manifest = await target.get_manifest(Digest.parse(digest))
        inv.manifests[digest] = manifest
        inv.media[digest] = manifest.media_type
    return manifest


async def _created(target: PruneStore, inv: Inventory, digest: str, depth: int = 0) -> datetime | None:
    """An image's config ``created``; an index's annotation, else its first image's (module doc)."""
    if digest in inv.created:
        return inv.created[digest]
    inv.created[digest] = await _read_created(target, inv, digest, depth)
    return inv.created[digest]


async def _read_created(target: PruneStore, inv: Inventory, digest: str, depth: int) -> datetime | None:
    manifest = await _fetch(target, inv, digest)
    if manifest.is_index:
        try:
            annotations = json.loads(manifest.data).get("annotations") or {}
        except (ValueError, AttributeError):
            annotations = {}
        stamp = parse_created(annotations.get(_CREATED_ANNOTATION)) if isinstance(annotations, dict) else None
        if stamp is not None or not manifest.manifests or depth > 8:
            return stamp
        return await _created(target, inv, str(manifest.manifests[0].digest), depth + 1)
    config = manifest.config
    if config is None or config.size > _MAX_CONFIG:
        return None
    data = b"".join([chunk async for chunk in target.open_blob(config)])
    verify_chunks([data], config.digest, config.size, what="image config")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return parse_created(obj.get("created")) if isinstance(obj, dict) else None


async def load_created(target: PruneStore, inv: Inventory, digests: Iterable[str]) -> None:
    """Fill ``inv.created`` for ``digests`` (image configs read only for these)."""
    await for_each(sorted(set(digests)), lambda digest: _created(target, inv, digest), _LOOKUPS)


async def execute(target: PruneStore, plan: RepositoryPlan, out: RepositoryReport, *, dry_run: bool) -> None:
    """Fill ``out`` from ``plan``; unless ``dry_run``, DELETE its digests parents first, a level at a time."""
    out.kept.extend(plan.keep)
    out.skipped.extend(plan.capped)
    if dry_run:
        out.would_delete.extend(plan.delete)
        return
    level_of: dict[str, int] = {}
    for digest in plan.digests:  # parents come first, so their levels are known
        level_of[digest] = 1 + max((level_of[a] for a in plan.ancestors.get(digest, ())), default=-1)
    deletions = _Deletions(target, plan, out)
    for level in sorted(set(level_of.values())):
        await for_each([d for d in plan.digests if level_of[d] == level], deletions.delete, _DELETES)
    out.manifests_deleted.extend(d for d in plan.digests if d in deletions.done)
    for d in plan.delete:
        if d.digest in deletions.done:
            out.deleted.append(d)
        else:
            out.skipped.append(replace(d, reason=f"{d.reason}; {deletions.failed.get(d.digest, 'not deleted')}"))


@dataclass(slots=True)
class _Deletions:
    """One repository's DELETEs under way: what went, what failed and why, and whether to stop."""

    target: PruneStore
    plan: RepositoryPlan
    out: RepositoryReport
    failed: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    stop: str | None = None

    async def delete(self, digest: str) -> None:
        """DELETE one digest, unless the run stopped or an index above it was not deleted."""
        blocker = next((a for a in sorted(self.plan.ancestors.get(digest, ())) if a in self.failed), None)
        if self.stop is not None:
            self.failed[digest] = f"not deleted: {self.stop}"
            return
        if blocker is not None:
            self.failed[digest] = f"not deleted: its index {blocker} was not deleted"
            return
        try:
            await self.target.delete_manifest(Digest.parse(digest))
        except ManifestNotFound:
            log.info("%s@%s was already gone", self.target.name, digest)
        except RegcopyError as exc:
            self.failed[digest] = f"delete failed: {exc}"
            if isinstance(exc, Unsupported):
                self.stop = "deletes are not supported here"
            self.out.errors.append(f"{self.target.name}@{digest}: {exc}")
            return
        self.done.add(digest)


async def delete_tags(
    target: PruneStore, tags: Iterable[str], *, protect: Sequence[str | re.Pattern[str]] = (),
    cap: int | DeletionBudget | None = None, dry_run: bool = True, reason: str = "requested",
    report: PruneReport | None = None,
) -> PruneReport:
    """Delete ``tags`` of one repository by digest, never taking a staying tag along.

    Lists and HEADs every tag of the repository and reads its indexes, then deletes a digest only
    if every tag on it is in ``tags`` (and unprotected) and no staying index references it; the
    others are reported as kept with the reason. This is what sync's ``delete_extra`` calls with
    the destination tags missing from the source.

    :param target: the repository (e.g. sync's destination store, a writable registry repository)
    :param protect: anchored regexes (strings are compiled) of tags never deleted
    :param cap: at most this many manifest deletions; pass one :class:`DeletionBudget` to every
        call of a run to cap the run as a whole
    :param dry_run: only report what would go (the default)
    :param reason: the reason recorded for each deleted tag (``"not in the source"``)
    :param report: a report to add this repository to (its ``dry_run`` is left as it is)
    :returns: ``report`` or a new one; failures are in it, not raised
    """
    started = time.monotonic()
    report = report if report is not None else PruneReport(dry_run=dry_run)
    out = RepositoryReport(target.name)
    report.repositories.append(out)
    patterns = tuple(p if isinstance(p, re.Pattern) else re.compile(p, re.ASCII) for p in protect)
    budget = cap if isinstance(cap, DeletionBudget) else DeletionBudget(cap)
    try:
        inv = await inventory(target)
        plan = plan_deletions(target.name, inv.tags, tags, protect=patterns, children=inv.children, reason=reason)
        plan = plan.limit(budget.take(len(plan.digests)), "the cap on deletions was reached")
        await execute(target, plan, out, dry_run=dry_run)
    except RegcopyError as exc:
        out.errors.append(f"{target.name}: {exc}")
    report.seconds += time.monotonic() - started
    return report
