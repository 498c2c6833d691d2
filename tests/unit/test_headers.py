"""Parsers of the Link, upload Range and Content-Range response headers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.errors import ProtocolViolation
from regcopy.registry._headers import parse_content_range, parse_link_next, parse_upload_range

BASE = "http://localhost:5000/v2/_catalog?n=2"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # distribution 2.8.2: relative target, resolved against the request URL
        ('</v2/_catalog?last=b&n=2>; rel="next"', "http://localhost:5000/v2/_catalog?last=b&n=2"),
        ('</v2/repo/tags/list?last=v1&n=50>; rel="next"', "http://localhost:5000/v2/repo/tags/list?last=v1&n=50"),
        ('<https://other.example/v2/_catalog?last=z>; rel="next"', "https://other.example/v2/_catalog?last=z"),
        ('<https://x/prev>; rel="prev", <https://x/next>; rel="next"', "https://x/next"),
        ('<https://x/first>; rel="first",<https://x/next>;rel="next", <https://x/last>; rel="last"', "https://x/next"),
        ('<https://x/a>; rel="prev next"', "https://x/a"),
        ('<https://x/a>; rel="next prev"', "https://x/a"),
        ("<https://x/a>; rel=next", "https://x/a"),
        ('<https://x/a>; REL="NEXT"', "https://x/a"),
        ('<https://x/a>; title="page 2"; rel="next"', "https://x/a"),
        ('  < /v2/_catalog?last=c >  ;  rel = "next"  ', "http://localhost:5000/v2/_catalog?last=c"),
        ('<?last=q>; rel="next"', "http://localhost:5000/v2/_catalog?last=q"),
    ],
)
def test_link_next(value: str, expected: str) -> None:
    assert parse_link_next(value, BASE) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        '<https://x/a>; rel="prev"',
        '<https://x/a>; rel="nextpage"',  # a different relation, not "next"
        '<https://x/a>; rev="next"',
        "<https://x/a>",
        '<https://x/a>; rel="prev", <https://x/b>; rel="last"',
    ],
)
def test_link_without_next(value: str | None) -> None:
    assert parse_link_next(value, BASE) is None


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "https://x/a; rel=next",  # target not in angle brackets
        '<https://x/a; rel="next"',  # unterminated
        '<https://x/a> rel="next"',  # no semicolon
        '<https://x/a>; rel="prev" <https://x/b>; rel="next"',  # no comma between links
        " ",
    ],
)
def test_link_garbage(value: str) -> None:
    with pytest.raises(ProtocolViolation):
        parse_link_next(value, BASE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0-0", 1),
        ("0-1499", 1500),
        ("bytes=0-9", 10),
        (" 0-9 ", 10),
        ("0-" + "9" * 19, 10**19),
        (None, None),
    ],
)
def test_upload_range(value: str | None, expected: int | None) -> None:
    assert parse_upload_range(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "1-9", "5-1499", "9-0", "0-", "-9", "0 - 9", "bytes 0-9", "bytes=0-9/10", "0-9,20-30", "garbage",
     "0-" + "9" * 20, "0x0-0x9"],
)
def test_upload_range_invalid(value: str) -> None:
    with pytest.raises(ProtocolViolation):
        parse_upload_range(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 5-9/10", (5, 9, 10)),
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 5-9/*", (5, 9, None)),
        ("  bytes 100-199/1000 ", (100, 199, 1000)),
    ],
)
def test_content_range(value: str, expected: tuple[int, int, int | None]) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "bytes 9-5/10",  # last before first
        "bytes 5-10/10",  # last beyond total
        "bytes 5-9/5",
        "bytes */10",  # unsatisfied-range form is not a 206 answer
        "bytes=5-9/10",
        "5-9/10",
        "bytes 5-9",
        "bytes 5-9/",
        "bytes 5-9/10 extra",
        "garbage",
    ],
)
def test_content_range_invalid(value: str | None) -> None:
    with pytest.raises(ProtocolViolation):
        parse_content_range(value)


PARSERS: dict[str, Callable[[str], object]] = {
    "link": lambda v: parse_link_next(v, BASE),
    "upload_range": parse_upload_range,
    "content_range": parse_content_range,
}

HEADER_ALPHABET = st.sampled_from(list('<>;,="= \t-*/0123456789abrelnxtbytes?&:/\\\x00\u00e9\u0663'))


@pytest.mark.parametrize("name", PARSERS)
@given(text=st.text(max_size=200) | st.text(HEADER_ALPHABET, max_size=200))
@settings(max_examples=300)
def test_arbitrary_text_value_or_protocol_violation(name: str, text: str) -> None:
    try:
        value = PARSERS[name](text)
    except ProtocolViolation:
        return
    if name == "link":
        assert value is None or isinstance(value, str)
    elif name == "upload_range":
        assert isinstance(value, int) and value >= 1
    else:
        assert isinstance(value, tuple) and len(value) == 3


@given(st.lists(st.sampled_from(["rel", "next", "prev", "title", "x"]), max_size=6))
@settings(max_examples=200)
def test_link_rel_values(rels: list[str]) -> None:
    value = f'<https://x/a>; rel="{" ".join(rels)}"'
    assert (parse_link_next(value, BASE) == "https://x/a") == ("next" in rels)


ADVERSARIAL = [
    "<" + "a;" * 5000,
    "<a>" + "; x=" * 5000,
    "<a>" + '; x="' * 5000,
    "<a>" + "; x=  " * 5000 + '"',
    "<a>;" + " " * 20000,
    "<a>; x=" + " " * 20000 + "!",
    "<a>; rel = " + "\t " * 10000 + "x,",
    "<a>, " * 5000 + "junk",
    "<>" + ";a=" * 10000 + '"',
    "<" * 20000,
    ">" * 20000,
    ";" * 20000,
    "0" * 20000 + "-" + "0" * 20000,
    "bytes " + "1" * 20000 + "-" + "2" * 20000 + "/*",
    "bytes=" + "0-" * 10000,
]


@pytest.mark.parametrize("name", PARSERS)
@pytest.mark.parametrize("value", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_input_is_fast(name: str, value: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(ProtocolViolation):
        PARSERS[name](value)
    assert time.perf_counter() - started < 1.0
