"""Public LA-level panels (DfE official statistics): loader, validation, treatment, comparators.

The three files come from the DfE "Children's social care outcomes and enablers" dashboard
(``../shared/data/dfe-la-panel/``; a user may download fresh copies with the same columns):

=============================  ==============================================================
file                           columns (extra columns are ignored)
=============================  ==============================================================
``la_referrals.csv``           year_ending_march, new_la_code, old_la_code, la_name,
                               region_name, referrals, re_referrals (within 12 months)
``la_workforce.csv``           year_ending_march, new_la_code, old_la_code, la_name,
                               turnover_rate_fte, absence_rate_fte, agency_rate_fte,
                               vacancy_rate_fte (all %), caseload_fte (cases per FTE)
``la_statistical_neighbours``  la_name, old_la_code, SN1 ... SN10 (names, nearest first)
=============================  ==============================================================

``year_ending_march`` 2015 is the financial year 2014-15; every table here keeps that label
(column ``year``). LAs are keyed by their three-digit ``old_la_code`` (the LA number).

Missing values are published as codes (``c`` confidential, ``low``/``k`` rounds to zero,
``u`` low reliability, ``x`` not available, ``z`` not applicable; ``[c]`` etc., ``..``, ``:``,
``NA`` or blank), and the dashboard stores them as negative sentinels (-100 c, -200 low,
-250 u, -300 x, -400 z). Both forms are read as missing and counted; any other text, a
negative number, a rate outside 0-100, re-referrals above referrals, a duplicate LA-year, a
bad code, or an unknown neighbour is a :class:`DataError` naming file, row and column.

Boundary changes (:data:`BOUNDARY_CHANGES`) are handled explicitly by ``boundary=``:
``"drop"`` (default) leaves every LA whose area changed inside the analysis window out of
the comparator pool, so the next-nearest neighbour is used; ``"map"`` keeps them on a
consistent area where the data allow (counts: predecessors summed; rates: a joint return or
the successor's own shorter series). Both say what they did, LA by LA
(:attr:`OutcomePanel.boundary`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.did_input import add_design
from data.errors import DataError
from data.hashing import hash_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PANEL_DIR = REPO_ROOT.parent / "shared" / "data" / "dfe-la-panel"
DEFAULT_TREATMENT = REPO_ROOT / "data" / "la_panel_treatment.csv"
DEFAULT_EXCLUSIONS = REPO_ROOT / "data" / "la_panel_exclusions.csv"

FILES = {"referrals": "la_referrals.csv", "workforce": "la_workforce.csv",
         "neighbours": "la_statistical_neighbours.csv"}
ID_COLUMNS = ("year_ending_march", "new_la_code", "old_la_code", "la_name")
REFERRAL_VALUES = ("referrals", "re_referrals")
RATE_COLUMNS = ("turnover_rate_fte", "absence_rate_fte", "agency_rate_fte", "vacancy_rate_fte")
WORKFORCE_VALUES = (*RATE_COLUMNS, "caseload_fte")
N_NEIGHBOURS = 10
SN_COLUMNS = tuple(f"SN{i}" for i in range(1, N_NEIGHBOURS + 1))
TREATMENT_COLUMNS = ("la_name", "old_la_code", "round", "adoption_year", "settling_years", "last_year",
                     "after_exit", "source")
EXCLUSION_COLUMNS = ("la_name", "old_la_code", "reason", "source")
AFTER_EXIT = ("drop", "treated", "untreated")
BOUNDARY_POLICIES = ("drop", "map")

#: Published missing-value codes (lower case, brackets stripped) and what they mean.
MISSING_CODES = {"c": "confidential", "low": "rounds to zero", "k": "rounds to zero", "u": "low reliability",
                 "x": "not available", "z": "not applicable", "..": "not available", ":": "not available",
                 "na": "not available", "": "blank"}
#: The dashboard's numeric stand-ins for those codes (``redacted_to_negative`` in its R code).
SENTINELS = {-100.0: "c", -200.0: "low", -250.0: "u", -300.0: "x", -400.0: "z"}

_LA_CODE = re.compile(r"^\d{3}( / \d{3})*$")
_GSS_CODE = re.compile(r"^E\d{8}( / E\d{8})*$")


# ---------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Outcome:
    """One LA-level indicator: where it lives, its scale, and how results are read."""

    name: str
    file: str               # "referrals" or "workforce"
    column: str             # numerator or value column
    denominator: str | None  # counts only
    kind: str               # "count" (y out of n) or "continuous" (a rate in % or a level)
    label: str              # axis label
    short: str              # in sentences
    unit: str               # reporting unit of effects: "pp" or "cases"
    rope: float             # half-width of the region of practical equivalence, in `unit`
    mid: float              # minimal important difference, in `unit`
    rises_if_programme_works: bool = False

    @property
    def direction(self) -> int:
        return 1 if self.rises_if_programme_works else -1


OUTCOMES: dict[str, Outcome] = {
    "rereferral": Outcome("rereferral", "referrals", "re_referrals", "referrals", "count",
                          "re-referrals within 12 months (% of referrals)", "re-referrals", "pp", 1.0, 2.0),
    "turnover": Outcome("turnover", "workforce", "turnover_rate_fte", None, "continuous",
                        "social worker turnover rate (FTE, %)", "turnover", "pp", 1.0, 3.0),
    "agency": Outcome("agency", "workforce", "agency_rate_fte", None, "continuous",
                      "agency worker rate (FTE, %)", "the agency worker rate", "pp", 1.0, 3.0),
    "absence": Outcome("absence", "workforce", "absence_rate_fte", None, "continuous",
                       "sickness absence rate (FTE, %)", "sickness absence", "pp", 0.25, 0.5),
    "vacancy": Outcome("vacancy", "workforce", "vacancy_rate_fte", None, "continuous",
                       "vacancy rate (FTE, %)", "the vacancy rate", "pp", 1.0, 3.0),
    "caseload": Outcome("caseload", "workforce", "caseload_fte", None, "continuous",
                        "average caseload per FTE social worker", "caseloads", "cases", 0.5, 1.5),
}


# ---------------------------------------------------------------------------- boundary changes

@dataclass(frozen=True)
class BoundaryChange:
    """LAs abolished (``before``) and created (``after``) on 1 April of ``first_year - 1``.

    ``merge`` maps each successor to the sum of its listed predecessors (``parts``); a split
    maps every successor to the whole predecessor area.
    """

    before: tuple[str, ...]
    after: tuple[str, ...]
    first_year: int              # first year_ending_march of the new LAs
    kind: str                    # "merge" or "split"
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # merge: successor -> predecessors
    exact: bool = True
    note: str = ""


BOUNDARY_CHANGES: tuple[BoundaryChange, ...] = (
    BoundaryChange(("835", "836", "837"), ("838", "839"), 2020, "merge",
                   {"839": ("836", "837"), "838": ("835",)}, exact=False,
                   note="Bournemouth (837) and Poole (836) merged with Christchurch into Bournemouth, "
                        "Christchurch and Poole (839), and Dorset county (835) became Dorset (838), on "
                        "1 April 2019; Christchurch moved from Dorset county to BCP, so mapped series are "
                        "approximate (BCP before 2020 = Bournemouth + Poole; Dorset = Dorset county)"),
    BoundaryChange(("928",), ("940", "941"), 2022, "split",
                   note="Northamptonshire (928) split into North (940) and West (941) Northamptonshire on "
                        "1 April 2021; mapped to the whole county (928, then 940 + 941), an exact area"),
    BoundaryChange(("909",), ("942", "943"), 2024, "split",
                   note="Cumbria (909) split into Cumberland (942) and Westmorland and Furness (943) on "
                        "1 April 2023; the panel carries no Cumbria rows, so these LAs have no usable history"),
)


# ---------------------------------------------------------------------------- reading

@dataclass
class RawTable:
    """A CSV read as text: rows of strings with their 1-based data-row numbers."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    row_numbers: list[int]

    def column(self, name: str) -> list[str]:
        j = self.header.index(name)
        return [r[j].strip() for r in self.rows]


def csv_lines(path: Path) -> list[list[str]]:
    """Every line of the CSV file ``path`` as its fields (UTF-8, a byte-order mark allowed);
    a missing file, a folder or an unreadable file is a :class:`DataError` naming it."""
    if not path.exists():
        raise DataError("file not found", file=path)
    if path.is_dir():
        raise DataError("is a folder, not a CSV file", file=path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot be read as a UTF-8 CSV file: {err}", file=path) from None


def read_csv(path: Path, required: tuple[str, ...], *, comments: bool = False) -> RawTable:
    """Read ``path`` strictly: every required column present, every row the header's width.

    Rows are numbered from 1 after the header line, as a spreadsheet shows them (header
    excluded). With ``comments``, lines whose first cell starts with ``#`` and blank lines are
    skipped (they keep their row numbers).
    """
    path = Path(path)
    lines = csv_lines(path)
    if not lines:
        raise DataError("the file is empty (no header line)", file=path)
    header = [h.strip() for h in lines[0]]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"missing required column(s) {missing}; found {header}", file=path, column=missing[0])
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise DataError(f"duplicate column name(s) {dupes}", file=path, column=dupes[0])
    rows, numbers = [], []
    for i, row in enumerate(lines[1:], start=1):
        if comments and (not any(c.strip() for c in row) or row[0].lstrip().startswith("#")):
            continue
        if len(row) != len(header):
            raise DataError(f"has {len(row)} fields, the header has {len(header)}", file=path, row=i)
        rows.append(row)
        numbers.append(i)
    return RawTable(path, header, rows, numbers)


def _missing_code(text: str) -> str | None:
    t = text.strip().lower()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1].strip()
    return t if t in MISSING_CODES else None


def parse_values(table: RawTable, column: str, *, integer: bool = False, minimum: float = 0.0,
                 maximum: float | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Numbers of one column with NaN for published missing-value codes (and the codes)."""
    values = np.full(len(table.rows), np.nan)
    codes: list[str | None] = [None] * len(table.rows)
    for i, text in enumerate(table.column(column)):
        code = _missing_code(text)
        if code is not None:
            codes[i] = code or "blank"
            continue
        try:
            v = float(text.replace(",", ""))
        except ValueError:
            raise DataError(f"{text!r} is neither a number nor a published missing-value code "
                            f"({', '.join(c for c in MISSING_CODES if c)})", file=table.path,
                            row=table.row_numbers[i], column=column) from None
        if v in SENTINELS:
            codes[i] = SENTINELS[v]
            continue
        if not np.isfinite(v):
            raise DataError(f"{text!r} is not a finite number", file=table.path, row=table.row_numbers[i], column=column)
        if integer and v != round(v):
            raise DataError(f"{text!r} is not a whole number", file=table.path, row=table.row_numbers[i], column=column)
        if v < minimum:
            raise DataError(f"value {text!r} is below {minimum:g} (and not a missing-value code: "
                            f"{', '.join(f'{k:g}' for k in SENTINELS)})", file=table.path,
                            row=table.row_numbers[i], column=column)
        if maximum is not None and v > maximum:
            raise DataError(f"value {text!r} is above {maximum:g}", file=table.path, row=table.row_numbers[i],
                            column=column)
        values[i] = v
    return values, codes


def _require_rows(table: RawTable) -> RawTable:
    """A header-only file is bad data (it used to end in ``cannot convert float NaN to integer``)."""
    if not table.rows:
        raise DataError("the file has a header line but no data rows", file=table.path)
    return table


def _years(table: RawTable, column: str = "year_ending_march") -> np.ndarray:
    out = np.zeros(len(table.rows), dtype=int)
    for i, text in enumerate(table.column(column)):
        if not re.fullmatch(r"\d{4}", text) or not 1990 <= int(text) <= 2100:
            raise DataError(f"{text!r} is not a year (four digits, e.g. 2019 for the year ending March 2019)",
                            file=table.path, row=table.row_numbers[i], column=column)
        out[i] = int(text)
    return out


def _identifiers(table: RawTable) -> pd.DataFrame:
    years = _years(table)
    codes = table.column("old_la_code")
    for i, c in enumerate(codes):
        if not _LA_CODE.fullmatch(c):
            raise DataError(f"{c!r} is not a three-digit LA number (or a joint 'NNN / NNN')", file=table.path,
                            row=table.row_numbers[i], column="old_la_code")
    for i, c in enumerate(table.column("new_la_code")):
        if c and not _GSS_CODE.fullmatch(c):
            raise DataError(f"{c!r} is not a GSS code like E09000002", file=table.path,
                            row=table.row_numbers[i], column="new_la_code")
    names = table.column("la_name")
    for i, n in enumerate(names):
        if not n:
            raise DataError("empty LA name", file=table.path, row=table.row_numbers[i], column="la_name")
    frame = pd.DataFrame({"year": years, "la_code": codes, "la_name": names,
                          "new_la_code": table.column("new_la_code"), "row": table.row_numbers})
    dup = frame.duplicated(["la_code", "year"], keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"a second row for LA {frame.la_code[i]} ({frame.la_name[i]}) in {frame.year[i]}",
                        file=table.path, row=int(frame.row[i]), column="old_la_code")
    return frame


def load_referrals(path: Path) -> pd.DataFrame:
    """Referrals and re-referrals within 12 months, one row per LA and year (NaN = missing)."""
    t = _require_rows(read_csv(path, (*ID_COLUMNS, "region_name", *REFERRAL_VALUES)))
    frame = _identifiers(t)
    for col in REFERRAL_VALUES:
        frame[col], frame[f"{col}_code"] = parse_values(t, col, integer=True)
    bad = (frame["re_referrals"] > frame["referrals"]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"re-referrals ({frame.re_referrals[i]:g}) exceed referrals ({frame.referrals[i]:g})",
                        file=t.path, row=int(frame.row[i]), column="re_referrals")
    frame["region_name"] = t.column("region_name")
    return frame


def load_workforce(path: Path) -> pd.DataFrame:
    """Workforce rates (%, 0-100) and caseloads per FTE, one row per LA (or joint return) and year."""
    t = _require_rows(read_csv(path, (*ID_COLUMNS, *WORKFORCE_VALUES)))
    frame = _identifiers(t)
    for col in WORKFORCE_VALUES:
        frame[col], frame[f"{col}_code"] = parse_values(t, col, maximum=100.0)
    return frame


def load_neighbours(path: Path) -> pd.DataFrame:
    """Statistical neighbours in long form: la_code, la_name, rank (1 = nearest), neighbour code and name."""
    t = _require_rows(read_csv(path, ("la_name", "old_la_code", *SN_COLUMNS)))
    names, codes = t.column("la_name"), t.column("old_la_code")
    seen_names: dict[str, int] = {}
    seen_codes: dict[str, int] = {}
    for i, (n, c) in enumerate(zip(names, codes)):
        row = t.row_numbers[i]
        if not n:
            raise DataError("empty LA name", file=t.path, row=row, column="la_name")
        if not re.fullmatch(r"\d{3}", c):
            raise DataError(f"{c!r} is not a three-digit LA number", file=t.path, row=row, column="old_la_code")
        if n in seen_names:
            raise DataError(f"LA {n!r} is listed twice (also row {seen_names[n]})", file=t.path, row=row,
                            column="la_name")
        if c in seen_codes:
            raise DataError(f"LA number {c} is listed twice (also row {seen_codes[c]})", file=t.path, row=row,
                            column="old_la_code")
        seen_names[n], seen_codes[c] = row, row
    code_of = dict(zip(names, codes))
    records = []
    for i, (n, c) in enumerate(zip(names, codes)):
        row, chosen = t.row_numbers[i], set()
        for rank, col in enumerate(SN_COLUMNS, start=1):
            sn = t.rows[i][t.header.index(col)].strip()
            if sn not in code_of:
                raise DataError(f"neighbour {sn!r} is not an LA named in this table's la_name column",
                                file=t.path, row=row, column=col)
            if sn == n:
                raise DataError(f"{n!r} is listed as its own neighbour", file=t.path, row=row, column=col)
            if sn in chosen:
                raise DataError(f"neighbour {sn!r} is listed twice for {n!r}", file=t.path, row=row, column=col)
            chosen.add(sn)
            records.append({"la_code": c, "la_name": n, "rank": rank, "neighbour_code": code_of[sn],
                            "neighbour_name": sn})
    return pd.DataFrame(records)


@dataclass
class Panel:
    """The three validated tables and where they came from."""

    referrals: pd.DataFrame
    workforce: pd.DataFrame
    neighbours: pd.DataFrame
    paths: dict[str, Path]
    hashes: dict[str, str]

    def names(self) -> dict[str, str]:
        """LA number -> name: the neighbour table's names first, then the latest panel name."""
        out: dict[str, str] = {}
        for frame in (self.workforce, self.referrals):
            latest = frame.sort_values("year").groupby("la_code")["la_name"].last()
            out.update(latest.to_dict())
        nb = self.neighbours.drop_duplicates("la_code")
        out.update(dict(zip(nb["la_code"], nb["la_name"])))
        return out

    def table(self, file: str) -> pd.DataFrame:
        return {"referrals": self.referrals, "workforce": self.workforce}[file]


def load_panel(directory: Path | None = None, *, referrals: Path | None = None, workforce: Path | None = None,
               neighbours: Path | None = None) -> Panel:
    """Load and validate the three panel files (from ``directory`` unless given one by one)."""
    directory = Path(directory) if directory is not None else DEFAULT_PANEL_DIR
    if not directory.exists() and None in (referrals, workforce, neighbours):
        raise DataError("panel folder not found", file=directory)
    paths = {"referrals": Path(referrals) if referrals else directory / FILES["referrals"],
             "workforce": Path(workforce) if workforce else directory / FILES["workforce"],
             "neighbours": Path(neighbours) if neighbours else directory / FILES["neighbours"]}
    panel = Panel(load_referrals(paths["referrals"]), load_workforce(paths["workforce"]),
                  load_neighbours(paths["neighbours"]), paths, {k: hash_file(p) for k, p in paths.items()})
    return panel


# ---------------------------------------------------------------------------- treatment and exclusions

def _match_la(panel: Panel, name: str, code: str, *, path: Path, row: int) -> tuple[str, str]:
    """An LA found by name and code in the neighbour table; both must agree when both are given."""
    names = panel.names()
    by_name = {v.casefold(): k for k, v in names.items()}
    if code:
        if not re.fullmatch(r"\d{3}", code):
            raise DataError(f"{code!r} is not a three-digit LA number", file=path, row=row, column="old_la_code")
        if code not in names:
            raise DataError(f"LA number {code} is not in the panel or the neighbour table", file=path, row=row,
                            column="old_la_code")
        if name and names[code].casefold() != name.casefold():
            raise DataError(f"LA number {code} is {names[code]!r}, not {name!r}", file=path, row=row,
                            column="la_name")
        return code, names[code]
    if not name:
        raise DataError("needs an LA name or number", file=path, row=row, column="la_name")
    if name.casefold() not in by_name:
        raise DataError(f"no LA called {name!r} in the panel (names as in the neighbour table, e.g. "
                        "'Bristol, City of')", file=path, row=row, column="la_name")
    code = by_name[name.casefold()]
    return code, names[code]


def load_treatment(path: Path, panel: Panel) -> pd.DataFrame:
    """The treatment definition: pilot LAs with adoption year, settling-in and leaving.

    Columns: ``la_name``, ``old_la_code`` (both checked against the panel), ``round``,
    ``adoption_year`` (first year_ending_march in the programme, part years count),
    ``settling_years`` (post-adoption years left out of the DiD), ``last_year`` (last
    year_ending_march in the programme; blank = stayed), ``after_exit`` (what the years after
    ``last_year`` are: ``drop`` = left out, ``treated`` = still counted as treated, i.e.
    intention to treat, ``untreated`` = counted as untreated), ``source``.
    """
    t = read_csv(path, TREATMENT_COLUMNS, comments=True)
    if not t.rows:
        raise DataError("the treatment table has no pilot LAs", file=path)
    records, seen = [], {}
    for i, row in enumerate(t.rows):
        r = t.row_numbers[i]
        get = lambda col: row[t.header.index(col)].strip()  # noqa: E731
        code, name = _match_la(panel, get("la_name"), get("old_la_code"), path=path, row=r)
        if code in seen:
            raise DataError(f"{name} is listed twice (also row {seen[code]})", file=path, row=r, column="la_name")
        seen[code] = r
        ints = {}
        for col, blank_ok in (("adoption_year", False), ("settling_years", True), ("last_year", True)):
            text = get(col)
            if not text and blank_ok:
                ints[col] = None
                continue
            if not re.fullmatch(r"\d+", text):
                raise DataError(f"{text!r} is not a whole number" + (" (a year ending March, e.g. 2015)"
                                if col != "settling_years" else ""), file=path, row=r, column=col)
            ints[col] = int(text)
        for col in ("adoption_year", "last_year"):
            if ints[col] is not None and not 1990 <= ints[col] <= 2100:
                raise DataError(f"{ints[col]} is not a plausible year ending March", file=path, row=r, column=col)
        if ints["last_year"] is not None and ints["last_year"] < ints["adoption_year"]:
            raise DataError(f"last year {ints['last_year']} is before the adoption year {ints['adoption_year']}",
                            file=path, row=r, column="last_year")
        after = get("after_exit").lower()
        if ints["last_year"] is None and after:
            raise DataError("after_exit is given but last_year is blank (the LA never left)", file=path, row=r,
                            column="after_exit")
        if ints["last_year"] is not None and after not in AFTER_EXIT:
            raise DataError(f"after_exit must be one of {list(AFTER_EXIT)} when last_year is given, got {after!r}",
                            file=path, row=r, column="after_exit")
        records.append({"la_code": code, "la_name": name, "round": get("round"),
                        "adoption_year": ints["adoption_year"], "settling_years": ints["settling_years"] or 0,
                        "last_year": ints["last_year"], "after_exit": after or None, "source": get("source")})
    return pd.DataFrame(records)


def load_exclusions(path: Path, panel: Panel) -> pd.DataFrame:
    """LAs to leave out (e.g. known SofS users among the neighbours): la_name and/or old_la_code, reason."""
    t = read_csv(path, EXCLUSION_COLUMNS, comments=True)
    records = []
    for i, row in enumerate(t.rows):
        get = lambda col: row[t.header.index(col)].strip()  # noqa: E731
        code, name = _match_la(panel, get("la_name"), get("old_la_code"), path=path, row=t.row_numbers[i])
        if not get("reason"):
            raise DataError("give a reason for the exclusion", file=path, row=t.row_numbers[i], column="reason")
        records.append({"la_code": code, "la_name": name, "reason": get("reason"), "source": get("source")})
    return pd.DataFrame(records, columns=["la_code", "la_name", "reason", "source"])


# ---------------------------------------------------------------------------- outcome series

@dataclass
class OutcomePanel:
    """One outcome as area-consistent units, with the boundary decisions taken.

    ``series``: unit, year, y, n (counts: re-referrals of referrals; continuous: value, n = 1).
    ``unit_of``: LA number -> the unit that stands for it (missing: dropped or no data).
    ``boundary``: one row per LA touched by a boundary change or a joint return.
    """

    outcome: Outcome
    series: pd.DataFrame
    unit_of: dict[str, str]
    unit_label: dict[str, str]
    boundary: pd.DataFrame
    missing: pd.DataFrame       # suppressed / missing LA-years (code and meaning)


def _changed_codes() -> dict[str, BoundaryChange]:
    return {c: ch for ch in BOUNDARY_CHANGES for c in (*ch.before, *ch.after)}


def outcome_panel(panel: Panel, outcome: Outcome, *, first_year: int, last_year: int,
                  boundary: str = "drop") -> OutcomePanel:
    """The outcome's LA-year series inside the window, with boundary changes dropped or mapped."""
    if boundary not in BOUNDARY_POLICIES:
        raise ValueError(f"boundary must be one of {BOUNDARY_POLICIES}, got {boundary!r}")
    src = panel.table(outcome.file)
    src = src[(src["year"] >= first_year) & (src["year"] <= last_year)]
    names = panel.names()
    cols = [outcome.column] + ([outcome.denominator] if outcome.denominator else [])
    frame = pd.DataFrame({"la_code": src["la_code"].to_numpy(), "year": src["year"].to_numpy(),
                          "y": src[outcome.column].to_numpy(float),
                          "n": src[outcome.denominator].to_numpy(float) if outcome.denominator else 1.0})
    codes = src[[f"{c}_code" for c in cols]].bfill(axis=1).iloc[:, 0].to_numpy()
    missing = frame.assign(code=codes, la_name=[names.get(c, c) for c in frame["la_code"]])
    missing = missing[missing[["y", "n"]].isna().any(axis=1) | (missing["n"] <= 0)]
    missing = missing.assign(meaning=[MISSING_CODES.get(str(c), "zero denominator") for c in missing["code"]])
    frame = frame[frame[["y", "n"]].notna().all(axis=1) & (frame["n"] > 0)]

    changed = _changed_codes()
    spans_change = {c: first_year < ch.first_year <= last_year for c, ch in changed.items()}
    present = set(frame["la_code"])
    unit_of: dict[str, str] = {}
    unit_label: dict[str, str] = {}
    pieces = []
    decisions = []
    for code in sorted(present | {c for c in changed if c in names}):
        if "/" in code:
            continue
        ch = changed.get(code)
        if ch is None or not spans_change.get(code, False):
            if code in present:
                unit_of[code] = code
                unit_label[code] = names.get(code, code)
                pieces.append(frame[frame["la_code"] == code].assign(unit=code))
            continue
        name = names.get(code, code)
        if boundary == "drop" or code in ch.before:
            action = "dropped" if boundary == "drop" else "covered through its successor(s)"
            decisions.append({"la_code": code, "la_name": name, "action": action, "unit": "", "note": ch.note})
            continue
        # map: successors only (predecessors are covered through them)
        if ch.kind == "merge" and outcome.kind == "count":
            parts = ch.parts[code]
            before = frame[frame["la_code"].isin(parts) & (frame["year"] < ch.first_year)]
            complete = before.groupby("year").filter(lambda g: set(g["la_code"]) == set(parts))
            summed = complete.groupby("year", as_index=False)[["y", "n"]].sum()
            after = frame[(frame["la_code"] == code) & (frame["year"] >= ch.first_year)][["year", "y", "n"]]
            unit = f"{code}m"
            label = f"{name} (before {ch.first_year}: " + " + ".join(f"{names.get(p, p)} {p}" for p in parts) + ")"
            action = "mapped (approximate area)" if not ch.exact else "mapped"
        elif ch.kind == "merge":
            after = frame[frame["la_code"] == code][["year", "y", "n"]]
            summed = after.iloc[:0]
            unit, label, action = code, name, "kept (own series only; rates cannot be summed)"
        else:  # split: the whole predecessor area
            whole = ch.before
            joint = " / ".join(ch.after)
            prior = frame[frame["la_code"].isin(whole)][["year", "y", "n"]]
            if outcome.kind == "count":
                post = frame[frame["la_code"].isin(ch.after) & (frame["year"] >= ch.first_year)]
                complete = post.groupby("year").filter(lambda g: set(g["la_code"]) == set(ch.after))
                after = complete.groupby("year", as_index=False)[["y", "n"]].sum()
            else:
                after = frame[frame["la_code"] == joint][["year", "y", "n"]]
            summed = prior
            unit = f"{'+'.join(whole)}m"
            label = " / ".join(names.get(w, w) for w in whole) + " (whole area: " + \
                " + ".join(names.get(a, a) for a in ch.after) + f" from {ch.first_year})"
            action = "mapped to the whole former area"
        series = pd.concat([summed, after], ignore_index=True).sort_values("year")
        if unit not in unit_label and len(series):
            pieces.append(series.assign(unit=unit, la_code=unit))
            unit_label[unit] = label
        if len(series):
            unit_of[code] = unit
        decisions.append({"la_code": code, "la_name": name, "action": action if len(series) else "dropped (no data)",
                          "unit": label if len(series) else "", "note": ch.note})
    # joint returns (e.g. Kingston upon Thames / Richmond upon Thames in the workforce census)
    for code in sorted(c for c in present if "/" in c):
        parts = [p.strip() for p in code.split("/")]
        orphans = [p for p in parts if p not in unit_of and not (p in changed and spans_change.get(p, False))]
        if not orphans:
            continue
        label = " / ".join(names.get(p, p) for p in parts) + " (joint return)"
        if boundary == "map":
            pieces.append(frame[frame["la_code"] == code].assign(unit=code))
            unit_label[code] = label
            for p in orphans:
                unit_of[p] = code
        for p in orphans:
            decisions.append({"la_code": p, "la_name": names.get(p, p),
                              "action": "mapped to the joint return" if boundary == "map" else "dropped",
                              "unit": label if boundary == "map" else "",
                              "note": f"reported only jointly as {label} ({code}); no separate series"})
    series = pd.concat(pieces, ignore_index=True) if pieces else frame.iloc[:0].assign(unit="")
    series = series[["unit", "year", "y", "n"]].sort_values(["unit", "year"]).reset_index(drop=True)
    bdf = pd.DataFrame(decisions, columns=["la_code", "la_name", "action", "unit", "note"])
    return OutcomePanel(outcome, series, unit_of, unit_label, bdf.drop_duplicates("la_code"),
                        missing[["la_code", "la_name", "year", "code", "meaning"]].reset_index(drop=True))


# ---------------------------------------------------------------------------- design

@dataclass
class PanelDesign:
    """Cells for the DiD and the record of every choice behind them.

    ``cells`` has the columns :func:`data.did_input.add_design` produces (la, year, arm,
    adoption_year, settling_years, n, y, rel_time, phase, treated_post) plus ``la_code``;
    ``comparators`` lists each pilot's neighbours in rank order with what happened to each;
    ``pilots_excluded`` the pilots left out and why.
    """

    outcome: Outcome
    cells: pd.DataFrame
    comparators: pd.DataFrame
    pilots_excluded: pd.DataFrame
    boundary: pd.DataFrame
    missing: pd.DataFrame
    treatment: pd.DataFrame
    exclusions: pd.DataFrame
    first_year: int
    last_year: int
    settings: dict

    @property
    def pilots(self) -> list[str]:
        return list(dict.fromkeys(self.cells.loc[self.cells.arm == "pilot", "la"]))

    @property
    def comparator_las(self) -> list[str]:
        return list(dict.fromkeys(self.cells.loc[self.cells.arm == "comparator", "la"]))

    @property
    def las(self) -> list[str]:
        return self.pilots + self.comparator_las

    @property
    def years(self) -> list[int]:
        return sorted(int(y) for y in self.cells["year"].unique())

    def analysis_cells(self) -> pd.DataFrame:
        """Cells used by the DiD: pilots' settling-in years left out."""
        return self.cells[self.cells.phase != "settling"].reset_index(drop=True)

    def neighbours_of(self) -> dict[str, list[str]]:
        """Pilot label -> the comparator labels chosen for it."""
        used = self.comparators[self.comparators["status"] == "used"]
        return {p: list(g["unit_label"]) for p, g in used.groupby("pilot", sort=False)}


def _pilot_rows(series: pd.DataFrame, unit: str, row: pd.Series, label: str, after_exit: str | None) -> pd.DataFrame:
    s = series[series["unit"] == unit].copy()
    s["arm"], s["la"], s["la_code"] = "pilot", label, row["la_code"]
    s["adoption_year"] = float(row["adoption_year"])
    s["settling_years"] = int(row["settling_years"])
    policy = after_exit or row["after_exit"]
    s["exited"] = False
    if row["last_year"] is not None and not pd.isna(row["last_year"]):
        late = s["year"] > int(row["last_year"])
        if policy == "drop":
            s = s[~late]
        else:
            s["exited"] = late.to_numpy() & (policy == "untreated")
    return s


def build_design(panel: Panel, outcome: Outcome | str, treatment: pd.DataFrame, *,
                 exclusions: pd.DataFrame | None = None, n_neighbours: int = 5, first_year: int | None = None,
                 last_year: int | None = 2020, boundary: str = "drop", after_exit: str | None = None) -> PanelDesign:
    """Pilots and their nearest eligible statistical neighbours as DiD cells.

    A pilot enters when it has at least one observed year before adoption and one treated year
    in the window. Each pilot's neighbours are walked nearest first, skipping named pilots,
    excluded LAs, LAs dropped for boundary changes and LAs with fewer than two observed years;
    the first ``n_neighbours`` left are its comparators (the union over pilots enters once).
    """
    outcome = OUTCOMES[outcome] if isinstance(outcome, str) else outcome
    if not 1 <= n_neighbours <= N_NEIGHBOURS:
        raise ValueError(f"n_neighbours must be between 1 and {N_NEIGHBOURS}, got {n_neighbours}")
    if after_exit is not None and after_exit not in AFTER_EXIT:
        raise ValueError(f"after_exit must be one of {AFTER_EXIT}, got {after_exit!r}")
    src = panel.table(outcome.file)
    first_year = int(src["year"].min()) if first_year is None else int(first_year)
    last_year = int(src["year"].max()) if last_year is None else min(int(last_year), int(src["year"].max()))
    if last_year <= first_year:
        raise DataError(f"the analysis window {first_year}-{last_year} holds fewer than two years of "
                        f"{outcome.file} data", file=panel.paths[outcome.file], column="year_ending_march")
    op = outcome_panel(panel, outcome, first_year=first_year, last_year=last_year, boundary=boundary)
    exclusions = exclusions if exclusions is not None else pd.DataFrame(columns=["la_code", "la_name", "reason"])
    excluded = dict(zip(exclusions["la_code"], exclusions["reason"]))
    pilot_codes = set(treatment["la_code"])
    names = panel.names()

    pilot_frames, dropped = [], []
    for _, row in treatment.iterrows():
        code, name = row["la_code"], row["la_name"]
        if code in excluded:
            dropped.append({"pilot": name, "la_code": code, "reason": f"excluded by the user: {excluded[code]}"})
            continue
        unit = op.unit_of.get(code)
        if unit is None:
            dropped.append({"pilot": name, "la_code": code, "reason": f"no {outcome.name} data in {first_year}-{last_year}"})
            continue
        rows = _pilot_rows(op.series, unit, row, name, after_exit)
        pre = rows["year"] < row["adoption_year"]
        post = (rows["year"] >= row["adoption_year"] + row["settling_years"]) & ~rows["exited"]
        if not pre.any():
            sup = op.missing[(op.missing.la_code == code) & (op.missing.year < row["adoption_year"])]
            why = (f"no observed year before adoption ({int(row['adoption_year'])}) in the window"
                   + (f"; {', '.join(f'{int(y)} ({c})' for y, c in zip(sup.year, sup.code))} missing" if len(sup) else "")
                   + (f"; the {outcome.file} panel starts in {int(src['year'].min())}"
                      if src["year"].min() >= row["adoption_year"] else ""))
            dropped.append({"pilot": name, "la_code": code, "reason": why})
            continue
        if not post.any():
            dropped.append({"pilot": name, "la_code": code, "reason": "no treated year after adoption in the window"})
            continue
        pilot_frames.append(rows)
    if not pilot_frames:
        raise DataError(f"no pilot LA has {outcome.name} data both before and after adoption in "
                        f"{first_year}-{last_year}: " + "; ".join(f"{d['pilot']}: {d['reason']}" for d in dropped),
                        file=panel.paths[outcome.file])
    pilots_in = [f["la"].iloc[0] for f in pilot_frames]

    observed_years = op.series.groupby("unit")["year"].nunique()
    boundary_action = dict(zip(op.boundary["la_code"], op.boundary["action"]))
    changed = _changed_codes()
    records, chosen_units = [], {}
    for pilot in pilots_in:
        pcode = treatment.loc[treatment.la_name == pilot, "la_code"].iloc[0]
        nb = panel.neighbours[panel.neighbours["la_code"] == pcode].sort_values("rank")
        taken: list[str] = []
        for r in nb.itertuples():
            code, status, unit = r.neighbour_code, "", op.unit_of.get(r.neighbour_code)
            if code in pilot_codes:
                status = "skipped: a named pilot"
            elif code in excluded:
                status = f"skipped: excluded ({excluded[code]})"
            elif unit is None:
                act, ch = boundary_action.get(code), changed.get(code)
                status = (f"skipped: boundary change ({act})" if act else
                          f"skipped: boundary change (no series on its {ch.first_year} boundaries in "
                          f"{first_year}-{last_year})" if ch else f"skipped: no {outcome.name} data")
            elif observed_years.get(unit, 0) < 2:
                status = f"skipped: fewer than 2 observed years in {first_year}-{last_year}"
            elif unit in taken:
                status = "skipped: same area as a nearer neighbour"
            elif len(taken) >= n_neighbours:
                status = "not needed"
            else:
                status = "used"
                taken.append(unit)
                chosen_units[unit] = op.unit_label[unit]
            records.append({"pilot": pilot, "rank": r.rank, "neighbour": r.neighbour_name, "la_code": code,
                            "status": status, "unit_label": op.unit_label.get(unit, "") if status == "used" else ""})
        if len(taken) < n_neighbours:
            records.append({"pilot": pilot, "rank": None, "neighbour": "", "la_code": "",
                            "status": f"only {len(taken)} of {n_neighbours} neighbours eligible", "unit_label": ""})
    comparators = pd.DataFrame(records)
    comp_frames = []
    for unit, label in chosen_units.items():
        s = op.series[op.series["unit"] == unit].copy()
        s["arm"], s["la"], s["la_code"] = "comparator", label, unit
        s["adoption_year"], s["settling_years"], s["exited"] = np.nan, 0, False
        comp_frames.append(s)
    if not comp_frames:
        raise DataError("no eligible comparator LA among the pilots' statistical neighbours",
                        file=panel.paths["neighbours"])
    cells = pd.concat(pilot_frames + comp_frames, ignore_index=True)
    cells["year"] = cells["year"].astype(int)
    cells["y"] = cells["y"].astype(float)
    cells["n"] = cells["n"].astype(float)
    if outcome.kind == "count":
        cells["y"] = cells["y"].astype(int)
        cells["n"] = cells["n"].astype(int)
    cells = add_design(cells)
    exited = cells.pop("exited").to_numpy(bool)
    cells.loc[exited, "phase"] = "exited"
    cells.loc[exited, "treated_post"] = 0
    cells.loc[exited, "rel_time"] = np.nan
    cells = cells[["la", "la_code", "arm", "year", "adoption_year", "settling_years", "y", "n", "rel_time", "phase",
                   "treated_post"]].sort_values(["arm", "la", "year"], ascending=[False, True, True]).reset_index(drop=True)
    relevant = set(comparators["la_code"]) | set(treatment["la_code"])
    bnd = op.boundary[op.boundary["la_code"].isin(relevant)].reset_index(drop=True)
    miss = op.missing[op.missing["la_code"].isin(set(cells["la_code"]) | set(treatment["la_code"]))]
    return PanelDesign(outcome, cells, comparators, pd.DataFrame(dropped, columns=["pilot", "la_code", "reason"]),
                       bnd, miss.reset_index(drop=True), treatment, exclusions, first_year, last_year,
                       {"n_neighbours": n_neighbours, "boundary": boundary, "after_exit": after_exit or "per treatment file",
                        "first_year": first_year, "last_year": last_year})
