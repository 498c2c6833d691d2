"""Addresses as plan files write them: registry hosts, namespaces or prefixes, and repositories.

Owns the checks that turn address text of a plan (sync, skopeo or prune) into values: a registry
host, a :class:`~regcopy.locations.AnyNamespace` or an :class:`~regcopy.locations.AnyRepository`, on
a registry or in a local store (``oci:DIR[:path]``), with a :class:`~regcopy.errors.ConfigError`
naming where the text sits (:class:`~regcopy.planfile.At`). Each text is parsed here once; what
comes out is never parsed again. The docker reference grammar itself is :mod:`regcopy.reference`'s.
"""

from __future__ import annotations

from regcopy.errors import ConfigError, InvalidReference
from regcopy.locations import AnyNamespace, AnyRepository, LocalRepository, is_local, parse_repository
from regcopy.planfile import At, short
from regcopy.reference import DOCKER_HUB, Namespace, Reference

__all__ = ("as_host", "as_location", "as_repository", "check_no_scheme")


def _is_host(first: str) -> bool:
    # The docker grammar's rule (distribution/reference normalize.go, splitDockerDomain): the first
    # component is a registry only if it has a '.' or a ':port' or is localhost.
    return "." in first or ":" in first or first.lower() == "localhost"


def as_host(text: str, at: At, what: str) -> str:
    """Validate and normalise a registry ``host[:port]`` (lowercase, Docker Hub aliases → docker.io)."""
    if "/" in text or "@" in text or not _is_host(text):
        raise at.error(
            f"{what} {short(text)} is not a registry host[:port] (a host needs a '.', a ':port' or "
            f"'localhost'; Docker Hub is {DOCKER_HUB})"
        )
    try:
        return Namespace.parse(text).registry  # lowercased, Docker Hub aliases folded
    except InvalidReference as exc:
        raise at.error(f"invalid registry {short(text)}: {exc.reason}") from None


def check_no_scheme(text: str, at: At, what: str) -> None:
    """Refuse ``https://…``: plans choose the scheme per registry, never per address."""
    if "://" in text:
        raise at.error(
            f"{what} {short(text)} must not have a scheme: write host[:port]/path and choose http or "
            "https per registry (regcopy: registries.<host>.tls; skopeo: tls-verify)"
        )


def _as_local(text: str, at: At, what: str) -> LocalRepository:
    try:
        repo = parse_repository(text)
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {short(text)}: {exc.reason}") from None
    assert isinstance(repo, LocalRepository)
    return repo


def as_location(text: str, at: At, *, what: str, host_required: bool) -> AnyNamespace:
    """Parse ``host[:port][/path]`` (a namespace, a registry or a target prefix) into a :class:`Namespace`.

    Without ``host_required``, the docker grammar applies: a first component that is not a host
    means Docker Hub (``myorg`` → ``docker.io/myorg``), as in skopeo's destination argument.
    No ``library/`` is added: a prefix is not a repository. A local store (``oci:DIR[:path]``) gives
    a :class:`LocalRepository`.
    """
    if is_local(text):
        repo = _as_local(text, at, what)
        if _has_tag(repo.path):
            raise at.error(f"{what} {short(text)} cannot carry a tag")
        return repo
    check_no_scheme(text, at, what)
    first, slash, rest = text.partition("/")
    if _is_host(first):
        host, path = as_host(first, at, what), rest
        if not slash:
            return Namespace(host)
    elif host_required:
        raise at.error(
            f"{what} {short(text)} must start with a registry host (a host needs a '.', a ':port' or "
            f"'localhost'; Docker Hub is {DOCKER_HUB})"
        )
    else:
        host, path = DOCKER_HUB, text
    if "@" in path:
        raise at.error(f"{what} {short(text)} cannot carry a digest")
    if ":" in path.rpartition("/")[2]:
        raise at.error(f"{what} {short(text)} cannot carry a tag")
    try:
        if not path:
            raise InvalidReference(text, "empty path component", part="component")
        return Namespace(host, path)
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {short(text)}: {exc.reason}") from None


def as_repository(text: str, at: At, *, what: str, hint: str) -> AnyRepository:
    """Parse a repository name (docker grammar, normalised) or a local one (``oci:DIR[:path]``);
    a tag or digest is an error with ``hint``."""
    if is_local(text):
        repo = _as_local(text, at, what)
        if _has_tag(repo.path):
            raise at.error(f"{what} {short(text)} cannot carry a tag: {hint}")
        return repo
    check_no_scheme(text, at, what)
    if "/" not in text and _is_host(text.partition(":")[0]):
        try:
            as_host(text, at, what)
        except ConfigError:
            pass  # not a valid host either: let the grammar say what is wrong
        else:
            raise at.error(f"{what} {short(text)} is a registry host, not a repository: {hint}")
    try:
        ref = Reference.parse(text, default_tag=None)
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {short(text)}: {exc.reason}") from None
    if ref.tag is not None or ref.digest is not None:
        part = "a digest" if ref.digest is not None else f"a tag ({ref.tag!r})"
        raise at.error(f"{what} {short(text)} cannot carry {part}: {hint}")
    return ref.repo


def _has_tag(path: str) -> bool:
    return ":" in path.rpartition("/")[2]
