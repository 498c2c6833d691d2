"""The sync run journal: replay, torn lines, completion, refusal of foreign files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regcopy.digest import Digest
from regcopy.errors import ConfigError
from regcopy.sync.journal import SyncJournal

D = Digest.parse("sha256:" + "ab" * 32)


def test_a_new_journal_records_images_and_a_reopen_resumes(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    with SyncJournal.open(path) as j:
        assert not j.resumed and j.finished("s/a:1", "d/a:1") is None
        j.image_done("s/a:1", "d/a:1", str(D), str(D))
    with SyncJournal.open(path) as j:
        assert j.resumed
        assert j.finished("s/a:1", "d/a:1") == {"source": "s/a:1", "target": "d/a:1", "source_digest": str(D),
                                                "target_digest": str(D)}
        assert j.finished("s/a:1", "d/other:1") is None


def test_complete_makes_the_next_run_start_afresh(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    with SyncJournal.open(path) as j:
        j.image_done("s/a:1", "d/a:1", None, None)
        j.complete()
    with SyncJournal.open(path) as j:
        assert not j.resumed and j.finished("s/a:1", "d/a:1") is None
    assert len(path.read_text().splitlines()) == 1  # truncated to a fresh header


def test_sessions_open_move_and_close(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    with SyncJournal.open(path) as j:
        j.session_opened("registry:r", "a", D, "http://r/v2/a/blobs/uploads/1?_state=x")
        j.session_moved("registry:r", "a", D, "http://r/v2/a/blobs/uploads/1?_state=y")
        j.session_moved("registry:r", "a", D, "http://r/v2/a/blobs/uploads/1?_state=y")  # no duplicate line
        j.session_opened("registry:r", "b", D, "http://r/v2/b/blobs/uploads/2")
        j.session_closed("registry:r", "b", D)
    assert len(path.read_text().splitlines()) == 1 + 4
    with SyncJournal.open(path) as j:
        assert j.session_for("registry:r", "a", D) == "http://r/v2/a/blobs/uploads/1?_state=y"
        assert j.session_for("registry:r", "b", D) is None


def test_a_torn_last_line_is_ignored_and_later_records_start_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "run.state"
    with SyncJournal.open(path) as j:
        j.image_done("s/a:1", "d/a:1", None, None)
    with path.open("a") as f:
        f.write('{"image": {"source": "s/b:1", "targ')  # SIGKILL mid-write
    with SyncJournal.open(path) as j:
        assert j.finished("s/a:1", "d/a:1") is not None and j.finished("s/b:1", "d/b:1") is None
        j.image_done("s/c:1", "d/c:1", None, None)
    with SyncJournal.open(path) as j:
        assert j.finished("s/c:1", "d/c:1") is not None


@pytest.mark.parametrize("content, message", [
    ("hello\n", "not a regcopy sync journal"),
    ('{"journal": "something-else"}\n', "not a regcopy sync journal"),
    ('{"journal": "regcopy-sync", "version": 99}\n', "version 99"),
])
def test_a_foreign_file_is_refused_and_kept(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "run.state"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        SyncJournal.open(path)
    assert path.read_text() == content  # never overwritten


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.builds(json.dumps, st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["image", "session", "closed", "complete", "source", "target", "storage", "repository",
                         "digest", "location"]), inner, max_size=4),
    max_leaves=8))), max_size=6))
def test_any_record_garbage_after_a_valid_header_loads_without_error(tmp_path_factory: pytest.TempPathFactory,
                                                                    lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("j") / "run.state"
    header = json.dumps({"journal": "regcopy-sync", "version": 1, "started": 0})
    path.write_text("\n".join([header, *(line.replace("\n", " ") for line in lines)]) + "\n")
    with SyncJournal.open(path) as j:
        j.image_done("s/x:1", "d/x:1", None, None)
