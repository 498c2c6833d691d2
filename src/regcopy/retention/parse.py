"""The prune plan parser: a standalone prune file, or the ``prune:`` section of a sync plan.

Owns :func:`load_prune` / :func:`parse_prune` (rules, their scopes and keep conditions) and the
duration text of ``older_than`` (:func:`parse_duration`, :func:`duration_text`). The checks are
:mod:`regcopy.planfile`'s; ``registries:`` is read by :mod:`regcopy.plansettings`, the very parser
sync plans use; a sync plan's ``sync`` and ``defaults`` are left to :mod:`regcopy.sync.plan`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Final

from regcopy.filters import RepoFilter, compile_repo_filter
from regcopy.locations import LocalRepository
from regcopy.planaddress import as_location, as_repository
from regcopy.planfile import (
    At,
    StrictLoader,
    as_mapping,
    as_positive_int,
    as_regexes,
    as_repo_filter,
    as_string,
    check_version,
    kind_of,
    named_item,
    read_yaml,
    required_list,
    short,
)
from regcopy.plansettings import parse_registries
from regcopy.reference import Namespace, Repository
from regcopy.retention.model import Order, PrunePlan, PruneRule, ScopeKind

__all__ = ("duration_text", "load_prune", "parse_duration", "parse_prune")

_TOP_KEYS: Final = ("version", "registries", "prune")
# A sync plan's own sections: a prune section may live in a sync plan, whose parser validates these.
_SYNC_KEYS: Final = ("sync", "defaults")
_RULE_KEYS: Final = (
    "name", "repository", "namespace", "repos", "keep_latest", "order", "protect", "older_than", "cap",
)
_ORDERS: Final[Mapping[str, Order]] = {"semver": "semver", "created": "created"}
_DURATION: Final = re.compile(r"(?:[0-9]{1,9}[smhdw])+")
_DURATION_PART: Final = re.compile(r"([0-9]+)([smhdw])")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` or sums such as ``1w3d`` as a timedelta.

    :raises ValueError: anything else, or zero
    """
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        raise ValueError(f"{short(text)} is not a duration such as 30d, 12h or 2w (units s, m, h, d, w)")
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if seconds == 0:
        raise ValueError(f"{short(text)} is zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{short(text)} is too long") from None


def duration_text(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("w", _UNITS["w"]), ("d", _UNITS["d"]), ("h", _UNITS["h"]), ("m", _UNITS["m"])):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def load_prune(path: str | Path) -> PrunePlan:
    """Read and validate a prune plan (or a sync plan with a ``prune:`` section). See :func:`parse_prune`.

    :raises ConfigError: unreadable file, YAML syntax error, invalid plan
    """
    return parse_prune(read_yaml(path, StrictLoader), str(path))


def parse_prune(data: object, path: str | None = None) -> PrunePlan:
    """Validate a loaded document and build the :class:`PrunePlan`.

    Shape: ``version`` (optional, 1), ``registries`` (optional, as in a sync plan) and ``prune``
    (required, a non-empty list of rules); a sync plan's ``sync`` and ``defaults`` may sit beside
    them and are left to :func:`regcopy.sync.load_plan`. A rule has exactly one of ``repository``
    (``host/path``) or ``namespace`` (``host[/prefix]``, repositories found through the catalog,
    optionally narrowed by ``repos: {allow, deny}``), at least one of ``keep_latest`` (positive
    integer) and ``older_than`` (``30d``, ``12h``, ``2w``), and optionally ``order`` (``semver``,
    the default, or ``created``; only with ``keep_latest``), ``protect`` (anchored regexes), ``cap``
    (positive integer: manifests deleted per repository and run) and ``name`` (default ``prune[i]``).

    :raises ConfigError: naming the file, the rule and the dotted key
    """
    top = At(path, None, None)
    if data is None:
        raise top.error("the plan is empty: it needs a 'prune' list of rules")
    doc = as_mapping(data, top, (*_TOP_KEYS, *_SYNC_KEYS))
    check_version(doc, top)
    registries = parse_registries(doc.get("registries"), path)
    items = required_list(doc, "prune", top, "rule", "rules")
    rules: list[PruneRule] = []
    names: dict[str, int] = {}
    scopes: dict[tuple[str, Repository | Namespace], str] = {}
    for i, item in enumerate(items):
        rule = _rule(item, i, path)
        at = At(path, rule.name, f"prune[{i}]")
        if rule.name in names:
            raise at.field("name").error(f"duplicate rule name {short(rule.name)} (also prune[{names[rule.name]}])")
        names[rule.name] = i
        if (rule.kind, rule.scope) in scopes:
            other = scopes[rule.kind, rule.scope]
            raise at.field(rule.kind).error(f"{rule.kind} {rule.scope.name!r} already has a rule ({other})")
        scopes[rule.kind, rule.scope] = rule.name
        rules.append(rule)
    return PrunePlan(tuple(rules), MappingProxyType(registries), path)


def _rule(item: object, i: int, path: str | None) -> PruneRule:
    name, at, item = named_item(item, "prune", i, path, "a rule must be a mapping with a repository or namespace")
    f = as_mapping(item, at, _RULE_KEYS)
    kind, scope = _scope(f, at)
    repos = RepoFilter()
    if "repos" in f:
        repos = as_repo_filter(f["repos"], at.field("repos"))
        compile_repo_filter(repos, entry=name, path=path)
    keep_latest = as_positive_int(f["keep_latest"], at.field("keep_latest")) if "keep_latest" in f else None
    order = _order(f["order"], at.field("order"), keep_latest) if "order" in f else "semver"
    older_than = _older_than(f["older_than"], at.field("older_than")) if "older_than" in f else None
    if keep_latest is None and older_than is None:
        raise at.error("give keep_latest or older_than (a rule without either would delete every unprotected tag)")
    protect: tuple[re.Pattern[str], ...] = ()
    if "protect" in f:
        protect = tuple(re.compile(p, re.ASCII) for p in as_regexes(f["protect"], at.field("protect")))
    cap = as_positive_int(f["cap"], at.field("cap")) if "cap" in f else None
    return PruneRule(name, scope, kind, keep_latest, order, protect, older_than, cap, repos)


def _scope(f: dict[str, object], at: At) -> tuple[ScopeKind, Repository | Namespace]:
    """A rule's ``repository`` (``host/path``) or ``namespace`` (``host[/prefix]``), on a registry."""
    given = [k for k in ("repository", "namespace") if k in f]
    if len(given) != 1:
        raise at.error("give exactly one of 'repository' or 'namespace'")
    kind: ScopeKind = "repository" if given[0] == "repository" else "namespace"
    text = as_string(f[kind], at.field(kind))
    if kind == "namespace":
        namespace = as_location(text.rstrip("/"), at.field(kind), what="namespace", host_required=True)
        if isinstance(namespace, LocalRepository):
            raise at.field(kind).error(f"{short(text)} is not on a registry: prune deletes from registries only")
        return kind, namespace
    hint = "a rule covers all tags of a repository; to cover many repositories use namespace"
    repo = as_repository(text, at.field(kind), what="repository", hint=hint)
    if not isinstance(repo, Repository):  # sync plans also name local stores (oci:DIR)
        raise at.field(kind).error(f"{short(text)} is not on a registry: prune deletes from registries only")
    if "repos" in f:
        raise at.field("repos").error("repos filters need a namespace (this rule is one repository)")
    return kind, repo


def _order(value: object, at: At, keep_latest: int | None) -> Order:
    if not isinstance(value, str) or value not in _ORDERS:
        shown = short(value) if isinstance(value, str) else kind_of(value)
        raise at.error(f"must be semver or created, not {shown}")
    if keep_latest is None:
        raise at.error("order ranks keep_latest: give keep_latest too")
    return _ORDERS[value]


def _older_than(value: object, at: At) -> timedelta:
    if not isinstance(value, str):
        raise at.error(f"must be a duration such as '30d', not {kind_of(value)}")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise at.error(str(exc)) from None
