"""A signed image as supply chains leave it, made by other tools (oras-py, raw HTTP), for referrer tests.

:func:`sign` decorates a seeded image: a cosign signature of the root (``sha256-<root>.sig``), an SBOM
attached with oras (a referrer of the root), a cosign signature of that SBOM, and a cosign
attestation of every child of an index. On a registry without the referrers API the SBOM is also
added to the root's fallback index, as a spec client must.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from servers import artifacts as A

SPDX = "application/spdx+json"


@dataclass
class Signed:
    """What :func:`sign` pushed: the root and its children, and every referrer."""

    root: A.Pushed
    children: list[dict[str, Any]]
    signature: A.Pushed
    sbom: A.Pushed
    sbom_signature: A.Pushed
    attestations: dict[str, A.Pushed] = field(default_factory=dict)

    def tags(self) -> list[str]:
        """The cosign tags, and the fallback tag of the root on a registry without the API."""
        out = [f"{A.referrers_tag(self.root.digest)}.sig", f"{A.referrers_tag(self.sbom.digest)}.sig"]
        out += [f"{A.referrers_tag(child)}.att" for child in self.attestations]
        return sorted(out)

    def count(self) -> int:
        return 3 + len(self.attestations)


def subject(base: str, repo: str, ref: str) -> A.Pushed:
    data = A.get_manifest(base, repo, ref)
    assert data is not None, f"{repo}:{ref} missing"
    import hashlib

    obj = json.loads(data)
    return A.Pushed("sha256:" + hashlib.sha256(data).hexdigest(), obj["mediaType"], len(data), data)


def sign(base: str, host: str, repo: str, tag: str, *, api: bool, children: bool = True, name: str = "app") -> Signed:
    """Sign ``repo:tag`` (see the module doc); ``api``: the registry indexes subjects itself."""
    root = subject(base, repo, tag)
    kids: list[dict[str, Any]] = json.loads(root.data).get("manifests", []) if children else []
    signature = A.cosign_sign(base, repo, root.digest, identity="release")
    sbom = A.attach(host, repo, root, SPDX, b'{"spdxVersion":"SPDX-2.3","name":"' + name.encode() + b'"}',
                    annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    if not api:
        A.add_to_fallback_index(base, repo, root.digest, sbom)
    sbom_signature = A.cosign_sign(base, repo, sbom.digest, identity="sbom-signer")
    signed = Signed(root, kids, signature, sbom, sbom_signature)
    for child in kids:
        signed.attestations[child["digest"]] = A.cosign_sign(base, repo, child["digest"], kind="att")
    return signed


def fallback_digests(base: str, repo: str, digest: str) -> list[str]:
    """The digests the fallback index of ``digest`` lists on a registry ([] when there is none)."""
    data = A.get_manifest(base, repo, A.referrers_tag(digest))
    return [] if data is None else [e["digest"] for e in json.loads(data)["manifests"]]
