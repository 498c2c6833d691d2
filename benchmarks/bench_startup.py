"""Start-up benchmark: ``regcopy --version``, ``--help`` and ``VERB --help`` side by side with skopeo.

For each command: the median wall time of ``--runs`` runs (after one warm-up run, so the page cache
holds the files), and for regcopy the top ``python -X importtime`` entries of one run (cumulative
microseconds of each top-level import) and which heavy modules got imported at all. regcopy runs
from the console script of ``.venv`` with this checkout's ``src`` first on ``PYTHONPATH``; its
bytecode is compiled first (``compileall``, as ``pip install`` does), so a shell with
``PYTHONDONTWRITEBYTECODE`` set does not measure the compiler. Results go to
``benchmarks/results/startup.json`` and a table on stdout.

    flock /work/bench.lock .venv/bin/python benchmarks/bench_startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
HEAVY = ("aiohttp", "rich", "yaml", "anyio", "boto3", "dramatiq", "redis")

COMMANDS: dict[str, list[str]] = {
    "regcopy --version": ["--version"],
    "regcopy --help": ["--help"],
    "regcopy copy --help": ["copy", "--help"],
    "regcopy sync --help": ["sync", "--help"],
    "skopeo --version": ["--version"],
    "skopeo --help": ["--help"],
}


def regcopy_env() -> dict[str, str]:
    """The environment regcopy runs in: this checkout's sources first."""
    src = str(ROOT / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}


def compile_sources() -> None:
    """Write the bytecode of this checkout's package, as an installed package has it."""
    compileall.compile_dir(str(ROOT / "src" / "regcopy"), quiet=1, force=False)


def argv(name: str, args: list[str]) -> list[str]:
    if name.startswith("skopeo"):
        return ["skopeo", *args]
    return [str(ROOT / ".venv" / "bin" / "regcopy"), *args]


def wall(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def importtime(args: list[str], env: dict[str, str], top: int) -> dict[str, Any]:
    """One ``-X importtime`` run: total, the largest top-level imports, the heavy modules loaded."""
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-X", "importtime", "-m", "regcopy", *args],
                          env=env, capture_output=True, text=True, check=True)
    entries: list[tuple[str, int, int]] = []
    for line in proc.stderr.splitlines():  # "import time: SELF | CUMULATIVE | <2 spaces per level>NAME"
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        _, cumulative, raw = line.removeprefix("import time:").split("|")
        name = raw[1:]
        entries.append((name.strip(), int(cumulative), (len(name) - len(name.lstrip(" "))) // 2))
    top_level = sorted(((n, c) for n, c, d in entries if d == 0), key=lambda e: -e[1])
    loaded = {n for n, _, _ in entries}
    return {
        "total_ms": round(sum(c for _, c in top_level) / 1000, 1),
        "modules": len(entries),
        "top": [{"module": n, "cumulative_ms": round(c / 1000, 1)} for n, c in top_level[:top]],
        "heavy_loaded": sorted(h for h in HEAVY if h in loaded),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--top", type=int, default=8, help="importtime entries kept per command")
    parser.add_argument("--commit", default="", help="the commit measured (recorded in the results)")
    args = parser.parse_args()
    compile_sources()
    env = regcopy_env()
    load = Path("/proc/loadavg").read_text().split()[:3]
    rows: list[dict[str, Any]] = []
    for name, cmd_args in COMMANDS.items():
        times = wall(argv(name, cmd_args), env, args.runs)
        row: dict[str, Any] = {"command": name, "median_s": round(statistics.median(times), 4),
                               "min_s": round(min(times), 4), "max_s": round(max(times), 4), "runs": len(times)}
        if name.startswith("regcopy"):
            row["importtime"] = importtime(cmd_args, env, args.top)
        rows.append(row)
        print(f"{name:24} median {row['median_s']:.3f}s  min {row['min_s']:.3f}s  max {row['max_s']:.3f}s", flush=True)
    for row in rows:
        if "importtime" in row:
            it = row["importtime"]
            tops = ", ".join(f"{t['module']} {t['cumulative_ms']}" for t in it["top"][:5])
            print(f"{row['command']}: imports {it['total_ms']} ms, {it['modules']} modules, heavy "
                  f"{it['heavy_loaded'] or 'none'}; top: {tops}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "startup.json"
    out.write_text(json.dumps({"args": vars(args), "loadavg_before": load, "python": sys.version.split()[0],
                               "commands": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
