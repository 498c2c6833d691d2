"""``--events FILE|-`` of real runs: every line is a record of the documented schema (docs/events.md),
the records tell the story of the run (images, blobs, retries, pauses), and ``-`` keeps stdout pure
JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from regcopy.events import COMMON, SCHEMA, VERSION
from servers.faulty_proxy import Fault, FaultyProxy
from servers.registry import RegistryServer


def _regcopy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "regcopy", *args], capture_output=True, text=True, timeout=120)


def records(text: str) -> list[dict[str, Any]]:
    """Every line parsed and checked against the schema."""
    out = []
    for line in text.splitlines():
        data = json.loads(line)
        assert tuple(data) == COMMON + SCHEMA[data["type"]], data
        assert data["version"] == VERSION
        assert datetime.fromisoformat(data["time"].replace("Z", "+00:00")).tzinfo is not None
        out.append(data)
    return out


def test_copy_events_tell_the_copy(http_registry: RegistryServer, dst: RegistryServer, seed: Any,
                                   tmp_path: Path) -> None:
    seed(http_registry, "big", "src/big", "v1")
    events = tmp_path / "events.jsonl"
    target = f"{dst.host}/ev/big:v1"
    out = _regcopy("copy", f"{http_registry.host}/src/big:v1", target, "--events", str(events), "--progress",
                   "none", "-o", "json", "--insecure-registry", http_registry.host, "--insecure-registry", dst.host)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    lines = records(events.read_text())
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "image.started" and kinds[-2:] == ["image.done", "run.summary"]
    assert kinds.count("blob.started") == kinds.count("blob.done") == result["blobs_uploaded"]
    # Every blob line belongs to the image; the progress of each blob adds up to its size.
    sent: dict[str, int] = defaultdict(int)
    sizes = {line["digest"]: line["size"] for line in lines if line["type"] == "blob.done"}
    for line in lines:
        if line["type"].startswith("blob."):
            assert line["image"] == target
        if line["type"] == "blob.progress":
            sent[line["digest"]] += line["bytes"]
            assert line["sent"] == sent[line["digest"]]
    assert sent == sizes and sum(sizes.values()) == result["bytes_uploaded"]
    summary = lines[-1]
    assert summary["image"] is None and summary["images"] == {"copied": 1}
    assert summary["bytes_uploaded"] == result["bytes_uploaded"]
    assert summary["hosts"][http_registry.host]["pulls"] == 1 == result["hosts"][http_registry.host]["pulls"]
    assert [line["tag"] for line in lines if line["type"] == "manifest.pushed"] == ["v1"]


def test_sync_events_to_stdout_show_retries_and_pauses(http_registry: RegistryServer, dst: RegistryServer,
                                                       seed: Any, tmp_path: Path) -> None:
    """A 429 with ``Retry-After: 1`` on the source's manifest GET: a retry and a pause, in the stream;
    with ``--events -`` stdout holds only the stream and the summary goes to stderr."""
    seed(http_registry, "oci", "src/oci", "v1")
    with FaultyProxy(http_registry.url) as proxy:
        proxy.add(Fault(method="GET", path=r"/v2/src/oci/manifests/v1$", status=429,
                        headers={"Retry-After": "1"}, body=b'{"errors":[{"code":"TOOMANYREQUESTS"}]}'))
        plan = tmp_path / "plan.yaml"
        plan.write_text(yaml.safe_dump({"registries": {proxy.host: {"tls": "http"}, dst.host: {"tls": "http"}},
                                        "sync": [{"source": f"{proxy.host}/src/oci", "target": f"{dst.host}/ev/oci",
                                                  "tags": {"exact": ["v1"]}}]}))
        out = _regcopy("sync", str(plan), "--events", "-", "--progress", "none")
    assert out.returncode == 0, out.stderr
    assert "1 copied" in out.stderr  # the result, out of the stream's way
    lines = records(out.stdout)
    retry = next(line for line in lines if line["type"] == "request.retrying")
    assert retry["registry"] == proxy.host and retry["method"] == "GET" and "429" in retry["reason"]
    assert retry["delay"] >= 1.0 and retry["attempt"] == 1 and "?" not in retry["url"]
    pause = next(line for line in lines if line["type"] == "ratelimit.paused")
    assert pause["registry"] == proxy.host and pause["reason"] == "Retry-After" and pause["seconds"] == 1.0
    summary = lines[-1]
    assert summary["type"] == "run.summary" and summary["images"] == {"copied": 1}
    assert summary["hosts"][proxy.host]["retries"] == 1 and summary["hosts"][proxy.host]["throttled"] == 1
    assert [line["type"] for line in lines].index("image.started") < [line["type"] for line in lines].index(
        "image.done")


def test_an_unwritable_events_file_is_a_usage_error(http_registry: RegistryServer, dst: RegistryServer,
                                                    tmp_path: Path) -> None:
    out = _regcopy("copy", f"{http_registry.host}/a:1", f"{dst.host}/b:1", "--events",
                   str(tmp_path / "missing" / "dir" / "e.jsonl"))
    assert out.returncode == 2 and "--events" in out.stderr and "Traceback" not in out.stderr
