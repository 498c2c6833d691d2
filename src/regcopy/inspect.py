"""What an image is, read from its manifest and config: platform, creation time, labels, layers, size.

Pure functions over :class:`~regcopy.manifest.Manifest` and config bytes; the client fetches them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from regcopy.errors import InvalidManifest
from regcopy.manifest import Descriptor, Manifest

__all__ = ("ImageInfo", "LayerInfo", "image_info")


@dataclass(frozen=True, slots=True)
class LayerInfo:
    """One layer: digest, compressed size, media type."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The summary ``regcopy inspect`` prints."""

    reference: str
    digest: str
    media_type: str
    os: str | None
    architecture: str | None
    variant: str | None
    created: str | None
    labels: dict[str, str] = field(default_factory=dict)
    layers: tuple[LayerInfo, ...] = ()
    config_digest: str | None = None

    @property
    def total_size(self) -> int:
        """Compressed bytes of every layer plus the config (what a pull downloads)."""
        return sum(layer.size for layer in self.layers)

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "reference": self.reference, "digest": self.digest, "media_type": self.media_type, "os": self.os,
            "architecture": self.architecture, "variant": self.variant, "created": self.created,
            "labels": self.labels, "config_digest": self.config_digest, "total_size": self.total_size,
            "layers": [{"digest": layer.digest, "size": layer.size, "media_type": layer.media_type}
                       for layer in self.layers],
        }


def image_info(reference: str, manifest: Manifest, config: bytes) -> ImageInfo:
    """Summarise an image manifest and its config blob.

    :raises InvalidManifest: the manifest is an index, or the config is not a JSON object
    """
    if manifest.is_index:
        raise InvalidManifest("an index has no single config: choose a platform")
    try:
        obj = json.loads(config)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidManifest(f"image config is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(obj, dict):
        raise InvalidManifest("image config must be a JSON object")
    cfg = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    labels = cfg.get("Labels") if isinstance(cfg, dict) else None
    return ImageInfo(
        reference=reference,
        digest=str(manifest.digest),
        media_type=manifest.media_type,
        os=_str(obj.get("os")),
        architecture=_str(obj.get("architecture")),
        variant=_str(obj.get("variant")),
        created=_str(obj.get("created")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        layers=tuple(_layer(d) for d in manifest.layers),
        config_digest=str(manifest.config.digest) if manifest.config else None,
    )


def _layer(desc: Descriptor) -> LayerInfo:
    return LayerInfo(str(desc.digest), desc.size, desc.media_type)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
