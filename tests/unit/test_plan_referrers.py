"""Plan keys of supply-chain artifacts and fan-out: ``referrers``, ``artifact_types``, ``targets``."""

from __future__ import annotations

import pytest

from regcopy.errors import ConfigError
from regcopy.sync import parse_plan


def _plan(entry: dict[str, object], defaults: dict[str, object] | None = None) -> list[object]:
    doc: dict[str, object] = {"sync": [{"source": "src.example/app", **entry}]}
    if defaults is not None:
        doc["defaults"] = defaults
    return list(parse_plan(doc).entries)


def test_referrers_are_on_by_default_and_switchable_per_entry_or_in_defaults() -> None:
    [on] = _plan({"target": "dst.example/app"})
    [off] = _plan({"target": "dst.example/app", "referrers": False})
    [default_off] = _plan({"target": "dst.example/app"}, {"referrers": False})
    [entry_wins] = _plan({"target": "dst.example/app", "referrers": True}, {"referrers": False})
    assert (on.referrers, off.referrers, default_off.referrers, entry_wins.referrers) == (True, False, False, True)  # type: ignore[attr-defined]


def test_artifact_types_are_media_types() -> None:
    [entry] = _plan({"target": "dst.example/app", "artifact_types": ["application/spdx+json", "application/spdx+json"]})
    assert entry.artifact_types == ("application/spdx+json",)  # type: ignore[attr-defined]
    [inherited] = _plan({"target": "dst.example/app"}, {"artifact_types": ["application/vnd.dsse.envelope.v1+json"]})
    assert inherited.artifact_types == ("application/vnd.dsse.envelope.v1+json",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"artifact_types\[0\].*not a media type"):
        _plan({"target": "dst.example/app", "artifact_types": ["spdx"]})


def test_targets_make_one_entry_per_target() -> None:
    entries = _plan({"name": "app", "targets": ["a.example/app", "b.example/app", "c.example/app"]})
    assert [e.name for e in entries] == ["app→a.example/app", "app→b.example/app", "app→c.example/app"]  # type: ignore[attr-defined]
    assert [str(e.target) for e in entries] == ["a.example/app", "b.example/app", "c.example/app"]  # type: ignore[attr-defined]
    from_defaults = _plan({}, {"targets": ["a.example/app", "b.example/app"]})
    assert len(from_defaults) == 2


@pytest.mark.parametrize(("entry", "message"), [
    ({"target": "a.example/app", "targets": ["b.example/app"]}, "target or targets, not both"),
    ({"targets": []}, "at least one target"),
    ({"targets": ["a.example/app", "a.example/app"]}, "twice"),
    ({"targets": "a.example/app"}, "list"),
    ({"targets": ["a.example/app"], "referrers": "yes"}, "true or false"),
])
def test_bad_keys_are_clear_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _plan(entry)
