r"""Hierarchical Bayesian difference-in-differences for child-level binary outcomes.

Data are binomial cells ``c`` (LA x financial year x covariate stratum) with ``n_c`` children
and ``y_c`` outcomes (see :mod:`data.did_input`); settling-in years of pilots are left out.

Model (``build_did_model``)::

    y_c ~ Binomial(n_c, p_c)
    logit p_c = alpha + u[la_c] + g[la_c] * t_c + v[period_c] + x_c' beta + D_c * tau[la_c]
    alpha ~ N(0, 2^2)                       global intercept
    u ~ ZeroSumNormal(sigma_la),            sigma_la ~ HalfNormal(1)      LA effects
    g = sigma_trend * g_raw,                g_raw ~ ZeroSumNormal(1),
                                            sigma_trend ~ HalfNormal(0.1) LA linear trends
    v ~ ZeroSumNormal(sigma_period),        sigma_period ~ HalfNormal(0.5) period (year) effects
    beta ~ N(0, 1)                          covariate contrasts (treatment coding, centred)
    tau[l] = mu_tau + sigma_tau * z_l,      z_l ~ N(0, 1)                 LA-specific effects
    mu_tau ~ N(m, s^2)                      the named prior (sceptical / neutral / enthusiastic)
    sigma_tau ~ HalfNormal(0.5)             between-LA SD of the effect (log-odds)

``D_c`` (``treated_post``) is 1 for pilot cells after settling-in; ``t_c`` is the year centred
on the study's middle year. LA and period effects are zero-sum (they mix well next to the
intercept); trends and LA-specific effects are non-centred.

Quantities reported on the percentage-point scale, by g-computation over treated post cells::

    att_pp       = 100 * sum_c n_c [expit(eta_c) - expit(eta_c - tau_c)] / sum_c n_c
    att_relative = sum_c n_c [expit(eta_c) - expit(eta_c - tau_c)] / sum_c n_c expit(eta_c - tau_c)
    att_la_pp    = att_pp restricted to each pilot's cells
    att_typical_pp = as att_pp with every tau_c replaced by mu_tau: the effect for a typical LA

``att_pp`` is the effect in *these* pilot LAs (sample ATT); ``att_typical_pp`` carries the
between-LA uncertainty through ``mu_tau`` and is the effect to expect in LAs like them.

Event-study form (``event_study=True``): ``D_c * tau`` is replaced by ``sum_k E_ck * delta_k``
for pilot cells with years relative to adoption ``k`` in a window (end bins pooled, ``k = -1``
the reference, settling-in years included), ``delta_k ~ N(0, 1)``; LA trends are left out,
because they would absorb the pre-trends the event study is there to show. The pre-period
``event_pp`` (pp, g-computation per bin) test parallel trends: P(|event_pp[k]| > 2 pp), k < -1.

Assumptions: parallel trends after LA-specific linear trends (main form); no anticipation
before adoption; effects constant after settling-in within an LA; children independent given
the cell (see ``analyses.rereferral`` for repeated children); treatment status is correct.

The prior on ``mu_tau`` lives in ``pm.Data`` (``prior_mean``, ``prior_sd``), so a compiled
model is re-used across the named priors and across datasets with new cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit, logit

from models.priors import NamedPrior, spiegelhalter_priors

EVENT_WINDOW = (-4, 4)
REFERENCE_EVENT_TIME = -1


@dataclass
class DidDesign:
    """Numeric arrays for the model, built from tidy cells by :func:`did_design`."""

    las: list[str]
    pilots: list[str]
    years: list[int]
    covariate_names: list[str]
    event_labels: list[str]
    data: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def coords(self) -> dict[str, list]:
        return {"la": self.las, "pilot": self.pilots, "period": self.years,
                "covariate": self.covariate_names, "event_time": self.event_labels}


def event_bins(window: tuple[int, int] = EVENT_WINDOW) -> list[int]:
    lo, hi = window
    return [k for k in range(lo, hi + 1) if k != REFERENCE_EVENT_TIME]


def event_label(k: int, window: tuple[int, int] = EVENT_WINDOW) -> str:
    lo, hi = window
    return f"<={k}" if k == lo else f">={k}" if k == hi else str(k)


def did_design(cells: pd.DataFrame, *, las: list[str], pilots: list[str], years: list[int],
               covariates: tuple[str, ...] | list[str], window: tuple[int, int] = EVENT_WINDOW) -> DidDesign:
    """Index arrays, treatment coding of covariates, treated-post and event-time indicators.

    ``cells`` has the columns of :class:`data.did_input.DidCells` (la, year, n, y, treated_post,
    rel_time, covariates). Covariate levels are coded against the first level (sorted).
    """
    la_idx = pd.Categorical(cells["la"], categories=las).codes
    if (la_idx < 0).any():
        raise ValueError("cells contain an LA that is not in `las`")
    period_idx = pd.Categorical(cells["year"], categories=years).codes
    columns, names = [], []
    for cov in covariates:
        levels = sorted(cells[cov].astype(str).unique())
        for level in levels[1:]:
            columns.append((cells[cov].astype(str) == level).to_numpy(float))
            names.append(f"{cov}[{level}]")
    x = np.column_stack(columns) if columns else np.zeros((len(cells), 0))
    x = x - x.mean(axis=0)  # centred contrasts: alpha is the average log-odds, not the baseline stratum
    pilot_lookup = {la: i for i, la in enumerate(pilots)}
    pilot_idx = np.array([pilot_lookup.get(la, 0) for la in cells["la"]], dtype=int)
    centre = (min(years) + max(years)) / 2
    bins = event_bins(window)
    rel = cells["rel_time"].to_numpy(float)
    clipped = np.clip(rel, window[0], window[1])
    event = np.zeros((len(cells), len(bins)))
    for j, k in enumerate(bins):
        event[:, j] = (clipped == k) & np.isfinite(rel)
    data = {
        "la_idx": la_idx.astype(int),
        "period_idx": period_idx.astype(int),
        "year_c": (cells["year"].to_numpy(float) - centre),
        "x": x,
        "treated_post": cells["treated_post"].to_numpy(float),
        "pilot_idx": pilot_idx,
        "event": event,
        "n": cells["n"].to_numpy(int),
        "y": cells["y"].to_numpy(int),
    }
    return DidDesign(list(las), list(pilots), list(years), names,
                     [event_label(k, window) for k in bins], data)


def effect_priors(pre_level: float, *, relative_target: float = 0.2, direction: int = +1,
                  outcome_label: str = "the outcome", likelihood: str = "binomial",
                  outcome_sd: float | None = None) -> dict[str, NamedPrior]:
    """Named priors for ``mu_tau`` anchored to the programme's claimed 20% shift.

    Binomial: the target is the log-odds ratio that moves the pre-period share ``pre_level`` by
    ``relative_target`` (relative) in ``direction`` (+1: the programme expects a rise); the
    neutral prior is N(0, 1) on the log-odds scale. Normal: the target is
    ``direction * relative_target * pre_level`` in the outcome's units and the neutral prior's
    SD is ``2 * outcome_sd`` (the outcome's SD across cells).
    """
    label = f"the programme's {relative_target:.0%} {'rise' if direction > 0 else 'fall'} in {outcome_label}"
    if likelihood == "normal":
        if outcome_sd is None or not outcome_sd > 0:
            raise ValueError("the normal likelihood's priors need the outcome's SD (> 0)")
        target = direction * relative_target * abs(pre_level)
        return spiegelhalter_priors(target, neutral_sd=2.0 * outcome_sd, scale="outcome units",
                                    target_label=label)
    if not 0 < pre_level < 1:
        raise ValueError(f"pre-period share must lie in (0, 1), got {pre_level}")
    moved = float(np.clip(pre_level * (1 + direction * relative_target), 1e-6, 1 - 1e-6))
    target = float(logit(moved) - logit(pre_level))
    return spiegelhalter_priors(target, neutral_sd=1.0, scale="log-odds ratio", target_label=label)


def _segment_mean(values, weights, segment, n_segments):
    num = pt.inc_subtensor(pt.zeros(n_segments)[segment], values * weights)
    den = pt.inc_subtensor(pt.zeros(n_segments)[segment], weights)
    return num / pt.maximum(den, 1e-12)


LIKELIHOODS = ("binomial", "normal")


def effect_names(likelihood: str = "binomial") -> dict[str, str]:
    """Names of the reported deterministics: '_pp' (percentage points) for binomial outcomes,
    the outcome's own units for the normal likelihood."""
    suffix = "_pp" if likelihood == "binomial" else ""
    return {"att": f"att{suffix}", "att_la": f"att_la{suffix}", "att_typical": f"att_typical{suffix}",
            "counterfactual": f"counterfactual{suffix}", "att_relative": "att_relative",
            "event": f"event{suffix}"}


def build_did_model(design: DidDesign, prior: NamedPrior, *, la_trends: bool = True,
                    event_study: bool = False, likelihood: str = "binomial") -> pm.Model:
    """The hierarchical DiD (or its event-study form) as a ``pm.Model``; see module docstring.

    ``likelihood="normal"`` models cell means ``y_c`` with weights ``n_c`` on the identity link,
    ``y_c ~ N(eta_c, sigma_obs^2 / n_c)``, ``sigma_obs ~ HalfNormal(2 sd(y))``, for continuous
    LA-level indicators (rates in %, caseloads); ``alpha ~ N(mean(y), (2 sd(y))^2)``; effects are
    then in the outcome's units and the hierarchy scales (LA, period, trend, effect SDs) are
    multiplied by sd(y).
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    d = design.data
    names = effect_names(likelihood)
    binomial = likelihood == "binomial"
    scale = 1.0 if binomial else float(max(np.std(d["y"]), 1e-6))
    with pm.Model(coords=design.coords) as model:
        la_idx = pm.Data("la_idx", d["la_idx"])
        period_idx = pm.Data("period_idx", d["period_idx"])
        year_c = pm.Data("year_c", d["year_c"])
        x = pm.Data("x", d["x"])
        n = pm.Data("n", d["n"])
        y = pm.Data("y", d["y"])
        prior_mean = pm.Data("prior_mean", prior.mean)
        prior_sd = pm.Data("prior_sd", prior.sd)

        alpha = pm.Normal("alpha", 0.0 if binomial else float(np.mean(d["y"])), 2.0 * scale)
        sigma_la = pm.HalfNormal("sigma_la", 1.0 * scale)
        u = pm.ZeroSumNormal("la_effect", sigma=sigma_la, dims="la")
        sigma_period = pm.HalfNormal("sigma_period", 0.5 * scale)
        v = pm.ZeroSumNormal("period_effect", sigma=sigma_period, dims="period")
        beta = pm.Normal("beta", 0.0, 1.0 * scale, dims="covariate")
        eta0 = alpha + u[la_idx] + v[period_idx] + pt.dot(x, beta)
        if la_trends and not event_study:
            sigma_trend = pm.HalfNormal("sigma_trend", 0.1 * scale)
            g_raw = pm.ZeroSumNormal("trend_raw", sigma=1.0, dims="la")
            trend = pm.Deterministic("la_trend", sigma_trend * g_raw, dims="la")
            eta0 = eta0 + trend[la_idx] * year_c
        to_scale = pm.math.invlogit if binomial else (lambda e: e)
        unit = 100.0 if binomial else 1.0

        if event_study:
            event = pm.Data("event", d["event"])
            delta = pm.Normal("event_effect", 0.0, 1.0 * scale, dims="event_time")
            eta = eta0 + pt.dot(event, delta)
            p1, p0 = to_scale(eta), to_scale(eta0)
            w = event * n[:, None]
            pm.Deterministic(names["event"], unit * pt.sum(w * (p1 - p0)[:, None], axis=0)
                             / pt.maximum(pt.sum(w, axis=0), 1e-12), dims="event_time")
        else:
            treated_post = pm.Data("treated_post", d["treated_post"])
            pilot_idx = pm.Data("pilot_idx", d["pilot_idx"])
            mu_tau = pm.Normal("mu_tau", prior_mean, prior_sd)
            sigma_tau = pm.HalfNormal("sigma_tau", 0.5 * scale)
            z = pm.Normal("tau_raw", 0.0, 1.0, dims="pilot")
            tau = pm.Deterministic("tau", mu_tau + sigma_tau * z, dims="pilot")
            eta = eta0 + treated_post * tau[pilot_idx]
            p1, p0 = to_scale(eta), to_scale(eta0)
            w = treated_post * n
            pm.Deterministic(names["att"], unit * pt.sum(w * (p1 - p0)) / pt.sum(w))
            pm.Deterministic("att_relative", pt.sum(w * (p1 - p0)) / pt.sum(w * p0))
            pm.Deterministic(names["counterfactual"], unit * pt.sum(w * p0) / pt.sum(w))
            p_typical = to_scale(eta0 + mu_tau)
            pm.Deterministic(names["att_typical"], unit * pt.sum(w * (p_typical - p0)) / pt.sum(w))
            pm.Deterministic(names["att_la"], unit * _segment_mean(p1 - p0, w, pilot_idx, len(design.pilots)),
                             dims="pilot")
        if binomial:
            pm.Binomial("y_obs", n=n, logit_p=eta, observed=y)
        else:
            sigma_obs = pm.HalfNormal("sigma_obs", 2.0 * scale)
            pm.Normal("y_obs", mu=eta, sigma=sigma_obs / pt.sqrt(n), observed=y)
    return model


def model_data(design: DidDesign, prior: NamedPrior | None = None, *, event_study: bool = False) -> dict:
    """Values for the model's ``pm.Data`` containers (for re-use of a compiled model)."""
    keys = ["la_idx", "period_idx", "year_c", "x", "n", "y"]
    keys += ["event"] if event_study else ["treated_post", "pilot_idx"]
    out = {k: design.data[k] for k in keys}
    if prior is not None:
        out["prior_mean"] = np.asarray(prior.mean, dtype=float)
        out["prior_sd"] = np.asarray(prior.sd, dtype=float)
    return out


def att_from_draws(design: DidDesign, posterior, *, la_trends: bool = True) -> np.ndarray:
    """The g-computation ATT (pp) recomputed in NumPy from posterior draws of the parameters.

    An independent check of the ``att_pp`` deterministic: ``posterior`` is the DataTree's
    posterior group; returns an array (chain, draw).
    """
    d = design.data
    sel = d["treated_post"] == 1
    stack = lambda name: np.asarray(posterior[name].values)  # noqa: E731
    eta0 = (stack("alpha")[..., None] + stack("la_effect")[..., d["la_idx"][sel]]
            + stack("period_effect")[..., d["period_idx"][sel]]
            + np.einsum("cdk,nk->cdn", stack("beta"), d["x"][sel]))
    if la_trends:
        eta0 = eta0 + stack("la_trend")[..., d["la_idx"][sel]] * d["year_c"][sel]
    tau = stack("tau")[..., d["pilot_idx"][sel]]
    w = d["n"][sel]
    diff = expit(eta0 + tau) - expit(eta0)
    return 100 * (diff * w).sum(-1) / w.sum()
