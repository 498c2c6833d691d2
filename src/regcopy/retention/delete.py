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
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Protocol

import anyio

from regcopy.digest import Digest, verify_chunks
from regcopy.errors import ManifestNotFound, RegcopyError, Unsupported
from regcopy.manifest import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Manifest
from regcopy.registry.manifests import ManifestInfo, manifest_delete, manifest_head
from regcopy.retention.model import DeletionBudget, PruneReport, RepositoryPlan, RepositoryReport
from regcopy.retention.planner import parse_created, plan_deletions
from regcopy.stores.registry import RegistryStore

__all__ = ("PruneTarget", "RegistryTarget", "delete_tags")

log = logging.getLogger(__name__)

_CREATED_ANNOTATION: Final = "org.opencontainers.image.created"
_MAX_CONFIG: Final = 8 * 1024 * 1024
_LOOKUPS: Final = 16  # HEADs and GETs in flight per repository
_DELETES: Final = 8  # DELETEs in flight per repository


class PruneTarget(Protocol):
    """One repository as the executor sees it (:class:`RegistryTarget` for a registry)."""

    @property
    def name(self) -> str:
        """``host/path``."""
        ...

    async def list_tags(self) -> list[str]:
        """Every tag, sorted (empty when the repository does not exist)."""
        ...

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        """Digest and media type of a tag or digest, None when absent."""
        ...

    async def get_manifest(self, digest: Digest) -> Manifest:
        """A manifest by digest, verified."""
        ...

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """A blob's bytes (the caller verifies)."""
        ...

    async def delete_manifest(self, digest: Digest) -> None:
        """DELETE a manifest by digest (every tag on it goes)."""
        ...


class RegistryTarget:
    """A :class:`~regcopy.stores.registry.RegistryStore` as a :class:`PruneTarget`."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store

    @property
    def name(self) -> str:
        """``host/path``."""
        return self.store.name

    async def list_tags(self) -> list[str]:
        """Every tag, sorted."""
        return await self.store.list_tags()

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        """HEAD by tag or digest."""
        return await manifest_head(self.store.transport, self.store.repository, ref)

    async def get_manifest(self, digest: Digest) -> Manifest:
        """GET by digest."""
        return await self.store.get_manifest(digest)

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """GET a blob."""
        return self.store.open_blob(desc)

    async def delete_manifest(self, digest: Digest) -> None:
        """DELETE by digest (never by tag: 2.8.2 answers 400 to that)."""
        await manifest_delete(self.store.transport, self.store.repository, digest)


def _target(target: RegistryStore | PruneTarget) -> PruneTarget:
    return RegistryTarget(target) if isinstance(target, RegistryStore) else target


@dataclass(slots=True)
class _Inventory:
    """What the executor learned about one repository."""

    tags: dict[str, str] = field(default_factory=dict)
    media: dict[str, str] = field(default_factory=dict)
    manifests: dict[str, Manifest] = field(default_factory=dict)
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    created: dict[str, datetime | None] = field(default_factory=dict)


async def _each(items: Iterable[Any], fn: Callable[[Any], Any], limit: int) -> None:
    limiter = anyio.CapacityLimiter(limit)

    async def one(item: Any) -> None:
        async with limiter:
            await fn(item)

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(one, item)


async def _inventory(target: PruneTarget) -> _Inventory:
    """Every tag's digest (HEAD), and the manifests under every tagged index (GET)."""
    inv = _Inventory()

    async def head(tag: str) -> None:
        info = await target.head_manifest(tag)
        if info is None:
            log.info("%s:%s vanished while listing", target.name, tag)
            return
        inv.tags[tag] = str(info.digest)
        inv.media[str(info.digest)] = info.media_type

    await _each(await target.list_tags(), head, _LOOKUPS)
    # Walk indexes level by level: a child's media type comes from its descriptor.
    level = {d for d, mt in inv.media.items() if mt in INDEX_TYPES or mt not in MANIFEST_TYPES}
    while level:
        await _each(sorted(level), lambda d: _fetch(target, inv, d), _LOOKUPS)
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


async def _fetch(target: PruneTarget, inv: _Inventory, digest: str) -> Manifest:
    manifest = inv.manifests.get(digest)
    if manifest is None:
        manifest = await target.get_manifest(Digest.parse(digest))
        inv.manifests[digest] = manifest
        inv.media[digest] = manifest.media_type
    return manifest


async def _created(target: PruneTarget, inv: _Inventory, digest: str, depth: int = 0) -> datetime | None:
    """An image's config ``created``; an index's annotation, else its first image's (module doc)."""
    if digest in inv.created:
        return inv.created[digest]
    inv.created[digest] = await _read_created(target, inv, digest, depth)
    return inv.created[digest]


async def _read_created(target: PruneTarget, inv: _Inventory, digest: str, depth: int) -> datetime | None:
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


async def _load_created(target: PruneTarget, inv: _Inventory, digests: Iterable[str]) -> None:
    await _each(sorted(set(digests)), lambda digest: _created(target, inv, digest), _LOOKUPS)


async def _execute(target: PruneTarget, plan: RepositoryPlan, out: RepositoryReport, *, dry_run: bool) -> None:
    """Fill ``out`` from ``plan``; unless ``dry_run``, DELETE its digests parents first, a level at a time."""
    out.kept.extend(plan.keep)
    out.skipped.extend(plan.capped)
    if dry_run:
        out.would_delete.extend(plan.delete)
        return
    failed: dict[str, str] = {}
    done: set[str] = set()
    level_of: dict[str, int] = {}
    for digest in plan.digests:  # parents come first, so their levels are known
        level_of[digest] = 1 + max((level_of[a] for a in plan.ancestors.get(digest, ())), default=-1)
    stop: list[str] = []

    async def delete(digest: str) -> None:
        blocker = next((a for a in sorted(plan.ancestors.get(digest, ())) if a in failed), None)
        if stop:
            failed[digest] = f"not deleted: {stop[0]}"
            return
        if blocker is not None:
            failed[digest] = f"not deleted: its index {blocker} was not deleted"
            return
        try:
            await target.delete_manifest(Digest.parse(digest))
        except ManifestNotFound:
            log.info("%s@%s was already gone", target.name, digest)
        except Unsupported as exc:
            failed[digest] = f"delete failed: {exc}"
            stop.append("deletes are not supported here")
            out.errors.append(f"{target.name}@{digest}: {exc}")
            return
        except RegcopyError as exc:
            failed[digest] = f"delete failed: {exc}"
            out.errors.append(f"{target.name}@{digest}: {exc}")
            return
        done.add(digest)

    for level in sorted(set(level_of.values())):
        await _each([d for d in plan.digests if level_of[d] == level], delete, _DELETES)
    out.manifests_deleted.extend(d for d in plan.digests if d in done)
    for d in plan.delete:
        if d.digest in done:
            out.deleted.append(d)
        else:
            out.skipped.append(replace(d, reason=f"{d.reason}; {failed.get(d.digest, 'not deleted')}"))


async def delete_tags(
    target: RegistryStore | PruneTarget,
    tags: Iterable[str],
    *,
    protect: Sequence[str | re.Pattern[str]] = (),
    cap: int | DeletionBudget | None = None,
    dry_run: bool = True,
    reason: str = "requested",
    report: PruneReport | None = None,
) -> PruneReport:
    """Delete ``tags`` of one repository by digest, never taking a staying tag along.

    Lists and HEADs every tag of the repository and reads its indexes, then deletes a digest only
    if every tag on it is in ``tags`` (and unprotected) and no staying index references it; the
    others are reported as kept with the reason. This is what sync's ``delete_extra`` calls with
    the destination tags missing from the source.

    :param target: the repository (a writable :class:`RegistryStore`, e.g. sync's destination store)
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
    t = _target(target)
    out = RepositoryReport(t.name)
    report.repositories.append(out)
    patterns = tuple(p if isinstance(p, re.Pattern) else re.compile(p, re.ASCII) for p in protect)
    budget = cap if isinstance(cap, DeletionBudget) else DeletionBudget(cap)
    try:
        inv = await _inventory(t)
        plan = plan_deletions(t.name, inv.tags, tags, protect=patterns, children=inv.children, reason=reason)
        plan = plan.limit(budget.take(len(plan.digests)), "the cap on deletions was reached")
        await _execute(t, plan, out, dry_run=dry_run)
    except RegcopyError as exc:
        out.errors.append(f"{t.name}: {exc}")
    report.seconds += time.monotonic() - started
    return report
