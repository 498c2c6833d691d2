"""Running a sync plan: discovery, incremental check, dry-run plan, shared layers first, parallel images.

Phases (ISSUE #5):

1. **Discover** every entry concurrently: catalogs (once per registry) for namespaces and whole
   registries, source tag lists filtered by the entry's TagFilter, destination tag lists in bulk.
2. **Check**: only where a tag exists on both sides are both manifests HEADed (no pulls counted on
   Docker Hub); equal digests are up to date and cost nothing more.
3. **Plan** the images still to copy (manifests fetched once; the engine reuses the plan).
   A dry run stops here, after simulating the blob ledger: what would be uploaded, mounted or
   skipped, and the bytes to move.
4. **Shared layers first**: blobs needed by several images of one destination registry are moved
   once, into the first repository that needs them, before the images start; every other
   repository then mounts them.
5. **Copy** the images in parallel under run-wide limits (images, blobs and bytes in flight; the
   per-registry limits live in each host's transport). One failing image does not stop the others;
   failed images are tried once more at the end of the pass.
6. **Delete extra tags** of entries with ``delete_extra`` (an exact mirror, ISSUE #8 §3): target
   tags the entry did not select, through :func:`regcopy.retention.delete_tags` (protect patterns, a
   cap, never a digest a staying tag still uses); skipped for an entry whose discovery failed.

The scheduler reaches registries only through a :class:`SyncBackend` the client provides, so it
never touches sessions (ARCHITECTURE §8.2).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

import anyio

from regcopy.artifacts import ReferrerPolicy, copy_to_many, copy_with_referrers
from regcopy.digest import Digest
from regcopy.engine import (
    ByteBudget,
    CopyResult,
    ImagePlan,
    Limits,
    first_error,
    plan_image,
)
from regcopy.errors import RegcopyError
from regcopy.fanout import Target, fan_blob
from regcopy.filters import compile_repo_filter, compile_tag_filter
from regcopy.ledger import BlobAction, BlobDecision, BlobLedger
from regcopy.locations import (
    AnyReference,
    AnyRepository,
    is_local,
    join_endpoint,
    parse_repository,
    split_endpoint,
)
from regcopy.manifest import Descriptor, Platform
from regcopy.progress import Reporter, null_reporter
from regcopy.reference import Reference, Repository
from regcopy.retention import DeletionBudget, PruneReport, PruneStore, delete_tags
from regcopy.stores.base import Destination, Source
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import SyncEntry, SyncPlan
from regcopy.sync.plan import target_repository
from regcopy.sync.referrers import PairCheck, dry_run_referrers, image_tags, untagged_referrers

__all__ = ("ImageJob", "ImageReport", "SyncBackend", "SyncOptions", "SyncReport", "run_sync")

log = logging.getLogger(__name__)
T = TypeVar("T")

Status = Literal["copied", "up-to-date", "failed", "planned"]
NO_REFERRERS = ReferrerPolicy(enabled=False)


class SyncBackend(Protocol):
    """What the scheduler needs from a client: listings and stores."""

    async def catalog(self, registry: str) -> list[str]:
        """Every repository path of a registry (``/v2/_catalog``) or of a local store (``oci:DIR``)."""
        ...

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        """Every tag of a repository, sorted; None when the repository does not exist."""
        ...

    def source(self, repo: AnyRepository) -> Source:
        """A store reading ``repo``."""
        ...

    def destination(self, repo: AnyRepository) -> Destination:
        """A store writing ``repo``."""
        ...


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Run-wide knobs.

    :param images: images copied at once
    :param blob_jobs: blobs in flight per image
    :param blobs: blobs in flight over the whole run
    :param bytes_in_flight: bytes of blobs in flight over the whole run
    :param probes: HEAD requests / listings in flight during discovery and checks
    :param dry_run: plan only; nothing is written
    :param retry_failed: try failed images once more at the end of the pass
    """

    images: int = 8
    blob_jobs: int = 6
    blobs: int = 24
    bytes_in_flight: int = 2 * 1024**3
    probes: int = 32
    dry_run: bool = False
    retry_failed: bool = True


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image to mirror: source reference → target reference (tag, or digest when pinned).

    Either side may be a registry :class:`Reference` or a :class:`~regcopy.locations.LocalImage`.
    """

    entry: str
    source: AnyReference
    target: AnyReference
    platforms: tuple[Platform, ...] = ()
    referrers: ReferrerPolicy = NO_REFERRERS

    @property
    def identifier(self) -> str:
        """The source tag or digest."""
        return self.source.identifier

    @property
    def target_tag(self) -> str | None:
        """The destination tag (None: pushed by digest)."""
        return self.target.tag


@dataclass(slots=True)
class ImageReport:
    """The outcome of one image (one line of ``--report``)."""

    entry: str
    source: str
    target: str
    status: Status
    source_digest: str | None = None
    target_digest: str | None = None
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    retries: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    served_by: list[str] | None = None
    referrers: dict[str, object] | None = None
    """What the image's referrers came to (copied, present, left behind by a platform subset; a dry
    run: found and to copy), when the entry carries referrers."""

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field."""
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class SyncReport:
    """The outcome of a run; filled progressively, so an interrupted run still reports what it did."""

    dry_run: bool = False
    images: list[ImageReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    deletions: PruneReport | None = None
    """What ``delete_extra`` deleted (or would delete, in a dry run); None when no entry asks for it."""

    @property
    def failed(self) -> list[ImageReport]:
        """Images that failed (after the retry)."""
        return [r for r in self.images if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """No failure, no discovery or deletion error, not interrupted."""
        deletions_ok = self.deletions is None or self.deletions.ok
        return not self.failed and not self.errors and not self.interrupted and deletions_ok

    @property
    def out_of_sync(self) -> list[ImageReport]:
        """Images a dry run would copy."""
        return [r for r in self.images if r.status == "planned"]

    @property
    def extra_tags(self) -> int:
        """Tags ``delete_extra`` would delete (dry run) or deleted."""
        if self.deletions is None:
            return 0
        totals = self.deletions.totals()
        return totals["would_delete"] + totals["deleted"]

    def totals(self) -> dict[str, int]:
        """Counts per status and summed transfer figures."""
        out: dict[str, int] = defaultdict(int)
        for r in self.images:
            out[r.status] += 1
            out["blobs_uploaded"] += r.blobs_uploaded
            out["blobs_mounted"] += r.blobs_mounted
            out["blobs_skipped"] += r.blobs_skipped
            out["bytes_uploaded"] += r.bytes_uploaded
            refs = r.referrers or {}
            for key in ("copied", "to_copy"):
                value = refs.get(key)
                if isinstance(value, int):
                    out[f"referrers_{key}"] += value
        return dict(out)

    def to_json(self) -> dict[str, object]:
        """The ``--report`` document."""
        out: dict[str, object] = {
            "dry_run": self.dry_run, "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
            "totals": self.totals(), "errors": self.errors, "images": [r.to_json() for r in self.images],
        }
        if self.deletions is not None:
            out["deletions"] = self.deletions.to_json()
        return out


async def run_sync(
    backend: SyncBackend,
    plan: SyncPlan,
    *,
    options: SyncOptions = SyncOptions(),
    reporter: Reporter = null_reporter,
    ledger: BlobLedger | None = None,
    report: SyncReport | None = None,
    journal: SyncJournal | None = None,
) -> SyncReport:
    """Mirror everything ``plan`` names; never raises for a single image (see the report).

    :param report: a report to fill (the caller keeps it if the run is cancelled)
    :param journal: the run journal: images it says an interrupted run finished are skipped, every
        image finished now is recorded, and a run without failures marks it complete (unused when
        dry-running)
    :raises RegcopyError: only for plan-level problems (invalid filters)
    """
    started = time.monotonic()
    report = report if report is not None else SyncReport()
    report.dry_run = options.dry_run
    ledger = ledger or BlobLedger()
    journal = None if options.dry_run else journal
    try:
        broken: set[str] = set()
        listings: dict[AnyRepository, list[str]] = {}
        jobs, dst_tags = await _discover(backend, plan, options, report, ledger, broken, listings)
        todo = await _check(backend, jobs, dst_tags, options, report, journal, listings)
        planned = await _plan(backend, todo, options, report)
        if options.dry_run:
            await _simulate(planned, ledger, report, options, listings)
        else:
            await _copy(backend, planned, options, reporter, ledger, report, journal, listings)
        await _delete_extra(backend, plan, jobs, dst_tags, broken, options, report)
        if journal is not None and report.ok:
            journal.complete()
    except BaseException:
        report.interrupted = True
        raise
    finally:
        report.seconds = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------- discovery


async def _bounded(limit: anyio.CapacityLimiter, fn: Callable[[], Awaitable[T]]) -> T:
    async with limit:
        return await fn()


async def _discover(
    backend: SyncBackend, plan: SyncPlan, options: SyncOptions, report: SyncReport, ledger: BlobLedger,
    broken: set[str], listings: dict[AnyRepository, list[str]],
) -> tuple[list[ImageJob], dict[AnyRepository, set[str]]]:
    """Every image the plan selects, and the tags each target repository already has.

    :param broken: filled with the names of entries whose discovery failed in part
    :param listings: filled with each listed source repository's tags (referrer tags included)
    """
    limit = anyio.CapacityLimiter(options.probes)
    catalogs: dict[str, list[str] | BaseException] = {}
    registries = {_registry_of(e.source) for e in plan.entries if e.kind != "repository"}

    async def load_catalog(registry: str) -> None:
        try:
            catalogs[registry] = await _bounded(limit, lambda: backend.catalog(registry))
        except RegcopyError as exc:
            catalogs[registry] = exc

    async with anyio.create_task_group() as tg:
        for registry in registries:
            tg.start_soon(load_catalog, registry)

    pairs: list[tuple[SyncEntry, AnyRepository]] = []
    for entry in plan.entries:
        compile_tag_filter(entry.tags, entry=entry.name, path=plan.path)  # invalid filters fail before any work
        repos = _source_repositories(entry, catalogs, report)
        if repos is None:
            broken.add(entry.name)
        pairs.extend((entry, repo) for repo in repos or ())

    jobs: list[ImageJob] = []
    dst_tags: dict[AnyRepository, set[str]] = {}

    async def expand(entry: SyncEntry, repo: AnyRepository) -> None:
        matcher = compile_tag_filter(entry.tags, entry=entry.name, path=plan.path)
        target = parse_repository(target_repository(entry, repo.path))
        try:
            if entry.tags.needs_listing:
                listing = await _bounded(limit, lambda: backend.list_tags(repo))
                listings[repo] = listing or []
                tags = matcher.select(image_tags(listing or [], entry.referrers))
            else:
                tags = sorted(entry.tags.exact)
        except RegcopyError as exc:
            report.errors.append(f"{entry.name}: listing {repo}: {exc}")
            broken.add(entry.name)
            return
        platforms = tuple(Platform.parse(p) for p in entry.platforms)
        policy = ReferrerPolicy(enabled=entry.referrers, artifact_types=entry.artifact_types)
        jobs.extend(ImageJob(entry.name, repo.with_tag(t), target.with_tag(t), platforms, policy) for t in tags)
        jobs.extend(ImageJob(entry.name, repo.with_digest(d), target.with_digest(d), platforms, policy)
                    for d in matcher.digests)

    async with anyio.create_task_group() as tg:
        for entry, repo in pairs:
            tg.start_soon(expand, entry, repo)
    jobs = _dedupe(jobs)

    async def load_dst(repo: AnyRepository) -> None:
        try:
            found = await _bounded(limit, lambda: backend.list_tags(repo))
            dst_tags[repo] = set(found or ())
            ledger.set_empty(backend.destination(repo).storage_id, repo.path, found is None)
        except RegcopyError as exc:
            report.errors.append(f"listing destination {repo}: {exc}")
            dst_tags[repo] = set()  # so delete_extra finds nothing extra here

    async with anyio.create_task_group() as tg:
        for repo in {j.target.repo for j in jobs if j.target_tag}:
            tg.start_soon(load_dst, repo)
    return jobs, dst_tags


def _source_repositories(
    entry: SyncEntry, catalogs: dict[str, list[str] | BaseException], report: SyncReport
) -> list[AnyRepository] | None:
    """The entry's source repositories; None (and an error in the report) when its catalog failed."""
    if entry.kind == "repository":
        return [parse_repository(entry.source)]
    registry, prefix = split_endpoint(entry.source)
    catalog = catalogs.get(_registry_of(entry.source))
    if isinstance(catalog, BaseException) or catalog is None:
        report.errors.append(f"{entry.name}: cannot list the repositories of {registry}: {catalog}")
        return None
    matcher = compile_repo_filter(entry.repos)
    wanted = [r for r in catalog if (not prefix or r.startswith(prefix.rstrip("/") + "/")) and matcher.matches(r)]
    return [parse_repository(join_endpoint(registry, r)) for r in wanted]


def _registry_of(source: str) -> str:
    """The normalised registry of a ``host[:port][/path]`` source (docker.io aliases folded), or the
    local store of an ``oci:DIR[:path]`` one."""
    host = split_endpoint(source)[0]
    return host if is_local(host) else Repository.parse(f"{host}/probe").registry


def _dedupe(jobs: list[ImageJob]) -> list[ImageJob]:
    # Two entries may select the same image for the same target (skopeo YAML lists an image in
    # several sections): copy it once.
    seen: dict[tuple[str, str], ImageJob] = {}
    for job in jobs:
        seen.setdefault((str(job.source), str(job.target)), job)
    return sorted(seen.values(), key=lambda j: (str(j.target), str(j.source)))


# ------------------------------------------------------------------------------------------- check


async def _check(backend: SyncBackend, jobs: list[ImageJob], dst_tags: dict[AnyRepository, set[str]],
                 options: SyncOptions, report: SyncReport, journal: SyncJournal | None,
                 listings: dict[AnyRepository, list[str]]) -> list[ImageJob]:
    """Drop jobs whose target already holds the source digest; HEAD only where both sides have it.

    An image that carries referrers stays only when they are in sync too (:mod:`regcopy.sync.referrers`).
    Images the journal says an interrupted run finished are dropped without a request.
    """
    limit = anyio.CapacityLimiter(options.probes)
    todo: list[ImageJob] = []
    pairs: dict[tuple[AnyRepository, AnyRepository], PairCheck] = {}

    async def referrers_in_sync(job: ImageJob, root: Digest) -> bool:
        source, destination = backend.source(job.source.repo), backend.destination(job.target.repo)
        key = (job.source.repo, job.target.repo)
        if key not in pairs:
            pairs[key] = PairCheck(source, destination, listings.get(job.source.repo, []),
                                   dst_tags.get(job.target.repo, set()))
        async with limit:
            if await untagged_referrers(source, root, job.referrers):
                return False
        return await pairs[key].in_sync()

    async def check(job: ImageJob) -> None:
        done = journal.finished(str(job.source), str(job.target)) if journal is not None else None
        if done is not None:
            report.images.append(ImageReport(job.entry, str(job.source), str(job.target), "up-to-date",
                                             done.get("source_digest"), done.get("target_digest"),
                                             note="finished by an earlier, interrupted run (journal)"))
            return
        on_target = job.target.digest is not None or job.target_tag in dst_tags.get(job.target.repo, set())
        if not on_target or job.platforms:
            todo.append(job)  # platform subsets are compared after planning (the root digest changes)
            return
        try:
            async with limit, anyio.create_task_group() as tg:
                found: dict[str, Digest | None] = {}

                async def head(side: str, store: Source | Destination, ref: str) -> None:
                    found[side] = await store.head(ref)

                tg.start_soon(head, "src", backend.source(job.source.repo), job.identifier)
                tg.start_soon(head, "dst", backend.destination(job.target.repo), job.target.identifier)
        except BaseExceptionGroup as group:
            _fail(report, job, first_error(group))
            return
        same = found["src"] is not None and found["src"] == found["dst"]
        if same and job.referrers.enabled and found["src"] is not None:
            try:
                same = await referrers_in_sync(job, found["src"])
            except RegcopyError as exc:
                _fail(report, job, exc)
                return
        if same:
            report.images.append(ImageReport(job.entry, str(job.source), str(job.target), "up-to-date",
                                             str(found["src"]), str(found["dst"])))
            if journal is not None and isinstance(job.target, Reference):
                journal.image_done(str(job.source), str(job.target), str(found["src"]), str(found["dst"]))
        else:
            todo.append(job)

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(check, job)
    return sorted(todo, key=lambda j: (str(j.target), str(j.source)))


def _fail(report: SyncReport, job: ImageJob, exc: BaseException, attempts: int = 1) -> None:
    if not isinstance(exc, Exception):
        raise exc  # cancellation and KeyboardInterrupt are not image failures
    report.images.append(ImageReport(job.entry, str(job.source), str(job.target), "failed",
                                     error=str(exc) or type(exc).__name__, attempts=attempts))


# -------------------------------------------------------------------------------------------- plan


@dataclass(slots=True)
class _Planned:
    job: ImageJob
    plan: ImagePlan
    source: Source
    destination: Destination


async def _plan(backend: SyncBackend, jobs: list[ImageJob], options: SyncOptions,
                report: SyncReport) -> list[_Planned]:
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
                    report.images.append(ImageReport(job.entry, str(job.source), str(job.target), "up-to-date",
                                                     str(plan.source_digest), str(plan.root.digest)))
                    return
        except RegcopyError as exc:
            _fail(report, job, exc)
            return
        out.append(_Planned(job, plan, source, destination))

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(one, job)
    return sorted(out, key=lambda p: (str(p.job.target), str(p.job.source)))


async def _simulate(planned: list[_Planned], ledger: BlobLedger, report: SyncReport, options: SyncOptions,
                    listings: dict[AnyRepository, list[str]]) -> None:
    """A dry run: each blob gets the run's own decision (:meth:`BlobLedger.decide`, HEADs on the
    destination only), on a simulation of the ledger that takes every decided blob as moved."""
    limit = anyio.CapacityLimiter(options.probes)
    sim = ledger.simulation()
    # The order of the shared-layer pass: the first image needing a shared blob moves it, the others mount it.
    for p in _shared_first(planned):
        entry = ImageReport(p.job.entry, str(p.job.source), str(p.job.target), "planned",
                            str(p.plan.source_digest), str(p.plan.root.digest))
        decisions: dict[Digest, BlobDecision] = {}

        async def decide(blob: Descriptor, p: _Planned = p, out: dict[Digest, BlobDecision] = decisions) -> None:
            out[blob.digest] = await _bounded(limit, lambda: sim.decide(p.destination, blob, p.source.origin))

        async with anyio.create_task_group() as tg:
            for blob in p.plan.blobs:  # unique digests: one blob's decision never depends on another's
                tg.start_soon(decide, blob)
        for blob in p.plan.blobs:
            _count(entry, decisions[blob.digest].action, blob.size)
            sim.note(p.destination.storage_id, blob.digest, p.destination.repository)
        if p.job.referrers.enabled:
            entry.referrers = await dry_run_referrers(p.source, p.destination, p.plan, p.job.referrers,
                                                      listings.get(p.job.source.repo))
        report.images.append(entry)


def _count(entry: ImageReport, action: BlobAction, size: int) -> None:
    if action == "skipped":
        entry.blobs_skipped += 1
    elif action == "mounted":
        entry.blobs_mounted += 1
    else:
        entry.blobs_uploaded += 1
        entry.bytes_uploaded += size


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


async def _copy(backend: SyncBackend, planned: list[_Planned], options: SyncOptions, reporter: Reporter,
                ledger: BlobLedger, report: SyncReport, journal: SyncJournal | None,
                listings: dict[AnyRepository, list[str]]) -> None:
    """Copy every planned image; images of one source bound for several targets (``targets:``, or
    entries sharing a source) are one fan-out: the source is read once for all of them."""
    limits = Limits(anyio.CapacityLimiter(options.blobs), ByteBudget(options.bytes_in_flight))
    failed: list[_Planned] = []
    prepass = await _seed_shared(planned, limits, reporter, ledger)
    images = anyio.CapacityLimiter(options.images)

    def done(p: _Planned, result: CopyResult, attempt: int, started: float) -> None:
        _credit_prepass(result, prepass.pop(id(p), []))
        image = _image_report(p.job, result, attempt, time.monotonic() - started)
        image.served_by = p.source.served_by  # which mirror (or the upstream) the bytes came from
        image.referrers = result.referrers
        report.images.append(image)
        if journal is not None and isinstance(p.job.target, Reference):
            # Only registry tags are durable at their PUT: a local store becomes durable when
            # the run commits it, after this point, so a killed run must copy its images again.
            journal.image_done(str(p.job.source), str(p.job.target), result.source_digest, result.digest)

    def fail(p: _Planned, exc: BaseException, attempt: int) -> None:
        if attempt == 1 and options.retry_failed:
            log.warning("%s -> %s failed (%s); will retry at the end", p.job.source, p.job.target, exc)
            failed.append(p)
        else:
            _fail(report, p.job, exc, attempts=attempt)

    async def one(p: _Planned, attempt: int, plan: ImagePlan | None) -> None:
        async with images:
            started = time.monotonic()
            try:
                result = await copy_with_referrers(
                    p.source, p.destination, p.job.identifier, target_tag=p.job.target_tag,
                    platforms=p.job.platforms, blob_jobs=options.blob_jobs, reporter=reporter, ledger=ledger,
                    plan=plan, limits=limits, policy=p.job.referrers, tags=listings.get(p.job.source.repo))
            except RegcopyError as exc:
                fail(p, exc, attempt)
                return
            done(p, result, attempt, started)

    async def group(ps: list[_Planned]) -> None:
        async with images:
            started = time.monotonic()
            targets = [Target(p.destination, p.job.target_tag) for p in ps]
            first = ps[0]
            await copy_to_many(first.source, targets, first.job.identifier, policy=first.job.referrers,
                               ledger=ledger, platforms=first.job.platforms, blob_jobs=options.blob_jobs,
                               reporter=reporter, limits=limits, plan=first.plan,
                               tags=listings.get(first.job.source.repo))
            for p, target in zip(ps, targets, strict=True):
                if target.error is not None or target.result is None:
                    fail(p, target.error or RegcopyError("no result"), 1)
                else:
                    done(p, target.result, 1, started)

    async with anyio.create_task_group() as tg:
        # Largest image first (longest-processing-time scheduling): a 1 GiB layer that starts last
        # is the whole run's tail. Shared blobs are already in place after _seed_shared.
        for ps in sorted(_fan_groups(planned), key=lambda ps: (-ps[0].plan.total_bytes, str(ps[0].job.target))):
            if len(ps) == 1:
                tg.start_soon(one, ps[0], 1, ps[0].plan)
            else:
                tg.start_soon(group, ps)
    retry, failed[:] = list(failed), []
    async with anyio.create_task_group() as tg:
        for p in retry:
            tg.start_soon(one, p, 2, None)  # re-plan: the source may have changed


def _fan_groups(planned: list[_Planned]) -> list[list[_Planned]]:
    """Planned images of one source image (same reference and platforms, same referrer policy) bound
    for different targets: each group is copied with one read of the source."""
    groups: dict[tuple[str, tuple[Platform, ...], ReferrerPolicy], list[_Planned]] = defaultdict(list)
    for p in planned:
        groups[(str(p.job.source), p.job.platforms, p.job.referrers)].append(p)
    return list(groups.values())


async def _delete_extra(backend: SyncBackend, plan: SyncPlan, jobs: list[ImageJob],
                        dst_tags: dict[AnyRepository, set[str]], broken: set[str], options: SyncOptions,
                        report: SyncReport) -> None:
    """Delete target tags that entries with ``delete_extra`` did not select (dry run: report them)."""
    entries = [e for e in plan.entries if e.delete_extra is not None]
    if not entries:
        return
    report.deletions = PruneReport(dry_run=options.dry_run)
    # What any entry selected stays: two entries may fill one target repository.
    wanted: dict[AnyRepository, set[str]] = defaultdict(set)
    for job in jobs:
        if job.target_tag is not None:
            wanted[job.target.repo].add(job.target_tag)
    for entry in entries:
        assert entry.delete_extra is not None
        if entry.name in broken:
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
        async with limits.blobs or anyio.CapacityLimiter(1):
            actions = await fan_blob(items[0][0].source, targets, blob, reporter, ledger)
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
    return ImageReport(
        job.entry, str(job.source), str(job.target), "up-to-date" if result.up_to_date else "copied",
        result.source_digest, result.digest, result.blobs_uploaded, result.blobs_mounted, result.blobs_skipped,
        result.bytes_uploaded, result.retries, attempt, round(seconds, 3),
    )

