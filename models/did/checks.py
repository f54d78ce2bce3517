"""Model checks of a DiD fit that need its log density: the log-likelihood of each unit, the
log prior, power-scaling sensitivity and leave-one-unit-out cross-validation.

- :func:`unit_log_likelihood`: each unit's log-likelihood (its cells summed) per draw, from the
  cells' exact likelihoods (:mod:`models.did.likelihoods`), in NumPy: what leave-one-LA-out and
  power scaling need, at a size people keep (draws x units, not draws x cells).
- :func:`add_log_groups`: the fit's ``log_likelihood`` (``y_unit``) and ``log_prior`` groups
  (the latter by PyMC from the model's own priors). The log prior holds the top-level priors
  only: the named effect prior, the hyperpriors (``sigma_*``), the fixed terms and the
  likelihood's nuisance parameters. The exchangeable group effects (unit intercepts, period
  deviations, unit trends, unit and cohort effect deviations), raw or
  centred, are left out: their distributions are part of the hierarchical model, and
  power-scaling them would change its structure, not the prior's strength (the selective
  power-scaling Kallioinen et al. 2024 recommend for hierarchical models).
- :func:`power_scaling`: ``arviz.psense_summary`` (Kallioinen et al. 2024): the cumulative
  Jensen-Shannon distance of each reported quantity's posterior when the prior or the
  likelihood is raised to a power near 1; above 0.05 flags sensitivity, and both flagged is a
  prior-data conflict.
- :func:`loo_by_unit`: PSIS-LOO leaving one unit out at a time, with each unit's Pareto k
  (above 0.7: the approximation is unreliable for that unit: it is influential).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.special import expit, log_ndtr

from models.did.likelihoods import STUDENT_NU
from models.did.model import DidModel, cell_predictors, map_draw_chunks
from models.numerics import log_binomial_coefficient

PARETO_K_MAX = 0.7


def _binomial_logit_logpmf(y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """log Binomial(y | n, logit^-1(eta)), from the log-odds directly (stable at any eta)."""
    return log_binomial_coefficient(n, y) + y * eta - n * np.logaddexp(0.0, eta)     # y log p + (n - y) log(1 - p)


def cell_log_likelihood(dm: DidModel, eta: dict, nuis: dict) -> np.ndarray:
    """Each cell's log-likelihood (draws x cells) at linear predictors ``eta``."""
    lik, d = dm.lik, dm.design.data
    y, n = np.asarray(d["y"], float), np.asarray(d["n"], float)
    e = eta.get("")
    name = lik.name
    if name == "binomial":
        return _binomial_logit_logpmf(y, n, e)
    if name == "betabinomial":
        mu = np.clip(expit(e), 1e-12, 1 - 1e-12)
        phi = nuis["phi"][:, None]
        return stats.betabinom.logpmf(y, n, mu * phi, (1 - mu) * phi)
    if name == "poisson":
        return stats.poisson.logpmf(y, n * np.exp(e))
    if name == "negbinomial":
        a = nuis["alpha_nb"][:, None]
        mean = n * np.exp(e)
        return stats.nbinom.logpmf(y, a, a / (a + mean))
    if name == "student":
        return stats.t.logpdf(y, STUDENT_NU, e, nuis["sigma_obs"][:, None] / np.sqrt(n))
    if name == "normal":
        s = nuis["sigma_obs"][:, None]
        if "y_ss" in d:
            return (-n * np.log(s) - 0.5 * n * np.log(2 * np.pi) - (d["y_ss"] + n * (y - e) ** 2) / (2 * s ** 2))
        return stats.norm.logpdf(y, e, s / np.sqrt(n))
    s = nuis["sigma_log"][:, None]      # the hurdle: same-day records, then the positive durations' density
    n_pos, log_sum, log_sq = d["n_pos"], d["log_sum"], d["log_sq"]
    positive = (-n_pos * np.log(s) - 0.5 * n_pos * np.log(2 * np.pi) - log_sum
                - (log_sq - 2 * e * log_sum + n_pos * e ** 2) / (2 * s ** 2)
                - n_pos * log_ndtr((d["log_upper"] - e) / s))     # truncated at a cut-off (none: 0)
    return _binomial_logit_logpmf(y, n, eta["_zero"]) + positive


def unit_log_likelihood(dm: DidModel, posterior, *, chunk: int = 500) -> xr.DataArray:
    """Each unit's log-likelihood per draw (chain, draw, unit), summed over its cells."""
    design = dm.design
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    total = n_chain * n_draw
    unit = design.data["unit_idx"]
    by_unit = np.zeros((len(unit), len(design.units)))     # cells x units: 1 where the cell is the unit's
    by_unit[np.arange(len(unit)), unit] = 1.0

    def by_units(idx: np.ndarray) -> np.ndarray:
        _, eta, nuis = cell_predictors(dm, posterior, idx=idx)
        return cell_log_likelihood(dm, eta, nuis) @ by_unit

    out = np.concatenate(map_draw_chunks(by_units, total, chunk=chunk))
    return xr.DataArray(out.reshape(n_chain, n_draw, -1), dims=("chain", "draw", "unit"),
                        coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values,
                                "unit": design.units})


GROUP_EFFECTS = ("unit_intercept", "unit_raw", "period_raw", "trend_raw", "tau", "tau_raw", "event_raw",
                 "cohort_raw", "unit_effect_raw")


def top_level_priors(dm: DidModel, posterior) -> list[str]:
    """The free variables whose priors are power-scaled (see the module docstring)."""
    out = []
    for rv in dm.model.free_RVs:
        base = rv.name
        for suffix in dm.lik.parts:
            if suffix and base.endswith(suffix):
                base = base[: -len(suffix)]
        if base not in GROUP_EFFECTS and rv.name in posterior:
            out.append(rv.name)
    return out


def add_log_groups(dm: DidModel, idata: xr.DataTree) -> xr.DataTree:
    """The fit with its ``log_likelihood`` (``y_unit``: by unit) and ``log_prior`` groups."""
    import pymc as pm

    post = idata["posterior"]
    idata["log_likelihood"] = xr.Dataset({"y_unit": unit_log_likelihood(dm, post)})
    free = top_level_priors(dm, post)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lp = pm.stats.compute_log_prior(idata, var_names=free, model=dm.model, extend_inferencedata=False,
                                        progressbar=False)
    idata["log_prior"] = lp if isinstance(lp, xr.Dataset) else lp["log_prior"].to_dataset()
    return idata


def power_scaling(idata: xr.DataTree, var_names: list[str]) -> pd.DataFrame:
    """Prior and likelihood power-scaling sensitivity of ``var_names`` (arviz-stats)."""
    import arviz as az

    names = [v for v in var_names if v in idata["posterior"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.psense_summary(idata, var_names=names)
    frame = table.reset_index() if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    return frame.rename(columns={"index": "variable"})


def loo_by_unit(idata: xr.DataTree, unit_word: str = "unit") -> tuple[pd.DataFrame, dict]:
    """PSIS leave-one-unit-out: each unit's elpd and Pareto k, and the totals."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(idata, pointwise=True, var_name="y_unit")
    units = list(idata["log_likelihood"]["y_unit"]["unit"].values)
    k = np.asarray(res.pareto_k).ravel()
    elpd_i = np.asarray(res.elpd_i).ravel()
    table = pd.DataFrame({unit_word: units, "elpd_loo": elpd_i, "pareto_k": k,
                          "reliable": k <= PARETO_K_MAX})
    summary = {"elpd_loo": float(res.elpd), "se": float(res.se), "p_loo": float(res.p),
               "n_units": len(units), "units_with_pareto_k_above_0.7": [u for u, kk in zip(units, k) if kk > PARETO_K_MAX],
               "max_pareto_k": float(np.max(k)) if k.size else float("nan")}
    return table, summary
