"""A hostile registry for security tests, and a header-logging listener that stands for another origin.

This module owns :class:`HostileRegistry`: a :class:`~servers.spec_registry.SpecRegistry` (real
uploads, blobs, manifests, tags) behind Basic or Bearer auth, over plain http or TLS from the shared
test CA, whose answers a test scripts (:class:`Script`) to point at a second server on another port
(the *listener*), to drip their bodies one byte at a time, or to stall a blob mid-body. The listener
logs every request it receives (:class:`Seen`: port, method, raw URL, ``Authorization``) and answers
as its mode says. Both run on one event loop in a daemon thread, so sync and async tests can use them.

Script fields (set after start, when the ports are known; ``listener_url`` is the other origin):
    ``tags_link`` / ``catalog_link``: the ``Link`` header of the first tags-list / catalog page.
    ``upload_location`` / ``mount_location``: the ``Location`` of a session-opening POST (plain or
        ``?mount=`` alone / ``?mount=&from=``, which then opens a session instead of mounting),
        formatted with ``{repo}`` and ``{uuid}``; the session exists, so a listener in ``storage`` mode can complete it.
    ``manifest_redirect`` / ``blob_redirect``: a ``307`` to this URL for manifest GET/HEAD / blob GET,
        formatted with ``{repo}`` and ``{ref}`` / ``{digest}``.
    ``drip``: kind → seconds between two bytes of that kind's body (kinds: ``manifest``, ``tags``,
        ``catalog``, ``token``, ``error``, ``blob``); the status and headers go out at once.
    ``stall_blob``: ``(N, times)``: the first ``times`` GETs without ``Range`` of blobs bigger than N
        send N bytes and then nothing until the client goes away (a ``Range`` request is served
        normally).
    ``stall_upload``: the first ``stall_upload`` upload PATCHes (and PUTs with a body) are never read
        nor answered until the client goes away.
    ``headers``: kind → headers set on that kind's answers (see :func:`kind_of`), for fuzzing.
    ``status``: kind → a status answered instead (with an empty JSON error body), e.g. 429 or 307.
    ``bodies``: kind → a body answered instead (status 200, or ``status``'s).

Listener modes (``listener_mode``):
    ``storage``: a storage back end that needs no credentials: it serves the registry's own content
        (completes upload sessions, serves blobs and manifests); tag lists and catalog pages answer
        ``from-listener`` (so a merged listing shows).
    ``deny-basic``: 401 with a Basic challenge to everything.
    ``deny-bearer``: 401 with a Bearer challenge whose realm is the listener's ``/token``, which hands
        a token to anyone: a client that fetched one there shows in the log.
    ``echo-403``: 403 with an S3-style XML body quoting the full request URL, query included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from .images import blob_path, layout_contents, read_blob
from .registry import shared_ca
from .spec_registry import SpecRegistry, bind_site

__all__ = ("HostileRegistry", "ListenerMode", "Script", "Seen", "kind_of")

USER = "user"
PASSWORD = "S3CRETpw"
TOKEN = "hostile-registry-token"

ListenerMode = Literal["storage", "deny-basic", "deny-bearer", "echo-403"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_KINDS = [
    (re.compile(r"^/v2/$"), None, "ping"),
    (re.compile(r"^/token$"), None, "token"),
    (re.compile(r"^/v2/_catalog$"), None, "catalog"),
    (re.compile(r"^/v2/.+/tags/list$"), None, "tags"),
    (re.compile(r"^/v2/.+/manifests/[^/]+$"), None, "manifest"),
    (re.compile(r"^/v2/.+/blobs/uploads/$"), "POST", "upload_post"),
    (re.compile(r"^/v2/.+/blobs/uploads/[^/]+$"), "PATCH", "upload_patch"),
    (re.compile(r"^/v2/.+/blobs/uploads/[^/]+$"), "PUT", "upload_put"),
    (re.compile(r"^/v2/.+/blobs/uploads/[^/]+$"), "GET", "upload_status"),
    (re.compile(r"^/v2/.+/blobs/uploads/[^/]+$"), "DELETE", "upload_delete"),
    (re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$"), None, "blob"),
]
_NAME_REF = re.compile(r"^/v2/(?P<repo>.+)/(?:manifests|blobs)/(?P<ref>[^/]+)$")


def kind_of(method: str, path: str) -> str:
    """The kind of a request: ``ping``, ``token``, ``catalog``, ``tags``, ``manifest``, ``blob``,
    ``upload_post``, ``upload_patch``, ``upload_put``, ``upload_status``, ``upload_delete`` or ``other``."""
    for pattern, verb, kind in _KINDS:
        if pattern.match(path) and (verb is None or verb == method):
            return kind
    return "other"


@dataclass(frozen=True)
class Seen:
    """One request the listener (or the registry, :attr:`HostileRegistry.received`) received."""

    port: int
    method: str
    url: str
    auth: str | None
    range: str | None = None


@dataclass
class Script:
    """What the hostile registry does wrong (see the module docstring)."""

    tags_link: str | None = None
    catalog_link: str | None = None
    upload_location: str | None = None
    mount_location: str | None = None
    manifest_redirect: str | None = None
    blob_redirect: str | None = None
    drip: dict[str, float] = field(default_factory=dict)
    stall_blob: tuple[int, int] | None = None
    stall_upload: int = 0
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)


class HostileRegistry(SpecRegistry):
    """A scripted registry on ``127.0.0.1:<free port>`` and its listener on another port.

    :param tls: serve https with a certificate from the shared test CA (the listener stays http)
    :param auth: ``basic`` (``user``/``S3CRETpw``), ``bearer`` (a token from ``/token`` on the registry
        itself, for those credentials) or None
    """

    def __init__(self, root: Path | None = None, *, tls: bool = False,
                 auth: Literal["basic", "bearer"] | None = "basic") -> None:
        super().__init__(root)
        self.tls = tls
        self.auth = auth
        self.username, self.password = USER, PASSWORD
        self.script = Script()
        self.listener_mode: ListenerMode = "storage"
        self.listener_port = 0
        self._seen: list[Seen] = []
        self._received: list[Seen] = []
        self._seen_lock = threading.Lock()
        self._stalled = 0
        self._listener: web.AppRunner | None = None

    # ---------------------------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def origin(self) -> str:
        """``scheme://127.0.0.1:port``: what a client's probe chooses."""
        return self.url

    @property
    def listener_url(self) -> str:
        """The other origin: ``http://127.0.0.1:<listener port>``."""
        return f"http://{self.bind_host}:{self.listener_port}"

    @property
    def basic(self) -> str:
        """The ``Authorization`` value of the registry's credentials (what must never reach the listener)."""
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def write_authfile(self, path: Path) -> Path:
        """A containers auth file holding this registry's credentials (for ``--authfile``)."""
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return path

    def write_ca(self, path: Path) -> Path:
        """The test CA's PEM (``ca_file`` for the client)."""
        shared_ca().cert_pem.write_to_path(str(path))
        return path

    @property
    def seen(self) -> list[Seen]:
        """Every request the listener received, oldest first."""
        with self._seen_lock:
            return list(self._seen)

    @property
    def received(self) -> list[Seen]:
        """Every request the registry itself received (scripted answers included), oldest first."""
        with self._seen_lock:
            return list(self._received)

    def put_image(self, layout: Path, tag: str, repo: str, new_tag: str | None = None) -> str:
        """Store ``tag`` of an OCI layout (every manifest and blob) as ``repo:new_tag``; return its digest."""
        contents = layout_contents(layout, tag)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        for digest, desc in contents.blobs.items():
            shutil.copyfile(blob_path(layout, digest), self.root / "blobs" / digest.split(":", 1)[1])
            self.blobs[digest] = desc.size
            self.links.setdefault(repo, set()).add(digest)
        for digest, desc in contents.manifests.items():
            self.manifests.setdefault(repo, {})[digest] = (desc.media_type, read_blob(layout, digest))
        self.tags.setdefault(repo, {})[new_tag or tag] = contents.root.digest
        return contents.root.digest

    # ---------------------------------------------------------------------------------- serving
    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        shared_ca().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        return ctx

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=[self._hostile])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _serve(self) -> None:
        # The registry's handlers are cancelled when a client gives up, so a drip or stall ends with it.
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        self.port = await bind_site(self._runner, self.bind_host, self._ssl_context())
        listener = web.Application(client_max_size=8 * 1024 * 1024)
        listener.router.add_route("*", "/{tail:.*}", self._listen)
        self._listener = web.AppRunner(listener, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._listener.setup()
        self.listener_port = await bind_site(self._listener, self.bind_host)

    async def _cleanup(self) -> None:
        if self._listener is not None:
            await self._listener.cleanup()
            self._listener = None
        await super()._cleanup()

    # ---------------------------------------------------------------------------------- the registry
    @web.middleware
    async def _hostile(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self._seen_lock:
            self._received.append(Seen(self.port, request.method, request.raw_path,
                                       request.headers.get("Authorization"), request.headers.get("Range")))
        kind = kind_of(request.method, request.path)
        if kind == "token":
            resp: web.StreamResponse = self._token(request)
        elif not self._authorized(request.headers.get("Authorization")):
            resp = self._challenge()
        else:
            resp = await self._scripted(request, kind, handler)
        for name, value in self.script.headers.get(kind, {}).items():
            resp.headers[name] = value  # after prepare() (a stall or drip) this would raise: not combined
        # A 401 challenge is not an error body: the handshake must work for the drip to be reached.
        drip = self.script.drip.get("error" if resp.status >= 400 and resp.status != 401 and kind != "token"
                                    else kind)
        if drip is not None and isinstance(resp, web.Response) and resp.body is not None:
            return await _drip(request, resp, drip)
        return resp

    def _authorized(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        expected = self.basic if self.auth == "basic" else f"Bearer {TOKEN}"
        return header == expected

    def _challenge(self) -> web.Response:
        if self.auth == "basic":
            challenge = 'Basic realm="hostile"'
        else:
            challenge = f'Bearer realm="{self.url}/token",service="hostile"'
        body = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})

    def _token(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.basic:
            return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                                     status=401)
        return web.json_response({"token": TOKEN, "expires_in": 300})

    async def _scripted(self, request: web.Request, kind: str, handler: Handler) -> web.StreamResponse:
        s = self.script
        if kind in s.bodies:
            return web.Response(body=s.bodies[kind], status=s.status.get(kind, 200), content_type="application/json")
        if kind in s.status:
            return web.json_response({"errors": []}, status=s.status[kind])
        match = _NAME_REF.match(request.path)
        repo, ref = (match.group("repo"), match.group("ref")) if match else ("", "")
        if kind == "manifest" and s.manifest_redirect and request.method in ("GET", "HEAD"):
            return _redirect(s.manifest_redirect.format(repo=repo, ref=ref))
        if kind == "blob" and s.blob_redirect and request.method == "GET":
            return _redirect(s.blob_redirect.format(repo=repo, digest=ref))
        if kind == "blob" and request.method == "GET" and self._stall_now(request, ref):
            return await self._stall(request, repo, ref)
        if kind == "blob" and request.method == "GET" and "blob" in s.drip:
            return self._blob_answer(request, ref)  # a plain Response, so that the drip applies
        if kind in ("upload_patch", "upload_put") and request.body_exists and s.stall_upload > 0:
            s.stall_upload -= 1
            await _until_gone(request)
        if kind == "catalog":
            return self._catalog(s.catalog_link if "last" not in request.query else None)
        # A mount needs ``from`` here, as on 2.8.2: ``?mount=`` alone opens a plain upload session.
        if kind == "upload_post" and "from" in request.query and s.mount_location:
            return self._opened(request, s.mount_location)
        if kind == "upload_post" and "from" not in request.query and s.upload_location:
            return self._opened(request, s.upload_location)
        resp = await handler(request)
        if kind == "tags" and s.tags_link and "last" not in request.query:
            resp.headers["Link"] = s.tags_link
        return resp

    def _catalog(self, link: str | None) -> web.Response:
        headers = {"Link": link} if link else {}
        return web.json_response({"repositories": sorted(self.manifests)}, headers=headers)

    def _opened(self, request: web.Request, template: str) -> web.Response:
        repo = request.path[len("/v2/"):-len("/blobs/uploads/")]
        session = self._new_session(repo)
        location = template.format(repo=repo, uuid=session.id)
        return web.Response(status=202, headers={"Location": location, "Range": "0-0",
                                                 "Docker-Upload-UUID": session.id, "Content-Length": "0"})

    def _stall_now(self, request: web.Request, digest: str) -> bool:
        if self.script.stall_blob is None or "Range" in request.headers:
            return False
        if self.blobs.get(digest, 0) <= self.script.stall_blob[0]:
            return False  # nothing would be left to stall on
        if self._stalled >= self.script.stall_blob[1]:
            return False
        self._stalled += 1
        return True

    async def _stall(self, request: web.Request, repo: str, digest: str) -> web.StreamResponse:
        assert self.script.stall_blob is not None
        data = self.blob(digest)
        resp = web.StreamResponse(headers={"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: self.script.stall_blob[0]])
        await _until_gone(request)
        return resp

    def _blob_answer(self, request: web.Request, digest: str) -> web.Response:
        data = self.blob(digest)
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        start = int(request.headers["Range"][len("bytes="):].split("-")[0]) if "Range" in request.headers else 0
        if not start:
            return web.Response(body=data, headers=headers)
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return web.Response(status=206, body=data[start:], headers=headers)

    # ---------------------------------------------------------------------------------- the listener
    async def _listen(self, request: web.Request) -> web.StreamResponse:
        with self._seen_lock:
            self._seen.append(Seen(self.listener_port, request.method, request.raw_path,
                                   request.headers.get("Authorization")))
        mode = self.listener_mode
        if request.path == "/token":
            return web.json_response({"token": "listener-token"})
        if mode == "deny-basic":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="listener"'})
        if mode == "deny-bearer":
            challenge = f'Bearer realm="{self.listener_url}/token",service="listener"'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if mode == "echo-403":
            body = f"<Error><Code>AccessDenied</Code><URL>{self.listener_url}{request.raw_path}</URL></Error>"
            return web.Response(status=403, text=body, content_type="application/xml")
        kind = kind_of(request.method, request.path)
        if kind == "tags":
            return web.json_response({"name": "x", "tags": ["from-listener"]})
        if kind == "catalog":
            return web.json_response({"repositories": ["from-listener"]})
        return await self._handle(request)


async def _drip(request: web.Request, resp: web.Response, interval: float) -> web.StreamResponse:
    """Send ``resp``'s status and headers at once, then its body one byte per ``interval`` seconds."""
    body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else b""
    out = web.StreamResponse(status=resp.status, headers=resp.headers)
    out.content_length = len(body)
    await out.prepare(request)
    for i in range(len(body)):
        await out.write(body[i:i + 1])
        await asyncio.sleep(interval)
    return out


async def _until_gone(request: web.Request) -> None:
    # The runner cancels a handler whose client went away (handler_cancellation), and stop() cancels the rest.
    await asyncio.Event().wait()


def _redirect(location: str) -> web.Response:
    return web.Response(status=307, headers={"Location": location})


def listener_auth(seen: list[Seen]) -> list[str | None]:
    """The ``Authorization`` headers the listener received, in order."""
    return [s.auth for s in seen]


def describe(seen: list[Seen]) -> list[dict[str, Any]]:
    """The listener's log as plain dicts (method, url, auth), for reports and assertion messages."""
    return [{"port": s.port, "method": s.method, "url": s.url, "auth": s.auth} for s in seen]
