"""``regcopy copy SRC DST...`` (also ``cp``, crane's name): one image or index between any two
locations, every tag of a repository (``--all-tags``), or one read of SRC for several DSTs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import click

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
from regcopy.cli._flags import side_fields, side_settings
from regcopy.cli.referrers import copy_many, referrer_flags
from regcopy.errors import InvalidReference
from regcopy.reference import Reference, parse_location

if TYPE_CHECKING:
    from regcopy import ReferrerPolicy, UploadPolicy
    from regcopy.convert import Format
    from regcopy.reference import Repository
    from regcopy.stores.registry import Strategy

__all__ = ()


@click.command(name="copy")
@click.argument("src")
@click.argument("dst", nargs=-1, required=True)
@click.option("--all-tags", "-a", is_flag=True, help="Copy every tag of SRC repository to DST repository (one DST).")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Copy only these platforms of an index (repeatable). Default: all.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=6, show_default=True, help="Blobs in flight.")
@click.option("--images", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Tags in flight with --all-tags.")
@click.option("--force", is_flag=True, help="Push even when DST already holds the same digest.")
@click.option("--format", "-f", "manifest_format", type=click.Choice(["oci", "v2s2"]), help="Convert manifests.")
@click.option("--src-tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True,
              help="false: allow http and unverified https for the source (skopeo compatible).")
@click.option("--dest-tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True,
              help="false: allow http and unverified https for the destination.")
@click.option("--src-cert-dir", type=click.Path(file_okay=False), help="Dir with *.crt CAs / *.cert+*.key.")
@click.option("--dest-cert-dir", type=click.Path(file_okay=False), help="Dir with *.crt CAs / *.cert+*.key.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle (PEM) for both sides.")
@click.option("--upload", "strategy", type=click.Choice(["stream", "chunked", "monolithic"]), default="stream",
              show_default=True, help="Blob upload shape (falls back automatically when refused).")
@click.option("--chunk-size", type=click.IntRange(64 * 1024), default=16 * 1024 * 1024, show_default=True,
              help="Bytes per PATCH in chunked mode.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "none"]), default="auto",
              show_default=True, help="Progress display on stderr.")
@referrer_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _copy(src: str, dst: tuple[str, ...], all_tags: bool, platforms: tuple[str, ...], jobs: int, images: int,
          force: bool, manifest_format: Format | None, src_tls_verify: bool | None, dest_tls_verify: bool | None,
          src_cert_dir: str | None, dest_cert_dir: str | None, ca_file: str | None, strategy: str, chunk_size: int,
          progress: str, referrers: bool, artifact_types: tuple[str, ...], authfile: str | None,
          insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Copy an image or index from SRC to DST: registries (docker:// optional), oci:DIR[:REF],
    oci-archive:FILE[:REF], docker-archive:FILE[:REF], dir:DIR, with the signatures, SBOMs and
    attestations that refer to it. Several DSTs get it from one read of SRC. Also `regcopy cp` (crane's name)."""
    from regcopy.cli._render import copy_summary

    setup_logging(verbose)
    upload, policy = _policies(strategy, chunk_size, referrers, artifact_types)
    src_loc, *dst_locs = _locations(src, *dst)
    if len(dst_locs) > 1:
        if all_tags:
            fail("--all-tags takes one DST", EXIT_USAGE)
        copy_many(src_loc, dst_locs, platforms=platforms, jobs=jobs, force=force, policy=policy, progress=progress,
                  authfile=authfile, insecure=insecure, output=output, upload=upload,
                  sides=(src_tls_verify, dest_tls_verify, src_cert_dir, dest_cert_dir, ca_file))
        return
    dst_loc = dst_locs[0]

    async def run() -> Any:
        async with make_client(authfile, insecure, upload=upload) as client:
            src_settings = side_settings(client.settings, src_loc, side_fields(src_tls_verify, src_cert_dir, ca_file))
            dst_settings = side_settings(client.settings, dst_loc,
                                         side_fields(dest_tls_verify, dest_cert_dir, ca_file))
            with progress_display(progress) as reporter:
                if all_tags:
                    return await client.copy_all_tags(
                        _repo(src_loc), _repo(dst_loc), jobs=jobs, images=images, reporter=reporter,
                        platforms=platforms, force=force, src_settings=src_settings, dst_settings=dst_settings,
                        format=manifest_format)
                return await client.copy(src_loc, dst_loc, platforms=platforms, jobs=jobs, reporter=reporter,
                                         force=force, src_settings=src_settings, dst_settings=dst_settings,
                                         referrers=policy, format=manifest_format)

    result = run_async(run)
    results = result if isinstance(result, list) else [result]
    data = [r.to_json() for r in results]
    emit(data if all_tags else data[0], output, lambda: "\n".join(copy_summary(r) for r in results))


def _policies(strategy: str, chunk_size: int, referrers: bool,
              artifact_types: tuple[str, ...]) -> tuple[UploadPolicy, ReferrerPolicy]:
    from regcopy import ReferrerPolicy, UploadPolicy

    upload = UploadPolicy(strategy=cast("Strategy", strategy), chunk_size=chunk_size)  # click checked the choice
    return upload, ReferrerPolicy(enabled=referrers, artifact_types=artifact_types)


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
