"""Retention values: prune rules and plans, per-repository plans and decisions, reports, the deletion budget.

Frozen values and small pure methods only (:meth:`PrunePlan.rule_for`, :meth:`RepositoryPlan.limit`);
the parser is :mod:`regcopy.retention.parse`, the planner :mod:`regcopy.retention.planner`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal

from regcopy.filters import RepoFilter, RepoMatcher, compile_repo_filter
from regcopy.reference import Namespace, Repository
from regcopy.settings import Overrides

__all__ = (
    "Decision",
    "DeleteResult",
    "DeletionBudget",
    "Order",
    "PrunePlan",
    "PruneReport",
    "PruneRule",
    "RepositoryPlan",
    "RepositoryReport",
    "ScopeKind",
    "protected_by",
)

Order = Literal["semver", "created"]
ScopeKind = Literal["repository", "namespace"]


@dataclass(frozen=True, slots=True)
class PruneRule:
    """What to keep in one repository, or in every repository of a namespace.

    :ivar scope: the repository, or the namespace (a registry, or a prefix in one)
    :ivar repos: for a namespace, which repositories (full paths, anchored regexes) the rule takes
    :ivar protect: compiled anchored regexes; a tag fully matching one is never deleted
    :ivar cap: at most this many manifests deleted per repository and run
    """

    name: str
    scope: Repository | Namespace
    kind: ScopeKind = "repository"
    keep_latest: int | None = None
    order: Order = "semver"
    protect: tuple[re.Pattern[str], ...] = ()
    older_than: timedelta | None = None
    cap: int | None = None
    repos: RepoFilter = field(default_factory=RepoFilter)

    def protected_by(self, tag: str) -> str | None:
        """The pattern protecting ``tag``, or None."""
        return protected_by(self.protect, tag)

    def covers(self, repository: Repository) -> bool:
        """Whether ``repository`` is in this rule's scope (namespace: under the prefix)."""
        if self.kind == "repository":
            return repository == self.scope
        prefix = self.scope.path
        if repository.registry != self.scope.registry or (prefix and not repository.path.startswith(prefix + "/")):
            return False
        return _repo_matcher(self.repos).matches(repository.path)


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """Prune rules plus per-registry settings (the same ``registries:`` section as a sync plan)."""

    rules: tuple[PruneRule, ...]
    registries: Mapping[str, Overrides] = field(default_factory=dict)
    path: str | None = None

    def rule_for(self, repository: Repository) -> PruneRule | None:
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
    return (rule.kind == "repository", len(rule.scope.name))


def protected_by(patterns: Sequence[re.Pattern[str]], tag: str) -> str | None:
    return next((p.pattern for p in patterns if p.fullmatch(tag) is not None), None)


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


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What ``delete`` removed: the manifest digest and every tag that pointed at it."""

    repository: str
    digest: str
    tags: list[str]
