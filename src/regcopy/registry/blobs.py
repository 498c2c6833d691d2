"""Blob operations on a registry: HEAD, streaming GET with Range resume, mount, and upload primitives.

Upload shapes (distribution spec, "Pushing blobs"; docs/protocol.md#pushing-blobs, docs/protocol.md#upload-sessions):

* streamed PATCH: ``POST`` → one ``PATCH`` carrying the whole blob → ``PUT ?digest=`` (skopeo, ggcr);
* chunked PATCH: ``POST`` → ``PATCH`` per chunk with ``Content-Range`` → ``PUT ?digest=``;
* monolithic: ``POST`` → ``PUT ?digest=`` with the body (small blobs: two round trips, no third);
* resume: ``GET`` the session status for the bytes the registry holds, then any shape from there.

Always the newest ``Location`` is used, query included and never re-encoded (2.8.2 signs the
session's offset into ``_state``). Choosing and falling back between shapes is the store's job.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

import anyio

from regcopy.digest import Digest
from regcopy.errors import DigestMismatch, NotFound, ProtocolViolation, RegistryError, TransportError
from regcopy.registry._challenge import Scope
from regcopy.registry._errors import redact_url
from regcopy.registry._headers import parse_content_range, parse_upload_range
from regcopy.registry.manifests import digest_header, pull_scope, push_scope
from regcopy.registry.transport import Reply, Transport

__all__ = (
    "MountResult",
    "blob_chunks",
    "blob_head",
    "blob_mount",
    "upload_cancel",
    "upload_chunk",
    "upload_finish",
    "upload_start",
    "upload_status",
    "upload_stream",
)

log = logging.getLogger(__name__)

_OCTET: Final = "application/octet-stream"
_READ_SIZE: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class MountResult:
    """A mount attempt: ``mounted`` (201), or the upload session the registry opened instead (202),
    with its minimum chunk length (``OCI-Chunk-Min-Length``, 0 when unset)."""

    mounted: bool
    location: str | None
    min_chunk: int = 0


async def blob_head(t: Transport, repo: str, digest: Digest, *, scopes: Sequence[Scope] = ()) -> int | None:
    """The size of a blob in ``repo``, or None when it is not there (blobs are linked per repository)."""
    try:
        reply = await t.request("HEAD", f"/v2/{repo}/blobs/{digest}", scopes=scopes or (pull_scope(repo),),
                                what="blob", ok=(200,))
    except NotFound:
        return None
    length = reply.headers.get("Content-Length", "")
    return int(length) if length.isascii() and length.isdigit() else -1


async def blob_chunks(
    t: Transport,
    repo: str,
    digest: Digest,
    size: int | None,
    *,
    offset: int = 0,
    resumes: int = 3,
    read_size: int = _READ_SIZE,
) -> AsyncIterator[bytes]:
    """Stream a blob's bytes from ``offset``; a broken stream resumes with ``Range: bytes=N-``.

    Redirects (to storage or a CDN) are followed, without credentials on another origin. The body is
    read under the minimum-progress rule (a stall is a timeout, resumed like a break). Resume needs a 206 whose
    ``Content-Range`` starts at the offset asked for (c/image docker/body_reader.go); a registry
    answering 200 to a Range request cannot resume and the original error is raised.
    Bytes are not verified here: the engine wraps this in a VerifyingStream.
    """
    pos = offset
    failures = 0
    path = f"/v2/{repo}/blobs/{digest}"
    while True:
        headers = {"Range": f"bytes={pos}-"} if pos else {}
        try:
            async with t.stream("GET", path, scopes=(pull_scope(repo),), headers=headers, ok=(200, 206),
                                what="blob", follow_redirects=True, blob=True) as resp:
                if pos:
                    _check_resumed(t, resp.status, resp.headers.get("Content-Range"), pos, str(resp.url))
                async for chunk in t.blob_body(resp, read_size):
                    pos += len(chunk)
                    yield chunk
            _check_whole(t, path, pos, size)
            return
        except TransportError as exc:
            failures += 1
            if failures > resumes:
                raise
            log.info("GET blob %s broke at byte %d (%s); resuming with Range", digest.short, pos, exc)
            await anyio.sleep(min(0.2 * failures, 2.0))


def _check_whole(t: Transport, path: str, pos: int, size: int | None) -> None:
    """A stream that ended before ``size`` bytes broke (a connection closed early): resume it."""
    if size is not None and pos < size:
        raise TransportError(f"blob body ended after {pos} of {size} bytes", registry=t.registry,
                             method="GET", url=redact_url(t.url(path)))


def _check_resumed(t: Transport, status: int, content_range: str | None, pos: int, url: str) -> None:
    if status != 206:
        raise TransportError("registry ignored Range on resume (answered 200)", registry=t.registry,
                             method="GET", url=redact_url(url), status=status)
    first, _, _ = parse_content_range(content_range)
    if first != pos:
        raise ProtocolViolation(f"Content-Range starts at {first}, asked for {pos}", registry=t.registry,
                                method="GET", url=redact_url(url), status=status)


async def blob_mount(t: Transport, repo: str, digest: Digest, from_repo: str | None) -> MountResult:
    """Cross-repository mount (``POST ?mount=&from=``): 201 mounted, 202 an upload session opened.

    2.8.2 only mounts when both parameters are present and the token grants pull on ``from``
    in the same token (docs/protocol.md#pushing-blobs, docs/protocol.md#scopes). Without ``from_repo``
    the registry may look for the blob anywhere (distribution spec: ``from`` MAY be optional); 2.8.2
    ignores ``mount`` alone and opens a plain session.
    """
    path = f"/v2/{repo}/blobs/uploads/?mount={quote(str(digest), safe=':')}"
    scopes = [push_scope(repo)]
    if from_repo is not None:
        path += f"&from={quote(from_repo, safe='/')}"
        scopes.append(pull_scope(from_repo))
    # Shielded like upload_start: a 202 opens a session, whose Location the caller must see to close it.
    with anyio.CancelScope(shield=True):
        reply = await t.request("POST", path, scopes=scopes, ok=(201, 202), retry=False)
    if reply.status == 201:
        return MountResult(True, None)
    return MountResult(False, _location(t, reply), _min_chunk(reply))


async def upload_start(t: Transport, repo: str) -> tuple[str, int]:
    """Open an upload session; returns its absolute Location and the registry's minimum chunk
    length (``OCI-Chunk-Min-Length``, spec §Pushing a blob in chunks; 0 when it sets none)."""
    reply = await t.request("POST", f"/v2/{repo}/blobs/uploads/", scopes=(push_scope(repo),), ok=(202,),
                            headers={"Content-Length": "0"}, retry=False)
    return _location(t, reply), _min_chunk(reply)


def _min_chunk(reply: Reply) -> int:
    min_length = reply.headers.get("OCI-Chunk-Min-Length", "").strip()
    # isascii too: str.isdigit() accepts '²', which int() refuses.
    usable = min_length.isascii() and min_length.isdigit() and len(min_length) <= 18
    return int(min_length) if usable else 0


async def upload_stream(
    t: Transport, repo: str, location: str, chunks: AsyncIterable[bytes], size: int | None, *, start: int = 0
) -> str:
    """Send the whole blob in one PATCH (streamed body, Content-Length when the size is known).

    :param start: resume at this offset (what the registry holds, from :func:`upload_status`): the
        body is the rest of the blob and carries ``Content-Range: start-end``, so a registry holding
        another offset answers 416 instead of appending in the wrong place (spec §Pushing a blob in
        chunks)
    """
    headers = {"Content-Type": _OCTET}
    if size is not None:
        headers["Content-Length"] = str(size)
    if start and size:
        headers["Content-Range"] = f"{start}-{start + size - 1}"
    reply = await t.request("PATCH", location, scopes=(push_scope(repo),), headers=headers, data=chunks,
                            ok=(202, 204), retry=False, blob=True)
    return _location(t, reply)


async def upload_chunk(t: Transport, repo: str, location: str, data: bytes, start: int) -> tuple[str, int | None]:
    """PATCH one chunk with ``Content-Range: start-end``; returns the next Location and the Range end+1."""
    headers = {
        "Content-Type": _OCTET,
        "Content-Range": f"{start}-{start + len(data) - 1}",
        "Content-Length": str(len(data)),
    }
    reply = await t.request("PATCH", location, scopes=(push_scope(repo),), headers=headers, data=data,
                            ok=(202, 204), retry=False, blob=True)
    return _location(t, reply), _range(t, reply)


async def upload_finish(
    t: Transport, repo: str, location: str, digest: Digest, data: bytes | AsyncIterable[bytes] = b"",
    size: int | None = None,
) -> None:
    """Close a session with ``PUT ?digest=``, optionally carrying bytes (the last chunk, or the whole
    blob for a monolithic upload, streamed when ``data`` is an async iterable of ``size`` bytes)."""
    url = location + ("&" if "?" in location else "?") + "digest=" + quote(str(digest), safe=":")
    length = len(data) if isinstance(data, bytes) else size
    headers = {"Content-Type": _OCTET}
    if length is not None:
        headers["Content-Length"] = str(length)
    reply = await t.request("PUT", url, scopes=(push_scope(repo),), headers=headers, data=data, ok=(201, 204),
                            retry=False, blob=bool(data))
    stored = reply.headers.get("Docker-Content-Digest")
    if stored:
        stored_digest = digest_header(t, stored, reply)
        if stored_digest != digest:
            raise DigestMismatch(str(digest), str(stored_digest), what=f"blob stored on {t.registry}/{repo}")


async def upload_status(t: Transport, repo: str, location: str) -> tuple[str, int | None]:
    """GET the session status: the Location to continue with and the bytes the registry holds
    (``Range: 0-<last>``, None without one; 2.8.2 answers ``0-0`` for an empty session,
    docs/registry-quirks.md).

    A session that is gone is 404 ``BLOB_UPLOAD_UNKNOWN``/``_INVALID`` (2.8.2 after a broken PATCH)."""
    reply = await t.request("GET", location, scopes=(push_scope(repo),), ok=(204, 200))
    return _location(t, reply), _range(t, reply)


async def upload_cancel(t: Transport, repo: str, location: str) -> bool:
    """Best-effort ``DELETE`` of an upload session (docs/protocol.md#upload-sessions); needs the ``delete``
    action under token auth, so failures are expected and ignored. Returns whether it worked."""
    scopes = (Scope.repository(repo, "pull", "push", "delete"),)
    with anyio.move_on_after(10):
        # A DELETE that lands while 2.8.2 still tears down the PATCH this client just broke
        # races that cleanup and gets 500 ("directory not empty"): a 5xx is retried briefly.
        for delay in (0.1, 0.3, 0.6, None):
            try:
                await t.request("DELETE", location, scopes=scopes, ok=(200, 202, 204), retry=False)
                return True
            except RegistryError as exc:
                log.debug("cancel upload on %s/%s failed: %s", t.registry, repo, exc)
                if delay is None or exc.status is None or exc.status < 500:
                    return False
            await anyio.sleep(delay)
    return False


def _location(t: Transport, reply: Reply) -> str:
    """The absolute Location of an upload answer; the transport's origin rule decides where it may go
    (another origin: no credentials; https → http: refused)."""
    location = reply.headers.get("Location")
    if not location:
        raise ProtocolViolation("upload answer without Location", registry=t.registry,
                                url=redact_url(reply.url), status=reply.status)
    return t.target(location, base=reply.url, what="upload Location").url


def _range(t: Transport, reply: Reply) -> int | None:
    try:
        return parse_upload_range(reply.headers.get("Range"))
    except ProtocolViolation as exc:
        raise ProtocolViolation(exc.message, registry=t.registry, url=redact_url(reply.url),
                                status=reply.status) from exc
