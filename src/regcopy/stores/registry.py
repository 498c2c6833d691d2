"""RegistryStore: one repository of a registry as a :class:`Source` and :class:`Destination`.

Owns the blob upload strategy and its fallbacks (ISSUE #4 §3): a single streamed PATCH by default,
chunked PATCH with ``Content-Range`` when a registry refuses big bodies, a monolithic POST+PUT for
small blobs; when a registry rejects a shape (413, 416, 405, 400/500 on PATCH) the next one is tried
and the choice is remembered per host. A broken upload is restarted with a fresh POST, because
distribution 2.8.2 cancels a session after an interrupted PATCH (PROTOCOL §2.1). Whatever fails or
is cancelled, the open session is DELETEd (best effort: it needs the ``delete`` action).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

import anyio

from regcopy.digest import Digest
from regcopy.errors import ContentError, RegistryError, TransportError
from regcopy.manifest import Descriptor, Manifest
from regcopy.registry import blobs, manifests
from regcopy.registry._challenge import Scope
from regcopy.registry.transport import Transport
from regcopy.stores.base import BlobOpener

__all__ = ("RegistryStore", "Strategy", "UploadPolicy")

log = logging.getLogger(__name__)

Strategy = Literal["stream", "chunked", "monolithic"]
REJECTED_SHAPE: Final = frozenset({400, 405, 411, 413, 415, 416, 501})
MIN_CHUNK: Final = 256 * 1024


@dataclass(slots=True)
class UploadPolicy:
    """Per-host upload choices, learned and remembered for the client's life.

    :param strategy: ``stream`` (one PATCH), ``chunked`` (PATCH per chunk) or ``monolithic`` (PUT)
    :param chunk_size: bytes per PATCH in chunked mode (also the buffer size: memory is one chunk)
    :param small_blob: blobs up to this size go monolithic (two round trips instead of three)
    :param restarts: fresh-session restarts of one blob after a broken connection
    """

    strategy: Strategy = "stream"
    chunk_size: int = 16 * 1024 * 1024
    small_blob: int = 1024 * 1024
    restarts: int = 3
    learned: bool = False


class RegistryStore:
    """One repository on one registry, through the client's transport for that host."""

    def __init__(self, transport: Transport, repository: str, policy: UploadPolicy, *, writable: bool = False) -> None:
        """
        :param writable: a destination: every request asks for pull,push, so one token serves
            HEADs and PUTs alike (2.8.2 needs both for POST/PUT/PATCH)
        """
        self.transport = transport
        self._repository = repository
        self.policy = policy
        self.writable = writable

    # -- identity
    @property
    def name(self) -> str:
        return f"{self.transport.registry}/{self._repository}"

    @property
    def origin(self) -> tuple[str, str] | None:
        return self.transport.registry, self._repository

    @property
    def storage_id(self) -> str:
        return f"registry:{self.transport.registry}"

    @property
    def repository(self) -> str:
        return self._repository

    # -- source
    async def head(self, ref: str) -> Digest | None:
        info = await manifests.manifest_head(self.transport, self._repository, ref, scopes=self._scopes())
        return None if info is None else info.digest

    async def resolve(self, ref: str) -> Manifest:
        return await manifests.manifest_get(self.transport, self._repository, ref, scopes=self._scopes())

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await manifests.manifest_get(self.transport, self._repository, str(digest), scopes=self._scopes())

    def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        return blobs.blob_chunks(self.transport, self._repository, desc.digest, desc.size)

    async def list_tags(self) -> list[str]:
        try:
            return await manifests.tags_list(self.transport, self._repository)
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise

    # -- destination
    def _scopes(self) -> tuple[Scope, ...]:
        scope = manifests.push_scope if self.writable else manifests.pull_scope
        return (scope(self._repository),)

    async def has_blob(self, desc: Descriptor) -> bool:
        size = await blobs.blob_head(self.transport, self._repository, desc.digest, scopes=self._scopes())
        return size is not None

    async def mount_blob(self, desc: Descriptor, from_repository: str) -> bool:
        try:
            result = await blobs.blob_mount(self.transport, self._repository, desc.digest, from_repository)
        except RegistryError as exc:
            # A refused mount is not fatal: fall back to a plain upload (ggcr #1404, #1679).
            log.info("mount of %s from %s refused: %s", desc.digest.short, from_repository, exc)
            return False
        if not result.mounted and result.location:
            # The 202 opened a session. Close it now rather than park it for the upload: a
            # cancellation between the two would leave it open (containers/image does the same).
            with anyio.CancelScope(shield=True):
                await blobs.upload_cancel(self.transport, self._repository, result.location)
        return result.mounted

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        attempts = 0
        while True:
            strategy = self._strategy_for(desc)
            try:
                return await self._upload(desc, opener, strategy)
            except _ShapeRejected as exc:
                self._learn(strategy, exc)
            except TransportError as exc:
                attempts += 1
                if attempts > self.policy.restarts:
                    raise
                log.info("upload of %s broke (%s); restarting with a fresh session", desc.digest.short, exc)
                await anyio.sleep(min(0.25 * attempts, 2.0))
            except RegistryError as exc:
                # BLOB_UPLOAD_INVALID / _UNKNOWN: the session is gone; start over (PROTOCOL §5).
                if {"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"} & set(exc.codes) and attempts < self.policy.restarts:
                    attempts += 1
                    continue
                raise

    def _strategy_for(self, desc: Descriptor) -> Strategy:
        if desc.size <= self.policy.small_blob:
            return "monolithic"
        return self.policy.strategy

    def _learn(self, failed: Strategy, exc: _ShapeRejected) -> None:
        if failed == "monolithic" and self.policy.strategy == "monolithic":
            raise exc.cause
        if failed == "stream":
            self.policy.strategy = "chunked"
        elif failed == "chunked" and exc.status == 413 and self.policy.chunk_size > MIN_CHUNK:
            self.policy.chunk_size //= 2
        elif failed == "chunked":
            self.policy.strategy = "monolithic"
        elif failed == "monolithic":
            self.policy.small_blob = 0  # small blobs go through the host's general strategy from now on
        else:
            raise exc.cause
        self.policy.learned = True
        log.warning("%s rejected %s upload (%s); using %s from now on", self.transport.registry, failed,
                    exc.cause, self.policy.strategy)

    async def _upload(self, desc: Descriptor, opener: BlobOpener, strategy: Strategy) -> int:
        t, repo = self.transport, self._repository
        # Shielded: once the registry has opened a session we must learn its Location, or a
        # cancellation here would leave a session nobody can delete (bounded by the timeouts).
        with anyio.CancelScope(shield=True):
            location, min_chunk = await blobs.upload_start(t, repo)
        session = _Session(location)
        done = False
        try:
            sent = await self._send(desc, opener, strategy, session, min_chunk)
            done = True
            return sent
        finally:
            if not done:
                # The newest Location: 2.8.2 signs the offset into _state, and an older one is
                # refused (PROTOCOL §2.1), which would leave the session open.
                with anyio.CancelScope(shield=True):
                    await blobs.upload_cancel(t, repo, session.location)

    async def _send(self, desc: Descriptor, opener: BlobOpener, strategy: Strategy, session: _Session,
                    min_chunk: int) -> int:
        t, repo = self.transport, self._repository
        try:
            if strategy == "monolithic":
                await blobs.upload_finish(t, repo, session.location, desc.digest, opener(), desc.size)
            elif strategy == "stream":
                session.location = await blobs.upload_stream(t, repo, session.location, opener(), desc.size)
                await blobs.upload_finish(t, repo, session.location, desc.digest)
            else:
                await self._send_chunked(desc, opener, session, max(self.policy.chunk_size, min_chunk))
        except ContentError:
            raise
        except RegistryError as exc:
            if exc.status in REJECTED_SHAPE and not ({"DIGEST_INVALID", "BLOB_UPLOAD_INVALID"} & set(exc.codes)):
                raise _ShapeRejected(exc) from exc
            raise
        return desc.size

    async def _send_chunked(self, desc: Descriptor, opener: BlobOpener, session: _Session, chunk_size: int) -> None:
        t, repo = self.transport, self._repository
        offset = 0
        buffer = bytearray()
        async for piece in opener():
            buffer += piece
            while len(buffer) >= chunk_size:
                chunk = bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
                session.location, _ = await blobs.upload_chunk(t, repo, session.location, chunk, offset)
                offset += len(chunk)
        # The last (possibly short) chunk rides on the closing PUT: one round trip fewer.
        await blobs.upload_finish(t, repo, session.location, desc.digest, bytes(buffer))

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        await manifests.manifest_put(self.transport, self._repository, tag or str(manifest.digest), manifest)


@dataclass(slots=True)
class _Session:
    """An open upload session: always the newest Location the registry handed out."""

    location: str


class _ShapeRejected(Exception):
    def __init__(self, cause: RegistryError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.status = cause.status
