"""Frequentist cross-checks of the DiD engine, computed on the same cells.

- :func:`lpm_did`: the report's method for binary outcomes, a linear probability model with
  unit and period fixed effects, covariates and unit-clustered standard errors. Each binomial
  cell becomes two weighted rows (outcome 1 with weight y, 0 with weight n - y), so weighted
  least squares gives exactly the record-level estimate and the cluster sandwich sums the
  same scores (statsmodels).
- :func:`mean_did`: the same on a cell mean (durations: the mean of ``dur_sum / n``; any
  continuous outcome: ``y`` weighted by ``n``).
- :func:`staggered_did`: the saturated cohort-by-relative-period regression (Sun and Abraham's
  interaction-weighted estimator; in a balanced panel without covariates the same ATT(g,t)
  as Callaway and Sant'Anna's estimator with never-treated controls), by pyfixest, with
  unit-clustered standard errors; the simple aggregate and its SE by the delta method.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from models.did.result import Frequentist


def _wls(rows: pd.DataFrame, covariates, *, scale: float, units: str, method: str, label: str) -> Frequentist:
    terms = ["treated_post", "C(unit)", "C(period)", *[f"C({c})" for c in covariates]]
    fit = smf.wls("outcome ~ " + " + ".join(terms), data=rows, weights=rows["weight"]).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows["unit"])[0]})
    est, se = float(fit.params["treated_post"]), float(fit.bse["treated_post"])
    lo, hi = fit.conf_int().loc["treated_post"]
    return Frequentist(method, scale * est, scale * se, scale * float(lo), scale * float(hi),
                       float(fit.pvalues["treated_post"]), int(rows["unit"].nunique()), units, label)


def lpm_did(cells: pd.DataFrame, covariates=(), *, units: str = "pp", label: str = "") -> Frequentist:
    """OLS DiD of a binary outcome on cells (canonical columns and ``treated_post``), in pp."""
    ones = cells.assign(outcome=1.0, weight=cells["y"].astype(float))
    zeros = cells.assign(outcome=0.0, weight=(cells["n"] - cells["y"]).astype(float))
    rows = pd.concat([ones, zeros], ignore_index=True)
    rows = rows[rows["weight"] > 0]
    return _wls(rows, covariates, scale=100.0, units=units, label=label,
                method="linear probability model, unit and period fixed effects, covariates, unit-clustered SE")


def mean_did(cells: pd.DataFrame, covariates=(), *, total: str | None = "dur_sum", units: str = "",
             label: str = "") -> Frequentist:
    """OLS DiD of a cell mean (``total / n``, or ``y`` when ``total`` is None), weights ``n``."""
    rows = cells[cells["n"] > 0]
    outcome = rows[total] / rows["n"] if total else rows["y"].astype(float)
    rows = rows.assign(outcome=outcome.to_numpy(float), weight=rows["n"].astype(float))
    return _wls(rows, covariates, scale=1.0, units=units, label=label,
                method="OLS on the cell mean, unit and period fixed effects, covariates, unit-clustered SE")


def staggered_did(cells: pd.DataFrame, *, units: str = "", factor: float = 1.0, share: bool = False,
                  label: str = "") -> tuple[Frequentist, pd.DataFrame]:
    """The saturated event-study regression on unit-period values (cells collapsed over
    covariate strata; shares in ``factor`` units), never-treated units as controls; returns
    the simple ATT and the ATT(g,t) table."""
    import pyfixest as pf

    c = cells.copy()
    c["value"] = c["y"] / c["n"] if share else c["y"].astype(float)
    c["w"] = c["n"].astype(float)
    c["g"] = c["cohort"].fillna(0).astype(int)
    panel = c.assign(vw=c["value"] * c["w"]).groupby(["unit", "period", "g"], as_index=False)[["vw", "w"]].sum()
    panel["value"] = factor * panel["vw"] / panel["w"]
    panel["unit_id"] = pd.factorize(panel["unit"])[0]
    panel = panel.rename(columns={"period": "time_"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pf.event_study(data=panel[["value", "unit_id", "time_", "g"]], yname="value", idname="unit_id", tname="time_", gname="g",
                             estimator="saturated")
    coef = fit.coef()
    vcov = np.asarray(fit._vcov)
    rows = []
    for j, name in enumerate(coef.index):
        rel = float(name.split("rel_time::")[1].split(":")[0])
        g = int(float(name.split("first_treated_period::")[1]))
        rows.append({"cohort": g, "period": int(g + rel), "event_time": int(rel), "estimate": float(coef.iloc[j]),
                     "se": float(np.sqrt(vcov[j, j])), "_j": j})
    table = pd.DataFrame(rows)
    size = panel.groupby(["g", "time_"])["w"].sum()
    post = table[table["event_time"] >= 0].copy()
    post["weight"] = [size.get((g, t), 0.0) for g, t in zip(post["cohort"], post["period"])]
    w = np.zeros(len(coef))
    w[post["_j"].to_numpy()] = post["weight"].to_numpy() / post["weight"].sum()
    est = float(w @ coef.to_numpy())
    se = float(np.sqrt(w @ vcov @ w))
    from scipy.stats import norm

    p = float(2 * norm.sf(abs(est) / se)) if se > 0 else None
    out = Frequentist("saturated cohort x relative-period regression (Sun-Abraham; = Callaway-Sant'Anna with "
                      "never-treated controls), unit-clustered SE (pyfixest), simple aggregate",
                      est, se, est - 1.959964 * se, est + 1.959964 * se, p, int(panel["unit"].nunique()), units, label)
    return out, table.drop(columns="_j")


def two_factor_anova(cells: pd.DataFrame, *, years: tuple[int, int], share: bool, factor: float = 100.0) -> dict:
    """The report's LA-level method: a two-factor ANOVA of the LA-year value on pilot status
    and year (with their interaction) over ``years``; the report read a significant
    interaction as impact. Returns the F tests (type II) and the cells used (canonical cells
    with ``arm`` and ``phase``); a frequentist cross-check only, not an effect estimate."""
    from statsmodels.stats.anova import anova_lm

    sub = cells[(cells["period"] >= years[0]) & (cells["period"] <= years[1]) & (cells["phase"] != "exited")].copy()
    sub["value"] = factor * sub["y"] / sub["n"] if share else sub["y"].astype(float)
    out = {"years": list(years), "n_cells": int(len(sub)), "n_pilots": int(sub.loc[sub.arm == "pilot", "unit"].nunique()),
           "n_comparators": int(sub.loc[sub.arm == "comparator", "unit"].nunique()), "method":
           "OLS value ~ C(arm) * C(year), type II ANOVA (LA-year cells, no LA effects)"}
    if sub["arm"].nunique() < 2 or sub["period"].nunique() < 2 or len(sub) <= 2 * sub["period"].nunique() + 1:
        out["note"] = "too few cells for the two-factor analysis"
        return out
    fit = smf.ols("value ~ C(arm) * C(period)", data=sub).fit()
    p = anova_lm(fit, typ=2)["PR(>F)"]
    out.update({"p_pilot_status": float(p["C(arm)"]), "p_year": float(p["C(period)"]),
                "p_interaction": float(p["C(arm):C(period)"]),
                "mean_pilot": float(sub.loc[sub.arm == "pilot", "value"].mean()),
                "mean_comparator": float(sub.loc[sub.arm == "comparator", "value"].mean())})
    return out
