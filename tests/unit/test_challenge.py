"""WWW-Authenticate parsing, challenge choice and scopes (docs/protocol.md#challenges)."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.errors import ProtocolViolation
from regcopy.registry._challenge import (
    CATALOG_SCOPE,
    Challenge,
    Scope,
    merge_scopes,
    parse_www_authenticate,
    pick_challenge,
)

HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:samalba/my-app:pull,push"'
)

PARSES = [
    pytest.param(
        [HUB],
        [
            Challenge(
                "bearer",
                (
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:samalba/my-app:pull,push"),
                ),
            )
        ],
        id="protocol-example",
    ),
    pytest.param(
        ['Basic realm="a", Bearer realm="b",service="c"'],
        [Challenge("basic", (("realm", "a"),)), Challenge("bearer", (("realm", "b"), ("service", "c")))],
        id="two-in-one-value",
    ),
    pytest.param(
        ['Basic realm="Registry Realm"', 'Bearer realm="https://t/token"'],
        [Challenge("basic", (("realm", "Registry Realm"),)), Challenge("bearer", (("realm", "https://t/token"),))],
        id="two-values",
    ),
    pytest.param(
        ['Bearer realm="a,b",scope="x y"'],
        [Challenge("bearer", (("realm", "a,b"), ("scope", "x y")))],
        id="comma-in-quotes",
    ),
    pytest.param(
        [r'Bearer realm="say \"hi\" \\ \x"'],
        [Challenge("bearer", (("realm", 'say "hi" \\ x'),))],
        id="escapes",
    ),
    pytest.param(['Basic realm="Registry Realm"'], [Challenge("basic", (("realm", "Registry Realm"),))], id="basic"),
    pytest.param(
        ['BEARER Realm="r", SERVICE=svc'],
        [Challenge("bearer", (("realm", "r"), ("service", "svc")))],
        id="uppercase",
    ),
    pytest.param(
        ['  Bearer \t realm = "r" ,  , service=svc ,  '],
        [Challenge("bearer", (("realm", "r"), ("service", "svc")))],
        id="whitespace-and-empty-elements",
    ),
    pytest.param(["Basic"], [Challenge("basic")], id="no-params"),
    pytest.param(
        ["Basic, Bearer realm=r"], [Challenge("basic"), Challenge("bearer", (("realm", "r"),))], id="bare-then-more"
    ),
    pytest.param(
        ["Negotiate abc+/==, Bearer realm=r"],
        [Challenge("negotiate", token68="abc+/=="), Challenge("bearer", (("realm", "r"),))],
        id="token68",
    ),
    pytest.param(
        ["Bearer realm=https://auth.example/token?x=1"],
        [Challenge("bearer", (("realm", "https://auth.example/token?x=1"),))],
        id="bare-url-value",
    ),
    pytest.param(['Bearer realm=""'], [Challenge("bearer", (("realm", ""),))], id="empty-quoted"),
    pytest.param(['Bearer realm="ü"'], [Challenge("bearer", (("realm", "ü"),))], id="non-ascii-quoted"),
]


@pytest.mark.parametrize(("values", "expected"), PARSES)
def test_parse(values: list[str], expected: list[Challenge]) -> None:
    assert parse_www_authenticate(values) == expected


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ('Bearer realm="unterminated', "unterminated quoted string"),
        ('Bearer realm="ends in backslash\\', "unterminated quoted string"),
        ('Bearer realm "x"', "missing '='"),
        ("", "empty header"),
        ("  , ,", "empty header"),
        ('realm="x"', "without an auth scheme"),
        ('realm = "x", Bearer service=y', "without an auth scheme"),
        ("Bearer realm=a\x00b", "control character"),
        ("Bearer realm=a\r\nX: y", "control character"),
        ('Bearer realm="a\x7f"', "control character"),
        ('Bearer realm="a" service="b"', "expected ','"),
        ('"Bearer" realm=x', "expected an auth scheme"),
        ('Bearer"x"', "after the auth scheme"),
        ("Bearer realm=,service=x", "without an auth scheme"),
        ("Bearer realm=x, =y", "expected an auth scheme"),
    ],
)
def test_garbage(value: str, why: str) -> None:
    with pytest.raises(ProtocolViolation, match="malformed WWW-Authenticate header") as info:
        parse_www_authenticate([value])
    assert why in str(info.value)


def test_error_message_truncates_the_value() -> None:
    value = 'Bearer realm="' + "x" * 1000
    with pytest.raises(ProtocolViolation) as info:
        parse_www_authenticate([value])
    assert str(info.value).endswith(": " + value[:200])


def test_lone_string_is_one_value() -> None:
    assert parse_www_authenticate('Basic realm="a"') == [Challenge("basic", (("realm", "a"),))]


def test_properties() -> None:
    [challenge] = parse_www_authenticate(
        [HUB.replace("pull,push", "pull,push repository:b:pull") + ',error="insufficient_scope"']
    )
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ("repository:samalba/my-app:pull,push", "repository:b:pull")
    assert challenge.error == "insufficient_scope"
    assert challenge.param("SERVICE") == "registry.docker.io"
    assert challenge.param("missing") is None
    assert Challenge("basic").realm is None
    assert Challenge("basic").scopes == ()


def test_pick_prefers_bearer() -> None:
    basic, bearer, other = Challenge("basic"), Challenge("bearer"), Challenge("negotiate")
    assert pick_challenge([other, basic, bearer]) is bearer
    assert pick_challenge([other, basic]) is basic
    assert pick_challenge([other]) is None
    assert pick_challenge([]) is None


def test_linear_on_pathological_input() -> None:
    # Would take ages with a backtracking regex.
    for value in ("Bearer " + "a=b," * 50_000, 'Bearer x="' + "\\a" * 100_000 + '"', "a" * 200_000 + "!"):
        parse_www_authenticate([value])
    for garbage in ('Bearer realm="' + "x" * 200_000, "Bearer " + "a=b " * 50_000, "Bearer " + "a " * 50_000):
        with pytest.raises(ProtocolViolation):
            parse_www_authenticate([garbage])


@given(st.lists(st.text(max_size=60), max_size=3))
def test_any_text_parses_or_raises_protocol_violation(values: list[str]) -> None:
    try:
        result = parse_www_authenticate(values)
    except ProtocolViolation:
        return
    assert all(isinstance(c, Challenge) for c in result)


@given(st.text(alphabet='Bb ea,r="\\\trlm=x/+', max_size=40))
def test_header_like_text_parses_or_raises_protocol_violation(value: str) -> None:
    with contextlib.suppress(ProtocolViolation):
        parse_www_authenticate([value])


_TCHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
_tokens = st.text(alphabet=_TCHARS, min_size=1, max_size=8)
_values = (
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"), max_size=20)
    | _tokens
)
_challenges = st.builds(
    Challenge,
    _tokens.map(str.lower),
    st.lists(st.tuples(_tokens.map(str.lower), _values), max_size=4).map(tuple),
)


def _render(challenge: Challenge) -> str:
    def value(text: str) -> str:
        if text and all(c in _TCHARS for c in text):
            return text
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    params = ", ".join(f"{k}={value(v)}" for k, v in challenge.params)
    return f"{challenge.scheme.upper()} {params}" if params else challenge.scheme


@given(st.lists(_challenges, min_size=1, max_size=4))
def test_round_trip(challenges: list[Challenge]) -> None:
    assert parse_www_authenticate([", ".join(map(_render, challenges))]) == challenges
    assert parse_www_authenticate([_render(c) for c in challenges]) == challenges


# ---------------------------------------------------------------------------------------------- scopes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("repository:samalba/my-app:pull,push", Scope("repository", "samalba/my-app", frozenset({"pull", "push"}))),
        ("repository:localhost:5000/app:pull", Scope("repository", "localhost:5000/app", frozenset({"pull"}))),
        ("repository(plugin):name:pull", Scope("repository(plugin)", "name", frozenset({"pull"}))),
        ("registry:catalog:*", CATALOG_SCOPE),
        ("repository:a:push,,pull", Scope("repository", "a", frozenset({"pull", "push"}))),
        ("repository:a:", Scope("repository", "a", frozenset())),
    ],
)
def test_scope_parse(text: str, expected: Scope) -> None:
    assert Scope.parse(text) == expected


@pytest.mark.parametrize("text", ["", "repository", "repository:a", ":a:pull", "repository::pull", "r:a b:pull"])
def test_scope_parse_garbage(text: str) -> None:
    with pytest.raises(ProtocolViolation, match="malformed scope"):
        Scope.parse(text)


def test_scope_str_is_canonical() -> None:
    assert str(Scope.parse("repository:reg:5000/a:push,pull")) == "repository:reg:5000/a:pull,push"
    assert str(Scope.repository("a", "push", "pull", "delete")) == "repository:a:delete,pull,push"
    assert str(CATALOG_SCOPE) == "registry:catalog:*"


@given(
    st.sampled_from(["repository", "registry", "repository(plugin)"]),
    st.from_regex(r"[a-z0-9]+(:[0-9]{1,5})?(/[a-z0-9._-]+){0,3}", fullmatch=True),
    st.frozensets(st.sampled_from(["pull", "push", "delete", "*"])),
)
def test_scope_round_trip(kind: str, name: str, actions: frozenset[str]) -> None:
    scope = Scope(kind, name, actions)
    assert Scope.parse(str(scope)) == scope


def test_merge_scopes_unions_and_keeps_first_appearance() -> None:
    merged = merge_scopes(
        [
            Scope.repository("dst", "push"),
            Scope.repository("src", "pull"),
            Scope.repository("dst", "pull"),
            CATALOG_SCOPE,
        ]
    )
    assert merged == (Scope.repository("dst", "pull", "push"), Scope.repository("src", "pull"), CATALOG_SCOPE)
    assert merge_scopes([]) == ()
