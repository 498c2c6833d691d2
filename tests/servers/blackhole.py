"""A TCP black hole: accepts connections, reads and discards whatever arrives, never writes a byte.

This module owns :class:`Blackhole`, which models a firewalled or wedged HTTPS port that hangs its
clients: the TCP handshake completes (the kernel does it), then nothing ever comes back, so a TLS
handshake or an HTTP request waits until the client's own timeout fires. It runs a ``selectors``
loop in a daemon thread (no asyncio, so any test, sync or async, can use it), counts accepted
connections and received bytes, and closes every socket when stopped.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

__all__ = ("Blackhole",)


class Blackhole:
    """Silent TCP listener; use as a context manager or call :meth:`start`/:meth:`stop`.

    :param host: address to bind.
    :param port: port to bind; 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bind_host = host
        self.port = port
        self._lock = threading.Lock()
        self._accepted = 0
        self._received = 0
        self._open = 0
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        # A socketpair wakes the selector up for stop(): closing a socket another thread is
        # selecting on is not reliable.
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # ------------------------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{self.bind_host}:{self.port}"

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``: what it models; a plain-http client hangs just the same."""
        return f"https://{self.host}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed by the peer."""
        with self._lock:
            return self._open

    @property
    def bytes_received(self) -> int:
        """Bytes read (and discarded) over all connections."""
        with self._lock:
            return self._received

    def __repr__(self) -> str:
        return f"<Blackhole {self.host} accepted={self.accepted}>"

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> Blackhole:
        """Bind and listen (before returning, so clients can connect right away), then serve."""
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.bind_host, self.port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"blackhole-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every accepted connection; join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        thread.join(10)
        if thread.is_alive():
            raise RuntimeError("blackhole thread did not stop")
        self._thread = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    def __enter__(self) -> Blackhole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        listener, wake = self._listener, self._wake_r
        assert listener is not None and wake is not None
        conns: set[socket.socket] = set()
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ, "accept")
            sel.register(wake, selectors.EVENT_READ, "wake")
            try:
                while True:
                    for key, _ in sel.select():
                        if key.data == "wake":
                            return
                        if key.data == "accept":
                            self._accept(listener, sel, conns)
                        else:
                            self._drain(key.data, sel, conns)
            finally:
                for conn in conns:
                    conn.close()
                listener.close()
                self._listener = None

    def _accept(self, listener: socket.socket, sel: selectors.BaseSelector, conns: set[socket.socket]) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        conns.add(conn)
        sel.register(conn, selectors.EVENT_READ, conn)
        with self._lock:
            self._accepted += 1
            self._open += 1

    def _drain(self, conn: socket.socket, sel: selectors.BaseSelector, conns: set[socket.socket]) -> None:
        # Keep reading so the client's writes never block: a hung server still ACKs at the TCP level.
        try:
            data = conn.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            with self._lock:
                self._received += len(data)
            return
        sel.unregister(conn)
        conns.discard(conn)
        conn.close()
        with self._lock:
            self._open -= 1
