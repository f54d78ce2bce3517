"""The report's published results, machine-readable, with provenance.

Files in this folder (a transcription of DfE RR1054, October 2020):

- ``estimates.yaml``: results with an estimate and/or a p value -- the four DiD outcomes of
  Table 8 and the text after it, Table 6, the Working Alliance Inventory and the LA-level
  p values around Table 7;
- ``surveys.csv``: Tables 2 and 4 (percentages of social workers by pilot), long format;
- ``contrast_study.yaml``: Table 5, the HCSFF and Family Chart comparisons, reliabilities and
  the contrast study's sample sizes;
- ``ofsted.csv``: Table 3;
- ``costs.yaml``: the cost figures;
- ``context.yaml``: claims in the text the consistency checks need (the programme's 20% shift,
  the survey response rates, the Ofsted transitions ...).

Conventions: every record has a ``source`` (table or section) and a ``quote`` copied verbatim
from the report; a field ``X_printed`` holds a value *as printed* and appears verbatim in
``X_quote`` (or, without one, in ``quote``); the report's own verdict is ``verdict_printed``.
Fields without those suffixes are our reading of the print (signs, intervals, assumptions,
each explained in a ``*_note``). :func:`verify_against_report` checks all of it against the
report text.

>>> pub = load_published()            # the default folder
>>> pub.estimates.query("group == 'did'")[["id", "estimate", "p_printed"]]
"""

from __future__ import annotations

import math
import os
import re

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from data.errors import DataError

PUBLISHED_DIR = Path(__file__).resolve().parent
REPORT_NAME = "000_9ae41e0cca63fb19.txt"
FILES = ("estimates.yaml", "surveys.csv", "contrast_study.yaml", "ofsted.csv", "costs.yaml", "context.yaml")

ESTIMATE_GROUPS = ("did", "table6", "wai", "la_level")
REQUIRED = {
    "estimates.yaml": ("id", "group", "outcome", "source", "quote", "unit", "benefit_direction"),
    "surveys.csv": ("table", "item", "pilot", "printed", "percent", "n", "n_min", "better", "quote", "source"),
    "means": ("id", "subscale", "pilot_printed", "contrast_printed", "quote", "source"),
    "proportions": ("id", "outcome", "quote", "percent1_printed", "percent2_printed", "p_printed",
                    "n1_min", "n1_max", "n2_min", "n2_max", "benefit_direction", "source"),
    "ofsted.csv": ("timing", "aspect", "judgement", "count", "printed", "quote", "source"),
    "costs.yaml": ("id", "value", "printed", "unit", "quote", "source"),
}
CONTEXT_KEYS = ("programme_target", "survey_response_range", "table2_coverage", "contrast_families",
                "ofsted_pilots", "ofsted_improved_claimed", "ofsted_transitions")


def normalise_text(text: str) -> str:
    """Collapse every run of whitespace (tabs, line breaks, non-breaking spaces) to one space."""
    return re.sub(r"\s+", " ", str(text)).strip()


def default_report_path() -> Path:
    """Where the report text is expected: ``$SOFS_REPORT``, else ``<repo>/../shared/seed/``."""
    env = os.environ.get("SOFS_REPORT")
    if env:
        return Path(env)
    return PUBLISHED_DIR.parents[2] / "shared" / "seed" / REPORT_NAME


@dataclass
class Published:
    """Every transcribed result, as tidy frames (one per file or section) plus the text claims."""

    folder: Path
    estimates: pd.DataFrame
    surveys: pd.DataFrame
    means: pd.DataFrame
    proportions: pd.DataFrame
    reliability: pd.DataFrame
    samples: pd.DataFrame
    ofsted: pd.DataFrame
    costs: pd.DataFrame
    context: dict[str, Any]
    context_records: dict[str, dict[str, Any]] = field(repr=False, default_factory=dict)
    records: list[tuple[str, int, dict[str, Any]]] = field(repr=False, default_factory=list)

    def estimate(self, rid: str) -> pd.Series:
        rows = self.estimates[self.estimates["id"] == rid]
        if rows.empty:
            raise KeyError(f"no published estimate '{rid}'; known: {list(self.estimates['id'])}")
        return rows.iloc[0]


# --------------------------------------------------------------------------------------
# reading and validating


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise DataError("file not found", file=path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DataError(f"not valid YAML: {err}", file=path) from None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError("file not found", file=path)
    try:
        return pd.read_csv(path, dtype={"table": str}, keep_default_na=False, na_values=[""])
    except Exception as err:  # pandas parser errors
        raise DataError(f"cannot be read as CSV: {err}", file=path) from None


def _records(obj: Any, path: Path, what: str) -> list[dict[str, Any]]:
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{what} must be a list of records", file=path)
    return obj


def _require(records: list[dict[str, Any]], keys: tuple[str, ...], path: Path) -> None:
    for i, rec in enumerate(records, start=1):
        for key in keys:
            value = rec.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
                raise DataError(f"missing value for '{key}'", file=path, row=i, column=key)


def _number(rec: dict[str, Any], key: str, path: Path, row: int, *, optional: bool = True) -> None:
    value = rec.get(key)
    if value is None and optional:
        return
    try:
        ok = np.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"'{key}' must be a finite number, got {value!r}", file=path, row=row, column=key)


def _validate_estimates(records: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    _require(records, REQUIRED["estimates.yaml"], path)
    seen: set[str] = set()
    for i, rec in enumerate(records, start=1):
        if rec["id"] in seen:
            raise DataError(f"duplicate id '{rec['id']}'", file=path, row=i, column="id")
        seen.add(rec["id"])
        if rec["group"] not in ESTIMATE_GROUPS:
            raise DataError(f"group must be one of {ESTIMATE_GROUPS}, got {rec['group']!r}", file=path, row=i,
                            column="group")
        if rec["benefit_direction"] not in (-1, 0, 1):
            raise DataError("benefit_direction must be -1, 0 or 1", file=path, row=i, column="benefit_direction")
        for key in ("estimate", "estimate_low", "estimate_high", "se", "p_low", "p_high", "baseline"):
            _number(rec, key, path, i)
        if rec.get("estimate_printed") is not None and rec.get("estimate") is None:
            raise DataError("an estimate_printed needs its signed reading in 'estimate'", file=path, row=i,
                            column="estimate")
        if rec.get("p_low") is not None and not 0 <= rec["p_low"] < rec.get("p_high", -1) <= 1:
            raise DataError("need 0 <= p_low < p_high <= 1", file=path, row=i, column="p_high")
    frame = pd.DataFrame(records)
    for col in ("estimate", "estimate_low", "estimate_high", "se", "p_low", "p_high", "baseline",
                "estimate_printed", "p_printed", "counterfactual_printed", "observed_printed", "coef_printed",
                "se_printed", "t_printed", "verdict_printed", "expected_printed", "baseline_printed", "target_applies",
                "benefit_claim", "harm_claim", "estimate_note"):
        if col not in frame:
            frame[col] = None
    frame["target_applies"] = frame["target_applies"].fillna(False).astype(bool)
    return frame


def _validate_frame(frame: pd.DataFrame, keys: tuple[str, ...], path: Path, ints: tuple[str, ...] = ()) -> pd.DataFrame:
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=path, column=missing[0])
    _require(frame.to_dict(orient="records"), keys, path)
    for col in ints:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = ~(values.notna() & (values == values.round()))
        if bad.any():
            row = int(np.flatnonzero(bad.values)[0]) + 1
            raise DataError(f"'{col}' must be a whole number, got {frame[col].iloc[row - 1]!r}", file=path, row=row,
                            column=col)
        frame[col] = values.astype(int)
    return frame


def load_published(folder: str | Path | None = None) -> Published:
    """Read and validate every file of the transcription (``folder`` defaults to this package).

    Raises
    ------
    DataError
        Naming the file, the 1-based record (row) and the field (column) at fault.
    """
    folder = Path(folder) if folder is not None else PUBLISHED_DIR
    if not folder.is_dir():
        raise DataError("not a folder of published results", file=folder)
    records: list[tuple[str, int, dict[str, Any]]] = []

    p = folder / "estimates.yaml"
    est_recs = _records(_read_yaml(p), p, "estimates")
    estimates = _validate_estimates(est_recs, p)
    records += [("estimates.yaml", i, r) for i, r in enumerate(est_recs, start=1)]

    p = folder / "surveys.csv"
    surveys = _validate_frame(_read_csv(p), REQUIRED["surveys.csv"], p, ints=("percent", "n", "n_min"))
    bad = surveys["n_min"] > surveys["n"]
    if bad.any():
        raise DataError("n_min must not exceed n", file=p, row=int(np.flatnonzero(bad.values)[0]) + 1, column="n_min")
    bad = ~surveys["better"].isin(["higher", "lower"])
    if bad.any():
        raise DataError("better must be 'higher' or 'lower'", file=p, row=int(np.flatnonzero(bad.values)[0]) + 1,
                        column="better")
    records += [("surveys.csv", i, r) for i, r in enumerate(surveys.to_dict(orient="records"), start=1)]

    p = folder / "contrast_study.yaml"
    contrast = _read_yaml(p)
    if not isinstance(contrast, dict):
        raise DataError("expected sections means, proportions, reliability, samples", file=p)
    sections = {}
    for key in ("means", "proportions", "reliability", "samples"):
        recs = _records(contrast.get(key), p, f"section '{key}'")
        if key in REQUIRED:
            _require(recs, REQUIRED[key], p)
        sections[key] = pd.DataFrame(recs)
        records += [(f"contrast_study.yaml:{key}", i, r) for i, r in enumerate(recs, start=1)]
    for col in ("group2_split_printed",):
        if col not in sections["proportions"]:
            sections["proportions"][col] = None

    p = folder / "ofsted.csv"
    ofsted = _validate_frame(_read_csv(p), REQUIRED["ofsted.csv"], p, ints=("count",))
    records += [("ofsted.csv", i, r) for i, r in enumerate(ofsted.to_dict(orient="records"), start=1)]

    p = folder / "costs.yaml"
    cost_recs = _records(_read_yaml(p), p, "costs")
    _require(cost_recs, REQUIRED["costs.yaml"], p)
    for i, rec in enumerate(cost_recs, start=1):
        _number(rec, "value", p, i, optional=False)
    costs = pd.DataFrame(cost_recs)
    records += [("costs.yaml", i, r) for i, r in enumerate(cost_recs, start=1)]

    p = folder / "context.yaml"
    ctx_recs = _read_yaml(p)
    if not isinstance(ctx_recs, dict):
        raise DataError("expected a mapping of named claims", file=p)
    for key in CONTEXT_KEYS:
        if not isinstance(ctx_recs.get(key), dict) or "value" not in ctx_recs[key] or "quote" not in ctx_recs[key]:
            raise DataError(f"claim '{key}' needs 'value' and 'quote'", file=p, column=key)
    context = {k: v["value"] for k, v in ctx_recs.items()}
    records += [(f"context.yaml:{k}", 1, v) for k, v in ctx_recs.items()]

    return Published(folder, estimates, surveys, sections["means"], sections["proportions"],
                     sections["reliability"], sections["samples"], ofsted, costs, context, ctx_recs, records)


def data_files(folder: str | Path | None = None) -> list[Path]:
    folder = Path(folder) if folder is not None else PUBLISHED_DIR
    return [folder / name for name in FILES]


# --------------------------------------------------------------------------------------
# provenance against the report


def printed_values(published: Published) -> Iterator[tuple[str, int, str, str, str]]:
    """``(file, row, field, printed value, quote)`` for every printed value of every record."""
    for file, row, rec in published.records:
        for key, value in rec.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if key == "printed" or key.endswith("_printed"):
                stem = key[: -len("_printed")] if key != "printed" else ""
                quote = rec.get(f"{stem}_quote") if stem else None
                if quote is None or (isinstance(quote, float) and math.isnan(quote)):
                    quote = rec.get("quote")
                yield file, row, key, str(value), str(quote)


def quotes(published: Published) -> Iterator[tuple[str, int, str, str]]:
    """``(file, row, field, quote)`` for every quote of every record."""
    for file, row, rec in published.records:
        for key, value in rec.items():
            if (key == "quote" or key.endswith("_quote")) and isinstance(value, str):
                yield file, row, key, value


def verify_against_report(published: Published, report_text: str) -> list[str]:
    """Problems found: quotes not in the report, printed values not in their quotes (empty = all good)."""
    text = normalise_text(report_text)
    problems = []
    for file, row, key, quote in quotes(published):
        if normalise_text(quote) not in text:
            problems.append(f"{file} record {row}: {key} not found in the report: {quote[:80]!r}")
    for file, row, key, value, quote in printed_values(published):
        if normalise_text(value) not in normalise_text(quote):
            problems.append(f"{file} record {row}: {key} {value!r} not found in its quote")
    return problems
