"""The credential rule: which URLs may carry a registry's credentials (docs/security.md).

A registry's credentials belong to the origin its probe chose: scheme, host and port. Every URL a
request goes to — a path on the registry, a redirect, an upload ``Location``, a pagination ``Link`` —
is resolved and classified here, by :func:`classify`, which :meth:`Transport.target` calls:

* the registry's own origin: credentials are attached;
* another origin: the request goes without ``Authorization`` (go-containerregistry
  pkg/v1/remote/transport adds it only for the registry's own host), or is refused where following
  would mix another host's answers into the registry's (a listing's ``Link``);
* https to plain http is refused everywhere: the same host's http port is another origin, and the
  bytes, upload ``_state`` tokens and signed URLs would travel in clear text.

Malformed URLs (bad brackets, ports out of range, control characters, userinfo, other schemes)
are :class:`ProtocolViolation`, never a ``ValueError`` from a URL parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urljoin, urlsplit

from regcopy.errors import ProtocolViolation
from regcopy.registry._errors import redact_url

__all__ = ("Foreign", "Origin", "Target", "classify", "origin_of", "show")

Origin = tuple[str, str, int]
"""``(scheme, lowercase host, port)`` with the scheme's default port filled in."""

Foreign = Literal["anonymous", "refuse"]
"""What to do with another origin: reach it without credentials, or refuse it."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_UNPRINTABLE: Final = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes and whether it may carry the registry's credentials."""

    url: str
    credentials: bool
    origin: Origin


def origin_of(url: str) -> Origin:
    """The origin of an absolute http(s) URL.

    :raises ProtocolViolation: not an absolute http(s) URL with a host and a valid port
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise ProtocolViolation(f"malformed URL {redact_url(url)!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ProtocolViolation(f"not an http(s) URL: {redact_url(url)!r}")
    if not parts.hostname:
        raise ProtocolViolation(f"URL without a host: {redact_url(url)!r}")
    if "@" in parts.netloc:
        # aiohttp would turn the userinfo into an Authorization header of its own.
        raise ProtocolViolation(f"URL with credentials in it: {redact_url(url)!r}")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def show(origin: Origin) -> str:
    """``scheme://host:port`` (IPv6 hosts in brackets), for messages."""
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def classify(home: Origin, location: str, base: str, *, foreign: Foreign = "anonymous",
             what: str = "request") -> Target:
    """Resolve ``location`` against ``base`` and decide whether the registry at ``home`` may send it
    its credentials.

    :param home: the registry's origin (what its probe chose)
    :param what: names the URL in errors ("redirect", "upload Location", "pagination Link", ...)
    :raises ProtocolViolation: malformed; a downgrade from https to http; another origin when
        ``foreign`` is ``refuse``. Messages name both origins.
    """
    # One regex scan, not a generator per character: every request's URL passes here.
    if not location.isascii() or _UNPRINTABLE.search(location):
        # RFC 3986 URIs are printable ASCII; anything else would be re-encoded or rejected by the client.
        raise ProtocolViolation(f"malformed {what} {location[:100]!r}")
    try:
        url = urljoin(base, location)
    except ValueError as exc:
        raise ProtocolViolation(f"malformed {what} {redact_url(location)!r}: {exc}") from exc
    try:
        there = origin_of(url)
    except ProtocolViolation as exc:
        raise ProtocolViolation(f"{what}: {exc.message}") from exc
    if there == home:
        return Target(url, True, there)
    if home[0] == "https" and there[0] == "http":
        raise ProtocolViolation(f"refusing {what} to {show(there)}: it downgrades {show(home)} to plain http")
    if foreign == "refuse":
        raise ProtocolViolation(f"refusing {what} to {show(there)}: it is not the registry's origin {show(home)}")
    return Target(url, False, there)
