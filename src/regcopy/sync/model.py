"""The values of a sync plan: what to mirror where, with which filters and per-registry settings.

Plans are built by :mod:`regcopy.sync.config` (regcopy's YAML, skopeo sync's YAML and skopeo's
``--src docker`` arguments all become the same :class:`SyncPlan`) and run by
:mod:`regcopy.sync.scheduler`. Frozen values only; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from regcopy.registry._policy import SchemeMode

__all__ = (
    "Credentials", "DeleteExtra", "Naming", "RegistryConfig", "RepoFilter", "SourceKind", "SyncEntry", "SyncPlan",
    "TagFilter",
)

SourceKind = Literal["repository", "namespace", "registry"]
Naming = Literal["prefix", "basename", "scoped"]
"""How a target repository name is made from a source repository (see :class:`SyncEntry`)."""


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Which tags of a repository to mirror. Every regex is anchored (full match) unless it came
    from skopeo's ``images-by-tag-regex``, which the parser rewrites to keep skopeo's unanchored meaning.

    Order of application: ``exact`` tags and ``digests`` are always taken (no listing needed when
    they are all there is); listed tags must match an ``allow`` regex (if any), no ``deny`` regex,
    and the ``semver`` constraint (if any; non-semver tags then drop out); finally ``latest`` keeps
    the N highest semver versions of what is left.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    semver: str | None = None
    latest: int | None = None
    exact: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()

    @property
    def needs_listing(self) -> bool:
        """Whether the source's tags must be listed (anything beyond exact tags and digests)."""
        return bool(self.allow or self.deny or self.semver or self.latest is not None) or not (
            self.exact or self.digests
        )


@dataclass(frozen=True, slots=True)
class RepoFilter:
    """Which repositories of a namespace or registry to mirror (anchored regexes)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where one registry's credentials come from: inline, a credential helper, or an auth file.

    Inline secrets are never shown in ``repr`` or errors.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    helper: str | None = None
    authfile: str | None = None
    refresh_after: float | None = None
    """Seconds after which a helper's answer is fetched again (besides on rejection)."""


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Per-registry settings of a plan (regclient's ``config.Host`` in spirit)."""

    host: str
    scheme: SchemeMode = "auto"
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    credentials: Credentials | None = None
    max_concurrency: int | None = None
    requests_per_second: float | None = None
    mirrors: tuple[str, ...] = ()
    """Pull-through caches read before this registry, in order: ``host[:port][/prefix]`` each; a
    mirror's own settings and credentials are its own ``registries`` entry (never this one's)."""
    request_timeout: float | None = None
    """Seconds a request without blob bytes may take in total (``RegistrySettings.request_timeout``)."""


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

    :ivar name: how errors and reports refer to the entry (``sync[2]`` or the plan's ``name``)
    :ivar platforms: ``os/arch[/variant]`` strings to keep; empty = every platform
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


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """A whole migration: per-registry settings and the entries to mirror.

    :ivar path: the file the plan came from (for messages), or None
    """

    entries: tuple[SyncEntry, ...]
    registries: Mapping[str, RegistryConfig] = field(default_factory=dict)
    path: str | None = None
