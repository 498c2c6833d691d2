"""The pure retention planner: which tags of one repository stay, which digests go, in which order.

No I/O: :func:`plan_repository` (a :class:`~regcopy.retention.model.PruneRule`) and
:func:`plan_deletions` (given tags, sync's ``delete_extra``) work on tag → digest, digest →
creation time and index → children maps the deletion core gathered. Distribution deletes a
manifest by digest, taking every tag on it along, so a digest goes only if every tag on it goes
and no staying index references it; deletions are ordered parents first (an interrupted or capped
run never leaves a kept index pointing at a deleted child), and a cap keeps a prefix of that order.

Creation times at or before 1980-01-01T00:00:01Z (Go's zero time, the Unix epoch, Buildpacks'
fixed date: what reproducible builds write) are *unknown*: never deleted by age nor ranked by time.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Final

from regcopy.retention.model import Decision, PruneRule, RepositoryPlan, protected_by
from regcopy.retention.parse import duration_text
from regcopy.semver import rank_versions

__all__ = ("needs_created", "parse_created", "plan_deletions", "plan_repository")

_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Reproducible builders stamp fixed dates (Go zero time, the epoch, Buildpacks' 1980-01-01T00:00:01Z).
_MEANINGLESS_BEFORE: Final = datetime(1980, 1, 1, 0, 0, 2, tzinfo=UTC)


_Intent = tuple[bool, str]  # (delete?, reason)


def plan_repository(
    repository: str,
    rule: PruneRule,
    tags: Mapping[str, str],
    *,
    created: Mapping[str, datetime | None] | None = None,
    children: Mapping[str, Sequence[str]] | None = None,
    now: datetime,
    cap: int | None = None,
) -> RepositoryPlan:
    """Apply ``rule`` to one repository (pure).

    :param tags: every tag of the repository → its digest (a tag missing here is not considered)
    :param created: digest → creation time (None or absent: unknown); needed only for the tags
        :func:`needs_created` names
    :param children: index digest → the digests it references (images and nested indexes)
    :param now: the reference time of ``older_than`` (timezone-aware)
    :param cap: at most this many manifest deletions (the rule's own cap applies too)
    """
    intents, priority = _select(rule, tags, created or {}, now)
    caps = [c for c in (rule.cap, cap) if c is not None]
    return _settle(repository, tags, intents, priority, children or {}, min(caps) if caps else None)


def plan_deletions(
    repository: str,
    tags: Mapping[str, str],
    doomed: Iterable[str],
    *,
    protect: Sequence[re.Pattern[str]] = (),
    children: Mapping[str, Sequence[str]] | None = None,
    cap: int | None = None,
    reason: str = "requested",
) -> RepositoryPlan:
    """Delete the ``doomed`` tags of one repository, safely (pure; sync's ``delete_extra``).

    Protected tags stay; so does any tag whose digest another staying tag (or a staying index)
    still references. Tags of ``doomed`` missing from ``tags`` are ignored.
    """
    wanted = dict.fromkeys(t for t in doomed if t in tags)
    intents: dict[str, _Intent] = {}
    for tag in tags:
        pattern = protected_by(protect, tag)
        if pattern is not None:
            intents[tag] = (False, f"protected: matches {pattern!r}")
        else:
            intents[tag] = (True, reason) if tag in wanted else (False, "not requested")
    return _settle(repository, tags, intents, list(wanted), children or {}, cap)


def needs_created(rule: PruneRule, tags: Mapping[str, str]) -> set[str]:
    """The tags whose creation time :func:`plan_repository` reads (configs are fetched only for them)."""
    candidates = [t for t in tags if rule.protected_by(t) is None]
    if rule.keep_latest is not None and rule.order == "created":
        return set(candidates)
    if rule.older_than is None:
        return set()
    if rule.keep_latest is None:
        return set(candidates)
    versions, others = rank_versions(candidates)
    _, ranked_out = _top_images(versions, tags, rule.keep_latest)
    return set(ranked_out) | set(others)


def _top_images(ranked: Sequence[str], tags: Mapping[str, str], n: int) -> tuple[dict[str, int], list[str]]:
    """Tags of the ``n`` best-ranked images (tag → the image's rank, from 1), and the other tags, worst first.

    ``keep_latest`` counts images, not tags: ``1.2.3``, ``1.2`` and ``1`` on one digest are one image.
    """
    place: dict[str, int] = {}
    top: dict[str, int] = {}
    rest: list[str] = []
    for tag in ranked:
        digest = tags[tag]
        if digest not in place and len(place) < n:
            place[digest] = len(place) + 1
        if digest in place:
            top[tag] = place[digest]
        else:
            rest.append(tag)
    return top, rest[::-1]


def _select(
    rule: PruneRule, tags: Mapping[str, str], created: Mapping[str, datetime | None], now: datetime
) -> tuple[dict[str, _Intent], list[str]]:
    """Each tag's intent under ``rule`` (before digest sharing), and the doomed tags oldest first."""
    intents: dict[str, _Intent] = {}
    candidates: list[str] = []
    for tag in sorted(tags):
        pattern = rule.protected_by(tag)
        if pattern is not None:
            intents[tag] = (False, f"protected: matches {pattern!r}")
        else:
            candidates.append(tag)

    def when(tag: str) -> datetime | None:
        return _meaningful(created.get(tags[tag]))

    ranked_out = _keep_latest(rule, tags, candidates, when, intents, now)
    if rule.older_than is None:
        for tag in ranked_out:
            intents[tag] = (True, f"not among the latest {rule.keep_latest} by {rule.order}")
        return intents, ranked_out
    return intents, _older_than(rule, ranked_out, when, intents, now)


def _keep_latest(
    rule: PruneRule, tags: Mapping[str, str], candidates: list[str], when: Callable[[str], datetime | None],
    intents: dict[str, _Intent], now: datetime,
) -> list[str]:
    """Record what ``keep_latest`` keeps in ``intents``; return the candidates beyond it, lowest rank first."""
    n = rule.keep_latest
    if n is None:
        return candidates
    if rule.order == "semver":
        versions, others = rank_versions(candidates)
        top, ranked_out = _top_images(versions, tags, n)
        for tag, place in top.items():
            intents[tag] = (False, f"latest {n} by semver (#{place})")
        if rule.older_than is not None:
            return ranked_out + others
        for tag in others:
            intents[tag] = (False, "not a version (keep_latest ranks versions)")
        return ranked_out
    dated = [(c, tag) for tag in candidates if (c := when(tag)) is not None]
    for tag in candidates:
        if when(tag) is None:
            intents[tag] = (False, "no creation time (keep_latest ranks by created)")
    dated.sort(reverse=True)
    top, ranked_out = _top_images([tag for _, tag in dated], tags, n)
    for tag, place in top.items():
        intents[tag] = (False, f"latest {n} by created (#{place}, created {_iso(when(tag) or now)})")
    return ranked_out


def _older_than(
    rule: PruneRule, ranked_out: list[str], when: Callable[[str], datetime | None], intents: dict[str, _Intent],
    now: datetime,
) -> list[str]:
    """Record which of ``ranked_out`` ``older_than`` lets go in ``intents``; return those, oldest first."""
    assert rule.older_than is not None
    n = rule.keep_latest
    outside = f" and not among the latest {n} by {rule.order}" if n is not None else ""
    cutoff, age = now - rule.older_than, duration_text(rule.older_than)
    going: list[tuple[datetime, str]] = []
    for tag in ranked_out:
        c = when(tag)
        if c is None:
            intents[tag] = (False, "no creation time (older_than needs one)")
        elif c > cutoff:
            intents[tag] = (False, f"created {_iso(c)}, not older than {age}")
        else:
            intents[tag] = (True, f"created {_iso(c)}, older than {age}{outside}")
            going.append((c, tag))
    going.sort()
    return [tag for _, tag in going]


def _descendants(root: str, children: Mapping[str, Sequence[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(children.get(root, ()))
    while stack:
        digest = stack.pop()
        if digest not in seen:
            seen.add(digest)
            stack.extend(children.get(digest, ()))
    seen.discard(root)
    return seen


def _settle(
    repository: str,
    tags: Mapping[str, str],
    intents: Mapping[str, _Intent],
    priority: Sequence[str],
    children: Mapping[str, Sequence[str]],
    cap: int | None,
) -> RepositoryPlan:
    """Turn per-tag intents into manifest deletions that never take a staying tag or index child along."""
    keep, doomed = _sort_out(tags, intents, children)
    going = {d.digest for d in doomed.values()}
    rank: dict[str, int] = {}
    for i, tag in enumerate([*priority, *sorted(doomed)]):
        if tag in doomed:
            rank.setdefault(doomed[tag].digest, i)
    ancestors: dict[str, set[str]] = {d: set() for d in going}
    for parent in going:
        for child in _descendants(parent, children) & going:
            ancestors[child].add(parent)
    order = _parents_first(going, ancestors, rank)
    position = {digest: i for i, digest in enumerate(order)}
    delete = tuple(sorted(doomed.values(), key=lambda d: (position[d.digest], d.tag)))
    plan = RepositoryPlan(repository, tuple(keep), delete, (), tuple(order),
                          MappingProxyType({d: frozenset(a) for d, a in ancestors.items()}))
    return plan if cap is None else plan.limit(cap, f"the cap of {cap} deletions was reached")


def _sort_out(
    tags: Mapping[str, str], intents: Mapping[str, _Intent], children: Mapping[str, Sequence[str]]
) -> tuple[list[Decision], dict[str, Decision]]:
    """The tags that stay (by intent, or because a staying tag or index needs their digest) and the doomed ones."""
    staying = sorted(t for t in tags if not intents.get(t, (False, ""))[0])
    kept_on: dict[str, str] = {}
    for tag in staying:
        kept_on.setdefault(tags[tag], tag)
    held_by: dict[str, str] = {}  # a manifest referenced by a staying index → that index's first tag
    for tag in staying:
        for digest in _descendants(tags[tag], children):
            held_by.setdefault(digest, tag)
    keep: list[Decision] = []
    doomed: dict[str, Decision] = {}
    for tag in sorted(tags):
        digest = tags[tag]
        go, reason = intents.get(tag, (False, "not considered"))
        if not go:
            keep.append(Decision(tag, digest, reason))
        elif digest in kept_on:
            keep.append(Decision(tag, digest, f"{reason}; kept: shares digest with {kept_on[digest]}"))
        elif digest in held_by:
            keep.append(Decision(tag, digest, f"{reason}; kept: child of kept index {held_by[digest]}"))
        else:
            doomed[tag] = Decision(tag, digest, reason)
    return keep, doomed


def _parents_first(nodes: set[str], ancestors: Mapping[str, set[str]], rank: Mapping[str, int]) -> list[str]:
    """Topological order (every ancestor before its descendants), lowest rank first among the ready."""
    waiting = {d: len(ancestors[d]) for d in nodes}
    below: dict[str, list[str]] = {d: [] for d in nodes}
    for d in nodes:
        for a in ancestors[d]:
            below[a].append(d)
    ready = [(rank[d], d) for d in nodes if waiting[d] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, d = heapq.heappop(ready)
        out.append(d)
        for child in below[d]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (rank[child], child))
    # Content addressing rules out cycles; should a broken registry report one, its members stay last.
    placed = set(out)
    out += sorted((d for d in nodes if d not in placed), key=lambda d: (rank[d], d))
    return out


def _meaningful(when: datetime | None) -> datetime | None:
    return when if when is not None and when >= _MEANINGLESS_BEFORE else None


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_created(text: object) -> datetime | None:
    """An RFC 3339 time as written in image configs (nanoseconds allowed), or None."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7), m.group(8)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    tz: tzinfo = UTC
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(year, month, day, hour, minute, min(second, 59), micro, tzinfo=tz)
    except ValueError:
        return None
