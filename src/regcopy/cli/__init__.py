"""The ``regcopy`` command line: flags → one library call → rendering. No logic of its own.

Exit codes: 0 success, 1 failure (or out of sync with ``--check``), 2 usage or configuration
error, 130 interrupted (SIGINT), 143 terminated (SIGTERM): both signals cancel the run, which cleans
up and writes its report first (:mod:`regcopy.interrupt`). Logs go to stderr (``-v`` INFO, ``-vv``
DEBUG); machine output to stdout. What every command shares (the runner, exit codes, options) is
:mod:`regcopy.cli._common`; ``referrers`` and ``copy``'s fan-out are :mod:`regcopy.cli.referrers`, the
scale-out commands :mod:`regcopy.cli.scale`; this module registers them all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import click

from regcopy import ReferrerPolicy, __version__
from regcopy.cli import _flags as opt
from regcopy.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
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
from regcopy.cli._flags import side_layer
from regcopy.cli._render import copy_summaries, copy_summary, prune_table, sync_summary
from regcopy.cli.referrers import copy_many, referrer_flags, referrers_command
from regcopy.cli.scale import CliHooks, ScaleFlags, report_group, scale_flags, scaled_sync
from regcopy.client import Client
from regcopy.convert import Format
from regcopy.errors import ConfigError, InvalidReference
from regcopy.interrupt import Interrupted, handle_signals
from regcopy.reference import Reference, Repository, parse_location
from regcopy.retention import PruneReport, load_prune
from regcopy.settings import Layer, Overrides, SchemeMode, stack
from regcopy.stores.registry import Strategy, UploadPolicy
from regcopy.sync import (
    SyncJournal,
    SyncOptions,
    SyncPlan,
    SyncReport,
    load_plan,
)
from regcopy.sync.skopeo import from_skopeo

__all__ = ("EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "cli", "main")

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regcopy")
def cli() -> None:
    """Copy container images between OCI/Docker registries, fast and safely."""


@cli.command(name="copy")
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
@opt.throughput_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _copy(src: str, dst: tuple[str, ...], all_tags: bool, platforms: tuple[str, ...], jobs: int, images: int,
          force: bool, manifest_format: Format | None, src_tls_verify: bool | None, dest_tls_verify: bool | None,
          src_cert_dir: str | None, dest_cert_dir: str | None, ca_file: str | None, strategy: str, chunk_size: int,
          progress: str, referrers: bool, artifact_types: tuple[str, ...], limit_rate: int | None,
          pull_reserve: int | None, events: str | None, authfile: str | None, insecure: tuple[str, ...],
          output: str, verbose: int) -> None:
    """Copy an image or index from SRC to DST: registries (docker:// optional), oci:DIR[:REF],
    oci-archive:FILE[:REF], docker-archive:FILE[:REF], dir:DIR, with the signatures, SBOMs and
    attestations that refer to it. Several DSTs get it from one read of SRC."""
    setup_logging(verbose)
    upload = UploadPolicy(strategy=cast(Strategy, strategy), chunk_size=chunk_size)  # click checked the choice
    policy = ReferrerPolicy(enabled=referrers, artifact_types=artifact_types)
    src_loc, *dst_locs = _locations(src, *dst)
    sides = (src_tls_verify, dest_tls_verify, src_cert_dir, dest_cert_dir, ca_file)
    if len(dst_locs) > 1:
        if all_tags:
            fail("--all-tags takes one DST", EXIT_USAGE)
        copy_many(src_loc, dst_locs, platforms=platforms, jobs=jobs, force=force, policy=policy, progress=progress,
                  authfile=authfile, insecure=insecure, output=output, upload=upload, sides=sides,
                  throughput=(limit_rate, pull_reserve, events))
        return
    dst_loc = dst_locs[0]

    async def run() -> Any:
        async with make_client(authfile, insecure, upload=upload, limit_rate=limit_rate) as client:
            src_settings, dst_settings = opt.copy_sides(client.settings, src_loc, dst_loc, sides, pull_reserve)
            with progress_display(progress, events) as reporter, copy_summaries(reporter) as done:
                if all_tags:
                    return done(await client.copy_all_tags(
                        _repo(src_loc), _repo(dst_loc), jobs=jobs, images=images, reporter=reporter,
                        platforms=platforms, force=force, src_settings=src_settings, dst_settings=dst_settings,
                        format=manifest_format))
                return done(await client.copy(src_loc, dst_loc, platforms=platforms, jobs=jobs, reporter=reporter,
                                              force=force, src_settings=src_settings, dst_settings=dst_settings,
                                              referrers=policy, format=manifest_format))

    result = run_async(run)
    results = result if isinstance(result, list) else [result]
    data = [r.to_json() for r in results] if all_tags else results[0].to_json()
    emit(data, output, lambda: "\n".join(copy_summary(r) for r in results), events)


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


@cli.command(name="ping")
@click.argument("registry")
@click.option("--scheme", type=click.Choice(["auto", "https", "https-insecure", "http", "insecure"]),
              default="auto", show_default=True, help="Scheme policy for the probe.")
@click.option("--ca-file", type=click.Path(dir_okay=False), help="Extra CA bundle (PEM).")
@click.option("--grace", type=float, default=0.2, show_default=True,
              help="Seconds https may answer after http and still win.")
@authfile_option
@output_option
@verbose_option
def _ping(registry: str, scheme: str, ca_file: str | None, grace: float, authfile: str | None, output: str,
         verbose: int) -> None:
    """Probe REGISTRY's /v2/ and print which scheme won, why, and the timings."""
    setup_logging(verbose)
    forced = None
    for prefix in ("http://", "https://"):
        if registry.startswith(prefix):
            forced, registry = prefix[:-3], registry[len(prefix):]
    registry = registry.rstrip("/")
    flags = Overrides({"scheme": cast(SchemeMode, scheme), "race_grace": grace, "ca_file": ca_file})

    async def run() -> Any:
        async with Client(authfile=authfile, overrides={registry: flags}) as client:
            return await client.ping(registry, scheme=forced)

    result = run_async(run)
    data = {
        "registry": result.registry, "scheme": result.scheme, "status": result.status, "reason": result.reason,
        "auth": result.challenge.scheme if result.challenge else None,
        "probes": [{"scheme": p.scheme, "status": p.status, "seconds": round(p.seconds, 4), "error": p.error}
                   for p in result.probes],
    }

    def text() -> str:
        lines = [f"{result.registry}: {result.scheme} (HTTP {result.status}) - {result.reason}"]
        for p in result.probes:
            outcome = f"HTTP {p.status}" if p.status is not None else p.error
            lines.append(f"  {p.scheme:5} {p.seconds * 1000:8.1f} ms  {outcome}")
        return "\n".join(lines)

    emit(data, output, text)


@cli.command(name="ls")
@click.argument("repository")
@click.option("--filter", "pattern", help="Keep tags fully matching this regex.")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _ls(repository: str, pattern: str | None, authfile: str | None, insecure: tuple[str, ...], output: str,
       verbose: int) -> None:
    """List the tags of REPOSITORY, sorted."""
    import re

    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None

    async def run() -> list[str]:
        async with make_client(authfile, insecure) as client:
            return await client.tags(repository)

    tags = [t for t in run_async(run) if regex is None or regex.fullmatch(t)]
    emit(tags, output, lambda: "\n".join(tags))


@cli.command(name="catalog")
@click.argument("registry")
@click.option("--filter", "pattern", help="Keep repositories fully matching this regex.")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _catalog_cmd(registry: str, pattern: str | None, authfile: str | None, insecure: tuple[str, ...], output: str,
                verbose: int) -> None:
    """List the repositories of REGISTRY (/v2/_catalog), sorted."""
    import re

    setup_logging(verbose)
    regex = re.compile(pattern) if pattern else None

    async def run() -> list[str]:
        async with make_client(authfile, insecure) as client:
            return await client.catalog(registry.removeprefix("docker://").rstrip("/"))

    repos = [r for r in run_async(run) if regex is None or regex.fullmatch(r)]
    emit(repos, output, lambda: "\n".join(repos))


@cli.command(name="manifest")
@click.argument("reference")
@click.option("--platform", help="With an index: print the manifest of this os/arch[/variant].")
@click.option("--pretty", is_flag=True, help="Indent the JSON (the raw bytes are printed by default).")
@authfile_option
@insecure_option
@verbose_option
def _manifest_cmd(reference: str, platform: str | None, pretty: bool, authfile: str | None,
                 insecure: tuple[str, ...], verbose: int) -> None:
    """Print the manifest REFERENCE points to, byte for byte (or --pretty)."""
    setup_logging(verbose)

    async def run() -> bytes:
        async with make_client(authfile, insecure) as client:
            return (await client.manifest(reference, platform=platform)).data

    data = run_async(run)
    if pretty:
        click.echo(json.dumps(json.loads(data), indent=2))
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@cli.command(name="inspect")
@click.argument("reference")
@click.option("--platform", help="With an index: the image of this os/arch[/variant] (default: this machine's).")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _inspect_cmd(reference: str, platform: str | None, authfile: str | None, insecure: tuple[str, ...],
                output: str, verbose: int) -> None:
    """Show an image's platform, creation time, labels, layers and total size."""
    setup_logging(verbose)

    async def run() -> Any:
        async with make_client(authfile, insecure) as client:
            return await client.inspect(reference, platform=platform)

    info = run_async(run)

    def text() -> str:
        plat = "/".join(p for p in (info.os, info.architecture, info.variant) if p)
        lines = [f"{info.reference}", f"  digest   {info.digest}", f"  platform {plat}",
                 f"  created  {info.created}", f"  size     {info.total_size} bytes in {len(info.layers)} layers"]
        lines.extend(f"  label    {k}={v}" for k, v in sorted(info.labels.items()))
        lines.extend(f"  layer    {layer.digest} {layer.size}" for layer in info.layers)
        return "\n".join(lines)

    emit(info.to_json(), output, text)


@cli.command(name="tag")
@click.argument("reference")
@click.argument("new_tag")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _tag_cmd(reference: str, new_tag: str, authfile: str | None, insecure: tuple[str, ...], output: str,
            verbose: int) -> None:
    """Point NEW_TAG (same repository) at REFERENCE: one manifest PUT, no blob traffic."""
    setup_logging(verbose)

    async def run() -> str:
        async with make_client(authfile, insecure) as client:
            return str(await client.tag(reference, new_tag))

    digest_text = run_async(run)
    emit({"reference": reference, "tag": new_tag, "digest": digest_text}, output,
          lambda: f"tagged {new_tag} -> {digest_text}")


@cli.command(name="delete")
@click.argument("reference")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _delete_cmd(reference: str, authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Delete the manifest REFERENCE points to (a tag is resolved to its digest; every tag on it goes)."""
    setup_logging(verbose)

    async def run() -> Any:
        async with make_client(authfile, insecure) as client:
            return await client.delete(reference)

    result = run_async(run)

    def text() -> str:
        tags = ", ".join(result.tags) or "none"
        return f"deleted {result.repository}@{result.digest} (tags that pointed at it, now gone: {tags})"

    emit({"repository": result.repository, "digest": result.digest, "tags": result.tags}, output, text)


@cli.command(name="prune")
@click.argument("plan_path", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--dry-run/--no-dry-run", "dry_run", default=None,
              help="Only show what would be deleted (the default); --no-dry-run (or --yes) deletes.")
@click.option("--yes", "-y", is_flag=True, help="Delete for real (same as --no-dry-run).")
@click.option("--cap", type=click.IntRange(0), default=None, help="At most N manifest deletions in this run.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--show-kept", is_flag=True, help="List the kept tags too, with the reason.")
@authfile_option
@insecure_option
@output_option
@verbose_option
def _prune_cmd(plan_path: str, dry_run: bool | None, yes: bool, cap: int | None, report_path: str | None,
              show_kept: bool, authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Delete tags by a retention PLAN (a prune plan, or a sync plan with a prune section): keep the
    latest N by semver or created time, protected tags and anything newer than an age. A dry run
    unless --yes or --no-dry-run."""
    setup_logging(verbose)
    if dry_run and yes:
        fail("--dry-run and --yes contradict each other", EXIT_USAGE)
    dry = not yes if dry_run is None else dry_run
    try:
        plan = load_prune(plan_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    report = PruneReport(dry_run=dry)

    async def run() -> None:
        async with make_client(authfile, insecure) as client:
            try:
                await client.prune(plan, dry_run=dry, cap=cap, report=report)
            except anyio.get_cancelled_exc_class():
                report.interrupted = True
                raise

    try:
        run_async(run)
    finally:
        if report_path:
            Path(report_path).write_text(json.dumps(report.to_json(), indent=2))
    emit(report.to_json(), output, lambda: prune_table(report, show_kept))
    if not report.ok:
        sys.exit(EXIT_FAILED)


@cli.command(name="digest")
@click.argument("reference")
@authfile_option
@insecure_option
@verbose_option
def _digest(reference: str, authfile: str | None, insecure: tuple[str, ...], verbose: int) -> None:
    """Print the digest REFERENCE resolves to (a HEAD request)."""
    setup_logging(verbose)

    async def run() -> str:
        async with make_client(authfile, insecure) as client:
            return str(await client.digest(reference))

    click.echo(run_async(run))


@cli.command(name="sync")
@click.argument("args", nargs=-1, required=True, metavar="PLAN | SOURCE DESTINATION")
@click.option("--src", "src_kind", type=click.Choice(["docker", "yaml", "dir"]),
              help="skopeo sync mode: SOURCE is a repository, a skopeo sync YAML file or a dir: tree.")
@click.option("--dest", "dest_kind", type=click.Choice(["docker", "dir"]), help="skopeo sync mode: DESTINATION kind.")
@click.option("--scoped", is_flag=True, help="skopeo naming: keep the source registry and path under DESTINATION.")
@click.option("--all", "-a", "all_platforms", is_flag=True,
              help="skopeo mode: every platform of an index (without it, only this machine's platform).")
@click.option("--src-tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True,
              help="false: allow http and unverified https for the source registries.")
@click.option("--dest-tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True,
              help="false: allow http and unverified https for the destination registries.")
@click.option("--src-cert-dir", type=click.Path(file_okay=False), help="Source CA / client cert directory.")
@click.option("--dest-cert-dir", type=click.Path(file_okay=False), help="Destination CA / client cert directory.")
@click.option("--src-creds", metavar="USER:PASSWORD", help="Credentials for the source registries.")
@click.option("--dest-creds", metavar="USER:PASSWORD", help="Credentials for the destination registries.")
@click.option("--dry-run", "--check", "dry_run", is_flag=True,
              help="Only plan: images to copy, blobs to upload/mount/skip, bytes; exit 1 if out of sync.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the JSON report here.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False),
              help="Run journal: a re-run after a crash skips finished images and resumes open uploads "
                   "[default: beside --report, as REPORT.state].")
@click.option("--no-state", is_flag=True, help="Keep no run journal.")
@click.option("--images", type=click.IntRange(1, 256), default=8, show_default=True, help="Images in flight.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Blobs in flight per image.")
@click.option("--blobs", type=click.IntRange(1, 512), default=24, show_default=True,
              help="Blobs in flight over the whole run.")
@click.option("--bytes-in-flight", type=click.IntRange(1024 * 1024), default=2 * 1024**3, show_default=True,
              help="Bytes of blobs in flight over the whole run.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "none"]), default="auto",
              show_default=True, help="Progress display on stderr.")
@click.option("--retry-times", type=int, default=None, hidden=True, help="Accepted for skopeo compatibility.")
@click.option("--preserve-digests", is_flag=True, hidden=True, help="Accepted for skopeo compatibility (always).")
@opt.throughput_flags
@scale_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _sync(args: tuple[str, ...], src_kind: str | None, dest_kind: str | None, scoped: bool, all_platforms: bool,
         src_tls_verify: bool | None, dest_tls_verify: bool | None, src_cert_dir: str | None,
         dest_cert_dir: str | None, src_creds: str | None, dest_creds: str | None, dry_run: bool,
         report_path: str | None, state_path: str | None, no_state: bool, images: int, jobs: int, blobs: int,
         bytes_in_flight: int, progress: str, retry_times: int | None, preserve_digests: bool,
         limit_rate: int | None, pull_reserve: int | None, events: str | None, shard: str | None,
         shards: int | None, ledger: str | None, redis_url: str | None, detach: bool, run_id: str | None,
         big_image: int, authfile: str | None, insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Mirror many repositories: `regcopy sync PLAN.yaml`, or skopeo's form
    `regcopy sync --src docker|yaml --dest docker [--scoped] [--all] SOURCE DESTINATION`.
    Scale-out: `--shard I/N` or `--shards N` (static), `--redis URL` (workers: `regcopy worker`)."""
    setup_logging(verbose)
    plan = _sync_plan(args, src_kind, dest_kind, scoped=scoped, all_platforms=all_platforms)
    # The command line's flags win over the plan's registries: (docs/architecture.md, "Settings resolution").
    flags = stack(side_layer(plan, "src", src_tls_verify, src_cert_dir, src_creds),
                  side_layer(plan, "dest", dest_tls_verify, dest_cert_dir, dest_creds),
                  opt.reserve_layer(plan, pull_reserve))
    options = SyncOptions(images=images, blob_jobs=jobs, blobs=blobs, bytes_in_flight=bytes_in_flight,
                          dry_run=dry_run)
    scale = ScaleFlags(shard, shards, ledger, redis_url, detach, run_id, big_image)
    if scale.any:
        scaled_sync(_hooks(authfile, insecure, flags), scale, plan, plan_file=None if src_kind else args[0],
                    options=options, report_path=report_path, state_path=state_path, no_state=no_state,
                    progress=progress, output=output)
        return
    if state_path is None and report_path and not no_state:
        state_path = f"{report_path}.state"
    journal = _open_journal(state_path) if state_path and not no_state and not dry_run else None
    report = _sync_here(plan, options, journal, report_path, progress, events,
                        lambda: make_client(authfile, insecure, flags, limit_rate=limit_rate))
    emit(report.to_json(), output, lambda: sync_summary(report), events)
    if not report.ok or (dry_run and (report.out_of_sync or report.extra_tags)):
        sys.exit(EXIT_FAILED)


def _sync_here(plan: SyncPlan, options: SyncOptions, journal: SyncJournal | None, report_path: str | None,
               progress: str, events: str | None, new_client: Callable[[], Client]) -> SyncReport:
    """Run ``plan`` in this process; the report is written to ``report_path`` even when the run is interrupted."""
    report = SyncReport()

    async def run() -> None:
        async with new_client() as client:
            with progress_display("none" if options.dry_run else progress, events) as reporter:
                await client.sync(plan, options=options, reporter=reporter, report=report, journal=journal)

    try:
        run_async(run)
    finally:
        if journal is not None:
            journal.close()
        if report_path:
            Path(report_path).write_text(json.dumps(report.to_json(), indent=2))
    return report


def _hooks(authfile: str | None, insecure: tuple[str, ...], flags: Layer | None = None) -> CliHooks:
    return CliHooks(run_async, lambda: make_client(authfile, insecure, flags), sync_summary, progress_display)


@cli.command("worker")
@click.option("--redis", "redis_url", required=True, envvar="REGCOPY_REDIS", metavar="redis://HOST[:PORT][/DB]",
              help="The Redis of the runs' queue and blob ledger.")
@click.option("--images", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Images in flight over this worker's units.")
@click.option("--units", type=click.IntRange(1, 64), default=2, show_default=True, help="Units run at once.")
@click.option("--lease-seconds", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Life of a blob upload lease (renewed every third of it while the upload runs).")
@click.option("--heartbeat-timeout", type=click.FloatRange(2), default=20.0, show_default=True,
              help="Seconds of silence after which a worker is dead and its units are redelivered.")
@authfile_option
@insecure_option
@verbose_option
def _worker(redis_url: str, images: int, units: int, lease_seconds: float, heartbeat_timeout: float,
           authfile: str | None, insecure: tuple[str, ...], verbose: int) -> None:
    """Run units of `regcopy sync PLAN --redis URL` runs until SIGTERM (which hands running units back)."""
    from regcopy.cli import scale as commands

    setup_logging(verbose)
    commands.worker(_hooks(authfile, insecure), redis_url, units, images, lease_seconds, heartbeat_timeout)


@cli.command("status")
@click.argument("run_id", metavar="RUN")
@click.option("--redis", "redis_url", required=True, envvar="REGCOPY_REDIS", metavar="redis://HOST[:PORT][/DB]")
@click.option("--wait", "wait_for", is_flag=True, help="Wait for the run to finish, showing progress.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the final report here.")
@output_option
@verbose_option
def _status(run_id: str, redis_url: str, wait_for: bool, report_path: str | None, output: str, verbose: int) -> None:
    """Progress of a `sync --redis` run, or its final report (exit 1 when it finished with failures)."""
    from regcopy.cli import scale as commands

    setup_logging(verbose)
    commands.status(_hooks(None, ()), redis_url, run_id, wait_for, report_path, output)


cli.add_command(report_group())
cli.add_command(referrers_command())


def _sync_plan(args: tuple[str, ...], src_kind: str | None, dest_kind: str | None, *, scoped: bool,
               all_platforms: bool) -> SyncPlan:
    """The plan ``regcopy sync`` runs: a plan file, or skopeo's ``--src``/``--dest`` form."""
    try:
        if src_kind or dest_kind:
            if len(args) != 2 or not src_kind or not dest_kind:
                raise click.UsageError("skopeo mode needs --src, --dest, SOURCE and DESTINATION")
            return from_skopeo(src_kind, dest_kind, args[0], args[1], scoped=scoped, all_platforms=all_platforms)
        if len(args) == 1:
            return load_plan(args[0])
        raise click.UsageError("give a plan file, or --src/--dest with SOURCE and DESTINATION")
    except (ConfigError, InvalidReference) as exc:
        fail(str(exc), EXIT_USAGE)


def _open_journal(state_path: str) -> SyncJournal:
    try:
        journal = SyncJournal.open(state_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if journal.resumed:
        click.echo(f"resuming the interrupted run journalled in {state_path}", err=True)
    return journal


def main() -> None:
    """Console-script entry point."""
    with handle_signals():
        try:
            cli(prog_name="regcopy")
        except Interrupted as exc:  # outside a run: while parsing arguments or printing the result
            fail(f"interrupted ({exc})", exc.code)
