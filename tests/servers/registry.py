"""Real ``docker-registry`` (CNCF distribution 2.8.2) processes for integration tests.

This module owns starting and stopping ``docker-registry serve CONFIG`` on a free 127.0.0.1 port with
temporary storage, the generated YAML config for each mode (plain http, https with a ``trustme`` CA,
htpasswd basic auth, bearer token auth with :class:`~servers.token_server.TokenServer`, optional
delete), the client-side trust material (CA PEM, a skopeo ``--cert-dir``), and reading the
registry's log, including its Apache combined-format access log.

Every started process is tracked and killed at interpreter exit, so an interrupted run never leaves
a registry behind.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import trustme
import yaml

from .token_server import TokenServer

__all__ = (
    "MODES",
    "PROBE_USER_AGENT",
    "AccessEntry",
    "Mode",
    "RegistryFactory",
    "RegistryServer",
    "Role",
    "deep_merge",
    "parse_access_log",
    "running_registry",
    "shared_ca",
    "stop_all_registries",
)

Mode = Literal["http", "https", "basic", "token"]
Role = Literal["src", "dest", ""]
MODES: tuple[Mode, ...] = ("http", "https", "basic", "token")
PROBE_USER_AGENT = "regcopy-harness-probe"
REGISTRY_BIN = os.environ.get("REGCOPY_TEST_REGISTRY_BIN", "docker-registry")
HTTP_SECRET = "regcopy-test-http-secret"

_live: set[RegistryServer] = set()
_live_lock = threading.Lock()
_ca: trustme.CA | None = None


def shared_ca() -> trustme.CA:
    """The process-wide test CA; every TLS server (registries, token servers) gets a cert from it.

    One CA means one ``ca.crt`` trusts every test server, which keeps client setup in tests simple.
    """
    global _ca
    with _live_lock:
        if _ca is None:
            _ca = trustme.CA()
        return _ca


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``extra``; a ``None`` value in ``extra`` deletes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------- access log


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One access-log line: ``METHOD path?query`` answered with ``status`` and ``size`` body bytes."""

    remote: str
    user: str
    time: str
    method: str
    path: str  # request URI as sent, query included
    protocol: str
    status: int
    size: int
    referer: str
    user_agent: str

    @property
    def route(self) -> str:
        """The path without its query string."""
        return self.path.split("?", 1)[0]


# 2.8.2 wraps its handler in gorilla/handlers.CombinedLoggingHandler writing to stdout:
#   127.0.0.1 - - [23/Nov/2026:06:29:06 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"
# gorilla quotes the URI with Go-style escapes and prints "-" for unknown sizes, so accept both.
_ACCESS_RE = re.compile(
    r"^(?P<remote>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<method>[A-Z]+) (?P<path>\S+) (?P<proto>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)'
    r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?\s*$'
)


def parse_access_log(text: str) -> list[AccessEntry]:
    """Extract access entries from a registry log, skipping logrus lines and anything unparsable."""
    out: list[AccessEntry] = []
    for line in text.splitlines():
        m = _ACCESS_RE.match(line)
        if m is None:
            continue
        size = m["size"]
        out.append(
            AccessEntry(
                remote=m["remote"],
                user=m["user"],
                time=m["time"],
                method=m["method"],
                path=m["path"],
                protocol=m["proto"],
                status=int(m["status"]),
                size=0 if size == "-" else int(size),
                referer=m["referer"] or "",
                user_agent=m["ua"] or "",
            )
        )
    return out


# ---------------------------------------------------------------------------------------------- server


def _free_port() -> int:
    # The port can be taken between close() and the registry's bind; start() retries on that collision.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """A ``docker-registry serve`` process. Use as a context manager, or call :meth:`start`/:meth:`stop`.

    :param workdir: private directory for config, storage, certs and the log (created if needed).
    :param mode: ``http`` (plain), ``https`` (TLS), ``basic`` (htpasswd) or ``token`` (bearer).
    :param tls: serve TLS; defaults to ``False`` for ``http`` and ``True`` for every other mode.
    :param delete: set ``storage.delete.enabled`` (DELETE of manifests and blobs answers 202).
    :param extra_config: deep-merged into the generated YAML (``None`` values delete keys), e.g.
        ``{"proxy": {"remoteurl": upstream.url}}`` or ``{"catalog": {"maxentries": 5}}``.
    :param users: htpasswd users for ``basic`` mode (user → password); the first is :attr:`username`.
    :param token_server: a running token server for ``token`` mode; by default one is created, started
        and stopped with this registry (HTTPS when the registry uses TLS).
    :param acl: ACL for the auto-created token server (see :class:`TokenServer`).
    :param ca: CA for TLS; defaults to :func:`shared_ca`.
    :param startup_timeout: seconds to wait for ``GET /v2/`` to answer 200 or 401.
    :param bind_host: loopback address to listen on (any of 127.0.0.0/8).
    :param port: a fixed port (0 picks a free one); a fixed port is not retried on collision.
    :param client_cert: ``(cert, key)`` PEM paths the readiness probe presents, for registries that
        require client certificates (``extra_config={"http": {"tls": {"clientcas": [...]}}}``).
    """

    def __init__(
        self,
        workdir: Path,
        mode: Mode = "http",
        *,
        tls: bool | None = None,
        delete: bool = False,
        extra_config: Mapping[str, Any] | None = None,
        users: Mapping[str, str] | None = None,
        token_server: TokenServer | None = None,
        acl: Mapping[str, Mapping[str, Any]] | None = None,
        ca: trustme.CA | None = None,
        startup_timeout: float = 10.0,
        bind_host: str = "127.0.0.1",
        port: int = 0,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown registry mode {mode!r}; expected one of {MODES}")
        self.workdir = Path(workdir)
        self.mode: Mode = mode
        self.tls = (mode != "http") if tls is None else tls
        self.delete_enabled = delete
        self.extra_config = dict(extra_config or {})
        self.startup_timeout = startup_timeout
        self.root = self.workdir / "storage"
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self.ca: trustme.CA | None = (ca or shared_ca()) if self.tls else None
        self.cert_dir: Path | None = self.workdir / "certs" if self.tls else None
        self.ca_pem_path: Path | None = self.cert_dir / "ca.crt" if self.cert_dir else None
        self.username: str | None = None
        self.password: str | None = None
        self._users: dict[str, str] = {}
        if mode == "basic":
            self._users = dict(users or {"alice": "secret"})
            self.username, self.password = next(iter(self._users.items()))
        self._owns_token_server = False
        self.token_server: TokenServer | None = None
        if mode == "token":
            if token_server is None:
                token_server = TokenServer(self.workdir / "token", acl=acl, ca=self.ca)
                self._owns_token_server = True
            self.token_server = token_server
            # The token server's first ACL user is this registry's "owner" credentials.
            self.username, self.password = next(iter(token_server.users.items()))
        # Another loopback address and a fixed port (e.g. 127.0.0.7:80) model a port-less registry name.
        self.bind_host = bind_host
        self.port = port
        # (cert, key) the harness presents when the registry demands client certificates (mTLS).
        self.client_cert = client_cert
        self.config: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------------ addresses

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host(self) -> str:
        """``HOST:PORT`` (``127.0.0.1:PORT`` by default), the registry part of image references."""
        return f"{self.bind_host}:{self.port}"

    @property
    def ref_host(self) -> str:
        """The name for image references: :attr:`host` without a default port (80 http, 443 https)."""
        default = 443 if self.tls else 80
        return self.bind_host if self.port == default else self.host

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        return f"<RegistryServer {self.mode} {self.url} delete={self.delete_enabled} running={self.running}>"

    # ------------------------------------------------------------------------------------ config

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(exist_ok=True)
        if self.tls:
            assert self.ca is not None and self.cert_dir is not None and self.ca_pem_path is not None
            self.cert_dir.mkdir(exist_ok=True)
            # skopeo --cert-dir treats every *.crt as a CA and pairs *.cert/*.key as a client cert,
            # so the server's own cert and key live elsewhere.
            self.ca.cert_pem.write_to_path(str(self.ca_pem_path))
            leaf = self.ca.issue_cert("127.0.0.1", "localhost", self.bind_host)
            tls_dir = self.workdir / "tls"
            tls_dir.mkdir(exist_ok=True)
            chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
            (tls_dir / "server.crt").write_bytes(chain)
            leaf.private_key_pem.write_to_path(str(tls_dir / "server.key"))
        if self.mode == "basic":
            lines = []
            for user, password in self._users.items():
                # -B: bcrypt, the only scheme 2.8.2 accepts ($apr1$ entries are silently ignored).
                proc = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True, check=True, timeout=30)
                lines.append(proc.stdout.decode().strip())
            (self.workdir / "htpasswd").write_text("\n".join(lines) + "\n")
        if self.token_server is not None and self._owns_token_server:
            self.token_server.start()

    def _build_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            # accesslog on (its default) so tests can assert on requests; text formatter for parsing.
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.root)},
                "delete": {"enabled": self.delete_enabled},
                # No background purge goroutine touching storage while a test inspects it.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            # A fixed secret: upload URLs (_state HMAC) stay valid across restart() (docs/protocol.md#test-registries).
            "http": {"addr": self.host, "secret": HTTP_SECRET},
        }
        if self.tls:
            tls_dir = self.workdir / "tls"
            config["http"]["tls"] = {
                "certificate": str(tls_dir / "server.crt"),
                "key": str(tls_dir / "server.key"),
            }
        if self.mode == "basic":
            config["auth"] = {"htpasswd": {"realm": "regcopy-basic", "path": str(self.workdir / "htpasswd")}}
        elif self.mode == "token":
            assert self.token_server is not None
            ts = self.token_server
            config["auth"] = {
                "token": {
                    "realm": ts.realm,
                    "service": ts.service,
                    "issuer": ts.issuer,
                    "rootcertbundle": str(ts.cert_path),
                }
            }
        return deep_merge(config, self.extra_config)

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> RegistryServer:
        """Start the registry and wait until ``GET /v2/`` answers; retries on a port collision.

        :raises RuntimeError: the registry exited or never answered; the message holds its log.
        """
        if self.running:
            return self
        self._prepare()
        keep_port = self.port != 0
        last_log = ""
        for _attempt in range(5):
            if not keep_port:
                self.port = _free_port()
            self.config = self._build_config()
            self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            try:
                self._spawn()
                self._wait_ready()
                return self
            except _PortInUse as exc:
                last_log = str(exc)
                self._terminate()
                if keep_port:
                    break
            except BaseException:
                self.stop()
                raise
        self.stop()
        raise RuntimeError(f"registry could not bind a port after retries; last log:\n{last_log}")

    def _spawn(self) -> None:
        # REGISTRY_* variables override config keys in distribution; a stray one from the developer's
        # shell (or REGISTRY_AUTH_FILE meant for skopeo) must not reconfigure the test registry.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        if shutil.which(REGISTRY_BIN) is None:
            raise RuntimeError(f"{REGISTRY_BIN} not found on PATH")
        with open(self.log_path, "ab") as log:
            log.write(f"=== starting {REGISTRY_BIN} serve {self.config_path} on {self.host}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
            )
        with _live_lock:
            _live.add(self)

    def _probe(self) -> int | None:
        req = urllib.request.Request(f"{self.url}/v2/", headers={"User-Agent": PROBE_USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=2, context=self.ssl_context()) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)
        except (OSError, ssl.SSLError):
            return None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        status: int | None = None
        while True:
            proc = self._proc
            assert proc is not None
            this_run = self.log_text().rsplit("=== starting", 1)[-1]
            if proc.poll() is not None:
                if "address already in use" in this_run:
                    raise _PortInUse(self.log_text())
                raise RuntimeError(f"docker-registry exited with {proc.returncode}; log:\n{self.log_text()}")
            # A probe alone is not proof: when our bind failed, another process on the same port answers
            # 200 before ours has exited. 2.8.2 logs "listening on ADDR" only after a successful bind.
            if f"listening on {self.host}" in this_run:
                status = self._probe()
                # 200 when open, 401 with a challenge when auth is on: both mean "up and serving v2".
                if status in (200, 401):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry on {self.url} not ready after {self.startup_timeout}s "
                    f"(last probe status {status}); log:\n{self.log_text()}"
                )
            time.sleep(0.02)

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._proc = None
        with _live_lock:
            _live.discard(self)

    def stop(self) -> None:
        """Terminate (then kill) the registry and stop an owned token server. Idempotent."""
        try:
            self._terminate()
        finally:
            if self._owns_token_server and self.token_server is not None:
                self.token_server.stop()

    def restart(self) -> None:
        """Stop and start again on the same port with the same storage and config."""
        self._terminate()
        self.start()

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ clients

    def ssl_context(self) -> ssl.SSLContext | None:
        """An SSL context trusting the test CA, with the client pair if set (``None`` for plain http)."""
        if self.ca_pem_path is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca_pem_path))
        if self.client_cert is not None:
            ctx.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
        return ctx

    def skopeo_flags(
        self,
        role: Role = "",
        *,
        creds: tuple[str, str] | None = None,
        anonymous: bool = False,
    ) -> list[str]:
        """skopeo options to reach this registry.

        :param role: ``src``/``dest`` for ``skopeo copy``; ``""`` for ``inspect``/``list-tags``/``delete``.
        :param creds: credentials to use instead of :attr:`username`/:attr:`password`.
        :param anonymous: send no credentials at all.
        """
        prefix = f"--{role}-" if role else "--"
        # skopeo 1.9.3 never falls back to http without tls-verify=false, even for 127.0.0.1.
        flags = [f"{prefix}tls-verify=false"] if not self.tls else [f"{prefix}cert-dir", str(self.cert_dir)]
        if not anonymous:
            pair = creds or ((self.username, self.password) if self.username is not None else None)
            if pair is not None:
                flags += [f"{prefix}creds", f"{pair[0]}:{pair[1]}"]
        return flags

    # ------------------------------------------------------------------------------------ logs

    def log_text(self) -> str:
        """The whole registry log (stdout + stderr of every start)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def access_log(self, *, include_probes: bool = False) -> list[AccessEntry]:
        """Parsed access entries so far, oldest first; the readiness probes are left out by default.

        The registry writes a line after the response is sent, so the last request may not be there
        yet right after the client got its answer; use :meth:`wait_for_access` for that.
        """
        entries = parse_access_log(self.log_text())
        if include_probes:
            return entries
        return [e for e in entries if e.user_agent != PROBE_USER_AGENT]

    def wait_for_access(self, predicate: Callable[[AccessEntry], bool], timeout: float = 5.0) -> AccessEntry:
        """Poll the access log until an entry matches ``predicate``.

        :raises AssertionError: no match within ``timeout`` seconds; the message lists what was seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            entries = self.access_log()
            for entry in entries:
                if predicate(entry):
                    return entry
            if time.monotonic() > deadline:
                seen = "\n".join(f"{e.method} {e.path} {e.status}" for e in entries[-50:])
                raise AssertionError(f"no matching access-log entry within {timeout}s; last entries:\n{seen}")
            time.sleep(0.05)


class _PortInUse(RuntimeError):
    pass


class RegistryFactory(Protocol):
    """What the ``registry_factory`` fixture yields: ``(mode="http", **RegistryServer kwargs) -> started``."""

    def __call__(self, mode: Mode = "http", **kwargs: Any) -> RegistryServer: ...


@contextlib.contextmanager
def running_registry(workdir: Path, mode: Mode = "http", **kwargs: Any) -> Iterator[RegistryServer]:
    """Context manager shorthand: ``with running_registry(tmp, "token") as reg: ...``."""
    server = RegistryServer(workdir, mode, **kwargs)
    try:
        yield server.start()
    finally:
        server.stop()


@atexit.register
def stop_all_registries() -> None:
    """Stop every registry this process started and has not stopped yet."""
    # Last line of defence (KeyboardInterrupt, a fixture that never got to finalize): no registry may
    # outlive the Python process that started it.
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()
