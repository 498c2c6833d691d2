"""An in-process registry that follows the OCI distribution spec where 2.8.2 does not: resumable uploads.

This module owns :class:`SpecRegistry`, an aiohttp app on its own loop in a daemon thread (like
:mod:`servers.faulty_proxy`), storing blobs and upload sessions in a temp directory and manifests in
memory. It implements what a copier needs (distribution spec v1.1, docs/protocol.md): ``/v2/``; manifests
GET/HEAD/PUT by tag or digest; blobs HEAD/GET with ``Range``; uploads POST (plain, ``?digest=``
monolithic, ``?mount=&from=``; ``?mount=`` alone with ``mount_anywhere``), PATCH (streamed, or a chunk
with ``Content-Range``: 416 when it does not start at the session's size), GET status, PUT ``?digest=``
(sha256 checked: 400 ``DIGEST_INVALID``) and DELETE; tags/list; the referrers API (``GET
/v2/<name>/referrers/<digest>`` with the ``artifactType`` filter, ``OCI-Filters-Applied`` and ``Link``
pages; ``OCI-Subject`` on a manifest PUT with a subject), switchable off to behave as 2.8.2. No auth.

The point of it: **a PATCH whose body is cut mid-stream keeps the bytes received so far**, and the
status request answers ``204`` with ``Range: 0-<last byte held>``, so a client can resume (2.8.2
cancels such a session instead, docs/registry-quirks.md). Requests of one session are serialised, so a status
request waits for a broken PATCH to finish writing. Like 2.8.2, ``Range`` is ``0-0`` for an empty
session. Counters for tests and benchmarks: :attr:`SpecRegistry.requests` (method, path, status,
request-body bytes), :meth:`SpecRegistry.session_bytes` and :meth:`SpecRegistry.blob_bytes` (bytes
received by the sessions that were committed as a digest, re-sent bytes included). skopeo reads it
(``skopeo.verify(spec_registry, ...)`` works).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import socket
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ._background import start_loop_thread, stop_loop_thread

__all__ = ("LoggedRequest", "SpecRegistry", "bind_site")

_NAME = r"(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
_ROUTES = [
    (re.compile(rf"^/v2/{_NAME}/blobs/uploads/$"), "uploads"),
    (re.compile(rf"^/v2/{_NAME}/blobs/uploads/(?P<uuid>[0-9a-f-]+)$"), "session"),
    (re.compile(rf"^/v2/{_NAME}/blobs/(?P<digest>sha256:[0-9a-f]{{64}})$"), "blob"),
    (re.compile(rf"^/v2/{_NAME}/manifests/(?P<ref>[A-Za-z0-9_.:-]+)$"), "manifest"),
    (re.compile(rf"^/v2/{_NAME}/tags/list$"), "tags"),
    (re.compile(rf"^/v2/{_NAME}/referrers/(?P<digest>sha256:[0-9a-f]{{64}})$"), "referrers"),
]
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_CONTENT_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")
_READ = 256 * 1024


@dataclass
class LoggedRequest:
    """One request: method, raw path (query included), status sent, request-body bytes received."""

    method: str
    path: str
    status: int | None = None
    body_bytes: int = 0


@dataclass
class _Session:
    id: str
    repo: str
    path: Path
    size: int = 0
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SpecRegistry:
    """A spec-following registry on ``127.0.0.1:<free port>``; a context manager.

    :param root: where blobs and sessions live (default: a temp directory removed on stop)
    :param referrers: serve the referrers API (distribution spec, "Listing Referrers") and answer
        ``OCI-Subject`` to a manifest PUT with a subject; False: 404, as 2.8.2
    :param referrers_page: descriptors per referrers page (0: all on one page; more pages are linked
        with ``Link: <...>; rel="next"``)
    :param referrers_filter: apply the ``artifactType`` filter (and say so); False: ignore it, as the
        spec allows (clients filter themselves)
    :param mount_anywhere: mount a blob named by ``?mount=`` alone from any repository holding it
        (the spec's optional ``from``); False: open an upload session, as 2.8.2 does
    """

    def __init__(self, root: Path | None = None, *, host: str = "127.0.0.1", referrers: bool = True,
                 referrers_page: int = 0, referrers_filter: bool = True, mount_anywhere: bool = False) -> None:
        self.referrers_api = referrers
        self.referrers_filter = referrers_filter
        self.referrers_page = referrers_page
        self.mount_anywhere = mount_anywhere
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="spec-registry-")) if root is None else root
        self.bind_host = host
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._sessions: dict[str, _Session] = {}
        self._session_bytes: dict[str, int] = {}
        self._blob_bytes: dict[str, int] = {}
        self.blobs: dict[str, int] = {}  # digest -> size (files under root/blobs)
        self.links: dict[str, set[str]] = {}  # repo -> digests
        self.manifests: dict[str, dict[str, tuple[str, bytes]]] = {}  # repo -> digest -> (type, bytes)
        self.tags: dict[str, dict[str, str]] = {}  # repo -> tag -> digest
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # ---------------------------------------------------------------------------------- addresses
    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def skopeo_flags(self, role: str = "", *, creds: object = None, anonymous: bool = False) -> list[str]:
        """skopeo options to reach this registry (plain http, no auth), as :mod:`servers.skopeo` asks."""
        return [f"--{role}-tls-verify=false" if role else "--tls-verify=false"]

    # ---------------------------------------------------------------------------------- counters
    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request so far, oldest first (copies)."""
        with self._lock:
            return [replace(r) for r in self._requests]

    def session_bytes(self) -> dict[str, int]:
        """Upload-body bytes received per session id (PATCH, PUT and POST bodies), open or closed."""
        with self._lock:
            return dict(self._session_bytes)

    def blob_bytes(self, digest: str) -> int:
        """Bytes received by the sessions committed as ``digest`` (everything re-sent included)."""
        with self._lock:
            return self._blob_bytes.get(digest, 0)

    def upload_bytes(self) -> int:
        """Upload-body bytes received by every session."""
        with self._lock:
            return sum(self._session_bytes.values())

    def open_sessions(self) -> dict[str, int]:
        """Session id → bytes held, for sessions neither committed nor deleted."""
        with self._lock:
            return {s.id: s.size for s in self._sessions.values()}

    def blob(self, digest: str) -> bytes:
        """A committed blob's bytes."""
        return (self.root / "blobs" / digest.split(":", 1)[1]).read_bytes()

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self) -> SpecRegistry:
        """Start serving; returns once the socket accepts connections."""
        if self._thread is None:
            (self.root / "blobs").mkdir(parents=True, exist_ok=True)
            (self.root / "uploads").mkdir(parents=True, exist_ok=True)
            self._thread, self._loop = start_loop_thread(f"spec-registry-{id(self):x}", self._serve, self._cleanup)
        return self

    def stop(self) -> None:
        """Stop serving, join the thread and remove a temp root."""
        if self._thread is not None and self._loop is not None:
            if not stop_loop_thread(self._thread, self._loop):
                raise RuntimeError("spec registry thread did not stop")
            self._thread = self._loop = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SpecRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = await bind_site(self._runner, self.bind_host, self._ssl_context())

    def _app(self) -> web.Application:
        """The aiohttp application (a subclass adds middlewares, e.g. :mod:`servers.hostile_registry`)."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def _ssl_context(self) -> ssl.SSLContext | None:
        return None  # plain http

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------------------------- dispatch
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = LoggedRequest(request.method, request.raw_path)
        with self._lock:
            self._requests.append(record)
        try:
            resp = await self._route(request, record)
        except _Abort as exc:
            resp = exc.response
        record.status = resp.status
        return resp

    async def _route(self, request: web.Request, record: LoggedRequest) -> web.StreamResponse:
        if request.path == "/v2/":
            return web.json_response({})
        for pattern, kind in _ROUTES:
            match = pattern.match(request.path)
            if match is None:
                continue
            args = match.groupdict()
            handler = getattr(self, f"_{kind}_{request.method.lower()}", None)
            if handler is None:
                return _error(405, "UNSUPPORTED", f"{request.method} not allowed here")
            result: web.StreamResponse = await handler(request, record, **args)
            return result
        return _error(404, "NAME_UNKNOWN", "no such route")

    # ---------------------------------------------------------------------------------- manifests
    async def _manifest_get(self, request: web.Request, record: LoggedRequest, name: str, ref: str) -> web.Response:
        found = self._find_manifest(name, ref)
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", f"{name}:{ref}")
        digest, (media_type, data) = found
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type}
        return web.Response(body=data, headers=headers)

    async def _manifest_head(self, request: web.Request, record: LoggedRequest, name: str, ref: str) -> web.Response:
        found = self._find_manifest(name, ref)
        if found is None:
            return web.Response(status=404)
        digest, (media_type, data) = found
        return web.Response(headers={"Docker-Content-Digest": digest, "Content-Type": media_type,
                                     "Content-Length": str(len(data))})

    async def _manifest_put(self, request: web.Request, record: LoggedRequest, name: str, ref: str) -> web.Response:
        data = await request.read()
        record.body_bytes = len(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ref.startswith("sha256:") and ref != digest:
            return _error(400, "DIGEST_INVALID", f"manifest hashes to {digest}")
        media_type = request.headers.get("Content-Type", "")
        self.manifests.setdefault(name, {})[digest] = (media_type, data)
        if not ref.startswith("sha256:"):
            self.tags.setdefault(name, {})[ref] = digest
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        subject = _subject(data)
        if subject is not None and self.referrers_api:
            headers["OCI-Subject"] = subject  # the spec: this registry processed the subject
        return web.Response(status=201, headers=headers)

    def _find_manifest(self, name: str, ref: str) -> tuple[str, tuple[str, bytes]] | None:
        digest = ref if ref.startswith("sha256:") else self.tags.get(name, {}).get(ref)
        entry = self.manifests.get(name, {}).get(digest or "")
        return None if digest is None or entry is None else (digest, entry)

    async def _tags_get(self, request: web.Request, record: LoggedRequest, name: str) -> web.Response:
        if name not in self.manifests:
            return _error(404, "NAME_UNKNOWN", name)
        return web.json_response({"name": name, "tags": sorted(self.tags.get(name, {}))})

    # ---------------------------------------------------------------------------------- referrers
    async def _referrers_get(self, request: web.Request, record: LoggedRequest, name: str,
                             digest: str) -> web.Response:
        if not self.referrers_api:
            return _error(404, "NAME_UNKNOWN", "no such route")
        found = self.referrer_descriptors(name, digest)
        wanted = request.query.get("artifactType")
        headers = {"Content-Type": _OCI_INDEX}
        if wanted and self.referrers_filter:
            found = [d for d in found if d.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        page = int(request.query.get("page", "0"))
        size = self.referrers_page or max(len(found), 1)
        chunk = found[page * size:(page + 1) * size]
        if (page + 1) * size < len(found):
            query = urlencode([(k, v) for k, v in (("artifactType", wanted), ("page", str(page + 1))) if v])
            headers["Link"] = f'</v2/{name}/referrers/{digest}?{query}>; rel="next"'
        body = json.dumps({"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": chunk})
        return web.Response(body=body.encode(), headers=headers)

    def referrer_descriptors(self, name: str, digest: str) -> list[dict[str, Any]]:
        """What the API lists for ``digest``: manifests naming it as subject, then the entries of its
        fallback tag's index (the spec: registries enabling the API include those)."""
        out: list[dict[str, Any]] = []
        for found, (media_type, data) in list(self.manifests.get(name, {}).items()):
            if _subject(data) == digest:
                out.append(_referrer_entry(found, media_type, data))
        fallback = self.tags.get(name, {}).get(digest.replace(":", "-"))
        if fallback is not None:
            listed = json.loads(self.manifests[name][fallback][1]).get("manifests") or []
            have = {d["digest"] for d in out}
            out.extend(d for d in listed if d.get("digest") not in have)
        return out

    # ---------------------------------------------------------------------------------- blobs
    async def _blob_head(self, request: web.Request, record: LoggedRequest, name: str, digest: str) -> web.Response:
        if digest not in self.links.get(name, set()):
            return web.Response(status=404)
        return web.Response(headers={"Content-Length": str(self.blobs[digest]), "Docker-Content-Digest": digest,
                                     "Content-Type": "application/octet-stream"})

    async def _blob_get(self, request: web.Request, record: LoggedRequest, name: str,
                        digest: str) -> web.StreamResponse:
        if digest not in self.links.get(name, set()):
            return _error(404, "BLOB_UNKNOWN", digest)
        # FileResponse answers Range requests with 206 and Content-Range (RFC 9110).
        return web.FileResponse(self.root / "blobs" / digest.split(":", 1)[1],
                                headers={"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"})

    # ---------------------------------------------------------------------------------- uploads
    async def _uploads_post(self, request: web.Request, record: LoggedRequest, name: str) -> web.Response:
        mount, source = request.query.get("mount"), request.query.get("from")
        if mount and not source and self.mount_anywhere and any(mount in d for d in self.links.values()):
            source = next(repo for repo, d in self.links.items() if mount in d)
        if mount and source and mount in self.links.get(source, set()):
            self.links.setdefault(name, set()).add(mount)
            return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{mount}",
                                                     "Docker-Content-Digest": mount})
        session = self._new_session(name)
        digest = request.query.get("digest")
        if digest:  # single-POST monolithic upload (a MAY of the spec)
            await self._receive(request, record, session)
            return self._commit(name, session, digest)
        return self._session_answer(session, 202)

    async def _session_patch(self, request: web.Request, record: LoggedRequest, name: str,
                             uuid: str) -> web.Response:
        session = self._session(name, uuid)
        async with session.lock:
            content_range = request.headers.get("Content-Range")
            if content_range is not None:
                match = _CONTENT_RANGE.match(content_range)
                if match is None or int(match.group(1)) != session.size:
                    # Out of order (spec: MUST answer 416), with where the session stands.
                    return self._session_answer(session, 416)
            await self._receive(request, record, session)
            return self._session_answer(session, 202)

    async def _session_get(self, request: web.Request, record: LoggedRequest, name: str, uuid: str) -> web.Response:
        session = self._session(name, uuid)
        async with session.lock:  # after a broken PATCH has written all it received
            return self._session_answer(session, 204)

    async def _session_put(self, request: web.Request, record: LoggedRequest, name: str, uuid: str) -> web.Response:
        session = self._session(name, uuid)
        digest = request.query.get("digest")
        if not digest:
            return _error(400, "DIGEST_INVALID", "digest missing")
        async with session.lock:
            await self._receive(request, record, session)
            return self._commit(name, session, digest)

    async def _session_delete(self, request: web.Request, record: LoggedRequest, name: str,
                              uuid: str) -> web.Response:
        session = self._session(name, uuid)
        async with session.lock:
            self._close(session)
        return web.Response(status=204)

    def _new_session(self, repo: str) -> _Session:
        ident = str(uuid.uuid4())
        session = _Session(ident, repo, self.root / "uploads" / ident)
        session.path.touch()
        with self._lock:
            self._sessions[ident] = session
            self._session_bytes[ident] = 0
        return session

    def _session(self, repo: str, ident: str) -> _Session:
        session = self._sessions.get(ident)
        if session is None or session.repo != repo:
            raise _Abort(_error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown"))
        return session

    def _session_answer(self, session: _Session, status: int) -> web.Response:
        # 0-0 for an empty session too, as distribution does (docs/registry-quirks.md).
        last = max(session.size - 1, 0)
        return web.Response(status=status, headers={
            "Location": f"/v2/{session.repo}/blobs/uploads/{session.id}", "Range": f"0-{last}",
            "Docker-Upload-UUID": session.id, "Content-Length": "0"})

    async def _receive(self, request: web.Request, record: LoggedRequest, session: _Session) -> None:
        """Append the request body to the session as it arrives; a body cut mid-stream keeps what came."""
        with session.path.open("ab") as out:
            try:
                while True:
                    chunk = await request.content.read(_READ)
                    if not chunk:
                        break
                    out.write(chunk)
                    session.hasher.update(chunk)
                    session.size += len(chunk)
                    session.received += len(chunk)
                    record.body_bytes += len(chunk)
                    with self._lock:
                        self._session_bytes[session.id] += len(chunk)
            except Exception:  # the client went away mid-body: the bytes so far stay committed
                raise _Abort(_error(400, "BLOB_UPLOAD_INVALID", "request body broken")) from None

    def _commit(self, repo: str, session: _Session, digest: str) -> web.Response:
        actual = "sha256:" + session.hasher.hexdigest()
        if actual != digest:
            self._close(session)  # as distribution does: a wrong digest cancels the upload
            return _error(400, "DIGEST_INVALID", f"upload hashes to {actual}")
        target = self.root / "blobs" / digest.split(":", 1)[1]
        session.path.replace(target)
        self.blobs[digest] = session.size
        self.links.setdefault(repo, set()).add(digest)
        with self._lock:
            self._sessions.pop(session.id, None)
            self._blob_bytes[digest] = self._blob_bytes.get(digest, 0) + session.received
        return web.Response(status=201, headers={"Location": f"/v2/{repo}/blobs/{digest}",
                                                 "Docker-Content-Digest": digest, "Content-Length": "0"})

    def _close(self, session: _Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.path.unlink(missing_ok=True)


async def bind_site(runner: web.AppRunner, host: str, ssl_context: ssl.SSLContext | None = None) -> int:
    """Serve ``runner`` on a free port of ``host`` (bound here: no race, and the port is known); return it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    return port


def _subject(data: bytes) -> str | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    subject = obj.get("subject") if isinstance(obj, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def _referrer_entry(digest: str, media_type: str, data: bytes) -> dict[str, Any]:
    obj = json.loads(data)
    entry: dict[str, Any] = {"mediaType": obj.get("mediaType") or media_type, "digest": digest, "size": len(data)}
    kind = obj.get("artifactType") or (obj.get("config") or {}).get("mediaType")
    if kind:
        entry["artifactType"] = kind
    if obj.get("annotations"):
        entry["annotations"] = obj["annotations"]
    return entry


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": message}]}, status=status)


class _Abort(Exception):
    """Ends a request with ``response``."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response
