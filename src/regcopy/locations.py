"""Where a plan's repositories live: a registry, or a local OCI layout / oci-archive / docker-archive.

Owns the addressing that lets a sync plan name local stores as source or target
(docs/architecture.md#bulk-sync-sync, "Local stores in plans"): a local store is treated as a registry of
its own, whose repositories are the name parts of its image refs. An OCI layout ref ``ns/app:v1``
(``org.opencontainers.image.ref.name``) or a docker-archive RepoTag ``ns/app:v1`` is tag ``v1`` of
repository ``ns/app``; a bare ref ``v1`` (what ``skopeo copy … oci:DIR:v1`` writes) is tag ``v1`` of the
unnamed repository ``""``.

Text forms follow containers-transports(5): ``oci:DIR`` is the whole store, ``oci:DIR:ns`` a
namespace or repository inside it, and ``oci:DIR:ns/app:v1`` one image, so a plan that exports
``registry/apps`` into ``oci:DIR`` imports back with source and target swapped.

Also the tag a copy writes at a location (:func:`target_tag`), registry or local.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeAlias

from regcopy.digest import Digest
from regcopy.errors import InvalidReference
from regcopy.reference import LocalLocation, Namespace, Reference, Repository

__all__ = (
    "Address",
    "AnyNamespace",
    "AnyReference",
    "AnyRepository",
    "LocalImage",
    "LocalRepository",
    "is_local",
    "parse_namespace",
    "parse_repository",
    "target_tag",
)

_LOCAL_PREFIXES = ("oci:", "oci-archive:", "docker-archive:", "dir:")


def is_local(text: str) -> bool:
    """Whether ``text`` names a local store (``oci:``, ``oci-archive:``, ``docker-archive:``, ``dir:``)."""
    return text.startswith(_LOCAL_PREFIXES)


@dataclass(frozen=True, slots=True)
class LocalRepository:
    """A repository inside a local store: the store's location (no ref) and a path (maybe empty).

    Also the local counterpart of a :class:`~regcopy.reference.Namespace`: ``oci:DIR`` (path ``""``)
    is the whole store, ``oci:DIR:ns`` a prefix inside it. The path is checked as the store's image
    refs are (c/image's grammar for ``oci:``, a docker name for ``docker-archive:``; never ``@N``).
    """

    location: LocalLocation
    path: str = ""

    def __post_init__(self) -> None:
        if self.location.ref is not None:
            raise InvalidReference(str(self.location), "a store's location carries no ref here", part="tag")
        if not self.path:
            return
        text = f"{self.location}:{self.path}"
        if self.location.transport == "docker-archive" and self.path.startswith("@"):
            raise InvalidReference(text, "a sync repository cannot be a source index @N", part="tag")
        if self.location.transport == "dir":
            # A tree of image directories (skopeo sync --dest dir): the path names directories.
            if any(p in ("", ".", "..") or p.startswith(".") for p in self.path.split("/")):
                raise InvalidReference(text, "empty, hidden or '..' directory names", part="path")
            return
        LocalLocation(self.location.transport, self.location.path, self.path)  # the ref grammar

    @property
    def registry(self) -> str:
        """The store, as the text the plan uses for it (the local counterpart of a registry host)."""
        return str(self.location)

    @property
    def key(self) -> str:
        """The store's identity: transport and absolute path (two spellings of a path are one store)."""
        return f"{self.location.transport}:{os.path.abspath(self.location.path)}"

    @property
    def name(self) -> str:
        return f"{self.location}:{self.path}" if self.path else str(self.location)

    @property
    def root(self) -> LocalRepository:
        """The whole store."""
        return LocalRepository(self.location)

    def at(self, path: str) -> LocalRepository:
        """The repository at ``path`` (a full path) of this store.

        :raises InvalidReference: ``path`` is not a ref name of this kind of store
        """
        return LocalRepository(self.location, path)

    def with_tag(self, tag: str) -> LocalImage:
        return LocalImage(self, tag=tag)

    def with_digest(self, digest: str | Digest) -> LocalImage:
        return LocalImage(self, digest=str(digest))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class LocalImage:
    """One image of a :class:`LocalRepository`, by tag or digest (the sync counterpart of a Reference)."""

    repo: LocalRepository
    tag: str | None = None
    digest: str | None = None

    @property
    def identifier(self) -> str:
        """The tag, else the digest (what the repository's store view resolves)."""
        return self.tag if self.tag is not None else str(self.digest)

    def __str__(self) -> str:
        if self.tag is not None:
            return f"{self.repo.name}:{self.tag}"
        return f"{self.repo.name}@{self.digest}"


AnyRepository: TypeAlias = Repository | LocalRepository
AnyReference: TypeAlias = Reference | LocalImage
AnyNamespace: TypeAlias = Namespace | LocalRepository
"""A registry or a store, or a prefix in one: what namespace and registry entries read and targets write under."""
Address: TypeAlias = Repository | Namespace | LocalRepository
"""Where a sync entry reads or writes: a repository, or a namespace of a registry or a store."""


def _local(text: str) -> LocalRepository:
    location = LocalLocation.parse(text)
    return LocalRepository(LocalLocation(location.transport, location.path), location.ref or "")


def parse_repository(text: str) -> AnyRepository:
    """A registry repository (``host/path``, normalised) or a local one (``oci:DIR[:path]``).

    :raises InvalidReference: malformed
    """
    return _local(text) if is_local(text) else Repository.parse(text)


def parse_namespace(text: str) -> AnyNamespace:
    """A registry namespace (``host[:port][/path]``, :meth:`Namespace.parse`) or a local one (``oci:DIR[:path]``).

    :raises InvalidReference: malformed
    """
    return _local(text) if is_local(text) else Namespace.parse(text)


def target_tag(location: Reference | LocalLocation, source_ident: str) -> str | None:
    """The destination tag: the location's own, else the source's tag (never a digest).

    A local source's ref may be ``repo:tag`` (an OCI ref name or a docker-archive RepoTag): its tag
    part is the source's tag.
    """
    source_tag: str | None = source_ident
    if source_ident.startswith(("@", "sha256:", "sha512:")):
        source_tag = None
    elif ":" in source_ident:
        source_tag = source_ident.rsplit(":", 1)[1]
    if isinstance(location, LocalLocation):
        if location.transport in ("docker-archive", "dir"):
            return location.ref  # a RepoTags entry ("repo:tag"), or none, as skopeo writes it; dir: has no tags
        return location.ref or source_tag
    if location.tag:
        return location.tag
    return None if location.digest else source_tag
