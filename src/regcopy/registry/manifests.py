"""Manifest, tag and catalog operations on a registry (distribution spec, "Pull", "Push", "Content discovery").

Manifests travel as exact bytes: fetched with the full Accept set (docs/protocol.md#manifests), checked against
the requested digest or ``Docker-Content-Digest``, pushed verbatim with ``Content-Type`` equal to
their media type.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from regcopy.digest import Digest
from regcopy.errors import (
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    NotFound,
    PermissionDenied,
    ProtocolViolation,
    RegistryError,
    Unsupported,
)
from regcopy.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, Manifest, ManifestInfo
from regcopy.registry._challenge import CATALOG_SCOPE, Scope
from regcopy.registry._errors import redact_url
from regcopy.registry._headers import parse_link_next
from regcopy.registry.transport import Reply, Transport

__all__ = (
    "ManifestInfo",
    "catalog",
    "digest_header",
    "manifest_delete",
    "manifest_get",
    "manifest_head",
    "manifest_put",
    "pull_scope",
    "push_scope",
    "tags_list",
)

_MAX_PAGES: Final = 100_000


def pull_scope(repo: str) -> Scope:
    """The token scope needed to read ``repo``."""
    return Scope.repository(repo, "pull")


def push_scope(repo: str) -> Scope:
    """The token scope needed to write ``repo`` (2.8.2 needs pull and push for POST/PUT/PATCH)."""
    return Scope.repository(repo, "pull", "push")


def _path(repo: str, ref: str) -> str:
    return f"/v2/{repo}/manifests/{quote(ref, safe=':')}"


async def manifest_head(t: Transport, repo: str, ref: str, *, scopes: Sequence[Scope] = ()) -> ManifestInfo | None:
    """HEAD a manifest by tag or digest; None when it does not exist.

    HEAD does not count as a pull on Docker Hub (docs/protocol.md#docker-hub), so incremental syncs use it.

    :raises ProtocolViolation: the answer lacks a usable ``Docker-Content-Digest``
    """
    try:
        reply = await t.request("HEAD", _path(repo, ref), scopes=scopes or (pull_scope(repo),),
                                headers={"Accept": MANIFEST_ACCEPT}, what="manifest", follow_redirects=True)
    except NotFound:
        return None
    header = reply.headers.get("Docker-Content-Digest")
    if header is None:
        if ":" in ref:  # a digest (tags cannot contain ':')
            header = ref  # by digest, the digest is known (spec@main: assume the requested one)
        else:
            raise ProtocolViolation("HEAD manifest answer has no Docker-Content-Digest", registry=t.registry,
                                    method="HEAD", url=redact_url(reply.url), status=reply.status)
    digest = digest_header(t, header, reply)
    size = _content_length(t, reply)
    media_type = reply.headers.get("Content-Type", "").split(";")[0].strip()
    return ManifestInfo(digest, media_type, size)


async def manifest_get(t: Transport, repo: str, ref: str, *, scopes: Sequence[Scope] = ()) -> Manifest:
    """GET a manifest by tag or digest, verified.

    :raises ManifestNotFound: no such manifest
    :raises DigestMismatch: the bytes do not hash to the requested digest or to Docker-Content-Digest
    :raises InvalidManifest: the body is not a manifest we understand
    """
    # Redirects are followed as go-containerregistry and containers/image do (Go's client), with no
    # credentials on another origin.
    reply = await t.request("GET", _path(repo, ref), scopes=scopes or (pull_scope(repo),),
                            headers={"Accept": MANIFEST_ACCEPT}, what="manifest", max_body=MAX_MANIFEST_SIZE,
                            follow_redirects=True)
    expected: Digest | None = None
    if ":" in ref:
        expected = Digest.parse(ref)
    header = reply.headers.get("Docker-Content-Digest")
    if header and expected is None:
        expected = digest_header(t, header, reply)
    try:
        return Manifest.parse(reply.body, reply.headers.get("Content-Type"), digest=expected)
    except DigestMismatch as exc:
        raise DigestMismatch(exc.expected, exc.actual, what=f"manifest {t.registry}/{repo}@{ref}") from exc
    except InvalidManifest as exc:
        raise type(exc)(f"{t.registry}/{repo}:{ref}: {exc}") from exc


async def manifest_put(t: Transport, repo: str, ref: str, manifest: Manifest) -> Digest:
    """PUT the exact manifest bytes under a tag or digest; returns the digest the registry reports.

    :raises DigestMismatch: the registry stored something else (it must store the bytes as sent)
    """
    reply = await t.request(
        "PUT", _path(repo, ref), scopes=(push_scope(repo),),
        headers={"Content-Type": manifest.media_type}, data=manifest.data, ok=(200, 201, 202),
    )
    header = reply.headers.get("Docker-Content-Digest")
    if header:
        stored = digest_header(t, header, reply)
        if stored != manifest.digest:
            raise DigestMismatch(str(manifest.digest), str(stored), what=f"manifest pushed to {t.registry}/{repo}")
    return manifest.digest


async def manifest_delete(t: Transport, repo: str, digest: Digest) -> None:
    """DELETE a manifest by digest (2.8.2 answers 400 DIGEST_INVALID to a delete by tag: docs/protocol.md#deleting).

    :raises Unsupported: deletes are disabled on the registry (405 UNSUPPORTED)
    """
    try:
        await t.request("DELETE", _path(repo, str(digest)), scopes=(Scope.repository(repo, "delete"),),
                        ok=(200, 202, 204), what="manifest")
    except Unsupported as exc:
        raise Unsupported(f"deletes are disabled on {t.registry} ({exc.message})", registry=t.registry,
                          method=exc.method, url=exc.url, status=exc.status, codes=exc.codes) from exc


async def tags_list(t: Transport, repo: str, *, page_size: int | None = None) -> list[str]:
    """Every tag of ``repo``, following ``Link`` pagination, sorted (2.8.2 returns them unsorted).

    :raises NotFound: the repository does not exist
    """
    query = f"?n={page_size}" if page_size else ""
    tags = await _paginate(t, f"/v2/{repo}/tags/list{query}", "tags", (pull_scope(repo),))
    return sorted(set(tags))


async def catalog(t: Transport, *, page_size: int = 1000) -> list[str]:
    """Every repository of the registry via ``/v2/_catalog`` (Docker Registry API, not OCI).

    2.8.2 rejects ``n`` above ``catalog.maxentries`` (default 1000) with 400 (docs/protocol.md#listing).

    :raises Unsupported: the catalog is disabled or forbidden on this registry
    """
    try:
        try:
            repos = await _paginate(t, f"/v2/_catalog?n={page_size}", "repositories", (CATALOG_SCOPE,))
        except RegistryError as exc:
            if "PAGINATION_NUMBER_INVALID" not in exc.codes:
                raise
            # n above catalog.maxentries is a 400 on 2.8.2: let the registry pick its own page size.
            repos = await _paginate(t, "/v2/_catalog", "repositories", (CATALOG_SCOPE,))
    except (NotFound, PermissionDenied, Unsupported) as exc:
        raise Unsupported(f"the catalog of {t.registry} is disabled or forbidden ({exc.message})",
                          registry=t.registry, status=exc.status, codes=exc.codes) from exc
    return sorted(set(repos))


async def _paginate(t: Transport, path: str, key: str, scopes: Sequence[Scope]) -> list[str]:
    items: list[str] = []
    target: str | None = path
    seen: set[str] = set()
    for _ in range(_MAX_PAGES):
        if target is None:
            return items
        if target in seen:
            raise ProtocolViolation(f"pagination loops back to {redact_url(target)}", registry=t.registry)
        seen.add(target)
        reply = await t.request("GET", target, scopes=scopes)
        items.extend(_string_list(t, reply, key))
        try:
            target = parse_link_next(reply.headers.get("Link"), reply.url)
        except ProtocolViolation as exc:
            raise ProtocolViolation(exc.message, registry=t.registry, method="GET", url=redact_url(reply.url),
                                    status=reply.status) from exc
        if target is not None:
            # A listing never continues on another origin: its answers would be mixed into this one's.
            target = t.target(target, base=reply.url, foreign="refuse", what="pagination Link").url
    raise ProtocolViolation("pagination did not end", registry=t.registry)


def _string_list(t: Transport, reply: Reply, key: str) -> list[str]:
    try:
        obj = json.loads(reply.body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting deeper than the parser
        raise ProtocolViolation(f"{key} answer is not JSON", registry=t.registry, method="GET",
                                url=redact_url(reply.url), status=reply.status) from exc
    if not isinstance(obj, dict):
        raise ProtocolViolation(f"{key} answer is not a JSON object", registry=t.registry, method="GET",
                                url=redact_url(reply.url), status=reply.status)
    value = obj.get(key)
    if value is None:
        return []  # 2.8.2 answers {"tags": null} for a repository whose tags were all deleted
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolViolation(f"{key!r} must be a list of strings", registry=t.registry, method="GET",
                                url=redact_url(reply.url), status=reply.status)
    return value


def digest_header(t: Transport, value: str, reply: Reply) -> Digest:
    """A ``Docker-Content-Digest`` header's value, validated.

    :raises ProtocolViolation: not a digest (names the registry, URL and status)
    """
    try:
        return Digest.parse(value.strip())
    except InvalidReference as exc:
        raise ProtocolViolation(f"bad Docker-Content-Digest {value[:80]!r}", registry=t.registry,
                                url=redact_url(reply.url), status=reply.status) from exc


def _content_length(t: Transport, reply: Reply) -> int:
    value = reply.headers.get("Content-Length", "")
    if not (value.isascii() and value.isdigit()):
        raise ProtocolViolation("manifest HEAD without a valid Content-Length", registry=t.registry,
                                url=redact_url(reply.url), status=reply.status)
    return int(value)

