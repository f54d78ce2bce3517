"""Benchmark: graded response model fit times (issue 4's figures of merit).

Measures, on this machine, the multidimensional GRM with the latent regression (4 correlated
subscales, SofS arm, competence, site and social-worker effects, 5 answer categories):

1. ``small``: 60 persons x 20 items (the contrast study's size) - compile, then sampling with
   the project defaults (4 chains x 1000 draws after 1000 tuning); target <= 60 s;
2. ``large``: 5,000 persons x 20 items (100,000 answers), target <= 5 minutes; 4 chains of
   ``--large-tune`` (default 150) tuning and ``--large-draws`` (default 950) draws at
   ``--large-target-accept`` (default 0.8). The draws are set by the worst of the 20,000
   person traits: with 600 draws per chain their largest R-hat was 1.011-1.015, and R-hat - 1
   falls as 1 / draws. Tuning converges in 150 draws (nutpie's gradient-based mass matrix).
   ``--large-key`` names the record (to keep runs with other settings). Run it once
   (``--large``): it takes minutes. ``--large-probe`` measures its parts instead (cost of one log-density gradient,
   leapfrog steps per draw and mixing in a short run of 2 chains x 300 + 200) and projects
   the full run's time from them;
3. ``cli``: the default ``python -m analyses.engagement`` command as a subprocess;
4. ``--recovery``: with the default priors, 20 simulated data sets of 400 respondents x 10
   items (5 categories, theta ~ N(0, 1)), four items of discrimination 2.3 each: bias of the
   posterior means and coverage of the 90% intervals of those 80 discriminations (targets:
   |bias| < 0.05, coverage >= 0.85), in ``benchmarks/results/irt_recovery.json``.

Diagnostics (R-hat, ESS, divergences) are recorded with every timing. Results are printed and
merged into ``benchmarks/results/irt.json``.

    uv run python benchmarks/irt.py              # small + cli
    uv run python benchmarks/irt.py --large --skip-small --skip-cli   # the 5,000-person case
    uv run python benchmarks/irt.py --recovery      # discriminations of 2.3 at n = 400, 20 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "irt.json"
RECOVERY_RESULTS = ROOT / "benchmarks" / "results" / "irt_recovery.json"

#: The recovery study's design (issue 19): 10 items, 5 categories, n = 400, theta ~ N(0, 1);
#: four items have discrimination 2.3 (the item under test), the others spread around them.
RECOVERY_A = (0.8, 1.2, 1.6, 2.3, 2.3, 2.3, 2.3, 2.0, 3.0, 1.0)
RECOVERY_TARGET = 2.3


def simulate_recovery(seed: int, n_persons: int = 400):
    """One data set of the recovery study: answers, the instrument and the true parameters."""
    import pandas as pd

    from data.instruments import parse_instrument
    from models import psychometric_irt as irt

    rng = np.random.default_rng(seed)
    a = np.asarray(RECOVERY_A)
    b = rng.normal(0.0, 0.5, (len(a), 1)) + np.linspace(-1.5, 1.5, 4)[None, :]
    theta = rng.normal(size=n_persons)
    probs = irt.category_probabilities(theta[:, None], a[None, :], b[None, :, :])
    u = rng.uniform(size=probs.shape[:-1])[..., None]
    y = np.minimum((u > probs.cumsum(axis=-1)).sum(axis=-1), 4) + 1
    items = [f"I{j + 1:02d}" for j in range(len(a))]
    inst = parse_instrument({"name": "recovery", "categories": [1, 2, 3, 4, 5], "score_direction": "higher_is_better",
                             "dimensions": {"t": "Trait"}, "items": [{"id": i, "dimension": "t"} for i in items]})
    return pd.DataFrame(y, columns=items), inst, a, b


def recovery_study(seeds: int = 20, n_persons: int = 400, *, pooling: str = "none", draws: int = 500,
                   tune: int = 500, chains: int = 2) -> dict:
    """Bias and 90% coverage of the posterior means of discriminations of 2.3 (default priors)."""
    from models import psychometric_irt as irt
    from models.diagnostics import check_sampling

    target = np.flatnonzero(np.isclose(RECOVERY_A, RECOVERY_TARGET))
    errors, covered, per_seed, worst_rhat, divergences = [], [], [], 0.0, 0
    t0 = time.perf_counter()
    for seed in range(seeds):
        frame, inst, a, _ = simulate_recovery(seed, n_persons)
        data = irt.grm_data(frame, inst, dimensions="overall", covariates=False)
        idata = irt.sample_grm(irt.build_grm(data, priors=irt.GRMPriors(pooling=pooling)), data, draws=draws,
                               tune=tune, chains=chains, seed=1000 + seed)
        diag = check_sampling(idata, ["discrimination", "threshold"])
        worst_rhat, divergences = max(worst_rhat, float(diag.table["rhat"].max())), divergences + diag.divergences
        draws_a = irt.posterior_arrays(idata)["discrimination"][:, target]
        lo, hi = np.quantile(draws_a, [0.05, 0.95], axis=0)
        err = draws_a.mean(0) - RECOVERY_TARGET
        errors += err.tolist()
        covered += ((lo <= RECOVERY_TARGET) & (RECOVERY_TARGET <= hi)).tolist()
        per_seed.append({"seed": seed, "mean_a": [round(float(x), 3) for x in draws_a.mean(0)],
                         "covered90": [bool(c) for c in (lo <= RECOVERY_TARGET) & (RECOVERY_TARGET <= hi)]})
        print(f"seed {seed}: posterior means {np.round(draws_a.mean(0), 3)}", flush=True)
    errors = np.asarray(errors)
    # Items of one data set share the persons, so the Monte Carlo SE is taken over seeds.
    by_seed = errors.reshape(seeds, len(target)).mean(axis=1)
    return {
        "design": {"n_persons": n_persons, "items": len(RECOVERY_A), "categories": 5, "discriminations": RECOVERY_A,
                   "target": RECOVERY_TARGET, "target_items_per_data_set": int(len(target)), "seeds": seeds,
                   "priors": irt.GRMPriors(pooling=pooling).to_dict(), "draws": draws, "tune": tune, "chains": chains},
        "bias": round(float(errors.mean()), 4),
        "bias_mc_se": round(float(by_seed.std(ddof=1) / np.sqrt(seeds)), 4),
        "rmse": round(float(np.sqrt(np.mean(errors**2))), 4),
        "coverage90": round(float(np.mean(covered)), 4),
        "n_intervals": len(covered),
        "max_rhat": round(worst_rhat, 4), "divergences": int(divergences),
        "targets": {"abs_bias_below": 0.05, "coverage90_at_least": 0.85},
        "met": bool(abs(errors.mean()) < 0.05 and np.mean(covered) >= 0.85),
        "wall_s": round(time.perf_counter() - t0, 1),
        "per_seed": per_seed,
    }


def fit_case(n_persons: int, n_items: int = 20, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
             target_accept: float = 0.9, mass_matrix: str = "diag") -> dict:
    from data.instruments import validate_responses
    from data.synthetic_engagement import simulate_generic
    from models import psychometric_irt as irt
    from models.diagnostics import check_sampling

    frame, inst, _ = simulate_generic(n_persons, n_items, seed=1)
    data = irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="subscale")
    t0 = time.perf_counter()
    model = irt.build_grm(data)
    sampler = irt.grm_sampler(model, data, mutable=("effect_prior_mean", "effect_prior_sd"))
    t1 = time.perf_counter()
    idata = sampler.sample(draws=draws, tune=tune, chains=chains, seed=2, target_accept=target_accept,
                           mass_matrix=mass_matrix)
    t2 = time.perf_counter()
    diag = check_sampling(idata, irt.diagnostic_vars(idata))
    return {
        "persons": n_persons, "items": n_items, "answers": int(len(data.response)),
        "draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept, "mass_matrix": mass_matrix,
        "centring": "centred" if "site_within_effect" in model.named_vars else "non_centred",
        "compile_s": round(t1 - t0, 1), "sample_s": round(t2 - t1, 1), "total_s": round(t2 - t0, 1),
        "max_rhat": round(float(diag.table["rhat"].max()), 4),
        "min_ess_bulk": round(float(diag.table["ess_bulk"].min()), 0),
        "divergences": diag.divergences, "diagnostics_ok": diag.ok, "problems": diag.problems,
        "mean_tree_steps": round(float(idata["sample_stats"]["n_steps"].mean()), 1),
    }


def large_probe(n_persons: int = 5000, n_items: int = 20, *, tune: int, draws: int) -> dict:
    """Parts of the large fit, and the time of a full run of 4 x (``tune`` + ``draws``) projected
    from them (see docstring)."""
    import nutpie
    from pymc.model.transform.optimization import freeze_dims_and_data

    from data.instruments import validate_responses
    from data.synthetic_engagement import simulate_generic
    from models import psychometric_irt as irt
    from models.diagnostics import check_sampling

    frame, inst, _ = simulate_generic(n_persons, n_items, seed=1)
    data = irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="subscale")
    model = irt.build_grm(data)
    model = freeze_dims_and_data(model, data=[d.name for d in model.data_vars
                                              if d.name not in ("effect_prior_mean", "effect_prior_sd")])
    f = model.logp_dlogp_function(mode="NUMBA", ravel_inputs=True)
    f.set_extra_values({})
    point = model.initial_point()
    x = np.concatenate([np.ravel(point[v.name]) for v in model.value_vars])
    f(x)
    t0 = time.perf_counter()
    for _ in range(100):
        f(x)
    grad_ms = 1000 * (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model, initial_points=irt.start_points(data))   # as grm_sampler
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idata = nutpie.sample(compiled, draws=200, tune=300, chains=2, cores=2, seed=1, progress_bar=False)
    short_s = time.perf_counter() - t0
    steps = float(idata["sample_stats"]["n_steps"].mean())
    diag = check_sampling(idata, irt.diagnostic_vars(idata))
    worst = diag.table.sort_values("ess_bulk").head(3)
    full_gradients = 4 * (tune + draws) * steps
    return {
        "persons": n_persons, "items": n_items, "answers": int(len(data.response)), "parameters": int(x.size),
        "ms_per_gradient": round(grad_ms, 2), "compile_s": round(compile_s, 1),
        "short_run": {"chains": 2, "tune": 300, "draws": 200, "wall_s": round(short_s, 1),
                      "leapfrog_steps_per_draw": steps, "max_rhat": round(float(diag.table["rhat"].max()), 3),
                      "lowest_bulk_ess": {k: round(float(v), 1) for k, v in worst["ess_bulk"].items()}},
        "projected_full_run_s": round(compile_s + full_gradients * grad_ms / 1000 / (os.cpu_count() or 1), 0),
        "projection": f"compile + 4 chains x ({tune} + {draws}) iterations x steps per draw x gradient cost / cores",
    }


def cli_run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "engagement"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "analyses.engagement", "--out", str(out), "--quiet"],
                              cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 1):
            raise SystemExit(proc.stderr)
        record = json.loads((out / "statements.json").read_text())
    diag = record["diagnostics"]
    return {
        "wall_s": round(wall, 1),
        "fits": len(diag),
        "max_rhat": round(max(v["rhat"] for d in diag.values() for v in d["variables"]), 4),
        "min_ess_bulk": round(min(v["ess_bulk"] for d in diag.values() for v in d["variables"]), 0),
        "divergences": sum(d["divergences"] for d in diag.values()),
        "diagnostics_ok": record["diagnostics_ok"],
        "failed_fits": [k for k, d in diag.items() if not d["ok"]],
        "loo_by_respondent": {inst: [{k: r[k] for k in ("model", "elpd", "elpd_diff", "dse", "n_pareto_k_high",
                                                         "max_pareto_k")} for r in rows]
                              for inst, rows in record["loo"].items()},
        "global_fit_ppp": {k: g["ppp"] for k, g in record["global_fit"].items()},
        "item_checks_flagged": [f"{r['model']} {r['item']} {r['statistic']}" for r in record["item_fit"] if r["flagged"]],
        "dif_items_flagged": [f"{r['instrument']} {r['item']}" for r in record["dif"] if r["flagged"]],
    }


def main(argv: list[str] | None = None) -> int:
    from models.sampling import MASS_MATRICES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--large", action="store_true", help="run the 5,000 x 20 case (long; once)")
    p.add_argument("--large-probe", action="store_true", help="measure the 5,000 x 20 case's parts and project it")
    p.add_argument("--large-draws", type=int, default=950)
    p.add_argument("--large-tune", type=int, default=150)
    p.add_argument("--large-target-accept", type=float, default=0.8,
                   help="NUTS target acceptance for the large case (0.8: a 40%% longer step than 0.9, "
                        "with no divergences at 5,000 x 20)")
    p.add_argument("--large-mass-matrix", default="diag", choices=MASS_MATRICES,
                   help="nutpie's mass-matrix adaptation for the large case (default diag)")
    p.add_argument("--large-key", default="large_5000x20", help="key of the large case in the results file")
    p.add_argument("--recovery", action="store_true",
                   help="the discrimination recovery study (n = 400, a = 2.3, 20 seeds; default priors); "
                        "written to benchmarks/results/irt_recovery.json")
    p.add_argument("--recovery-pooling", default="none", help="GRMPriors.pooling for the recovery study")
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    args = p.parse_args(argv)
    if args.recovery:
        rec = json.loads(RECOVERY_RESULTS.read_text()) if RECOVERY_RESULTS.exists() else {}
        rec[f"pooling_{args.recovery_pooling}"] = {
            **recovery_study(pooling=args.recovery_pooling),
            "machine": {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}}
        RECOVERY_RESULTS.write_text(json.dumps(rec, indent=2) + "\n")
        print(json.dumps({k: v for k, v in rec[f"pooling_{args.recovery_pooling}"].items() if k != "per_seed"},
                         indent=1))
        print(f"written {RECOVERY_RESULTS}")
        return 0
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "load_average_at_start": list(os.getloadavg())}
    if not args.skip_small:
        results["small_60x20"] = {**fit_case(60), "target_s": 60, "machine": machine}
        print("60 x 20:", json.dumps(results["small_60x20"], indent=1))
    if not args.skip_cli:
        results["cli_default"] = {**cli_run(), "machine": machine}
        print("CLI:", json.dumps(results["cli_default"], indent=1))
    if args.large_probe:
        results["large_5000x20_probe"] = {**large_probe(tune=args.large_tune, draws=args.large_draws),
                                          "target_s": 300, "machine": machine}
        print("5000 x 20 (probe):", json.dumps(results["large_5000x20_probe"], indent=1))
    if args.large:
        results[args.large_key] = {**fit_case(5000, draws=args.large_draws, tune=args.large_tune,
                                              target_accept=args.large_target_accept,
                                              mass_matrix=args.large_mass_matrix),
                                   "target_s": 300, "machine": machine}
        print("5000 x 20:", json.dumps(results[args.large_key], indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
