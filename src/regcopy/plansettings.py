"""Per-registry settings of a plan file: the values and the ``registries:`` section every plan shares.

Sync plans and prune plans both carry ``registries:`` (host → scheme mode, TLS files, credentials
source, limits, mirrors); this module owns its values (:class:`RegistryConfig`,
:class:`Credentials`) and its strict parser (:func:`parse_registries`). Secrets never appear in
``repr`` or in error messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from regcopy.credentials import (
    Credential,
    CredentialStore,
    DockerConfigCredentials,
    HelperCredentials,
    StaticCredentials,
)
from regcopy.locations import is_local, join_endpoint
from regcopy.planaddress import as_host, as_location
from regcopy.planfile import (
    At,
    as_list,
    as_mapping,
    as_positive_int,
    as_seconds,
    as_string,
    dedupe,
    float_of,
    kind_of,
    short,
)
from regcopy.registry import SCHEME_MODES, RegistrySettings, SchemeMode

__all__ = ("Credentials", "RegistryConfig", "parse_registries")

_TLS_MODES: Final[Mapping[str, SchemeMode]] = {m: m for m in SCHEME_MODES}
_REGISTRY_KEYS: Final = (
    "tls", "ca_file", "client_cert", "client_key", "credentials", "max_concurrency", "requests_per_second",
    "mirrors", "request_timeout",
)
_CREDENTIAL_KEYS: Final = ("username", "password", "helper", "authfile", "identity_token", "refresh_after")


# --------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where one registry's credentials come from: inline, a credential helper, or an auth file.

    Inline secrets are never shown in ``repr`` or errors.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    helper: str | None = None
    authfile: str | None = None
    refresh_after: float | None = None
    """Seconds after which a helper's answer is fetched again (besides on rejection)."""

    def store(self, host: str) -> CredentialStore:
        """The credential store these settings name for ``host``: a helper, an auth file, or the inline secret."""
        if self.helper:
            return HelperCredentials({host: self.helper}, refresh_after=self.refresh_after)
        if self.authfile:
            return DockerConfigCredentials([self.authfile], refresh_after=self.refresh_after)
        return StaticCredentials({host: Credential(
            username=self.username, password=self.password, identity_token=self.identity_token)})


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Per-registry settings of a plan (regclient's ``config.Host`` in spirit)."""

    host: str
    scheme: SchemeMode = "auto"
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    credentials: Credentials | None = None
    max_concurrency: int | None = None
    requests_per_second: float | None = None
    mirrors: tuple[str, ...] = ()
    """Pull-through caches read before this registry, in order: ``host[:port][/prefix]`` each; a
    mirror's own settings and credentials are its own ``registries`` entry (never this one's)."""
    request_timeout: float | None = None
    """Seconds a request without blob bytes may take in total (``RegistrySettings.request_timeout``)."""

    def over(self, base: RegistrySettings) -> RegistrySettings:
        """``base`` with what this entry sets: its scheme mode always, files and limits where it gives them."""
        return replace(
            base, scheme=self.scheme, ca_file=self.ca_file or base.ca_file,
            client_cert=self.client_cert or base.client_cert, client_key=self.client_key or base.client_key,
            max_concurrency=self.max_concurrency or base.max_concurrency,
            requests_per_second=self.requests_per_second or base.requests_per_second,
            request_timeout=self.request_timeout or base.request_timeout,
        )


# --------------------------------------------------------------------------------------- parser


def parse_registries(value: object, path: str | None) -> dict[str, RegistryConfig]:
    out: dict[str, RegistryConfig] = {}
    if value is None:  # 'registries:' with everything commented out
        return out
    for raw, settings in as_mapping(value, At(path, "registries", "registries")).items():
        at = At(path, raw, "registries").member(raw)
        host = as_host(raw, at, "registry key")
        if host in out:
            raise at.error(f"registry {host!r} is configured twice")
        out[host] = _registry(host, settings, at)
    return out


def _registry(host: str, value: object, at: At) -> RegistryConfig:
    f = as_mapping({} if value is None else value, at, _REGISTRY_KEYS)
    scheme: SchemeMode = "auto"
    if "tls" in f:
        tls = f["tls"]
        if not isinstance(tls, str) or tls not in _TLS_MODES:
            shown = short(tls) if isinstance(tls, str) else kind_of(tls)
            raise at.field("tls").error(f"must be one of {', '.join(_TLS_MODES)}, not {shown}")
        scheme = _TLS_MODES[tls]
    files = {k: as_string(f[k], at.field(k)) for k in ("ca_file", "client_cert", "client_key") if k in f}
    if "client_key" in files and "client_cert" not in files:
        raise at.field("client_key").error("client_key needs client_cert")
    max_concurrency = None
    if "max_concurrency" in f:
        max_concurrency = as_positive_int(f["max_concurrency"], at.field("max_concurrency"))
    rps = None
    if "requests_per_second" in f:
        value = f["requests_per_second"]
        rps = float_of(value)
        if rps is None or not math.isfinite(rps) or not rps > 0:
            shown = kind_of(value) if rps is None else short(value)
            raise at.field("requests_per_second").error(f"must be a finite number above 0, not {shown}")
    credentials = _credentials(f["credentials"], at.field("credentials")) if "credentials" in f else None
    mirrors = _mirrors(f["mirrors"], at.field("mirrors"), host) if "mirrors" in f else ()
    timeout = _seconds(f["request_timeout"], at.field("request_timeout")) if "request_timeout" in f else None
    return RegistryConfig(
        host, scheme, files.get("ca_file"), files.get("client_cert"), files.get("client_key"),
        credentials, max_concurrency, rps, mirrors, timeout,
    )


def _seconds(value: object, at: At) -> float:
    """A finite number of seconds above 0."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        shown = repr(value) if isinstance(value, int | float) else kind_of(value)
        raise at.error(f"must be a number of seconds above 0, not {shown}")
    return float(value)


def _mirrors(value: object, at: At, host: str) -> tuple[str, ...]:
    """``host[:port][/prefix]`` strings, in the order they are tried; never the registry itself."""
    out: list[str] = []
    for i, item in enumerate(as_list(value, at)):
        iat = at.index(i)
        mirror_host, prefix = as_location(as_string(item, iat), iat, what="mirror", host_required=True)
        if is_local(mirror_host):
            raise iat.error("a mirror is a registry, not a local store")
        if mirror_host == host:
            raise iat.error(f"{host} cannot mirror itself")
        out.append(join_endpoint(mirror_host, prefix))
    return dedupe(out)


def _credentials(value: object, at: At) -> Credentials:
    """Exactly one form: username + password, identity_token (username optional), helper, or authfile."""
    f = as_mapping(value, at, _CREDENTIAL_KEYS)
    forms = [k for k in ("password", "identity_token", "helper", "authfile") if k in f]
    if not forms:
        if "username" in f:
            raise at.field("password").error("username needs a password (or use identity_token)")
        raise at.error("give one of: username + password, identity_token, helper, authfile")
    if len(forms) > 1:
        raise at.error(f"give exactly one of password, identity_token, helper, authfile; got {' and '.join(forms)}")
    form = forms[0]
    if form == "password" and "username" not in f:
        raise at.field("username").error("password needs a username")
    if form in ("helper", "authfile") and "username" in f:
        raise at.field("username").error(f"username goes with password or identity_token, not {form}")
    refresh_after = None
    if "refresh_after" in f:
        if form not in ("helper", "authfile"):
            raise at.field("refresh_after").error("re-running applies to a helper or an authfile's helpers only")
        # secret: a password pasted into the wrong key must not be echoed.
        refresh_after = as_seconds(f.pop("refresh_after"), at.field("refresh_after"), secret=True)
    # secret=True: type errors must not hint at (or show) the value.
    values = {k: as_string(f[k], at.field(k), secret=k in ("password", "identity_token")) for k in f}
    return Credentials(
        username=values.get("username"), password=values.get("password"),
        identity_token=values.get("identity_token"), helper=values.get("helper"), authfile=values.get("authfile"),
        refresh_after=refresh_after,
    )
