"""Named priors (sceptical, neutral, enthusiastic) for the DiD engine's mean effect ``mu_tau``.

The programme's claimed effect is turned into a target on the model's link scale at the
treated units' pre-adoption level ``p0`` (:meth:`models.did.experiment.DidExperiment.pre_level`):

============  ====================================================  ======================
link          target for a relative change ``r`` (or ``target``     neutral prior
              in the outcome's units)
============  ====================================================  ======================
logit         ``logit(p0 (1 + r)) - logit(p0)``                      N(0, 1)
log           ``log(1 + r)``                                         N(0, 1)
identity      ``r |p0|`` (or ``target``)                            N(0, (2 sd(y))^2)
============  ====================================================  ======================

and :func:`models.priors.spiegelhalter_priors` builds the three priors from it. A user's own
``target`` (``--target``, in the outcome's units) replaces ``r`` on the identity link; on the
logit and log links it is converted at ``p0`` (percentage points: ``p0 + target / 100``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logit

from models.did.likelihoods import Likelihood
from models.did.model import BETWEEN_SD
from models.priors import NamedPrior, spiegelhalter_priors


def effect_priors(lik: Likelihood, pre_level: float, *, direction: int = +1, relative_target: float | None = 0.2,
                  target: float | None = None, factor: float | None = None, outcome_label: str = "the outcome",
                  outcome_sd: float | None = None) -> dict[str, NamedPrior]:
    """The three named priors for ``mu_tau`` (see the module docstring).

    ``target`` is in reading units (``factor`` times the response: pp for shares); when it is
    None, ``relative_target`` in ``direction`` is used. ``outcome_sd`` (identity link) sets the
    neutral prior's SD.
    """
    factor = lik.factor if factor is None else factor
    if target is None and (relative_target is None or direction == 0):
        raise ValueError("named priors need a target: a relative change with a direction, or an absolute target")
    if target is not None:
        label = f"the target change of {target:+g} in {outcome_label}"
    else:
        label = f"the programme's {relative_target:.0%} {'rise' if direction > 0 else 'fall'} in {outcome_label}"
    if lik.identity:
        if outcome_sd is None or not outcome_sd > 0:
            raise ValueError("priors on the identity link need the outcome's SD (> 0)")
        t = target if target is not None else direction * relative_target * abs(pre_level)
        return spiegelhalter_priors(t, neutral_sd=2.0 * outcome_sd, scale="outcome units", target_label=label)
    if lik.link == "log":
        if not pre_level > 0:
            raise ValueError(f"the pre-period level must be > 0, got {pre_level}")
        moved = pre_level + target / factor if target is not None else pre_level * (1 + direction * relative_target)
        if not moved > 0:
            raise ValueError(f"the target moves the pre-period level {pre_level:g} below zero")
        scale = "log mean ratio (positive durations)" if lik.hurdle else "log rate ratio"
        return spiegelhalter_priors(float(np.log(moved / pre_level)), neutral_sd=1.0, scale=scale, target_label=label)
    if not 0 < pre_level < 1:
        raise ValueError(f"pre-period share must lie in (0, 1), got {pre_level}")
    moved = pre_level + target / factor if target is not None else pre_level * (1 + direction * relative_target)
    if not 0 < moved < 1:       # refused, not clipped: a clipped target makes a prior of any width
        raise ValueError(f"the target moves the pre-period share {pre_level:.3g} to {moved:.3g}, outside (0, 1): "
                         "give a reachable absolute target (in pp)")
    return spiegelhalter_priors(float(logit(moved) - logit(pre_level)), neutral_sd=1.0, scale="log-odds ratio",
                                target_label=label)


# ---------------------------------------------------------------- priors that keep their promises on the reported scale

@dataclass(frozen=True)
class ReportedScale:
    """The treated units' post-adoption cells collapsed to groups for the prior check: each
    group's untreated linear predictor held at its unit's observed pre-adoption level, its
    weight, and which effect parameter acts on it (``tau_index``)."""

    eta0: dict              # part suffix -> (groups,) untreated predictor
    weight: np.ndarray      # (groups,)
    tau_index: np.ndarray   # (groups,) column of the effect draws
    sigma_log: float | None = None
    log_upper: float | None = None      # the hurdle's cut-off: the reported mean is then the truncated mean


def reported_scale(dm, *, collapse: bool = True) -> ReportedScale:
    """Groups (treated unit x effect parameter) of the treated post-adoption cells, with the
    untreated outcome held at each treated unit's observed pre-adoption level (on the link
    scale: the empirical logit of its pre-period share, the log of its rate or mean positive
    duration; the identity link needs no level).

    With ``collapse`` (the default) groups that share an effect parameter are merged where that
    is exact: on the identity link the weighted effect is ``sum_g w_g tau_k`` and the base
    ``sum_g w_g eta0_g``; on the log link (one part) ``sum_g w_g e^eta0_g (e^tau_k - 1)``. One
    group per effect parameter then carries ``W_k = sum w_g`` and ``eta0_k = sum w_g eta0_g / W_k``
    (identity) or ``log(sum w_g e^eta0_g / W_k)`` (log), so the prior check gives the same
    numbers on far fewer columns (mpdta: one column per ATT(g,t) instead of per county).
    The logit link and the hurdle are not linear in that sense and keep every group."""
    design, lik = dm.design, dm.lik
    d = design.data
    cells = design.cells
    post = d["post"] > 0
    key = d["treated_unit_idx"] if design.spec.effects == "unit" else d["gt_pos"]
    frame = pd.DataFrame({"unit": cells["unit"].to_numpy()[post], "tau": key[post], "w": d["n"][post]})
    groups = frame.groupby(["unit", "tau"], as_index=False)["w"].sum()
    pre = cells[cells["phase"] == "pre"]
    eta0 = {}
    for part in lik.parts:
        if lik.identity:     # the unit's pre-adoption mean (the base of a relative change)
            pre_w = pre.assign(yn=pre["y"] * pre["n"]).groupby("unit")[["yn", "n"]].sum()
            level = pre_w["yn"] / pre_w["n"]
        elif part == "_zero" or lik.link == "logit":
            agg = pre.groupby("unit")[["y", "n"]].sum()
            p = ((agg["y"] + 0.5) / (agg["n"] + 1.0)).clip(1e-6, 1 - 1e-6)
            level = np.log(p / (1 - p))
        elif lik.hurdle:
            agg = pre.groupby("unit")[["log_sum", "n_pos"]].sum()
            level = agg["log_sum"] / agg["n_pos"].clip(lower=1)
        else:
            agg = pre.groupby("unit")[["y", "n"]].sum()
            level = np.log((agg["y"] + 0.5) / agg["n"])
        eta0[part] = level.reindex(groups["unit"]).to_numpy(float)
    sigma_log = None
    if lik.hurdle:   # the pooled SD of log positive durations (the absolute mean's scale)
        n_pos = cells["n_pos"].sum()
        m = cells["log_sum"].sum() / max(n_pos, 1)
        sigma_log = float(np.sqrt(max(cells["log_sq"].sum() / max(n_pos, 1) - m ** 2, 1e-6)))
    log_upper = float(np.log(design.cutoff)) if lik.hurdle and design.cutoff is not None else None
    weight, tau_index = groups["w"].to_numpy(float), groups["tau"].to_numpy(int)
    if collapse and (lik.identity or (lik.link == "log" and not lik.hurdle)):
        tau_index, inverse = np.unique(tau_index, return_inverse=True)
        total = np.bincount(inverse, weights=weight)
        for part, level in eta0.items():
            if lik.identity:
                eta0[part] = np.bincount(inverse, weights=weight * level) / total
            else:        # log-sum-exp by group, stable for large levels
                top = np.full(len(total), -np.inf)
                np.maximum.at(top, inverse, level)
                eta0[part] = top + np.log(np.bincount(inverse, weights=weight * np.exp(level - top[inverse])) / total)
        weight = total
    return ReportedScale(eta0, weight, tau_index, sigma_log=sigma_log, log_upper=log_upper)


def effect_deviations(dm, *, draws: int, seed: int, suffix: str = "") -> np.ndarray:
    """Draws (draws x effect parameters) of the effects' deviations from their mean
    ``tau - mu_tau`` under the model's own priors (between-unit SD, event-time and cohort
    deviations): they do not depend on the named prior on ``mu_tau``, so one set serves every
    candidate prior (:func:`models.sampling.prior_draws`, vectorised over draws)."""
    from models.sampling import prior_draws

    pp = prior_draws(dm.model, [f"mu_tau{suffix}", f"tau{suffix}"], draws=draws, seed=seed)
    tau = pp[f"tau{suffix}"].reshape(draws, -1)
    return tau - pp[f"mu_tau{suffix}"].reshape(draws, 1)


def reported_effect(dm, scale: ReportedScale, mean: float, sd: float, xi: np.ndarray, dev: np.ndarray, *,
                    part: str = "", between: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Prior draws of the reported effect (reading units) and of its relative change for the
    named prior ``N(mean, sd^2)`` on ``mu_tau`` of ``part`` (the other part's effect at 0) and
    the between-unit SD's prior scaled by ``between`` (unit structure: ``tau - mu_tau =
    sigma_tau z`` with ``sigma_tau`` proportional to its prior's scale, so the deviations drawn
    at scale 1 scale exactly)."""
    lik = dm.lik
    if dm.design.spec.effects == "unit":
        dev = between * dev
    tau = (mean + sd * xi)[:, None] + dev[:, scale.tau_index]
    eta0 = {p: np.asarray(v)[None, :] for p, v in scale.eta0.items()}      # (1, groups): the same in every draw
    eta1 = {p: (v + tau if p == part else v) for p, v in eta0.items()}

    def nuis(rows: int) -> dict:
        return {"sigma_log": np.full(rows, scale.sigma_log)} if lik.hurdle else {}

    if part == "_zero":
        r1, r0 = lik.secondary_response(eta1, lib=np), lik.secondary_response(eta0, lib=np)
        factor = 100.0
    else:
        cut = {"log_upper": scale.log_upper} if scale.log_upper is not None else {}
        r1 = lik.response(eta1, nuis(tau.shape[0]), lib=np, **cut)
        r0 = lik.response(eta0, nuis(1), lib=np, **cut)
        factor = dm.spec.reading_factor(lik)
    w = scale.weight
    diff = ((r1 - r0) * w).sum(1)
    return factor * diff / w.sum(), diff / np.maximum((r0 * w).sum(1), 1e-300)


def _crossing(fn, lo: float, hi: float, target: float, *, increasing: bool, xtol: float = 1e-8) -> float:
    """The point in ``[lo, hi]`` where ``fn`` (monotone) crosses ``target``: the boundary
    between ``fn < target`` and ``fn >= target`` (the end it tends to when it never crosses).
    Brent's method on the bracket, to ``xtol``: a few evaluations where ``fn`` is smooth (a
    median), a safeguarded bisection where it is a step function (a share of draws)."""
    from scipy.optimize import brentq

    def gap(x: float) -> float:     # fn >= target counts as the far side, as in a bisection
        g = fn(x) - target
        return (g if g != 0 else 1e-300) * (1 if increasing else -1)

    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo > 0:
        return lo
    if g_hi < 0:
        return hi
    return float(brentq(gap, lo, hi, xtol=xtol))


@dataclass(frozen=True)
class PriorCheck:
    """One named prior's promise, checked on the reported scale."""

    prior: str
    mean: float
    sd: float
    p_target_met: float
    median_relative: float
    p_wrong_side: float
    eti95_low: float
    eti95_high: float
    reading_units: str
    between_scale: float = 1.0


def calibrated_priors(dm, *, direction: int, relative_target: float | None = None, target: float | None = None,
                      outcome_label: str, units: str, neutral_sd: float, scale_name: str, part: str = "",
                      draws: int = 10000, seed: int = 0) -> tuple[dict[str, NamedPrior], list[PriorCheck]]:
    """Named priors on ``mu_tau`` whose promises hold on the reported scale, with the untreated
    outcome held at the treated units' observed pre-adoption levels (:func:`reported_scale`)
    and every other effect parameter (between-unit SD, event-time and cohort deviations) drawn
    from the model's priors:

    - sceptical ``N(0, s^2)``: P(target met) = 5%;
    - enthusiastic ``N(m, s^2)``: its median at the target, 5% on the wrong side of 0;
    - neutral ``N(0, neutral_sd^2)``: weakly informative, described by what it implies.

    With few treated units the spread of their effects alone (``sigma_tau`` under its default
    prior) can put more than 5% on the target, or on the wrong side, whatever the prior on
    the mean. The sceptical and enthusiastic priors then also set the spread's prior scale to
    their own SD: ``sigma_tau ~ HalfNormal(s)`` (``between_scale = s / (0.5 s_w)``), and ``s``
    is solved again, so the promise holds for 2 treated units as for 9. (ATT(g,t) structures
    have no ``sigma_tau``; there a promise out of reach is said so in the prior's rationale.)

    The target is a relative change ``relative_target`` in ``direction`` (the share, rate or
    mean moves by that fraction) or an absolute ``target`` in reading units. A share target
    beyond 0% or 100% is refused. Returns the priors and their checks.
    """
    if (relative_target is None) == (target is None):
        raise ValueError("give a relative target or an absolute target")
    sign = direction if target is None else (1 if target > 0 else -1)
    if sign == 0:
        raise ValueError("a relative target needs a direction (+1 or -1)")
    rs = reported_scale(dm)
    lik = dm.lik
    if part != "_zero" and lik.link == "logit" and not lik.hurdle and relative_target is not None:
        p0 = 1.0 / (1.0 + np.exp(-rs.eta0[""]))
        reached = float((p0 * (1 + sign * relative_target) * rs.weight).sum() / rs.weight.sum())
        if not 0 < reached < 1:
            raise ValueError(f"a {relative_target:.0%} {'rise' if sign > 0 else 'fall'} of the pre-period share "
                             f"({float((p0 * rs.weight).sum() / rs.weight.sum()):.3f}) leaves [0, 1]: give a "
                             "reachable absolute target (in pp)")
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal(draws)
    dev = effect_deviations(dm, draws=draws, seed=seed + 1, suffix=part)
    has_spread = dm.design.spec.effects == "unit"
    base = BETWEEN_SD * (dm.change if part == "" else 1.0)     # sigma_tau's default prior scale

    def measure(mean: float, sd: float, between: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        att, rel = reported_effect(dm, rs, mean, sd, xi, dev, part=part, between=between)
        return (rel if relative_target is not None else att), att

    goal = relative_target if relative_target is not None else abs(target)

    def p_met(mean: float, sd: float, between: float = 1.0) -> float:
        x, _ = measure(mean, sd, between)
        return float(np.mean(sign * x >= goal))

    def solve_sceptical(tied: bool) -> float:
        spread = (lambda sd: sd / base) if tied else (lambda sd: 1.0)
        return float(np.exp(_crossing(lambda ls: p_met(0.0, np.exp(ls), spread(np.exp(ls))), np.log(1e-4),
                                    np.log(50.0), 0.05, increasing=True)))

    tiny = 1e-4
    scep_tied = has_spread and p_met(0.0, tiny) >= 0.05     # the default spread alone breaks the promise
    s_scep = solve_sceptical(scep_tied)
    b_scep = s_scep / base if scep_tied else 1.0

    def enthusiastic(sd: float, between: float) -> float:
        def median(size: float) -> float:      # the median effect in the programme's direction
            x, _ = measure(sign * size, sd, between)
            return float(np.median(sign * x))
        return sign * float(np.exp(_crossing(lambda lm: median(np.exp(lm)), np.log(1e-4), np.log(50.0), goal,
                                           increasing=True)))

    def p_wrong(ls: float, tied: bool) -> float:
        sd = np.exp(ls)
        between = sd / base if tied else 1.0
        m = enthusiastic(sd, between)
        _, att = measure(m, sd, between)
        return float(np.mean(sign * att < 0))

    floor = 0.1 * s_scep     # a proper prior: its SD at least a tenth of the sceptical one
    ent_tied = False
    if p_wrong(np.log(floor), False) < 0.05:
        s_ent = float(np.exp(_crossing(lambda ls: p_wrong(ls, False), np.log(floor), np.log(20.0), 0.05,
                                     increasing=True, xtol=1e-5)))
    elif has_spread:         # the default spread alone puts more than 5% on the wrong side
        ent_tied = True
        s_ent = float(np.exp(_crossing(lambda ls: p_wrong(ls, True), np.log(tiny), np.log(20.0), 0.05,
                                     increasing=True, xtol=1e-5)))
    else:
        s_ent = floor        # no spread parameter to set: as close as it gets (said in the rationale)
    b_ent = s_ent / base if ent_tied else 1.0
    m_ent = enthusiastic(s_ent, b_ent)
    _, att_ent = measure(m_ent, s_ent, b_ent)
    wrong = float(np.mean(sign * att_ent < 0))
    label = (f"the programme's {relative_target:.0%} {'rise' if sign > 0 else 'fall'} in {outcome_label}"
             if relative_target is not None else f"the target change of {target:+g} {units} in {outcome_label}")
    tied_text = " (the between-unit SD's prior scaled to the same SD: with these few treated units, its default " \
                "alone would break the promise)"
    priors = {
        "sceptical": NamedPrior("sceptical", 0.0, s_scep, scale_name,
                                f"no effect expected; 5% prior chance of reaching {label} (checked on the reported "
                                "scale)" + (tied_text if scep_tied else ""), between_scale=b_scep),
        "neutral": NamedPrior("neutral", 0.0, float(neutral_sd), scale_name,
                              "no effect expected, weakly informative (its implications on the reported scale are "
                              "in the prior check)"),
        "enthusiastic": NamedPrior("enthusiastic", m_ent, s_ent, scale_name,
                                   f"centred on {label} (median at the target on the reported scale); {wrong:.0%} "
                                   "prior chance of an effect in the other direction"
                                   + (tied_text if ent_tied else "")
                                   + ("" if wrong <= 0.06 else " (5% is out of reach: the model's other effect "
                                                                "deviations alone put more on that side)"),
                                   between_scale=b_ent),
    }
    return priors, check_priors(dm, priors.values(), direction=sign, relative_target=relative_target, target=target,
                                units=units, part=part, xi=xi, dev=dev, scale=rs)


def check_priors(dm, priors, *, direction: int, relative_target: float | None, target: float | None, units: str,
                 part: str = "", xi: np.ndarray | None = None, dev: np.ndarray | None = None,
                 scale: ReportedScale | None = None, draws: int = 10000, seed: int = 0) -> list[PriorCheck]:
    """Each prior's P(target met), median relative change, P(wrong side) and 95% range of the
    reported effect, computed as :func:`calibrated_priors` computes them."""
    rs = scale or reported_scale(dm)
    if xi is None:
        xi = np.random.default_rng(seed).standard_normal(draws)
    if dev is None:
        dev = effect_deviations(dm, draws=xi.size, seed=seed + 1, suffix=part)
    out = []
    for p in priors:
        att, rel = reported_effect(dm, rs, p.mean, p.sd, xi, dev, part=part, between=p.between_scale)
        x = rel if relative_target is not None else att
        goal = relative_target if relative_target is not None else abs(target)
        lo, hi = np.quantile(att, [0.025, 0.975])
        out.append(PriorCheck(p.name, p.mean, p.sd, float(np.mean(direction * x >= goal)),
                              float(np.median(rel)), float(np.mean(direction * att < 0)), float(lo), float(hi), units,
                              p.between_scale))
    return out
