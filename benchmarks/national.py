"""Benchmark: a national kinship analysis on one machine (issue 21, item 2).

All 152 English LAs (40 pilots, 112 comparators) over 10 financial years, about 10 million
synthetic child records with covariate strata (age band, sex, ethnic group, disability), from
the generating model of :mod:`data.synthetic` (its LA design, LA effects, records and
covariate effects). Measures, on this machine:

1. generation and aggregation to cells, in LA chunks (each chunk's records are built and
   aggregated by the toolkit's own :func:`data.did_input.cells_from_frame`, then dropped; the
   chunks hold disjoint LAs, so their cells concatenate exactly): wall time and peak RSS
   (``resource.getrusage``) against <= 60 s and <= 4 GB;
2. the kinship model (SofS specification: ``effects="unit"`` with LA trends and covariates,
   ``SOFS_MODEL_SPEC``) fitted on the cells, in up to three forms: ``baseline`` (the engine's
   defaults, as ``analyses.kinship`` builds it), ``centred`` (centred LA effects, trends and
   period deviations: the data pin every LA's parameters) and ``fast`` (``centred`` with the
   factorised likelihood, ``ModelSpec.factorised``: the same density on an LA-year x stratum
   grid). For each: compile time, ms per log-density gradient (nutpie's own benchmark, one
   core) and, with ``--fit``, a NUTS run with leapfrog steps per draw, R-hat, bulk ESS of the
   ATT and of the between-LA SDs and divergences, against the fit <= 120 s, R-hat <= 1.01,
   ESS >= 400, no divergences;
3. ``--scaling``: seconds per gradient and per effective draw (ATT and the slowest between-LA
   SD, from a short 2-chain run) against the number of cells, written to
   ``benchmarks/results/national_scaling.json``.

Results: ``benchmarks/results/national.json``.

    uv run python benchmarks/national.py --fit                 # aggregation + gradients + fit
    uv run python benchmarks/national.py --scaling             # the scaling curve only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import synthetic as syn  # noqa: E402
from data.did_input import cells_from_frame  # noqa: E402

#: the between-LA SDs of the kinship model (unit structure, LA trends)
BETWEEN = ("sigma_unit", "sigma_tau", "sigma_trend")
TARGETS = {"aggregation_s": 60.0, "aggregation_peak_gb": 4.0, "fit_s": 120.0, "rhat": 1.01, "ess_bulk": 400}

#: what would go to a distributed engine (Dask, as ``analyses.simulation`` uses) when one machine is not enough
DISTRIBUTED = {
    "aggregation": "embarrassingly parallel by LA: each LA chunk's records are read and reduced to cells by "
                   "cells_from_frame on its own worker (dask.bag / dask.delayed over LA files, or dask.dataframe "
                   "groupby-sum on the keys); only the cells (~120k rows, a few MB) come back; exact, since binomial "
                   "counts are sums.",
    "fit": "one NUTS fit is sequential within a chain: chains can run on separate workers (4 chains -> 4 cores or "
           "machines), but a single gradient is a ~120k-entry fused loop (a few ms) that does not pay for network "
           "latency; a model larger than one machine would split the likelihood by LA (sum of per-shard log "
           "densities and gradients), which no engine in this project does today.",
    "many_fits": "priors, robustness re-fits, leave-one-LA-out and simulation replicates are independent fits of "
                 "one compiled model: the Dask pattern of analyses.simulation (one task per fit, the model compiled "
                 "once per worker) applies directly.",
}


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in os.getloadavg()]}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20     # KiB on Linux


# ---------------------------------------------------------------- data

def national_config(n_pilot: int = 40, n_comparator: int = 112, years: tuple[int, ...] = tuple(range(2009, 2019)),
                    children: float = 10e6, seed: int = 2026) -> syn.DidStudyConfig:
    """The kinship twin's truth on a national design: adoption 2013-2016, 1-3 settling years."""
    rng = np.random.default_rng(seed)
    first = years[min(3, len(years) - 2)]
    adopt = tuple(int(a) for a in rng.choice(np.arange(first, min(first + 4, years[-1])), n_pilot))
    settle = tuple(int(s) for s in rng.choice([1, 2, 3], n_pilot))
    base = syn.DidStudyConfig()
    per = children / (n_pilot + n_comparator) / len(years) / np.exp(base.la_size_sd ** 2 / 2)
    return syn.DidStudyConfig(n_pilot=n_pilot, n_comparator=n_comparator, years=tuple(years), adoption_years=adopt,
                              settling_years=settle, children_per_la_year=float(per))


def _records(cfg: syn.DidStudyConfig, lay, la, yr, age, male, eth, dis, y) -> pd.DataFrame:
    """Child records as ``data.synthetic`` lays them out (string columns built from their codes)."""
    cat = lambda codes, labels: pd.Categorical.from_codes(codes, labels).astype(str)  # noqa: E731
    return pd.DataFrame({
        "la": cat(la, lay.las), "year": lay.years[yr], "arm": cat(lay.is_pilot[la].astype(int), ["comparator", "pilot"]),
        "adoption_year": lay.adoption[la], "settling_years": lay.settling[la],
        "age_band": cat(age, syn.AGE_BANDS), "sex": cat(male.astype(int), syn.SEXES),
        "ethnicity": cat(eth, syn.ETHNIC_GROUPS), "disability": cat(dis.astype(int), syn.DISABILITY), "kinship": y})


def national_cells(cfg: syn.DidStudyConfig, *, seed: int = 0, chunks: int = 8,
                   covariates: tuple[str, ...] | None = None) -> dict:
    """Simulate the records chunk by chunk (disjoint LAs, each chunk with pilots and comparators)
    and aggregate each with :func:`cells_from_frame`; returns the cells, the truth and timings."""
    from scipy.special import expit, logit

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    lay = syn._la_design(cfg)
    u, trend, v, tau, size = syn._la_effects(cfg, rng, lay)
    alpha, years = float(logit(cfg.baseline_share)), lay.years
    pil, comp = np.flatnonzero(lay.is_pilot), np.flatnonzero(~lay.is_pilot)
    chunks = max(1, min(chunks, pil.size, comp.size))
    parts, n_children, gen_s, agg_s = [], 0, 0.0, 0.0
    att_num, att_n = 0.0, 0
    for k, ss in enumerate(np.random.SeedSequence([seed, 1]).spawn(chunks)):
        g0 = time.perf_counter()
        idx = np.concatenate([pil[k::chunks], comp[k::chunks]])
        sub = syn._Layout([lay.las[i] for i in idx], lay.is_pilot[idx], lay.adoption[idx], lay.settling[idx], years)
        r = np.random.default_rng(ss)
        la, yr, age, male, eth, dis = syn._units(cfg, r, sub, size[idx])
        g = idx[la]
        eta0 = (alpha + u[g] + trend[g] * (years[yr] - years.mean()) + v[yr]
                + syn._covariate_effect(cfg, age, male, eth, dis))
        ramp = np.where(sub.is_pilot[la], syn._ramp(years[yr], sub.adoption[la], sub.settling[la]), 0.0)
        p1 = expit(eta0 + tau[g] * ramp)
        post = ramp == 1.0
        att_num += float((p1 - expit(eta0))[post].sum())
        att_n += int(post.sum())
        y = (r.random(la.size) < p1).astype(np.int8)
        del eta0, p1, ramp, post
        frame = _records(cfg, sub, la, yr, age, male, eth, dis, y)
        del la, yr, age, male, eth, dis, y
        a0 = time.perf_counter()
        cells = cells_from_frame(frame, "kinship", synthetic=True, covariates=covariates)
        agg_s += time.perf_counter() - a0
        gen_s += a0 - g0
        parts.append(cells.cells)
        n_children += cells.n_children
        covs = cells.covariates
        del frame, cells
        gc.collect()
    order = {la: i for i, la in enumerate(lay.las)}
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values(["la", "year", *covs], key=lambda s: s.map(order) if s.name == "la" else s,
                              kind="stable").reset_index(drop=True)
    return {"cells": table, "covariates": covs, "n_children": n_children, "chunks": chunks,
            "seconds": time.perf_counter() - t0, "generate_s": gen_s, "aggregate_s": agg_s,
            "truth": {"att_pp": 100 * att_num / max(att_n, 1), "mu_tau": cfg.mu_tau, "sd_tau": cfg.sd_tau,
                      "sd_la": cfg.sd_la, "sd_trend": cfg.sd_trend}}


# ---------------------------------------------------------------- model

FORMS = {
    "baseline": {},
    "centred": {"unit_centred": True, "effect_centred": True, "trend_centred": True, "period_centred": True},
    "fast": {"unit_centred": True, "effect_centred": True, "trend_centred": True, "period_centred": True,
             "factorised": True},
}


def kinship_model(cells: pd.DataFrame, covariates, form: str):
    from analyses.sofs_did import canonical
    from models.did.design import DesignSpec, did_design
    from models.did.likelihoods import get_likelihood
    from models.did.model import SOFS_MODEL_SPEC, build_did_model
    from models.did.priors import effect_priors

    spec = DesignSpec("binomial", effects="unit", control="never", base="all", unit_trends=True,
                      covariates=tuple(covariates))
    design = did_design(canonical(cells), spec)
    pre = cells[(cells.arm == "pilot") & (cells.phase == "pre")]
    priors = effect_priors(get_likelihood("binomial"), float(pre.y.sum() / pre.n.sum()), direction=1,
                           outcome_label="kinship care")
    return build_did_model(design, priors["neutral"], spec=replace(SOFS_MODEL_SPEC, **FORMS[form])), priors


def compile_model(dm, backend: str = "numba"):
    """The model compiled as the analyses compile it (cells frozen, prior hyper-parameters
    mutable: :class:`models.sampling.CompiledSampler`), and the seconds it took."""
    from models.did.model import PRIOR_DATA
    from models.sampling import CompiledSampler

    t0 = time.perf_counter()
    sampler = CompiledSampler(dm.model, mutable=PRIOR_DATA, backend=backend,
                              **({"gradient_backend": "jax"} if backend == "jax" else {}))
    return sampler.compiled, time.perf_counter() - t0


def gradient_ms(compiled, evals: int = 200, seed: int = 0) -> float:
    """Median ms per log-density + gradient evaluation on one core: the compiled (numba) logp
    and gradient function that nutpie calls, timed in batches of 10 calls (Python overhead a
    few microseconds per call)."""
    point = np.random.default_rng(seed).normal(0, 0.3, compiled.n_dim)
    f = compiled.logp_func
    f(point)
    times = []
    for _ in range(max(1, evals // 10)):
        t0 = time.perf_counter()
        for _ in range(10):
            f(point)
        times.append((time.perf_counter() - t0) / 10)
    return float(np.median(times) * 1e3)


def logp_at(compiled, point) -> float:
    """The log density at an unconstrained point (to check that two forms are one density)."""
    out = compiled.logp_func(np.asarray(point, float))
    return float(out[0])


def fit(compiled, *, chains: int, tune: int, draws: int, seed: int, target_accept: float = 0.9,
        adaptation: str = "diag") -> dict:
    import nutpie

    from models.diagnostics import check_sampling

    t0 = time.perf_counter()
    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=min(chains, os.cpu_count() or 1),
                          seed=seed, progress_bar=False, target_accept=target_accept, adaptation=adaptation)
    seconds = time.perf_counter() - t0
    post = idata["posterior"].to_dataset()
    stats = idata["sample_stats"].to_dataset()
    names = ["att", "mu_tau", *[b for b in BETWEEN if b in post]]
    # the project's own checks on every sampled and reported quantity (R-hat, bulk/tail ESS, E-BFMI)
    diag = check_sampling(idata, [k for k in post.data_vars if post[k].size])
    table = diag.table
    ess = {k: float(table.loc[k, "ess_bulk"]) for k in names}
    ess_tail = {k: float(table.loc[k, "ess_tail"]) for k in names}
    rhat = {k: float(table.loc[k, "rhat"]) for k in names}
    all_rhat = float(table["rhat"].max())
    steps = stats["n_steps"].values
    warm = idata["warmup_sample_stats"].to_dataset()["n_steps"].values if "warmup_sample_stats" in idata.children else None
    return {"chains": chains, "tune": tune, "draws": draws, "target_accept": target_accept, "adaptation": adaptation,
            "seconds": round(seconds, 1), "leapfrog_per_draw": round(float(steps.mean()), 1),
            "leapfrog_per_tuning_draw": round(float(warm.mean()), 1) if warm is not None else None,
            "divergences": int(stats["diverging"].values.sum()), "ess_bulk": ess, "ess_tail": ess_tail,
            "rhat": rhat, "max_rhat_all": round(all_rhat, 4), "min_ess_bulk_all": round(float(table["ess_bulk"].min()), 1),
            "min_ess_tail_all": round(float(table["ess_tail"].min()), 1), "ebfmi": [round(e, 3) for e in diag.ebfmi],
            "problems": diag.problems[:20],
            "posterior_mean": {k: round(float(post[k].mean()), 4) for k in names},
            "seconds_per_effective_draw": {k: seconds / max(v, 1e-9) for k, v in ess.items()}}


def fit_ok(f: dict) -> bool:
    return bool(f["seconds"] <= TARGETS["fit_s"] and f["max_rhat_all"] <= TARGETS["rhat"] and f["divergences"] == 0
                and min(f["ess_bulk"][k] for k in ("att", *BETWEEN) if k in f["ess_bulk"]) >= TARGETS["ess_bulk"])


# ---------------------------------------------------------------- runs

def national(args) -> dict:
    out = {"machine": machine(), "targets": TARGETS, "distributed": DISTRIBUTED}
    rss0 = peak_rss_gb()
    data = national_cells(national_config(children=args.children), seed=args.seed, chunks=args.chunks)
    cells = data.pop("cells")
    out["data"] = {"las": int(cells.la.nunique()), "years": int(cells.year.nunique()),
                   "children": data["n_children"], "cells": len(cells), "covariates": list(data["covariates"]),
                   "chunks": data["chunks"], "generate_and_aggregate_s": round(data["seconds"], 1),
                   "generate_s": round(data["generate_s"], 1), "aggregate_s": round(data["aggregate_s"], 1),
                   "peak_rss_gb": round(peak_rss_gb(), 2), "peak_rss_gb_before": round(rss0, 2),
                   "truth": data["truth"]}
    out["aggregation_ok"] = bool(data["seconds"] <= TARGETS["aggregation_s"]
                                 and peak_rss_gb() <= TARGETS["aggregation_peak_gb"])
    print(json.dumps(out["data"], indent=1), flush=True)
    out["forms"] = {}
    points = None
    for form in args.forms:
        t0 = time.perf_counter()
        dm, _ = kinship_model(cells, data["covariates"], form)
        rec = {"build_s": round(time.perf_counter() - t0, 1), "cells": len(dm.design.cells),
               "unit_centred": dm.unit_centred}
        compiled, rec["compile_s"] = compile_model(dm, args.backend)
        rec["compile_s"] = round(rec["compile_s"], 1)
        rec["n_dim"] = int(compiled.n_dim)
        rec["gradient_ms"] = round(gradient_ms(compiled, args.evals), 3)
        if points is None:
            points = [np.random.default_rng(i).normal(0, 0.3, compiled.n_dim) for i in range(3)]
        if compiled.n_dim == len(points[0]):
            rec["logp_at_test_points"] = [logp_at(compiled, p) for p in points]
        if args.fit and form in args.fit_forms:
            rec["fit"] = fit(compiled, chains=args.chains, tune=args.tune, draws=args.draws, seed=args.seed,
                             target_accept=args.target_accept, adaptation=args.adaptation)
            rec["fit_ok"] = fit_ok(rec["fit"])
        out["forms"][form] = rec
        print(form, json.dumps(rec, indent=1, default=float), flush=True)
    return out


SCALING_POINTS = [   # (pilots, comparators, years, children, covariates): about 1k .. 200k cells
    (10, 20, 10, 60_000, ("age_band",)),
    (20, 40, 10, 300_000, ("age_band", "sex")),
    (40, 112, 10, 1_000_000, ("age_band", "sex", "disability")),
    (40, 112, 10, 1_090_000, None),
    (80, 224, 10, 10_000_000, None),
]


def scaling(args) -> dict:
    out = {"machine": machine(), "points": [], "forms": args.scaling_forms,
           "note": "gradient: median of nutpie's benchmark_logp on one core; ESS/s: 2 chains, "
                   f"{args.scaling_tune} tuning + {args.scaling_draws} draws, run on 2 cores"}
    for n_p, n_c, n_y, kids, covs in SCALING_POINTS:
        cfg = national_config(n_p, n_c, tuple(range(2009, 2009 + n_y)), children=kids)
        data = national_cells(cfg, seed=args.seed, chunks=max(1, int(kids // 1_500_000) + 1), covariates=covs)
        point = {"las": n_p + n_c, "years": n_y, "children": data["n_children"],
                 "covariates": list(data["covariates"]), "aggregate_s": round(data["seconds"], 1)}
        for form in args.scaling_forms:
            dm, _ = kinship_model(data["cells"], data["covariates"], form)
            point["cells"] = len(dm.design.cells)
            compiled, cs = compile_model(dm, args.backend)
            rec = {"compile_s": round(cs, 1), "gradient_ms": round(gradient_ms(compiled, args.evals), 3)}
            rec["ns_per_cell_gradient"] = round(rec["gradient_ms"] * 1e6 / point["cells"], 1)
            if args.scaling_draws:
                f = fit(compiled, chains=2, tune=args.scaling_tune, draws=args.scaling_draws, seed=args.seed)
                slow = min(BETWEEN, key=lambda k: f["ess_bulk"].get(k, np.inf))
                rec.update({"fit_s": f["seconds"], "leapfrog_per_draw": f["leapfrog_per_draw"],
                            "divergences": f["divergences"], "ess_bulk": f["ess_bulk"],
                            "s_per_effective_draw_att": round(f["seconds_per_effective_draw"]["att"], 4),
                            "slowest_between_sd": slow,
                            "s_per_effective_draw_slowest_sd": round(f["seconds_per_effective_draw"][slow], 4)})
            point[form] = rec
        out["points"].append(point)
        print(json.dumps(point, default=float), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=float, default=10e6, help="child records (default 10 million)")
    ap.add_argument("--chunks", type=int, default=8, help="LA chunks generated and aggregated one at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--forms", nargs="+", default=["baseline", "fast"], choices=list(FORMS))
    ap.add_argument("--fit", action="store_true", help="fit the model (forms in --fit-forms)")
    ap.add_argument("--fit-forms", nargs="+", default=["fast"], choices=list(FORMS))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--target-accept", type=float, default=0.9)
    ap.add_argument("--adaptation", default="diag", choices=["diag", "draw_diag", "low_rank"])
    ap.add_argument("--backend", default="numba", choices=["numba", "jax"])
    ap.add_argument("--evals", type=int, default=200, help="gradient evaluations timed per model")
    ap.add_argument("--scaling", action="store_true", help="the scaling curve (instead of the national run)")
    ap.add_argument("--scaling-forms", nargs="+", default=["baseline", "fast"], choices=list(FORMS))
    ap.add_argument("--scaling-tune", type=int, default=200)
    ap.add_argument("--scaling-draws", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/national*.json)")
    args = ap.parse_args()
    dest = ROOT / "benchmarks" / "results"
    dest.mkdir(exist_ok=True)
    if args.scaling:
        result = scaling(args)
        path = args.out or dest / "national_scaling.json"
    else:
        result = national(args)
        if args.fit:
            result["targets_met"] = bool(result["aggregation_ok"] and any(
                f.get("fit_ok") for f in result["forms"].values()))
        path = args.out or dest / "national.json"
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
