"""What a reader asks of any image source, registry or local: one platform of an index, the verified config.

Owns the read-only questions behind ``regcopy digest``, ``manifest``, ``inspect`` and ``config`` (and
whether a destination tag exists, for ``copy --no-clobber``), asked
over the store contract (:class:`~regcopy.stores.base.Source`) so a registry repository and a local
store (``oci:``, archives, ``dir:``) answer them the same way.
"""

from __future__ import annotations

from regcopy.digest import verify_chunks
from regcopy.engine import CopyResult
from regcopy.errors import InvalidManifest, RegcopyError
from regcopy.manifest import Manifest, Platform
from regcopy.reference import LocalLocation, Reference
from regcopy.stores.base import Destination, Source, close_stream

__all__ = ("checked_result", "config_bytes", "pick_platform", "refuse_clobber")

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


async def refuse_clobber(destination: Destination, tag: str | None, name: str) -> None:
    """crane's ``copy --no-clobber``: an existing destination tag is never overwritten, whatever it holds.

    :raises RegcopyError: ``tag`` exists at ``destination`` (``name`` says where, in the message)
    """
    digest = await destination.head(tag) if tag else None
    if digest is not None:
        raise RegcopyError(f"refusing to clobber existing tag {name}@{digest}")


def checked_result(result: CopyResult, dst: Reference | LocalLocation, synthesized: bool, retries: int) -> CopyResult:
    """A copy's result, checked against a destination pinned by digest, with what the copy does not know
    (a classic docker-archive's synthesised manifest, the retries it took).

    :raises RegcopyError: the destination names a digest the copy did not produce
    """
    if isinstance(dst, Reference) and dst.digest and str(dst.digest) != result.digest:
        raise RegcopyError(f"destination digest {dst.digest} differs from the copied {result.digest}")
    result.new_digest = result.new_digest or synthesized
    result.retries = retries
    return result
