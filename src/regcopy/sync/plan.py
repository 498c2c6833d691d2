"""regcopy's own plan file: :func:`load_plan` / :func:`parse_plan` build a :class:`~regcopy.sync.model.SyncPlan`.

Owns the ``version``, ``defaults`` and ``sync`` sections (entries, tag filters, ``delete_extra``)
and :func:`target_repository`, the naming rule the scheduler applies per discovered repository.
Validation is strict: unknown keys, wrong types, bad references, regexes, digests and platforms
are all :class:`~regcopy.errors.ConfigError` naming the file, the entry and the dotted key. The
``registries:`` section is :mod:`regcopy.plansettings`'s, the checks are :mod:`regcopy.planfile`'s;
a ``prune:`` section is left to :mod:`regcopy.retention`. Semver constraints are stored as
written; :mod:`regcopy.filters` validates and applies them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final

from regcopy.errors import InvalidReference
from regcopy.filters import RepoFilter, TagFilter
from regcopy.locations import Address, AnyRepository, LocalRepository
from regcopy.planaddress import as_location, as_repository
from regcopy.planfile import (
    At,
    StrictLoader,
    as_digest,
    as_list,
    as_mapping,
    as_platforms,
    as_positive_int,
    as_regexes,
    as_repo_filter,
    as_string,
    as_tag,
    check_version,
    dedupe,
    kind_of,
    named_item,
    read_yaml,
    required_list,
    short,
)
from regcopy.plansettings import parse_registries
from regcopy.reference import Repository
from regcopy.sync.model import DEFAULT_DELETE_EXTRA_CAP, DeleteExtra, SourceKind, SyncEntry, SyncPlan

__all__ = ("load_plan", "parse_plan", "target_repository")

_KINDS: Final[Mapping[str, SourceKind]] = {"repository": "repository", "namespace": "namespace", "registry": "registry"}
_TOP_KEYS: Final = ("version", "registries", "defaults", "sync", "prune")  # prune: read by regcopy.retention
_DEFAULT_KEYS: Final = ("tags", "platforms", "repos", "referrers", "artifact_types", "targets")
_ENTRY_KEYS: Final = ("name", "source", "target", "type", "tags", "platforms", "repos", "delete_extra", "targets",
                      "referrers", "artifact_types")
_DELETE_EXTRA_KEYS: Final = ("protect", "cap")
_TAG_KEYS: Final = ("allow", "deny", "semver", "latest", "exact", "digests")
_MEDIA_TYPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


# --------------------------------------------------------------------------------------- naming


def target_repository(entry: SyncEntry, source: AnyRepository) -> AnyRepository:
    """Where one source repository of ``entry`` lands (naming rules of SyncEntry).

    * ``prefix``, kind ``repository``: ``entry.target`` itself.
    * ``prefix``, kind ``namespace``/``registry``: the source path prefix is replaced by the target
      path (``quay.io/ns`` → ``dst/m``: ``ns/app/x`` → ``dst/m/app/x``; a bare-host source puts the
      whole repository path under the target).
    * ``basename``: target + the last component of the source path (``org/app`` → ``dst/app``).
    * ``scoped``: target + source registry + source path (``dst/m/quay.io/org/app``).

    The result is normalised like any repository (``docker.io/app`` → ``docker.io/library/app``).
    Local stores take part the same way (:mod:`regcopy.locations`): a target ``oci:DIR`` puts
    ``ns/app`` at ``oci:DIR:ns/app``, and a kind ``repository`` target ``oci:DIR`` holds bare tags.

    :param entry: the plan entry the repository was found for
    :param source: the repository, on the entry's source registry or in its source store
    :raises InvalidReference: ``source`` is not under the entry's source namespace, or the resulting
        name is invalid (e.g. scoped under a source registry with a ``:port``)
    """
    target = entry.target
    if entry.naming == "prefix" and entry.kind == "repository":
        assert isinstance(target, Repository | LocalRepository)  # SyncEntry checks its kinds
        return target
    assert not isinstance(target, Repository)
    path = "/".join(p for p in (target.path, _below_target(entry, source)) if p)
    if not path and not isinstance(target, LocalRepository):
        raise InvalidReference(str(target), f"no repository path for {source.path!r}", part="repository")
    return target.at(path)


def _below_target(entry: SyncEntry, source: AnyRepository) -> str:
    """What :func:`target_repository` puts under the target path, by the entry's naming rule."""
    if entry.naming == "basename":
        return source.path.rpartition("/")[2]
    if entry.naming == "scoped":
        return f"{source.registry}/{source.path}"
    prefix = entry.source.path
    if not prefix:
        return source.path
    if source.path == prefix:
        return ""
    if source.path.startswith(prefix + "/"):
        return source.path[len(prefix) + 1 :]
    raise InvalidReference(source.path, f"not a repository under {entry.source}", part="repository")


# ----------------------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class _Defaults:
    tags: TagFilter | None = None
    platforms: tuple[str, ...] | None = None
    repos: RepoFilter | None = None
    referrers: bool | None = None
    artifact_types: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None


def load_plan(path: str | Path) -> SyncPlan:
    """Read and validate a regcopy plan file (YAML; JSON is YAML too). See :func:`parse_plan`.

    :raises ConfigError: unreadable file, YAML syntax error (with line and column), invalid plan
    """
    return parse_plan(read_yaml(path, StrictLoader), path=str(path))


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
    top = At(path, None, None)
    if data is None:
        raise top.error("the plan is empty: it needs a 'sync' list of entries")
    if not isinstance(data, dict):
        raise top.error(f"a plan must be a mapping with a 'sync' list, not {kind_of(data)}")
    doc = as_mapping(data, top, _TOP_KEYS)
    check_version(doc, top)
    registries = parse_registries(doc.get("registries"), path)
    defaults = _defaults(doc.get("defaults"), At(path, "defaults", "defaults"))
    items = required_list(doc, "sync", top, "entry", "entries")
    entries: list[SyncEntry] = []
    first_use: dict[str, int] = {}
    for i, item in enumerate(items):
        for entry in _entries(item, i, defaults, path):
            if entry.name in first_use:
                at = At(path, entry.name, f"sync[{i}].name")
                raise at.error(f"duplicate entry name {short(entry.name)} (also sync[{first_use[entry.name]}])")
            first_use[entry.name] = i
            entries.append(entry)
    return SyncPlan(tuple(entries), MappingProxyType(registries), path)


def _tag_filter(value: object, at: At) -> TagFilter:
    f = as_mapping(value, at, _TAG_KEYS)
    semver = as_string(f["semver"], at.field("semver")) if "semver" in f else None  # filters.py validates it
    latest = as_positive_int(f["latest"], at.field("latest")) if "latest" in f else None
    exact: list[str] = []
    if "exact" in f:
        exact = [as_tag(t, at.field("exact").index(i)) for i, t in enumerate(as_list(f["exact"], at.field("exact")))]
    digests: list[str] = []
    if "digests" in f:
        items = as_list(f["digests"], at.field("digests"))
        digests = [as_digest(d, at.field("digests").index(i)) for i, d in enumerate(items)]
    return TagFilter(
        allow=as_regexes(f["allow"], at.field("allow")) if "allow" in f else (),
        deny=as_regexes(f["deny"], at.field("deny")) if "deny" in f else (),
        semver=semver, latest=latest, exact=dedupe(exact), digests=dedupe(digests),
    )


def _defaults(value: object, at: At) -> _Defaults:
    if value is None:  # 'defaults:' with everything commented out
        return _Defaults()
    f = as_mapping(value, at, _DEFAULT_KEYS)
    return _Defaults(
        tags=_tag_filter(f["tags"], at.field("tags")) if "tags" in f else None,
        platforms=as_platforms(f["platforms"], at.field("platforms")) if "platforms" in f else None,
        repos=as_repo_filter(f["repos"], at.field("repos")) if "repos" in f else None,
        referrers=_as_bool(f["referrers"], at.field("referrers")) if "referrers" in f else None,
        artifact_types=_as_types(f["artifact_types"], at.field("artifact_types")) if "artifact_types" in f else None,
        targets=_as_targets(f["targets"], at.field("targets")) if "targets" in f else None,
    )


def _as_bool(value: object, at: At) -> bool:
    if not isinstance(value, bool):
        raise at.error(f"must be true or false, not {kind_of(value)}")
    return value


def _as_types(value: object, at: At) -> tuple[str, ...]:
    """Artifact (media) types: ``type/subtype`` strings."""
    items = [as_string(v, at.index(i)) for i, v in enumerate(as_list(value, at))]
    for i, text in enumerate(items):
        if not _MEDIA_TYPE.fullmatch(text):
            raise at.index(i).error(f"{short(text)} is not a media type (type/subtype)")
    return dedupe(items)


def _as_targets(value: object, at: At) -> tuple[str, ...]:
    items = [as_string(v, at.index(i)) for i, v in enumerate(as_list(value, at))]
    if not items:
        raise at.error("needs at least one target")
    if len(set(items)) != len(items):
        raise at.error("lists a target twice")
    return tuple(items)


def _entries(item: object, i: int, defaults: _Defaults, path: str | None) -> list[SyncEntry]:
    """One entry per target: ``target: X``, or ``targets: [A, B, C]`` (fan-out: the scheduler reads
    the source once for all of them), or the defaults' ``targets``."""
    name, at, mapping = named_item(item, "sync", i, path, "an entry must be a mapping with source and target")
    if "target" in mapping and "targets" in mapping:
        raise at.field("targets").error("give target or targets, not both")
    listed: tuple[str, ...] | None = None
    if "targets" in mapping:
        listed = _as_targets(mapping["targets"], at.field("targets"))
    elif "target" not in mapping and defaults.targets:
        listed = defaults.targets
    if listed is None:
        return [_entry(item, i, defaults, path)]
    rest = {k: v for k, v in mapping.items() if k != "targets"}
    out = []
    for target in listed:
        one = _entry({**rest, "target": target}, i, defaults, path)
        out.append(replace(one, name=f"{name}→{target}"))
    return out


def _entry(item: object, i: int, defaults: _Defaults, path: str | None) -> SyncEntry:
    name, at, item = named_item(item, "sync", i, path, "an entry must be a mapping with source and target")
    f = as_mapping(item, at, _ENTRY_KEYS)
    kind: SourceKind = "repository"
    if "type" in f:
        text = f["type"]
        if not isinstance(text, str) or text not in _KINDS:
            shown = short(text) if isinstance(text, str) else kind_of(text)
            raise at.field("type").error(f"must be one of {', '.join(_KINDS)}, not {shown}")
        kind = _KINDS[text]
    for required in ("source", "target"):
        if required not in f:
            raise at.field(required).error(f"missing required key {required!r}")
    source, target = _addresses(f, at, kind)
    tags = _tag_filter(f["tags"], at.field("tags")) if "tags" in f else (defaults.tags or TagFilter())
    platforms = as_platforms(f["platforms"], at.field("platforms")) if "platforms" in f else (defaults.platforms or ())
    repos = RepoFilter()
    if kind != "repository":
        repos = as_repo_filter(f["repos"], at.field("repos")) if "repos" in f else (defaults.repos or RepoFilter())
    delete_extra = None
    if "delete_extra" in f:
        delete_extra = _delete_extra(f["delete_extra"], at.field("delete_extra"))
        if delete_extra is not None and isinstance(target, LocalRepository):
            raise at.field("delete_extra").error("needs a registry target (a local store is written afresh)")
    referrers, types = _referrer_keys(f, at, defaults)
    return SyncEntry(name, source, target, kind, "prefix", repos, tags, platforms, delete_extra, referrers, types)


def _referrer_keys(f: dict[str, object], at: At, defaults: _Defaults) -> tuple[bool, tuple[str, ...]]:
    referrers = _as_bool(f["referrers"], at.field("referrers")) if "referrers" in f else defaults.referrers
    types = (_as_types(f["artifact_types"], at.field("artifact_types")) if "artifact_types" in f
             else defaults.artifact_types or ())
    return referrers is not False, types


def _addresses(f: dict[str, object], at: At, kind: SourceKind) -> tuple[Address, Address]:
    """An entry's source and target: repositories for kind repository, else namespaces."""
    source_text = as_string(f["source"], at.field("source"))
    target_text = as_string(f["target"], at.field("target"))
    if kind == "repository":
        hint = "to mirror a whole registry set type: registry; to copy one tag write tags: {exact: [TAG]}"
        source = as_repository(source_text, at.field("source"), what="source", hint=hint)
        hint = "the target of a repository entry is a repository; tags keep their names"
        target = as_repository(target_text, at.field("target"), what="target", hint=hint)
        if "repos" in f:
            raise at.field("repos").error("repos filters need type: namespace or registry (this is one repository)")
        return source, target
    what = f"{kind} source"
    return (as_location(source_text, at.field("source"), what=what, host_required=kind == "registry"),
            as_location(target_text, at.field("target"), what="target", host_required=False))


def _delete_extra(value: object, at: At) -> DeleteExtra | None:
    """``true``/``false``, or ``{protect: [regex…], cap: N}`` (which means true); ``cap`` defaults to
    :data:`~regcopy.sync.model.DEFAULT_DELETE_EXTRA_CAP`, ``cap: null`` lifts it."""
    if isinstance(value, bool):
        return DeleteExtra(cap=DEFAULT_DELETE_EXTRA_CAP) if value else None
    if not isinstance(value, dict):
        raise at.error(f"must be true, false or a mapping with protect and cap, not {kind_of(value)}")
    f = as_mapping(value, at, _DELETE_EXTRA_KEYS)
    protect = as_regexes(f["protect"], at.field("protect")) if "protect" in f else ()
    cap: int | None = DEFAULT_DELETE_EXTRA_CAP
    if "cap" in f:
        cap = None if f["cap"] is None else as_positive_int(f["cap"], at.field("cap"))
    return DeleteExtra(protect, cap)
