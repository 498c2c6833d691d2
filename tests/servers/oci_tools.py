"""podman and umoci as independent consumers of what regcopy writes (registries, archives, layouts).

This module owns every podman and umoci invocation made by tests: podman runs as root with its own
throwaway storage (``--root``/``--runroot`` in a temp directory, the ``vfs`` driver, no systemd, an
empty registries.conf and an accept-anything signature policy), so nothing of the machine's own
containers storage is read or written; umoci needs no daemon or storage. Each runner raises
:class:`ToolError` with the tool's output on a non-zero exit, and :func:`podman_works` says whether
podman can run here at all (a sandbox without user namespaces or overlay support still runs vfs as
root; a test skips when it cannot).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ("Podman", "ToolError", "podman_works", "run_umoci", "umoci_available")

_TIMEOUT = 120.0


class ToolError(AssertionError):
    """A tool exited non-zero (or timed out); ``str()`` holds the command and its output."""

    def __init__(self, args: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.command = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{' '.join(args)} {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = _TIMEOUT) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(cmd, None, str(exc.stdout or ""), str(exc.stderr or "")) from None
    if proc.returncode != 0:
        raise ToolError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


class Podman:
    """podman with private storage under ``root`` (created; remove it with the test's tmp_path).

    podman refuses a run root longer than 50 characters, so that one is a short temp directory,
    removed by :meth:`close` (use the instance as a context manager).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runroot = Path(tempfile.mkdtemp(prefix="podrun-", dir="/tmp"))
        root.mkdir(parents=True, exist_ok=True)
        (root / "registries.conf").write_text("")
        (root / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKER_", "XDG_"))}
        self.env.update(HOME=str(root), CONTAINERS_REGISTRIES_CONF=str(root / "registries.conf"),
                        XDG_RUNTIME_DIR=str(root / "xdg"), XDG_CONFIG_HOME=str(root / "config"))

    def run(self, *args: str) -> str:
        """``podman ARGS`` against this storage. :raises ToolError: non-zero exit"""
        base = ["podman", "--root", str(self.root / "storage"), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        return _run([*base, *args], env=self.env)

    def close(self) -> None:
        """Remove the run root (the storage goes with ``root``)."""
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pull(self, ref: str) -> str:
        """Pull ``HOST/REPO:TAG`` over plain http; returns the image id."""
        return self.run("pull", "--quiet", "--tls-verify=false", "--signature-policy",
                        str(self.root / "policy.json"), ref).strip()

    def load(self, archive: Path) -> str:
        """Load a docker-archive (or oci-archive); returns podman's output (``Loaded image: …``)."""
        return self.run("load", "--signature-policy", str(self.root / "policy.json"), "-i", str(archive))

    def image_digest_list(self) -> list[str]:
        """The ids of every image in this storage."""
        return self.run("images", "--quiet", "--no-trunc").split()


@functools.cache
def podman_works() -> bool:
    """Whether podman runs here as root with vfs storage (checked once per session)."""
    if shutil.which("podman") is None or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory(prefix="podman-probe-") as tmp:
        try:
            with Podman(Path(tmp)) as podman:
                podman.run("images")
        except (ToolError, OSError):
            return False
    return True


def umoci_available() -> bool:
    """Whether the umoci binary is installed (apt ``umoci``, scripts/setup.sh)."""
    return shutil.which("umoci") is not None


def run_umoci(*args: str) -> str:
    """``umoci ARGS`` (rootless mode for unpack is the caller's choice). :raises ToolError: non-zero exit"""
    return _run(["umoci", *args])
