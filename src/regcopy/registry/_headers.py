"""Parsers of registry response headers: ``Link`` pagination, upload ``Range``, ``Content-Range``,
rate-limit quotas (``ratelimit-limit`` / ``ratelimit-remaining``).

Pure functions over outside input: each returns a value or raises :class:`ProtocolViolation`,
never another exception (property-tested). The rate-limit headers are advisory: a malformed one is
ignored (None), never a failed request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin

from regcopy.errors import ProtocolViolation

__all__ = ("RateLimitHeader", "parse_content_range", "parse_link_next", "parse_ratelimit", "parse_upload_range")

_LINK_PART: Final = re.compile(r"\s*<([^>]*)>\s*((?:;\s*[A-Za-z0-9_*-]+\s*=\s*(?:\"[^\"]*\"|[^;,\"]*)\s*)*)")
_PARAM: Final = re.compile(r";\s*([A-Za-z0-9_*-]+)\s*=\s*(\"[^\"]*\"|[^;,\"]*)")
_UPLOAD_RANGE: Final = re.compile(r"(?:bytes=)?([0-9]{1,19})-([0-9]{1,19})")
_CONTENT_RANGE: Final = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")
_QUOTA: Final = re.compile(r"([0-9]{1,12})\s*((?:;\s*[A-Za-z0-9_-]+\s*=\s*(?:\"[^\"]*\"|[^;,\"]*)\s*)*)")


def parse_link_next(value: str | None, base_url: str) -> str | None:
    """The absolute URL of the ``rel="next"`` target of a ``Link`` header (RFC 8288), or None.

    2.8.2 sends relative targets such as ``</v2/_catalog?last=b&n=2>; rel="next"`` (docs/protocol.md#listing);
    they are resolved against the request URL.
    """
    if not value:
        return None
    pos = 0
    while pos < len(value):
        match = _LINK_PART.match(value, pos)
        if match is None:
            raise ProtocolViolation(f"malformed Link header: {value[:200]!r}")
        target, params = match.group(1), match.group(2)
        for name, raw in _PARAM.findall(params):
            if name.lower() == "rel" and "next" in raw.strip('"').lower().split():
                try:
                    return str(urljoin(base_url, target.strip()))
                except ValueError as exc:
                    raise ProtocolViolation(f"malformed Link target: {target[:200]!r}") from exc
        pos = match.end()
        if pos < len(value):
            if value[pos] != ",":
                raise ProtocolViolation(f"malformed Link header: {value[:200]!r}")
            pos += 1
    return None


def parse_upload_range(value: str | None) -> int | None:
    """The number of bytes a registry holds for an upload session, from its ``Range: 0-<end>``.

    Returns None when the header is absent. Note 2.8.2 answers ``0-0`` for an empty session
    (docs/registry-quirks.md), which is ambiguous with one byte: callers track the offset themselves and
    only use this value to check or to resume where the spec is followed.
    """
    if value is None:
        return None
    match = _UPLOAD_RANGE.fullmatch(value.strip())
    if match is None:
        raise ProtocolViolation(f"malformed upload Range header: {value[:100]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if start != 0 or end < start:
        raise ProtocolViolation(f"upload Range must be 0-<end>: {value[:100]!r}")
    return end + 1


def parse_content_range(value: str | None) -> tuple[int, int, int | None]:
    """``(first, last, total)`` from a 206 ``Content-Range: bytes first-last/total`` (RFC 9110 §14.4)."""
    if value is None:
        raise ProtocolViolation("206 response without Content-Range")
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise ProtocolViolation(f"malformed Content-Range header: {value[:100]!r}")
    first, last = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (total is not None and last >= total):
        raise ProtocolViolation(f"inconsistent Content-Range: {value[:100]!r}")
    return first, last, total


@dataclass(frozen=True, slots=True)
class RateLimitHeader:
    """A quota a registry announced: ``limit`` per ``window`` seconds and ``remaining`` of it (each
    None when not said). Docker Hub sends ``ratelimit-limit: 100;w=21600`` and
    ``ratelimit-remaining: 87;w=21600`` on manifest requests (docs/registry-quirks.md#docker-hub-pull-limits)."""

    limit: int | None
    remaining: int | None
    window: float | None


def parse_ratelimit(limit: str | None, remaining: str | None) -> RateLimitHeader | None:
    """The quota of the ``ratelimit-limit`` and ``ratelimit-remaining`` values, or None without a usable one.

    Each value is ``N`` with optional parameters (``;w=SECONDS``), possibly followed by further
    comma-separated policies (the IETF RateLimit header drafts); the first item counts. A malformed
    value counts as absent.
    """
    lim, lim_window = _quota_item(limit)
    rem, rem_window = _quota_item(remaining)
    if lim is None and rem is None:
        return None
    return RateLimitHeader(lim, rem, rem_window if rem_window is not None else lim_window)


def _quota_item(value: str | None) -> tuple[int | None, float | None]:
    """``(N, w)`` of the first item of a quota header; ``(None, None)`` when absent or malformed."""
    if not value or len(value) > 1000:
        return None, None
    match = _QUOTA.fullmatch(value.split(",", 1)[0].strip())
    if match is None:
        return None, None
    window = None
    for name, raw in _PARAM.findall(match.group(2)):
        text = raw.strip().strip('"')
        if name.lower() == "w" and text.isascii() and text.isdigit() and len(text) <= 12:
            window = float(text)
    return int(match.group(1)), window
