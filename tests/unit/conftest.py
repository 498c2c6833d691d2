"""Fixtures of the unit tests: a file writer and a pretend x86_64 host (plan and skopeo parser tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def amd64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to run on x86_64, so the host platform is linux/amd64."""
    monkeypatch.setattr("platform.machine", lambda: "x86_64")


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def _write(text: str, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
