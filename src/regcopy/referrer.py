"""Referrers as values: the tag schemes that name them, their descriptors, and the fallback index.

A *referrer* is a manifest whose ``subject`` points at another manifest (image-spec manifest.md,
``subject``): a signature, an SBOM, an attestation. Registries find them three ways, and this module
names each without any I/O:

* the referrers API answer, an index of descriptors (distribution spec, "Listing Referrers");
* the fallback tag ``<alg>-<hex>`` holding the same index on registries without the API
  (distribution spec, "Referrers Tag Schema"): :func:`fallback_tag`, :func:`merge_index`;
* cosign's tag scheme ``sha256-<hex>.sig`` / ``.att`` / ``.sbom`` (sigstore cosign
  pkg/oci/remote/remote.go ``SignatureTag``/``AttestationTag``/``SBOMTag``): :func:`cosign_tag`.

:func:`parse_referrer_tag` recognises both tag shapes in a tag list, so a sync that already listed
the tags knows which are referrer tags without another request, and :func:`cosign_tags` picks one
subject's cosign tags out of such a list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from regcopy.digest import Digest
from regcopy.errors import InvalidManifest
from regcopy.manifest import OCI_INDEX, Descriptor, Manifest

__all__ = (
    "COSIGN_KINDS",
    "COSIGN_SIMPLESIGNING",
    "MAX_REFERRERS",
    "CosignKind",
    "ReferrerTag",
    "artifact_type",
    "cosign_tag",
    "cosign_tags",
    "fallback_tag",
    "filter_types",
    "index_descriptors",
    "merge_index",
    "parse_referrer_tag",
    "referrer_entry",
)

CosignKind = Literal["sig", "att", "sbom"]
COSIGN_KINDS: Final[tuple[CosignKind, ...]] = ("sig", "att", "sbom")
COSIGN_SIMPLESIGNING: Final = "application/vnd.dev.cosign.simplesigning.v1+json"
MAX_REFERRERS: Final = 10_000
"""Descriptors accepted for one subject (API pages and fallback index together): a bound on hostile answers."""

_TAG_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")
_REFERRER_TAG = re.compile(r"^(sha256|sha512)-([0-9a-f]{64})(?:\.(sig|att|sbom))?$")


def fallback_tag(digest: Digest) -> str:
    """The referrers tag of ``digest``: truncated algorithm, ``-``, truncated encoded part, characters a
    tag may not hold replaced by ``-`` (distribution spec, "Referrers Tag Schema")."""
    return _TAG_CHARS.sub("-", f"{digest.algorithm[:32]}-{digest.hex[:64]}")


def cosign_tag(digest: Digest, kind: CosignKind) -> str:
    """cosign's tag for a signature (``sig``), attestation (``att``) or SBOM (``sbom``) of ``digest``."""
    return f"{fallback_tag(digest)}.{kind}"


@dataclass(frozen=True, slots=True)
class ReferrerTag:
    """A tag that names referrers rather than an image.

    :ivar stem: the subject's fallback tag (``sha256-<hex>``); a subject matches when
        ``fallback_tag(subject) == stem`` (a sha512 digest is truncated, so the stem is the key)
    :ivar kind: ``fallback`` (the index of referrers) or a cosign kind
    """

    tag: str
    stem: str
    kind: Literal["fallback", "sig", "att", "sbom"]

    def names(self, subject: Digest) -> bool:
        """Whether this tag belongs to ``subject``."""
        return fallback_tag(subject) == self.stem


def parse_referrer_tag(tag: str) -> ReferrerTag | None:
    """The referrer tag ``tag`` is (fallback index or cosign), or None for an ordinary tag."""
    match = _REFERRER_TAG.match(tag)
    if match is None:
        return None
    stem = f"{match.group(1)}-{match.group(2)}"
    kind = match.group(3) or "fallback"
    return ReferrerTag(tag, stem, kind)  # type: ignore[arg-type]  # the regex admits exactly these kinds


def _body(manifest: Manifest) -> dict[str, Any]:
    obj = json.loads(manifest.data)
    assert isinstance(obj, dict)  # Manifest.parse accepted it as an object
    return obj


def artifact_type(manifest: Manifest) -> str | None:
    """The artifact type a referrers list gives ``manifest``: its ``artifactType``, else (an image
    manifest) its config's media type, else none (distribution spec, "Listing Referrers")."""
    value = _body(manifest).get("artifactType")
    if isinstance(value, str) and value:
        return value
    if not manifest.is_index and manifest.config is not None:
        return manifest.config.media_type
    return None


def referrer_entry(manifest: Manifest) -> dict[str, Any]:
    """The descriptor of ``manifest`` in a referrers list: media type, digest, size, artifact type and
    every annotation of the manifest (distribution spec, "Pushing Manifests with Subject")."""
    entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": str(manifest.digest),
                             "size": len(manifest.data)}
    kind = artifact_type(manifest)
    if kind is not None:
        entry["artifactType"] = kind
    annotations = _body(manifest).get("annotations")
    if isinstance(annotations, dict) and annotations:
        entry["annotations"] = annotations
    return entry


def index_descriptors(obj: object, *, where: str) -> tuple[Descriptor, ...]:
    """The ``manifests`` of a referrers index (an API page or a fallback tag's index), validated.

    :raises InvalidManifest: not an object with a list of valid descriptors, or more than
        :data:`MAX_REFERRERS` of them
    """
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: a referrers list must be a JSON object")
    entries = obj.get("manifests")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise InvalidManifest(f"{where}: 'manifests' must be a list")
    if len(entries) > MAX_REFERRERS:
        raise InvalidManifest(f"{where}: more than {MAX_REFERRERS} referrers")
    return tuple(Descriptor.from_json(e, where=f"{where} manifests[{i}]") for i, e in enumerate(entries))


def merge_index(existing: Manifest | None, entries: Iterable[Mapping[str, Any]]) -> Manifest | None:
    """The fallback index with ``entries`` added, or None when it already lists every one of them.

    Entries already there are kept verbatim and in order, whoever wrote them; new ones are appended
    once each (the spec's "duplicate entries SHOULD NOT be created"). The result is an OCI index.

    :param existing: what the fallback tag holds now (None: nothing yet)
    :raises InvalidManifest: ``existing`` is not an image index (the spec: report a failure)
    """
    if existing is not None and existing.media_type != OCI_INDEX:
        raise InvalidManifest(f"the referrers tag holds a {existing.media_type}, not an OCI image index")
    obj: dict[str, Any] = _body(existing) if existing is not None else {
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    listed: list[Any] = list(obj.get("manifests") or [])
    have = {e.get("digest") for e in listed if isinstance(e, dict)}
    added = False
    for entry in entries:
        if entry["digest"] not in have:
            listed.append(dict(entry))
            have.add(entry["digest"])
            added = True
    if not added and existing is not None:
        return None
    obj["manifests"] = listed
    return Manifest.parse(json.dumps(obj, separators=(",", ":")).encode(), OCI_INDEX)



def cosign_tags(subject: Digest, tags: Iterable[str]) -> tuple[str, ...]:
    """cosign's tags for ``subject`` among ``tags`` (``.sig``, ``.att``, ``.sbom``), sorted."""
    out = []
    for tag in tags:
        parsed = parse_referrer_tag(tag)
        if parsed is not None and parsed.kind != "fallback" and parsed.names(subject):
            out.append(tag)
    return tuple(sorted(out))


def filter_types(descriptors: Iterable[Descriptor], artifact_types: Sequence[str]) -> tuple[Descriptor, ...]:
    """``descriptors`` of the wanted artifact types (all when none is named)."""
    if not artifact_types:
        return tuple(descriptors)
    return tuple(d for d in descriptors if d.raw.get("artifactType") in artifact_types)
