"""Building a :class:`~regcopy.sync.model.SyncPlan`: regcopy's plan YAML, skopeo sync's YAML and ``--src docker``.

Owns the three plan front ends and the target naming rule the scheduler applies per repository:

* :func:`load_plan` / :func:`parse_plan` — regcopy's own YAML (or JSON) plan, validated strictly:
  unknown keys, wrong types, bad references, regexes, digests and platforms are all
  :class:`~regcopy.errors.ConfigError` naming the file, the entry and the dotted key.
* :func:`from_skopeo_yaml` — a ``skopeo sync --src yaml`` file, with skopeo-sync(1) semantics.
* :func:`from_skopeo_docker` — ``skopeo sync --src docker SOURCE DESTINATION``.
* :func:`target_repository` — where a discovered source repository lands (``SyncEntry`` naming rules).

Semver constraints are stored as written; :mod:`regcopy.sync.filters` validates and applies them.
Every plan file (prune plans too) is read by one bounded YAML loader: size, nodes with aliases expanded,
number length (docs/security.md). Secrets (passwords, identity tokens) never appear in error messages.
Only :func:`from_skopeo_yaml` touches the file system beyond reading the plan: it lists ``cert-dir`` directories.
"""

from __future__ import annotations

import difflib
import math
import os
import platform
import re
import reprlib
import warnings
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar, cast

import yaml

from regcopy.digest import Digest
from regcopy.errors import ConfigError, InvalidReference
from regcopy.manifest import Platform
from regcopy.reference import DOCKER_HUB, Reference, Repository
from regcopy.registry._policy import SCHEME_MODES, SchemeMode
from regcopy.sync.endpoints import (
    AnyRepository,
    LocalRepository,
    is_local,
    join_endpoint,
    parse_repository,
    split_endpoint,
)
from regcopy.sync.filters import unanchored
from regcopy.sync.model import (
    Credentials,
    DeleteExtra,
    Naming,
    RegistryConfig,
    RepoFilter,
    SourceKind,
    SyncEntry,
    SyncPlan,
    TagFilter,
)

_LEADING_FLAGS: Final = re.compile(r"\(\?([A-Za-z]+)\)")
__all__ = ("from_skopeo_docker", "from_skopeo_yaml", "host_platform", "load_plan", "parse_plan", "target_repository")

_TLS_MODES: Final[Mapping[str, SchemeMode]] = {m: m for m in SCHEME_MODES}
_KINDS: Final[Mapping[str, SourceKind]] = {"repository": "repository", "namespace": "namespace", "registry": "registry"}

_TOP_KEYS: Final = ("version", "registries", "defaults", "sync", "prune")  # prune: read by regcopy.prune
_REGISTRY_KEYS: Final = (
    "tls", "ca_file", "client_cert", "client_key", "credentials", "max_concurrency", "requests_per_second",
    "mirrors", "request_timeout",
)
_CREDENTIAL_KEYS: Final = ("username", "password", "helper", "authfile", "identity_token", "refresh_after")
_DEFAULT_KEYS: Final = ("tags", "platforms", "repos")
_ENTRY_KEYS: Final = ("name", "source", "target", "type", "tags", "platforms", "repos", "delete_extra")
_DELETE_EXTRA_KEYS: Final = ("protect", "cap")
_TAG_KEYS: Final = ("allow", "deny", "semver", "latest", "exact", "digests")
_REPO_KEYS: Final = ("allow", "deny")

_SKOPEO_KEYS: Final = ("images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify", "cert-dir")
_SKOPEO_SECTIONS: Final = ("images", "images-by-tag-regex", "images-by-semver")
# types.DockerAuthConfig has no yaml tags, so yaml.v3 matches its lowercased Go field names.
_SKOPEO_CREDENTIAL_KEYS: Final = ("username", "password", "identitytoken")
# yaml.v3 decodes these YAML 1.1 words into a Go bool field (decode.go), so tls-verify accepts them.
_GO_YAML_BOOLS: Final[Mapping[str, bool]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
}

# platform.machine() spellings → GOARCH[/variant], as c/image compares them with image platforms.
_ARCHES: Final[Mapping[str, str]] = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64",
    "armv7l": "arm/v7", "armv6l": "arm/v6", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
    "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64",
}
# A repository to hang tags on when validating them with the reference grammar.
_TAG_PROBE: Final = Repository("localhost", "probe")


# --------------------------------------------------------------------------------------------- YAML


# Bounds on a plan file (docs/security.md): real plans are kilobytes (6,000 entries: 1 MiB, 110,000
# nodes). PyYAML's pure-Python loader costs about 1 KB of memory and 40 µs per node, and a few µs per byte.
_MAX_PLAN_BYTES: Final = 4 * 1024 * 1024
# Nodes of the document with every alias expanded: a billion-laughs bomb has billions, '[a,a,…]' millions.
_MAX_NODES: Final = 200_000
# Characters of a YAML number: int() of a long decimal costs quadratic time, and repr() past 4300 digits fails.
_MAX_NUMBER_CHARS: Final = 1000
_NUMBER_TAGS: Final = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
# What SafeConstructor's scalar constructors raise on a value they cannot build ('!!int x', '2001-02-30').
_VALUE_ERRORS: Final = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


class _Refused(yaml.MarkedYAMLError):
    """A plan file goes past one of the loader's bounds; carries the position where it did."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one), alias bombs,
    recursive aliases, overlong numbers, and values its constructors cannot build (with their position)."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._open: list[int] = []  # expanded sizes of the nodes being composed, innermost last
        self._sizes: dict[int, int] = {}  # id(anchored node) -> its expanded size; anchors keep the nodes alive
        self._nodes = 0  # nodes so far, an alias counting as the nodes it stands for

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # PyYAML composes an alias as the anchored node itself, shared: cheap to build, but every
        # walk over the data (repr, validation) pays the expanded size. Count that size here.
        event: yaml.NodeEvent = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        mark = cast(yaml.Mark, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)  # the anchored node, or "found undefined alias"
            size = self._sizes.get(id(node))
            if size is None:
                raise _Refused(None, None, "an alias inside its own anchor (a recursive structure)", mark)
            self._count(size, mark, "aliases expand the document to")
        else:
            self._count(1, mark, "the document has")
            self._open.append(1)
            node = super().compose_node(parent, index)
            size = self._open.pop()
            if event.anchor is not None:
                self._sizes[id(node)] = size
        if self._open:
            self._open[-1] += size
        return node

    def _count(self, nodes: int, mark: yaml.Mark, what: str) -> None:
        self._nodes += nodes
        if self._nodes > _MAX_NODES:
            raise _Refused(None, None, f"{what} more than {_MAX_NODES} nodes, the limit for a plan", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> object:
        if isinstance(node, yaml.ScalarNode) and node.tag in _NUMBER_TAGS and len(node.value) > _MAX_NUMBER_CHARS:
            raise _Refused(
                None, None, f"a number of {len(node.value)} characters (the limit is {_MAX_NUMBER_CHARS})",
                node.start_mark,
            )
        try:
            return super().construct_object(node, deep)
        except _VALUE_ERRORS:
            # Never the exception's text: it quotes the value, which may be a password.
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(None, None, f"not a valid {tag}", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)  # not 'key in seen': a set finds a set key (as a frozenset) but cannot hold it
            except TypeError:
                continue  # unhashable: SafeConstructor reports it with its position
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {_short(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class _SkopeoLoader(_Loader):
    """Resolves scalars like skopeo's yaml.v3 decoding into strings: ``1.10`` stays ``"1.10"``.

    Only null, ``<<`` merge keys and the YAML 1.2 booleans are resolved; numbers and dates keep their text, because
    skopeo decodes every value of its file into a Go string (or a bool for ``tls-verify``).
    """


_KEEP_RESOLVED: Final = ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
_SkopeoLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in _KEEP_RESOLVED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SkopeoLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_yaml(path: str | Path, loader: type[_Loader]) -> object:
    name = str(path)
    try:
        with open(path, "rb") as handle:  # a bounded read: /dev/zero or a huge file must not fill memory
            raw = handle.read(_MAX_PLAN_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the file: {reason}", path=name) from None
    if len(raw) > _MAX_PLAN_BYTES:
        raise ConfigError(f"the file is larger than {_MAX_PLAN_BYTES // 2**20} MiB, the limit for a plan", path=name)
    try:
        return yaml.load(raw, Loader=loader)  # safe: every loader here derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        # Built from the parts, never str(exc): that quotes the source line, which may hold a password.
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        detail = "; ".join(_clip(p) for p in (exc.context, exc.problem) if p)
        what = "YAML syntax error"
        if isinstance(exc, _Refused):
            what = "plan refused"
        elif isinstance(exc, yaml.constructor.ConstructorError):
            what = "YAML error"  # well-formed, but a value cannot be built: '!!int x', 2001-02-30, a duplicate key
        raise ConfigError(f"{what}{where}: {detail or 'invalid YAML'}", path=name) from None
    except yaml.YAMLError as exc:  # ReaderError: bad encoding or control characters (no source text)
        raise ConfigError(f"cannot read YAML: {_clip(str(exc))}", path=name) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", path=name) from None
    except _VALUE_ERRORS:  # the loader maps these with a position; this is the net for any path it missed
        raise ConfigError("cannot read YAML: a value cannot be built", path=name) from None


def _clip(text: str, limit: int = 200) -> str:
    """PyYAML's messages quote anchors, tags and keys as written: any length."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class _At:
    """Where a value sits: file, entry and dotted key, i.e. what a ConfigError about it names."""

    path: str | None
    entry: str | None
    key: str | None

    def field(self, name: str) -> _At:
        name = _clip(name, 80)  # keys, hosts and images come from the file: any length
        return _At(self.path, self.entry, f"{self.key}.{name}" if self.key else name)

    def member(self, name: str) -> _At:
        # Brackets for user-chosen names (hosts, images): they contain dots themselves.
        name = _clip(name, 80)
        return _At(self.path, self.entry, f"{self.key}[{name}]" if self.key else name)

    def index(self, i: int) -> _At:
        return _At(self.path, self.entry, f"{self.key}[{i}]" if self.key else f"[{i}]")

    def error(self, message: str) -> ConfigError:
        # Entry names are the file's; a message may quote a reason that quotes the value.
        entry = None if self.entry is None else _clip(self.entry, 80)
        return ConfigError(_clip(message, 1000), path=self.path, entry=entry, key=self.key)


_TYPE_NAMES: Final = {
    "NoneType": "null", "dict": "a mapping", "list": "a list", "str": "a string", "int": "an integer",
    "float": "a number", "bool": "a boolean", "date": "a date", "datetime": "a timestamp", "bytes": "binary",
}


def _kind_of(value: object) -> str:
    name = type(value).__name__
    return _TYPE_NAMES.get(name, name)


class _BoundedRepr(reprlib.Repr):
    """reprlib's bounded repr (a few items, a few levels: shared alias nodes are never expanded) that also
    never converts a huge integer to decimal (quadratic time; ValueError past 4300 digits)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * self.maxlong:
            return f"<an integer of about {int(x.bit_length() * math.log10(2)) + 1} digits>"
        return super().repr_int(x, level)


_REPR: Final = _BoundedRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 60


def _short(value: object, limit: int = 60) -> str:
    """A repr for messages, bounded in length and in the work it costs, whatever ``value`` is."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[: limit - 3] + "...")
    return _REPR.repr(value)[:limit]


def _suggest(word: str, allowed: Collection[str]) -> str:
    if len(word) > 100:
        return ""  # no key is that long, and difflib indexes every character of it
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(value: object, at: _At, allowed: Collection[str] | None = None) -> dict[str, object]:
    """A mapping with string keys; with ``allowed``, unknown keys are errors naming the key."""
    if not isinstance(value, dict):
        raise at.error(f"must be a mapping, not {_kind_of(value)}")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise at.error(f"keys must be strings, not {_kind_of(key)} ({_short(key)})")
        if allowed is not None and key not in allowed:
            expected = ", ".join(allowed)
            raise at.field(key).error(f"unknown key {_short(key)}{_suggest(key, allowed)}; expected one of: {expected}")
        out[key] = item
    return out


def _string(value: object, at: _At, *, secret: bool = False) -> str:
    if not isinstance(value, str):
        hint = ""
        if not secret and isinstance(value, int | float) and not isinstance(value, bool):
            hint = " (quote numbers in YAML: '1.10' would otherwise read as 1.1)"
        raise at.error(f"must be a string, not {_kind_of(value)}{hint}")
    if not value:
        raise at.error("must not be empty")
    return value


def _list(value: object, at: _At) -> list[object]:
    if not isinstance(value, list):
        raise at.error(f"must be a list, not {_kind_of(value)}")
    return value


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _compile(pattern: str, at: _At) -> None:
    try:
        with warnings.catch_warnings():
            # re warns about valid patterns it may read differently some day ("[[": possible nested
            # set); under -W error that would escape as a FutureWarning instead of validating.
            warnings.simplefilter("ignore")
            re.compile(pattern, re.ASCII)  # as the filters compile them: tags and repository names are ASCII
    except (re.error, ValueError, OverflowError, RecursionError) as exc:
        raise at.error(f"invalid regular expression {_short(pattern)}: {exc}") from None


def _regexes(value: object, at: _At) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_list(value, at)):
        pattern = item if isinstance(item, str) else _string(item, at.index(i))  # "" is a valid regex
        _compile(pattern, at.index(i))
        out.append(pattern)
    return _dedupe(out)


def _tag(value: object, at: _At) -> str:
    tag = _string(value, at)
    try:
        _TAG_PROBE.with_tag(tag)
    except InvalidReference as exc:
        raise at.error(f"invalid tag {_short(tag)}: {exc.reason}") from None
    return tag


def _digest(value: object, at: _At) -> str:
    text = _string(value, at)
    try:
        return str(Digest.parse(text))
    except InvalidReference as exc:
        raise at.error(f"invalid digest {_short(text)}: {exc.reason}") from None


def _platforms(value: object, at: _At) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_list(value, at)):
        text = _string(item, at.index(i))
        try:
            out.append(str(Platform.parse(text)))
        except InvalidReference as exc:
            raise at.index(i).error(f"invalid platform {_short(text)}: {exc.reason}") from None
    return _dedupe(out)


def _positive_int(value: object, at: _At) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = _short(value) if isinstance(value, int) else _kind_of(value)
        raise at.error(f"must be a positive integer, not {shown}")
    return value


# ------------------------------------------------------------------------------------ reference text


def _is_host(first: str) -> bool:
    # The docker grammar's rule (PROTOCOL.md §7): the first component is a registry only if it
    # has a '.' or a ':port' or is localhost.
    return "." in first or ":" in first or first.lower() == "localhost"


def _host(text: str, at: _At, what: str) -> str:
    """Validate and normalise a registry ``host[:port]`` (lowercase, Docker Hub aliases → docker.io)."""
    if "/" in text or "@" in text or not _is_host(text):
        raise at.error(
            f"{what} {_short(text)} is not a registry host[:port] (a host needs a '.', a ':port' or "
            f"'localhost'; Docker Hub is {DOCKER_HUB})"
        )
    try:
        # Repository.parse does the lowercasing and alias mapping; the dummy path is always valid.
        return Repository.parse(f"{text}/x/x").registry
    except InvalidReference as exc:
        raise at.error(f"invalid registry {_short(text)}: {exc.reason}") from None


def _no_scheme(text: str, at: _At, what: str) -> None:
    if "://" in text:
        raise at.error(
            f"{what} {_short(text)} must not have a scheme: write host[:port]/path and choose http or "
            "https per registry (regcopy: registries.<host>.tls; skopeo: tls-verify)"
        )


def _local(text: str, at: _At, what: str) -> LocalRepository:
    try:
        repo = parse_repository(text)
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {_short(text)}: {exc.reason}") from None
    assert isinstance(repo, LocalRepository)
    return repo


def _location(text: str, at: _At, *, what: str, host_required: bool) -> tuple[str, str]:
    """Parse ``host[:port][/path]`` (a namespace, a registry or a target prefix) into (host, path).

    Without ``host_required``, the docker grammar applies: a first component that is not a host
    means Docker Hub (``myorg`` → ``docker.io/myorg``), as in skopeo's destination argument.
    No ``library/`` is added: a prefix is not a repository. A local store (``oci:DIR[:path]``) gives
    ``("oci:DIR", path)``.
    """
    if is_local(text):
        repo = _local(text, at, what)
        if _has_tag(repo.path):
            raise at.error(f"{what} {_short(text)} cannot carry a tag")
        return repo.registry, repo.path
    _no_scheme(text, at, what)
    first, slash, rest = text.partition("/")
    if _is_host(first):
        host, path = _host(first, at, what), rest
        if not slash:
            return host, ""
    elif host_required:
        raise at.error(
            f"{what} {_short(text)} must start with a registry host (a host needs a '.', a ':port' or "
            f"'localhost'; Docker Hub is {DOCKER_HUB})"
        )
    else:
        host, path = DOCKER_HUB, text
    if "@" in path:
        raise at.error(f"{what} {_short(text)} cannot carry a digest")
    if ":" in path.rpartition("/")[2]:
        raise at.error(f"{what} {_short(text)} cannot carry a tag")
    try:
        Repository(host, f"{path}/x")  # grammar of every component; the dummy keeps Hub's namespace rule quiet
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {_short(text)}: {exc.reason}") from None
    return host, path


def _repository(text: str, at: _At, *, what: str, hint: str) -> AnyRepository:
    """Parse a repository name (docker grammar, normalised) or a local one (``oci:DIR[:path]``);
    a tag or digest is an error with ``hint``."""
    if is_local(text):
        repo = _local(text, at, what)
        if _has_tag(repo.path):
            raise at.error(f"{what} {_short(text)} cannot carry a tag: {hint}")
        return repo
    _no_scheme(text, at, what)
    if "/" not in text and _is_host(text.partition(":")[0]):
        try:
            _host(text, at, what)
        except ConfigError:
            pass  # not a valid host either: let the grammar say what is wrong
        else:
            raise at.error(f"{what} {_short(text)} is a registry host, not a repository: {hint}")
    try:
        ref = Reference.parse(text, default_tag=None)
    except InvalidReference as exc:
        raise at.error(f"invalid {what} {_short(text)}: {exc.reason}") from None
    if ref.tag is not None or ref.digest is not None:
        part = "a digest" if ref.digest is not None else f"a tag ({ref.tag!r})"
        raise at.error(f"{what} {_short(text)} cannot carry {part}: {hint}")
    return ref.repo


def target_repository(entry: SyncEntry, source_repo: str) -> str:
    """Where one source repository of ``entry`` lands: ``host[:port]/path`` (naming rules of SyncEntry).

    * ``prefix``, kind ``repository``: ``entry.target`` itself.
    * ``prefix``, kind ``namespace``/``registry``: the source path prefix is replaced by the target
      path (``quay.io/ns`` → ``dst/m``: ``ns/app/x`` → ``dst/m/app/x``; a bare-host source puts the
      whole repository path under the target).
    * ``basename``: target + the last component of ``source_repo`` (``org/app`` → ``dst/app``).
    * ``scoped``: target + source registry + ``source_repo`` (``dst/m/quay.io/org/app``).

    The result is normalised like any repository (``docker.io/app`` → ``docker.io/library/app``).
    Local stores take part the same way (:mod:`regcopy.sync.endpoints`): a target ``oci:DIR`` puts
    ``ns/app`` at ``oci:DIR:ns/app``, and a kind ``repository`` target ``oci:DIR`` holds bare tags.

    :param entry: the plan entry the repository was found for
    :param source_repo: the repository's full path on the source registry, without the registry
        (``library/busybox`` on Docker Hub), or its path inside a local source store
    :raises InvalidReference: ``source_repo`` is not a repository of the entry's source, or the
        resulting name is invalid (e.g. scoped under a source registry with a ``:port``)
    """
    src_host, src_path = split_endpoint(entry.source)
    if not is_local(src_host):
        Repository(src_host, source_repo)  # validates source_repo (Docker Hub: with its namespace)
    if entry.naming == "prefix" and entry.kind == "repository":
        return entry.target
    dst_host, dst_path = split_endpoint(entry.target)
    if entry.naming == "basename":
        rest = source_repo.rpartition("/")[2]
    elif entry.naming == "scoped":
        rest = f"{src_host}/{source_repo}"
    elif not src_path:
        rest = source_repo
    elif source_repo == src_path:
        rest = ""
    elif source_repo.startswith(src_path + "/"):
        rest = source_repo[len(src_path) + 1 :]
    else:
        raise InvalidReference(source_repo, f"not a repository under {entry.source}", part="repository")
    path = "/".join(p for p in (dst_path, rest) if p)
    if is_local(dst_host):
        return parse_repository(join_endpoint(dst_host, path)).name  # validates the ref grammar
    if not path:
        raise InvalidReference(entry.target, f"no repository path for {source_repo!r}", part="repository")
    return Repository.parse(f"{dst_host}/{path}").name


def _has_tag(path: str) -> bool:
    return ":" in path.rpartition("/")[2]


def _check_target(entry: SyncEntry, source_repo: str, at: _At) -> None:
    """Fail at plan time if a repository entry's target name cannot be made (scoped + port, length)."""
    try:
        target_repository(entry, source_repo)
    except InvalidReference as exc:
        raise at.error(f"cannot name the target repository under {_short(entry.target)}: {exc.reason}") from None


# ---------------------------------------------------------------------------------- regcopy's plan


@dataclass(frozen=True, slots=True)
class _Defaults:
    tags: TagFilter | None = None
    platforms: tuple[str, ...] | None = None
    repos: RepoFilter | None = None


def load_plan(path: str | Path) -> SyncPlan:
    """Read and validate a regcopy plan file (YAML; JSON is YAML too). See :func:`parse_plan`.

    :raises ConfigError: unreadable file, YAML syntax error (with line and column), invalid plan
    """
    return parse_plan(_read_yaml(path, _Loader), path=str(path))


def parse_plan(data: object, *, path: str | None = None) -> SyncPlan:
    """Validate an already-loaded regcopy plan and build the :class:`SyncPlan`.

    Shape: ``version`` (optional, 1), ``registries`` (optional, host → settings), ``defaults``
    (optional: ``tags``, ``platforms``, ``repos``) and ``sync`` (required, non-empty list of entries
    with ``source``, ``target`` and optional ``name``, ``type``, ``tags``, ``platforms``, ``repos``).

    Defaults merge per key: an entry's ``tags`` *replaces* ``defaults.tags`` as a whole (no
    field-by-field merge: what an entry says is all that applies to it); likewise ``platforms``
    and ``repos``. ``defaults.repos`` only applies to namespace and registry entries. Entries are
    named ``sync[i]`` unless they have a ``name``; names must be unique. Entries use ``prefix`` naming.

    :param data: the loaded YAML/JSON document
    :param path: the file it came from, for messages and :attr:`SyncPlan.path`
    :raises ConfigError: the plan is invalid (``.path``, ``.entry`` and ``.key`` say where)
    """
    top = _At(path, None, None)
    if data is None:
        raise top.error("the plan is empty: it needs a 'sync' list of entries")
    if not isinstance(data, dict):
        raise top.error(f"a plan must be a mapping with a 'sync' list, not {_kind_of(data)}")
    doc = _mapping(data, top, _TOP_KEYS)
    check_version(doc, top)
    registries = _registries(doc.get("registries"), path)
    defaults = _defaults(doc.get("defaults"), _At(path, "defaults", "defaults"))
    items = required_list(doc, "sync", top, "entry", "entries")
    entries: list[SyncEntry] = []
    first_use: dict[str, int] = {}
    for i, item in enumerate(items):
        entry = _entry(item, i, defaults, path)
        if entry.name in first_use:
            at = _At(path, entry.name, f"sync[{i}].name")
            raise at.error(f"duplicate entry name {_short(entry.name)} (also sync[{first_use[entry.name]}])")
        first_use[entry.name] = i
        entries.append(entry)
    return SyncPlan(tuple(entries), MappingProxyType(registries), path)


def check_version(doc: dict[str, object], top: _At) -> None:
    """A plan's optional ``version``: only 1 exists."""
    if "version" in doc:
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            raise top.field("version").error(f"unsupported plan version {_short(version)}; only 1 exists")


def required_list(doc: dict[str, object], key: str, top: _At, one: str, many: str) -> list[object]:
    """The non-empty list under ``key`` (``sync``, ``prune``), or an error naming what it lists."""
    if key not in doc:
        raise top.field(key).error(f"missing required key {key!r} (the list of {many})")
    items = _list(doc[key], top.field(key))
    if not items:
        raise top.field(key).error(f"must list at least one {one}")
    return items


def _registries(value: object, path: str | None) -> dict[str, RegistryConfig]:
    out: dict[str, RegistryConfig] = {}
    if value is None:  # 'registries:' with everything commented out
        return out
    for raw, settings in _mapping(value, _At(path, "registries", "registries")).items():
        at = _At(path, raw, "registries").member(raw)
        host = _host(raw, at, "registry key")
        if host in out:
            raise at.error(f"registry {host!r} is configured twice")
        out[host] = _registry(host, settings, at)
    return out


def _registry(host: str, value: object, at: _At) -> RegistryConfig:
    f = _mapping({} if value is None else value, at, _REGISTRY_KEYS)
    scheme: SchemeMode = "auto"
    if "tls" in f:
        tls = f["tls"]
        if not isinstance(tls, str) or tls not in _TLS_MODES:
            shown = _short(tls) if isinstance(tls, str) else _kind_of(tls)
            raise at.field("tls").error(f"must be one of {', '.join(_TLS_MODES)}, not {shown}")
        scheme = _TLS_MODES[tls]
    files = {k: _string(f[k], at.field(k)) for k in ("ca_file", "client_cert", "client_key") if k in f}
    if "client_key" in files and "client_cert" not in files:
        raise at.field("client_key").error("client_key needs client_cert")
    max_concurrency = None
    if "max_concurrency" in f:
        max_concurrency = _positive_int(f["max_concurrency"], at.field("max_concurrency"))
    rps = None
    if "requests_per_second" in f:
        value = f["requests_per_second"]
        rps = _number(value)
        if rps is None or not math.isfinite(rps) or not rps > 0:
            shown = _kind_of(value) if rps is None else _short(value)
            raise at.field("requests_per_second").error(f"must be a finite number above 0, not {shown}")
    credentials = _credentials(f["credentials"], at.field("credentials")) if "credentials" in f else None
    mirrors = _mirrors(f["mirrors"], at.field("mirrors"), host) if "mirrors" in f else ()
    timeout = _seconds(f["request_timeout"], at.field("request_timeout")) if "request_timeout" in f else None
    return RegistryConfig(
        host, scheme, files.get("ca_file"), files.get("client_cert"), files.get("client_key"),
        credentials, max_concurrency, rps, mirrors, timeout,
    )


def _seconds(value: object, at: _At) -> float:
    """A finite number of seconds above 0."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        shown = repr(value) if isinstance(value, int | float) else _kind_of(value)
        raise at.error(f"must be a number of seconds above 0, not {shown}")
    return float(value)


def _mirrors(value: object, at: _At, host: str) -> tuple[str, ...]:
    """``host[:port][/prefix]`` strings, in the order they are tried; never the registry itself."""
    out: list[str] = []
    for i, item in enumerate(_list(value, at)):
        iat = at.index(i)
        mirror_host, prefix = _location(_string(item, iat), iat, what="mirror", host_required=True)
        if is_local(mirror_host):
            raise iat.error("a mirror is a registry, not a local store")
        if mirror_host == host:
            raise iat.error(f"{host} cannot mirror itself")
        out.append(join_endpoint(mirror_host, prefix))
    return _dedupe(out)


def _credentials(value: object, at: _At) -> Credentials:
    """Exactly one form: username + password, identity_token (username optional), helper, or authfile."""
    f = _mapping(value, at, _CREDENTIAL_KEYS)
    forms = [k for k in ("password", "identity_token", "helper", "authfile") if k in f]
    if not forms:
        if "username" in f:
            raise at.field("password").error("username needs a password (or use identity_token)")
        raise at.error("give one of: username + password, identity_token, helper, authfile")
    if len(forms) > 1:
        raise at.error(f"give exactly one of password, identity_token, helper, authfile; got {' and '.join(forms)}")
    form = forms[0]
    if form == "password" and "username" not in f:
        raise at.field("username").error("password needs a username")
    if form in ("helper", "authfile") and "username" in f:
        raise at.field("username").error(f"username goes with password or identity_token, not {form}")
    refresh_after = None
    if "refresh_after" in f:
        if form not in ("helper", "authfile"):
            raise at.field("refresh_after").error("re-running applies to a helper or an authfile's helpers only")
        refresh_after = parse_seconds(f.pop("refresh_after"), at.field("refresh_after"))
    # secret=True: type errors must not hint at (or show) the value.
    values = {k: _string(f[k], at.field(k), secret=k in ("password", "identity_token")) for k in f}
    return Credentials(
        username=values.get("username"), password=values.get("password"),
        identity_token=values.get("identity_token"), helper=values.get("helper"), authfile=values.get("authfile"),
        refresh_after=refresh_after,
    )


def parse_seconds(value: object, at: _At) -> float:
    """A positive duration: a number of seconds, or text such as ``90s``, ``15m``, ``12h``, ``1d``."""
    if (number := _number(value)) is not None:
        seconds = number
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)):
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    else:
        shown = _short(value) if isinstance(value, str) else _kind_of(value)
        raise at.error(f"must be a duration such as 900, '15m' or '12h', not {shown}")
    if math.isinf(seconds):
        raise at.error("is too long a duration")
    if not seconds > 0:  # also NaN
        raise at.error("must be a duration above 0")
    return seconds


def _number(value: object) -> float | None:
    """An int or float as a float (an int too large for one is infinite); None for anything else, bools too."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _tag_filter(value: object, at: _At) -> TagFilter:
    f = _mapping(value, at, _TAG_KEYS)
    semver = _string(f["semver"], at.field("semver")) if "semver" in f else None  # filters.py validates it
    latest = _positive_int(f["latest"], at.field("latest")) if "latest" in f else None
    exact: list[str] = []
    if "exact" in f:
        exact = [_tag(t, at.field("exact").index(i)) for i, t in enumerate(_list(f["exact"], at.field("exact")))]
    digests: list[str] = []
    if "digests" in f:
        items = _list(f["digests"], at.field("digests"))
        digests = [_digest(d, at.field("digests").index(i)) for i, d in enumerate(items)]
    return TagFilter(
        allow=_regexes(f["allow"], at.field("allow")) if "allow" in f else (),
        deny=_regexes(f["deny"], at.field("deny")) if "deny" in f else (),
        semver=semver, latest=latest, exact=_dedupe(exact), digests=_dedupe(digests),
    )


def _repo_filter(value: object, at: _At) -> RepoFilter:
    f = _mapping(value, at, _REPO_KEYS)
    return RepoFilter(
        allow=_regexes(f["allow"], at.field("allow")) if "allow" in f else (),
        deny=_regexes(f["deny"], at.field("deny")) if "deny" in f else (),
    )


def _defaults(value: object, at: _At) -> _Defaults:
    if value is None:  # 'defaults:' with everything commented out
        return _Defaults()
    f = _mapping(value, at, _DEFAULT_KEYS)
    return _Defaults(
        tags=_tag_filter(f["tags"], at.field("tags")) if "tags" in f else None,
        platforms=_platforms(f["platforms"], at.field("platforms")) if "platforms" in f else None,
        repos=_repo_filter(f["repos"], at.field("repos")) if "repos" in f else None,
    )


def _named_item(item: object, section: str, i: int, path: str | None, shape: str) -> tuple[str, _At, dict[str, object]]:
    """The name (``section[i]`` or its ``name``), a locator naming it and the item as a mapping.

    :param shape: what the item must be, for the error (``a mapping with source and target``)
    """
    base = f"{section}[{i}]"
    at = _At(path, base, base)
    if not isinstance(item, dict):
        raise at.error(f"{shape}, not {_kind_of(item)}")
    name = base
    if "name" in item:  # read first, so that every later error names the item as the user does
        name = _string(item["name"], at.field("name")).strip()
        if not name:
            raise at.field("name").error("must not be blank")
        at = _At(path, name, base)
    return name, at, item


def _entry(item: object, i: int, defaults: _Defaults, path: str | None) -> SyncEntry:
    name, at, item = _named_item(item, "sync", i, path, "an entry must be a mapping with source and target")
    f = _mapping(item, at, _ENTRY_KEYS)
    kind: SourceKind = "repository"
    if "type" in f:
        text = f["type"]
        if not isinstance(text, str) or text not in _KINDS:
            shown = _short(text) if isinstance(text, str) else _kind_of(text)
            raise at.field("type").error(f"must be one of {', '.join(_KINDS)}, not {shown}")
        kind = _KINDS[text]
    for required in ("source", "target"):
        if required not in f:
            raise at.field(required).error(f"missing required key {required!r}")
    source_text = _string(f["source"], at.field("source"))
    target_text = _string(f["target"], at.field("target"))
    if kind == "repository":
        hint = "to mirror a whole registry set type: registry; to copy one tag write tags: {exact: [TAG]}"
        source = _repository(source_text, at.field("source"), what="source", hint=hint).name
        hint = "the target of a repository entry is a repository; tags keep their names"
        target = _repository(target_text, at.field("target"), what="target", hint=hint).name
        if "repos" in f:
            raise at.field("repos").error("repos filters need type: namespace or registry (this is one repository)")
    else:
        host, prefix = _location(
            source_text, at.field("source"), what=f"{kind} source", host_required=kind == "registry"
        )
        source = join_endpoint(host, prefix)
        host, prefix = _location(target_text, at.field("target"), what="target", host_required=False)
        target = join_endpoint(host, prefix)
    tags = _tag_filter(f["tags"], at.field("tags")) if "tags" in f else (defaults.tags or TagFilter())
    platforms = _platforms(f["platforms"], at.field("platforms")) if "platforms" in f else (defaults.platforms or ())
    repos = RepoFilter()
    if kind != "repository":
        repos = _repo_filter(f["repos"], at.field("repos")) if "repos" in f else (defaults.repos or RepoFilter())
    delete_extra = None
    if "delete_extra" in f:
        delete_extra = _delete_extra(f["delete_extra"], at.field("delete_extra"))
        if delete_extra is not None and is_local(target):
            raise at.field("delete_extra").error("needs a registry target (a local store is written afresh)")
    return SyncEntry(name, source, target, kind, "prefix", repos, tags, platforms, delete_extra)


def _delete_extra(value: object, at: _At) -> DeleteExtra | None:
    """``true``/``false``, or ``{protect: [regex…], cap: N}`` (which means true)."""
    if isinstance(value, bool):
        return DeleteExtra() if value else None
    if not isinstance(value, dict):
        raise at.error(f"must be true, false or a mapping with protect and cap, not {_kind_of(value)}")
    f = _mapping(value, at, _DELETE_EXTRA_KEYS)
    protect = _regexes(f["protect"], at.field("protect")) if "protect" in f else ()
    cap = _positive_int(f["cap"], at.field("cap")) if "cap" in f else None
    return DeleteExtra(protect, cap)


# ----------------------------------------------------------------------------------------- skopeo


def _naming(scoped: bool) -> Naming:
    return "scoped" if scoped else "basename"


def host_platform(machine: str | None = None) -> str:
    """This machine's image platform, ``linux/<GOARCH>[/variant]``.

    Images are Linux images (macOS and Windows hosts run them in a Linux VM), so the OS is always linux.
    """
    raw = (platform.machine() if machine is None else machine).strip()
    arch = _ARCHES.get(raw.lower(), raw.lower())
    if not arch:
        raise ConfigError("cannot tell this machine's architecture; copy all platforms instead (skopeo --all)")
    return f"linux/{arch}"


def _platform_choice(all_platforms: bool) -> tuple[str, ...]:
    # skopeo sync without --all copies, from a multi-platform image, only the image matching the
    # current system (copy.CopySystemImage); --all copies every platform (empty tuple here).
    return () if all_platforms else (host_platform(),)


def _destination(destination: object) -> str:
    at = _At(None, None, "destination")
    text = _string(destination, at)
    _no_scheme(text, at, "destination")
    # skopeo joins DESTINATION and the image with Go's path.Join, which drops a trailing '/' and
    # collapses '//' (skopeo-sync(1) itself writes 'my-registry.local.lan/repo/').
    cleaned = re.sub("/{2,}", "/", text).rstrip("/") or text
    host, path = _location(cleaned, at, what="destination", host_required=False)
    return f"{host}/{path}" if path else host


def from_skopeo_docker(source: str, destination: str, *, scoped: bool, all_platforms: bool) -> SyncPlan:
    """The plan of ``skopeo sync --src docker --dest docker SOURCE DESTINATION``.

    ``SOURCE`` is a docker reference (normalised as skopeo does: ``busybox`` is
    ``docker.io/library/busybox``): a repository (all its tags), ``repo:tag`` (that tag) or
    ``repo@digest`` (that digest). ``DESTINATION`` is ``registry[/path]``; a first component that is
    not a host means Docker Hub, as in skopeo. One entry of kind ``repository``, named ``SOURCE``.

    :param scoped: skopeo ``--scoped`` (``DEST/<registry>/<repository>``) instead of ``DEST/<basename>``
    :param all_platforms: skopeo ``--all``; otherwise only this machine's platform is copied
    :raises ConfigError: invalid source or destination (``.key`` is ``source`` or ``destination``)
    """
    at = _At(None, None, "source")
    text = _string(source, at)
    _no_scheme(text, at, "source")
    head = text.partition(":")[0]
    if "/" not in text and ("." in head or head == "localhost"):
        # The docker grammar would read 'reg.example:5000' as docker.io/library/reg.example, tag 5000.
        raise at.error(
            f"source {_short(text)} looks like a registry host: skopeo sync --src docker copies one "
            "repository (write registry/repository); mirror a whole registry with a regcopy plan"
        )
    try:
        ref = Reference.parse(text, default_tag=None)
    except InvalidReference as exc:
        raise at.error(f"invalid source {_short(text)}: {exc.reason}") from None
    if ref.tag is not None and ref.digest is not None:
        # c/image's docker transport refuses name:tag@digest as a source as well.
        raise at.error(f"source {_short(text)} has both a tag and a digest; give one")
    tags = TagFilter()
    if ref.tag is not None:
        tags = TagFilter(exact=(ref.tag,))
    elif ref.digest is not None:
        tags = TagFilter(digests=(str(ref.digest),))
    entry = SyncEntry(
        name=text, source=ref.name, target=_destination(destination), kind="repository",
        naming=_naming(scoped), tags=tags, platforms=_platform_choice(all_platforms),
    )
    _check_target(entry, ref.repository, at)
    return SyncPlan((entry,))


def from_skopeo_yaml(path: str | Path, destination: str, *, scoped: bool, all_platforms: bool) -> SyncPlan:
    """The plan of ``skopeo sync --src yaml --dest docker FILE DESTINATION`` (skopeo-sync(1)).

    Per registry key (``host[:port][/path]``): every image of ``images``, ``images-by-tag-regex``
    and ``images-by-semver`` becomes one ``repository`` entry named ``KEY/IMAGE`` (an image in
    several sections gives several entries, as in skopeo; later ones get `` (SECTION)`` appended).
    Sources are ``ParseNormalizedNamed(KEY + "/" + IMAGE)`` (``docker.io`` + ``busybox`` →
    ``docker.io/library/busybox``); targets are ``DESTINATION`` with ``basename`` or ``scoped`` naming.

    * ``images``: ``[]`` (or null) → all tags; tags → ``TagFilter.exact``; ``algo:hex`` → ``digests``.
    * ``images-by-tag-regex``: skopeo uses Go's ``regexp.MatchString``, which is *unanchored*; the
      regex is stored as ``.*(?:REGEX).*`` (leading ``(?flags)`` hoisted) so regcopy's full match
      keeps skopeo's meaning.
    * ``images-by-semver``: the constraint, stored as written.
    * ``credentials`` (``username``/``password`` or ``identitytoken``), ``tls-verify`` (true →
      ``https``, false → ``insecure``: unverified https or http, like c/image's skip-verify; absent →
      ``auto``, i.e. verified https except for local hosts — skopeo would keep its command-line
      setting, whose default verifies) and ``cert-dir`` (containers-certs.d(5): the first ``*.crt``
      → ``ca_file``, the first ``*.cert`` with its ``*.key`` → client pair; the directory is listed
      now) become :class:`RegistryConfig` values.

    Stricter than skopeo, which logs and skips: unknown keys, unparsable images, tags, digests and
    regexes are errors, and so is a file naming no images at all.

    :param scoped: skopeo ``--scoped``
    :param all_platforms: skopeo ``--all``; otherwise only this machine's platform is copied
    :raises ConfigError: unreadable or invalid file (``.entry`` is the registry key, ``.key`` the field)
    """
    name = str(path)
    target = _destination(destination)
    data = _read_yaml(path, _SkopeoLoader)
    top = _At(name, None, None)
    if data is None:
        raise top.error("no images to sync: the file is empty")
    naming, platforms = _naming(scoped), _platform_choice(all_platforms)
    entries: list[SyncEntry] = []
    registries: dict[str, RegistryConfig] = {}
    names: set[str] = set()
    for key, block in _mapping(data, top).items():
        at = _At(name, key, None)
        host, _ = _location(key, at, what="registry key", host_required=True)
        f = _mapping({} if block is None else block, at, _SKOPEO_KEYS)
        _merge_registry(registries, _skopeo_registry(host, f, at), at)
        for section in _SKOPEO_SECTIONS:
            images = f.get(section)
            for image, value in ({} if images is None else _mapping(images, at.field(section))).items():
                iat = at.field(section).member(image)
                hint = "list tags and digests as the image's values" if section == "images" else "drop the tag"
                repo = _repository(f"{key}/{image}", iat, what="image", hint=hint)
                entry_name = _unique(f"{key}/{image}", section, names)
                entry = SyncEntry(
                    entry_name, repo.name, target, "repository", naming,
                    tags=_skopeo_tags(section, value, iat), platforms=platforms,
                )
                _check_target(entry, repo.path, iat)
                entries.append(entry)
    if not entries:
        raise top.error("no images to sync: no registry lists images, images-by-tag-regex or images-by-semver")
    return SyncPlan(tuple(entries), MappingProxyType(registries), name)


def _unique(base: str, section: str, names: set[str]) -> str:
    name = base if base not in names else f"{base} ({section})"
    n = 2
    while name in names:
        name, n = f"{base} ({section}) #{n}", n + 1
    names.add(name)
    return name


def _skopeo_tags(section: str, value: object, at: _At) -> TagFilter:
    if section == "images":
        if value is None:
            return TagFilter()
        exact, digests = [], []
        for i, item in enumerate(_list(value, at)):
            text = _string(item, at.index(i))
            # skopeo tries a digest first; a tag cannot contain ':', so anything with one must be a digest.
            if ":" in text:
                digests.append(_digest(text, at.index(i)))
            else:
                exact.append(_tag(text, at.index(i)))
        return TagFilter(exact=_dedupe(exact), digests=_dedupe(digests))
    if section == "images-by-semver":
        return TagFilter(semver=_string(value, at))  # filters.py validates the constraint
    # "" is a valid regex (skopeo: every tag matches); null is refused as a likely slip.
    return TagFilter(allow=(_unanchored(value if isinstance(value, str) else _string(value, at), at),))


def _unanchored(pattern: str, at: _At) -> str:
    """skopeo matches tags with Go's ``regexp.MatchString`` (unanchored search); regcopy's TagFilter
    regexes are full matches, so :func:`regcopy.sync.filters.unanchored` rewrites them to search again."""
    flags, body = "", pattern
    while (m := _LEADING_FLAGS.match(body)) is not None:
        flags, body = flags + m.group(1), body[m.end() :]
    if set(flags) - set("ims"):
        # Go's RE2 knows i, m, s and U; Python has no U, and x (verbose) means something else in Python.
        raise at.error(f"unsupported regex flags {_short(flags)} in {_short(pattern)} (supported: i, m, s)")
    _compile(pattern, at)  # the original alone: "a)(b" would compile once wrapped
    wrapped = unanchored(pattern)
    _compile(wrapped, at)
    return wrapped


def _skopeo_registry(host: str, f: dict[str, object], at: _At) -> RegistryConfig | None:
    scheme: SchemeMode = "auto"
    verify = f.get("tls-verify")
    if verify is not None:
        if isinstance(verify, str) and verify in _GO_YAML_BOOLS:
            verify = _GO_YAML_BOOLS[verify]
        if not isinstance(verify, bool):
            shown = _short(verify) if isinstance(verify, str) else _kind_of(verify)
            raise at.field("tls-verify").error(f"must be true or false, not {shown}")
        scheme = "https" if verify else "insecure"
    credentials = None
    if f.get("credentials") is not None:
        credentials = _skopeo_credentials(f["credentials"], at.field("credentials"))
    ca_file = client_cert = client_key = None
    if f.get("cert-dir") is not None:
        ca_file, client_cert, client_key = _cert_dir(f["cert-dir"], at.field("cert-dir"))
    config = RegistryConfig(host, scheme, ca_file, client_cert, client_key, credentials)
    return None if config == RegistryConfig(host) else config


def _skopeo_credentials(value: object, at: _At) -> Credentials | None:
    f = _mapping(value, at, _SKOPEO_CREDENTIAL_KEYS)
    values: dict[str, str] = {}
    for k, v in f.items():
        if v is None or v == "":
            continue  # yaml.v3 leaves the Go string empty; all empty = no credentials, as in skopeo
        values[k] = _string(v, at.field(k), secret=k != "username")
    if not values:
        return None
    if "identitytoken" not in values:
        for k in ("username", "password"):
            if k not in values:
                other = "password" if k == "username" else "username"
                raise at.field(k).error(f"{other} needs {k} (or use identitytoken)")
    return Credentials(
        username=values.get("username"), password=values.get("password"), identity_token=values.get("identitytoken")
    )


def _cert_dir(value: object, at: _At) -> tuple[str | None, str | None, str | None]:
    """containers-certs.d(5) in one directory, read now: ``*.crt`` CAs, ``*.cert`` + ``*.key`` pairs.

    RegistryConfig holds one CA bundle and one client pair, so the first of each (by name) is used.
    A ``*.cert`` without its ``*.key`` (or the reverse) is an error, as in c/image's tlsclientconfig.
    """
    directory = _string(value, at)
    try:
        names = sorted(os.listdir(directory))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise at.error(f"cannot list cert-dir {_short(directory)}: {reason}") from None
    present = set(names)
    for n in names:
        stem, ext = os.path.splitext(n)
        if ext == ".cert" and stem + ".key" not in present:
            raise at.error(f"missing key {stem}.key for client certificate {n} in {_short(directory)}")
        if ext == ".key" and stem + ".cert" not in present:
            raise at.error(f"missing client certificate {stem}.cert for key {n} in {_short(directory)}")
    ca = next((n for n in names if n.endswith(".crt")), None)
    cert = next((n for n in names if n.endswith(".cert")), None)
    return (
        os.path.join(directory, ca) if ca else None,
        os.path.join(directory, cert) if cert else None,
        os.path.join(directory, cert[: -len(".cert")] + ".key") if cert else None,
    )


_T = TypeVar("_T")


def _pick(mine: _T, theirs: _T, unset: _T, at: _At, host: str) -> _T:
    if mine != unset and theirs != unset and mine != theirs:
        raise at.error(f"conflicts with the setting another key gives registry {host!r}")
    return theirs if mine == unset else mine


def _merge_registry(registries: dict[str, RegistryConfig], config: RegistryConfig | None, at: _At) -> None:
    # Keys like 'quay.io' and 'quay.io/coreos' share one host, hence one RegistryConfig: a setting
    # one key leaves out is taken from the other, a setting both give must agree.
    if config is None:
        return
    known = registries.get(config.host)
    if known is None:
        registries[config.host] = config
        return
    host, cert_dir = config.host, at.field("cert-dir")
    registries[host] = RegistryConfig(
        host,
        scheme=_pick(config.scheme, known.scheme, "auto", at.field("tls-verify"), host),
        ca_file=_pick(config.ca_file, known.ca_file, None, cert_dir, host),
        client_cert=_pick(config.client_cert, known.client_cert, None, cert_dir, host),
        client_key=_pick(config.client_key, known.client_key, None, cert_dir, host),
        credentials=_pick(config.credentials, known.credentials, None, at.field("credentials"), host),
    )
