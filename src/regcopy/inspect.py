"""What an image is, read from its manifest and config: platform, creation time, labels, the run
settings (Env, Cmd, Entrypoint, WorkingDir), layers, size.

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
    """The summary ``regcopy inspect`` prints.

    :ivar digest: what the reference points to, as skopeo inspect's ``Digest``: an index's own digest
        when the reference names an index
    :ivar manifest_digest: the image manifest described (the chosen platform's child of an index, else
        ``digest``)
    """

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
    manifest_digest: str = ""
    env: tuple[str, ...] = ()
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    working_dir: str | None = None

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
            "manifest_digest": self.manifest_digest, "env": list(self.env), "working_dir": self.working_dir,
            "cmd": None if self.cmd is None else list(self.cmd),
            "entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "layers": [{"digest": layer.digest, "size": layer.size, "media_type": layer.media_type}
                       for layer in self.layers],
        }


def image_info(reference: str, manifest: Manifest, config: bytes, *, digest: str | None = None) -> ImageInfo:
    """Summarise an image manifest and its config blob.

    :param digest: what ``reference`` points to when that is not ``manifest`` (the index it was chosen from)

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
    assert isinstance(cfg, dict)
    labels = cfg.get("Labels")
    return ImageInfo(
        reference=reference,
        digest=digest or str(manifest.digest),
        manifest_digest=str(manifest.digest),
        env=_strings(cfg.get("Env")) or (),
        cmd=_strings(cfg.get("Cmd")),
        entrypoint=_strings(cfg.get("Entrypoint")),
        working_dir=_str(cfg.get("WorkingDir")) or None,
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


def _strings(value: object) -> tuple[str, ...] | None:
    """A list of strings from a config (anything else, as a hostile config may hold: None)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
