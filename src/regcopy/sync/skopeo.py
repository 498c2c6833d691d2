"""skopeo sync's front doors: ``--src yaml`` files and ``--src docker SOURCE`` as a :class:`~regcopy.sync.SyncPlan`.

Owns skopeo-sync(1) semantics: :func:`from_skopeo_yaml` (registry keys, ``images``,
``images-by-tag-regex``, ``images-by-semver``, ``credentials``, ``tls-verify``, ``cert-dir``),
:func:`from_skopeo_docker`, the ``basename`` / ``scoped`` target naming and
:func:`host_platform` (skopeo without ``--all`` copies this machine's platform). Only
:func:`from_skopeo_yaml` touches the file system beyond reading the file: it lists ``cert-dir``
directories. Secrets never appear in error messages.

What a skopeo YAML file's sections and settings become:

* ``images``: ``[]`` (or null) → all tags; tags → ``TagFilter.exact``; ``algo:hex`` → ``digests``.
* ``images-by-tag-regex``: skopeo uses Go's ``regexp.MatchString``, which is *unanchored*; the
  regex is stored as ``.*(?:REGEX).*`` (leading ``(?flags)`` hoisted) so regcopy's full match
  keeps skopeo's meaning.
* ``images-by-semver``: the constraint, stored as written.
* ``credentials`` (``username``/``password`` or ``identitytoken``), ``tls-verify`` (true →
  ``https``, false → ``insecure``: unverified https or http, like c/image's skip-verify; absent →
  ``auto``, i.e. verified https except for local hosts — skopeo would keep its command-line
  setting, whose default verifies) and ``cert-dir`` (containers-certs.d(5): every ``*.crt`` a CA,
  each ``*.cert`` with its ``*.key`` a client pair; the directory is checked now) become
  :class:`~regcopy.settings.Overrides` holding only what the file sets.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar, cast

from regcopy.errors import ConfigError, InvalidReference
from regcopy.filters import TagFilter, unanchored
from regcopy.locations import AnyNamespace, AnyRepository, LocalRepository
from regcopy.planaddress import as_location, as_repository, check_no_scheme
from regcopy.planfile import (
    At,
    SkopeoLoader,
    as_digest,
    as_list,
    as_mapping,
    as_string,
    as_tag,
    check_regex,
    dedupe,
    kind_of,
    read_yaml,
    short,
)
from regcopy.reference import LocalLocation, Reference
from regcopy.settings import Credentials, Overrides
from regcopy.sync.model import Naming, SyncEntry, SyncPlan
from regcopy.sync.plan import target_repository

__all__ = ("SkopeoKind", "from_skopeo", "from_skopeo_dir", "from_skopeo_docker", "from_skopeo_yaml", "host_platform")

SkopeoKind = Literal["docker", "dir"]
"""skopeo sync's ``--dest`` kinds (``--src`` also takes ``yaml``)."""

_LEADING_FLAGS: Final = re.compile(r"\(\?([A-Za-z]+)\)")
_SKOPEO_KEYS: Final = ("images", "images-by-tag-regex", "images-by-semver", "credentials", "tls-verify", "cert-dir")
_SKOPEO_SECTIONS: Final = ("images", "images-by-tag-regex", "images-by-semver")
# types.DockerAuthConfig has no yaml tags, so yaml.v3 matches its lowercased Go field names.
_SKOPEO_CREDENTIAL_KEYS: Final = ("username", "password", "identitytoken")
# yaml.v3 decodes these YAML 1.1 words into a Go bool field (decode.go), so tls-verify accepts them.
_GO_YAML_BOOLS: Final[Mapping[str, bool]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
}
# The skopeo key each RegistrySettings field comes from (for a conflict's position).
_SKOPEO_KEY: Final[Mapping[str, str]] = {
    "scheme": "tls-verify", "cert_dir": "cert-dir",
}
# platform.machine() spellings → GOARCH[/variant], as c/image compares them with image platforms.
_ARCHES: Final[Mapping[str, str]] = {
    "x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm64",
    "armv7l": "arm/v7", "armv6l": "arm/v6", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
    "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64",
}


# --------------------------------------------------------------------------------- --src docker


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


def _destination(destination: object, kind: SkopeoKind = "docker") -> AnyNamespace:
    at = At(None, None, "destination")
    text = as_string(destination, at)
    if kind == "dir":
        return _dir_tree(text, at)
    check_no_scheme(text, at, "destination")
    # skopeo joins DESTINATION and the image with Go's path.Join, which drops a trailing '/' and
    # collapses '//' (skopeo-sync(1) itself writes 'my-registry.local.lan/repo/').
    cleaned = re.sub("/{2,}", "/", text).rstrip("/") or text
    return as_location(cleaned, at, what="destination", host_required=False)


def from_skopeo(src: str, dest: str, source: str, destination: str, *, scoped: bool, all_platforms: bool) -> SyncPlan:
    """The plan of ``skopeo sync --src SRC --dest DEST SOURCE DESTINATION`` (``SRC``: docker, yaml or dir;
    ``DEST``: docker or dir; dir to dir is refused, as skopeo does).

    :raises ConfigError: an unknown kind, dir to dir, or an invalid source or destination
    """
    at = At(None, None, "src")
    if src not in ("docker", "yaml", "dir") or dest not in ("docker", "dir"):
        raise at.error(f"skopeo sync takes --src docker, yaml or dir and --dest docker or dir, not {src}/{dest}")
    if src == "dir" == dest:
        raise at.error("sync from dir to dir is not supported (copy the directories instead)")
    if src == "dir":
        return from_skopeo_dir(source, destination, scoped=scoped, all_platforms=all_platforms)
    build = from_skopeo_yaml if src == "yaml" else from_skopeo_docker
    return build(source, destination, scoped=scoped, all_platforms=all_platforms, dest=cast(SkopeoKind, dest))


def _dir_tree(text: str, at: At) -> LocalRepository:
    """A tree of ``dir:`` image directories at ``text`` (skopeo sync ``--src dir``/``--dest dir``)."""
    try:
        return LocalRepository(LocalLocation("dir", text.rstrip("/") or text))
    except InvalidReference as exc:
        raise at.error(f"invalid directory {short(text)}: {exc.reason}") from None


def from_skopeo_dir(source: str, destination: str, *, scoped: bool, all_platforms: bool) -> SyncPlan:
    """The plan of ``skopeo sync --src dir --dest docker SOURCE DESTINATION``.

    ``SOURCE`` is a tree of ``dir:`` image directories (one holding ``manifest.json`` is an image; its
    path below ``SOURCE`` is ``NAME:TAG``, as ``--dest dir`` writes them; ``SOURCE`` itself may be one).
    Each lands at ``DESTINATION/<basename of NAME>:TAG``, or with ``--scoped`` at
    ``DESTINATION/NAME:TAG`` (skopeo's ``destSuffix``: the directory path below ``SOURCE``). One entry of
    kind ``namespace`` over the whole tree.

    :raises ConfigError: invalid source or destination (``.key`` is ``source`` or ``destination``)
    """
    at = At(None, None, "source")
    entry = SyncEntry(
        name=source, source=_dir_tree(as_string(source, at), at), target=_destination(destination),
        kind="namespace", naming="prefix" if scoped else "basename", platforms=_platform_choice(all_platforms),
    )
    return SyncPlan((entry,))


def from_skopeo_docker(source: str, destination: str, *, scoped: bool, all_platforms: bool,
                       dest: SkopeoKind = "docker") -> SyncPlan:
    """The plan of ``skopeo sync --src docker --dest docker SOURCE DESTINATION``.

    ``SOURCE`` is a docker reference (normalised as skopeo does: ``busybox`` is
    ``docker.io/library/busybox``): a repository (all its tags), ``repo:tag`` (that tag) or
    ``repo@digest`` (that digest). ``DESTINATION`` is ``registry[/path]``; a first component that is
    not a host means Docker Hub, as in skopeo. One entry of kind ``repository``, named ``SOURCE``.

    :param scoped: skopeo ``--scoped`` (``DEST/<registry>/<repository>``) instead of ``DEST/<basename>``
    :param all_platforms: skopeo ``--all``; otherwise only this machine's platform is copied
    :param dest: ``dir``: images land in the directory ``DESTINATION/<name>:<tag>/``, as skopeo writes them
    :raises ConfigError: invalid source or destination (``.key`` is ``source`` or ``destination``)
    """
    at = At(None, None, "source")
    text = as_string(source, at)
    check_no_scheme(text, at, "source")
    head = text.partition(":")[0]
    if "/" not in text and ("." in head or head == "localhost"):
        # The docker grammar would read 'reg.example:5000' as docker.io/library/reg.example, tag 5000.
        raise at.error(
            f"source {short(text)} looks like a registry host: skopeo sync --src docker copies one "
            "repository (write registry/repository); mirror a whole registry with a regcopy plan"
        )
    try:
        ref = Reference.parse(text, default_tag=None)
    except InvalidReference as exc:
        raise at.error(f"invalid source {short(text)}: {exc.reason}") from None
    if ref.tag is not None and ref.digest is not None:
        # c/image's docker transport refuses name:tag@digest as a source as well.
        raise at.error(f"source {short(text)} has both a tag and a digest; give one")
    exact, digests = (ref.tag,) if ref.tag is not None else (), (str(ref.digest),) if ref.digest is not None else ()
    tags = TagFilter(exact=exact, digests=digests) if exact or digests else TagFilter()
    entry = SyncEntry(
        name=text, source=ref.repo, target=_destination(destination, dest), kind="repository",
        naming=_naming(scoped), tags=tags, platforms=_platform_choice(all_platforms),
    )
    _check_target(entry, ref.repo, at)
    return SyncPlan((entry,))


# ----------------------------------------------------------------------------------- --src yaml


def from_skopeo_yaml(path: str | Path, destination: str, *, scoped: bool, all_platforms: bool,
                     dest: SkopeoKind = "docker") -> SyncPlan:
    """The plan of ``skopeo sync --src yaml --dest docker FILE DESTINATION`` (skopeo-sync(1)).

    Per registry key (``host[:port][/path]``): every image of ``images``, ``images-by-tag-regex``
    and ``images-by-semver`` becomes one ``repository`` entry named ``KEY/IMAGE`` (an image in
    several sections gives several entries, as in skopeo; later ones get `` (SECTION)`` appended).
    Sources are ``ParseNormalizedNamed(KEY + "/" + IMAGE)`` (``docker.io`` + ``busybox`` →
    ``docker.io/library/busybox``); targets are ``DESTINATION`` with ``basename`` or ``scoped`` naming.

    Sections and settings as the module doc says; stricter than skopeo, which logs and skips: unknown
    keys, unparsable images, tags, digests and regexes are errors, and so is a file naming no images.

    :param scoped: skopeo ``--scoped``
    :param all_platforms: skopeo ``--all``; otherwise only this machine's platform is copied
    :param dest: ``dir`` for ``--dest dir`` (as in :func:`from_skopeo_docker`)
    :raises ConfigError: unreadable or invalid file (``.entry`` is the registry key, ``.key`` the field)
    """
    name = str(path)
    target = _destination(destination, dest)
    data = read_yaml(path, SkopeoLoader)
    top = At(name, None, None)
    if data is None:
        raise top.error("no images to sync: the file is empty")
    naming, platforms = _naming(scoped), _platform_choice(all_platforms)
    entries: list[SyncEntry] = []
    registries: dict[str, Overrides] = {}
    names: set[str] = set()
    for key, block in as_mapping(data, top).items():
        at = At(name, key, None)
        host = as_location(key, at, what="registry key", host_required=True).registry
        f = as_mapping({} if block is None else block, at, _SKOPEO_KEYS)
        _merge_registry(registries, host, _skopeo_registry(f, at), at)
        entries += _image_entries(key, f, at, (target, naming, platforms), names)
    if not entries:
        raise top.error("no images to sync: no registry lists images, images-by-tag-regex or images-by-semver")
    return SyncPlan(tuple(entries), MappingProxyType(registries), name)


def _image_entries(key: str, f: dict[str, object], at: At, like: tuple[AnyNamespace, Naming, tuple[str, ...]],
                   names: set[str]) -> list[SyncEntry]:
    """The entries of one registry key: one per image of each section, in section order.

    :param like: the target, naming and platforms every entry shares
    """
    target, naming, platforms = like
    out: list[SyncEntry] = []
    for section in _SKOPEO_SECTIONS:
        images = f.get(section)
        for image, value in ({} if images is None else as_mapping(images, at.field(section))).items():
            iat = at.field(section).member(image)
            hint = "list tags and digests as the image's values" if section == "images" else "drop the tag"
            repo = as_repository(f"{key}/{image}", iat, what="image", hint=hint)
            entry = SyncEntry(_unique(f"{key}/{image}", section, names), repo, target, "repository", naming,
                              tags=_skopeo_tags(section, value, iat), platforms=platforms)
            _check_target(entry, repo, iat)
            out.append(entry)
    return out


def _unique(base: str, section: str, names: set[str]) -> str:
    name = base if base not in names else f"{base} ({section})"
    n = 2
    while name in names:
        name, n = f"{base} ({section}) #{n}", n + 1
    names.add(name)
    return name


def _skopeo_tags(section: str, value: object, at: At) -> TagFilter:
    if section == "images":
        if value is None:
            return TagFilter()
        exact, digests = [], []
        for i, item in enumerate(as_list(value, at)):
            text = as_string(item, at.index(i))
            # skopeo tries a digest first; a tag cannot contain ':', so anything with one must be a digest.
            if ":" in text:
                digests.append(as_digest(text, at.index(i)))
            else:
                exact.append(as_tag(text, at.index(i)))
        return TagFilter(exact=dedupe(exact), digests=dedupe(digests))
    if section == "images-by-semver":
        return TagFilter(semver=as_string(value, at))  # filters.py validates the constraint
    # "" is a valid regex (skopeo: every tag matches); null is refused as a likely slip.
    return TagFilter(allow=(_unanchored(value if isinstance(value, str) else as_string(value, at), at),))


def _unanchored(pattern: str, at: At) -> str:
    """skopeo matches tags with Go's ``regexp.MatchString`` (unanchored search); regcopy's TagFilter
    regexes are full matches, so :func:`regcopy.filters.unanchored` rewrites them to search again."""
    flags, body = "", pattern
    while (m := _LEADING_FLAGS.match(body)) is not None:
        flags, body = flags + m.group(1), body[m.end() :]
    if set(flags) - set("ims"):
        # Go's RE2 knows i, m, s and U; Python has no U, and x (verbose) means something else in Python.
        raise at.error(f"unsupported regex flags {short(flags)} in {short(pattern)} (supported: i, m, s)")
    check_regex(pattern, at)  # the original alone: "a)(b" would compile once wrapped
    wrapped = unanchored(pattern)
    check_regex(wrapped, at)
    return wrapped


def _skopeo_registry(f: dict[str, object], at: At) -> Overrides | None:
    """What one registry key says about its host: only the settings it gives (None: nothing)."""
    settings: dict[str, Any] = {}
    verify = f.get("tls-verify")
    if verify is not None:
        if isinstance(verify, str) and verify in _GO_YAML_BOOLS:
            verify = _GO_YAML_BOOLS[verify]
        if not isinstance(verify, bool):
            shown = short(verify) if isinstance(verify, str) else kind_of(verify)
            raise at.field("tls-verify").error(f"must be true or false, not {shown}")
        settings["scheme"] = "https" if verify else "insecure"
    credentials = None
    if f.get("credentials") is not None:
        credentials = _skopeo_credentials(f["credentials"], at.field("credentials"))
    if f.get("cert-dir") is not None:
        settings |= _cert_dir(f["cert-dir"], at.field("cert-dir"))
    said = Overrides(settings, credentials)
    return said if said else None


def _skopeo_credentials(value: object, at: At) -> Credentials | None:
    f = as_mapping(value, at, _SKOPEO_CREDENTIAL_KEYS)
    values: dict[str, str] = {}
    for k, v in f.items():
        if v is None or v == "":
            continue  # yaml.v3 leaves the Go string empty; all empty = no credentials, as in skopeo
        values[k] = as_string(v, at.field(k), secret=k != "username")
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


def _cert_dir(value: object, at: At) -> dict[str, str]:
    """containers-certs.d(5) in one directory, checked now: every ``*.crt`` a CA, each ``*.cert`` with the
    ``*.key`` of its name a client pair (:attr:`~regcopy.settings.RegistrySettings.cert_dir`; nothing
    when the directory holds neither). A ``*.cert`` without its ``*.key`` (or the reverse) is an error,
    as in c/image's tlsclientconfig.
    """
    directory = as_string(value, at)
    try:
        names = sorted(os.listdir(directory))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise at.error(f"cannot list cert-dir {short(directory)}: {reason}") from None
    present = set(names)
    for n in names:
        stem, ext = os.path.splitext(n)
        if ext == ".cert" and stem + ".key" not in present:
            raise at.error(f"missing key {stem}.key for client certificate {n} in {short(directory)}")
        if ext == ".key" and stem + ".cert" not in present:
            raise at.error(f"missing client certificate {stem}.cert for key {n} in {short(directory)}")
    if not any(n.endswith((".crt", ".cert")) for n in names):
        return {}
    return {"cert_dir": directory}


_T = TypeVar("_T")


def _pick(mine: _T, theirs: _T, unset: _T, at: At, host: str) -> _T:
    if mine != unset and theirs != unset and mine != theirs:
        raise at.error(f"conflicts with the setting another key gives registry {host!r}")
    return theirs if mine == unset else mine


def _merge_registry(registries: dict[str, Overrides], host: str, said: Overrides | None, at: At) -> None:
    # Keys like 'quay.io' and 'quay.io/coreos' share one host, hence one Overrides: a setting
    # one key leaves out is taken from the other, a setting both give must agree.
    if said is None:
        return
    known = registries.get(host)
    if known is None:
        registries[host] = said
        return
    for setting in ("scheme", "cert_dir"):
        _pick(said.settings.get(setting), known.settings.get(setting), None, at.field(_SKOPEO_KEY[setting]), host)
    credentials = _pick(said.credentials, known.credentials, None, at.field("credentials"), host)
    registries[host] = Overrides({**known.settings, **said.settings}, credentials)


def _check_target(entry: SyncEntry, source: AnyRepository, at: At) -> None:
    """Fail at plan time if a repository entry's target name cannot be made (scoped + port, length)."""
    try:
        target_repository(entry, source)
    except InvalidReference as exc:
        raise at.error(f"cannot name the target repository under {short(entry.target)}: {exc.reason}") from None
