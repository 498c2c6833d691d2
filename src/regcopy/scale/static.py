"""Static mode: shard I of N of a plan, with no broker (``regcopy sync PLAN --shard I/N``).

Every shard reads the same plan, lists the same catalogs and keeps the source repositories whose
stable hash (:func:`~regcopy.scale.units.shard_of`) falls on it, so N shards split a plan without a
word between them (a Kubernetes Indexed Job gives each pod its index). A shard is an ordinary sync
of its part: its own journal (a restarted pod resumes) and its own report, which carries the blobs it
uploaded so ``regcopy report merge`` can show the duplicates between shards. With ``ledger_url`` the
shards share the Redis blob ledger and upload each shared blob once per destination registry.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from regcopy.client import Client
from regcopy.errors import ConfigError
from regcopy.scale.report_merge import UploadTally
from regcopy.scale.units import parse_shard, shard_of
from regcopy.sync import SyncJournal, SyncOptions, SyncPlan, SyncReport

__all__ = ("INDEX_ENV", "refuse_local_targets", "resolve_shard", "run_shard", "shard_document", "shard_path",
           "shared_ledger")

INDEX_ENV = "JOB_COMPLETION_INDEX"
"""What a Kubernetes Indexed Job sets in each pod: its completion index."""


def resolve_shard(shard: str | None, shards: int | None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """``--shard I/N``, or ``--shards N`` with I from ``$JOB_COMPLETION_INDEX``.

    :raises ConfigError: both or neither given, the variable unset or not an index below N
    """
    env = os.environ if environ is None else environ
    if (shard is None) == (shards is None):
        raise ConfigError("give one of --shard I/N and --shards N")
    if shard is not None:
        try:
            return parse_shard(shard)
        except ValueError as exc:
            raise ConfigError(f"--shard: {exc}") from None
    assert shards is not None
    raw = env.get(INDEX_ENV)
    if raw is None:
        raise ConfigError(f"--shards {shards} takes the shard from ${INDEX_ENV}, which is not set (a Kubernetes "
                          "Indexed Job sets it; elsewhere use --shard I/N)")
    try:
        return parse_shard(f"{raw}/{shards}")
    except ValueError:
        raise ConfigError(f"${INDEX_ENV}={raw[:20]!r} is not a shard of --shards {shards} "
                          f"(0 to {shards - 1})") from None


def shard_path(path: str, index: int, shards: int) -> str:
    """``report.json`` → ``report.shard-2-of-4.json`` (``{shard}`` in the name is replaced instead)."""
    tag = f"shard-{index}-of-{shards}"
    if "{shard}" in path:
        return path.replace("{shard}", tag)
    p = Path(path)
    return str(p.with_name(f"{p.stem}.{tag}{p.suffix}")) if p.suffix else f"{path}.{tag}"


def refuse_local_targets(plan: SyncPlan, mode: str) -> None:
    """Scale-out writes registries only: local targets live on one machine's disk.

    :raises ConfigError: an entry's target is an ``oci:`` layout or an archive
    """
    from regcopy.locations import LocalRepository

    for entry in plan.entries:
        if isinstance(entry.target, LocalRepository):
            raise ConfigError(f"{entry.name}: {mode} needs registry targets; {entry.target} is on one machine's disk")


@asynccontextmanager
async def shared_ledger(client: Client, url: str | None, **kwargs: Any) -> AsyncIterator[None]:
    """Give ``client`` the Redis blob ledger at ``url`` for the block (nothing when ``url`` is None)."""
    if url is None:
        yield
        return
    from regcopy.scale.redis_ledger import RedisLedger, connect

    try:
        redis = connect(url)
    except ValueError as exc:
        raise ConfigError(f"--ledger {url}: {exc}") from None
    previous = client.ledger
    try:
        async with RedisLedger(redis, **kwargs) as ledger:
            client.ledger = ledger
            yield
    finally:
        client.ledger = previous
        await redis.aclose()


async def run_shard(client: Client, plan: SyncPlan, index: int, shards: int, *, options: SyncOptions,
                    tally: UploadTally, report: SyncReport, journal: SyncJournal | None,
                    ledger_url: str | None) -> None:
    """Sync shard ``index`` of ``shards`` of ``plan``. ``report`` and ``tally`` (the progress reporter:
    it counts uploads) are filled as the run goes, so a cancelled shard still says what it did."""
    refuse_local_targets(plan, "--shard")
    async with shared_ledger(client, ledger_url):
        await client.sync(plan, options=options, reporter=tally, report=report, journal=journal,
                          select=lambda repo: shard_of(repo, shards) == index)


def shard_document(report: SyncReport, tally: UploadTally, index: int, shards: int) -> dict[str, Any]:
    """A shard's report: the sync report, which shard it is, and what it uploaded."""
    return {**report.to_json(), "shard": f"{index}/{shards}", "uploaded_blobs": tally.blobs}
