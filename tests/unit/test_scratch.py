"""``stores/scratch.py``: temp items are locked by the process that made them; a sweep removes only
items no live process holds (owners are real child processes, killed for real), stale items of
older versions, and nothing outside its own names and directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.stores.scratch import LEGACY_AGE, PARTIAL, SPOOL, ScratchArea

OWNER = """
import sys
from pathlib import Path
from regcopy.stores.scratch import ScratchArea
area = ScratchArea.for_layout(Path(sys.argv[1])) if sys.argv[2] == "layout" else ScratchArea.beside(Path(sys.argv[1]))
f, d = area.new_file(), area.new_dir()
Path(f.path).write_bytes(b"x" * 1000)
(d.path / "blob").write_bytes(b"y" * 500)
print(f.path.name, d.path.name, flush=True)
sys.stdin.read()  # hold the locks until told to go (or killed)
"""


class Owner:
    """A child process holding a temp file and a temp directory in an area."""

    def __init__(self, target: Path, kind: str = "layout") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", OWNER, str(target), kind], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.names = self.proc.stdout.readline().split()
        assert len(self.names) == 2, self.proc.communicate()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)


def test_a_live_owners_items_stay_and_a_killed_owners_go(tmp_path: Path) -> None:
    owner = Owner(tmp_path)
    try:
        assert ScratchArea.for_layout(tmp_path).sweep().items == 0
        assert sorted(os.listdir(tmp_path)) == sorted(owner.names)
    finally:
        owner.kill()
    swept = ScratchArea.for_layout(tmp_path).sweep()
    assert (swept.items, swept.bytes) == (2, 1500)
    assert os.listdir(tmp_path) == []


def test_items_held_by_this_process_are_not_swept_by_it(tmp_path: Path) -> None:
    # flock locks belong to open file descriptions: another store of the same process is a live owner.
    area = ScratchArea.for_layout(tmp_path)
    held = area.new_file()
    assert area.sweep().items == 0 and held.path.exists()
    held.discard()
    assert not held.path.exists()


def test_names_carry_the_area_prefix(tmp_path: Path) -> None:
    layout = ScratchArea.for_layout(tmp_path)
    archive = ScratchArea.beside(tmp_path / "a.tar")
    claims = [layout.new_file(), layout.new_dir(), archive.new_file(), archive.new_dir()]
    names = [c.path.name for c in claims]
    assert names[0].startswith(f".{PARTIAL}") and names[1].startswith(f".{SPOOL}")
    assert names[2].startswith(f".a.tar.{PARTIAL}") and names[3].startswith(f".a.tar.{SPOOL}")
    assert all(c.path.parent == tmp_path for c in claims)
    for c in claims:
        c.discard()
    assert os.listdir(tmp_path) == []


def test_an_archive_sweep_touches_only_that_archives_leftovers(tmp_path: Path) -> None:
    for name in ("a.tar", "b.tar"):
        Owner(tmp_path / name, "archive").kill()
    (tmp_path / "a.tar").write_bytes(b"the archive itself")
    (tmp_path / ".a.tar.notes").write_bytes(b"a user's file")
    assert ScratchArea.beside(tmp_path / "a.tar").sweep().items == 2
    left = sorted(os.listdir(tmp_path))
    assert [n for n in left if n.startswith(".b.tar.")] and not [n for n in left if n.startswith(".a.tar.regcopy")]
    assert "a.tar" in left and ".a.tar.notes" in left


def test_links_and_special_files_with_our_names_are_left_alone(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep")
    area_dir = tmp_path / "layout"
    area_dir.mkdir()
    (area_dir / f".{SPOOL}link").symlink_to(outside)
    (area_dir / f".{PARTIAL}link").symlink_to(outside / "precious")
    os.mkfifo(area_dir / f".{PARTIAL}fifo")
    assert ScratchArea.for_layout(area_dir).sweep().items == 0
    assert (outside / "precious").read_bytes() == b"keep"
    assert len(os.listdir(area_dir)) == 3


def test_a_dead_owners_directory_is_removed_without_following_links_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep")
    layout = tmp_path / "layout"
    layout.mkdir()
    owner = Owner(layout)
    (layout / owner.names[1] / "escape").symlink_to(outside)
    owner.kill()
    assert ScratchArea.for_layout(layout).sweep().items == 2
    assert os.listdir(layout) == [] and (outside / "precious").read_bytes() == b"keep"


def test_legacy_items_go_only_when_stale(tmp_path: Path) -> None:
    old = time.time() - LEGACY_AGE - 60
    stale_file, fresh_file = tmp_path / ".regcopy-tmp-abcd1234", tmp_path / ".regcopy-tmp-efgh5678"
    stale_file.write_bytes(b"x" * 10)
    fresh_file.write_bytes(b"x")
    os.utime(stale_file, (old, old))
    spool = tmp_path / ".a.tar.spool-k2j4h5g6"
    (spool / "blobs").mkdir(parents=True)
    (spool / "blobs" / "part").write_bytes(b"y" * 20)
    for p in (spool / "blobs" / "part", spool / "blobs", spool):
        os.utime(p, (old, old))
    busy_spool = tmp_path / ".a.tar.spool-busy1234"
    busy_spool.mkdir()
    (busy_spool / "new").write_bytes(b"z")  # written just now: an older regcopy may still be at work
    os.utime(busy_spool, (old, old))
    assert ScratchArea.for_layout(tmp_path).sweep().items == 1
    assert ScratchArea.beside(tmp_path / "a.tar").sweep().items == 1
    assert sorted(os.listdir(tmp_path)) == [".a.tar.spool-busy1234", ".regcopy-tmp-efgh5678"]


def test_a_missing_directory_sweeps_nothing(tmp_path: Path) -> None:
    assert ScratchArea.for_layout(tmp_path / "nope").sweep().items == 0


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=40)
                      .filter(lambda n: n not in (".", "..")), max_size=8, unique=True))
def test_a_sweep_never_removes_what_is_not_an_unowned_item_of_its_own(tmp_path_factory: pytest.TempPathFactory,
                                                                     names: list[str]) -> None:
    directory = tmp_path_factory.mktemp("names")
    for name in names:
        try:
            (directory / name).write_bytes(b"data")
        except OSError:  # a name the filesystem refuses (too long in bytes)
            continue
    present = set(os.listdir(directory))
    area = ScratchArea.beside(directory / "a.tar")
    area.sweep()
    ours = {n for n in present if area.owns(n)}  # unlocked and ours: the only things a sweep may take
    assert set(os.listdir(directory)) | ours == present
    assert not (set(os.listdir(directory)) & ours)
