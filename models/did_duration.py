r"""Helpers for the hurdle-lognormal duration DiD (:func:`models.did_hierarchical.build_did_model`
with ``likelihood="hurdle_lognormal"``): posterior predictive checks in working days and the
report's frequentist DiD on mean duration as a cross-check.

Posterior predictive check (:func:`duration_ppc`): for each draw and cell, the number of
same-day assessments comes from the model's own posterior predictive (``y_obs``), and the sum
of the ``n_pos`` positive durations from the normal approximation to a sum of lognormals,
``N(n_pos e^{m + s^2/2}, n_pos (e^{s^2} - 1) e^{2m + s^2})``; observed and predicted mean
durations are then compared by arm and year.

Frequentist cross-check (:func:`mean_did`): OLS of duration on treated-post, LA and year fixed
effects and covariates with LA-clustered standard errors, computed exactly from cell means
(weighted least squares with weights ``n``: the regressors are constant within a cell, so the
point estimate and the within-LA score sums equal the record-level ones).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from models.did_hierarchical import DidDesign


@dataclass(frozen=True)
class FrequentistMean:
    estimate: float
    se: float
    ci95_low: float
    ci95_high: float
    p_value: float
    n_clusters: int
    unit: str = "working days"
    method: str = "OLS on durations, LA and year fixed effects, covariates, LA-clustered SE"

    def to_dict(self) -> dict:
        return asdict(self)


def mean_did(cells: pd.DataFrame, covariates: tuple[str, ...] | list[str] = (), *, total: str = "dur_sum",
             count: str = "n") -> FrequentistMean:
    """Record-level OLS DiD of the mean (``total / count`` per cell), from cells."""
    rows = cells[cells[count] > 0].assign(outcome=lambda f: f[total] / f[count], weight=lambda f: f[count].astype(float))
    terms = ["treated_post", "C(la)", "C(year)", *[f"C({c})" for c in covariates]]
    fit = smf.wls("outcome ~ " + " + ".join(terms), data=rows, weights=rows["weight"]).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows["la"])[0]})
    est, se = float(fit.params["treated_post"]), float(fit.bse["treated_post"])
    lo, hi = fit.conf_int().loc["treated_post"]
    return FrequentistMean(est, se, float(lo), float(hi), float(fit.pvalues["treated_post"]), int(rows["la"].nunique()))


def cell_linear_predictor(design: DidDesign, posterior, *, suffix: str = "", la_trends: bool = True,
                          treated: bool = True, max_draws: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws (samples, cells) of one part's linear predictor (main form), and the
    indices of the draws used (a random subset of at most ``max_draws``)."""
    d = design.data
    n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
    idx = np.arange(n_samples)
    if max_draws is not None and idx.size > max_draws:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_draws, replace=False))

    def get(name: str) -> np.ndarray:   # (chain, draw, ...) -> (samples, ...), chain-major
        arr = np.asarray(posterior[f"{name}{suffix}"].transpose("chain", "draw", ...).values)
        return arr.reshape(n_samples, *arr.shape[2:])[idx]
    eta = (get("alpha")[:, None] + get("la_effect")[:, d["la_idx"]] + get("period_effect")[:, d["period_idx"]]
           + get("beta") @ d["x"].T + get("common_trend")[:, None] * d["year_c"])
    if la_trends:
        eta = eta + get("la_trend")[:, d["la_idx"]] * d["year_c"]
    if treated:
        eta = eta + d["treated_post"] * get("tau")[:, d["pilot_idx"]]
    return eta, idx


def duration_ppc(design: DidDesign, idata, cells: pd.DataFrame, *, la_trends: bool = True, seed: int = 0,
                 max_draws: int = 400) -> pd.DataFrame:
    """Observed vs posterior-predicted mean duration (working days) and same-day share (%) by arm and year."""
    rng = np.random.default_rng(seed)
    post = idata["posterior"]
    m, idx = cell_linear_predictor(design, post, la_trends=la_trends, max_draws=max_draws, seed=seed)
    s = post["sigma_log"].values.reshape(-1)[idx][:, None]
    y_pred = idata["posterior_predictive"]["y_obs"].values.reshape(-1, len(cells))[idx]
    n = cells["n"].to_numpy()
    n_pos = n[None, :] - y_pred
    mu = np.exp(m + s ** 2 / 2)
    var = (np.exp(s ** 2) - 1) * np.exp(2 * m + s ** 2)
    total = np.maximum(rng.normal(n_pos * mu, np.sqrt(n_pos * var)), n_pos)
    rows = []
    for (arm, year), cidx in cells.groupby(["arm", "year"]).indices.items():
        nn = n[cidx].sum()
        pred = total[:, cidx].sum(1) / nn
        same = 100 * y_pred[:, cidx].sum(1) / nn
        rows.append({"arm": arm, "year": int(year), "n": int(nn),
                     "observed_mean_days": float(cells["dur_sum"].to_numpy()[cidx].sum() / nn),
                     "pred_mean_days": float(pred.mean()), "pred_low_days": float(np.quantile(pred, 0.025)),
                     "pred_high_days": float(np.quantile(pred, 0.975)),
                     "observed_same_day_pct": float(100 * cells["y"].to_numpy()[cidx].sum() / nn),
                     "pred_same_day_pct": float(same.mean()), "pred_same_day_low": float(np.quantile(same, 0.025)),
                     "pred_same_day_high": float(np.quantile(same, 0.975))})
    return pd.DataFrame(rows)
