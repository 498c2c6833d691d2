"""The credential rule as a pure function (regcopy.registry._origin): which URLs get credentials."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.errors import ProtocolViolation
from regcopy.registry._origin import classify, origin_of, show

HOME = origin_of("https://registry.example:5000")
BASE = "https://registry.example:5000/v2/app/blobs/uploads/"


@pytest.mark.parametrize(
    ("location", "url", "credentials"),
    [
        ("/v2/app/blobs/uploads/u?_state=x", "https://registry.example:5000/v2/app/blobs/uploads/u?_state=x", True),
        ("u1", "https://registry.example:5000/v2/app/blobs/uploads/u1", True),
        ("https://REGISTRY.example:5000/x", "https://REGISTRY.example:5000/x", True),  # hosts are case-insensitive
        ("https://registry.example/x", "https://registry.example/x", False),  # port 443 is another origin
        ("https://storage.example/b?X-Amz-Signature=s", "https://storage.example/b?X-Amz-Signature=s", False),
        ("//cdn.example/blob", "https://cdn.example/blob", False),
        ("https://registry.example.:5000/x", "https://registry.example.:5000/x", False),  # not the same name
    ],
)
def test_classify(location: str, url: str, credentials: bool) -> None:
    target = classify(HOME, location, BASE)
    assert (target.url, target.credentials) == (url, credentials)


def test_default_ports_are_the_same_origin() -> None:
    home = origin_of("https://registry.example")
    assert classify(home, "https://registry.example:443/x", BASE).credentials
    assert origin_of("http://[::1]/") == ("http", "::1", 80)
    assert show(origin_of("http://[::1]:5000/")) == "http://[::1]:5000"


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("http://registry.example:5000/x", "downgrades https://registry.example:5000 to plain http"),
        ("http://storage.example/x", "downgrades"),  # any https -> http, not only on the same host
        ("http://[bad/x", "malformed"),
        ("https://registry.example:99999/x", "malformed"),
        ("ftp://registry.example/x", "not an http(s) URL"),
        ("https://user:pw@registry.example:5000/x", "credentials in it"),
        ("https://:5000/x", "without a host"),
        ("/v2/a b", "malformed"),
        ("/v2/\u00e9", "malformed"),
    ],
)
def test_refused(location: str, words: str) -> None:
    with pytest.raises(ProtocolViolation, match=words.replace("(", r"\(").replace(")", r"\)")):
        classify(HOME, location, BASE)


def test_a_foreign_listing_is_refused_naming_both_origins() -> None:
    with pytest.raises(ProtocolViolation) as info:
        classify(HOME, "https://other.example/v2/_catalog?last=a", BASE, foreign="refuse", what="pagination Link")
    assert "https://other.example:443" in str(info.value) and "https://registry.example:5000" in str(info.value)
    assert classify(HOME, "/v2/_catalog?last=a", BASE, foreign="refuse").credentials


def test_http_registry_may_be_sent_to_https_elsewhere_without_credentials() -> None:
    home = origin_of("http://127.0.0.1:5000")
    target = classify(home, "https://127.0.0.1:5000/x", "http://127.0.0.1:5000/v2/")
    assert not target.credentials  # another scheme is another origin


@settings(max_examples=500)
@given(location=st.text(max_size=60), base=st.sampled_from([BASE, "http://127.0.0.1:5000/v2/", "https://[::1]/"]))
def test_only_protocol_violations(location: str, base: str) -> None:
    try:
        target = classify(HOME, location, base)
    except ProtocolViolation:
        return
    assert target.url.startswith(("http://", "https://"))
    assert target.credentials == (origin_of(target.url) == HOME)
