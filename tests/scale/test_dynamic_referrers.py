"""A dynamic run carries referrers: a `regcopy worker` copies each image with the signatures and SBOMs
that refer to it, under a tag filter that would drop their tags as images (real redis-server, real
2.8.2 registries without the referrers API, artifacts pushed with raw HTTP and oras-py, skopeo to
verify)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scale_helpers import Workers, submit

from servers import artifacts as A
from servers import skopeo
from servers.redis_server import RedisServer
from servers.registry import RegistryServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = "team0/svc0"


def _pushed(base: str, repo: str, ref: str) -> A.Pushed:
    data = A.get_manifest(base, repo, ref)
    assert data is not None, f"{repo}:{ref} missing"
    return A.Pushed("sha256:" + hashlib.sha256(data).hexdigest(), json.loads(data)["mediaType"], len(data), data)


def _plan(path: Path, src: RegistryServer, dst: RegistryServer) -> Path:
    # allow: [v1] selects the image alone; its signature tags would not match it as images.
    entry = {"source": f"{src.host}/{REPO}", "target": f"{dst.host}/m/{REPO}", "tags": {"allow": ["v1"]}}
    path.write_text(yaml.safe_dump({"registries": {src.host: {"tls": "http"}, dst.host: {"tls": "http"}},
                                    "sync": [entry]}))
    return path


def test_a_worker_copies_signatures_and_sboms_with_their_image(
    scale_source: RegistryServer, registry_factory: Any, redis_server: RedisServer, workers: Workers,
    tmp_path: Path, empty_authfile: Path,
) -> None:
    dst = registry_factory("http")
    root = _pushed(scale_source.url, REPO, "v1")
    signature = A.cosign_sign(scale_source.url, REPO, root.digest, identity="release")
    sbom = A.attach(scale_source.host, REPO, root, "application/spdx+json", b'{"spdxVersion":"SPDX-2.3"}')
    A.add_to_fallback_index(scale_source.url, REPO, root.digest, sbom)  # 2.8.2 has no referrers API
    workers.start(1)
    report = tmp_path / "report.json"
    done = submit(_plan(tmp_path / "plan.yaml", scale_source, dst), redis_server, empty_authfile,
                  "--report", str(report), "--run", "signed")
    assert done.returncode == 0, done.stderr + workers.logs()

    target = f"m/{REPO}"
    sig_tag = f"{A.referrers_tag(root.digest)}.sig"
    assert set(A.tags_list(dst.url, target)) == {"v1", sig_tag, A.referrers_tag(root.digest)}
    skopeo.verify(dst, f"{target}:v1", root.digest)
    skopeo.verify(dst, f"{target}:{sig_tag}", signature.digest)  # same bytes, same tag
    skopeo.verify(dst, f"{target}@{sbom.digest}", sbom.digest)  # pushed by digest
    index = A.get_manifest(dst.url, target, A.referrers_tag(root.digest))
    assert index is not None and [e["digest"] for e in json.loads(index)["manifests"]] == [sbom.digest]

    doc = json.loads(report.read_text())
    [image] = doc["images"]
    assert image["status"] == "copied" and image["target"].endswith(f"{target}:v1")
    assert image["referrers"]["copied"] == 2 and not doc["errors"]
