"""Shared cases of the plan parser tests (test_plan.py, test_skopeo.py): documents, checks, strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from regcopy.errors import ConfigError
from regcopy.locations import parse_namespace, parse_repository
from regcopy.sync.model import SyncEntry, SyncPlan

D0 = "sha256:" + "0" * 64
D1 = "sha256:" + "0" * 32 + "1" * 32  # the digest of skopeo-sync(1)'s example
SECRET = "Sup3r-S3cret-Pa55"  # must never appear in an error message


def sync_entry(name: str, source: str, target: str, kind: Any = "repository", naming: Any = "prefix",
               **kw: Any) -> SyncEntry:
    """A SyncEntry from address text: repositories where the kind and naming say so, else namespaces."""
    src = parse_repository(source) if kind == "repository" else parse_namespace(source)
    whole = kind == "repository" and naming == "prefix"
    dst = parse_repository(target) if whole else parse_namespace(target)
    return SyncEntry(name, src, dst, kind, naming, **kw)


def plan_of(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**top, "sync": list(entries) or [{"source": "quay.io/org/app", "target": "reg.internal:5000/m/app"}]}


def entry(**fields: Any) -> dict[str, Any]:
    return {"source": "quay.io/org/app", "target": "reg.internal:5000/m/app", **fields}


def ns(**fields: Any) -> dict[str, Any]:
    return {"source": "quay.io/org", "target": "reg.internal:5000/m", "type": "namespace", **fields}


def raises(fn: Callable[[], object]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn()
    return info.value


def check(exc: ConfigError, *, path: str | None, entry: str | None, key: str | None, says: str) -> None:
    assert (exc.path, exc.entry, exc.key) == (path, entry, key), str(exc)
    assert says.lower() in str(exc).lower(), str(exc)
    for part in (path, entry, key):  # the message itself names the place
        assert part is None or part in str(exc)



LEAVES = (
    st.none() | st.booleans() | st.integers(-3, 10) | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.sampled_from([
        "quay.io/org/app", "reg.example:5000", "reg.io/m:v1", "https", "http", "linux/amd64", "linux", "v1", "(",
        D0, "sha256:x", "namespace", "registry", "repository", "docker.io", "busybox", ">=1.2", "[::1]:5000/a",
        "/nonexistent", ".", "", "true", "yes", "(?i)a", "a{99999999999}",
        # local stores (ISSUE #7 §4), durations, mirrors
        "oci:/tmp/l", "oci:/tmp/l:ns/app", "oci:/tmp/l:a:b", "oci-archive:/x.tar", "docker-archive:/x.tar:@0",
        "oci:", "oci::x", "docker-archive:/d.tar:repo:tag", "15m", "12h", "0s", "-1", "cache.local:5000/hub",
    ])
)
KEYS = st.sampled_from([
    "version", "registries", "defaults", "sync", "name", "source", "target", "type", "tags", "platforms", "repos",
    "allow", "deny", "semver", "latest", "exact", "digests", "tls", "ca_file", "client_cert", "client_key",
    "credentials", "username", "password", "helper", "authfile", "identity_token", "max_concurrency",
    "requests_per_second", "images", "images-by-tag-regex", "images-by-semver", "tls-verify", "cert-dir",
    "identitytoken", "quay.io", "reg.example:5000", "a/b", "busybox", "mirrors", "delete_extra", "protect",
    "cap", "refresh_after", "prune",
]) | st.text(max_size=6)
DATA = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.integers(0, 3) | st.none(), inner, max_size=5)
    ),
    max_leaves=25,
)



def only_config_errors(fn: Callable[[], object]) -> None:
    try:
        result = fn()
    except ConfigError as exc:
        assert str(exc)
    else:
        assert isinstance(result, SyncPlan)

