"""The TLS context a request gets from a host's settings (regcopy.registry.exchange.ssl_for)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from regcopy.registry.exchange import ssl_for
from regcopy.settings import RegistrySettings


@pytest.mark.parametrize("mode", ["https-insecure", "insecure"])
def test_unverified_host_gets_a_context_without_the_ca_store(mode: str) -> None:
    ctx = ssl_for(RegistrySettings(scheme=mode), "https")  # type: ignore[arg-type]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    assert ctx.cert_store_stats()["x509_ca"] == 0  # the system store was never loaded
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ssl_for(RegistrySettings(scheme="insecure", max_concurrency=3), "https") is ctx  # built once


def test_verified_host_keeps_its_settings_context() -> None:
    settings = RegistrySettings(scheme="https")
    ctx = ssl_for(settings, "https")
    assert ctx is settings.ssl_context()
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx is not ssl_for(RegistrySettings(scheme="insecure"), "https")


def test_unverified_host_with_a_client_certificate_presents_it(tmp_path: Path) -> None:
    ca = trustme.CA()
    pair = ca.issue_cert("client.example")
    cert, key = tmp_path / "client.cert", tmp_path / "client.key"
    pair.cert_chain_pems[0].write_to_path(str(cert))
    pair.private_key_pem.write_to_path(str(key))
    settings = RegistrySettings(scheme="https-insecure", client_cert=str(cert), client_key=str(key))
    ctx = ssl_for(settings, "https")
    assert ctx is settings.ssl_context()  # the recipe with the certificate, not the bare unverified one
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_NONE


def test_unverified_host_with_a_client_pair_in_its_cert_dir_presents_it(tmp_path: Path) -> None:
    """skopeo's ``--cert-dir`` may hold a client pair (``*.cert`` + ``*.key``) for a host it does not verify."""
    ca = trustme.CA()
    pair = ca.issue_cert("client.example")
    pair.cert_chain_pems[0].write_to_path(str(tmp_path / "client.cert"))
    pair.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    settings = RegistrySettings(scheme="https-insecure", cert_dir=str(tmp_path))
    ctx = ssl_for(settings, "https")
    assert ctx is settings.ssl_context()  # the cert dir's recipe, not the bare unverified context
    assert ctx is not ssl_for(RegistrySettings(scheme="https-insecure"), "https")


@pytest.mark.parametrize("mode", ["https", "insecure"])
def test_http_has_no_context(mode: str) -> None:
    assert ssl_for(RegistrySettings(scheme=mode), "http") is False  # type: ignore[arg-type]
