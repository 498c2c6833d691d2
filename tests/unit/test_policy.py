"""Per-host connection policy (regcopy.settings): scheme candidates per mode, the local-host rule, TLS contexts."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.settings import SCHEME_MODES, RegistrySettings, is_local_host, split_host_port

LOCAL = [
    "127.0.0.1",
    "127.0.0.1:5000",
    "127.8.9.10:443",
    "[::1]:5000",
    "[::1]",
    "::1",
    "localhost",
    "localhost:5000",
    "LOCALHOST:5000",
    "localhost.",
    "foo.localhost",
    "registry.foo.localhost:5000",
    "printer.local",
    "nas.local:5000",
    "10.0.0.1",
    "10.255.255.255:5000",
    "172.16.0.1",
    "172.31.255.254:5000",
    "192.168.1.10:5000",
    "169.254.10.20",
    "[fe80::1]:5000",
    "fe80::1",
    "[fd00::1]:5000",
]
PUBLIC = [
    "8.8.8.8",
    "8.8.8.8:5000",
    "1.1.1.1",
    "172.15.0.1",  # just outside 172.16/12
    "172.32.0.1",
    "192.169.0.1",
    "[2001:4860:4860::8888]:443",
    "registry.example.com",
    "registry.example.com:5000",
    "docker.io",
    "registry-1.docker.io",
    "ghcr.io",
    "127.0.0.1.nip.io",  # a public DNS name that happens to resolve to loopback
    "localhost.example.com",
    "mylocalhost",
    "notlocal",
    "local",
    "foo.local.example.com",
    "10.0.0.1.example.com",
    "host:abc",
]


@pytest.mark.parametrize("host", LOCAL)
def test_local_hosts(host: str) -> None:
    assert is_local_host(host) is True


@pytest.mark.parametrize("host", PUBLIC)
def test_public_hosts(host: str) -> None:
    assert is_local_host(host) is False


@pytest.mark.parametrize("host", LOCAL)
def test_auto_races_for_local(host: str) -> None:
    assert RegistrySettings().candidates(host) == ("https", "http")


@pytest.mark.parametrize("host", PUBLIC)
def test_auto_https_only_for_public(host: str) -> None:
    assert RegistrySettings(scheme="auto").candidates(host) == ("https",)


@pytest.mark.parametrize("host", ["localhost:5000", "[::1]:5000", "8.8.8.8", "docker.io", "127.0.0.1.nip.io"])
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("http", ("http",)),
        ("https", ("https",)),
        ("https-insecure", ("https",)),
        ("insecure", ("https", "http")),
    ],
)
def test_explicit_modes_ignore_host(host: str, mode: str, expected: tuple[str, ...]) -> None:
    assert RegistrySettings(scheme=mode).candidates(host) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "verify"),
    [("auto", True), ("https", True), ("http", True), ("https-insecure", False), ("insecure", False)],
)
def test_verify_tls(mode: str, verify: bool) -> None:
    assert RegistrySettings(scheme=mode).verify_tls is verify  # type: ignore[arg-type]


def test_with_scheme() -> None:
    base = RegistrySettings(max_concurrency=3)
    other = base.with_scheme("http")
    assert other.scheme == "http" and other.max_concurrency == 3
    assert base.scheme == "auto"
    with pytest.raises(ValueError, match="scheme"):
        base.with_scheme("ftp")  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["", "HTTPS", "tls", "http://", "insecure-https"])
def test_invalid_scheme(scheme: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        RegistrySettings(scheme=scheme)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1])
def test_invalid_max_concurrency(n: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        RegistrySettings(max_concurrency=n)
    assert RegistrySettings(max_concurrency=1).max_concurrency == 1


@pytest.mark.parametrize(
    ("hostport", "expected"),
    [
        ("localhost:5000", ("localhost", 5000)),
        ("localhost", ("localhost", None)),
        ("[::1]:5000", ("::1", 5000)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("fe80::1", ("fe80::1", None)),
        ("host:abc", ("host:abc", None)),
        ("10.0.0.1:443", ("10.0.0.1", 443)),
    ],
)
def test_split_host_port(hostport: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(hostport) == expected


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_local_rule_total(hostport: str) -> None:
    # Never raises; the answer picks the candidates in auto mode and nothing else matters elsewhere.
    local = is_local_host(hostport)
    assert RegistrySettings().candidates(hostport) == (("https", "http") if local else ("https",))
    for mode in SCHEME_MODES:
        assert RegistrySettings(scheme=mode).candidates(hostport)[0] in ("https", "http")


def test_ssl_context_cached_per_recipe() -> None:
    a = RegistrySettings(scheme="https").ssl_context()
    b = RegistrySettings(scheme="auto", max_concurrency=2).ssl_context()
    assert a is b  # same recipe: one shared context
    assert a.verify_mode == ssl.CERT_REQUIRED and a.check_hostname is True


@pytest.mark.parametrize("mode", ["https-insecure", "insecure"])
def test_ssl_context_unverified_for_insecure_modes(mode: str) -> None:
    ctx = RegistrySettings(scheme=mode).ssl_context()  # type: ignore[arg-type]
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    assert ctx is RegistrySettings(scheme=mode).ssl_context()  # type: ignore[arg-type]
    verified = RegistrySettings(scheme="https").ssl_context()
    assert ctx is not verified
    assert verified.verify_mode == ssl.CERT_REQUIRED  # the shared verified context was not touched
