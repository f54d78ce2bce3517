"""Benchmark: ``python -m analyses.did`` end to end on R did's reference data (mpdta).

The figure of merit (issue: one DiD engine): the whole command on 500 counties x 5 years,
with its defaults (three named priors, posterior and prior predictive checks, frequentist
cross-check, figures), at most 60 s on 2 cores; and the validation numbers beside did's
(simple ATT -0.0400; dynamic e = 0..3 -0.0199, -0.0510, -0.1373, -0.1008; imputation
-0.0477 with ``--base all --control notyet``). Written to benchmarks/results/did_mpdta.json.

    uv run python benchmarks/did_mpdta.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MPDTA = ROOT.parent / "shared" / "validation" / "mpdta" / "mpdta.csv"
ARGS = ["--unit", "countyreal", "--time", "year", "--cohort", "first.treat", "--outcome", "lemp", "--likelihood",
        "normal", "--label", "log teen employment", "--units", "log points", "--target", "-0.05", "--quiet"]
DID = {"simple": -0.0400, "dynamic": {0: -0.0199, 1: -0.0510, 2: -0.1373, 3: -0.1008}, "imputation": -0.0477}


def run(extra: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "did"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "analyses.did", "--data", str(MPDTA), "--out", str(out), *ARGS,
                               *extra], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise SystemExit(proc.stderr)
        return wall, json.loads((out / "statements.json").read_text())


def main() -> None:
    wall, rec = run([])
    neutral = next(r for r in rec["results"] if r["prior"] == "neutral")
    agg = neutral["aggregates"]
    dyn = {r["event_time"]: r["mean"] for r in agg["dynamic"]["by"]}
    wall_all, rec_all = run(["--base", "all", "--control", "notyet", "--prior", "neutral"])
    imputation = rec_all["results"][0]["aggregates"]["simple"]["mean"]
    result = {
        "cpu_count": os.cpu_count(), "wall_s": round(wall, 1), "wall_all_base_neutral_only_s": round(wall_all, 1),
        "simple": round(agg["simple"]["mean"], 4), "simple_sd": round(agg["simple"]["sd"], 4),
        "dynamic": {e: round(dyn[e], 4) for e in DID["dynamic"]}, "imputation": round(imputation, 4),
        "frequentist": [{k: f[k] for k in ("label", "estimate", "se")} for f in rec["frequentist"]],
        "diagnostics_ok": rec["diagnostics_ok"] and rec_all["diagnostics_ok"],
        "by_prior_simple": {r["prior"]: round(r["aggregates"]["simple"]["mean"], 4) for r in rec["results"]},
        "did": DID,
    }
    result["targets_met"] = bool(wall <= 60 and abs(result["simple"] - DID["simple"]) <= 0.003
                                 and all(abs(result["dynamic"][e] - v) <= 0.006 for e, v in DID["dynamic"].items())
                                 and abs(imputation - DID["imputation"]) <= 0.003 and result["diagnostics_ok"])
    print(json.dumps(result, indent=2))
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(exist_ok=True)
    (dest / "did_mpdta.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
