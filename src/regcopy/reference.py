"""Image names: the docker reference grammar and normalisation, and local ``oci:``-style locations.

Owns distribution's ``reference/regexp.go`` grammar and ``normalize.go`` rules (``docker.io`` aliases,
``library/``; the first component is a registry only if it has ``.`` or ``:`` or is ``localhost``,
docs/protocol.md#names-and-references), the ``http://``/``https://`` prefix (after which the first component
is always the registry), skopeo's ``docker://`` prefix, and containers-transports(5) local locations. Unlike
newer distribution, an uppercase first component is not a registry (``Foo/bar`` is an error), because
registries are lowercased and that rule would not round-trip. Values validate themselves on construction, so
``Reference.parse(str(r)) == r`` whenever ``r`` has a tag or digest. No I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Final, Literal, Self

from regcopy.digest import Digest
from regcopy.errors import InvalidReference

__all__ = (
    "DOCKER_HUB", "LocalLocation", "LocalTransport", "Namespace", "Reference", "Repository", "api_host",
    "parse_location",
)

DOCKER_HUB: Final = "docker.io"
_HUB_ALIASES: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_SCHEMES: Final = frozenset({"http", "https"})
_NAME_MAX: Final = 255
# No nested ambiguous quantifiers: each loop iteration starts with a separator, so matching is linear.
_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_SCHEME_WORD: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_PATH_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_IPV6_CHARS: Final = frozenset("0123456789abcdefABCDEF:")
# c/image oci/internal/oci_util.go refRegexp (image names in oci: and oci-archive: locations). Each loop
# iteration starts with a separator, so matching stays linear.
_OCI_COMPONENT: Final = r"[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*"
_OCI_REF: Final = re.compile(rf"{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*")

LocalTransport = Literal["oci", "oci-archive", "docker-archive", "dir"]
_LOCAL: Final[dict[str, LocalTransport]] = {t: t for t in ("oci", "oci-archive", "docker-archive", "dir")}
# Transports skopeo knows that regcopy does not implement (containers-transports(5)).
_UNSUPPORTED: Final = frozenset({"containers-storage", "docker-daemon", "ostree", "sif"})


def api_host(registry: str) -> str:
    """The host to send registry API requests to.

    :param registry: a normalised registry such as ``docker.io`` or ``localhost:5000``
    :returns: ``registry-1.docker.io`` for Docker Hub, else ``registry`` unchanged
    """
    return "registry-1.docker.io" if registry == DOCKER_HUB else registry


@contextmanager
def _about(text: str) -> Iterator[None]:
    """Re-raise a part's :class:`InvalidReference` so that it names the whole input ``text``."""
    try:
        yield
    except InvalidReference as exc:
        if exc.text == text:
            raise
        raise InvalidReference(text, exc.reason, part=exc.part) from None


def _check_tag(tag: str) -> None:
    if not tag:
        raise InvalidReference(tag, "empty tag", part="tag")
    if len(tag) > 128:
        raise InvalidReference(tag, f"tag longer than 128 characters ({len(tag)})", part="tag")
    if not _TAG.fullmatch(tag):
        raise InvalidReference(tag, "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]*", part="tag")


def _check_port(registry: str, port: str) -> None:
    if not port:
        raise InvalidReference(registry, "empty port after ':'", part="port")
    if not (port.isascii() and port.isdigit()):
        raise InvalidReference(registry, f"port {port!r} must be a number", part="port")
    if len(port) > 5 or not 1 <= int(port) <= 65535:
        raise InvalidReference(registry, f"port {port} must be between 1 and 65535", part="port")


def _check_host(registry: str, host: str) -> None:
    if not host:
        raise InvalidReference(registry, "empty registry host", part="registry")
    labels = host.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            why = "letters, digits and inner '-'"
            raise InvalidReference(registry, f"registry host label {label!r} must be {why}", part="registry")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidReference(registry, f"bad IPv4 address {host!r}", part="registry") from None


def _check_registry(registry: str) -> None:
    """Validate a normalised ``host[:port]``, ``IPv4[:port]`` or ``[IPv6][:port]``."""
    if not registry.isascii() or registry != registry.lower():
        raise InvalidReference(registry, "registry must be lowercase ASCII", part="registry")
    if registry.startswith("["):
        end = registry.find("]")
        if end < 0:
            raise InvalidReference(registry, "unterminated '[' in IPv6 address", part="registry")
        host, rest = registry[1:end], registry[end + 1 :]
        try:
            ipaddress.IPv6Address(host if host and set(host) <= _IPV6_CHARS else "!")
        except ValueError:
            raise InvalidReference(registry, f"bad IPv6 address {host!r}", part="registry") from None
        if rest and rest[0] != ":":
            raise InvalidReference(registry, "unexpected text after ']'", part="registry")
    else:
        host, colon, rest = registry.partition(":")
        _check_host(registry, host)
        rest = colon + rest
    if rest:
        _check_port(registry, rest[1:])


def _check_path(path: str) -> None:
    for comp in path.split("/"):
        if not comp:
            raise InvalidReference(path, "empty path component", part="component")
        bad = next((c for c in comp if c not in _PATH_CHARS), None)
        if bad is not None:
            raise InvalidReference(path, f"invalid character {bad!r} in component {comp!r}", part="component")
        if comp != comp.lower():
            raise InvalidReference(path, "repository must be lowercase", part="repository")
        if not _COMPONENT.fullmatch(comp):
            why = "letters and digits joined by '.', '_', '__' or '-'"
            raise InvalidReference(path, f"path component {comp!r} must be {why}", part="component")


def _check_prefix(registry: str, path: str, scheme: str | None) -> None:
    """Validate a normalised registry and a path that may be empty (a namespace's prefix)."""
    if scheme is not None and scheme not in _SCHEMES:
        raise InvalidReference(str(scheme), f"unsupported scheme {scheme!r}", part="scheme")
    _check_registry(registry)
    if registry in _HUB_ALIASES and registry != DOCKER_HUB:
        raise InvalidReference(registry, f"write {DOCKER_HUB!r} for Docker Hub", part="registry")
    if scheme is None and not _is_domain(registry):
        raise InvalidReference(registry, "registry needs a '.', a ':port' or 'localhost'", part="registry")
    if path:
        _check_path(path)
    if len(registry) + 1 + len(path) > _NAME_MAX:
        raise InvalidReference(path, f"name longer than {_NAME_MAX} characters", part="repository")


def _check_name(registry: str, path: str, scheme: str | None) -> None:
    """Validate the canonical (already normalised) parts of a repository name."""
    _check_prefix(registry, path, scheme)
    if not path:
        raise InvalidReference(path, "empty path component", part="component")
    if registry == DOCKER_HUB and "/" not in path:
        raise InvalidReference(path, "Docker Hub repositories need a namespace (library/)", part="repository")


def _is_domain(first: str) -> bool:
    # dist@v2.8.2 reference/normalize.go splitDockerDomain ('[' literals always contain ':'); we also
    # accept "LOCALHOST" since registries are case-insensitive and stored lowercased.
    return "." in first or ":" in first or first.lower() == "localhost"


def _strip_scheme(text: str) -> tuple[str | None, str]:
    head, sep, rest = text.partition("://")
    if not sep or not _SCHEME_WORD.fullmatch(head):
        return None, text
    scheme = head.lower()
    if scheme == "docker":  # skopeo's transport prefix: docker://host/repo:tag
        if not rest:
            raise InvalidReference(text, "empty reference after 'docker://'", part="repository")
        return None, rest
    if scheme not in _SCHEMES:
        raise InvalidReference(text, f"unsupported scheme {head!r} (use http:// or https://)", part="scheme")
    if not rest:
        raise InvalidReference(text, f"a registry host must follow '{head}://'", part="registry")
    return scheme, rest


def _split(text: str) -> tuple[str | None, str, str, str | None, Digest | None]:
    """Split ``text`` into normalised (scheme, registry, path, tag, digest); parts not yet validated."""
    if not isinstance(text, str):
        raise InvalidReference(repr(text), "reference must be a string", part="repository")
    if not text:
        raise InvalidReference(text, "empty reference", part="repository")
    scheme, rest = _strip_scheme(text)
    name, at, digest_text = rest.partition("@")
    digest = None
    if at:
        if "@" in digest_text:
            raise InvalidReference(text, "'@' may appear only once", part="digest")
        digest = Digest.parse(digest_text)
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        _check_tag(tag)
    first, slash, remainder = name.partition("/")
    if scheme is not None and not slash:
        raise InvalidReference(text, "a repository path must follow the registry", part="repository")
    if scheme is not None or (slash and _is_domain(first)):
        registry, path = (first.lower() if first.isascii() else first), remainder
    else:
        registry, path = DOCKER_HUB, name
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    return scheme, registry, path, tag, digest


def _as_digest(digest: str | Digest) -> Digest:
    return digest if isinstance(digest, Digest) else Digest.parse(digest)


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository without tag or digest, e.g. ``docker.io/library/alpine``.

    ``registry`` is the lowercase ``host[:port]`` (Docker Hub: ``docker.io``), ``path`` e.g.
    ``library/alpine``, ``scheme`` ``"http"``/``"https"`` when given explicitly, else None.
    """

    registry: str
    path: str
    scheme: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.registry, self.path, self.scheme)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a repository name (docker grammar, normalised); a tag or a digest is an error.

        :param text: e.g. ``alpine``, ``localhost:5000/a/b``, ``http://10.0.0.1/x``
        :returns: the normalised repository
        :raises InvalidReference: the text is not a repository name (``.part`` says which part)
        """
        with _about(text):
            scheme, registry, path, tag, digest = _split(text)
            if digest is not None:
                raise InvalidReference(text, "a repository cannot have a digest", part="digest")
            if tag is not None:
                raise InvalidReference(text, "a repository cannot have a tag", part="tag")
            return cls(registry, path, scheme)

    @property
    def name(self) -> str:
        """``registry/path`` without the scheme."""
        return f"{self.registry}/{self.path}"

    def with_tag(self, tag: str) -> Reference:
        """A reference to ``tag`` in this repository.

        :raises InvalidReference: ``tag`` is invalid
        """
        return Reference(self.registry, self.path, tag, None, self.scheme)

    def with_digest(self, digest: str | Digest) -> Reference:
        """A reference to ``digest`` in this repository.

        :raises InvalidReference: ``digest`` is invalid
        """
        return Reference(self.registry, self.path, None, _as_digest(digest), self.scheme)

    def __str__(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        return f"{prefix}{self.registry}/{self.path}"


@dataclass(frozen=True, slots=True)
class Namespace:
    """A whole registry or a path prefix in one: ``quay.io``, ``quay.io/org``, ``docker.io/bitnami``.

    What a sync plan mirrors when it names a namespace or a registry, a target prefix, or a mirror.
    ``registry`` as in :class:`Repository`; ``path`` is empty for the whole registry and, being a
    prefix rather than a repository, needs no Docker Hub namespace.
    """

    registry: str
    path: str = ""

    def __post_init__(self) -> None:
        _check_prefix(self.registry, self.path, None)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``host[:port][/path]``; a first component that is not a host means Docker Hub
        (``myorg`` is ``docker.io/myorg``), as in skopeo's destination argument. No ``library/`` is added.

        :raises InvalidReference: a scheme, tag or digest, or an invalid registry or path
        """
        if not isinstance(text, str) or not text:
            raise InvalidReference(repr(text) if not isinstance(text, str) else text, "empty namespace",
                                   part="repository")
        with _about(text):
            if "://" in text:
                raise InvalidReference(text, "a namespace has no scheme", part="scheme")
            first, slash, rest = text.partition("/")
            if not _is_domain(first):
                first, rest = DOCKER_HUB, text
            elif not slash:
                rest = ""
            if "@" in rest:
                raise InvalidReference(text, "a namespace has no digest", part="digest")
            if ":" in rest:
                raise InvalidReference(text, "a namespace has no tag", part="tag")
            registry = first.lower() if first.isascii() else first
            return cls(DOCKER_HUB if registry in _HUB_ALIASES else registry, rest)

    @property
    def name(self) -> str:
        """``registry[/path]``."""
        return f"{self.registry}/{self.path}" if self.path else self.registry

    @property
    def root(self) -> Namespace:
        """The whole registry."""
        return Namespace(self.registry)

    def at(self, path: str) -> Repository:
        """The repository at ``path`` (a full path) of this registry, normalised as :meth:`Repository.parse`
        does (Docker Hub: ``app`` is ``library/app``).

        :raises InvalidReference: ``path`` is not a repository path
        """
        if self.registry == DOCKER_HUB and path and "/" not in path:
            path = f"library/{path}"
        return Repository(self.registry, path)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Reference:
    """An image reference such as ``docker.io/library/alpine:latest``.

    Fields as in :class:`Repository` (``repository`` is the path). Tag and digest may both be set
    (``name:tag@digest``); the digest then decides what is fetched.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None
    scheme: str | None = None

    def __post_init__(self) -> None:
        _check_name(self.registry, self.repository, self.scheme)
        if self.tag is not None:
            _check_tag(self.tag)
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise TypeError(f"digest must be a Digest, not {type(self.digest).__name__}")

    @classmethod
    def parse(cls, text: str, *, default_tag: str | None = "latest") -> Self:
        """Parse a docker reference such as ``alpine``, ``http://localhost:5000/a:v1`` or ``x@sha256:…``.

        :param text: the reference text
        :param default_tag: the tag used when the text has neither tag nor digest (None: no tag)
        :returns: the normalised reference
        :raises InvalidReference: the text is not a reference (``.part`` names the offending part)
        """
        with _about(text):
            scheme, registry, path, tag, digest = _split(text)
            if tag is None and digest is None:
                tag = default_tag
            return cls(registry, path, tag, digest, scheme)

    @property
    def repo(self) -> Repository:
        """The repository, without tag and digest."""
        return Repository(self.registry, self.repository, self.scheme)

    @property
    def name(self) -> str:
        """``registry/repository`` without scheme, tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """The digest string if set, else the tag.

        :raises InvalidReference: neither is set
        """
        if self.digest is not None:
            return str(self.digest)
        if self.tag is None:
            raise InvalidReference(str(self), "reference has neither tag nor digest", part="tag")
        return self.tag

    def with_tag(self, tag: str) -> Self:
        """A copy at ``tag``; the digest is dropped (it pinned the old tag).

        :raises InvalidReference: ``tag`` is invalid
        """
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str | Digest) -> Self:
        """A copy pinned to ``digest``, keeping the tag (``name:tag@digest``).

        :raises InvalidReference: ``digest`` is invalid
        """
        return replace(self, digest=_as_digest(digest))

    def __str__(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{prefix}{self.registry}/{self.repository}{tag}{digest}"


@dataclass(frozen=True, slots=True)
class LocalLocation:
    """A local location, containers-transports(5) syntax: ``TRANSPORT:PATH[:REF]``; ``path`` is never empty.

    Every transport splits at the **first** ``:``, as c/image does (``oci/internal/oci_util.go``
    ``splitPathAndImageNonWindows``: ``strings.SplitN(reference, ":", 2)``; docker-archive likewise),
    so a path can never contain ``:`` and such a value is refused.
    ``oci:``/``oci-archive:``: ``ref`` is an image name as c/image's ``ValidateImageName`` accepts
    (components of ``[A-Za-z0-9]`` joined by ``-._:@+`` or ``--``, separated by ``/``):
    ``oci:/tmp/l:repo:tag`` → ``/tmp/l`` + ``repo:tag``; an empty ref (``oci:d:``) means none.
    ``docker-archive:``: ``ref`` is a docker reference without digest (``repo:tag``, kept as written)
    or a source index ``@N``. ``dir:``: everything after ``dir:`` is the path (c/image
    ``directory/directory_transport.go``: one image per directory, no ref), so it may contain ``:``.
    """

    transport: LocalTransport
    path: str
    ref: str | None = None

    def __post_init__(self) -> None:
        text = str(self)
        if self.transport not in _LOCAL:
            raise InvalidReference(text, f"unknown local transport {self.transport!r}", part="scheme")
        if not self.path:
            raise InvalidReference(text, "empty path", part="path")
        if self.transport == "dir":
            if self.ref is not None:
                raise InvalidReference(text, "a dir: location holds one image and takes no ref", part="tag")
            return
        if ":" in self.path:
            # TRANSPORT:PATH:REF splits at the first ':', so such a path would not read back.
            raise InvalidReference(text, f"a {self.transport} path cannot contain ':'", part="path")
        if self.ref is None:
            return
        if self.transport == "docker-archive":
            _check_archive_ref(text, self.ref)
        elif not _OCI_REF.fullmatch(self.ref):
            why = "image name must be [A-Za-z0-9] runs joined by '-._:@+', '--' or '/'"
            raise InvalidReference(text, why, part="tag")

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``oci:…``, ``oci-archive:…``, ``docker-archive:…`` or ``dir:…``.

        :param text: the location text
        :returns: the location
        :raises InvalidReference: unknown transport (part "scheme"), empty path ("path") or bad ref
        """
        word, sep, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
        transport = _LOCAL.get(word) if sep else None
        if transport is None:
            raise InvalidReference(str(text), "expected oci:, oci-archive:, docker-archive: or dir:", part="scheme")
        if transport == "dir":
            return cls(transport, rest, None)
        with _about(text):
            path, colon, ref = rest.partition(":")
            if transport != "docker-archive" and not ref:
                return cls(transport, path, None)  # c/image: "oci:d:" is "oci:d" (empty image name)
            return cls(transport, path, ref if colon else None)

    def __str__(self) -> str:
        ref = f":{self.ref}" if self.ref is not None else ""
        return f"{self.transport}:{self.path}{ref}"


def _check_archive_ref(text: str, ref: str) -> None:
    if ref.startswith("@"):
        if not (ref[1:].isascii() and ref[1:].isdigit()):
            raise InvalidReference(text, "a source index must look like @N", part="tag")
        return
    if not ref:
        raise InvalidReference(text, "empty reference after ':'", part="tag")
    with _about(text):
        if Reference.parse(ref).digest is not None:
            raise InvalidReference(text, "docker-archive references cannot have a digest", part="digest")


def parse_location(text: str, *, default_tag: str | None = "latest") -> Reference | LocalLocation:
    """Parse a copy source or destination: a registry reference or a local location.

    ``oci:``/``oci-archive:``/``docker-archive:``/``dir:`` are local; anything else is a registry reference.
    Only known transports count (``localhost:5000/x`` is a reference); skopeo's other transports
    (``sif:x``, ...) are refused: write ``docker://sif:x`` for an image named ``sif``.

    :param text: the location text
    :param default_tag: passed to :meth:`Reference.parse`
    :returns: a :class:`Reference` or a :class:`LocalLocation`
    :raises InvalidReference: unparsable, or a transport regcopy does not support
    """
    word, sep, _ = text.partition(":") if isinstance(text, str) else ("", "", "")
    if sep and word in _LOCAL:
        return LocalLocation.parse(text)
    if sep and word in _UNSUPPORTED:
        why = f"unsupported transport {word!r} (use docker://, oci:, oci-archive:, docker-archive: or dir:)"
        raise InvalidReference(text, why, part="scheme")
    return Reference.parse(text, default_tag=default_tag)
