"""A user's own panel for the DiD engine: validate any file's columns, aggregate to cells.

The user names the columns (``analyses.did --unit --time --cohort --outcome [--trials]
[--exposure] [--covariates]``); nothing here assumes SofS's names, units or LAs. Rows may be
records (one per child, county-year, assessment) or aggregated cells, in CSV or Parquet.

==================  ======================================================================
likelihood          the outcome column holds
==================  ======================================================================
binomial,           0/1 per record; or, with ``--trials``, successes out of trials per row
betabinomial
poisson,            a count per row (>= 0), with ``--exposure`` (> 0; default 1 per row)
negbinomial
normal              a number per record; cells keep the mean, the records and the sum of
                    squared deviations (the exact normal likelihood)
student             a number per row; cells keep the mean and the records (the t on cell means)
hurdle_lognormal    a duration per record (>= 0; 0 = the same day)
==================  ======================================================================

The cohort is the first treated period; 0 or empty means never treated, and it must be the
same on every row of a unit. Bad input is a :class:`~data.errors.DataError` naming the file,
row (1-based, header excluded) and column: a missing or misspelt column (with the nearest
name), a cohort that changes within a unit, an outcome outside the likelihood's support, a
unit observed in one period only, a treated unit without a pre-adoption period, no
never-treated (``--control never``) or not-yet-treated (``--control notyet``) controls, an
empty or header-only file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data import validate as v
from data.errors import DataError
from data.hashing import hash_file
from models.did.likelihoods import get_likelihood


@dataclass(frozen=True)
class PanelColumns:
    """Which of the user's columns is which."""

    unit: str
    time: str
    cohort: str
    outcome: str
    trials: str | None = None
    exposure: str | None = None
    covariates: tuple[str, ...] = ()
    settling: str | None = None


@dataclass
class PanelCells:
    """Canonical cells (``unit``, ``period``, ``cohort``, ``settling``, statistics, covariates)
    with where they came from."""

    cells: pd.DataFrame
    source: str
    data_hash: str
    n_records: float
    synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)


def _require_named(frame: pd.DataFrame, cols: PanelColumns) -> None:
    names = {"--unit": cols.unit, "--time": cols.time, "--cohort": cols.cohort, "--outcome": cols.outcome,
             **({"--trials": cols.trials} if cols.trials else {}), **({"--exposure": cols.exposure} if cols.exposure else {}),
             **({"--settling": cols.settling} if cols.settling else {}),
             **{f"--covariates ({c})": c for c in cols.covariates}}
    for flag, name in names.items():
        if name not in frame.columns:
            near = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise DataError(f"no column '{name}' (named by {flag}); the file has {list(map(str, frame.columns))}{hint}",
                            column=name)


def _outcome_stats(frame: pd.DataFrame, cols: PanelColumns, likelihood: str) -> dict[str, np.ndarray]:
    """Per-row sufficient statistics of the outcome, after checking its support."""
    lik = get_likelihood(likelihood)
    y_col = cols.outcome
    v.require_no_missing(frame, [y_col])
    if lik.hurdle:
        if cols.trials or cols.exposure:
            raise DataError("durations need one row per record: leave out --trials/--exposure", column=y_col)
        days = v.require_numeric(frame, y_col)
        bad = days < 0
        if bad.any():
            raise DataError(f"a duration cannot be negative, found {days[bad][0]:g}", row=int(np.flatnonzero(bad)[0]) + 1,
                            column=y_col)
        pos = days > 0
        logd = np.log(np.where(pos, days, 1.0))
        return {"y": (~pos).astype(np.int64), "n": np.ones(days.size), "n_pos": pos.astype(np.int64),
                "log_sum": np.where(pos, logd, 0.0), "log_sq": np.where(pos, logd ** 2, 0.0), "dur_sum": days}
    if lik.link == "logit":
        if cols.trials:
            v.require_no_missing(frame, [cols.trials])
            n = v.require_integer(frame, cols.trials, minimum=0)
            y = v.require_integer(frame, y_col, minimum=0)
            v.require_le(frame, y_col, cols.trials)
            return {"y": y.astype(np.int64), "n": n}
        return {"y": v.require_binary(frame, y_col).astype(np.int64), "n": np.ones(len(frame))}
    if lik.link == "log":
        y = v.require_integer(frame, y_col, minimum=0)
        if cols.exposure:
            v.require_no_missing(frame, [cols.exposure])
            e = v.require_numeric(frame, cols.exposure)
            bad = ~(e > 0)
            if bad.any():
                raise DataError(f"exposure must be > 0, found {e[bad][0]:g}", row=int(np.flatnonzero(bad)[0]) + 1,
                                column=cols.exposure)
        else:
            e = np.ones(len(frame))
        return {"y": y.astype(np.int64), "n": e}
    y = v.require_numeric(frame, y_col)
    bad = ~np.isfinite(y)
    if bad.any():
        raise DataError(f"not a finite number: {y[bad][0]}", row=int(np.flatnonzero(bad)[0]) + 1, column=y_col)
    return {"y": y, "n": np.ones(len(frame))}


def _aggregate(rows: pd.DataFrame, keys: list[str], likelihood: str) -> pd.DataFrame:
    lik = get_likelihood(likelihood)
    if lik.identity:
        g = rows.assign(_yn=rows["y"] * rows["n"]).groupby(keys, sort=True, as_index=False, dropna=False)
        cells = g.agg(n=("n", "sum"), _yn=("_yn", "sum"))
        cells["y"] = cells.pop("_yn") / cells["n"]
        if likelihood == "normal":
            merged = rows.merge(cells[[*keys, "y"]].rename(columns={"y": "_mean"}), on=keys, how="left")
            merged["_ss"] = merged["n"] * (merged["y"] - merged["_mean"]) ** 2
            cells = cells.merge(merged.groupby(keys, as_index=False, dropna=False)["_ss"].sum().rename(columns={"_ss": "y_ss"}), on=keys)
        return cells
    stats = [s for s in lik.stats if s in rows.columns]
    return rows.groupby(keys, sort=True, as_index=False, dropna=False)[stats].sum()


def panel_cells(frame: pd.DataFrame, cols: PanelColumns, likelihood: str, *, control: str = "never",
                anticipation: int = 0, source: str = "<data frame>", data_hash: str = "") -> PanelCells:
    """Validate a user's rows and aggregate them to canonical cells (see the module docstring)."""
    try:
        if frame.empty:
            raise DataError("the table has no rows (an empty or header-only file)")
        _require_named(frame, cols)
        v.require_no_missing(frame, [cols.unit, cols.time, *cols.covariates])
        period = v.require_integer(frame, cols.time)
        cohort = v.require_numeric(frame, cols.cohort)            # empty: never treated
        cohort = np.where(np.isnan(cohort) | (cohort <= 0), np.nan, cohort)
        bad = np.isfinite(cohort) & (cohort != np.round(cohort))
        if bad.any():
            raise DataError(f"a cohort is a period (a whole number), found {cohort[bad][0]:g}",
                            row=int(np.flatnonzero(bad)[0]) + 1, column=cols.cohort)
        tmp = pd.DataFrame({"unit": frame[cols.unit].astype(str).to_numpy(), "cohort": cohort})
        first = tmp.groupby("unit", sort=False)["cohort"].transform("first").to_numpy()
        bad = ~((cohort == first) | (np.isnan(cohort) & np.isnan(first)))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"the cohort of unit {tmp['unit'].iloc[r]!r} changes: {first[r]:g} on its first row, "
                            f"{cohort[r] if np.isfinite(cohort[r]) else 'never treated'} here; a unit's first "
                            "treated period must be the same on every row", row=r + 1, column=cols.cohort)
        settling = (v.require_integer(frame, cols.settling, minimum=0) if cols.settling else np.zeros(len(frame)))
        stats = _outcome_stats(frame, cols, likelihood)
    except DataError as err:
        raise err.located(source) if err.file is None else err

    rows = pd.DataFrame({"unit": tmp["unit"], "period": period.astype(int), "cohort": cohort,
                         "settling": settling.astype(int), **{c: frame[c].astype(str).to_numpy() for c in cols.covariates},
                         **stats})
    keys = ["unit", "period", "cohort", "settling", *cols.covariates]
    cells = _aggregate(rows, keys, likelihood)
    _check_design(rows, frame, cols, control=control, anticipation=anticipation, source=source)
    treated = np.isfinite(cells["cohort"])
    cells.insert(3, "arm", np.where(treated, "treated", "never treated"))
    return PanelCells(cells.reset_index(drop=True), source, data_hash, float(rows["n"].sum()),
                      missing=v.missing_counts(frame))


def _first_row(rows: pd.DataFrame, mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1


def _check_design(rows: pd.DataFrame, frame: pd.DataFrame, cols: PanelColumns, *, control: str, anticipation: int,
                  source: str) -> None:
    """Units observed in two periods or more; treated units with a pre-adoption period;
    controls of the kind asked for."""
    periods_of = rows.groupby("unit")["period"].nunique()
    once = periods_of[periods_of < 2]
    if len(once):
        u = once.index[0]
        raise DataError(f"unit {u!r} is observed in one period only ({int(rows.loc[rows.unit == u, 'period'].iloc[0])}): "
                        "a DiD needs each unit before and after", file=source,
                        row=_first_row(rows, (rows["unit"] == u).to_numpy()), column=cols.unit)
    treated = np.isfinite(rows["cohort"].to_numpy())
    if not treated.any():
        raise DataError("no unit is ever treated (every cohort is 0 or empty)", file=source, column=cols.cohort)
    first_seen = rows.groupby("unit")["period"].transform("min").to_numpy()
    no_pre = treated & (first_seen >= rows["cohort"].to_numpy() - anticipation)
    if no_pre.any():
        r = _first_row(rows, no_pre)
        raise DataError(f"unit {rows['unit'].iloc[r - 1]!r} is treated from period "
                        f"{int(rows['cohort'].iloc[r - 1])} but first observed in {int(first_seen[r - 1])}: no "
                        f"period before adoption{' and anticipation' if anticipation else ''} to compare with",
                        file=source, row=r, column=cols.cohort)
    never = ~treated
    if control == "never" and not never.any():
        raise DataError("no never-treated units (cohort 0 or empty) to serve as controls; use --control notyet to "
                        "compare with units not yet treated", file=source, column=cols.cohort)
    if control == "notyet":
        untreated = never | (rows["period"].to_numpy() < rows["cohort"].to_numpy() - anticipation)
        post = treated & ~untreated
        ok = set(rows.loc[untreated, "period"])
        if not ok & set(rows.loc[post, "period"]):
            raise DataError("no not-yet-treated or never-treated observation in any treated period: nothing to "
                            "compare the treated units with", file=source, column=cols.cohort)


def load_panel(path: Path, cols: PanelColumns, likelihood: str, **kwargs) -> PanelCells:
    """Read a CSV/Parquet file (see :func:`panel_cells`)."""
    frame = v.read_table(path)
    return panel_cells(frame, cols, likelihood, source=str(path), data_hash=hash_file(path), **kwargs)
