"""The ``registries:`` section every plan shares: host → what the plan says about that host.

Sync plans and prune plans both carry ``registries:`` (host → scheme mode, TLS files, credentials
source, limits, mirrors); this module owns its strict parser (:func:`parse_registries`), which makes
each entry an :class:`~regcopy.settings.Overrides` holding only the keys the entry gives, so a plan
never sets what it does not mention (docs/architecture.md, "Settings resolution"). Secrets never
appear in ``repr`` or in error messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from regcopy.locations import LocalRepository
from regcopy.planaddress import as_host, as_location
from regcopy.planfile import (
    At,
    as_list,
    as_mapping,
    as_positive_int,
    as_seconds,
    as_string,
    float_of,
    kind_of,
    short,
)
from regcopy.reference import Namespace
from regcopy.settings import SCHEME_MODES, Credentials, Overrides, SchemeMode, parse_byte_rate

__all__ = ("parse_registries",)

_TLS_MODES: Final[Mapping[str, SchemeMode]] = {m: m for m in SCHEME_MODES}
_REGISTRY_KEYS: Final = (
    "tls", "ca_file", "client_cert", "client_key", "credentials", "max_concurrency", "adaptive",
    "requests_per_second", "requests_per_minute", "limit_rate", "pull_reserve", "mirrors", "request_timeout",
)
_CREDENTIAL_KEYS: Final = ("username", "password", "helper", "authfile", "identity_token", "refresh_after")


# --------------------------------------------------------------------------------------- parser


def parse_registries(value: object, path: str | None) -> dict[str, Overrides]:
    """The ``registries:`` section: normalised host → the overrides its entry gives.

    :raises ConfigError: an invalid entry (``.key`` names it)
    """
    out: dict[str, Overrides] = {}
    if value is None:  # 'registries:' with everything commented out
        return out
    for raw, settings in as_mapping(value, At(path, "registries", "registries")).items():
        at = At(path, raw, "registries").member(raw)
        host = as_host(raw, at, "registry key")
        if host in out:
            raise at.error(f"registry {host!r} is configured twice")
        out[host] = _registry(host, settings, at)
    return out


def _registry(host: str, value: object, at: At) -> Overrides:
    f = as_mapping({} if value is None else value, at, _REGISTRY_KEYS)
    settings: dict[str, Any] = {}
    if "tls" in f:
        tls = f["tls"]
        if not isinstance(tls, str) or tls not in _TLS_MODES:
            shown = short(tls) if isinstance(tls, str) else kind_of(tls)
            raise at.field("tls").error(f"must be one of {', '.join(_TLS_MODES)}, not {shown}")
        settings["scheme"] = _TLS_MODES[tls]
    settings |= {k: as_string(f[k], at.field(k)) for k in ("ca_file", "client_cert", "client_key") if k in f}
    if "client_key" in settings and "client_cert" not in settings:
        raise at.field("client_key").error("client_key needs client_cert")
    settings |= _limits(f, at)
    if "request_timeout" in f:
        settings["request_timeout"] = _seconds(f["request_timeout"], at.field("request_timeout"))
    credentials = _credentials(f["credentials"], at.field("credentials")) if "credentials" in f else None
    mirrors = _mirrors(f["mirrors"], at.field("mirrors"), host) if "mirrors" in f else None
    return Overrides(settings, credentials, mirrors)


def _limits(f: Mapping[str, object], at: At) -> dict[str, Any]:
    """The throughput keys (docs/architecture.md, "Limits"): concurrency, request quotas, bandwidth, pulls."""
    out: dict[str, Any] = {}
    if "max_concurrency" in f:
        out["max_concurrency"] = as_positive_int(f["max_concurrency"], at.field("max_concurrency"))
    if "adaptive" in f:
        if not isinstance(f["adaptive"], bool):
            raise at.field("adaptive").error(f"must be true or false, not {kind_of(f['adaptive'])}")
        out["adaptive"] = f["adaptive"]
    for key in ("requests_per_second", "requests_per_minute"):
        if key in f:
            out[key] = _rate(f[key], at.field(key))
    if "limit_rate" in f:
        out["limit_rate"] = _byte_rate(f["limit_rate"], at.field("limit_rate"))
    if "pull_reserve" in f:
        reserve = f["pull_reserve"]
        if not isinstance(reserve, int) or isinstance(reserve, bool) or reserve < 0:
            shown = short(reserve) if isinstance(reserve, int) else kind_of(reserve)
            raise at.field("pull_reserve").error(f"must be an integer of 0 or more, not {shown}")
        out["pull_reserve"] = reserve
    return out


def _byte_rate(value: object, at: At) -> int:
    """Bytes per second: a positive integer, or text such as ``50M`` (:func:`~regcopy.settings.parse_byte_rate`)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str):
        try:
            return parse_byte_rate(value)
        except ValueError as exc:
            raise at.error(str(exc)) from None
    shown = short(value) if isinstance(value, int | float) and not isinstance(value, bool) else kind_of(value)
    raise at.error(f"must be bytes per second (e.g. 50M, 10MB, 1048576), not {shown}")


def _rate(value: object, at: At) -> float:
    """A finite number of requests per second above 0."""
    rps = float_of(value)
    if rps is None or not math.isfinite(rps) or not rps > 0:
        shown = kind_of(value) if rps is None else short(value)
        raise at.error(f"must be a finite number above 0, not {shown}")
    return rps


def _seconds(value: object, at: At) -> float:
    """A finite number of seconds above 0."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        shown = repr(value) if isinstance(value, int | float) else kind_of(value)
        raise at.error(f"must be a number of seconds above 0, not {shown}")
    return float(value)


def _mirrors(value: object, at: At, host: str) -> tuple[Namespace, ...]:
    """``host[:port][/prefix]`` namespaces, in the order they are tried; never the registry itself."""
    out: list[Namespace] = []
    for i, item in enumerate(as_list(value, at)):
        iat = at.index(i)
        mirror = as_location(as_string(item, iat), iat, what="mirror", host_required=True)
        if isinstance(mirror, LocalRepository):
            raise iat.error("a mirror is a registry, not a local store")
        if mirror.registry == host:
            raise iat.error(f"{host} cannot mirror itself")
        out.append(mirror)
    return tuple(dict.fromkeys(out))  # repeats dropped, first order kept


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
