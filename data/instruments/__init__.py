"""Questionnaire instruments (item keys as configuration) and item-level answer files.

An instrument is described by a YAML file (this folder holds the defaults,
``yatchmenoff.yaml`` and ``wai.yaml``): its items, the subscale ("dimension") each belongs
to, which items are reverse-worded, which are dropped, the category codes and how the
report reads an average score. The item keys of the evaluation were never published, so the
defaults are documented assumptions and a user can pass their own file.

Item-level answers come as one row per family (wide CSV or Parquet)::

    family,site,arm,worker,competence,Y01,...,Y19,family_WAI01,...,worker_WAI12

``arm`` is ``sofs`` or ``contrast``; ``competence`` is the social worker's observed clinical
and professional competence (any numeric scale; slopes are reported per unit of it). Item
columns are the instrument's item ids, prefixed by the rater (``family_``/``worker_``) for
instruments answered by more than one rater. Blank answers are allowed (missing); every
other problem raises :class:`~data.errors.DataError` naming file, row and column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from data.errors import DataError

HERE = Path(__file__).resolve().parent
DEFAULT_INSTRUMENTS = ("yatchmenoff", "wai")
ADMIN_COLUMNS = ("family", "site", "arm", "worker", "competence")
ARMS = ("sofs", "contrast")
SCORE_DIRECTIONS = ("lower_is_better", "higher_is_better")


@dataclass(frozen=True)
class Item:
    """One questionnaire item: its id, subscale, wording direction and whether it is used."""

    id: str
    dimension: str
    reverse: bool = False
    drop: bool = False
    label: str = ""


@dataclass(frozen=True)
class Instrument:
    """An instrument's item key.

    Attributes
    ----------
    categories
        The answer codes as they appear in the data, lowest first.
    score_direction
        How the report reads an average score: ``lower_is_better`` (Yatchmenoff: lower =
        more agreement = more engaged) or ``higher_is_better`` (WAI).
    raters
        Who answers; with several raters the data columns are ``<rater>_<item>``.
    """

    name: str
    title: str
    trait: str
    categories: tuple[int, ...]
    category_labels: tuple[str, ...]
    score_direction: str
    raters: tuple[str, ...]
    dimensions: dict[str, str]
    items: tuple[Item, ...]
    source: str = "default"
    notes: dict[str, Any] = field(default_factory=dict)
    respondents: str = "respondents"
    more_trait: str = "have more of the trait"

    @property
    def scale_label(self) -> str:
        """The average-score scale in words, from the instrument file (outputs use this)."""
        lo, hi = self.categories[0], self.categories[-1]
        better = "lower" if self.score_direction == "lower_is_better" else "higher"
        return f"{self.title} average score ({lo}-{hi}, {better} = more {self.trait})"

    @property
    def n_categories(self) -> int:
        return len(self.categories)

    @property
    def used_items(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if not i.drop)

    def column(self, rater: str, item: str) -> str:
        """The data column holding ``rater``'s answer to ``item``."""
        return item if len(self.raters) == 1 else f"{rater}_{item}"

    def columns(self, *, used_only: bool = False) -> list[str]:
        items = self.used_items if used_only else self.items
        return [self.column(r, i.id) for r in self.raters for i in items]

    def dimension_items(self) -> dict[str, list[str]]:
        """Used item ids by dimension, in configuration order."""
        out: dict[str, list[str]] = {d: [] for d in self.dimensions}
        for item in self.used_items:
            out[item.dimension].append(item.id)
        return {d: ids for d, ids in out.items() if ids}


def _config_error(path: Path | None, message: str) -> DataError:
    return DataError(f"instrument configuration: {message}", file=path)


TOP_LEVEL_KEYS = ("name", "title", "trait", "categories", "category_labels", "score_direction", "raters",
                  "dimensions", "items", "respondents", "more_trait", "notes")


def _text(value: Any) -> bool:
    """A YAML scalar usable as an id or label (string or integer, not a bool, list or mapping)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip() != ""


def parse_instrument(config: dict[str, Any], *, path: Path | None = None) -> Instrument:
    """Validate an instrument configuration (a dict, as read from YAML).

    Every malformed entry (missing, unknown or misspelt key, a value of the wrong type, an
    item listed twice or pointing to an unknown dimension) raises :class:`DataError` naming
    the file and the key or item.
    """
    if not isinstance(config, dict):
        raise _config_error(path, "expected a mapping at the top level (keys: " + ", ".join(TOP_LEVEL_KEYS) + ")")
    for key in ("name", "categories", "dimensions", "items", "score_direction"):
        if key not in config:
            raise _config_error(path, f"missing key '{key}'")
    unknown_keys = [str(k) for k in config if k not in TOP_LEVEL_KEYS]
    if unknown_keys:
        raise _config_error(path, f"unknown key '{unknown_keys[0]}' (valid keys: {', '.join(TOP_LEVEL_KEYS)})")
    for key in ("name", "title", "trait", "respondents", "more_trait"):
        if key in config and not _text(config[key]):
            raise _config_error(path, f"'{key}' must be a non-empty text")
    cats = config["categories"]
    if (not isinstance(cats, list) or len(cats) < 2
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in cats)
            or sorted(set(cats)) != cats):
        raise _config_error(path, "'categories' must be a list of at least two increasing integer codes")
    labels = config.get("category_labels") or [str(c) for c in cats]
    if not isinstance(labels, list) or len(labels) != len(cats) or not all(_text(x) for x in labels):
        raise _config_error(path, "'category_labels' must be a list of one text label per category")
    direction = config["score_direction"]
    if not isinstance(direction, str) or direction not in SCORE_DIRECTIONS:
        raise _config_error(path, f"'score_direction' must be one of {list(SCORE_DIRECTIONS)}, got '{direction}'")
    dims = config["dimensions"]
    if not isinstance(dims, dict) or not dims or not all(_text(k) and _text(v) for k, v in dims.items()):
        raise _config_error(path, "'dimensions' must map dimension ids to text labels")
    dims = {str(k): str(v) for k, v in dims.items()}
    raters = config.get("raters") or ["respondent"]
    if not isinstance(raters, list) or not all(_text(r) for r in raters):
        raise _config_error(path, "'raters' must be a list of rater names")
    if len(set(map(str, raters))) != len(raters):
        raise _config_error(path, "'raters' must be distinct")
    if not isinstance(config["items"], list) or not config["items"]:
        raise _config_error(path, "'items' must be a list of items ({id: ..., dimension: ...})")
    items = []
    seen = set()
    for k, raw in enumerate(config["items"]):
        if not isinstance(raw, dict) or "id" not in raw or "dimension" not in raw:
            raise _config_error(path, f"item {k + 1} needs an 'id' and a 'dimension'")
        if not _text(raw["id"]) or not _text(raw["dimension"]):
            raise _config_error(path, f"item {k + 1}: 'id' and 'dimension' must be texts")
        unknown = set(map(str, raw)) - {"id", "dimension", "reverse", "drop", "label"}
        if unknown:
            raise _config_error(path, f"item '{raw['id']}': unknown keys {sorted(unknown)}")
        for flag in ("reverse", "drop"):
            if flag in raw and not isinstance(raw[flag], bool):
                raise _config_error(path, f"item '{raw['id']}': '{flag}' must be true or false, got '{raw[flag]}'")
        if "label" in raw and not _text(raw["label"]):
            raise _config_error(path, f"item '{raw['id']}': 'label' must be a text")
        item = Item(str(raw["id"]).strip(), str(raw["dimension"]), bool(raw.get("reverse", False)),
                    bool(raw.get("drop", False)), str(raw.get("label", "")))
        if item.id in seen:
            raise _config_error(path, f"item '{item.id}' is listed twice")
        if item.dimension not in dims:
            raise _config_error(path, f"item '{item.id}': dimension '{item.dimension}' is not in 'dimensions'")
        if item.id in ADMIN_COLUMNS:
            raise _config_error(path, f"item id '{item.id}' clashes with an administrative column")
        seen.add(item.id)
        items.append(item)
    if sum(not i.drop for i in items) < 2:
        raise _config_error(path, "an instrument needs at least two used items")
    trait = str(config.get("trait", "trait"))
    return Instrument(
        name=str(config["name"]), title=str(config.get("title", config["name"])),
        trait=trait, categories=tuple(cats), category_labels=tuple(str(x) for x in labels),
        score_direction=direction, raters=tuple(str(r) for r in raters),
        dimensions=dims, items=tuple(items),
        source=str(path) if path is not None else "in-memory",
        respondents=str(config.get("respondents", "respondents")),
        more_trait=str(config.get("more_trait", f"have more {trait}")),
    )


def load_instrument(path: str | Path) -> Instrument:
    """Read and validate an instrument YAML file (``DataError`` when it is malformed)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _config_error(path, f"not valid YAML ({err})") from None
    except UnicodeDecodeError as err:
        raise _config_error(path, f"not a text file ({err})") from None
    if config is None:
        raise _config_error(path, "the file is empty")
    return parse_instrument(config, path=path)


def default_instrument(name: str) -> Instrument:
    """One of the shipped defaults: ``'yatchmenoff'`` or ``'wai'``."""
    if name not in DEFAULT_INSTRUMENTS:
        raise ValueError(f"unknown instrument '{name}'; choose from {list(DEFAULT_INSTRUMENTS)}")
    inst = load_instrument(HERE / f"{name}.yaml")
    return Instrument(**{**inst.__dict__, "source": f"default ({name}.yaml)"})


# --------------------------------------------------------------------------------------------
# Item-level answers
# --------------------------------------------------------------------------------------------

def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as text cells; a structural problem (empty file, ragged rows, a repeated
    column name) is a :class:`DataError` naming the file and, where it can, the row."""
    import csv
    import io

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"not a UTF-8 text file ({err})", file=path) from None
    if not text.strip():
        raise DataError("the file is empty (no header and no rows)", file=path)
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as err:
        raise DataError(f"cannot read the file as CSV ({err})", file=path) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]   # blank lines are not rows
    header = [c.strip() for c in rows[0]]
    if any(c == "" for c in header):
        raise DataError(f"the header has an empty column name (column {header.index('') + 1})", file=path)
    seen: set[str] = set()
    for c in header:
        if c in seen:
            raise DataError(f"column '{c}' appears twice in the header", file=path, column=c)
        seen.add(c)
    for k, r in enumerate(rows[1:], start=1):
        if len(r) != len(header):
            what = "fewer" if len(r) < len(header) else "more"
            col = header[len(r)] if len(r) < len(header) else None
            raise DataError(f"the row has {len(r)} fields, {what} than the header's {len(header)} "
                            "(a truncated or misaligned file?)", file=path, row=k, column=col)
    return pd.DataFrame(rows[1:], columns=header, dtype=str)


def read_responses(path: str | Path, instruments: list[Instrument]) -> pd.DataFrame:
    """Read a wide item-level file (CSV or Parquet) and validate it (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as err:   # noqa: BLE001 - any reader failure is bad input
            raise DataError(f"cannot read the file as Parquet ({type(err).__name__}: {err})", file=path) from None
    else:
        frame = _read_csv(path)
    try:
        return validate_responses(frame, instruments)
    except DataError as err:
        raise err.located(path) from None


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype(str).str.strip().isin(["", "NA", "nan", "NaN", "None"])


def _first_row(mask) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def validate_responses(frame: pd.DataFrame, instruments: list[Instrument], *,
                       require_all_items: bool = True) -> pd.DataFrame:
    """Check a wide answer frame against the instruments; return a clean, typed copy.

    Only item columns are required. ``family`` (an id, unique), ``site``, ``arm``
    (``sofs``/``contrast``), ``worker`` and ``competence`` (a number) are optional; those
    present are checked and kept, and the latent regression uses them
    (``models.psychometric_irt.grm_data``). Without ``family``, respondents are named by
    their row number.

    Raises
    ------
    DataError
        Unknown column (an item no instrument knows); a used item of an instrument that is
        missing from the file while other items of the same instrument (and rater) are
        present (a dropped column: mark the item ``drop: true`` in the item key to leave it
        out); blank family, site, arm, worker or competence; a site in both arms; an unknown
        arm; one arm only; a duplicate family; an answer outside an item's categories; a
        file holding none of the instruments' items; a file with no rows.

    ``require_all_items=False`` (in-memory use, e.g. tests of the coding) accepts a frame with
    only some of an instrument's items.
    """
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    dup_cols = pd.Index(frame.columns)[pd.Index(frame.columns).duplicated()]
    if len(dup_cols):
        raise DataError(f"column '{dup_cols[0]}' appears twice", column=str(dup_cols[0]))
    known: dict[str, Instrument] = {}
    for inst in instruments:
        for col in inst.columns():
            known[col] = inst
    for col in frame.columns:
        if col not in ADMIN_COLUMNS and col not in known:
            names = ", ".join(i.name for i in instruments)
            raise DataError(f"unknown item '{col}': not an administrative column ({', '.join(ADMIN_COLUMNS)}) "
                            f"and not an item of the instruments ({names}); check the item key (--instrument*)",
                            column=col)
    present = [c for c in frame.columns if c in known]
    if not present:
        raise DataError("the file holds no item columns of any instrument")
    for inst in instruments:
        for rater in inst.raters:
            used = [inst.column(rater, it.id) for it in inst.used_items]
            if any(c in frame.columns for c in used):
                missing = [c for c in used if c not in frame.columns]
                if missing and require_all_items:
                    raise DataError(f"item '{missing[0]}' of {inst.name} ({inst.source}) is missing from the file "
                                    f"although its other items are there; mark it 'drop: true' in the item key "
                                    "to leave it out", column=missing[0])
    if len(frame) == 0:
        raise DataError("the file has no rows (header only)")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in ("family", "site", "arm", "worker"):
        if col not in frame.columns:
            continue
        blank = _blank(frame[col])
        if blank.any():
            raise DataError(f"missing {col}", row=_first_row(blank), column=col)
        out[col] = frame[col].astype(str).str.strip().to_numpy()
    if "arm" in out:
        out["arm"] = out["arm"].str.lower()
        bad_arm = ~out["arm"].isin(ARMS)
        if bad_arm.any():
            row = _first_row(bad_arm)
            raise DataError(f"arm must be one of {list(ARMS)}, got '{out['arm'].iloc[row - 1]}'", row=row,
                            column="arm")
    if "family" in out:
        dup = out["family"].duplicated()
        if dup.any():
            row = _first_row(dup)
            raise DataError(f"family '{out['family'].iloc[row - 1]}' appears twice", row=row, column="family")
    if "arm" in out and "site" in out:
        arms_per_site = out.groupby("site")["arm"].nunique()
        if (arms_per_site > 1).any():
            site = arms_per_site[arms_per_site > 1].index[0]
            row = _first_row(out["site"] == site)
            raise DataError(f"site '{site}' is listed in both arms; a site is either SofS or contrast",
                            row=row, column="arm")
    if "arm" in out and out["arm"].nunique() < 2:
        raise DataError(f"both arms ({', '.join(ARMS)}) are needed; the file has only '{out['arm'].iloc[0]}' "
                        "(leave the arm column out to fit without an arm effect)", column="arm")
    if "competence" in frame.columns:
        raw = frame["competence"]
        comp = pd.to_numeric(raw.where(~_blank(raw)), errors="coerce")
        bad = comp.isna() | ~np.isfinite(comp.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = _first_row(bad)
            raise DataError(f"competence must be a number, got '{raw.iloc[row - 1]}'", row=row, column="competence")
        out["competence"] = comp.astype(float).to_numpy()
    for col in present:
        inst = known[col]
        raw = frame[col]
        blank = _blank(raw)
        values = pd.to_numeric(raw.where(~blank), errors="coerce")
        num = values.to_numpy(dtype=float, na_value=np.nan)
        bad = (~blank.to_numpy()) & ~np.isin(num, np.asarray(inst.categories, dtype=float))
        if bad.any():
            row = _first_row(bad)
            raise DataError(f"answer '{raw.iloc[row - 1]}' is not a category of {inst.name} "
                            f"(allowed: {', '.join(map(str, inst.categories))}, or blank for missing)",
                            row=row, column=col)
        out[col] = pd.array(np.where(np.isnan(num), pd.NA, num), dtype="Int64")
    return out


def instruments_present(frame: pd.DataFrame, instruments: list[Instrument]) -> list[Instrument]:
    """The instruments with at least one used item column (and one answer) in ``frame``."""
    found = []
    for inst in instruments:
        cols = [c for c in inst.columns(used_only=True) if c in frame.columns]
        if cols and frame[cols].notna().to_numpy().any():
            found.append(inst)
    return found
