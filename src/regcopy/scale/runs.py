"""A dynamic run's records in Redis, and the units' payloads (no broker here).

Keys, under one prefix (``regcopy`` by default; they expire :data:`RUN_TTL_S` after the last write):

* ``{p}:run:{RUN}`` — hash: ``plan`` (the plan file's text, so workers apply its ``registries:``),
  ``units`` (how many were enqueued), ``submitted`` (1 once all were), ``report`` (the submitter's
  part: up-to-date images, planning failures, discovery errors), ``created``;
* ``{p}:run:{RUN}:done`` — hash unit → that unit's report (the record that a unit is finished);
* ``{p}:run:{RUN}:attempts`` — hash unit → how many times a worker started it (more than one: a
  redelivery, so the repositories it writes are no longer known empty);
* ``{p}:run:{RUN}:progress`` — hash of counters workers add to (images, bytes, blobs);
* ``{p}:run:{RUN}:uploads`` — hash ``storage|digest`` → completed uploads (duplicates show as > 1).

A unit's payload carries each image's manifests (zlib, base64), so a worker copies without fetching
them again: one pull per image over the whole run, as in one process (docs/scale-out.md, "Cost").
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any, Final

from regcopy.digest import Digest
from regcopy.engine import ImagePlan
from regcopy.errors import ConfigError
from regcopy.manifest import Descriptor, Manifest
from regcopy.scale.report_merge import add_uploads, merge_reports, upload_summary
from regcopy.sync import PlannedImage

__all__ = ("RUN_TTL_S", "RunKeys", "image_payload", "merged_report", "unpack_plan")

RUN_TTL_S: Final = 30 * 24 * 3600
"""A run's records are kept 30 days after their last write."""


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The Redis keys of one run."""

    prefix: str
    run: str

    @property
    def meta(self) -> str:
        return f"{self.prefix}:run:{self.run}"

    @property
    def done(self) -> str:
        return f"{self.meta}:done"

    @property
    def attempts(self) -> str:
        return f"{self.meta}:attempts"

    @property
    def progress(self) -> str:
        return f"{self.meta}:progress"

    @property
    def uploads(self) -> str:
        return f"{self.meta}:uploads"

    def all(self) -> tuple[str, ...]:
        return (self.meta, self.done, self.attempts, self.progress, self.uploads)


def image_payload(p: PlannedImage) -> dict[str, Any]:
    """What a worker needs to copy one planned image: references, digest, manifests, size, and which
    referrers travel with it."""
    manifests = [[m.media_type, base64.b64encode(m.data).decode()] for m in (p.plan.root, *p.plan.manifests)]
    packed = base64.b64encode(zlib.compress(json.dumps(manifests).encode(), 6)).decode()
    return {"entry": p.job.entry, "source": str(p.job.source), "target": str(p.job.target),
            "platforms": [str(x) for x in p.job.platforms], "source_digest": str(p.plan.source_digest),
            "manifests": packed, "bytes": p.plan.total_bytes,
            "referrers": {"enabled": p.job.referrers.enabled, "artifact_types": list(p.job.referrers.artifact_types)}}


def unpack_plan(image: dict[str, Any]) -> ImagePlan:
    """The :class:`~regcopy.engine.ImagePlan` of an image payload, without a request.

    :raises ConfigError: the payload is damaged
    """
    try:
        raw = json.loads(zlib.decompress(base64.b64decode(image["manifests"])))
        manifests = [Manifest.parse(base64.b64decode(data), media_type) for media_type, data in raw]
        source_digest = Digest.parse(image["source_digest"])
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ConfigError(f"a unit's image payload is damaged: {exc}") from None
    root, children = manifests[0], manifests[1:]
    blobs: dict[Digest, Descriptor] = {}
    for m in (root, *children):
        for blob in m.blobs():
            blobs.setdefault(blob.digest, blob)
    built = root.digest != source_digest and root.is_index
    return ImagePlan(root, source_digest, children, list(blobs.values()), built)


def merged_report(meta: dict[str, str], done: dict[str, str], uploads: dict[str, str]) -> dict[str, Any]:
    """The run's report: the submitter's part and every finished unit's, merged, with the upload
    counts Redis kept (they include uploads of workers killed before they could report)."""
    parts = [json.loads(meta["report"])] if meta.get("report") else []
    parts.extend(json.loads(doc) for doc in done.values())
    if not parts:
        raise ConfigError("the run has no report yet")
    for part in parts:
        part.pop("uploaded_blobs", None)  # counted by Redis below, killed workers included
    out = merge_reports(parts)
    counted: dict[str, dict[str, list[int]]] = {}
    sizes = _sizes(done)
    for field, count in uploads.items():
        storage, _, digest = field.rpartition("|")
        add_uploads(counted, {storage: {digest: [sizes.get(digest, 0), int(count)]}})
    out["uploaded_blobs"] = counted
    out["scale"]["registries"] = upload_summary(counted)
    return out


def _sizes(done: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for doc in done.values():
        for blobs in json.loads(doc).get("uploaded_blobs", {}).values():
            out.update({digest: int(pair[0]) for digest, pair in blobs.items()})
    return out
