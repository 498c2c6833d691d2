"""Running an asyncio server on its own event loop in a daemon thread, for the test servers.

Owns the start/stop handshake shared by the token server and the fault-injecting proxy: the loop
runs ``serve()`` then forever; ``start_loop_thread`` returns once ``serve()`` has bound its socket
(or raises what it raised), and ``stop_loop_thread`` stops the loop, runs ``cleanup()``, shuts down
async generators and the default executor, and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

__all__ = ("start_loop_thread", "stop_loop_thread")


def start_loop_thread(
    name: str, serve: Callable[[], Awaitable[None]], cleanup: Callable[[], Awaitable[None]]
) -> tuple[threading.Thread, asyncio.AbstractEventLoop]:
    """Run ``serve()`` on a new loop in a daemon thread; return once it is serving.

    :raises RuntimeError: ``serve()`` failed or did not finish within 10 s (its error attached)
    """
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # reported to the starting thread below
            failure.append(exc)
            ready.set()
            loop.run_until_complete(cleanup())
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            # getaddrinfo for a named upstream runs in the default executor: join its threads too.
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(10) or failure:
        thread.join(5)
        raise RuntimeError(f"{name} failed to start: {failure!r}")
    return thread, loop


def stop_loop_thread(thread: threading.Thread, loop: asyncio.AbstractEventLoop, timeout: float = 15) -> bool:
    """Stop the loop (which runs the cleanup) and join the thread; False if it did not end in time."""
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    return not thread.is_alive()
