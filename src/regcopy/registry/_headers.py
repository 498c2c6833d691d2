"""Parsers of registry response headers: ``Link`` pagination, upload ``Range``, ``Content-Range``.

Pure functions over outside input: each returns a value or raises :class:`ProtocolViolation`,
never another exception (property-tested).
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urljoin

from regcopy.errors import ProtocolViolation

__all__ = ("parse_content_range", "parse_link_next", "parse_upload_range")

_LINK_PART: Final = re.compile(r"\s*<([^>]*)>\s*((?:;\s*[A-Za-z0-9_*-]+\s*=\s*(?:\"[^\"]*\"|[^;,\"]*)\s*)*)")
_PARAM: Final = re.compile(r";\s*([A-Za-z0-9_*-]+)\s*=\s*(\"[^\"]*\"|[^;,\"]*)")
_UPLOAD_RANGE: Final = re.compile(r"(?:bytes=)?([0-9]{1,19})-([0-9]{1,19})")
_CONTENT_RANGE: Final = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)")


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
