"""The values of a sync: what to mirror where, with which filters and per-registry settings; run-wide
knobs; and the image jobs discovery makes of a plan.

Plans are built by :mod:`regcopy.sync.plan` (regcopy's YAML) and :mod:`regcopy.sync.skopeo`
(skopeo sync's YAML and ``--src docker`` arguments); all become the same :class:`SyncPlan`, run by
:mod:`regcopy.sync.scheduler`. The filter values are :mod:`regcopy.filters`'s, the per-registry
settings :class:`~regcopy.settings.Overrides`. Addresses are values (:mod:`regcopy.locations`), parsed
once by the plan builders. Frozen values only; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from regcopy.artifacts import ReferrerPolicy
from regcopy.filters import RepoFilter, TagFilter
from regcopy.locations import Address, AnyReference, LocalRepository
from regcopy.manifest import Platform
from regcopy.reference import Namespace, Repository
from regcopy.settings import Overrides

__all__ = (
    "DEFAULT_DELETE_EXTRA_CAP", "DeleteExtra", "ImageJob", "Naming", "SourceKind", "SyncEntry", "SyncOptions",
    "SyncPlan",
)

SourceKind = Literal["repository", "namespace", "registry"]
_NO_REFERRERS = ReferrerPolicy(enabled=False)
Naming = Literal["prefix", "basename", "scoped"]
"""How a target repository name is made from a source repository (see :class:`SyncEntry`)."""


@dataclass(frozen=True, slots=True)
class DeleteExtra:
    """An exact mirror (``delete_extra``): destination tags the entry did not select from the source
    are deleted, except ``protect`` (anchored regexes), at most ``cap`` manifest deletions per run
    (None: no cap).

    The cap defaults to :data:`DEFAULT_DELETE_EXTRA_CAP`: a source that answers with a short list
    by mistake (a truncated listing, a wrong tag filter, a repository emptied by accident) must not
    empty the mirror in one run; a deliberate larger cleanup says ``cap: N`` or ``cap: null``.
    """

    protect: tuple[str, ...] = ()
    cap: int | None = None


DEFAULT_DELETE_EXTRA_CAP: Final = 100
"""Manifest deletions per entry and run when ``delete_extra`` names no ``cap``."""


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One line of a plan: a source repository, namespace or registry mirrored to a target.

    ``source`` is a repository (:class:`~regcopy.reference.Repository` or
    :class:`~regcopy.locations.LocalRepository`) for kind ``repository``, else the namespace or
    registry to list (:class:`~regcopy.reference.Namespace`, or a LocalRepository for a prefix of a
    store). ``target`` is a repository for ``prefix`` naming of kind ``repository``, else the
    namespace the repositories land under. Values are normalised (``docker.io`` for Docker Hub,
    ``library/`` added for single-component Hub repositories); a wrong kind is a ``TypeError``.

    Target naming (``naming``):

    * ``prefix`` (regcopy's own plans): kind ``repository`` → the target *is* the repository;
      kind ``namespace``/``registry`` → the target path replaces the source path prefix
      (``src/ns`` → ``dst/mirror``: ``ns/app`` lands in ``mirror/app``).
    * ``basename`` (skopeo sync without ``--scoped``): target path + ``/`` + the last path component
      of the source repository (``quay.io/org/app`` → ``DEST/app``).
    * ``scoped`` (skopeo sync ``--scoped``): target path + ``/`` + the source registry and repository
      (``quay.io/org/app`` → ``DEST/quay.io/org/app``).

    :ivar name: how errors and reports refer to the entry (``sync[2]`` or the plan's ``name``;
        ``NAME→TARGET`` for each target of a ``targets:`` list)
    :ivar platforms: ``os/arch[/variant]`` strings to keep; empty = every platform
    :ivar referrers: copy what refers to each image (signatures, SBOMs, attestations); their tags
        are never selected, filtered or deleted as images
    :ivar artifact_types: only referrers of these artifact types (empty: all)
    :ivar tag_suffix: appended to each selected tag at the target (skopeo sync ``--append-suffix``)
    """

    name: str
    source: Address
    target: Address
    kind: SourceKind = "repository"
    naming: Naming = "prefix"
    repos: RepoFilter = RepoFilter()
    tags: TagFilter = TagFilter()
    platforms: tuple[str, ...] = ()
    delete_extra: DeleteExtra | None = None
    referrers: bool = True
    artifact_types: tuple[str, ...] = ()
    tag_suffix: str = ""

    def __post_init__(self) -> None:
        repository = (Repository, LocalRepository)
        namespace = (Namespace, LocalRepository)
        if not isinstance(self.source, repository if self.kind == "repository" else namespace):
            raise TypeError(f"{self.name}: the source of a {self.kind} entry cannot be a {type(self.source).__name__}")
        whole = self.kind == "repository" and self.naming == "prefix"
        if not isinstance(self.target, repository if whole else namespace):
            raise TypeError(f"{self.name}: the target cannot be a {type(self.target).__name__} here")


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """A whole migration: per-registry settings and the entries to mirror.

    :ivar path: the file the plan came from (for messages), or None
    """

    entries: tuple[SyncEntry, ...]
    registries: Mapping[str, Overrides] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True, slots=True)
class SyncOptions:
    """Run-wide knobs.

    :param images: images copied at once
    :param blob_jobs: blobs in flight per image
    :param blobs: blobs in flight over the whole run
    :param bytes_in_flight: bytes of blobs in flight over the whole run
    :param probes: HEAD requests / listings in flight during discovery and checks
    :param dry_run: plan only; nothing is written
    :param retry_failed: try failed images once more at the end of the pass
    """

    images: int = 8
    blob_jobs: int = 6
    blobs: int = 24
    bytes_in_flight: int = 2 * 1024**3
    probes: int = 32
    dry_run: bool = False
    retry_failed: bool = True


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One image to mirror: source reference → target reference (tag, or digest when pinned).

    Either side may be a registry :class:`~regcopy.reference.Reference` or a
    :class:`~regcopy.locations.LocalImage`.
    """

    entry: str
    source: AnyReference
    target: AnyReference
    platforms: tuple[Platform, ...] = ()
    referrers: ReferrerPolicy = _NO_REFERRERS
    """Which referrers travel with the image (off: the entry says ``referrers: false``)."""

    @property
    def identifier(self) -> str:
        """The source tag or digest."""
        return self.source.identifier

    @property
    def target_tag(self) -> str | None:
        """The destination tag (None: pushed by digest)."""
        return self.target.tag
