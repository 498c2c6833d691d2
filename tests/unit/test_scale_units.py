"""Units of work and the static shard split (regcopy.scale.units): pure functions."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regcopy.scale.units import make_units, parse_shard, shard_of


@dataclass(frozen=True)
class Img:
    repo: str
    tag: str
    size: int


def units(images: list[Img], big: int = 100) -> list:
    return make_units(images, key=lambda i: i.repo, size=lambda i: i.size, ident=lambda i: f"{i.repo}:{i.tag}", big=big)


def test_one_unit_per_repository_biggest_first() -> None:
    images = [Img("a/x", "1", 10), Img("a/x", "2", 20), Img("b/y", "1", 50), Img("c/z", "1", 5)]
    got = units(images)
    assert [(u.key, u.bytes) for u in got] == [("b/y", 50), ("a/x", 30), ("c/z", 5)]
    assert [i.tag for i in got[1].images] == ["2", "1"]  # biggest image first inside a unit too


def test_an_image_over_the_threshold_is_a_unit_of_its_own() -> None:
    images = [Img("a/x", "small", 10), Img("a/x", "huge", 500), Img("a/x", "mid", 100)]
    got = units(images, big=100)
    assert [(u.key, [i.tag for i in u.images]) for u in got] == [("a/x", ["huge"]), ("a/x", ["mid", "small"])]


def test_unit_ids_are_stable_and_independent_of_order() -> None:
    images = [Img("a/x", str(t), t) for t in range(1, 6)]
    first = {u.id for u in units(images)}
    again = {u.id for u in units(list(reversed(images)))}
    assert first == again and len(first) == 1
    other = {u.id for u in units(images[:-1])}
    assert other != first  # another set of images is another unit


def test_shard_of_is_stable_across_processes() -> None:
    # hash() is salted per process; the split must not be.
    names = [f"team{i}/svc{i}" for i in range(50)]
    here = [shard_of(n, 4) for n in names]
    code = ("from regcopy.scale.units import shard_of; "
            f"print([shard_of(n, 4) for n in {names!r}])")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""} | _pythonpath()).stdout
    assert there.strip() == str(here)
    assert set(here) == {0, 1, 2, 3}  # 50 names reach every shard


def _pythonpath() -> dict[str, str]:
    import os

    return {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}


@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=40, unique=True), st.integers(1, 9))
def test_shards_are_disjoint_and_complete(names: list[str], n: int) -> None:
    parts = [[k for k in names if shard_of(k, n) == i] for i in range(n)]
    assert sorted(k for part in parts for k in part) == sorted(names)


@pytest.mark.parametrize(("text", "want"), [("0/4", (0, 4)), ("3/4", (3, 4)), (" 0/1 ", (0, 1))])
def test_parse_shard(text: str, want: tuple[int, int]) -> None:
    assert parse_shard(text) == want


@pytest.mark.parametrize("text", ["4/4", "1", "a/b", "-1/4", "1/0", "", "1/2/3", "1.0/2"])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


@given(st.text(max_size=20))
def test_parse_shard_never_raises_anything_but_value_error(text: str) -> None:
    try:
        i, n = parse_shard(text)
    except ValueError:
        return
    assert 0 <= i < n
