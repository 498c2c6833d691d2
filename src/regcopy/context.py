"""A client's shared resources (:class:`Pool`) and one run's view of them (:class:`RunContext`).

A :class:`~regcopy.client.Client` owns one Pool: one transport per (host, scheme, settings,
credential store), learned upload policies per host, one credential store per credentials source a
settings layer names. A run (``Client.sync``, ``Client.prune``, or the client's own one-image
operations) sees the pool through a RunContext: the :class:`~regcopy.settings.Settings` resolved for
that run (defaults → the plan's ``registries:`` → the client's overrides, one
:func:`~regcopy.settings.resolve`), the mirrors and credential sources they name, and the run's upload
journal. A context is made once per run and never changed, so nothing alters a client's settings
while a run is going (docs/architecture.md, "Settings resolution"); two runs whose settings agree
share transports, their probe results and per-host limits.

Also the scheduler's backend over a context (:class:`SyncStores`) and the local stores a plan names,
each opened once per run (:func:`open_plan_stores`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager

import anyio

from regcopy.credentials import CredentialStore, store_for
from regcopy.errors import NotFound, RegcopyError
from regcopy.locations import AnyNamespace, AnyRepository, LocalRepository
from regcopy.progress import Broadcast, Reporter
from regcopy.reference import Reference, Repository
from regcopy.registry.limits import HostLimits, limits_key, merge_snapshots, subtract_counters
from regcopy.registry.manifests import catalog, tags_list
from regcopy.registry.transport import Transport
from regcopy.settings import Credentials, RegistrySettings, Settings
from regcopy.stores.base import Destination, Source, UploadJournal
from regcopy.stores.local import LocalStore, RepositoryView, open_local, repositories
from regcopy.stores.mirrored import MirroredSource
from regcopy.stores.referrers import RegistryFeatures
from regcopy.stores.registry import RegistryStore, UploadPolicy
from regcopy.sync.model import SyncPlan

__all__ = ("LocalStores", "Pool", "RunContext", "SyncStores", "TransportFactory", "open_plan_stores")

TransportFactory = Callable[[str, str | None, RegistrySettings, CredentialStore, HostLimits], Transport]
"""Makes a transport for (registry, forced scheme, settings, credential store, the host's shared limits):
the client's session and tokens."""


class Pool:
    """What a client owns and every run of it shares: transports, each host's limits, upload policies,
    credential stores, and the broadcast its hosts' events go through (each run adds its reporter).

    :param new_transport: makes a transport (the client's session and token cache)
    :param credentials: the store of every host no settings layer gives a credentials source
    :param upload: the default upload policy (copied per host; each host learns its own)
    """

    def __init__(self, new_transport: TransportFactory, credentials: CredentialStore, upload: UploadPolicy) -> None:
        self.credentials = credentials
        self._new_transport = new_transport
        self._upload = upload
        self._transports: dict[tuple[str, str | None, RegistrySettings, int], Transport] = {}
        self._uploads: dict[str, UploadPolicy] = {}
        self._stores: dict[tuple[str, Credentials], CredentialStore] = {}
        self._features: dict[str, RegistryFeatures] = {}
        self._limits: dict[tuple[object, ...], HostLimits] = {}
        self.events = Broadcast()
        """Where every host's events go: the reporters of the runs going on."""

    def transport(self, registry: str, scheme: str | None, settings: RegistrySettings,
                  credentials: CredentialStore) -> Transport:
        """The transport for ``registry`` with these settings and credentials (made on first use)."""
        key = (registry, scheme, settings, id(credentials))  # the transport keeps the store alive
        transport = self._transports.get(key)
        if transport is None:
            limits = self.limits(registry, settings)
            transport = self._transports[key] = self._new_transport(registry, scheme, settings, credentials, limits)
        return transport

    def limits(self, registry: str, settings: RegistrySettings) -> HostLimits:
        """The limits every transport to ``registry`` with these limit settings shares (made on first use)."""
        key = limits_key(registry, settings)
        limits = self._limits.get(key)
        if limits is None:
            limits = self._limits[key] = HostLimits(registry, settings, self.events)
        return limits

    @contextmanager
    def watching(self, reporter: Reporter | None) -> Iterator[None]:
        """Hand the events of every host to ``reporter`` while the block runs."""
        if reporter is None:
            yield
            return
        self.events.add(reporter)
        try:
            yield
        finally:
            self.events.remove(reporter)

    def host_report(self, since: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, dict[str, object]]:
        """Per host what its requests met (:meth:`HostLimits.snapshot`), counters taken ``since`` an
        earlier report (for one run of a long-lived client)."""
        out: dict[str, dict[str, object]] = {}
        for limits in self._limits.values():
            now = limits.snapshot()
            merged = out.get(limits.registry)
            out[limits.registry] = now if merged is None else merge_snapshots(merged, now)
        if since:
            for host, before in since.items():
                if host in out:
                    out[host] = subtract_counters(out[host], before)
        return {host: report for host, report in sorted(out.items()) if report.get("requests") or not since}

    def upload_policy(self, registry: str) -> UploadPolicy:
        """The learned upload policy of ``registry``."""
        policy = self._uploads.get(registry)
        if policy is None:
            t = self._upload
            policy = self._uploads[registry] = UploadPolicy(t.strategy, t.chunk_size, t.small_blob, t.restarts)
        return policy

    def features(self, registry: str) -> RegistryFeatures:
        """What runs learned about ``registry``: referrers API, mounts by digest alone (once per host)."""
        return self._features.setdefault(registry, RegistryFeatures())

    def credentials_for(self, host: str, source: Credentials | None) -> CredentialStore:
        """The store answering for ``host``: the one ``source`` names (one per host and source, so
        helper answers are cached across runs), else the client's."""
        if source is None:
            return self.credentials
        store = self._stores.get((host, source))
        if store is None:
            store = self._stores[(host, source)] = store_for(host, source)
        return store

    def retries(self) -> int:
        """Request retries so far, over every transport."""
        return sum(t.stats["retries"] for t in self._transports.values())


class RunContext:
    """One run's view of a client's pool: its resolved settings, mirrors and credentials, and its journal.

    Also what :func:`regcopy.retention.run_prune` runs over (a
    :class:`~regcopy.retention.PruneBackend`).

    :param settings: the run's settings, resolved once
    :param journal: where writable registry stores record their upload sessions (None: nowhere)
    """

    def __init__(self, pool: Pool, settings: Settings, journal: UploadJournal | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.journal = journal
        self.broken_mirrors: set[str] = set()
        """Mirrors found unreachable: skipped for the rest of the run."""

    def transport(self, registry: str, *, scheme: str | None = None,
                  settings: RegistrySettings | None = None) -> Transport:
        """The transport for ``registry``: the run's settings for it unless ``settings`` are given."""
        credentials = self.pool.credentials_for(registry, self.settings.credentials.get(registry))
        return self.pool.transport(registry, scheme, settings or self.settings.for_host(registry), credentials)

    def registry_store(self, repo: Repository | Reference, *, writable: bool = False,
                       settings: RegistrySettings | None = None) -> RegistryStore:
        """A store for one registry repository (writable ones record uploads in the run's journal)."""
        path = repo.path if isinstance(repo, Repository) else repo.repository
        return RegistryStore(self.transport(repo.registry, scheme=repo.scheme, settings=settings), path,
                             self.pool.upload_policy(repo.registry), writable=writable,
                             journal=self.journal if writable else None, features=self.pool.features(repo.registry))

    def source(self, repo: Repository) -> Source:
        """A store reading ``repo``: through its registry's mirrors first when the settings name some."""
        upstream = self.registry_store(repo)
        mirrors = self.settings.mirrors.get(repo.registry, ())
        if not mirrors:
            return upstream
        candidates = [(str(m), self.registry_store(m.at(f"{m.path}/{repo.path}" if m.path else repo.path)))
                      for m in mirrors]
        return MirroredSource(upstream, candidates, upstream_label=repo.registry, broken=self.broken_mirrors)

    async def catalog(self, registry: str) -> list[str]:
        """Every repository path of ``registry`` (``/v2/_catalog``), sorted."""
        return await catalog(self.transport(registry))


class LocalStores:
    """The local stores a plan names, each opened once for the whole run (keyed by absolute path)."""

    def __init__(self) -> None:
        self.stores: dict[str, LocalStore] = {}
        self.writable: set[str] = set()

    def view(self, repo: LocalRepository) -> RepositoryView:
        """One repository of its store."""
        return RepositoryView(self.stores[repo.key], repo.path)

    def targets(self) -> list[LocalStore]:
        """The stores the run writes, to commit once after the last image."""
        return [self.stores[k] for k in sorted(self.writable)]


@asynccontextmanager
async def open_plan_stores(plan: SyncPlan) -> AsyncIterator[LocalStores]:
    """Open every local store of ``plan``: targets writable (they may also be read), sources read-only."""
    wanted: dict[str, tuple[LocalRepository, bool]] = {}
    for entry in plan.entries:
        for where, writable in ((entry.source, False), (entry.target, True)):
            if isinstance(where, LocalRepository):
                old = wanted.get(where.key)
                wanted[where.key] = (where, writable or (old is not None and old[1]))
    local = LocalStores()
    async with AsyncExitStack() as stack:
        for key, (repo, writable) in sorted(wanted.items()):
            local.stores[key] = await stack.enter_async_context(open_local(repo.location, writable=writable,
                                                                                     tree=True))
            if writable:
                local.writable.add(key)
        yield local


class SyncStores:
    """The scheduler's view of a run (:class:`~regcopy.sync.SyncBackend`): listings and stores, never sessions."""

    def __init__(self, context: RunContext, local: LocalStores) -> None:
        self.context = context
        self.local = local

    async def catalog(self, where: AnyNamespace) -> list[str]:
        if isinstance(where, LocalRepository):
            return await repositories(self.local.stores[where.key])
        return await self.context.catalog(where.registry)

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        if isinstance(repo, LocalRepository):
            # Never None: blobs live store-wide, so a new repository in a store may find them present.
            return await self.local.view(repo).list_tags()
        try:
            return await tags_list(self.context.transport(repo.registry, scheme=repo.scheme), repo.path)
        except NotFound:
            return None

    def source(self, repo: AnyRepository) -> Source:
        return self.local.view(repo) if isinstance(repo, LocalRepository) else self.context.source(repo)

    def destination(self, repo: AnyRepository) -> Destination:
        if isinstance(repo, LocalRepository):
            return self.local.view(repo)
        return self.context.registry_store(repo, writable=True)

    async def warm_up(self, plan: SyncPlan) -> None:
        """Probe the plan's destination registries (discovery calls this while it lists the sources).

        Discovery lists the destinations only after the sources, so their ``/v2/`` race would
        otherwise start then: over a slow link, a run that syncs little pays it as a separate round
        trip or two. A failed probe is left for the first real request, which shares or repeats it
        (:meth:`~regcopy.registry.transport.Transport.ping`) and reports it as it always did.
        """
        hosts = {(t.registry, t.scheme if isinstance(t, Repository) else None)
                 for t in (e.target for e in plan.entries) if not isinstance(t, LocalRepository)}
        async with anyio.create_task_group() as tg:
            for registry, scheme in sorted(hosts, key=str):
                tg.start_soon(self._ping, registry, scheme)

    async def _ping(self, registry: str, scheme: str | None) -> None:
        with contextlib.suppress(RegcopyError):
            await self.context.transport(registry, scheme=scheme).ping()
