"""Tidy input for the DiD models: validate child-level or aggregated rows, aggregate to cells.

Accepted layouts (CSV or Parquet), one row per child or one row per cell:

=================  ===========================================================================
column             meaning
=================  ===========================================================================
``la``             local authority (any label)
``year``           financial year as an integer (2014 = 2014-15)
``arm``            ``pilot`` or ``comparator`` (constant within an LA)
``adoption_year``  first year of SofS for pilots (empty for comparators)
``settling_years`` years of settling-in after adoption, excluded from the DiD (0 for comparators)
``<outcome>``      child-level: 0/1; aggregated: the number of children with the outcome
``n``              aggregated only: the number of children in the cell
covariates         optional: ``age_band``, ``sex``, ``ethnicity``, ``disability`` (categorical)
=================  ===========================================================================

Child-level rows are reduced to sufficient statistics at once (binomial counts per
LA x year x covariate stratum) and never leave this module's caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data import validate as v
from data.errors import DataError
from data.hashing import hash_file

DESIGN_COLUMNS = ("la", "year", "arm", "adoption_year", "settling_years")
COVARIATES = ("age_band", "sex", "ethnicity", "disability")
ARMS = ("pilot", "comparator")


@dataclass
class DidCells:
    """Aggregated binomial cells with the design columns every DiD model needs.

    ``cells`` columns: la, year, arm, adoption_year, settling_years, covariates..., n, y,
    plus ``rel_time`` (year - adoption year; NaN for comparators), ``phase`` ('pre',
    'settling', 'post' for pilots; 'comparator') and ``treated_post`` (0/1).
    """

    cells: pd.DataFrame
    outcome: str
    covariates: tuple[str, ...]
    source: str
    data_hash: str
    n_children: int
    synthetic: bool

    @property
    def pilots(self) -> list[str]:
        return sorted(self.cells.loc[self.cells.arm == "pilot", "la"].unique(), key=_natural)

    @property
    def las(self) -> list[str]:
        pil = self.pilots
        comp = sorted(set(self.cells.la) - set(pil), key=_natural)
        return pil + comp

    @property
    def years(self) -> list[int]:
        return sorted(int(y) for y in self.cells.year.unique())

    def analysis_cells(self) -> pd.DataFrame:
        """Cells used by the DiD itself: settling-in years of pilots are left out."""
        return self.cells[self.cells.phase != "settling"].reset_index(drop=True)


def _natural(label: str) -> tuple:
    head, _, tail = str(label).rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (str(label), 0)


def _validate_design(frame: pd.DataFrame) -> None:
    v.require_columns(frame, DESIGN_COLUMNS)
    v.require_no_missing(frame, ["la", "year", "arm", "settling_years"])
    v.require_integer(frame, "year")
    v.require_in(frame, "arm", ARMS)
    v.require_integer(frame, "settling_years", minimum=0)
    v.require_numeric(frame, "adoption_year")
    pilot = (frame["arm"] == "pilot").to_numpy()
    missing_adoption = pilot & frame["adoption_year"].isna().to_numpy()
    if missing_adoption.any():
        raise DataError("a pilot LA needs an adoption year", row=int(np.flatnonzero(missing_adoption)[0]) + 1,
                        column="adoption_year")
    for col in ("arm", "adoption_year", "settling_years"):
        v.require_constant_within(frame, "la", col)
    arms = set(frame["arm"])
    if "pilot" not in arms:
        raise DataError("no pilot (treated) LAs: a DiD needs at least one", column="arm")
    if "comparator" not in arms:
        raise DataError("no comparator LAs: a DiD needs at least one", column="arm")
    # every LA needs pre-period data: before its own adoption (pilots) or the first adoption (comparators)
    first_adoption = pd.to_numeric(frame.loc[pilot, "adoption_year"]).min()
    cutoff = np.where(pilot, pd.to_numeric(frame["adoption_year"]), first_adoption)
    has_pre = pd.Series(frame["year"].to_numpy(float) < cutoff).groupby(frame["la"].to_numpy()).any()
    for la in has_pre.index[~has_pre.to_numpy()]:
        row = int(np.flatnonzero((frame["la"] == la).to_numpy())[0]) + 1
        raise DataError(f"LA {la!r} has no pre-period data (no year before its adoption year "
                        "or, for a comparator, before the first pilot's)", row=row, column="year")


def cells_from_frame(frame: pd.DataFrame, outcome: str, *, source: str = "<data frame>",
                     data_hash: str = "", synthetic: bool = False) -> DidCells:
    """Validate child-level or aggregated rows and aggregate them into binomial cells."""
    try:
        _validate_design(frame)
        v.require_columns(frame, [outcome])
        v.require_no_missing(frame, [outcome])
        covariates = tuple(c for c in COVARIATES if c in frame.columns)
        v.require_no_missing(frame, covariates)
        if "n" in frame.columns:  # aggregated
            v.require_integer(frame, "n", minimum=0)
            v.require_integer(frame, outcome, minimum=0)
            v.require_le(frame, outcome, "n")
            work = frame.assign(y=pd.to_numeric(frame[outcome]).astype(int), n=pd.to_numeric(frame["n"]).astype(int))
        else:
            y = v.require_binary(frame, outcome)
            work = frame.assign(y=y, n=1)
    except DataError as err:
        raise err.located(source) if err.file is None else err
    keys = [*DESIGN_COLUMNS, *covariates]
    work = work[[*keys, "y", "n"]].copy()
    work["adoption_year"] = pd.to_numeric(work["adoption_year"]).astype(float)
    for c in ("year", "settling_years"):
        work[c] = pd.to_numeric(work[c]).astype(int)
    for c in ("la", *covariates):
        work[c] = work[c].astype(str)
    cells = work.groupby(keys, dropna=False, sort=True, as_index=False)[["y", "n"]].sum()
    cells = cells[cells["n"] > 0].reset_index(drop=True)
    return DidCells(add_design(cells), outcome, covariates, source, data_hash,
                    int(cells["n"].sum()), synthetic)


def add_design(cells: pd.DataFrame) -> pd.DataFrame:
    """Relative time, phase and the treated-post indicator from the design columns."""
    out = cells.copy()
    pilot = out["arm"].to_numpy() == "pilot"
    rel = out["year"].to_numpy(float) - out["adoption_year"].to_numpy(float)
    settling = out["settling_years"].to_numpy()
    out["rel_time"] = np.where(pilot, rel, np.nan)
    phase = np.where(rel < 0, "pre", np.where(rel < settling, "settling", "post"))
    out["phase"] = np.where(pilot, phase, "comparator")
    out["treated_post"] = (out["phase"] == "post").astype(int)
    return out


def load_did_data(path: Path, outcome: str) -> DidCells:
    """Read a user's file (CSV/Parquet), validate it and aggregate it to cells."""
    frame = v.read_table(path)
    return cells_from_frame(frame, outcome, source=str(path), data_hash=hash_file(path))
