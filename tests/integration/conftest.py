"""Integration helpers: a sample layout generated once per session, skopeo seeding, regcopy clients
configured for the test registries (CA, credentials), and a credential-free authfile."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import regcopy
from servers import skopeo
from servers.faulty_proxy import FaultyProxy
from servers.images import ImageSpec, IndexSpec, LayerSpec, write_layout
from servers.registry import RegistryServer

KB = 1024
MB = 1024 * KB

BASE = LayerSpec(size=200 * KB, seed="base", content="random")
RUNTIME = LayerSpec(size=120 * KB, seed="runtime", content="text")

SAMPLES: dict[str, ImageSpec | IndexSpec] = {
    "oci": ImageSpec(layers=[BASE, LayerSpec(64 * KB, "oci-app")], labels={"kind": "oci"}),
    "docker": ImageSpec(layers=[BASE, LayerSpec(48 * KB, "docker-app")], media="docker"),
    "multi": IndexSpec(
        children=[
            ImageSpec(layers=[BASE, LayerSpec(30 * KB, "m-amd64")], arch="amd64"),
            ImageSpec(layers=[BASE, LayerSpec(31 * KB, "m-arm64")], arch="arm64", variant="v8"),
            ImageSpec(layers=[BASE, LayerSpec(32 * KB, "m-armv7")], arch="arm", variant="v7"),
        ]
    ),
    "dockerlist": IndexSpec(
        media="docker",
        children=[
            ImageSpec(layers=[BASE, LayerSpec(20 * KB, "d-amd64")], arch="amd64", media="docker"),
            ImageSpec(layers=[BASE, LayerSpec(21 * KB, "d-arm64")], arch="arm64", media="docker"),
        ],
    ),
    "nested": IndexSpec(
        children=[
            IndexSpec(children=[ImageSpec(layers=[RUNTIME, LayerSpec(10 * KB, "n-amd64")], arch="amd64")]),
            ImageSpec(layers=[RUNTIME, LayerSpec(11 * KB, "n-s390x")], arch="s390x"),
        ]
    ),
    "shared-a": ImageSpec(layers=[BASE, RUNTIME, LayerSpec(40 * KB, "shared-a")]),
    "shared-b": ImageSpec(layers=[BASE, RUNTIME, LayerSpec(41 * KB, "shared-b")]),
    "big": ImageSpec(layers=[LayerSpec(3 * MB, "big-layer"), LayerSpec(700 * KB, "big-2")]),
}


@pytest.fixture(scope="session")
def sample_layout(tmp_path_factory: pytest.TempPathFactory, image_cache_dir: Path) -> tuple[Path, dict[str, str]]:
    """An OCI layout holding every sample image, and tag → root digest."""
    layout = tmp_path_factory.mktemp("samples") / "layout"
    return layout, write_layout(layout, SAMPLES, cache_dir=image_cache_dir)


Seeder = Callable[..., str]


@pytest.fixture
def seed(sample_layout: tuple[Path, dict[str, str]]) -> Seeder:
    """``seed(server, sample, repo, tag=sample)`` pushes a sample with skopeo and returns its digest."""
    layout, digests = sample_layout

    def push(server: RegistryServer, sample: str, repo: str, tag: str | None = None) -> str:
        digest = skopeo.seed(server, layout, sample, repo, tag or sample)
        assert digest == digests[sample]
        return digest

    return push


@pytest.fixture
def empty_authfile(tmp_path: Path) -> Path:
    """An auth file with no entries, so the developer's own credentials are never read."""
    path = tmp_path / "empty-auth.json"
    path.write_text(json.dumps({"auths": {}}))
    return path


def settings_for(*servers: RegistryServer, **overrides: Any) -> dict[str, regcopy.RegistrySettings]:
    """Per-host settings trusting each server's CA (https) or allowing http."""
    out: dict[str, regcopy.RegistrySettings] = {}
    for s in servers:
        if s.tls:
            assert s.ca_pem_path is not None
            out[s.host] = regcopy.RegistrySettings(scheme="https", ca_file=str(s.ca_pem_path), **overrides)
        else:
            out[s.host] = regcopy.RegistrySettings(scheme="auto", **overrides)
    return out


def credentials_for(*servers: RegistryServer) -> regcopy.StaticCredentials:
    """Static credentials: each server's own user, for its host only."""
    creds: dict[str, tuple[str, str]] = {}
    for s in servers:
        if s.username and s.password:
            creds[s.host] = (s.username, s.password)
    return regcopy.StaticCredentials(creds)


def make_client(*servers: RegistryServer, **kwargs: Any) -> regcopy.Client:
    """A client configured for ``servers`` (settings and credentials), extra kwargs to Client."""
    settings_overrides = kwargs.pop("settings_overrides", {})
    kwargs.setdefault("settings", settings_for(*servers, **settings_overrides))
    kwargs.setdefault("credentials", credentials_for(*servers))
    return regcopy.Client(**kwargs)


def blob_uploads(server: RegistryServer) -> list[str]:
    """Digests of completed blob uploads in a registry's access log (``PUT …/blobs/uploads/…?digest=``)."""
    from urllib.parse import parse_qs, urlsplit

    out: list[str] = []
    for entry in server.access_log():
        if entry.method == "PUT" and "/blobs/uploads/" in entry.path and entry.status == 201:
            out.extend(parse_qs(urlsplit(entry.path).query).get("digest", []))
    return out


def manifest_puts(server: RegistryServer) -> list[str]:
    """Paths of successful manifest PUTs in a registry's access log."""
    return [e.path for e in server.access_log() if e.method == "PUT" and "/manifests/" in e.path]


def free_loopback_address() -> str:
    """A 127.x.y.z address whose ports 80 and 443 are free (binding them needs root, as in CI).

    A registry on port 80 of such an address has a port-less name, like a real one.
    """
    import random
    import socket

    for _ in range(50):
        addr = f"127.{random.randint(100, 250)}.{random.randint(0, 250)}.{random.randint(2, 250)}"
        try:
            for port in (80, 443):
                with socket.socket() as s:
                    s.bind((addr, port))
        except PermissionError:
            pytest.skip("binding ports 80/443 needs root")
        except OSError:
            continue
        return addr
    pytest.skip("no free loopback address with ports 80 and 443")


@pytest.fixture
def dst(registry_factory: Any) -> RegistryServer:
    """A fresh plain-http destination registry."""
    return registry_factory("http")


@pytest.fixture
def dst_proxy(dst: RegistryServer) -> Iterator[FaultyProxy]:
    """A fault-injecting proxy in front of :func:`dst`."""
    with FaultyProxy(dst.url) as proxy:
        yield proxy
