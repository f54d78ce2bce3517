r"""Hierarchical Bayesian difference-in-differences for child-level outcomes.

Data are cells ``c`` (LA x financial year x covariate stratum) with ``n_c`` children and
sufficient statistics of their outcomes (see :mod:`data.did_input`); settling-in years of
pilots are left out.

Model (``build_did_model``, binary outcomes, ``likelihood="binomial"``)::

    y_c ~ Binomial(n_c, p_c)
    logit p_c = alpha + u[la_c] + (c + g[la_c]) * t_c + v[period_c] + x_c' beta + D_c * tau[la_c]
    alpha ~ N(0, 2^2)                       global intercept
    u ~ ZeroSumNormal(sigma_la),            sigma_la ~ HalfNormal(1)      LA effects
    c ~ N(0, 0.5^2)                         common linear trend
    g = sigma_trend * g_raw,                g_raw ~ ZeroSumNormal(1),
                                            sigma_trend ~ HalfNormal(0.1) LA linear trends
    v = sigma_period B z,  z ~ N(0, 1),     sigma_period ~ HalfNormal(0.5) period (year) effects
    beta ~ N(0, 1)                          covariate contrasts (treatment coding, centred)
    tau[l] = mu_tau + sigma_tau * z_l,      z_l ~ N(0, 1)                 LA-specific effects
                                            (durations: centred, tau ~ N(mu_tau, sigma_tau^2),
                                             and z ~ N(0, sigma_period^2) for the period effects)
    mu_tau ~ N(m, s^2)                      the named prior (sceptical / neutral / enthusiastic)
    sigma_tau ~ HalfNormal(0.5)             between-LA SD of the effect (log-odds)

``D_c`` (``treated_post``) is 1 for pilot cells after settling-in; ``t_c`` is the year centred
on the study's middle year. LA effects are zero-sum (they mix well next to the intercept);
period effects are the years' deviations from the common linear trend (``B``: orthonormal
columns orthogonal to a constant and to ``t``, :func:`period_basis`); trends and LA-specific
effects, like the period effects, are non-centred. The common trend ``c`` carries the average of the LA trends (which are
zero-sum deviations from it): without it, a trend shared by all LAs could only enter through
the period effects, which the hierarchical prior shrinks towards zero, and the shrunken part
leaked into ``tau`` (pilots' post-periods are the late years). It is in every form (with or
without LA trends, and in the event study).

Quantities reported on the percentage-point scale, by g-computation over treated post cells::

    att_pp       = 100 * sum_c n_c [expit(eta_c) - expit(eta_c - tau_c)] / sum_c n_c
    att_relative = sum_c n_c [expit(eta_c) - expit(eta_c - tau_c)] / sum_c n_c expit(eta_c - tau_c)
    att_la_pp    = att_pp restricted to each pilot's cells
    att_typical_pp = as att_pp with every tau_c replaced by mu_tau: the effect for a typical LA

``att_pp`` is the effect in *these* pilot LAs (sample ATT); ``att_typical_pp`` carries the
between-LA uncertainty through ``mu_tau`` and is the effect to expect in LAs like them.

Durations (``likelihood="hurdle_lognormal"``, e.g. assessment duration in working days)::

    same day:  y_c ~ Binomial(n_c, pi_c),   logit pi_c = [the linear predictor above]_zero
    positive:  log d_i ~ N(m_c, sigma_log^2) for the n_pos_c records with d_i > 0,
               m_c = [the linear predictor above] (its own alpha, u, g, v, beta, tau)
    sigma_log ~ HalfNormal(1);  alpha ~ N(mean log d, 2^2)

Both parts carry the full hierarchy (the same-day part's variables end in ``_zero``). The
lognormal part enters through its exact sufficient statistics (``n_pos``, the sum of log d and
of its squares per cell), so the cost grows with cells, not records. The mean duration of a
cell is ``(1 - pi_c) exp(m_c + sigma_log^2 / 2)``; ``att_days`` is its g-computation contrast
over treated post cells (working days), ``att_sameday_pp`` that of ``100 pi_c``. Each part has
its own named prior (``prior`` on the log mean ratio of positive durations, ``zero_prior`` on
the log-odds ratio of a same-day assessment).

Event-study form (``event_study=True``): ``D_c * tau`` is replaced by ``sum_k E_ck * delta_k``
for pilot cells with years relative to adoption ``k`` in a window (end bins pooled, ``k = -1``
the reference, settling-in years included), ``delta_k ~ N(0, 1)``; LA trends are left out,
because they would absorb the pre-trends the event study is there to show. The pre-period
``event_pp`` (pp, g-computation per bin) test parallel trends: P(|event_pp[k]| > 2 pp), k < -1.
``event_att_pp`` is the g-computation effect over the post-settling-in cells, the event-study
counterpart of ``att_pp`` used by the relative-magnitudes sensitivity analysis
(:mod:`models.did_sensitivity`).

Extensions (keyword arguments of :func:`build_did_model`, each off by default):

- ``moderator``: a 0/1 LA-level moderator ``M_l`` of the pilots (e.g. Ofsted good or better)
  shifts the effect, ``tau[l] = mu_tau + gamma (M_l - mean M) + sigma_tau z_l``,
  ``gamma ~ N(0, 1)``; reported as the typical-LA effect in each group and their difference.
- ``misclassification``: a share ``m_c`` of each cell's records does not belong to the
  population (e.g. referrals coded NFA that were not NFA), with its own outcome probability
  ``q``: ``y_c ~ Binomial(n_c, (1 - m_c) p_c + m_c q)``, ``logit q ~ N(logit(ybar), 1)``; the
  effects are computed for the true population (``p_c``). ``m_c`` is a sensitivity parameter.
- ``repeated``: a child random effect ``b_i ~ N(0, sigma_child^2)`` added to ``logit p``.
  Children seen once stay aggregated (their marginal probability is integrated by
  Gauss-Hermite quadrature); children seen more than once contribute the exact marginal
  likelihood of their records. Effects are population-averaged (marginal over ``b``).

Assumptions: parallel trends after LA-specific linear trends (main form); no anticipation
before adoption; effects constant after settling-in within an LA; children independent given
the cell (unless ``repeated`` is used); treatment status is correct.

The priors on ``mu_tau`` live in ``pm.Data`` (``prior_mean``, ``prior_sd``; ``..._zero`` for
the hurdle's same-day part), so a compiled model is re-used across the named priors and across
datasets with new cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.dist_math import binomln
from pytensor.tensor.math import softplus
from scipy.special import expit, logit

from models.priors import NamedPrior, spiegelhalter_priors

EVENT_WINDOW = (-4, 4)
REFERENCE_EVENT_TIME = -1
LIKELIHOODS = ("binomial", "normal", "hurdle_lognormal")
HURDLE_STATS = ("n_pos", "log_sum", "log_sq", "dur_sum")
QUADRATURE_NODES = 9
#: The ``pm.Data`` holding the named prior's hyper-parameters (mutable when the cells are frozen).
PRIOR_DATA = ("prior_mean", "prior_sd", "prior_mean_zero", "prior_sd_zero")


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


def is_pre_period(label: str) -> bool:
    """Whether an event-time label (``'<=-4'``, ``'-2'``, ``'3'``, ``'>=4'``) is before adoption."""
    text = str(label)
    return text.startswith("<=") or (text.lstrip("-").isdigit() and int(text) < 0)


def _counts_or_values(y: pd.Series) -> np.ndarray:
    """Integer counts for binomial cells; a continuous outcome (normal likelihood) stays float."""
    values = y.to_numpy(float)
    return values.astype(int) if np.all(values == np.round(values)) else values


def did_design(cells: pd.DataFrame, *, las: list[str], pilots: list[str], years: list[int],
               covariates: tuple[str, ...] | list[str], window: tuple[int, int] = EVENT_WINDOW) -> DidDesign:
    """Index arrays, treatment coding of covariates, treated-post and event-time indicators.

    ``cells`` has the columns of :class:`data.did_input.DidCells` (la, year, n, y, treated_post,
    rel_time, covariates; and ``n_pos``, ``log_sum``, ``log_sq``, ``dur_sum`` for durations).
    Covariate levels are coded against the first level (sorted).
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
        "y": _counts_or_values(cells["y"]),
    }
    if all(c in cells.columns for c in HURDLE_STATS):
        data["n_pos"] = cells["n_pos"].to_numpy(int)
        for c in ("log_sum", "log_sq", "dur_sum"):
            data[c] = cells[c].to_numpy(float)
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
    SD is ``2 * outcome_sd`` (the outcome's SD across cells). Hurdle-lognormal (the positive
    durations): the target is the log mean ratio ``log(1 + direction * relative_target)``
    (``pre_level``, the pre-period mean, must be > 0); the neutral prior is N(0, 1).
    """
    label = f"the programme's {relative_target:.0%} {'rise' if direction > 0 else 'fall'} in {outcome_label}"
    if likelihood == "normal":
        if outcome_sd is None or not outcome_sd > 0:
            raise ValueError("the normal likelihood's priors need the outcome's SD (> 0)")
        target = direction * relative_target * abs(pre_level)
        return spiegelhalter_priors(target, neutral_sd=2.0 * outcome_sd, scale="outcome units",
                                    target_label=label)
    if likelihood == "hurdle_lognormal":
        if not pre_level > 0:
            raise ValueError(f"pre-period mean duration must be > 0, got {pre_level}")
        target = float(np.log1p(direction * relative_target))
        return spiegelhalter_priors(target, neutral_sd=1.0, scale="log mean ratio (positive durations)",
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


def effect_names(likelihood: str = "binomial") -> dict[str, str]:
    """Names of the reported deterministics: '_pp' (percentage points) for binomial outcomes,
    the outcome's own units for the normal likelihood, '_days' (mean duration) and
    '_sameday_pp' (the same-day share; keys ending in '_zero') for the hurdle."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    suffix = {"binomial": "_pp", "normal": "", "hurdle_lognormal": "_days"}[likelihood]
    names = {"att": f"att{suffix}", "att_la": f"att_la{suffix}", "att_typical": f"att_typical{suffix}",
             "counterfactual": f"counterfactual{suffix}", "att_relative": "att_relative",
             "event": f"event{suffix}", "event_att": f"event_att{suffix}",
             "mod_high": f"att_moderator_high{suffix}", "mod_low": f"att_moderator_low{suffix}",
             "mod_diff": f"moderator_diff{suffix}"}
    if likelihood == "hurdle_lognormal":
        names.update({f"{k}_zero": v.replace("_days", "_sameday_pp") for k, v in names.items() if v.endswith("_days")})
    return names


# ---------------------------------------------------------------- the model

def _binomial_logit_logp(value, n, eta):
    return binomln(n, value) + value * eta - n * softplus(eta)


def binomial_logit(name: str, *, n, eta, observed, **kwargs) -> pt.TensorVariable:
    """``y ~ Binomial(n, invlogit(eta))`` with the log-likelihood written directly,
    ``log C(n, y) + y eta - n log(1 + e^eta)``: the same density as
    ``pm.Binomial(n=n, logit_p=eta)`` (tested), at about 60% of its cost per gradient (one
    softplus per cell and no parameter checks; counts are validated on input by
    :mod:`data.did_input`). With frozen data ``log C(n, y)`` is a folded constant. Prior and
    posterior predictive draws come from ``pm.Binomial``.
    """
    return pm.CustomDist(name, n, eta, logp=_binomial_logit_logp, observed=observed,
                         dist=lambda n_, eta_, size: pm.Binomial.dist(n=n_, logit_p=eta_, size=size), **kwargs)


def _gauss_hermite(k: int = QUADRATURE_NODES) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[f(Z)], Z ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(k)
    return nodes, weights / weights.sum()


def _block(d: dict, *, suffix: str, scale: float, mean0: float, la_trends: bool, event_study: bool,
           prior_mean, prior_sd, moderator, centered_tau: bool = False, centered_period: bool = False) -> dict:
    """One DiD linear predictor with its hierarchy (variables named with ``suffix``)."""
    alpha = pm.Normal(f"alpha{suffix}", mean0, 2.0 * scale)
    sigma_la = pm.HalfNormal(f"sigma_la{suffix}", 1.0 * scale)
    u = pm.ZeroSumNormal(f"la_effect{suffix}", sigma=sigma_la, dims="la")
    sigma_period = pm.HalfNormal(f"sigma_period{suffix}", 0.5 * scale)
    basis = period_basis(d["years"])
    if centered_period:
        v_raw = pm.Normal(f"period_raw{suffix}", 0.0, sigma_period, dims="period_deviation")
        v = pm.Deterministic(f"period_effect{suffix}", pt.dot(basis, v_raw), dims="period")
    else:
        v_raw = pm.Normal(f"period_raw{suffix}", 0.0, 1.0, dims="period_deviation")
        v = pm.Deterministic(f"period_effect{suffix}", sigma_period * pt.dot(basis, v_raw), dims="period")
    beta = pm.Normal(f"beta{suffix}", 0.0, 1.0 * scale, dims="covariate")
    common = pm.Normal(f"common_trend{suffix}", 0.0, 0.5 * scale)
    eta0 = alpha + u[d["la_idx"]] + v[d["period_idx"]] + pt.dot(d["x"], beta) + common * d["year_c"]
    if la_trends and not event_study:
        sigma_trend = pm.HalfNormal(f"sigma_trend{suffix}", 0.1 * scale)
        g_raw = pm.ZeroSumNormal(f"trend_raw{suffix}", sigma=1.0, dims="la")
        trend = pm.Deterministic(f"la_trend{suffix}", sigma_trend * g_raw, dims="la")
        eta0 = eta0 + trend[d["la_idx"]] * d["year_c"]
    out = {"eta0": eta0}
    if event_study:
        delta = pm.Normal(f"event_effect{suffix}", 0.0, 1.0 * scale, dims="event_time")
        out["eta"] = eta0 + pt.dot(d["event"], delta)
        return out
    mu_tau = pm.Normal(f"mu_tau{suffix}", prior_mean, prior_sd)
    sigma_tau = pm.HalfNormal(f"sigma_tau{suffix}", 0.5 * scale)
    if not centered_tau:
        z = pm.Normal(f"tau_raw{suffix}", 0.0, 1.0, dims="pilot")
    shift = 0.0
    if moderator is not None:
        gamma = pm.Normal(f"moderator_effect{suffix}", 0.0, 1.0 * scale)
        centre = pt.mean(moderator)
        shift = gamma * (moderator - centre)
        out["typical_high"] = mu_tau + gamma * (1.0 - centre)
        out["typical_low"] = mu_tau - gamma * centre
    if centered_tau:   # data-rich LA effects (durations): the centred form mixes better
        tau = pm.Normal(f"tau{suffix}", mu_tau + shift, sigma_tau, dims="pilot")
    else:
        tau = pm.Deterministic(f"tau{suffix}", mu_tau + shift + sigma_tau * z, dims="pilot")
    out.update(eta=eta0 + d["treated_post"] * tau[d["pilot_idx"]], mu_tau=mu_tau)
    return out


def period_basis(years) -> np.ndarray:
    """Orthonormal columns spanning the period effects that have no mean and no linear trend.

    Period effects ``v = sigma_period B z``, ``z ~ N(0, 1)``: deviations of each year from the
    common linear trend (``B`` is orthogonal to a constant and to the centred year), so the
    intercept, the common trend and the period effects do not trade off along a ridge.
    """
    t = np.asarray(years, dtype=float)
    x = np.column_stack([np.ones(t.size), t - t.mean()])[:, : min(2, t.size)]
    u, _, _ = np.linalg.svd(x, full_matrices=True)
    return u[:, x.shape[1]:]


def _gcomp(mean_fn, eta1, eta0, w):
    """Weighted mean contrast (and counterfactual) of ``mean_fn`` between two predictors."""
    m1, m0 = mean_fn(eta1), mean_fn(eta0)
    return pt.sum(w * (m1 - m0)) / pt.sum(w), pt.sum(w * m0) / pt.sum(w), m1 - m0


def build_did_model(design: DidDesign, prior: NamedPrior, *, la_trends: bool = True,
                    event_study: bool = False, likelihood: str = "binomial",
                    zero_prior: NamedPrior | None = None, moderator: np.ndarray | None = None,
                    misclassification: np.ndarray | None = None,
                    repeated: dict[str, np.ndarray] | None = None,
                    centered_effects: bool | None = None) -> pm.Model:
    """The hierarchical DiD (or its event-study form) as a ``pm.Model``; see module docstring.

    ``likelihood="normal"`` models cell means ``y_c`` with weights ``n_c`` on the identity link,
    ``y_c ~ N(eta_c, sigma_obs^2 / n_c)``, ``sigma_obs ~ HalfNormal(2 sd(y))``, for continuous
    LA-level indicators (rates in %, caseloads); ``alpha ~ N(mean(y), (2 sd(y))^2)``; effects are
    then in the outcome's units and the hierarchy scales (LA, period, trend, effect SDs) are
    multiplied by sd(y).

    ``likelihood="hurdle_lognormal"`` needs the duration statistics in ``design`` and takes
    ``zero_prior`` (default N(0, 1)) for the same-day part. ``moderator`` (one 0/1 value per
    pilot), ``misclassification`` (one share per cell) and ``repeated`` (from
    :func:`repeated_design`) are binomial-main-form extensions; their values are ``pm.Data``
    (``moderator``, ``misclass``) so that a compiled model can be re-used with new ones.
    ``centered_effects`` parameterises the LA-specific effects as ``tau ~ N(mu_tau, sigma_tau)``
    and the period deviations as ``z ~ N(0, sigma_period)`` instead of the non-centred forms;
    the default (None) is centred for the hurdle (LA effects of both parts, period deviations of
    the positive part: data-rich and heterogeneous; measured on the assessment twin, twice the
    steps per draw and a tenth of the ESS for ``mu_tau`` when non-centred), non-centred
    otherwise.
    """
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    d = design.data
    names = effect_names(likelihood)
    binomial = likelihood == "binomial"
    hurdle = likelihood == "hurdle_lognormal"
    if hurdle and "n_pos" not in d:
        raise ValueError("the hurdle likelihood needs duration cells (n_pos, log_sum, log_sq)")
    extras = {"moderator": moderator, "misclassification": misclassification, "repeated": repeated}
    used = [k for k, val in extras.items() if val is not None]
    if used and event_study:
        raise ValueError(f"{used} apply to the main form, not the event study")
    if (misclassification is not None or repeated is not None) and not binomial:
        raise ValueError("misclassification and repeated-children extensions need the binomial likelihood")
    if misclassification is not None and repeated is not None:
        raise ValueError("use misclassification or repeated, not both")
    scale = 1.0 if binomial or hurdle else float(max(np.std(d["y"]), 1e-6))
    with pm.Model(coords=design.coords) as model:
        model.add_coord("period_deviation", list(range(max(len(design.years) - 2, 0))))
        data = {"la_idx": pm.Data("la_idx", d["la_idx"]), "period_idx": pm.Data("period_idx", d["period_idx"]),
                "year_c": pm.Data("year_c", d["year_c"]), "x": pm.Data("x", d["x"]), "years": design.years}
        n = pm.Data("n", d["n"])
        y = pm.Data("y", d["y"])
        prior_mean = pm.Data("prior_mean", prior.mean)
        prior_sd = pm.Data("prior_sd", prior.sd)
        if hurdle:
            zp = zero_prior or NamedPrior("neutral", 0.0, 1.0, "log-odds ratio", "weakly informative")
            prior_mean_zero = pm.Data("prior_mean_zero", zp.mean)
            prior_sd_zero = pm.Data("prior_sd_zero", zp.sd)
            n_pos = pm.Data("n_pos", d["n_pos"])
            log_sum = pm.Data("log_sum", d["log_sum"])
            log_sq = pm.Data("log_sq", d["log_sq"])
        if event_study:
            data["event"] = pm.Data("event", d["event"])
        data["treated_post"] = pm.Data("treated_post", d["treated_post"])
        mod = None
        if not event_study:
            data["pilot_idx"] = pm.Data("pilot_idx", d["pilot_idx"])
            if moderator is not None:
                mod = pm.Data("moderator", np.asarray(moderator, float))

        if hurdle:
            npos = np.maximum(d["n_pos"].sum(), 1)
            mean_log = float(d["log_sum"].sum() / npos)
            centered = True if centered_effects is None else centered_effects
            # the same-day part's year deviations are small and less well informed: non-centred
            zero = _block(data, suffix="_zero", scale=1.0, mean0=0.0, la_trends=la_trends, event_study=event_study,
                          prior_mean=prior_mean_zero, prior_sd=prior_sd_zero, moderator=mod, centered_tau=centered)
            pos = _block(data, suffix="", scale=1.0, mean0=mean_log, la_trends=la_trends, event_study=event_study,
                         prior_mean=prior_mean, prior_sd=prior_sd, moderator=mod, centered_tau=centered,
                         centered_period=centered)
            sigma_log = pm.HalfNormal("sigma_log", 1.0)
            half_var = 0.5 * sigma_log ** 2

            def mean_days(ez, ep):
                return (1.0 - pm.math.invlogit(ez)) * pt.exp(ep + half_var)

            _hurdle_reports(design, names, data, n, zero, pos, mean_days, event_study, moderator is not None)
            binomial_logit("y_obs", n=n, eta=zero["eta"], observed=y)
            m = pos["eta"]
            pm.Potential("log_duration", pt.sum(-n_pos * pt.log(sigma_log)
                                                - (log_sq - 2.0 * m * log_sum + n_pos * m ** 2) / (2.0 * sigma_log ** 2)))
            return model

        # binomial / normal: the same random variables, in the same order, as the foundation's model
        block = _block(data, suffix="", scale=scale, mean0=0.0 if binomial else float(np.mean(d["y"])),
                       la_trends=la_trends, event_study=event_study, prior_mean=prior_mean, prior_sd=prior_sd,
                       moderator=mod, centered_tau=bool(centered_effects), centered_period=bool(centered_effects))
        eta0, eta = block["eta0"], block["eta"]
        unit = 100.0 if binomial else 1.0
        to_scale = pm.math.invlogit if binomial else (lambda e: e)
        if repeated is not None:
            sigma_child = pm.HalfNormal("sigma_child", 1.0)
            nodes, weights = _gauss_hermite()

            def to_scale(e):  # noqa: F811 - population-averaged probability over the child effect
                return pt.sum(weights * pm.math.invlogit(e[:, None] + sigma_child * nodes[None, :]), axis=1)

        treated_post = data["treated_post"]
        w = treated_post * n
        if event_study:
            event = data["event"]
            p1, p0 = to_scale(eta), to_scale(eta0)
            we = event * n[:, None]
            pm.Deterministic(names["event"], unit * pt.sum(we * (p1 - p0)[:, None], axis=0)
                             / pt.maximum(pt.sum(we, axis=0), 1e-12), dims="event_time")
            pm.Deterministic(names["event_att"], unit * pt.sum(w * (p1 - p0)) / pt.maximum(pt.sum(w), 1e-12))
        else:
            p1, p0 = to_scale(eta), to_scale(eta0)
            pm.Deterministic(names["att"], unit * pt.sum(w * (p1 - p0)) / pt.sum(w))
            pm.Deterministic("att_relative", pt.sum(w * (p1 - p0)) / pt.sum(w * p0))
            pm.Deterministic(names["counterfactual"], unit * pt.sum(w * p0) / pt.sum(w))
            p_typical = to_scale(eta0 + block["mu_tau"])
            pm.Deterministic(names["att_typical"], unit * pt.sum(w * (p_typical - p0)) / pt.sum(w))
            pm.Deterministic(names["att_la"], unit * _segment_mean(p1 - p0, w, data["pilot_idx"], len(design.pilots)),
                             dims="pilot")
            if moderator is not None:
                hi = pm.Deterministic(names["mod_high"], unit * pt.sum(w * (to_scale(eta0 + block["typical_high"]) - p0)) / pt.sum(w))
                lo = pm.Deterministic(names["mod_low"], unit * pt.sum(w * (to_scale(eta0 + block["typical_low"]) - p0)) / pt.sum(w))
                pm.Deterministic(names["mod_diff"], hi - lo)
        if repeated is not None:
            _repeated_likelihood(repeated, eta, to_scale, sigma_child, nodes, weights)
        elif misclassification is not None:
            misclass = pm.Data("misclass", np.asarray(misclassification, float))
            share = float(np.clip(d["y"].sum() / max(d["n"].sum(), 1), 0.01, 0.99))
            q_logit = pm.Normal("miscoded_logit", float(logit(share)), 1.0)
            pm.Binomial("y_obs", n=n, p=(1.0 - misclass) * pm.math.invlogit(eta) + misclass * pm.math.invlogit(q_logit),
                        observed=y)
        elif binomial:
            binomial_logit("y_obs", n=n, eta=eta, observed=y)
        else:
            sigma_obs = pm.HalfNormal("sigma_obs", 2.0 * scale)
            pm.Normal("y_obs", mu=eta, sigma=sigma_obs / pt.sqrt(n), observed=y)
    return model


def _hurdle_reports(design, names, data, n, zero, pos, mean_days, event_study, moderated) -> None:
    """Deterministics of the hurdle model: effects on the mean duration and on P(same day)."""
    invlogit = pm.math.invlogit
    w = data["treated_post"] * n
    ez0, ez1, ep0, ep1 = zero["eta0"], zero["eta"], pos["eta0"], pos["eta"]
    d1, d0 = mean_days(ez1, ep1), mean_days(ez0, ep0)
    s1, s0 = 100 * invlogit(ez1), 100 * invlogit(ez0)
    if event_study:
        we = data["event"] * n[:, None]
        den = pt.maximum(pt.sum(we, axis=0), 1e-12)
        pm.Deterministic(names["event"], pt.sum(we * (d1 - d0)[:, None], axis=0) / den, dims="event_time")
        pm.Deterministic(names["event_zero"], pt.sum(we * (s1 - s0)[:, None], axis=0) / den, dims="event_time")
        sw = pt.maximum(pt.sum(w), 1e-12)
        pm.Deterministic(names["event_att"], pt.sum(w * (d1 - d0)) / sw)
        pm.Deterministic(names["event_att_zero"], pt.sum(w * (s1 - s0)) / sw)
        return
    sw = pt.sum(w)
    pm.Deterministic(names["att"], pt.sum(w * (d1 - d0)) / sw)
    pm.Deterministic("att_relative", pt.sum(w * (d1 - d0)) / pt.sum(w * d0))
    pm.Deterministic(names["counterfactual"], pt.sum(w * d0) / sw)
    dt = mean_days(ez0 + zero["mu_tau"], ep0 + pos["mu_tau"])
    pm.Deterministic(names["att_typical"], pt.sum(w * (dt - d0)) / sw)
    pm.Deterministic(names["att_la"], _segment_mean(d1 - d0, w, data["pilot_idx"], len(design.pilots)), dims="pilot")
    pm.Deterministic(names["att_zero"], pt.sum(w * (s1 - s0)) / sw)
    pm.Deterministic(names["counterfactual_zero"], pt.sum(w * s0) / sw)
    pm.Deterministic(names["att_typical_zero"], pt.sum(w * (100 * invlogit(ez0 + zero["mu_tau"]) - s0)) / sw)
    pm.Deterministic(names["att_la_zero"], _segment_mean(s1 - s0, w, data["pilot_idx"], len(design.pilots)),
                     dims="pilot")
    if moderated:
        hi = pm.Deterministic(names["mod_high"], pt.sum(w * (mean_days(ez0 + zero["typical_high"], ep0 + pos["typical_high"]) - d0)) / sw)
        lo = pm.Deterministic(names["mod_low"], pt.sum(w * (mean_days(ez0 + zero["typical_low"], ep0 + pos["typical_low"]) - d0)) / sw)
        pm.Deterministic(names["mod_diff"], hi - lo)
        hz = pm.Deterministic(names["mod_high_zero"], pt.sum(w * (100 * invlogit(ez0 + zero["typical_high"]) - s0)) / sw)
        lz = pm.Deterministic(names["mod_low_zero"], pt.sum(w * (100 * invlogit(ez0 + zero["typical_low"]) - s0)) / sw)
        pm.Deterministic(names["mod_diff_zero"], hz - lz)


def _repeated_likelihood(rep: dict, eta, to_scale, sigma_child, nodes, weights) -> None:
    """Children seen once: aggregated binomial on the marginal probability; children seen more
    than once: the exact marginal likelihood of their records (quadrature over ``b_i``)."""
    n_once = pm.Data("n_once", rep["n_once"])
    y_once = pm.Data("y_once", rep["y_once"])
    rep_cell = pm.Data("rep_cell", rep["rep_cell"])
    rep_child = pm.Data("rep_child", rep["rep_child"])
    rep_y = pm.Data("rep_y", rep["rep_y"])
    p_once = pt.clip(to_scale(eta), 1e-12, 1 - 1e-12)
    pm.Binomial("y_obs", n=n_once, p=p_once, observed=y_once)
    logits = eta[rep_cell][:, None] + sigma_child * nodes[None, :]
    ll = rep_y[:, None] * logits - pt.softplus(logits)          # log Bernoulli(y | expit(logits))
    per_child = pt.inc_subtensor(pt.zeros((int(rep["n_children"]), nodes.size))[rep_child], ll)
    pm.Potential("repeated_children", pt.sum(pm.math.logsumexp(per_child + np.log(weights)[None, :], axis=1)))


def repeated_design(cells: pd.DataFrame, repeated: pd.DataFrame, covariates: tuple[str, ...] | list[str]) -> dict:
    """Arrays for ``build_did_model(..., repeated=...)``: the once-seen counts per cell of
    ``cells`` (the analysis cells) and the records of repeated children mapped to cell rows.

    Records in cells that are not analysed (settling-in years) are dropped.
    """
    keys = ["la", "year", *covariates]
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
        out["prior_mean"] = np.asarray(prior.mean, dtype=float)
        out["prior_sd"] = np.asarray(prior.sd, dtype=float)
    if zero_prior is not None:
        out["prior_mean_zero"] = np.asarray(zero_prior.mean, dtype=float)
        out["prior_sd_zero"] = np.asarray(zero_prior.sd, dtype=float)
    return out


def model_data(design: DidDesign, prior: NamedPrior | None = None, *, event_study: bool = False,
               likelihood: str = "binomial", zero_prior: NamedPrior | None = None) -> dict:
    """Values for the model's ``pm.Data`` containers (for re-use of a compiled model)."""
    keys = ["la_idx", "period_idx", "year_c", "x", "n", "y"]
    if likelihood == "hurdle_lognormal":
        keys += ["n_pos", "log_sum", "log_sq"]
    keys += ["event", "treated_post"] if event_study else ["treated_post", "pilot_idx"]
    return {**{k: design.data[k] for k in keys}, **prior_data(prior, zero_prior)}


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
    if "common_trend" in posterior:
        eta0 = eta0 + stack("common_trend")[..., None] * d["year_c"][sel]
    if la_trends:
        eta0 = eta0 + stack("la_trend")[..., d["la_idx"][sel]] * d["year_c"][sel]
    tau = stack("tau")[..., d["pilot_idx"][sel]]
    w = d["n"][sel]
    diff = expit(eta0 + tau) - expit(eta0)
    return 100 * (diff * w).sum(-1) / w.sum()
