"""Applying a prune plan: find the repositories its rules cover, plan each one, then delete.

Owns :func:`run_prune`: repositories named by rules and found through catalogs (namespace rules),
inventoried concurrently, planned by :mod:`regcopy.retention.planner`, capped run-wide in
repository order and deleted one repository at a time by :mod:`regcopy.retention.delete`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from regcopy.errors import RegcopyError
from regcopy.reference import Repository
from regcopy.retention.delete import PruneTarget, _each, _execute, _inventory, _load_created, _target
from regcopy.retention.model import DeletionBudget, PrunePlan, PruneReport, RepositoryPlan, RepositoryReport
from regcopy.retention.parse import load_prune
from regcopy.retention.planner import needs_created, plan_repository
from regcopy.sync.model import SyncPlan

if TYPE_CHECKING:  # the client imports sync, which may import this module: no runtime cycle
    from regcopy.client import Client

__all__ = ("run_prune",)


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
            await _load_created(target, inv, {inv.tags[t] for t in needs_created(rule, inv.tags)})
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
