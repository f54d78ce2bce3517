"""Benchmark: the whole ``python -m analyses.published`` run, timed end to end.

The issue's figure of merit is a complete run in at most 60 s on 2 cores. This script runs the
command once (as a user would, in a fresh interpreter, default settings), records wall-clock
and CPU time, the per-stage timings the analysis writes into its provenance, the machine's
core count and load, and writes them to ``results/benchmarks/published.json``.

    uv run python benchmarks/published.py            # one run
    uv run python benchmarks/published.py --runs 2   # a second, warm-cache run as well

The first run after installing may include numba's cold compilation; later runs re-use its
on-disk cache, so report both when you can.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 60.0


def run_once(out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analyses.published", "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stages = {}
    stmt = out / "statements.json"
    if proc.returncode == 0 and stmt.exists():
        stages = json.loads(stmt.read_text())["provenance"].get("timings", {})
    return {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_user_s": round(after.ru_utime - before.ru_utime, 2),
        "cpu_system_s": round(after.ru_stime - before.ru_stime, 2),
        "load_average_at_start": [round(v, 2) for v in load],
        "stages_s": stages,
        "within_budget": proc.returncode == 0 and wall <= BUDGET_S,
        "stderr_tail": proc.stderr[-600:] if proc.returncode else "",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1, help="number of end-to-end runs (default 1)")
    p.add_argument("--record", type=Path, default=ROOT / "results" / "benchmarks" / "published.json")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            r = run_once(Path(tmp) / f"run{i}")
            runs.append(r)
            print(f"run {i + 1}: exit {r['exit_code']}, wall {r['wall_s']:.1f} s, CPU {r['cpu_user_s']:.1f} s user, "
                  f"load {r['load_average_at_start'][0]:.2f}; stages {r['stages_s']}", flush=True)
    record = {
        "benchmark": "python -m analyses.published (defaults: 4 chains x 1000 draws, nutpie)",
        "budget_s": BUDGET_S,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "runs": runs,
    }
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {args.record}")
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
