"""``regcopy copy SRC DST...`` (also ``cp``, crane's name): one image or index between any two
locations, every tag of a repository (``--all-tags``), or one read of SRC for several DSTs.

skopeo's ``copy`` flags mean what they mean there (``-a/--all``, ``--multi-arch``, the per-side
transport and credential flags, ``--retry-times``, ``--digestfile``, ``--preserve-digests``,
``--remove-signatures``, ``-q``); those regcopy cannot honour are refused by name
(:mod:`regcopy.cli._access`). One difference, on purpose: an index is copied whole unless a flag
says otherwise (skopeo's default is this machine's platform, ``--multi-arch system``), because
regcopy never changes what a tag points to unless asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from regcopy.cli._access import REFUSED, Access, access_flags, refused_flags, retry_fields, retry_flags
from regcopy.cli._common import (
    EXIT_USAGE,
    authfile_option,
    emit,
    fail,
    insecure_option,
    make_client,
    output_option,
    progress_display,
    run_async,
    setup_logging,
    verbose_option,
)
from regcopy.cli._flags import reserve_fields, side_settings, throughput_flags
from regcopy.cli.referrers import copy_many, referrer_flags
from regcopy.errors import InvalidReference
from regcopy.reference import Reference, parse_location
from regcopy.settings import Overrides, stack

if TYPE_CHECKING:
    from regcopy import Client, ReferrerPolicy, UploadPolicy
    from regcopy.convert import Format
    from regcopy.reference import LocalLocation, Repository
    from regcopy.stores.registry import Strategy

__all__ = ()


@dataclass(frozen=True, slots=True)
class _Flags:
    """Every option of ``copy``, typed (click hands them over as keywords)."""

    all_tags: bool
    all_platforms: bool
    multi_arch: str | None
    platforms: tuple[str, ...]
    jobs: int
    images: int
    force: bool
    no_clobber: bool
    manifest_format: Format | None
    preserve_digests: bool
    remove_signatures: bool
    digestfile: str | None
    src_access: Access
    dest_access: Access
    ca_file: str | None
    retry_times: int | None
    retry_delay: float | None
    strategy: str
    chunk_size: int
    progress: str
    quiet: bool
    precompute_digests: bool
    referrers: bool
    artifact_types: tuple[str, ...]
    limit_rate: int | None
    pull_reserve: int | None
    events: str | None
    authfile: str | None
    insecure: tuple[str, ...]
    output: str
    verbose: int


@click.command(name="copy")
@click.argument("src")
@click.argument("dst", nargs=-1, required=True)
@click.option("--all", "-a", "all_platforms", is_flag=True,
              help="Every platform of an index, the index itself kept (skopeo's -a; regcopy's default).")
@click.option("--multi-arch", type=click.Choice(["system", "all", "index-only"]), default=None,
              help="An index: this machine's platform only (skopeo's default), all (regcopy's default), "
                   "or the index alone (its images must be at DST already).")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Copy only these platforms of an index (repeatable). Default: all.")
@click.option("--all-tags", is_flag=True, help="Copy every tag of SRC repository to DST repository (one DST).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=6, show_default=True, help="Blobs in flight.")
@click.option("--images", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Tags in flight with --all-tags.")
@click.option("--force", is_flag=True, help="Push even when DST already holds the same digest.")
@click.option("--no-clobber", is_flag=True, help="Refuse to overwrite a DST tag that exists (crane's flag).")
@click.option("--format", "-f", "manifest_format", type=click.Choice(["oci", "v2s2"]),
              help="Convert the manifests (new digests, said in the report).")
@click.option("--preserve-digests", is_flag=True,
              help="Fail, before writing, if the copy would change a digest (a conversion, a platform subset).")
@click.option("--remove-signatures", is_flag=True, help="Copy no signatures, SBOMs or attestations (--no-referrers).")
@click.option("--digestfile", type=click.Path(dir_okay=False), help="Write the digest of DST's manifest here.")
@access_flags("src")
@access_flags("dest")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle (PEM) for both sides.")
@retry_flags
@click.option("--upload", "strategy", type=click.Choice(["stream", "chunked", "monolithic"]), default="stream",
              show_default=True, help="Blob upload shape (falls back automatically when refused).")
@click.option("--chunk-size", type=click.IntRange(64 * 1024), default=16 * 1024 * 1024, show_default=True,
              help="Bytes per PATCH in chunked mode.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "none"]), default="auto",
              show_default=True, help="Progress display on stderr.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary (errors and -o json still print).")
@click.option("--dest-precompute-digests", "precompute_digests", is_flag=True, hidden=True,
              help="skopeo's flag; regcopy always checks DST for each blob by digest before uploading it.")
@refused_flags(REFUSED)
@referrer_flags
@throughput_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _copy(src: str, dst: tuple[str, ...], **options: Any) -> None:
    """Copy an image or index from SRC to DST: registries (docker:// optional), oci:DIR[:REF],
    oci-archive:FILE[:REF], docker-archive:FILE[:REF], dir:DIR, with the signatures, SBOMs and
    attestations that refer to it. Several DSTs get it from one read of SRC. Also `regcopy cp` (crane's name)."""
    f = _Flags(**options)
    setup_logging(f.verbose)
    src_loc, *dst_locs = _locations(src, *dst)
    platforms, index_only = _platform_choice(f)
    layer = _layer(f, src_loc, dst_locs)
    upload, policy = _policies(f)
    if len(dst_locs) > 1:
        _check_one_destination_only(f)
        copy_many(src_loc, dst_locs, platforms=platforms, jobs=f.jobs, force=f.force, policy=policy,
                  progress="none" if f.quiet else f.progress, output="quiet" if f.quiet else f.output,
                  new_client=lambda: make_client(f.authfile, f.insecure, layer, upload=upload, limit_rate=f.limit_rate),
                  src_fields=_src_fields(f), dst_fields=_fields(f.dest_access, f), events=f.events)
        return
    result = run_async(lambda: _run(f, src_loc, dst_locs[0], platforms, index_only, policy, lambda: make_client(
        f.authfile, f.insecure, layer, upload=upload, limit_rate=f.limit_rate)))
    _finish(f, result)


async def _run(f: _Flags, src_loc: Reference | LocalLocation, dst_loc: Reference | LocalLocation,
               platforms: tuple[str, ...], index_only: bool, policy: ReferrerPolicy,
               new: Callable[[], Client]) -> Any:
    """The one library call: :meth:`~regcopy.Client.copy` or :meth:`~regcopy.Client.copy_all_tags`."""
    from regcopy.cli._render import copy_summaries

    async with new() as client:
        src_settings = side_settings(client.settings, src_loc, _src_fields(f))
        dst_settings = side_settings(client.settings, dst_loc, _fields(f.dest_access, f))
        common: dict[str, Any] = {"platforms": platforms, "jobs": f.jobs, "force": f.force, "format": f.manifest_format,
                                  "src_settings": src_settings, "dst_settings": dst_settings,
                                  "preserve_digests": f.preserve_digests, "no_clobber": f.no_clobber}
        with progress_display("none" if f.quiet else f.progress, f.events) as reporter, \
                copy_summaries(reporter) as done:
            if f.all_tags:
                return done(await client.copy_all_tags(_repo(src_loc), _repo(dst_loc), images=f.images,
                                                       reporter=reporter, referrers=policy, **common))
            return done(await client.copy(src_loc, dst_loc, reporter=reporter, referrers=policy,
                                          index_only=index_only, **common))


def _finish(f: _Flags, result: Any) -> None:
    from regcopy.cli._render import copy_summary

    results = result if isinstance(result, list) else [result]
    if f.digestfile:
        # skopeo writes the bare digest, without a newline.
        Path(f.digestfile).write_text(results[0].digest)
    data = [r.to_json() for r in results]
    if f.quiet and f.output != "json":
        return
    emit(data if f.all_tags else data[0], f.output, lambda: "\n".join(copy_summary(r) for r in results), f.events)


def _platform_choice(f: _Flags) -> tuple[tuple[str, ...], bool]:
    """The platforms to keep and whether only the index is copied, from -a, --multi-arch and --platform."""
    said = [name for name, on in (("--all", f.all_platforms), ("--platform", bool(f.platforms)),
                                  ("--multi-arch", f.multi_arch is not None)) if on]
    if len(said) > 1 and not (said == ["--all", "--multi-arch"] and f.multi_arch == "all"):
        fail(f"{said[0]} and {said[1]} contradict each other: give one", EXIT_USAGE)
    if f.multi_arch == "system":
        from regcopy.client import host_platform

        return (str(host_platform()),), False
    return f.platforms, f.multi_arch == "index-only"


def _fields(access: Access, f: _Flags) -> dict[str, Any]:
    """One side's settings fields for this copy: its flags, ``--ca-file``, the retry flags."""
    return access.fields() | ({"ca_file": f.ca_file} if f.ca_file else {}) | retry_fields(f.retry_times, f.retry_delay)


def _src_fields(f: _Flags) -> dict[str, Any]:
    """The source side's fields: :func:`_fields` and ``--pull-reserve`` (pulls are spent on the source)."""
    return _fields(f.src_access, f) | reserve_fields(f.pull_reserve)


def _layer(f: _Flags, src: Reference | LocalLocation, dsts: list[Reference | LocalLocation]) -> dict[str, Overrides]:
    """The client's overrides for the hosts of both sides (the destination's win on a shared host)."""
    src_layer = f.src_access.layer(_hosts([src]), _fields(f.src_access, f))
    dst_layer = f.dest_access.layer(_hosts(dsts), _fields(f.dest_access, f))
    for host in src_layer.keys() & dst_layer.keys():
        ours, theirs = src_layer[host].credentials, dst_layer[host].credentials
        if ours is not None and theirs is not None and ours != theirs:
            fail(f"the source and destination are both on {host}: give that host one set of credentials", EXIT_USAGE)
    return stack(src_layer, dst_layer)


def _hosts(locations: list[Reference | LocalLocation]) -> list[str]:
    return [loc.registry for loc in locations if isinstance(loc, Reference)]


def _check_one_destination_only(f: _Flags) -> None:
    for name, on in (("--all-tags", f.all_tags), ("--digestfile", bool(f.digestfile)), ("--no-clobber", f.no_clobber),
                     ("--multi-arch index-only", f.multi_arch == "index-only"), ("--format", bool(f.manifest_format)),
                     ("--preserve-digests", f.preserve_digests)):
        if on:
            fail(f"{name} takes one DST", EXIT_USAGE)


def _policies(f: _Flags) -> tuple[UploadPolicy, ReferrerPolicy]:
    from regcopy import ReferrerPolicy, UploadPolicy

    upload = UploadPolicy(strategy=cast("Strategy", f.strategy), chunk_size=f.chunk_size)  # click checked it
    return upload, ReferrerPolicy(enabled=f.referrers and not f.remove_signatures, artifact_types=f.artifact_types)


def _locations(*texts: str, default_tag: str | None = None) -> list[Any]:
    try:
        return [parse_location(t, default_tag=default_tag) for t in texts]
    except InvalidReference as exc:
        fail(str(exc), EXIT_USAGE)


def _repo(loc: object) -> Repository:
    if not isinstance(loc, Reference):
        raise InvalidReference(str(loc), "--all-tags needs registry repositories", part="transport")
    if loc.tag or loc.digest:
        raise InvalidReference(str(loc), "--all-tags takes a repository without tag or digest", part="tag")
    return loc.repo
