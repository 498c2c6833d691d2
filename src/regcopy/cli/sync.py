"""``regcopy sync``: a regcopy plan file, or skopeo's ``--src docker|yaml --dest docker`` form, in this
process or scaled out (:mod:`regcopy.cli.scale`). Flags → one ``Client.sync`` → rendering; the plan
parsers and the client are imported when the verb runs, not when help is shown."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

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
from regcopy.cli._flags import side_layer
from regcopy.cli.scale import ScaleFlags, cli_hooks, scale_flags, scaled_sync
from regcopy.errors import ConfigError, InvalidReference

if TYPE_CHECKING:
    from regcopy.settings import Layer
    from regcopy.sync import SyncJournal, SyncOptions, SyncPlan, SyncReport

__all__ = ()


@click.command(name="sync")
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
@scale_flags
@authfile_option
@insecure_option
@output_option
@verbose_option
def _sync(args: tuple[str, ...], src_kind: str | None, dest_kind: str | None, scoped: bool, all_platforms: bool,
         src_tls_verify: bool | None, dest_tls_verify: bool | None, src_cert_dir: str | None,
         dest_cert_dir: str | None, src_creds: str | None, dest_creds: str | None, dry_run: bool,
         report_path: str | None, state_path: str | None, no_state: bool, images: int, jobs: int, blobs: int,
         bytes_in_flight: int, progress: str,
         retry_times: int | None, preserve_digests: bool, shard: str | None, shards: int | None, ledger: str | None,
         redis_url: str | None, detach: bool, run_id: str | None, big_image: int, authfile: str | None,
         insecure: tuple[str, ...], output: str, verbose: int) -> None:
    """Mirror many repositories: `regcopy sync PLAN.yaml`, or skopeo's form
    `regcopy sync --src docker|yaml --dest docker [--scoped] [--all] SOURCE DESTINATION`.
    Scale-out: `--shard I/N` or `--shards N` (static), `--redis URL` (workers: `regcopy worker`)."""
    from regcopy.cli._render import sync_summary
    from regcopy.settings import stack
    from regcopy.sync import SyncOptions

    setup_logging(verbose)
    plan = _sync_plan(args, src_kind, dest_kind, scoped=scoped, all_platforms=all_platforms)
    # The command line's flags win over the plan's registries: (docs/architecture.md, "Settings resolution").
    flags = stack(side_layer(plan, "src", src_tls_verify, src_cert_dir, src_creds),
                  side_layer(plan, "dest", dest_tls_verify, dest_cert_dir, dest_creds))
    options = SyncOptions(images=images, blob_jobs=jobs, blobs=blobs, bytes_in_flight=bytes_in_flight,
                          dry_run=dry_run)
    scale = ScaleFlags(shard, shards, ledger, redis_url, detach, run_id, big_image)
    if scale.any:
        scaled_sync(cli_hooks(authfile, insecure, flags), scale, plan, plan_file=None if src_kind else args[0],
                    options=options, report_path=report_path, state_path=state_path, no_state=no_state,
                    progress=progress, output=output)
        return
    if state_path is None and report_path and not no_state:
        state_path = f"{report_path}.state"
    journal = _open_journal(state_path) if state_path and not no_state and not dry_run else None
    report = _sync_here(plan, options, flags, journal, report_path, progress, authfile, insecure)
    emit(report.to_json(), output, lambda: sync_summary(report))
    if not report.ok or (dry_run and (report.out_of_sync or report.extra_tags)):
        sys.exit(EXIT_FAILED)


def _sync_here(plan: SyncPlan, options: SyncOptions, flags: Layer | None, journal: SyncJournal | None,
               report_path: str | None, progress: str, authfile: str | None, insecure: tuple[str, ...]) -> SyncReport:
    """Run ``plan`` in this process; the report is written to ``report_path`` even when the run is interrupted."""
    from regcopy.sync import SyncReport

    report = SyncReport()

    async def run() -> None:
        async with make_client(authfile, insecure, flags) as client:
            with progress_display("none" if options.dry_run else progress) as reporter:
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
