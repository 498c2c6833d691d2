"""The ``regcopy`` command line: flags → one library call → rendering. No logic of its own.

Exit codes: 0 success, 1 failure (or out of sync with ``--check``), 2 usage or configuration
error, 130 interrupted (SIGINT), 143 terminated (SIGTERM): both signals cancel the run, which cleans
up and writes its report first (:mod:`regcopy.interrupt`). Logs go to stderr (``-v`` INFO, ``-vv``
DEBUG); machine output to stdout.

Each verb lives in a module of its own (``cli/copy.py``, ``cli/sync.py``, ...), named in
:data:`COMMANDS` and imported only when the verb runs or help lists it (click's lazily loading group,
"Lazily Loading Subcommands" in its documentation). The verb modules import click and value
modules at the top and the client, the renderers and the plan parsers inside their functions, so
``regcopy --version``, ``regcopy --help`` and ``regcopy VERB --help`` never load aiohttp, rich, yaml,
boto3, dramatiq or redis (``tests/unit/test_cli_startup.py``). What the verbs share is
:mod:`regcopy.cli._common`.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Mapping
from typing import Any, Final

import click

from regcopy import __version__
from regcopy.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, fail

__all__ = ("ALIASES", "COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "LazyGroup", "cli", "main")

COMMANDS: Final[Mapping[str, str]] = {
    "blob": "regcopy.cli.image:_blob",
    "catalog": "regcopy.cli.query:_catalog",
    "config": "regcopy.cli.image:_config",
    "copy": "regcopy.cli.copy:_copy",
    "delete": "regcopy.cli.edit:_delete",
    "digest": "regcopy.cli.query:_digest",
    "inspect": "regcopy.cli.image:_inspect",
    "list-tags": "regcopy.cli.query:_list_tags",
    "login": "regcopy.cli.auth:_login",
    "logout": "regcopy.cli.auth:_logout",
    "ls": "regcopy.cli.query:_ls",
    "manifest": "regcopy.cli.image:_manifest",
    "manifest-digest": "regcopy.cli.image:_manifest_digest",
    "ping": "regcopy.cli.query:_ping",
    "prune": "regcopy.cli.edit:_prune",
    "referrers": "regcopy.cli.referrers:_referrers",
    "report": "regcopy.cli.scale:_report",
    "status": "regcopy.cli.scale:_status",
    "sync": "regcopy.cli.sync:_sync",
    "tag": "regcopy.cli.edit:_tag",
    "worker": "regcopy.cli.scale:_worker",
}
"""Verb → ``module:attribute`` of its click command."""

ALIASES: Final[Mapping[str, str]] = {"cp": "copy"}
"""Other names of a verb (crane's and skopeo's), accepted but not listed twice in ``--help``."""


class LazyGroup(click.Group):
    """A group whose commands are imported when first asked for, by name (:data:`COMMANDS`)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], aliases: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.aliases = aliases

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.aliases.get(cmd_name, cmd_name)
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, _, attr = self.lazy[name].partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name]} is not a click command")
        return command


@click.group(cls=LazyGroup, lazy=COMMANDS, aliases=ALIASES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regcopy")
def cli() -> None:
    """Copy container images between OCI/Docker registries, fast and safely."""


def main() -> None:
    """Console-script entry point."""
    from regcopy.interrupt import Interrupted, handle_signals

    try:
        with handle_signals():
            try:
                cli(prog_name="regcopy")
            except Interrupted as exc:  # outside a run: while parsing arguments or printing the result
                fail(f"interrupted ({exc})", exc.code)
    finally:
        # What is left is the interpreter's teardown, whose collections would walk every object the
        # imports made: 70-110 ms of a short sync, 13-24 ms frozen (docs/benchmarks.md, "Start-up and
        # the skopeo drop-in"). Frozen objects are still freed and every exit handler still runs; only
        # the cycle search over them is skipped.
        gc.freeze()
