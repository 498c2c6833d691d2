"""What a person sees on a terminal: ``regcopy`` run under a pseudo-terminal of a fixed size, its output
fed through a terminal emulator (pyte), and assertions on the screen, during the run and after it.

The runs are slowed by ``--limit-rate`` so that the live display is on screen long enough to be read.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyte
import yaml

from servers.registry import RegistryServer

COLS, ROWS = 120, 40
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) regcopy\.[a-z_.]+: \S.*$")


def run_on_a_terminal(args: list[str], watch: Callable[[list[str]], bool] | None = None,
                      timeout: float = 120) -> tuple[int, list[str], list[str] | None]:
    """Run ``python -m regcopy ARGS`` with stdin, stdout and stderr on a COLS by ROWS pseudo-terminal.

    :param watch: called with the screen after each read; the first screen it accepts is returned
    :returns: the exit status, the final screen, the watched screen (None when none matched)
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "regcopy", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.ByteStream(screen)
    seen: list[str] | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            stream.feed(data)
            if seen is None and watch is not None and watch(list(screen.display)):
                seen = list(screen.display)
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return status, [line.rstrip() for line in screen.display], seen


def _slow_plan(tmp_path: Path, src: RegistryServer, dst: RegistryServer, seed: Any) -> tuple[Path, list[str]]:
    for sample in ("big", "shared-a", "multi"):
        seed(src, sample, f"tty/{sample}", "v1")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"registries": {src.host: {"tls": "http"}, dst.host: {"tls": "http"}},
                                    "sync": [{"source": f"{src.host}/tty", "target": f"{dst.host}/seen",
                                              "type": "namespace"}]}))
    return plan, [f"{dst.host}/seen/{s}:v1" for s in ("big", "shared-a", "multi")]


def test_sync_on_a_terminal_shows_images_blobs_totals_and_a_summary(
    http_registry: RegistryServer, dst: RegistryServer, seed: Any, tmp_path: Path,
) -> None:
    plan, images = _slow_plan(tmp_path, http_registry, dst, seed)

    def busy(screen: list[str]) -> bool:
        text = "\n".join(screen)
        return ("copying" in text and re.search(r"ETA \d", text) is not None and " blob " in text
                and f"{dst.host}/seen/big:v1" in text)

    status, final, during = run_on_a_terminal(["sync", str(plan), "--limit-rate", "1M"], watch=busy)
    assert status == 0, "\n".join(final)
    # During the run: a row per image in flight (state, name, bytes, rate, bar), the largest blobs
    # with their bars, and the totals with a rate and an ETA.
    assert during is not None, "never saw the live display:\n" + "\n".join(final)
    row = next(line for line in during if f"{dst.host}/seen/big:v1" in line)
    assert row.lstrip().startswith("copying") and re.search(r"[\d.]+ [kMG]?B/[\d.]+ [kMG]?B", row)
    assert re.search(r"[\d.]+ [kMG]?B/s", row) and "━" in row
    blob = next(line for line in during if line.lstrip().startswith("blob "))
    assert re.search(r"blob\s+[0-9a-f]{12} [\d.]+ [kMG]?B\s+\S*━.*\d+%", blob), blob
    totals = next(line for line in during if "ETA" in line)
    assert re.search(r"images \d+ done, \d+ in flight, 0 failed · .* · [\d.]+ [kMG]?B/s · ETA \d+:\d\d:\d\d · "
                     r"elapsed \d+:\d\d:\d\d", totals), totals
    # After: the display is gone; the outcome of every image and the totals stay, then the result.
    text = "\n".join(final)
    assert "copying" not in text and "ETA" not in text
    for image in images:
        assert re.search(rf"✓ copied\s+{re.escape(image)}\s+[\d.]+ [kMG]?B in [\d.]+ s", text), text
    assert re.search(r"done: 3 copied; [\d.]+ MB sent in \d+:\d\d:\d\d \([\d.]+ [kMG]?B/s\)", text), text
    assert "3 copied, 0 up to date" in text


def test_logs_print_above_the_display_intact(http_registry: RegistryServer, dst: RegistryServer, seed: Any,
                                             tmp_path: Path) -> None:
    """``-v`` while the display runs: each log line is whole on the screen, never cut into by a redraw."""
    seed(http_registry, "big", "tty/big", "v1")
    status, final, _ = run_on_a_terminal([
        "copy", f"{http_registry.host}/tty/big:v1", f"{dst.host}/logged/big:v1", "-v", "--limit-rate", "2M",
        "--insecure-registry", http_registry.host, "--insecure-registry", dst.host])
    assert status == 0, "\n".join(final)
    logs = [line for line in final if " INFO regcopy." in line]
    assert len(logs) >= 2, "\n".join(final)  # the probes of both hosts at least
    for line in logs:
        assert LOG_LINE.match(line), f"a log line was garbled: {line!r}"
    assert any("using http" in line for line in logs)
    summary = next(i for i, line in enumerate(final) if line.startswith("✓ copied"))
    assert all(final.index(line) < summary for line in logs)  # logs above, the summary after
    assert any(line.startswith("copied ") and "logged/big:v1" in line for line in final)  # the result on stdout
