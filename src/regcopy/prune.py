"""Retention: which tags of a repository go, and deleting them safely by digest.

This module owns ``regcopy prune`` and the deletion core that sync's ``delete_extra`` reuses:

* the model — :class:`PruneRule` (one repository or namespace: ``keep_latest`` N by semver or by
  the config's ``created`` time, anchored ``protect`` regexes, ``older_than``, a per-repository
  ``cap``) and :class:`PrunePlan`;
* the parser — :func:`parse_prune` / :func:`load_prune` for a standalone file or the ``prune:``
  section of a sync plan (``registries:`` is read by :mod:`regcopy.sync.config`'s own parser);
* the planner — pure functions (:func:`plan_repository`, :func:`plan_deletions`) from
  tag → digest, digest → created time and index → children to a :class:`RepositoryPlan`;
* the executor — :func:`run_prune` (a plan, through a :class:`~regcopy.client.Client`) and
  :func:`delete_tags` (given tags of one repository), filling a JSON-ready :class:`PruneReport`.

Distribution deletes a *manifest* by digest, which takes every tag on it along (and 2.8.2 refuses a
DELETE by tag), so the unit of deletion is a digest: a digest is deleted only if every tag on it is
marked for deletion and it is not a manifest of an index that stays (children of kept indexes,
nested ones included). Deletions run parents first, so an interrupted or capped run never leaves a
kept index pointing at a deleted child; a cap keeps a prefix of that order.

Rule semantics (a tag stays if *any* keep condition holds):

* ``protect`` — tags fully matching a regex stay, and do not count towards ``keep_latest``;
* ``keep_latest`` N — with ``order: semver`` the images of the N highest versions (Masterminds
  parsing, as sync's ``latest``) stay; tags that are not versions are left to ``older_than`` (kept
  without it); with ``order: created`` the N most recently created images stay. N counts images,
  not tags: ``1.2.3``, ``1.2`` and ``1`` on one digest are one;
* ``older_than`` — of the rest, only images created before ``now - older_than`` go.

A creation time is the image config's ``created``; for an index, its
``org.opencontainers.image.created`` annotation, else its first image's ``created``. Times at or
before 1980-01-01T00:00:01Z (Go's zero time, the Unix epoch, Buildpacks' fixed date: what
reproducible builds write) are *unknown*: such images are never deleted by age nor ranked by time.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

import anyio

from regcopy.digest import Digest, verify_chunks
from regcopy.errors import InvalidReference, ManifestNotFound, RegcopyError, StoreError, Unsupported
from regcopy.manifest import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Manifest
from regcopy.reference import Repository
from regcopy.registry.manifests import ManifestInfo, manifest_head
from regcopy.stores.base import Deleter
from regcopy.stores.registry import RegistryStore
from regcopy.sync.config import (
    _At,
    _kind_of,
    _Loader,
    _location,
    _mapping,
    _named_item,
    _positive_int,
    _read_yaml,
    _regexes,
    _registries,
    _repo_filter,
    _repository,
    _short,
    _string,
    check_version,
    required_list,
)
from regcopy.sync.filters import RepoMatcher, _parse_version, _tie_break, compile_repo_filter
from regcopy.sync.model import RegistryConfig, RepoFilter, SyncPlan

if TYPE_CHECKING:  # the client imports sync, which may import this module: no runtime cycle
    from regcopy.client import Client

__all__ = (
    "Decision",
    "DeletionBudget",
    "PrunePlan",
    "PruneReport",
    "PruneRule",
    "PruneTarget",
    "RegistryTarget",
    "RepositoryPlan",
    "RepositoryReport",
    "delete_tags",
    "load_prune",
    "parse_created",
    "parse_duration",
    "parse_prune",
    "plan_deletions",
    "plan_repository",
    "run_prune",
)

log = logging.getLogger(__name__)

Order = Literal["semver", "created"]
ScopeKind = Literal["repository", "namespace"]

_TOP_KEYS: Final = ("version", "registries", "prune")
# A sync plan's own sections: a prune section may live in a sync plan, whose parser validates these.
_SYNC_KEYS: Final = ("sync", "defaults")
_RULE_KEYS: Final = (
    "name", "repository", "namespace", "repos", "keep_latest", "order", "protect", "older_than", "cap",
)
_ORDERS: Final[Mapping[str, Order]] = {"semver": "semver", "created": "created"}
_DURATION: Final = re.compile(r"(?:[0-9]{1,9}[smhdw])+")
_DURATION_PART: Final = re.compile(r"([0-9]+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# Reproducible builders stamp fixed dates (Go zero time, the epoch, Buildpacks' 1980-01-01T00:00:01Z).
_MEANINGLESS_BEFORE: Final = datetime(1980, 1, 1, 0, 0, 2, tzinfo=UTC)
_CREATED_ANNOTATION: Final = "org.opencontainers.image.created"
_MAX_CONFIG: Final = 8 * 1024 * 1024
_LOOKUPS: Final = 16  # HEADs and GETs in flight per repository
_DELETES: Final = 8  # DELETEs in flight per repository


# ================================================================================================ model


@dataclass(frozen=True, slots=True)
class PruneRule:
    """What to keep in one repository, or in every repository of a namespace.

    :ivar scope: ``host[:port]/path`` of the repository, or ``host[:port][/prefix]`` of the namespace
    :ivar repos: for a namespace, which repositories (full paths, anchored regexes) the rule takes
    :ivar protect: compiled anchored regexes; a tag fully matching one is never deleted
    :ivar cap: at most this many manifests deleted per repository and run
    """

    name: str
    scope: str
    kind: ScopeKind = "repository"
    keep_latest: int | None = None
    order: Order = "semver"
    protect: tuple[re.Pattern[str], ...] = ()
    older_than: timedelta | None = None
    cap: int | None = None
    repos: RepoFilter = field(default_factory=RepoFilter)

    def protected_by(self, tag: str) -> str | None:
        """The pattern protecting ``tag``, or None."""
        return _protected_by(self.protect, tag)

    def covers(self, repository: str) -> bool:
        """Whether ``repository`` (``host/path``) is in this rule's scope (namespace: under the prefix)."""
        if self.kind == "repository":
            return repository == self.scope
        host, _, prefix = self.scope.partition("/")
        repo_host, _, path = repository.partition("/")
        if repo_host != host or not path or (prefix and not path.startswith(prefix + "/")):
            return False
        return _repo_matcher(self.repos).matches(path)


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """Prune rules plus per-registry settings (the same ``registries:`` section as a sync plan)."""

    rules: tuple[PruneRule, ...]
    registries: Mapping[str, RegistryConfig] = field(default_factory=dict)
    path: str | None = None

    def rule_for(self, repository: str) -> PruneRule | None:
        """The most specific rule covering ``repository``: a repository rule, else the longest namespace."""
        best: PruneRule | None = None
        for rule in self.rules:
            if rule.covers(repository) and (best is None or _specificity(rule) > _specificity(best)):
                best = rule
        return best


@lru_cache(maxsize=256)
def _repo_matcher(f: RepoFilter) -> RepoMatcher:
    return compile_repo_filter(f)  # validated by the parser; cached: covers() runs per repository and rule


def _specificity(rule: PruneRule) -> tuple[int, int]:
    return (rule.kind == "repository", len(rule.scope))


def _protected_by(patterns: Sequence[re.Pattern[str]], tag: str) -> str | None:
    return next((p.pattern for p in patterns if p.fullmatch(tag) is not None), None)


# ================================================================================================ parsing


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` or sums such as ``1w3d`` as a timedelta.

    :raises ValueError: anything else, or zero
    """
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(f"{_short(text)} is not a duration such as 30d, 12h or 2w (units s, m, h, d, w)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds == 0:
        raise ValueError(f"{_short(text)} is zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{_short(text)} is too long") from None


def load_prune(path: str | Path) -> PrunePlan:
    """Read and validate a prune plan (or a sync plan with a ``prune:`` section). See :func:`parse_prune`.

    :raises ConfigError: unreadable file, YAML syntax error, invalid plan
    """
    return parse_prune(_read_yaml(path, _Loader), str(path))


def parse_prune(data: object, path: str | None = None) -> PrunePlan:
    """Validate a loaded document and build the :class:`PrunePlan`.

    Shape: ``version`` (optional, 1), ``registries`` (optional, as in a sync plan) and ``prune``
    (required, a non-empty list of rules); a sync plan's ``sync`` and ``defaults`` may sit beside
    them and are left to :func:`regcopy.sync.load_plan`. A rule has exactly one of ``repository``
    (``host/path``) or ``namespace`` (``host[/prefix]``, repositories found through the catalog,
    optionally narrowed by ``repos: {allow, deny}``), at least one of ``keep_latest`` (positive
    integer) and ``older_than`` (``30d``, ``12h``, ``2w``), and optionally ``order`` (``semver``,
    the default, or ``created``; only with ``keep_latest``), ``protect`` (anchored regexes), ``cap``
    (positive integer: manifests deleted per repository and run) and ``name`` (default ``prune[i]``).

    :raises ConfigError: naming the file, the rule and the dotted key
    """
    top = _At(path, None, None)
    if data is None:
        raise top.error("the plan is empty: it needs a 'prune' list of rules")
    doc = _mapping(data, top, (*_TOP_KEYS, *_SYNC_KEYS))
    check_version(doc, top)
    registries = _registries(doc.get("registries"), path)
    items = required_list(doc, "prune", top, "rule", "rules")
    rules: list[PruneRule] = []
    names: dict[str, int] = {}
    scopes: dict[tuple[str, str], str] = {}
    for i, item in enumerate(items):
        rule = _rule(item, i, path)
        at = _At(path, rule.name, f"prune[{i}]")
        if rule.name in names:
            raise at.field("name").error(f"duplicate rule name {_short(rule.name)} (also prune[{names[rule.name]}])")
        names[rule.name] = i
        if (rule.kind, rule.scope) in scopes:
            other = scopes[rule.kind, rule.scope]
            raise at.field(rule.kind).error(f"{rule.kind} {rule.scope!r} already has a rule ({other})")
        scopes[rule.kind, rule.scope] = rule.name
        rules.append(rule)
    return PrunePlan(tuple(rules), MappingProxyType(registries), path)


def _rule(item: object, i: int, path: str | None) -> PruneRule:
    name, at, item = _named_item(item, "prune", i, path, "a rule must be a mapping with a repository or namespace")
    f = _mapping(item, at, _RULE_KEYS)
    given = [k for k in ("repository", "namespace") if k in f]
    if len(given) != 1:
        raise at.error("give exactly one of 'repository' or 'namespace'")
    kind: ScopeKind = "repository" if given[0] == "repository" else "namespace"
    text = _string(f[kind], at.field(kind))
    if kind == "repository":
        hint = "a rule covers all tags of a repository; to cover many repositories use namespace"
        repo = _repository(text, at.field(kind), what="repository", hint=hint)
        if not isinstance(repo, Repository):  # sync plans also name local stores (oci:DIR)
            raise at.field(kind).error(f"{_short(text)} is not on a registry: prune deletes from registries only")
        scope = repo.name
        if "repos" in f:
            raise at.field("repos").error("repos filters need a namespace (this rule is one repository)")
    else:
        host, prefix = _location(text.rstrip("/"), at.field(kind), what="namespace", host_required=True)
        if not _is_registry(host):
            raise at.field(kind).error(f"{_short(text)} is not on a registry: prune deletes from registries only")
        scope = f"{host}/{prefix}" if prefix else host
    repos = RepoFilter()
    if "repos" in f:
        repos = _repo_filter(f["repos"], at.field("repos"))
        compile_repo_filter(repos, entry=name, path=path)
    keep_latest = _positive_int(f["keep_latest"], at.field("keep_latest")) if "keep_latest" in f else None
    order: Order = "semver"
    if "order" in f:
        value = f["order"]
        if not isinstance(value, str) or value not in _ORDERS:
            shown = _short(value) if isinstance(value, str) else _kind_of(value)
            raise at.field("order").error(f"must be semver or created, not {shown}")
        if keep_latest is None:
            raise at.field("order").error("order ranks keep_latest: give keep_latest too")
        order = _ORDERS[value]
    older_than = None
    if "older_than" in f:
        value = f["older_than"]
        if not isinstance(value, str):
            raise at.field("older_than").error(f"must be a duration such as '30d', not {_kind_of(value)}")
        try:
            older_than = parse_duration(value)
        except ValueError as exc:
            raise at.field("older_than").error(str(exc)) from None
    if keep_latest is None and older_than is None:
        raise at.error("give keep_latest or older_than (a rule without either would delete every unprotected tag)")
    protect: tuple[re.Pattern[str], ...] = ()
    if "protect" in f:
        protect = tuple(re.compile(p, re.ASCII) for p in _regexes(f["protect"], at.field("protect")))
    cap = _positive_int(f["cap"], at.field("cap")) if "cap" in f else None
    return PruneRule(name, scope, kind, keep_latest, order, protect, older_than, cap, repos)


def _is_registry(host: str) -> bool:
    try:
        return Repository.parse(f"{host}/x/x").registry == host
    except InvalidReference:
        return False


# ================================================================================================ planning


@dataclass(frozen=True, slots=True)
class Decision:
    """One tag's fate: its digest and why."""

    tag: str
    digest: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return {"tag": self.tag, "digest": self.digest, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RepositoryPlan:
    """What happens to every tag of one repository.

    :ivar keep: tags that stay, with the reason
    :ivar delete: tags that go (their digest is in :attr:`digests`)
    :ivar capped: tags that would go but stay because a cap was reached
    :ivar digests: manifests to DELETE, parents before children, oldest first
    :ivar ancestors: for each digest of :attr:`digests`, the other digests of :attr:`digests` that
        reference it (an index and its nested indexes): it must not go unless they went first
    """

    repository: str
    keep: tuple[Decision, ...] = ()
    delete: tuple[Decision, ...] = ()
    capped: tuple[Decision, ...] = ()
    digests: tuple[str, ...] = ()
    ancestors: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def limit(self, n: int, why: str) -> RepositoryPlan:
        """At most ``n`` manifest deletions: the rest of :attr:`digests` (a suffix, so never a child
        whose index goes) moves to :attr:`capped` with ``why`` added to the reason."""
        if n >= len(self.digests):
            return self
        going = frozenset(self.digests[: max(n, 0)])
        return RepositoryPlan(
            self.repository, self.keep,
            tuple(d for d in self.delete if d.digest in going),
            self.capped + tuple(replace(d, reason=f"{d.reason}; skipped: {why}")
                                for d in self.delete if d.digest not in going),
            self.digests[: max(n, 0)],
            MappingProxyType({d: a for d, a in self.ancestors.items() if d in going}),
        )


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
        :func:`_needs_created` names
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
        pattern = _protected_by(protect, tag)
        if pattern is not None:
            intents[tag] = (False, f"protected: matches {pattern!r}")
        else:
            intents[tag] = (True, reason) if tag in wanted else (False, "not requested")
    return _settle(repository, tags, intents, list(wanted), children or {}, cap)


def _versions_high_first(tags: Iterable[str]) -> tuple[list[str], list[str]]:
    """(version tags, highest first with sync's tie-breaks; tags that are not versions)."""
    versioned, others = [], []
    for tag in tags:
        version = _parse_version(tag)
        if version is None:
            others.append(tag)
        else:
            versioned.append((tag, version))
    versioned.sort(key=_tie_break)
    versioned.sort(key=lambda item: item[1].key, reverse=True)
    return [t for t, _ in versioned], others


def _needs_created(rule: PruneRule, tags: Mapping[str, str]) -> set[str]:
    """The tags whose creation time :func:`plan_repository` reads (configs are fetched only for them)."""
    candidates = [t for t in tags if rule.protected_by(t) is None]
    if rule.keep_latest is not None and rule.order == "created":
        return set(candidates)
    if rule.older_than is None:
        return set()
    if rule.keep_latest is None:
        return set(candidates)
    versions, others = _versions_high_first(candidates)
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

    n = rule.keep_latest
    ranked_out: list[str]  # beyond keep_latest, lowest rank first
    if n is None:
        ranked_out = candidates
    elif rule.order == "semver":
        versions, others = _versions_high_first(candidates)
        top, ranked_out = _top_images(versions, tags, n)
        for tag, place in top.items():
            intents[tag] = (False, f"latest {n} by semver (#{place})")
        if rule.older_than is None:
            for tag in others:
                intents[tag] = (False, "not a version (keep_latest ranks versions)")
        else:
            ranked_out += others
    else:
        dated = [(c, tag) for tag in candidates if (c := when(tag)) is not None]
        for tag in candidates:
            if when(tag) is None:
                intents[tag] = (False, "no creation time (keep_latest ranks by created)")
        dated.sort(reverse=True)
        top, ranked_out = _top_images([tag for _, tag in dated], tags, n)
        for tag, place in top.items():
            intents[tag] = (False, f"latest {n} by created (#{place}, created {_iso(when(tag) or now)})")
    outside = f" and not among the latest {n} by {rule.order}" if n is not None else ""
    if rule.older_than is None:
        for tag in ranked_out:
            intents[tag] = (True, f"not among the latest {n} by {rule.order}")
        return intents, ranked_out
    cutoff, age = now - rule.older_than, _duration_text(rule.older_than)
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
    return intents, [tag for _, tag in going]


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


def _duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", _UNITS["w"]), ("d", _UNITS["d"]), ("h", _UNITS["h"]), ("m", _UNITS["m"])):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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


# ================================================================================================ report


@dataclass(slots=True)
class RepositoryReport:
    """One repository's outcome.

    :ivar deleted: tags gone (a real run); :ivar would_delete: tags that would go (a dry run)
    :ivar skipped: tags that would go but stay: a cap, or their manifest's delete failed
    """

    repository: str
    rule: str | None = None
    kept: list[Decision] = field(default_factory=list)
    deleted: list[Decision] = field(default_factory=list)
    would_delete: list[Decision] = field(default_factory=list)
    skipped: list[Decision] = field(default_factory=list)
    manifests_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "repository": self.repository, "rule": self.rule,
            "kept": [d.to_json() for d in self.kept], "deleted": [d.to_json() for d in self.deleted],
            "would_delete": [d.to_json() for d in self.would_delete],
            "skipped": [d.to_json() for d in self.skipped],
            "manifests_deleted": list(self.manifests_deleted), "errors": list(self.errors),
        }


@dataclass(slots=True)
class PruneReport:
    """What a prune (or a ``delete_extra`` pass) kept, deleted or would delete, per repository."""

    dry_run: bool = True
    repositories: list[RepositoryReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    """The run was cancelled (a signal) before it finished: the lists say how far it got."""

    @property
    def ok(self) -> bool:
        """No error anywhere, not interrupted."""
        return not self.errors and not any(r.errors for r in self.repositories) and not self.interrupted

    def totals(self) -> dict[str, int]:
        """Counts over every repository."""
        rs = self.repositories
        return {
            "repositories": len(rs), "kept": sum(len(r.kept) for r in rs),
            "deleted": sum(len(r.deleted) for r in rs), "would_delete": sum(len(r.would_delete) for r in rs),
            "skipped": sum(len(r.skipped) for r in rs),
            "manifests_deleted": sum(len(r.manifests_deleted) for r in rs),
            "errors": len(self.errors) + sum(len(r.errors) for r in rs),
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps`` works on it as is)."""
        return {
            "dry_run": self.dry_run, "ok": self.ok, "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3), "totals": self.totals(),
            "errors": list(self.errors), "repositories": [r.to_json() for r in self.repositories],
        }


class DeletionBudget:
    """A run-wide cap on manifest deletions, shared by every repository of a run (dry runs count too)."""

    def __init__(self, cap: int | None) -> None:
        self.left = cap

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` deletions; returns how many were granted."""
        if self.left is None:
            return wanted
        granted = min(wanted, self.left)
        self.left -= granted
        return granted


# ================================================================================================ execution


@runtime_checkable
class PruneTarget(Deleter, Protocol):
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
        await self.store.delete_manifest(digest)


def _target(target: Deleter) -> PruneTarget:
    if isinstance(target, RegistryStore):
        return RegistryTarget(target)
    if isinstance(target, PruneTarget):
        return target
    raise StoreError(f"{target!r} deletes manifests but cannot list and read them for a prune")


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
    target: Deleter,
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


async def run_prune(
    client: Client,
    plan: PrunePlan | str | Path,
    *,
    dry_run: bool = True,
    cap: int | None = None,
    now: datetime | None = None,
    report: PruneReport | None = None,
) -> PruneReport:
    """Apply a prune plan: find the repositories, plan each one, then delete (unless ``dry_run``).

    Repositories are inventoried concurrently; the run-wide ``cap`` is then handed out in repository
    order (so a dry run and the real run choose the same deletions) and deletions run one repository
    at a time. A failing repository is recorded and never stops the others.

    :param cap: at most this many manifest deletions over the run (each rule's ``cap`` applies per
        repository as well)
    :param now: the reference time for ``older_than`` (default: now)
    :param report: a report to fill as the run goes (kept by the caller if the run is cancelled)
    :raises ConfigError: the plan file is invalid
    """
    started = time.monotonic()
    if not isinstance(plan, PrunePlan):
        plan = load_prune(plan)
    client.apply_plan_registries(SyncPlan((), plan.registries, plan.path))
    when = now or datetime.now(UTC)
    report = report if report is not None else PruneReport(dry_run=dry_run)
    report.dry_run = dry_run
    repositories = await _discover(client, plan, report)
    outcomes: dict[str, tuple[PruneTarget, RepositoryReport, RepositoryPlan | None]] = {}

    async def analyse(name: str) -> None:
        rule = plan.rule_for(name)
        assert rule is not None
        target = _target(client.registry_store(Repository.parse(name)))
        out = RepositoryReport(name, rule.name)
        try:
            inv = await _inventory(target)
            await _load_created(target, inv, {inv.tags[t] for t in _needs_created(rule, inv.tags)})
            planned: RepositoryPlan | None = plan_repository(
                name, rule, inv.tags, created=inv.created, children=inv.children, now=when)
        except RegcopyError as exc:
            out.errors.append(f"{name}: {exc}")
            planned = None
        outcomes[name] = (target, out, planned)

    await _each(repositories, analyse, 4)
    budget = DeletionBudget(cap)
    for name in repositories:
        target, out, planned = outcomes[name]
        report.repositories.append(out)
        if planned is not None:
            planned = planned.limit(budget.take(len(planned.digests)), f"the run's cap of {cap} deletions was reached")
            await _execute(target, planned, out, dry_run=dry_run)
    report.seconds += time.monotonic() - started
    return report


async def _discover(client: Client, plan: PrunePlan, report: PruneReport) -> list[str]:
    """Every repository some rule covers: repository rules as named, namespaces through catalogs."""
    names = {r.scope for r in plan.rules if r.kind == "repository"}
    hosts = sorted({r.scope.partition("/")[0] for r in plan.rules if r.kind == "namespace"})
    catalogs: dict[str, list[str]] = {}

    async def load(host: str) -> None:
        try:
            catalogs[host] = await client.catalog(host)
        except RegcopyError as exc:
            report.errors.append(f"cannot list the repositories of {host}: {exc}")

    await _each(hosts, load, 4)
    for host, paths in catalogs.items():
        names.update(n for p in paths if plan.rule_for(n := f"{host}/{p}") is not None)
    return sorted(names)
