"""Supply-chain artifacts made by something other than regcopy, for referrer tests.

This module owns how tests put signatures, SBOMs and attestations into a registry:

* :func:`attach` pushes an OCI 1.1 artifact whose ``subject`` is an image, untagged, with the ``oras``
  Python SDK (oras-py: blobs with ``upload_blob``, the manifest with ``upload_manifest`` by digest), as
  ``oras attach`` does. oras-py does not maintain the fallback tag, so on a registry without the
  referrers API :func:`add_to_fallback_index` does what a spec client must (distribution spec,
  "Pushing Manifests with Subject"), with raw HTTP;
* :func:`cosign_sign` pushes a cosign-style signature: an image manifest whose layer has cosign's
  simple-signing media type and ``dev.cosignproject.cosign/signature`` annotation, under the tag
  ``sha256-<hex>.sig`` (``.att`` for an attestation), with raw HTTP.

Registries are reached over plain http (the test registries' ``url``), without auth.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ("Pushed", "add_to_fallback_index", "attach", "cosign_sign", "get_manifest", "put_blob", "put_manifest",
           "referrers_tag", "tags_list")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"


@dataclass(frozen=True)
class Pushed:
    """A manifest pushed: its digest, media type, size and exact bytes."""

    digest: str
    media_type: str
    size: int
    data: bytes

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def referrers_tag(digest: str) -> str:
    """The fallback tag of ``digest`` (distribution spec, "Referrers Tag Schema")."""
    return digest.replace(":", "-")


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200, 201, 202, 204)) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        if exc.code in ok:
            return exc.code, dict(exc.headers), exc.read()
        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:300]!r}") from exc


def put_blob(base: str, repo: str, data: bytes) -> str:
    """Upload ``data`` (POST, then PUT ?digest= with the body); returns its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, headers, _ = _request("POST", f"{base}/v2/{repo}/blobs/uploads/", b"")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    _request("PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
    return digest


def put_manifest(base: str, repo: str, ref: str | None, obj: dict[str, Any]) -> Pushed:
    """PUT ``obj`` (compact JSON) under ``ref`` (a tag), or by its digest when ``ref`` is None."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    media_type = obj["mediaType"]
    _request("PUT", f"{base}/v2/{repo}/manifests/{ref or digest}", data, {"Content-Type": media_type})
    return Pushed(digest, media_type, len(data), data)


def tags_list(base: str, repo: str) -> list[str]:
    """The tags of ``repo`` (one page)."""
    return list(json.loads(_request("GET", f"{base}/v2/{repo}/tags/list")[2])["tags"] or [])


def get_manifest(base: str, repo: str, ref: str) -> bytes | None:
    """The bytes a tag or digest holds, or None (404)."""
    status, _, body = _request("GET", f"{base}/v2/{repo}/manifests/{ref}",
                               headers={"Accept": ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))},
                               ok=(200, 404))
    return body if status == 200 else None


def cosign_sign(base: str, repo: str, subject: str, *, identity: str = "test", kind: str = "sig") -> Pushed:
    """A cosign-style signature (``kind="sig"``) or attestation (``"att"``) of ``subject``, under
    cosign's tag ``sha256-<hex>.<kind>`` (sigstore cosign pkg/oci/static, pkg/oci/remote)."""
    if kind == "sig":
        payload = json.dumps({"critical": {"identity": {"docker-reference": f"{repo}"},
                                           "image": {"docker-manifest-digest": subject},
                                           "type": "cosign container image signature"},
                              "optional": {"who": identity}}).encode()
        layer_type = SIMPLESIGNING
        signature = base64.b64encode(hashlib.sha256(payload).digest()).decode()
        annotations = {"dev.cosignproject.cosign/signature": signature}
    else:
        payload = json.dumps({"payloadType": "application/vnd.in-toto+json",
                              "payload": base64.b64encode(b'{"subject":"' + subject.encode() + b'"}').decode(),
                              "signatures": [{"sig": identity}]}).encode()
        layer_type = DSSE
        annotations = {"predicateType": "https://slsa.dev/provenance/v0.2"}
    layer = put_blob(base, repo, payload)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    config_digest = put_blob(base, repo, config)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                           "size": len(config)},
                "layers": [{"mediaType": layer_type, "digest": layer, "size": len(payload),
                            "annotations": annotations}]}
    return put_manifest(base, repo, f"{referrers_tag(subject)}.{kind}", manifest)


def attach(registry: str, repo: str, subject: Pushed | dict[str, Any], artifact_type: str, content: bytes, *,
           annotations: dict[str, str] | None = None) -> Pushed:
    """Push an artifact referring to ``subject`` with oras-py, untagged (by digest), as ``oras attach``.

    :param registry: ``host:port`` of a plain-http registry
    :param subject: the subject's descriptor (a :class:`Pushed`, or a dict with mediaType/digest/size)
    """
    import oras.client  # the test extra; imported here so collection does not need it
    import oras.oci

    desc = subject.descriptor() if isinstance(subject, Pushed) else subject
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "artifact"
        blob.write_bytes(content)
        empty = Path(tmp) / "config"
        empty.write_bytes(b"{}")
        probe = client.get_container(f"{registry}/{repo}:probe")
        layer = oras.oci.NewLayer(str(blob), media_type=artifact_type, is_dir=False)
        layer["annotations"] = {"org.opencontainers.image.title": "artifact"}
        client.upload_blob(str(blob), probe, layer)
        config = {"mediaType": OCI_EMPTY, "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
        client.upload_blob(str(empty), probe, config)
        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                                    "config": config, "layers": [layer], "subject": desc}
        if annotations:
            manifest["annotations"] = annotations
        # oras-py sends the manifest with requests' json= (json.dumps with default separators).
        data = json.dumps(manifest).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = client.upload_manifest(manifest, client.get_container(f"{registry}/{repo}@{digest}"))
        assert response.status_code in (200, 201), response.text
    return Pushed(digest, OCI_MANIFEST, len(data), data)


def add_to_fallback_index(base: str, repo: str, subject: str, referrer: Pushed) -> Pushed:
    """What a spec client does after pushing a referrer to a registry without the API: read the
    fallback tag's index (404: a new one), append the referrer's descriptor, push it back."""
    existing = get_manifest(base, repo, referrers_tag(subject))
    index = json.loads(existing) if existing else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    obj = json.loads(referrer.data)
    entry: dict[str, Any] = referrer.descriptor()
    kind = obj.get("artifactType") or obj.get("config", {}).get("mediaType")
    if kind:
        entry["artifactType"] = kind
    if obj.get("annotations"):
        entry["annotations"] = obj["annotations"]
    if all(e["digest"] != referrer.digest for e in index["manifests"]):
        index["manifests"].append(entry)
    return put_manifest(base, repo, referrers_tag(subject), index)
