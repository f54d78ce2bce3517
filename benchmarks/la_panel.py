"""Benchmark of the LA-panel re-analysis: the default run on the real referrals panel.

Target (issue 10): `python -m analyses.la_panel` (re-referrals, all three named priors, 4 chains x
1000 draws, event study, figures) completes in <= 2 minutes on 2 cores, with R-hat <= 1.01 and
no divergent transitions.

    uv run python benchmarks/la_panel.py                   # the default run, timed
    uv run python benchmarks/la_panel.py --outcome turnover --record results/bench_turnover.json

Prints one line per measure and a JSON record at the end. Wall time depends on what else the
machine is doing, so the record carries the load average and the CPU time the run used.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outcome", default="rereferral")
    p.add_argument("--record", type=Path, default=None, help="also write the JSON record here")
    p.add_argument("extra", nargs="*", help="further arguments for the analysis (after --)")
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "analyses.la_panel", "--outcome", args.outcome, "--out", str(out), "--quiet",
               *args.extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 1):
            print(proc.stdout, proc.stderr, sep="\n")
            return proc.returncode
        rec = json.loads((out / "statements.json").read_text())
    diag = rec["diagnostics"]
    max_rhat = max(max(v["rhat"] for v in d["variables"]) for d in diag.values())
    min_ess = min(min(v["ess_bulk"] for v in d["variables"]) for d in diag.values())
    divergences = sum(d["divergences"] for d in diag.values())
    record = {
        "command": " ".join(["python -m analyses.la_panel", "--outcome", args.outcome, *args.extra]),
        "exit_code": proc.returncode, "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "target_seconds": 120, "meets_time_target": wall <= 120,
        "max_rhat": round(max_rhat, 4), "min_ess_bulk": round(min_ess), "divergences": divergences,
        "diagnostics_ok": rec["diagnostics_ok"], "timings_seconds": rec["timings_seconds"],
        "n_cells": rec["design"]["n_cells"], "pilots": len(rec["design"]["pilots"]),
        "comparators": len(rec["design"]["comparators"]), "headline": rec["headline"],
        "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
    }
    for key in ("wall_seconds", "cpu_seconds", "max_rhat", "min_ess_bulk", "divergences"):
        print(f"{key:<20s} {record[key]}")
    print(json.dumps(record, indent=2))
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
