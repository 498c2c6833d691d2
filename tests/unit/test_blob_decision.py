"""The one blob decision (BlobLedger.decide): its rules, and a sync dry run predicting the run blob by blob."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memstores import MemDestination, MemMountingDestination, MemSource, MemStorage, add_image

from regcopy.digest import Digest
from regcopy.filters import TagFilter
from regcopy.ledger import BlobDecision, BlobLedger
from regcopy.locations import AnyNamespace, AnyRepository, LocalRepository, parse_repository
from regcopy.manifest import Descriptor
from regcopy.progress import BlobDone, BlobMounted, BlobSkipped, Event
from regcopy.reference import LocalLocation, Repository
from regcopy.stores.base import Destination, Origin, Source
from regcopy.stores.local import LocalStore, RepositoryView, open_local
from regcopy.sync import SyncEntry, SyncOptions, SyncPlan, SyncReport, run_sync

BLOB = Descriptor("application/octet-stream", Digest.of(b"blob"), 4)


# --- the rules ---------------------------------------------------------------------------------


async def test_present_blob_is_skipped() -> None:
    storage = MemStorage()
    dst = MemMountingDestination(storage, "dst/repo")
    dst.repo_blobs[BLOB.digest] = b"blob"
    assert await BlobLedger().decide(dst, BLOB, None) == BlobDecision("skipped")


async def test_only_a_mounter_mounts() -> None:
    ledger = BlobLedger()
    ledger.note("registry:mem", BLOB.digest, "other/repo")
    plain = MemDestination(MemStorage(), "dst/repo")
    mounting = MemMountingDestination(MemStorage(), "dst/repo")
    assert await ledger.decide(plain, BLOB, None) == BlobDecision("uploaded")
    assert await ledger.decide(mounting, BLOB, None) == BlobDecision("mounted", ("other/repo",))


async def test_mount_candidates_origin_first_then_holders_at_most_three() -> None:
    ledger = BlobLedger()
    for repo in ("a", "b", "c", "src/repo", "dst/repo"):
        ledger.note("registry:mem", BLOB.digest, repo)
    dst = MemMountingDestination(MemStorage(), "dst/repo")
    same = Origin("registry:mem", "src/repo")
    assert await ledger.decide(dst, BLOB, same) == BlobDecision("mounted", ("src/repo", "a", "b"))
    # Another storage's origin is no candidate; the destination itself never is.
    other = Origin("registry:elsewhere", "src/repo")
    assert (await ledger.decide(dst, BLOB, other)).candidates == ("a", "b", "c")
    # The source repository of the same storage is a candidate even when the ledger never saw it.
    fresh = BlobLedger()
    assert await fresh.decide(dst, BLOB, same) == BlobDecision("mounted", ("src/repo",))
    assert await fresh.decide(dst, BLOB, Origin("registry:mem", "dst/repo")) == BlobDecision("uploaded")


async def test_found_empty_repository_needs_no_head() -> None:
    class NoHead(MemDestination):
        async def has_blob(self, desc: Descriptor) -> bool:
            raise AssertionError("a repository found empty holds only what this run put there")

    ledger = BlobLedger()
    dst = NoHead(MemStorage(), "dst/repo")
    ledger.set_empty(dst.storage_id, "dst/repo", True)
    assert await ledger.decide(dst, BLOB, None) == BlobDecision("uploaded")
    ledger.note(dst.storage_id, BLOB.digest, "dst/repo")
    assert await ledger.decide(dst, BLOB, None) == BlobDecision("skipped")


async def test_simulation_takes_its_notes_as_present_and_leaves_the_ledger() -> None:
    ledger = BlobLedger()
    ledger.note("registry:mem", BLOB.digest, "a")
    sim = ledger.simulation()
    dst = MemMountingDestination(MemStorage(), "dst/repo")
    assert await sim.decide(dst, BLOB, None) == BlobDecision("mounted", ("a",))
    sim.note(dst.storage_id, BLOB.digest, "dst/repo")  # nothing was written: a HEAD would say absent
    assert await sim.decide(dst, BLOB, None) == BlobDecision("skipped")
    assert ledger.holders == {("registry:mem", BLOB.digest): {"a"}}
    assert await ledger.decide(dst, BLOB, None) == BlobDecision("mounted", ("a",))


# --- a dry run agrees with the run -------------------------------------------------------------

SHARED = b"shared base layer " * 40
LAYERS = {name: f"{name} layer bytes ".encode() * (5 + i) for i, name in enumerate(("x", "y", "app"))}


class MemBackend:
    """A SyncBackend over in-memory stores: ``mount.test`` can mount (and holds the source ``lib/app``),
    ``plain.test`` cannot; ``far.test`` is only a source registry."""

    def __init__(self) -> None:
        self.storages = {"mount.test": MemStorage(), "plain.test": MemStorage()}
        self.sources: dict[str, MemSource] = {}
        for registry, name in (("far.test", "x"), ("far.test", "y"), ("mount.test", "app")):
            src = MemSource(f"{registry}/lib/{name}")
            src.origin = Origin(f"registry:{registry}", f"lib/{name}")
            add_image(src, [SHARED, LAYERS[name]], arch=name, tag="v1")
            self.sources[src.name] = src
        # The source lib/app lives in the destination storage: its blobs can be mounted from it.
        self.storages["mount.test"].blobs["lib/app"] = dict(self.sources["mount.test/lib/app"].blobs)

    async def catalog(self, where: AnyNamespace) -> list[str]:
        raise AssertionError("the plan names repositories only")

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        assert isinstance(repo, Repository)
        storage = self.storages[repo.registry]
        if not storage.tags.get(repo.path) and not storage.blobs.get(repo.path):
            return None  # the repository does not exist
        return sorted(storage.tags.get(repo.path, {}))

    def source(self, repo: AnyRepository) -> Source:
        assert isinstance(repo, Repository)
        return self.sources[f"{repo.registry}/{repo.path}"]

    async def warm_up(self, plan: SyncPlan) -> None:
        """Nothing to probe in memory."""

    def destination(self, repo: AnyRepository) -> Destination:
        assert isinstance(repo, Repository)
        kind = MemMountingDestination if repo.registry == "mount.test" else MemDestination
        return kind(self.storages[repo.registry], repo.path, storage_id=f"registry:{repo.registry}")


def _plan() -> SyncPlan:
    pairs = [("far.test/lib/x", "mount.test/mirror/x"), ("far.test/lib/y", "mount.test/mirror/y"),
             ("mount.test/lib/app", "mount.test/mirror/app"), ("far.test/lib/x", "plain.test/copy/x"),
             ("far.test/lib/y", "plain.test/copy/y")]
    return SyncPlan(tuple(SyncEntry(f"sync[{i}]", parse_repository(src), parse_repository(dst),
                                    tags=TagFilter(exact=("v1",)))
                          for i, (src, dst) in enumerate(pairs)))


def _outcomes(events: list[Event]) -> dict[tuple[str, str], str]:
    """What the run did to each blob of each destination (the first thing: a shared blob is moved by the
    shared-layer pass, then found present by its image)."""
    kinds = {BlobDone: "uploaded", BlobMounted: "mounted", BlobSkipped: "skipped"}
    out: dict[tuple[str, str], str] = {}
    for e in events:
        if isinstance(e, BlobDone | BlobMounted | BlobSkipped):
            out.setdefault((e.destination, e.digest), kinds[type(e)])
    return out


def _counts(report: SyncReport) -> list[tuple[str, int, int, int, int]]:
    return sorted((r.target, r.blobs_uploaded, r.blobs_mounted, r.blobs_skipped, r.bytes_uploaded)
                  for r in report.images)


async def test_dry_run_predicts_every_blob_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = MemBackend()
    x_layer = Digest.of(LAYERS["x"])
    backend.storages["plain.test"].blobs["copy/x"] = {x_layer: LAYERS["x"]}  # exists, holds one layer
    backend.storages["mount.test"].tags["mirror/y"] = {"old": x_layer}  # exists, holds no blob
    predicted: dict[tuple[str, str], str] = {}
    decide = BlobLedger.decide

    async def spy(self: BlobLedger, destination: Destination, blob: Descriptor, origin: Origin | None
                  ) -> BlobDecision:
        decision = await decide(self, destination, blob, origin)
        assert predicted.setdefault((destination.name, str(blob.digest)), decision.action) == decision.action
        return decision

    ledger = BlobLedger()
    monkeypatch.setattr(BlobLedger, "decide", spy)
    dry = await run_sync(backend, _plan(), options=SyncOptions(dry_run=True), ledger=ledger)
    monkeypatch.setattr(BlobLedger, "decide", decide)
    assert dry.ok and [r.status for r in dry.images] == ["planned"] * 5
    assert not any(s.log for s in backend.storages.values())  # a dry run writes nothing
    assert ledger.holders == {}  # and leaves the run's ledger as it was

    events: list[Event] = []
    real = await run_sync(backend, _plan(), reporter=events.append, ledger=ledger)
    assert real.ok and [r.status for r in real.images] == ["copied"] * 5
    done = _outcomes(events)
    assert len(done) == 15  # 5 images, each a config and 2 layers
    assert predicted == done
    assert _counts(dry) == _counts(real)

    shared = str(Digest.of(SHARED))
    # Not a Mounter: the shared layer is uploaded to each repository although the ledger knows a holder.
    assert done[("mem/copy/x", shared)] == done[("mem/copy/y", shared)] == "uploaded"
    assert done[("mem/copy/x", str(x_layer))] == "skipped"
    assert "mounted" not in {action for (dst, _), action in done.items() if dst.startswith("mem/copy/")}
    # A Mounter: the shared layer moves once, the source's own repository is a mount candidate.
    # mirror/app goes first (equal shared bytes, then by name) and mounts from its source lib/app; the
    # others mount from mirror/app, which the ledger knows holds it.
    assert [done[(f"mem/mirror/{n}", shared)] for n in ("app", "x", "y")] == ["mounted"] * 3
    log = backend.storages["mount.test"].log
    assert ("mount_blob", "mirror/app", shared, "lib/app") in log
    assert ("mount_blob", "mirror/x", shared, "mirror/app") in log
    app_layer = str(Digest.of(LAYERS["app"]))
    assert done[("mem/mirror/app", app_layer)] == "mounted"
    assert done[("mem/mirror/x", str(x_layer))] == "uploaded"
    assert json.loads(json.dumps(dry.to_json()))["totals"]["planned"] == 5


class LayoutBackend(MemBackend):
    """MemBackend whose ``oci:`` targets are repositories of one real OCI layout (blobs shared store-wide)."""

    def __init__(self, store: LocalStore) -> None:
        super().__init__()
        self.store = store

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        if isinstance(repo, LocalRepository):
            return await RepositoryView(self.store, repo.path).list_tags()
        return await super().list_tags(repo)

    def destination(self, repo: AnyRepository) -> Destination:
        if isinstance(repo, LocalRepository):
            return RepositoryView(self.store, repo.path)
        return super().destination(repo)


async def test_dry_run_predicts_a_local_store_whose_repositories_share_blobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = tmp_path / "layout"
    plan = SyncPlan(tuple(SyncEntry(f"sync[{i}]", parse_repository(src), parse_repository(f"oci:{layout}:copy/{name}"),
                                    tags=TagFilter(exact=("v1",)))
                          for i, (src, name) in enumerate([("far.test/lib/x", "x"), ("far.test/lib/y", "y"),
                                                           ("mount.test/lib/app", "app")])))
    predicted: dict[tuple[str, str], str] = {}
    decide = BlobLedger.decide

    async def spy(self: BlobLedger, destination: Destination, blob: Descriptor, origin: Origin | None
                  ) -> BlobDecision:
        decision = await decide(self, destination, blob, origin)
        predicted[(destination.name, str(blob.digest))] = decision.action
        return decision

    async with open_local(LocalLocation.parse(f"oci:{layout}"), writable=True) as store:
        backend = LayoutBackend(store)
        ledger = BlobLedger()
        monkeypatch.setattr(BlobLedger, "decide", spy)
        dry = await run_sync(backend, plan, options=SyncOptions(dry_run=True), ledger=ledger)
        monkeypatch.setattr(BlobLedger, "decide", decide)
        events: list[Event] = []
        real = await run_sync(backend, plan, reporter=events.append, ledger=ledger)
    assert dry.ok and real.ok and [r.status for r in real.images] == ["copied"] * 3
    done = _outcomes(events)
    assert len(done) == 9 and predicted == done
    assert _counts(dry) == _counts(real)
    # One blob store for the layout: the shared layer is written once, then found present (not a Mounter).
    shared = str(Digest.of(SHARED))
    actions = sorted(action for (dst, digest), action in done.items() if digest == shared)
    assert actions == ["skipped", "skipped", "uploaded"]
