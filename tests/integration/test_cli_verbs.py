"""The familiar verbs (skopeo's and crane's names) and the housekeeping verbs' access flags, end to end
against real registries; where skopeo has the same verb, its output is the reference."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_dropin import _digest, _regcopy  # type: ignore[import-not-found]

from servers import skopeo
from servers.registry import RegistryServer


def _skopeo_json(*args: str) -> Any:
    return json.loads(skopeo.run_skopeo(*args).stdout)


def test_inspect_of_an_index_like_skopeo(http_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    """The digest is the index's (skopeo's Digest); the chosen platform's manifest is shown beside it, with
    the config's Env, Labels, layers and platform as skopeo reports them."""
    index = seed(http_registry, "multi", "src/app")
    ref = f"docker://{http_registry.host}/src/app:multi"
    theirs = _skopeo_json("inspect", "--tls-verify=false", ref)
    out = _regcopy(["inspect", "-o", "json", ref], tmp_path)
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert ours["digest"] == theirs["Digest"] == index
    child = skopeo.inspect_digest(http_registry, f"src/app@{ours['manifest_digest']}")
    assert ours["manifest_digest"] == child != index  # the chosen child, fetched by its digest
    assert (ours["os"], ours["architecture"]) == (theirs["Os"], theirs["Architecture"])
    assert [layer["digest"] for layer in ours["layers"]] == theirs["Layers"]
    assert ours["env"] == theirs["Env"] and ours["labels"] == (theirs["Labels"] or {})
    assert ours["created"] == theirs["Created"] or ours["created"].startswith(theirs["Created"][:19])
    text = _regcopy(["inspect", ref], tmp_path).stdout
    assert f"digest     {index}" in text and f"manifest   {child}" in text and "env        PATH=" in text


def test_inspect_of_an_image_shows_its_config(http_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    digest = seed(http_registry, "oci", "src/app")
    ref = f"docker://{http_registry.host}/src/app:oci"
    ours = json.loads(_regcopy(["inspect", "-o", "json", ref], tmp_path).stdout)
    assert ours["digest"] == ours["manifest_digest"] == digest and ours["labels"] == {"kind": "oci"}
    raw_config = skopeo.run_skopeo("inspect", "--tls-verify=false", "--config", "--raw", ref).stdout
    config = _regcopy(["inspect", "--config", ref], tmp_path)
    assert config.returncode == 0 and config.stdout.encode() == raw_config  # byte for byte
    assert _regcopy(["config", ref], tmp_path).stdout.encode() == raw_config  # crane's name
    assert hashlib.sha256(raw_config).hexdigest() == ours["config_digest"].removeprefix("sha256:")
    raw = _regcopy(["inspect", "--raw", ref], tmp_path).stdout.encode()
    assert raw == skopeo.inspect_raw(http_registry, "src/app:oci")


def test_list_tags_like_skopeo(basic_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    """skopeo's JSON shape, through the housekeeping verbs' --cert-dir and --creds."""
    seed(basic_registry, "oci", "src/app")
    seed(basic_registry, "docker", "src/app")
    flags = basic_registry.skopeo_flags()
    ref = f"docker://{basic_registry.host}/src/app"
    theirs = _skopeo_json("list-tags", *flags, ref)
    out = _regcopy(["list-tags", *flags, ref], tmp_path)
    assert out.returncode == 0, out.stderr
    ours = json.loads(out.stdout)
    assert ours["Repository"] == theirs["Repository"]
    assert sorted(ours["Tags"]) == sorted(theirs["Tags"]) == ["docker", "oci"]
    anonymous = _regcopy(["list-tags", "--cert-dir", str(basic_registry.cert_dir), ref], tmp_path)
    assert anonymous.returncode == 1 and "Traceback" not in anonymous.stderr


def test_housekeeping_verbs_take_the_access_flags(basic_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    digest = seed(basic_registry, "oci", "src/app")
    seed(basic_registry, "multi", "src/app", f"sha256-{'a' * 64}")  # a tag shaped like a referrer fallback
    assert basic_registry.username is not None and basic_registry.password is not None
    access = ["--cert-dir", str(basic_registry.cert_dir), "--username", basic_registry.username,
              "--password", basic_registry.password]
    host = basic_registry.host
    assert _regcopy(["digest", *access, f"{host}/src/app:oci"], tmp_path).stdout.strip() == digest
    ls = _regcopy(["ls", *access, "--full-ref", "--omit-digest-tags", f"{host}/src/app"], tmp_path)
    assert ls.returncode == 0 and ls.stdout.split() == [f"{host}/src/app:oci"], ls.stderr
    every = _regcopy(["ls", *access, f"{host}/src/app"], tmp_path).stdout.split()
    assert every == sorted(["oci", f"sha256-{'a' * 64}"])
    catalog = _regcopy(["catalog", *access, "--full-ref", host], tmp_path)
    assert catalog.returncode == 0 and catalog.stdout.split() == [f"{host}/src/app"], catalog.stderr
    manifest = _regcopy(["manifest", *access, f"{host}/src/app:oci"], tmp_path)
    assert "sha256:" + hashlib.sha256(manifest.stdout.encode()).hexdigest() == digest
    ping = _regcopy(["ping", "--cert-dir", str(basic_registry.cert_dir), "--tls-verify=true", host], tmp_path)
    assert ping.returncode == 0 and "https" in ping.stdout, ping.stderr
    wrong = _regcopy(["digest", "--cert-dir", str(basic_registry.cert_dir), "--creds", "alice:nope",
                      f"{host}/src/app:oci"], tmp_path)
    assert wrong.returncode == 1 and "nope" not in wrong.stderr


def test_manifest_digest_like_skopeo(http_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    seed(http_registry, "dockerlist", "src/app")
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(skopeo.inspect_raw(http_registry, "src/app:dockerlist"))
    theirs = skopeo.run_skopeo("manifest-digest", str(manifest)).stdout.decode().strip()
    out = _regcopy(["manifest-digest", str(manifest)], tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == theirs


def _login_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKER_", "XDG_"))}
    runtime = tmp / "runtime"
    runtime.mkdir(exist_ok=True)
    return env | {"HOME": str(tmp), "XDG_RUNTIME_DIR": str(runtime), "REGCOPY_CERTS_D": ""}


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, check=False, env=env)


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_login_writes_what_skopeo_login_writes(mode: str, registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    server = registry_factory(mode)
    seed(server, "oci", "src/app")
    assert server.username is not None and server.password is not None
    theirs = tmp_path / "skopeo-auth.json"
    skopeo.run_skopeo("login", "--authfile", str(theirs), "--cert-dir", str(server.cert_dir), "--username",
                      server.username, "--password", server.password, server.host)
    env = _login_env(tmp_path)
    certs = ["--cert-dir", str(server.cert_dir)]
    out = _run(["login", *certs, "-u", server.username, "--password-stdin", server.host], env, server.password + "\n")
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out.stderr
    ours = tmp_path / "runtime" / "containers" / "auth.json"  # podman's and skopeo's default file
    assert json.loads(ours.read_text())["auths"] == json.loads(theirs.read_text())["auths"]
    assert ours.stat().st_mode & 0o777 == 0o600
    # Both tools read it: regcopy by its default search, skopeo with --authfile.
    ls = _run(["ls", *certs, f"{server.host}/src/app"], env)
    assert ls.returncode == 0 and ls.stdout.split() == ["oci"], ls.stderr
    assert skopeo.list_tags(server, "src/app", authfile=ours) == ["oci"]
    # A refused password writes nothing; logout removes the entry, and a second logout says so.
    before = ours.read_text()
    wrong = _run(["login", *certs, "-u", server.username, "--password-stdin", server.host], env, "nope\n")
    assert wrong.returncode == 1 and ours.read_text() == before and "nope" not in wrong.stderr
    assert _run(["logout", server.host], env).returncode == 0
    assert server.host not in json.loads(ours.read_text())["auths"]
    again = _run(["logout", server.host], env)
    assert again.returncode == 1 and "not logged into" in again.stderr


def test_login_to_docker_config_with_authfile(basic_registry: RegistryServer, tmp_path: Path) -> None:
    """--authfile names docker's config.json: its other keys are kept."""
    assert basic_registry.username is not None and basic_registry.password is not None
    config = tmp_path / ".docker" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "credsStore": "desktop"}))
    out = _run(["login", "--authfile", str(config), "--cert-dir", str(basic_registry.cert_dir), "-u",
                basic_registry.username, "-p", basic_registry.password, basic_registry.host], _login_env(tmp_path))
    assert out.returncode == 0, out.stderr
    data = json.loads(config.read_text())
    assert data["credsStore"] == "desktop" and set(data["auths"]) == {"other.example", basic_registry.host}


def test_blob_writes_the_verified_bytes(basic_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    seed(basic_registry, "oci", "src/app")
    manifest = json.loads(skopeo.inspect_raw(basic_registry, "src/app:oci"))
    layer = manifest["layers"][0]
    access = basic_registry.skopeo_flags()
    out = subprocess.run([sys.executable, "-m", "regcopy", "blob", *access,
                          f"{basic_registry.host}/src/app@{layer['digest']}"], capture_output=True, timeout=120,
                         check=False, env=_login_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) == layer["size"] and "sha256:" + hashlib.sha256(out.stdout).hexdigest() == layer["digest"]
    tagged = _regcopy(["blob", *access, f"{basic_registry.host}/src/app:oci"], tmp_path)
    assert tagged.returncode == 2 and "digest" in tagged.stderr


def test_copy_no_clobber_and_index_only(http_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    """--no-clobber (crane) refuses an existing destination tag, whatever it holds; --multi-arch index-only
    (skopeo) copies the index alone once its images are at the destination, and is refused before."""
    host = http_registry.host
    oci = seed(http_registry, "oci", "src/app")
    index = seed(http_registry, "multi", "src/app")
    first = _regcopy(["copy", "--no-clobber", f"{host}/src/app:oci", f"{host}/dst/app:v1"], tmp_path)
    assert first.returncode == 0, first.stderr
    again = _regcopy(["copy", "--no-clobber", f"{host}/src/app:multi", f"{host}/dst/app:v1"], tmp_path)
    assert again.returncode == 1 and "clobber" in again.stderr
    assert _digest(http_registry, "dst/app:v1") == oci
    alone = _regcopy(["copy", "--multi-arch", "index-only", f"{host}/src/app:multi", f"{host}/idx/app:m"], tmp_path)
    assert alone.returncode == 1 and _digest(http_registry, "idx/app:m") is None
    for child in json.loads(skopeo.inspect_raw(http_registry, "src/app:multi"))["manifests"]:
        pushed = _regcopy(["copy", f"{host}/src/app@{child['digest']}", f"{host}/idx/app@{child['digest']}"],
                          tmp_path)
        assert pushed.returncode == 0, pushed.stderr
    out = _regcopy(["copy", "--multi-arch", "index-only", f"{host}/src/app:multi", f"{host}/idx/app:m"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert _digest(http_registry, "idx/app:m") == index
    both = _regcopy(["copy", "-a", "--platform", "linux/amd64", f"{host}/src/app:multi", f"{host}/x/app:m"],
                    tmp_path)
    assert both.returncode == 2 and "contradict" in both.stderr


def test_prune_takes_the_access_flags(basic_registry: RegistryServer, seed: Any, tmp_path: Path) -> None:
    seed(basic_registry, "oci", "src/app", "1.0.0")
    seed(basic_registry, "docker", "src/app", "2.0.0")
    plan = tmp_path / "prune.yaml"
    plan.write_text(f"prune:\n  - repository: {basic_registry.host}/src/app\n    keep_latest: 1\n")
    access = basic_registry.skopeo_flags()
    out = _regcopy(["prune", str(plan), *access, "-o", "json"], tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["dry_run"] is True and "1.0.0" in out.stdout
    anonymous = _regcopy(["prune", str(plan), "--cert-dir", str(basic_registry.cert_dir), "-o", "json"], tmp_path)
    assert anonymous.returncode == 1
