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


def parse_instrument(config: dict[str, Any], *, path: Path | None = None) -> Instrument:
    """Validate an instrument configuration (a dict, as read from YAML)."""
    if not isinstance(config, dict):
        raise _config_error(path, "expected a mapping at the top level")
    for key in ("name", "categories", "dimensions", "items", "score_direction"):
        if key not in config:
            raise _config_error(path, f"missing key '{key}'")
    cats = config["categories"]
    if (not isinstance(cats, list) or len(cats) < 2
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in cats)
            or sorted(set(cats)) != cats):
        raise _config_error(path, "'categories' must be a list of at least two increasing integer codes")
    labels = config.get("category_labels") or [str(c) for c in cats]
    if len(labels) != len(cats):
        raise _config_error(path, "'category_labels' must have one label per category")
    direction = config["score_direction"]
    if direction not in SCORE_DIRECTIONS:
        raise _config_error(path, f"'score_direction' must be one of {list(SCORE_DIRECTIONS)}, got '{direction}'")
    dims = config["dimensions"]
    if not isinstance(dims, dict) or not dims:
        raise _config_error(path, "'dimensions' must map dimension ids to labels")
    raters = config.get("raters") or ["respondent"]
    if len(set(raters)) != len(raters):
        raise _config_error(path, "'raters' must be distinct")
    items = []
    seen = set()
    for k, raw in enumerate(config["items"] or []):
        if not isinstance(raw, dict) or "id" not in raw or "dimension" not in raw:
            raise _config_error(path, f"item {k + 1} needs an 'id' and a 'dimension'")
        unknown = set(raw) - {"id", "dimension", "reverse", "drop", "label"}
        if unknown:
            raise _config_error(path, f"item '{raw['id']}': unknown keys {sorted(unknown)}")
        item = Item(str(raw["id"]), str(raw["dimension"]), bool(raw.get("reverse", False)),
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
    return Instrument(
        name=str(config["name"]), title=str(config.get("title", config["name"])),
        trait=str(config.get("trait", "trait")), categories=tuple(cats), category_labels=tuple(labels),
        score_direction=direction, raters=tuple(str(r) for r in raters),
        dimensions={str(k): str(v) for k, v in dims.items()}, items=tuple(items),
        source=str(path) if path is not None else "in-memory",
    )


def load_instrument(path: str | Path) -> Instrument:
    """Read and validate an instrument YAML file (``DataError`` when it is malformed)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _config_error(path, f"not valid YAML ({err})") from None
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

def read_responses(path: str | Path, instruments: list[Instrument]) -> pd.DataFrame:
    """Read a wide item-level file (CSV or Parquet) and validate it (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the file ({err})", file=path) from None
    try:
        return validate_responses(frame, instruments)
    except DataError as err:
        raise err.located(path) from None


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype(str).str.strip().isin(["", "NA", "nan", "NaN", "None"])


def validate_responses(frame: pd.DataFrame, instruments: list[Instrument]) -> pd.DataFrame:
    """Check a wide answer frame against the instruments; return a clean, typed copy.

    Raises
    ------
    DataError
        Missing administrative column; unknown column (an item no instrument knows); blank
        family, site, arm, worker or competence; a site in both arms; an unknown arm; a
        duplicate family; an answer outside an item's categories; a file holding none of the
        instruments' items; only one arm present.
    """
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in ADMIN_COLUMNS:
        if col not in frame.columns:
            raise DataError(f"required column '{col}' is missing (columns: {', '.join(ADMIN_COLUMNS)} "
                            "and the item columns)", column=col)
    known: dict[str, Instrument] = {}
    for inst in instruments:
        for col in inst.columns():
            known[col] = inst
    for col in frame.columns:
        if col not in ADMIN_COLUMNS and col not in known:
            names = ", ".join(i.name for i in instruments)
            raise DataError(f"unknown item '{col}': not an administrative column and not an item of "
                            f"the instruments ({names}); check the item key (--instrument-*)", column=col)
    if len(frame) == 0:
        raise DataError("the file has no rows")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in ("family", "site", "arm", "worker"):
        blank = _blank(frame[col])
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
            raise DataError(f"missing {col}", row=row, column=col)
        out[col] = frame[col].astype(str).str.strip()
    out["arm"] = out["arm"].str.lower()
    bad_arm = ~out["arm"].isin(ARMS)
    if bad_arm.any():
        row = int(np.flatnonzero(bad_arm.to_numpy())[0]) + 1
        raise DataError(f"arm must be one of {list(ARMS)}, got '{out['arm'].iloc[row - 1]}'", row=row, column="arm")
    dup = out["family"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise DataError(f"family '{out['family'].iloc[row - 1]}' appears twice", row=row, column="family")
    arms_per_site = out.groupby("site")["arm"].nunique()
    if (arms_per_site > 1).any():
        site = arms_per_site[arms_per_site > 1].index[0]
        row = int(np.flatnonzero((out["site"] == site).to_numpy())[0]) + 1
        raise DataError(f"site '{site}' is listed in both arms; a site is either SofS or contrast",
                        row=row, column="arm")
    if out["arm"].nunique() < 2:
        raise DataError(f"both arms ({', '.join(ARMS)}) are needed; the file has only '{out['arm'].iloc[0]}'",
                        column="arm")
    comp = pd.to_numeric(frame["competence"].where(~_blank(frame["competence"])), errors="coerce")
    bad = comp.isna() | ~np.isfinite(comp.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise DataError(f"competence must be a number, got '{frame['competence'].iloc[row - 1]}'",
                        row=row, column="competence")
    out["competence"] = comp.astype(float).to_numpy()
    present = [c for c in frame.columns if c in known]
    if not present:
        raise DataError("the file holds no item columns of any instrument")
    for col in present:
        inst = known[col]
        raw = frame[col]
        blank = _blank(raw)
        values = pd.to_numeric(raw.where(~blank), errors="coerce")
        num = values.to_numpy(dtype=float, na_value=np.nan)
        bad = (~blank.to_numpy()) & ~np.isin(num, np.asarray(inst.categories, dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
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
