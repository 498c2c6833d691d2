"""The :class:`Client` facade: owner of the aiohttp session, transports, tokens, credentials and ledger.

One client = one session (created inside the running loop; an injected session is used and never
closed), one :class:`~regcopy.registry.transport.Transport` per registry host and policy, one token
cache, one blob ledger shared by every copy it runs (so shared layers cross the wire once per
destination registry), and one upload policy per host. Its settings are fixed at construction;
each sync or prune run sees them through a :class:`~regcopy.context.RunContext` that layers the
plan's ``registries:`` under the client's overrides (docs/architecture.md, "Settings resolution").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Self

import aiohttp
import anyio

from regcopy.artifacts import ReferrerPolicy, ReferrerTree, copy_to_many, copy_with_referrers, referrer_tree
from regcopy.context import Pool, RunContext, SyncStores, open_plan_stores
from regcopy.convert import Format
from regcopy.credentials import CredentialStore, default_credentials
from regcopy.digest import Digest, VerifyingStream
from regcopy.engine import CopyResult, Limits, plan_index_only
from regcopy.errors import CopyFailed, InvalidReference, ManifestNotFound, NotFound, RegcopyError
from regcopy.fanout import Target
from regcopy.inspect import ImageInfo, image_info
from regcopy.ledger import BlobLedger
from regcopy.locations import is_local, target_tag
from regcopy.lookup import checked_result, config_bytes, pick_platform, refuse_clobber
from regcopy.manifest import Manifest, Platform
from regcopy.progress import Reporter, RunSummary, null_reporter
from regcopy.reference import LocalLocation, Reference, Repository, parse_location
from regcopy.registry import TokenCache
from regcopy.registry.blobs import blob_chunks
from regcopy.registry.limits import HostLimits
from regcopy.registry.manifests import catalog, tags_list
from regcopy.registry.transport import PingResult, Transport
from regcopy.retention import PrunePlan, PruneReport, load_prune, run_prune
from regcopy.retention.model import DeleteResult
from regcopy.settings import Layer, Overrides, RegistrySettings, Settings, default_certs_d, host_cert_dir, resolve
from regcopy.stores.base import Source, UploadJournal
from regcopy.stores.local import LocalStore, RepositoryView, local_identifier, open_local
from regcopy.stores.referrers import RegistryFeatures
from regcopy.stores.registry import RegistryStore, UploadPolicy
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import SyncOptions, SyncPlan
from regcopy.sync.plan import load_plan
from regcopy.sync.report import SyncReport
from regcopy.sync.scheduler import PlannedImage, plan_images, run_sync
from regcopy.sync.skopeo import host_platform as skopeo_host_platform
from regcopy.throttle import TokenBucket

__all__ = ("Client", "DeleteResult", "PlatformSpec", "copy", "host_platform")

log = logging.getLogger(__name__)

PlatformSpec = str | Platform


class Client:
    """Copies images and talks to registries; use as ``async with Client(...) as client``.

    Settings resolve in one order (:func:`regcopy.settings.resolve`): ``default_settings`` and
    ``settings`` are the defaults, a plan's ``registries:`` go over them for the plan's run, and
    ``overrides`` (what the command line's flags become) go over both.

    :param session: an aiohttp session to use (never closed by the client)
    :param credentials: where credentials come from (default: docker config.json, containers
        auth.json and credential helpers, per :func:`regcopy.credentials.default_credentials`)
    :param authfile: an explicit auth file instead of the default search
    :param settings: per-host policy (``{"host:port": RegistrySettings(...)}``)
    :param default_settings: policy for hosts not in ``settings``
    :param upload: default upload policy (copied per host; each host learns its own)
    :param overrides: per host, what wins over the defaults and over any plan's ``registries:``
        (settings fields, a credentials source, mirrors)
    :param certs_d: roots of ``ROOT/HOST[:PORT]`` certificate directories (default: skopeo's and docker's)
    :param limit_rate: blob bytes per second over everything the client copies (``--limit-rate``);
        each host's own ``limit_rate`` applies too
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        credentials: CredentialStore | None = None,
        authfile: str | None = None,
        settings: Mapping[str, RegistrySettings] | None = None,
        default_settings: RegistrySettings | None = None,
        upload: UploadPolicy | None = None,
        overrides: Mapping[str, Overrides] | None = None,
        certs_d: Sequence[str] | None = None,
        limit_rate: int | None = None,
    ) -> None:
        self._session = session
        self._certs_d = tuple(default_certs_d() if certs_d is None else certs_d)
        self._owns_session = session is None
        self._defaults = Settings(default_settings or RegistrySettings(), MappingProxyType(dict(settings or {})))
        self._overrides: Layer = MappingProxyType(dict(overrides or {}))
        self.settings = resolve(self._defaults, self._overrides)
        """Every host's settings outside a plan's run (defaults, then the overrides)."""
        self.tokens = TokenCache()
        self.ledger = BlobLedger()
        self._pool = Pool(self._new_transport, credentials or default_credentials(authfile), upload or UploadPolicy())
        self._context = RunContext(self._pool, self.settings)
        self.bandwidth = TokenBucket(limit_rate, max(256 * 1024, limit_rate / 10)) if limit_rate else None
        """The client-wide byte cap (None: none)."""

    async def __aenter__(self) -> Self:
        if self._session is None:
            d = self.settings.default
            # No total timeout: aiohttp's default 5-minute total kills large blob transfers. Each transport
            # passes its host's own connect/read timeouts and bounds answers itself (docs/security.md).
            timeout = aiohttp.ClientTimeout(total=None, connect=d.connect_timeout, sock_connect=d.connect_timeout,
                                            sock_read=d.read_timeout)
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=True)
            # trust_env stays off: it would read ~/.netrc and attach its credentials to any host.
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False,
                                                  trust_env=False)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if the client created it."""
        if self._owns_session and self._session is not None:
            with anyio.CancelScope(shield=True):
                await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ plumbing
    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (inside ``async with`` only)."""
        if self._session is None:
            raise RuntimeError("use the Client inside 'async with'")
        return self._session

    @property
    def credentials(self) -> CredentialStore:
        """The store of every host no settings layer gives a credentials source."""
        return self._pool.credentials

    def settings_for(self, registry: str) -> RegistrySettings:
        """The policy of ``registry`` (outside a plan's run)."""
        return self.settings.for_host(registry)

    def context(self, registries: Layer | None = None, *, journal: UploadJournal | None = None) -> RunContext:
        """A run's view of this client: settings resolved as defaults → ``registries`` (a plan's) →
        the client's overrides, and the run's upload journal. The client itself is left as it is."""
        return RunContext(self._pool, resolve(self._defaults, registries or {}, self._overrides), journal)

    def _new_transport(self, registry: str, scheme: str | None, settings: RegistrySettings,
                       credentials: CredentialStore, limits: HostLimits) -> Transport:
        if settings.cert_dir is None and (found := host_cert_dir(registry, self._certs_d)):
            settings = replace(settings, cert_dir=found)  # as skopeo and docker read certs.d/HOST[:PORT]
        return Transport(self.session, registry, settings, credentials, self.tokens, forced_scheme=scheme,
                         limits=limits)

    def host_report(self, since: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, dict[str, object]]:
        """Per host what the client's requests met: requests, retries, 429s, pulls, concurrency, quota
        (docs/events.md); with ``since`` (an earlier report), the counters since then."""
        return self._pool.host_report(since)

    def transport(self, registry: str, *, scheme: str | None = None,
                  settings: RegistrySettings | None = None) -> Transport:
        """The transport for ``registry`` (created on first use)."""
        return self._context.transport(registry, scheme=scheme, settings=settings)

    def upload_policy(self, registry: str) -> UploadPolicy:
        """The learned upload policy of ``registry``."""
        return self._pool.upload_policy(registry)

    def features(self, registry: str) -> RegistryFeatures:
        """What this client learned about ``registry`` (referrers API, mounts by digest alone)."""
        return self._pool.features(registry)

    def registry_store(self, repo: Repository | Reference, *, writable: bool = False,
                       settings: RegistrySettings | None = None) -> RegistryStore:
        """A store for one registry repository."""
        return self._context.registry_store(repo, writable=writable, settings=settings)

    def retries(self) -> int:
        """Request retries so far, over every host."""
        return self._pool.retries()

    # ------------------------------------------------------------------ operations
    async def ping(self, registry: str, *, scheme: str | None = None) -> PingResult:
        """Probe a registry and report the scheme chosen and why."""
        return await self.transport(registry, scheme=scheme).ping()

    async def copy(self, src: str | Reference | LocalLocation, dst: str | Reference | LocalLocation, *,
                   platforms: Sequence[PlatformSpec] = (), jobs: int = 6, reporter: Reporter | None = None,
                   force: bool = False, src_settings: RegistrySettings | None = None,
                   dst_settings: RegistrySettings | None = None, referrers: bool | ReferrerPolicy = True,
                   format: Format | None = None, preserve_digests: bool = False, index_only: bool = False,
                   no_clobber: bool = False, source_tags: Sequence[str] | None = None) -> CopyResult:
        """Copy one image or index between any two locations, with its referrers (signatures, SBOMs,
        attestations: :mod:`regcopy.artifacts`).

        Locations: registries (``docker://`` optional), ``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``.

        :param src: where to read; its tag or digest names the image (``latest`` when a registry
            reference has neither; a local store's only image when it has no ref)
        :param dst: where to write; its tag (or ref) is the destination tag, else the source's tag
        :param platforms: keep only these platforms of an index (``"linux/arm64"`` or Platform)
        :param jobs: blobs in flight for this image
        :param reporter: receives progress events
        :param force: push even when the destination tag already holds the same digest
        :param src_settings: settings of the source's host for this copy (default: the client's)
        :param dst_settings: settings of the destination's host for this copy (default: the client's)
        :param referrers: copy every copied manifest's referrers (a :class:`ReferrerPolicy` filters types); False: none
        :param format: ``"oci"`` or ``"v2s2"``: convert the manifests (new digests; no referrers follow)
        :param preserve_digests: refuse a copy that would change digests (``DigestsNotPreserved``, before writing)
        :param index_only: an index alone, without its children (skopeo ``--multi-arch index-only``)
        :param no_clobber: refuse to overwrite a destination tag that exists (crane ``copy --no-clobber``)
        :param source_tags: the source repository's tags when the caller listed them (referrer tags found there)
        :raises RegcopyError: the copy failed; nothing incomplete is tagged
        """
        before = self.host_report()
        with self._pool.watching(reporter):
            result = await self._copy(src, dst, platforms=platforms, jobs=jobs, reporter=reporter, force=force,
                                      src_settings=src_settings, dst_settings=dst_settings, referrers=referrers,
                                      format=format, preserve_digests=preserve_digests, index_only=index_only,
                                      no_clobber=no_clobber, source_tags=source_tags)
        result.hosts = self.host_report(before)
        return result

    async def _copy(self, src: str | Reference | LocalLocation, dst: str | Reference | LocalLocation, *,
                    platforms: Sequence[PlatformSpec], jobs: int, reporter: Reporter | None, force: bool,
                    src_settings: RegistrySettings | None, dst_settings: RegistrySettings | None,
                    referrers: bool | ReferrerPolicy, format: Format | None, preserve_digests: bool,
                    index_only: bool, no_clobber: bool, source_tags: Sequence[str] | None) -> CopyResult:
        src_loc, dst_loc = _location(src), _location(dst)
        retries_before = self.retries()
        async with self._open(src_loc, writable=False, settings=src_settings) as source, \
                self._open(dst_loc, writable=True, settings=dst_settings) as destination:
            ident = await _identifier(src_loc, source)
            tag = target_tag(dst_loc, ident)
            await refuse_clobber(destination, tag, str(dst_loc)) if no_clobber else None
            result = await copy_with_referrers(
                source, destination, ident, target_tag=tag, platforms=[_platform(p) for p in platforms],
                blob_jobs=jobs, reporter=reporter or null_reporter, ledger=self.ledger, force=force,
                policy=_policy(referrers if format is None else False), format=format,
                preserve_digests=preserve_digests, plan=await plan_index_only(source, ident) if index_only else None,
                limits=Limits(bandwidth=self.bandwidth), tags=source_tags)
        return checked_result(result, dst_loc, source.synthesized, self.retries() - retries_before)

    async def copy_fanout(self, src: str | Reference | LocalLocation,
                          destinations: Sequence[str | Reference | LocalLocation], *,
                          platforms: Sequence[PlatformSpec] = (), jobs: int = 6, reporter: Reporter | None = None,
                          force: bool = False, referrers: bool | ReferrerPolicy = True,
                          src_settings: RegistrySettings | None = None,
                          dst_settings: Sequence[RegistrySettings | None] = ()) -> list[CopyResult | RegcopyError]:
        """Copy one image to several destinations, reading each blob from the source once
        (:mod:`regcopy.fanout`); destinations on one registry get one upload and then mounts.

        :param dst_settings: per destination, in order, its host's settings for this copy (default: the client's)
        :returns: per destination, in order, its result or the error that ended it (the others go on)
        :raises RegcopyError: the source itself failed (nothing was written)
        """
        src_loc = _location(src)
        dst_locs = [_location(d) for d in destinations]
        settings = list(dst_settings) + [None] * (len(dst_locs) - len(dst_settings))
        before = self.host_report()
        async with AsyncExitStack() as stack:
            stack.enter_context(self._pool.watching(reporter))
            source = await stack.enter_async_context(self._open(src_loc, writable=False, settings=src_settings))
            ident = await _identifier(src_loc, source)
            targets = [Target(await stack.enter_async_context(self._open(loc, writable=True, settings=cfg)),
                              target_tag(loc, ident)) for loc, cfg in zip(dst_locs, settings, strict=True)]
            await copy_to_many(source, targets, ident, policy=_policy(referrers), ledger=self.ledger,
                               platforms=[_platform(p) for p in platforms], blob_jobs=jobs,
                               reporter=reporter or null_reporter, force=force,
                               limits=Limits(bandwidth=self.bandwidth))
        hosts = self.host_report(before)
        out: list[CopyResult | RegcopyError] = []
        for target in targets:
            if target.error is not None:
                error = target.error
                out.append(error if isinstance(error, RegcopyError) else RegcopyError(str(error)))
            else:
                assert target.result is not None
                target.result.new_digest = target.result.new_digest or source.synthesized
                target.result.hosts = hosts
                out.append(target.result)
        return out

    @asynccontextmanager
    async def _open(self, location: Reference | LocalLocation, *, writable: bool,
                    settings: RegistrySettings | None) -> AsyncIterator[LocalStore | RegistryStore]:
        if isinstance(location, LocalLocation):
            async with open_local(location, writable=writable) as store:
                yield store
        else:
            yield self.registry_store(location, writable=writable, settings=settings)

    async def referrers(self, ref: str | Reference | LocalLocation, *, artifact_types: Sequence[str] = (),
                        platforms: Sequence[PlatformSpec] = ()) -> ReferrerTree:
        """What refers to an image and to each of its children (signatures, SBOMs, attestations), through
        the referrers API, the fallback tag or cosign's tags; recursively."""
        location = _location(ref)
        async with self._open(location, writable=False, settings=None) as source:
            ident = await _identifier(location, source)
            return await referrer_tree(source, ident, ReferrerPolicy(artifact_types=tuple(artifact_types)),
                                       platforms=[_platform(p) for p in platforms])

    async def copy_all_tags(self, src: str | Repository, dst: str | Repository, *, jobs: int = 6, images: int = 4,
                            reporter: Reporter | None = None, **kwargs: Any) -> list[CopyResult]:
        """Copy every tag of a repository, ``images`` at a time (crane ``copy --all-tags``).

        :raises CopyFailed: some tags failed (the others were copied)
        """
        src_repo, dst_repo = _repository(src), _repository(dst)
        before = self.host_report()
        results: list[CopyResult] = []
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(max(1, images))

        async def one(tag: str) -> None:
            async with limiter:
                try:
                    results.append(await self.copy(src_repo.with_tag(tag), dst_repo.with_tag(tag), jobs=jobs,
                                                   reporter=reporter, source_tags=tags, **kwargs))
                except RegcopyError as exc:
                    errors.append(exc)

        with self._pool.watching(reporter):
            # The listing uses the copy's own settings of each side, as every image copy of it does.
            source = self.transport(src_repo.registry, scheme=src_repo.scheme, settings=kwargs.get("src_settings"))
            tags = await tags_list(source, src_repo.path)
            await self._note_if_new(dst_repo, kwargs.get("dst_settings"))
            async with anyio.create_task_group() as tg:
                for tag in tags:
                    tg.start_soon(one, tag)
        hosts = self.host_report(before)
        for r in results:
            r.hosts = hosts
        results.sort(key=lambda r: r.tag or "")
        if errors:
            raise CopyFailed(f"{len(errors)} of {len(tags)} tags failed", errors)
        return results

    async def _note_if_new(self, repo: Repository, settings: RegistrySettings | None = None) -> None:
        """Tell the ledger whether ``repo`` exists: a new repository holds only what a copy puts there,
        so its blob HEADs are certain 404s."""
        target = self.registry_store(repo, writable=True, settings=settings)
        try:
            await tags_list(target.transport, repo.path)
            self.ledger.set_empty(target.storage_id, repo.path, False)
        except NotFound:
            self.ledger.set_empty(target.storage_id, repo.path, True)

    async def tags(self, repo: str | Repository | LocalLocation) -> list[str]:
        """Every tag of a repository, sorted; of a local store (``oci:DIR``, an archive), every image
        ref, or with a ref (``oci:DIR:ns/app``) the tags of that repository; a ``dir:`` has none."""
        if isinstance(repo, LocalLocation) or (isinstance(repo, str) and is_local(repo)):
            location = repo if isinstance(repo, LocalLocation) else LocalLocation.parse(repo)
            async with open_local(LocalLocation(location.transport, location.path), writable=False) as store:
                return await (RepositoryView(store, location.ref) if location.ref else store).list_tags()
        r = _repository(repo)
        return await tags_list(self.transport(r.registry, scheme=r.scheme), r.path)

    @asynccontextmanager
    async def _reading(self, ref: str | Reference | LocalLocation) -> AsyncIterator[tuple[Source, str, str]]:
        """The store behind a registry reference or local location, the identifier to read, a display name."""
        location = ref if isinstance(ref, Reference | LocalLocation) else parse_location(ref, default_tag="latest")
        async with self._open(location, writable=False, settings=None) as store:
            yield store, await _identifier(location, store), str(location)

    async def digest(self, ref: str | Reference | LocalLocation) -> Digest:
        """The digest a reference or local location resolves to (HEAD; no pull is counted on Docker Hub)."""
        async with self._reading(ref) as (store, ident, name):
            digest = await store.head(ident)
        if digest is None:
            raise ManifestNotFound(f"{name} not found", registry=ref.registry if isinstance(ref, Reference) else None)
        return digest

    # ------------------------------------------------------------------ housekeeping
    async def catalog(self, registry: str) -> list[str]:
        """Every repository of a registry (``/v2/_catalog``), sorted.

        :raises Unsupported: the catalog is disabled or forbidden
        """
        return await catalog(self.transport(registry))

    async def manifest(self, ref: str | Reference | LocalLocation, *,
                       platform: PlatformSpec | None = None) -> Manifest:
        """The exact manifest bytes a reference points to; with ``platform``, the matching child of an index.

        :raises InvalidManifest: no child of the index matches ``platform``
        """
        async with self._reading(ref) as (store, ident, _):
            manifest = await store.resolve(ident)
            if platform is not None and manifest.is_index:
                manifest = await pick_platform(store, manifest, _platform(platform))
        return manifest

    async def config(self, ref: str | Reference | LocalLocation, *, platform: PlatformSpec | None = None) -> bytes:
        """The image config's exact bytes (verified); an index is resolved to ``platform``, by default
        this machine's, as skopeo does (crane ``config``, skopeo ``inspect --config --raw``)."""
        async with self._reading(ref) as (store, ident, _):
            manifest = await store.resolve(ident)
            if manifest.is_index:
                manifest = await pick_platform(store, manifest, _platform(platform or host_platform()))
            return await config_bytes(store, manifest)

    async def blob(self, ref: str | Reference, write: Callable[[bytes], object]) -> int:
        """Stream the blob ``REPOSITORY@DIGEST`` into ``write``, verified as it flows; returns its size."""
        r = _registry_ref(ref, default_tag=None)
        if r.digest is None:
            raise InvalidReference(str(ref), "a blob is named by its digest: REPOSITORY@sha256:...", part="digest")
        stream = VerifyingStream(blob_chunks(self.registry_store(r).transport, r.repository, r.digest, None), r.digest)
        async for chunk in stream:
            write(chunk)
        return stream.hasher.size

    async def inspect(self, ref: str | Reference | LocalLocation, *,
                      platform: PlatformSpec | None = None) -> ImageInfo:
        """Platform, creation time, labels, run settings and layers of an image (of one platform of an index).

        Without ``platform``, an index is resolved to this machine's platform, as skopeo does; the
        result's ``digest`` is the index's (skopeo's ``Digest``), ``manifest_digest`` the chosen image's.
        """
        async with self._reading(ref) as (store, ident, name):
            manifest = root = await store.resolve(ident)
            if manifest.is_index:
                manifest = await pick_platform(store, manifest, _platform(platform or host_platform()))
            return image_info(name, manifest, await config_bytes(store, manifest), digest=str(root.digest))

    async def tag(self, ref: str | Reference, new_tag: str) -> Digest:
        """Point ``new_tag`` (same repository) at what ``ref`` points to: one manifest PUT, no blob traffic."""
        r = _registry_ref(ref, default_tag="latest")
        target = r.with_tag(new_tag)  # validates the tag
        store = self.registry_store(r, writable=True)
        manifest = await store.resolve(r.identifier)
        await store.put_manifest(manifest, target.tag)
        return manifest.digest

    async def delete(self, ref: str | Reference, *, dry_run: bool = False) -> DeleteResult:
        """Delete a manifest by digest; a tag is resolved to its digest first.

        Every tag pointing at that digest goes with it (distribution deletes the manifest, not the tag):
        the result lists them so callers can tell the user. ``dry_run``: only find them, delete nothing.

        :raises Unsupported: deletes are disabled on the registry (405 UNSUPPORTED)
        :raises ManifestNotFound: no such tag or digest
        """
        r = _registry_ref(ref, default_tag="latest")
        store = self.registry_store(r, writable=True)
        digest = await store.head(r.identifier)
        if digest is None:
            raise ManifestNotFound(f"{r} not found", registry=r.registry)
        tags = await self._tags_pointing_at(store, digest)
        if not dry_run:
            await store.delete_manifest(digest)
        return DeleteResult(f"{r.registry}/{r.repository}", str(digest), tags)

    async def _tags_pointing_at(self, store: RegistryStore, digest: Digest) -> list[str]:
        found: list[str] = []
        limiter = anyio.CapacityLimiter(16)

        async def check(tag: str) -> None:
            async with limiter:
                if await store.head(tag) == digest:
                    found.append(tag)

        async with anyio.create_task_group() as tg:
            for tag in await store.list_tags():
                tg.start_soon(check, tag)
        return sorted(found)

    # ------------------------------------------------------------------ sync
    async def sync(self, plan: SyncPlan | str | Path, *, options: SyncOptions | None = None,
                   reporter: Reporter | None = None, report: SyncReport | None = None,
                   journal: SyncJournal | None = None, select: Callable[[str], bool] | None = None) -> SyncReport:
        """Mirror everything a plan names (see :mod:`regcopy.sync.scheduler`).

        The run's settings are the client's with the plan's ``registries:`` layered between its
        defaults and its overrides (:meth:`context`); the client's own settings stay as they are.

        :param plan: a :class:`SyncPlan` or the path of a plan file
        :param report: a report to fill as the run goes (kept by the caller if the run is cancelled)
        :param journal: a run journal (:class:`~regcopy.sync.SyncJournal`): a re-run after a crash
            skips what the journal says is finished and resumes open uploads where the registry allows
        :param select: only the source repositories (``host/path``) it accepts (a static shard)
        :returns: the report; failures are in it, not raised
        :raises ConfigError: the plan is invalid
        """
        if not isinstance(plan, SyncPlan):
            plan = load_plan(plan)
        options = options or SyncOptions()
        context = self.context(plan.registries, journal=journal)
        report = report if report is not None else SyncReport()
        before = self.host_report()
        try:
            with self._pool.watching(reporter):
                async with open_plan_stores(plan) as local:
                    await run_sync(SyncStores(context, local), plan, options=options,
                                   reporter=reporter or null_reporter, ledger=self.ledger, report=report,
                                   journal=journal, select=select, bandwidth=self.bandwidth)
                    if not options.dry_run:
                        # One commit per local target, after every image: an archive is written in one
                        # pass, a layout's index.json replaced once (docs/architecture.md, "Bulk sync").
                        for store in local.targets():
                            await store.commit()
        finally:
            report.hosts = self.host_report(before)
            if reporter is not None:
                reporter(RunSummary(report.counts(), report.totals().get("bytes_uploaded", 0),
                                    round(report.seconds, 3), report.hosts))
        return report

    async def plan_sync(self, plan: SyncPlan, *, options: SyncOptions, report: SyncReport) -> list[PlannedImage]:
        """Discover, check and plan ``plan`` without copying (a distributed run's submitter): the
        images still to copy, with their manifests; up-to-date images and failures in ``report``."""
        context = self.context(plan.registries)
        async with open_plan_stores(plan) as local:
            return await plan_images(SyncStores(context, local), plan, options=options, report=report,
                                     ledger=self.ledger)

    async def prune(self, plan: PrunePlan | str | Path, *, dry_run: bool = True, cap: int | None = None,
                    now: datetime | None = None, report: PruneReport | None = None) -> PruneReport:
        """Apply a retention plan (:mod:`regcopy.retention`); a dry run unless ``dry_run=False``.

        :param plan: a :class:`~regcopy.retention.PrunePlan` or the path of a plan file (a prune plan,
            or a sync plan with a ``prune:`` section); its ``registries:`` are layered as :meth:`sync` does
        :param cap: at most this many manifest deletions over the run
        :param now: the reference time for ``older_than`` (default: now)
        :param report: a report to fill as the run goes (kept by the caller if the run is cancelled)
        :raises ConfigError: the plan is invalid; other failures are in the report, not raised
        """
        if not isinstance(plan, PrunePlan):
            plan = load_prune(plan)
        return await run_prune(self.context(plan.registries), plan, dry_run=dry_run, cap=cap, now=now,
                               report=report)


def _repository(value: str | Repository) -> Repository:
    return value if isinstance(value, Repository) else Repository.parse(value.removeprefix("docker://"))


def _location(value: str | Reference | LocalLocation) -> Reference | LocalLocation:
    if isinstance(value, Reference | LocalLocation):
        return value
    return parse_location(value, default_tag=None)


async def _identifier(location: Reference | LocalLocation, store: LocalStore | RegistryStore) -> str:
    if not isinstance(location, LocalLocation):
        return location.identifier if location.tag or location.digest else "latest"
    assert isinstance(store, LocalStore), "a local location opens a local store"
    return await local_identifier(location, store)


def _registry_ref(value: str | Reference, *, default_tag: str | None) -> Reference:
    if isinstance(value, Reference):
        return value
    location = parse_location(value, default_tag=default_tag)
    if isinstance(location, LocalLocation):
        raise InvalidReference(value, f"{location.transport}: locations are not supported yet", part="transport")
    return location


def _platform(value: PlatformSpec) -> Platform:
    return value if isinstance(value, Platform) else Platform.parse(value)


def _policy(value: bool | ReferrerPolicy) -> ReferrerPolicy:
    return value if isinstance(value, ReferrerPolicy) else ReferrerPolicy(enabled=value)


def host_platform() -> Platform:
    """This machine's platform (``linux/amd64`` on x86_64), the default pick from an index.

    The same mapping as skopeo sync without ``--all`` (:func:`regcopy.sync.skopeo.host_platform`).
    """
    return Platform.parse(skopeo_host_platform())


async def copy(src: str | Reference, dst: str | Reference, **kwargs: Any) -> CopyResult:
    """One-shot copy with a temporary :class:`Client` (like ``httpx.get`` or ``crane.Copy``)."""
    names = ("session", "credentials", "authfile", "settings", "default_settings", "upload", "overrides", "limit_rate")
    client_kwargs = {k: kwargs.pop(k) for k in names if k in kwargs}
    async with Client(**client_kwargs) as client:
        return await client.copy(src, dst, **kwargs)
