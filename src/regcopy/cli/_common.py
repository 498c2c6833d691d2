"""What every command of :mod:`regcopy.cli` shares: exit codes, the runner (signals and error
mapping to exit codes), logging, the client factory, result output, the progress display and the
common options. Apart from the commands so a command may live in a module of its own
(:mod:`regcopy.cli.referrers`) without importing the package that registers it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click

from regcopy.cli._flags import insecure_layer
from regcopy.cli._render import progress_reporter
from regcopy.client import Client
from regcopy.errors import ConfigError, CredentialError, InvalidReference, RegcopyError
from regcopy.interrupt import Interrupted
from regcopy.interrupt import run as run_interruptible
from regcopy.settings import Layer, stack

__all__ = (
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USAGE", "authfile_option", "emit", "fail", "insecure_option",
    "make_client", "output_option", "progress_display", "run_async", "setup_logging", "verbose_option",
)

T = TypeVar("T")
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def fail(message: str, code: int) -> NoReturn:
    """Print ``regcopy: message`` on stderr and exit with ``code``."""
    click.echo(f"regcopy: {message}", err=True)
    sys.exit(code)


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` under the signal handling of :mod:`regcopy.interrupt`; its errors become exit codes."""
    try:
        return run_interruptible(fn)
    except Interrupted as exc:
        fail(f"interrupted ({exc})", exc.code)
    except KeyboardInterrupt:  # a SIGINT whose handler is Python's own (the CLI used as a library)
        fail("interrupted", EXIT_INTERRUPTED)
    except (InvalidReference, ConfigError) as exc:
        fail(str(exc), EXIT_USAGE)
    except CredentialError as exc:
        fail(str(exc), EXIT_FAILED)
    except RegcopyError as exc:
        fail(str(exc), EXIT_FAILED)


def setup_logging(verbose: int) -> None:
    """Logs of ``regcopy.*`` on stderr: WARNING, ``-v`` INFO, ``-vv`` DEBUG."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("regcopy")
    root.handlers[:] = [handler]
    root.setLevel(level)


def make_client(authfile: str | None, insecure: tuple[str, ...], flags: Layer | None = None, **kwargs: Any) -> Client:
    """A client whose overrides are the command line's: ``--insecure-registry``, then ``flags``."""
    return Client(authfile=authfile, overrides=stack(insecure_layer(insecure), flags or {}), **kwargs)


def emit(data: Any, output: str, text: Callable[[], str], events: str | None = None) -> None:
    """The result on stdout: ``data`` as JSON (``-o json``) or ``text()``; on stderr with ``--events -``,
    whose lines own stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True) if output == "json" else text(), err=events == "-")


@contextlib.contextmanager
def progress_display(mode: str, events: str | None = None) -> Iterator[Callable[[Any], None] | None]:
    """The reporter of ``--progress`` and ``--events`` (None: neither) for the block's duration.

    :raises ConfigError: the events file cannot be written (exit 2 through :func:`run_async`)
    """
    with progress_reporter(mode, events) as reporter:
        yield reporter


verbose_option = click.option("-v", "--verbose", count=True, help="-v for INFO logs, -vv for DEBUG (stderr).")
output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Result format on stdout.")
authfile_option = click.option("--authfile", type=click.Path(dir_okay=False), envvar="REGISTRY_AUTH_FILE",
                               help="Auth file (docker config.json format). Default: containers/docker search.")
insecure_option = click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST",
                               help="Allow plain http and unverified https for HOST (repeatable).")
