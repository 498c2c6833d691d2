"""What every command of :mod:`regcopy.cli` shares: exit codes, the runner (signals and error
mapping to exit codes), logging, the client factory, result output, the progress display and the
common options. Apart from the commands so each verb lives in a module of its own.

Cheap to import: click and the standard library only. The client (aiohttp), the renderers (rich)
and the signal runner (anyio) are imported by the function that needs them, so ``regcopy VERB
--help`` loads none of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from regcopy.client import Client
    from regcopy.settings import Layer

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
    from regcopy.errors import ConfigError, InvalidReference, RegcopyError
    from regcopy.interrupt import Interrupted
    from regcopy.interrupt import run as run_interruptible

    try:
        return run_interruptible(fn)
    except Interrupted as exc:
        fail(f"interrupted ({exc})", exc.code)
    except KeyboardInterrupt:  # a SIGINT whose handler is Python's own (the CLI used as a library)
        fail("interrupted", EXIT_INTERRUPTED)
    except (InvalidReference, ConfigError) as exc:
        fail(str(exc), EXIT_USAGE)
    except RegcopyError as exc:
        fail(str(exc), EXIT_FAILED)
    except BaseExceptionGroup as group:
        # A task group's failure (a bad certificate directory met by every transport at once): its
        # first regcopy error speaks for it; anything else is a bug and is raised as it is.
        first = _first_regcopy_error(group)
        if first is None:
            raise
        fail(str(first), EXIT_USAGE if isinstance(first, (InvalidReference, ConfigError)) else EXIT_FAILED)


def _first_regcopy_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    from regcopy.errors import RegcopyError

    matched, rest = group.split(RegcopyError)
    if matched is None or rest is not None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


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
    from regcopy.cli._flags import insecure_layer
    from regcopy.client import Client
    from regcopy.settings import stack

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
    if mode == "none" and events is None:
        yield None
        return
    from regcopy.cli._render import progress_reporter

    with progress_reporter(mode, events) as reporter:
        yield reporter


verbose_option = click.option("-v", "--verbose", count=True, help="-v for INFO logs, -vv for DEBUG (stderr).")
output_option = click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Result format on stdout.")
authfile_option = click.option("--authfile", type=click.Path(dir_okay=False), envvar="REGISTRY_AUTH_FILE",
                               help="Auth file (docker config.json format). Default: containers/docker search.")
insecure_option = click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST",
                               help="Allow plain http and unverified https for HOST (repeatable).")
