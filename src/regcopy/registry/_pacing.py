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

import asyncio
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


class _Watchdog:
    """One timer for a run of timed waits, instead of a timer scheduled and cancelled per wait.

    Each wait records when it is due (:meth:`expect`) and that it ended (:meth:`done`). The timer is
    armed for the earliest due time; when it fires it calls ``overdue`` if the wait then under way is
    past its due time, re-arms for that wait's due time if not, and stays unarmed between waits.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, overdue: Callable[[], object]) -> None:
        self._loop = loop
        self._overdue = overdue
        self._due = math.inf  # inf: no wait under way
        self._timer: asyncio.TimerHandle | None = None

    @property
    def due(self) -> float:
        """When the wait under way must end (inf: none)."""
        return self._due

    def expect(self, due: float) -> None:
        """A wait starts that must end by ``due`` (loop time)."""
        self._due = due
        if self._timer is None or due < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._fire)

    def done(self) -> None:
        """The wait under way ended in time."""
        self._due = math.inf

    def stop(self) -> None:
        """No more waits: disarm."""
        self._due = math.inf
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._due == math.inf:
            return  # between waits: the next one arms the timer again
        if self._loop.time() >= self._due:
            self._due = math.inf
            self._overdue()
        else:
            self._timer = self._loop.call_at(self._due, self._fire)


async def paced_chunks(resp: aiohttp.ClientResponse, progress: Progress, read_size: int,
                       stalled: Callable[[], Exception]) -> AsyncIterator[bytes]:
    """The answer's body in chunks of at most ``read_size``, under ``progress``.

    Only the reads are timed (nothing is armed across a yield): the consumer's time is its own. A read
    past its budget is ended by the watchdog with ``stalled()`` set on the body's stream, as aiohttp's
    own read timeout does (client_proto.py, ``_on_read_timeout``).

    :param stalled: builds the error raised when the rule breaks
    """
    loop = asyncio.get_running_loop()  # aiohttp's loop; its clock is anyio's on asyncio
    content = resp.content
    watchdog = _Watchdog(loop, lambda: content.set_exception(stalled()))
    try:
        while True:
            start = loop.time()
            watchdog.expect(start + progress.budget())
            chunk = await content.read(read_size)
            watchdog.done()
            if not progress.record(loop.time() - start, len(chunk)):
                raise stalled()
            if not chunk:
                return
            yield chunk
    finally:
        watchdog.stop()


class BodyPacer:
    """Applies :class:`Progress` to a request body that aiohttp pulls in its own writer task.

    The rule is enforced by cancelling ``scope``, the cancel scope around the request in the
    requesting task, which turns the cancellation into a RegistryTimeout: no limit while the body
    waits on its source, the rest of the progress budget while aiohttp writes a chunk to the registry
    (a :class:`_Watchdog`, not the scope's deadline moved twice per chunk), ``answer_within`` (the
    scope's deadline) once the body is sent. :meth:`detach` stops it (the answer arrived; the scope
    is the caller's again).
    """

    def __init__(self, scope: anyio.CancelScope, progress: Progress, answer_within: float) -> None:
        self._scope = scope
        self._progress = progress
        self._answer_within = answer_within
        self._attached = True
        self._watchdog: _Watchdog | None = None

    def detach(self) -> None:
        """Leave the scope alone from now on (a chunk still in flight keeps its due time as the deadline)."""
        if self._watchdog is not None:
            if self._attached and self._watchdog.due != math.inf:
                self._scope.deadline = self._watchdog.due
            self._watchdog.stop()
        self._attached = False

    def _overdue(self) -> None:
        if self._attached:
            self._scope.cancel()

    async def wrap(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """``chunks``, timed: the time aiohttp spends handing each one to the registry is the registry's."""
        loop = asyncio.get_running_loop()
        self._watchdog = watchdog = _Watchdog(loop, self._overdue)
        if self._attached:
            self._scope.deadline = math.inf
        async for chunk in chunks:
            start = loop.time()
            watchdog.expect(start + self._progress.budget())
            yield chunk
            watchdog.done()
            if not self._progress.record(loop.time() - start, len(chunk)):
                self._overdue()
        watchdog.stop()
        if self._attached:
            self._scope.deadline = loop.time() + self._answer_within


async def slices(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    """``data`` in pieces of ``size`` bytes, so that a bytes body is paced like a streamed one."""
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start:start + size])
