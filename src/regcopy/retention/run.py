"""Applying a prune plan: find the repositories its rules cover, plan each one, then delete.

Owns :func:`run_prune` and the :class:`PruneBackend` it runs over (registry catalogs and one
:class:`~regcopy.retention.delete.PruneStore` per repository; :class:`regcopy.Client` is one):
repositories named by rules and found through catalogs (namespace rules) are inventoried
concurrently, planned by :mod:`regcopy.retention.planner`, capped run-wide in repository order and
deleted one repository at a time by :mod:`regcopy.retention.delete`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from regcopy.errors import InvalidReference, RegcopyError
from regcopy.reference import Namespace, Repository
from regcopy.retention.delete import PruneStore, execute, for_each, inventory, load_created
from regcopy.retention.model import DeletionBudget, PrunePlan, PruneReport, RepositoryPlan, RepositoryReport
from regcopy.retention.parse import load_prune
from regcopy.retention.planner import needs_created, plan_repository

__all__ = ("PruneBackend", "run_prune")

_Outcome = tuple[PruneStore, RepositoryReport, RepositoryPlan | None]


class PruneBackend(Protocol):
    """What a prune run needs from its owner: registry catalogs and a store per repository."""

    async def catalog(self, registry: str) -> list[str]:
        """Every repository path of a registry (``/v2/_catalog``), sorted."""
        ...

    def registry_store(self, repo: Repository) -> PruneStore:
        """A store reading and deleting in one registry repository."""
        ...


async def run_prune(
    backend: PruneBackend, plan: PrunePlan | str | Path, *, dry_run: bool = True, cap: int | None = None,
    now: datetime | None = None, report: PruneReport | None = None,
) -> PruneReport:
    """Apply a prune plan: find the repositories, plan each one, then delete (unless ``dry_run``).

    Repositories are inventoried concurrently; the run-wide ``cap`` is then handed out in repository
    order (so a dry run and the real run choose the same deletions) and deletions run one repository
    at a time. A failing repository is recorded and never stops the others. The backend's settings
    are used as they are: :meth:`regcopy.Client.prune` runs this over a context whose settings
    already layer the plan's ``registries:`` (docs/architecture.md, "Settings resolution").

    :param cap: at most this many manifest deletions over the run (each rule's ``cap`` applies per
        repository as well)
    :param now: the reference time for ``older_than`` (default: now)
    :param report: a report to fill as the run goes (kept by the caller if the run is cancelled)
    :raises ConfigError: the plan file is invalid
    """
    started = time.monotonic()
    if not isinstance(plan, PrunePlan):
        plan = load_prune(plan)
    when = now or datetime.now(UTC)
    report = report if report is not None else PruneReport(dry_run=dry_run)
    report.dry_run = dry_run
    repositories = await _discover(backend, plan, report)
    outcomes: dict[Repository, _Outcome] = {}

    async def analyse(repo: Repository) -> None:
        outcomes[repo] = await _analyse(backend, plan, repo, when)

    await for_each(repositories, analyse, 4)
    budget = DeletionBudget(cap)
    for repo in repositories:
        target, out, planned = outcomes[repo]
        report.repositories.append(out)
        if planned is not None:
            planned = planned.limit(budget.take(len(planned.digests)), f"the run's cap of {cap} deletions was reached")
            await execute(target, planned, out, dry_run=dry_run)
    report.seconds += time.monotonic() - started
    return report


async def _analyse(backend: PruneBackend, plan: PrunePlan, repo: Repository, now: datetime) -> _Outcome:
    """Inventory one repository and plan it under its rule (None as the plan when that failed)."""
    rule = plan.rule_for(repo)
    assert rule is not None
    target = backend.registry_store(repo)
    out = RepositoryReport(repo.name, rule.name)
    try:
        inv = await inventory(target)
        await load_created(target, inv, {inv.tags[t] for t in needs_created(rule, inv.tags)})
        planned = plan_repository(repo.name, rule, inv.tags, created=inv.created, children=inv.children, now=now)
    except RegcopyError as exc:
        out.errors.append(f"{repo.name}: {exc}")
        return target, out, None
    return target, out, planned


async def _discover(backend: PruneBackend, plan: PrunePlan, report: PruneReport) -> list[Repository]:
    """Every repository some rule covers: repository rules as named, namespaces through catalogs."""
    repos = {r.scope for r in plan.rules if isinstance(r.scope, Repository)}
    hosts = sorted({r.scope.registry for r in plan.rules if isinstance(r.scope, Namespace)})
    catalogs: dict[str, list[str]] = {}

    async def load(host: str) -> None:
        try:
            catalogs[host] = await backend.catalog(host)
        except RegcopyError as exc:
            report.errors.append(f"cannot list the repositories of {host}: {exc}")

    await for_each(hosts, load, 4)
    for host, paths in catalogs.items():
        for path in paths:
            try:
                repo = Namespace(host).at(path)
            except InvalidReference as exc:  # a registry listing a name no client could pull
                report.errors.append(f"{host}: cannot prune {path!r}: {exc.reason}")
                continue
            if plan.rule_for(repo) is not None:
                repos.add(repo)
    return sorted(repos, key=lambda r: r.name)
