"""The command line ends without the interpreter's collections over its imports (``regcopy.cli.main``
freezes the objects left when the verb is done): checked in a fresh interpreter, after a verb that
succeeded and after one that failed, with what was printed intact."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"\\nfrozen={gc.get_freeze_count()}\\n"))
from regcopy.cli import main
sys.argv = ["regcopy", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(("args", "code", "shown"), [
    (["--version"], 0, "regcopy, version"),
    (["sync", "--src", "yaml"], 2, "Error"),  # a usage error exits through the same path
])
def test_main_freezes_what_is_left_before_the_teardown(args: list[str], code: int, shown: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert shown in proc.stdout + proc.stderr
    frozen = int(proc.stderr.rsplit("frozen=", 1)[1].split()[0])
    assert frozen > 1000  # every module object the run imported is in the permanent generation
