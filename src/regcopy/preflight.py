"""The plan of one copy, reading as little from the source as possible (docs/registry-quirks.md#docker-hub-pull-limits).

Docker Hub counts a manifest GET as a pull and a HEAD as nothing. So before any GET, :func:`plan_copy`
HEADs the source reference and the destination tag at once. When they show the destination already
holds the image, the manifests the copy needs (to tell it is up to date, to note the blobs the
destination holds, to find the referrers of each manifest) are read from the destination, where the
same digest means the same bytes; the source is asked for nothing more. Otherwise the plan is made
from the source as usual, and the copy does not HEAD the destination tag again
(:attr:`~regcopy.engine.ImagePlan.target_seen`).

Only for a source whose HEAD tells the media type (a registry: reading a local store costs nothing)
and a destination repository that may hold the tag. With ``platforms`` the destination holds a subset
whose digest the source index does not name, so only a source that is no index is judged this way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from regcopy.digest import Digest
from regcopy.engine import ImagePlan, fail_fast, plan_image
from regcopy.errors import ProtocolViolation, Unsupported
from regcopy.ledger import BlobLedger
from regcopy.manifest import INDEX_TYPES, ManifestInfo, Platform
from regcopy.stores.base import Destination, ManifestHead, Source

__all__ = ("plan_copy",)

log = logging.getLogger(__name__)


async def plan_copy(source: Source, destination: Destination, ref: str, *, target_tag: str | None,
                    platforms: Sequence[Platform], ledger: BlobLedger, force: bool = False) -> ImagePlan:
    """The plan of copying ``ref`` to ``destination`` under ``target_tag`` (see the module docstring)."""
    heads = None
    if target_tag and not force and isinstance(source, ManifestHead) and \
            (destination.storage_id, destination.repository) not in ledger.empty:
        heads = await _heads(source, destination, ref, target_tag)
    if heads is None:
        return await plan_image(source, ref, platforms)
    info, held = heads
    if held is not None and info is not None and info.digest == held and isinstance(destination, Source) and \
            (not platforms or (info.media_type and info.media_type not in INDEX_TYPES)):
        plan = await plan_image(destination, str(held))  # the same bytes, and no pull counted at the source
    else:
        plan = await plan_image(source, ref, platforms)
    plan.target_seen, plan.target_digest = True, held
    return plan


async def _heads(source: ManifestHead, destination: Destination, ref: str,
                 target_tag: str) -> tuple[ManifestInfo | None, Digest | None] | None:
    """What HEADs of the source and of the destination tag say; None when HEADs cannot tell."""
    found: dict[str, ManifestInfo | Digest | None] = {}

    async def source_head() -> None:
        found["src"] = await source.head_manifest(ref)

    async def destination_head() -> None:
        found["dst"] = await destination.head(target_tag)

    try:
        async with fail_fast(), anyio.create_task_group() as tg:
            tg.start_soon(source_head)
            tg.start_soon(destination_head)
    except (ProtocolViolation, Unsupported) as exc:
        # A registry whose HEAD answers lack what a HEAD should tell (no Docker-Content-Digest), or
        # that refuses HEAD: the manifests tell. Any other failure (a token, a dead registry) is the
        # copy's, and is not met twice.
        if exc.method != "HEAD":
            raise
        log.debug("HEADs before the copy told nothing (%s): the manifests tell", exc)
        return None
    info, held = found["src"], found["dst"]
    assert info is None or isinstance(info, ManifestInfo)
    assert held is None or isinstance(held, Digest)
    return info, held
