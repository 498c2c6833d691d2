"""Turning registry answers into regcopy errors: OCI error bodies, status classes, Retry-After, redaction.

Pure functions; :mod:`regcopy.registry.exchange` and the transport call them in the one place where aiohttp errors
and HTTP statuses become the :mod:`regcopy.errors` hierarchy (docs/architecture.md#retries-and-errors).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from regcopy.errors import (
    AuthenticationError,
    BlobNotFound,
    ManifestNotFound,
    NotFound,
    PermissionDenied,
    RateLimited,
    RegistryError,
    Unsupported,
)

__all__ = ("error_from_response", "parse_error_body", "parse_retry_after", "redact_url")

MAX_ERROR_BODY: Final = 64 * 1024


def redact_url(url: str) -> str:
    """Drop the query string and any userinfo: upload ``_state`` tokens and signed storage URLs are secrets."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_error_body(body: bytes) -> tuple[tuple[str, ...], str]:
    """The OCI ``errors[].code`` values and a short human message from an error body.

    Not every error body is JSON (2.8.2's router answers ``text/plain 404 page not found``;
    proxies answer HTML), so anything unparsable yields no codes and a trimmed text snippet.
    """
    body = body[:MAX_ERROR_BODY]
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting is garbage too
        return (), _snippet(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("errors"), list):
        return (), _snippet(body)
    codes: list[str] = []
    messages: list[str] = []
    for item in obj["errors"]:
        if not isinstance(item, dict):
            continue
        code, message = item.get("code"), item.get("message")
        if isinstance(code, str):
            codes.append(code.upper())
        if isinstance(message, str) and message:
            detail = item.get("detail")
            if isinstance(detail, str | int | float) and detail != "":
                message = f"{message} ({str(detail)[:200]})"
            messages.append(message[:300])
    return tuple(codes), "; ".join(messages) or _snippet(body)


def _snippet(body: bytes) -> str:
    text = body[:300].decode("utf-8", "replace")
    # HTML error pages are noise: keep one line of visible text.
    text = " ".join(text.split())
    return text[:200]


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date, RFC 9110 §10.2.3).

    Returns None when absent or malformed; negative results clamp to 0; huge values to one hour.
    """
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isascii() and value.isdigit():  # str.isdigit() alone accepts '²', which float() refuses
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, 3600.0))


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    registry: str,
    method: str,
    url: str,
    what: str | None = None,
) -> RegistryError:
    """The regcopy error for a non-success HTTP answer.

    :param what: ``"manifest"`` or ``"blob"`` to pick the specific NotFound subclass
    """
    codes, message = parse_error_body(body)
    message = message or f"unexpected HTTP {status}"
    cls = _error_class(status, codes, what)
    redacted = redact_url(url)
    if cls is RateLimited:
        return RateLimited(message, retry_after=parse_retry_after(headers.get("Retry-After")), registry=registry,
                           method=method, url=redacted, status=status, codes=codes)
    return cls(message, registry=registry, method=method, url=redacted, status=status, codes=codes)


def _error_class(status: int, codes: tuple[str, ...], what: str | None) -> type[RegistryError]:
    if status == 429 or "TOOMANYREQUESTS" in codes:
        return RateLimited
    if status == 401:
        return AuthenticationError
    if status == 403 or "DENIED" in codes:
        return PermissionDenied
    if status == 404:
        if "MANIFEST_UNKNOWN" in codes or what == "manifest":
            return ManifestNotFound
        if "BLOB_UNKNOWN" in codes or what == "blob":
            return BlobNotFound
        return NotFound
    if status in (405, 501) or "UNSUPPORTED" in codes:
        return Unsupported
    return RegistryError
