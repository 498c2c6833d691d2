"""Docker token-auth server for tests: issues ES256 JWTs that ``docker-registry`` 2.8.2 trusts.

This module owns the token side of bearer auth (docs/protocol.md#auth): the signing key and the certificate
bundle the registry is pointed at (``auth.token.rootcertbundle``), the per-user ACL, the GET
(Basic credentials, repeated ``scope=``) and OAuth2 POST (``refresh_token`` / ``password`` grants)
endpoints, refresh tokens, and a thread-safe record of every request for tests to assert on.

It runs aiohttp on its own event loop in a daemon thread, so it works from sync fixtures, from any
test's event loop and at session scope.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import fnmatch
import hashlib
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._background import start_loop_thread, stop_loop_thread

__all__ = (
    "DEFAULT_ACL",
    "Scope",
    "TokenRequest",
    "TokenServer",
    "libtrust_kid",
    "parse_scope",
)

# The default users: `alice` may do everything (catalog included), `reader` may only pull.
DEFAULT_ACL: Mapping[str, Mapping[str, Any]] = {
    "alice": {"password": "secret", "access": {"*": ["pull", "push", "delete"], "registry:catalog": ["*"]}},
    "reader": {"password": "reader-secret", "access": {"*": ["pull"]}},
}


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope, e.g. ``repository:team/app:pull,push``."""

    type: str
    name: str
    actions: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Scope:
    """Parse one resource scope (docs/protocol.md#challenges).

    The type ends at the first ``:`` and the actions start after the last one, so a name holding a
    ``host:port`` survives. A ``(class)`` suffix on the type, as in ``repository(plugin)``, is dropped
    because 2.8.2 matches access entries on the bare type.

    :raises ValueError: fewer than two ``:`` separators.
    """
    first, last = text.find(":"), text.rfind(":")
    if first < 0 or last == first:
        raise ValueError(f"malformed scope {text!r}")
    rtype = text[:first].split("(", 1)[0]
    actions = tuple(a for a in text[last + 1 :].split(",") if a)
    return Scope(rtype, text[first + 1 : last], actions)


def libtrust_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust key id: base32 of the first 30 bytes of SHA-256(DER SubjectPublicKeyInfo), ``:`` every 4.

    2.8.2 finds the verification key for a ``kid`` header by this fingerprint
    (docs/protocol.md#tokens-distribution-accepts).
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What the token server received and answered (one entry per HTTP request)."""

    method: str
    user: str | None  # None = anonymous (or unknown when the request failed before auth)
    scopes: tuple[str, ...]  # raw scope strings as sent
    grant_type: str | None  # POST only
    service: str | None
    client_id: str | None
    offline: bool  # a refresh token was asked for
    status: int
    granted: tuple[Scope, ...] = ()
    time: float = field(default_factory=time.time)


class _AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TokenServer:
    """Bearer token endpoint in a background thread; use as a context manager or call start/stop.

    :param service: the registry's ``auth.token.service``; JWT ``aud``.
    :param issuer: the registry's ``auth.token.issuer``; JWT ``iss``.
    :param acl: ``{user: {"password": str, "access": {pattern: [actions]}}}``. Patterns are fnmatch
        patterns over the repository name (``*`` also matches ``/``); a pattern ``type:namepattern``
        targets another resource type, e.g. ``registry:catalog``. An action list containing ``*``
        grants every requested action.
    :param anonymous: access map for requests without credentials; ``None`` refuses them with 401.
    :param expires_in: token lifetime in seconds (``expires_in`` in the JSON and ``exp`` in the JWT).
        2.8.2 allows 60 s of clock leeway, so a token only stops working ~60 s after ``exp``; use
        ``exp_offset`` to issue tokens the registry rejects right away.
    :param exp_offset: seconds added to the JWT ``exp`` claim only (negative: already expired).
    :param ca: serve HTTPS with a certificate from this CA instead of plain HTTP.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        service: str = "regcopy-test-registry",
        issuer: str = "regcopy-test-issuer",
        acl: Mapping[str, Mapping[str, Any]] | None = None,
        anonymous: Mapping[str, Sequence[str]] | None = None,
        expires_in: int = 300,
        exp_offset: int = 0,
        ca: trustme.CA | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.exp_offset = exp_offset
        self.anonymous = None if anonymous is None else {k: list(v) for k, v in anonymous.items()}
        self.ca = ca
        self._acl: dict[str, dict[str, Any]] = {u: dict(v) for u, v in (acl or DEFAULT_ACL).items()}
        self._lock = threading.Lock()
        self._requests: list[TokenRequest] = []
        self._counts: Counter[str] = Counter()
        self._refresh: dict[str, str] = {}
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = libtrust_kid(self._key.public_key())
        self.cert_path = self.workdir / "token-signer.pem"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._write_cert()

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def scheme(self) -> str:
        return "https" if self.ca is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        """The URL to put in the registry's ``auth.token.realm``."""
        return f"{self.url}/token"

    def _write_cert(self) -> None:
        # Self-signed cert for the signing key: 2.8.2 reads keys out of the certificates in the bundle
        # and matches the JWT's `kid` against their libtrust fingerprints.
        self.workdir.mkdir(parents=True, exist_ok=True)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regcopy test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def start(self) -> TokenServer:
        """Start serving on a free 127.0.0.1 port; returns once the socket is listening."""
        if self._thread is not None:
            return self
        self._thread, self._loop = start_loop_thread(f"token-server-{id(self):x}", self._serve, self._cleanup)
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._handle_get)
        app.router.add_post("/token", self._handle_post)
        # access_log=None: aiohttp's access logger would add noise to every test's captured logs.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ssl_ctx = None
        if self.ca is not None:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ssl_ctx)
        # Bind the socket ourselves: port 0 picks a free port with no race, and we learn it without
        # reaching into aiohttp's private site state.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=ssl_ctx).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def stop(self) -> None:
        """Stop the server and join its thread (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        stop_loop_thread(thread, loop)
        self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ test API

    @property
    def requests(self) -> list[TokenRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> dict[str, int]:
        """Counters: ``get``, ``post``, ``issued``, ``refresh_issued``, ``401``, ``400``."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Forget recorded requests and counters (users and refresh tokens are kept)."""
        with self._lock:
            self._requests.clear()
            self._counts.clear()

    @property
    def users(self) -> dict[str, str]:
        """User → password, in ACL order (the first one is the owner of a registry made for this server)."""
        with self._lock:
            return {name: str(entry.get("password", "")) for name, entry in self._acl.items()}

    def set_user(self, name: str, password: str, access: Mapping[str, Sequence[str]]) -> None:
        """Add or replace a user in the ACL (takes effect on the next request)."""
        with self._lock:
            self._acl[name] = {"password": password, "access": {k: list(v) for k, v in access.items()}}

    def issue_refresh_token(self, user: str) -> str:
        """Mint a refresh (identity) token for ``user`` as a password grant with offline access would."""
        if user not in self._acl:
            raise KeyError(user)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[token] = user
        return token

    def issue_token(self, user: str | None, scopes: Sequence[str] = ()) -> str:
        """Sign a JWT for ``user`` (``None`` = anonymous) granting the ACL ∩ ``scopes`` directly."""
        granted = self._grant(user, [parse_scope(s) for s in scopes])
        return self._sign(user, granted, int(time.time()))

    # ------------------------------------------------------------------------------------ core

    def _grant(self, user: str | None, wanted: Sequence[Scope]) -> tuple[Scope, ...]:
        with self._lock:
            entry = self._acl[user] if user is not None else {"access": self.anonymous or {}}
            access: Mapping[str, Sequence[str]] = entry.get("access", {})
        merged: dict[tuple[str, str], list[str]] = {}
        for scope in wanted:
            acts = merged.setdefault((scope.type, scope.name), [])
            acts.extend(a for a in scope.actions if a not in acts)
        out: list[Scope] = []
        for (rtype, name), actions in merged.items():
            allowed: set[str] = set()
            for pattern, pattern_actions in access.items():
                ptype, sep, pname = pattern.partition(":")
                if not sep:
                    ptype, pname = "repository", pattern
                if ptype == rtype and fnmatch.fnmatchcase(name, pname):
                    allowed.update(pattern_actions)
            # Grant the intersection, possibly empty, never an error (token.md; docs/protocol.md#token-requests).
            got = tuple(a for a in actions if "*" in allowed or a in allowed)
            if got:
                out.append(Scope(rtype, name, got))
        return tuple(out)

    def _sign(self, user: str | None, granted: Sequence[Scope], now: int) -> str:
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            # A plain string: 2.8.2 rejects an `aud` array with invalid_token
            # (docs/protocol.md#tokens-distribution-accepts).
            "aud": self.service,
            "exp": now + self.expires_in + self.exp_offset,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [{"type": s.type, "name": s.name, "actions": list(s.actions)} for s in granted],
        }
        # pyjwt's ES256 emits the JWS raw r||s signature (not DER), which is what libtrust verifies.
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def _response(
        self, user: str | None, wanted: Sequence[Scope], *, refresh: bool, oauth: bool
    ) -> tuple[dict[str, Any], tuple[Scope, ...]]:
        now = int(time.time())
        granted = self._grant(user, wanted)
        token = self._sign(user, granted, now)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": self.expires_in,
            "issued_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if oauth:
            body["scope"] = " ".join(str(s) for s in granted)
        if refresh and user is not None:
            body["refresh_token"] = self.issue_refresh_token(user)
        return body, granted

    def _check_password(self, user: str, password: str) -> None:
        with self._lock:
            entry = self._acl.get(user)
        if entry is None or not secrets.compare_digest(str(entry.get("password", "")), password):
            raise _AuthError(401, "invalid username or password")

    def _basic_user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization")
        if not header:
            if self.anonymous is None:
                raise _AuthError(401, "anonymous access denied")
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise _AuthError(401, f"unsupported authorization scheme {scheme!r}")
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise _AuthError(401, "malformed basic credentials") from exc
        if not sep:
            raise _AuthError(401, "malformed basic credentials")
        self._check_password(user, password)
        return user

    def _check_service(self, service: str | None) -> None:
        # A wrong service means the client used the challenge of another registry: make it loud.
        if service is not None and service != self.service:
            raise _AuthError(400, f"unknown service {service!r}")

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self._requests.append(req)
            self._counts[req.method.lower()] += 1
            if req.status == 200:
                self._counts["issued"] += 1
            else:
                self._counts[str(req.status)] += 1

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        code = "UNAUTHORIZED" if status == 401 else "INVALID_REQUEST"
        headers = {"WWW-Authenticate": 'Basic realm="regcopy-test-token"'} if status == 401 else None
        return web.json_response(
            {"errors": [{"code": code, "message": message}], "error": message},
            status=status,
            headers=headers,
        )

    async def _handle_get(self, request: web.Request) -> web.Response:
        query = request.query
        raw_scopes = tuple(s for value in query.getall("scope", []) for s in value.split(" ") if s)
        offline = query.get("offline_token", "").lower() == "true"
        service, client_id = query.get("service"), query.get("client_id")
        user: str | None = None
        try:
            self._check_service(service)
            user = self._basic_user(request)
            wanted = [parse_scope(s) for s in raw_scopes]
        except (_AuthError, ValueError) as exc:
            status = exc.status if isinstance(exc, _AuthError) else 400
            self._record(TokenRequest("GET", user, raw_scopes, None, service, client_id, offline, status))
            return self._error(status, str(exc))
        body, granted = self._response(user, wanted, refresh=offline, oauth=False)
        self._record(TokenRequest("GET", user, raw_scopes, None, service, client_id, offline, 200, granted))
        return web.json_response(body)

    async def _handle_post(self, request: web.Request) -> web.Response:
        # aiohttp de-chunks the body: skopeo 1.9.3 sends this form with Transfer-Encoding: chunked.
        form = await request.post()

        def field_(name: str) -> str | None:
            value = form.get(name)
            return value if isinstance(value, str) else None

        grant_type = field_("grant_type")
        raw_scopes = tuple(s for s in (field_("scope") or "").split(" ") if s)
        service, client_id = field_("service"), field_("client_id")
        offline = field_("access_type") == "offline"
        user: str | None = None
        try:
            self._check_service(service)
            if not client_id:
                raise _AuthError(400, "client_id is required (oauth.md)")
            if grant_type == "refresh_token":
                with self._lock:
                    user = self._refresh.get(field_("refresh_token") or "")
                if user is None:
                    raise _AuthError(401, "unknown refresh token")
            elif grant_type == "password":
                user = field_("username") or ""
                self._check_password(user, field_("password") or "")
            else:
                raise _AuthError(400, f"unsupported grant_type {grant_type!r}")
            wanted = [parse_scope(s) for s in raw_scopes]
        except (_AuthError, ValueError) as exc:
            status = exc.status if isinstance(exc, _AuthError) else 400
            self._record(TokenRequest("POST", user, raw_scopes, grant_type, service, client_id, offline, status))
            return self._error(status, str(exc))
        body, granted = self._response(user, wanted, refresh=offline, oauth=True)
        if grant_type == "refresh_token":
            with self._lock:
                self._counts["refresh_issued"] += 1
        self._record(TokenRequest("POST", user, raw_scopes, grant_type, service, client_id, offline, 200, granted))
        return web.json_response(body)
