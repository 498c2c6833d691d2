"""The copy engine: one image or index from a :class:`Source` to a :class:`Destination`.

Order (docs/architecture.md, "Copy engine"): resolve the root → walk index → child manifests (nested
too) → config and layers; copy blobs first (concurrently, ``blob_jobs`` at a time), then child
manifests leaves first, then the root under its tag. A manifest is never pushed before everything it
references exists on the destination, so a failure leaves no tag pointing at a partial image. Bytes are
copied exactly (destination digest == source digest), except a ``platforms`` subset of several
entries, which is a new index and says so in the result.

Blobs go through the :class:`~regcopy.ledger.BlobLedger`: one upload per (storage, digest) at a time,
and its one decision (:meth:`~regcopy.ledger.BlobLedger.decide`) to skip a present blob, mount it from a
repository known to hold it, or upload it. The engine never imports aiohttp; it sees stores only
through :mod:`regcopy.stores.base`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from regcopy.convert import Format, convert_manifests
from regcopy.digest import Digest, Hasher, VerifyingStream
from regcopy.errors import DigestsNotPreserved, InvalidManifest, InvalidReference, RegcopyError
from regcopy.ledger import BlobAction, BlobLedger
from regcopy.manifest import Descriptor, Manifest, Platform, build_index
from regcopy.progress import (
    BlobDone,
    BlobMounted,
    BlobProgress,
    BlobSkipped,
    BlobStarted,
    ImageDone,
    ImageStarted,
    ManifestPushed,
    Reporter,
    current_image,
    null_reporter,
)
from regcopy.stores.base import (
    Admitter,
    BlobOpener,
    Committer,
    Destination,
    DigestMounter,
    Mounter,
    RangeReader,
    Source,
    close_stream,
)
from regcopy.throttle import TokenBucket

__all__ = (
    "ByteBudget", "CopyResult", "ImagePlan", "Limits", "blob_opener", "convert_plan", "copy_blob", "copy_image",
    "describe_ref", "fail_fast", "first_error", "plan_image", "plan_index_only", "push_image",
)

log = logging.getLogger(__name__)
_MAX_DEPTH = 8

class ByteBudget:
    """Bounds the bytes of blobs in flight across a run (docs/architecture.md, "Bulk sync").

    A blob larger than the whole budget still runs, alone, so nothing deadlocks.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.in_flight = 0
        self._changed = anyio.Condition()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Wait until ``size`` more bytes fit, hold them for the block."""
        async with self._changed:
            while self.in_flight and self.in_flight + size > self.limit:
                await self._changed.wait()
            self.in_flight += size
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                async with self._changed:
                    self.in_flight -= size
                    self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class Limits:
    """Run-wide limits shared by every image of a run (sync); None = per-image defaults only.

    :ivar bandwidth: blob bytes per second over the run (``--limit-rate``), taken as the source's
        bytes flow into the destination, so each byte counts once whatever the two ends are
    """

    blobs: anyio.CapacityLimiter | None = None
    bytes: ByteBudget | None = None
    bandwidth: TokenBucket | None = None


@dataclass(slots=True)
class CopyResult:
    """The outcome of one image copy (a typed report; ``to_json()`` for ``--output json``)."""

    source: str
    destination: str
    source_digest: str
    digest: str
    tag: str | None
    new_digest: bool = False
    up_to_date: bool = False
    manifests_pushed: int = 0
    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    retries: int = 0
    seconds: float = 0.0
    platforms: list[str] = field(default_factory=list)
    referrers: dict[str, object] | None = None
    """What the image's referrers came to (``artifacts.ReferrerReport.to_json()``), when they were asked for."""
    hosts: dict[str, dict[str, object]] = field(default_factory=dict)
    """Per host what the copy's requests met: requests, retries, 429s, pulls (manifest GETs), concurrency."""

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field."""
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class ImagePlan:
    """Everything one copy needs: the root, child manifests (leaves first) and unique blobs."""

    root: Manifest
    source_digest: Digest
    manifests: list[Manifest]
    blobs: list[Descriptor]
    built_index: bool = False
    """True when ``root`` is a new index built from a platform subset (a digest no source has)."""
    converted: bool = False
    """True when the manifests were converted to another format (``format=``): new digests."""
    target_seen: bool = False
    """The destination tag was HEADed while planning (``preflight.plan_copy``): :attr:`target_digest`
    is what it holds, and the copy does not ask again."""
    target_digest: Digest | None = None

    @property
    def total_bytes(self) -> int:
        """Bytes of all unique blobs."""
        return sum(b.size for b in self.blobs)


async def plan_image(source: Source, ref: str, platforms: Sequence[Platform] = ()) -> ImagePlan:
    """Resolve ``ref`` on the source and walk its graph.

    :param platforms: keep only these platforms of an index (one match → that image manifest;
        several → a new index of the matches)
    :raises InvalidManifest: a platform filter matched nothing, or the graph is too deep
    """
    root = await source.resolve(ref)
    source_digest = root.digest
    if platforms and root.is_index:
        root = await _filter_platforms(source, root, platforms)
    children: list[Manifest] = []
    blobs: dict[Digest, Descriptor] = {}
    await _walk(source, root, children, blobs, depth=0, seen={root.digest})
    built = root.digest != source_digest and root.is_index
    return ImagePlan(root, source_digest, children, list(blobs.values()), built)


async def plan_index_only(source: Source, ref: str) -> ImagePlan:
    """The plan of skopeo's ``--multi-arch index-only``: an index alone, without its children (the
    destination must already hold them, or it refuses the index); any other manifest as
    :func:`plan_image` plans it."""
    root = await source.resolve(ref)
    if not root.is_index:
        return await plan_image(source, ref)
    return ImagePlan(root, root.digest, [], [])


def convert_plan(plan: ImagePlan, target: Format) -> ImagePlan:
    """``plan`` with its manifests in ``target`` format (:mod:`regcopy.convert`); blobs stay as they are.

    :raises UnsupportedMediaType: a manifest cannot be said in ``target``
    """
    new = convert_manifests([*plan.manifests, plan.root], target)
    root = new[plan.root.digest]
    children = [new[m.digest] for m in plan.manifests]
    changed = root.digest != plan.root.digest
    return ImagePlan(root, plan.source_digest, children, plan.blobs, plan.built_index, plan.converted or changed,
                     plan.target_seen, plan.target_digest)


def _prepared(plan: ImagePlan, source: Source, format: Format | None, preserve_digests: bool) -> ImagePlan:
    """``plan`` converted to ``format`` (if any), checked to keep the source's digests when asked."""
    if format is not None:
        plan = convert_plan(plan, format)
    if preserve_digests:
        _check_preserved(plan, source)
    return plan


def _check_preserved(plan: ImagePlan, source: Source) -> None:
    """Refuse a copy whose digests would not be the source's (before anything is written)."""
    why = ("its manifests are converted to another format" if plan.converted else
           "a platform subset of the index is a new index" if plan.built_index else
           "the source's manifest was built by regcopy (a classic docker-archive)" if source.synthesized else None)
    if why is not None:
        raise DigestsNotPreserved(f"{source.name}: digests cannot be preserved: {why}")


async def _filter_platforms(source: Source, root: Manifest, platforms: Sequence[Platform]) -> Manifest:
    entries = root.select(platforms)
    if not entries:
        wanted = ", ".join(str(p) for p in platforms)
        have = ", ".join(str(d.platform) for d in root.manifests if d.platform) or "none"
        raise InvalidManifest(f"no platform of the index matches {wanted} (it has {have})")
    if len(entries) == 1 and entries[0].platform is not None:
        return await source.get_manifest(entries[0].digest)
    return build_index(root, entries)


async def _walk(
    source: Source, manifest: Manifest, out: list[Manifest], blobs: dict[Digest, Descriptor], depth: int,
    seen: set[Digest],
) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidManifest(f"index nesting deeper than {_MAX_DEPTH}")
    for blob in manifest.blobs():
        blobs.setdefault(blob.digest, blob)
    children: list[Manifest] = []
    async with fail_fast(), anyio.create_task_group() as tg:
        for desc in manifest.children():
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            tg.start_soon(_fetch_child, source, desc, children)
    by_digest = {c.digest: c for c in children}
    for desc in manifest.children():
        child = by_digest.get(desc.digest)
        if child is None:
            continue
        await _walk(source, child, out, blobs, depth + 1, seen)
        out.append(child)  # after its own children: leaves first


async def _fetch_child(source: Source, desc: Descriptor, out: list[Manifest]) -> None:
    child = await source.get_manifest(desc.digest)
    if child.media_type != desc.media_type and desc.media_type:
        raise InvalidManifest(f"child {desc.digest.short} is {child.media_type}, index says {desc.media_type}")
    out.append(child)


async def copy_image(
    source: Source,
    destination: Destination,
    ref: str,
    *,
    target_tag: str | None,
    platforms: Sequence[Platform] = (),
    blob_jobs: int = 6,
    reporter: Reporter = null_reporter,
    ledger: BlobLedger | None = None,
    force: bool = False,
    plan: ImagePlan | None = None,
    limits: Limits = Limits(),
    commit: bool = True,
    format: Format | None = None,
    preserve_digests: bool = False,
) -> CopyResult:
    """Copy the image or index ``ref`` of ``source`` to ``destination`` under ``target_tag``.

    :param target_tag: the destination tag, or None to push by digest only
    :param blob_jobs: blobs transferred at once for this image
    :param ledger: the run's blob ledger (shared across copies for dedup and mounts)
    :param force: push even when the destination tag already points at the same digest
    :param plan: a plan made earlier by :func:`plan_image` (saves fetching the manifests again)
    :param limits: run-wide blob and byte limits, on top of ``blob_jobs``
    :param commit: commit a :class:`Committer` destination at the end (False: the caller commits,
        after copying the image's referrers too)
    :param format: convert the manifests to ``oci`` or ``v2s2`` (new digests, ``new_digest`` in the result)
    :param preserve_digests: fail with :class:`DigestsNotPreserved`, before writing, when the destination
        would not hold the source's digests (a conversion, a new index, a synthesised manifest)
    :raises RegcopyError: the first failure (siblings are cancelled; open uploads are aborted)
    """
    token = current_image.set(f"{destination.name}:{target_tag}" if target_tag else destination.name)
    try:  # every event of this copy's tasks names the image
        plan = _prepared(plan or await plan_image(source, ref, platforms), source, format, preserve_digests)
        return await _copy_planned(source, destination, ref, target_tag, plan, platforms, blob_jobs, reporter,
                                   ledger or BlobLedger(), force, limits, commit)
    finally:
        current_image.reset(token)


async def _copy_planned(source: Source, destination: Destination, ref: str, target_tag: str | None,
                        plan: ImagePlan, platforms: Sequence[Platform], blob_jobs: int, reporter: Reporter,
                        ledger: BlobLedger, force: bool, limits: Limits, commit: bool) -> CopyResult:
    started = time.monotonic()
    root = plan.root
    result = CopyResult(
        source=f"{source.name}@{ref}" if _is_digest(ref) else f"{source.name}:{ref}",
        destination=f"{destination.name}:{target_tag}" if target_tag else destination.name,
        source_digest=str(plan.source_digest), digest=str(root.digest), tag=target_tag,
        new_digest=plan.built_index or plan.converted, platforms=[str(p) for p in platforms],
    )
    reporter(ImageStarted(result.source, result.destination, len(plan.blobs), plan.total_bytes))
    try:
        if isinstance(destination, Admitter):
            destination.admit([*plan.manifests, root])
        fresh = (destination.storage_id, destination.repository) in ledger.empty
        if not force and target_tag and not fresh and (
                plan.target_digest if plan.target_seen else await destination.head(target_tag)) == root.digest:
            result.up_to_date = True
            for blob in plan.blobs:
                ledger.note(destination.storage_id, blob.digest, destination.repository)
        else:
            await _copy_blobs(source, destination, plan.blobs, blob_jobs, reporter, ledger, result, limits)
            await push_image(destination, plan, target_tag, reporter, result, commit=commit)
    except BaseException as exc:
        reporter(ImageDone(result.source, result.destination, None, str(exc) or type(exc).__name__))
        raise
    result.seconds = round(time.monotonic() - started, 3)
    reporter(ImageDone(result.source, result.destination, result.digest, None, up_to_date=result.up_to_date))
    return result


def describe_ref(source: Source, ref: str) -> str:
    """``name@digest`` or ``name:tag`` for reports."""
    return f"{source.name}@{ref}" if _is_digest(ref) else f"{source.name}:{ref}"


def _is_digest(ref: str) -> bool:
    # A tag may start with "sha", and a local store's ref ("repo:tag") may contain ':': parse it.
    try:
        Digest.parse(ref)
    except InvalidReference:
        return False
    return True


async def push_image(destination: Destination, plan: ImagePlan, tag: str | None, reporter: Reporter,
                     result: CopyResult, *, commit: bool = True) -> None:
    """Push ``plan``'s child manifests leaves first, then its root under ``tag``, then commit (every
    blob must be present already).

    :param commit: commit a :class:`Committer` now (False: the caller commits once, after more images)
    """
    for child in plan.manifests:
        await _push_manifest(destination, child, None, reporter, result)
    await _push_manifest(destination, plan.root, tag, reporter, result)
    if commit and isinstance(destination, Committer):
        await destination.commit()


async def _push_manifest(
    destination: Destination, manifest: Manifest, tag: str | None, reporter: Reporter, result: CopyResult
) -> None:
    await destination.put_manifest(manifest, tag)
    result.manifests_pushed += 1
    reporter(ManifestPushed(destination.name, str(manifest.digest), tag))


async def _copy_blobs(
    source: Source, destination: Destination, blobs: Sequence[Descriptor], jobs: int, reporter: Reporter,
    ledger: BlobLedger, result: CopyResult, limits: Limits,
) -> None:
    limiter = anyio.CapacityLimiter(max(1, jobs))
    # Big blobs first: the longest transfer starts earliest, small ones fill the gaps.
    ordered = sorted(blobs, key=lambda b: b.size, reverse=True)
    async with fail_fast(), anyio.create_task_group() as tg:
        for blob in ordered:
            tg.start_soon(_copy_blob_limited, limiter, limits, source, destination, blob, reporter, ledger,
                          result)


@asynccontextmanager
async def fail_fast() -> AsyncIterator[None]:
    """Unwrap a fail-fast task group's exception group into its first real error.

    Siblings cancelled by the first failure add nothing, so callers get the cause itself and
    ``except regcopy.NotFound`` works (docs/architecture.md, "Copy engine").
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise first_error(group) from None


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first regcopy error of a (nested) exception group, else its first leaf."""
    flat: list[BaseException] = []

    def collect(g: BaseExceptionGroup[BaseException]) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                collect(exc)
            else:
                flat.append(exc)

    collect(group)
    for exc in flat:
        if isinstance(exc, RegcopyError):
            return exc
    for exc in flat:
        if not isinstance(exc, anyio.get_cancelled_exc_class()):
            return exc
    return flat[0]


async def _copy_blob_limited(
    limiter: anyio.CapacityLimiter, limits: Limits, source: Source, destination: Destination, blob: Descriptor,
    reporter: Reporter, ledger: BlobLedger, result: CopyResult,
) -> None:
    async with limiter, _maybe(limits.blobs), _maybe_bytes(limits.bytes, blob.size):
        action = await copy_blob(source, destination, blob, reporter=reporter, ledger=ledger,
                                 bandwidth=limits.bandwidth)
        if action == "uploaded":
            result.blobs_uploaded += 1
            result.bytes_uploaded += blob.size
        elif action == "mounted":
            result.blobs_mounted += 1
        else:
            result.blobs_skipped += 1


@asynccontextmanager
async def _maybe(limiter: anyio.CapacityLimiter | None) -> AsyncIterator[None]:
    if limiter is None:
        yield
    else:
        async with limiter:
            yield


@asynccontextmanager
async def _maybe_bytes(budget: ByteBudget | None, size: int) -> AsyncIterator[None]:
    if budget is None:
        yield
    else:
        async with budget.hold(size):
            yield


async def copy_blob(
    source: Source, destination: Destination, blob: Descriptor, *, reporter: Reporter = null_reporter,
    ledger: BlobLedger, opener: BlobOpener | None = None, bandwidth: TokenBucket | None = None,
) -> BlobAction:
    """Make one blob present in ``destination``: skip, mount, or upload it, once per storage.

    Single-flight per (storage, digest): a concurrent second caller waits for the first, then
    mounts from the repository the first one filled (or finds the blob present).

    :param opener: where an upload reads the bytes (a fan-out's tee); default: the source, verified
    :param bandwidth: the run's byte cap, for the default opener (a tee takes it itself)
    """
    key = (destination.storage_id, blob.digest)
    opener = opener or blob_opener(source, destination.name, blob, reporter, bandwidth)
    action, shared = await ledger.flights.do(
        key, lambda: _copy_blob(source, destination, blob, reporter, ledger, opener))
    if shared:
        # Another copy moved this blob into another repository (or this one) just now:
        # the ledger knows where, so this repository mounts it or finds it present.
        action = await _copy_blob(source, destination, blob, reporter, ledger, opener)
    return action


async def _copy_blob(
    source: Source, destination: Destination, blob: Descriptor, reporter: Reporter, ledger: BlobLedger,
    opener: BlobOpener | None = None,
) -> BlobAction:
    decision = await ledger.decide(destination, blob, source.origin)
    action: BlobAction = "uploaded"
    if decision.action == "skipped":
        reporter(BlobSkipped(destination.name, str(blob.digest), blob.size))
        action = "skipped"
    elif await _mount(destination, blob, decision.candidates, reporter, ledger):
        action = "mounted"
    else:  # nothing to mount from, or every candidate refused
        async with ledger.upload_lease(destination, blob) as leased:
            if not leased:  # another process moved it meanwhile: now it is present or mountable
                return await _copy_blob(source, destination, blob, reporter, ledger, opener)
            action = await _upload(source, destination, blob, reporter, opener)
    ledger.note(destination.storage_id, blob.digest, destination.repository)
    return action


async def _mount(
    destination: Destination, blob: Descriptor, candidates: Sequence[str], reporter: Reporter, ledger: BlobLedger
) -> bool:
    """Mount ``blob`` from the first candidate the destination accepts; False when none does."""
    if not isinstance(destination, Mounter):
        return False
    for candidate in candidates:
        if await destination.mount_blob(blob, candidate):
            reporter(BlobMounted(destination.name, str(blob.digest), blob.size, candidate))
            return True
        ledger.forget(destination.storage_id, blob.digest, candidate)  # a stale hint: not a holder
    return False


async def _upload(
    source: Source, destination: Destination, blob: Descriptor, reporter: Reporter, opener: BlobOpener | None
) -> BlobAction:
    """Upload ``blob`` from ``opener`` (default: the source, verified); a :class:`DigestMounter` asks
    its storage for the blob by digest alone on the way (then nothing is sent)."""
    reporter(BlobStarted(destination.name, str(blob.digest), blob.size))
    opener = opener or blob_opener(source, destination.name, blob, reporter)
    if isinstance(destination, DigestMounter):
        if await destination.put_or_mount(blob, opener):
            # The storage held the blob under another repository this run knew nothing of.
            reporter(BlobMounted(destination.name, str(blob.digest), blob.size, "(by digest)"))
            return "mounted"
    else:
        await destination.put_blob(blob, opener)
    reporter(BlobDone(destination.name, str(blob.digest), blob.size))
    return "uploaded"


def blob_opener(source: Source, dest_name: str, blob: Descriptor, reporter: Reporter,
                bandwidth: TokenBucket | None = None) -> BlobOpener:
    """The blob's opener: verified source bytes from any offset, sharing hash checkpoints across calls,
    with progress events for ``dest_name``, at most ``bandwidth``'s rate."""
    marks: list[Hasher] = []

    def opener(offset: int = 0, /) -> AsyncIterator[bytes]:
        return _verified(source, dest_name, blob, reporter, offset, marks, bandwidth)

    return opener


async def _verified(
    source: Source, dest_name: str, blob: Descriptor, reporter: Reporter, offset: int, marks: list[Hasher],
    bandwidth: TokenBucket | None,
) -> AsyncIterator[bytes]:
    """The source bytes from ``offset``, checked for size and digest as they flow, with progress events,
    at most ``bandwidth``'s rate (its wait is the source's, for the upload's pacer).

    A resumed upload (``offset`` > 0) sends only the rest, but the digest covers the whole blob:
    hashing restarts from the last checkpoint at or before ``offset`` (``marks``: hasher copies taken
    every ``_mark_interval`` bytes on earlier passes), reading — not sending — the bytes between it and
    ``offset`` (without one, the whole prefix). So verification is never lost. The bytes before
    ``offset`` came from the earlier pass; a changed source is refused at ``PUT ?digest=``.
    """
    base = next((m for m in reversed(marks) if m.size <= offset), None)
    start = base.size if base is not None else 0
    if start and isinstance(source, RangeReader):
        raw = chunks = source.open_blob_at(blob, start)
    else:
        raw = source.open_blob(blob)
        chunks = _skip(raw, start)  # no Range: read past the checkpointed prefix
    stream = VerifyingStream(chunks, blob.digest, blob.size, what=f"blob {blob.digest.short}")
    if base is not None:
        stream.hasher = base.copy()
    interval = _mark_interval(blob.size)
    if not marks:
        marks.append(stream.hasher.copy())  # offset 0
    pos = start
    digest = str(blob.digest)
    try:
        async for chunk in stream:
            end = pos + len(chunk)
            if end - marks[-1].size >= interval:
                marks.append(stream.hasher.copy())
            if end > offset:
                out = chunk if pos >= offset else chunk[offset - pos:]
                if bandwidth is not None:
                    await bandwidth.take(len(out))
                reporter(BlobProgress(dest_name, digest, len(out)))
                yield out
            pos = end
    finally:
        await close_stream(raw)  # the source's request slot is released in this task, not by the GC


def _mark_interval(size: int) -> int:
    # A sha256 state is ~200 bytes: at most ~1024 checkpoints per blob, at least 1 MiB apart.
    return max(1 << 20, size // 1024)


async def _skip(chunks: AsyncIterator[bytes], count: int) -> AsyncIterator[bytes]:
    """``chunks`` without their first ``count`` bytes."""
    async for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0
