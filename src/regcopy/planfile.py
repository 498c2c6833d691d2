"""The strict-YAML toolkit every plan parser shares: regcopy's sync plans, skopeo sync's YAML, prune plans.

Owns reading a plan document and checking its values, so that every parser reports bad input the
same way: a :class:`~regcopy.errors.ConfigError` naming the file, the entry and the dotted key
(:class:`At`), with a bounded excerpt of the value (:func:`short`) and never a secret.

* Loading: :class:`StrictLoader` (a SafeLoader that refuses duplicate keys), :class:`SkopeoLoader`
  (scalars stay text, as skopeo's yaml.v3 decoding into strings) and :func:`read_yaml`.
* Values: ``as_*`` functions check one value and return it typed (mapping with known keys, string,
  list, regexes, tag, digest, platforms, positive integer, seconds); :func:`check_version` and
  :func:`required_list` check a document's top level; :func:`named_item` names list items.
* The ``repos:`` filter section (:func:`as_repo_filter`), shared by sync entries and prune rules.

Every plan file (prune plans too) is read by one bounded YAML loader: size, nodes with aliases
expanded, number length (docs/security.md). Addresses are :mod:`regcopy.planaddress`'s, the
``registries:`` section :mod:`regcopy.plansettings`'s.
"""

from __future__ import annotations

import difflib
import math
import re
import reprlib
import warnings
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import yaml

from regcopy.digest import Digest
from regcopy.errors import ConfigError, InvalidReference
from regcopy.filters import RepoFilter
from regcopy.manifest import Platform
from regcopy.reference import Repository

__all__ = (
    "At",
    "SkopeoLoader",
    "StrictLoader",
    "as_digest",
    "as_list",
    "as_mapping",
    "as_platforms",
    "as_positive_int",
    "as_regexes",
    "as_repo_filter",
    "as_seconds",
    "as_string",
    "as_tag",
    "check_regex",
    "check_version",
    "dedupe",
    "float_of",
    "kind_of",
    "named_item",
    "parse_yaml",
    "read_yaml",
    "required_list",
    "short",
)

_REPO_KEYS: Final = ("allow", "deny")
# A repository to hang tags on when validating them with the reference grammar.
_TAG_PROBE: Final = Repository("localhost", "probe")


# ----------------------------------------------------------------------------------------- YAML


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


class StrictLoader(yaml.SafeLoader):
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
                    "while constructing a mapping", node.start_mark, f"found duplicate key {short(key)}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


class SkopeoLoader(StrictLoader):
    """Resolves scalars like skopeo's yaml.v3 decoding into strings: ``1.10`` stays ``"1.10"``.

    Only null, ``<<`` merge keys and the YAML 1.2 booleans are resolved; numbers and dates keep their text, because
    skopeo decodes every value of its file into a Go string (or a bool for ``tls-verify``).
    """


_KEEP_RESOLVED: Final = ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")
SkopeoLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in _KEEP_RESOLVED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SkopeoLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: str | Path, loader: type[StrictLoader]) -> object:
    """The document in the file at ``path``, read with ``loader`` within the plan bounds above.

    :raises ConfigError: unreadable or too large a file, invalid YAML or a bound passed (with line and
        column, never the source text)
    """
    name = str(path)
    try:
        with open(path, "rb") as handle:  # a bounded read: /dev/zero or a huge file must not fill memory
            raw = handle.read(_MAX_PLAN_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the file: {reason}", path=name) from None
    if len(raw) > _MAX_PLAN_BYTES:
        raise ConfigError(f"the file is larger than {_MAX_PLAN_BYTES // 2**20} MiB, the limit for a plan", path=name)
    return parse_yaml(raw, loader, name)


def parse_yaml(raw: bytes | str, loader: type[StrictLoader], name: str) -> object:
    """The document in ``raw`` (a plan's text), read with ``loader`` within the plan bounds above.

    :param name: what the text is, for error messages (a path, or ``run RUN`` for a plan kept in Redis)
    :raises ConfigError: as :func:`read_yaml`
    """
    if len(raw) > _MAX_PLAN_BYTES:
        raise ConfigError(f"the text is larger than {_MAX_PLAN_BYTES // 2**20} MiB, the limit for a plan", path=name)
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


# --------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class At:
    """Where a value sits: file, entry and dotted key, i.e. what a ConfigError about it names."""

    path: str | None
    entry: str | None
    key: str | None

    def field(self, name: str) -> At:
        """The key ``name`` below this one (``tags.allow``)."""
        name = _clip(name, 80)  # keys, hosts and images come from the file: any length
        return At(self.path, self.entry, f"{self.key}.{name}" if self.key else name)

    def member(self, name: str) -> At:
        """The user-chosen key ``name`` below this one (``registries[quay.io]``)."""
        # Brackets for user-chosen names (hosts, images): they contain dots themselves.
        name = _clip(name, 80)
        return At(self.path, self.entry, f"{self.key}[{name}]" if self.key else name)

    def index(self, i: int) -> At:
        """Item ``i`` of the list at this key (``sync[2]``)."""
        return At(self.path, self.entry, f"{self.key}[{i}]" if self.key else f"[{i}]")

    def error(self, message: str) -> ConfigError:
        """A ConfigError about the value here."""
        # Entry names are the file's; a message may quote a reason that quotes the value.
        entry = None if self.entry is None else _clip(self.entry, 80)
        return ConfigError(_clip(message, 1000), path=self.path, entry=entry, key=self.key)


_TYPE_NAMES: Final = {
    "NoneType": "null", "dict": "a mapping", "list": "a list", "str": "a string", "int": "an integer",
    "float": "a number", "bool": "a boolean", "date": "a date", "datetime": "a timestamp", "bytes": "binary",
}


def kind_of(value: object) -> str:
    """What a YAML value is, in words (``a mapping``, ``an integer``): errors name the type, not the value."""
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


def short(value: object, limit: int = 60) -> str:
    """A repr for messages, bounded in length and in the work it costs, whatever ``value`` is."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[: limit - 3] + "...")
    return _REPR.repr(value)[:limit]


def _suggest(word: str, allowed: Collection[str]) -> str:
    if len(word) > 100:
        return ""  # no key is that long, and difflib indexes every character of it
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_mapping(value: object, at: At, allowed: Collection[str] | None = None) -> dict[str, object]:
    """A mapping with string keys; with ``allowed``, unknown keys are errors naming the key."""
    if not isinstance(value, dict):
        raise at.error(f"must be a mapping, not {kind_of(value)}")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise at.error(f"keys must be strings, not {kind_of(key)} ({short(key)})")
        if allowed is not None and key not in allowed:
            expected = ", ".join(allowed)
            raise at.field(key).error(f"unknown key {short(key)}{_suggest(key, allowed)}; expected one of: {expected}")
        out[key] = item
    return out


def as_string(value: object, at: At, *, secret: bool = False) -> str:
    """A non-empty string; with ``secret``, a type error gives no hint about the value."""
    if not isinstance(value, str):
        hint = ""
        if not secret and isinstance(value, int | float) and not isinstance(value, bool):
            hint = " (quote numbers in YAML: '1.10' would otherwise read as 1.1)"
        raise at.error(f"must be a string, not {kind_of(value)}{hint}")
    if not value:
        raise at.error("must not be empty")
    return value


def as_list(value: object, at: At) -> list[object]:
    """A list (its items unchecked)."""
    if not isinstance(value, list):
        raise at.error(f"must be a list, not {kind_of(value)}")
    return value


def dedupe(items: list[str]) -> tuple[str, ...]:
    """``items`` without repeats, in their first order."""
    return tuple(dict.fromkeys(items))


def check_regex(pattern: str, at: At) -> None:
    """Refuse a pattern the filters could not compile."""
    try:
        with warnings.catch_warnings():
            # re warns about valid patterns it may read differently some day ("[[": possible nested
            # set); under -W error that would escape as a FutureWarning instead of validating.
            warnings.simplefilter("ignore")
            re.compile(pattern, re.ASCII)  # as the filters compile them: tags and repository names are ASCII
    except (re.error, ValueError, OverflowError, RecursionError) as exc:
        raise at.error(f"invalid regular expression {short(pattern)}: {exc}") from None


def as_regexes(value: object, at: At) -> tuple[str, ...]:
    """A list of valid regular expressions (as written, deduplicated)."""
    out = []
    for i, item in enumerate(as_list(value, at)):
        pattern = item if isinstance(item, str) else as_string(item, at.index(i))  # "" is a valid regex
        check_regex(pattern, at.index(i))
        out.append(pattern)
    return dedupe(out)


def as_tag(value: object, at: At) -> str:
    """A tag of the docker reference grammar."""
    tag = as_string(value, at)
    try:
        _TAG_PROBE.with_tag(tag)
    except InvalidReference as exc:
        raise at.error(f"invalid tag {short(tag)}: {exc.reason}") from None
    return tag


def as_digest(value: object, at: At) -> str:
    """A digest (``algorithm:hex``), normalised."""
    text = as_string(value, at)
    try:
        return str(Digest.parse(text))
    except InvalidReference as exc:
        raise at.error(f"invalid digest {short(text)}: {exc.reason}") from None


def as_platforms(value: object, at: At) -> tuple[str, ...]:
    """A list of ``os/arch[/variant]`` platforms, normalised and deduplicated."""
    out = []
    for i, item in enumerate(as_list(value, at)):
        text = as_string(item, at.index(i))
        try:
            out.append(str(Platform.parse(text)))
        except InvalidReference as exc:
            raise at.index(i).error(f"invalid platform {short(text)}: {exc.reason}") from None
    return dedupe(out)


def as_positive_int(value: object, at: At) -> int:
    """An integer of at least 1 (a boolean is not one)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = short(value) if isinstance(value, int) else kind_of(value)
        raise at.error(f"must be a positive integer, not {shown}")
    return value


def as_seconds(value: object, at: At, *, secret: bool = False) -> float:
    """A positive duration: a number of seconds, or text such as ``90s``, ``15m``, ``12h``, ``1d``.

    With ``secret`` (a value inside a credentials block), an error never quotes the text.
    """
    if (number := float_of(value)) is not None:
        seconds = number
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)):
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    else:
        shown = short(value) if isinstance(value, str) and not secret else kind_of(value)
        raise at.error(f"must be a duration such as 900, '15m' or '12h', not {shown}")
    if math.isinf(seconds):
        raise at.error("is too long a duration")
    if not seconds > 0:  # also NaN
        raise at.error("must be a duration above 0")
    return seconds


def float_of(value: object) -> float | None:
    """An int or float as a float (an int too large for one is infinite); None for anything else, bools too."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_version(doc: dict[str, object], top: At) -> None:
    """A plan's optional ``version``: only 1 exists."""
    if "version" in doc:
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            raise top.field("version").error(f"unsupported plan version {short(version)}; only 1 exists")


def required_list(doc: dict[str, object], key: str, top: At, one: str, many: str) -> list[object]:
    """The non-empty list under ``key`` (``sync``, ``prune``), or an error naming what it lists."""
    if key not in doc:
        raise top.field(key).error(f"missing required key {key!r} (the list of {many})")
    items = as_list(doc[key], top.field(key))
    if not items:
        raise top.field(key).error(f"must list at least one {one}")
    return items


def named_item(item: object, section: str, i: int, path: str | None, shape: str) -> tuple[str, At, dict[str, object]]:
    """The name (``section[i]`` or its ``name``), a locator naming it and the item as a mapping.

    :param shape: what the item must be, for the error (``a mapping with source and target``)
    """
    base = f"{section}[{i}]"
    at = At(path, base, base)
    if not isinstance(item, dict):
        raise at.error(f"{shape}, not {kind_of(item)}")
    name = base
    if "name" in item:  # read first, so that every later error names the item as the user does
        name = as_string(item["name"], at.field("name")).strip()
        if not name:
            raise at.field("name").error("must not be blank")
        at = At(path, name, base)
    return name, at, item


# ------------------------------------------------------------------------------------- sections


def as_repo_filter(value: object, at: At) -> RepoFilter:
    """A ``repos:`` section: ``allow`` and ``deny`` lists of anchored regexes over repository paths."""
    f = as_mapping(value, at, _REPO_KEYS)
    return RepoFilter(
        allow=as_regexes(f["allow"], at.field("allow")) if "allow" in f else (),
        deny=as_regexes(f["deny"], at.field("deny")) if "deny" in f else (),
    )
