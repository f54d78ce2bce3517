r"""The one hierarchical DiD of the toolkit: linear predictor, effects, g-computation.

For a cell ``c`` of unit ``i``, period ``t`` (centred time ``s_t``) and covariates ``x_c``, each
part of the likelihood (one; the duration hurdle has two, the same-day part suffixed
``_zero``) has the untreated linear predictor::

    eta0_c = a_i + v_t + (c0 + g_i) s_t + x_c' beta + pi[c]
    a_i   = alpha + kappa[cohort(i)] + sigma_unit z_i    unit intercepts, partially pooled around
                                                         their adoption cohort's level (centred:
                                                         a_i ~ N(alpha + kappa, sigma_unit^2))
    kappa ~ ZeroSumNormal(s)                             cohort levels (a correlated random effect:
                                                         cohorts are not pulled towards each other, so
                                                         DiD contrasts equal the fixed-effects ones)
    sigma_unit ~ HalfNormal(s),  alpha ~ N(m0, (2 s)^2)
    v ~ ZeroSumNormal(0.5 s)... see ``period_effects``  period effects
    g ~ sigma_trend ZeroSumNormal(1), sigma_trend ~ HalfNormal(0.1 s)     unit trends (optional)
    beta ~ N(0, s^2)                                     covariate contrasts (centred)
    pi = B w,  w ~ N(0, s^2)                             pre-trend terms (models.did.design)

and the treated predictor ``eta_c = eta0_c + D_c tau_c`` on the effect cells ``D_c = 1``:

``effects="cohort_period"`` (ATT(g,t))::

    tau_{g,t} = mu_tau + delta_{t-g} + sigma_cohort (B_w z)_{g,t}
    delta = s B_W u,  u ~ N(0, 1)      event-time deviations (a fixed, wide scale s: event times are
                                       tied by mu_tau, not shrunk towards each other)
    sigma_cohort ~ HalfNormal(s_w),  z ~ N(0, 1)
                                       cohorts' deviations, partially pooled within each event time
    B_W, B_w                           orthonormal bases (:func:`constrained_basis`): the deviations
                                       have a zero mean under the weights of the ``simple`` aggregate
                                       (W_e: post-adoption weight at event time e; w: within e)
    optional unit deviations: + sigma_dev (K v)_i, v ~ N(0, 1), K the same basis within each cohort,
                               sigma_dev ~ HalfNormal(0.5 s_w)

so that, on the identity link, ``mu_tau`` *is* the simple aggregate of ATT(g,t) and the named
prior on it is a prior on the reported ``simple`` effect (on other links, on its link-scale
counterpart). ``s_w`` is the within-unit scale (:func:`change_scale`).

``effects="unit"`` (one effect per treated unit, constant after settling-in)::

    tau_i = mu_tau + gamma (M_i - mean M) + sigma_tau z_i,   sigma_tau ~ HalfNormal(b 0.5 s_w)

In both, ``mu_tau ~ N(m, sd^2)`` is the named prior (``pm.Data`` ``prior_mean``/``prior_sd``,
``..._zero`` for the hurdle's same-day part), and ``b`` its between-unit scale (``prior_between``,
1 unless the named prior needs a smaller spread to keep its promise), so one compiled model
serves every prior.
``s`` is the outcome's scale: 1 on logit and log links, sd(y) on the identity link; ``s_w``
(:func:`change_scale`) the scale of changes within a unit (1, or the within-unit sd), used for
period effects, trends, pre-trend terms and every effect SD.

``period_effects="fixed"`` (default): ``v ~ ZeroSumNormal(period_sd s)`` with a fixed scale
(nuisance effects, not shrunk). ``"hierarchical"``: ``v = sigma_period B u`` with ``B``
orthonormal to a constant and to time, ``sigma_period ~ HalfNormal(0.5 s)``, and a common
trend ``c0 ~ N(0, (0.5 s)^2)``: the years' deviations from a common linear trend, shrunk.

Reported by g-computation on the response scale (probability, rate, mean, mean duration;
times the reading ``factor``, e.g. 100 for percentage points), with ``w_c = n_c``::

    att_gt[g,t]   = sum_{c in (g,t)} w_c [r(eta_c) - r(eta0_c)] / sum w_c       ATT(g,t)
    att           = the same over every post-adoption effect cell (e >= 0)        these units
    att_unit[i]   = the same over unit i's post cells
    counterfactual, att_relative = sum w [r(eta) - r(eta0)] / sum w r(eta0)
    att_average   = att with every tau replaced by mu_tau (unit structure): the effect for the
                    average unit, its mean effect applied to these units' cells

Three estimands, named alike in every output (:func:`estimand_draws`): the effect in *these*
treated units (``att``), the effect for the *average* unit (``att_average``), and the predictive
effect for a *new* unit like them (each posterior draw draws a new unit's effect from the
population, ``tau_new ~ N(mu_tau, sigma_tau^2)``, or for ATT(g,t) a new cohort's and unit's
deviations, and applies it to these units' cells).

Binomial, unit-structure extensions: ``moderator`` (above); ``repeated`` (a child random
effect, population-averaged by Gauss-Hermite quadrature; children seen more than once enter
with their exact marginal likelihood); and two models of a population recorded with errors
(the SofS NFA coding), each with the effect weighted by the cell's true population:

- ``misclassification`` (contamination): a share ``m_c`` of a cell's ``n_c`` records does not
  belong to the population and has its own probability ``q``: ``y ~ Binomial(n, (1 - m)
  expit(eta) + m expit(q))``; the population is ``(1 - m_c) n_c`` records, the effects'
  weights.
- ``undercoding`` (selection): a share ``u_c`` of the population was coded otherwise and is
  missing from the records, and whether a record kept its code may depend on its outcome:
  with retention probabilities ``r_1`` (outcome 1) and ``r_0`` (outcome 0), the recorded
  records' log-odds are the population's shifted by ``log psi``, ``psi = r_1 / r_0``:
  ``y ~ Binomial(n, expit(eta + log psi))`` in the under-coded cells, and the population is
  ``n_c / (1 - u_c)`` records, the effects' weights. ``psi = 1`` is under-coding at random (no
  bias, other weights); ``psi`` is not identified by the data, so it is a sensitivity
  parameter (``selection``, the log of psi in each under-coded cell, and ``undercoded`` are
  data: one compiled model serves a grid).

Assumptions: parallel trends of untreated outcomes given the model's unit, period, trend and
covariate terms; no anticipation beyond ``anticipation`` periods; no spillovers; cells
independent given the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.math import softplus

from models.did.design import PERIOD_EFFECTS, DidDesign, constrained_basis, group_basis
from models.did.likelihoods import Likelihood, binomial_logit
from models.priors import NamedPrior
from models.numerics import log_binomial_coefficient

QUADRATURE_NODES = 9
#: The ``pm.Data`` holding the named priors' hyper-parameters.
#: The between-unit SD's default prior scale (unit structure), in units of ``s_w``:
#: ``sigma_tau ~ HalfNormal(between_scale x BETWEEN_SD x s_w)``, ``between_scale`` from the named prior.
BETWEEN_SD = 0.5
PRIOR_DATA = ("prior_mean", "prior_sd", "prior_between", "prior_mean_zero", "prior_sd_zero", "prior_between_zero")


@dataclass(frozen=True)
class ModelSpec:
    """Priors' scales and parametrisation (multiples of the outcome's scale ``s``)."""

    period_effects: str = "fixed"
    period_sd: float = 1.0
    cohort_levels: bool = True
    unit_centred: bool | None = None       # None: chosen from the data (:func:`choose_centring`)
    effect_centred: bool | None = None     # unit structure: tau ~ N(mu_tau, sigma_tau) when True;
                                           # None: non-centred, re-fitted centred if it mixes badly
    period_centred: bool = False           # hierarchical period deviations centred (main part only)
    unit_deviations: bool = False          # cohort_period: units' deviations within their cohort
    factor: float | None = None            # response -> reading units (default: the likelihood's)
    trend_centred: bool = False            # unit trends g ~ ZeroSumNormal(sigma_trend) (default: non-centred)
    factorised: bool = False               # binomial: the likelihood on a unit-period x stratum grid
                                           # (:func:`factorised_binomial`; the same density, faster).
                                           # Opt-in, used by benchmarks/national.py: a Potential, so
                                           # no pointwise log-likelihood or posterior predictive

    def __post_init__(self) -> None:
        if self.period_effects not in PERIOD_EFFECTS:
            raise ValueError(f"period_effects must be one of {PERIOD_EFFECTS}, got {self.period_effects!r}")

    def reading_factor(self, lik: Likelihood) -> float:
        return lik.factor if self.factor is None else self.factor


#: The SofS child-level analyses' model (kinship, re-referral, escalation, duration; and the
#: simulation studies of it): hierarchical period effects around a common trend, unit
#: intercepts pooled around one mean (the model of the earlier releases, whose answers the
#: engine keeps).
SOFS_MODEL_SPEC = ModelSpec(period_effects="hierarchical", cohort_levels=False)


@dataclass
class DidModel:
    """A built model with what is needed to read it."""

    model: pm.Model
    design: DidDesign
    spec: ModelSpec
    unit_centred: bool
    scale: float
    change: float
    data_names: tuple[str, ...] = ()       # the pm.Data the model reads

    @property
    def lik(self) -> Likelihood:
        return self.design.lik


def outcome_scale(design: DidDesign) -> float:
    """``s``: 1 on logit and log links; the sd of the cell values on the identity link."""
    if not design.lik.identity:
        return 1.0
    return float(max(np.std(design.data["y"]), 1e-6))


def change_scale(design: DidDesign) -> float:
    """``s_w``: 1 on logit and log links; on the identity link the sd of the cell values
    around their unit's mean (how much an outcome moves within a unit: the natural scale of
    period effects, trends and treatment effects), never below 5% of ``s``."""
    if not design.lik.identity:
        return 1.0
    d = design.data
    y = np.asarray(d["y"], float)
    frame = pd.DataFrame({"u": d["unit_idx"], "y": y})
    within = float(np.std(y - frame.groupby("u")["y"].transform("mean").to_numpy()))
    return max(within, 0.05 * outcome_scale(design))


def choose_centring(design: DidDesign) -> bool:
    """Centred unit intercepts when each unit's data pin its level more tightly than units
    differ (the centred form then has no funnel; the non-centred form has a ridge).

    The data's precision for a unit's level is approximated on the link scale (binomial:
    ``sum n p (1 - p)``; counts: ``sum n rate``; identity: ``sum n / sigma_w^2`` with the
    within-unit sd); the spread of units from the sd of their raw levels. Centred when the
    median unit's ``precision x spread^2`` exceeds 1.
    """
    d, lik = design.data, design.lik
    frame = pd.DataFrame({"u": d["unit_idx"], "y": np.asarray(d["y"], float), "n": d["n"]})
    if lik.identity:
        level = frame.groupby("u").apply(lambda f: np.average(f["y"], weights=f["n"]), include_groups=False)
        resid = frame["y"] - frame["u"].map(level)
        sw2 = max(float(np.average(resid ** 2, weights=frame["n"])), 1e-12)
        precision = frame.groupby("u")["n"].sum() / sw2
    else:
        agg = frame.groupby("u")[["y", "n"]].sum()
        if lik.link == "log" and not lik.hurdle:
            rate = (agg["y"] + 0.5) / agg["n"]
            level = np.log(rate)
            precision = agg["y"] + 0.5
        else:
            p = ((agg["y"] + 0.5) / (agg["n"] + 1)).clip(1e-4, 1 - 1e-4)
            level = np.log(p / (1 - p))
            precision = agg["n"] * p * (1 - p)
    spread = float(np.std(level)) if len(level) > 1 else 1.0
    spread = max(spread, 0.05 * (outcome_scale(design) if lik.identity else 1.0))
    return bool(np.median(precision * spread ** 2) > 1.0)


def period_basis(periods) -> np.ndarray:
    """Orthonormal columns spanning period effects with no mean and no linear trend."""
    t = np.asarray(periods, dtype=float)
    x = np.column_stack([np.ones(t.size), t - t.mean()])[:, : min(2, t.size)]
    u, _, _ = np.linalg.svd(x, full_matrices=True)
    return u[:, x.shape[1]:]


def unit_weights(design: DidDesign) -> np.ndarray:
    """Each treated unit's total weight (``n``) in post-adoption effect cells."""
    d = design.data
    post = (d["gt_idx"] >= 0) & (d["event_time"] >= 0)
    return np.bincount(d["treated_unit_idx"][post], weights=d["n"][post], minlength=len(design.treated_units))


def _gauss_hermite(k: int = QUADRATURE_NODES) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(k)
    return nodes, weights / weights.sum()


def _mean0(design: DidDesign, part: str) -> float:
    d, lik = design.data, design.lik
    if lik.identity:
        return float(np.average(np.asarray(d["y"], float), weights=np.maximum(d["n"], 1e-12)))
    if part == "" and lik.hurdle:
        return float(d["log_sum"].sum() / max(d["n_pos"].sum(), 1))
    return 0.0


def _part(design: DidDesign, spec: ModelSpec, data: dict, *, suffix: str, scale: float, change: float,
          unit_centred: bool, prior_mean, prior_sd, prior_between, moderator) -> dict:
    """One part's untreated and treated linear predictors (variables named with ``suffix``);
    ``scale`` sets the priors of levels, ``change`` those of changes within units."""
    ds, d = design.spec, design.data
    alpha = pm.Normal(f"alpha{suffix}", _mean0(design, suffix), 2.0 * scale)
    sigma_unit = pm.HalfNormal(f"sigma_unit{suffix}", 1.0 * scale)
    centre = alpha
    if spec.cohort_levels and len(design.cohort_levels) > 1:
        kappa = pm.ZeroSumNormal(f"cohort_level{suffix}", sigma=1.0 * scale, dims="cohort")
        centre = alpha + kappa[d["unit_cohort_idx"]]
    if unit_centred:
        a = pm.Normal(f"unit_intercept{suffix}", centre, sigma_unit, dims="unit")
    else:
        z = pm.Normal(f"unit_raw{suffix}", 0.0, 1.0, dims="unit")
        a = pm.Deterministic(f"unit_intercept{suffix}", centre + sigma_unit * z, dims="unit")
    if spec.period_effects == "fixed":
        v = pm.ZeroSumNormal(f"period_effect{suffix}", sigma=spec.period_sd * change, dims="period")
        trend = 0.0
    else:
        sigma_period = pm.HalfNormal(f"sigma_period{suffix}", 0.5 * change)
        basis = period_basis(design.periods)
        if spec.period_centred and suffix == "":
            raw = pm.Normal(f"period_raw{suffix}", 0.0, sigma_period, dims="period_deviation")
            v = pm.Deterministic(f"period_effect{suffix}", pt.dot(basis, raw), dims="period")
        else:
            raw = pm.Normal(f"period_raw{suffix}", 0.0, 1.0, dims="period_deviation")
            v = pm.Deterministic(f"period_effect{suffix}", sigma_period * pt.dot(basis, raw), dims="period")
        trend = pm.Normal(f"common_trend{suffix}", 0.0, 0.5 * change) * data["time_c"]
    eta0 = a[data["unit_idx"]] + v[data["period_idx"]] + trend
    if "x" in data:
        beta = pm.Normal(f"beta{suffix}", 0.0, 1.0 * scale, dims="covariate")
        eta0 = eta0 + pt.dot(data["x"], beta)
    if ds.unit_trends:
        sigma_trend = pm.HalfNormal(f"sigma_trend{suffix}", 0.1 * change)
        if spec.trend_centred:
            g = pm.ZeroSumNormal(f"unit_trend{suffix}", sigma=sigma_trend, dims="unit")
        else:
            g_raw = pm.ZeroSumNormal(f"trend_raw{suffix}", sigma=1.0, dims="unit")
            g = pm.Deterministic(f"unit_trend{suffix}", sigma_trend * g_raw, dims="unit")
        eta0 = eta0 + g[data["unit_idx"]] * data["time_c"]
    basis = d["pre_basis"]
    if basis.shape[1]:
        w = pm.Normal(f"pretrend_raw{suffix}", 0.0, 1.0 * change, dims="pretrend_param")
        pi = pm.Deterministic(f"pretrend{suffix}", pt.dot(basis, w), dims="pre_cohort_period")
        cell_pi = data["has_pre"] * pi[data["pre_pos"]]
        eta0 = eta0 + cell_pi
    else:
        cell_pi = None

    out = {"eta0": eta0, "cell_pi": cell_pi}
    mu_tau = pm.Normal(f"mu_tau{suffix}", prior_mean, prior_sd)
    out["mu_tau"] = mu_tau
    if ds.effects == "unit":
        sigma_tau = pm.HalfNormal(f"sigma_tau{suffix}", prior_between * BETWEEN_SD * change)
        shift = 0.0
        if moderator is not None:
            gamma = pm.Normal(f"moderator_effect{suffix}", 0.0, 1.0 * change)
            mc = pt.mean(moderator)
            shift = gamma * (moderator - mc)
            out["typical_high"] = mu_tau + gamma * (1.0 - mc)
            out["typical_low"] = mu_tau - gamma * mc
        if spec.effect_centred:
            tau = pm.Normal(f"tau{suffix}", mu_tau + shift, sigma_tau, dims="treated_unit")
        else:
            z = pm.Normal(f"tau_raw{suffix}", 0.0, 1.0, dims="treated_unit")
            tau = pm.Deterministic(f"tau{suffix}", mu_tau + shift + sigma_tau * z, dims="treated_unit")
        cell_tau = tau[data["treated_unit_idx"]]
    else:
        events = np.array(sorted(set(d["gt_event"])))
        ev_idx = np.searchsorted(events, d["gt_event"])
        w_gt = d["gt_weight"] * (d["gt_event"] >= 0)        # the simple aggregate's weights
        w_ev = np.bincount(ev_idx, weights=w_gt, minlength=len(events))
        delta = 0.0
        if len(events) > 1:
            z_ev = pm.Normal(f"event_raw{suffix}", 0.0, 1.0, shape=len(events) - 1)
            delta = pm.Deterministic(f"event_deviation{suffix}", scale * pt.dot(constrained_basis(w_ev), z_ev),
                                     dims="event_time")[ev_idx]
        cell = mu_tau + delta
        gb = group_basis(ev_idx, d["gt_weight"])
        if gb.shape[1]:
            sigma_cohort = pm.HalfNormal(f"sigma_cohort{suffix}", 1.0 * change)
            zc = pm.Normal(f"cohort_raw{suffix}", 0.0, 1.0, shape=gb.shape[1])
            cell = cell + sigma_cohort * pt.dot(gb, zc)
        tau = pm.Deterministic(f"tau{suffix}", cell * np.ones(len(ev_idx)), dims="cohort_period")
        cell_tau = tau[data["gt_pos"]]
        if spec.unit_deviations and len(design.treated_units) > 1:
            tu_cohort = np.array([design.unit_cohort[design.units.index(u)] for u in design.treated_units])
            ub = group_basis(tu_cohort, unit_weights(design))
            if ub.shape[1]:
                sigma_dev = pm.HalfNormal(f"sigma_unit_effect{suffix}", 0.5 * change)
                zv = pm.Normal(f"unit_effect_raw{suffix}", 0.0, 1.0, shape=ub.shape[1])
                dev = pm.Deterministic(f"unit_effect_deviation{suffix}", sigma_dev * pt.dot(ub, zv), dims="treated_unit")
                cell_tau = cell_tau + dev[data["treated_unit_idx"]]
    out["eta"] = eta0 + data["treated"] * cell_tau
    out["cell_tau"] = cell_tau
    return out


def _segment_sum(values, segment, n_segments):
    return pt.inc_subtensor(pt.zeros(n_segments)[segment], values)


def build_did_model(design: DidDesign, prior: NamedPrior, *, spec: ModelSpec | None = None,
                    zero_prior: NamedPrior | None = None, moderator: np.ndarray | None = None,
                    misclassification: np.ndarray | None = None, repeated: dict | None = None,
                    undercoding: tuple[np.ndarray, np.ndarray] | None = None) -> DidModel:
    """The DiD as a :class:`DidModel` (see the module docstring).

    ``prior`` (and, for the hurdle, ``zero_prior`` for the same-day part; default N(0, 1))
    initialise the ``pm.Data`` of the named priors. ``moderator`` (one 0/1 value per treated
    unit), ``misclassification`` (one share per cell), ``undercoding`` (per cell: the share
    ``u`` of the population missing from the records, and ``log psi``) and ``repeated`` (from
    :func:`repeated_design`) need the binomial likelihood and the unit structure.
    """
    spec = spec or ModelSpec()
    lik = design.lik
    d = design.data
    used = [k for k, v in {"moderator": moderator, "misclassification": misclassification,
                           "repeated": repeated, "undercoding": undercoding}.items() if v is not None]
    if used and design.spec.effects != "unit":
        raise ValueError(f"{used} need the unit effect structure")
    if set(used) - {"moderator"} and lik.name != "binomial":
        raise ValueError("misclassification, under-coding and repeated-children extensions need the binomial "
                         "likelihood")
    if len(set(used) - {"moderator"}) > 1:
        raise ValueError(f"use one of misclassification, under-coding and repeated, not {used}")
    scale, change = outcome_scale(design), change_scale(design)
    unit_centred = choose_centring(design) if spec.unit_centred is None else spec.unit_centred
    factor = spec.reading_factor(lik)
    coords = dict(design.coords)
    coords["period_deviation"] = list(range(max(len(design.periods) - 2, 0)))
    with pm.Model(coords=coords) as model:
        used = ["unit_idx", "period_idx", "treated", "n", "y"]
        if spec.period_effects == "hierarchical" or design.spec.unit_trends:
            used.append("time_c")
        if d["x"].shape[1]:
            used.append("x")
        data = {k: pm.Data(k, d[k]) for k in used}
        for stat in lik.graph_stats:
            if stat in d and stat not in data:
                data[stat] = pm.Data(stat, d[stat])
        for k in ("treated_unit_idx", "gt_pos", "has_gt", "post", "pre_pos", "has_pre"):
            data[k] = pm.Data(k, d[k])   # the cell layout: data, so a compiled model serves new cells
        prior_mean = pm.Data("prior_mean", prior.mean)
        prior_sd = pm.Data("prior_sd", prior.sd)
        prior_between = pm.Data("prior_between", prior.between_scale)
        mod = pm.Data("moderator", np.asarray(moderator, float)) if moderator is not None else None
        parts = {}
        for suffix in lik.parts:
            if suffix == "_zero":
                zp = zero_prior or NamedPrior("neutral", 0.0, 1.0, "log-odds ratio", "weakly informative")
                pm_, ps_ = pm.Data("prior_mean_zero", zp.mean), pm.Data("prior_sd_zero", zp.sd)
                pb_ = pm.Data("prior_between_zero", zp.between_scale)
                part_scale = 1.0
            else:
                pm_, ps_, pb_, part_scale = prior_mean, prior_sd, prior_between, scale
            parts[suffix] = _part(design, spec, data, suffix=suffix, scale=part_scale,
                                  change=change if suffix == "" else 1.0, unit_centred=unit_centred,
                                  prior_mean=pm_, prior_sd=ps_, prior_between=pb_, moderator=mod)
        nuis = lik.nuisance(change)
        eta = {k: v["eta"] for k, v in parts.items()}
        eta0 = {k: v["eta0"] for k, v in parts.items()}
        cutoff = {"log_upper": data["log_upper"]} if lik.hurdle else {}
        to_response = lambda e: lik.response(e, nuis, **cutoff)  # noqa: E731
        if repeated is not None:
            sigma_child = pm.HalfNormal("sigma_child", 1.0)
            nodes, weights = _gauss_hermite()

            def to_response(e):  # noqa: F811 - population-averaged probability over the child effect
                return pt.sum(weights * pm.math.invlogit(e[""][:, None] + sigma_child * nodes[None, :]), axis=1)
        observed = data
        if misclassification is not None:       # the effects are the population's: (1 - m) n records
            misclass = pm.Data("misclass", np.asarray(misclassification, float))
            data = {**data, "n": (1.0 - misclass) * data["n"]}
        elif undercoding is not None:           # n / (1 - u) records
            undercoded = pm.Data("undercoded", np.asarray(undercoding[0], float))
            selection = pm.Data("selection", np.asarray(undercoding[1], float))
            data = {**data, "n": data["n"] / (1.0 - undercoded)}
        _effects(design, data, factor, to_response(eta), to_response(eta0), suffix="")
        if design.spec.effects == "unit":
            typical = {k: v["eta0"] + data["treated"] * v["mu_tau"] for k, v in parts.items()}
            _typical(data, factor, to_response(typical), to_response(eta0), "att_average")
            if moderator is not None:
                for grp in ("high", "low"):
                    e = {k: v["eta0"] + data["treated"] * v[f"typical_{grp}"] for k, v in parts.items()}
                    _typical(data, factor, to_response(e), to_response(eta0), f"att_moderator_{grp}")
                pm.Deterministic("moderator_diff", model["att_moderator_high"] - model["att_moderator_low"])
        if design.pretrend_cells and parts[lik.parts[-1]]["cell_pi"] is not None:
            flat = {k: v["eta0"] - v["cell_pi"] for k, v in parts.items()}
            _pretrends(design, data, factor, to_response(eta0), to_response(flat), suffix="")
            if lik.hurdle:
                _pretrends(design, data, 100.0, lik.secondary_response(eta0), lik.secondary_response(flat),
                           suffix="_zero")
        if lik.hurdle:
            # the population mean (the lognormal extended beyond any cut-off; the same as att without one)
            r1p, r0p = lik.response(eta, nuis), lik.response(eta0, nuis)
            w = _post_weights(design, data)
            pm.Deterministic("att_population", factor * pt.sum(w * (r1p - r0p)) / pt.maximum(pt.sum(w), 1e-12))
            _effects(design, data, 100.0, lik.secondary_response(eta), lik.secondary_response(eta0), suffix="_zero")
            if design.spec.effects == "unit":
                typical = {k: v["eta0"] + data["treated"] * v["mu_tau"] for k, v in parts.items()}
                _typical(data, 100.0, lik.secondary_response(typical), lik.secondary_response(eta0), "att_average_zero")
        if repeated is not None:
            _repeated_likelihood(repeated, eta[""], to_response, sigma_child, nodes, weights)
        elif misclassification is not None:
            share = float(np.clip(d["y"].sum() / max(d["n"].sum(), 1), 0.01, 0.99))
            q_logit = pm.Normal("miscoded_logit", float(np.log(share / (1 - share))), 1.0)
            pm.Binomial("y_obs", n=observed["n"], p=(1.0 - misclass) * pm.math.invlogit(eta[""])
                        + misclass * pm.math.invlogit(q_logit), observed=observed["y"])
        elif undercoding is not None:
            binomial_logit("y_obs", n=observed["n"], eta=eta[""] + selection, observed=observed["y"])
        elif spec.factorised:
            if lik.name != "binomial" or moderator is not None:
                raise ValueError("the factorised likelihood needs the plain binomial model")
            factorised_binomial(design, observed, eta[""], model["beta"] if "beta" in model.named_vars else None)
        else:
            lik.observe(eta, observed, nuis)
    return DidModel(model, design, spec, unit_centred, scale, change, _used_data(model))


#: cell data that the linear predictor reads besides the covariates (each constant within a unit-period)
GROUP_DATA = ("unit_idx", "period_idx", "time_c", "treated", "treated_unit_idx", "gt_pos", "has_gt", "post",
              "pre_pos", "has_pre")


def factorisation(design: DidDesign) -> dict:
    """The cells as a grid of unit-periods x covariate strata (``ModelSpec.factorised``).

    The binomial predictor of a cell is ``eta_c = e[g(c)] + x_c' beta``: every term but the
    covariates' is constant within its unit-period ``g(c)`` (checked here), and the covariate
    term takes one value per distinct covariate row ``s(c)``. So the log-likelihood is exactly
    ``sum_g Y_g e_g + sum_s Y_s (x_s' beta) - sum_{g,s} N_gs softplus(e_g + x_s' beta) + const``
    with ``Y_g``, ``Y_s`` the successes per unit-period and per stratum and ``N_gs`` the trials
    of cell (g, s) (0 for an empty cell): one softplus per grid entry and no per-cell gather or
    scatter in the gradient. Returns the grid's arrays.
    """
    d = design.data
    key = d["unit_idx"].astype(np.int64) * (int(d["period_idx"].max()) + 1) + d["period_idx"]
    groups, first, g_of = np.unique(key, return_index=True, return_inverse=True)
    for k in GROUP_DATA:
        v = np.asarray(d[k])
        if not np.array_equal(v, v[first][g_of]):
            raise ValueError(f"cell data {k!r} varies within a unit-period: the likelihood cannot be factorised")
    x = np.asarray(d["x"], float)
    strata, s_of = np.unique(x, axis=0, return_inverse=True) if x.shape[1] else (np.zeros((1, 0)), np.zeros(len(key), int))
    s_of = np.asarray(s_of).ravel()
    n = np.asarray(d["n"], float)
    y = np.asarray(d["y"], float)
    grid = np.zeros((len(groups), len(strata)))
    np.add.at(grid, (g_of, s_of), n)
    const = float(np.sum(log_binomial_coefficient(n, y)))
    return {"first": first, "strata": strata, "n_grid": grid,
            "y_group": np.bincount(g_of, weights=y, minlength=len(groups)),
            "y_stratum": np.bincount(s_of, weights=y, minlength=len(strata)), "log_binom": const}


def factorised_binomial(design: DidDesign, data: dict, eta, beta) -> None:
    """The binomial cells' log-likelihood on the unit-period x stratum grid (see
    :func:`factorisation`) as the potential ``y_obs_grid`` of the current model; ``eta`` is
    the cells' predictor, re-expressed on unit-periods by substituting their data."""
    from pytensor.graph.replace import graph_replace

    f = factorisation(design)
    first = f["first"]
    replace_map = {data[k]: pm.Data(f"grid_{k}", np.asarray(design.data[k])[first]) for k in GROUP_DATA if k in data}
    if "x" in data:
        replace_map[data["x"]] = pt.zeros((len(first), design.data["x"].shape[1]))
    e_group = graph_replace(eta, replace_map, strict=False)
    xb = pt.dot(pm.Data("grid_strata", f["strata"]), beta) if beta is not None else pt.zeros(1)
    n_grid = pm.Data("grid_n", f["n_grid"])
    y_group = pm.Data("grid_y_group", f["y_group"])
    y_stratum = pm.Data("grid_y_stratum", f["y_stratum"])
    logp = (pt.dot(y_group, e_group) + pt.dot(y_stratum, xb)
            - pt.sum(n_grid * softplus(e_group[:, None] + xb[None, :])) + f["log_binom"])
    pm.Potential("y_obs_grid", logp)


def _used_data(model: pm.Model) -> tuple[str, ...]:
    """The ``pm.Data`` that the log density or a reported quantity reads (a compiled model
    knows only those)."""
    from pytensor.graph.traversal import graph_inputs

    names = {d.name for d in model.data_vars}
    inputs = graph_inputs([model.logp(), *model.deterministics])
    return tuple(sorted({v.name for v in inputs if getattr(v, "name", None) in names}))


def _post_weights(design: DidDesign, data: dict):
    """Weights of the post-adoption effect cells (e >= 0): n on those cells, 0 elsewhere."""
    return data["n"] * data["post"]


def _effects(design: DidDesign, data: dict, factor: float, r1, r0, *, suffix: str) -> None:
    """att_gt, att, att_unit, counterfactual and att_relative (named with ``suffix``)."""
    diff = r1 - r0
    has_gt, gt = data["has_gt"], data["gt_pos"]
    k = len(design.effect_cells)
    wn = data["n"] * has_gt
    if k:
        num = _segment_sum(wn * diff, gt, k)
        den = _segment_sum(wn, gt, k)
        pm.Deterministic(f"att_gt{suffix}", factor * num / pt.maximum(den, 1e-12), dims="cohort_period")
    w = _post_weights(design, data)
    sw = pt.maximum(pt.sum(w), 1e-12)
    pm.Deterministic(f"att{suffix}", factor * pt.sum(w * diff) / sw)
    pm.Deterministic(f"counterfactual{suffix}", factor * pt.sum(w * r0) / sw)
    pm.Deterministic(f"att_relative{suffix}", pt.sum(w * diff) / pt.maximum(pt.sum(w * r0), 1e-12))
    nt = len(design.treated_units)
    num = _segment_sum(w * diff, data["treated_unit_idx"], nt)
    den = _segment_sum(w, data["treated_unit_idx"], nt)
    pm.Deterministic(f"att_unit{suffix}", factor * num / pt.maximum(den, 1e-12), dims="treated_unit")


def _pretrends(design: DidDesign, data: dict, factor: float, r0, r_flat, *, suffix: str) -> None:
    """``pre_gt``: each pre-trend cell's departure from parallel trends on the reading scale,
    ``sum w [r(eta0) - r(eta0 - pi)] / sum w`` (the event study's pre-period effects)."""
    has, idx = data["has_pre"], data["pre_pos"]
    k = len(design.pretrend_cells)
    num = _segment_sum(data["n"] * has * (r0 - r_flat), idx, k)
    den = _segment_sum(data["n"] * has, idx, k)
    pm.Deterministic(f"pre_gt{suffix}", factor * num / pt.maximum(den, 1e-12), dims="pre_cohort_period")


def _typical(data: dict, factor: float, r_typ, r0, name: str) -> None:
    w = data["n"] * data["treated"]
    pm.Deterministic(name, factor * pt.sum(w * (r_typ - r0)) / pt.maximum(pt.sum(w), 1e-12))


def _repeated_likelihood(rep: dict, eta, to_response, sigma_child, nodes, weights) -> None:
    """Children seen once: aggregated binomial on the marginal probability; children seen more
    than once: the exact marginal likelihood of their records (quadrature over ``b_i``)."""
    n_once = pm.Data("n_once", rep["n_once"])
    y_once = pm.Data("y_once", rep["y_once"])
    rep_cell = pm.Data("rep_cell", rep["rep_cell"])
    rep_child = pm.Data("rep_child", rep["rep_child"])
    rep_y = pm.Data("rep_y", rep["rep_y"])
    p_once = pt.clip(to_response({"": eta}), 1e-12, 1 - 1e-12)
    pm.Binomial("y_obs", n=n_once, p=p_once, observed=y_once)
    logits = eta[rep_cell][:, None] + sigma_child * nodes[None, :]
    ll = rep_y[:, None] * logits - pt.softplus(logits)
    per_child = pt.inc_subtensor(pt.zeros((int(rep["n_children"]), nodes.size))[rep_child], ll)
    pm.Potential("repeated_children", pt.sum(pm.math.logsumexp(per_child + np.log(weights)[None, :], axis=1)))


def repeated_design(cells: pd.DataFrame, repeated: pd.DataFrame, keys: list[str]) -> dict:
    """Arrays for ``build_did_model(..., repeated=...)``: the once-seen counts per cell of
    ``cells`` and the records of repeated children mapped to cell rows (``keys`` identify a
    cell in both frames). Records in cells that are not analysed are dropped."""
    index = cells[keys].reset_index(drop=True).reset_index().rename(columns={"index": "_cell"})
    rec = repeated.merge(index, on=keys, how="inner")
    n_rep = np.bincount(rec["_cell"], minlength=len(cells))
    y_rep = np.bincount(rec["_cell"], weights=rec["y"], minlength=len(cells)).astype(int)
    child = pd.factorize(rec["child_id"])[0]
    return {"n_once": cells["n"].to_numpy(int) - n_rep, "y_once": cells["y"].to_numpy(int) - y_rep,
            "rep_cell": rec["_cell"].to_numpy(int), "rep_child": child.astype(int), "rep_y": rec["y"].to_numpy(int),
            "n_children": int(child.max() + 1) if len(child) else 0}


def prior_data(prior: NamedPrior | None = None, zero_prior: NamedPrior | None = None) -> dict:
    """Values of the prior hyper-parameters' ``pm.Data`` (:data:`PRIOR_DATA`)."""
    out = {}
    if prior is not None:
        out.update(prior_mean=np.asarray(prior.mean, float), prior_sd=np.asarray(prior.sd, float),
                   prior_between=np.asarray(prior.between_scale, float))
    if zero_prior is not None:
        out.update(prior_mean_zero=np.asarray(zero_prior.mean, float), prior_sd_zero=np.asarray(zero_prior.sd, float),
                   prior_between_zero=np.asarray(zero_prior.between_scale, float))
    return out


def model_data(dm: DidModel, design: DidDesign | None = None, prior: NamedPrior | None = None,
               zero_prior: NamedPrior | None = None) -> dict:
    """Values for every cell ``pm.Data`` of ``dm`` from ``design`` (default: the model's own),
    a design of the same shape on new cells (to re-use the compiled model), and the priors."""
    design = design or dm.design
    names = [k for k in dm.data_names if k in design.data]
    priors = {k: v for k, v in prior_data(prior, zero_prior).items() if k in dm.data_names or not dm.data_names}
    return {**{k: design.data[k] for k in names}, **priors}


ESTIMANDS = {"these_units": "these treated units", "average_unit": "the average unit (its mean effect)",
             "new_unit": "a new unit like them (between-unit variation included)"}


def estimand_draws(dm: DidModel, posterior, *, seed: int, suffix: str = "") -> dict[str, np.ndarray]:
    """Draws (samples,) of the three estimands on the reading scale (see the module
    docstring), g-computed over the treated units' post-adoption cells: ``these_units`` is
    the model's ``att``; ``average_unit`` replaces every unit's effect by the mean effect;
    ``new_unit`` by a new unit's effect drawn from the population for each posterior draw
    (``suffix="_zero"``: the hurdle's same-day share)."""
    design, lik = dm.design, dm.lik
    d = design.data
    rng = np.random.default_rng(seed)
    eta0, eta, nuis = cell_predictors(dm, posterior)
    n_s = next(iter(eta0.values())).shape[0]
    post = (d["post"] > 0)
    w = (d["n"] * d["post"])[post]
    # only the treated units' post-adoption cells enter the contrasts: the responses are computed there alone
    eta0, eta = ({p: v[:, post] for p, v in e.items()} for e in (eta0, eta))

    def new_and_average(part: str) -> tuple[np.ndarray, np.ndarray]:
        get = lambda name: _draws(posterior, f"{name}{part}")  # noqa: E731
        mu = get("mu_tau")
        if design.spec.effects == "unit":
            sigma = get("sigma_tau")
            avg = np.repeat(mu[:, None], len(d["n"]), axis=1)
            new = avg + (sigma * rng.standard_normal(n_s))[:, None]
            return avg, new
        gt_event = d["gt_event"]
        events = np.array(sorted(set(gt_event)))
        delta = get("event_deviation") if f"event_deviation{part}" in posterior else np.zeros((n_s, len(events)))
        cell_e = np.searchsorted(events, gt_event)[d["gt_pos"]]
        avg = get("tau")[:, d["gt_pos"]]
        base = (mu[:, None] + delta)[:, cell_e]
        new = base.copy()
        if f"sigma_cohort{part}" in posterior:
            z = rng.standard_normal((n_s, len(events)))[:, cell_e]
            new = new + get("sigma_cohort")[:, None] * z
        if f"sigma_unit_effect{part}" in posterior:
            new = new + (get("sigma_unit_effect") * rng.standard_normal(n_s))[:, None]
        return avg, new

    taus = {p: tuple(t[:, post] for t in new_and_average(p)) for p in lik.parts}
    treated = d["treated"][post][None, :]
    if suffix == "_zero":
        response, factor = (lambda e: lik.secondary_response(e, lib=np)), 100.0
    else:
        cutoff = {"log_upper": d["log_upper"][post]} if lik.hurdle else {}
        response, factor = (lambda e: lik.response(e, nuis, lib=np, **cutoff)), dm.spec.reading_factor(lik)
    r0 = response(eta0)

    def contrast(e: dict) -> np.ndarray:
        return factor * ((response(e) - r0) * w).sum(1) / w.sum()

    return {"these_units": contrast(eta),
            "average_unit": contrast({p: eta0[p] + treated * taus[p][0] for p in lik.parts}),
            "new_unit": contrast({p: eta0[p] + treated * taus[p][1] for p in lik.parts})}


# ---------------------------------------------------------------- the same predictors in NumPy

def _draws(posterior, name: str, idx: np.ndarray | None = None) -> np.ndarray:
    """(samples, ...) array of a posterior variable, chains stacked (optionally a subset)."""
    x = np.asarray(posterior[name].transpose("chain", "draw", ...).values)
    x = x.reshape(-1, *x.shape[2:])
    return x if idx is None else x[idx]


def map_draw_chunks(fn: Callable[..., Any], total: int, *, chunk: int = 500, seed: int | None = None) -> list:
    """``fn(idx)`` for consecutive chunks ``idx`` of ``total`` stacked draws, in order, on one
    thread per core (NumPy releases the GIL in array work, so the chunks run in parallel).
    With ``seed``, ``fn(idx, rng)``: every chunk has its own random stream, spawned from
    ``seed``, so that results do not depend on the number of cores."""
    from concurrent.futures import ThreadPoolExecutor

    from models.sampling import default_cores, seed_sequence

    chunks = [np.arange(start, min(start + chunk, total)) for start in range(0, total, chunk)]
    args = [chunks]
    if seed is not None:
        args.append([np.random.default_rng(s) for s in seed_sequence(seed, len(chunks))])
    with ThreadPoolExecutor(max_workers=default_cores(len(chunks))) as pool:
        return list(pool.map(fn, *args))


#: the likelihoods' nuisance parameters (as :func:`cell_predictors` returns them)
NUISANCE_VARS = ("phi", "alpha_nb", "sigma_obs", "sigma_log")
#: the per-cell inputs of the linear predictor other than the covariates
_CELL_KEYS = ("unit_idx", "period_idx", "time_c", "treated", "gt_idx", "treated_unit_idx", "pre_idx")


def _cell_groups(d: dict) -> tuple[np.ndarray, np.ndarray]:
    """Cells that share every input of the linear predictor but the covariates (a unit in a
    period): each cell's group and the first cell of each group."""
    keys = np.column_stack([np.asarray(d[k], float) for k in _CELL_KEYS if k in d])
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return group.ravel(), first


def cell_predictors(dm: DidModel, posterior, *, idx: np.ndarray | None = None,
                    design: DidDesign | None = None) -> tuple[dict, dict, dict]:
    """Posterior draws (samples, cells) of each part's untreated and treated linear
    predictors, and the likelihood's nuisance draws, recomputed in NumPy: for predictive
    checks and figures without a second graph (tested against the model's own deterministics).
    ``design`` (default: the model's) may hold other cells of the same units and periods.
    Everything but the covariate term is computed once per unit and period and then spread
    over that group's cells (a few passes over the draws-by-cells arrays instead of one per
    term)."""
    design = design or dm.design
    d = design.data
    group, first = _cell_groups(d)
    g = {k: np.asarray(d[k])[first] for k in _CELL_KEYS if k in d}
    eta0, eta = {}, {}
    for suffix in dm.lik.parts:
        get = lambda name: _draws(posterior, f"{name}{suffix}", idx)  # noqa: E731
        e0 = get("unit_intercept")[:, g["unit_idx"]] + get("period_effect")[:, g["period_idx"]]
        if f"common_trend{suffix}" in posterior:
            e0 += get("common_trend")[:, None] * g["time_c"]
        if f"unit_trend{suffix}" in posterior:
            e0 += get("unit_trend")[:, g["unit_idx"]] * g["time_c"]
        if f"pretrend{suffix}" in posterior:
            has = g["pre_idx"] >= 0
            e0 += has * get("pretrend")[:, np.maximum(g["pre_idx"], 0)]
        tau = get("tau")
        if design.spec.effects == "unit":
            group_tau = tau[:, g["treated_unit_idx"]]
        else:
            group_tau = tau[:, np.maximum(g["gt_idx"], 0)]
            if f"unit_effect_deviation{suffix}" in posterior:
                group_tau = group_tau + get("unit_effect_deviation")[:, g["treated_unit_idx"]]
        cells0 = e0[:, group]
        if d["x"].shape[1]:
            cells0 += get("beta") @ d["x"].T
        eta0[suffix] = cells0
        eta[suffix] = cells0 + (g["treated"] * group_tau)[:, group]
    nuis = {}
    for name in NUISANCE_VARS:
        if name in posterior:
            nuis[name] = _draws(posterior, name, idx)
    return eta0, eta, nuis
