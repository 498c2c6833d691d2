"""MirroredSource: read an image through pull-through caches first, falling back to the upstream.

Owns the order and fallback of source mirrors (containerd/Buildkit ``registry.mirrors`` semantics): every
read goes to the first mirror that answers it, else the next, else the upstream registry. Each candidate is
a complete store with the transport, TLS settings and credentials of its own host, so credentials are never
forwarded from the upstream to a mirror (Buildkit's rule; tested against a real cache in
tests/integration/test_mirrors.py). A mirror that fails at the connection level is skipped for the rest of
the run (its timeouts are paid once, not per blob); one that answers an error (404: the cache cannot reach
the image; 5xx) is skipped for that read only. Every byte is still verified against the digests the engine
asked for, so a mirror can make a copy fail over but never make it wrong.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from regcopy.digest import Digest
from regcopy.errors import ContentError, RegcopyError, StoreError, TransportError
from regcopy.manifest import Descriptor, Manifest
from regcopy.stores.base import IndexOutcome, Origin, ReferrerList, Referrers, Source

__all__ = ("MirroredSource",)

log = logging.getLogger(__name__)
T = TypeVar("T")


class MirroredSource:
    """A :class:`Source` trying ``mirrors`` in order, then ``upstream``.

    :param upstream: the registry the image belongs to (also the mount origin)
    :param mirrors: ``(label, store)`` pairs, in the order they are tried
    :param broken: labels of mirrors already found unreachable (shared across a run's sources)
    """

    def __init__(self, upstream: Source, mirrors: Sequence[tuple[str, Source]], *,
                 upstream_label: str, broken: set[str] | None = None) -> None:
        self.upstream = upstream
        self.upstream_label = upstream_label
        self.mirrors = list(mirrors)
        self.broken = broken if broken is not None else set()
        self._served: list[str] = []

    def _note(self, label: str) -> None:
        if label not in self._served:
            self._served.append(label)

    def _candidates(self) -> list[tuple[str, Source]]:
        return [(label, s) for label, s in self.mirrors if label not in self.broken]

    async def _first(self, what: str, call: Callable[[Source], Awaitable[T]]) -> T:
        for label, store in self._candidates():
            try:
                result = await call(store)
            except ContentError as exc:
                log.warning("mirror %s served bad %s (%s); trying the next", label, what, exc)
                continue
            except TransportError as exc:
                log.warning("mirror %s unreachable (%s); not used again in this run", label, exc)
                self.broken.add(label)
                continue
            except RegcopyError as exc:
                log.info("mirror %s could not serve %s (%s); trying the next", label, what, exc)
                continue
            self._note(label)
            return result
        result = await call(self.upstream)
        self._note(self.upstream_label)
        return result

    # -- identity
    @property
    def name(self) -> str:
        return self.upstream.name

    @property
    def origin(self) -> Origin | None:
        return self.upstream.origin

    @property
    def synthesized(self) -> bool:
        return self.upstream.synthesized

    @property
    def served_by(self) -> list[str]:
        """Which candidates served reads, in the order first used (for the report)."""
        return list(self._served)

    # -- reads
    async def head(self, ref: str) -> Digest | None:
        try:
            return await self._first(f"manifest {ref}", lambda s: _head_or_fail(s, ref, s is self.upstream))
        except _Absent:
            return None

    async def resolve(self, ref: str) -> Manifest:
        return await self._first(f"manifest {ref}", lambda s: s.resolve(ref))

    async def get_manifest(self, digest: Digest) -> Manifest:
        return await self._first(f"manifest {digest.short}", lambda s: s.get_manifest(digest))

    @property
    def keeps_referrers(self) -> bool:
        return isinstance(self.upstream, Referrers)

    async def referrers(self, subject: Digest, *, tags: Sequence[str] | None = None,
                        artifact_types: Sequence[str] = ()) -> ReferrerList:
        """Asked of the upstream, as tag lists are: a pull-through cache knows only what was pulled."""
        if not isinstance(self.upstream, Referrers):
            return ReferrerList(subject)
        return await self.upstream.referrers(subject, tags=tags, artifact_types=artifact_types)

    async def index_referrers(self, subject: Digest, referrers: Sequence[Manifest]) -> IndexOutcome:
        raise StoreError(f"{self.name} is a source")

    async def list_tags(self) -> list[str]:
        return await self.upstream.list_tags()  # tags lists are not pulls; a cache may be stale

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        """The blob from the first candidate whose stream starts; a stream that breaks later fails
        this attempt (the engine restarts the blob, and then this mirror may be skipped)."""

        async def start(store: Source) -> tuple[AsyncIterator[bytes], bytes | None]:
            stream = store.open_blob(desc)
            try:
                return stream, await anext(stream, None)
            except BaseException:
                await _close(stream)
                raise

        stream, first = await self._first(f"blob {desc.digest.short}", start)
        if first is not None:
            yield first
        async for chunk in stream:
            yield chunk


class _Absent(RegcopyError):
    """A HEAD found nothing on a mirror: try the next candidate before saying the image is absent."""


async def _head_or_fail(store: Source, ref: str, upstream: bool) -> Digest | None:
    found = await store.head(ref)
    if found is None and not upstream:
        raise _Absent(f"{ref} not found")
    return found


async def _close(stream: AsyncIterator[bytes]) -> None:
    if isinstance(stream, AsyncGenerator):
        await stream.aclose()
