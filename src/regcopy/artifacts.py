"""Supply-chain artifacts travel with their images: discovering referrers and copying them after their subject.

For every manifest a copy writes (the root and each child of an index), :func:`discover` asks the
source's :class:`~regcopy.stores.base.Referrers` ability what refers to it (the referrers API, the
fallback tag's index, cosign's ``.sig``/``.att``/``.sbom`` tags), plans each referrer as an image of its
own (its manifests and blobs), and recurses: a signature of an SBOM is a referrer of a referrer
(docs/architecture.md, "Referrers"). :func:`copy_referrers` then copies them top-down, so a subject is
always on the destination before anything that refers to it: a referrer found through the API or a
fallback index is pushed by digest and then made discoverable on the destination
(:meth:`~regcopy.stores.base.Referrers.index_referrers`: the destination's API lists it, or its
fallback index is merged); a cosign referrer keeps its tag. A referrer already on the destination is
not copied again (one HEAD), so a re-run only re-checks the indexes.

An index rebuilt from a platform subset has a new digest: the referrers of the source's root cannot
refer to it, and :func:`copy_referrers` says how many were left behind. Referrers of the children a
platform filter dropped are never looked at.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio

from regcopy.convert import Format
from regcopy.digest import Digest
from regcopy.engine import CopyResult, ImagePlan, Limits, copy_image, fail_fast, plan_image
from regcopy.errors import RegcopyError
from regcopy.fanout import Target, copy_fanout
from regcopy.ledger import BlobLedger
from regcopy.manifest import Manifest, Platform
from regcopy.preflight import plan_copy
from regcopy.progress import Reporter, null_reporter
from regcopy.stores.base import Committer, Destination, Referrers, Source

__all__ = ("Attached", "ReferrerPolicy", "ReferrerReport", "ReferrerTree", "carry_referrers", "copy_referrers",
           "copy_to_many", "copy_with_referrers", "discover", "referrer_tree", "subjects_of")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReferrerPolicy:
    """Which referrers travel with an image.

    :param enabled: copy referrers at all (``--referrers/--no-referrers``, plan ``referrers:``)
    :param artifact_types: only these artifact types (plan ``artifact_types:``); empty means all.
        A cosign tag's type is its manifest's ``artifactType``, else its first layer's media type
    :param depth: referrers of referrers followed this deep (a signature of an SBOM is depth 2)
    :param jobs: discoveries and referrer copies in flight for one image
    """

    enabled: bool = True
    artifact_types: tuple[str, ...] = ()
    depth: int = 4
    jobs: int = 4


@dataclass(slots=True)
class Attached:
    """One referrer found on the source: what it refers to, how it was found, and its plan."""

    subject: Digest
    plan: ImagePlan
    via: str
    """``api``, ``fallback``, ``layout`` or ``tag`` (cosign's tag scheme)."""
    tag: str | None = None
    """The cosign tag it is copied under; None for a referrer pushed by digest."""
    artifact_type: str | None = None
    children: list[Attached] = field(default_factory=list)

    @property
    def digest(self) -> Digest:
        """The referrer manifest's digest."""
        return self.plan.root.digest

    @property
    def manifest(self) -> Manifest:
        """The referrer manifest."""
        return self.plan.root

    def walk(self) -> list[Attached]:
        """This referrer and every referrer below it, parents first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def to_json(self) -> dict[str, object]:
        """The tree below this referrer for ``regcopy referrers -o json``."""
        annotations = json.loads(self.manifest.data).get("annotations")
        return {"digest": str(self.digest), "mediaType": self.manifest.media_type, "artifactType": self.artifact_type,
                "size": len(self.manifest.data), "via": self.via, "tag": self.tag,
                "annotations": annotations if isinstance(annotations, dict) else {},
                "referrers": [c.to_json() for c in self.children]}


@dataclass(slots=True)
class ReferrerReport:
    """What the referrers of one image came to on one destination."""

    found: int = 0
    copied: int = 0
    present: int = 0
    indexed: dict[str, int] = field(default_factory=dict)
    """Subjects made discoverable, by how (``api``, ``fallback``, ``layout``)."""
    left_behind: int = 0
    """Referrers of a source root that a platform subset replaced (their subject is not copied)."""
    rounds: int = 0
    """The most read-merge-write rounds one fallback index needed (more than 1: a concurrent writer)."""
    notes: list[str] = field(default_factory=list)
    failure: BaseException | None = None
    """The first error on this destination (the copy of the image then counts as failed)."""

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field but :attr:`failure` (its text is in :attr:`notes`)."""
        return {"found": self.found, "copied": self.copied, "present": self.present, "indexed": dict(self.indexed),
                "left_behind": self.left_behind, "rounds": self.rounds, "notes": list(self.notes)}


def subjects_of(plan: ImagePlan) -> list[Digest]:
    """The digests a copy of ``plan`` writes: its root, then every child manifest (whose referrers travel)."""
    return [plan.root.digest, *(m.digest for m in plan.manifests)]


async def discover(source: Source, subjects: Sequence[Digest], policy: ReferrerPolicy, *,
                   tags: Sequence[str] | None = None) -> list[Attached]:
    """Every referrer of ``subjects`` on ``source``, recursively, planned (manifests and blobs).

    :param tags: the source repository's tags when the caller already listed them (no request more)
    """
    if not policy.enabled or not isinstance(source, Referrers):
        return []
    seen: set[Digest] = set(subjects)
    limiter = anyio.CapacityLimiter(max(1, policy.jobs))
    found: list[Attached] = []
    async with fail_fast(), anyio.create_task_group() as tg:
        for subject in subjects:
            tg.start_soon(_discover_one, source, subject, policy, tags, seen, limiter, found, policy.depth)
    order = {s: i for i, s in enumerate(subjects)}
    return sorted(found, key=lambda a: (order.get(a.subject, 0), str(a.digest)))


async def _discover_one(source: Source, subject: Digest, policy: ReferrerPolicy, tags: Sequence[str] | None,
                        seen: set[Digest], limiter: anyio.CapacityLimiter, out: list[Attached], depth: int) -> None:
    if depth <= 0:
        return
    assert isinstance(source, Referrers)  # discover() checked
    async with limiter:
        listed = await source.referrers(subject, tags=tags, artifact_types=policy.artifact_types)
    refs: list[tuple[str, str | None, str | None]] = [
        (str(d.digest), listed.via, _type(d.raw.get("artifactType"))) for d in listed.descriptors]
    refs += [(tag, "tag", None) for tag in listed.tags]
    async with fail_fast(), anyio.create_task_group() as tg:
        for ref, via, kind in refs:
            tg.start_soon(_plan_one, source, subject, ref, via, kind, policy, tags, seen, limiter, out, depth)


async def _plan_one(source: Source, subject: Digest, ref: str, via: str | None, kind: str | None,
                    policy: ReferrerPolicy, tags: Sequence[str] | None, seen: set[Digest],
                    limiter: anyio.CapacityLimiter, out: list[Attached], depth: int) -> None:
    async with limiter:
        plan = await plan_image(source, ref)
    if plan.root.digest in seen:
        return  # listed twice (API and a cosign tag), or a cycle
    seen.add(plan.root.digest)
    tag = ref if via == "tag" else None
    kind = kind or _artifact_type(plan.root)
    if policy.artifact_types and kind not in policy.artifact_types:
        return
    attached = Attached(subject, plan, via or "none", tag, kind)
    out.append(attached)
    await _discover_one(source, attached.digest, policy, tags, seen, limiter, attached.children, depth - 1)


def _type(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _artifact_type(manifest: Manifest) -> str | None:
    """An artifact's type: ``artifactType``, else (cosign) the first layer's media type, else the config's."""
    declared = _type(json.loads(manifest.data).get("artifactType"))
    if declared is not None:
        return declared
    if manifest.layers:
        return manifest.layers[0].media_type
    return manifest.config.media_type if manifest.config is not None else None


async def copy_referrers(
    source: Source, destinations: Sequence[Destination], attached: Sequence[Attached], *, ledger: BlobLedger,
    reporter: Reporter = null_reporter, limits: Limits | None = None, blob_jobs: int = 6, jobs: int = 4,
) -> list[ReferrerReport]:
    """Copy ``attached`` (from :func:`discover`) to every destination after their subjects, parents
    before children; several destinations share one source read per referrer (:func:`copy_fanout`).

    A referrer already on a destination (HEAD by digest, or its cosign tag on the same digest) is not
    copied there again; every subject's referrers are then made discoverable on each destination. A
    destination that fails one gets the error in its report (:attr:`ReferrerReport.failure`) and no
    further referrers; the others go on.

    :returns: one report per destination, in order
    """
    found = sum(len(a.walk()) for a in attached)
    reports = [ReferrerReport(found=found) for _ in destinations]
    live: list[int] = []
    for i, dest in enumerate(destinations):
        if isinstance(dest, Referrers) and dest.keeps_referrers:
            live.append(i)
        elif found:
            reports[i].notes.append(f"{dest.name} cannot keep referrers: {found} not copied")
    level: list[Attached] = list(attached)
    limiter = anyio.CapacityLimiter(max(1, jobs))
    while level and live:
        async with anyio.create_task_group() as tg:
            for item in level:
                tg.start_soon(_copy_one, limiter, source, destinations, live, item, ledger, reporter,
                              limits or Limits(), blob_jobs, reports)
        live = [i for i in live if reports[i].failure is None]
        for i in live:
            await _index(destinations[i], level, reports[i])
        level = [child for item in level for child in item.children]
    return reports


async def _copy_one(limiter: anyio.CapacityLimiter, source: Source, destinations: Sequence[Destination],
                    live: list[int], item: Attached, ledger: BlobLedger, reporter: Reporter, limits: Limits,
                    blob_jobs: int, reports: list[ReferrerReport]) -> None:
    async with limiter:
        need: list[int] = []
        for i in live:
            if item.tag is None and await destinations[i].head(str(item.digest)) == item.digest:
                reports[i].present += 1
            elif reports[i].failure is None:
                need.append(i)
        if not need:
            return
        targets = [Target(destinations[i], item.tag) for i in need]
        await copy_fanout(source, targets, item.tag or str(item.digest), blob_jobs=blob_jobs, reporter=reporter,
                          ledger=ledger, plan=item.plan, limits=limits, commit=False)
    for i, target in zip(need, targets, strict=True):
        _tally(reports[i], target)


def _tally(report: ReferrerReport, target: Target) -> None:
    if target.error is not None:
        report.failure = report.failure or target.error
        report.notes.append(f"referrer {target.destination.name}: {target.error}")
    elif target.result is not None and target.result.up_to_date:
        report.present += 1
    else:
        report.copied += 1


async def _index(destination: Destination, level: Sequence[Attached], report: ReferrerReport) -> None:
    """Make each subject's untagged referrers of this level discoverable (cosign tags need nothing)."""
    assert isinstance(destination, Referrers)
    by_subject: dict[Digest, list[Manifest]] = {}
    for item in level:
        if item.tag is None:
            by_subject.setdefault(item.subject, []).append(item.manifest)
    for subject, manifests in by_subject.items():
        try:
            outcome = await destination.index_referrers(subject, manifests)
        except RegcopyError as exc:
            report.failure = report.failure or exc
            report.notes.append(f"indexing the referrers of {subject.short}: {exc}")
            return
        report.indexed[outcome.via] = report.indexed.get(outcome.via, 0) + 1
        report.rounds = max(report.rounds, outcome.rounds)


async def carry_referrers(
    source: Source, destinations: Sequence[Destination], plan: ImagePlan, policy: ReferrerPolicy, *,
    ledger: BlobLedger, tags: Sequence[str] | None = None, reporter: Reporter = null_reporter,
    limits: Limits | None = None, blob_jobs: int = 6,
) -> list[ReferrerReport]:
    """Discover the referrers of everything ``plan`` wrote and copy them to every destination (after
    the image itself was copied there); one report per destination.

    When ``plan`` replaced the source's root (a platform subset), the source root's own referrers
    are counted as left behind and each report says so: they refer to a digest no destination gets.
    """
    if not policy.enabled:
        return [ReferrerReport() for _ in destinations]
    attached = await discover(source, subjects_of(plan), policy, tags=tags)
    reports = await copy_referrers(source, destinations, attached, ledger=ledger, reporter=reporter,
                                   limits=limits, blob_jobs=blob_jobs, jobs=policy.jobs)
    if plan.root.digest != plan.source_digest and isinstance(source, Referrers):
        listed = await source.referrers(plan.source_digest, tags=tags, artifact_types=policy.artifact_types)
        behind = len(listed.descriptors) + len(listed.tags)
        for report in reports if behind else ():
            report.left_behind = behind
            report.notes.append(
                f"{behind} referrer(s) of the source root {plan.source_digest.short} not carried: the platform "
                f"subset is a new manifest {plan.root.digest.short} they do not refer to")
    return reports


async def copy_with_referrers(
    source: Source, destination: Destination, ref: str, *, target_tag: str | None, policy: ReferrerPolicy,
    ledger: BlobLedger, platforms: Sequence[Platform] = (), blob_jobs: int = 6, reporter: Reporter = null_reporter,
    force: bool = False, plan: ImagePlan | None = None, limits: Limits | None = None,
    tags: Sequence[str] | None = None, format: Format | None = None, preserve_digests: bool = False,
) -> CopyResult:
    """:func:`~regcopy.engine.copy_image`, then the image's referrers, then one commit.

    :param tags: the source repository's tags when the caller listed them (referrer tags found there)
    :param format: as :func:`~regcopy.engine.copy_image` (pass a disabled ``policy`` with it: the
        referrers name the source's digests); ``preserve_digests`` too

    :raises RegcopyError: the image or one of its referrers failed (the report is in the error's
        result only for the image: nothing incomplete is tagged)
    """
    # HEADs before any GET: an image already in place costs no pull at the source (preflight.py).
    plan = plan or await plan_copy(source, destination, ref, target_tag=target_tag, platforms=platforms,
                                   ledger=ledger, force=force)
    result = await copy_image(source, destination, ref, target_tag=target_tag, platforms=platforms,
                              blob_jobs=blob_jobs, reporter=reporter, ledger=ledger, force=force, plan=plan,
                              limits=limits or Limits(), commit=False, format=format,
                              preserve_digests=preserve_digests)
    [report] = await carry_referrers(source, [destination], plan, policy, ledger=ledger, reporter=reporter,
                                     limits=limits, blob_jobs=blob_jobs, tags=tags)
    if policy.enabled:
        result.referrers = report.to_json()
    if isinstance(destination, Committer) and (not result.up_to_date or report.copied):
        await destination.commit()
    if report.failure is not None:
        raise report.failure
    return result


async def copy_to_many(
    source: Source, targets: Sequence[Target], ref: str, *, policy: ReferrerPolicy, ledger: BlobLedger,
    platforms: Sequence[Platform] = (), blob_jobs: int = 6, reporter: Reporter = null_reporter, force: bool = False,
    limits: Limits | None = None, plan: ImagePlan | None = None, tags: Sequence[str] | None = None,
) -> list[Target]:
    """Fan-out with referrers: :func:`~regcopy.fanout.copy_fanout`, then the referrers of the image to
    every destination that got it (one source read each), then one commit per destination.

    :returns: ``targets``, each with its result (``result.referrers`` filled) or its error
    """
    plan = plan or await plan_image(source, ref, platforms)
    await copy_fanout(source, targets, ref, platforms=platforms, blob_jobs=blob_jobs, reporter=reporter,
                      ledger=ledger, force=force, plan=plan, limits=limits, commit=False)
    done = [t for t in targets if t.error is None]
    reports = await carry_referrers(source, [t.destination for t in done], plan, policy, ledger=ledger,
                                    reporter=reporter, limits=limits, blob_jobs=blob_jobs, tags=tags)
    for target, report in zip(done, reports, strict=True):
        assert target.result is not None
        if policy.enabled:
            target.result.referrers = report.to_json()
        target.error = report.failure
        dest = target.destination
        if target.error is None and isinstance(dest, Committer) and (not target.result.up_to_date or report.copied):
            try:
                await dest.commit()
            except RegcopyError as exc:
                target.error = exc
    return list(targets)


@dataclass(slots=True)
class ReferrerTree:
    """What refers to an image and to each of its children (``regcopy referrers``)."""

    reference: str
    digest: Digest
    media_type: str
    subjects: list[tuple[Digest, str | None, list[Attached]]]
    """Per manifest of the image (the root first, then each child with its platform): its referrers."""

    def to_json(self) -> dict[str, object]:
        """The ``-o json`` document."""
        return {"reference": self.reference, "digest": str(self.digest), "mediaType": self.media_type,
                "manifests": [{"digest": str(d), "platform": p, "referrers": [a.to_json() for a in found]}
                              for d, p, found in self.subjects]}

    def count(self) -> int:
        """Referrers at every depth."""
        return sum(len(a.walk()) for _, _, found in self.subjects for a in found)


async def referrer_tree(source: Source, ref: str, policy: ReferrerPolicy, *,
                        platforms: Sequence[Platform] = ()) -> ReferrerTree:
    """The referrers of ``ref`` on ``source`` and of every child manifest, recursively."""
    plan = await plan_image(source, ref, platforms)
    platform_of = {c.digest: str(c.platform) for m in (plan.root, *plan.manifests) for c in m.children()
                   if c.platform is not None}
    found = await discover(source, subjects_of(plan), ReferrerPolicy(True, policy.artifact_types, policy.depth,
                                                                      policy.jobs))
    subjects = [(d, platform_of.get(d), [a for a in found if a.subject == d]) for d in subjects_of(plan)]
    return ReferrerTree(ref, plan.root.digest, plan.root.media_type, subjects)
