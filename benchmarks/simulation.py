"""The full simulation studies, timed (the figures of merit of the simulation issue).

    uv run python benchmarks/simulation.py                       # every part, in this order:
    uv run python benchmarks/simulation.py --parts recovery,sbc  # or some of them

Parts (each runs `python -m analyses.simulation ...` as a user would, into its own study
folder under --root, so an interrupted benchmark resumes when run again):

- ``recovery``     200 replicates of the kinship-sized model, 2 Dask workers: wall time (target
                   <= 20 min on 2 cores) and the ATT's 90% coverage (target 0.86-0.94).
- ``sbc``          200 SBC replicates: uniformity of the ranks (not rejected at 1%).
- ``few-las-freq`` frequentist DiD only (LPM with LA-clustered SE, t(G-1), wild cluster
                   bootstraps) under the null, 2/4/9 treated LAs, sd_tau 0 and 0.6: type I error.
- ``speedup``      the same 24 recovery replicates with 1 worker (2 threads) and 2 workers
                   (1 thread each): the speed-up from 1 to 2 Dask workers.
- ``few-las``      Bayesian and frequentist DiD on the same replicates: null and published effect,
                   2/4/9 treated LAs, sd_tau 0 and 0.6.
- ``words``        calibrated words and a new LA: SBC at 9, 4 and 2 treated LAs (200 replicates
                   each): at every verbal level the share of true statements against the stated
                   P, and the new-LA 90% predictive coverage (target 0.86-0.94); then, under a
                   null effect (Bayes and the report's LPM on the same replicates, 200 per
                   cell), how often "very likely reduced" is said beside p < 0.05.

Prints one line per part and keeps a JSON record (for the README) in --root/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("recovery", "sbc", "few-las-freq", "speedup", "few-las", "words")


def run_study(args: list[str], log) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "analyses.simulation", *args]
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - t0
    print(proc.stdout, flush=True)
    return wall, proc.returncode


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary" / "summary.json").read_text())


def last_run(folder: Path) -> dict:
    lines = (folder / "runs.jsonl").read_text().splitlines() if (folder / "runs.jsonl").exists() else []
    return json.loads(lines[-1]) if lines else {}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {PARTS}")
    p.add_argument("--root", type=Path, default=ROOT / "results" / "benchmarks" / "simulation")
    p.add_argument("--replicates", type=int, default=200, help="recovery and SBC replicates (default 200)")
    p.add_argument("--freq-replicates", type=int, default=200, help="few-las-freq replicates per scenario")
    p.add_argument("--few-las-replicates", type=int, default=50, help="few-las (Bayes + freq) per scenario")
    p.add_argument("--speedup-replicates", type=int, default=24)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    bad = set(parts) - set(PARTS)
    if bad:
        p.error(f"unknown parts {sorted(bad)}; choose from {PARTS}")
    args.root.mkdir(parents=True, exist_ok=True)
    record_path = args.root / "benchmark.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    record.update({"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()})
    log = (args.root / "benchmark_stderr.log").open("a")
    w = ["--workers", str(args.workers), "--quiet"]

    def save(name: str, value: dict) -> None:
        record[name] = value
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"== {name}: {json.dumps(value)}", flush=True)

    for part in parts:
        load = os.getloadavg()[0]
        if part in ("recovery", "sbc"):
            out = args.root / part
            wall, rc = run_study([part, "--replicates", str(args.replicates), "--out", str(out), *w], log)
            s = summary(out)
            res = {"replicates": s["replicates_done"], "wall_s_this_invocation": round(wall, 1),
                   "wall_s_dask_this_invocation": round(last_run(out).get("wall_s_dask", 0), 1),
                   "ran_this_invocation": last_run(out).get("ran"), "load_avg_1min_at_start": load,
                   "checks": s["checks"], "diagnostics": s["diagnostics"], "exit": rc}
            if part == "recovery":
                res["table"] = s["recovery"]
            else:
                res["table"] = s.get("sbc")
            save(part, res)
        elif part == "few-las-freq":
            out = args.root / part
            wall, rc = run_study(["few-las", "--frequentist-only", "--effects", "null", "--treated", "2,4,9",
                                  "--sd-tau", "0,0.6", "--replicates", str(args.freq_replicates),
                                  "--out", str(out), *w], log)
            s = summary(out)
            save(part, {"replicates": s["replicates_done"], "wall_s_this_invocation": round(wall, 1), "exit": rc,
                        "load_avg_1min_at_start": load, "rejection_rates": s.get("rejection_rates")})
        elif part == "speedup":
            res = {"replicates": args.speedup_replicates, "load_avg_1min_at_start": load}
            for n in (1, 2):
                out = args.root / f"speedup_{n}_workers"
                if out.exists():
                    shutil.rmtree(out)    # a timing needs a fresh study folder
                wall, rc = run_study(["recovery", "--replicates", str(args.speedup_replicates), "--workers", str(n),
                                      "--out", str(out), "--quiet"], log)
                reps = [json.loads(f.read_text()) for f in (out / "replicates").glob("*/rep_*.json")]
                compile_s = max(r["timing"].get("compile_s", 0) for r in reps)
                dask = last_run(out).get("wall_s_dask", wall)
                res[f"{n}_workers"] = {"wall_s": round(wall, 1), "wall_s_dask": round(dask, 1),
                                       "max_compile_s": round(compile_s, 1),
                                       "steady_s_per_replicate": round((dask - compile_s) / args.speedup_replicates, 2),
                                       "exit": rc}
            one, two = res["1_workers"], res["2_workers"]
            res["speedup_wall"] = round(one["wall_s"] / two["wall_s"], 2)
            res["speedup_steady"] = round(one["steady_s_per_replicate"] / max(two["steady_s_per_replicate"], 1e-9), 2)
            save(part, res)
        elif part == "few-las":
            out = args.root / part
            wall, rc = run_study(["few-las", "--treated", "2,4,9", "--sd-tau", "0,0.6", "--effects", "null,published",
                                  "--replicates", str(args.few_las_replicates), "--out", str(out), *w], log)
            s = summary(out)
            save(part, {"replicates": s["replicates_done"], "wall_s_this_invocation": round(wall, 1), "exit": rc,
                        "load_avg_1min_at_start": load, "rejection_rates": s.get("rejection_rates"),
                        "coverage_95": s.get("coverage_95"), "diagnostics": s["diagnostics"]})
        elif part == "words":
            out = args.root / "words_sbc"
            wall, rc = run_study(["sbc", "--treated", "9,4,2", "--replicates", str(args.replicates), "--out", str(out),
                                  *w], log)
            s = summary(out)
            out_null = args.root / "words_null"
            wall_null, rc_null = run_study(["few-las", "--effects", "null", "--treated", "2,4,9", "--sd-tau", "0,0.6",
                                            "--n-boot", "199", "--replicates", str(args.replicates),
                                            "--out", str(out_null), *w], log)
            s_null = summary(out_null)
            save(part, {"replicates_sbc": s["replicates_done"], "replicates_null": s_null["replicates_done"],
                        "wall_s_sbc": round(wall, 1), "wall_s_null": round(wall_null, 1), "exit": [rc, rc_null],
                        "load_avg_1min_at_start": load, "checks": s["checks"],
                        "verbal_calibration": s.get("verbal_calibration"), "new_la_coverage": s.get("new_la_coverage"),
                        "null_statements": s_null.get("null_statements"), "diagnostics": s["diagnostics"]})
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
