"""``regcopy login`` and ``regcopy logout``: the auth file skopeo and podman use.

The file is ``--authfile``, else ``$REGISTRY_AUTH_FILE``, else ``$XDG_RUNTIME_DIR/containers/auth.json``
(``/run/containers/UID/auth.json`` without ``XDG_RUNTIME_DIR``), as containers-auth.json(5) says;
``--authfile ~/.docker/config.json`` writes docker's. Entries are ``{"auths": {HOST: {"auth":
base64(USER:PASSWORD)}}}``; every other key of the file is kept. ``login`` checks the credentials
against the registry first (an authenticated ``GET /v2/``, as skopeo login does) and writes nothing
when they are refused. The file is replaced atomically and stays private (0600, its directory 0700).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from regcopy.cli._common import EXIT_FAILED, EXIT_USAGE, fail, run_async, setup_logging, verbose_option

__all__ = ()

_AUTHFILE = click.option("--authfile", type=click.Path(dir_okay=False), envvar="REGISTRY_AUTH_FILE",
                         help="The auth file (default: $XDG_RUNTIME_DIR/containers/auth.json, as podman and skopeo).")


@click.command(name="login")
@click.argument("registry")
@click.option("--username", "-u", help="User name (asked on the terminal when not given).")
@click.option("--password", "-p", help="Password (prefer --password-stdin: a flag shows in the process list).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True, metavar="BOOL",
              help="false: allow http and unverified https for REGISTRY.")
@click.option("--cert-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Certificates for REGISTRY: every *.crt a CA, *.cert with *.key a client pair.")
@_AUTHFILE
@verbose_option
def _login(registry: str, username: str | None, password: str | None, password_stdin: bool,
           tls_verify: bool | None, cert_dir: str | None, authfile: str | None, verbose: int) -> None:
    """Check USER's password against REGISTRY and store it in the auth file skopeo and podman read."""
    from regcopy.cli._access import Access

    setup_logging(verbose)
    host = _host(registry)
    user, secret = _user_and_password(username, password, password_stdin)
    access = Access(tls_verify=tls_verify, cert_dir=cert_dir, username=user, password=secret)
    run_async(lambda: _verify(host, access))
    path = _authfile(authfile)
    data = _read(path)
    data.setdefault("auths", {})[host] = {"auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}
    _write(path, data)
    click.echo("Login Succeeded!")


@click.command(name="logout")
@click.argument("registry", required=False)
@click.option("--all", "-a", "everything", is_flag=True, help="Remove the credentials of every registry.")
@_AUTHFILE
def _logout(registry: str | None, everything: bool, authfile: str | None) -> None:
    """Remove REGISTRY's credentials (or --all) from the auth file."""
    if bool(registry) == everything:
        fail("give REGISTRY or --all", EXIT_USAGE)
    path = _authfile(authfile)
    data = _read(path)
    auths = data.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    if everything:
        data["auths"] = {}
        _write(path, data)
        click.echo("Removed login credentials for all registries")
        return
    host = _host(registry or "")
    if host not in auths:
        fail(f"not logged into {host} (in {path})", EXIT_FAILED)
    del auths[host]
    _write(path, data)
    click.echo(f"Removed login credentials for {host}")


def _host(registry: str) -> str:
    """``REGISTRY`` as the auth file keys it: the host, without scheme or path (docker.io for Docker Hub)."""
    bare = registry.removeprefix("docker://").removeprefix("https://").removeprefix("http://").split("/")[0]
    if not bare or any(c.isspace() for c in bare):
        fail(f"{registry!r} is not a registry host", EXIT_USAGE)
    return "docker.io" if bare in ("index.docker.io", "registry-1.docker.io") else bare


def _user_and_password(username: str | None, password: str | None, from_stdin: bool) -> tuple[str, str]:
    if from_stdin and password is not None:
        fail("--password and --password-stdin: give one", EXIT_USAGE)
    if from_stdin:
        if username is None:
            fail("--password-stdin needs --username", EXIT_USAGE)
        password = sys.stdin.read().rstrip("\r\n")
    if username is None:
        username = click.prompt("Username", err=True) if sys.stdin.isatty() else None
    if password is None:
        password = click.prompt("Password", hide_input=True, err=True) if sys.stdin.isatty() else None
    if not username or password is None:
        fail("no user name or password given, and no terminal to ask on", EXIT_USAGE)
    return username, password


async def _verify(host: str, access: Any) -> None:
    """An authenticated ``GET /v2/`` with these credentials (raises what the registry answers)."""
    from regcopy import Client, StaticCredentials

    async with Client(credentials=StaticCredentials({}), overrides=access.layer([host])) as client:
        await client.transport(host).request("GET", "/v2/")


def _authfile(given: str | None) -> Path:
    if given:
        return Path(given).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
    return Path(runtime, "containers", "auth.json")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"auths": {}}
    except (OSError, ValueError) as exc:
        fail(f"cannot read the auth file {path}: {exc}", EXIT_USAGE)
    if not isinstance(data, dict):
        fail(f"the auth file {path} is not a JSON object", EXIT_USAGE)
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically, private to its owner (it holds passwords)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent="\t")
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
