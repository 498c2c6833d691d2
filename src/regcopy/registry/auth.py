"""The auth handshake of one registry host: credentials → ``Authorization`` header (docs/protocol.md#auth).

Owns answering a challenge: Basic sends the host's credentials; Bearer sends a registry token as is or
fetches a token from the realm (by OAuth2 POST with a refresh token, falling back to GET on 404/405 as
go-containerregistry pkg/v1/remote/transport/bearer.go ``Refresh`` does; else by GET with Basic
credentials or anonymously), cached in the client's :class:`~regcopy.registry._tokens.TokenCache`.
Also owns what a 401 means for the next attempt (:meth:`Authenticator.grow`: the new challenge's scopes
first, a refused token dropped, a rejected credential forgotten so a helper or provider is asked again)
and the rule that credentials never travel in clear text to a remote token realm.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import anyio
from yarl import URL

from regcopy.credstore import Credential, CredentialStore
from regcopy.errors import AuthenticationError, ProtocolViolation, RegistryTimeout, TransportError
from regcopy.registry._challenge import Challenge, Scope, merge_scopes, parse_www_authenticate, pick_challenge
from regcopy.registry._errors import error_from_response, redact_url
from regcopy.registry._origin import origin_of
from regcopy.registry._tokens import Token, TokenCache, parse_token_response, token_key
from regcopy.registry.exchange import USER_AGENT, HostState, Reply, client_timeouts, map_errors, read_body, ssl_for
from regcopy.settings import RegistrySettings, is_local_host

__all__ = ("Authenticator", "read_challenge")

log = logging.getLogger(__name__)


def read_challenge(values: Sequence[str], *, registry: str, url: str) -> Challenge | None:
    """The challenge to answer among a 401's ``WWW-Authenticate`` headers; None when there is none.

    :raises ProtocolViolation: a malformed header; the error names the registry and the (redacted) URL
    """
    if not values:
        return None
    try:
        return pick_challenge(parse_www_authenticate(values))
    except ProtocolViolation as exc:
        raise ProtocolViolation(exc.message, registry=registry, method="GET", url=redact_url(url)) from exc


class Authenticator:
    """Turns one host's credentials into ``Authorization`` headers, and learns from its refusals.

    :param session: the client's aiohttp session (token requests)
    :param registry: normalised ``host[:port]``
    :param settings: the host's policy (TLS and retries of token requests, the scheme mode)
    :param credentials: where this host's credentials come from
    :param tokens: the client's token cache
    :param state: the host's shared backoff
    :param forced_scheme: ``http`` when a reference carried an explicit ``http://`` prefix
    """

    def __init__(self, session: aiohttp.ClientSession, registry: str, settings: RegistrySettings,
                 credentials: CredentialStore, tokens: TokenCache, state: HostState,
                 forced_scheme: str | None = None) -> None:
        self.session = session
        self.registry = registry
        self.settings = settings
        self._credentials = credentials
        self._tokens = tokens
        self._state = state
        self._forced = forced_scheme
        self._refresh_tokens: dict[str, str] = {}

    async def authorization(self, challenge: Challenge | None, scopes: Sequence[Scope]) -> str | None:
        """The ``Authorization`` value answering ``challenge`` for ``scopes``; None to send none.

        :raises AuthenticationError: the token server refused or failed
        """
        if challenge is None:
            return None
        cred = await self._credentials.get(self.registry)
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

    def grow(
        self, old: Challenge | None, new: Challenge | None, scopes: Sequence[Scope], reauth: int,
        sent_basic: bool = False,
    ) -> tuple[Challenge | None, Sequence[Scope]]:
        """After a 401: adopt the new challenge and its scopes (new ones first, go-containerregistry
        pkg/v1/remote/transport/bearer.go: some servers only read the first scope).

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

    async def _after_token_rejection(
        self, exc: AuthenticationError, challenge: Challenge, cred: Credential
    ) -> Credential | None:
        """The token server refused ``cred`` (401/403): forget it, so a credential helper or provider whose
        secret went stale (rotated, expired ECR token) is asked again, and return the fresh credential to
        retry with once; None when there is nothing new to try (anonymous, or the same answer again).

        The registry's own 401 path (:meth:`grow`) never sees a token-server refusal, so this is where a
        rejected credential is renewed under Bearer auth.
        """
        if exc.status not in (401, 403) or cred.anonymous:
            return None
        fresh = await self._credentials.get(self.registry)
        if fresh == cred:  # not already replaced by a concurrent request that saw the same refusal
            self._credentials.forget(self.registry)
            fresh = await self._credentials.get(self.registry)
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
        for attempt in range(self.settings.retries + 1):
            try:
                reply = await self._token_exchange(method, url, headers, data)
            except (TransportError, RegistryTimeout) as exc:  # unreachable, or an answer cut short
                if attempt < self.settings.retries:
                    await self._state.sleep(attempt, None)
                    continue
                raise AuthenticationError(f"token endpoint {realm_host} unreachable or its answer cut short: {exc}",
                                          registry=self.registry) from exc
            if reply.status in accept:
                return reply
            err = error_from_response(reply.status, reply.headers, reply.body, registry=self.registry,
                                      method=method, url=url)
            if err.retryable and attempt < self.settings.retries:
                await self._state.sleep(attempt, getattr(err, "retry_after", None))
                continue
            if reply.status in (401, 403):
                raise AuthenticationError(f"token server {realm_host} rejected the credentials: {err.message}",
                                          registry=self.registry, method=method, url=redact_url(url),
                                          status=reply.status, codes=err.codes)
            raise AuthenticationError(f"token server {realm_host} failed: {err.message}", registry=self.registry,
                                      method=method, url=redact_url(url), status=reply.status)
        raise AssertionError("unreachable")

    async def _token_exchange(self, method: str, url: str, headers: Mapping[str, str], data: bytes | None) -> Reply:
        """One token request, read whole within ``request_timeout``."""
        # The token endpoint is its own host: TLS verification follows the registry's policy, and
        # the CA bundle configured for the registry is trusted for its realm too.
        ssl_ctx = ssl_for(self.settings, "https" if url.startswith("https:") else "http")
        # A token answer is small: the whole exchange gets request_timeout (a dripping body
        # would otherwise keep it alive read by read).
        with map_errors(self.registry, method, url), anyio.fail_after(self.settings.request_timeout):
            async with self.session.request(
                method, URL(url, encoded=True), headers=headers, data=data, ssl=ssl_ctx,
                allow_redirects=False, timeout=client_timeouts(self.settings),
            ) as resp:
                body = await read_body(resp, 1024 * 1024, registry=self.registry, method=method)
                return Reply(resp.status, resp.headers, body, url)

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
