"""``regcopy.interrupt``: one mechanism for SIGINT and SIGTERM. Signals are sent for real, to a child
Python process (a signal to the test process itself would stop pytest)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import anyio
import anyio.lowlevel
import pytest

from regcopy.errors import StoreError
from regcopy.interrupt import Interrupted, exit_status, run


def child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_cancels_the_run_which_unwinds_then_raises_interrupted(sig: int) -> None:
    out = child(f"""
        import os, signal, anyio
        from regcopy.interrupt import Interrupted, run
        before = {{s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}}
        async def work():
            try:
                os.kill(os.getpid(), {int(sig)})
                await anyio.sleep(30)
            finally:
                with anyio.CancelScope(shield=True):  # cleanup still runs, shielded
                    await anyio.sleep(0.05)
                    print("cleaned up", flush=True)
        try:
            run(work)
        except Interrupted as exc:
            print("status", exc.code)
        print("handlers restored", before == {{s: signal.getsignal(s) for s in before}})
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["cleaned up", f"status {128 + sig}", "handlers restored True"]


def test_outside_the_loop_a_signal_raises_interrupted_and_a_second_one_exits_at_once() -> None:
    out = child("""
        import os, signal, time
        from regcopy.interrupt import Interrupted, handle_signals
        with handle_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            except Interrupted as exc:
                print("status", exc.code, flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # the second signal: no cleanup is waited for
            time.sleep(30)
        print("not reached")
    """)
    assert out.stdout == "status 143\n"
    assert out.returncode == 143 and "interrupted again" in out.stderr and "Traceback" not in out.stderr


def test_a_second_signal_while_the_run_cleans_up_exits_with_the_first_ones_status() -> None:
    out = child("""
        import os, signal, anyio
        from regcopy.interrupt import run
        async def work():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                await anyio.sleep(30)
            finally:
                with anyio.CancelScope(shield=True):
                    os.kill(os.getpid(), signal.SIGINT)
                    await anyio.sleep(30)  # a cleanup that would hang
        run(work)
    """)
    assert out.returncode == exit_status(signal.SIGTERM) == 143
    assert "interrupted again" in out.stderr and "Traceback" not in out.stderr


def test_without_a_signal_the_result_or_the_error_comes_out_as_is() -> None:
    async def ok() -> str:
        await anyio.lowlevel.checkpoint()
        return "done"

    async def fails() -> None:
        raise StoreError("broken")

    assert run(ok) == "done"
    with pytest.raises(StoreError, match="broken"):  # not wrapped in an exception group
        run(fails)
    assert issubclass(Interrupted, BaseException) and not issubclass(Interrupted, (Exception, KeyboardInterrupt))
