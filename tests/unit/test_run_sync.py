"""``run_sync`` over in-memory registries: discovery, the up-to-date check, the copy, the retry of failed
images at the end of the pass and the dry run's figures (docs/architecture.md#bulk-sync-sync).

Plans are built the way users write them (``parse_plan`` of a plan document). The backend counts every
call the scheduler makes, so the tests can say what a run asked each registry for, not only what it
wrote; the integration tests (tests/integration/test_sync.py) run the same scheduler against real
registries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from memstores import MemMountingDestination, MemSource, MemStorage, add_image

from regcopy.digest import Digest
from regcopy.errors import ConfigError, ManifestNotFound, StoreError, TransportError
from regcopy.locations import AnyNamespace, AnyRepository
from regcopy.manifest import Descriptor, Manifest
from regcopy.reference import Namespace, Repository
from regcopy.stores.base import BlobOpener, Destination, Origin, Source
from regcopy.sync.model import SyncPlan
from regcopy.sync.plan import parse_plan
from regcopy.sync.scheduler import SyncOptions, SyncReport, run_sync

BASE = b"a base layer every image shares " * 64


class StorageSource:
    """A Source reading one repository of a MemStorage, logging what it is asked for."""

    def __init__(self, storage: MemStorage, host: str, path: str, calls: list[tuple[str, ...]]) -> None:
        self.storage, self.path, self.calls = storage, path, calls
        self.name = f"{host}/{path}"
        self.origin = Origin(f"registry:{host}", path)
        self.synthesized = False
        self.served_by: list[str] | None = None

    async def head(self, ref: str) -> Digest | None:
        self.calls.append(("head", self.name, ref))
        return self.storage.tags.get(self.path, {}).get(ref)

    async def resolve(self, ref: str) -> Manifest:
        self.calls.append(("get", self.name, ref))
        digest = self.storage.tags.get(self.path, {}).get(ref)
        if digest is None:
            raise ManifestNotFound(f"{self.name}:{ref} not found")
        return Manifest.parse(self.storage.manifests[self.path][digest])

    async def get_manifest(self, digest: Digest) -> Manifest:
        self.calls.append(("get", self.name, str(digest)))
        return Manifest.parse(self.storage.manifests[self.path][digest])

    async def open_blob(self, desc: Descriptor) -> AsyncIterator[bytes]:
        self.calls.append(("blob", self.name, str(desc.digest)))
        yield self.storage.blobs[self.path][desc.digest]

    async def list_tags(self) -> list[str]:
        return sorted(self.storage.tags.get(self.path, {}))


class CountingDestination(MemMountingDestination):
    """A mounting MemDestination logging its HEADs; ``failures`` put_blob calls fail first."""

    def __init__(self, storage: MemStorage, host: str, path: str, calls: list[tuple[str, ...]]) -> None:
        super().__init__(storage, path, storage_id=f"registry:{host}")
        self.name, self.calls, self.failures = f"{host}/{path}", calls, 0

    async def head(self, ref: str) -> Digest | None:
        self.calls.append(("head", self.name, ref))
        return await super().head(ref)

    async def put_blob(self, desc: Descriptor, opener: BlobOpener) -> int:
        if self.failures:
            self.failures -= 1
            raise StoreError(f"{self.name}: connection reset while uploading {desc.digest.short}")
        return await super().put_blob(desc, opener)


class Registries:
    """A SyncBackend over in-memory registries, one MemStorage per host; logs every call."""

    def __init__(self) -> None:
        self.storages: dict[str, MemStorage] = defaultdict(MemStorage)
        self.calls: list[tuple[str, ...]] = []
        self.broken: set[str] = set()  # hosts whose catalog, or repositories whose tag list, fails
        self._destinations: dict[str, CountingDestination] = {}
        self.warmed: list[tuple[set[str], list[str]]] = []  # (registries, repositories listed by then)

    def push(self, repo: str, tag: str, *layers: bytes, arch: str = "amd64") -> Manifest:
        """Put an image (a config and ``layers``) into ``host/path`` under ``tag``."""
        host, _, path = repo.partition("/")
        built = MemSource()
        manifest = add_image(built, [*layers], arch=arch, tag=tag)
        storage = self.storages[host]
        storage.blobs.setdefault(path, {}).update(built.blobs)
        storage.manifests.setdefault(path, {})[manifest.digest] = manifest.data
        storage.tags.setdefault(path, {})[tag] = manifest.digest
        return manifest

    def tags(self, repo: str) -> dict[str, Digest]:
        host, _, path = repo.partition("/")
        return dict(self.storages[host].tags.get(path, {}))

    def writes(self) -> list[tuple[str, ...]]:
        return [entry for storage in self.storages.values() for entry in storage.log]

    def calls_of(self, kind: str) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[0] == kind]

    async def catalog(self, where: AnyNamespace) -> list[str]:
        assert isinstance(where, Namespace)
        registry = where.registry
        self.calls.append(("catalog", registry))
        if registry in self.broken:
            raise TransportError("connection reset", registry=registry)
        storage = self.storages[registry]
        return sorted(path for path, tags in storage.tags.items() if tags)

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        assert isinstance(repo, Repository)
        self.calls.append(("tags", str(repo)))
        if str(repo) in self.broken:
            raise TransportError("HTTP 503", registry=repo.registry, status=503)
        tags = self.storages[repo.registry].tags.get(repo.path)
        return sorted(tags) if tags else None

    def source(self, repo: AnyRepository) -> Source:
        assert isinstance(repo, Repository)
        return StorageSource(self.storages[repo.registry], repo.registry, repo.path, self.calls)

    async def warm_up(self, plan: SyncPlan) -> None:
        targets = {e.target.registry for e in plan.entries if isinstance(e.target, Namespace | Repository)}
        self.warmed.append((targets, [c[1] for c in self.calls_of("tags")]))

    def destination(self, repo: AnyRepository) -> Destination:
        assert isinstance(repo, Repository)
        key = str(repo)
        if key not in self._destinations:
            self._destinations[key] = CountingDestination(self.storages[repo.registry], repo.registry, repo.path,
                                                          self.calls)
        return self._destinations[key]

    def failing(self, repo: str, times: int) -> None:
        """Make the next ``times`` blob uploads into ``repo`` fail."""
        host, _, path = repo.partition("/")
        destination = self.destination(Repository(host, path))
        assert isinstance(destination, CountingDestination)
        destination.failures = times


def plan(*entries: dict[str, Any]) -> SyncPlan:
    return parse_plan({"version": 1, "sync": list(entries)})


def statuses(report: SyncReport) -> dict[str, tuple[str, int]]:
    return {r.target: (r.status, r.attempts) for r in report.images}


def figures(report: SyncReport) -> dict[str, tuple[int, int, int, int]]:
    return {r.target: (r.blobs_uploaded, r.blobs_mounted, r.blobs_skipped, r.bytes_uploaded) for r in report.images}


def seeded() -> Registries:
    backend = Registries()
    backend.push("src.test/ns/app", "v1", BASE, b"app one", arch="amd64")
    backend.push("src.test/ns/app", "v2", BASE, b"app two", arch="arm64")
    backend.push("src.test/ns/app", "dev", BASE, b"app dev")
    backend.push("src.test/ns/tool", "v1", BASE, b"tool", arch="riscv64")
    backend.push("src.test/lib/db", "v1", b"db layer")
    backend.push("src.test/lib/db", "v9", b"db nine")
    return backend


NAMESPACE = {"source": "src.test/ns", "target": "dst.test/mirror", "type": "namespace",
             "tags": {"allow": ["v[0-9]+"]}, "repos": {"deny": ["ns/tool"]}}
LIB = {"source": "src.test/lib", "target": "dst.test/lib", "type": "namespace"}
PINNED = {"source": "src.test/lib/db", "target": "dst.test/pinned/db", "tags": {"exact": ["v1"]}}


# --- discovery -------------------------------------------------------------------------------------


async def test_discovery_selects_by_catalog_repo_filter_and_tag_filter() -> None:
    backend = seeded()
    report = await run_sync(backend, plan(NAMESPACE, LIB, PINNED))
    assert report.ok and not report.errors
    assert statuses(report) == {
        "dst.test/mirror/app:v1": ("copied", 1), "dst.test/mirror/app:v2": ("copied", 1),  # not dev
        "dst.test/lib/db:v1": ("copied", 1), "dst.test/lib/db:v9": ("copied", 1),
        "dst.test/pinned/db:v1": ("copied", 1),  # ns/tool is denied
    }
    # One catalog per registry, whatever the number of entries on it; exact tags need no source listing.
    assert backend.calls_of("catalog") == [("catalog", "src.test")]
    listed = sorted(c[1] for c in backend.calls_of("tags"))
    assert listed == sorted(["src.test/ns/app", "src.test/lib/db",  # sources; not ns/tool, not for PINNED
                             "dst.test/mirror/app", "dst.test/lib/db", "dst.test/pinned/db"])  # destinations
    assert backend.tags("dst.test/mirror/app") == {t: backend.tags("src.test/ns/app")[t] for t in ("v1", "v2")}
    assert backend.tags("dst.test/pinned/db") == {"v1": backend.tags("src.test/lib/db")["v1"]}


async def test_a_failed_discovery_is_reported_and_the_other_entries_run() -> None:
    backend = seeded()
    backend.push("other.test/x/y", "v1", b"elsewhere")
    backend.broken.add("src.test")  # its catalog fails
    report = await run_sync(backend, plan(NAMESPACE, {"source": "other.test/x/y", "target": "dst.test/y"}))
    assert statuses(report) == {"dst.test/y:v1": ("copied", 1)}
    assert len(report.errors) == 1 and "sync[0]: cannot list the repositories of src.test" in report.errors[0]
    assert not report.ok

    backend = seeded()
    backend.broken.add("src.test/lib/db")  # one source tag list fails
    report = await run_sync(backend, plan(NAMESPACE, LIB))
    assert set(statuses(report)) == {"dst.test/mirror/app:v1", "dst.test/mirror/app:v2"}
    assert len(report.errors) == 1 and report.errors[0].startswith("sync[1]: listing src.test/lib/db: ")
    assert "HTTP 503" in report.errors[0] and not report.ok


async def test_destinations_are_warmed_up_once_before_they_are_listed() -> None:
    backend = seeded()
    backend.push("other.test/x/y", "v1", b"elsewhere")
    report = await run_sync(backend, plan(NAMESPACE, LIB, {"source": "other.test/x/y", "target": "far.test/y"}))
    assert report.ok
    assert len(backend.warmed) == 1  # once per run, for every destination registry of the plan
    registries, listed_by_then = backend.warmed[0]
    assert registries == {"dst.test", "far.test"}
    assert not [r for r in listed_by_then if r.startswith(("dst.test/", "far.test/"))]  # no destination listed yet
    assert "far.test/y" in [c[1] for c in backend.calls_of("tags")]  # and listed afterwards


class GatedRegistries(Registries):
    """A source listing answers only once its target's listing has been asked for (they must overlap)."""

    def __init__(self, gates: dict[str, str]) -> None:
        super().__init__()
        self.gates = {source: anyio.Event() for source in gates}
        self.opens = {target: source for source, target in gates.items()}

    async def list_tags(self, repo: AnyRepository) -> list[str] | None:
        if str(repo) in self.opens:
            self.gates[self.opens[str(repo)]].set()
        if str(repo) in self.gates:
            with anyio.fail_after(10):  # generous: a target listed only after its source never comes
                await self.gates[str(repo)].wait()
        return await super().list_tags(repo)


async def test_a_target_is_listed_while_its_source_is_listed_and_only_used_when_selected() -> None:
    backend = GatedRegistries({"src.test/ns/app": "dst.test/mirror/app", "src.test/lib/db": "dst.test/lib/db"})
    for repo, tag, layer in (("src.test/ns/app", "v1", b"one"), ("src.test/ns/app", "dev", b"dev"),
                             ("src.test/lib/db", "dev", b"db dev"), ("dst.test/lib/db", "stale", b"stale")):
        backend.push(repo, tag, layer)
    only_v = {"tags": {"allow": ["v[0-9]+"]}, "delete_extra": True}
    report = await run_sync(backend, plan({"source": "src.test/ns", "target": "dst.test/mirror", "type": "namespace",
                                           **only_v}, {"source": "src.test/lib/db", "target": "dst.test/lib/db",
                                                       **only_v}))
    assert report.ok and statuses(report) == {"dst.test/mirror/app:v1": ("copied", 1)}
    listed = [c[1] for c in backend.calls_of("tags")]
    assert listed.count("dst.test/mirror/app") == 1 and listed.count("dst.test/lib/db") == 1  # once each
    # lib/db selected nothing: its early listing is dropped, so delete_extra leaves its target alone.
    assert backend.tags("dst.test/lib/db").keys() == {"stale"}
    assert report.deletions is not None and not report.deletions.repositories


# --- the up-to-date check --------------------------------------------------------------------------


async def test_a_second_run_is_up_to_date_at_the_cost_of_listings_and_heads() -> None:
    backend = seeded()
    first = await run_sync(backend, plan(NAMESPACE, PINNED))
    assert first.ok and len(first.images) == 3
    backend.calls.clear()
    written = len(backend.writes())

    again = await run_sync(backend, plan(NAMESPACE, PINNED))
    assert again.ok and {s for s, _ in statuses(again).values()} == {"up-to-date"}
    assert len(backend.writes()) == written  # nothing written
    assert not backend.calls_of("get") and not backend.calls_of("blob")  # no manifest GET, no blob read
    heads = sorted(c[1:] for c in backend.calls_of("head"))
    assert heads == sorted([  # both sides of each image, once
        ("src.test/ns/app", "v1"), ("dst.test/mirror/app", "v1"), ("src.test/ns/app", "v2"),
        ("dst.test/mirror/app", "v2"), ("src.test/lib/db", "v1"), ("dst.test/pinned/db", "v1")])
    for r in again.images:
        assert r.source_digest == r.target_digest is not None


async def test_only_tags_on_both_sides_are_headed_and_changed_tags_are_copied() -> None:
    backend = seeded()
    await run_sync(backend, plan(NAMESPACE))
    backend.push("src.test/ns/app", "v3", BASE, b"app three")  # new
    moved = backend.push("src.test/ns/app", "v2", BASE, b"app two, rebuilt")  # retagged
    backend.calls.clear()

    report = await run_sync(backend, plan(NAMESPACE))
    assert statuses(report) == {"dst.test/mirror/app:v1": ("up-to-date", 0), "dst.test/mirror/app:v2": ("copied", 1),
                                "dst.test/mirror/app:v3": ("copied", 1)}
    # The check HEADs both sides only where the tag is on both (v1, v2); v3 is not on the target, so
    # there is nothing to compare. The copy of v2 and v3 then HEADs its target tag once more (the engine).
    src_heads = sorted(c[2] for c in backend.calls_of("head") if c[1] == "src.test/ns/app")
    dst_heads = sorted(c[2] for c in backend.calls_of("head") if c[1] == "dst.test/mirror/app")
    assert src_heads == ["v1", "v2"]
    assert dst_heads == ["v1", "v2", "v2", "v3"]
    assert sorted(c[2] for c in backend.calls_of("get")) == ["v2", "v3"]  # only the images copied are read
    assert backend.tags("dst.test/mirror/app")["v2"] == moved.digest
    # The rebuilt image shares the base layer and the config with what the target holds: only its layer moves.
    assert figures(report)["dst.test/mirror/app:v2"][0] == 1


# --- the copy --------------------------------------------------------------------------------------


async def test_images_arrive_whole_and_shared_layers_move_once() -> None:
    backend = seeded()
    report = await run_sync(backend, plan(NAMESPACE, {"source": "src.test/ns/tool", "target": "dst.test/tool"}))
    assert report.ok
    dst = backend.storages["dst.test"]
    for repo, source in (("mirror/app", "ns/app"), ("tool", "ns/tool")):
        for tag, digest in dst.tags[repo].items():
            assert digest == backend.storages["src.test"].tags[source][tag]
            manifest = Manifest.parse(dst.manifests[repo][digest])
            for blob in manifest.blobs():
                assert dst.blobs[repo][blob.digest] == backend.storages["src.test"].blobs[source][blob.digest]
    base = str(Digest.of(BASE))
    # Three images need the base layer in two repositories of one registry: uploaded once, mounted once.
    assert [e[0] for e in dst.log if e[2:3] == (base,)] == ["put_blob", "mount_blob"]
    assert sum(f[0] for f in figures(report).values()) == len([e for e in dst.log if e[0] == "put_blob"])
    assert sum(f[1] for f in figures(report).values()) == 1
    totals = report.totals()
    assert totals["copied"] == 3 and totals["bytes_uploaded"] == sum(f[3] for f in figures(report).values())


# --- failures --------------------------------------------------------------------------------------


async def test_a_failed_image_is_retried_once_at_the_end_of_the_pass() -> None:
    backend = seeded()
    backend.failing("dst.test/lib/db", 1)
    report = await run_sync(backend, plan(NAMESPACE, LIB), options=SyncOptions(images=1))
    assert report.ok
    # One image at a time, largest first: lib/db:v1 is the first to upload into lib/db, and fails.
    assert statuses(report) == {"dst.test/mirror/app:v1": ("copied", 1), "dst.test/mirror/app:v2": ("copied", 1),
                                "dst.test/lib/db:v1": ("copied", 2), "dst.test/lib/db:v9": ("copied", 1)}
    # The retry comes after every other image of the pass: its tag is the last one written.
    tags = [e for e in backend.storages["dst.test"].log if e[0] == "put_manifest" and e[3]]
    retried = next(r for r in report.images if r.attempts == 2)
    assert f"dst.test/{tags[-1][1]}:{tags[-1][3]}" == retried.target


async def test_a_persistent_failure_stops_only_its_image() -> None:
    backend = seeded()
    backend.failing("dst.test/pinned/db", 99)
    report = await run_sync(backend, plan(NAMESPACE, PINNED))
    assert statuses(report) == {"dst.test/mirror/app:v1": ("copied", 1), "dst.test/mirror/app:v2": ("copied", 1),
                                "dst.test/pinned/db:v1": ("failed", 2)}
    failed = report.failed[0]
    assert failed.error is not None and "connection reset while uploading" in failed.error
    assert not report.ok and "v1" not in backend.tags("dst.test/pinned/db")  # never a tag on a partial image

    backend = seeded()
    backend.failing("dst.test/pinned/db", 1)
    report = await run_sync(backend, plan(PINNED), options=SyncOptions(retry_failed=False))
    assert statuses(report) == {"dst.test/pinned/db:v1": ("failed", 1)}


async def test_an_invalid_filter_fails_the_plan_before_any_request() -> None:
    backend = seeded()
    bad = plan({"source": "src.test/ns/app", "target": "dst.test/app", "tags": {"semver": "banana"}})
    with pytest.raises(ConfigError, match="invalid semver constraint 'banana'"):
        await run_sync(backend, bad)
    assert backend.calls == [] and not backend.writes()


# --- the dry run -----------------------------------------------------------------------------------


async def test_a_dry_run_writes_nothing_and_predicts_the_run_s_figures() -> None:
    backend = seeded()
    backend.push("dst.test/mirror/app", "v1", BASE, b"app one", arch="amd64")  # already there
    backend.push("dst.test/lib/db", "old", b"db layer")  # holds one of the blobs, under another tag
    the_plan = plan(NAMESPACE, LIB, PINNED)

    def contents() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        return {host: ({r: dict(b) for r, b in s.blobs.items() if b}, {r: dict(t) for r, t in s.tags.items() if t})
                for host, s in backend.storages.items()}

    before = contents()

    dry = await run_sync(backend, the_plan, options=SyncOptions(dry_run=True))
    assert dry.dry_run and dry.ok
    assert not backend.writes()
    assert contents() == before
    assert {t for t, (s, _) in statuses(dry).items() if s == "planned"} == {
        "dst.test/mirror/app:v2", "dst.test/lib/db:v1", "dst.test/lib/db:v9", "dst.test/pinned/db:v1"}
    assert statuses(dry)["dst.test/mirror/app:v1"][0] == "up-to-date"
    assert {r.target for r in dry.out_of_sync} == {t for t, (s, _) in statuses(dry).items() if s == "planned"}

    real = await run_sync(backend, the_plan)
    assert real.ok
    copied = {t: f for t, f in figures(real).items() if statuses(real)[t][0] == "copied"}
    assert copied == {t: f for t, f in figures(dry).items() if statuses(dry)[t][0] == "planned"}
    # The figures say something: the db layer the target held is skipped, the shared one mounted once.
    assert copied["dst.test/lib/db:v1"][2] >= 1
    assert sum(f[1] for f in copied.values()) >= 1
