"""The first phases of a sync run: what the plan selects, and what of it is already in place.

1. **Discover** every entry concurrently: catalogs (once per registry or local store) for namespaces
   and whole registries, source tag lists filtered by the entry's TagFilter, each with its target's
   tag list beside it (the destination registries probed meanwhile), the other destination tag lists
   in bulk.
2. **Check**: only where a tag exists on both sides are both manifests HEADed (no pulls counted on
   Docker Hub); equal digests are up to date and cost nothing more. With ``platforms`` the target
   holds a subset whose digest no source HEAD shows: it is up to date when the run journal recorded
   that digest for the source digest the HEAD shows (or the source is no index and the digests are
   equal), so a no-op re-sync costs no manifest GET either.

Addresses stay values throughout: an entry's source namespace gives its repositories
(:meth:`~regcopy.reference.Namespace.at`), :func:`~regcopy.sync.plan.target_repository` their targets.
Registries and stores are reached only through a :class:`SyncBackend`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, TypeVar

import anyio
import anyio.abc

from regcopy.artifacts import ReferrerPolicy
from regcopy.digest import Digest
from regcopy.engine import first_error
from regcopy.errors import RegcopyError
from regcopy.filters import compile_repo_filter, compile_tag_filter
from regcopy.ledger import BlobLedger
from regcopy.locations import AnyNamespace, AnyRepository, LocalRepository
from regcopy.manifest import INDEX_TYPES, Platform
from regcopy.reference import Namespace, Reference, Repository
from regcopy.stores.base import Destination, ManifestHead, Source
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import ImageJob, SyncEntry, SyncOptions, SyncPlan
from regcopy.sync.plan import target_repository
from regcopy.sync.referrers import ReferrersCheck, image_tags
from regcopy.sync.report import ImageReport, SyncReport, record_failure

__all__ = ("Discovery", "SyncBackend", "bounded", "check", "discover")

T = TypeVar("T")
_Catalogs: TypeAlias = dict[AnyNamespace, list[str] | RegcopyError]


class SyncBackend(Protocol):
    """What the scheduler needs from a client: listings and stores."""

    async def catalog(self, where: AnyNamespace) -> list[str]:
        """Every repository path of the registry (``/v2/_catalog``) or local store ``where`` is in."""
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

    async def warm_up(self, plan: SyncPlan) -> None:
        """Get ready to list the plan's destinations (probe their registries); never raises for a
        registry's failure, which the first real request reports."""
        ...


@dataclass(slots=True)
class Discovery:
    """What discovery found.

    :ivar jobs: every image the plan selects, once each, sorted by target
    :ivar dst_tags: the tags each target repository holds already
    :ivar broken: names of entries whose discovery failed in part (their extra tags stay)
    :ivar src_tags: each listed source repository's tags
    """

    jobs: list[ImageJob] = field(default_factory=list)
    dst_tags: dict[AnyRepository, set[str]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    src_tags: dict[AnyRepository, list[str]] = field(default_factory=dict)
    """Each listed source repository's tags, referrer tags included (found there without a request)."""


async def bounded(limit: anyio.CapacityLimiter, fn: Callable[[], Awaitable[T]]) -> T:
    """``fn()`` under ``limit``."""
    async with limit:
        return await fn()


async def discover(backend: SyncBackend, plan: SyncPlan, options: SyncOptions, report: SyncReport,
                   ledger: BlobLedger, select: Callable[[str], bool] | None = None) -> Discovery:
    """Every image the plan selects, and the tags each target repository already has.

    :param select: keep only the source repositories (``host/path``) it accepts (a static shard's part)

    :raises RegcopyError: an invalid tag filter (before any request)
    """
    limit = anyio.CapacityLimiter(options.probes)
    found = Discovery()
    catalogs = await _catalogs(backend, plan, limit)
    pairs: list[tuple[SyncEntry, AnyRepository]] = []
    for entry in plan.entries:
        compile_tag_filter(entry.tags, entry=entry.name, path=plan.path)  # invalid filters fail before any work
        repos = _source_repositories(entry, catalogs, report)
        if repos is None:
            found.broken.add(entry.name)
        pairs.extend((entry, repo) for repo in repos or () if select is None or select(str(repo)))
    early: _Early = {}
    async with anyio.create_task_group() as tg:
        for entry, repo in pairs:
            tg.start_soon(_expand, backend, plan, entry, repo, limit, report, found)
            _list_target_early(tg, backend, entry, repo, limit, early)
        if pairs:  # the destinations are listed next: their probes go while the sources are listed
            tg.start_soon(backend.warm_up, plan)
    found.jobs = _dedupe(found.jobs)
    await _target_tags(backend, found, limit, report, ledger, early)
    return found


def _list_target_early(tg: anyio.abc.TaskGroup, backend: SyncBackend, entry: SyncEntry, repo: AnyRepository,
                       limit: anyio.CapacityLimiter, early: _Early) -> None:
    """List the target of a source repository while the source itself is listed (once per target).

    Over a slow link the two listings then cost one round trip instead of two in a row. Only the
    answers for targets that get jobs are used (:func:`_target_tags`): a source repository with
    nothing selected costs this one listing more, and nothing else changes.
    """
    if not entry.tags.needs_listing:
        return  # exact tags: no source listing to overlap with
    try:
        target = target_repository(entry, repo)
    except RegcopyError:
        return  # _expand reports it
    if target in early:
        return
    early[target] = _Listing()
    tg.start_soon(early[target].load, backend, target, limit)


class _Listing:
    """One early target listing: its tags (None: no such repository) or the error it ended with."""

    def __init__(self) -> None:
        self.tags: list[str] | None = None
        self.error: RegcopyError | None = None

    async def load(self, backend: SyncBackend, repo: AnyRepository, limit: anyio.CapacityLimiter) -> None:
        try:
            self.tags = await bounded(limit, lambda: backend.list_tags(repo))
        except RegcopyError as exc:
            self.error = exc

    def answer(self) -> list[str] | None:
        if self.error is not None:
            raise self.error
        return self.tags


_Early: TypeAlias = dict[AnyRepository, _Listing]


def _namespace(entry: SyncEntry) -> AnyNamespace:
    assert isinstance(entry.source, Namespace | LocalRepository)  # SyncEntry checks its kinds
    return entry.source


async def _catalogs(backend: SyncBackend, plan: SyncPlan, limit: anyio.CapacityLimiter) -> _Catalogs:
    """The catalog of each registry or store a namespace or registry entry lists (an error when it failed)."""
    catalogs: _Catalogs = {}

    async def load(root: AnyNamespace) -> None:
        try:
            catalogs[root] = await bounded(limit, lambda: backend.catalog(root))
        except RegcopyError as exc:
            catalogs[root] = exc

    async with anyio.create_task_group() as tg:
        for root in {_namespace(e).root for e in plan.entries if e.kind != "repository"}:
            tg.start_soon(load, root)
    return catalogs


def _source_repositories(entry: SyncEntry, catalogs: _Catalogs, report: SyncReport) -> list[AnyRepository] | None:
    """The entry's source repositories; None (and an error in the report) when its catalog failed."""
    if entry.kind == "repository":
        assert isinstance(entry.source, Repository | LocalRepository)
        return [entry.source]
    source = _namespace(entry)
    catalog = catalogs.get(source.root)
    if not isinstance(catalog, list):
        report.errors.append(f"{entry.name}: cannot list the repositories of {source.root}: {catalog}")
        return None
    matcher = compile_repo_filter(entry.repos)
    prefix = source.path
    wanted = [r for r in catalog if (not prefix or r.startswith(prefix.rstrip("/") + "/")) and matcher.matches(r)]
    return [source.at(r) for r in wanted]


async def _expand(backend: SyncBackend, plan: SyncPlan, entry: SyncEntry, repo: AnyRepository,
                  limit: anyio.CapacityLimiter, report: SyncReport, found: Discovery) -> None:
    """The jobs of one source repository: its selected tags and the entry's digests."""
    matcher = compile_tag_filter(entry.tags, entry=entry.name, path=plan.path)
    target = target_repository(entry, repo)
    try:
        if entry.tags.needs_listing:
            listing = await bounded(limit, lambda: backend.list_tags(repo))
            found.src_tags[repo] = listing or []
            # Referrer tags are not images: they travel with their subjects (sync.referrers).
            tags = matcher.select(image_tags(listing or [], entry.referrers))
        else:
            tags = sorted(entry.tags.exact)
    except RegcopyError as exc:
        report.errors.append(f"{entry.name}: listing {repo}: {exc}")
        found.broken.add(entry.name)
        return
    platforms = tuple(Platform.parse(p) for p in entry.platforms)
    policy = ReferrerPolicy(enabled=entry.referrers, artifact_types=entry.artifact_types)
    found.jobs.extend(ImageJob(entry.name, repo.with_tag(t), target.with_tag(t + entry.tag_suffix), platforms, policy)
                      for t in tags)
    found.jobs.extend(ImageJob(entry.name, repo.with_digest(d), target.with_digest(d), platforms, policy)
                      for d in matcher.digests)


async def _target_tags(backend: SyncBackend, found: Discovery, limit: anyio.CapacityLimiter,
                       report: SyncReport, ledger: BlobLedger, early: _Early) -> None:
    """List every target repository a tag goes to (or take its early listing); the ledger learns
    which ones are new (empty)."""

    async def load(repo: AnyRepository) -> None:
        try:
            listed = early.get(repo)
            tags = listed.answer() if listed is not None else await bounded(limit, lambda: backend.list_tags(repo))
            found.dst_tags[repo] = set(tags or ())
            ledger.set_empty(backend.destination(repo).storage_id, repo.path, tags is None)
        except RegcopyError as exc:
            report.errors.append(f"listing destination {repo}: {exc}")
            found.dst_tags[repo] = set()  # so delete_extra finds nothing extra here

    async with anyio.create_task_group() as tg:
        for repo in {j.target.repo for j in found.jobs if j.target_tag}:
            tg.start_soon(load, repo)


def _dedupe(jobs: list[ImageJob]) -> list[ImageJob]:
    # Two entries may select the same image for the same target (skopeo YAML lists an image in
    # several sections): copy it once.
    seen: dict[tuple[str, str], ImageJob] = {}
    for job in jobs:
        seen.setdefault((str(job.source), str(job.target)), job)
    return sorted(seen.values(), key=lambda j: (str(j.target), str(j.source)))


# ------------------------------------------------------------------------------------------- check


async def check(backend: SyncBackend, found: Discovery, options: SyncOptions, report: SyncReport,
                journal: SyncJournal | None) -> list[ImageJob]:
    """The jobs still to do: those whose target does not hold the source digest; HEADs only where
    both sides have the tag. An image that carries referrers stays only when they are in sync too
    (:class:`~regcopy.sync.referrers.Referrers`). Images the journal says an interrupted run finished
    are dropped without a request."""
    limit = anyio.CapacityLimiter(options.probes)
    todo: list[ImageJob] = []
    referrers = ReferrersCheck(backend, found.src_tags, found.dst_tags, limit)

    async def one(job: ImageJob) -> None:
        if _journalled(job, report, journal):
            return
        on_target = job.target.digest is not None or job.target_tag in found.dst_tags.get(job.target.repo, set())
        if not on_target:
            todo.append(job)
            return
        try:
            async with limit:
                src, dst, index = await _heads(backend, job)
            # The referrers of what the target holds (with platforms, the subset's own digest).
            held = dst if src is not None and dst is not None and _in_place(job, src, dst, index, journal) else None
            same = held is not None and await referrers.in_sync(job, held)
        except BaseExceptionGroup as group:
            record_failure(report, job, first_error(group))
            return
        except RegcopyError as exc:
            record_failure(report, job, exc)
            return
        if not same:
            todo.append(job)  # a platform subset the HEADs cannot judge is compared after planning
            return
        report.images.append(ImageReport.of(job, "up-to-date", str(src), str(dst)))
        if journal is not None and isinstance(job.target, Reference):
            journal.image_done(str(job.source), str(job.target), str(src), str(dst), _platforms(job))

    async with anyio.create_task_group() as tg:
        for job in found.jobs:
            tg.start_soon(one, job)
    return sorted(todo, key=lambda j: (str(j.target), str(j.source)))


def _journalled(job: ImageJob, report: SyncReport, journal: SyncJournal | None) -> bool:
    """Whether the journal says an interrupted run finished ``job`` (then it is reported up to date)."""
    done = journal.finished(str(job.source), str(job.target)) if journal is not None else None
    if done is None:
        return False
    image = ImageReport.of(job, "up-to-date", done.get("source_digest"), done.get("target_digest"))
    image.note = "finished by an earlier, interrupted run (journal)"
    report.images.append(image)
    return True


def _platforms(job: ImageJob) -> tuple[str, ...]:
    return tuple(str(p) for p in job.platforms)


def _in_place(job: ImageJob, src: Digest, dst: Digest, index: bool | None, journal: SyncJournal | None) -> bool:
    """Whether the target holds what the job would put there, judged from the HEADs alone.

    ``index``: whether the source is an index (None: the HEAD did not say).
    """
    if not job.platforms:
        return src == dst
    if src == dst and index is False:
        return True  # a platform filter keeps an image manifest as it is
    known = journal.known(str(job.source), str(job.target), _platforms(job)) if journal is not None else None
    return known == (str(src), str(dst))


async def _heads(backend: SyncBackend, job: ImageJob) -> tuple[Digest | None, Digest | None, bool | None]:
    """HEAD the source and the target manifest at once; also whether the source is an index, when known."""
    found: dict[str, Digest | None] = {}
    kinds: list[bool] = []

    async def head(side: str, store: Source | Destination, ref: str) -> None:
        if side == "src" and isinstance(store, ManifestHead):
            info = await store.head_manifest(ref)
            found[side] = info.digest if info is not None else None
            if info is not None and info.media_type:
                kinds.append(info.media_type in INDEX_TYPES)
        else:
            found[side] = await store.head(ref)

    async with anyio.create_task_group() as tg:
        tg.start_soon(head, "src", backend.source(job.source.repo), job.identifier)
        tg.start_soon(head, "dst", backend.destination(job.target.repo), job.target.identifier)
    return found["src"], found["dst"], kinds[0] if kinds else None
