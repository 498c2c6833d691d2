"""skopeo 1.9.3 as an independent reference client: seed registries from layouts and verify what they hold.

This module owns every skopeo invocation made by tests: an isolated environment (empty auth file,
private HOME/XDG/DOCKER_CONFIG, empty registries.conf, no signature policy), a timeout, and an
AssertionError carrying skopeo's output on failure.

Seeding routes, because skopeo 1.9.3 (containers/image 5.22) cannot push every layout directly:

* OCI manifests and non-nested OCI indexes: ``skopeo copy --all --preserve-digests oci:DIR:TAG``.
* Docker media types: the ``oci:`` transport of 5.22 skips index.json entries whose ``mediaType`` is not
  an OCI type ("no descriptor found for reference"), so the tag is re-exported (hard links) as a
  ``dir:`` layout, which keeps manifest bytes and therefore digests.
* Nested indexes: ``copy --all`` fails with "Unexpectedly received a manifest list instead of a manifest
  for a single image", so children are pushed bottom-up by digest (``docker://HOST/REPO@sha256:…``) and
  the root last with ``--multi-arch index-only``.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .images import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, blob_path, layout_contents, read_blob
from .registry import RegistryServer, Role

__all__ = (
    "SKOPEO_BIN",
    "SkopeoError",
    "docker_ref",
    "inspect_digest",
    "inspect_raw",
    "list_tags",
    "run_skopeo",
    "seed",
    "verify",
)

SKOPEO_BIN = os.environ.get("REGCOPY_TEST_SKOPEO_BIN", "skopeo")
DEFAULT_TIMEOUT = 120.0


class SkopeoError(AssertionError):
    """skopeo exited non-zero (or timed out); ``str()`` holds the command, stdout and stderr."""

    def __init__(self, args: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.command = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{' '.join(args)} {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")


@contextlib.contextmanager
def _isolated_env(authfile: Path | None) -> Iterator[dict[str, str]]:
    """Environment where skopeo sees no credentials or registry config but ours.

    c/image 5.22 reads more than ``--authfile``: it falls back to ``$XDG_CONFIG_HOME/containers/auth.json``
    and ``$DOCKER_CONFIG/config.json`` / ``~/.docker/config.json`` (docs/protocol.md#credential-files), so
    HOME and every XDG/DOCKER location point into a throwaway directory.
    """
    with tempfile.TemporaryDirectory(prefix="skopeo-env-") as tmp:
        root = Path(tmp)
        home, run = root / "home", root / "run"
        home.mkdir()
        run.mkdir(mode=0o700)
        if authfile is None:
            authfile = root / "auth.json"
            authfile.write_text('{"auths":{}}')
        registries_conf = root / "registries.conf"
        registries_conf.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKER_", "XDG_"))}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_RUNTIME_DIR=str(run),
            DOCKER_CONFIG=str(home / ".docker"),
            REGISTRY_AUTH_FILE=str(authfile),
            CONTAINERS_REGISTRIES_CONF=str(registries_conf),
        )
        yield env


def run_skopeo(
    *args: str, timeout: float = DEFAULT_TIMEOUT, authfile: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``skopeo --insecure-policy ARGS`` isolated; ``authfile`` replaces the empty auth file.

    ``--insecure-policy`` because tests check transport, not signatures, and the host's
    ``/etc/containers/policy.json`` must not matter.

    :raises SkopeoError: non-zero exit or timeout.
    """
    cmd = [SKOPEO_BIN, "--insecure-policy", *args]
    with _isolated_env(authfile) as env:
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise SkopeoError(cmd, None, _text(exc.stdout), _text(exc.stderr)) from None
    if proc.returncode != 0:
        raise SkopeoError(cmd, proc.returncode, _text(proc.stdout), _text(proc.stderr))
    return proc


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def docker_ref(server: RegistryServer, ref: str) -> str:
    """``docker://HOST/REF`` for ``ref`` = ``repo:tag`` or ``repo@sha256:…``."""
    return f"docker://{server.host}/{ref}"


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``repo:tag`` / ``repo@digest`` → (repo, digest or None)."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return (ref[:colon] if colon > slash else ref), None


def _flags(server: RegistryServer, role: Role, creds: tuple[str, str] | None, authfile: Path | None) -> list[str]:
    # With an explicit auth file the credentials must come from it, so no --creds.
    return server.skopeo_flags(role, creds=creds, anonymous=authfile is not None)


# ---------------------------------------------------------------------------------------------- seeding


def _dir_layout(layout: Path, digest: str, dest: Path) -> None:
    """Export the tree under ``digest`` as a containers ``dir:`` layout (hard links, no copies).

    Format (c/image ``directory``): ``version``, ``manifest.json`` = root manifest bytes,
    ``<hex>.manifest.json`` for each list instance, ``<hex>`` for configs and layers.
    """
    dest.mkdir(parents=True)
    (dest / "version").write_text("Directory Transport Version: 1.1\n")

    def link(src: Path, name: str) -> None:
        target = dest / name
        if target.exists():
            return
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)

    def walk(d: str, top: bool) -> None:
        raw = read_blob(layout, d)
        link(blob_path(layout, d), "manifest.json" if top else f"{d.split(':', 1)[1]}.manifest.json")
        doc = json.loads(raw)
        if "manifests" in doc:
            for child in doc["manifests"]:
                walk(child["digest"], False)
        else:
            for blob in (doc["config"], *doc["layers"]):
                link(blob_path(layout, blob["digest"]), blob["digest"].split(":", 1)[1])

    walk(digest, True)


def _push_tree(
    server: RegistryServer,
    layout: Path,
    media_type: str,
    digest: str,
    dest: str,
    *,
    all_: bool,
    creds: tuple[str, str] | None,
    authfile: Path | None,
    workdir: Path,
    timeout: float,
    digest_file: Path | None = None,
) -> None:
    """Push the tree under ``digest`` to ``dest`` via ``dir:``, children first when indexes nest."""
    repo = dest.rsplit("@", 1)[0] if "@" in dest else dest.rsplit(":", 1)[0]
    children = json.loads(read_blob(layout, digest)).get("manifests", []) if media_type in INDEX_TYPES else []
    extra: list[str] = ["--all"] if all_ else []
    if all_ and any(c["mediaType"] in INDEX_TYPES for c in children):
        for child in children:
            _push_tree(
                server,
                layout,
                child["mediaType"],
                child["digest"],
                f"{repo}@{child['digest']}",
                all_=True,
                creds=creds,
                authfile=authfile,
                workdir=workdir,
                timeout=timeout,
            )
        # Every child is in the repo now; push only the root list (the registry checks children exist).
        extra = ["--multi-arch", "index-only"]
    src_dir = workdir / f"dir-{len(list(workdir.iterdir()))}"
    _dir_layout(layout, digest, src_dir)
    run_skopeo(
        "copy",
        "--quiet",
        "--preserve-digests",
        *extra,
        *(["--digestfile", str(digest_file)] if digest_file else []),
        *_flags(server, "dest", creds, authfile),
        f"dir:{src_dir}",
        dest,
        timeout=timeout,
        authfile=authfile,
    )


def seed(
    server: RegistryServer,
    layout_dir: Path,
    tag: str,
    repo: str,
    dest_tag: str | None = None,
    all: bool = True,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Push ``tag`` of an OCI layout to ``server`` as ``repo:dest_tag`` with skopeo, digests preserved.

    :param all: push every instance of an index (``--all``); otherwise skopeo picks one platform.
    :param creds: credentials instead of the server's own (e.g. a pull-only user).
    :param authfile: an auth.json to use instead of ``--dest-creds``.
    :returns: the digest of what was pushed under the tag (from ``--digestfile``).
    :raises SkopeoError: skopeo failed (e.g. denied).
    """
    layout_dir = Path(layout_dir)
    dest = f"docker://{server.host}/{repo}:{dest_tag or tag}"
    contents = layout_contents(layout_dir, tag)
    below_root = [d for d in contents.manifests.values() if d.digest != contents.root.digest]
    # `all` is the parameter here, hence builtins.all.
    direct = builtins.all(d.media_type in (OCI_MANIFEST, OCI_INDEX) for d in contents.manifests.values())
    direct = direct and not builtins.any(d.media_type in INDEX_TYPES for d in below_root)
    with tempfile.TemporaryDirectory(prefix="seed-") as tmp:
        work = Path(tmp)
        digest_file = work / "digest"
        if direct:
            run_skopeo(
                "copy",
                "--quiet",
                "--preserve-digests",
                *(["--all"] if all else []),
                "--digestfile",
                str(digest_file),
                *_flags(server, "dest", creds, authfile),
                f"oci:{layout_dir}:{tag}",
                dest,
                timeout=timeout,
                authfile=authfile,
            )
        else:
            work_dirs = work / "dirs"
            work_dirs.mkdir()
            _push_tree(
                server,
                layout_dir,
                contents.root.media_type,
                contents.root.digest,
                dest,
                all_=all,
                creds=creds,
                authfile=authfile,
                workdir=work_dirs,
                timeout=timeout,
                digest_file=digest_file,
            )
        return digest_file.read_text().strip()


# ---------------------------------------------------------------------------------------------- reading


def inspect_raw(
    server: RegistryServer,
    ref: str,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """Raw manifest bytes of ``ref`` (``repo:tag`` or ``repo@digest``) as the registry serves them."""
    proc = run_skopeo(
        "inspect",
        "--raw",
        *_flags(server, "", creds, authfile),
        docker_ref(server, ref),
        timeout=timeout,
        authfile=authfile,
    )
    return proc.stdout


def inspect_digest(
    server: RegistryServer,
    ref: str,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
) -> str:
    """``sha256:`` digest of the raw manifest bytes of ``ref``."""
    return "sha256:" + hashlib.sha256(inspect_raw(server, ref, creds=creds, authfile=authfile)).hexdigest()


def list_tags(
    server: RegistryServer,
    repo: str,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
) -> list[str]:
    """Tags of ``repo``, sorted (2.8.2 returns them in storage order)."""
    proc = run_skopeo("list-tags", *_flags(server, "", creds, authfile), docker_ref(server, repo), authfile=authfile)
    return sorted(json.loads(proc.stdout)["Tags"] or [])


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _check_dir(pulled: Path, raw: bytes, digest: str) -> None:
    """Check a ``dir:`` pull: manifest bytes, every instance manifest and every blob's digest and size."""

    def check_manifest(data: bytes, want: str, size: int | None) -> None:
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        _check(got == want, f"manifest digest {got} != {want}")
        _check(size is None or len(data) == size, f"manifest {want}: {len(data)} bytes, descriptor says {size}")
        doc: dict[str, Any] = json.loads(data)
        if "manifests" in doc:
            for child in doc["manifests"]:
                path = pulled / f"{child['digest'].split(':', 1)[1]}.manifest.json"
                _check(path.is_file(), f"instance {child['digest']} was not pulled")
                check_manifest(path.read_bytes(), child["digest"], child["size"])
            return
        for blob in (doc["config"], *doc["layers"]):
            path = pulled / blob["digest"].split(":", 1)[1]
            _check(path.is_file(), f"blob {blob['digest']} was not pulled")
            _check(path.stat().st_size == blob["size"], f"blob {blob['digest']}: size != {blob['size']}")
            _check(_sha256_file(path) == blob["digest"], f"blob {blob['digest']}: content digest mismatch")

    _check((pulled / "manifest.json").read_bytes() == raw, "pulled manifest.json differs from the raw manifest")
    check_manifest(raw, digest, None)


def verify(
    server: RegistryServer,
    ref: str,
    expected_digest: str | None = None,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """Check that ``ref`` is complete and intact on ``server``; return its raw manifest bytes.

    Fetches the raw manifest (digest compared with ``expected_digest`` and with a ``@digest`` ref),
    then pulls everything with ``skopeo copy --all docker://… dir:TMP`` and checks every manifest and
    blob file against the digests and sizes of its descriptors, recursing through indexes. Nested
    indexes are pulled child by child, since skopeo 1.9.3 cannot copy them in one go.

    :raises AssertionError: anything missing or corrupt (:class:`SkopeoError` if skopeo fails).
    """
    raw = inspect_raw(server, ref, creds=creds, authfile=authfile, timeout=timeout)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    repo, ref_digest = _split_ref(ref)
    _check(ref_digest is None or ref_digest == digest, f"{ref}: served manifest has digest {digest}")
    _check(expected_digest is None or expected_digest == digest, f"{ref}: digest {digest} != {expected_digest}")
    _verify_tree(server, repo, raw, digest, creds=creds, authfile=authfile, timeout=timeout)
    return raw


def _verify_tree(
    server: RegistryServer,
    repo: str,
    raw: bytes,
    digest: str,
    *,
    creds: tuple[str, str] | None,
    authfile: Path | None,
    timeout: float,
) -> None:
    doc = json.loads(raw)
    children = doc.get("manifests", []) if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc else []
    if any(c.get("mediaType") in INDEX_TYPES for c in children):
        for child in children:
            child_raw = verify(server, f"{repo}@{child['digest']}", creds=creds, authfile=authfile, timeout=timeout)
            _check(len(child_raw) == child["size"], f"{child['digest']}: size != {child['size']}")
        return
    with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
        pulled = Path(tmp) / "pulled"
        run_skopeo(
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            *_flags(server, "src", creds, authfile),
            docker_ref(server, f"{repo}@{digest}"),
            f"dir:{pulled}",
            timeout=timeout,
            authfile=authfile,
        )
        _check_dir(pulled, raw, digest)
