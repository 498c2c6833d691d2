"""One :class:`Transport` per registry host: where requests go, time bounds, retries, error mapping.

This module is where aiohttp meets regcopy's requests. It owns:

* sending a request (:meth:`Transport.request`, :meth:`Transport.stream`) after the host's probe
  (:mod:`regcopy.registry.probe`) with the auth its challenge asks for
  (:mod:`regcopy.registry.auth`), and one re-authentication on a 401 with grown scopes;
* where each request goes (:meth:`Transport.target`, the one place applying the credential rule of
  :mod:`regcopy.registry._origin`: credentials only to the registry's own origin, redirects and
  upload Locations elsewhere without them, foreign pagination Links and https → http refused);
* time bounds: a total ``request_timeout`` per exchange without blob bytes, the minimum-progress rule
  for blob bodies (:mod:`regcopy.registry._pacing`), the host's own connect and read timeouts;
* bounded retries with exponential backoff and jitter for idempotent requests, honouring
  Retry-After, with backoff state shared by every request to the host
  (:class:`~regcopy.registry.exchange.HostState`);
* mapping every aiohttp / OSError / SSL exception into :mod:`regcopy.errors`
  (:func:`~regcopy.registry.exchange.map_errors`, one place, ``from exc``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import anyio
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from regcopy.credstore import CredentialStore
from regcopy.errors import (
    AuthenticationError,
    PermissionDenied,
    ProtocolViolation,
    RegcopyError,
    RegistryError,
    RegistryTimeout,
    TransportError,
)
from regcopy.reference import api_host
from regcopy.registry._challenge import Challenge, Scope
from regcopy.registry._errors import error_from_response, redact_url
from regcopy.registry._origin import Foreign, Origin, Target, classify, origin_of, show
from regcopy.registry._pacing import BodyPacer, Progress, paced_chunks, slices
from regcopy.registry._tokens import TokenCache
from regcopy.registry.auth import Authenticator, read_challenge
from regcopy.registry.exchange import (
    USER_AGENT,
    HostState,
    Reply,
    client_timeouts,
    describe,
    map_errors,
    read_body,
    read_capped,
    ssl_for,
)
from regcopy.registry.limits import HostLimits
from regcopy.registry.probe import NoEndpoint, PingResult, Probe, ProbeOutcome
from regcopy.settings import RegistrySettings

__all__ = ("PingResult", "ProbeOutcome", "Reply", "Target", "Transport")

log = logging.getLogger(__name__)

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 5


class Transport:
    """Speaks HTTP to one registry host for one client.

    :param session: the client's aiohttp session (never closed here)
    :param registry: normalised ``host[:port]`` (``docker.io`` for Docker Hub)
    :param settings: the host's policy
    :param credentials: where this host's credentials come from
    :param tokens: the client's token cache
    :param forced_scheme: ``http``/``https`` when a reference carried an explicit prefix
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: str,
        settings: RegistrySettings,
        credentials: CredentialStore,
        tokens: TokenCache,
        *,
        forced_scheme: str | None = None,
        limits: HostLimits | None = None,
    ) -> None:
        self.session = session
        self.registry = registry
        self.host = api_host(registry)
        self.settings = settings
        self.limits = limits or HostLimits(registry, settings)
        """What every transport of the client to this host shares (concurrency, quotas, pauses, pulls)."""
        self._state = HostState(settings, self.limits)
        self._probe = Probe(session, registry, settings, forced_scheme)
        self._auth = Authenticator(session, registry, settings, credentials, tokens, self._state, forced_scheme)
        self._ping: PingResult | None = None
        self._ping_lock = anyio.Lock()
        self._ping_generation = 0
        self._ping_failure: TransportError | None = None
        self._home: tuple[PingResult, str, Origin] | None = None  # the probe's base URL and origin, parsed once

    # ------------------------------------------------------------------ probe
    @property
    def stats(self) -> Mapping[str, int]:
        """Request and retry counters for reports."""
        return self._state.stats

    async def ping(self) -> PingResult:
        """Probe ``/v2/`` and pick the scheme (cached; concurrent callers share one probe).

        :raises RegistryError: no candidate scheme answered 200 or 401
        """
        if self._ping is not None:
            return self._ping
        generation = self._ping_generation
        async with self._ping_lock:
            if self._ping is None and self._ping_generation != generation and self._ping_failure is not None:
                # The probe this caller waited for failed after its own retries: share that outcome
                # (concurrent requests must not each probe a dead registry retries+1 times again).
                raise self._ping_failure
            attempt = 0
            while self._ping is None:
                try:
                    await self._probe_quota()
                    self._ping = await self._probe.run()
                except NoEndpoint as exc:
                    # A reset, 5xx, 429 or stall on /v2/ is as transient as on any other request;
                    # only definite answers (404, 400 from http on a TLS port, ...) end it at once.
                    # A probe that timed out is tried once more, not ``retries`` times: each costs a
                    # whole probe_timeout, and a black-holed host is the hang the race exists to avoid.
                    limit = min(1, self.settings.retries) if exc.timed_out else self.settings.retries
                    if not exc.transient or attempt >= limit:
                        self._ping_generation += 1
                        self._ping_failure = exc
                        raise
                    self._state.note_failure(exc)
                    attempt += 1
                    await self._state.retry("GET", "/v2/", exc, attempt, self.settings.retries + 1)
                    continue
                log.info("%s: using %s (%s)", self.registry, self._ping.scheme, self._ping.reason)
        return self._ping

    async def _probe_quota(self) -> None:
        """The host's request quotas count each probe of the race (a probe is a request too)."""
        if self.limits.quota is not None:
            for _ in self.settings.candidates(self.host):
                await self.limits.quota.acquire()

    # ------------------------------------------------------------------ where requests go
    def url(self, path: str) -> str:
        """An absolute URL for ``path`` on this registry (after the probe)."""
        assert self._ping is not None, "ping() first"
        return self._ping.base_url + path

    def target(self, location: str, *, base: str | None = None, foreign: Foreign = "anonymous",
               what: str = "request") -> Target:
        """Where ``location`` goes and whether it may carry this registry's credentials: the one place
        that decides (docs/security.md). Every request, redirect hop, upload ``Location`` and
        pagination ``Link`` is classified here against the origin the probe chose: that origin gets
        credentials, another origin none (or a refusal with ``foreign="refuse"``), https → http is
        always refused.

        :param location: a path (``/v2/...``) or a URL, relative to ``base`` (default: the registry)
        :raises ProtocolViolation: malformed, a downgrade, or a refused origin (both origins named)
        """
        base_url, home = self._base()
        if base is None and location.startswith("/"):
            location, base = base_url + location, base_url
        try:
            return classify(home, location, base or base_url, foreign=foreign, what=what)
        except ProtocolViolation as exc:
            raise ProtocolViolation(exc.message, registry=self.registry, url=redact_url(base or "")) from exc

    def home(self) -> Origin:
        """The registry's origin (scheme, host, port), once probed."""
        return self._base()[1]

    def _base(self) -> tuple[str, Origin]:
        """The probe's base URL and its origin, parsed once per probe result (every request asks)."""
        ping = self._ping
        assert ping is not None, "ping() first"
        if self._home is None or self._home[0] is not ping:
            base_url = ping.base_url
            self._home = (ping, base_url, origin_of(base_url))
        return self._home[1], self._home[2]

    # ------------------------------------------------------------------ requests
    async def request(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[Scope] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | AsyncIterable[bytes] | None = None,
        ok: Sequence[int] = (200,),
        what: str | None = None,
        max_body: int = 8 * 1024 * 1024,
        retry: bool | None = None,
        follow_redirects: bool = False,
        blob: bool = False,
    ) -> Reply:
        """Send a request and read the whole answer (a streamed body is never replayed).

        :param target: a path (``/v2/...``) or an absolute URL the registry handed out (an upload
            Location): classified by :meth:`target`
        :param ok: statuses that count as success; anything else raises
        :param what: ``"manifest"`` / ``"blob"`` for precise NotFound errors
        :param retry: override the idempotency rule (default: retry idempotent methods only)
        :param follow_redirects: follow redirects (without credentials on another origin)
        :param blob: ``data`` is blob bytes: the minimum-progress rule applies to it instead of the
            total ``request_timeout`` (which then bounds the wait for the answer)
        :raises RegistryError: mapped from the status, OCI codes or the connection failure
        """
        # The body is read here, inside the retry loop: a body cut short (reset, early close, stall)
        # is a failed attempt like any other, never a short answer (StreamReader.read(n) returns
        # what has arrived so far, not n bytes). ``stream`` does one attempt per call for this.
        may_retry = (method in _IDEMPOTENT if retry is None else retry) and not isinstance(data, AsyncIterable)
        attempts = self.settings.retries + 1 if may_retry else 1
        attempt = 0
        while True:
            reading = False
            try:
                async with self.stream(method, target, scopes=scopes, headers=headers, data=data, ok=ok,
                                       what=what, retry=False, follow_redirects=follow_redirects,
                                       blob=blob) as resp:
                    reading = True
                    with map_errors(self.registry, method, str(resp.url)):
                        body = await read_body(resp, max_body, registry=self.registry, method=method)
                    return Reply(resp.status, resp.headers, body, str(resp.url))
            except RegistryError as err:
                attempt += 1
                if reading:
                    self._state.note_failure(err)  # ``stream`` noted the failures it saw itself
                # A failed probe has had its own retries (ping): retrying it here would square them.
                if not (err.retryable and attempt < attempts) or isinstance(err, NoEndpoint):
                    raise
                await self._state.retry(method, target, err, attempt, attempts)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        target: str,
        *,
        scopes: Sequence[Scope] = (),
        headers: Mapping[str, str] | None = None,
        data: bytes | AsyncIterable[bytes] | None = None,
        ok: Sequence[int] = (200,),
        what: str | None = None,
        retry: bool | None = None,
        follow_redirects: bool = False,
        blob: bool = False,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield the open response (body unread) once its status is acceptable.

        Retries (idempotent methods, replayable bodies) happen before anything is yielded. Redirects
        are followed by hand when asked, each hop classified by :meth:`target` (no credentials on
        another origin, spec@main §API; S3 rejects a second auth mechanism anyway). Until the
        response is yielded the exchange is bounded by ``request_timeout``; after it, by the same
        deadline unless ``blob`` (a download): the caller then reads with :meth:`blob_body`.

        :param blob: ``data`` is blob bytes (paced, see :meth:`request`), or, without ``data``, the
            answer's body is (read by the caller under the minimum-progress rule)
        """
        ping = await self.ping()
        first = self.target(target)
        replayable = not isinstance(data, AsyncIterable)
        may_retry = (method in _IDEMPOTENT if retry is None else retry) and replayable
        attempts = self.settings.retries + 1 if may_retry else 1
        auth_state = _AuthState(ping.challenge, scopes)
        attempt = 0
        yielded = False
        # A blob body goes through _capped (the quota before its first chunk); its answer's latency is
        # the upload's, not the registry's load.
        pull, streamed = method == "GET" and what == "manifest", blob and bool(data)
        while True:
            await self._state.respect_pause()
            auth = None
            if first.credentials:
                auth = await self._auth.authorization(auth_state.challenge, auth_state.scopes)
            try:
                async with self.limits.slot(pull=pull, timed=not streamed, quota=not streamed) as slot:
                    with self._bounded(method, first) as scope:
                        async with self._send(method, first, headers, data, auth, follow_redirects, scope,
                                              blob) as (resp, final):
                            slot.answered(resp.status, resp.headers, manifest=what == "manifest")
                            if resp.status in ok:
                                self._state.consecutive_failures = 0
                                yielded = True
                                if blob and data is None:
                                    scope.deadline = math.inf  # the download's body is paced by its reader
                                yield resp
                                return
                            refusal = _Refusal(resp.status, resp.headers, await read_capped(resp, scope), final)
                err = self._refused(method, refusal, auth, auth_state, replayable, what)
                if err is None:
                    continue  # grown auth: send again
                if pull and refusal.status == 429 and self.limits.pulls.stopped:
                    err = self.limits.pulls.error()  # the quota is spent: no retry will help in this run
            except (TransportError, RegistryTimeout) as exc:
                if yielded:
                    raise  # the caller was reading the body: no replay here (resume is the caller's job)
                err = exc
            attempt += 1
            self._state.note_failure(err)
            if not (err.retryable and attempt < attempts):
                raise err
            await self._state.retry(method, first.url, err, attempt, attempts)

    async def blob_body(self, resp: aiohttp.ClientResponse, read_size: int) -> AsyncIterator[bytes]:
        """A blob download's body from :meth:`stream` (``blob=True``), under the minimum-progress rule.

        :raises RegistryTimeout: fewer than ``progress_bytes`` in ``progress_window`` seconds of waiting
        """
        progress = Progress(self.settings.progress_bytes, self.settings.progress_window)

        def stalled() -> RegistryTimeout:
            return RegistryTimeout(f"blob body stalled: {progress.describe()}", registry=self.registry,
                                   method=resp.method, url=redact_url(str(resp.url)), status=resp.status)

        bandwidth = self.limits.bandwidth
        async for chunk in paced_chunks(resp, progress, read_size, stalled):
            if bandwidth is not None:
                await bandwidth.take(len(chunk))  # between reads: not the registry's time (paced_chunks)
            yield chunk

    @contextmanager
    def _bounded(self, method: str, target: Target) -> Iterator[anyio.CancelScope]:
        """A cancel scope bounding one exchange by ``request_timeout``; its expiry is a RegistryTimeout.

        The scope is handed to :meth:`_send` (an upload body's pacer moves its deadline) and, for a
        download, lifted when the response is handed over.
        """
        limit = self.settings.request_timeout
        with anyio.CancelScope(deadline=anyio.current_time() + limit) as scope:
            yield scope
        if scope.cancelled_caught:
            raise RegistryTimeout(f"no complete answer in time (request_timeout {limit:g} s, or a stalled "
                                  "upload body)", registry=self.registry, method=method,
                                  url=redact_url(target.url))

    def _refused(self, method: str, r: _Refusal, auth: str | None, state: _AuthState, replayable: bool,
                 what: str | None) -> RegistryError | None:
        """The error for a refused request; None when it is to be sent again with grown auth."""
        if r.status == 401 and not r.target.credentials:
            # Another origin wants credentials: never the registry's (nor a token from a realm it names).
            return AuthenticationError(
                f"{show(r.target.origin)} answered 401 to a request without credentials; the credentials of "
                f"{self.registry} are sent only to its own origin {show(self.home())}",
                registry=self.registry, method=method, url=redact_url(r.target.url), status=401)
        new = None
        if r.status == 401:
            new = read_challenge(r.headers.getall("WWW-Authenticate", []), registry=self.registry, url=r.target.url)
        sent_basic = auth is not None and auth.startswith("Basic ")
        if r.status == 401 and replayable and state.reauth < 2:
            state.challenge, state.scopes = self._auth.grow(state.challenge, new, state.scopes, state.reauth,
                                                            sent_basic)
            state.reauth += 1
            if state.challenge is not None:
                return None
        elif r.status == 401 and not replayable:
            # The streamed body is spent, so this request cannot be retried here; still drop the refused
            # token (and a rejected credential) so that the caller's restart of the operation starts
            # with fresh ones instead of meeting the same 401.
            self._auth.grow(state.challenge, new, state.scopes, state.reauth, sent_basic)
        err = error_from_response(r.status, r.headers, r.body, registry=self.registry, method=method,
                                  url=r.target.url, what=what)
        if new is not None and new.error == "insufficient_scope":
            # Authenticated, but the token server granted less than asked: a permission problem, not
            # bad credentials (token.md: grant the intersection).
            err = PermissionDenied(f"insufficient scope: {err.message}", registry=self.registry, method=method,
                                   url=redact_url(r.target.url), status=401, codes=err.codes)
        return err

    @asynccontextmanager
    async def _send(
        self,
        method: str,
        target: Target,
        headers: Mapping[str, str] | None,
        data: bytes | AsyncIterable[bytes] | None,
        auth: str | None,
        follow_redirects: bool,
        scope: anyio.CancelScope,
        blob: bool,
    ) -> AsyncIterator[tuple[aiohttp.ClientResponse, Target]]:
        """One request, following redirects by hand when asked; yields the answer and where it came from.

        Credentials go with a hop only when :meth:`target` says so, for each hop afresh.
        """
        hdrs: CIMultiDict[str] = CIMultiDict(headers or {})
        hdrs.setdefault("User-Agent", USER_AGENT)
        if isinstance(data, bytes) and blob:
            hdrs.setdefault("Content-Length", str(len(data)))  # sent as slices, still not chunked
        for _ in range(_MAX_REDIRECTS + 1):
            send_headers = CIMultiDict(hdrs)
            if auth and target.credentials:
                send_headers["Authorization"] = auth
            resp = await self._request(method, target.url, send_headers, data, scope, blob)
            try:
                location = resp.headers.get("Location")
                if follow_redirects and resp.status in _REDIRECTS and location:
                    target = self.target(location, base=target.url, what="redirect")
                    continue
                with map_errors(self.registry, method, target.url):
                    yield resp, target
                return
            finally:
                resp.release()
        raise ProtocolViolation("too many redirects", registry=self.registry, method=method,
                                url=redact_url(target.url))

    async def _request(self, method: str, url: str, headers: CIMultiDict[str],
                       data: bytes | AsyncIterable[bytes] | None, scope: anyio.CancelScope,
                       blob: bool) -> aiohttp.ClientResponse:
        pacer = None
        body = data
        if blob and data:
            progress = Progress(self.settings.progress_bytes, self.settings.progress_window)
            pacer = BodyPacer(scope, progress, self.settings.request_timeout)
            body = pacer.wrap(self._capped(slices(data) if isinstance(data, bytes) else data))
        self._state.stats["requests"] += 1
        if log.isEnabledFor(logging.DEBUG):  # redacting is a URL parse: only for a log that is written
            log.debug("%s %s", method, redact_url(url))
        try:
            with map_errors(self.registry, method, url):
                return await self.session.request(
                    method, URL(url, encoded=True), headers=headers, data=body,
                    ssl=ssl_for(self.settings, urlsplit(url).scheme), allow_redirects=False,
                    timeout=client_timeouts(self.settings),
                )
        except ValueError as exc:
            if isinstance(exc, RegcopyError):
                raise
            # yarl or aiohttp refusing a URL or header built from an answer (a Location, a Link).
            raise ProtocolViolation(f"unusable request: {describe(exc)}", registry=self.registry, method=method,
                                    url=redact_url(url)) from exc
        finally:
            if pacer is not None:
                # The answer came (maybe before the body was all sent): reading it is bounded like any answer.
                pacer.detach()
                scope.deadline = min(scope.deadline, anyio.current_time() + self.settings.request_timeout)


    async def _capped(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """An upload body under the host's request quotas and ``limit_rate``: the quota is taken before
        the first chunk (aiohttp sends the headers with it, ``HostLimits.slot``). Waiting here is waiting
        on the source, which the minimum-progress rule does not count (``BodyPacer``)."""
        bandwidth = self.limits.bandwidth
        counted = False
        async for chunk in chunks:
            if not counted:
                await self.limits.quota_start()
                counted = True
            if bandwidth is not None:
                await bandwidth.take(len(chunk))
            yield chunk
        if not counted:
            await self.limits.quota_start()


@dataclass(slots=True)
class _AuthState:
    """The auth of one request across its 401 round trips: the challenge, scopes and re-authentications."""

    challenge: Challenge | None
    scopes: Sequence[Scope]
    reauth: int = 0


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A non-success answer, read: status, headers, (capped) body and where it came from."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    target: Target
