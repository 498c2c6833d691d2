"""Per-host settings: the one settings type, the partial overrides that plans and flags give, and their resolution.

:class:`RegistrySettings` is how to talk to one registry host. Everything else that speaks about a
host is an :class:`Overrides`: a plan's ``registries:`` entry, the command line's flags, a caller's
``Client(overrides=...)``. An override holds only what its layer sets (fields of RegistrySettings,
checked against it), plus where the host's credentials come from (:class:`Credentials`) and its
pull-through mirrors. :func:`resolve` is the one rule that combines them: defaults, then each layer
in order, a later layer winning field by field (:func:`stack`; docs/architecture.md, "Settings
resolution").

Scheme modes (docs/architecture.md, "The probe race"):

``auto``            race https and http for local hosts (loopback, ``localhost``, ``*.localhost``,
                    ``*.local``, private / link-local IP literals); https only for everything else.
``https``           https with certificate verification only.
``https-insecure``  https without certificate verification only.
``http``            plain http only (also what an ``http://`` prefix on a reference means).
``insecure``        race unverified https and http for any host (skopeo ``--tls-verify=false``,
                    ``--insecure-registry HOST``).

Values only: nothing here reads a file or opens a connection, except the TLS context a transport
asks a RegistrySettings for (its CA files and certificate directory). Secrets never appear in ``repr``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from regcopy.errors import ConfigError
from regcopy.reference import Namespace

__all__ = (
    "SCHEME_MODES",
    "Credentials",
    "Layer",
    "Overrides",
    "RegistrySettings",
    "SchemeMode",
    "Settings",
    "cert_dir_contents",
    "default_certs_d",
    "host_cert_dir",
    "is_local_host",
    "parse_byte_rate",
    "resolve",
    "split_host_port",
    "stack",
)

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


_RATE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b?)(?:/s)?", re.IGNORECASE)
_BINARY: Final = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_byte_rate(text: str) -> int:
    """Bytes per second from ``--limit-rate`` / ``limit_rate`` text: ``50M``, ``1.5g``, ``800KiB/s``, ``10MB``.

    A bare suffix (``k``, ``M``, ``g``, ``t``, any case) and ``KiB``-style ones are powers of 1024, as
    curl's ``--limit-rate`` reads them; ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000. A trailing
    ``/s`` is allowed.

    :raises ValueError: not a rate, or not at least 1 byte per second
    """
    match = _RATE.fullmatch(text.strip())
    if match is None or len(text) > 40:
        raise ValueError(f"not a byte rate: {text[:40]!r} (use e.g. 50M, 800KiB, 10MB)")
    number, prefix, unit = match.groups()
    decimal = unit.lower() == "b" and prefix != ""
    scale = 1000 ** "kmgt".index(prefix.lower()) * 1000 if decimal else _BINARY[prefix.lower()]
    if unit.lower() == "i" or (unit.lower() == "ib" and not prefix):
        raise ValueError(f"not a byte rate: {text[:40]!r} (use e.g. 50M, 800KiB, 10MB)")
    rate = int(float(number) * scale)
    if rate < 1:
        raise ValueError(f"a byte rate must be at least 1 byte per second, not {text[:40]!r}")
    return rate


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to talk to one registry host.

    :param scheme: the scheme mode (see the module docstring)
    :param ca_file: PEM bundle of extra CAs to trust for https
    :param client_cert: PEM client certificate for mutual TLS (``client_key`` beside it)
    :param cert_dir: a directory as skopeo's ``--cert-dir`` and docker's ``certs.d/HOST`` hold
        (containers-certs.d(5)): every ``*.crt`` a CA trusted besides the system's, each ``*.cert``
        with the ``*.key`` of the same name a client pair
    :param max_concurrency: requests in flight to this host at once: the ceiling of the adaptive
        limit, or the fixed limit without ``adaptive``
    :param adaptive: the limit of requests in flight adapts (AIMD, shared by every request of the client
        to this host): it grows while answers stay steady and halves on 429, 503, time-outs and resets,
        within ``[1, max_concurrency]`` (docs/architecture.md, "Limits")
    :param requests_per_second: at most this many requests start per second, evenly spaced (None: no cap)
    :param requests_per_minute: at most this many requests start in any 60 seconds, at most a second's
        share of them at once (None: no cap)
    :param limit_rate: blob bytes per second to and from this host (None: no cap)
    :param pull_reserve: pulls (manifest GETs) never spent when the host says how many are left
        (Docker Hub's ``ratelimit-remaining``): once only this many remain, no new pull starts
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
    cert_dir: str | None = None
    max_concurrency: int = 16
    adaptive: bool = True
    requests_per_second: float | None = None
    requests_per_minute: float | None = None
    limit_rate: int | None = None
    pull_reserve: int = 0
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
        for name in ("requests_per_second", "requests_per_minute", "limit_rate"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        if self.pull_reserve < 0:
            raise ValueError("pull_reserve must be 0 or more")
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
        return _ssl_context(self.verify_tls, self.ca_file, self.client_cert, self.client_key, self.cert_dir)


_CONTEXTS: dict[tuple[bool, str | None, str | None, str | None, str | None], ssl.SSLContext] = {}


def _ssl_context(verify: bool, ca_file: str | None, cert: str | None, key: str | None,
                 cert_dir: str | None) -> ssl.SSLContext:
    # Contexts are costly to build (the system store is loaded each time): share them per recipe.
    recipe = (verify, ca_file, cert, key, cert_dir)
    ctx = _CONTEXTS.get(recipe)
    if ctx is None:
        ctx = ssl.create_default_context()
        cas, pairs = cert_dir_contents(cert_dir) if cert_dir else ((), ())
        try:
            for path in (*cas, *([ca_file] if ca_file else [])):
                ctx.load_verify_locations(cafile=path)
            for pair in (*pairs, *([(cert, key)] if cert else [])):
                ctx.load_cert_chain(*pair)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS material unusable: {exc}") from None
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CONTEXTS[recipe] = ctx
    return ctx


def default_certs_d() -> tuple[str, ...]:
    """The ``certs.d`` roots searched for a host's certificate directory: ``$REGCOPY_CERTS_D``
    (``os.pathsep``-separated) when set, else ``~/.config/containers/certs.d``,
    ``/etc/containers/certs.d`` and ``/etc/docker/certs.d`` (containers-certs.d(5), docker's
    ``/etc/docker/certs.d``; the first that has the host wins, as in containers/image)."""
    configured = os.environ.get("REGCOPY_CERTS_D")
    if configured is not None:
        return tuple(p for p in configured.split(os.pathsep) if p)
    home = os.path.expanduser("~/.config/containers/certs.d")
    return (home, "/etc/containers/certs.d", "/etc/docker/certs.d")


def host_cert_dir(host: str, roots: tuple[str, ...]) -> str | None:
    """The first ``ROOT/HOST[:PORT]`` directory that exists among ``roots`` (the ``certs.d``
    directories of containers-certs.d(5) and docker, in their order), else None."""
    for root in roots:
        candidate = Path(root, host)
        if candidate.is_dir():
            return str(candidate)
    return None


def cert_dir_contents(path: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The CAs (``*.crt``) and client pairs (``*.cert`` + ``*.key``) of a certificate directory, sorted,
    read as containers/image's ``pkg/tlsclientconfig`` does.

    :raises ConfigError: not a directory, or a ``*.cert`` without its ``*.key`` or a key without its cert
    """
    d = Path(path)
    if not d.is_dir():
        raise ConfigError(f"certificate directory {path} is not a directory")
    names = sorted(p.name for p in d.iterdir())
    cas = tuple(str(d / n) for n in names if n.endswith(".crt"))
    pairs = []
    for name in names:
        stem, _, ext = name.rpartition(".")
        if ext == "cert" and f"{stem}.key" not in names:
            raise ConfigError(f"{d / name}: client certificate without its key {stem}.key")
        if ext == "key" and f"{stem}.cert" not in names:
            raise ConfigError(f"{d / name}: client key without its certificate {stem}.cert")
        if ext == "cert":
            pairs.append((str(d / name), str(d / f"{stem}.key")))
    return cas, tuple(pairs)



_SETTING_NAMES: Final = frozenset(f.name for f in fields(RegistrySettings))


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where one registry's credentials come from: inline, a credential helper, an auth file, or nowhere.

    A description, not a store: :func:`regcopy.credentials.store_for` makes the store. Inline
    secrets are never shown in ``repr`` or errors.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    helper: str | None = None
    authfile: str | None = None
    refresh_after: float | None = None
    """Seconds after which a helper's answer is fetched again (besides on rejection)."""
    registry_token: str | None = field(default=None, repr=False)
    """A bearer token sent to the registry as is (skopeo ``--registry-token``)."""
    anonymous: bool = False
    """Send no credentials at all, whatever the auth files say (skopeo ``--no-creds``)."""


@dataclass(frozen=True, slots=True)
class Overrides:
    """What one layer (a plan's ``registries:`` entry, the command line, a caller) says about one host.

    :ivar settings: :class:`RegistrySettings` fields this layer sets, and only those (checked on
        construction: unknown names and invalid values are a ``ValueError``)
    :ivar credentials: where the host's credentials come from (None: this layer does not say)
    :ivar mirrors: pull-through caches read before the host, in order (None: this layer does not
        say; ``()``: none). A mirror's own settings and credentials are its own host's.
    """

    settings: Mapping[str, Any] = field(default_factory=dict)
    credentials: Credentials | None = None
    mirrors: tuple[Namespace, ...] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - _SETTING_NAMES)
        if unknown:
            raise ValueError(f"not a registry setting: {', '.join(unknown)}")
        replace(RegistrySettings(), **self.settings)  # RegistrySettings checks the values
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def __bool__(self) -> bool:
        return bool(self.settings) or self.credentials is not None or self.mirrors is not None


Layer = Mapping[str, Overrides]
"""One layer of overrides: normalised registry ``host[:port]`` → what the layer says about it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every host's resolved settings: a default, the hosts that differ, credential sources and mirrors.

    :ivar default: the settings of a host no layer names
    :ivar hosts: host → settings, for hosts some layer set a field of
    :ivar credentials: host → where its credentials come from, for hosts some layer said so
        (every other host asks the client's credential store)
    :ivar mirrors: host → the mirrors read before it
    """

    default: RegistrySettings = field(default_factory=RegistrySettings)
    hosts: Mapping[str, RegistrySettings] = field(default_factory=dict)
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    mirrors: Mapping[str, tuple[Namespace, ...]] = field(default_factory=dict)

    def for_host(self, host: str) -> RegistrySettings:
        """The settings of ``host``."""
        return self.hosts.get(host, self.default)


def stack(*layers: Layer) -> dict[str, Overrides]:
    """One layer that says what ``layers`` say, in order: the one precedence rule of regcopy.

    A later layer wins, field by field (each setting, the credentials source, the mirror list);
    whatever a later layer leaves out stays as the earlier ones said it. Pure.
    """
    out: dict[str, Overrides] = {}
    for layer in layers:
        for host, said in layer.items():
            known = out.get(host)
            out[host] = said if known is None else Overrides(
                {**known.settings, **said.settings},
                said.credentials if said.credentials is not None else known.credentials,
                said.mirrors if said.mirrors is not None else known.mirrors,
            )
    return out


def resolve(base: Settings, *layers: Layer) -> Settings:
    """The settings that hold once ``layers`` are applied over ``base``, in order (:func:`stack`'s rule).

    regcopy applies ``Client(settings=..., default_settings=...)`` (the defaults), then a plan's
    ``registries:``, then the command line's flags (``Client(overrides=...)``). Pure: ``base`` and the
    layers are left as they are.
    """
    hosts, credentials, mirrors = dict(base.hosts), dict(base.credentials), dict(base.mirrors)
    for host, said in stack(*layers).items():
        if said.settings:
            hosts[host] = replace(hosts.get(host, base.default), **said.settings)
        if said.credentials is not None:
            credentials[host] = said.credentials
        if said.mirrors is not None:
            mirrors[host] = said.mirrors
    return Settings(base.default, MappingProxyType(hosts), MappingProxyType(credentials), MappingProxyType(mirrors))
