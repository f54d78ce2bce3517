"""DfE code lists, the English LA code reference, and small date helpers.

Code lists follow the DfE SSDA903 and CIN census guidance for the collection years the
evaluation covers (2010-11 to 2019-20) and later; where codes changed between years the
union is accepted (for example the special guardianship codes E43/E44, used up to 2015-16,
and E45-E48 from 2016-17). Sources and assumptions are listed in the README, section "Real administrative data".
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

# ------------------------------------------------------------------ SSDA903

SEX_CODES = {"1": "male", "2": "female"}
RNE_CODES = ("S", "L", "P", "T", "B", "U")          # reason for new episode; S = started to be looked after
LS_CODES = ("C1", "C2", "D1", "E1", "V2", "V3", "V4", "L1", "L2", "L3", "J1", "J2", "J3")
SHORT_BREAK_LS = ("V3", "V4")                       # series of short-term (respite) placements
CIN_NEED_CODES = tuple(f"N{i}" for i in range(1, 9))
PLACE_CODES = ("A3", "A4", "A5", "A6", "H5", "K1", "K2", "P1", "P2", "P3", "R1", "R2", "R3", "R5",
               "S1", "T0", "T1", "T2", "T3", "T4", "U1", "U2", "U3", "U4", "U5", "U6", "Z1")
KINSHIP_PLACEMENTS = ("U1", "U2", "U3")             # foster placement with a relative or friend
PLACE_PROVIDER_CODES = ("PR0", "PR1", "PR2", "PR3", "PR4", "PR5")
REC_CODES = ("X1", "E11", "E12", "E13", "E14", "E15", "E16", "E17", "E2", "E3", "E41", "E43", "E44",
             "E45", "E46", "E47", "E48", "E4A", "E4B", "E5", "E6", "E7", "E8", "E9")
SGO_CODES = ("E43", "E44", "E45", "E46", "E47", "E48")   # special guardianship order made
SGO_KIN_CODES = ("E45", "E47")                      # ... to a relative or friend (2016-17 onwards)

# ------------------------------------------------------------------ ethnicity (both collections)

ETHNIC_GROUP = {
    "WBRI": "White", "WIRI": "White", "WIRT": "White", "WOTH": "White", "WROM": "White",
    "MWBC": "Mixed", "MWBA": "Mixed", "MWAS": "Mixed", "MOTH": "Mixed",
    "AIND": "Asian", "APKN": "Asian", "ABAN": "Asian", "AOTH": "Asian",
    "BCRB": "Black", "BAFR": "Black", "BOTH": "Black",
    "CHNE": "Other", "OOTH": "Other",
    "REFU": "Unknown", "NOBT": "Unknown",
}  # fmt: skip
ETHNIC_CODES = tuple(ETHNIC_GROUP)

# ------------------------------------------------------------------ CIN census

CIN_EVENT_TYPES = ("CINreferralDate", "CINclosureDate", "AssessmentActualStartDate",
                   "AssessmentAuthorisationDate", "S47ActualStartDate", "DateOfInitialCPC",
                   "CPPstartDate", "CPPendDate", "CPPreviewDate", "CINPlanStartDate", "CINPlanEndDate")
CLOSURE_CODES = tuple(f"RC{i}" for i in range(1, 10))
NFA_CLOSURE_CODES = ("RC8",)                        # case closed after assessment, no further action
GENDER_CODES = {"1": "male", "2": "female", "0": "unknown", "9": "unknown"}
DISABILITY_CODES = ("NONE", "MOB", "HAND", "PC", "INC", "COMM", "LD", "HEAR", "VIS", "BEH", "CON",
                    "AUT", "DDA")
TRUE_VALUES = ("1", "true", "yes", "y")
FALSE_VALUES = ("0", "false", "no", "n")

# ------------------------------------------------------------------ covariates

AGE_BANDS = ("0-4", "5-9", "10-15", "16-17")
_AGE_EDGES = np.array([0, 5, 10, 16])


def age_band(dob: pd.Series, on: pd.Series) -> np.ndarray:
    """Age band (0-4, 5-9, 10-15, 16-17) from completed years of age on date ``on``.

    Unknown dates of birth give ``"unknown"``; an age of 18 or more (possible when DOBs are
    rounded to the first of the month) is put in 16-17; unborn children in 0-4.
    """
    d, o = pd.to_datetime(dob), pd.to_datetime(on)
    years = (o.dt.year - d.dt.year) - ((o.dt.month * 100 + o.dt.day) < (d.dt.month * 100 + d.dt.day))
    a = years.to_numpy(dtype=float)
    idx = np.clip(np.searchsorted(_AGE_EDGES, np.nan_to_num(a, nan=0.0), side="right") - 1, 0, 3)
    return np.where(np.isnan(a), "unknown", np.asarray(AGE_BANDS)[idx])


def financial_year(dates: pd.Series) -> np.ndarray:
    """Financial year as the project codes it: 2014 for 1 April 2014 - 31 March 2015."""
    d = pd.to_datetime(dates)
    return (d.dt.year - (d.dt.month < 4)).to_numpy()


def year_end(collection_year: int) -> pd.Timestamp:
    """31 March ending a DfE collection year (collections are named by the year they end)."""
    return pd.Timestamp(collection_year, 3, 31)


def next_march_31(when: pd.Timestamp) -> pd.Timestamp:
    end = pd.Timestamp(when.year, 3, 31)
    return end if when <= end else pd.Timestamp(when.year + 1, 3, 31)


@lru_cache(maxsize=8)
def england_bank_holidays(first_year: int, last_year: int) -> np.ndarray:
    """England and Wales bank holidays (``holidays`` package, subdivision ENG) as datetime64[D].

    Includes the one-off days (2011 royal wedding, 2012 and 2022 jubilees, 2022 state funeral,
    2023 coronation) and substitute days; Scotland's and Northern Ireland's are excluded.
    """
    import holidays

    days = holidays.country_holidays("GB", subdiv="ENG", years=range(first_year, last_year + 1))
    return np.array(sorted(days), dtype="datetime64[D]")


def working_days(start: pd.Series, end: pd.Series) -> np.ndarray:
    """Working days from ``start`` to ``end`` (Monday-Friday less English bank holidays).

    Counted as ``numpy.busday_count``: days in [start, end), so a same-day assessment is 0 and
    Monday to Tuesday is 1. Missing dates give NaN.
    """
    s = pd.to_datetime(start).to_numpy(dtype="datetime64[D]")
    e = pd.to_datetime(end).to_numpy(dtype="datetime64[D]")
    ok = ~(np.isnat(s) | np.isnat(e))
    out = np.full(s.shape, np.nan)
    if ok.any():
        years = pd.DatetimeIndex(np.concatenate([s[ok], e[ok]])).year
        hol = england_bank_holidays(int(years.min()) - 1, int(years.max()) + 1)
        out[ok] = np.busday_count(s[ok], e[ok], holidays=hol)
    return out


# ------------------------------------------------------------------ English local authorities

LA_CODES_FILE = Path(__file__).with_name("la_codes.csv")


@lru_cache(maxsize=1)
def la_reference() -> pd.DataFrame:
    """English LAs with children's services, 2012-13 to 2024-25: old (3-digit) and new (E..) codes.

    From the DfE's published CIN statistics (see ``shared/data/dfe-la-panel``), plus Cumbria
    (909), which those files leave out. Old codes are the ones SSDA903 and CIN extracts carry.
    """
    return pd.read_csv(LA_CODES_FILE, dtype=str)


@lru_cache(maxsize=1)
def _la_lookup() -> dict[str, str]:
    ref = la_reference()
    lookup: dict[str, str] = {}
    for old, new, name in ref[["old_la_code", "new_la_code", "la_name"]].itertuples(index=False):
        lookup[old] = old
        lookup[new.upper()] = old
        lookup[name.casefold()] = old
    return lookup


def map_values(values: pd.Series, mapping: dict, default: object = None) -> np.ndarray:
    """``mapping[value]`` for each value (``default`` for missing or unmapped), via the uniques."""
    idx, uniq = pd.factorize(values)
    table = np.array([mapping.get(u, default) for u in uniq] + [default], dtype=object)
    return table[idx]


def normalise_la(values: pd.Series) -> pd.Series:
    """Map LA codes (old 3-digit, new E-code) or names to the old 3-digit code; unknown -> NA."""
    lookup = _la_lookup()
    idx, uniq = pd.factorize(values)
    found = [lookup.get(str(k).strip(), lookup.get(str(k).strip().upper(), lookup.get(str(k).strip().casefold())))
             for k in uniq]
    table = np.array(found + [None], dtype=object)
    return pd.Series(table[idx], index=values.index, dtype="str")


def is_known_la(value: str) -> bool:
    return normalise_la(pd.Series([value])).notna().iloc[0]


def la_name(code: str) -> str | None:
    ref = la_reference()
    hit = ref.loc[ref["old_la_code"] == code, "la_name"]
    return None if hit.empty else str(hit.iloc[-1])


def fy_label(year: int) -> str:
    return f"{year}-{(year + 1) % 100:02d}"

