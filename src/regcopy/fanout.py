"""Fan-out: one source read feeds several destinations (multi-region replication).

:func:`copy_fanout` resolves the source graph once, then moves each blob once out of the source:
destinations that need it read one stream through a :class:`Tee` (a bounded buffer per destination,
so the slowest sets the pace and memory stays at ``buffer`` chunks per destination), verified as it
flows. Destinations on the same storage (two repositories of one registry) are grouped: the first
of each group takes part in the tee, the others mount from it afterwards through the ledger. A
destination whose upload fails leaves the tee (the others go on) and is retried from the source on
its own: its store's restart opens the blob again, which a tee answers with a private source
stream, and a blob that still failed is tried once more alone. Each destination then gets its
manifests and tag and its own :class:`~regcopy.engine.CopyResult`; one failing destination never
fails the others (docs/architecture.md, "Fan-out").
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio

from regcopy.digest import VerifyingStream
from regcopy.engine import (
    CopyResult,
    ImagePlan,
    Limits,
    blob_opener,
    copy_blob,
    describe_ref,
    fail_fast,
    plan_image,
    push_image,
)
from regcopy.errors import RegcopyError
from regcopy.ledger import BlobAction, BlobLedger
from regcopy.manifest import Descriptor, Platform
from regcopy.progress import BlobProgress, ImageDone, ImageStarted, Reporter, null_reporter
from regcopy.stores.base import BlobOpener, Destination, Source, close_stream
from regcopy.throttle import TokenBucket

__all__ = ("Target", "Tee", "copy_fanout", "fan_blob")

log = logging.getLogger(__name__)

_BUFFER_CHUNKS: Final = 8
"""Chunks buffered per destination (a registry source reads 256 KiB at a time: 2 MiB each)."""
_JOIN_WINDOW: Final = 5.0
"""Seconds the read waits, after the first destination joined, for the others to start reading. One
still busy then (waiting for another image's upload of the same blob to its storage, which it will
then mount) reads the source alone if it ever needs the bytes: no tee waits on another tee."""


@dataclass(slots=True)
class Target:
    """One destination of a fan-out and the tag it gets (None: by digest)."""

    destination: Destination
    tag: str | None
    result: CopyResult | None = None
    error: BaseException | None = None


class _Slot:
    """One destination's end of a tee: pending until its upload starts reading, then joined, then left."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.send, self.receive = anyio.create_memory_object_stream[bytes | BaseException | None](_BUFFER_CHUNKS)
        self.joined = False
        self.left = False


class Tee:
    """One verified source stream of a blob, copied to every slot's bounded buffer.

    The pump starts once every slot has joined (its upload began reading) or left (it skipped,
    mounted, failed or restarted); it then reads the source once, at the pace of the slowest joined
    slot. A slot's reader sees the end of the stream only after the whole blob was verified.
    """

    def __init__(self, source: Source, blob: Descriptor, names: Sequence[str], reporter: Reporter, *,
                 window: float = _JOIN_WINDOW, bandwidth: TokenBucket | None = None) -> None:
        self.source = source
        self.bandwidth = bandwidth
        """The run's byte cap (``--limit-rate``): the one read pays it once, whatever it feeds."""
        self.blob = blob
        self.reporter = reporter
        self.window = window
        self.slots = [_Slot(n) for n in names]
        self._settled = anyio.Event()
        self._joined_any = anyio.Event()
        self.reads = 0
        self._check_settled()  # no slot at all: nothing to wait for

    def opener(self, index: int) -> BlobOpener:
        """Slot ``index``'s opener: the tee on its first whole-blob call, the source alone on any other."""
        slot = self.slots[index]
        calls = 0

        def open_(offset: int = 0, /) -> AsyncIterator[bytes]:
            nonlocal calls
            calls += 1
            if calls == 1 and offset == 0 and not slot.left:
                return self._read(slot)
            self.leave(index)  # a restart or resume: this destination reads the source on its own
            return blob_opener(self.source, slot.name, self.blob, self.reporter, self.bandwidth)(offset)

        return open_

    def leave(self, index: int) -> None:
        """Slot ``index`` takes no (more) part; its buffer is dropped and the pump stops feeding it."""
        slot = self.slots[index]
        if not slot.left:
            slot.left = True
            slot.receive.close()
            self._check_settled()

    def _check_settled(self) -> None:
        if any(s.joined for s in self.slots):
            self._joined_any.set()
        if all(s.joined or s.left for s in self.slots):
            self._settled.set()
            self._joined_any.set()  # every slot left: the pump ends at once

    async def _read(self, slot: _Slot) -> AsyncIterator[bytes]:
        if slot.left:  # the read went on without it: the source alone
            async for chunk in blob_opener(self.source, slot.name, self.blob, self.reporter, self.bandwidth)():
                yield chunk
            return
        slot.joined = True
        self._check_settled()
        digest = str(self.blob.digest)
        try:
            async for item in slot.receive:
                if item is None:
                    return  # the pump verified the whole blob
                if isinstance(item, BaseException):
                    raise item
                self.reporter(BlobProgress(slot.name, digest, len(item)))
                yield item
            raise RegcopyError(f"the shared read of blob {self.blob.digest.short} stopped before its end")
        finally:
            self.leave(self.slots.index(slot))

    async def pump(self) -> None:
        """Read the blob once and feed every joined slot; ends when the blob ends or no slot is left."""
        await self._joined_any.wait()
        with anyio.move_on_after(self.window):
            await self._settled.wait()
        for i, slot in enumerate(self.slots):
            if not slot.joined:
                self.leave(i)  # too late for this read: it reads the source alone if it must
        live = [s for s in self.slots if not s.left]
        if not live:
            return
        self.reads += 1
        raw = self.source.open_blob(self.blob)
        stream = VerifyingStream(raw, self.blob.digest, self.blob.size, what=f"blob {self.blob.digest.short}")
        try:
            async for chunk in stream:
                if self.bandwidth is not None:
                    await self.bandwidth.take(len(chunk))
                live = await _feed(live, chunk)
                if not live:
                    return
            await _feed(live, None)
        except RegcopyError as exc:
            await _feed(live, exc)
        finally:
            await close_stream(raw)
            for slot in self.slots:
                slot.send.close()


async def _feed(slots: list[_Slot], item: bytes | BaseException | None) -> list[_Slot]:
    """Send ``item`` to each slot (waiting while its buffer is full); the slots still listening."""
    alive: list[_Slot] = []
    for slot in slots:
        try:
            await slot.send.send(item)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            continue  # its reader left: dropped from the tee
        alive.append(slot)
    return alive


async def copy_fanout(
    source: Source, targets: Sequence[Target], ref: str, *, platforms: Sequence[Platform] = (), blob_jobs: int = 6,
    reporter: Reporter = null_reporter, ledger: BlobLedger | None = None, force: bool = False,
    plan: ImagePlan | None = None, limits: Limits | None = None, commit: bool = True,
) -> list[Target]:
    """Copy ``ref`` of ``source`` to every target, reading each blob from the source once.

    :param commit: commit :class:`~regcopy.stores.base.Committer` destinations at the end (False:
        the caller commits, after the referrers)

    :returns: ``targets``, each with its :class:`CopyResult` or the error that ended it
    :raises RegcopyError: only when the source itself cannot be planned (nothing was written)
    """
    ledger = ledger or BlobLedger()
    limits = limits or Limits()
    plan = plan or await plan_image(source, ref, platforms)
    started = time.monotonic()
    active: list[Target] = []
    for target in targets:
        target.result = _result(source, target, ref, plan, platforms)
        reporter(ImageStarted(target.result.source, target.result.destination, len(plan.blobs), plan.total_bytes))
        if await _up_to_date(target, plan, ledger, force):
            target.result.up_to_date = True
        else:
            active.append(target)
    await _fan_blobs(source, active, plan, blob_jobs, reporter, ledger, limits)
    async with anyio.create_task_group() as tg:
        for target in active:
            if target.error is None:
                tg.start_soon(_finish, target, plan, reporter, commit)
    for target in targets:
        assert target.result is not None
        target.result.seconds = round(time.monotonic() - started, 3)
        error = str(target.error) or type(target.error).__name__ if target.error is not None else None
        reporter(ImageDone(target.result.source, target.result.destination,
                           None if error else target.result.digest, error))
    return list(targets)


def _result(source: Source, target: Target, ref: str, plan: ImagePlan, platforms: Sequence[Platform]) -> CopyResult:
    dest = target.destination
    return CopyResult(
        source=describe_ref(source, ref),
        destination=f"{dest.name}:{target.tag}" if target.tag else dest.name,
        source_digest=str(plan.source_digest), digest=str(plan.root.digest), tag=target.tag,
        new_digest=plan.built_index, platforms=[str(p) for p in platforms])


async def _up_to_date(target: Target, plan: ImagePlan, ledger: BlobLedger, force: bool) -> bool:
    dest = target.destination
    fresh = (dest.storage_id, dest.repository) in ledger.empty
    if force or not target.tag or fresh:
        return False
    try:
        same = await dest.head(target.tag) == plan.root.digest
    except RegcopyError as exc:
        target.error = exc
        return True  # nothing more for it; the error is its result
    if same:
        for blob in plan.blobs:
            ledger.note(dest.storage_id, blob.digest, dest.repository)
    return same


async def _fan_blobs(source: Source, targets: list[Target], plan: ImagePlan, jobs: int, reporter: Reporter,
                     ledger: BlobLedger, limits: Limits) -> None:
    if not targets:
        return
    limiter = anyio.CapacityLimiter(max(1, jobs))

    async def one(blob: Descriptor) -> None:
        async with limiter, _held(limits, blob.size):
            await fan_blob(source, [t for t in targets if t.error is None], blob, reporter, ledger, limits.bandwidth)

    async with fail_fast(), anyio.create_task_group() as tg:
        for blob in sorted(plan.blobs, key=lambda b: b.size, reverse=True):
            tg.start_soon(one, blob)


@asynccontextmanager
async def _held(limits: Limits, size: int) -> AsyncIterator[None]:
    """Run-wide blob and byte limits, held once for a blob however many destinations it feeds."""
    async with AsyncExitStack() as stack:
        if limits.blobs is not None:
            await stack.enter_async_context(limits.blobs)
        if limits.bytes is not None:
            await stack.enter_async_context(limits.bytes.hold(size))
        yield


async def fan_blob(source: Source, targets: Sequence[Target], blob: Descriptor, reporter: Reporter,
                   ledger: BlobLedger, bandwidth: TokenBucket | None = None) -> dict[int, BlobAction]:
    """Make ``blob`` present on every target: one tee for the first target of each storage, then the
    others of that storage (mounts); a target that fails it is retried alone, then marked failed."""
    leaders: dict[str, Target] = {}
    for target in targets:
        key = (target.destination.storage_id, blob.digest)
        if not ledger.flights.busy(key):  # another image is moving it there: mount it after
            leaders.setdefault(key[0], target)
    group = list(leaders.values())
    tee = Tee(source, blob, [t.destination.name for t in group], reporter, bandwidth=bandwidth)
    actions: dict[int, BlobAction] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(tee.pump)
        for i, target in enumerate(group):
            tg.start_soon(_lead, tee, i, source, target, blob, reporter, ledger, actions)
    followers = [t for t in targets if t not in group and t.error is None]
    async with anyio.create_task_group() as tg:
        for target in followers:
            tg.start_soon(_alone, source, target, blob, reporter, ledger, actions, bandwidth)
    return actions


async def _lead(tee: Tee, index: int, source: Source, target: Target, blob: Descriptor, reporter: Reporter,
                ledger: BlobLedger, actions: dict[int, BlobAction]) -> None:
    try:
        action = await copy_blob(source, target.destination, blob, reporter=reporter, ledger=ledger,
                                 opener=tee.opener(index))
    except RegcopyError as exc:
        log.warning("%s: blob %s failed in the shared read (%s); retrying from the source alone",
                    target.destination.name, blob.digest.short, exc)
        tee.leave(index)
        await _alone(source, target, blob, reporter, ledger, actions, tee.bandwidth)
        return
    finally:
        tee.leave(index)
    _count(target, action, blob.size)
    actions[id(target)] = action


async def _alone(source: Source, target: Target, blob: Descriptor, reporter: Reporter, ledger: BlobLedger,
                 actions: dict[int, BlobAction], bandwidth: TokenBucket | None = None) -> None:
    try:
        action = await copy_blob(source, target.destination, blob, reporter=reporter, ledger=ledger,
                                 bandwidth=bandwidth)
    except RegcopyError as exc:
        target.error = exc
        return
    _count(target, action, blob.size)
    actions[id(target)] = action


def _count(target: Target, action: BlobAction, size: int) -> None:
    result = target.result
    assert result is not None
    if action == "uploaded":
        result.blobs_uploaded += 1
        result.bytes_uploaded += size
    elif action == "mounted":
        result.blobs_mounted += 1
    else:
        result.blobs_skipped += 1


async def _finish(target: Target, plan: ImagePlan, reporter: Reporter, commit: bool) -> None:
    assert target.result is not None
    try:
        await push_image(target.destination, plan, target.tag, reporter, target.result, commit=commit)
    except RegcopyError as exc:
        target.error = exc

