"""The command line of scale-out: ``sync --shard/--shards/--ledger/--redis``, ``worker``, ``status``,
``report merge``. Flags → one library call → rendering, as in :mod:`regcopy.cli`, which names these
commands; the runner and client factory of :mod:`regcopy.cli._common` reach the scale-out code as
:class:`CliHooks`. The optional engines, the client and the sync package are imported only when a
command runs, so ``regcopy --help`` works without the ``regcopy[scale]`` extra and loads none of them.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from regcopy.cli._common import (
    authfile_option,
    insecure_option,
    make_client,
    output_option,
    progress_display,
    run_async,
    setup_logging,
    verbose_option,
)
from regcopy.errors import ConfigError

if TYPE_CHECKING:
    from regcopy.client import Client
    from regcopy.settings import Layer
    from regcopy.sync import SyncOptions, SyncPlan, SyncReport

__all__ = ("CliHooks", "ScaleFlags", "cli_hooks", "scale_flags", "scaled_sync", "status", "worker")

T = TypeVar("T")
_EXIT_FAILED, _EXIT_USAGE = 1, 2


@dataclass(frozen=True, slots=True)
class CliHooks:
    """What :mod:`regcopy.cli` lends: its runner (signals, error mapping), client factory, summary."""

    run: Callable[[Callable[[], Awaitable[Any]]], Any]
    client: Callable[[], Client]
    """A client whose overrides are the command line's flags (they win over a plan's registries)."""
    summary: Callable[[Any], str]
    progress: Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class ScaleFlags:
    """``sync``'s scale-out flags."""

    shard: str | None = None
    shards: int | None = None
    ledger: str | None = None
    redis: str | None = None
    detach: bool = False
    run: str | None = None
    big_image: int = 1 << 30

    @property
    def any(self) -> bool:
        return bool(self.shard or self.shards or self.ledger or self.redis)


def cli_hooks(authfile: str | None, insecure: tuple[str, ...], flags: Layer | None = None) -> CliHooks:
    """The hooks of a command whose client gets ``--authfile``, ``--insecure-registry`` and ``flags``."""
    from regcopy.cli._render import sync_summary

    return CliHooks(run_async, lambda: make_client(authfile, insecure, flags), sync_summary, progress_display)


def scale_flags(fn: Callable[..., T]) -> Callable[..., T]:
    """The scale-out options of ``regcopy sync``."""
    options = [
        click.option("--shard", metavar="I/N", help="Static scale-out: run shard I of N (no broker)."),
        click.option("--shards", type=click.IntRange(1), metavar="N",
                     help="Static scale-out: shard N-way, this one from $JOB_COMPLETION_INDEX (Indexed Job)."),
        click.option("--ledger", metavar="redis://HOST[:PORT][/DB]", envvar="REGCOPY_LEDGER",
                     help="With --shard(s): share the blob ledger through this Redis (one upload per blob)."),
        click.option("--redis", "redis_url", metavar="redis://HOST[:PORT][/DB]", envvar="REGCOPY_REDIS",
                     help="Dynamic scale-out: plan here, enqueue units for `regcopy worker`s, wait."),
        click.option("--detach", is_flag=True, help="With --redis: submit and exit (see `regcopy status`)."),
        click.option("--run", "run_id", metavar="RUN", help="With --redis: the run's name (again: resume it)."),
        click.option("--big-image", type=click.IntRange(1), default=1 << 30, show_default=True, metavar="BYTES",
                     help="With --redis: an image over this many bytes is a unit of its own."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"regcopy: {message}", err=True)
    sys.exit(code)


# ------------------------------------------------------------------------------------------- sync


def scaled_sync(hooks: CliHooks, flags: ScaleFlags, plan: SyncPlan, *, plan_file: str | None, options: SyncOptions,
                report_path: str | None, state_path: str | None, no_state: bool, progress: str, output: str) -> None:
    """``regcopy sync`` with scale-out flags (exits with sync's codes)."""
    if flags.redis:
        if flags.shard or flags.shards or flags.ledger:
            _fail("--redis (dynamic) and --shard/--shards/--ledger (static) do not mix", _EXIT_USAGE)
        if options.dry_run:
            _fail("--dry-run plans in one process: drop --redis", _EXIT_USAGE)
        if plan_file is None:
            _fail("--redis needs a regcopy plan file (workers read its registries: section)", _EXIT_USAGE)
        _dynamic(hooks, flags, plan, Path(plan_file), options, report_path, output)
        return
    from regcopy.scale.static import resolve_shard, shard_path

    try:
        index, shards = resolve_shard(flags.shard, flags.shards)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if report_path:
        report_path = shard_path(report_path, index, shards)
    if state_path:
        state_path = shard_path(state_path, index, shards)
    elif report_path and not no_state:
        state_path = f"{report_path}.state"
    _static(hooks, flags, plan, index, shards, options, report_path, None if no_state else state_path,
            progress, output)


def _static(hooks: CliHooks, flags: ScaleFlags, plan: SyncPlan, index: int, shards: int, options: SyncOptions,
            report_path: str | None, state_path: str | None, progress: str, output: str) -> None:
    from regcopy.scale.report_merge import UploadTally
    from regcopy.scale.static import run_shard, shard_document
    from regcopy.sync import SyncJournal, SyncReport

    journal = None
    if state_path and not options.dry_run:
        try:
            journal = SyncJournal.open(state_path)
        except ConfigError as exc:
            _fail(str(exc), _EXIT_USAGE)
    report = SyncReport()
    holder: list[UploadTally] = [UploadTally()]

    async def run() -> None:
        async with hooks.client() as client:
            with hooks.progress("none" if options.dry_run else progress) as reporter:
                holder[0] = UploadTally(reporter)
                await run_shard(client, plan, index, shards, options=options, tally=holder[0], report=report,
                                journal=journal, ledger_url=flags.ledger)

    try:
        hooks.run(run)
    finally:
        if journal is not None:
            journal.close()
        doc = shard_document(report, holder[0], index, shards)
        if report_path:
            Path(report_path).write_text(json.dumps(doc, indent=2))
    _finish(hooks, report, doc, output, options.dry_run)


def _finish(hooks: CliHooks, report: SyncReport, doc: dict[str, Any], output: str, dry_run: bool) -> None:
    if output == "json":
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(hooks.summary(report))
    if not report.ok or (dry_run and (report.out_of_sync or report.extra_tags)):
        sys.exit(_EXIT_FAILED)


def _dynamic(hooks: CliHooks, flags: ScaleFlags, plan: SyncPlan, plan_file: Path, options: SyncOptions,
             report_path: str | None, output: str) -> None:
    from regcopy.scale.queue import enqueue, make_broker
    from regcopy.scale.redis_ledger import connect
    from regcopy.scale.submit import submit, wait
    from regcopy.sync import SyncReport

    run_id = flags.run or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    plan_text = plan_file.read_text(encoding="utf-8")
    assert flags.redis is not None
    broker = make_broker(flags.redis)
    report = SyncReport()

    async def run() -> Any:
        redis = connect(flags.redis or "", timeout=10.0)
        try:
            async with hooks.client() as client:
                done = await submit(client, plan, plan_text, redis, lambda p: enqueue(broker, p), run=run_id,
                                    options=options, big=flags.big_image, report=report)
            click.echo(f"run {run_id}: {done.units} units enqueued ({done.images} images to copy), "
                       f"{done.skipped} already done", err=True)
            if flags.detach:
                return None
            with _status_view() as show:
                return await wait(redis, run_id, show)
        finally:
            await redis.aclose()

    try:
        final = hooks.run(run)
    finally:
        broker.close()
    if flags.detach:
        click.echo(run_id)
        return
    _final_report(hooks, final.report, report_path, output)


def _final_report(hooks: CliHooks, doc: dict[str, Any], report_path: str | None, output: str) -> None:
    from regcopy.scale.report_merge import merge_reports

    if report_path:
        Path(report_path).write_text(json.dumps(doc, indent=2))
    report = _as_report(merge_reports([doc]))
    _finish(hooks, report, doc, output, False)


def _as_report(doc: dict[str, Any]) -> SyncReport:
    from regcopy.sync import ImageReport, SyncReport

    images = [ImageReport(**{k: v for k, v in i.items() if k in ImageReport.__slots__}) for i in doc["images"]]
    report = SyncReport(dry_run=bool(doc.get("dry_run")), images=images, errors=list(doc.get("errors", [])),
                        seconds=float(doc.get("seconds") or 0), interrupted=bool(doc.get("interrupted")))
    if doc.get("deletions") and doc["deletions"].get("errors"):
        report.errors.extend(doc["deletions"]["errors"])
    return report


@contextmanager
def _status_view() -> Iterator[Callable[[Any], None]]:
    """Live progress on stderr: a rich bar on a TTY, a plain line when something changed otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[detail]}"), transient=False) as bar:
            task = bar.add_task("units", total=None, detail="")

            def show(s: Any) -> None:
                bar.update(task, total=s.units or None, completed=s.done, detail=_detail(s))

            yield show
        return
    last: list[str] = []

    def plain(s: Any) -> None:
        line = f"units {s.done}/{s.units}: {_detail(s)}"
        if not last or last[0] != line:
            click.echo(line, err=True)
            last[:] = [line]

    yield plain


def _detail(s: Any) -> str:
    p = s.progress
    mib = p.get("bytes", 0) / (1 << 20)
    return f"{p.get('images', 0)} images copied, {p.get('images_failed', 0)} failed, {mib:.1f} MiB uploaded"


# ------------------------------------------------------------------------------------------ worker


def worker(hooks: CliHooks, redis_url: str, units: int, images: int, lease_seconds: float,
           heartbeat_timeout: float) -> None:
    """``regcopy worker``: serve units until SIGTERM/SIGINT."""
    from regcopy.interrupt import Interrupted
    from regcopy.scale.worker import serve

    try:
        serve(redis_url, hooks.client, units=units, images=images, lease_ms=int(lease_seconds * 1000),
              heartbeat_timeout_ms=int(heartbeat_timeout * 1000))
    except Interrupted as exc:
        _fail(f"worker stopped ({exc}); its units went back to the queue", exc.code)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc), _EXIT_USAGE)


def status(hooks: CliHooks, redis_url: str, run_id: str, wait_for: bool, report_path: str | None,
           output: str) -> None:
    """``regcopy status``: the run's progress, or its final report."""
    from regcopy.scale.redis_ledger import connect
    from regcopy.scale.submit import read_status, wait

    async def run() -> Any:
        redis = connect(redis_url, timeout=10.0)
        try:
            if wait_for:
                with _status_view() as show:
                    return await wait(redis, run_id, show)
            return await read_status(redis, run_id)
        finally:
            await redis.aclose()

    state = hooks.run(run)
    if state.report is None:
        data = {"run": state.run, "finished": False, "units": state.units, "done": state.done,
                "submitted": state.submitted, "progress": state.progress}
        text = f"run {state.run}: running, units {state.done}/{state.units}: {_detail(state)}"
        click.echo(json.dumps(data, indent=2) if output == "json" else text)
        return
    _final_report(hooks, state.report, report_path, output)


@click.group(name="report")
def _report() -> None:
    """Work with sync reports."""


@_report.command(name="merge")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--to", "to", type=click.Path(dir_okay=False), help="Write the merged report here.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def _merge(reports: tuple[str, ...], to: str | None, output: str) -> None:
    """Merge shard (or unit) reports into one report of the same schema; exit 1 if it has failures."""
    from regcopy.scale.report_merge import merge_reports

    docs = []
    for path in reports:
        try:
            docs.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            _fail(f"{path}: not a readable JSON report ({str(exc)[:200]})", _EXIT_USAGE)
    try:
        merged = merge_reports(docs, names=list(reports))
    except ConfigError as exc:
        _fail(str(exc), _EXIT_USAGE)
    if to:
        Path(to).write_text(json.dumps(merged, indent=2))
    report_obj = _as_report(merged)
    if output == "json":
        click.echo(json.dumps(merged, indent=2, sort_keys=True))
    else:
        click.echo(_merge_summary(merged))
    if not report_obj.ok:
        sys.exit(_EXIT_FAILED)


def _merge_summary(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    lines = [f"FAILED  {i['source']} -> {i['target']}: {i['error']}" for i in doc["images"] if i["status"] == "failed"]
    lines.extend(f"ERROR   {e}" for e in doc["errors"])
    for storage, s in doc["scale"]["registries"].items():
        lines.append(f"{storage}: uploaded {s['bytes_uploaded']} bytes for {s['unique_bytes']} unique "
                     f"(x{s['ratio']:.2f}), {s['duplicate_uploads']} duplicate uploads")
    lines.append(f"{doc['scale']['parts']} reports: {t.get('copied', 0)} copied, {t.get('up-to-date', 0)} up to date, "
                 f"{t.get('failed', 0)} failed; uploaded {t.get('blobs_uploaded', 0)} blobs "
                 f"({t.get('bytes_uploaded', 0)} bytes), mounted {t.get('blobs_mounted', 0)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ commands


@click.command(name="worker")
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
    setup_logging(verbose)
    worker(cli_hooks(authfile, insecure), redis_url, units, images, lease_seconds, heartbeat_timeout)


@click.command(name="status")
@click.argument("run_id", metavar="RUN")
@click.option("--redis", "redis_url", required=True, envvar="REGCOPY_REDIS", metavar="redis://HOST[:PORT][/DB]")
@click.option("--wait", "wait_for", is_flag=True, help="Wait for the run to finish, showing progress.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the final report here.")
@output_option
@verbose_option
def _status(run_id: str, redis_url: str, wait_for: bool, report_path: str | None, output: str, verbose: int) -> None:
    """Progress of a `sync --redis` run, or its final report (exit 1 when it finished with failures)."""
    setup_logging(verbose)
    status(cli_hooks(None, ()), redis_url, run_id, wait_for, report_path, output)
