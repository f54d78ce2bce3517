"""DfE official-statistics CSV files (any file of that layout) and indicators as data.

The DfE's statistics service publishes every release's underlying data in one layout::

    time_period, time_identifier, geographic_level, [country_code, country_name, region_code,
    region_name,] old_la_code, new_la_code, la_name, [filter columns,] measure, measure, ...

:func:`load_official` reads any such file: the ``Local authority`` rows, one row per LA and
year (``time_period`` 2019 or 201819 -> year ending March 2019), every measure as a number
with published suppression codes (``c``, ``k``, ``low``, ``u``, ``x``, ``z``, ``..``, ``.``,
``:``, ``[c]`` ..., blank) read as missing and counted per measure. A malformed file (a
missing key column, text in a measure, a duplicate LA-year, an empty or header-only file, a
bad LA number or year) is a :class:`~data.errors.DataError` naming file, row and column.
Columns after ``la_name`` that hold only text (``category``, ``age_group``) are filter
columns; a filter with several values must be chosen (``filters={"col": "value"}``).

Indicators are data (``data/indicators.csv``, :func:`load_indicators`): name, source file,
numerator, denominator (a column of the same file, ``population`` for the ONS child
population, or blank), kind (``share``, ``rate`` per 10,000, ``count``, ``level``),
likelihood, label and units. :class:`IndicatorPanel` joins each indicator's numerator and
denominator into one LA-year table with the interface :func:`data.la_panel.build_design`
reads, so pilots, neighbours and boundary changes are handled exactly as for the LA panel.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from data import la_panel as lp
from data.errors import DataError
from data.hashing import hash_file

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_OFFICIAL_DIR = SHARED_DATA / "dfe-official"
DEFAULT_POPULATION = DEFAULT_OFFICIAL_DIR / "ons_mid-year_population_estimates_2012_to_2024.csv"
DEFAULT_INDICATORS = REPO_ROOT / "data" / "indicators.csv"

KEY_COLUMNS = ("time_period", "time_identifier", "geographic_level", "old_la_code", "new_la_code", "la_name")
LAYOUT_COLUMNS = ("country_code", "country_name", "region_code", "region_name")
LA_LEVEL = "local authority"
#: Suppression codes of the official files (lower case, brackets stripped) and their meaning.
SUPPRESSION = {**{k: v for k, v in lp.MISSING_CODES.items()}, ".": "not available", "~": "rounds to zero",
               "-": "not available", "w": "withheld"}
#: Year ending March Y uses the ONS mid-year estimate of Y - 1 (the DfE's convention for rates
#: per 10,000 children: the 2024-25 rates use mid-2024 estimates; the file's 2012-2024 span
#: matches the releases' 2013-2025).
POPULATION_LAG = 1
POPULATION_COLUMN = "population_estimate"

KINDS = ("share", "rate", "count", "level")
LIKELIHOOD_FOR = {"share": ("betabinomial", "binomial"), "rate": ("negbinomial", "poisson"),
                  "count": ("negbinomial", "poisson"), "level": ("student", "normal")}
INDICATOR_COLUMNS = ("name", "area", "source", "numerator", "denominator", "kind", "likelihood", "per", "label",
                     "short", "units", "rope", "mid", "direction")


def _code(text: str) -> str | None:
    t = text.strip().lower()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1].strip()
    return t if t in SUPPRESSION else None


def _number(text: str) -> float | None:
    try:
        v = float(text.replace(",", ""))
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _year(text: str) -> int | None:
    t = text.strip()
    if re.fullmatch(r"\d{4}", t):
        y = int(t)
    elif re.fullmatch(r"\d{6}", t) and (int(t[:4]) + 1) % 100 == int(t[4:]):
        y = int(t[:4]) + 1                      # 201819 -> year ending March 2019
    else:
        return None
    return y if 1990 <= y <= 2100 else None


@dataclass
class OfficialTable:
    """One official file's LA rows: ``frame`` (la_code, la_name, new_la_code, year, row, each
    measure and ``<measure>_code``), the measures, filters, and suppression counts."""

    path: Path
    frame: pd.DataFrame
    measures: list[str]
    filters: dict[str, list[str]]
    suppressed: pd.DataFrame          # measure, code, meaning, count
    n_rows: int                       # data rows in the file (every level)
    file_hash: str = ""

    def suppressed_count(self, measure: str) -> int:
        s = self.suppressed
        return int(s.loc[s["measure"] == measure, "count"].sum())


def load_official(path: str | Path, *, measures: list[str] | None = None,
                  filters: dict[str, str] | None = None) -> OfficialTable:
    """Read a DfE official-statistics CSV strictly (see the module docstring).

    ``measures``: the measure columns that must be present and numeric (default: every
    numeric column after ``la_name``); ``filters``: values of filter columns to keep.
    """
    path = Path(path)
    lines = [r for r in lp.csv_lines(path) if any(c.strip() for c in r)]
    if not lines:
        raise DataError("the file is empty (no header line)", file=path)
    header = [h.strip() for h in lines[0]]
    missing = [c for c in KEY_COLUMNS if c not in header]
    if missing:
        raise DataError(f"missing key column(s) {missing} of the DfE official-statistics layout; found {header}",
                        file=path, column=missing[0])
    dupes = sorted({h for h in header if header.count(h) > 1 and h})
    if dupes:
        raise DataError(f"duplicate column name(s) {dupes}", file=path, column=dupes[0])
    body = lines[1:]
    if not body:
        raise DataError("the file has a header line but no data rows", file=path)
    for i, r in enumerate(body, start=1):
        if len(r) != len(header):
            raise DataError(f"has {len(r)} fields, the header has {len(header)}", file=path, row=i)
    col = {h: j for j, h in enumerate(header)}
    level = col["geographic_level"]
    la_rows = [(i, r) for i, r in enumerate(body, start=1) if r[level].strip().lower() == LA_LEVEL]
    if not la_rows:
        raise DataError("no 'Local authority' rows (geographic_level)", file=path, column="geographic_level")
    after = header[col["la_name"] + 1:] if col["la_name"] + 1 < len(header) else []
    candidates = [h for h in header if h not in KEY_COLUMNS and h not in LAYOUT_COLUMNS
                  and (h in after or (measures and h in measures))]
    if measures:
        absent = [m for m in measures if m not in header]
        if absent:
            raise DataError(f"measure column(s) {absent} not in the file; found {header}", file=path, column=absent[0])
    # classify: a column with any number is a measure, and then every other entry must be a code
    measure_cols, filter_cols = [], {}
    for h in candidates:
        j = col[h]
        texts = [(i, r[j].strip()) for i, r in la_rows]
        numeric = [_number(t) is not None for _, t in texts]
        is_text = [(_number(t) is None and _code(t) is None) for _, t in texts]
        wanted = measures is not None and h in measures
        if any(numeric) or wanted or not any(is_text):
            bad = next(((i, t) for (i, t), b in zip(texts, is_text) if b), None)
            if bad is not None:
                raise DataError(f"{bad[1]!r} is neither a number nor a published suppression code "
                                f"({', '.join(c for c in SUPPRESSION if c)})", file=path, row=bad[0], column=h)
            measure_cols.append(h)
        else:
            filter_cols[h] = sorted({t for _, t in texts})
    for h, value in (filters or {}).items():
        if h not in header:
            raise DataError(f"filter column {h!r} not in the file", file=path, column=h)
        la_rows = [(i, r) for i, r in la_rows if r[col[h]].strip() == value]
        if not la_rows:
            raise DataError(f"no Local authority rows with {h} = {value!r}", file=path, column=h)
    years, codes, names, news, rows = [], [], [], [], []
    for i, r in la_rows:
        y = _year(r[col["time_period"]])
        if y is None:
            raise DataError(f"{r[col['time_period']]!r} is not a year (e.g. 2019 or 201819 for the year ending "
                            "March 2019)", file=path, row=i, column="time_period")
        if not r[col["time_identifier"]].strip():
            raise DataError("empty time_identifier", file=path, row=i, column="time_identifier")
        c = r[col["old_la_code"]].strip()
        if not lp._LA_CODE.fullmatch(c):
            raise DataError(f"{c!r} is not a three-digit LA number", file=path, row=i, column="old_la_code")
        g = r[col["new_la_code"]].strip()
        if g and not lp._GSS_CODE.fullmatch(g):
            raise DataError(f"{g!r} is not a GSS code like E09000002", file=path, row=i, column="new_la_code")
        n = r[col["la_name"]].strip()
        if not n:
            raise DataError("empty LA name", file=path, row=i, column="la_name")
        years.append(y), codes.append(c), names.append(n), news.append(g), rows.append(i)
    frame = pd.DataFrame({"year": np.asarray(years, int), "la_code": codes, "la_name": names, "new_la_code": news,
                          "row": rows})
    dup = frame.duplicated(["la_code", "year"], keep="first").to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        several = [h for h, v in filter_cols.items() if len(v) > 1 and h not in (filters or {})]
        hint = f" (filter column(s) {several} hold several values: choose one)" if several else ""
        raise DataError(f"a second row for LA {frame.la_code[k]} ({frame.la_name[k]}) in {frame.year[k]}{hint}",
                        file=path, row=int(frame.row[k]), column="old_la_code")
    supp = []
    for h in measure_cols:
        j = col[h]
        vals = np.full(len(la_rows), np.nan)
        cds: list[str | None] = [None] * len(la_rows)
        for k, (_, r) in enumerate(la_rows):
            t = r[j].strip()
            v = _number(t)
            if v is None:
                cds[k] = _code(t) or "blank"
            else:
                vals[k] = v
        frame[h], frame[f"{h}_code"] = vals, cds
        counts = pd.Series([c for c in cds if c is not None], dtype=object).value_counts()
        supp += [{"measure": h, "code": c, "meaning": SUPPRESSION.get(c, "blank"), "count": int(v)}
                 for c, v in counts.items()]
    return OfficialTable(path, frame, measure_cols, filter_cols,
                         pd.DataFrame(supp, columns=["measure", "code", "meaning", "count"]), len(body), hash_file(path))


def load_panel_layout(path: str | Path, columns: list[str]) -> OfficialTable:
    """A file in the LA panel's own layout (``year_ending_march``, ..., as ``la_workforce.csv``)."""
    t = lp.read_csv(Path(path), (*lp.ID_COLUMNS, *columns))
    if not t.rows:
        raise DataError("the file has a header line but no data rows", file=path)
    frame = lp._identifiers(t)
    supp = []
    for c in columns:
        frame[c], frame[f"{c}_code"] = lp.parse_values(t, c, minimum=-np.inf)
        counts = pd.Series([x for x in frame[f"{c}_code"] if x is not None], dtype=object).value_counts()
        supp += [{"measure": c, "code": k, "meaning": SUPPRESSION.get(k, "blank"), "count": int(v)} for k, v in counts.items()]
    return OfficialTable(Path(path), frame, list(columns), {}, pd.DataFrame(supp, columns=["measure", "code", "meaning", "count"]),
                         len(t.rows), hash_file(path))


def load_any(path: str | Path, columns: list[str]) -> OfficialTable:
    """The official layout when the header has ``time_period``, the LA panel's otherwise."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        first = next(csv.reader(f), [])
    if "year_ending_march" in [h.strip() for h in first] and "time_period" not in first:
        return load_panel_layout(path, columns)
    return load_official(path, measures=columns)


# ---------------------------------------------------------------------------- indicators

@dataclass(frozen=True)
class Indicator:
    """One LA-level indicator as data (a row of ``data/indicators.csv``)."""

    name: str
    area: str
    source: str
    numerator: str
    denominator: str            # a column, "population", or "" (none)
    kind: str                   # share, rate, count, level
    likelihood: str
    per: float                  # reading factor: 100 (pp), 10000 (rate per 10,000), 1
    label: str
    short: str
    units: str
    rope: float
    mid: float
    direction: int = -1         # -1: the programme would lower it; +1 raise it

    def outcome(self) -> lp.Outcome:
        """The :class:`data.la_panel.Outcome` the LA-panel design reads (file = the indicator)."""
        kind = "continuous" if self.kind == "level" else "count"
        return lp.Outcome(self.name, self.name, "y_value", "n_value" if self.denominator else None, kind, self.label,
                          self.short, self.units, self.rope, self.mid, rises_if_programme_works=self.direction > 0)

    def source_path(self, base: Path = SHARED_DATA) -> Path:
        p = Path(self.source).expanduser()
        return p if p.is_absolute() or p.exists() else base / p


def parse_indicator(fields: dict[str, str], *, file: str | Path | None = None, row: int | None = None) -> Indicator:
    """Validate one indicator's fields (from the table or ``--add-indicator``)."""
    def get(k: str, default: str = "") -> str:
        return str(fields.get(k, default) or default).strip()

    name = get("name")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise DataError(f"indicator name {name!r} must be a word (letters, digits, _)", file=file, row=row, column="name")
    kind = get("kind").lower()
    if kind not in KINDS:
        raise DataError(f"kind must be one of {list(KINDS)}, got {kind!r}", file=file, row=row, column="kind")
    for k in ("source", "numerator", "label"):
        if not get(k):
            raise DataError(f"indicator {name}: {k} is required", file=file, row=row, column=k)
    denom = get("denominator")
    if kind == "rate" and not denom:
        denom = "population"
    if kind == "share" and not denom:
        raise DataError(f"indicator {name}: a share needs a denominator column", file=file, row=row, column="denominator")
    lik = get("likelihood", LIKELIHOOD_FOR[kind][0]).lower()
    if lik not in LIKELIHOOD_FOR[kind]:
        raise DataError(f"indicator {name}: likelihood for a {kind} must be one of {list(LIKELIHOOD_FOR[kind])}, got "
                        f"{lik!r}", file=file, row=row, column="likelihood")
    defaults = {"share": ("100", "pp", "1", "2"), "rate": ("10000", "per 10,000 children", "", ""),
                "count": ("1", "", "", ""), "level": ("1", "", "", "")}[kind]
    nums = {}
    for k, d in (("per", defaults[0]), ("rope", defaults[2]), ("mid", defaults[3])):
        text = get(k, d)
        if not text and k in ("rope", "mid"):
            nums[k] = None
            continue
        v = _number(text)
        if v is None or v < 0 or (k == "per" and v <= 0):
            raise DataError(f"indicator {name}: {k} must be a non-negative number, got {text!r}", file=file, row=row,
                            column=k)
        nums[k] = v
    direction = get("direction", "down").lower()
    if direction not in ("down", "up", "-1", "1", "+1"):
        raise DataError(f"indicator {name}: direction must be down or up, got {direction!r}", file=file, row=row,
                        column="direction")
    return Indicator(name, get("area", "other"), get("source"), get("numerator"), denom, kind, lik, nums["per"],
                     get("label"), get("short", get("label")), get("units", defaults[1]),
                     nums["rope"] if nums["rope"] is not None else -1.0, nums["mid"] if nums["mid"] is not None else -1.0,
                     1 if direction in ("up", "1", "+1") else -1)


def load_indicators(path: str | Path = DEFAULT_INDICATORS) -> dict[str, Indicator]:
    """The indicator table (``#`` lines are comments)."""
    t = lp.read_csv(Path(path), ("name", "source", "numerator", "kind", "label"), comments=True)
    if not t.rows:
        raise DataError("the indicator table has no indicators", file=path)
    out: dict[str, Indicator] = {}
    for i, r in enumerate(t.rows):
        ind = parse_indicator(dict(zip(t.header, r)), file=path, row=t.row_numbers[i])
        if ind.name in out:
            raise DataError(f"indicator {ind.name} is listed twice", file=path, row=t.row_numbers[i], column="name")
        out[ind.name] = ind
    return out


def parse_indicator_option(text: str) -> Indicator:
    """``--add-indicator 'name=...;source=...;numerator=...;denominator=...;kind=...;label=...;units=...'``."""
    fields = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise DataError(f"--add-indicator: {part!r} is not key=value (keys: {', '.join(INDICATOR_COLUMNS)})",
                            column="--add-indicator")
        k, v = part.split("=", 1)
        k = k.strip()
        if k not in INDICATOR_COLUMNS:
            raise DataError(f"--add-indicator: unknown key {k!r}; use {', '.join(INDICATOR_COLUMNS)}", column="--add-indicator")
        fields[k] = v.strip()
    return parse_indicator(fields, file="--add-indicator")


# ---------------------------------------------------------------------------- the panel

@dataclass
class IndicatorPanel:
    """Each indicator's LA-year table (``y_value``, ``n_value`` and their codes) with the
    interface :func:`data.la_panel.build_design` and :func:`data.la_panel.load_treatment` read."""

    tables: dict[str, pd.DataFrame]
    neighbours: pd.DataFrame
    paths: dict[str, Path]
    hashes: dict[str, str]
    suppressed: pd.DataFrame          # indicator, column, code, meaning, count (LA rows of the whole file)
    sources: dict[str, OfficialTable] = field(default_factory=dict)

    def table(self, file: str) -> pd.DataFrame:
        return self.tables[file]

    def names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for frame in self.tables.values():
            out.update(frame.sort_values("year").groupby("la_code")["la_name"].last().to_dict())
        nb = self.neighbours.drop_duplicates("la_code")
        out.update(dict(zip(nb["la_code"], nb["la_name"])))
        return out


def build_panel(indicators: list[Indicator], *, neighbours: Path | None = None, population: Path | None = None,
                base: Path = SHARED_DATA, population_lag: int = POPULATION_LAG) -> IndicatorPanel:
    """Load every indicator's source file (each file once) and join numerator and denominator."""
    nb_path = Path(neighbours) if neighbours else lp.DEFAULT_PANEL_DIR / lp.FILES["neighbours"]
    nb = lp.load_neighbours(nb_path)
    if nb.empty:
        raise DataError("the neighbour table has no rows", file=nb_path)
    pop_path = Path(population) if population else DEFAULT_POPULATION
    need: dict[Path, list[str]] = {}
    for ind in indicators:
        cols = need.setdefault(ind.source_path(base), [])
        for c in (ind.numerator, ind.denominator):
            if c and c != "population" and c not in cols:
                cols.append(c)
        if ind.denominator == "population":
            pc = need.setdefault(pop_path, [])
            if POPULATION_COLUMN not in pc:
                pc.append(POPULATION_COLUMN)
    sources = {p: load_any(p, cols) for p, cols in need.items()}
    tables, paths, hashes, supp = {}, {"neighbours": nb_path}, {"neighbours": hash_file(nb_path)}, []
    for ind in indicators:
        src = sources[ind.source_path(base)]
        f = src.frame
        t = f[["year", "la_code", "la_name", "new_la_code", "row"]].copy()
        t["y_value"], t["y_value_code"] = f[ind.numerator].to_numpy(float), f[f"{ind.numerator}_code"].to_numpy(object)
        if ind.denominator == "population":
            pop = sources[pop_path].frame[["la_code", "year", POPULATION_COLUMN, f"{POPULATION_COLUMN}_code"]]
            pop = pop.assign(year=pop["year"] + population_lag)
            t = t.merge(pop, on=["la_code", "year"], how="left")
            t["n_value"] = t.pop(POPULATION_COLUMN).to_numpy(float)
            code = t.pop(f"{POPULATION_COLUMN}_code").astype(object)
            t["n_value_code"] = np.where(t["n_value"].isna() & code.isna(), "x", code)
            t["n_value_code"] = t["n_value_code"].where(t["n_value"].isna(), None)
            paths[f"{ind.name}:population"] = pop_path
        elif ind.denominator:
            t["n_value"], t["n_value_code"] = f[ind.denominator].to_numpy(float), f[f"{ind.denominator}_code"].to_numpy(object)
        _check_values(ind, t, src.path)
        tables[ind.name] = t
        paths[ind.name] = src.path
        hashes[ind.name] = src.file_hash
        for c in (ind.numerator, ind.denominator):
            if c == "population":
                s = sources[pop_path].suppressed
                c2 = POPULATION_COLUMN
            elif c:
                s, c2 = src.suppressed, c
            else:
                continue
            for r in s[s["measure"] == c2].itertuples():
                supp.append({"indicator": ind.name, "column": c2, "code": r.code, "meaning": r.meaning, "count": r.count})
    if pop_path in sources:
        hashes["population"] = sources[pop_path].file_hash
    return IndicatorPanel(tables, nb, paths, hashes,
                          pd.DataFrame(supp, columns=["indicator", "column", "code", "meaning", "count"]),
                          {str(k): v for k, v in sources.items()})


def _check_values(ind: Indicator, t: pd.DataFrame, path: Path) -> None:
    y = t["y_value"].to_numpy(float)
    n = t["n_value"].to_numpy(float) if "n_value" in t else None
    checks = []
    if ind.kind != "level":
        checks.append((y < 0, ind.numerator, "a negative count"))
        if ind.likelihood in ("betabinomial", "binomial", "negbinomial", "poisson"):
            checks.append((np.isfinite(y) & (y != np.round(y)), ind.numerator, "not a whole number"))
    if n is not None:
        checks.append((n < 0, ind.denominator, "a negative denominator"))
        if ind.kind == "share":
            checks.append((y > n, ind.numerator, f"above its denominator {ind.denominator}"))
    for bad, column, what in checks:
        bad = np.asarray(bad, bool) & np.isfinite(y)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"indicator {ind.name}: {y[k]:g} is {what}", file=path, row=int(t["row"].iloc[k]),
                            column=column if column != "population" else POPULATION_COLUMN)


def with_label(ind: Indicator, **changes) -> Indicator:
    return replace(ind, **changes)
