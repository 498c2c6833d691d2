"""The values of a sync plan: what to mirror where, with which filters and per-registry settings.

Plans are built by :mod:`regcopy.sync.plan` (regcopy's YAML) and :mod:`regcopy.sync.skopeo`
(skopeo sync's YAML and ``--src docker`` arguments); all become the same :class:`SyncPlan`, run by
:mod:`regcopy.sync.scheduler`. The filter values are :mod:`regcopy.filters`'s, the per-registry
settings :mod:`regcopy.plansettings`'s. Frozen values only; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from regcopy.filters import RepoFilter, TagFilter
from regcopy.plansettings import RegistryConfig

__all__ = ("DeleteExtra", "Naming", "SourceKind", "SyncEntry", "SyncPlan")

SourceKind = Literal["repository", "namespace", "registry"]
Naming = Literal["prefix", "basename", "scoped"]
"""How a target repository name is made from a source repository (see :class:`SyncEntry`)."""


@dataclass(frozen=True, slots=True)
class DeleteExtra:
    """An exact mirror (``delete_extra``): destination tags the entry did not select from the source
    are deleted, except ``protect`` (anchored regexes), at most ``cap`` manifest deletions per run."""

    protect: tuple[str, ...] = ()
    cap: int | None = None


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """One line of a plan: a source repository, namespace or registry mirrored to a target.

    ``source`` and ``target`` are ``host[:port][/path]`` strings (already normalised: ``docker.io``
    for Docker Hub, ``library/`` added for single-component Hub repositories of kind repository).

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
    """

    name: str
    source: str
    target: str
    kind: SourceKind = "repository"
    naming: Naming = "prefix"
    repos: RepoFilter = RepoFilter()
    tags: TagFilter = TagFilter()
    platforms: tuple[str, ...] = ()
    delete_extra: DeleteExtra | None = None
    referrers: bool = True
    artifact_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """A whole migration: per-registry settings and the entries to mirror.

    :ivar path: the file the plan came from (for messages), or None
    """

    entries: tuple[SyncEntry, ...]
    registries: Mapping[str, RegistryConfig] = field(default_factory=dict)
    path: str | None = None
