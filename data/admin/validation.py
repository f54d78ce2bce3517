"""Schema validation for administrative extracts: every problem is a located :class:`DataError`.

Files are validated one at a time, so that a problem is reported with the file it is in, the
data row as the file numbers it (1 = the first row under the header, i.e. line 2 of a CSV)
and the column. Checks, in order:

1. the file can be read and has rows;
2. required columns are present (matched case-insensitively; a near miss is reported as a
   likely misspelling: ``missing column 'DECOM' (found 'DECCOM': misspelt?)``);
3. LA codes are English LA codes (old 3-digit or new E-codes, or LA names);
4. coded columns hold valid codes and required values are present (a pandera schema);
5. dates parse (dd/mm/yyyy as the DfE specifies, or yyyy-mm-dd);
6. row-level impossibilities (an end before its start) and duplicates within the file.

Cross-file checks (overlapping episodes, a date of birth after care began) work on the
combined frame, whose ``_file`` and ``_row`` columns point back to the source row.

Records that are valid but outside the analysis (short breaks, periods of care that began
before the data, follow-up windows not yet complete, LAs without a role) are not errors:
they are dropped and counted in a :class:`DropLog`, which is summarised for the user.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data.admin import codes
from data.errors import DataError

SUPPORTED = (".csv", ".txt", ".parquet", ".pq")


# ------------------------------------------------------------------ reading


def read_raw(path: Path) -> pd.DataFrame:
    """Every column as text, surrounding spaces removed, empty cells missing; row order kept."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
            frame = pd.DataFrame({c: _to_text(frame[c]) for c in frame.columns})
        elif suffix in {".csv", ".txt"}:
            try:
                frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""], engine="pyarrow")
            except Exception as err:  # not UTF-8 (a spreadsheet's Windows-1252 export): read it as that
                if "utf" not in str(err).casefold():
                    raise
                frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""], encoding="cp1252")
        else:
            raise DataError(f"unknown file type '{path.suffix}' (use .csv or .parquet)", file=path)
    except DataError:
        raise
    except Exception as err:  # parser errors from pandas / pyarrow
        from data.validate import parse_error

        raise parse_error(path, err) from None
    if frame.empty:
        raise DataError("the table has no rows", file=path)
    frame.columns = [str(c).removeprefix("\u00ef\u00bb\u00bf").lstrip("\ufeff").strip() for c in frame.columns]
    for c in frame.columns:
        s = frame[c]
        if s.notna().any():
            s = s.str.strip()
            frame[c] = s.where(s != "", None)
    return frame.reset_index(drop=True)


def _to_text(s: pd.Series) -> pd.Series:
    """A Parquet column as the text a CSV would hold (whole floats without '.0', ISO dates)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y-%m-%d").astype("str")
    if pd.api.types.is_float_dtype(s):
        whole = s.dropna()
        if (whole == np.round(whole)).all():
            s = s.astype("Int64")
    out = s.astype("str")
    return out.where(s.notna(), None)


def match_columns(frame: pd.DataFrame, required: Sequence[str], optional: Sequence[str] = (), *,
                  file: str | Path, table: str) -> pd.DataFrame:
    """Rename columns to their canonical spelling (case-insensitive); a missing one is an error.

    A missing column with a near namesake in the file (``DECCOM`` for ``DECOM``) is reported
    as a probable misspelling.
    """
    canonical = {c.casefold(): c for c in (*required, *optional)}
    rename, seen = {}, {}
    for c in frame.columns:
        target = canonical.get(c.casefold())
        if target is not None:
            if target in seen:
                raise DataError(f"column '{target}' appears twice (as '{seen[target]}' and '{c}')",
                                file=file, column=c)
            seen[target] = c
            rename[c] = target
    out = frame.rename(columns=rename)
    missing = [c for c in required if c not in out.columns]
    if missing:
        col = missing[0]
        spare = [c for c in out.columns if c not in canonical.values()]
        near = difflib.get_close_matches(col.casefold(), [s.casefold() for s in spare], n=1, cutoff=0.6)
        hint = ""
        if near:
            found = next(s for s in spare if s.casefold() == near[0])
            hint = f" (found '{found}': misspelt?)"
        raise DataError(f"{table}: missing column '{col}'{hint}; required columns are {list(required)}",
                        file=file, column=col)
    return out


# ------------------------------------------------------------------ values


def first_row(mask: np.ndarray | pd.Series) -> int | None:
    """1-based row of the first True, or None."""
    hits = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(hits[0]) + 1 if hits.size else None


def _codes_text(allowed: Sequence[str], limit: int = 12) -> str:
    allowed = list(allowed)
    shown = ", ".join(allowed[:limit])
    return shown + (f", ... ({len(allowed)} codes)" if len(allowed) > limit else "")


def check_codes(frame: pd.DataFrame, spec: Mapping[str, tuple[Sequence[str] | None, bool]], *,
                file: str | Path, table: str) -> None:
    """Validate coded and required columns with a pandera schema; report the first bad row.

    ``spec`` maps column -> (allowed codes or None for free text, nullable). Columns absent
    from ``frame`` are skipped (optional columns).
    """
    columns = {}
    for col, (allowed, nullable) in spec.items():
        if col not in frame.columns:
            continue
        checks = [pa.Check.isin(list(allowed))] if allowed is not None else []
        columns[col] = pa.Column(checks=checks, nullable=nullable, required=False)
    schema = pa.DataFrameSchema(columns, name=table)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna()].copy()
        if cases.empty:
            raise DataError(f"{table}: {err}", file=file) from None
        cases["index"] = cases["index"].astype(int)
        order = {c: i for i, c in enumerate(spec)}
        cases["order"] = cases["column"].map(order)
        worst = cases.sort_values(["index", "order"]).iloc[0]
        col, row = str(worst["column"]), int(worst["index"]) + 1
        value = frame[col].iloc[row - 1]
        if value is None or (isinstance(value, float) and np.isnan(value)) or pd.isna(value):
            message = f"{table}: missing value (required)"
        else:
            message = f"{table}: invalid code {value!r}; valid codes: {_codes_text(spec[col][0] or [])}"
        more = len(cases) - 1
        if more:
            message += f" ({more} more invalid value{'s' if more > 1 else ''} in this file)"
        raise DataError(message, file=file, row=row, column=col) from None


_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
DATE_PATTERNS = (   # (regex with named groups, what the user is told)
    (r"^(?P<d>\d{1,2})/(?P<m>\d{1,2})/(?P<y>\d{4})" + _TIME + "$", "dd/mm/yyyy"),
    (r"^(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})" + _TIME + "$", "yyyy-mm-dd"),
    (r"^(?P<d>\d{1,2})-(?P<m>\d{1,2})-(?P<y>\d{4})" + _TIME + "$", "dd-mm-yyyy"),
)


def parse_dates(frame: pd.DataFrame, column: str, *, file: str | Path, table: str,
                required: bool = False) -> pd.Series:
    """Parse a date column: dd/mm/yyyy as the DfE specifies, or yyyy-mm-dd (a time is ignored).

    Impossible calendar dates (31/02/2019) and two-digit years are errors, not silently
    moved; the check is vectorised (pyarrow regex extraction, numpy date arithmetic).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    raw = frame[column]
    present = raw.notna().to_numpy()
    if required and not present.all():
        raise DataError(f"{table}: missing date (required)", file=file, row=first_row(~present), column=column)
    out = np.full(len(raw), np.datetime64("NaT", "s"), dtype="datetime64[s]")
    todo = present.copy()
    if todo.any():
        values = pa.array(raw.astype("str").array)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        for pattern, _ in DATE_PATTERNS:
            if not todo.any():
                break
            parts = pc.extract_regex(values, pattern)
            hit = parts.is_valid()
            ymd = {k: pc.cast(pc.if_else(hit, parts.field(k), "0"), pa.int64()).to_numpy(zero_copy_only=False)
                   for k in "ymd"}
            matched = todo & hit.to_numpy(zero_copy_only=False)
            y, m, d = (np.asarray(ymd[k], dtype=np.int64) for k in "ymd")
            month = ((y - 1970) * 12 + (m - 1)).astype("datetime64[M]")
            day = month.astype("datetime64[D]") + (d - 1).astype("timedelta64[D]")
            valid = (matched & (m >= 1) & (m <= 12) & (d >= 1) & (y >= 1900) & (y <= 2100)
                     & (day.astype("datetime64[M]") == month))
            out[valid] = day[valid].astype("datetime64[s]")
            todo &= ~valid
    if todo.any():
        row = first_row(todo)
        raise DataError(f"{table}: not a date: {raw.iloc[row - 1]!r} (use dd/mm/yyyy or yyyy-mm-dd)",
                        file=file, row=row, column=column)
    return pd.Series(out, index=frame.index)


def check_order(frame: pd.DataFrame, early: str, late: str, *, file: str | Path, table: str,
                what: str) -> None:
    """``late`` on or after ``early`` wherever both are present (dates already parsed)."""
    bad = (frame[late] < frame[early]).to_numpy(dtype=bool)
    if bad.any():
        row = first_row(bad)
        e, l = frame[early].iloc[row - 1], frame[late].iloc[row - 1]
        raise DataError(f"{table}: impossible dates: {what} ({late} {l:%d/%m/%Y} is before "
                        f"{early} {e:%d/%m/%Y})", file=file, row=row, column=late)


def year_ends(year: np.ndarray) -> np.ndarray:
    """31 March of each collection year (NaT where the year is unknown), as datetime64[s]."""
    y = np.asarray(year, dtype=float)
    ok = np.isfinite(y)
    months = np.where(ok, (np.nan_to_num(y) - 1970) * 12 + 3, 0).astype("int64")
    end = (months.astype("datetime64[M]").astype("datetime64[D]") - np.timedelta64(1, "D")).astype("datetime64[s]")
    return np.where(ok, end, np.datetime64("NaT", "s"))


def check_collection_year(frame: pd.DataFrame, columns: Sequence[str], year: np.ndarray, *, file: str | Path,
                          table: str, what: str) -> None:
    """No date after 31 March of the collection year a row belongs to (first offending row)."""
    end = year_ends(year)
    late = np.column_stack([frame[c].to_numpy() > end for c in columns])
    rows = late.any(axis=1)
    if rows.any():
        row = first_row(rows)
        col = columns[int(np.flatnonzero(late[row - 1])[0])]
        raise DataError(f"{table}: {col} {frame[col].iloc[row - 1]:%d/%m/%Y} is after the end of the {what} year "
                        f"({pd.Timestamp(end[row - 1]):%d/%m/%Y}) this file belongs to ({what} years are named by "
                        "the 31 March they end: 2019 = 2018-19)", file=file, row=row, column=col)


def check_duplicates(frame: pd.DataFrame, *, file: str | Path, table: str, keys: Sequence[str] | None = None,
                     what: str = "row", columns: Sequence[str] | None = None, within: Sequence[str] | None = None) -> None:
    """No repeated rows within one file: whole rows (``keys=None``) or repeated ``keys``.

    ``within`` (optional) is a subset of the columns that any whole-row duplicate must share;
    rows unique on it are skipped, which makes the whole-row check cheap on large files.
    """
    cols = list(keys) if keys is not None else list(columns if columns is not None else frame.columns)
    candidates = np.ones(len(frame), dtype=bool)
    if keys is None and within is not None:
        candidates = frame.duplicated(subset=list(within), keep=False).to_numpy()
        if not candidates.any():
            return
    sub = frame[candidates]
    dup_sub = sub.duplicated(subset=cols, keep="first").to_numpy()
    if dup_sub.any():
        pos = np.flatnonzero(candidates)
        row = int(pos[np.flatnonzero(dup_sub)[0]]) + 1
        key = tuple(frame[c].iloc[row - 1] for c in cols)
        group = sub.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
        this = group[np.flatnonzero(dup_sub)[0]]
        earlier = int(pos[np.flatnonzero(group == this)[0]]) + 1
        if keys is None:
            message = f"{table}: duplicate row (the same as row {earlier})"
        else:
            message = (f"{table}: duplicate {what}: {dict(zip(cols, map(_show, key)))} already at row {earlier}")
        raise DataError(message, file=file, row=row, column=cols[-1] if keys is not None else None)


def _show(v: object) -> str:
    return f"{v:%d/%m/%Y}" if isinstance(v, pd.Timestamp) else str(v)


def check_la(frame: pd.DataFrame, column: str, *, file: str | Path, table: str) -> pd.Series:
    """Map the LA column to old 3-digit codes; an unknown code is an error at its first row."""
    if frame[column].isna().any():
        raise DataError(f"{table}: missing LA code", file=file, row=first_row(frame[column].isna()), column=column)
    codes_ = codes.normalise_la(frame[column])
    bad = codes_.isna().to_numpy()
    if bad.any():
        row = first_row(bad)
        raise DataError(f"{table}: unknown LA code {frame[column].iloc[row - 1]!r} (not an English local "
                        f"authority's code or name; see data/admin/la_codes.csv)", file=file, row=row, column=column)
    return codes_


def located(combined: pd.DataFrame, files: Sequence[str], position: int, column: str, message: str) -> DataError:
    """A DataError for row ``position`` (0-based) of a combined frame with ``_file``/``_row``."""
    rec = combined.iloc[position]
    return DataError(message, file=files[int(rec["_file"])], row=int(rec["_row"]), column=column)


def first_in_file_order(combined: pd.DataFrame, mask: np.ndarray) -> int:
    """Position of the flagged row that comes first by (file, row)."""
    idx = np.flatnonzero(mask)
    order = np.lexsort((combined["_row"].to_numpy()[idx], combined["_file"].to_numpy()[idx]))
    return int(idx[order[0]])


def la_for_file(frame: pd.DataFrame, path: Path, root: Path, table: str) -> pd.Series:
    """Old 3-digit LA codes for a file's rows: its ``LA`` column, or an LA-named folder above it."""
    if "LA" in frame.columns:
        return check_la(frame, "LA", file=path, table=table)
    try:
        parts = path.resolve().relative_to(root.resolve()).parts[:-1]
    except ValueError:
        parts = ()
    for part in reversed(parts):
        code = codes.normalise_la(pd.Series([part])).iloc[0]
        if isinstance(code, str):
            return pd.Series(code, index=frame.index, dtype="str")
    raise DataError(f"{table}: no LA column, and no folder above the file is named by an LA code "
                    "(add an 'LA' column or put each LA's files in a folder named by its code)",
                    file=path, column="LA")


def year_for_rows(frame: pd.DataFrame, path: Path, root: Path, table: str) -> np.ndarray:
    """Each row's collection year: a ``YEAR`` column, else the file's year folder (NaN if none)."""
    if "YEAR" in frame.columns:
        y = pd.to_numeric(frame["YEAR"], errors="coerce")
        bad = (y.isna() | (y < 1980) | (y > 2100) | (y != np.round(y))).to_numpy()
        if bad.any():
            row = first_row(bad)
            raise DataError(f"{table}: YEAR must be the collection year (e.g. 2019 for 2018-19), got "
                            f"{frame['YEAR'].iloc[row - 1]!r}", file=path, row=row, column="YEAR")
        return y.to_numpy(dtype=float)
    year = collection_year(path, root)
    return np.full(len(frame), np.nan if year is None else float(year))


def combine_files(frames: list[pd.DataFrame], key: list[str], files: list[str], table: str, column: str,
             dropped: "DropLog") -> pd.DataFrame:
    """Concatenate per-file frames; keep the latest collection year's version of each key."""
    for i, f in enumerate(frames):
        f["_file"] = i
        f["_row"] = np.arange(1, len(f) + 1)
    allf = pd.concat(frames, ignore_index=True)
    allf["_y"] = allf["_year"].fillna(-1)
    allf = allf.sort_values(["_y", "_file", "_row"], kind="stable").reset_index(drop=True)
    dup_any = allf.duplicated(subset=key, keep=False).to_numpy()
    if dup_any.any():
        sub = allf[dup_any]
        same_year = sub.duplicated(subset=[*key, "_y"], keep="first").to_numpy()
        if same_year.any():
            pos = np.flatnonzero(dup_any)[np.flatnonzero(same_year)]
            p = first_in_file_order(allf, np.isin(np.arange(len(allf)), pos))
            rec = allf.iloc[p]
            twin = allf[(allf[key] == rec[key]).all(axis=1)].iloc[0]
            raise located(allf, files, p, column,
                              f"{table}: duplicate record {dict((k, _show(rec[k])) for k in key)} "
                              f"(also in {files[int(twin['_file'])]} row {int(twin['_row'])}, same collection year)")
        n_before = len(allf)
        allf = allf.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
        dropped.add(table, "copies of a record repeated in a later collection year's return "
                           "(each record is kept once, in its latest version)", n_before - len(allf))
    return allf.drop(columns="_y")


# ------------------------------------------------------------------ what was dropped


@dataclass
class DropLog:
    """Valid records left out of an analysis, with the reason; summarised for the user."""

    entries: list[dict] = field(default_factory=list)

    def add(self, table: str, reason: str, count: int, unit: str = "rows") -> None:
        if count:
            self.entries.append({"table": table, "reason": reason, "unit": unit, "count": int(count)})

    def extend(self, other: "DropLog") -> None:
        self.entries.extend(other.entries)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.entries, columns=["table", "reason", "unit", "count"])

    def lines(self) -> list[str]:
        return [f"{e['table']}: {e['count']} {e['unit']} left out: {e['reason']}" for e in self.entries]

    def __bool__(self) -> bool:
        return bool(self.entries)


def discover(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Data files under ``root`` (or ``root`` itself) whose name contains one of ``patterns``."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.exists():
        raise DataError("folder not found", file=root)
    pats = [p.casefold() for p in patterns]
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED
                   and any(k in p.stem.casefold() for k in pats))
    return found


def collection_year(path: Path, root: Path) -> int | None:
    """The collection year a file belongs to: the nearest 4-digit folder (or file-name) part.

    DfE collections are named by the year they end: folder ``2019`` holds the return for
    1 April 2018 - 31 March 2019.
    """
    import re

    try:
        parts = list(Path(path).resolve().relative_to(Path(root).resolve()).parts)
    except ValueError:
        parts = [Path(path).name]
    for part in reversed(parts):
        m = re.search(r"(?<!\d)(19[89]\d|20\d\d)(?!\d)", Path(part).stem if part == parts[-1] else part)
        if m:
            return int(m.group(1))
    return None
