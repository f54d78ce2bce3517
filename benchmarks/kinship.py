"""Benchmark: the default `python -m analyses.kinship` run (issue 2's figure of merit).

Measures, on this machine:
1. the whole default command (all three priors, event study, prior and posterior predictive
   checks, figures) as a subprocess, twice: ``cold`` with empty PyTensor/numba caches (a fresh
   machine: every function compiled from scratch) and ``warm`` (caches filled by the cold run);
2. its parts, with the runner's settings (cells frozen as constants, prior hyper-parameters
   mutable, 4 chains x 1000 draws after 500 tuning draws): compile of the main model, sampling
   per prior, compile and sampling of the cohort-by-period event-study model;
and checks the targets: whole run <= 90 s, R-hat <= 1.01, bulk ESS >= 400 for the ATT,
0 divergences. Results are printed and written to benchmarks/results/kinship.json.

    uv run python benchmarks/kinship.py            # both
    uv run python benchmarks/kinship.py --parts    # parts only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def whole_run(cold: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kinship"
        env = dict(os.environ)
        if cold:   # an empty compile cache: what a fresh machine pays on its first run
            env["PYTENSOR_FLAGS"] = f"compiledir={Path(tmp) / 'pytensor-cache'}"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "analyses.kinship", "--out", str(out), "--quiet"],
                              cwd=ROOT, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise SystemExit(proc.stderr)
        record = json.loads((out / "statements.json").read_text())
        sizes = {f.name: f.stat().st_size for f in out.iterdir() if f.is_file()}
    diag = record["diagnostics"]
    att = [next(v for v in d["variables"] if v["variable"] == "att") for k, d in diag.items() if k != "event study"]
    return {
        "wall_s": round(wall, 1),
        "max_rhat": max(v["rhat"] for d in diag.values() for v in d["variables"]),
        "min_att_ess_bulk": min(a["ess_bulk"] for a in att),
        "divergences": sum(d["divergences"] for d in diag.values()),
        "diagnostics_ok": record["diagnostics_ok"],
        "output_mb": round(sum(sizes.values()) / 2**20, 1),
        "largest_files_mb": {k: round(v / 2**20, 1) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]},
    }


def parts() -> dict:
    from dataclasses import replace

    from analyses.sofs_did import canonical
    from data.did_input import cells_from_frame
    from data.synthetic import kinship_twin
    from models.did.design import DesignSpec, did_design
    from models.did.likelihoods import get_likelihood
    from models.did.model import PRIOR_DATA, SOFS_MODEL_SPEC, build_did_model, prior_data
    from models.did.priors import effect_priors
    from models.sampling import CompiledSampler

    cells = cells_from_frame(kinship_twin().children, "kinship", synthetic=True)
    spec = DesignSpec("binomial", effects="unit", base="all", unit_trends=True, covariates=cells.covariates)
    design = did_design(canonical(cells.cells), spec)
    priors = effect_priors(get_likelihood("binomial"), 0.62, direction=1, outcome_label="kinship care")
    t0 = time.perf_counter()
    sampler = CompiledSampler(build_did_model(design, priors["neutral"], spec=SOFS_MODEL_SPEC).model, mutable=PRIOR_DATA)
    out = {"cells": len(design.cells), "children": cells.n_children, "compile_main_s": round(time.perf_counter() - t0, 1)}
    for i, (name, prior) in enumerate(priors.items()):
        t0 = time.perf_counter()
        sampler.sample(prior_data(prior), draws=1000, tune=500, chains=4, seed=i)
        out[f"sample_{name}_s"] = round(time.perf_counter() - t0, 1)
    ev = did_design(canonical(cells.cells), replace(spec, effects="cohort_period", base="last", unit_trends=False,
                                                    exclude_settling=False))
    t0 = time.perf_counter()
    es = CompiledSampler(build_did_model(ev, priors["neutral"], spec=SOFS_MODEL_SPEC).model, mutable=())
    out["compile_event_study_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    es.sample(draws=1000, tune=500, chains=4, seed=9)
    out["sample_event_study_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--parts", action="store_true", help="time the parts only")
    args = ap.parse_args()
    result = {"cpu_count": os.cpu_count(), "load_avg_before": os.getloadavg()}
    result["parts"] = parts()
    if not args.parts:
        for kind in ("cold", "warm"):
            w = result[f"whole_run_{kind}"] = whole_run(cold=kind == "cold")
            result[f"targets_met_{kind}"] = bool(w["wall_s"] <= 90 and w["output_mb"] <= 50 and w["max_rhat"] <= 1.01
                                                 and w["min_att_ess_bulk"] >= 400 and w["divergences"] == 0)
    print(json.dumps(result, indent=2))
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(exist_ok=True)
    (dest / "kinship.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
