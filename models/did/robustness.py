r"""Design robustness for the DiD engine: pure functions on posterior draws and cells, and
re-fits of one compiled model.

Parallel trends, in place of "assumption met / not met"
    :func:`pretrend_table` gives, for each pre-adoption event time ``k`` of the
    interaction-weighted event study (:func:`models.did.summaries.aggregate`, ``dynamic``),
    P(|delta_k| > t) on the reporting scale, and P(max_k |delta_k| > t).

Rambachan and Roth (2023) sensitivity (relative magnitudes, smoothness) is in
:mod:`models.did.honest`; :func:`event_study_draws` turns an event study into its inputs.

Misclassification of the population (NFA coding)
    :func:`suspect_cells` flags LA-years whose number of records is far below that LA's usual
    number (the report: "very few children whose cases were designated NFA pre-treatment");
    the misclassification model (``build_did_model(misclassification=...)``) is then refitted
    for a grid of shares of wrongly included records in those cells.

Moderators
    :func:`moderator_groups` codes the report's secondary analyses as 0/1 pilot-level
    moderators: embeddedness and quality of delivery above the pilots' median, Ofsted rating
    good or outstanding.

Refits
    :class:`Refitter` re-uses one compiled model for every refit whose cells keep their shape
    (LAs left out by zeroing their counts, other data definitions aggregated onto the same
    cells); :func:`refit_row` summarises a refit against the main fit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.diagnostics import check_sampling
from models.sampling import CompiledSampler

DEFAULT_MISCLASSIFICATION_GRID = (0.0, 0.05, 0.1, 0.2, 0.3)
#: Selection ratios psi = r_1 / r_0 (an outcome-1 record's chance of keeping its code over an
#: outcome-0 record's) for the under-coding sensitivity; 1 is under-coding at random.
DEFAULT_SELECTION_GRID = (0.5, 1.0, 2.0)


def pre_draws(dynamic: dict[int, np.ndarray], anticipation: int = 0) -> dict[int, np.ndarray]:
    """The pre-adoption event times of a ``dynamic`` aggregate (the base period, held at 0, left out)."""
    return {k: np.ravel(v) for k, v in dynamic.items() if k < -anticipation and np.any(v)}


def max_abs_pre(dynamic: dict[int, np.ndarray], anticipation: int = 0) -> np.ndarray:
    """Per draw, the largest |pre-period effect| (0 when there is no pre-period)."""
    pre = pre_draws(dynamic, anticipation)
    n = len(np.ravel(next(iter(dynamic.values()))))
    if not pre:
        return np.zeros(n)
    return np.abs(np.column_stack(list(pre.values()))).max(axis=1)


def event_study_draws(dynamic: dict[int, np.ndarray], anticipation: int = 0) -> tuple[np.ndarray, int, list[int]]:
    """The event study as Rambachan and Roth's coefficients: draws (samples x periods) of the
    pre-periods before the base (``e < -1 - a``, in order) then the post-periods (``e >= -a``),
    the base period ``-1 - a`` (held at 0) left out; the number of pre-periods; the event times."""
    base = -1 - anticipation
    pre = sorted(k for k in dynamic if k < base)
    post = sorted(k for k in dynamic if k > base)
    cols = [np.ravel(dynamic[k]) for k in pre + post]
    return np.column_stack(cols), len(pre), pre + post


def pretrend_table(dynamic: dict[int, np.ndarray], threshold: float, anticipation: int = 0) -> pd.DataFrame:
    """P(|delta_k| > threshold) for each pre-period event time and for the largest one."""
    rows = [{"event_time": str(k), "mean": float(v.mean()), "p_abs_gt_threshold": float((np.abs(v) > threshold).mean())}
            for k, v in pre_draws(dynamic, anticipation).items()]
    mx = max_abs_pre(dynamic, anticipation)
    rows.append({"event_time": "max |pre|", "mean": float(mx.mean()), "p_abs_gt_threshold": float((mx > threshold).mean())})
    return pd.DataFrame(rows)


def suspect_cells(cells: pd.DataFrame, *, ratio: float = 0.5, count: str = "n") -> tuple[np.ndarray, list[str]]:
    """Cells in unit-periods with fewer than ``ratio`` x the unit's median records per period,
    and those units (canonical cells: ``unit``, ``period``)."""
    per_year = cells.groupby(["unit", "period"], sort=False)[count].sum()
    median = per_year.groupby(level="unit").transform("median")
    low = (per_year < ratio * median)
    flagged = low[low].index
    mask = pd.MultiIndex.from_frame(cells[["unit", "period"]]).isin(flagged)
    las = sorted({la for la, _ in flagged})
    return np.asarray(mask), las


def undercoded_shares(cells: pd.DataFrame, *, ratio: float = 0.5, count: str = "n",
                      max_share: float = 0.95) -> tuple[np.ndarray, list[str]]:
    """Per cell, the share ``u`` of its population missing from the records in the unit-periods
    :func:`suspect_cells` flags, from the deficit of records against the unit's median per
    period, ``u = 1 - records / median`` (at most ``max_share``; 0 in other cells), and the
    units flagged."""
    per_year = cells.groupby(["unit", "period"], sort=False)[count].sum()
    median = per_year.groupby(level="unit").transform("median")
    share = (1.0 - per_year / median).where(per_year < ratio * median, 0.0).clip(0.0, max_share)
    keys = pd.MultiIndex.from_frame(cells[["unit", "period"]])
    u = share.reindex(keys).to_numpy(float)
    return u, sorted({la for (la, _), v in share.items() if v > 0})


def moderator_groups(attributes: pd.DataFrame | None, pilots: list[str]) -> dict[str, tuple[np.ndarray | None, str]]:
    """0/1 moderators of the pilots' effect from LA attributes (indexed by ``la``).

    Returns ``name -> (values or None, description)``; ``None`` when the attribute is missing for
    some pilot or does not split them into two groups.
    """
    out: dict[str, tuple[np.ndarray | None, str]] = {}
    specs = [("embeddedness", "embeddedness above the pilots' median (self-reported)"),
             ("quality_of_delivery", "quality of delivery above the pilots' median (MTM's scoring)")]
    for col, text in specs:
        vals = _pilot_values(attributes, col, pilots)
        if vals is None:
            out[col] = (None, f"{text}: not available")
            continue
        vals = vals.astype(float)
        group = (vals > np.median(vals)).astype(float)
        out[col] = (group if 0 < group.sum() < len(group) else None, text)
    vals = _pilot_values(attributes, "ofsted", pilots)
    text = "Ofsted overall rating good or outstanding (vs requires improvement or inadequate)"
    if vals is None:
        out["ofsted"] = (None, f"{text}: not available")
    else:
        group = np.isin(vals.astype(str), ["good", "outstanding"]).astype(float)
        out["ofsted"] = (group if 0 < group.sum() < len(group) else None, text)
    return out


def _pilot_values(attributes: pd.DataFrame | None, col: str, pilots: list[str]) -> np.ndarray | None:
    if attributes is None or col not in attributes.columns or not set(pilots) <= set(attributes.index):
        return None
    vals = attributes.loc[pilots, col]
    return None if vals.isna().any() else vals.to_numpy()


def similar_practice_comparators(attributes: pd.DataFrame | None, las: list[str]) -> list[str]:
    """Comparators flagged ``similar_practice_model == 'yes'``."""
    if attributes is None or "similar_practice_model" not in attributes.columns:
        return []
    flag = attributes["similar_practice_model"].astype(str).str.lower() == "yes"
    return [la for la in las if la in attributes.index and bool(flag.get(la, False))]


# ---------------------------------------------------------------- refits with one compiled model

@dataclass
class RefitResult:
    name: str
    family: str
    description: str
    draws: dict[str, np.ndarray]
    diagnostics_ok: bool
    problems: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Refitter:
    """Re-fit a compiled model on new cells of the same shape.

    ``make_data`` turns a canonical cell frame (same rows as the main fit's) into the
    ``pm.Data`` values; ``effects`` are the reported variables kept from each refit; every
    variable in ``diag_vars`` is checked.
    """

    sampler: CompiledSampler
    make_data: Callable[[pd.DataFrame], dict]
    effects: list[str]
    sample_kwargs: dict
    diag_vars: list[str]

    def fit(self, frame: pd.DataFrame, *, name: str, family: str, description: str, seed: int,
            extra: dict | None = None, note: str = "") -> RefitResult:
        data = self.make_data(frame)
        data.update(extra or {})
        idata = self.sampler.sample(data, seed=seed, **self.sample_kwargs)
        return refit_result(idata, self.diag_vars, self.effects, name=name, family=family, description=description,
                            note=note)


def refit_result(idata, diag_vars: list[str], effects: list[str], *, name: str, family: str, description: str,
                 note: str = "") -> RefitResult:
    """A re-fit's effect draws and whether every checked variable passed its diagnostics."""
    post = idata["posterior"]
    diag = check_sampling(idata, [v for v in diag_vars if v in post and post[v].size > 0])
    draws = {v: post[v].values.ravel() for v in effects if v in post}
    return RefitResult(name, family, description, draws, diag.ok, diag.problems, note)


def refit_row(result: RefitResult, var: str, main: np.ndarray | None) -> dict:
    """One row of the robustness table: the refit's effect against the main fit's."""
    x = np.ravel(result.draws[var])
    lo, hi = np.quantile(x, [0.025, 0.975])
    row = {"analysis": result.name, "family": result.family, "effect": var, "description": result.description,
           "mean": float(x.mean()), "eti95_low": float(lo), "eti95_high": float(hi),
           "p_negative": float((x < 0).mean()), "p_positive": float((x > 0).mean())}
    if main is not None:
        mlo, mhi = np.quantile(np.ravel(main), [0.025, 0.975])
        row["shift_vs_main"] = float(x.mean() - np.mean(main))
        row["width_ratio_vs_main"] = float((hi - lo) / max(mhi - mlo, 1e-12))
    row["diagnostics_ok"] = result.diagnostics_ok
    row["note"] = result.note
    return row


def loo_summary(rows: list[dict], main: np.ndarray) -> dict:
    """Range of the leave-one-LA-out estimates and the most influential LA."""
    if not rows:
        return {}
    means = np.array([r["mean"] for r in rows])
    k = int(np.argmax(np.abs(means - np.mean(main))))
    return {"n_refits": len(rows), "mean_min": float(means.min()), "mean_max": float(means.max()),
            "most_influential_la": rows[k]["analysis"].removeprefix("without "),
            "largest_shift": float(means[k] - np.mean(main)),
            "all_same_sign_as_main": bool(np.all(np.sign(means) == np.sign(np.mean(main)))),
            "p_negative_min": float(min(r["p_negative"] for r in rows)),
            "p_negative_max": float(max(r["p_negative"] for r in rows))}
