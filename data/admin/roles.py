"""The user's LA role table: which LAs are pilots, when they adopted, how long they settled in.

A small CSV (or Parquet) file, one row per LA in the study::

    la_code,role,adoption_date,settling_years,label
    304,pilot,2017-09-01,2,Pilot 1
    873,comparator,,,Comparator 1

=================  ============================================================================
column             meaning
=================  ============================================================================
``la_code``        the LA's old 3-digit code (as SSDA903 and CIN extracts carry it), its new
                   E-code, or its name; it must be an English LA (``data/admin/la_codes.csv``)
``role``           ``pilot`` or ``comparator``
``adoption_date``  pilots: the date the LA adopted the programme (dd/mm/yyyy or yyyy-mm-dd);
                   its financial year (April-March) is the DiD's adoption year.
                   Comparators: empty (they never adopt)
``settling_years`` pilots: whole financial years of settling-in after adoption, left out of the
                   DiD (the report's 'settling-in period'; empty means 0). Comparators: empty or 0
``label``          optional: how the LA is named in outputs (default: its code)
=================  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.admin import codes
from data.admin import validation as val
from data.errors import DataError
from data.hashing import hash_file, hash_frame

ROLE_COLUMNS = ("la_code", "role", "adoption_date", "settling_years")
ROLES = ("pilot", "comparator")


@dataclass(frozen=True)
class LaRoles:
    """Validated roles. ``table`` columns: la_code (old 3-digit code), la (output label), arm,
    adoption_date, adoption_year (financial year; NaN for comparators), settling_years."""

    table: pd.DataFrame
    source: str
    data_hash: str

    @property
    def codes(self) -> list[str]:
        return list(self.table["la_code"])

    def design(self) -> pd.DataFrame:
        """The DiD design columns keyed by ``la_code`` (for joining onto child-level rows)."""
        return self.table[["la_code", "la", "arm", "adoption_year", "settling_years"]]


def roles_from_frame(frame: pd.DataFrame, *, source: str = "<LA role table>", data_hash: str = "") -> LaRoles:
    """Validate a role table already in memory (text columns; see the module docstring)."""
    table = "LA role table"
    f = val.match_columns(frame, ROLE_COLUMNS[:2], (*ROLE_COLUMNS[2:], "label"), file=source, table=table)
    for c in ("adoption_date", "settling_years", "label"):
        if c not in f.columns:
            f[c] = None
    f = f.astype({c: "object" for c in f.columns})
    code = val.check_la(f, "la_code", file=source, table=table)
    role = f["role"].astype("str").str.strip().str.casefold()
    bad = ~role.isin(ROLES).to_numpy() | f["role"].isna().to_numpy()
    if bad.any():
        row = val.first_row(bad)
        raise DataError(f"{table}: role {f['role'].iloc[row - 1]!r} is not one of {list(ROLES)}",
                        file=source, row=row, column="role")
    dup = code.duplicated().to_numpy()
    if dup.any():
        row = val.first_row(dup)
        first = val.first_row((code == code.iloc[row - 1]).to_numpy())
        raise DataError(f"{table}: LA {f['la_code'].iloc[row - 1]!r} is listed twice (also at row {first})",
                        file=source, row=row, column="la_code")
    adoption = val.parse_dates(f, "adoption_date", file=source, table=table)
    pilot = (role == "pilot").to_numpy()
    missing = pilot & adoption.isna().to_numpy()
    if missing.any():
        raise DataError(f"{table}: a pilot LA needs an adoption date", file=source, row=val.first_row(missing),
                        column="adoption_date")
    extra = ~pilot & adoption.notna().to_numpy()
    if extra.any():
        raise DataError(f"{table}: a comparator LA has an adoption date (comparators never adopt; "
                        "make it a pilot or leave the date empty)", file=source, row=val.first_row(extra),
                        column="adoption_date")
    settle_raw = f["settling_years"]
    settle = pd.to_numeric(settle_raw, errors="coerce")
    bad = (settle_raw.notna() & (settle.isna() | (settle < 0) | (settle != np.round(settle)))).to_numpy()
    if bad.any():
        row = val.first_row(bad)
        raise DataError(f"{table}: settling_years must be a whole number of years >= 0, got "
                        f"{settle_raw.iloc[row - 1]!r}", file=source, row=row, column="settling_years")
    settle = settle.fillna(0).astype(int)
    bad = ~pilot & (settle > 0).to_numpy()
    if bad.any():
        raise DataError(f"{table}: a comparator LA cannot have settling-in years", file=source,
                        row=val.first_row(bad), column="settling_years")
    label = f["label"].where(f["label"].notna(), code)
    dup = label.duplicated().to_numpy()
    if dup.any():
        raise DataError(f"{table}: label {label.iloc[val.first_row(dup) - 1]!r} is used twice", file=source,
                        row=val.first_row(dup), column="label")
    if not pilot.any():
        raise DataError(f"{table}: no pilot LA (a DiD needs at least one)", file=source, column="role")
    if pilot.all():
        raise DataError(f"{table}: no comparator LA (a DiD needs at least one)", file=source, column="role")
    out = pd.DataFrame({
        "la_code": code.astype(str).to_numpy(),
        "la": label.astype(str).to_numpy(),
        "arm": role.to_numpy(),
        "adoption_date": adoption.to_numpy(),
        "adoption_year": np.where(pilot, codes.financial_year(adoption.fillna(pd.Timestamp(2000, 4, 1))),
                                  np.nan).astype(float),
        "settling_years": settle.to_numpy(),
    })
    return LaRoles(out, source, data_hash or hash_frame(out))


def load_roles(path: Path) -> LaRoles:
    """Read and validate the role table file."""
    frame = val.read_raw(Path(path))
    return roles_from_frame(frame, source=str(path), data_hash=hash_file(path))


def write_roles(table: pd.DataFrame, path: Path) -> Path:
    """Write a role table (columns la_code, role, adoption_date, settling_years[, label]) as CSV."""
    out = table.copy()
    out["adoption_date"] = pd.to_datetime(out["adoption_date"]).dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False)
    return Path(path)
