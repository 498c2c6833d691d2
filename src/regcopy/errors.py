"""The exception hierarchy: every error regcopy raises derives from :class:`RegcopyError`.

::

    RegcopyError(Exception)
    ├── InvalidReference(RegcopyError, ValueError)   unparsable reference or location string
    ├── ConfigError(RegcopyError, ValueError)        bad plan / registry settings (.path, .entry, .key)
    ├── CredentialError                               config.json unreadable, helper missing or failed
    ├── RegistryError                                 any failure talking to a registry
    │   ├── TransportError                            connect / TLS / DNS / disconnect (no HTTP status)
    │   │   └── RegistryTimeout(TransportError, TimeoutError)
    │   ├── AuthenticationError                       401 after token exchange, token endpoint failure
    │   ├── PermissionDenied                          403 / DENIED
    │   ├── NotFound(RegistryError, LookupError)      404 / *_UNKNOWN
    │   │   ├── ManifestNotFound
    │   │   └── BlobNotFound
    │   ├── RateLimited                               429 / TOOMANYREQUESTS (.retry_after)
    │   │   └── PullLimitReached                      the pull quota is down to its reserve (not retried)
    │   ├── Unsupported                               405 / 501, catalog disabled, deletes disabled
    │   └── ProtocolViolation                         malformed response: missing Location, bad JSON, ...
    ├── ContentError                                  the bytes are wrong, wherever they came from
    │   ├── DigestMismatch                            (.expected, .actual)
    │   ├── SizeMismatch                              (.expected, .actual)
    │   ├── InvalidManifest
    │   └── UnsupportedMediaType
    ├── StoreError                                    local layout / archive problems
    └── CopyFailed                                    several independent failures (.errors)

Registry errors carry structure (status, OCI error codes, a redacted URL and a ``retryable``
verdict) so callers and the retry loop decide without parsing messages (ggcr ``transport/error.go``).

No message shows a secret: :func:`redact` drops the userinfo and query of every URL in an error's
text when it is rendered (signed storage URLs, upload ``_state`` tokens, ``user:password@`` in a
reference), whatever produced the text (docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = (
    "AuthenticationError",
    "BlobNotFound",
    "ConfigError",
    "ContentError",
    "CopyFailed",
    "CredentialError",
    "DigestMismatch",
    "DigestsNotPreserved",
    "InvalidManifest",
    "InvalidReference",
    "ManifestNotFound",
    "NotFound",
    "PermissionDenied",
    "ProtocolViolation",
    "PullLimitReached",
    "RateLimited",
    "RegcopyError",
    "RegistryError",
    "RegistryTimeout",
    "SizeMismatch",
    "StoreError",
    "TransportError",
    "Unsupported",
    "UnsupportedMediaType",
    "redact",
)

# An absolute URL (its userinfo and query are secrets), or a registry API path with a query (an
# upload Location's ``_state``). A URL ends at whitespace, a quote or an angle bracket.
_URL_IN_TEXT: Final = re.compile(
    r"(?:(?<![A-Za-z0-9])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^\s'\"<>`/?#]*)(?P<path>[^\s'\"<>`?#]*?)"
    r"(?P<query>[?#][^\s'\"<>`]*?)?"
    r"|(?<![^\s'\"(<=\[])(?P<api>/v2/[^\s'\"<>`?#]*)(?P<apiquery>\?[^\s'\"<>`]*?))"
    # Punctuation that ends a sentence or a field ("...?q=1: 403") stays outside the URL.
    r"(?=[:,;.)\]]*(?:[\s'\"<>`]|$))"
)


def redact(text: str) -> str:
    """``text`` with every URL's userinfo and query replaced: ``https://***@host/p?<redacted>``."""
    return _URL_IN_TEXT.sub(_redact_match, text) if ("://" in text or "/v2/" in text) else text


def _redact_match(match: re.Match[str]) -> str:
    if match.group("api") is not None:
        return match.group("api") + "?<redacted>"
    authority = match.group("authority")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    query = "?<redacted>" if match.group("query") else ""
    return match.group("scheme") + authority + match.group("path") + query


class RegcopyError(Exception):
    """Base of every error regcopy raises; its text never shows a URL's userinfo or query (:func:`redact`)."""

    def __str__(self) -> str:
        return redact(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidReference(RegcopyError, ValueError):
    """A reference or location string cannot be parsed; ``.part`` names the offending part."""

    def __init__(self, text: str, reason: str, *, part: str | None = None) -> None:
        self.text = text
        self.reason = reason
        self.part = part
        where = f" ({part})" if part else ""
        super().__init__(f"invalid reference {text!r}{where}: {reason}")


class ConfigError(RegcopyError, ValueError):
    """A plan or settings file is invalid; names the file, the entry and the key when known."""

    def __init__(
        self, message: str, *, path: str | None = None, entry: str | None = None, key: str | None = None
    ) -> None:
        self.path = path
        self.entry = entry
        self.key = key
        where = ": ".join(p for p in (path, entry, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class CredentialError(RegcopyError):
    """Credentials cannot be read: unreadable config file, missing or failing credential helper."""

    def __init__(self, message: str, *, registry: str | None = None, helper: str | None = None) -> None:
        self.registry = registry
        self.helper = helper
        super().__init__(message)


# OCI error codes that mean "try again later" (ggcr transport/error.go Temporary()).
_RETRYABLE_CODES = frozenset({"TOOMANYREQUESTS", "UNKNOWN", "UNAVAILABLE"})
_RETRYABLE_STATUS = frozenset({408, 429, 499, 500, 502, 503, 504, 522})


class RegistryError(RegcopyError):
    """A failure talking to a registry.

    :ivar registry: the registry host
    :ivar method: the HTTP method of the failing request
    :ivar url: the request URL, redacted (no query string)
    :ivar status: the HTTP status, or None when no response arrived
    :ivar codes: the OCI ``errors[].code`` values of the response body
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        codes: Sequence[str] = (),
    ) -> None:
        self.message = redact(message)  # also an attribute callers quote: never with a secret in it
        self.registry = registry
        self.method = method
        self.url = None if url is None else redact(url)
        self.status = status
        self.codes = tuple(codes)
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.method and self.url:
            parts.append(f"{self.method} {self.url}")
        elif self.registry:
            parts.append(self.registry)
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.codes:
            parts.append(",".join(self.codes))
        prefix = " ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request may succeed (status or code says "temporary")."""
        if any(code in _RETRYABLE_CODES for code in self.codes):
            return True
        return self.status in _RETRYABLE_STATUS


class TransportError(RegistryError):
    """The connection failed: refused, reset, TLS, DNS or a truncated response."""

    @property
    def retryable(self) -> bool:
        return True


class RegistryTimeout(TransportError, TimeoutError):
    """A connect or read timed out."""


class AuthenticationError(RegistryError):
    """Authentication failed: bad credentials, a token endpoint failure, or 401 after a fresh token."""

    @property
    def retryable(self) -> bool:
        return False


class PermissionDenied(RegistryError):
    """The registry refused the request (403 or DENIED)."""

    @property
    def retryable(self) -> bool:
        return False


class NotFound(RegistryError, LookupError):
    """The repository, manifest or blob does not exist (404 or a *_UNKNOWN code)."""

    @property
    def retryable(self) -> bool:
        return False


class ManifestNotFound(NotFound):
    """The manifest (tag or digest) does not exist."""


class BlobNotFound(NotFound):
    """The blob does not exist."""


class RateLimited(RegistryError):
    """The registry throttled us (429 / TOOMANYREQUESTS); ``retry_after`` in seconds when it said."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        registry: str | None = None,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        codes: Sequence[str] = (),
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, registry=registry, method=method, url=url, status=status, codes=codes)

    @property
    def retryable(self) -> bool:
        return True


class PullLimitReached(RateLimited):
    """No new pull (manifest GET) may start on this host in this run: the quota it announced
    (Docker Hub's ``ratelimit-remaining``) is down to the reserve, or spent (docs/registry-quirks.md).

    :ivar remaining: pulls left when it stopped; ``limit`` and ``window`` (seconds) when the host said
    """

    def __init__(self, message: str, *, registry: str | None = None, remaining: int = 0, limit: int | None = None,
                 window: float | None = None, method: str | None = None, url: str | None = None,
                 codes: Sequence[str] = ()) -> None:
        self.remaining, self.limit, self.window = remaining, limit, window
        super().__init__(message, registry=registry, method=method, url=url, status=429, codes=codes)

    @property
    def retryable(self) -> bool:
        return False


class Unsupported(RegistryError):
    """The registry does not support the operation (405/501, catalog or deletes disabled)."""

    @property
    def retryable(self) -> bool:
        return False


class ProtocolViolation(RegistryError):
    """The registry answered something malformed: bad JSON, missing Location, wrong Range, ..."""

    @property
    def retryable(self) -> bool:
        return False


class ContentError(RegcopyError):
    """The bytes are wrong, wherever they came from."""


class DigestMismatch(ContentError):
    """Content hashed to another digest than expected."""

    def __init__(self, expected: str, actual: str, *, what: str = "content") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {actual}")


class SizeMismatch(ContentError):
    """Content had another size than expected (truncated or overlong)."""

    def __init__(self, expected: int, actual: int, *, what: str = "content") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"{what}: size mismatch: expected {expected} bytes, got {actual}")


class InvalidManifest(ContentError):
    """A manifest or index is not valid JSON of a known shape."""


class UnsupportedMediaType(ContentError):
    """A manifest has a media type regcopy does not handle."""


class StoreError(RegcopyError):
    """A local OCI layout or archive is missing, corrupt or unwritable."""


class DigestsNotPreserved(RegcopyError):
    """The copy would give the image new digests (a format conversion, a new index of a platform subset,
    a manifest built for a classic docker-archive) and the caller asked to preserve them; nothing was copied."""


class CopyFailed(RegcopyError):
    """Several independent operations failed; ``errors`` holds each one."""

    def __init__(self, message: str, errors: Sequence[BaseException]) -> None:
        self.errors = tuple(errors)
        detail = "; ".join(str(e) for e in self.errors[:5])
        more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{message}: {detail}{more}")
