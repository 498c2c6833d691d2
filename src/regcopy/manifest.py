"""Manifests as raw bytes plus a read-only parsed view: media types, descriptors, platforms.

A :class:`Manifest` keeps the exact bytes it was read from and derives its digest from them; it is
never re-serialised (the digest is the sha256 of the bytes received: docs/protocol.md#manifests). Only
building a *new* filtered index (``--platform`` subsets) serialises JSON, and that is a new digest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Self

from regcopy.digest import Digest
from regcopy.errors import InvalidManifest, InvalidReference, UnsupportedMediaType

__all__ = (
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_TYPES",
    "MAX_MANIFEST_SIZE",
    "OCI_ARTIFACT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Descriptor",
    "Manifest",
    "ManifestInfo",
    "Platform",
    "build_index",
)

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# OCI 1.1 release candidates had a separate artifact manifest (``blobs`` instead of config+layers);
# the final 1.1 dropped it for image manifests with ``artifactType``, but registries still hold some.
OCI_ARTIFACT: Final = "application/vnd.oci.artifact.manifest.v1+json"

_SCHEMA1_TYPES: Final = frozenset({
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
})
INDEX_TYPES: Final = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
_IMAGE_TYPES: Final = frozenset({OCI_MANIFEST, DOCKER_MANIFEST, OCI_ARTIFACT})
MANIFEST_TYPES: Final = INDEX_TYPES | _IMAGE_TYPES
# distribution 2.8.2 returns OCI content only when its exact type is listed, and converts a list
# fetched by tag to its amd64 child without the list type (docs/protocol.md#manifests): always send all four.
MANIFEST_ACCEPT: Final = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST, OCI_ARTIFACT))

# Registries must accept manifests of at least 4 MiB (spec §Pushing Manifests); 2.8.2 caps PUT at 4 MiB.
MAX_MANIFEST_SIZE: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Platform:
    """An ``os/arch[/variant]`` platform, as in index entries and ``--platform``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``os/arch[/variant]``.

        :raises InvalidReference: not two or three non-empty parts
        """
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReference(text, "platform must be os/arch[/variant]", part="platform")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_json(cls, obj: object) -> Self | None:
        """The platform of an index entry's ``platform`` object, or None when absent or malformed."""
        if not isinstance(obj, dict):
            return None
        os_, arch = obj.get("os"), obj.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            return None
        variant = obj.get("variant")
        version = obj.get("os.version")
        return cls(
            os_, arch, variant if isinstance(variant, str) else None, version if isinstance(version, str) else None
        )

    def matches(self, wanted: Platform) -> bool:
        """Whether this platform satisfies ``wanted`` (a variant is only compared when wanted has one)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        return wanted.variant is None or self.variant == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What a HEAD tells: digest, media type and size of the manifest a tag or digest points to."""

    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (image-spec descriptor.md): media type, digest, size, optional platform."""

    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @classmethod
    def from_json(cls, obj: object, *, where: str = "descriptor") -> Self:
        """Validate and build a descriptor from its JSON object.

        :raises InvalidManifest: missing or mistyped fields, negative size, bad digest
        """
        if not isinstance(obj, dict):
            raise InvalidManifest(f"{where}: must be an object")
        media_type = obj.get("mediaType", "")
        size = obj.get("size")
        digest_text = obj.get("digest")
        if not isinstance(media_type, str):
            raise InvalidManifest(f"{where}: mediaType must be a string")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"{where}: size must be a non-negative integer")
        if not isinstance(digest_text, str):
            raise InvalidManifest(f"{where}: digest must be a string")
        try:
            digest = Digest.parse(digest_text)
        except InvalidReference as exc:
            raise InvalidManifest(f"{where}: {exc.reason}") from exc
        urls = obj.get("urls") or ()
        if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
            raise InvalidManifest(f"{where}: urls must be a list of strings")
        return cls(media_type, digest, size, Platform.from_json(obj.get("platform")), tuple(urls), obj)

    @property
    def is_manifest(self) -> bool:
        """Whether this descriptor points at a manifest or index (rather than a blob)."""
        return self.media_type in MANIFEST_TYPES

    @property
    def is_foreign(self) -> bool:
        """Whether this is a non-distributable layer that registries refuse to store (Windows bases)."""
        return self.media_type == DOCKER_FOREIGN_LAYER or "nondistributable" in self.media_type


@dataclass(frozen=True, slots=True)
class Manifest:
    """Raw manifest bytes, their media type and digest, plus a parsed read-only view."""

    data: bytes
    media_type: str
    digest: Digest
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None

    @classmethod
    def parse(cls, data: bytes, media_type: str | None = None, *, digest: Digest | None = None) -> Self:
        """Parse manifest bytes.

        The media type comes from the body's ``mediaType`` when present, else from ``media_type``
        (the response Content-Type without parameters). Spec §Pulling manifests: when both are set
        they must agree.

        :param digest: the digest the bytes must hash to (when fetched by digest)
        :raises InvalidManifest: not a JSON object of a known shape, or inconsistent types
        :raises UnsupportedMediaType: schema1 or an unknown type
        :raises DigestMismatch: ``digest`` given and the bytes hash differently
        """
        if len(data) > MAX_MANIFEST_SIZE:
            raise InvalidManifest(f"manifest of {len(data)} bytes exceeds the {MAX_MANIFEST_SIZE}-byte cap")
        actual = Digest.of(data, digest.algorithm if digest else "sha256")
        if digest is not None and actual != digest:
            from regcopy.errors import DigestMismatch

            raise DigestMismatch(str(digest), str(actual), what="manifest")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting deeper than the parser
            raise InvalidManifest(f"manifest is not valid JSON: {str(exc)[:200]}") from exc
        if not isinstance(obj, dict):
            raise InvalidManifest("manifest must be a JSON object")
        mt = _media_type(obj, media_type)
        config = None
        layers: tuple[Descriptor, ...] = ()
        manifests: tuple[Descriptor, ...] = ()
        if mt in INDEX_TYPES:
            manifests = _descriptor_list(obj, "manifests", required=True)
        elif mt == OCI_ARTIFACT:
            layers = _descriptor_list(obj, "blobs", required=False)
        else:
            config = Descriptor.from_json(obj.get("config"), where="config")
            layers = _descriptor_list(obj, "layers", required=mt == DOCKER_MANIFEST)
        subject = Descriptor.from_json(obj["subject"], where="subject") if "subject" in obj else None
        return cls(data, mt, actual, config, layers, manifests, subject)

    @property
    def is_index(self) -> bool:
        """Whether this is an OCI index or a Docker manifest list."""
        return self.media_type in INDEX_TYPES

    def blobs(self) -> tuple[Descriptor, ...]:
        """Config then layers (empty for an index). Foreign layers are excluded: registries refuse them."""
        if self.is_index:
            return ()
        config = (self.config,) if self.config is not None else ()
        return (*config, *(layer for layer in self.layers if not layer.is_foreign))

    def children(self) -> tuple[Descriptor, ...]:
        """The child manifests of an index (empty for an image)."""
        return self.manifests

    def select(self, platforms: Sequence[Platform]) -> tuple[Descriptor, ...]:
        """Index entries matching any of ``platforms``, in index order; nested indexes are kept."""
        return tuple(
            d for d in self.manifests if (d.platform is None and d.media_type in INDEX_TYPES)
            or (d.platform is not None and any(d.platform.matches(p) for p in platforms))
        )

    def __len__(self) -> int:
        return len(self.data)


def _media_type(obj: Mapping[str, Any], header_type: str | None) -> str:
    body_type = obj.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise InvalidManifest("mediaType must be a string")
    header = (header_type or "").split(";", 1)[0].strip().lower() or None
    # Some registries answer application/json or octet-stream: trust the body then.
    if header in (None, "application/json", "application/octet-stream", "text/plain"):
        header = None
    if body_type and header and body_type != header:
        raise InvalidManifest(f"mediaType {body_type!r} in the body disagrees with Content-Type {header!r}")
    if obj.get("schemaVersion") == 1 or body_type in _SCHEMA1_TYPES or header in _SCHEMA1_TYPES:
        raise UnsupportedMediaType("Docker schema1 manifests are not supported (deprecated since 2019)")
    mt = body_type or header or _sniff(obj)
    if mt not in MANIFEST_TYPES:
        raise UnsupportedMediaType(f"unsupported manifest media type {mt!r}")
    return mt


def _sniff(obj: Mapping[str, Any]) -> str:
    # OCI allows mediaType to be absent (image-spec manifest.md); infer the shape.
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj:
        return OCI_MANIFEST
    raise InvalidManifest("manifest has no mediaType and neither manifests nor config")


def _descriptor_list(obj: Mapping[str, Any], key: str, *, required: bool) -> tuple[Descriptor, ...]:
    value = obj.get(key)
    if value is None and not required:
        return ()
    if not isinstance(value, list):
        raise InvalidManifest(f"{key} must be a list")
    return tuple(Descriptor.from_json(item, where=f"{key}[{i}]") for i, item in enumerate(value))


def build_index(source: Manifest, entries: Iterable[Descriptor]) -> Manifest:
    """A new index of the same media type holding only ``entries`` (their JSON kept verbatim).

    Used for ``--platform`` subsets; the result has a new digest, which the copy report says.
    """
    obj: dict[str, Any] = json.loads(source.data)
    obj["manifests"] = [dict(d.raw) for d in entries]
    data = json.dumps(obj, indent=3).encode()
    return Manifest.parse(data, source.media_type)
