"""Sampling diagnostics reported with every result (R-hat, bulk/tail ESS, divergences, E-BFMI).

All numbers come from arviz-stats; this module only gathers them into one table, applies the
project's thresholds and words the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3


@dataclass
class Diagnostics:
    """Diagnostics of one fit.

    ``table`` has one row per variable: worst R-hat, smallest bulk and tail ESS.
    ``problems`` lists each failed check in words; ``ok`` is True when there are none.
    """

    table: pd.DataFrame
    divergences: int
    n_draws: int
    ebfmi: list[float]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "divergences": self.divergences,
            "n_draws": self.n_draws,
            "ebfmi": self.ebfmi,
            "thresholds": {"rhat_max": RHAT_MAX, "ess_min": ESS_MIN, "ebfmi_min": EBFMI_MIN},
            "variables": self.table.reset_index().to_dict(orient="records"),
        }

    @property
    def only_divergences(self) -> bool:
        """The fit fails on divergent transitions alone (the remedy: smaller steps)."""
        return bool(self.problems) and all("divergent" in p for p in self.problems)

    def rank(self) -> tuple:
        """Sort key of fits of one model, better last: passing its checks, then no divergent
        transitions (a sign of bias, not only of inefficiency), then the larger smallest bulk ESS."""
        return (self.ok, self.divergences == 0, float(self.table["ess_bulk"].min()))

    def summary(self, max_problems: int | None = None) -> dict:
        """The verdict in a few numbers: ok, worst R-hat, smallest bulk and tail ESS,
        divergences and the problems in words (the first ``max_problems``)."""
        return {"ok": self.ok, "max_rhat": float(self.table["rhat"].max()),
                "min_ess_bulk": float(self.table["ess_bulk"].min()),
                "min_ess_tail": float(self.table["ess_tail"].min()), "divergences": self.divergences,
                "problems": list(self.problems[:max_problems])}

    @classmethod
    def merged(cls, fits: list[Diagnostics]) -> Diagnostics:
        """One verdict over several fits (for example a series of placebo fits): the table has a
        row per fit and variable, divergences and draws are summed, and a problem is listed once
        however many fits share it."""
        problems = list(dict.fromkeys(p for d in fits for p in d.problems))
        return cls(pd.concat([d.table for d in fits]), sum(d.divergences for d in fits),
                   sum(d.n_draws for d in fits), [e for d in fits for e in d.ebfmi], problems)

    def banner(self) -> str:
        """A loud, multi-line verdict for the terminal."""
        if self.ok:
            return (
                f"Diagnostics passed: max R-hat {self.table['rhat'].max():.3f}, "
                f"min bulk ESS {self.table['ess_bulk'].min():.0f}, "
                f"min tail ESS {self.table['ess_tail'].min():.0f}, "
                f"{self.divergences} divergences, min E-BFMI {min(self.ebfmi):.2f}."
            )
        bar = "!" * 72
        lines = [bar, "!! SAMPLING DIAGNOSTICS FAILED: do not trust these results as they are"]
        lines += [f"!!  - {p}" for p in self.problems]
        lines.append(bar)
        return "\n".join(lines)


def _worst(ds: xr.Dataset, how: str) -> dict[str, float]:
    reduce = np.nanmax if how == "max" else np.nanmin
    return {name: float(reduce(da.values)) for name, da in ds.data_vars.items()}


def check_sampling(
    idata: xr.DataTree,
    var_names: list[str] | None = None,
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
    ebfmi_min: float = EBFMI_MIN,
) -> Diagnostics:
    """Compute R-hat, bulk/tail ESS, divergences and E-BFMI and apply the thresholds.

    Parameters
    ----------
    idata
        A fit with ``posterior`` and ``sample_stats`` groups.
    var_names
        Variables to check (default: every posterior variable).
    """
    rhat = _worst(az.rhat(idata, var_names=var_names).dataset, "max")
    ess_bulk = _worst(az.ess(idata, var_names=var_names, method="bulk").dataset, "min")
    ess_tail = _worst(az.ess(idata, var_names=var_names, method="tail").dataset, "min")
    table = pd.DataFrame({"rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail})
    table.index.name = "variable"
    stats = idata["sample_stats"]
    diverging = stats["diverging"].values if "diverging" in stats else np.zeros(1, bool)
    divergences = int(np.sum(diverging))
    n_draws = int(stats.sizes["chain"] * stats.sizes["draw"])
    ebfmi = [float(v) for v in np.atleast_1d(az.bfmi(idata)["energy"].values)] if "energy" in stats else []

    problems = []
    bad = table[table["rhat"] > rhat_max]
    for name, row in bad.iterrows():
        problems.append(f"R-hat {row['rhat']:.3f} > {rhat_max} for '{name}'")
    for kind in ("ess_bulk", "ess_tail"):
        low = table[table[kind] < ess_min]
        for name, row in low.iterrows():
            label = kind.replace("ess_", "") + " ESS"
            problems.append(f"{label} {row[kind]:.0f} < {ess_min} for '{name}'")
    if divergences:
        problems.append(f"{divergences} divergent transitions out of {n_draws} draws")
    for chain, value in enumerate(ebfmi):
        if value < ebfmi_min:
            problems.append(f"E-BFMI {value:.2f} < {ebfmi_min} in chain {chain}")
    return Diagnostics(table, divergences, n_draws, ebfmi, problems)
