"""Real ``redis-server`` processes for the scale-out tests.

This module owns starting, restarting and stopping ``redis-server`` (the Debian package) on a free
127.0.0.1 port with its own directory: append-only persistence on (so a restart keeps the queue, the
run records and the ledger, as a Redis with a volume would), no RDB snapshots, its log in the
directory, and a ``PING`` readiness probe. Every started process is killed at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

__all__ = ("REDIS_BIN", "RedisServer", "stop_all_redis")

REDIS_BIN = os.environ.get("REGCOPY_TEST_REDIS_BIN", "redis-server")

_live: set[RedisServer] = set()
_lock = threading.Lock()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on ``127.0.0.1:port`` with ``workdir`` as its directory.

    :param appendonly: persist every write (``appendfsync everysec``) so :meth:`restart` keeps the data
    """

    def __init__(self, workdir: Path, *, appendonly: bool = True, startup_timeout: float = 10.0) -> None:
        self.workdir = Path(workdir)
        self.appendonly = appendonly
        self.startup_timeout = startup_timeout
        self.port = 0
        self.log_path = self.workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} running={self.running}>"

    def start(self) -> RedisServer:
        """Start (on a new free port the first time, the same port after that) and wait for ``PONG``."""
        if self.running:
            return self
        if shutil.which(REDIS_BIN) is None:
            raise RuntimeError(f"{REDIS_BIN} not found on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = self.port != 0
        for _ in range(5):
            if not fixed:
                self.port = _free_port()
            self._spawn()
            if self._wait_ready():
                return self
            self._terminate()
            if fixed:
                break
        raise RuntimeError(f"redis-server did not start; log:\n{self.log_text()}")

    def _spawn(self) -> None:
        args = [
            REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--protected-mode", "no", "--logfile", str(self.log_path),
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, cwd=self.workdir)
        with _lock:
            _live.add(self)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if self.ping():
                return True
            time.sleep(0.02)
        return False

    def ping(self) -> bool:
        """Whether the server answers ``PING`` with ``PONG`` right now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # redis-server flushes its append-only file on SIGTERM
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._proc = None
        with _lock:
            _live.discard(self)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it writes its append-only file first). Idempotent."""
        self._terminate()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again on the same port with the same data."""
        self._terminate()
        time.sleep(down_for)
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def stop_all_redis() -> None:
    """Stop every redis-server this process started and has not stopped yet."""
    with _lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
