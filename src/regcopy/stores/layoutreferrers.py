"""Referrers in an OCI layout (the layout side of :class:`~regcopy.stores.base.Referrers`, no HTTP).

:func:`layout_referrers` finds referrers in a layout: ``index.json`` entries whose manifest has the
subject (how a layout keeps untagged referrers, as oras-go's OCI store does), a fallback tag's index
(as regclient's ocidir writes one) and cosign tags. Both the layout store and the oci-archive store
answer through it; a registry repository's referrers are :mod:`regcopy.stores.referrers`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from regcopy.digest import Digest
from regcopy.manifest import Descriptor, Manifest
from regcopy.referrer import cosign_tags, fallback_tag, filter_types, index_descriptors, referrer_entry
from regcopy.stores.base import ReferrerList, ReferrersVia

__all__ = ("LayoutSubjects", "layout_referrers")

LayoutSubjects = dict[Digest, tuple[Digest, Descriptor] | None]
"""A layout's top-level manifests read so far: digest → (its subject, its referrer descriptor), or None."""


async def layout_referrers(reader: _LayoutLike, subject: Digest, *, path: str = "", artifact_types: Sequence[str] = (),
                           seen: LayoutSubjects | None = None) -> ReferrerList:
    """Referrers of ``subject`` in a layout: entries of ``index.json`` whose manifest names it, the
    fallback tag's index (``sha256-<hex>``, or ``path:sha256-<hex>`` for a repository of a shared
    store), and cosign tags of the repository ``path``.

    :param seen: what earlier calls read (each manifest is read once per store)
    """
    seen = {} if seen is None else seen
    found: dict[Digest, Descriptor] = {}
    for entry in list(reader.entries):
        desc = Descriptor.from_json(entry)
        if desc.is_manifest and desc.digest not in seen:
            manifest = await reader.manifest(desc.digest, desc.media_type, desc.size)
            about = manifest.subject
            listed = None if about is None else Descriptor.from_json(referrer_entry(manifest))
            seen[desc.digest] = None if about is None or listed is None else (about.digest, listed)
        known = seen.get(desc.digest)
        if known is not None and known[0] == subject:
            found.setdefault(desc.digest, known[1])
    tags = [t for ref in reader.tags() if (t := _tag_of(ref, path))]
    tag = fallback_tag(subject)
    if tag in tags:
        index = await reader.resolve(f"{path}:{tag}" if path else tag)
        for desc in index_descriptors(json.loads(index.data), where=f"{reader.name}:{tag}"):
            found.setdefault(desc.digest, desc)
    via: ReferrersVia = "layout" if found else "none"
    return ReferrerList(subject, filter_types(found.values(), artifact_types), cosign_tags(subject, tags), via)


def _tag_of(ref: str, path: str) -> str:
    if not path:
        return ref if ":" not in ref else ""
    head, _, tag = ref.rpartition(":")
    return tag if head == path else ""


class _LayoutLike(Protocol):
    """What :func:`layout_referrers` reads (a :class:`~regcopy.stores.layout.LayoutReader`)."""

    name: str
    entries: list[dict[str, Any]]

    def tags(self) -> list[str]: ...

    async def manifest(self, digest: Digest, media_type: str | None = None, size: int | None = None) -> Manifest: ...

    async def resolve(self, ref: str) -> Manifest: ...
