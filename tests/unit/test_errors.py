"""Registry answers to regcopy errors: classes per status/code, Retry-After, redaction, retryable verdicts."""

from __future__ import annotations

import email.utils
import json
import time
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.errors import (
    AuthenticationError,
    BlobNotFound,
    ContentError,
    CopyFailed,
    DigestMismatch,
    ManifestNotFound,
    NotFound,
    PermissionDenied,
    ProtocolViolation,
    RateLimited,
    RegcopyError,
    RegistryError,
    RegistryTimeout,
    TransportError,
    Unsupported,
)
from regcopy.registry._errors import error_from_response, parse_error_body, parse_retry_after, redact_url

URL = "https://alice:s3cret@registry.example:5000/v2/team/app/blobs/uploads/u1?_state=SECRET#frag"


def oci_body(*errors: tuple[str, str]) -> bytes:
    return json.dumps({"errors": [{"code": c, "message": m, "detail": None} for c, m in errors]}).encode()


def make(status: int, body: bytes = b"", headers: dict[str, str] | None = None, what: str | None = None
         ) -> RegistryError:
    return error_from_response(status, headers or {}, body, registry="registry.example:5000", method="GET",
                               url=URL, what=what)


# --- error_from_response ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "what", "cls"),
    [
        (401, oci_body(("UNAUTHORIZED", "authentication required")), None, AuthenticationError),
        (401, b"", None, AuthenticationError),
        (403, b"forbidden", None, PermissionDenied),
        (400, oci_body(("DENIED", "requested access to the resource is denied")), None, PermissionDenied),
        (404, oci_body(("MANIFEST_UNKNOWN", "manifest unknown")), None, ManifestNotFound),
        (404, b"", "manifest", ManifestNotFound),
        (404, oci_body(("BLOB_UNKNOWN", "blob unknown to registry")), None, BlobNotFound),
        (404, b"", "blob", BlobNotFound),
        (404, oci_body(("NAME_UNKNOWN", "repository name not known to registry")), None, NotFound),
        (404, b"404 page not found\n", None, NotFound),
        (405, oci_body(("UNSUPPORTED", "The operation is unsupported.")), None, Unsupported),
        (405, b"", None, Unsupported),
        (501, b"", None, Unsupported),
        (400, oci_body(("UNSUPPORTED", "nope")), None, Unsupported),
        (429, b"", None, RateLimited),
        (503, oci_body(("TOOMANYREQUESTS", "slow down")), None, RateLimited),
        (400, oci_body(("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")), "manifest", RegistryError),
        (500, b"", None, RegistryError),
        (502, b"", None, RegistryError),
        (503, b"", None, RegistryError),
    ],
)
def test_error_class(status: int, body: bytes, what: str | None, cls: type[RegistryError]) -> None:
    err = make(status, body, what=what)
    assert type(err) is cls
    assert err.status == status
    assert err.registry == "registry.example:5000" and err.method == "GET"
    assert err.url == "https://registry.example:5000/v2/team/app/blobs/uploads/u1"
    assert "SECRET" not in str(err) and "s3cret" not in str(err)


def test_not_found_is_lookup_error_and_codes_kept() -> None:
    err = make(404, oci_body(("MANIFEST_UNKNOWN", "manifest unknown"), ("NAME_UNKNOWN", "no repo")))
    assert isinstance(err, LookupError) and isinstance(err, NotFound)
    assert err.codes == ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")
    assert err.message == "manifest unknown; no repo"
    assert not err.retryable


def test_text_plain_404_keeps_snippet() -> None:
    err = make(404, b"404 page not found\n")
    assert err.message == "404 page not found"
    assert err.codes == ()
    assert str(err).endswith(": 404 page not found")


def test_empty_body_message() -> None:
    assert make(500).message == "unexpected HTTP 500"


def test_manifest_blob_unknown_is_not_not_found_nor_retryable() -> None:
    err = make(400, oci_body(("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")))
    assert not isinstance(err, NotFound)
    assert err.codes == ("MANIFEST_BLOB_UNKNOWN",)
    assert err.retryable is False


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable(status: int) -> None:
    assert make(status).retryable is True


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 412, 416])
def test_client_errors_are_not_retryable(status: int) -> None:
    assert make(status).retryable is False


def test_rate_limited_retry_after_seconds() -> None:
    err = make(429, oci_body(("TOOMANYREQUESTS", "pull rate limit")), {"Retry-After": "7"})
    assert isinstance(err, RateLimited) and err.retryable
    assert err.retry_after == 7.0
    assert err.codes == ("TOOMANYREQUESTS",)


def test_rate_limited_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    err = make(429, b"", {"Retry-After": when})
    assert isinstance(err, RateLimited)
    assert err.retry_after is not None and 50 <= err.retry_after <= 61


def test_rate_limited_without_retry_after() -> None:
    err = make(429)
    assert isinstance(err, RateLimited) and err.retry_after is None


def test_html_error_page_is_a_short_single_line() -> None:
    page = (
        b"<!DOCTYPE html>\n<html>\r\n<head><title>502 Bad Gateway</title></head>\n<body>\n\n"
        b"<center><h1>502 Bad Gateway</h1></center>\n<hr><center>nginx</center>\n" + b"<p>filler</p>\n" * 200
        + b"</body>\n</html>\n"
    )
    err = make(502, page)
    assert "\n" not in err.message and "\r" not in err.message
    assert 0 < len(err.message) <= 200
    assert "502 Bad Gateway" in err.message
    assert "\n" not in str(err)
    assert err.retryable


# --- parse_error_body ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "codes", "message"),
    [
        (oci_body(("blob_unknown", "unknown")), ("BLOB_UNKNOWN",), "unknown"),
        (b'{"errors":[{"code":"DENIED","message":"no","detail":"repo x"}]}', ("DENIED",), "no (repo x)"),
        (b'{"errors":[{"code":"X","message":"m","detail":42}]}', ("X",), "m (42)"),
        (b'{"errors":[{"code":"X","message":"m","detail":{"a":1}}]}', ("X",), "m"),
        (b'{"errors":[{"code":"X","message":""}]}', ("X",), '{"errors":[{"code":"X","message":""}]}'),
        (b'{"errors":[1, "x", {"code": 5, "message": "only message"}]}', (), "only message"),
        (b'{"errors": "nope"}', (), '{"errors": "nope"}'),
        (b"[]", (), "[]"),
        (b"", (), ""),
        (b"\xff\xfe\xfa not utf8", (), "\ufffd\ufffd\ufffd not utf8"),
        (b"  multi\n\n line\t text  ", (), "multi line text"),
    ],
)
def test_parse_error_body(body: bytes, codes: tuple[str, ...], message: str) -> None:
    assert parse_error_body(body) == (codes, message)


def test_parse_error_body_truncates_long_messages() -> None:
    body = json.dumps({"errors": [{"code": "X", "message": "m" * 1000, "detail": "d" * 1000}]}).encode()
    _, message = parse_error_body(body)
    assert len(message) <= 300


@given(st.binary(max_size=512))
@settings(max_examples=300)
def test_parse_error_body_never_raises(body: bytes) -> None:
    codes, message = parse_error_body(body)
    assert isinstance(codes, tuple) and all(isinstance(c, str) for c in codes)
    assert isinstance(message, str)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_any = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["errors", "code", "message", "detail"]) | st.text(max_size=5), c, max_size=4), max_leaves=15)


@given(json_any)
@settings(max_examples=150)
def test_parse_error_body_json_never_raises(value: object) -> None:
    codes, message = parse_error_body(json.dumps(value).encode())
    assert isinstance(codes, tuple) and isinstance(message, str)


@pytest.mark.parametrize("body", [b"[" * 10_000, b'{"errors": ' + b"[" * 10_000])
def test_parse_error_body_deep_nesting(body: bytes) -> None:
    # Regression: json.loads raised RecursionError out of parse_error_body.
    assert parse_error_body(body) == ((), body[:200].decode())  # no codes, a 200-character snippet
    assert type(make(500, body)) is RegistryError


@given(status=st.integers(min_value=400, max_value=599), body=st.binary(max_size=256),
       retry_after=st.none() | st.text(st.characters(codec="latin-1"), max_size=30) | st.sampled_from(
           ["5", "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 01 Jan 9999 00:00:00 -0000"]),
       what=st.sampled_from([None, "manifest", "blob"]))
@settings(max_examples=300)
def test_error_from_response_always_registry_error(status: int, body: bytes, retry_after: str | None,
                                                   what: str | None) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    err = error_from_response(status, headers, body, registry="r", method="PUT", url=URL, what=what)
    assert isinstance(err, RegistryError)
    assert err.status == status and err.message
    assert isinstance(err.retryable, bool)
    if status == 404 and what is not None:
        assert isinstance(err, NotFound)


# --- parse_retry_after -----------------------------------------------------------------------


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("5", 5.0),
        (" 30 ", 30.0),
        ("3600", 3600.0),
        ("86400", 3600.0),  # clamped to an hour
        ("9" * 400, 3600.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Mon, 32 Foo 2024 99:99:99 GMT", None),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
        (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # in the past: clamped to 0
        (email.utils.formatdate(NOW + 7200, usegmt=True), 3600.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b3", "\u0663", "\uff15"])
def test_parse_retry_after_non_ascii_digits(value: str) -> None:
    # Regression: str.isdigit() accepted '\u00b2', then float() raised ValueError.
    assert parse_retry_after(value, now=NOW) is None


def test_error_from_response_unicode_retry_after() -> None:
    err = make(429, b"", {"Retry-After": "\u00b2"})
    assert isinstance(err, RateLimited) and err.retry_after is None


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_parse_retry_after_is_none_or_clamped(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or 0.0 <= seconds <= 3600.0


# --- redact_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (URL, "https://registry.example:5000/v2/team/app/blobs/uploads/u1"),
        ("https://registry.example/v2/?x=1", "https://registry.example/v2/"),
        ("http://127.0.0.1:5000/v2/a/b?_state=abc&digest=sha256:00", "http://127.0.0.1:5000/v2/a/b"),
        ("http://[::1]:5000/v2/x?y=z", "http://[::1]:5000/v2/x"),
        ("https://u:p@[2001:db8::1]/v2/#f", "https://[2001:db8::1]/v2/"),
        ("https://token@s3.example.com/bucket/obj?X-Amz-Signature=abc", "https://s3.example.com/bucket/obj"),
        ("https://h/v2/", "https://h/v2/"),
        ("http://[::1/v2", "<unparsable url>"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_redact_url_never_raises_and_drops_query(url: str) -> None:
    out = redact_url(url)
    assert "?" not in out and "#" not in out
    assert "@" not in urlsplit(out).netloc  # userinfo never survives


# --- retryable verdicts of the hierarchy ------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "retryable"),
    [
        (TransportError("connection reset"), True),
        (TransportError("x", status=400), True),
        (RegistryTimeout("read timeout"), True),
        (NotFound("gone", status=404), False),
        (NotFound("gone", status=503), False),
        (ManifestNotFound("gone", codes=["UNAVAILABLE"]), False),  # NotFound never retries, whatever the code
        (RegistryError("x", status=503), True),
        (RegistryError("x", status=500), True),
        (RegistryError("x", status=400), False),
        (RegistryError("x"), False),
        (RegistryError("x", status=400, codes=["TOOMANYREQUESTS"]), True),
        (RegistryError("x", codes=["UNKNOWN"]), True),
        (RegistryError("x", status=400, codes=["BLOB_UPLOAD_INVALID"]), False),
        (RateLimited("x"), True),
        (AuthenticationError("x", status=503), False),
        (PermissionDenied("x", status=503), False),
        (Unsupported("x", status=503), False),
        (ProtocolViolation("x", status=503), False),
    ],
)
def test_retryable_verdicts(err: RegistryError, retryable: bool) -> None:
    assert err.retryable is retryable


def test_hierarchy() -> None:
    assert issubclass(RegistryTimeout, TimeoutError) and issubclass(RegistryTimeout, TransportError)
    assert issubclass(BlobNotFound, LookupError) and issubclass(BlobNotFound, RegistryError)
    assert issubclass(DigestMismatch, ContentError) and not issubclass(DigestMismatch, RegistryError)
    for cls in (RegistryError, ContentError, CopyFailed):
        assert issubclass(cls, RegcopyError)


def test_registry_error_rendering() -> None:
    err = RegistryError("boom", registry="r.example", method="PUT", url="https://r.example/v2/x", status=500,
                        codes=["UNKNOWN", "X"])
    assert str(err) == "PUT https://r.example/v2/x HTTP 500 UNKNOWN,X: boom"
    assert str(RegistryError("boom", registry="r.example")) == "r.example: boom"
    assert str(RegistryError("boom")) == "boom"


def test_copy_failed_lists_errors() -> None:
    errors = [RegistryError(f"e{i}") for i in range(7)]
    err = CopyFailed("3 images failed", errors)
    assert err.errors == tuple(errors)
    assert str(err) == "3 images failed: e0; e1; e2; e3; e4 (+2 more)"


# ---------------------------------------------------------------------------------- redaction of message text

_noise = st.text(alphabet=" :,;.()[]<>'\"=abcxyz/\n", max_size=30)
_secret = st.text(alphabet="QWZ0123456789%-_~", min_size=6, max_size=20).map(lambda s: "S3C" + s)


@settings(max_examples=300)
@given(before=_noise, after=_noise, user=_secret, password=_secret, value=_secret,
       scheme=st.sampled_from(["http", "https", "HTTPS", "docker", "oci+http"]),
       path=st.sampled_from(["", "/", "/v2/app/blobs/sha256:1", "/b/x.tar"]),
       end=st.sampled_from(["", ".", ":", ")", "'", ").", "]"]))
def test_redact_drops_userinfo_and_query_wherever_the_url_stands(
    before: str, after: str, user: str, password: str, value: str, scheme: str, path: str, end: str
) -> None:
    from regcopy.errors import redact

    url = f"{scheme}://{user}:{password}@storage.example:9000{path}?X-Amz-Signature={value}&b=1"
    after = " " + after  # a URL ends at whitespace (or a quote or bracket)
    text = redact(f"{before}{url}{end}{after}")
    assert user not in text and password not in text and value not in text
    assert f"{scheme}://***@storage.example:9000{path}?<redacted>" in text
    assert text.endswith(f"{end}{after}")  # punctuation after the URL is kept


@given(text=st.text(max_size=200).filter(lambda t: "://" not in t and "/v2/" not in t))
def test_redact_leaves_text_without_urls_alone(text: str) -> None:
    from regcopy.errors import redact

    assert redact(text) == text


def test_every_error_renders_redacted() -> None:
    signed = "https://u:pw@s3.example/b?X-Amz-Credential=AKIA"
    for exc in (RegistryError(f"GET {signed} failed", url=signed), ContentError(f"from {signed}"),
                RegcopyError("upload /v2/app/blobs/uploads/u?_state=SECRETSTATE broke")):
        for text in (str(exc), repr(exc), getattr(exc, "message", ""), getattr(exc, "url", "") or ""):
            assert "AKIA" not in text and "pw@" not in text and "SECRETSTATE" not in text, text
