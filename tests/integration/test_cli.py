"""The ``regcopy`` console script end to end: copy, ping, ls, digest; output formats and exit codes."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from servers import skopeo
from servers.registry import RegistryServer


def run(*args: str, authfile: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "regcopy", *args]
    if authfile is not None:
        cmd += ["--authfile", str(authfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_help_and_version() -> None:
    out = run("--help")
    assert out.returncode == 0 and "copy" in out.stdout and "ping" in out.stdout
    assert run("--version").stdout.strip().endswith("0.1.0")


def test_copy_json_report_and_exit_code(
    http_registry: RegistryServer, registry_factory: Any, seed: Any, empty_authfile: Path
) -> None:
    dst = registry_factory("http")
    digest = seed(http_registry, "multi", "src/app")
    out = run("copy", f"docker://{http_registry.host}/src/app:multi", f"{dst.host}/dst/app:v1",
              "-o", "json", "--progress", "plain", authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["digest"] == report["source_digest"] == digest
    assert report["blobs_uploaded"] == 7 and report["bytes_uploaded"] > 0 and report["tag"] == "v1"
    assert "images 1/1" in out.stderr  # the plain progress line (not a TTY)
    skopeo.verify(dst, "dst/app:v1", digest)


def test_copy_with_tls_and_token_auth_flags(
    http_registry: RegistryServer, token_registry: RegistryServer, seed: Any, tmp_path: Path
) -> None:
    digest = seed(http_registry, "oci", "src/app")
    auth = tmp_path / "auth.json"
    secret = base64.b64encode(f"{token_registry.username}:{token_registry.password}".encode()).decode()
    auth.write_text(json.dumps({"auths": {token_registry.host: {"auth": secret}}}))
    assert token_registry.cert_dir is not None
    out = run("copy", f"{http_registry.host}/src/app:oci", f"{token_registry.host}/dst/app:oci",
              "--dest-cert-dir", str(token_registry.cert_dir), "--progress", "none", authfile=auth)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("copied ")
    assert token_registry.password not in out.stdout + out.stderr
    skopeo.verify(token_registry, "dst/app:oci", digest)


def test_dest_tls_verify_false_allows_an_untrusted_certificate(
    http_registry: RegistryServer, https_registry: RegistryServer, seed: Any, empty_authfile: Path
) -> None:
    seed(http_registry, "oci", "src/app")
    strict = run("copy", f"{http_registry.host}/src/app:oci", f"{https_registry.host}/dst/app:oci",
                 "--dest-tls-verify=true", "--progress", "none", authfile=empty_authfile)
    assert strict.returncode == 1 and "certificate" in strict.stderr.lower()
    loose = run("copy", f"{http_registry.host}/src/app:oci", f"{https_registry.host}/dst/app:oci",
                "--dest-tls-verify=false", "--progress", "none", authfile=empty_authfile)
    assert loose.returncode == 0, loose.stderr


def test_usage_errors_exit_2(empty_authfile: Path) -> None:
    bad = run("copy", "UPPER/case:tag", "x/y:z", authfile=empty_authfile)
    assert bad.returncode == 2 and "lowercase" in bad.stderr
    missing = run("copy", "onlyone")
    assert missing.returncode == 2


def test_missing_image_exits_1(http_registry: RegistryServer, empty_authfile: Path) -> None:
    out = run("copy", f"{http_registry.host}/nope/app:v1", f"{http_registry.host}/dst/app:v1",
              "--progress", "none", authfile=empty_authfile)
    assert out.returncode == 1
    assert "MANIFEST_UNKNOWN" in out.stderr or "not known" in out.stderr or "404" in out.stderr
    assert "Traceback" not in out.stderr


def test_all_tags(http_registry: RegistryServer, registry_factory: Any, seed: Any, empty_authfile: Path) -> None:
    dst = registry_factory("http")
    for tag in ("oci", "docker"):
        seed(http_registry, tag, "src/app")
    out = run("copy", "--all-tags", f"{http_registry.host}/src/app", f"{dst.host}/dst/app", "-o", "json",
              "--progress", "none", authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    assert [r["tag"] for r in json.loads(out.stdout)] == ["docker", "oci"]
    assert skopeo.list_tags(dst, "dst/app") == ["docker", "oci"]


def test_ping_ls_digest(http_registry: RegistryServer, seed: Any, empty_authfile: Path) -> None:
    digest = seed(http_registry, "oci", "src/app")
    seed(http_registry, "docker", "src/app")
    ping = run("ping", http_registry.host, "-o", "json", authfile=empty_authfile)
    assert ping.returncode == 0, ping.stderr
    data = json.loads(ping.stdout)
    assert data["scheme"] == "http" and [p["scheme"] for p in data["probes"]] == ["https", "http"]
    text = run("ping", f"http://{http_registry.host}", authfile=empty_authfile)
    assert "explicit http:// prefix" in text.stdout
    tags = run("ls", f"{http_registry.host}/src/app", "--filter", "o.*", authfile=empty_authfile)
    assert tags.stdout.split() == ["oci"]
    out = run("digest", f"{http_registry.host}/src/app:oci", authfile=empty_authfile)
    assert out.stdout.strip() == digest


def test_copy_through_local_locations(
    http_registry: RegistryServer, registry_factory: Any, seed: Any, empty_authfile: Path, tmp_path: Path
) -> None:
    dst = registry_factory("http")
    digest = seed(http_registry, "multi", "src/app")
    hops = [f"{http_registry.host}/src/app:multi", f"oci:{tmp_path}/layout:apps/app:multi",
            f"oci-archive:{tmp_path}/app.tar:multi", f"{dst.host}/back/app"]
    for src, target in itertools.pairwise(hops):
        out = run("copy", src, target, "-o", "json", "--progress", "none", authfile=empty_authfile)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["digest"] == digest  # exact bytes through every hop
    skopeo.verify(dst, "back/app:multi", digest)  # the oci-archive ref "multi" became the tag
    skopeo.run_skopeo("inspect", f"oci:{tmp_path}/layout:apps/app:multi", authfile=empty_authfile)


def test_docker_archive_round_trip_reports_new_digests(
    http_registry: RegistryServer, registry_factory: Any, seed: Any, empty_authfile: Path, tmp_path: Path
) -> None:
    dst = registry_factory("http")
    seed(http_registry, "docker", "src/app")
    archive = tmp_path / "app.tar"
    # skopeo writes a classic docker-archive (uncompressed layers): regcopy builds a schema 2 manifest.
    skopeo.run_skopeo("copy", "--src-tls-verify=false", f"docker://{http_registry.host}/src/app:docker",
                      f"docker-archive:{archive}:src/app:docker", authfile=empty_authfile)
    out = run("copy", f"docker-archive:{archive}", f"{dst.host}/from/archive:v1", "-o", "json", "--progress",
              "none", authfile=empty_authfile)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["new_digest"] is True
    skopeo.verify(dst, "from/archive:v1", report["digest"])
    text = run("copy", f"docker-archive:{archive}", f"{dst.host}/from/archive:v2", "--progress", "none",
               authfile=empty_authfile)
    assert "manifest built from a docker-archive" in text.stdout
