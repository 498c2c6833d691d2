"""What a reader asks of any image source, registry or local: one platform of an index, the verified config.

Owns the read-only questions behind ``regcopy digest``, ``manifest``, ``inspect`` and ``config``, asked
over the store contract (:class:`~regcopy.stores.base.Source`) so a registry repository and a local
store (``oci:``, archives, ``dir:``) answer them the same way.
"""

from __future__ import annotations

from regcopy.digest import verify_chunks
from regcopy.errors import InvalidManifest
from regcopy.manifest import Manifest, Platform
from regcopy.stores.base import Source, close_stream

__all__ = ("config_bytes", "pick_platform")

_MAX_CONFIG = 16 * 1024 * 1024


async def pick_platform(source: Source, index: Manifest, wanted: Platform) -> Manifest:
    """The first entry of ``index`` (nested indexes followed) matching ``wanted``.

    :raises InvalidManifest: nothing matches (the message lists the index's platforms)
    """
    matches = [d for d in index.manifests if d.platform is not None and d.platform.matches(wanted)]
    if not matches:
        have = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
        raise InvalidManifest(f"no platform of the index matches {wanted} (it has {have})")
    child = await source.get_manifest(matches[0].digest)
    if child.is_index:
        return await pick_platform(source, child, wanted)
    return child


async def config_bytes(source: Source, manifest: Manifest) -> bytes:
    """The config blob of an image manifest, checked for size and digest.

    :raises InvalidManifest: an index, a manifest without config, or a config over 16 MiB
    """
    if manifest.config is None:
        raise InvalidManifest(f"{manifest.digest.short} ({manifest.media_type}) has no config")
    if manifest.config.size > _MAX_CONFIG:
        raise InvalidManifest(f"the config of {manifest.digest.short} is {manifest.config.size} bytes, over 16 MiB")
    stream = source.open_blob(manifest.config)
    try:
        data = b"".join([chunk async for chunk in stream])
    finally:
        await close_stream(stream)
    verify_chunks([data], manifest.config.digest, manifest.config.size, what="image config")
    return data
