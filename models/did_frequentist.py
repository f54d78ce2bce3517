"""The report's frequentist DiD, as a cross-check: a linear probability model with
LA-clustered standard errors (statsmodels), fitted on aggregated cells.

Each binomial cell becomes two weighted rows (outcome 1 with weight y, outcome 0 with weight
n - y): weighted least squares then gives exactly the child-level OLS estimate, and the
cluster-robust sandwich sums the same scores within LAs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf


@dataclass(frozen=True)
class FrequentistDid:
    estimate_pp: float
    se_pp: float
    ci95_low_pp: float
    ci95_high_pp: float
    p_value: float
    n_clusters: int
    method: str = "linear probability model, LA and year fixed effects, covariates, LA-clustered SE"

    def to_dict(self) -> dict:
        return asdict(self)


def lpm_did(cells: pd.DataFrame, covariates: tuple[str, ...] | list[str] = ()) -> FrequentistDid:
    """OLS DiD on cells (columns la, year, treated_post, n, y, covariates)."""
    ones = cells.assign(outcome=1.0, weight=cells["y"].astype(float))
    zeros = cells.assign(outcome=0.0, weight=(cells["n"] - cells["y"]).astype(float))
    rows = pd.concat([ones, zeros], ignore_index=True)
    rows = rows[rows["weight"] > 0]
    terms = ["treated_post", "C(la)", "C(year)", *[f"C({c})" for c in covariates]]
    fit = smf.wls("outcome ~ " + " + ".join(terms), data=rows, weights=rows["weight"]).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(rows["la"])[0]})
    est, se = float(fit.params["treated_post"]), float(fit.bse["treated_post"])
    lo, hi = fit.conf_int().loc["treated_post"]
    return FrequentistDid(100 * est, 100 * se, 100 * float(lo), 100 * float(hi),
                          float(fit.pvalues["treated_post"]), int(rows["la"].nunique()))
