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
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeAlias

from regcopy.digest import Digest
from regcopy.errors import InvalidReference
from regcopy.reference import LocalLocation, Reference, Repository

__all__ = (
    "AnyReference",
    "AnyRepository",
    "LocalImage",
    "LocalRepository",
    "is_local",
    "join_endpoint",
    "parse_repository",
    "split_endpoint",
)

_LOCAL_PREFIXES = ("oci:", "oci-archive:", "docker-archive:")


def is_local(text: str) -> bool:
    """Whether ``text`` names a local store (``oci:``, ``oci-archive:``, ``docker-archive:``)."""
    return text.startswith(_LOCAL_PREFIXES)


@dataclass(frozen=True, slots=True)
class LocalRepository:
    """A repository inside a local store: the store's location (no ref) and a path (maybe empty)."""

    location: LocalLocation
    path: str = ""

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
        return join_endpoint(self.registry, self.path)

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


def split_endpoint(text: str) -> tuple[str, str]:
    """``(store or registry, path)``: ``oci:DIR:ns`` → ``("oci:DIR", "ns")``, ``host/ns`` → ``("host", "ns")``."""
    if is_local(text):
        location = LocalLocation.parse(text)
        return str(LocalLocation(location.transport, location.path)), location.ref or ""
    host, _, path = text.partition("/")
    return host, path


def join_endpoint(endpoint: str, path: str) -> str:
    """The inverse of :func:`split_endpoint`."""
    if is_local(endpoint):
        return f"{endpoint}:{path}" if path else endpoint
    return f"{endpoint}/{path}" if path else endpoint


def parse_repository(text: str) -> AnyRepository:
    """A registry repository (``host/path``, normalised) or a local one (``oci:DIR[:path]``).

    :raises InvalidReference: malformed
    """
    if not is_local(text):
        return Repository.parse(text)
    location = LocalLocation.parse(text)
    path = location.ref or ""
    if location.transport == "docker-archive" and path.startswith("@"):
        raise InvalidReference(text, "a sync repository cannot be a source index @N", part="tag")
    return LocalRepository(LocalLocation(location.transport, location.path), path)
