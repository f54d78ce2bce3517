r"""Pure functions on posterior draws of a DiD: staggered aggregates, tables, statements, checks.

Aggregates of ATT(g,t) (``att_gt`` draws, one column per effect cell) with the definitions of
R's ``did`` (``aggte``), each cell weighted by ``w_{g,t}`` (its records, trials, exposure or
units; with one record per unit-period, the cohort's size, as ``did``'s group probabilities)::

    simple          sum_{t >= g} w_gt ATT(g,t) / sum_{t >= g} w_gt
    dynamic(e)      sum_g w_{g,g+e} ATT(g,g+e) / sum_g w_{g,g+e}    (e < 0: anticipation and the
                                                                     pre-trend terms' departures)
    dynamic         mean over e >= 0 of dynamic(e)
    group(g)        mean over t >= g of ATT(g,t)
    group           sum_g size_g group(g) / sum_g size_g,  size_g = mean_t w_gt
    calendar(t)     sum_{g <= t} w_gt ATT(g,t) / sum_{g <= t} w_gt
    calendar        mean over t of calendar(t)

Every number a statement prints is a probability or a quantile computed from the draws, on
the reading scale of :class:`Reading` (the outcome's own units), rounded to its decimals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from models.did.design import DidDesign
from models.statements import prob, state, summarise_effect

AGGREGATES = ("simple", "dynamic", "group", "calendar")


@dataclass(frozen=True)
class Reading:
    """How an outcome's effects are read: every label and threshold comes from the user (or
    the SofS specification), in the outcome's own units.

    ``direction``: +1 when the programme expects a rise, -1 a fall, 0 when no direction is
    claimed. ``target``: the change the programme claims, in ``units`` (signed), or None.
    ``decimals``: digits after the point (None: from the posterior SD, :func:`decimals_for`).
    """

    label: str
    units: str
    rope: float
    mid: float
    direction: int = 0
    target: float | None = None
    relative_target: float | None = None
    decimals: int | None = None
    subject: str = "the programme"
    where: str = "the treated units"
    unit_noun: str = "unit"

    def __post_init__(self) -> None:
        if self.rope < 0 or self.mid < 0:
            raise ValueError("rope and mid are half-widths in the outcome's units and must be >= 0")
        if self.direction not in (-1, 0, 1):
            raise ValueError("direction must be -1, 0 or +1")

    def fmt(self, x: float, decimals: int | None = None, sign: bool = True) -> str:
        d = self.decimals if decimals is None else decimals
        d = 2 if d is None else d
        return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"

    def to_dict(self) -> dict:
        return asdict(self)


def decimals_for(sd: float, *, at_least: int = 0, at_most: int = 6) -> int:
    """Digits that show a number to about a tenth of its posterior SD: 0.015 -> 3, 2.7 -> 1."""
    if not np.isfinite(sd) or sd <= 0:
        return 2
    return int(np.clip(1 - math.floor(math.log10(sd)), at_least, at_most))


# ---------------------------------------------------------------- aggregates

def _flat(x) -> np.ndarray:
    """(samples, ...) array from a DataArray with chain and draw dims, or an array."""
    if hasattr(x, "dims"):
        other = [d for d in x.dims if d not in ("chain", "draw")]
        return np.asarray(x.transpose("chain", "draw", *other).values).reshape(-1, *[x.sizes[d] for d in other])
    return np.asarray(x)


def aggregate(design: DidDesign, att_gt, pre_gt=None) -> dict:
    """The four aggregates of ``did`` from ATT(g,t) draws (see the module docstring).

    Returns ``{"simple": (S,), "dynamic": {e: (S,)}, "dynamic_overall": (S,), "group": {g: (S,)},
    "group_overall": (S,), "calendar": {t: (S,)}, "calendar_overall": (S,)}``; the pre-period
    departures ``pre_gt`` (base ``last``) enter ``dynamic`` at their event times, and the base
    period itself at 0.
    """
    att = _flat(att_gt)
    cells = design.effect_cells
    w = design.gt_weights
    g = np.array([c[0] for c in cells])
    t = np.array([c[1] for c in cells])
    e = np.array([c[2] for c in cells])
    post = e >= 0
    if not post.any():
        raise ValueError("no post-adoption effect cells: nothing to aggregate")

    def wmean(sel, weights=w):
        return att[:, sel] @ weights[sel] / weights[sel].sum()

    out = {"simple": wmean(post)}
    dynamic = {int(k): wmean(e == k) for k in sorted(set(e))}
    if pre_gt is not None and design.pretrend_cells:
        pre = _flat(pre_gt)
        pe = np.array([c[2] for c in design.pretrend_cells])
        pw = pre_weights(design)
        for k in sorted(set(pe)):
            sel = pe == k
            dynamic[int(k)] = pre[:, sel] @ pw[sel] / max(pw[sel].sum(), 1e-12)
        if design.spec.base == "last" and design.spec.control == "never":
            dynamic[-1 - design.spec.anticipation] = np.zeros(att.shape[0])
    out["dynamic"] = dict(sorted(dynamic.items()))
    out["dynamic_overall"] = np.mean([v for k, v in out["dynamic"].items() if k >= 0], axis=0)
    group, size = {}, {}
    for gg in sorted(set(g[post])):
        sel = post & (g == gg)
        group[int(gg)] = att[:, sel].mean(axis=1)
        size[int(gg)] = w[sel].mean()
    out["group"] = group
    tot = sum(size.values())
    out["group_overall"] = sum(group[k] * size[k] for k in group) / tot
    out["calendar"] = {int(tt): wmean(post & (t == tt)) for tt in sorted(set(t[post]))}
    out["calendar_overall"] = np.mean(list(out["calendar"].values()), axis=0)
    return out


def pre_weights(design: DidDesign) -> np.ndarray:
    """Weights (summed ``n``) of the pre-trend cells."""
    d = design.data
    has = d["pre_idx"] >= 0
    return np.bincount(d["pre_idx"][has], weights=d["n"][has], minlength=len(design.pretrend_cells))


def interval(draws) -> dict:
    """Posterior mean, SD and central 95% interval of draws."""
    x = np.asarray(draws, float).ravel()
    lo, hi = np.quantile(x, [0.025, 0.975])
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "eti95_low": float(lo), "eti95_high": float(hi)}


def aggregate_summary(agg: dict, design: DidDesign) -> dict:
    """Summaries of :func:`aggregate` in the result's shape: each aggregate with its mean and
    95% interval; ``dynamic``, ``group`` and ``calendar`` with one row per event time, cohort
    or period."""
    n_coh = {}
    for gg, tt, ee in design.effect_cells:
        n_coh.setdefault(ee, set()).add(gg)
    for gg, tt, ee in design.pretrend_cells:
        n_coh.setdefault(ee, set()).add(gg)
    dyn = [{"event_time": k, **interval(v), "n_cohorts": len(n_coh.get(k, ())), "pre_period": k < -design.spec.anticipation,
            "reference": bool(k == -1 - design.spec.anticipation and not np.any(v))}
           for k, v in agg["dynamic"].items()]
    return {"simple": interval(agg["simple"]),
            "dynamic": {"overall": interval(agg["dynamic_overall"]), "by": dyn},
            "group": {"overall": interval(agg["group_overall"]),
                      "by": [{"cohort": k, **interval(v)} for k, v in agg["group"].items()]},
            "calendar": {"overall": interval(agg["calendar_overall"]),
                         "by": [{"period": k, **interval(v)} for k, v in agg["calendar"].items()]}}


# ---------------------------------------------------------------- tables

def interval_table(draws, labels: list, dim: str, *, prior: str | None = None) -> pd.DataFrame:
    """Mean, 95% interval and P(< 0), P(> 0) along one dimension (draws: samples x labels)."""
    x = _flat(draws)
    lo, hi = np.quantile(x, [0.025, 0.975], axis=0)
    out = pd.DataFrame({dim: labels, "mean": x.mean(0), "eti95_low": lo, "eti95_high": hi,
                        "p_negative": (x < 0).mean(0), "p_positive": (x > 0).mean(0)})
    if prior is not None:
        out.insert(1, "prior", prior)
    return out


def event_study_table(agg: dict, design: DidDesign, threshold: float) -> pd.DataFrame:
    """The interaction-weighted event study: ``dynamic(e)`` with P(|effect| > threshold) and
    how many cohorts each event time rests on (cohorts are never mixed inside a cell)."""
    rows = []
    summ = aggregate_summary(agg, design)["dynamic"]["by"]
    for row, (k, v) in zip(summ, agg["dynamic"].items()):
        rows.append({**row, "p_abs_gt_threshold": float(np.mean(np.abs(v) > threshold)) if not row["reference"] else 0.0})
    return pd.DataFrame(rows)


def gt_table(design: DidDesign, att_gt, *, prior: str | None = None) -> pd.DataFrame:
    """ATT(g,t) with its cohort, period, event time and weight."""
    t = interval_table(att_gt, design.gt_labels, "cohort_period", prior=prior)
    t.insert(1, "cohort", [c[0] for c in design.effect_cells])
    t.insert(2, "period", [c[1] for c in design.effect_cells])
    t.insert(3, "event_time", [c[2] for c in design.effect_cells])
    t["weight"] = design.gt_weights
    return t


def _groups(design: DidDesign, group: str) -> pd.Series:
    cells = design.cells
    if group in cells.columns:
        return cells[group].astype(str)
    return pd.Series(np.where(np.isfinite(cells["cohort"]), "treated", "never treated"), index=cells.index)


def ppc_table(design: DidDesign, y_rep: dict[str, np.ndarray], *, factor: float, group: str = "arm",
              share: bool = False) -> pd.DataFrame:
    """Observed and posterior-predicted value by group (``arm``) and period on the reading
    scale (times ``factor``); ``share``: the hurdle's same-day share in %. ``y_rep`` from
    :meth:`~models.did.likelihoods.Likelihood.predict` (draws x cells)."""
    lik = design.lik
    n = design.data["n"]
    y = np.asarray(design.data["y"], float)
    obs_extra = {k: design.data[k] for k in ("dur_sum",) if k in design.data}
    rows = []
    keys = pd.DataFrame({"g": _groups(design, group).to_numpy(), "p": design.cells["period"].to_numpy()})
    for (grp, period), idx in keys.groupby(["g", "p"]).indices.items():
        sub_n = n[idx]
        rep = y_rep["y"][:, idx].astype(float)
        if share or not (lik.identity or lik.hurdle):
            observed = factor * y[idx].sum() / sub_n.sum()
            pred = factor * rep.sum(1) / sub_n.sum()
        elif lik.hurdle:
            observed = obs_extra["dur_sum"][idx].sum() / sub_n.sum()
            pred = y_rep["dur_sum"][:, idx].sum(1) / sub_n.sum()
        else:
            observed = (y[idx] * sub_n).sum() / sub_n.sum()
            pred = (rep * sub_n).sum(1) / sub_n.sum()
        rows.append({group: grp, "period": int(period), "n": float(sub_n.sum()), "observed": float(observed),
                     "pred_mean": float(pred.mean()), "pred_low": float(np.quantile(pred, 0.025)),
                     "pred_high": float(np.quantile(pred, 0.975))})
    return pd.DataFrame(rows)


def duration_ppc_table(design: DidDesign, y_rep: dict[str, np.ndarray], group: str = "arm") -> pd.DataFrame:
    """The hurdle's check: observed and predicted mean duration and same-day share (%) by
    group and period (the sum of a cell's positive durations drawn from the normal
    approximation to a sum of lognormals, :meth:`Likelihood.predict`)."""
    days = ppc_table(design, y_rep, factor=1.0, group=group)
    same = ppc_table(design, y_rep, factor=100.0, group=group, share=True)
    out = days.rename(columns={"observed": "observed_mean_days", "pred_mean": "pred_mean_days",
                               "pred_low": "pred_low_days", "pred_high": "pred_high_days"})
    for a, b in (("observed", "observed_same_day_pct"), ("pred_mean", "pred_same_day_pct"),
                 ("pred_low", "pred_same_day_low"), ("pred_high", "pred_same_day_high")):
        out[b] = same[a].to_numpy()
    return out


def ppc_coverage(design: DidDesign, y_rep: dict[str, np.ndarray], level: float = 0.95) -> float:
    """Share of cells whose observed ``y`` lies inside its central ``level`` predictive interval."""
    lo, hi = np.quantile(y_rep["y"], [(1 - level) / 2, (1 + level) / 2], axis=0)
    y = np.asarray(design.data["y"], float)
    return float(np.mean((y >= lo) & (y <= hi)))


# ---------------------------------------------------------------- statements

def effect_summary(draws, reading: Reading) -> dict:
    return summarise_effect(np.ravel(draws), rope=reading.rope, mid=reading.mid).to_dict()


def effect_statements(reading: Reading, att, *, relative=None, estimands: dict | None = None) -> dict:
    """Posterior statements about the effect in the treated units under one prior, and about
    the average unit and a new unit like them (``estimands``: draws keyed as
    :data:`models.did.model.ESTIMANDS`).

    Returns the named probabilities, the sentences and the estimands' summaries; every number is
    computed from the draws. The sentences follow the sign of the posterior mean; where the
    programme claims a direction, P(effect in that direction) is kept as
    ``p_programme_direction`` and a result against it is said to be so.
    """
    x = np.ravel(att)
    s = summarise_effect(x, rope=reading.rope, mid=reading.mid)
    f = reading.fmt
    label, where, units = reading.label, reading.where, reading.units
    down = s.mean < 0
    verb = "reduced" if down else "increased"
    probs: dict[str, float] = {"p_negative": s.p_negative, "p_positive": s.p_positive, "p_in_rope": s.p_in_rope,
                               "p_beyond_mid": s.p_beyond_mid, "p_below_minus_mid": prob(x < -reading.mid),
                               "p_above_mid": prob(x > reading.mid)}
    against = ""
    if reading.direction:
        probs["p_programme_direction"] = prob(reading.direction * x > 0)
        if (reading.direction > 0) == down:
            against = " (the opposite of what was intended)"
    lines = [state(s.p_negative if down else s.p_positive, f"{reading.subject} {verb} {label} in {where}{against}"),
             state(probs["p_below_minus_mid" if down else "p_above_mid"],
                   f"{label} {'fell' if down else 'rose'} by more than {f(reading.mid, sign=False)} {units}"),
             state(s.p_in_rope, f"the change in {label} was within ±{f(reading.rope, sign=False)} {units} "
                                "(practically nil)")]
    if relative is not None and reading.relative_target is not None and reading.direction:
        probs["p_target_met"] = prob(reading.direction * np.ravel(relative) >= reading.relative_target)
        lines.append(state(probs["p_target_met"], f"the target was met ({label} "
                                                  f"{'rose' if reading.direction > 0 else 'fell'} by at least "
                                                  f"{reading.relative_target:.0%} relative)"))
    elif reading.target is not None:
        t = reading.target
        probs["p_target_met"] = prob(x >= t) if t > 0 else prob(x <= t)
        lines.append(state(probs["p_target_met"], f"the target was met ({label} changed by at least "
                                                  f"{f(t)} {units})"))
    summaries = {}
    noun = reading.unit_noun
    words = {"these_units": f"in {where}", "average_unit": f"in the average {noun} (its mean effect)",
             "new_unit": f"in a new {noun} like them (between-{noun} variation included)"}
    for key, draws in (estimands or {}).items():
        d = np.ravel(draws)
        e = summarise_effect(d, rope=reading.rope, mid=reading.mid).to_dict()
        p_same = prob(d < 0) if down else prob(d > 0)
        e.update(label=words[key], p_same_sign_as_these_units=p_same)
        summaries[key] = e
        if key != "these_units":
            lines.append(state(p_same, f"{reading.subject} {verb} {label} {words[key]} (95% interval "
                                       f"{f(e['eti95_low'])} to {f(e['eti95_high'])} {units})"))
    return {"effect": s.to_dict(), "probabilities": probs, "statements": lines, "estimands": summaries}


def _band(draws: np.ndarray) -> tuple[float, float, float]:
    return float(draws.mean()), float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def trend_table(design: DidDesign, mu: np.ndarray, mu0: np.ndarray, panels: dict[str, tuple[list[str], list[str]]],
                *, factor: float) -> pd.DataFrame:
    """Treated units against their comparators by period: observed, fitted (posterior mean and
    95% band) and, for treated units, the counterfactual without the treatment.

    ``mu``/``mu0`` are the response per cell with and without the effect (draws x cells);
    ``panels`` maps a panel name to (treated units, comparator units). Shares and rates are
    ``n``-weighted (times ``factor``); continuous outcomes are plain means over cells.
    """
    lik = design.lik
    cells = design.cells
    n = design.data["n"].astype(float)
    y = np.asarray(design.data["y"], float)
    rows = []
    for panel, (treated, comparators) in panels.items():
        for group, units in (("pilot", treated), ("neighbours", comparators)):
            sub = cells[cells["unit"].isin(units)]
            for period, idx in sub.groupby("period").indices.items():
                pos = sub.index.to_numpy()[idx]
                w = np.ones(len(pos)) if lik.identity else n[pos]
                scale = 1.0 if lik.identity else factor
                observed = y[pos].mean() if lik.identity else scale * y[pos].sum() / n[pos].sum()
                fit = scale * (mu[:, pos] * w).sum(1) / w.sum()
                cf = scale * (mu0[:, pos] * w).sum(1) / w.sum()
                f_mean, f_lo, f_hi = _band(fit)
                c_mean, c_lo, c_hi = _band(cf) if group == "pilot" else (np.nan,) * 3
                treated_now = bool((design.data["treated"][pos] > 0).any()) if group == "pilot" else False
                rows.append({"panel": panel, "group": group, "year": int(period), "n_las": len(pos),
                             "observed": float(observed), "fit_mean": f_mean, "fit_low": f_lo, "fit_high": f_hi,
                             "counterfactual_mean": c_mean, "counterfactual_low": c_lo, "counterfactual_high": c_hi,
                             "treated": treated_now})
    return pd.DataFrame(rows)
