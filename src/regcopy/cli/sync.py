"""``regcopy sync``: a regcopy plan file, or skopeo's ``--src docker|yaml --dest docker`` form, in this
process or scaled out (:mod:`regcopy.cli.scale`). Flags → one ``Client.sync`` → rendering; the plan
parsers and the client are imported when the verb runs, not when help is shown."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from regcopy.cli._access import SYNC_REFUSED, Access, access_flags, refused_flags, retry_fields, retry_flags
from regcopy.cli._common import (
    EXIT_FAILED,
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
from regcopy.cli._flags import reserve_layer, side_layer, throughput_flags
from regcopy.cli.scale import ScaleFlags, cli_hooks, scale_flags, scaled_sync
from regcopy.errors import ConfigError, InvalidReference

if TYPE_CHECKING:
    from regcopy.client import Client
    from regcopy.settings import Layer
    from regcopy.sync import SyncJournal, SyncOptions, SyncPlan, SyncReport

__all__ = ()


@click.command(name="sync")
@click.argument("args", nargs=-1, required=True, metavar="PLAN | SOURCE DESTINATION")
@click.option("--src", "-s", "src_kind", type=click.Choice(["docker", "yaml", "dir"]),
              help="skopeo sync mode: SOURCE is a repository, a skopeo sync YAML file or a dir: tree.")
@click.option("--dest", "-d", "dest_kind", type=click.Choice(["docker", "dir"]),
              help="skopeo sync mode: DESTINATION kind.")
@click.option("--scoped", is_flag=True, help="skopeo naming: keep the source registry and path under DESTINATION.")
@click.option("--all", "-a", "all_platforms", is_flag=True,
              help="skopeo mode: every platform of an index (without it, only this machine's platform).")
@click.option("--append-suffix", default="", metavar="SUFFIX", help="skopeo mode: append SUFFIX to each target tag.")
@click.option("--keep-going", is_flag=True,
              help="Do not stop at a failed image (regcopy always tries every image; failures exit 1).")
@click.option("--preserve-digests", is_flag=True,
              help="Refuse a plan that would change a digest (several platforms of an index make a new index).")
@click.option("--remove-signatures", is_flag=True, help="Copy no signatures, SBOMs or attestations.")
@access_flags("src")
@access_flags("dest")
@retry_flags
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
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary (errors and -o json still print).")
@refused_flags(SYNC_REFUSED)
@throughput_flags
@scale_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _sync(args: tuple[str, ...], **options: Any) -> None:
    """Mirror many repositories: `regcopy sync PLAN.yaml`, or skopeo's form
    `regcopy sync --src docker|yaml|dir --dest docker|dir [--scoped] [--all] SOURCE DESTINATION`.
    Scale-out: `--shard I/N` or `--shards N` (static), `--redis URL` (workers: `regcopy worker`)."""
    from regcopy.cli._render import sync_summary
    from regcopy.sync import SyncOptions

    o = _SyncFlags(**options)
    setup_logging(o.verbose)
    plan = _adjusted(_sync_plan(args, o.src_kind, o.dest_kind, scoped=o.scoped, all_platforms=o.all_platforms), o)
    flags = _flags_layer(plan, o)
    options_ = SyncOptions(images=o.images, blob_jobs=o.jobs, blobs=o.blobs, bytes_in_flight=o.bytes_in_flight,
                           dry_run=o.dry_run)
    progress, output = ("none" if o.quiet else o.progress), o.output
    scale = ScaleFlags(o.shard, o.shards, o.ledger, o.redis_url, o.detach, o.run_id, o.big_image)
    if scale.any:
        scaled_sync(cli_hooks(o.authfile, o.insecure, flags), scale, plan, plan_file=None if o.src_kind else args[0],
                    options=options_, report_path=o.report_path, state_path=o.state_path, no_state=o.no_state,
                    progress=progress, output=output)
        return
    state_path = o.state_path
    if state_path is None and o.report_path and not o.no_state:
        state_path = f"{o.report_path}.state"
    journal = _open_journal(state_path) if state_path and not o.no_state and not o.dry_run else None
    report = _sync_here(plan, options_, journal, o.report_path, progress, o.events,
                        lambda: make_client(o.authfile, o.insecure, flags, limit_rate=o.limit_rate))
    if not (o.quiet and output != "json"):
        emit(report.to_json(), output, lambda: sync_summary(report), o.events)
    if not report.ok or (o.dry_run and (report.out_of_sync or report.extra_tags)):
        sys.exit(EXIT_FAILED)


@dataclass(frozen=True, slots=True)
class _SyncFlags:
    """Every option of ``sync``, typed (click hands them over as keywords)."""

    src_kind: str | None
    dest_kind: str | None
    scoped: bool
    all_platforms: bool
    append_suffix: str
    keep_going: bool
    preserve_digests: bool
    remove_signatures: bool
    src_access: Access
    dest_access: Access
    retry_times: int | None
    retry_delay: float | None
    dry_run: bool
    report_path: str | None
    state_path: str | None
    no_state: bool
    images: int
    jobs: int
    blobs: int
    bytes_in_flight: int
    progress: str
    quiet: bool
    limit_rate: int | None
    pull_reserve: int | None
    events: str | None
    shard: str | None
    shards: int | None
    ledger: str | None
    redis_url: str | None
    detach: bool
    run_id: str | None
    big_image: int
    authfile: str | None
    insecure: tuple[str, ...]
    output: str
    verbose: int


_SUFFIX = re.compile(r"[A-Za-z0-9_.-]*")


def _adjusted(plan: SyncPlan, o: _SyncFlags) -> SyncPlan:
    """The plan with the skopeo flags that change its entries: ``--append-suffix``, ``--remove-signatures``;
    ``--preserve-digests`` checked (regcopy sync never converts: only a subset of several platforms of an
    index, which builds a new index, would change a digest)."""
    if not _SUFFIX.fullmatch(o.append_suffix):
        fail(f"--append-suffix {o.append_suffix!r}: a tag may hold only letters, digits, '_', '.' and '-'",
             EXIT_USAGE)
    if o.preserve_digests:
        for entry in plan.entries:
            if len(entry.platforms) > 1:
                fail(f"--preserve-digests: {entry.name} keeps {len(entry.platforms)} platforms of each index, "
                     "which makes new indexes (new digests)", EXIT_USAGE)
    changes: dict[str, Any] = {}
    if o.append_suffix:
        changes["tag_suffix"] = o.append_suffix
    if o.remove_signatures:
        changes["referrers"] = False
    if not changes:
        return plan
    return dataclasses.replace(plan, entries=tuple(dataclasses.replace(e, **changes) for e in plan.entries))


def _flags_layer(plan: SyncPlan, o: _SyncFlags) -> Layer:
    """The command line's flags for the plan's hosts; they win over the plan's ``registries:``
    (docs/architecture.md, "Settings resolution"). The retry flags apply to both sides."""
    from regcopy.settings import stack

    retry = retry_fields(o.retry_times, o.retry_delay)
    src = side_layer(plan, "src", o.src_access, retry)
    dest = side_layer(plan, "dest", o.dest_access, retry)
    for host in src.keys() & dest.keys():
        ours, theirs = src[host].credentials, dest[host].credentials
        if ours is not None and theirs is not None and ours != theirs:
            fail(f"the source and destination are both on {host}: give that host one set of credentials", EXIT_USAGE)
    return stack(src, dest, reserve_layer(plan, o.pull_reserve))


def _sync_here(plan: SyncPlan, options: SyncOptions, journal: SyncJournal | None, report_path: str | None,
               progress: str, events: str | None, new_client: Callable[[], Client]) -> SyncReport:
    """Run ``plan`` in this process; the report is written to ``report_path`` even when the run is interrupted."""
    from regcopy.sync import SyncReport

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


def _sync_plan(args: tuple[str, ...], src_kind: str | None, dest_kind: str | None, *, scoped: bool,
               all_platforms: bool) -> SyncPlan:
    """The plan ``regcopy sync`` runs: a plan file, or skopeo's ``--src``/``--dest`` form."""
    from regcopy.sync import load_plan
    from regcopy.sync.skopeo import from_skopeo

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
    from regcopy.sync import SyncJournal

    try:
        journal = SyncJournal.open(state_path)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if journal.resumed:
        click.echo(f"resuming the interrupted run journalled in {state_path}", err=True)
    return journal
