"""Benchmark of Table 7 re-analysed: every shipped indicator (separate fits) plus the joint model.

Target (issue 20): `python -m analyses.table7` with every shipped indicator, all three named
priors (neutral by NUTS, the others by PSIS reweighting), the command's sampler defaults (4 chains
x 1000 draws after 500 tuning; the joint model twice the draws), and the joint model, in <= 5
minutes on 2 cores, with every diagnostic passing.

    uv run python benchmarks/table7.py                       # writes benchmarks/results/table7.json

Records wall and CPU time, the load average, each indicator's headline (neutral prior) and its
diagnostics, the joint model's P(at least k indicators improved), and the placebo step's
statements and diagnostics verdicts.
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
sys.path.insert(0, str(ROOT))

from analyses.table7 import placebo_verdicts  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--record", type=Path, default=ROOT / "benchmarks" / "results" / "table7.json")
    p.add_argument("extra", nargs="*", help="further arguments for the analysis (after --)")
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "analyses.table7", "--out", str(out), "--quiet", *args.extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        doc = json.loads((out / "statements.json").read_text())
    rows = [r for r in doc["results"] if r["prior"] == doc["reference_prior"]]
    every_ok = all(r["diagnostics_ok"] for r in doc["results"])
    joint = doc.get("joint")
    record = {
        "benchmark": "table7", "command": " ".join(cmd[1:3] + args.extra), "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "target_seconds": 300,
        "target_met_wall": wall <= 300, "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(),
        "python": platform.python_version(), "every_diagnostic_passed": every_ok,
        "joint_diagnostics_ok": None if joint is None else joint["diagnostics"]["ok"],
        "joint_diagnostics_problems": None if joint is None else joint["diagnostics"]["problems"],
        "joint_sampling": None if joint is None else {"sampler": joint.get("sampler"), "note": joint.get("sampling_note")},
        "headlines": doc["headlines"],
        "per_indicator": [{k: r[k] for k in ("indicator", "units", "mean", "eti95_low", "eti95_high",
                                              "p_programme_direction", "p_in_rope", "n_pilots", "n_comparators",
                                              "diagnostics_ok", "max_rhat", "min_ess_bulk", "divergences")}
                          for r in rows],
        "seconds_per_indicator": {k: v["seconds"] for k, v in doc["indicators"].items()},
        "joint_p_at_least_k_improved": None if joint is None else joint["p_at_least_k_improved"],
        "joint_check": None if joint is None else joint["check"],
        "placebo_diagnostics": {name: placebo_verdicts(pl) for name, pl in doc.get("placebo", {}).items()},
        "placebo_statements": {name: {"p_pilots_beyond_placebo_group": pl["space_time"]["p_pilots_beyond_placebo_group"],
                                      "time_placebo": pl["space_time"]["time_placebo"],
                                      "clean": pl["clean"]["effect"], "contamination": pl["contamination"]["effect"]}
                               for name, pl in doc.get("placebo", {}).items()},
    }
    for k, v in record.items():
        if k not in ("headlines", "per_indicator", "joint_check", "placebo_statements"):
            print(f"{k}: {v}")
    for h in record["headlines"].values():
        print(" ", h)
    args.record.parent.mkdir(parents=True, exist_ok=True)
    args.record.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
