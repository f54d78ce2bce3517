"""Benchmark: the re-referral DiD on 1,000,000 synthetic NFA referrals (issue 3's figure of merit).

30 LAs (15 pilots, 15 comparators) over 8 financial years, referral-level records from
:func:`data.synthetic.simulate_referral_study` (repeated children, unreliable NFA coding in
three LAs). For each size (100,000 and 1,000,000 referrals), in a fresh subprocess so that peak
memory is that run's own:

1. simulate the referrals (not part of the model's cost; reported for completeness);
2. validate and aggregate them into LA x year x age band x sex cells (``cells_from_frame``,
   with the first-record variant the analysis also builds);
3. compile the hierarchical DiD (binomial, LA trends, the re-referral analysis's covariates);
4. sample 4 chains x 1000 draws (1000 tuning) under the neutral prior.

Reported: wall time of each step, peak resident memory of the process, the number of cells,
diagnostics of the fit, and the 1,000,000 / 100,000 ratio of the model's cost (aggregate +
compile + sample), which should stay near 1 because the model sees cells, not children.
Targets: <= 180 s wall and <= 4 GB peak memory at 1,000,000 referrals on 2 cores.

    uv run python benchmarks/did_rereferral.py                 # both sizes
    uv run python benchmarks/did_rereferral.py --sizes 100000  # one size

Results are printed and written to benchmarks/results/did_rereferral.json. Run it once: it
takes a few minutes of both cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_PILOT = N_COMPARATOR = 15
YEARS = tuple(range(2011, 2019))


def config(n_referrals: int):
    from data.synthetic import REFERRAL_BASE, ReferralStudyConfig, _la_design  # noqa: F401
    from dataclasses import replace

    import numpy as np

    adoption = tuple(int(y) for y in np.resize([2013, 2014, 2014, 2015, 2016], N_PILOT))
    settling = tuple(int(s) for s in np.resize([1, 2, 1, 1], N_PILOT))
    mean_size = float(np.exp(REFERRAL_BASE.la_size_sd ** 2 / 2))
    base = replace(REFERRAL_BASE, n_pilot=N_PILOT, n_comparator=N_COMPARATOR, years=YEARS, adoption_years=adoption,
                   settling_years=settling,
                   children_per_la_year=n_referrals / (N_PILOT + N_COMPARATOR) / len(YEARS) / mean_size,
                   similar_practice_las=("Comparator 3", "Comparator 8"))
    return ReferralStudyConfig(base=base, unreliable_las=("Pilot 3", "Comparator 2", "Comparator 5"),
                               unreliable_until=2012)


def one_size(n_referrals: int, seed: int = 1) -> dict:
    """Run the four steps for one size in this process and report times and peak memory."""
    from analyses.rereferral import SPEC
    from data.did_input import cells_from_frame, first_record_mask
    from data.synthetic import simulate_referral_study
    from models.diagnostics import check_sampling
    from analyses.sofs_did import canonical
    from models.did.design import DesignSpec, did_design
    from models.did.likelihoods import get_likelihood
    from models.did.model import SOFS_MODEL_SPEC, build_did_model, model_data
    from models.did.priors import effect_priors
    from models.sampling import CompiledSampler

    out: dict = {"target_referrals": n_referrals}
    t0 = time.perf_counter()
    study = simulate_referral_study(config(n_referrals), seed=seed)
    out["simulate_s"] = round(time.perf_counter() - t0, 2)
    out["referrals"] = int(len(study.children))
    out["las"] = int(study.children["la"].nunique())
    out["years"] = int(study.children["year"].nunique())

    t0 = time.perf_counter()
    cells = cells_from_frame(study.children, SPEC.column, covariates=SPEC.covariates,
                             variants={"first_record": first_record_mask})
    design = did_design(canonical(cells.cells), DesignSpec("binomial", effects="unit", base="all", unit_trends=True,
                                                           covariates=cells.covariates))
    analysis = design.cells
    out["aggregate_s"] = round(time.perf_counter() - t0, 2)
    out["cells"] = int(len(analysis))
    del study

    pre = analysis[analysis.phase == "pre"]
    prior = effect_priors(get_likelihood("binomial"), float(pre["y"].sum() / pre["n"].sum()), direction=-1)["neutral"]
    t0 = time.perf_counter()
    dm = build_did_model(design, prior, spec=SOFS_MODEL_SPEC)
    sampler = CompiledSampler(dm.model)
    out["compile_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    idata = sampler.sample(model_data(dm, prior=prior), draws=1000, tune=1000, chains=4, seed=seed)
    out["sample_s"] = round(time.perf_counter() - t0, 2)
    out["model_cost_s"] = round(out["aggregate_s"] + out["compile_s"] + out["sample_s"], 2)
    out["wall_s"] = round(out["simulate_s"] + out["model_cost_s"], 2)
    from models.did.fit import diagnostic_vars

    diag = check_sampling(idata, diagnostic_vars(dm, idata["posterior"]))
    out["att_pp_mean"] = round(float(idata["posterior"]["att"].mean()), 2)
    out["max_rhat"] = round(float(diag.table["rhat"].max()), 4)
    out["min_ess_bulk"] = round(float(diag.table["ess_bulk"].min()), 0)
    out["divergences"] = diag.divergences
    steps = idata["sample_stats"]["n_steps"].values
    out["leapfrog_steps_per_draw"] = round(float(steps.mean()), 1)
    out["ms_per_gradient"] = round(1000 * out["sample_s"] / max(float(steps.sum()) * 2, 1), 3)   # x2: tuning draws
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # Linux: KiB
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of referrals")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)   # internal: run one size here
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "did_rereferral.json")
    args = p.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one_size(args.one)))
        return 0
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    record = {"sizes": results, "cpu_count": os.cpu_count(), "load_average_at_end": list(os.getloadavg())}
    by = {r["target_referrals"]: r for r in results}
    if 100_000 in by and 1_000_000 in by:
        small, large = by[100_000], by[1_000_000]
        record["model_cost_ratio_1m_vs_100k"] = round(large["model_cost_s"] / small["model_cost_s"], 2)
        record["sample_ratio_1m_vs_100k"] = round(large["sample_s"] / small["sample_s"], 2)
        record["cells_ratio_1m_vs_100k"] = round(large["cells"] / small["cells"], 3)
        record["targets"] = {"wall_s_le_180": large["wall_s"] <= 180, "peak_memory_le_4gb": large["peak_rss_mb"] <= 4096}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "sizes"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
