"""RegistryStore: one repository of a registry as a :class:`Source` and :class:`Destination`.

Owns the blob upload strategy and its fallbacks (docs/architecture.md#copy-engine): a single streamed PATCH by default,
chunked PATCH with ``Content-Range`` when a registry refuses big bodies, a monolithic POST+PUT for
small blobs; when a registry rejects a shape (400, 405, 411, 413, 415, 416, 501 on the data request)
the next one is tried and the choice is remembered per host. A broken upload continues from the
offset the registry says it holds (``GET`` status; spec registries keep the bytes of a cut PATCH)
and is restarted with a fresh POST where the session is gone, as distribution 2.8.2 cancels a
session after an interrupted PATCH (docs/registry-quirks.md). Whatever fails or is cancelled, the open
session is DELETEd (best effort: it needs the ``delete`` action); an optional
:class:`~regcopy.stores.base.UploadJournal` lets a later run resume what a killed one left open.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import anyio

from regcopy.digest import Digest
from regcopy.errors import ContentError, RateLimited, RegcopyError, RegistryError, TransportError
from regcopy.manifest import Descriptor, Manifest, ManifestInfo
from regcopy.registry import Scope, blobs, manifests
from regcopy.registry import referrers as referrer_ops
from regcopy.registry.transport import Transport
from regcopy.stores.base import BlobOpener, IndexOutcome, Origin, ReferrerList, UploadJournal, close_stream
from regcopy.stores.referrers import RegistryFeatures, RegistryReferrers

__all__ = ("RegistryStore", "Strategy", "UploadPolicy", "UploadStats")

log = logging.getLogger(__name__)

Strategy = Literal["stream", "chunked", "monolithic"]
_REJECTED_SHAPE: Final = frozenset({400, 405, 411, 413, 415, 416, 501})
_MIN_CHUNK: Final = 256 * 1024
_MIN_PROGRESS: Final = 1024 * 1024
_GONE: Final = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})
_NOT_SHAPE: Final = frozenset({"DIGEST_INVALID", "BLOB_UPLOAD_INVALID"})


@dataclass(slots=True)
class UploadStats:
    """What uploads to one host cost, for reports, tests and the resume benchmark."""

    bytes_sent: int = 0
    """Request-body bytes handed to the connection, re-sent ones included."""
    sessions: int = 0
    """Upload sessions opened (POSTs)."""
    resumed: int = 0
    """Transfers continued from the offset a registry held (this run's or a journal's session)."""
    restarted: int = 0
    """Fresh sessions after a broken one."""


@dataclass(slots=True)
class UploadPolicy:
    """Per-host upload choices, learned and remembered for the client's life.

    :param strategy: ``stream`` (one PATCH), ``chunked`` (PATCH per chunk) or ``monolithic`` (PUT)
    :param chunk_size: bytes per PATCH in chunked mode (also the buffer size: memory is one chunk)
    :param small_blob: blobs up to this size go monolithic (two round trips instead of three)
    :param restarts: recoveries of one blob after a broken transfer (a resume that gained at least
        1 MiB is free; a fresh session or a smaller gain counts)
    :ivar stats: what uploads to the host cost so far (:class:`UploadStats`)
    """

    strategy: Strategy = "stream"
    chunk_size: int = 16 * 1024 * 1024
    small_blob: int = 1024 * 1024
    restarts: int = 3
    learned: bool = False
    stats: UploadStats = field(default_factory=UploadStats)


class RegistryStore:
    """One repository on one registry, through the client's transport for that host."""

    def __init__(self, transport: Transport, repository: str, policy: UploadPolicy, *, writable: bool = False,
                 journal: UploadJournal | None = None, features: RegistryFeatures | None = None) -> None:
        """
        :param writable: a destination: every request asks for pull,push, so one token serves
            HEADs and PUTs alike (2.8.2 needs both for POST/PUT/PATCH)
        :param journal: records open upload sessions so a later run can resume them (settable later)
        :param features: what the run learned about the host (referrers API, mounts by digest), shared
            by every store on it
        """
        self.transport = transport
        self._repository = repository
        self.policy = policy
        self.writable = writable
        self.journal = journal
        self.features = features if features is not None else RegistryFeatures()
        self._referrers = RegistryReferrers(transport, repository, self.features)
        self._tags: list[str] | None = None

    # -- identity
    @property
    def name(self) -> str:
        return f"{self.transport.registry}/{self._repository}"

    @property
    def origin(self) -> Origin:
        return Origin(self.storage_id, self._repository)

    @property
    def synthesized(self) -> bool:
        return False

    @property
    def served_by(self) -> None:
        return None

    @property
    def storage_id(self) -> str:
        return f"registry:{self.transport.registry}"

    @property
    def shares_blobs(self) -> bool:
        return False

    @property
    def repository(self) -> str:
        return self._repository

    # -- source
    async def head(self, ref: str) -> Digest | None:
        info = await self.head_manifest(ref)
        return None if info is None else info.digest

    async def head_manifest(self, ref: str) -> ManifestInfo | None:
        return await manifests.manifest_head(self.transport, self._repository, ref, scopes=self._scopes())

    async def resolve(self, ref: str) -> Manifest:
        return await manifests.manifest_get(self.transport, self._repository, ref, scopes=self._scopes())

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await manifests.manifest_get(self.transport, self._repository, str(digest), scopes=self._scopes())

    def open_blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        return blobs.blob_chunks(self.transport, self._repository, desc.digest, desc.size, offset=offset)

    def open_blob_at(self, desc: Descriptor, offset: int) -> AsyncIterator[bytes]:
        return self.open_blob(desc, offset)

    async def list_tags(self) -> list[str]:
        try:
            tags = await manifests.tags_list(self.transport, self._repository)
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        self._tags = tags
        return tags

    # -- referrers
    @property
    def keeps_referrers(self) -> bool:
        return True

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = ()) -> ReferrerList:
        if tags is None:
            tags = self._tags if self._tags is not None else await self.list_tags()
        return await self._referrers.listing(subject, tags, artifact_types)

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        return await self._referrers.index(subject, referrers)

    # -- destination
    def _scopes(self) -> tuple[Scope, ...]:
        scope = manifests.push_scope if self.writable else manifests.pull_scope
        return (scope(self._repository),)

    async def has_blob(self, desc: Descriptor) -> bool:
        size = await blobs.blob_head(self.transport, self._repository, desc.digest, scopes=self._scopes())
        return size is not None

    async def delete_manifest(self, digest: Digest) -> None:
        """DELETE by digest (never by tag: 2.8.2 answers 400 to that)."""
        await manifests.manifest_delete(self.transport, self._repository, digest)

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
        """Upload a blob; returns the request-body bytes sent for it, every attempt included.

        A broken transfer (connection lost or timed out, 5xx, 429) asks the registry how much it
        holds (``GET`` status, distribution spec, "Pushing a blob in chunks") and continues from there with the rest
        of the source; where the session is gone (2.8.2 after a broken PATCH: 404
        ``BLOB_UPLOAD_INVALID``, docs/protocol.md#upload-sessions) it restarts with a fresh session, as after a failed
        POST. With a :attr:`journal`, a session an earlier run left open is resumed the same way.
        """
        sent = await self._upload(desc, opener, await self._journaled(desc))
        assert sent is not None  # only a mount by digest ends without sending
        return sent

    async def put_or_mount(self, desc: Descriptor, opener: BlobOpener) -> bool:
        """Upload a blob whose session-opening POST carries ``?mount=<digest>`` (no ``from``): a registry
        that finds the blob anywhere mounts it (201, nothing sent); otherwise the 202 is the upload's own
        session, so asking costs nothing. A registry that refuses the form with an error is not asked
        again (:attr:`RegistryFeatures.mount_anywhere`), which costs one request per host."""
        journaled = await self._journaled(desc)
        return await self._upload(desc, opener, journaled, mount=True) is None

    async def _upload(self, desc: Descriptor, opener: BlobOpener, session: _Session | None, *,
                      mount: bool = False) -> int | None:
        """The upload loop; None when a session-opening ``POST ?mount=`` (``mount``) mounted the blob."""
        tally = _Tally()
        attempts = 0
        try:
            while True:
                strategy = self._strategy_for(desc)
                begun = 0
                try:
                    if session is None:
                        session = await self._open(desc, mount=mount)
                        if session is None:
                            return None
                    begun = session.offset
                    await self._send(desc, opener, strategy, session, tally)
                except _ShapeRejected as exc:
                    self._learn(strategy, exc)
                    if session is not None:
                        await self._drop(desc, session)
                    session = None
                    continue
                except ContentError:
                    raise
                except RegistryError as exc:
                    if exc is tally.source_error:
                        # The source failed for good (its GET already retried and resumed with
                        # Range): not a broken upload, so no restart; the error names the source.
                        raise
                    if not _broken(exc) or attempts >= self.policy.restarts:
                        raise
                    # A pause lets the registry finish the broken request; a 429's Retry-After is
                    # honoured by the transport before the next request (the host pause it set).
                    await anyio.sleep(min(0.25 * (attempts + 1), 2.0))
                    # No session: the POST itself failed (one that took effect is beyond reach).
                    session = None if session is None else await self._recover(desc, session, exc)
                    if session is None:
                        self.policy.stats.restarted += 1
                        attempts += 1
                        log.info("upload of %s broke (%s); restarting with a fresh session", desc.digest.short, exc)
                    else:
                        self.policy.stats.resumed += 1
                        # Progress is free, a resume that gained little is not: ≥ 1 MiB, as c/image's
                        # body_reader decides whether to reconnect.
                        if session.offset - begun < _MIN_PROGRESS:
                            attempts += 1
                        log.info("upload of %s broke (%s); resuming at byte %d of %d", desc.digest.short, exc,
                                 session.offset, desc.size)
                    continue
                self._forget(desc)
                session = None
                return tally.sent
        finally:
            if session is not None:
                # Failed or cancelled: close the session with its newest Location (2.8.2 signs the
                # offset into _state and refuses an older one, docs/protocol.md#upload-sessions).
                with anyio.CancelScope(shield=True):
                    await self._drop(desc, session)

    def _strategy_for(self, desc: Descriptor) -> Strategy:
        if desc.size <= self.policy.small_blob:
            return "monolithic"
        return self.policy.strategy

    def _learn(self, failed: Strategy, exc: _ShapeRejected) -> None:
        if failed == "monolithic" and self.policy.strategy == "monolithic":
            raise exc.cause
        if failed == "stream":
            self.policy.strategy = "chunked"
        elif failed == "chunked" and exc.status == 413 and self.policy.chunk_size > _MIN_CHUNK:
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

    # -- sessions
    async def _open(self, desc: Descriptor, *, mount: bool = False) -> _Session | None:
        """A new session (None: ``mount`` asked for the blob by digest and the registry mounted it)."""
        # Shielded: once the registry has opened a session we must learn its Location, or a
        # cancellation here would leave a session nobody can delete (bounded by the timeouts).
        with anyio.CancelScope(shield=True):
            if mount and not self.features.refuses_mount():
                opened = await self._open_mounting(desc)
                if opened is None:
                    return None
                location, min_chunk = opened
            else:
                location, min_chunk = await blobs.upload_start(self.transport, self._repository)
            self.policy.stats.sessions += 1
            if self.journal is not None:
                self.journal.session_opened(self.storage_id, self._repository, desc.digest, location)
        return _Session(location, 0, min_chunk)

    async def _open_mounting(self, desc: Descriptor) -> tuple[str, int] | None:
        """``POST ?mount=<digest>``: None when mounted, else the session it opened. Until the host's
        first answer, concurrent uploads wait for it; a refusal (4xx) is learned and answered with a
        plain POST."""
        features = self.features
        async with contextlib.AsyncExitStack() as stack:
            if not features.mount_asked:
                await stack.enter_async_context(features.mount_learning)
            if features.refuses_mount():  # learned while this one waited
                return await blobs.upload_start(self.transport, self._repository)
            try:
                result = await blobs.blob_mount(self.transport, self._repository, desc.digest, None)
            except RegistryError as exc:
                if exc.status is None or not 400 <= exc.status < 500 or exc.status in (401, 408, 429):
                    raise  # a broken or refused POST, as a plain one would be: the upload loop decides
                features.mount_anywhere, features.mount_asked = False, True
                features.probes += 1
                log.info("%s refuses mounts without 'from' (%s); not asking again", self.transport.registry, exc)
                return await blobs.upload_start(self.transport, self._repository)
            features.mount_asked = True
        if result.mounted:
            features.mount_anywhere = True
            return None
        assert result.location is not None  # a 202 always carries one (blob_mount checks)
        return result.location, result.min_chunk

    async def _journaled(self, desc: Descriptor) -> _Session | None:
        """The session an earlier run left for this blob, at the offset the registry holds, if usable."""
        if self.journal is None:
            return None
        location = self.journal.session_for(self.storage_id, self._repository, desc.digest)
        if location is None:
            return None
        session = await self._status(desc, location, desc.size)
        if session is not None:
            self.policy.stats.resumed += 1
            log.info("resuming the upload of %s an earlier run left at byte %d of %d", desc.digest.short,
                     session.offset, desc.size)
        return session

    async def _recover(self, desc: Descriptor, session: _Session, exc: RegistryError) -> _Session | None:
        """After a broken transfer: the session to continue, at the registry's offset, or None."""
        if _GONE & set(exc.codes):
            self._forget(desc)  # the registry says the session is over: nothing to resume or cancel
            return None
        return await self._status(desc, session.location, session.reach)

    async def _status(self, desc: Descriptor, location: str, bound: int) -> _Session | None:
        """GET the session's status (spec: ``204`` with ``Range: 0-<last>`` and ``Location``).

        Resumable when the registry holds more than one byte and no more than ``bound`` (what was
        sent, or the blob's size): ``0-0`` means both "empty" and "one byte" on 2.8.2
        (docs/registry-quirks.md), so it restarts. A gone session (404, ``BLOB_UPLOAD_*``) is forgotten; any other
        unusable one is cancelled. None means "start a fresh session".
        """
        t, repo = self.transport, self._repository
        try:
            newest, held = await blobs.upload_status(t, repo, location)
        except RegistryError as exc:
            log.info("status of the upload of %s: %s", desc.digest.short, exc)
            if exc.status != 404 and not (_GONE & set(exc.codes)):
                await self._cancel(location)
            self._forget(desc)
            return None
        if held is None or held <= 1 or held > min(bound, desc.size):
            await self._cancel(newest)
            self._forget(desc)
            return None
        session = _Session(location, held, reach=min(bound, desc.size))  # what may be there stays the bound
        self._moved(desc, session, newest, held)
        return session

    async def _drop(self, desc: Descriptor, session: _Session) -> None:
        """Cancel a session (best effort) and forget it."""
        await self._cancel(session.location)
        self._forget(desc)

    async def _cancel(self, location: str) -> None:
        with anyio.CancelScope(shield=True):
            await blobs.upload_cancel(self.transport, self._repository, location)

    def _moved(self, desc: Descriptor, session: _Session, location: str, offset: int) -> None:
        """The registry answered a request of the session: it holds ``offset`` bytes, next at ``location``."""
        session.offset = offset
        session.reach = max(session.reach, offset)
        if location != session.location:
            session.location = location
            if self.journal is not None:
                self.journal.session_moved(self.storage_id, self._repository, desc.digest, location)

    def _forget(self, desc: Descriptor) -> None:
        if self.journal is not None:
            self.journal.session_closed(self.storage_id, self._repository, desc.digest)

    # -- sending
    async def _send(self, desc: Descriptor, opener: BlobOpener, strategy: Strategy, session: _Session,
                    tally: _Tally) -> None:
        """Send the blob from ``session.offset`` (0, or where a resumed session stands) and close it."""
        t, repo = self.transport, self._repository
        start = session.sent = session.offset
        session.reach = max(session.reach, start)
        opener = _watched(opener, tally)
        try:
            if start >= desc.size:
                # The registry holds every byte (a session resumed after its last PATCH): the opener
                # still verifies the source; then close.
                drained = opener(start)
                try:
                    async for _ in drained:
                        pass
                finally:
                    await close_stream(drained)  # as in _send_chunked: closed in this task if cancelled
                await blobs.upload_finish(t, repo, session.location, desc.digest)
            elif strategy == "monolithic":
                await blobs.upload_finish(t, repo, session.location, desc.digest,
                                          self._counted(opener(start), session, tally), desc.size - start)
            elif strategy == "stream":
                location = await blobs.upload_stream(t, repo, session.location,
                                                     self._counted(opener(start), session, tally),
                                                     desc.size - start, start=start)
                self._moved(desc, session, location, desc.size)
                await blobs.upload_finish(t, repo, session.location, desc.digest)
            else:
                await self._send_chunked(desc, opener, session, max(self.policy.chunk_size, session.min_chunk),
                                         tally)
        except RegistryError as exc:
            # On a resumed session a 416 says the offset is wrong (spec), not that the shape is.
            resumed_416 = start > 0 and exc.status == 416
            if exc.status in _REJECTED_SHAPE and not (_NOT_SHAPE & set(exc.codes)) and not resumed_416:
                raise _ShapeRejected(exc) from exc
            raise

    async def _send_chunked(self, desc: Descriptor, opener: BlobOpener, session: _Session, chunk_size: int,
                            tally: _Tally) -> None:
        t, repo = self.transport, self._repository
        offset = session.offset
        buffer = bytearray()
        source = opener(offset)
        try:
            async for piece in source:
                buffer += piece
                while len(buffer) >= chunk_size:
                    chunk = bytes(buffer[:chunk_size])
                    del buffer[:chunk_size]
                    self._offered(session, tally, len(chunk))
                    location, _ = await blobs.upload_chunk(t, repo, session.location, chunk, offset)
                    offset += len(chunk)
                    self._moved(desc, session, location, offset)
        finally:
            await close_stream(source)  # cancelled mid-PATCH: closed here, not by the loop in another task
        # The last (possibly short) chunk rides on the closing PUT: one round trip fewer.
        self._offered(session, tally, len(buffer))
        await blobs.upload_finish(t, repo, session.location, desc.digest, bytes(buffer))

    async def _counted(self, chunks: AsyncIterator[bytes], session: _Session, tally: _Tally) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                self._offered(session, tally, len(chunk))
                yield chunk
        finally:
            await close_stream(chunks)  # closed with this one, in this task (close_stream)

    def _offered(self, session: _Session, tally: _Tally, n: int) -> None:
        session.sent += n
        session.reach = max(session.reach, session.sent)
        tally.sent += n
        self.policy.stats.bytes_sent += n

    async def put_manifest(self, manifest: Manifest, tag: str | None) -> None:
        ref = tag or str(manifest.digest)
        if manifest.subject is None:
            await manifests.manifest_put(self.transport, self._repository, ref, manifest)
        else:
            # Pushing a referrer tells whether the host indexes subjects itself (distribution spec,
            # "Pushing Manifests with Subject": OCI-Subject in the answer), at no extra cost.
            indexed = await referrer_ops.manifest_push(self.transport, self._repository, ref, manifest)
            self.features.referrers_api = indexed
        if tag is not None and self._tags is not None and tag not in self._tags:
            self._tags = sorted([*self._tags, tag])


@dataclass(slots=True)
class _Session:
    """An open upload session: the newest Location the registry handed out and what it holds."""

    location: str
    offset: int = 0
    """Bytes the registry confirmed (a PATCH answer or a status): where the next attempt starts."""
    min_chunk: int = 0
    sent: int = 0
    """Where the current attempt stands: its start plus what it offered."""
    reach: int = 0
    """The furthest any attempt on this session got: more than this the registry cannot hold. Not
    lowered by a status answer (one that claimed too little is followed by a 416, and the next status
    must still be believed when it tells the truth), nor by a new attempt starting lower."""


@dataclass(slots=True)
class _Tally:
    sent: int = 0
    source_error: RegcopyError | None = None
    """The error the source's stream raised, if any (it reaches put_blob through aiohttp unchanged)."""


def _watched(opener: BlobOpener, tally: _Tally) -> BlobOpener:
    """``opener`` with the source's own failure recorded in ``tally``."""

    async def chunks(offset: int = 0, /) -> AsyncIterator[bytes]:
        inner = opener(offset)
        try:
            async for chunk in inner:
                yield chunk
        except RegcopyError as exc:
            tally.source_error = exc
            raise
        finally:
            await close_stream(inner)  # closed with this one, in this task (close_stream)

    return chunks


def _broken(exc: RegistryError) -> bool:
    """A request that broke rather than was refused: the connection or the registry failed (5xx), it
    asked to slow down (429), the session is gone (``BLOB_UPLOAD_INVALID``/``_UNKNOWN``: start over,
    docs/protocol.md#retries-and-resumption), a resumed request met a 416 (the registry holds another
    offset than it said), or a token expired under a streamed body the transport could not replay (401:
    it dropped the refused token, so the next request fetches a fresh one; a credential that stays wrong
    ends after the bounded restarts)."""
    return (isinstance(exc, TransportError | RateLimited) or (exc.status or 0) >= 500
            or exc.status in (401, 416) or bool(_GONE & set(exc.codes)))


class _ShapeRejected(Exception):
    def __init__(self, cause: RegistryError) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.status = cause.status
