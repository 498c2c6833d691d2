"""Per-host connection policy: scheme mode, TLS material, limits, timeouts, and the local-host rule.

Scheme modes (ISSUE #3, PROTOCOL §4):

``auto``            race https and http for local hosts (loopback, ``localhost``, ``*.localhost``,
                    ``*.local``, private / link-local IP literals); https only for everything else.
``https``           https with certificate verification only.
``https-insecure``  https without certificate verification only.
``http``            plain http only (also what an ``http://`` prefix on a reference means).
``insecure``        race unverified https and http for any host (skopeo ``--tls-verify=false``,
                    ``--insecure-registry HOST``).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, replace
from typing import Final, Literal

__all__ = ("SchemeMode", "RegistrySettings", "is_local_host", "split_host_port")

SchemeMode = Literal["auto", "https", "https-insecure", "http", "insecure"]
SCHEME_MODES: Final = ("auto", "https", "https-insecure", "http", "insecure")


def split_host_port(hostport: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets) into host and port."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = hostport.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return hostport, None


def is_local_host(hostport: str) -> bool:
    """Whether a registry host may be probed over plain http in ``auto`` mode.

    Loopback, ``localhost``, ``*.localhost``, ``*.local`` (mDNS) and IP literals in private or
    link-local ranges: the places where registries without TLS live (ggcr name/registry.go
    Scheme() heuristic, widened to mDNS and link-local; a bare ``localhost`` counts too).
    """
    host = split_host_port(hostport)[0].lower().rstrip(".")
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to talk to one registry host.

    :param scheme: the scheme mode (see the module docstring)
    :param ca_file: PEM bundle of extra CAs to trust for https
    :param client_cert: PEM client certificate for mutual TLS (``client_key`` beside it)
    :param max_concurrency: requests in flight to this host at once
    :param requests_per_second: a cap on the request rate to this host (None: no cap)
    :param race_grace: seconds https may answer after http and still win the probe race
    :param probe_timeout: seconds a single ``/v2/`` probe may take (connect + TLS + answer)
    :param connect_timeout: seconds to establish a connection
    :param read_timeout: seconds between two reads of a response
    :param request_timeout: seconds a request without blob bytes may take in total, from sending it
        to the last byte of its answer (manifests, tag lists, catalog pages, tokens, HEADs, upload
        POST/status/DELETE/closing PUT, error bodies); also the wait for the answer once an upload
        body is sent (docs/security.md)
    :param progress_bytes: a blob body (download or upload) must move at least this many bytes in
        every ``progress_window`` seconds spent waiting on the registry, or it is a retryable timeout
        (resumed with ``Range``, or the upload resumed or restarted)
    :param progress_window: see ``progress_bytes``
    :param retries: attempts after the first for idempotent requests
    :param backoff: first backoff delay in seconds (doubles, with jitter, capped at ``backoff_max``);
        a 429's ``Retry-After`` is honoured up to ``4 * backoff_max`` (2 minutes by default), for the
        request and, as a pause, for every request to the host
    """

    scheme: SchemeMode = "auto"
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    max_concurrency: int = 16
    requests_per_second: float | None = None
    race_grace: float = 0.2
    probe_timeout: float = 10.0
    connect_timeout: float = 15.0
    read_timeout: float = 120.0
    request_timeout: float = 60.0
    progress_bytes: int = 64 * 1024
    progress_window: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEME_MODES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEME_MODES)}, not {self.scheme!r}")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError("requests_per_second must be positive")
        for name in ("connect_timeout", "read_timeout", "request_timeout", "progress_window", "probe_timeout"):
            value = getattr(self, name)
            if not value > 0:  # NaN too
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        if self.progress_bytes < 1:
            raise ValueError("progress_bytes must be at least 1")

    def with_scheme(self, scheme: SchemeMode) -> RegistrySettings:
        """A copy with another scheme mode."""
        return replace(self, scheme=scheme)

    def candidates(self, host: str) -> tuple[str, ...]:
        """The schemes to probe for ``host``, https first."""
        if self.scheme == "http":
            return ("http",)
        if self.scheme in ("https", "https-insecure"):
            return ("https",)
        if self.scheme == "insecure" or is_local_host(host):
            return ("https", "http")
        return ("https",)

    @property
    def verify_tls(self) -> bool:
        """Whether https certificates are verified."""
        return self.scheme not in ("https-insecure", "insecure")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https requests to this host."""
        return _ssl_context(self.verify_tls, self.ca_file, self.client_cert, self.client_key)


_CONTEXTS: dict[tuple[bool, str | None, str | None, str | None], ssl.SSLContext] = {}


def _ssl_context(verify: bool, ca_file: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    # Contexts are costly to build (the system store is loaded each time): share them per recipe.
    recipe = (verify, ca_file, cert, key)
    ctx = _CONTEXTS.get(recipe)
    if ctx is None:
        ctx = ssl.create_default_context()
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        if cert:
            ctx.load_cert_chain(cert, key)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CONTEXTS[recipe] = ctx
    return ctx

