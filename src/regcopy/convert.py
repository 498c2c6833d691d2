"""Manifest format conversion, Docker schema 2 ↔ OCI, on explicit request (``--format oci|v2s2``).

Owns the media-type tables of container images (which config and layer types make a container image,
and their names in each format) and the one conversion: :func:`convert_manifests` rewrites an image's
manifests (an index and its children, leaves first) into the other format. Blobs never change: a gzip
layer is the same bytes whether typed ``application/vnd.docker.image.rootfs.diff.tar.gzip`` or
``application/vnd.oci.image.layer.v1.tar+gzip``, and so is the config; only the manifests are new JSON,
so their digests change, which the copy reports (``new_digest``). c/image does the same
(``manifest/docker_schema2.go``, ``manifest/oci.go``): umoci, podman's ``oci:`` transport and skopeo
read only OCI-typed manifests inside an OCI layout, so an export for them needs ``--format oci``.

What cannot be said in the target format is refused with the manifest named, never dropped silently:
zstd and uncompressed non-distributable layers in Docker schema 2 (which has no type for them),
artifacts (a config that is not an image config, an ``artifactType``, a ``subject``) in either. A
Docker schema 2 manifest has only ``mediaType``, ``size``, ``digest`` and ``urls`` (and ``platform`` in
a list) in its descriptors: other descriptor fields, and a manifest's ``annotations``, are not carried
into it (as c/image's conversion does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from regcopy.digest import Digest
from regcopy.errors import UnsupportedMediaType
from regcopy.manifest import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN_LAYER,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Manifest,
)

__all__ = (
    "DOCKER_LAYER_TAR",
    "DOCKER_LAYER_ZSTD",
    "FORMATS",
    "IMAGE_CONFIG_TYPES",
    "IMAGE_LAYER_TYPES",
    "OCI_LAYER_TAR",
    "OCI_LAYER_ZSTD",
    "OCI_NONDISTRIBUTABLE",
    "OCI_NONDISTRIBUTABLE_TAR",
    "OCI_NONDISTRIBUTABLE_ZSTD",
    "Format",
    "convert_manifests",
    "not_an_image",
)

Format = Literal["oci", "v2s2"]
FORMATS: Final[tuple[Format, ...]] = ("oci", "v2s2")

OCI_LAYER_TAR: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD: Final = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_NONDISTRIBUTABLE: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_NONDISTRIBUTABLE_TAR: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_ZSTD: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_LAYER_TAR: Final = "application/vnd.docker.image.rootfs.diff.tar"
# containerd's name (images/mediatypes.go); Docker's own schema 2 defines no zstd type.
DOCKER_LAYER_ZSTD: Final = "application/vnd.docker.image.rootfs.diff.tar.zstd"

IMAGE_CONFIG_TYPES: Final = frozenset({DOCKER_CONFIG, OCI_CONFIG})
# Docker type → OCI type, and back; a layer type missing from one side cannot be converted that way.
_TO_OCI: Final[Mapping[str, str]] = {
    DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_TAR: OCI_LAYER_TAR, DOCKER_LAYER_ZSTD: OCI_LAYER_ZSTD,
    DOCKER_FOREIGN_LAYER: OCI_NONDISTRIBUTABLE,
}
_TO_DOCKER: Final[Mapping[str, str]] = {
    OCI_LAYER: DOCKER_LAYER, OCI_LAYER_TAR: DOCKER_LAYER_TAR, OCI_NONDISTRIBUTABLE: DOCKER_FOREIGN_LAYER,
}
_NATIVE: Final[Mapping[Format, frozenset[str]]] = {
    "oci": frozenset({*_TO_OCI.values(), OCI_NONDISTRIBUTABLE_TAR, OCI_NONDISTRIBUTABLE_ZSTD}),
    "v2s2": frozenset(_TO_OCI),
}
IMAGE_LAYER_TYPES: Final = _NATIVE["oci"] | _NATIVE["v2s2"]
_TYPES: Final[Mapping[Format, tuple[str, str, str]]] = {
    "oci": (OCI_MANIFEST, OCI_INDEX, OCI_CONFIG),
    "v2s2": (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_CONFIG),
}


def not_an_image(manifest: Manifest) -> str | None:
    """Why an image manifest is not a container image (an artifact: an SBOM, a signature, a chart), or None.

    A container image has an image config (Docker or OCI) and tar layers; ``docker load`` and ``podman
    load`` need the config's ``rootfs`` (which artifacts' configs lack). An index is not judged here.
    """
    if manifest.is_index:
        return None
    obj = json.loads(manifest.data)
    kind = obj.get("artifactType") if isinstance(obj, dict) else None
    config = manifest.config.media_type if manifest.config is not None else None
    if isinstance(kind, str) or config not in IMAGE_CONFIG_TYPES:
        what = f"artifactType {kind}" if isinstance(kind, str) else f"config media type {config or 'none'}"
        return f"{manifest.digest.short} is an artifact ({what}), not a container image"
    odd = next((layer.media_type for layer in manifest.layers if layer.media_type not in IMAGE_LAYER_TYPES), None)
    if odd is not None:
        return f"{manifest.digest.short} has a layer of media type {odd}, not a container image layer"
    return None


def convert_manifests(manifests: Sequence[Manifest], target: Format) -> dict[Digest, Manifest]:
    """Every manifest of one copy in ``target`` format; old digest → new manifest (the same object
    when nothing changed).

    :param manifests: leaves first (an index after its children), as :func:`regcopy.engine.plan_image`
        orders them, the root last
    :raises UnsupportedMediaType: something that cannot be said in ``target`` (the message names it)
    """
    done: dict[Digest, Manifest] = {}
    for manifest in manifests:
        if manifest.digest not in done:
            done[manifest.digest] = _convert(manifest, target, done)
    return done


def _convert(manifest: Manifest, target: Format, done: Mapping[Digest, Manifest]) -> Manifest:
    image_type, index_type, config_type = _TYPES[target]
    obj: dict[str, Any] = json.loads(manifest.data)
    if manifest.is_index:
        changed = any(d.digest in done and done[d.digest].digest != d.digest for d in manifest.manifests)
        if manifest.media_type == index_type and not changed:
            return manifest  # already in this format, children too: the same bytes, the same digest
        entries = [_entry(e, done, target) for e in obj.get("manifests", [])]
        out = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
    else:
        if manifest.media_type == image_type:
            return manifest
        why = not_an_image(manifest)
        if why is not None or "subject" in obj:
            raise UnsupportedMediaType(f"cannot convert to {target}: {why or f'{manifest.digest.short} has a subject'}")
        config = {**_descriptor(obj["config"], target), "mediaType": config_type}
        layers = [_layer(layer, target, manifest) for layer in obj.get("layers", [])]
        out = {"schemaVersion": 2, "mediaType": image_type, "config": config, "layers": layers}
    if target == "oci" and isinstance(obj.get("annotations"), dict):
        out["annotations"] = obj["annotations"]
    return Manifest.parse(json.dumps(out, separators=(",", ":")).encode())


def _descriptor(raw: Mapping[str, Any], target: Format, *, platform: bool = False) -> dict[str, Any]:
    """A descriptor as ``target`` writes it: every field in OCI, Docker's fields only in schema 2."""
    if target == "oci":
        return dict(raw)
    keep = ("mediaType", "size", "digest", "urls", *(("platform",) if platform else ()))
    return {k: v for k, v in raw.items() if k in keep}  # in the source's order, so a round trip is exact


def _layer(raw: Mapping[str, Any], target: Format, manifest: Manifest) -> dict[str, Any]:
    media_type = str(raw.get("mediaType", ""))
    if media_type not in _NATIVE[target]:
        table = _TO_OCI if target == "oci" else _TO_DOCKER
        if media_type not in table:
            raise UnsupportedMediaType(f"cannot convert {manifest.digest.short} to {target}: a layer of media type"
                                       f" {media_type} has no {target} equivalent")
        media_type = table[media_type]
    return {**_descriptor(raw, target), "mediaType": media_type}


def _entry(raw: Mapping[str, Any], done: Mapping[Digest, Manifest], target: Format) -> dict[str, Any]:
    """An index entry pointing at its child's converted manifest."""
    child = done.get(Digest.parse(str(raw["digest"])))
    entry = _descriptor(raw, target, platform=True)
    if child is not None:
        entry.update(mediaType=child.media_type, digest=str(child.digest), size=len(child.data))
    return entry
