"""SSDA903 (children looked after) extracts -> the child-level kinship frame for the DiD.

Input: the DfE SSDA903 *header* table (CHILD, SEX, DOB, ETHNIC, ...) and *episodes* table
(CHILD, DECOM, RNE, LS, CIN, PLACE, PLACE_PROVIDER, DEC, REC, ...), for one or several LAs, as
CSV or Parquet, laid out either

- one folder per collection year: ``DIR/2015/header.csv``, ``DIR/2015/episodes.csv``, ... (a
  year folder is named by the year its collection ends: ``2015`` = 1 April 2014 - 31 March 2015),
  optionally one sub-folder per LA: ``DIR/2015/304/episodes.csv``; or
- one file per table across years: ``DIR/header.csv``, ``DIR/episodes.csv`` (optionally with a
  ``YEAR`` column giving each row's collection year).

File names must contain ``header`` or ``episode`` (other SSDA903 tables are ignored). Each row's
LA comes from an ``LA`` column (old 3-digit code, new E-code or name) or, failing that, from a
folder named by the LA's code. An episode open at the end of one collection year appears again
in the next year's return; the latest year's version of each (LA, CHILD, DECOM) is kept.

Kinship outcome (:class:`KinshipDefinition`, following RR1054, 'Likelihood of kinship care
compared with non-kinship care' and its note that the analysis "took into account the first 12
months of a child's period of care, and consequently only considered any placements while a
child was being looked after, and Special Guardianship Orders within 12 months of a child
beginning a period of care"):

- unit: a period of care, i.e. a run of contiguous episodes beginning with RNE = S (a gap
  between one episode's DEC and the next DECOM also starts a new period);
- ``kinship = 1`` if any episode starting in the first 12 months of the period has PLACE U1, U2
  or U3 (foster placement with a relative or friend), or the period ends within 12 months with
  REC E43-E48 (a special guardianship order; E43/E44 up to 2015-16, E45-E48 from 2016-17);
  otherwise 0 (non-kinship care);
- ``year``: the financial year in which the period began; covariates: age band at the start,
  sex, ethnic group (SSDA903 records no disability, so there is no disability covariate);
  ``child_id``: an integer pseudonym (not the LA's child ID) shared by one child's periods.

Dropped (counted in the summary, not errors): periods that began before the data window, or
whose first episode in the data is not a start (RNE != S); periods made only of short breaks
(LS V3/V4); periods whose 12-month window is not complete by the end of the data; LAs that
are not in the role table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.admin import codes
from data.admin import validation as val
from data.admin.roles import LaRoles
from data.errors import DataError
from data.hashing import hash_file

HEADER = "SSDA903 header"
EPISODES = "SSDA903 episodes"
HEADER_REQUIRED = ("CHILD", "SEX", "DOB", "ETHNIC")
HEADER_OPTIONAL = ("UPN", "MOTHER", "MC_DOB", "LA", "YEAR")
EPISODE_REQUIRED = ("CHILD", "DECOM", "RNE", "LS", "PLACE", "DEC", "REC")
EPISODE_OPTIONAL = ("CIN", "PLACE_PROVIDER", "REASON_PLACE_CHANGE", "HOME_POST", "PL_POST", "URN", "LA", "YEAR")

HEADER_CODES = {"CHILD": (None, False), "SEX": (tuple(codes.SEX_CODES), False),
                "ETHNIC": (codes.ETHNIC_CODES, False)}
EPISODE_CODES = {"CHILD": (None, False), "RNE": (codes.RNE_CODES, False), "LS": (codes.LS_CODES, False),
                 "CIN": (codes.CIN_NEED_CODES, True), "PLACE": (codes.PLACE_CODES, False),
                 "PLACE_PROVIDER": (codes.PLACE_PROVIDER_CODES, True), "REC": (codes.REC_CODES, True)}


@dataclass(frozen=True)
class KinshipDefinition:
    """What counts as kinship care (defaults: the report's definition; see module docstring)."""

    window_months: int = 12
    kinship_placements: tuple[str, ...] = codes.KINSHIP_PLACEMENTS
    sgo_codes: tuple[str, ...] = codes.SGO_CODES
    exclude_short_breaks: bool = True
    first_period_only: bool = False


@dataclass
class Ssda903Data:
    """Validated, de-duplicated SSDA903 tables (dates parsed; ``la_code`` = old 3-digit code)."""

    header: pd.DataFrame
    episodes: pd.DataFrame
    files: list[str]
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    data_hash: str
    dropped: val.DropLog = field(default_factory=val.DropLog)
    years: tuple[int, ...] = ()


# ------------------------------------------------------------------ reading one file


def read_header(path: Path, root: Path) -> pd.DataFrame:
    f = val.match_columns(val.read_raw(path), HEADER_REQUIRED, HEADER_OPTIONAL, file=path, table=HEADER)
    la = val.la_for_file(f, path, root, HEADER)
    year = val.year_for_rows(f, path, root, HEADER)
    val.check_codes(f, HEADER_CODES, file=path, table=HEADER)
    dob = val.parse_dates(f, "DOB", file=path, table=HEADER, required=True)
    out = pd.DataFrame({"la_code": la.array, "CHILD": f["CHILD"].array, "SEX": f["SEX"].array,
                        "DOB": dob.to_numpy(), "ETHNIC": f["ETHNIC"].array, "_year": year})
    val.check_duplicates(f.assign(_la=la.array), file=path, table=HEADER, within=["CHILD"])
    by_year = out.assign(_y=np.nan_to_num(year, nan=-1))
    val.check_duplicates(by_year, keys=["la_code", "_y", "CHILD"], file=path, table=HEADER, what="child")
    return out


def read_episodes(path: Path, root: Path) -> pd.DataFrame:
    f = val.match_columns(val.read_raw(path), EPISODE_REQUIRED, EPISODE_OPTIONAL, file=path, table=EPISODES)
    la = val.la_for_file(f, path, root, EPISODES)
    year = val.year_for_rows(f, path, root, EPISODES)
    val.check_codes(f, EPISODE_CODES, file=path, table=EPISODES)
    decom = val.parse_dates(f, "DECOM", file=path, table=EPISODES, required=True)
    dec = val.parse_dates(f, "DEC", file=path, table=EPISODES)
    out = pd.DataFrame({"la_code": la.array, "CHILD": f["CHILD"].array, "DECOM": decom.to_numpy(),
                        "RNE": f["RNE"].array, "LS": f["LS"].array, "PLACE": f["PLACE"].array,
                        "DEC": dec.to_numpy(), "REC": f["REC"].astype("str").array, "_year": year})
    val.check_order(out, "DECOM", "DEC", file=path, table=EPISODES, what="the episode ends before it starts")
    no_rec = (out["DEC"].notna() & out["REC"].isna()).to_numpy()
    if no_rec.any():
        raise DataError(f"{EPISODES}: the episode has an end date (DEC) but no reason it ceased (REC)",
                        file=path, row=val.first_row(no_rec), column="REC")
    no_dec = (out["DEC"].isna() & out["REC"].notna()).to_numpy()
    if no_dec.any():
        raise DataError(f"{EPISODES}: a reason the episode ceased (REC) but no end date (DEC)",
                        file=path, row=val.first_row(no_dec), column="DEC")
    if not np.isnan(year).all():
        val.check_collection_year(out, ("DECOM", "DEC"), year, file=path, table=EPISODES, what="collection")
    val.check_duplicates(f.assign(_la=la.array), file=path, table=EPISODES, within=["CHILD", "DECOM"])
    by_year = out.assign(_y=np.nan_to_num(year, nan=-1))
    val.check_duplicates(by_year, keys=["la_code", "_y", "CHILD", "DECOM"], file=path, table=EPISODES,
                         what="episode (same child and start date)")
    return out


# ------------------------------------------------------------------ combining files


def read_ssda903(root: Path, *, data_start: pd.Timestamp | None = None,
                 data_end: pd.Timestamp | None = None) -> Ssda903Data:
    """Read, validate and combine every SSDA903 header and episodes file under ``root``.

    ``data_end`` (default: 31 March of the last collection year, or the 31 March on or after the
    latest date in the data) is when follow-up stops; ``data_start`` (default: 1 April starting
    the first collection year, or the earliest start in the data) is when observation begins.
    """
    root = Path(root)
    paths = val.discover(root, ["header", "episode"])
    heads = [p for p in paths if "header" in p.stem.casefold()]
    eps = [p for p in paths if "episode" in p.stem.casefold()]
    if not eps:
        raise DataError("no SSDA903 episodes file (a .csv/.parquet whose name contains 'episode')", file=root)
    if not heads:
        raise DataError("no SSDA903 header file (a .csv/.parquet whose name contains 'header')", file=root)
    dropped = val.DropLog()
    head_files = [str(p) for p in heads]
    ep_files = [str(p) for p in eps]
    header = val.combine_files([read_header(p, root) for p in heads], ["la_code", "CHILD"], head_files, HEADER,
                      "CHILD", dropped)
    episodes = val.combine_files([read_episodes(p, root) for p in eps], ["la_code", "CHILD", "DECOM"], ep_files,
                        EPISODES, "DECOM", dropped)
    episodes = _sorted_by_child(episodes)
    _check_overlaps(episodes, ep_files)
    _check_header(episodes, header, ep_files, head_files)

    years = sorted({int(y) for y in episodes["_year"].dropna().unique()})
    if data_end is None:
        if years:
            data_end = codes.year_end(max(years))
        else:
            latest = max(episodes["DECOM"].max(), episodes["DEC"].max())
            data_end = codes.next_march_31(latest)
    if data_start is None:
        if years:
            data_start = pd.Timestamp(min(years) - 1, 4, 1)
        else:
            data_start = episodes.loc[episodes["RNE"] == "S", "DECOM"].min()
            data_start = episodes["DECOM"].min() if pd.isna(data_start) else data_start
    digest = hashlib.sha256()
    for p in sorted(paths, key=lambda q: str(q.relative_to(root)) if root.is_dir() else q.name):
        digest.update(str(p.relative_to(root) if root.is_dir() else p.name).encode())
        digest.update(hash_file(p).encode())
    return Ssda903Data(header, episodes, [*head_files, *ep_files], pd.Timestamp(data_start),
                       pd.Timestamp(data_end), "sha256:" + digest.hexdigest(), dropped, tuple(years))


def _sorted_by_child(episodes: pd.DataFrame) -> pd.DataFrame:
    key = pd.factorize(episodes["la_code"].astype(str) + "\x1f" + episodes["CHILD"].astype(str))[0]
    order = np.lexsort((episodes["DECOM"].to_numpy(), key))
    out = episodes.iloc[order].reset_index(drop=True)
    out["_child"] = key[order]
    return out


def _check_overlaps(ep: pd.DataFrame, files: list[str]) -> None:
    """A child's episodes may not overlap: each starts on or after the previous one ended."""
    same = np.r_[False, ep["_child"].to_numpy()[1:] == ep["_child"].to_numpy()[:-1]]
    prev_dec = np.r_[np.datetime64("NaT", "s"), ep["DEC"].to_numpy()[:-1]]
    decom = ep["DECOM"].to_numpy()
    prev_open = np.isnat(prev_dec)
    bad = same & (prev_open | (prev_dec > decom))
    if bad.any():
        p = val.first_in_file_order(ep, bad)
        prev = ep.iloc[p - 1]
        how = "is still open (no DEC)" if pd.isna(prev["DEC"]) else f"ends {prev['DEC']:%d/%m/%Y}"
        raise val.located(ep, files, p, "DECOM",
                          f"{EPISODES}: overlapping episodes for child {ep['CHILD'].iloc[p]}: this episode starts "
                          f"{ep['DECOM'].iloc[p]:%d/%m/%Y} but the one before it ({files[int(prev['_file'])]} row "
                          f"{int(prev['_row'])}) {how}")


def _check_header(ep: pd.DataFrame, header: pd.DataFrame, ep_files: list[str], head_files: list[str]) -> None:
    first = ep.drop_duplicates("_child", keep="first")[["la_code", "CHILD", "DECOM", "_file", "_row"]]
    m = first.merge(header[["la_code", "CHILD", "DOB", "_file", "_row"]], on=["la_code", "CHILD"], how="left",
                    suffixes=("", "_h"), indicator=True)
    missing = (m["_merge"] == "left_only").to_numpy()
    if missing.any():
        p = val.first_in_file_order(m, missing)
        raise val.located(m, ep_files, p, "CHILD",
                          f"{EPISODES}: child {m['CHILD'].iloc[p]} (LA {m['la_code'].iloc[p]}) has episodes but no "
                          "row in any header file")
    late = (m["DOB"] > m["DECOM"]).to_numpy()
    if late.any():
        p = val.first_in_file_order(m.rename(columns={"_file": "_fe", "_row": "_re", "_file_h": "_file",
                                                      "_row_h": "_row"}), late)
        rec = m.iloc[p]
        raise DataError(f"{HEADER}: impossible dates: date of birth {rec['DOB']:%d/%m/%Y} is after care began "
                        f"({rec['DECOM']:%d/%m/%Y}, {ep_files[int(rec['_file'])]} row {int(rec['_row'])})",
                        file=head_files[int(rec["_file_h"])], row=int(rec["_row_h"]), column="DOB")


# ------------------------------------------------------------------ periods of care and the outcome


def periods_of_care(data: Ssda903Data, definition: KinshipDefinition = KinshipDefinition()) -> pd.DataFrame:
    """One row per period of care: la_code, CHILD, start, first RNE, whether it is all short
    breaks, and the kinship indicator over its first ``window_months`` months."""
    ep = data.episodes
    child = ep["_child"].to_numpy()
    decom = ep["DECOM"].to_numpy()
    dec = ep["DEC"].to_numpy()
    same = np.r_[False, child[1:] == child[:-1]]
    prev_dec = np.r_[np.datetime64("NaT", "s"), dec[:-1]]
    new = ~same | (ep["RNE"].to_numpy() == "S") | (prev_dec != decom)
    starts = np.flatnonzero(new)
    period = np.cumsum(new) - 1
    start = decom[starts]
    window_end = (pd.DatetimeIndex(start) + pd.DateOffset(months=definition.window_months)).to_numpy()
    w = window_end[period]
    kin_place = ep["PLACE"].isin(definition.kinship_placements).to_numpy() & (decom < w)
    sgo = ep["REC"].isin(definition.sgo_codes).to_numpy() & (dec < w)
    short = ep["LS"].isin(codes.SHORT_BREAK_LS).to_numpy()
    first_of_child = ~same[starts]
    return pd.DataFrame({
        "la_code": ep["la_code"].to_numpy()[starts],
        "CHILD": ep["CHILD"].to_numpy()[starts],
        "_child": child[starts],
        "start": start,
        "window_end": window_end,
        "first_rne": ep["RNE"].to_numpy()[starts],
        "first_in_data": first_of_child,
        "short_breaks_only": np.logical_and.reduceat(short, starts),
        "kinship": np.logical_or.reduceat(kin_place | sgo, starts).astype(np.int8),
    })


def kinship_frame(data: Ssda903Data, roles: LaRoles, definition: KinshipDefinition = KinshipDefinition(),
                  outcome: str = "kinship") -> tuple[pd.DataFrame, val.DropLog]:
    """Child-level rows in the :func:`data.did_input.cells_from_frame` layout, and what was dropped."""
    dropped = val.DropLog()
    dropped.extend(data.dropped)
    per = periods_of_care(data, definition)
    unit = "periods of care"
    table = "SSDA903 periods of care"

    def drop(mask: np.ndarray, reason: str) -> None:
        nonlocal per
        dropped.add(table, reason, int(mask.sum()), unit)
        per = per[~mask]

    drop((per["first_in_data"] & (per["first_rne"] != "S")).to_numpy(),
         "began before the data: the child's first episode in the data is not the start of a period (RNE != S)")
    drop((per["start"] < data.data_start).to_numpy(),
         f"began before the data window (before {data.data_start:%d/%m/%Y})")
    if definition.exclude_short_breaks:
        drop(per["short_breaks_only"].to_numpy(), "short breaks only (legal status V3/V4)")
    drop((per["window_end"] > data.data_end + pd.Timedelta(days=1)).to_numpy(),
         f"first {definition.window_months} months not complete by the end of the data ({data.data_end:%d/%m/%Y})")
    if definition.first_period_only:
        drop(per.duplicated("_child", keep="first").to_numpy(), "not the child's first period of care in the data")
    design = roles.design()
    known = per["la_code"].isin(design["la_code"]).to_numpy()
    drop(~known, "LA not in the LA role table")
    head = data.header[["la_code", "CHILD", "SEX", "DOB", "ETHNIC"]]
    m = per.merge(head, on=["la_code", "CHILD"], how="left").merge(design, on="la_code", how="left")
    frame = pd.DataFrame({
        "la": m["la"].to_numpy(),
        "year": codes.financial_year(m["start"]).astype(int),
        "arm": m["arm"].to_numpy(),
        "adoption_year": m["adoption_year"].to_numpy(dtype=float),
        "settling_years": m["settling_years"].to_numpy(dtype=int),
        "age_band": codes.age_band(m["DOB"], m["start"]),
        "sex": codes.map_values(m["SEX"], codes.SEX_CODES),
        "ethnicity": codes.map_values(m["ETHNIC"], codes.ETHNIC_GROUP),
        outcome: m["kinship"].to_numpy(dtype=np.int8),
        "child_id": m["_child"].to_numpy(dtype=np.int64),   # a pseudonym: the same child's periods share it
    })
    absent = sorted(set(design["la_code"]) - set(per["la_code"].unique()))
    if absent:
        dropped.add("LA role table", "LAs with no periods of care in the SSDA903 data: " + ", ".join(absent),
                    len(absent), "LAs")
    return frame, dropped


def load_kinship(root: Path, roles: LaRoles, *, definition: KinshipDefinition = KinshipDefinition(),
                 outcome: str = "kinship", data_end: pd.Timestamp | None = None,
                 data_start: pd.Timestamp | None = None) -> tuple[pd.DataFrame, str, str, val.DropLog]:
    """SSDA903 files -> (child-level frame, source label, data hash, dropped records)."""
    data = read_ssda903(root, data_start=data_start, data_end=data_end)
    frame, dropped = kinship_frame(data, roles, definition, outcome)
    years = f", collection years {min(data.years)}-{max(data.years)}" if data.years else ""
    label = (f"SSDA903 extract {root} ({len(data.files)} files, {data.episodes['la_code'].nunique()} LAs{years}; "
             f"LA roles: {roles.source})")
    digest = hashlib.sha256((data.data_hash + roles.data_hash).encode()).hexdigest()
    return frame, label, "sha256:" + digest, dropped
