"""Running a sync plan: discovery, incremental check, dry-run plan, shared layers first, parallel images.

Phases (docs/architecture.md, "Bulk sync"):

1. **Discover** and 2. **check** (:mod:`regcopy.sync.discover`): the images the plan selects, and
   which of them the targets already hold.
3. **Plan** the images still to copy (manifests fetched once; the engine reuses the plan).
   A dry run stops here, after simulating the blob ledger: what would be uploaded, mounted or
   skipped, and the bytes to move.
4. **Shared layers first**: blobs needed by several images of one destination registry are moved
   once, into the first repository that needs them, before the images start; every other
   repository then mounts them.
5. **Copy** the images in parallel under run-wide limits (images, blobs and bytes in flight; the
   per-registry limits live in each host's transport). One failing image does not stop the others;
   failed images are tried once more at the end of the pass.
6. **Delete extra tags** of entries with ``delete_extra`` (an exact mirror): target tags the entry
   did not select, through :func:`regcopy.retention.delete_tags` (protect patterns, a cap, never a
   digest a staying tag still uses); skipped for an entry whose discovery failed.

The scheduler reaches registries only through a :class:`~regcopy.sync.discover.SyncBackend` the
client provides, so it never touches sessions or settings (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from regcopy.artifacts import ReferrerPolicy, copy_to_many, copy_with_referrers
from regcopy.digest import Digest
from regcopy.engine import (
    ByteBudget,
    CopyResult,
    ImagePlan,
    Limits,
    plan_image,
)
from regcopy.errors import PullLimitReached, RegcopyError
from regcopy.fanout import Target, fan_blob
from regcopy.ledger import BlobAction, BlobDecision, BlobLedger
from regcopy.locations import AnyRepository
from regcopy.manifest import Descriptor, Platform
from regcopy.progress import ImageDeferred, Reporter, current_image, null_reporter
from regcopy.reference import Reference
from regcopy.retention import DeletionBudget, PruneReport, PruneStore, delete_tags
from regcopy.stores.base import Destination, Source
from regcopy.sync.discover import Discovery, SyncBackend, bounded, check, discover
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import ImageJob, SyncOptions, SyncPlan
from regcopy.sync.referrers import dry_run_referrers, image_tags
from regcopy.sync.report import ImageReport, SyncReport, count_blob, record_failure
from regcopy.throttle import TokenBucket

__all__ = ("PlannedImage", "plan_images", "run_sync")

log = logging.getLogger(__name__)


async def run_sync(
    backend: SyncBackend,
    plan: SyncPlan,
    *,
    options: SyncOptions = SyncOptions(),
    reporter: Reporter = null_reporter,
    ledger: BlobLedger | None = None,
    report: SyncReport | None = None,
    journal: SyncJournal | None = None,
    select: Callable[[str], bool] | None = None,
    bandwidth: TokenBucket | None = None,
) -> SyncReport:
    """Mirror everything ``plan`` names; never raises for a single image (see the report).

    An image whose source's pull reserve is reached before its manifests are fetched is ``deferred``:
    left for a later run (the journal keeps what this one finished), never failed.

    :param report: a report to fill (the caller keeps it if the run is cancelled)
    :param select: keep only the source repositories (``host/path``) it accepts (a static shard's part)
    :param journal: the run journal: images it says an interrupted run finished are skipped, every
        image finished now is recorded, and a run without failures marks it complete (unused when
        dry-running)
    :param bandwidth: blob bytes per second over the run (``--limit-rate``)
    :raises RegcopyError: only for plan-level problems (invalid filters)
    """
    started = time.monotonic()
    report = report if report is not None else SyncReport()
    report.dry_run = options.dry_run
    ledger = ledger or BlobLedger()
    journal = None if options.dry_run else journal
    try:
        await _phases(backend, plan, options, reporter, ledger, report, journal, select, bandwidth)
    except BaseException:
        report.interrupted = True
        raise
    finally:
        report.seconds = time.monotonic() - started
    return report


async def _phases(backend: SyncBackend, plan: SyncPlan, options: SyncOptions, reporter: Reporter,
                  ledger: BlobLedger, report: SyncReport, journal: SyncJournal | None,
                  select: Callable[[str], bool] | None, bandwidth: TokenBucket | None) -> None:
    """Discover, check, plan, then simulate (dry run) or copy, and delete extra tags."""
    found = await discover(backend, plan, options, report, ledger, select)
    planned = await _plan(backend, await check(backend, found, options, report, journal), options, report,
                          reporter=reporter, journal=journal)
    if options.dry_run:
        await _simulate(planned, ledger, report, options, found.src_tags)
    else:
        limits = Limits(anyio.CapacityLimiter(options.blobs), ByteBudget(options.bytes_in_flight), bandwidth)
        await _copy(backend, planned, options, reporter, ledger, report, journal, found.src_tags, limits)
    await _delete_extra(backend, plan, found, options, report)
    if journal is not None and report.ok:
        journal.complete()


async def plan_images(backend: SyncBackend, plan: SyncPlan, *, options: SyncOptions, report: SyncReport,
                      ledger: BlobLedger) -> list[PlannedImage]:
    """Discover, check and plan without copying: the images still to copy, their manifests fetched.

    Up-to-date images and failures go to ``report``; what a distributed run hands to its workers.
    """
    found = await discover(backend, plan, options, report, ledger)
    return await _plan(backend, await check(backend, found, options, report, None), options, report)


# -------------------------------------------------------------------------------------------- plan


@dataclass(slots=True)
class _Planned:
    """An image to copy, planned: its job, its manifests and blobs, and the stores on both sides."""

    job: ImageJob
    plan: ImagePlan
    source: Source
    destination: Destination


PlannedImage = _Planned


async def _plan(backend: SyncBackend, jobs: list[ImageJob], options: SyncOptions, report: SyncReport, *,
                reporter: Reporter = null_reporter, journal: SyncJournal | None = None) -> list[_Planned]:
    limit = anyio.CapacityLimiter(options.probes)
    out: list[_Planned] = []
    plans: dict[tuple[str, tuple[Platform, ...]], tuple[anyio.Lock, list[ImagePlan]]] = {}

    async def planned(job: ImageJob, source: Source) -> ImagePlan:
        # One resolution per source image, however many targets it has (a fan-out reads it once).
        lock, cached = plans.setdefault((str(job.source), job.platforms), (anyio.Lock(), []))
        async with lock:
            if not cached:
                cached.append(await plan_image(source, job.identifier, job.platforms))
            return cached[0]

    async def one(job: ImageJob) -> None:
        source, destination = backend.source(job.source.repo), backend.destination(job.target.repo)
        try:
            async with limit:
                plan = await planned(job, source)
                if job.platforms and job.target_tag and await destination.head(job.target_tag) == plan.root.digest:
                    report.images.append(ImageReport.of(job, "up-to-date", str(plan.source_digest),
                                                        str(plan.root.digest)))
                    _journal(journal, job, str(plan.source_digest), str(plan.root.digest))
                    return
        except RegcopyError as exc:
            _failed(report, reporter, job, exc)
            return
        out.append(_Planned(job, plan, source, destination))

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(one, job)
    return sorted(out, key=lambda p: (str(p.job.target), str(p.job.source)))


async def _simulate(planned: list[_Planned], ledger: BlobLedger, report: SyncReport, options: SyncOptions,
                    src_tags: dict[AnyRepository, list[str]]) -> None:
    """A dry run: each blob gets the run's own decision (:meth:`BlobLedger.decide`, HEADs on the
    destination only), on a simulation of the ledger that takes every decided blob as moved."""
    limit = anyio.CapacityLimiter(options.probes)
    sim = ledger.simulation()
    # The order of the shared-layer pass: the first image needing a shared blob moves it, the others mount it.
    for p in _shared_first(planned):
        entry = ImageReport.of(p.job, "planned", str(p.plan.source_digest), str(p.plan.root.digest))
        decisions: dict[Digest, BlobDecision] = {}

        async def decide(blob: Descriptor, p: _Planned = p, out: dict[Digest, BlobDecision] = decisions) -> None:
            out[blob.digest] = await bounded(limit, lambda: sim.decide(p.destination, blob, p.source.origin))

        async with anyio.create_task_group() as tg:
            for blob in p.plan.blobs:  # unique digests: one blob's decision never depends on another's
                tg.start_soon(decide, blob)
        for blob in p.plan.blobs:
            count_blob(entry, decisions[blob.digest].action, blob.size)
            sim.note(p.destination.storage_id, blob.digest, p.destination.repository)
        if p.job.referrers.enabled:
            entry.referrers = await dry_run_referrers(p.source, p.destination, p.plan, p.job.referrers,
                                                      src_tags.get(p.job.source.repo))
        report.images.append(entry)


# -------------------------------------------------------------------------------------------- copy


def _shared_first(planned: list[_Planned]) -> list[_Planned]:
    """Images ordered so the ones holding the most shared bytes go first."""
    counts: dict[tuple[str, Digest], int] = defaultdict(int)
    for p in planned:
        for blob in p.plan.blobs:
            counts[(p.destination.storage_id, blob.digest)] += 1

    def shared_bytes(p: _Planned) -> int:
        return sum(b.size for b in p.plan.blobs if counts[(p.destination.storage_id, b.digest)] > 1)

    return sorted(planned, key=lambda p: (-shared_bytes(p), str(p.job.target)))


def _journal(journal: SyncJournal | None, job: ImageJob, source_digest: str, target_digest: str) -> None:
    """Journal an image the target holds now, with the platform subset it holds. Only registry tags
    are durable at their PUT: a local store becomes durable when the run commits it, after this
    point, so a killed run must copy its images again."""
    if journal is not None and isinstance(job.target, Reference):
        journal.image_done(str(job.source), str(job.target), source_digest, target_digest,
                           tuple(str(p) for p in job.platforms))


def _failed(report: SyncReport, reporter: Reporter, job: ImageJob, exc: BaseException, attempts: int = 1) -> None:
    """Record a failed image; one whose source's pull reserve was reached is deferred, and said so."""
    record_failure(report, job, exc, attempts)
    if isinstance(exc, PullLimitReached):
        reporter(ImageDeferred(str(job.source), str(job.target), str(exc), image=str(job.target)))


async def _copy(backend: SyncBackend, planned: list[_Planned], options: SyncOptions, reporter: Reporter,
                ledger: BlobLedger, report: SyncReport, journal: SyncJournal | None,
                src_tags: dict[AnyRepository, list[str]], limits: Limits) -> None:
    """Copy every planned image with its referrers; images of one source image bound for several
    targets (``targets:``, or entries sharing a source) are one fan-out: one read of the source."""
    prepass = await _seed_shared(planned, limits, reporter, ledger)
    copier = _Copier(options, reporter, ledger, report, journal, src_tags, limits, prepass)
    async with anyio.create_task_group() as tg:
        # Largest image first (longest-processing-time scheduling): a 1 GiB layer that starts last
        # is the whole run's tail. Shared blobs are already in place after _seed_shared.
        for group in sorted(_fan_groups(planned), key=lambda g: (-g[0].plan.total_bytes, str(g[0].job.target))):
            tg.start_soon(copier.group if len(group) > 1 else copier.first, group)
    retry, copier.failed = list(copier.failed), []
    async with anyio.create_task_group() as tg:
        for p in retry:
            tg.start_soon(copier.one, p, 2, None)  # re-plan: the source may have changed


def _fan_groups(planned: list[_Planned]) -> list[list[_Planned]]:
    """Planned images of one source image (same reference, platforms and referrer policy) for
    different targets: each group is copied with one read of the source."""
    groups: dict[tuple[str, tuple[Platform, ...], ReferrerPolicy], list[_Planned]] = defaultdict(list)
    for p in planned:
        groups[(str(p.job.source), p.job.platforms, p.job.referrers)].append(p)
    return list(groups.values())


class _Copier:
    """One copy pass: each image (or fan-out group) reported, journalled, or kept for the retry."""

    def __init__(self, options: SyncOptions, reporter: Reporter, ledger: BlobLedger, report: SyncReport,
                 journal: SyncJournal | None, src_tags: dict[AnyRepository, list[str]], limits: Limits,
                 prepass: dict[int, list[tuple[BlobAction, int]]]) -> None:
        self.options, self.reporter, self.ledger, self.report = options, reporter, ledger, report
        self.journal, self.src_tags, self.limits, self.prepass = journal, src_tags, limits, prepass
        self.images = anyio.CapacityLimiter(options.images)
        self.failed: list[_Planned] = []

    async def first(self, group: list[_Planned]) -> None:
        await self.one(group[0], 1, group[0].plan)

    async def one(self, p: _Planned, attempt: int, plan: ImagePlan | None) -> None:
        async with self.images:
            started = time.monotonic()
            try:
                result = await copy_with_referrers(
                    p.source, p.destination, p.job.identifier, target_tag=p.job.target_tag,
                    platforms=p.job.platforms, blob_jobs=self.options.blob_jobs, reporter=self.reporter,
                    ledger=self.ledger, plan=plan, limits=self.limits, policy=p.job.referrers,
                    tags=self.src_tags.get(p.job.source.repo))
            except RegcopyError as exc:
                self.fail(p, exc, attempt)
                return
            self.done(p, result, attempt, started)

    async def group(self, group: list[_Planned]) -> None:
        first = group[0]
        async with self.images:
            started = time.monotonic()
            targets = [Target(p.destination, p.job.target_tag) for p in group]
            await copy_to_many(first.source, targets, first.job.identifier, policy=first.job.referrers,
                               ledger=self.ledger, platforms=first.job.platforms, blob_jobs=self.options.blob_jobs,
                               reporter=self.reporter, limits=self.limits, plan=first.plan,
                               tags=self.src_tags.get(first.job.source.repo))
        for p, target in zip(group, targets, strict=True):
            if target.error is not None or target.result is None:
                self.fail(p, target.error or RegcopyError("no result"), 1)
            else:
                self.done(p, target.result, 1, started)

    def done(self, p: _Planned, result: CopyResult, attempt: int, started: float) -> None:
        _credit_prepass(result, self.prepass.pop(id(p), []))
        image = _image_report(p.job, result, attempt, time.monotonic() - started)
        image.served_by = p.source.served_by  # which mirror (or the upstream) the bytes came from
        image.referrers = result.referrers
        self.report.images.append(image)
        _journal(self.journal, p.job, result.source_digest, result.digest)

    def fail(self, p: _Planned, exc: BaseException, attempt: int) -> None:
        if attempt == 1 and self.options.retry_failed and not isinstance(exc, PullLimitReached):
            log.warning("%s -> %s failed (%s); will retry at the end", p.job.source, p.job.target, exc)
            self.failed.append(p)
        else:
            _failed(self.report, self.reporter, p.job, exc, attempts=attempt)


async def _delete_extra(backend: SyncBackend, plan: SyncPlan, found: Discovery, options: SyncOptions,
                        report: SyncReport) -> None:
    """Delete target tags that entries with ``delete_extra`` did not select (dry run: report them)."""
    entries = [e for e in plan.entries if e.delete_extra is not None]
    if not entries:
        return
    report.deletions = PruneReport(dry_run=options.dry_run)
    jobs, dst_tags = found.jobs, found.dst_tags
    # What any entry selected stays: two entries may fill one target repository.
    wanted: dict[AnyRepository, set[str]] = defaultdict(set)
    for job in jobs:
        if job.target_tag is not None:
            wanted[job.target.repo].add(job.target_tag)
    for entry in entries:
        assert entry.delete_extra is not None
        if entry.name in found.broken:
            # A source that could not be listed in full must not make its mirror lose tags.
            report.deletions.errors.append(f"{entry.name}: discovery failed; no tag deleted")
            continue
        budget = DeletionBudget(entry.delete_extra.cap)
        for repo in sorted({j.target.repo for j in jobs if j.entry == entry.name and j.target_tag}, key=str):
            extra = sorted(dst_tags.get(repo, set()) - wanted[repo])
            if entry.referrers:
                # Signatures, attestations and fallback indexes travel with the images kept: not extra.
                extra = image_tags(extra, True)
            destination = backend.destination(repo)
            if not extra or not isinstance(destination, PruneStore):
                continue  # a local store keeps its extra tags: it cannot delete
            await delete_tags(destination, extra, protect=entry.delete_extra.protect, cap=budget,
                              dry_run=options.dry_run, reason="not in the source", report=report.deletions)


def _credit_prepass(result: CopyResult, actions: list[tuple[BlobAction, int]]) -> None:
    """Count the shared-layer pass's work for this image: the image then found those blobs present."""
    for action, size in actions:
        if action == "skipped" or result.up_to_date:
            continue
        result.blobs_skipped -= 1
        if action == "uploaded":
            result.blobs_uploaded += 1
            result.bytes_uploaded += size
        else:
            result.blobs_mounted += 1


async def _seed_shared(planned: list[_Planned], limits: Limits, reporter: Reporter,
                       ledger: BlobLedger) -> dict[int, list[tuple[BlobAction, int]]]:
    """Move blobs that several images need into the first repository needing each, biggest first.

    :returns: per planned image (by id), what the pass did for it, so its report can say so
    """
    done: dict[int, list[tuple[BlobAction, int]]] = defaultdict(list)
    first: dict[tuple[str, Digest], tuple[_Planned, Descriptor]] = {}
    counts: dict[tuple[str, Digest], int] = defaultdict(int)
    for p in _shared_first(planned):
        for blob in p.plan.blobs:
            key = (p.destination.storage_id, blob.digest)
            counts[key] += 1
            first.setdefault(key, (p, blob))
    shared = sorted((v for k, v in first.items() if counts[k] > 1), key=lambda v: -v[1].size)
    # One source read per shared blob of one source repository, teed to every storage needing it.
    fans: dict[tuple[str, Digest], list[tuple[_Planned, Descriptor]]] = defaultdict(list)
    for p, blob in shared:
        fans[(str(p.job.source.repo), blob.digest)].append((p, blob))

    async def one(items: list[tuple[_Planned, Descriptor]]) -> None:
        blob = items[0][1]
        targets = [Target(p.destination, None, CopyResult("", "", "", "", None)) for p, _ in items]
        token = current_image.set(str(items[0][0].job.target))  # the pass's work is credited to this image
        try:
            async with limits.blobs or anyio.CapacityLimiter(1):
                actions = await fan_blob(items[0][0].source, targets, blob, reporter, ledger, limits.bandwidth)
        finally:
            current_image.reset(token)
        for (p, _), target in zip(items, targets, strict=True):
            if target.error is not None:
                # Not fatal here: the image copy retries this blob and reports the error if it persists.
                log.info("shared blob %s into %s failed: %s", blob.digest.short, p.destination.name, target.error)
            elif id(target) in actions:
                done[id(p)].append((actions[id(target)], blob.size))

    async with anyio.create_task_group() as tg:
        for items in sorted(fans.values(), key=lambda items: -items[0][1].size):
            tg.start_soon(one, items)
    return done


def _image_report(job: ImageJob, result: CopyResult, attempt: int, seconds: float) -> ImageReport:
    image = ImageReport.of(job, "up-to-date" if result.up_to_date else "copied", result.source_digest, result.digest)
    image.blobs_uploaded, image.blobs_mounted, image.blobs_skipped = (
        result.blobs_uploaded, result.blobs_mounted, result.blobs_skipped)
    image.bytes_uploaded, image.retries, image.attempts, image.seconds = (
        result.bytes_uploaded, result.retries, attempt, round(seconds, 3))
    return image

