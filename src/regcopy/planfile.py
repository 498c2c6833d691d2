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

Addresses are :mod:`regcopy.planaddress`'s, the ``registries:`` section :mod:`regcopy.plansettings`'s.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
    "kind_of",
    "named_item",
    "read_yaml",
    "required_list",
    "short",
)

_REPO_KEYS: Final = ("allow", "deny")
# A repository to hang tags on when validating them with the reference grammar.
_TAG_PROBE: Final = Repository("localhost", "probe")


# ----------------------------------------------------------------------------------------- YAML


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, object]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable: SafeConstructor reports it with its position
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
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
    """The document in the file at ``path``, read with ``loader``.

    :raises ConfigError: unreadable file or invalid YAML (with line and column, never the source text)
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the file: {reason}", path=name) from None
    try:
        return yaml.load(raw, Loader=loader)  # safe: every loader here derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        # Built from the parts, never str(exc): that quotes the source line, which may hold a password.
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        detail = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"YAML syntax error{where}: {detail or 'invalid YAML'}", path=name) from None
    except yaml.YAMLError as exc:  # ReaderError: bad encoding or control characters (no source text)
        raise ConfigError(f"cannot read YAML: {exc}", path=name) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", path=name) from None


# --------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class At:
    """Where a value sits: file, entry and dotted key, i.e. what a ConfigError about it names."""

    path: str | None
    entry: str | None
    key: str | None

    def field(self, name: str) -> At:
        """The key ``name`` below this one (``tags.allow``)."""
        return At(self.path, self.entry, f"{self.key}.{name}" if self.key else name)

    def member(self, name: str) -> At:
        """The user-chosen key ``name`` below this one (``registries[quay.io]``)."""
        # Brackets for user-chosen names (hosts, images): they contain dots themselves.
        return At(self.path, self.entry, f"{self.key}[{name}]" if self.key else name)

    def index(self, i: int) -> At:
        """Item ``i`` of the list at this key (``sync[2]``)."""
        return At(self.path, self.entry, f"{self.key}[{i}]" if self.key else f"[{i}]")

    def error(self, message: str) -> ConfigError:
        """A ConfigError about the value here."""
        return ConfigError(message, path=self.path, entry=self.entry, key=self.key)


_TYPE_NAMES: Final = {
    "NoneType": "null", "dict": "a mapping", "list": "a list", "str": "a string", "int": "an integer",
    "float": "a number", "bool": "a boolean", "date": "a date", "datetime": "a timestamp", "bytes": "binary",
}


def kind_of(value: object) -> str:
    """What a YAML value is, in words (``a mapping``, ``an integer``): errors name the type, not the value."""
    name = type(value).__name__
    return _TYPE_NAMES.get(name, name)


def short(text: str, limit: int = 60) -> str:
    """``repr`` of ``text`` cut to ``limit`` characters, for error messages."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _suggest(word: str, allowed: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_mapping(value: object, at: At, allowed: Collection[str] | None = None) -> dict[str, object]:
    """A mapping with string keys; with ``allowed``, unknown keys are errors naming the key."""
    if not isinstance(value, dict):
        raise at.error(f"must be a mapping, not {kind_of(value)}")
    out: dict[str, object] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise at.error(f"keys must be strings, not {kind_of(key)} ({short(repr(key))})")
        if allowed is not None and key not in allowed:
            expected = ", ".join(allowed)
            raise at.field(key).error(f"unknown key {key!r}{_suggest(key, allowed)}; expected one of: {expected}")
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
        shown = repr(value) if isinstance(value, int) else kind_of(value)
        raise at.error(f"must be a positive integer, not {shown}")
    return value


def as_seconds(value: object, at: At, *, secret: bool = False) -> float:
    """A positive duration: a number of seconds, or text such as ``90s``, ``15m``, ``12h``, ``1d``.

    With ``secret`` (a value inside a credentials block), an error never quotes the text.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)):
        seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    else:
        shown = short(value) if isinstance(value, str) and not secret else kind_of(value)
        raise at.error(f"must be a duration such as 900, '15m' or '12h', not {shown}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise at.error("must be a duration above 0")
    return seconds


def check_version(doc: dict[str, object], top: At) -> None:
    """A plan's optional ``version``: only 1 exists."""
    if "version" in doc:
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            raise top.field("version").error(f"unsupported plan version {short(repr(version))}; only 1 exists")


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
