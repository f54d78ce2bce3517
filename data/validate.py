"""Small, explicit checks on tidy frames that raise :class:`DataError` at the first bad cell.

Row numbers are 1-based data rows (the header is not counted), as a spreadsheet user would
find them after the header line: the row of a CSV file is ``row + 1`` counting the header.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError


def _row(frame: pd.DataFrame, mask: np.ndarray) -> int:
    """1-based position of the first True in ``mask``."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def parse_error(path: Path, err: Exception) -> DataError:
    """A CSV parser's error as a :class:`DataError` naming the first data row whose number of
    fields differs from the header's (a truncated or mis-quoted line), where one does."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            for row, fields in enumerate(reader, start=1):
                if header is not None and fields and len(fields) != len(header):
                    return DataError(f"cannot be read as a table: {len(fields)} fields where the header has "
                                     f"{len(header)} (a truncated line, or a comma in an unquoted value)",
                                     file=path, row=row)
    except (OSError, csv.Error):
        pass
    return DataError(f"cannot be read as a table: {err}", file=path)


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; unreadable or empty files are a :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=path)
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in {".csv", ".txt"}:
            frame = pd.read_csv(path)
        else:
            raise DataError(f"unknown file type '{path.suffix}' (use .csv or .parquet)", file=path)
    except DataError:
        raise
    except Exception as err:  # parser errors from pandas/pyarrow
        raise parse_error(path, err) from None
    if frame.empty:
        raise DataError("the table has no rows", file=path)
    return frame


def missing_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Values read as missing (empty cells, ``NA``, ``NaN``, ``null`` ...), counted per column;
    only columns with any. Reported in each output's provenance (``statements.json``: ``data.missing``)."""
    counts = frame.isna().sum()
    return {str(c): int(n) for c, n in counts.items() if n}


def require_columns(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing required column(s) {missing}; found {list(frame.columns)}", column=missing[0]
        )


def require_no_missing(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    for c in columns:
        bad = frame[c].isna().to_numpy()
        if bad.any():
            raise DataError("missing value", row=_row(frame, bad), column=c)


def require_numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & frame[column].notna().to_numpy()
    if bad.any():
        raise DataError(f"not a number: {frame[column].iloc[_row(frame, bad) - 1]!r}",
                        row=_row(frame, bad), column=column)
    return values


def require_integer(frame: pd.DataFrame, column: str, *, minimum: int | None = None) -> np.ndarray:
    values = require_numeric(frame, column)
    bad = np.isfinite(values) & (values != np.round(values))
    if bad.any():
        raise DataError(f"not a whole number: {values[bad][0]}", row=_row(frame, bad), column=column)
    if minimum is not None:
        bad = values < minimum
        if bad.any():
            word = "negative" if minimum == 0 else f"below {minimum}"
            raise DataError(f"{word} value {values[bad][0]:g}", row=_row(frame, bad), column=column)
    return values


def require_binary(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = require_numeric(frame, column)
    bad = ~np.isin(values, [0.0, 1.0])
    if bad.any():
        raise DataError(f"outcome must be 0 or 1, found {values[bad][0]:g}", row=_row(frame, bad),
                        column=column)
    return values.astype(int)


def require_in(frame: pd.DataFrame, column: str, allowed: Iterable[object]) -> None:
    allowed = list(allowed)
    bad = ~frame[column].isin(allowed).to_numpy()
    if bad.any():
        raise DataError(f"value {frame[column].iloc[_row(frame, bad) - 1]!r} is not one of {allowed}",
                        row=_row(frame, bad), column=column)


def require_le(frame: pd.DataFrame, small: str, large: str) -> None:
    bad = (frame[small].to_numpy(dtype=float) > frame[large].to_numpy(dtype=float))
    if bad.any():
        r = _row(frame, bad)
        raise DataError(f"'{small}' ({frame[small].iloc[r - 1]}) exceeds '{large}' ({frame[large].iloc[r - 1]})",
                        row=r, column=small)


def require_constant_within(frame: pd.DataFrame, group: str, column: str) -> None:
    """``column`` takes one value within each ``group`` (e.g. an LA's arm)."""
    first = frame.groupby(group, sort=False)[column].transform("first")
    bad = ~((frame[column] == first) | (frame[column].isna() & first.isna())).to_numpy()
    if bad.any():
        r = _row(frame, bad)
        raise DataError(f"'{column}' must be the same on every row of {group} "
                        f"{frame[group].iloc[r - 1]!r}", row=r, column=column)
