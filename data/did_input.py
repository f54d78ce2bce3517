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

Durations (``kind="duration"``; e.g. ``assessment_days``, working days, 0 = same day) are
reduced to the sufficient statistics of the hurdle-lognormal model per cell: ``n`` (records),
``y`` (same-day records), ``n_pos`` (positive durations), ``log_sum`` and ``log_sq`` (sum of
log durations and of their squares) and ``dur_sum`` (sum of durations); only record-level
rows are accepted.

Optional record-level columns: ``child_id`` (the same child referred or assessed more than
once; enables the ``first_record`` variant and the records of repeated children used by the
child-effect model). *Variants* are alternative data definitions aggregated at load time onto
the same cells (columns ``<stat>|<variant>``), so that a sensitivity analysis re-uses the
compiled model: e.g. only each child's first record, or durations up to a cut-off.

LA attributes (``load_la_attributes``), one row per LA: ``la`` and any of ``embeddedness``,
``quality_of_delivery`` (numbers), ``ofsted`` (outstanding / good / requires improvement /
inadequate) and ``similar_practice_model`` (yes / no).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data import validate as v
from data.errors import DataError
from data.hashing import hash_file
from models.did.likelihoods import NO_CUTOFF

DESIGN_COLUMNS = ("la", "year", "arm", "adoption_year", "settling_years")
COVARIATES = ("age_band", "sex", "ethnicity", "disability")
ARMS = ("pilot", "comparator")
KINDS = ("binary", "duration")
BINARY_STATS = ("y", "n")
DURATION_STATS = ("y", "n", "n_pos", "log_sum", "log_sq", "dur_sum")
CHILD_ID = "child_id"
OFSTED_GRADES = ("outstanding", "good", "requires improvement", "inadequate")
LA_ATTRIBUTE_COLUMNS = ("embeddedness", "quality_of_delivery", "ofsted", "similar_practice_model")


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
    kind: str = "binary"
    variants: tuple[str, ...] = ()
    repeated: pd.DataFrame | None = None   # records of children seen more than once (keys, child_id, y)
    notes: tuple[str, ...] = ()
    missing: dict[str, int] = field(default_factory=dict)   # values read as missing, per input column

    @property
    def stats(self) -> tuple[str, ...]:
        """The sufficient-statistic columns of a cell."""
        return DURATION_STATS if self.kind == "duration" else BINARY_STATS

    @property
    def variant_stats(self) -> tuple[str, ...]:
        """The columns a data variant replaces: the statistics and, for durations, the
        cut-off ``log_upper`` (``models.did.likelihoods``; not summed, not zeroed)."""
        return (*self.stats, "log_upper") if self.kind == "duration" else self.stats

    def variant_cells(self, name: str, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """``frame`` (default: all cells) with its statistics replaced by those of variant ``name``."""
        if name not in self.variants:
            raise ValueError(f"unknown data variant {name!r}; this dataset has {list(self.variants)}")
        frame = self.cells if frame is None else frame
        out = frame.copy()
        for stat in self.variant_stats:
            out[stat] = frame[f"{stat}|{name}"].to_numpy()
        return out

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


RowFilter = Callable[[pd.DataFrame], np.ndarray]


def first_record_mask(rows: pd.DataFrame) -> np.ndarray:
    """Each child's first record (earliest year; file order within a year)."""
    order = np.lexsort((np.arange(len(rows)), rows["year"].to_numpy()))
    firsts = pd.Series(order, index=rows[CHILD_ID].to_numpy()[order]).groupby(level=0).first()
    mask = np.zeros(len(rows), bool)
    mask[firsts.to_numpy()] = True
    return mask


def max_value_mask(value: float, column: str = "value") -> RowFilter:
    """Rows whose outcome is at most ``value`` (a maximum duration). The filter carries the
    cut-off as ``upper``, so that durations aggregated with it are modelled as truncated there."""
    def keep(rows: pd.DataFrame) -> np.ndarray:
        return rows[column].to_numpy(float) <= value

    keep.upper = float(value)
    return keep


def _duration_stats(days: np.ndarray) -> dict[str, np.ndarray]:
    pos = days > 0
    logd = np.log(np.where(pos, days, 1.0))
    return {"n": np.ones(days.size, int), "y": (~pos).astype(int), "n_pos": pos.astype(int),
            "log_sum": logd, "log_sq": logd ** 2, "dur_sum": days.astype(float)}


def cells_from_frame(frame: pd.DataFrame, outcome: str, *, source: str = "<data frame>",
                     data_hash: str = "", synthetic: bool = False, kind: str = "binary",
                     covariates: tuple[str, ...] | list[str] | None = None,
                     variants: dict[str, RowFilter] | None = None,
                     max_value: float | None = None) -> DidCells:
    """Validate child-level or aggregated rows and aggregate them into cells.

    Parameters
    ----------
    kind
        ``"binary"`` (0/1 outcome, or aggregated counts with ``n``) or ``"duration"`` (a
        non-negative whole number per record, e.g. working days).
    covariates
        Covariates to stratify by (those present are used); default: all of :data:`COVARIATES`.
    variants
        Alternative data definitions, ``name -> row filter``, aggregated onto the same cells
        (record-level input only). Row filters see the rows with a ``value`` column (the outcome)
        and ``child_id`` when present.
    max_value
        Drop records whose outcome exceeds this (a maximum duration); reported in ``notes``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    notes: list[str] = []
    try:
        _validate_design(frame)
        v.require_columns(frame, [outcome])
        v.require_no_missing(frame, [outcome])
        wanted = COVARIATES if covariates is None else tuple(covariates)
        unknown = [c for c in wanted if c not in COVARIATES]
        if unknown:
            raise ValueError(f"unknown covariate(s) {unknown}; choose from {list(COVARIATES)}")
        covs = tuple(c for c in wanted if c in frame.columns)
        v.require_no_missing(frame, covs)
        aggregated = "n" in frame.columns
        has_child = CHILD_ID in frame.columns and not aggregated
        if has_child:
            v.require_no_missing(frame, [CHILD_ID])
        if kind == "duration":
            if aggregated:
                raise DataError("duration outcomes need one row per record (assessment), not aggregated "
                                "cells: remove the 'n' column", column="n")
            value = v.require_integer(frame, outcome, minimum=0)
        elif aggregated:
            v.require_integer(frame, "n", minimum=0)
            v.require_integer(frame, outcome, minimum=0)
            v.require_le(frame, outcome, "n")
            value = pd.to_numeric(frame[outcome]).to_numpy(float)
        else:
            value = v.require_binary(frame, outcome).astype(float)
    except DataError as err:
        raise err.located(source) if err.file is None else err
    keys = [*DESIGN_COLUMNS, *covs]
    rows = frame[keys].copy()
    rows["adoption_year"] = pd.to_numeric(rows["adoption_year"]).astype(float)
    for c in ("year", "settling_years"):
        rows[c] = pd.to_numeric(rows[c]).astype(int)
    for c in ("la", *covs):
        rows[c] = rows[c].astype(str)
    rows["value"] = value
    rows["_n"] = pd.to_numeric(frame["n"]).to_numpy(int) if aggregated else 1
    if has_child:
        rows[CHILD_ID] = frame[CHILD_ID].astype(str).to_numpy()
    if max_value is not None:
        if max_value <= 0:
            raise ValueError(f"the maximum value must be positive, got {max_value:g}")
        keep = value <= max_value
        notes.append(f"{int((~keep).sum())} records with {outcome} > {max_value:g} left out (maximum allowed)")
        rows = rows[keep].reset_index(drop=True)
    if kind == "duration":
        stats_cols = DURATION_STATS
        stats = _duration_stats(rows["value"].to_numpy())
    else:
        stats_cols = BINARY_STATS
        stats = {"y": rows["value"].to_numpy(int), "n": rows["_n"].to_numpy(int)}
    work = rows[keys].assign(**stats)
    cells = work.groupby(keys, dropna=False, sort=True, as_index=False)[list(stats_cols)].sum()
    cells = cells[cells["n"] > 0].reset_index(drop=True)
    log_upper = NO_CUTOFF if max_value is None else float(np.log(max_value))
    if kind == "duration":
        cells["log_upper"] = log_upper      # durations above max_value were left out: truncated there

    done: list[str] = []
    for name, keep_fn in (variants or {}).items():
        if aggregated:
            notes.append(f"data variant '{name}' needs record-level rows; not available for aggregated input")
            continue
        try:
            mask = np.asarray(keep_fn(rows), dtype=bool)
        except KeyError as err:
            notes.append(f"data variant '{name}' not available: the data have no column {err}")
            continue
        sub = work[mask].groupby(keys, dropna=False, sort=True, as_index=False)[list(stats_cols)].sum()
        sub = sub.rename(columns={s: f"{s}|{name}" for s in stats_cols})
        cells = cells.merge(sub, on=keys, how="left")
        for s in stats_cols:
            cells[f"{s}|{name}"] = cells[f"{s}|{name}"].fillna(0).astype(cells[s].dtype)
        if kind == "duration":
            upper = getattr(keep_fn, "upper", None)
            cells[f"log_upper|{name}"] = log_upper if upper is None else min(float(np.log(upper)), log_upper)
        done.append(name)

    repeated = None
    if has_child and kind == "binary":
        counts = rows[CHILD_ID].map(rows[CHILD_ID].value_counts())
        rep = rows[counts.to_numpy() > 1]
        repeated = rep[[*keys, CHILD_ID]].assign(y=rep["value"].to_numpy(int)).reset_index(drop=True)
    return DidCells(add_design(cells), outcome, covs, source, data_hash, int(cells["n"].sum()), synthetic,
                    kind=kind, variants=tuple(done), repeated=repeated, notes=tuple(notes),
                    missing=v.missing_counts(frame))


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


def load_did_data(path: Path, outcome: str, **kwargs) -> DidCells:
    """Read a user's file (CSV/Parquet), validate it and aggregate it to cells
    (keyword arguments as :func:`cells_from_frame`)."""
    frame = v.read_table(path)
    return cells_from_frame(frame, outcome, source=str(path), data_hash=hash_file(path), **kwargs)


def validate_la_attributes(frame: pd.DataFrame, las: list[str] | None = None, *, source: str = "<LA attributes>") -> pd.DataFrame:
    """Check an LA attribute table (see module docstring); returns a tidy copy indexed by ``la``.

    Every LA in ``las`` must have a row; extra LAs are ignored.
    """
    try:
        v.require_columns(frame, ["la"])
        v.require_no_missing(frame, ["la"])
        out = frame.copy()
        out["la"] = out["la"].astype(str)
        dup = out["la"].duplicated().to_numpy()
        if dup.any():
            raise DataError(f"LA {out['la'].iloc[int(np.flatnonzero(dup)[0])]!r} appears twice",
                            row=int(np.flatnonzero(dup)[0]) + 1, column="la")
        for col in ("embeddedness", "quality_of_delivery"):
            if col in out.columns:
                out[col] = v.require_numeric(out, col)
        for col, allowed in (("ofsted", OFSTED_GRADES), ("similar_practice_model", ("yes", "no"))):
            if col in out.columns:
                text = out[col].where(out[col].isna(), out[col].astype(str).str.strip().str.lower())
                bad = (text.notna() & ~text.isin(allowed)).to_numpy()
                if bad.any():
                    r = int(np.flatnonzero(bad)[0])
                    raise DataError(f"value {out[col].iloc[r]!r} is not one of {list(allowed)} (or empty)",
                                    row=r + 1, column=col)
                out[col] = text
        if las is not None:
            missing = sorted(set(las) - set(out["la"]))
            if missing:
                raise DataError(f"no row for LA(s) {missing}", column="la")
    except DataError as err:
        raise err.located(source) if err.file is None else err
    return out.set_index("la")


def load_la_attributes(path: Path, las: list[str] | None = None) -> pd.DataFrame:
    """Read and validate an LA attribute file (CSV/Parquet)."""
    return validate_la_attributes(v.read_table(path), las, source=str(path))
