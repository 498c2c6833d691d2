"""One :class:`Transport` per registry host: scheme probe race, auth handshake, retries, error mapping.

This module is where aiohttp meets regcopy. It owns:

* the ``GET /v2/`` probe and the https/http race (PROTOCOL §4; ggcr pingParallel, improved: both
  probes start at once and https keeps a short grace window, so a black-holed 443 never delays http);
* Basic and Bearer auth (PROTOCOL §3): token fetch by GET with Basic credentials, by OAuth2 POST
  with a refresh token, anonymous, or a registry token sent as is; scope growth on
  ``insufficient_scope``; one re-authentication on 401;
* where each request goes (:meth:`Transport.target`, the one place applying the credential rule of
  :mod:`regcopy.registry._origin`: credentials only to the registry's own origin, redirects and
  upload Locations elsewhere without them, foreign pagination Links and https → http refused);
* time bounds: a total ``request_timeout`` per exchange without blob bytes, the minimum-progress rule
  for blob bodies (:mod:`regcopy.registry._pacing`), the host's own connect and read timeouts;
* bounded retries with exponential backoff and jitter for idempotent requests, honouring
  Retry-After, with backoff state shared by every request to the host;
* mapping every aiohttp / OSError / SSL exception into :mod:`regcopy.errors` (one place, ``from exc``).
"""

from __future__ import annotations

import base64
import logging
import math
import random
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import anyio
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from regcopy.credentials import Credential, CredentialStore
from regcopy.errors import (
    AuthenticationError,
    PermissionDenied,
    ProtocolViolation,
    RateLimited,
    RegcopyError,
    RegistryError,
    RegistryTimeout,
    TransportError,
    redact,
)
from regcopy.reference import api_host
from regcopy.registry._challenge import Challenge, Scope, merge_scopes, parse_www_authenticate, pick_challenge
from regcopy.registry._errors import error_from_response, parse_retry_after, redact_url
from regcopy.registry._origin import Foreign, Origin, Target, classify, origin_of, show
from regcopy.registry._pacing import BodyPacer, Progress, paced_chunks, slices
from regcopy.registry._tokens import Token, TokenCache, parse_token_response, token_key
from regcopy.settings import RegistrySettings, is_local_host

__all__ = ("PingResult", "ProbeOutcome", "Reply", "Target", "Transport")

log = logging.getLogger(__name__)

IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 5
USER_AGENT: Final = "regcopy/0.1"


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """One ``/v2/`` probe: scheme, status (None on error), seconds, and the error text if it failed."""

    scheme: str
    status: int | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PingResult:
    """The outcome of the scheme probe for a host (cached for the client's life)."""

    registry: str
    scheme: str
    status: int
    reason: str
    probes: tuple[ProbeOutcome, ...]
    challenge: Challenge | None = None

    @property
    def base_url(self) -> str:
        """``scheme://api-host`` for building request URLs."""
        return f"{self.scheme}://{api_host(self.registry)}"


@dataclass(slots=True)
class Reply:
    """A fully read response: status, headers, body and the final URL."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str


@dataclass(slots=True)
class _HostState:
    pause_until: float = 0.0
    next_slot: float = 0.0  # the rate cap: the earliest start of the next request
    consecutive_failures: int = 0
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0})


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
    ) -> None:
        self.session = session
        self.registry = registry
        self.host = api_host(registry)
        self.settings = settings
        self._credentials = credentials
        self._tokens = tokens
        self._forced = forced_scheme
        self._ping: PingResult | None = None
        self._ping_lock = anyio.Lock()
        self._ping_generation = 0
        self._ping_failure: TransportError | None = None
        self._limiter = anyio.CapacityLimiter(settings.max_concurrency)
        self._state = _HostState()
        self._refresh_tokens: dict[str, str] = {}

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
                    self._ping = await self._race(self._schemes())
                except _NoEndpoint as exc:
                    # A reset, 5xx, 429 or stall on /v2/ is as transient as on any other request;
                    # only definite answers (404, 400 from http on a TLS port, ...) end it at once.
                    # A probe that timed out is tried once more, not ``retries`` times: each costs a
                    # whole probe_timeout, and a black-holed host is the hang the race exists to avoid.
                    limit = min(1, self.settings.retries) if exc.timed_out else self.settings.retries
                    if not exc.transient or attempt >= limit:
                        self._ping_generation += 1
                        self._ping_failure = exc
                        raise
                    self._note_failure(exc)
                    self._state.stats["retries"] += 1
                    log.info("%s: %s; probing again (%d/%d)", self.registry, exc, attempt + 1, self.settings.retries)
                    await self._sleep_backoff(attempt, exc.retry_after)
                    attempt += 1
                    continue
                log.info("%s: using %s (%s)", self.registry, self._ping.scheme, self._ping.reason)
        return self._ping

    def _schemes(self) -> tuple[str, ...]:
        if self._forced == "http":
            return ("http",)
        if self._forced == "https":
            return ("https",)
        return self.settings.candidates(self.registry)

    async def _probe(self, scheme: str) -> tuple[ProbeOutcome, CIMultiDictProxy[str] | None]:
        url = f"{scheme}://{self.host}/v2/"
        start = time.monotonic()
        try:
            with anyio.fail_after(self.settings.probe_timeout):
                async with self.session.get(
                    URL(url, encoded=True),
                    ssl=self._ssl(scheme),
                    allow_redirects=False,
                    headers={"User-Agent": USER_AGENT},
                    timeout=self._timeouts(),
                ) as resp:
                    await resp.content.read(4096)
                    outcome = ProbeOutcome(scheme, resp.status, time.monotonic() - start)
                    return outcome, resp.headers
        except TimeoutError:
            return ProbeOutcome(scheme, None, time.monotonic() - start, "timed out"), None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            # Definite, like a 404: no TLS there (an http port) or a certificate we refuse.
            return ProbeOutcome(scheme, None, time.monotonic() - start, f"TLS failure: {_describe(exc)}"), None
        except (aiohttp.ClientError, OSError) as exc:
            if _tls_failure(exc):  # an alert after the handshake (a refused client certificate) comes as OSError
                return ProbeOutcome(scheme, None, time.monotonic() - start, f"TLS failure: {_describe(exc)}"), None
            return ProbeOutcome(scheme, None, time.monotonic() - start, _describe(exc)), None

    async def _race(self, schemes: tuple[str, ...]) -> PingResult:
        """Run the probes concurrently; https wins if it answers within ``race_grace`` of http.

        Only 200 and 401 are answers (PROTOCOL §4.4: http to a TLS port is a 400, not a success).
        """
        send, receive = anyio.create_memory_object_stream[
            tuple[ProbeOutcome, CIMultiDictProxy[str] | None]
        ](len(schemes))
        outcomes: dict[str, ProbeOutcome] = {}
        good: dict[str, CIMultiDictProxy[str] | None] = {}
        headers_of: dict[str, CIMultiDictProxy[str]] = {}
        deadline = float("inf")
        async with anyio.create_task_group() as tg, receive:
            for scheme in schemes:
                tg.start_soon(self._probe_into, scheme, send.clone())
            send.close()
            while len(outcomes) < len(schemes):
                with anyio.move_on_after(max(0.0, deadline - time.monotonic())) as timer:
                    try:
                        outcome, headers = await receive.receive()
                    except anyio.EndOfStream:
                        break
                if timer.cancelled_caught:
                    break  # https used up its grace window: http wins
                outcomes[outcome.scheme] = outcome
                if headers is not None:
                    headers_of[outcome.scheme] = headers
                if outcome.status in (200, 401):
                    good[outcome.scheme] = headers
                    if outcome.scheme == "https":
                        break
                    deadline = time.monotonic() + self.settings.race_grace
            tg.cancel_scope.cancel()
        probes = tuple(outcomes.get(s) or ProbeOutcome(s, None, 0.0, "cancelled: lost the race") for s in schemes)
        for scheme in ("https", "http"):
            if scheme in good:
                return self._ping_result(scheme, probes, good[scheme])
        detail = "; ".join(f"{p.scheme}: {p.error or f'HTTP {p.status}'}" for p in probes)
        tried = [p for p in probes if "lost the race" not in (p.error or "")]
        transient = any((p.status is None and not (p.error or "").startswith("TLS failure"))
                        or p.status in _PROBE_TRANSIENT for p in tried)
        timed_out = all(p.error == "timed out" for p in tried if p.status is None) and any(
            p.status is None for p in tried) and not any(p.status in _PROBE_TRANSIENT for p in tried)
        retry_after = max((_retry_after(h) for h in headers_of.values()), default=0.0) or None
        raise _NoEndpoint(f"no usable /v2/ endpoint ({detail})", registry=self.registry, method="GET",
                          url=f"{schemes[0]}://{self.host}/v2/", transient=transient, retry_after=retry_after,
                          timed_out=timed_out)

    async def _probe_into(
        self, scheme: str, send: anyio.abc.ObjectSendStream[tuple[ProbeOutcome, CIMultiDictProxy[str] | None]]
    ) -> None:
        async with send:
            await send.send(await self._probe(scheme))

    def _ping_result(
        self, scheme: str, probes: tuple[ProbeOutcome, ...], headers: CIMultiDictProxy[str] | None
    ) -> PingResult:
        status = next(p.status for p in probes if p.scheme == scheme)
        assert status is not None
        if len(probes) == 1:
            why = "explicit http:// prefix" if self._forced else f"{self.settings.scheme} policy allows only {scheme}"
        elif scheme == "https":
            why = "https answered (preferred when both answer within the grace window)"
        else:
            other = next(p for p in probes if p.scheme == "https")
            why = f"https {other.error or f'answered HTTP {other.status}'}; http answered"
        challenge = None
        if status == 401 and headers is not None:
            challenge = self._parse_challenge(headers.getall("WWW-Authenticate", []), f"{scheme}://{self.host}/v2/")
        return PingResult(self.registry, scheme, status, why, probes, challenge)

    def _ssl(self, scheme: str) -> ssl.SSLContext | bool:
        if scheme != "https":
            return False
        return self.settings.ssl_context()

    def _parse_challenge(self, values: Sequence[str], url: str) -> Challenge | None:
        if not values:
            return None
        try:
            return pick_challenge(parse_www_authenticate(values))
        except ProtocolViolation as exc:
            raise ProtocolViolation(exc.message, registry=self.registry, method="GET", url=redact_url(url)) from exc

    # ------------------------------------------------------------------ auth
    async def _credential(self) -> Credential:
        return await self._credentials.get(self.registry)

    async def _authorization(self, challenge: Challenge | None, scopes: Sequence[Scope]) -> str | None:
        if challenge is None:
            return None
        cred = await self._credential()
        if challenge.scheme == "basic":
            if cred.username is None or cred.password is None:
                return None
            raw = f"{cred.username}:{cred.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if challenge.scheme == "bearer":
            if cred.registry_token:
                return f"Bearer {cred.registry_token}"
            try:
                token = await self._token(challenge, scopes, cred)
            except AuthenticationError as exc:
                fresh = await self._after_token_rejection(exc, challenge, cred)
                if fresh is None:
                    raise
                token = await self._token(challenge, scopes, fresh)
            return f"Bearer {token.value}"
        return None

    async def _after_token_rejection(
        self, exc: AuthenticationError, challenge: Challenge, cred: Credential
    ) -> Credential | None:
        """The token server refused ``cred`` (401/403): forget it, so a credential helper or provider whose
        secret went stale (rotated, expired ECR token) is asked again, and return the fresh credential to
        retry with once; None when there is nothing new to try (anonymous, or the same answer again).

        The registry's own 401 path (``_grow``) never sees a token-server refusal, so this is where a
        rejected credential is renewed under Bearer auth.
        """
        if exc.status not in (401, 403) or cred.anonymous:
            return None
        fresh = await self._credential()
        if fresh == cred:  # not already replaced by a concurrent request that saw the same refusal
            self._credentials.forget(self.registry)
            fresh = await self._credential()
        # A refresh token the server gave us (OAuth2) was part of what it refused: drop it too.
        dropped = self._refresh_tokens.pop(challenge.realm or "", None) is not None
        if fresh == cred and not dropped:
            return None
        log.info("%s: token server refused the credentials; retrying once with fresh ones", self.registry)
        return fresh

    async def _token(self, challenge: Challenge, scopes: Sequence[Scope], cred: Credential) -> Token:
        realm = challenge.realm
        if not realm:
            raise ProtocolViolation("Bearer challenge without realm", registry=self.registry)
        self._check_realm(realm, cred)
        service = challenge.service or ""
        merged = merge_scopes(scopes)
        key = token_key(self.registry, realm, service, merged)
        return await self._tokens.get(key, lambda: self._fetch_token(realm, service, merged, cred))

    def _check_realm(self, realm: str, cred: Credential) -> None:
        try:
            if not realm.isascii() or any(c <= " " or c == "\x7f" for c in realm):
                raise ProtocolViolation("not a printable ASCII URL")
            scheme = origin_of(realm)[0]
        except ProtocolViolation as exc:
            raise ProtocolViolation(f"token realm {realm[:100]!r} is not an absolute http(s) URL ({exc.message})",
                                    registry=self.registry) from exc
        parts = urlsplit(realm)
        # Credentials travel to the realm only as the token request, and never in clear text to a
        # remote realm: an http realm is accepted for local or explicitly insecure registries only.
        if scheme == "http" and not cred.anonymous:
            realm_host = parts.netloc
            if not (is_local_host(realm_host) or self.settings.scheme in ("http", "insecure", "https-insecure")
                    or self._forced == "http"):
                raise AuthenticationError(
                    f"refusing to send credentials to a plain-http token realm {redact_url(realm)}",
                    registry=self.registry,
                )

    async def _fetch_token(self, realm: str, service: str, scopes: Sequence[Scope], cred: Credential) -> Token:
        refresh = self._refresh_tokens.get(realm) or cred.identity_token
        if refresh:
            token = await self._oauth_token(realm, service, scopes, refresh)
            if token is not None:
                return token
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", str(s)) for s in scopes)
        headers = {"User-Agent": USER_AGENT}
        if cred.username and cred.password:
            params.append(("account", cred.username))
            raw = f"{cred.username}:{cred.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        url = realm + ("&" if "?" in realm else "?") + urlencode(params, quote_via=quote)
        reply = await self._token_request("GET", url, headers=headers)
        return self._token_from_reply(reply, realm)

    async def _oauth_token(self, realm: str, service: str, scopes: Sequence[Scope], refresh: str) -> Token | None:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "service": service,
            "client_id": "regcopy",
            "scope": " ".join(str(s) for s in scopes),
        }
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
        reply = await self._token_request("POST", realm, headers=headers, data=urlencode(form).encode(),
                                          accept=(200, 404, 405))
        if reply.status in (404, 405):
            return None  # no OAuth2 endpoint: fall back to GET (ggcr Refresh)
        return self._token_from_reply(reply, realm)

    async def _token_request(
        self, method: str, url: str, *, headers: Mapping[str, str], data: bytes | None = None,
        accept: tuple[int, ...] = (200,),
    ) -> Reply:
        realm_host = urlsplit(url).netloc
        # The token endpoint is its own host: TLS verification follows the registry's policy, and
        # the CA bundle configured for the registry is trusted for its realm too.
        ssl_ctx: ssl.SSLContext | bool = self.settings.ssl_context() if url.startswith("https:") else False
        for attempt in range(self.settings.retries + 1):
            try:
                # A token answer is small: the whole exchange gets request_timeout (a dripping body
                # would otherwise keep it alive read by read).
                with self._map_errors(method, url), anyio.fail_after(self.settings.request_timeout):
                    async with self.session.request(
                        method, URL(url, encoded=True), headers=headers, data=data, ssl=ssl_ctx,
                        allow_redirects=False, timeout=self._timeouts(),
                    ) as resp:
                        body = await read_body(resp, 1024 * 1024, registry=self.registry, method=method)
                        reply = Reply(resp.status, resp.headers, body, url)
            except (TransportError, RegistryTimeout) as exc:  # unreachable, or an answer cut short
                if attempt < self.settings.retries:
                    await self._sleep_backoff(attempt, None)
                    continue
                raise AuthenticationError(f"token endpoint {realm_host} unreachable or its answer cut short: {exc}",
                                          registry=self.registry) from exc
            if reply.status in accept:
                return reply
            err = error_from_response(reply.status, reply.headers, reply.body, registry=self.registry,
                                      method=method, url=url)
            if err.retryable and attempt < self.settings.retries:
                await self._sleep_backoff(attempt, getattr(err, "retry_after", None))
                continue
            if reply.status in (401, 403):
                raise AuthenticationError(f"token server {realm_host} rejected the credentials: {err.message}",
                                          registry=self.registry, method=method, url=redact_url(url),
                                          status=reply.status, codes=err.codes)
            raise AuthenticationError(f"token server {realm_host} failed: {err.message}", registry=self.registry,
                                      method=method, url=redact_url(url), status=reply.status)
        raise AssertionError("unreachable")

    def _token_from_reply(self, reply: Reply, realm: str) -> Token:
        try:
            # The cache's clock, not time.monotonic(): expires_at must be on the clock the cache compares
            # it with (they differ when a TokenCache is built with its own clock).
            token = parse_token_response(reply.body, now=self._tokens.clock(), wall_now=time.time())
        except ProtocolViolation as exc:
            raise ProtocolViolation(exc.message, registry=self.registry, method="GET", url=redact_url(realm)) from exc
        if token.refresh_token:
            self._refresh_tokens[realm] = token.refresh_token
        return token

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
        assert self._ping is not None, "ping() first"
        home = origin_of(self._ping.base_url)
        if base is None and location.startswith("/"):
            location, base = self._ping.base_url + location, self._ping.base_url
        try:
            return classify(home, location, base or self._ping.base_url, foreign=foreign, what=what)
        except ProtocolViolation as exc:
            raise ProtocolViolation(exc.message, registry=self.registry, url=redact_url(base or "")) from exc

    def home(self) -> Origin:
        """The registry's origin (scheme, host, port), once probed."""
        assert self._ping is not None, "ping() first"
        return origin_of(self._ping.base_url)

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
        may_retry = (method in IDEMPOTENT if retry is None else retry) and not isinstance(data, AsyncIterable)
        attempts = self.settings.retries + 1 if may_retry else 1
        attempt = 0
        while True:
            reading = False
            try:
                async with self.stream(method, target, scopes=scopes, headers=headers, data=data, ok=ok,
                                       what=what, retry=False, follow_redirects=follow_redirects,
                                       blob=blob) as resp:
                    reading = True
                    with self._map_errors(method, str(resp.url)):
                        body = await read_body(resp, max_body, registry=self.registry, method=method)
                    return Reply(resp.status, resp.headers, body, str(resp.url))
            except RegistryError as err:
                attempt += 1
                if reading:
                    self._note_failure(err)  # ``stream`` noted the failures it saw itself
                # A failed probe has had its own retries (ping): retrying it here would square them.
                if not (err.retryable and attempt < attempts) or isinstance(err, _NoEndpoint):
                    raise
                self._state.stats["retries"] += 1
                log.info("%s %s: %s; retry %d/%d", method, redact_url(target), err, attempt, attempts - 1)
                await self._sleep_backoff(attempt - 1, err.retry_after if isinstance(err, RateLimited) else None)

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
        may_retry = (method in IDEMPOTENT if retry is None else retry) and replayable
        attempts = self.settings.retries + 1 if may_retry else 1
        auth_state = _AuthState(ping.challenge, scopes)
        attempt = 0
        yielded = False
        while True:
            await self._respect_pause()
            auth = await self._authorization(auth_state.challenge, auth_state.scopes) if first.credentials else None
            try:
                async with self._limiter:
                    with self._bounded(method, first) as scope:
                        async with self._send(method, first, headers, data, auth, follow_redirects, scope,
                                              blob) as (resp, final):
                            if resp.status in ok:
                                self._state.consecutive_failures = 0
                                yielded = True
                                if blob and data is None:
                                    scope.deadline = math.inf  # the download's body is paced by its reader
                                yield resp
                                return
                            refusal = _Refusal(resp.status, resp.headers, await _read_capped(resp, scope), final)
                err = self._refused(method, refusal, auth, auth_state, replayable, what)
                if err is None:
                    continue  # grown auth: send again
            except (TransportError, RegistryTimeout) as exc:
                if yielded:
                    raise  # the caller was reading the body: no replay here (resume is the caller's job)
                err = exc
            attempt += 1
            self._note_failure(err)
            if not (err.retryable and attempt < attempts):
                raise err
            self._state.stats["retries"] += 1
            log.info("%s %s: %s; retry %d/%d", method, redact_url(first.url), err, attempt, attempts - 1)
            await self._sleep_backoff(attempt - 1, err.retry_after if isinstance(err, RateLimited) else None)

    async def blob_body(self, resp: aiohttp.ClientResponse, read_size: int) -> AsyncIterator[bytes]:
        """A blob download's body from :meth:`stream` (``blob=True``), under the minimum-progress rule.

        :raises RegistryTimeout: fewer than ``progress_bytes`` in ``progress_window`` seconds of waiting
        """
        progress = Progress(self.settings.progress_bytes, self.settings.progress_window)
        url = redact_url(str(resp.url))

        def stalled() -> RegistryTimeout:
            return RegistryTimeout(f"blob body stalled: {progress.describe()}", registry=self.registry,
                                   method=resp.method, url=url, status=resp.status)

        async for chunk in paced_chunks(resp, progress, read_size, stalled):
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
            new = self._parse_challenge(r.headers.getall("WWW-Authenticate", []), r.target.url)
        sent_basic = auth is not None and auth.startswith("Basic ")
        if r.status == 401 and replayable and state.reauth < 2:
            state.challenge, state.scopes = self._grow(state.challenge, new, state.scopes, state.reauth, sent_basic)
            state.reauth += 1
            if state.challenge is not None:
                return None
        elif r.status == 401 and not replayable:
            # The streamed body is spent, so this request cannot be retried here; still drop the refused
            # token (and a rejected credential) so that the caller's restart of the operation starts
            # with fresh ones instead of meeting the same 401.
            self._grow(state.challenge, new, state.scopes, state.reauth, sent_basic)
        err = error_from_response(r.status, r.headers, r.body, registry=self.registry, method=method,
                                  url=r.target.url, what=what)
        if new is not None and new.error == "insufficient_scope":
            # Authenticated, but the token server granted less than asked: a permission problem, not
            # bad credentials (token.md: grant the intersection).
            err = PermissionDenied(f"insufficient scope: {err.message}", registry=self.registry, method=method,
                                   url=redact_url(r.target.url), status=401, codes=err.codes)
        return err

    def _grow(
        self, old: Challenge | None, new: Challenge | None, scopes: Sequence[Scope], reauth: int,
        sent_basic: bool = False,
    ) -> tuple[Challenge | None, Sequence[Scope]]:
        """After a 401: adopt the new challenge and its scopes (new ones first, ggcr bearer.go).

        :param sent_basic: the refused request carried Basic credentials
        """
        if new is None:
            return None, scopes
        if new.scheme == "bearer":
            wanted = [Scope.parse(s) for s in new.scopes]
            grown = tuple(merge_scopes([*wanted, *scopes]))
            if new.realm:
                self._tokens.invalidate(token_key(self.registry, new.realm, new.service or "", scopes))
            if reauth >= 1 or new.error == "invalid_token" or (old is not None and old == new and not wanted):
                # A fresh token was refused: maybe the helper's credentials went stale (ECR, rotated
                # secrets). Forget them so the next attempt re-runs the helper.
                self._credentials.forget(self.registry)
            return new, grown
        if reauth >= 1 or sent_basic:
            # Basic credentials have no scope: a 401 to a request that carried them is their rejection, so
            # forget them at once (a helper or the ECR provider is asked again) rather than resend the same.
            self._credentials.forget(self.registry)
        return new, scopes

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
        for _ in range(MAX_REDIRECTS + 1):
            send_headers = CIMultiDict(hdrs)
            if auth and target.credentials:
                send_headers["Authorization"] = auth
            resp = await self._request(method, target.url, send_headers, data, scope, blob)
            try:
                location = resp.headers.get("Location")
                if follow_redirects and resp.status in REDIRECTS and location:
                    target = self.target(location, base=target.url, what="redirect")
                    continue
                with self._map_errors(method, target.url):
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
            body = pacer.wrap(slices(data) if isinstance(data, bytes) else data)
        self._state.stats["requests"] += 1
        log.debug("%s %s", method, redact_url(url))
        try:
            with self._map_errors(method, url):
                return await self.session.request(
                    method, URL(url, encoded=True), headers=headers, data=body, ssl=self._ssl(urlsplit(url).scheme),
                    allow_redirects=False, timeout=self._timeouts(),
                )
        except ValueError as exc:
            if isinstance(exc, RegcopyError):
                raise
            # yarl or aiohttp refusing a URL or header built from an answer (a Location, a Link).
            raise ProtocolViolation(f"unusable request: {_describe(exc)}", registry=self.registry, method=method,
                                    url=redact_url(url)) from exc
        finally:
            if pacer is not None:
                # The answer came (maybe before the body was all sent): reading it is bounded like any answer.
                pacer.detach()
                scope.deadline = min(scope.deadline, anyio.current_time() + self.settings.request_timeout)

    def _timeouts(self) -> aiohttp.ClientTimeout:
        """This host's connect and per-read timeouts (the session's own are another host's)."""
        s = self.settings
        return aiohttp.ClientTimeout(total=None, connect=s.connect_timeout, sock_connect=s.connect_timeout,
                                     sock_read=s.read_timeout)

    @contextmanager
    def _map_errors(self, method: str, url: str) -> Iterator[None]:
        """The one place where aiohttp, OSError and SSL failures become regcopy errors."""
        where = redact_url(url)
        try:
            yield
        except RegistryError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise RegistryTimeout("timed out", registry=self.registry, method=method, url=where) from exc
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise TransportError(f"TLS failure: {_describe(exc)}", registry=self.registry, method=method,
                                 url=where) from exc
        except aiohttp.InvalidURL as exc:
            raise ProtocolViolation(f"invalid URL: {exc}", registry=self.registry, method=method, url=where) from exc
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp wraps an exception raised by a streamed request body in ClientOSError: a
            # DigestMismatch from the VerifyingStream feeding an upload, or the *source's* failure
            # (its GET broke for good). Neither is this host's connection failing: re-raise the
            # original, so it is not retried as one and the error names the right registry.
            cause = _body_cause(exc)
            if cause is not None:
                raise cause from exc
            raise TransportError(_describe(exc), registry=self.registry, method=method, url=where) from exc

    # ------------------------------------------------------------------ backoff
    def _note_failure(self, err: RegistryError) -> None:
        self._state.consecutive_failures += 1
        if isinstance(err, RateLimited):
            # One 429 slows every request to this host (regclient's shared per-host backoff).
            delay = err.retry_after if err.retry_after is not None else self._delay(self._state.consecutive_failures)
            # The same cap as a single request's wait (_sleep_backoff): a "Retry-After: 3600" must not
            # park every request to the host for an hour; the request gives up with RateLimited instead.
            delay = min(delay, self._max_wait())
            self._state.pause_until = max(self._state.pause_until, time.monotonic() + delay)

    async def _respect_pause(self) -> None:
        now = time.monotonic()
        start = max(now, self._state.pause_until)
        rps = self.settings.requests_per_second
        if rps:
            # Reserve the next slot of an evenly spaced schedule (a token bucket one request deep).
            start = max(start, self._state.next_slot)
            self._state.next_slot = start + 1.0 / rps
        if start > now:
            await anyio.sleep(start - now)

    def _delay(self, attempt: int) -> float:
        base = min(self.settings.backoff * (2**attempt), self.settings.backoff_max)
        jitter: float = random.random()
        return float(base) * (0.5 + jitter / 2)

    def _max_wait(self) -> float:
        return float(self.settings.backoff_max * 4)

    async def _sleep_backoff(self, attempt: int, retry_after: float | None) -> None:
        delay = self._delay(attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_wait()))
        await anyio.sleep(delay)


_PROBE_TRANSIENT: Final = frozenset({408, 429, 500, 502, 503, 504})


class _NoEndpoint(TransportError):
    """No probe answered; ``transient`` when a retry may help (a failure, not a definite answer)."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None, timed_out: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient
        self.retry_after = retry_after
        self.timed_out = timed_out
        """Every probe that failed without an answer timed out (and none answered 5xx/429)."""


def _retry_after(headers: CIMultiDictProxy[str]) -> float:
    return parse_retry_after(headers.get("Retry-After")) or 0.0


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


async def read_body(resp: aiohttp.ClientResponse, cap: int, *, registry: str, method: str) -> bytes:
    """The whole body, at most ``cap`` bytes; a body shorter than its ``Content-Length`` (a connection
    closed early) is a :class:`TransportError`, never a short answer.

    :raises ProtocolViolation: the body exceeds ``cap``
    """
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.read(min(cap + 1 - size, 256 * 1024)):
        parts.append(chunk)
        size += len(chunk)
        if size > cap:
            raise ProtocolViolation(f"response body larger than {cap} bytes", registry=registry, method=method,
                                    url=redact_url(str(resp.url)), status=resp.status)
    body = b"".join(parts)
    expected = resp.content_length
    # A decoded (gzip) body differs from its Content-Length by design; aiohttp checks those itself.
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if expected is not None and method != "HEAD" and not encoded and len(body) != expected:
        raise TransportError(f"response body ended after {len(body)} of {expected} bytes", registry=registry,
                             method=method, url=redact_url(str(resp.url)), status=resp.status)
    return body


async def _read_capped(resp: aiohttp.ClientResponse, scope: anyio.CancelScope, cap: int = 64 * 1024) -> bytes:
    """An error body, up to ``cap`` bytes, read to its end within what is left of ``scope``'s deadline.

    A body that drips or breaks yields what arrived: the status decides the error, the body only
    refines it, so a slow error body never turns a definite 404 into a retried timeout.
    """
    parts: list[bytes] = []
    size = 0
    remaining = scope.deadline - anyio.current_time()
    scope.deadline = math.inf  # the bound below takes over, without turning the answer into a timeout
    with anyio.move_on_after(remaining):
        try:
            while size < cap and (chunk := await resp.content.read(cap - size)):
                parts.append(chunk)
                size += len(chunk)
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
    return b"".join(parts)


def _body_cause(exc: BaseException) -> RegcopyError | None:
    """A regcopy error in ``exc``'s chain: raised by our own code (a request body), not by aiohttp."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RegcopyError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError) or "[SSL:" in str(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _describe(exc: BaseException) -> str:
    """An exception's text for a message: one line, no URL userinfo or query (aiohttp's texts carry
    the full URL, signed storage query included)."""
    text = redact(str(exc) or type(exc).__name__)
    return text.replace("\n", " ")[:300]

