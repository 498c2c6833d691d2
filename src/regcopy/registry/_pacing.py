"""Time bounds on registry exchanges (docs/security.md): a total deadline for small answers, a
minimum-progress rule for blob bodies.

aiohttp's ``sock_read`` timeout bounds each read, not an answer: a server that drips one byte every
few seconds keeps a request alive for ever. So the transport bounds exchanges itself:

* a request without blob bytes (manifests, tag lists, catalog pages, tokens, HEADs, the upload
  POST, status, DELETE and closing PUT, every error body) must be over within ``request_timeout``,
  from sending it to the last byte of its answer (a cancel scope around the exchange);
* a blob body, downloaded (:func:`paced_chunks`) or uploaded (:class:`BodyPacer`), must move at least
  ``progress_bytes`` in every ``progress_window`` seconds spent waiting on the registry
  (:class:`Progress`). Time spent waiting on the other side of a copy (the source feeding an upload,
  the destination taking a download's bytes) is not counted, so a slow source is never blamed on the
  destination; once an upload body has been sent, its answer must come within ``request_timeout``.

A broken rule is a :class:`~regcopy.errors.RegistryTimeout` (retryable), so downloads resume with
``Range`` and uploads resume or restart as after any broken connection.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Callable

import aiohttp
import anyio

__all__ = ("BodyPacer", "Progress", "paced_chunks", "slices")


class Progress:
    """The minimum-progress rule: at least ``min_bytes`` per ``window`` seconds of waiting on the peer.

    Waiting time accumulates until ``min_bytes`` have moved since the last time they did; then both
    counts start again. The rule is broken when the waiting time reaches ``window`` first.
    """

    def __init__(self, min_bytes: int, window: float) -> None:
        self.min_bytes = max(1, min_bytes)
        self.window = window
        self._waited = 0.0
        self._bytes = 0

    def budget(self) -> float:
        """Seconds of waiting left before the rule is broken."""
        return max(0.0, self.window - self._waited)

    def record(self, waited: float, moved: int) -> bool:
        """Account a wait of ``waited`` seconds that moved ``moved`` bytes; False when the rule broke."""
        self._bytes += moved
        if self._bytes >= self.min_bytes:
            self._bytes, self._waited = 0, 0.0
            return True
        self._waited += waited
        return self._waited < self.window

    def describe(self) -> str:
        """The rule in words, for error messages."""
        return f"fewer than {self.min_bytes} bytes in {self.window:g} s"


async def paced_chunks(resp: aiohttp.ClientResponse, progress: Progress, read_size: int,
                       stalled: Callable[[], Exception]) -> AsyncIterator[bytes]:
    """The answer's body in chunks of at most ``read_size``, under ``progress``.

    Only the reads are timed (no cancel scope is held across a yield): the consumer's time is its own.

    :param stalled: builds the error raised when the rule breaks
    """
    while True:
        start = anyio.current_time()
        with anyio.move_on_after(progress.budget()) as scope:
            chunk = await resp.content.read(read_size)
        if scope.cancelled_caught or not progress.record(anyio.current_time() - start, len(chunk)):
            raise stalled()
        if not chunk:
            return
        yield chunk


class BodyPacer:
    """Applies :class:`Progress` to a request body that aiohttp pulls in its own writer task.

    The rule is enforced by moving the deadline of ``scope``, the cancel scope around the request in
    the requesting task: no deadline while the body waits on its source, the rest of the progress
    budget while aiohttp writes a chunk to the registry, ``answer_within`` once the body is sent. The
    requesting task turns the scope's cancellation into a RegistryTimeout. :meth:`detach` stops it
    (the answer arrived; the scope is the caller's again).
    """

    def __init__(self, scope: anyio.CancelScope, progress: Progress, answer_within: float) -> None:
        self._scope = scope
        self._progress = progress
        self._answer_within = answer_within
        self._attached = True

    def detach(self) -> None:
        """Leave the scope's deadline alone from now on."""
        self._attached = False

    def _set(self, deadline: float) -> None:
        if self._attached:
            self._scope.deadline = deadline

    async def wrap(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """``chunks``, timed: the time aiohttp spends handing each one to the registry is the registry's."""
        self._set(math.inf)
        async for chunk in chunks:
            start = anyio.current_time()
            self._set(start + self._progress.budget())
            yield chunk
            now = anyio.current_time()
            self._set(math.inf if self._progress.record(now - start, len(chunk)) else now)
        self._set(anyio.current_time() + self._answer_within)


async def slices(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``size`` bytes, so that a bytes body is paced like a streamed one."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start:start + size])
