"""Benchmark: Bambi on child rows and the toolkit's DiD engine on cells, one model (issue 21, item 3).

A user without this toolkit would fit the SofS hierarchical logistic DiD with Bambi on one row
per child. This benchmark fits *the same model* both ways on synthetic child-level data with a
known truth and compares the posteriors and the wall times:

(a) Bambi (``inference_method="nutpie"``, nutpie's numba backend) on the child rows::

        y ~ 1 + year + age_band + disability + treat_post + (1 | la) + (0 + treat_post | la)

(b) the toolkit (``models.did``): the rows aggregated to LA x year x covariate-stratum cells
    (``data.did_input.cells_from_frame``), ``DesignSpec("binomial", effects="unit")`` with
    ``ModelSpec(period_effects="fixed", cohort_levels=False)``, fitted by
    ``models.did.fit.fit_priors`` (compiled once by nutpie, cells frozen, automatic
    re-parametrisation when a fit fails its checks).

The model (child ``i`` in LA ``l``, year ``t``)::

    y_i ~ Bernoulli(expit(a_l + v_t + x_i' beta + D_lt tau_l))
    a_l ~ N(alpha, sigma_unit^2),  sigma_unit ~ HalfNormal(1)        LA random intercepts
    tau_l ~ N(mu_tau, sigma_tau^2), sigma_tau ~ HalfNormal(0.5)      pilots' effects, partially pooled
    mu_tau ~ N(0, 1), beta ~ N(0, 1)                                  ATT (logit) and covariate contrasts
    v ~ ZeroSumNormal(1), alpha ~ N(0, 2^2)                           year effects and level

``D_lt`` is 1 for a pilot in the years after its settling-in (settling-in years are left out of
both fits, as the SofS analyses do). In Bambi the year contrasts ``v_t - v_first`` get the
prior the zero-sum year effects imply (MvNormal, covariance I + 11'); the priors differ only
in the level (see ``spec_differences`` in the record). The data are ``simulate_did_study``'s
with no LA trends and no effects of the covariates left out of the model (sex, ethnicity), so
the model is the generating one; the truth is recorded beside the posteriors.

Compared, for every quantity both fits have: mean and SD, the difference in units of the
posterior SD, raw and against its Monte Carlo standard error; wall times (aggregation, graph
building, compilation and sampling separately) and the Bambi / toolkit ratio; R-hat, ESS and
divergences of both fits. Results are printed and written to benchmarks/results/bambi.json.

    uv run python benchmarks/bambi.py                                   # 20,000 and 200,000 children
    uv run python benchmarks/bambi.py --children 20000 --out /tmp/b.json
    uv run python benchmarks/bambi.py --quick --out /tmp/b.json         # 3,000 children, short chains
    uv run python benchmarks/bambi.py --children 200000 --merge         # add one size to the record

At 200,000 children Bambi had not finished after 45 minutes on 2 cores (the engine: 27.8 s);
``--bambi-draws`` shortens its chains.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# this file is named bambi.py: its folder must not shadow the bambi package
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != HERE]
sys.path.insert(0, str(ROOT))

COVARIATES = ("age_band", "disability")
OUTCOME = "kinship"
PRIOR = {"mu_tau": (0.0, 1.0), "beta_sd": 1.0, "alpha_sd": 2.0, "period_sd": 1.0, "sigma_unit": 1.0,
         "sigma_tau": 0.5}
MODEL = ("y_i ~ Bernoulli(expit(a_l + v_t + x_i' beta + D_lt tau_l)); a_l ~ N(alpha, sigma_unit^2), "
         "sigma_unit ~ HalfNormal(1); tau_l ~ N(mu_tau, sigma_tau^2) (pilots), sigma_tau ~ HalfNormal(0.5); "
         "mu_tau ~ N(0, 1); beta ~ N(0, 1) (age band, disability; contrasts with the first level); "
         "v ~ ZeroSumNormal(1) (years); alpha ~ N(0, 2^2); D_lt = pilot after settling-in (settling-in years "
         "left out)")
TOLERANCE = 0.1          # posterior SDs
MCSE_Z = 2.0             # the MC-SE-aware criterion: |d| <= TOLERANCE + MCSE_Z x MC SE of d


# ---------------------------------------------------------------- data with a known truth

def study(n_children: int, seed: int):
    """``simulate_did_study`` with the kinship twin's LA design (9 pilots, 9 comparators,
    2010-2018), sized to about ``n_children`` children, no LA trends, and only the modelled
    covariates acting (so the fitted model is the generating one)."""
    from data.synthetic import DidStudyConfig, simulate_did_study

    base = DidStudyConfig()
    n_cells = (base.n_pilot + base.n_comparator) * len(base.years)
    per = n_children / (n_cells * np.exp(base.la_size_sd ** 2 / 2))     # E[LA size] = exp(sd^2 / 2)
    config = DidStudyConfig(children_per_la_year=float(per), sd_trend=0.0, male_effect=0.0,
                            ethnic_effects=(0.0,) * len(base.ethnic_effects))
    return simulate_did_study(config, seed=seed)


def truth_of(st) -> dict:
    """The generating values on the model's scale (realised LA and year effects re-drawn from
    the generator's own stream, in its order)."""
    from data.synthetic import AGE_BANDS, _la_design, _la_effects

    config = st.config
    lay = _la_design(config)
    u, _, v, tau, _ = _la_effects(config, np.random.default_rng(st.seed), lay)
    ages = dict(zip(AGE_BANDS, config.age_effects))
    levels = sorted(ages)
    out = {"mu_tau": config.mu_tau, "sigma_tau": config.sd_tau, "sigma_unit": config.sd_la,
           "att_pp": st.truth["att_pp"]}
    for level in levels[1:]:
        out[f"beta[age_band[{level}]]"] = ages[level] - ages[levels[0]]
    out["beta[disability[yes]]"] = config.disability_effect
    years = [int(y) for y in lay.years]
    for j, year in enumerate(years[1:], start=1):
        out[f"period[{year}]-period[{years[0]}]"] = float(v[j] - v[0])
    for la, t in zip(lay.las, tau):
        if la.startswith("Pilot"):
            out[f"tau[{la}]"] = float(t)
    return out


def child_rows(children: pd.DataFrame) -> pd.DataFrame:
    """The rows Bambi sees: settling-in years of pilots left out (as the engine leaves those
    cells out), ``treat_post`` = a pilot after settling-in, categorical columns with sorted
    levels (the engine's reference levels are the first sorted ones)."""
    rel = children["year"] - children["adoption_year"]
    pilot = children["arm"].eq("pilot").to_numpy()
    settling = pilot & (rel >= 0) & (rel < children["settling_years"])
    out = children.loc[~settling.to_numpy()].reset_index(drop=True)
    rel = out["year"] - out["adoption_year"]
    out["treat_post"] = (out["arm"].eq("pilot") & (rel >= out["settling_years"])).astype(float)
    for col in ("year", *COVARIATES):
        values = out[col].astype(str)
        out[col] = pd.Categorical(values, categories=sorted(values.unique()))
    out["la"] = pd.Categorical(out["la"].astype(str))
    return out


# ---------------------------------------------------------------- the two fits

def fit_toolkit(children: pd.DataFrame, settings, seed: int) -> dict:
    from analyses.sofs_did import canonical
    from data.did_input import cells_from_frame
    from models.diagnostics import check_sampling
    from models.did.design import DesignSpec, did_design
    from models.did.fit import diagnostic_vars, fit_priors
    from models.did.model import ModelSpec, build_did_model
    from models.priors import NamedPrior

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    cells = cells_from_frame(children, OUTCOME, covariates=COVARIATES, synthetic=True)
    design = did_design(canonical(cells.cells), DesignSpec("binomial", effects="unit", base="all",
                                                           covariates=cells.covariates))
    t_agg = time.perf_counter() - t0
    prior = NamedPrior("benchmark", *PRIOR["mu_tau"], "log-odds ratio", "N(0, 1) on the mean LA effect")
    spec = ModelSpec(period_effects="fixed", period_sd=PRIOR["period_sd"], cohort_levels=False)
    t0 = time.perf_counter()
    dm = build_did_model(design, prior, spec=spec)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    fits = fit_priors(dm, [prior], settings, seed=seed, rebuild=lambda s: build_did_model(design, prior, spec=s))
    t_fit = time.perf_counter() - t0
    fit = fits.fits["benchmark"]
    diag = check_sampling(fit.idata, diagnostic_vars(fits.model, fit.posterior))
    return {
        "idata": fit.idata, "design": design, "dm": fits.model, "diagnostics": diag,
        "times": {"aggregate_s": t_agg, "build_s": t_build, "compile_s": fits.compile_seconds,
                  "sample_s": t_fit - fits.compile_seconds, "total_s": t_agg + t_build + t_fit},
        "info": {"cells": int(len(design.cells)), "unit_centred": bool(fits.model.unit_centred),
                 "effect_centred": fits.model.spec.effect_centred, "refit_notes": list(fits.notes),
                 "load_avg_before": load0, "load_avg_after": os.getloadavg()},
    }


def bambi_priors(n_years: int) -> dict:
    import bambi as bmb

    k = n_years - 1
    return {
        "Intercept": bmb.Prior("Normal", mu=0.0, sigma=PRIOR["alpha_sd"]),
        # v ~ ZeroSumNormal(s) => the contrasts v_t - v_first ~ MvNormal(0, s^2 (I + 11'))
        "year": bmb.Prior("MvNormal", mu=np.zeros(k), cov=PRIOR["period_sd"] ** 2 * (np.eye(k) + np.ones((k, k)))),
        **{c: bmb.Prior("Normal", mu=0.0, sigma=PRIOR["beta_sd"]) for c in COVARIATES},
        "treat_post": bmb.Prior("Normal", mu=PRIOR["mu_tau"][0], sigma=PRIOR["mu_tau"][1]),
        "1|la": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=PRIOR["sigma_unit"])),
        "treat_post|la": bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=PRIOR["sigma_tau"])),
    }


FORMULA = f"{OUTCOME} ~ 1 + year + {' + '.join(COVARIATES)} + treat_post + (1 | la) + (0 + treat_post | la)"


def fit_bambi(rows: pd.DataFrame, settings, seed: int) -> dict:
    import bambi as bmb

    from models.diagnostics import check_sampling

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # an unused prior would be a silent mismatch
        model = bmb.Model(FORMULA, rows, family="bernoulli", priors=bambi_priors(rows["year"].cat.categories.size),
                          auto_scale=False)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.build()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    idata = model.fit(draws=settings.draws, tune=settings.tune, chains=settings.chains,
                      cores=min(settings.chains, os.cpu_count() or 1), inference_method="nutpie", random_seed=seed,
                      nuts={"target_accept": settings.target_accept}, progressbar=False)
    t_fit = time.perf_counter() - t0
    t_sample = float(idata["posterior"].attrs["sampling_time"])
    diag = check_sampling(idata)
    return {
        "idata": idata, "diagnostics": diag,
        "times": {"model_s": t_model, "build_s": t_build, "compile_s": t_fit - t_sample, "sample_s": t_sample,
                  "total_s": t_model + t_build + t_fit},
        "info": {"rows": int(len(rows)), "formula": FORMULA, "priors": str(model).split("Priors:")[-1].strip(),
                 "load_avg_before": load0, "load_avg_after": os.getloadavg()},
    }


# ---------------------------------------------------------------- shared quantities

def _chains(x: np.ndarray, chains: int) -> np.ndarray:
    return x.reshape(chains, -1, *x.shape[1:])


def _stack(da) -> np.ndarray:
    x = np.asarray(da.transpose("chain", "draw", ...).values)
    return x.reshape(-1, *x.shape[2:])


def _g_att(design, intercept, la_dev, period, beta_raw, tau) -> np.ndarray:
    """ATT in pp by g-computation over the treated post cells (the engine's ``att``):
    ``sum n [expit(eta0 + tau) - expit(eta0)] / sum n``, with draws (S, ...) of an intercept at
    the reference levels, LA deviations (units), period effects (periods; any reference),
    contrasts of the *uncentred* covariate indicators and the pilots' effects."""
    from scipy.special import expit

    d = design.data
    post = d["post"] > 0
    x_raw = _raw_x(design)[post]
    eta0 = (intercept[:, None] + la_dev[:, d["unit_idx"][post]] + period[:, d["period_idx"][post]]
            + beta_raw @ x_raw.T)
    eta = eta0 + tau[:, d["treated_unit_idx"][post]] * d["treated"][post]
    w = d["n"][post].astype(float)
    return 100.0 * ((expit(eta) - expit(eta0)) * w).sum(1) / w.sum()


def _raw_x(design) -> np.ndarray:
    """The covariate indicators before the engine centred them (one column per contrast)."""
    cols = []
    for name in design.covariate_names:
        cov, level = name.split("[", 1)
        cols.append((design.cells[cov].astype(str) == level[:-1]).to_numpy(float))
    return np.column_stack(cols)


def toolkit_quantities(tk: dict) -> tuple[dict[str, np.ndarray], float]:
    """Draws (chains, draws) of every shared quantity from the engine's posterior, and the
    largest gap between the g-computed ATT here and the model's own ``att`` (a check of the
    mapping of parameters used for Bambi's ATT)."""
    post, design = tk["idata"]["posterior"], tk["design"]
    chains = post.sizes["chain"]
    get = lambda name: _stack(post[name])  # noqa: E731
    out = {"mu_tau": get("mu_tau"), "sigma_tau": get("sigma_tau"), "sigma_unit": get("sigma_unit")}
    beta = get("beta")
    for j, name in enumerate(design.covariate_names):
        out[f"beta[{name}]"] = beta[:, j]
    v = get("period_effect")
    for j, year in enumerate(design.periods[1:], start=1):
        out[f"period[{year}]-period[{design.periods[0]}]"] = v[:, j] - v[:, 0]
    tau = get("tau")
    for j, la in enumerate(design.treated_units):
        out[f"tau[{la}]"] = tau[:, j]
    alpha, a = get("alpha"), get("unit_intercept")
    for j, la in enumerate(design.units):
        out[f"la_intercept_deviation[{la}]"] = a[:, j] - alpha
    xbar = _raw_x(design).mean(0)
    intercept = alpha + v[:, 0] - beta @ xbar      # the level at the reference year and covariate levels
    out["intercept[reference levels]"] = intercept
    att = _g_att(design, intercept, a - alpha[:, None], v - v[:, [0]], beta, tau)
    gap = float(np.max(np.abs(att - get("att"))))
    out["att_pp"] = att
    return {k: _chains(x, chains) for k, x in out.items()}, gap


def bambi_quantities(bb: dict, design) -> dict[str, np.ndarray]:
    post = bb["idata"]["posterior"]
    chains = post.sizes["chain"]
    get = lambda name: _stack(post[name])  # noqa: E731
    out = {"mu_tau": get("treat_post"), "sigma_tau": get("treat_post|la_sigma"), "sigma_unit": get("1|la_sigma")}
    beta = []
    for name in design.covariate_names:
        cov, level = name.split("[", 1)
        b = _stack(post[cov].sel({f"{cov}_dim": level[:-1]}))
        out[f"beta[{name}]"] = b
        beta.append(b)
    beta = np.column_stack(beta)
    years = [str(y) for y in design.periods]
    yr = _stack(post["year"].sel(year_dim=years[1:]))
    for j, year in enumerate(design.periods[1:]):
        out[f"period[{year}]-period[{design.periods[0]}]"] = yr[:, j]
    dev = _stack(post["treat_post|la"].sel({"la__factor_dim": design.treated_units}))
    tau = out["mu_tau"][:, None] + dev
    for j, la in enumerate(design.treated_units):
        out[f"tau[{la}]"] = tau[:, j]
    u = _stack(post["1|la"].sel({"la__factor_dim": design.units}))
    for j, la in enumerate(design.units):
        out[f"la_intercept_deviation[{la}]"] = u[:, j]
    out["intercept[reference levels]"] = get("Intercept")
    period = np.column_stack([np.zeros(len(yr)), yr])
    out["att_pp"] = _g_att(design, out["intercept[reference levels]"], u, period, beta, tau)
    return {k: _chains(x, chains) for k, x in out.items()}


def _summary(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    import arviz as az
    import xarray as xr

    ds = xr.Dataset({k.replace("/", "_"): (("chain", "draw"), v) for k, v in draws.items()})
    stat = lambda f, **kw: {k: float(v) for k, v in f(ds, **kw).data_vars.items()}  # noqa: E731
    return pd.DataFrame({
        "mean": {k: float(v.mean()) for k, v in draws.items()},
        "sd": {k: float(v.std(ddof=1)) for k, v in draws.items()},
        "mcse_mean": stat(az.mcse, method="mean"),
        "mcse_sd": stat(az.mcse, method="sd"),
        "ess_bulk": stat(az.ess, method="bulk"),
        "ess_tail": stat(az.ess, method="tail"),
        "rhat": stat(az.rhat),
    })


def compare(tk_draws: dict, bb_draws: dict, truth: dict) -> tuple[list[dict], dict]:
    a, b = _summary(tk_draws), _summary(bb_draws)
    rows = []
    for name in tk_draws:
        sd_ref = float(np.sqrt((a.at[name, "sd"] ** 2 + b.at[name, "sd"] ** 2) / 2))
        d_mean = (a.at[name, "mean"] - b.at[name, "mean"]) / sd_ref
        d_sd = (a.at[name, "sd"] - b.at[name, "sd"]) / sd_ref
        se_mean = float(np.hypot(a.at[name, "mcse_mean"], b.at[name, "mcse_mean"])) / sd_ref
        se_sd = float(np.hypot(a.at[name, "mcse_sd"], b.at[name, "mcse_sd"])) / sd_ref
        row = {"quantity": name,
               "toolkit": {k: round(float(a.at[name, k]), 5) for k in a.columns},
               "bambi": {k: round(float(b.at[name, k]), 5) for k in b.columns},
               "diff_mean_in_sd": round(d_mean, 4), "mcse_diff_mean_in_sd": round(se_mean, 4),
               "diff_sd_in_sd": round(d_sd, 4), "mcse_diff_sd_in_sd": round(se_sd, 4),
               "raw_ok": bool(abs(d_mean) <= TOLERANCE and abs(d_sd) <= TOLERANCE),
               "mcse_aware_ok": bool(abs(d_mean) <= TOLERANCE + MCSE_Z * se_mean
                                     and abs(d_sd) <= TOLERANCE + MCSE_Z * se_sd)}
        if name in truth:
            row["truth"] = round(float(truth[name]), 5)
            row["truth_in_90pct_toolkit"] = bool(np.quantile(tk_draws[name], 0.05) <= truth[name]
                                                 <= np.quantile(tk_draws[name], 0.95))
        rows.append(row)
    dm = np.array([abs(r["diff_mean_in_sd"]) for r in rows])
    ds = np.array([abs(r["diff_sd_in_sd"]) for r in rows])
    zm = dm / np.array([r["mcse_diff_mean_in_sd"] for r in rows])
    zs = ds / np.array([r["mcse_diff_sd_in_sd"] for r in rows])
    with_truth = [r for r in rows if "truth" in r]
    summary = {
        "quantities": len(rows),
        "max_abs_diff_mean_in_sd": round(float(dm.max()), 4), "worst_mean": rows[int(dm.argmax())]["quantity"],
        "max_abs_diff_sd_in_sd": round(float(ds.max()), 4), "worst_sd": rows[int(ds.argmax())]["quantity"],
        "median_mcse_diff_mean_in_sd": round(float(np.median([r["mcse_diff_mean_in_sd"] for r in rows])), 4),
        "n_raw_over_tolerance": int(sum(not r["raw_ok"] for r in rows)),
        "max_z_mean": round(float(zm.max()), 2), "max_z_sd": round(float(zs.max()), 2),
        "all_within_tolerance_raw": bool(all(r["raw_ok"] for r in rows)),
        "all_within_tolerance_mcse_aware": bool(all(r["mcse_aware_ok"] for r in rows)),
        "truth_in_90pct_toolkit": f"{sum(r['truth_in_90pct_toolkit'] for r in with_truth)}/{len(with_truth)}",
    }
    return rows, summary


def _diag(diag, idata) -> dict:
    t = diag.table
    return {"ok": diag.ok, "max_rhat": round(float(t["rhat"].max()), 4),
            "min_ess_bulk": round(float(t["ess_bulk"].min()), 1), "min_ess_tail": round(float(t["ess_tail"].min()), 1),
            "divergences": diag.divergences, "draws": diag.n_draws,
            "mean_leapfrog_steps": round(float(idata["sample_stats"]["n_steps"].mean()), 1)
            if "n_steps" in idata["sample_stats"] else None,
            "problems": diag.problems[:10]}


# ---------------------------------------------------------------- one size

def run_size(n_children: int, seed: int, settings, bambi_settings) -> dict:
    st = study(n_children, seed)
    rows = child_rows(st.children)
    print(f"[{n_children}] {len(st.children)} children ({len(rows)} after settling-in years); toolkit...", flush=True)
    tk = fit_toolkit(st.children, settings, seed)
    print(f"[{n_children}] toolkit {tk['times']['total_s']:.1f} s on {tk['info']['cells']} cells; bambi...", flush=True)
    bb = fit_bambi(rows, bambi_settings, seed)
    print(f"[{n_children}] bambi {bb['times']['total_s']:.1f} s", flush=True)
    tk_draws, gap = toolkit_quantities(tk)
    bb_draws = bambi_quantities(bb, tk["design"])
    table, summary = compare(tk_draws, bb_draws, truth_of(st))
    t, b = tk["times"], bb["times"]
    ess = lambda which, name: next(r[which]["ess_bulk"] for r in table if r["quantity"] == name)  # noqa: E731
    slowest = {which: min(r[which]["ess_bulk"] for r in table) for which in ("toolkit", "bambi")}
    ratio = {
        "total": b["total_s"] / t["total_s"],
        "sampling": b["sample_s"] / t["sample_s"],
        "compile": b["compile_s"] / t["compile_s"],
        "total_per_min_shared_ess": (b["total_s"] / slowest["bambi"]) / (t["total_s"] / slowest["toolkit"]),
        "sampling_per_sigma_tau_ess": (b["sample_s"] / ess("bambi", "sigma_tau"))
        / (t["sample_s"] / ess("toolkit", "sigma_tau")),
    }
    return {
        "children_generated": int(len(st.children)), "children_fitted": int(len(rows)),
        "cells": tk["info"]["cells"], "rows_per_cell": round(len(rows) / tk["info"]["cells"], 1),
        "settings": {"toolkit": asdict(settings), "bambi": asdict(bambi_settings)},
        "times_s": {"toolkit": {k: round(v, 2) for k, v in t.items()}, "bambi": {k: round(v, 2) for k, v in b.items()}},
        "ratio_bambi_over_toolkit": {k: round(v, 2) for k, v in ratio.items()},
        "diagnostics": {"toolkit": _diag(tk["diagnostics"], tk["idata"]), "bambi": _diag(bb["diagnostics"], bb["idata"])},
        "toolkit_info": tk["info"], "bambi_info": {k: v for k, v in bb["info"].items() if k != "priors"},
        "att_mapping_max_gap_pp": gap,
        "agreement": summary, "quantities": table,
    }


SPEC_DIFFERENCES = [
    "Level prior: the engine puts alpha ~ N(0, 2^2) on the mean LA level with zero-sum year effects and "
    "covariates centred over cells; Bambi puts Intercept ~ N(0, 2^2) on the intercept of its centred design "
    "(center_predictors=True, child-weighted means) with year contrasts against the first year. The two "
    "priors on the level differ (both weak: the level's posterior SD is ~0.1); all other priors are the same "
    "distribution on the same quantity.",
    "Year effects: the engine's v ~ ZeroSumNormal(1) is given to Bambi as its exact implied prior on the "
    "contrasts v_t - v_2010, MvNormal(0, I + 11'); compared as contrasts.",
    "LA-specific effects: Bambi's (0 + treat_post | la) has an offset for every LA; the comparators' "
    "offsets never touch the likelihood (treat_post = 0), so they are draws from their prior and leave the "
    "posterior of sigma_tau and of the pilots' effects unchanged. The engine has effects for pilots only.",
    "Parametrisation (not the model): Bambi non-centred group effects; the engine chooses the centring of "
    "the LA intercepts from the data and re-fits with the other form (and centred effects) when a fit "
    "fails its checks (toolkit_info records what it used).",
    "Settling-in years of pilots are left out of both fits (the engine drops those cells; Bambi gets the "
    "rows without them).",
    "Shared quantities derived in the same way from both posteriors: tau[LA] = mu_tau + LA deviation; "
    "la_intercept_deviation = a_l - alpha (engine) and the (1|la) offset (Bambi); intercept[reference levels] "
    "= alpha + v_2010 - xbar_cells' beta (engine) and Bambi's uncentred Intercept; att_pp g-computed over the "
    "treated post cells with n-weights from each posterior (the engine's own att equals it: "
    "att_mapping_max_gap_pp).",
]


def machine() -> dict:
    import arviz
    import bambi
    import nutpie
    import pymc

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "bambi": bambi.__version__, "pymc": pymc.__version__,
            "nutpie": nutpie.__version__, "arviz": arviz.__version__, "commit": commit,
            "load_avg_before": os.getloadavg()}


def main() -> None:
    from models.did.fit import SamplerSettings

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--children", type=int, nargs="+", default=[20_000, 200_000], help="study sizes (children)")
    ap.add_argument("--draws", type=int, default=1000, help="draws per chain (both fits)")
    ap.add_argument("--tune", type=int, default=1000, help="tuning steps per chain (both fits)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--bambi-draws", type=int, nargs="+", default=None,
                    help="Bambi's draws per chain for each size (default: --draws); fewer where Bambi is too slow")
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--quick", action="store_true", help="3,000 children, 300 + 300 draws (a smoke run)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bambi.json")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other sizes already recorded in --out (each size records its own command and machine)")
    args = ap.parse_args()
    if args.quick:
        args.children, args.draws, args.tune = [3000], 300, 300
    bambi_draws = args.bambi_draws or [args.draws] * len(args.children)
    if len(bambi_draws) != len(args.children):
        ap.error("--bambi-draws needs one value per --children size")
    settings = SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains)
    result = {"benchmark": "Bambi (nutpie, child rows) vs the toolkit's DiD engine (cells): one model",
              "command": "uv run python benchmarks/bambi.py " + " ".join(sys.argv[1:]),
              "seed": args.seed, "machine": machine(), "model": MODEL, "bambi_formula": FORMULA, "priors": PRIOR,
              "spec_differences": SPEC_DIFFERENCES,
              "criteria": {"tolerance_posterior_sd": TOLERANCE,
                           "raw": "|mean_toolkit - mean_bambi| and |sd_toolkit - sd_bambi| <= 0.1 x the pooled "
                                  "posterior SD, for every shared quantity",
                           "mcse_aware": f"the same with {MCSE_Z} Monte Carlo SEs of the difference allowed: "
                                         "|d| <= 0.1 + 2 se(d)",
                           "speed_target": "Bambi total wall / toolkit total wall >= 20 at 20,000 children"},
              "sizes": {}}
    if args.merge and args.out.exists():
        old = json.loads(args.out.read_text())
        result["sizes"] = {n: {"command": old["command"], "machine": old["machine"], **res}
                           for n, res in old["sizes"].items()}
    for n, bd in zip(args.children, bambi_draws):
        res = run_size(n, args.seed, settings, replace(settings, draws=bd))
        res["command"], res["machine"] = result["command"], {**result["machine"], "load_avg_after": os.getloadavg()}
        if bd != args.draws:
            res["note"] = (f"Bambi sampled {bd} draws per chain (the toolkit {args.draws}) to keep its run on this "
                           "machine short; its MC SEs, and the MC-SE-aware criterion, account for it")
        result["sizes"][str(n)] = res
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")   # partial results kept
    checks = {}
    for n, res in result["sizes"].items():
        agr, diag = res["agreement"], res["diagnostics"]
        checks[n] = {"posteriors_within_0.1_sd_raw": agr["all_within_tolerance_raw"],
                     "posteriors_within_0.1_sd_mcse_aware": agr["all_within_tolerance_mcse_aware"],
                     "toolkit_diagnostics_ok": diag["toolkit"]["ok"], "bambi_diagnostics_ok": diag["bambi"]["ok"],
                     "att_mapping_exact": res["att_mapping_max_gap_pp"] < 1e-6}
        if n == "20000":
            checks[n]["ratio_total_ge_20"] = res["ratio_bambi_over_toolkit"]["total"] >= 20
    result["checks"] = checks
    result["passed"] = {n: all(c.values()) for n, c in checks.items()}
    result["machine"]["load_avg_after"] = os.getloadavg()
    print(json.dumps({k: result[k] for k in ("checks", "passed")}, indent=2))
    for n, res in result["sizes"].items():
        print(n, json.dumps({k: res[k] for k in ("times_s", "ratio_bambi_over_toolkit", "agreement")}, indent=1))
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
