"""cli/_access.py: skopeo's duration syntax (a parser of outside input: property-tested), the
per-side credential rules skopeo enforces, and the retry flags as settings fields."""

from __future__ import annotations

import math

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.cli._access import REFUSED, SYNC_REFUSED, Access, parse_duration, retry_fields
from regcopy.settings import Credentials, RegistrySettings

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(_UNITS))), min_size=1, max_size=4))
def test_go_durations_add_up(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert math.isclose(parse_duration(text), sum(n * _UNITS[u] for n, u in parts), rel_tol=1e-9, abs_tol=1e-12)


@given(st.text(max_size=30))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0 and math.isfinite(seconds)


@pytest.mark.parametrize(("text", "seconds"), [("2", 2.0), ("1.5s", 1.5), ("300ms", 0.3), ("1m30s", 90.0)])
def test_durations_as_skopeo_writes_them(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1d", "1s2", "1 s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_retry_flags_become_the_hosts_retry_settings() -> None:
    assert retry_fields(None, None) == {}
    fields = retry_fields(0, 0.25)
    assert fields == {"retries": 0, "backoff": 0.25, "backoff_max": 0.25}  # a fixed delay, as skopeo's
    RegistrySettings(**fields)  # valid settings


def test_credentials_as_skopeo_reads_them() -> None:
    assert Access("--src-").credentials() is None
    assert Access("--src-", creds="u:p:w").credentials() == Credentials(username="u", password="p:w")
    assert Access("--src-", username="u", password="p").credentials() == Credentials(username="u", password="p")
    assert Access("--src-", authfile="/a.json").credentials() == Credentials(authfile="/a.json")
    # An explicit secret wins over the side's auth file, as in skopeo.
    assert Access("--src-", creds="u:p", authfile="/a.json").credentials() == Credentials(username="u", password="p")
    for bad, message in [(Access("--dest-", creds="u:p", username="v"), "--dest-creds and --dest-username"),
                         (Access("--dest-", password="p"), "--dest-password needs --dest-username"),
                         (Access("--dest-", creds=":p"), "needs a user name"),
                         (Access("--dest-", no_creds=True, registry_token="t"), "--dest-no-creds and")]:
        with pytest.raises(click.UsageError, match=message):
            bad.credentials()


def test_every_refusal_says_why() -> None:
    for name, why in (REFUSED | SYNC_REFUSED).items():
        assert name.startswith("--") and why.startswith("regcopy")
