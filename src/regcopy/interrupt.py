"""How a command-line run stops on SIGINT or SIGTERM: through anyio cancellation, with an exit
status that names the signal (128 + its number: 130, 143).

One mechanism for both signals. While a run's event loop is up, anyio's signal receiver takes them
and cancels the run's scope, so the run unwinds as any cancellation does: task groups end, upload
sessions are DELETEd under shielded scopes, temp files and spools are removed, and the caller then
writes its report. Outside the loop (argument parsing, printing the result) a plain handler raises
:class:`Interrupted` instead, which the CLI turns into the same exit status.

A second signal while the first one's cleanup runs ends the process at once, with the first one's
status and a one-line message (no traceback). Waiting longer would only help a cleanup the user or
the orchestrator already asked twice to stop, and what an abandoned cleanup leaves is what a
SIGKILL leaves, which regcopy survives: temp items are locked by their writer and removed by the
next run (``stores/scratch.py``), targets are only ever replaced by a rename, and a sync journal
hands open upload sessions to the next run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TypeVar

if TYPE_CHECKING:
    from anyio import CancelScope

__all__ = ("SIGNALS", "Interrupted", "exit_status", "handle_signals", "run")

log = logging.getLogger(__name__)

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_first: list[int] = []
"""The signal that stopped this process, once one has (signals are process-wide)."""


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by ``signum``: 128 + its number."""
    return 128 + signum


class Interrupted(BaseException):
    """A signal stopped the run. Not a KeyboardInterrupt, so click's own handling does not take it.

    :param signum: the signal
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = exit_status(signum)


def _exit_now(signum: int) -> NoReturn:
    # os.write: no buffered stream can be mid-write here, and nothing must run after this.
    os.write(2, b"regcopy: interrupted again; exiting without finishing the cleanup\n")
    os._exit(exit_status(signum))


def _received(signum: int) -> None:
    """Record the first signal; any later one ends the process at once."""
    if _first:
        _exit_now(_first[0])
    _first.append(signum)


def _raise(signum: int, frame: FrameType | None) -> None:
    _received(signum)
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """Outside the event loop, SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` in a new event loop; a signal cancels it and raises :class:`Interrupted`.

    :raises Interrupted: SIGINT or SIGTERM arrived (after ``fn`` unwound)
    """
    import anyio  # here, not at the top: `regcopy --version` installs the handlers without an event loop

    _first.clear()
    if threading.current_thread() is not threading.main_thread():
        return anyio.run(fn)  # signals are only delivered to the main thread
    return anyio.run(_supervised, fn)


async def _supervised(fn: Callable[[], Awaitable[T]]) -> T:
    import anyio

    previous = {s: signal.getsignal(s) for s in SIGNALS}  # None: not set from Python; left to the receiver
    scope = anyio.CancelScope()
    result: list[T] = []
    failure: list[BaseException] = []
    try:
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch, signals, scope)
                try:
                    with scope:
                        result.append(await fn())
                except BaseException as exc:  # re-raised below as itself, not wrapped in a group
                    failure.append(exc)
                finally:
                    tg.cancel_scope.cancel()
    finally:
        # The receiver restored the defaults (SIG_DFL for SIGTERM): put back what was there.
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)
    if result:
        return result[0]  # finished before a signal could stop it
    if _first:
        if failure:  # the signal decides the outcome; what the unwinding raised is only a detail
            log.info("while stopping on %s: %r", signal.Signals(_first[0]).name, failure[0])
        raise Interrupted(_first[0])
    raise failure[0]


async def _watch(signals: AsyncIterator[signal.Signals], scope: CancelScope) -> None:
    async for signum in signals:
        _received(int(signum))
        scope.cancel()
