"""Referrers operations on a registry (distribution spec, "Listing Referrers", "Pushing Manifests with
Subject", "Referrers Tag Schema").

* :func:`referrers_list`: ``GET /v2/<name>/referrers/<digest>``, every ``Link`` page (a page on another
  origin is refused, as for tag lists: docs/security.md), ``artifactType`` sent when one type is
  wanted and the answer filtered here when the registry did not say ``OCI-Filters-Applied``; a 404
  means the registry has no referrers API (the spec forbids a 404 from one that has it);
* :func:`manifest_push`: a manifest PUT that reports whether the registry processed the ``subject``
  (``OCI-Subject`` in the answer);
* :func:`index_read` / :func:`index_write`: the fallback tag's index with its ``ETag``, written with
  ``If-Match`` / ``If-None-Match: *`` where the registry honours them (a 412 says someone else wrote
  it first; distribution 2.8.2 ignores both, see docs/registry-quirks.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from regcopy.digest import Digest
from regcopy.errors import DigestMismatch, InvalidManifest, NotFound, ProtocolViolation, RegistryError
from regcopy.manifest import MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, OCI_INDEX, Descriptor, Manifest
from regcopy.referrer import MAX_REFERRERS, index_descriptors
from regcopy.registry._challenge import Scope
from regcopy.registry._errors import redact_url
from regcopy.registry._headers import parse_link_next
from regcopy.registry.manifests import digest_header, pull_scope, push_scope
from regcopy.registry.transport import Reply, Transport

__all__ = ("IndexRead", "ReferrersAnswer", "index_read", "index_write", "manifest_push", "referrers_list")

_MAX_PAGES: Final = 1_000


@dataclass(frozen=True, slots=True)
class ReferrersAnswer:
    """What the referrers API listed for one subject, every page together.

    :ivar filtered: the registry applied the ``artifactType`` filter asked for (else it was applied here)
    """

    descriptors: tuple[Descriptor, ...]
    filtered: bool
    pages: int


async def referrers_list(t: Transport, repo: str, digest: Digest, *, artifact_type: str | None = None,
                         scopes: Sequence[Scope] = ()) -> ReferrersAnswer | None:
    """Every referrer of ``digest`` in ``repo`` through the API; None when the registry has no API (404).

    :param artifact_type: keep only referrers of this artifact type (sent as ``?artifactType=``)
    :raises ProtocolViolation: an answer that is not a referrers index, a pagination loop, a page on
        another origin, or more than :data:`~regcopy.referrer.MAX_REFERRERS` referrers
    """
    query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
    target: str | None = f"/v2/{repo}/referrers/{digest}{query}"
    found: list[Descriptor] = []
    applied = True
    seen: set[str] = set()
    pages = 0
    while target is not None:
        if target in seen or pages >= _MAX_PAGES:
            raise ProtocolViolation(f"referrers pagination does not end ({redact_url(target)})", registry=t.registry)
        seen.add(target)
        try:
            reply = await t.request("GET", target, scopes=scopes or (pull_scope(repo),),
                                    headers={"Accept": OCI_INDEX}, max_body=MAX_MANIFEST_SIZE)
        except NotFound:
            if pages:
                raise  # a later page vanished: not "no API"
            return None
        pages += 1
        found.extend(_page(t, reply))
        if len(found) > MAX_REFERRERS:
            raise ProtocolViolation(f"more than {MAX_REFERRERS} referrers of {digest.short}", registry=t.registry)
        applied = applied and _filter_applied(reply)
        target = _next_page(t, reply)
    if artifact_type and not applied:
        found = [d for d in found if d.raw.get("artifactType") == artifact_type]
    return ReferrersAnswer(tuple(found), bool(artifact_type) and applied, pages)


def _page(t: Transport, reply: Reply) -> tuple[Descriptor, ...]:
    try:
        return index_descriptors(json.loads(reply.body), where="referrers answer")
    except (ValueError, UnicodeDecodeError, RecursionError, InvalidManifest) as exc:
        raise ProtocolViolation(f"referrers answer is not an image index: {str(exc)[:200]}", registry=t.registry,
                                method="GET", url=redact_url(reply.url), status=reply.status) from exc


def _filter_applied(reply: Reply) -> bool:
    applied = reply.headers.get("OCI-Filters-Applied", "")
    return "artifacttype" in {part.strip().lower() for part in applied.split(",")}


def _next_page(t: Transport, reply: Reply) -> str | None:
    try:
        target = parse_link_next(reply.headers.get("Link"), reply.url)
    except ProtocolViolation as exc:
        raise ProtocolViolation(exc.message, registry=t.registry, method="GET", url=redact_url(reply.url),
                                status=reply.status) from exc
    if target is None:
        return None
    # A listing never continues on another origin: its answers would be mixed into this one's.
    return t.target(target, base=reply.url, foreign="refuse", what="pagination Link").url


async def manifest_push(t: Transport, repo: str, ref: str, manifest: Manifest) -> bool:
    """PUT the exact manifest bytes under a tag or digest; True when the registry answered
    ``OCI-Subject`` (it indexed the manifest's ``subject`` itself: it has the referrers API).

    :raises DigestMismatch: the registry stored something else
    """
    reply = await t.request("PUT", f"/v2/{repo}/manifests/{quote(ref, safe=':')}", scopes=(push_scope(repo),),
                            headers={"Content-Type": manifest.media_type}, data=manifest.data, ok=(200, 201, 202))
    _check_stored(t, repo, reply, manifest)
    return manifest.subject is not None and bool(reply.headers.get("OCI-Subject"))


def _check_stored(t: Transport, repo: str, reply: Reply, manifest: Manifest) -> None:
    header = reply.headers.get("Docker-Content-Digest")
    if header and digest_header(t, header, reply) != manifest.digest:
        raise DigestMismatch(str(manifest.digest), header[:80], what=f"manifest pushed to {t.registry}/{repo}")


@dataclass(frozen=True, slots=True)
class IndexRead:
    """The fallback tag as read: its index (None when the tag does not exist) and the answer's ETag."""

    index: Manifest | None
    etag: str | None


async def index_read(t: Transport, repo: str, tag: str) -> IndexRead:
    """GET the fallback tag ``tag``: its manifest (verified against ``Docker-Content-Digest``) and ETag.

    :raises InvalidManifest: the tag holds something that is not a manifest
    """
    try:
        reply = await t.request("GET", f"/v2/{repo}/manifests/{quote(tag, safe='')}", scopes=(push_scope(repo),),
                                headers={"Accept": MANIFEST_ACCEPT}, what="manifest", max_body=MAX_MANIFEST_SIZE)
    except NotFound:
        return IndexRead(None, None)
    header = reply.headers.get("Docker-Content-Digest")
    expected = digest_header(t, header, reply) if header else None
    manifest = Manifest.parse(reply.body, reply.headers.get("Content-Type"), digest=expected)
    return IndexRead(manifest, reply.headers.get("ETag"))


async def index_write(t: Transport, repo: str, tag: str, index: Manifest, read: IndexRead) -> bool:
    """PUT ``index`` under the fallback tag, on the condition that the tag still holds what ``read``
    saw (``If-Match``), or nothing (``If-None-Match: *``); False when the registry refused the
    condition (412: another client wrote the tag in between)."""
    headers = {"Content-Type": index.media_type}
    if read.index is None:
        headers["If-None-Match"] = "*"
    elif read.etag:
        headers["If-Match"] = read.etag
    try:
        reply = await t.request("PUT", f"/v2/{repo}/manifests/{quote(tag, safe='')}", scopes=(push_scope(repo),),
                                headers=headers, data=index.data, ok=(200, 201, 202))
    except RegistryError as exc:
        if exc.status == 412:
            return False
        raise
    _check_stored(t, repo, reply, index)
    return True
