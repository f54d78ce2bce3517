r"""Hierarchical Bayesian DiD for LA-level panels (pilots vs their statistical neighbours).

The foundation model (:mod:`models.did_hierarchical`) is built for child-level binomial cells,
where a cell's share is measured almost without noise beyond the binomial. LA-year indicators
are not like that: an LA's re-referral share moves by several percentage points from one year
to the next for reasons no model term captures (recording changes, a new front door, a data
cleanse), far more than the binomial noise of a share out of thousands of referrals. A plain
binomial on these cells treats every LA-year as known to within about ±1 pp and becomes
overconfident. This module adds the two likelihoods the panels need, with the foundation's
structure, variable names and design (:func:`models.did_hierarchical.did_design`):

``betabinomial`` (default for re-referrals out of referrals)::

    y_c ~ BetaBinomial(n_c, mu_c * phi, (1 - mu_c) * phi),   logit mu_c = eta_c
    1 / sqrt(phi) ~ HalfNormal(0.5)                            extra between-year variation

``student`` (default for workforce rates in % and caseloads)::

    y_c ~ StudentT(4, eta_c, sigma_obs / sqrt(n_c)),   sigma_obs ~ HalfNormal(2 sd(y))

with, as in the foundation, ``eta_c = alpha + u[la] + v[year] (+ g[la] t) + D_c tau[pilot]``,
``u ~ ZeroSumNormal(sigma_la)``, ``sigma_la ~ HalfNormal(1)``, year effects
``v ~ ZeroSumNormal(0.5)`` (a fixed scale; see ``year_effects``), ``tau[l] = mu_tau + sigma_tau z_l``,
``mu_tau ~ N(m, s^2)`` the named prior (log-odds ratio for counts, outcome units otherwise),
and the event-study form replacing ``D_c tau`` by ``sum_k E_ck delta_k``. Hierarchy scales for
continuous outcomes are multiplied by sd(y). ``binomial`` and ``normal`` are the foundation's
likelihoods (:func:`models.did_hierarchical.build_did_model`), kept for comparison; this module
builds all four itself so that one compiled graph can hold both forms (``switchable``).

Reported on the reading scale by g-computation over treated post cells (n-weighted for
counts, where the scale is percentage points; plain means for continuous outcomes):
``att[_pp]`` (these pilots), ``att_la[_pp]`` (each pilot), ``att_typical[_pp]`` (a typical LA
like them, through ``mu_tau``), ``att_relative`` and ``counterfactual[_pp]``.

Staggered adoption: every pilot has its own ``tau``, so an already-treated pilot is never
used as a control for a later one; the comparators are never treated. Effects are assumed
constant within an LA after adoption in the main form; the event study relaxes that.
Assumptions: parallel trends of pilots and neighbours (LA-specific linear trends optional);
no anticipation; neighbours not treated (contamination is a sensitivity analysis, see
``--exclude``); LA-year cells independent given the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit

from models.did_hierarchical import EVENT_WINDOW, DidDesign, _segment_mean, did_design, effect_names
from models.priors import NamedPrior
from models.statements import prob, state, summarise_effect

PANEL_LIKELIHOODS = ("betabinomial", "binomial", "student", "normal")
COUNT_LIKELIHOODS = ("betabinomial", "binomial")
DEFAULT_LIKELIHOOD = {"count": "betabinomial", "continuous": "student"}


def is_count(likelihood: str) -> bool:
    if likelihood not in PANEL_LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {PANEL_LIKELIHOODS}, got {likelihood!r}")
    return likelihood in COUNT_LIKELIHOODS


def names_for(likelihood: str) -> dict[str, str]:
    """Reported variable names: '_pp' for count likelihoods, outcome units otherwise.

    (The foundation names the continuous event-study effect 'event', which clashes with its
    ``event`` data container; here it is 'event_att'.)
    """
    names = effect_names("binomial" if is_count(likelihood) else "normal")
    if not is_count(likelihood):
        names["event"] = "event_att"
    return names


def panel_design(cells: pd.DataFrame, *, las: list[str], pilots: list[str], years: list[int],
                 likelihood: str, window: tuple[int, int] = EVENT_WINDOW) -> DidDesign:
    """:func:`did_design` for LA-year cells, keeping continuous outcomes as floats.

    (``did_design`` stores ``y`` and ``n`` as integers, which would truncate rates such as
    19.3%; for continuous likelihoods they are restored here.)
    """
    design = did_design(cells, las=las, pilots=pilots, years=years, covariates=(), window=window)
    if not is_count(likelihood):
        design.data["y"] = cells["y"].to_numpy(float)
        design.data["n"] = cells["n"].to_numpy(float)
    return design


FORMS = ("main", "event")
YEAR_SD = 0.5
#: Degrees of freedom of the Student-t likelihood, fixed: heavy enough tails for the odd LA-year
#: (a turnover of 0% or 28% after years near 15%), and a few dozen LA-years cannot estimate it
#: (with nu free, nu and sigma_obs mixed badly on the real workforce panel).
STUDENT_NU = 4.0
YEAR_EFFECTS = ("fixed", "hierarchical")


def build_panel_model(design: DidDesign, prior: NamedPrior, *, likelihood: str = "betabinomial",
                      la_trends: bool = False, event_study: bool = False, switchable: bool = False,
                      year_effects: str = "fixed", la_centred: bool | None = None) -> pm.Model:
    """The LA-panel DiD as a ``pm.Model`` (see the module docstring).

    ``year_effects="fixed"`` (default) gives the year effects a fixed N(0, 0.5^2) scale (times
    sd(y) for continuous outcomes); ``"hierarchical"`` learns their scale as the foundation model
    does. With eight to thirteen years there is little to pool, and on the real referrals panel
    the learned scale is small (about 0.04 on the log-odds scale) and about as uncertain as the
    effects themselves: a funnel that caused divergent transitions in the event study.

    ``la_centred`` (default: centred for count likelihoods, non-centred otherwise): LA effects
    are well identified by thousands of referrals per LA-year, so the centred form mixes best
    there; a workforce rate gives one noisy number per LA-year and a handful of LAs, where the
    centred form has a funnel between ``sigma_la`` and the effects.

    ``switchable=True`` builds one graph holding both the main form (``tau``) and the
    event-study form (``delta``), each switched on by its data (``treated_post``/``event``):
    :func:`form_data` zeroes the other block, whose parameters are then drawn from their priors
    and dropped afterwards (:func:`drop_inactive`). One compilation then serves every prior and
    both forms, which matters because compilation, not sampling, dominates these small models.
    """
    count = is_count(likelihood)
    if year_effects not in YEAR_EFFECTS:
        raise ValueError(f"year_effects must be one of {YEAR_EFFECTS}, got {year_effects!r}")
    d = design.data
    names = names_for(likelihood)
    scale = 1.0 if count else float(max(np.std(d["y"]), 1e-6))
    main = switchable or not event_study
    events = switchable or event_study
    with pm.Model(coords=design.coords) as model:
        la_idx = pm.Data("la_idx", d["la_idx"])
        period_idx = pm.Data("period_idx", d["period_idx"])
        x = pm.Data("x", d["x"])
        n = pm.Data("n", d["n"])
        y = pm.Data("y", d["y"])
        prior_mean = pm.Data("prior_mean", prior.mean)
        prior_sd = pm.Data("prior_sd", prior.sd)

        alpha = pm.Normal("alpha", 0.0 if count else float(np.mean(d["y"])), 2.0 * scale)
        sigma_la = pm.HalfNormal("sigma_la", 1.0 * scale)
        if la_centred is None:
            la_centred = count
        if la_centred:
            u = pm.ZeroSumNormal("la_effect", sigma=sigma_la, dims="la")
        else:
            u_raw = pm.ZeroSumNormal("la_raw", sigma=1.0, dims="la")
            u = pm.Deterministic("la_effect", sigma_la * u_raw, dims="la")
        if year_effects == "hierarchical":
            sigma_period = pm.HalfNormal("sigma_period", 0.5 * scale)
            v = pm.ZeroSumNormal("period_effect", sigma=sigma_period, dims="period")
        else:
            v = pm.ZeroSumNormal("period_effect", sigma=YEAR_SD * scale, dims="period")
        beta = pm.Normal("beta", 0.0, 1.0 * scale, dims="covariate")
        eta0 = alpha + u[la_idx] + v[period_idx] + pt.dot(x, beta)
        if la_trends and main:
            year_c = pm.Data("year_c", d["year_c"])
            sigma_trend = pm.HalfNormal("sigma_trend", 0.1 * scale)
            g_raw = pm.ZeroSumNormal("trend_raw", sigma=1.0, dims="la")
            trend = pm.Deterministic("la_trend", sigma_trend * g_raw, dims="la")
            eta0 = eta0 + trend[la_idx] * year_c
        to_scale = pm.math.invlogit if count else (lambda e: e)
        unit = 100.0 if count else 1.0
        eta = eta0
        if events:
            event = pm.Data("event", d["event"])
            delta = pm.Normal("event_effect", 0.0, 1.0 * scale, dims="event_time")
            eta_ev = eta0 + pt.dot(event, delta)
            w = event * n[:, None]
            pm.Deterministic(names["event"], unit * pt.sum(w * (to_scale(eta_ev) - to_scale(eta0))[:, None], axis=0)
                             / pt.maximum(pt.sum(w, axis=0), 1e-12), dims="event_time")
            eta = eta_ev
        if main:
            treated_post = pm.Data("treated_post", d["treated_post"])
            pilot_idx = pm.Data("pilot_idx", d["pilot_idx"])
            mu_tau = pm.Normal("mu_tau", prior_mean, prior_sd)
            sigma_tau = pm.HalfNormal("sigma_tau", 0.5 * scale)
            z = pm.Normal("tau_raw", 0.0, 1.0, dims="pilot")
            tau = pm.Deterministic("tau", mu_tau + sigma_tau * z, dims="pilot")
            eta_main = eta0 + treated_post * tau[pilot_idx]
            p1, p0 = to_scale(eta_main), to_scale(eta0)
            w = treated_post * n
            sw = pt.maximum(pt.sum(w), 1e-12)
            pm.Deterministic(names["att"], unit * pt.sum(w * (p1 - p0)) / sw)
            pm.Deterministic("att_relative", pt.sum(w * (p1 - p0)) / pt.maximum(pt.sum(w * p0), 1e-12))
            pm.Deterministic(names["counterfactual"], unit * pt.sum(w * p0) / sw)
            p_typical = to_scale(eta0 + mu_tau)
            pm.Deterministic(names["att_typical"], unit * pt.sum(w * (p_typical - p0)) / sw)
            pm.Deterministic(names["att_la"], unit * _segment_mean(p1 - p0, w, pilot_idx, len(design.pilots)),
                             dims="pilot")
            eta = eta + treated_post * tau[pilot_idx]
        if likelihood == "betabinomial":
            inv_sqrt_phi = pm.HalfNormal("inv_sqrt_phi", 0.5)
            phi = pm.Deterministic("phi", 1.0 / pt.square(inv_sqrt_phi))
            mu = pm.math.invlogit(eta)
            pm.BetaBinomial("y_obs", alpha=mu * phi, beta=(1.0 - mu) * phi, n=n, observed=y)
        elif likelihood == "binomial":
            pm.Binomial("y_obs", n=n, logit_p=eta, observed=y)
        else:
            sigma_obs = pm.HalfNormal("sigma_obs", 2.0 * scale)
            if likelihood == "student":
                pm.StudentT("y_obs", nu=STUDENT_NU, mu=eta, sigma=sigma_obs / pt.sqrt(n), observed=y)
            else:
                pm.Normal("y_obs", mu=eta, sigma=sigma_obs / pt.sqrt(n), observed=y)
    return model


def form_data(design: DidDesign, prior: NamedPrior, form: str, *, la_trends: bool = False) -> dict:
    """Data for a switchable model's ``form`` ('main' or 'event'); the other block is zeroed."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    d = design.data
    out = {k: d[k] for k in ("la_idx", "period_idx", "x", "n", "y", "pilot_idx")}
    out["treated_post"] = d["treated_post"] if form == "main" else np.zeros_like(d["treated_post"])
    out["event"] = d["event"] if form == "event" else np.zeros_like(d["event"])
    if la_trends:
        out["year_c"] = d["year_c"] if form == "main" else np.zeros_like(d["year_c"])
    out["prior_mean"] = np.asarray(prior.mean, dtype=float)
    out["prior_sd"] = np.asarray(prior.sd, dtype=float)
    return out


def inactive_vars(form: str, likelihood: str) -> list[str]:
    """Variables of a switchable model that only carry their prior in ``form``."""
    nm = names_for(likelihood)
    if form == "main":
        return ["event_effect", nm["event"]]
    return ["mu_tau", "sigma_tau", "tau_raw", "tau", nm["att"], "att_relative", nm["counterfactual"],
            nm["att_typical"], nm["att_la"], "sigma_trend", "trend_raw", "la_trend"]


def drop_inactive(idata, form: str, likelihood: str):
    """The fit without the switched-off block's prior-only variables."""
    post = idata["posterior"].to_dataset()
    drop = [v for v in inactive_vars(form, likelihood) if v in post]
    idata["posterior"] = post.drop_vars(drop)
    return idata


def main_vars(likelihood: str, *, la_trends: bool = False) -> list[str]:
    """Variables whose sampling diagnostics are checked for the main form."""
    nm = names_for(likelihood)
    out = ["alpha", "sigma_la", "la_effect", "period_effect", "mu_tau", "sigma_tau", "tau",
           nm["att"], "att_relative", nm["att_typical"]]
    out += {"betabinomial": ["inv_sqrt_phi"], "student": ["sigma_obs"], "normal": ["sigma_obs"]}.get(likelihood, [])
    return out + (["sigma_trend", "la_trend"] if la_trends else [])


def event_vars(likelihood: str) -> list[str]:
    nm = names_for(likelihood)
    out = ["alpha", "sigma_la", "la_effect", "period_effect", "event_effect", nm["event"]]
    return out + {"betabinomial": ["inv_sqrt_phi"], "student": ["sigma_obs"], "normal": ["sigma_obs"]}.get(likelihood, [])


# ---------------------------------------------------------------------------- other priors by reweighting

PARETO_K_MAX = 0.7


@dataclass(frozen=True)
class Reweighting:
    """How a posterior under one prior was obtained from a fit under another (PSIS)."""

    reference: str
    pareto_k: float
    importance_ess: float
    n_draws: int

    @property
    def ok(self) -> bool:
        return self.pareto_k <= PARETO_K_MAX and self.importance_ess >= 0.1 * self.n_draws

    def to_dict(self) -> dict:
        return {"reference_prior": self.reference, "pareto_k": self.pareto_k, "importance_ess": self.importance_ess,
                "n_draws": self.n_draws, "ok": self.ok, "threshold_pareto_k": PARETO_K_MAX}


def reweight_prior(idata, reference: NamedPrior, target: NamedPrior, *, seed: int):
    """The posterior under ``target`` from a fit under ``reference`` (they differ only in the
    prior on ``mu_tau``), by Pareto-smoothed importance resampling.

    The weights are the prior ratio ``N(mu_tau; target) / N(mu_tau; reference)``, smoothed by
    PSIS (arviz-stats); the returned DataTree holds ``posterior`` resampled (systematic
    resampling, so draws repeat) to equal weights, in the reference's (chain, draw) shape.
    Use it only when :attr:`Reweighting.ok` (Pareto k <= 0.7); otherwise refit.
    """
    import xarray as xr
    from arviz_stats.base.array import array_stats
    from scipy.stats import norm

    post = idata["posterior"].to_dataset()
    mu = post["mu_tau"].values
    log_ratio = norm.logpdf(mu, target.mean, target.sd) - norm.logpdf(mu, reference.mean, reference.sd)
    log_w, khat = array_stats.psislw(-log_ratio.ravel())  # psislw weights by exp(-input)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    n = w.size
    positions = (np.random.default_rng(seed).random() + np.arange(n)) / n
    idx = np.minimum(np.searchsorted(np.cumsum(w), positions), n - 1)
    shape = mu.shape
    new = {}
    for name, da in post.data_vars.items():
        flat = da.values.reshape(n, *da.shape[2:])[idx]
        new[name] = (da.dims, flat.reshape(*shape, *da.shape[2:]))
    ds = xr.Dataset(new, coords=post.coords, attrs={**post.attrs, "reweighted_from_prior": reference.name,
                                                    "pareto_k": float(khat)})
    info = Reweighting(reference.name, float(khat), float(1.0 / np.sum(w ** 2)), n)
    return xr.DataTree.from_dict({"posterior": ds}), info


# ---------------------------------------------------------------------------- posterior functions (NumPy)

def _draws(posterior, name: str) -> np.ndarray:
    """(sample, ...) array of a posterior variable, chains stacked."""
    x = np.asarray(posterior[name].values)
    return x.reshape(-1, *x.shape[2:])


def cell_expectations(design: DidDesign, posterior, *, likelihood: str, la_trends: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Expected outcome per cell with and without the effect, (samples, cells), reading scale.

    Counts: the expected share in % (100 * mu); continuous: the expected value. The main
    form's posterior is needed (``tau``).
    """
    d = design.data
    eta0 = (_draws(posterior, "alpha")[:, None] + _draws(posterior, "la_effect")[:, d["la_idx"]]
            + _draws(posterior, "period_effect")[:, d["period_idx"]])
    if d["x"].shape[1]:
        eta0 = eta0 + _draws(posterior, "beta") @ d["x"].T
    if la_trends:
        eta0 = eta0 + _draws(posterior, "la_trend")[:, d["la_idx"]] * d["year_c"]
    eta = eta0 + d["treated_post"] * _draws(posterior, "tau")[:, d["pilot_idx"]]
    if is_count(likelihood):
        return 100 * expit(eta), 100 * expit(eta0)
    return eta, eta0


def posterior_predict(design: DidDesign, posterior, mean: np.ndarray, *, likelihood: str,
                      rng: np.random.Generator) -> np.ndarray:
    """Replicated outcomes (samples, cells) on the data scale, given ``mean`` from
    :func:`cell_expectations` (with the effect)."""
    n = design.data["n"]
    if likelihood == "betabinomial":
        mu = np.clip(mean / 100, 1e-9, 1 - 1e-9)
        phi = _draws(posterior, "phi")[:, None]
        p = rng.beta(mu * phi, (1 - mu) * phi)
        return rng.binomial(n.astype(int), p)
    if likelihood == "binomial":
        return rng.binomial(n.astype(int), np.clip(mean / 100, 0, 1))
    sigma = _draws(posterior, "sigma_obs")[:, None] / np.sqrt(n)
    if likelihood == "student":
        return mean + sigma * rng.standard_t(STUDENT_NU, size=mean.shape)
    return mean + sigma * rng.standard_normal(mean.shape)


def ppc_coverage(cells: pd.DataFrame, y_rep: np.ndarray, level: float = 0.95) -> float:
    """Share of cells whose observed outcome lies inside the central ``level`` predictive interval."""
    lo, hi = np.quantile(y_rep, [(1 - level) / 2, (1 + level) / 2], axis=0)
    y = cells["y"].to_numpy(float)
    return float(np.mean((y >= lo) & (y <= hi)))


def _reading(y: np.ndarray, n: np.ndarray, count: bool, axis: int = -1) -> np.ndarray:
    """Group value on the reading scale: 100 * sum y / sum n for counts, mean otherwise."""
    return 100 * y.sum(axis) / n.sum(axis) if count else y.mean(axis)


def ppc_table(cells: pd.DataFrame, y_rep: np.ndarray, *, count: bool) -> pd.DataFrame:
    """Observed and posterior-predicted value by arm and year (share in % or mean)."""
    rows = []
    for (arm, year), idx in cells.groupby(["arm", "year"]).indices.items():
        n = cells["n"].to_numpy(float)[idx]
        pred = _reading(y_rep[:, idx], np.broadcast_to(n, y_rep[:, idx].shape), count)
        rows.append({"arm": arm, "year": int(year), "n": float(n.sum()),
                     "observed": float(_reading(cells["y"].to_numpy(float)[idx], n, count)),
                     "pred_mean": float(pred.mean()), "pred_low": float(np.quantile(pred, 0.025)),
                     "pred_high": float(np.quantile(pred, 0.975))})
    return pd.DataFrame(rows)


def _band(draws: np.ndarray) -> tuple[float, float, float]:
    return float(draws.mean()), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def trend_table(cells: pd.DataFrame, mu: np.ndarray, mu0: np.ndarray, neighbours_of: dict[str, list[str]], *,
                count: bool) -> pd.DataFrame:
    """Pilot vs its own neighbours by year: observed, fitted (posterior mean and 95% band) and,
    for pilots, the counterfactual without SofS. ``panel`` 'All pilots' pools every pilot and
    every comparator. Counts are n-weighted shares (%); continuous outcomes plain means."""
    n_all = cells["n"].to_numpy(float)
    y_all = cells["y"].to_numpy(float)
    groups = [("All pilots", "pilot", cells["arm"].eq("pilot")), ("All pilots", "neighbours", cells["arm"].eq("comparator"))]
    for pilot, nbs in neighbours_of.items():
        groups.append((pilot, "pilot", cells["la"].eq(pilot)))
        groups.append((pilot, "neighbours", cells["la"].isin(nbs) & cells["arm"].eq("comparator")))
    rows = []
    for panel, group, mask in groups:
        sub = cells[mask]
        for year, idx in sub.groupby("year").indices.items():
            pos = sub.index.to_numpy()[idx]
            n, y = n_all[pos], y_all[pos]
            w = n if count else np.ones_like(n)
            fit = (mu[:, pos] * w).sum(1) / w.sum()
            cf = (mu0[:, pos] * w).sum(1) / w.sum()
            f_mean, f_lo, f_hi = _band(fit)
            c_mean, c_lo, c_hi = _band(cf) if group == "pilot" else (np.nan,) * 3
            rows.append({"panel": panel, "group": group, "year": int(year), "n_las": len(pos),
                         "observed": float(_reading(y, n, count)), "fit_mean": f_mean, "fit_low": f_lo, "fit_high": f_hi,
                         "counterfactual_mean": c_mean, "counterfactual_low": c_lo, "counterfactual_high": c_hi,
                         "treated": bool(cells.loc[pos, "treated_post"].max()) if group == "pilot" else False})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- statements

@dataclass(frozen=True)
class Reading:
    """How effects of one outcome are read: label, unit, ROPE, MID and expected direction."""

    label: str
    unit: str
    rope: float
    mid: float
    direction: int            # -1: the programme expects a fall
    relative_target: float = 0.2


def effect_statements(r: Reading, prior: NamedPrior, post, *, likelihood: str) -> dict:
    """Posterior statements about the effect in the pilots under one prior (numbers from draws)."""
    nm = names_for(likelihood)
    att = post[nm["att"]].values.ravel()
    rel = post["att_relative"].values.ravel()
    s = summarise_effect(att, rope=r.rope, mid=r.mid)
    typ = summarise_effect(post[nm["att_typical"]].values, rope=r.rope, mid=r.mid)
    better = att * r.direction > 0
    p_better = prob(better)
    fall = r.direction < 0
    verb = "reduced" if fall else "increased"
    u = r.unit
    p_target = prob(r.direction * rel >= r.relative_target)
    return {
        "prior": prior.name,
        "prior_description": prior.describe(),
        "att": s.to_dict(),
        "att_relative_mean": float(rel.mean()),
        "att_relative_eti95": [float(q) for q in np.quantile(rel, [0.025, 0.975])],
        "counterfactual_mean": float(post[nm["counterfactual"]].values.mean()),
        "att_typical": typ.to_dict(),
        "mu_tau": summarise_effect(post["mu_tau"].values, rope=0, mid=0).to_dict(),
        "sigma_tau_mean": float(post["sigma_tau"].values.mean()),
        "p_in_direction_of_programme": p_better,
        "p_beyond_mid_in_direction": prob(att * r.direction > r.mid),
        "p_beyond_mid_against": prob(att * r.direction < -r.mid),
        "p_in_rope": s.p_in_rope,
        "p_target_met": p_target,
        "statements": [
            state(p_better, f"SofS {verb} {r.label} in the pilot LAs"),
            state(prob(att * r.direction > r.mid), f"it {'fell' if fall else 'rose'} by more than {r.mid:g} {u}"),
            state(s.p_in_rope, f"the change was within ±{r.rope:g} {u} (practically nil: the report's 'no impact')"),
            state(prob(att * r.direction < -r.mid), f"it {'rose' if fall else 'fell'} by more than {r.mid:g} {u} "
                                                    "(the opposite of what the programme intended)"),
            state(typ.p_negative if fall else typ.p_positive,
                  f"SofS {verb} {r.label} in a typical LA like the pilots (between-LA variation included)"),
            state(p_target, f"the programme's target was met ({r.label} {'fell' if fall else 'rose'} by at least "
                            f"{r.relative_target:.0%} relative)"),
        ],
    }


def summary_row(st: dict, diag, unit: str) -> dict:
    a, t = st["att"], st["att_typical"]
    return {"prior": st["prior"], f"att_{unit}_mean": a["mean"], "eti95_low": a["eti95_low"], "eti95_high": a["eti95_high"],
            f"typical_la_{unit}_mean": t["mean"], "typical_eti95_low": t["eti95_low"], "typical_eti95_high": t["eti95_high"],
            "relative_change_mean": st["att_relative_mean"], "p_programme_direction": st["p_in_direction_of_programme"],
            "p_in_rope": a["p_in_rope"], "p_beyond_mid_in_direction": st["p_beyond_mid_in_direction"],
            "p_beyond_mid_against": st["p_beyond_mid_against"], "p_target_met": st["p_target_met"],
            "max_rhat": float(diag.table["rhat"].max()), "min_ess_bulk": float(diag.table["ess_bulk"].min()),
            "divergences": diag.divergences, "diagnostics_ok": diag.ok}


def interval_table(post, var: str, dim: str, prior: str, direction: int) -> pd.DataFrame:
    """Mean, 95% interval and P(effect in the programme's direction) along one dim."""
    x = post[var]
    draws = x.stack(sample=("chain", "draw")).transpose(dim, "sample").values
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=1)
    return pd.DataFrame({dim: list(x[dim].values), "prior": prior, "mean": draws.mean(1), "eti95_low": lo,
                         "eti95_high": hi, "p_programme_direction": (draws * direction > 0).mean(1)})


def event_table(post, var: str, threshold: float, design: DidDesign | None = None) -> pd.DataFrame:
    """Event-study effects by year relative to adoption, with P(|effect| > threshold) and, given
    the design, how many pilot LAs each bin rests on."""
    x = post[var]
    draws = x.stack(sample=("chain", "draw")).transpose("event_time", "sample").values
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=1)
    labels = [str(k) for k in x["event_time"].values]
    pre = [k.startswith("<=") or (k.lstrip("-").isdigit() and int(k) < 0) for k in labels]
    table = pd.DataFrame({"event_time": labels, "mean": draws.mean(1), "eti95_low": lo, "eti95_high": hi,
                          "p_abs_gt_threshold": (np.abs(draws) > threshold).mean(1), "pre_period": pre})
    if design is not None:
        col = {lab: j for j, lab in enumerate(design.event_labels)}
        table["n_pilots"] = [len(np.unique(design.data["la_idx"][design.data["event"][:, col[k]] > 0])) for k in labels]
    return table


# ---------------------------------------------------------------------------- the report's method

def two_factor_anova(cells: pd.DataFrame, *, years: tuple[int, int] = (2015, 2019), count: bool) -> dict:
    """The report's LA-level method on these data: a two-factor ANOVA of the LA-year value on
    pilot status and year (with their interaction), over the report's years (2014/15-2018/19,
    i.e. years ending March 2015-2019). The report read a significant interaction as impact.
    Returns the F tests (type II) and the cells used; a frequentist cross-check only."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    sub = cells[(cells["year"] >= years[0]) & (cells["year"] <= years[1]) & (cells["phase"] != "exited")].copy()
    sub["value"] = 100 * sub["y"] / sub["n"] if count else sub["y"].astype(float)
    out = {"years": list(years), "n_cells": int(len(sub)), "n_pilots": int(sub.loc[sub.arm == "pilot", "la"].nunique()),
           "n_comparators": int(sub.loc[sub.arm == "comparator", "la"].nunique()), "method":
           "OLS value ~ C(arm) * C(year), type II ANOVA (LA-year cells, no LA effects)"}
    if sub["arm"].nunique() < 2 or sub["year"].nunique() < 2 or len(sub) <= 2 * sub["year"].nunique() + 1:
        out["note"] = "too few cells for the two-factor analysis"
        return out
    fit = smf.ols("value ~ C(arm) * C(year)", data=sub).fit()
    table = anova_lm(fit, typ=2)
    p = table["PR(>F)"]
    out.update({"p_pilot_status": float(p["C(arm)"]), "p_year": float(p["C(year)"]),
                "p_interaction": float(p["C(arm):C(year)"]),
                "mean_pilot": float(sub.loc[sub.arm == "pilot", "value"].mean()),
                "mean_comparator": float(sub.loc[sub.arm == "comparator", "value"].mean())})
    return out


# ---------------------------------------------------------------------------- fitting

#: NUTS target acceptance by form (``fit_panel(target_accept=...)`` overrides).
TARGET_ACCEPT = {"main": 0.9, "event": 0.9}


@dataclass
class PanelFits:
    """Main-form posteriors under each named prior, the event study, and how each was got."""

    fits: dict
    diagnostics: dict
    reweighting: dict
    event: object
    event_diagnostics: object
    reference: str
    compile_seconds: float
    sample_seconds: dict


def fit_panel(design: DidDesign, priors: list[NamedPrior], *, likelihood: str, la_trends: bool = False,
              draws: int = 1000, tune: int = 500, chains: int = 4, seed: int = 0, reweight: bool = True,
              progress: bool = False, log=lambda message: None,
              target_accept: dict[str, float] | None = None) -> PanelFits:
    """Compile one switchable model, fit the broadest prior and the event study with NUTS
    (nutpie), and get the other priors by PSIS reweighting of the broadest prior's fit, refitting
    any prior whose Pareto k exceeds 0.7 (or every prior, with ``reweight=False``)."""
    import time

    from models.diagnostics import Diagnostics, check_sampling
    from models.sampling import CompiledSampler

    target_accept = {**TARGET_ACCEPT, **(target_accept or {})}
    reference = max(priors, key=lambda p: p.sd)
    t0 = time.perf_counter()
    model = build_panel_model(design, reference, likelihood=likelihood, la_trends=la_trends, switchable=True)
    sampler = CompiledSampler(model)
    known = {v.name for v in sampler.compiled.shared_var_keys}
    compile_s = time.perf_counter() - t0
    timings: dict[str, float] = {}

    def run(prior: NamedPrior, form: str, offset: int):
        t = time.perf_counter()
        data = {k: v for k, v in form_data(design, prior, form, la_trends=la_trends).items() if k in known}
        idata = sampler.sample(data, draws=draws, tune=tune, chains=chains, seed=seed + offset, progress=progress,
                               target_accept=target_accept[form])
        timings[f"{form}:{prior.name}"] = round(time.perf_counter() - t, 2)
        return drop_inactive(idata, form, likelihood)

    fits, diags, rw = {}, {}, {}
    log(f"sampling under the {reference.name} prior (the broadest; other priors reweight it)...")
    fits[reference.name] = run(reference, "main", 0)
    diags[reference.name] = check_sampling(fits[reference.name], main_vars(likelihood, la_trends=la_trends))
    rw[reference.name] = None
    for i, prior in enumerate(priors):
        if prior.name == reference.name:
            continue
        if reweight:
            tree, info = reweight_prior(fits[reference.name], reference, prior, seed=seed + 10 + i)
            if info.ok:
                fits[prior.name], rw[prior.name] = tree, info.to_dict()
                ref = diags[reference.name]
                diags[prior.name] = Diagnostics(ref.table, ref.divergences, ref.n_draws, ref.ebfmi, list(ref.problems))
                continue
            log(f"the {prior.name} prior is too far from the {reference.name} fit (Pareto k {info.pareto_k:.2f}); refitting")
        log(f"sampling under the {prior.name} prior...")
        fits[prior.name] = run(prior, "main", 1 + i)
        diags[prior.name] = check_sampling(fits[prior.name], main_vars(likelihood, la_trends=la_trends))
        rw[prior.name] = None
    log("event study (years relative to adoption)...")
    event = run(reference, "event", 100)
    active = [lab for lab, used in zip(design.event_labels, design.data["event"].sum(0) > 0) if used]
    event["posterior"] = event["posterior"].to_dataset().sel(event_time=active)  # empty bins carry only their prior
    event_diag = check_sampling(event, event_vars(likelihood))
    ordered = [p.name for p in priors]
    return PanelFits({k: fits[k] for k in ordered}, {k: diags[k] for k in ordered}, {k: rw[k] for k in ordered},
                     event, event_diag, reference.name, round(compile_s, 2), timings)


def prior_predictive(design: DidDesign, priors: list[NamedPrior], *, likelihood: str, la_trends: bool = False,
                     draws: int = 500, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Prior draws of the ATT and of the overall value (share in % or mean) under each prior."""
    nm = names_for(likelihood)
    model = build_panel_model(design, priors[0], likelihood=likelihood, la_trends=la_trends)
    d = design.data
    out = {}
    import logging
    import warnings

    pymc_log = logging.getLogger("pymc")
    level = pymc_log.level
    for i, prior in enumerate(priors):
        with model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Numba will use object mode")  # beta-binomial draws
            pymc_log.setLevel(logging.WARNING)
            try:
                pm.set_data({"prior_mean": prior.mean, "prior_sd": prior.sd})
                pp = pm.sample_prior_predictive(draws=draws, random_seed=seed + i, var_names=[nm["att"], "y_obs"],
                                                compile_kwargs={"mode": "FAST_COMPILE"})  # 2 s, not 20 s
            finally:
                pymc_log.setLevel(level)
        y = pp["prior_predictive"]["y_obs"].values.reshape(-1, len(d["y"]))
        overall = 100 * y.sum(1) / d["n"].sum() if is_count(likelihood) else y.mean(1)
        out[prior.name] = {"att": pp["prior"][nm["att"]].values.ravel(), "overall": overall}
    return out
