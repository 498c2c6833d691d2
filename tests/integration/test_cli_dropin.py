"""regcopy as a drop-in for skopeo: the same ``copy``/``sync`` invocation through skopeo and through
regcopy, against the same real registries (http, https with a CA directory, htpasswd, token), must
end the same way: the same exit status, the same digests at the destination, the same
``--digestfile``. Each row of :data:`COPY_CASES` / :data:`SYNC_CASES` is one invocation; the two
tools write to sibling repositories of one destination registry (``skopeo/...`` and ``regcopy/...``).

Besides the table: the flags regcopy refuses by name, ``--append-suffix`` (skopeo 1.9.3 lacks it),
and the ``certs.d/HOST:PORT`` lookup compared with skopeo reading ``/etc/containers/certs.d``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servers import skopeo
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import Mode, RegistryServer

# What a row's flags may name: {src_certs}, {dst_certs} (the side's CA directory), {src_user},
# {src_password}, {dst_creds}, {src_auth}, {dst_auth} (an auth file holding that side's user),
# {dst_token} (a bearer token from the destination's token server), {digestfile}.
Flags = list[str]


@dataclass(frozen=True)
class Case:
    id: str
    src: Mode
    dst: Mode
    sample: str
    flags: Flags
    ok: bool = True
    tag_in_source: bool = True


COPY_CASES = [
    Case("tls-verify-false_cert-dir_creds_all_digestfile", "http", "basic", "multi",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-creds", "{dst_creds}", "-a",
          "--digestfile", "{digestfile}"]),
    Case("username-password_retry-times_preserve-digests", "basic", "http", "oci",
         ["--src-cert-dir", "{src_certs}", "--src-username", "{src_user}", "--src-password", "{src_password}",
          "--dest-tls-verify=false", "--retry-times", "2", "--preserve-digests", "--digestfile", "{digestfile}"]),
    Case("per-side-authfile", "token", "http", "docker",
         ["--src-cert-dir", "{src_certs}", "--src-authfile", "{src_auth}", "--dest-tls-verify=false",
          "--digestfile", "{digestfile}"]),
    Case("dest-authfile_remove-signatures_quiet", "http", "token", "dockerlist",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-authfile", "{dst_auth}", "--all",
          "--remove-signatures", "-q", "--digestfile", "{digestfile}"]),
    Case("dest-registry-token", "http", "token", "oci",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-registry-token", "{dst_token}",
          "--digestfile", "{digestfile}"]),
    Case("multi-arch-system", "http", "http", "multi",
         ["--src-tls-verify=false", "--dest-tls-verify=false", "--multi-arch", "system", "--digestfile",
          "{digestfile}"]),
    Case("multi-arch-all", "https", "http", "multi",
         ["--src-cert-dir", "{src_certs}", "--dest-tls-verify=false", "--multi-arch", "all"]),
    Case("src-no-creds-is-refused", "basic", "http", "oci",
         ["--src-cert-dir", "{src_certs}", "--src-no-creds", "--dest-tls-verify=false"], ok=False),
    Case("wrong-dest-creds", "http", "basic", "oci",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-creds", "alice:wrong"], ok=False),
    Case("untrusted-certificate", "http", "https", "oci",
         ["--src-tls-verify=false", "--dest-tls-verify=true"], ok=False),
    Case("missing-tag", "http", "http", "oci",
         ["--src-tls-verify=false", "--dest-tls-verify=false"], ok=False, tag_in_source=False),
]

SYNC_CASES = [
    Case("docker_tls_cert-dir_creds_all", "http", "basic", "multi",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-creds", "{dst_creds}", "--all"]),
    Case("docker_authfiles_retry-times_keep-going", "token", "http", "oci",
         ["--src-cert-dir", "{src_certs}", "--src-authfile", "{src_auth}", "--dest-tls-verify=false",
          "--retry-times", "1", "--keep-going", "--preserve-digests"]),
    Case("docker_dest-registry-token_remove-signatures", "http", "token", "dockerlist",
         ["--src-tls-verify=false", "--dest-cert-dir", "{dst_certs}", "--dest-registry-token", "{dst_token}", "-a",
          "--remove-signatures"]),
    Case("docker_wrong-src-creds", "basic", "http", "oci",
         ["--src-cert-dir", "{src_certs}", "--src-creds", "alice:wrong", "--dest-tls-verify=false"], ok=False),
]


def _authfile(path: Path, server: RegistryServer) -> Path:
    assert server.username is not None and server.password is not None
    secret = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    path.write_text(json.dumps({"auths": {server.host: {"auth": secret}}}))
    return path


def _values(src: RegistryServer, dst: RegistryServer, tmp: Path, repos: list[str]) -> dict[str, str]:
    values = {"src_certs": str(src.cert_dir), "dst_certs": str(dst.cert_dir),
              "src_user": src.username or "", "src_password": src.password or ""}
    if src.username:
        values["src_auth"] = str(_authfile(tmp / "src-auth.json", src))
    if dst.username:
        values["dst_creds"] = f"{dst.username}:{dst.password}"
        values["dst_auth"] = str(_authfile(tmp / "dst-auth.json", dst))
    if dst.token_server is not None:
        scopes = [f"repository:{r}:pull,push" for r in repos]
        values["dst_token"] = dst.token_server.issue_token(dst.username, scopes)
    return values


def _fill(flags: Flags, values: dict[str, str]) -> list[str]:
    return [f.format(**values) for f in flags]


def _regcopy(args: list[str], tmp: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``regcopy ARGS`` with no credentials or certificate directories but what ARGS (or ``extra_env``) name."""
    empty = tmp / "regcopy-empty-auth.json"
    empty.write_text('{"auths": {}}')
    home = tmp / "regcopy-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "DOCKER_", "XDG_"))}
    env.update(HOME=str(home), REGISTRY_AUTH_FILE=str(empty), REGCOPY_CERTS_D="", DOCKER_CONFIG=str(home / ".docker"),
               XDG_RUNTIME_DIR=str(home / "run"))
    env.update(extra_env)
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, timeout=180,
                          check=False, env=env, stdin=subprocess.DEVNULL)


def _skopeo(args: list[str]) -> int:
    try:
        skopeo.run_skopeo(*args)
    except skopeo.SkopeoError as exc:
        assert exc.returncode is not None, str(exc)  # a timeout is no outcome
        return exc.returncode
    return 0


def _digest(server: RegistryServer, ref: str) -> str | None:
    try:
        return skopeo.inspect_digest(server, ref)
    except skopeo.SkopeoError:
        return None


def _tags(server: RegistryServer, repo: str) -> dict[str, str | None]:
    try:
        tags = skopeo.list_tags(server, repo)
    except skopeo.SkopeoError:
        return {}
    return {t: _digest(server, f"{repo}:{t}") for t in tags}


@pytest.mark.parametrize("case", COPY_CASES, ids=[c.id for c in COPY_CASES])
def test_copy_like_skopeo(case: Case, registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(case.src), registry_factory(case.dst)
    seed(src, case.sample, "src/app")
    tag = case.sample if case.tag_in_source else "absent"
    values = _values(src, dst, tmp_path, ["skopeo/app", "regcopy/app"])
    outcome: dict[str, tuple[int, str | None, str | None]] = {}
    for tool in ("skopeo", "regcopy"):
        digestfile = tmp_path / f"{tool}.digest"
        flags = _fill(case.flags, values | {"digestfile": str(digestfile)})
        refs = [f"docker://{src.host}/src/app:{tag}", f"docker://{dst.host}/{tool}/app:v1"]
        if tool == "skopeo":
            rc = _skopeo(["copy", *flags, *refs])
        else:
            out = _regcopy(["copy", *flags, *refs], tmp_path)
            rc = out.returncode
            assert rc in (0, 1), out.stderr  # never a usage error, never a traceback
            assert "Traceback" not in out.stderr
            if "-q" in flags and rc == 0:
                assert out.stdout == "" and out.stderr == ""
        written = digestfile.read_text() if digestfile.exists() else None
        outcome[tool] = (rc == 0, _digest(dst, f"{tool}/app:v1") if dst.username is None else
                         _digest_as(dst, f"{tool}/app:v1"), written)
    assert outcome["skopeo"][0] is case.ok, f"skopeo's own outcome for {case.id}: {outcome}"
    assert outcome["regcopy"] == outcome["skopeo"]
    if case.ok:
        assert outcome["regcopy"][1] is not None
        if "{digestfile}" in case.flags:
            assert outcome["regcopy"][2] == outcome["regcopy"][1]  # the digest written is the tag's


def _digest_as(server: RegistryServer, ref: str) -> str | None:
    try:
        return skopeo.inspect_digest(server, ref, creds=(server.username or "", server.password or ""))
    except skopeo.SkopeoError:
        return None


def _tags_as(server: RegistryServer, repo: str) -> dict[str, str | None]:
    if server.username is None:
        return _tags(server, repo)
    creds = (server.username, server.password or "")
    try:
        tags = skopeo.list_tags(server, repo, creds=creds)
    except skopeo.SkopeoError:
        return {}
    return {t: skopeo.inspect_digest(server, f"{repo}:{t}", creds=creds) for t in tags}


@pytest.mark.parametrize("case", SYNC_CASES, ids=[c.id for c in SYNC_CASES])
def test_sync_like_skopeo(case: Case, registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(case.src), registry_factory(case.dst)
    seed(src, case.sample, "src/app")
    seed(src, case.sample, "src/app", "second")
    scoped = "--scoped" in case.flags
    below = f"{src.host}/src/app" if scoped else "app"
    values = _values(src, dst, tmp_path, [f"skopeo/{below}", f"regcopy/{below}"])
    outcome: dict[str, tuple[bool, dict[str, str | None]]] = {}
    for tool in ("skopeo", "regcopy"):
        flags = _fill(case.flags, values)
        args = ["sync", "--src", "docker", "--dest", "docker", *flags, f"{src.host}/src/app", f"{dst.host}/{tool}"]
        if tool == "skopeo":
            rc = _skopeo(args)
        else:
            out = _regcopy(args, tmp_path)
            rc = out.returncode
            assert rc in (0, 1) and "Traceback" not in out.stderr, out.stderr
        outcome[tool] = (rc == 0, _tags_as(dst, f"{tool}/{below}"))
    assert outcome["skopeo"][0] is case.ok, f"skopeo's own outcome for {case.id}: {outcome}"
    assert outcome["regcopy"] == outcome["skopeo"]
    if case.ok:
        assert sorted(outcome["regcopy"][1]) == sorted([case.sample, "second"])
        assert None not in outcome["regcopy"][1].values()


def test_sync_yaml_with_per_side_authfiles_like_skopeo(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    src, dst = registry_factory("basic"), registry_factory("token")
    seed(src, "oci", "src/one")
    seed(src, "multi", "src/two")
    src_auth, dst_auth = _authfile(tmp_path / "s.json", src), _authfile(tmp_path / "d.json", dst)
    yaml_file = tmp_path / "sync.yaml"
    yaml_file.write_text(f"{src.host}:\n  tls-verify: true\n  cert-dir: {src.cert_dir}\n"
                         "  images:\n    src/one: []\n    src/two: [multi]\n")
    outcome = {}
    for tool in ("skopeo", "regcopy"):
        args = ["sync", "--src", "yaml", "--dest", "docker", "--src-authfile", str(src_auth), "--dest-authfile",
                str(dst_auth), "--dest-cert-dir", str(dst.cert_dir), "-a", str(yaml_file), f"{dst.host}/{tool}"]
        rc = _skopeo(args) if tool == "skopeo" else _regcopy(args, tmp_path).returncode
        outcome[tool] = (rc, _tags_as(dst, f"{tool}/one"), _tags_as(dst, f"{tool}/two"))
    assert outcome["skopeo"][0] == 0 and outcome["regcopy"] == outcome["skopeo"]
    assert list(outcome["regcopy"][2]) == ["multi"]


@pytest.mark.parametrize(("verb", "flag"), [
    ("copy", ["--sign-by", "ABCDEF"]), ("copy", ["--encryption-key", "jwe:/k.pem"]), ("copy", ["--dest-compress"]),
    ("copy", ["--dest-compress-format", "zstd"]), ("copy", ["--dest-oci-accept-uncompressed-layers"]),
    ("copy", ["--decryption-key", "/k.pem"]), ("sync", ["--sign-by", "ABCDEF"]), ("sync", ["-f", "oci"]),
])
def test_flags_regcopy_cannot_honour_are_refused_by_name(verb: str, flag: list[str], tmp_path: Path) -> None:
    args = ["a.example/x:1", "b.example/y:1"] if verb == "copy" else ["--src", "docker", "--dest", "docker",
                                                                         "a.example/x", "b.example/y"]
    out = _regcopy([verb, *flag, *args], tmp_path)
    assert out.returncode == 2
    name = "--format" if flag[0] == "-f" else flag[0]
    assert f"{name} is not supported" in out.stderr and "Traceback" not in out.stderr


def test_sync_append_suffix(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """skopeo 1.9.3 has no --append-suffix (newer skopeo does): regcopy's outcome is checked with skopeo."""
    src, dst = registry_factory("http"), registry_factory("http")
    digest = seed(src, "oci", "src/app")
    out = _regcopy(["sync", "--src", "docker", "--dest", "docker", "--append-suffix", "-mirror",
                    f"{src.host}/src/app", f"{dst.host}/m"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert _tags(dst, "m/app") == {"oci-mirror": digest}
    bad = _regcopy(["sync", "--src", "docker", "--dest", "docker", "--append-suffix", "/x",
                    f"{src.host}/src/app", f"{dst.host}/m"], tmp_path)
    assert bad.returncode == 2 and "--append-suffix" in bad.stderr


def test_retry_times_is_honoured(http_registry: RegistryServer, dst: RegistryServer, dst_proxy: FaultyProxy,
                                 seed: Any, tmp_path: Path) -> None:
    """--retry-times N is the hosts' retry count (it was accepted and ignored): a manifest PUT answered 503
    twice fails with --retry-times 0 after one attempt, and succeeds with --retry-times 2 on the third."""
    digest = seed(http_registry, "oci", "src/app")
    refs = [f"{http_registry.host}/src/app:oci", f"{dst_proxy.host}/d/app:oci"]

    def puts() -> int:
        return sum(1 for r in dst_proxy.requests if r.method == "PUT" and "/manifests/" in r.path)

    dst_proxy.add(Fault(method="PUT", path="/manifests/", status=503, times=2))
    once = _regcopy(["copy", "--retry-times", "0", "--retry-delay", "10ms", *refs], tmp_path)
    assert once.returncode == 1 and puts() == 1, once.stderr
    dst_proxy.clear()
    dst_proxy.add(Fault(method="PUT", path="/manifests/", status=503, times=2))
    thrice = _regcopy(["copy", "--retry-times", "2", "--retry-delay", "10ms", *refs], tmp_path)
    assert thrice.returncode == 0 and puts() == 3, thrice.stderr
    assert _digest(dst, "d/app:oci") == digest


@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/etc", os.W_OK), reason="writes /etc/containers/certs.d")
def test_certs_d_host_directory_like_skopeo(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """A CA in certs.d/HOST:PORT is trusted without any flag: skopeo reads /etc/containers/certs.d (the
    test writes its host's directory there and removes it), regcopy the same layout under REGCOPY_CERTS_D."""
    src, dst = registry_factory("http"), registry_factory("https")
    digest = seed(src, "oci", "src/app")
    assert dst.ca_pem_path is not None
    system = Path("/etc/containers/certs.d", dst.host)
    mine = tmp_path / "certs.d" / dst.host
    mine.mkdir(parents=True)
    shutil.copy(dst.ca_pem_path, mine / "ca.crt")
    refs = [f"docker://{src.host}/src/app:oci", f"docker://{dst.host}/TOOL/app:oci"]
    without = _regcopy(["copy", "--src-tls-verify=false", refs[0], refs[1].replace("TOOL", "none")], tmp_path)
    assert without.returncode == 1 and "certificate" in without.stderr.lower()
    system.mkdir(parents=True)
    try:
        shutil.copy(dst.ca_pem_path, system / "ca.crt")
        assert _skopeo(["copy", "--src-tls-verify=false", refs[0], refs[1].replace("TOOL", "skopeo")]) == 0
    finally:
        shutil.rmtree(system)
    env_before = os.environ.get("REGCOPY_CERTS_D")
    args = ["copy", "--src-tls-verify=false", refs[0], refs[1].replace("TOOL", "regcopy")]
    out = subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, timeout=120,
                         check=False, env={**os.environ, "REGCOPY_CERTS_D": str(tmp_path / "certs.d")})
    assert env_before == os.environ.get("REGCOPY_CERTS_D")
    assert out.returncode == 0, out.stderr
    assert _digest(dst, "regcopy/app:oci") == _digest(dst, "skopeo/app:oci") == digest


def test_cert_dir_reads_every_ca_and_the_client_pair(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """--dest-cert-dir with an unrelated CA sorted first still trusts the registry's (every *.crt is read,
    as skopeo does); a *.cert without its *.key is a clear error, not a traceback."""
    import trustme

    src, dst = registry_factory("http"), registry_factory("https")
    digest = seed(src, "oci", "src/app")
    assert dst.ca_pem_path is not None
    certs = tmp_path / "certs"
    certs.mkdir()
    trustme.CA().cert_pem.write_to_path(str(certs / "a-unrelated.crt"))
    shutil.copy(dst.ca_pem_path, certs / "z-registry.crt")
    refs = [f"{src.host}/src/app:oci", f"{dst.host}/d/app:oci"]
    out = _regcopy(["copy", "--src-tls-verify=false", "--dest-cert-dir", str(certs), *refs], tmp_path)
    assert out.returncode == 0, out.stderr
    assert _digest(dst, "d/app:oci") == digest
    (certs / "client.cert").write_text("x")
    broken = _regcopy(["copy", "--src-tls-verify=false", "--dest-cert-dir", str(certs), *refs], tmp_path)
    assert broken.returncode == 2 and "client.key" in broken.stderr and "Traceback" not in broken.stderr


def test_copy_all_tags_lists_with_the_sides_own_settings(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """copy --all-tags with a side's flags (--src-cert-dir) copies every tag; that the listing itself uses
    the side's settings is tests/integration/test_copy.py::test_copy_all_tags_uses_each_sides_settings."""
    src, dst = registry_factory("https"), registry_factory("http")
    one, two = seed(src, "oci", "src/app"), seed(src, "docker", "src/app")
    out = _regcopy(["copy", "--all-tags", "--src-cert-dir", str(src.cert_dir), "--dest-tls-verify=false",
                    f"{src.host}/src/app", f"{dst.host}/dst/app"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert _tags(dst, "dst/app") == {"oci": one, "docker": two}


def test_a_broken_certs_d_directory_is_a_clear_error(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """A client certificate without its key in certs.d/HOST:PORT (found only when the transport is made,
    inside the copy's task group) ends as one clear usage error, not an exception group's dump."""
    src, dst = registry_factory("http"), registry_factory("https")
    seed(src, "oci", "src/app")
    broken = tmp_path / "certs.d" / dst.host
    broken.mkdir(parents=True)
    (broken / "client.cert").write_text("x")
    out = _regcopy(["copy", "--src-tls-verify=false", f"{src.host}/src/app:oci", f"{dst.host}/d/app:oci"],
                   tmp_path, REGCOPY_CERTS_D=str(tmp_path / "certs.d"))
    assert out.returncode == 2 and "client.key" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "+-" not in out.stderr


def test_cert_dir_client_pair_like_skopeo(registry_factory: Any, seed: Any, tmp_path: Path) -> None:
    """A registry that requires a client certificate: --dest-cert-dir holding the CA and a *.cert + *.key
    pair is enough for skopeo and for regcopy; without the pair both fail."""
    from servers.registry import shared_ca

    ca = shared_ca()
    ca_pem = tmp_path / "clientca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    issued = ca.issue_cert("regcopy-client@example.test")
    pair = (tmp_path / "pair.cert", tmp_path / "pair.key")
    issued.cert_chain_pems[0].write_to_path(str(pair[0]))
    issued.private_key_pem.write_to_path(str(pair[1]))
    src = registry_factory("http")
    dst = registry_factory("https", extra_config={"http": {"tls": {"clientcas": [str(ca_pem)]}}}, client_cert=pair)
    digest = seed(src, "oci", "src/app")
    assert dst.ca_pem_path is not None
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(dst.ca_pem_path, certs / "ca.crt")
    outcome = {}
    for label, with_pair in (("bare", False), ("pair", True)):
        if with_pair:
            shutil.copy(pair[0], certs / "client.cert")
            shutil.copy(pair[1], certs / "client.key")
        for tool in ("skopeo", "regcopy"):
            args = ["copy", "--src-tls-verify=false", "--dest-cert-dir", str(certs),
                    f"docker://{src.host}/src/app:oci", f"docker://{dst.host}/{tool}-{label}/app:oci"]
            rc = _skopeo(args) if tool == "skopeo" else _regcopy(args, tmp_path).returncode
            outcome[(tool, label)] = rc == 0
    assert outcome == {("skopeo", "bare"): False, ("regcopy", "bare"): False,
                       ("skopeo", "pair"): True, ("regcopy", "pair"): True}
    for tool in ("skopeo", "regcopy"):
        raw = skopeo.run_skopeo("inspect", "--raw", "--cert-dir", str(certs),
                                f"docker://{dst.host}/{tool}-pair/app:oci").stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
