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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio

from regcopy.artifacts import ReferrerPolicy, ReferrerTree, copy_to_many, copy_with_referrers, referrer_tree
from regcopy.context import Pool, RunContext, SyncStores, open_plan_stores
from regcopy.convert import Format
from regcopy.credentials import CredentialStore, default_credentials
from regcopy.digest import Digest
from regcopy.engine import CopyResult
from regcopy.errors import (
    CopyFailed,
    InvalidReference,
    ManifestNotFound,
    NotFound,
    RegcopyError,
)
from regcopy.fanout import Target
from regcopy.inspect import ImageInfo, image_info
from regcopy.ledger import BlobLedger
from regcopy.locations import is_local
from regcopy.lookup import config_bytes, pick_platform
from regcopy.manifest import Manifest, Platform
from regcopy.progress import Reporter, null_reporter
from regcopy.reference import LocalLocation, Reference, Repository, parse_location
from regcopy.registry import TokenCache
from regcopy.registry.manifests import catalog, tags_list
from regcopy.registry.transport import PingResult, Transport
from regcopy.settings import Layer, Overrides, RegistrySettings, Settings, resolve
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

if TYPE_CHECKING:  # retention is imported by prune() itself: a copy or sync never loads it
    from regcopy.retention import PrunePlan, PruneReport

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
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._defaults = Settings(default_settings or RegistrySettings(), MappingProxyType(dict(settings or {})))
        self._overrides: Layer = MappingProxyType(dict(overrides or {}))
        self.settings = resolve(self._defaults, self._overrides)
        """Every host's settings outside a plan's run (defaults, then the overrides)."""
        self.tokens = TokenCache()
        self.ledger = BlobLedger()
        self._pool = Pool(self._new_transport, credentials or default_credentials(authfile), upload or UploadPolicy())
        self._context = RunContext(self._pool, self.settings)

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
                       credentials: CredentialStore) -> Transport:
        return Transport(self.session, registry, settings, credentials, self.tokens, forced_scheme=scheme)

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
                   format: Format | None = None, preserve_digests: bool = False) -> CopyResult:
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
        :raises RegcopyError: the copy failed; nothing incomplete is tagged
        """
        src_loc, dst_loc = _location(src), _location(dst)
        retries_before = self.retries()
        async with self._open(src_loc, writable=False, settings=src_settings) as source, \
                self._open(dst_loc, writable=True, settings=dst_settings) as destination:
            ident = await _identifier(src_loc, source)
            target_tag = _target_tag(dst_loc, ident)
            result = await copy_with_referrers(
                source, destination, ident, target_tag=target_tag, platforms=[_platform(p) for p in platforms],
                blob_jobs=jobs, reporter=reporter or null_reporter, ledger=self.ledger, force=force,
                policy=_policy(referrers if format is None else False), format=format,
                preserve_digests=preserve_digests)
        if isinstance(dst_loc, Reference) and dst_loc.digest and str(dst_loc.digest) != result.digest:
            raise RegcopyError(f"destination digest {dst_loc.digest} differs from the copied {result.digest}")
        result.new_digest = result.new_digest or source.synthesized  # a classic docker-archive's was built
        result.retries = self.retries() - retries_before
        return result

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
        async with AsyncExitStack() as stack:
            source = await stack.enter_async_context(self._open(src_loc, writable=False, settings=src_settings))
            ident = await _identifier(src_loc, source)
            targets = [Target(await stack.enter_async_context(self._open(loc, writable=True, settings=cfg)),
                              _target_tag(loc, ident)) for loc, cfg in zip(dst_locs, settings, strict=True)]
            await copy_to_many(source, targets, ident, policy=_policy(referrers), ledger=self.ledger,
                               platforms=[_platform(p) for p in platforms], blob_jobs=jobs,
                               reporter=reporter or null_reporter, force=force)
        out: list[CopyResult | RegcopyError] = []
        for target in targets:
            if target.error is not None:
                error = target.error
                out.append(error if isinstance(error, RegcopyError) else RegcopyError(str(error)))
            else:
                assert target.result is not None
                target.result.new_digest = target.result.new_digest or source.synthesized
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
        tags = await tags_list(self.transport(src_repo.registry, scheme=src_repo.scheme), src_repo.path)
        await self._note_if_new(dst_repo)
        results: list[CopyResult] = []
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(max(1, images))

        async def one(tag: str) -> None:
            async with limiter:
                try:
                    results.append(await self.copy(src_repo.with_tag(tag), dst_repo.with_tag(tag), jobs=jobs,
                                                   reporter=reporter, **kwargs))
                except RegcopyError as exc:
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for tag in tags:
                tg.start_soon(one, tag)
        results.sort(key=lambda r: r.tag or "")
        if errors:
            raise CopyFailed(f"{len(errors)} of {len(tags)} tags failed", errors)
        return results

    async def _note_if_new(self, repo: Repository) -> None:
        """Tell the ledger whether ``repo`` exists: a new repository holds only what a copy puts there,
        so its blob HEADs are certain 404s."""
        target = self.registry_store(repo, writable=True)
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

    async def inspect(self, ref: str | Reference | LocalLocation, *,
                      platform: PlatformSpec | None = None) -> ImageInfo:
        """Platform, creation time, labels and layers of an image (of one platform of an index).

        Without ``platform``, an index is resolved to this machine's platform, as skopeo does.
        """
        async with self._reading(ref) as (store, ident, name):
            manifest = await store.resolve(ident)
            if manifest.is_index:
                manifest = await pick_platform(store, manifest, _platform(platform or host_platform()))
            return image_info(name, manifest, await config_bytes(store, manifest))

    async def tag(self, ref: str | Reference, new_tag: str) -> Digest:
        """Point ``new_tag`` (same repository) at what ``ref`` points to: one manifest PUT, no blob traffic."""
        r = _registry_ref(ref, default_tag="latest")
        target = r.with_tag(new_tag)  # validates the tag
        store = self.registry_store(r, writable=True)
        manifest = await store.resolve(r.identifier)
        await store.put_manifest(manifest, target.tag)
        return manifest.digest

    async def delete(self, ref: str | Reference) -> DeleteResult:
        """Delete a manifest by digest; a tag is resolved to its digest first.

        Every tag pointing at that digest goes with it (distribution deletes the manifest, not the tag):
        the result lists them so callers can tell the user.

        :raises Unsupported: deletes are disabled on the registry (405 UNSUPPORTED)
        :raises ManifestNotFound: no such tag or digest
        """
        r = _registry_ref(ref, default_tag="latest")
        store = self.registry_store(r, writable=True)
        digest = await store.head(r.identifier)
        if digest is None:
            raise ManifestNotFound(f"{r} not found", registry=r.registry)
        tags = await self._tags_pointing_at(store, digest)
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
        async with open_plan_stores(plan) as local:
            result = await run_sync(SyncStores(context, local), plan, options=options,
                                    reporter=reporter or null_reporter, ledger=self.ledger, report=report,
                                    journal=journal, select=select)
            if not options.dry_run:
                # One commit per local target, after every image: an archive is written in one
                # pass, a layout's index.json replaced once (docs/architecture.md, "Bulk sync").
                for store in local.targets():
                    await store.commit()
        return result

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
        from regcopy.retention import PrunePlan, load_prune, run_prune

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


def _target_tag(location: Reference | LocalLocation, source_ident: str) -> str | None:
    """The destination tag: the location's own, else the source's tag (never a digest).

    A local source's ref may be ``repo:tag`` (an OCI ref name or a docker-archive RepoTag): its tag
    part is the source's tag.
    """
    source_tag: str | None = source_ident
    if source_ident.startswith(("@", "sha256:", "sha512:")):
        source_tag = None
    elif ":" in source_ident:
        source_tag = source_ident.rsplit(":", 1)[1]
    if isinstance(location, LocalLocation):
        if location.transport in ("docker-archive", "dir"):
            return location.ref  # a RepoTags entry ("repo:tag"), or none, as skopeo writes it; dir: has no tags
        return location.ref or source_tag
    if location.tag:
        return location.tag
    return None if location.digest else source_tag


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


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What ``delete`` removed: the manifest digest and every tag that pointed at it."""

    repository: str
    digest: str
    tags: list[str]


def host_platform() -> Platform:
    """This machine's platform (``linux/amd64`` on x86_64), the default pick from an index.

    The same mapping as skopeo sync without ``--all`` (:func:`regcopy.sync.skopeo.host_platform`).
    """
    return Platform.parse(skopeo_host_platform())


async def copy(src: str | Reference, dst: str | Reference, **kwargs: Any) -> CopyResult:
    """One-shot copy with a temporary :class:`Client` (like ``httpx.get`` or ``crane.Copy``)."""
    client_kwargs = {k: kwargs.pop(k) for k in ("session", "credentials", "authfile", "settings",
                                                 "default_settings", "upload", "overrides") if k in kwargs}
    async with Client(**client_kwargs) as client:
        return await client.copy(src, dst, **kwargs)
