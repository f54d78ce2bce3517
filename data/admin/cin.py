"""CIN census extracts (flat CSV) -> child-level re-referral, escalation and assessment frames.

Input: the CIN census as a flat table, one row per event, as LA data tools (for example the
Social Finance / LIIA CIN census pipeline) and research extracts lay it out: a ``Type`` column
naming the event (``CINreferralDate``, ``AssessmentActualStartDate``, ``S47ActualStartDate``,
``CPPstartDate``, ``CINclosureDate``, ...) and the CIN census items as columns. ``--cin`` takes
one file or a folder of files (for example one per census year; a 4-digit folder or file name,
or a ``YEAR`` column, gives the census year, named by the 31 March it ends).

=================================  ===========================================================
column (case-insensitive)          use
=================================  ===========================================================
``LA``                             LA code or name (or a folder named by the LA's code)
``LAchildID``                      the child's ID within the LA
``Type``                           the event this row records (see :data:`codes.CIN_EVENT_TYPES`)
``CINreferralDate``                every row: the referral (CIN episode) the event belongs to
``ReferralNFA``                    referral rows: 1/true if the referral led to no further action
``CINclosureDate``                 referral rows: when the CIN episode closed (empty: still open)
``ReasonForClosure``               referral rows: RC1-RC9 (RC8: closed after assessment, NFA)
``AssessmentActualStartDate``      assessment rows: start
``AssessmentAuthorisationDate``    assessment rows: authorisation (empty: not yet completed)
``CPPstartDate``                   child protection plan rows: start
optional                           ``PersonBirthDate``, ``ExpectedPersonBirthDate``,
                                   ``GenderCurrent``, ``Ethnicity``, ``Disabilities``, ``YEAR``
=================================  ===========================================================

Outcomes (RR1054, 'Likelihood of a re-referral within 6 months' and the text before Table 8):

- population for ``rereferral`` and ``escalation``: referrals closed with no further action,
  i.e. ``ReferralNFA`` true, or closed with reason RC8 ("case closed after assessment, no
  further action"); the index date is the closure date (the referral date when an NFA referral
  has no closure date); ``year`` is the index date's financial year;
- ``rereferral = 1`` when the child's next referral is within 6 calendar months of the index
  date (on or after it; CIN episodes may not overlap, so the next referral cannot be earlier);
- ``escalation = 1`` when there is such a re-referral *and* within 6 months of the re-referral
  date a child protection plan starts or (when SSDA903 data are supplied) the child starts a
  period of care (SSDA903 ``CHILD`` is assumed to be the same LA child ID as ``LAchildID``);
- ``assessment_days``: working days from ``AssessmentActualStartDate`` to
  ``AssessmentAuthorisationDate`` (Monday-Friday less England's bank holidays; a same-day
  assessment is 0), for completed assessments, ``year`` = the start's financial year;
  ``same_day_assessment = 1`` when that is 0 (the report's secondary measure).

Covariates: age band on the index (or assessment start) date from ``PersonBirthDate`` (unborn
children: 0-4; unknown: 'unknown'), sex from ``GenderCurrent``, ethnic group, and disability
('yes' when ``Disabilities`` holds any code other than NONE). ``child_id`` is an integer
pseudonym (not the LA's child ID) shared by one child's records, for models of repeated children.

Dropped (counted, not errors): index referrals whose follow-up window (6 months for
re-referral, 12 for escalation) is not complete by the end of the data; assessments not yet
authorised; LAs not in the role table.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.admin import codes
from data.admin import validation as val
from data.admin.roles import LaRoles
from data.errors import DataError
from data.hashing import hash_file

TABLE = "CIN census"
REQUIRED = ("LAchildID", "Type", "CINreferralDate", "ReferralNFA", "CINclosureDate", "ReasonForClosure",
            "AssessmentActualStartDate", "AssessmentAuthorisationDate", "CPPstartDate")
OPTIONAL = ("LA", "YEAR", "Date", "PersonBirthDate", "ExpectedPersonBirthDate", "GenderCurrent", "Ethnicity",
            "Disabilities", "S47ActualStartDate", "CPPendDate", "DateOfInitialCPC", "CINPlanStartDate",
            "CINPlanEndDate", "ReferralSource", "PrimaryNeedCode", "UPN")
DATE_COLUMNS = ("CINreferralDate", "CINclosureDate", "AssessmentActualStartDate", "AssessmentAuthorisationDate",
                "CPPstartDate", "PersonBirthDate", "ExpectedPersonBirthDate")
CODES = {"LAchildID": (None, False), "Type": (codes.CIN_EVENT_TYPES, False),
         "ReferralNFA": ((*codes.TRUE_VALUES, *codes.FALSE_VALUES), True),
         "ReasonForClosure": (codes.CLOSURE_CODES, True), "GenderCurrent": (tuple(codes.GENDER_CODES), True),
         "Ethnicity": (codes.ETHNIC_CODES, True)}

OUTCOMES = {
    "rereferral": "re-referral within 6 months of a referral closed with no further action",
    "escalation": "re-referral within 6 months leading to a child protection plan or care within 6 months",
    "assessment_days": "assessment duration in working days (England's bank holidays excluded)",
    "same_day_assessment": "assessment completed the day it started (0 working days)",
}
FOLLOW_UP_MONTHS = {"rereferral": 6, "escalation": 12}


@dataclass
class CinData:
    """Validated CIN census events. ``referrals``, ``assessments``, ``plans`` (CPP starts)."""

    referrals: pd.DataFrame
    assessments: pd.DataFrame
    plans: pd.DataFrame
    files: list[str]
    data_end: pd.Timestamp
    data_hash: str
    dropped: val.DropLog = field(default_factory=val.DropLog)
    years: tuple[int, ...] = ()


def read_cin_file(path: Path, root: Path) -> pd.DataFrame:
    """One CIN census file, validated (codes, dates, date order, duplicates)."""
    f = val.match_columns(val.read_raw(path), REQUIRED, OPTIONAL, file=path, table=TABLE)
    la = val.la_for_file(f, path, root, TABLE)
    year = val.year_for_rows(f, path, root, TABLE)
    if f["ReferralNFA"].notna().any():
        f["ReferralNFA"] = f["ReferralNFA"].str.casefold()
    if "Disabilities" in f.columns:
        _check_disabilities(f, path)
    val.check_codes(f, CODES, file=path, table=TABLE)
    val.check_duplicates(f, file=path, table=TABLE, within=["LAchildID", "Type", "CINreferralDate"])
    out = pd.DataFrame({"la_code": la.array, "CHILD": f["LAchildID"].array, "Type": f["Type"].array,
                        "_year": year, "_row": np.arange(1, len(f) + 1)})
    for col in DATE_COLUMNS:
        if col in f.columns:
            out[col] = val.parse_dates(f, col, file=path, table=TABLE, required=(col == "CINreferralDate")).to_numpy()
        else:
            out[col] = pd.Series(pd.NaT, index=f.index, dtype="datetime64[s]").to_numpy()
    out["ReferralNFA"] = f["ReferralNFA"].isin(codes.TRUE_VALUES).to_numpy()
    out["ReasonForClosure"] = f["ReasonForClosure"].astype("str").array
    for col in ("GenderCurrent", "Ethnicity", "Disabilities"):
        out[col] = f[col].astype("str").array if col in f.columns else pd.array([None] * len(f), dtype="str")
    kind = out["Type"].to_numpy()
    for typ, col in (("AssessmentActualStartDate", "AssessmentActualStartDate"), ("CPPstartDate", "CPPstartDate")):
        missing = (kind == typ) & out[col].isna().to_numpy()
        if missing.any():
            raise DataError(f"{TABLE}: a {typ} row without a {col}", file=path, row=val.first_row(missing), column=col)
    ref_rows = kind == "CINreferralDate"
    no_reason = ref_rows & out["CINclosureDate"].notna().to_numpy() & out["ReasonForClosure"].isna().to_numpy()
    if no_reason.any():
        raise DataError(f"{TABLE}: the referral has a closure date but no ReasonForClosure", file=path,
                        row=val.first_row(no_reason), column="ReasonForClosure")
    val.check_order(out, "CINreferralDate", "CINclosureDate", file=path, table=TABLE,
                    what="the CIN episode closes before its referral")
    val.check_order(out, "AssessmentActualStartDate", "AssessmentAuthorisationDate", file=path, table=TABLE,
                    what="the assessment is authorised before it started")
    val.check_order(out, "CINreferralDate", "AssessmentActualStartDate", file=path, table=TABLE,
                    what="the assessment starts before the referral")
    val.check_order(out, "CINreferralDate", "CPPstartDate", file=path, table=TABLE,
                    what="the child protection plan starts before the referral")
    if not np.isnan(year).all():
        val.check_collection_year(out, ("CINreferralDate", "CINclosureDate", "AssessmentActualStartDate",
                                        "AssessmentAuthorisationDate", "CPPstartDate"), year, file=path, table=TABLE,
                                  what="census")
    keyed = out.assign(_y=np.nan_to_num(year, nan=-1))
    for typ, keys, what in _EVENT_KEYS:
        sub = keyed[kind == typ]
        if len(sub):
            pos = np.flatnonzero(kind == typ)
            dup = sub.duplicated(subset=["la_code", "_y", *keys], keep="first").to_numpy()
            if dup.any():
                row = int(pos[np.flatnonzero(dup)[0]]) + 1
                raise DataError(f"{TABLE}: duplicate {what} for child {out['CHILD'].iloc[row - 1]}", file=path,
                                row=row, column=keys[-1])
    return out


_EVENT_KEYS = (("CINreferralDate", ["CHILD", "CINreferralDate"], "referral"),
               ("AssessmentActualStartDate", ["CHILD", "CINreferralDate", "AssessmentActualStartDate"], "assessment"),
               ("CPPstartDate", ["CHILD", "CPPstartDate"], "child protection plan"))


def _check_disabilities(f: pd.DataFrame, path: Path) -> None:
    raw = f["Disabilities"]
    present = raw.notna().to_numpy()
    if not present.any():
        return
    idx, uniq = pd.factorize(raw[present])
    good = np.array([all(t in codes.DISABILITY_CODES for t in re.split(r"[\s,;]+", str(u).upper()) if t) for u in uniq])
    ok = good[idx]
    if not ok.all():
        row = int(np.flatnonzero(present)[np.flatnonzero(~ok)[0]]) + 1
        raise DataError(f"{TABLE}: invalid disability code in {raw.iloc[row - 1]!r}; valid codes: "
                        f"{', '.join(codes.DISABILITY_CODES)}", file=path, row=row, column="Disabilities")


def read_cin(root: Path, *, data_end: pd.Timestamp | None = None) -> CinData:
    """Read, validate and combine the CIN census file(s) at ``root`` (a file or a folder)."""
    root = Path(root)
    paths = val.discover(root, [""])
    if not paths:
        raise DataError("no CIN census files (.csv or .parquet) found", file=root)
    base = root if root.is_dir() else root.parent
    frames = [read_cin_file(p, base) for p in paths]
    files = [str(p) for p in paths]
    dropped = val.DropLog()
    parts = {}
    for typ, keys, what in _EVENT_KEYS:
        sub = [f[f["Type"] == typ].assign(_file=i) for i, f in enumerate(frames)]
        parts[typ] = _combine_events(sub, ["la_code", *keys], files, what, dropped)
    refs = parts["CINreferralDate"]
    refs = _sorted(refs, "CINreferralDate")
    _check_overlaps(refs, files)
    for typ in ("AssessmentActualStartDate", "CPPstartDate"):
        ev = parts[typ]
        m = ev.merge(refs[["la_code", "CHILD", "CINreferralDate"]].assign(_ok=True), how="left",
                     on=["la_code", "CHILD", "CINreferralDate"])
        orphan = m["_ok"].isna().to_numpy()
        if orphan.any():
            p = val.first_in_file_order(m, orphan)
            raise val.located(m, files, p, "CINreferralDate",
                              f"{TABLE}: a {typ} row for child {m['CHILD'].iloc[p]} whose referral "
                              f"({m['CINreferralDate'].iloc[p]:%d/%m/%Y}) has no CINreferralDate row")
    years = sorted({int(y) for f in frames for y in f["_year"].dropna().unique()})
    if data_end is None:
        if years:
            data_end = codes.year_end(max(years))
        else:
            latest = max(pd.Series(pd.concat([f[c] for f in frames for c in DATE_COLUMNS[:5]])).max(),
                         refs["CINreferralDate"].max())
            data_end = codes.next_march_31(latest)
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode())
        digest.update(hash_file(p).encode())
    return CinData(refs, parts["AssessmentActualStartDate"], parts["CPPstartDate"], files, pd.Timestamp(data_end),
                   "sha256:" + digest.hexdigest(), dropped, tuple(years))


def _combine_events(frames: list[pd.DataFrame], key: list[str], files: list[str], what: str,
                    dropped: val.DropLog) -> pd.DataFrame:
    allf = pd.concat(frames, ignore_index=True)
    allf["_y"] = allf["_year"].fillna(-1)
    allf = allf.sort_values(["_y", "_file", "_row"], kind="stable").reset_index(drop=True)
    dup_any = allf.duplicated(subset=key, keep=False).to_numpy()
    if dup_any.any():
        same_year = allf.duplicated(subset=[*key, "_y"], keep="first").to_numpy()
        if same_year.any():
            p = val.first_in_file_order(allf, same_year)
            raise val.located(allf, files, p, key[-1], f"{TABLE}: duplicate {what} for child {allf['CHILD'].iloc[p]} "
                                                       "(in two files for the same census year)")
        n = len(allf)
        allf = allf.drop_duplicates(subset=key, keep="last").reset_index(drop=True)
        dropped.add(f"{TABLE} {what}s", "copies of a record repeated in a later census year "
                                        "(each record is kept once, in its latest version)", n - len(allf))
    return allf.drop(columns="_y")


def _sorted(frame: pd.DataFrame, date: str) -> pd.DataFrame:
    key = pd.factorize(frame["la_code"].astype(str) + "\x1f" + frame["CHILD"].astype(str))[0]
    order = np.lexsort((frame[date].to_numpy(), key))
    out = frame.iloc[order].reset_index(drop=True)
    out["_child"] = key[order]
    return out


def _check_overlaps(refs: pd.DataFrame, files: list[str]) -> None:
    """A child's CIN episodes may not overlap: a referral starts on or after the previous closure."""
    child = refs["_child"].to_numpy()
    same = np.r_[False, child[1:] == child[:-1]]
    prev_close = np.r_[np.datetime64("NaT", "s"), refs["CINclosureDate"].to_numpy()[:-1]]
    start = refs["CINreferralDate"].to_numpy()
    bad = same & (np.isnat(prev_close) | (prev_close > start))
    if bad.any():
        p = val.first_in_file_order(refs, bad)
        prev = refs.iloc[p - 1]
        how = "is still open (no CINclosureDate)" if pd.isna(prev["CINclosureDate"]) else \
            f"closes {prev['CINclosureDate']:%d/%m/%Y}"
        raise val.located(refs, files, p, "CINreferralDate",
                          f"{TABLE}: overlapping CIN episodes for child {refs['CHILD'].iloc[p]}: this referral is dated "
                          f"{refs['CINreferralDate'].iloc[p]:%d/%m/%Y} but the previous one ({files[int(prev['_file'])]} "
                          f"row {int(prev['_row'])}) {how}")


# ------------------------------------------------------------------ outcomes


def _covariates(frame: pd.DataFrame, on: pd.Series) -> dict[str, np.ndarray]:
    dob = frame["PersonBirthDate"]
    unborn = dob.isna() & frame["ExpectedPersonBirthDate"].notna()
    band = codes.age_band(dob, on)
    band = np.where(unborn.to_numpy(), "0-4", band)
    idx, uniq = pd.factorize(frame["Disabilities"])
    coded = np.array([str(u).strip().upper() != "NONE" for u in uniq] + [False])
    disabled = coded[idx]
    return {
        "age_band": band,
        "sex": codes.map_values(frame["GenderCurrent"], codes.GENDER_CODES, "unknown"),
        "ethnicity": codes.map_values(frame["Ethnicity"], codes.ETHNIC_GROUP, "Unknown"),
        "disability": np.where(disabled, "yes", "no"),
    }


def looked_after_starts(ssda903_data) -> pd.DataFrame:
    """Dates children started to be looked after (SSDA903 periods of care other than short breaks)."""
    from data.admin.ssda903 import periods_of_care

    per = periods_of_care(ssda903_data)
    per = per[~per["short_breaks_only"].to_numpy()]
    return per[["la_code", "CHILD", "start"]].rename(columns={"start": "event"})


def _first_event_after(base: pd.DataFrame, date_col: str, events: pd.DataFrame) -> np.ndarray:
    """For each row of ``base``: the first event date on or after ``base[date_col]`` for the same child."""
    if events.empty:
        return np.full(len(base), np.datetime64("NaT", "s"), dtype="datetime64[s]")
    left = base[["la_code", "CHILD", date_col]].reset_index().rename(columns={date_col: "when"})
    left["_k"] = left["la_code"].astype(str) + "\x1f" + left["CHILD"].astype(str)
    right = events[["la_code", "CHILD", "event"]].copy()
    right["_k"] = right["la_code"].astype(str) + "\x1f" + right["CHILD"].astype(str)
    right["when"] = right["event"]
    ok = left["when"].notna().to_numpy()
    out = np.full(len(base), np.datetime64("NaT", "s"), dtype="datetime64[s]")
    if not ok.any():
        return out
    l = left[ok].sort_values("when")
    r = right.sort_values("when")[["_k", "when", "event"]]
    l = l.astype({"when": "datetime64[s]"})
    r = r.astype({"when": "datetime64[s]", "event": "datetime64[s]"})
    m = pd.merge_asof(l, r, on="when", by="_k", direction="forward")
    out[m["index"].to_numpy()] = m["event"].to_numpy(dtype="datetime64[s]")
    return out


def cin_frame(data: CinData, roles: LaRoles, outcome: str, *, looked_after: pd.DataFrame | None = None,
              window_months: int = 6) -> tuple[pd.DataFrame, val.DropLog]:
    """Child-level rows for ``outcome`` (one of :data:`OUTCOMES`) in the ``cells_from_frame`` layout."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown CIN outcome {outcome!r}; choose one of {list(OUTCOMES)}")
    dropped = val.DropLog()
    dropped.extend(data.dropped)
    months = pd.DateOffset(months=window_months)
    if outcome in ("assessment_days", "same_day_assessment"):
        a = data.assessments.merge(
            data.referrals[["la_code", "CHILD", "CINreferralDate", "PersonBirthDate", "ExpectedPersonBirthDate",
                            "GenderCurrent", "Ethnicity", "Disabilities"]],
            on=["la_code", "CHILD", "CINreferralDate"], how="left", suffixes=("_a", ""))
        open_ = a["AssessmentAuthorisationDate"].isna().to_numpy()
        dropped.add(f"{TABLE} assessments", f"not authorised by the end of the data ({data.data_end:%d/%m/%Y})",
                    int(open_.sum()), "assessments")
        base = a[~open_].reset_index(drop=True)
        base["_child"] = pd.factorize(base["la_code"].astype(str) + "\x1f" + base["CHILD"].astype(str))[0]
        on = base["AssessmentActualStartDate"]
        days = codes.working_days(on, base["AssessmentAuthorisationDate"]).astype(np.int64)
        value = days if outcome == "assessment_days" else (days == 0).astype(np.int8)
        unit, table = "assessments", f"{TABLE} assessments"
    else:
        r = data.referrals
        index = (r["ReferralNFA"].to_numpy(dtype=bool)
                 | r["ReasonForClosure"].isin(codes.NFA_CLOSURE_CODES).to_numpy())
        when = r["CINclosureDate"].where(r["CINclosureDate"].notna(), r["CINreferralDate"])
        child = r["_child"].to_numpy()
        nxt = np.r_[r["CINreferralDate"].to_numpy()[1:], np.datetime64("NaT", "s")]
        same_next = np.r_[child[1:] == child[:-1], False]
        nxt = np.where(same_next, nxt, np.datetime64("NaT", "s"))
        base = r[index].assign(_index=when[index].to_numpy(), _next=nxt[index]).reset_index(drop=True)
        unit, table = "NFA referrals", f"{TABLE} referrals closed NFA"
        follow = pd.DateOffset(months=FOLLOW_UP_MONTHS[outcome])
        censored = np.asarray(pd.DatetimeIndex(base["_index"]) + follow > data.data_end)
        dropped.add(table, f"{FOLLOW_UP_MONTHS[outcome]}-month follow-up not complete by the end of the data "
                           f"({data.data_end:%d/%m/%Y})", int(censored.sum()), unit)
        base = base[~censored].reset_index(drop=True)
        on = base["_index"]
        limit = (pd.DatetimeIndex(base["_index"]) + months).to_numpy()
        nxt_b = base["_next"].to_numpy()
        rereferred = ~np.isnat(nxt_b) & (nxt_b <= limit)
        if outcome == "rereferral":
            value = rereferred.astype(np.int8)
        else:
            plans = data.plans[["la_code", "CHILD", "CPPstartDate"]].rename(columns={"CPPstartDate": "event"})
            events = plans if looked_after is None else pd.concat([plans, looked_after], ignore_index=True)
            first = _first_event_after(base, "_next", events)
            esc_limit = (pd.DatetimeIndex(base["_next"]) + months).to_numpy()
            value = (rereferred & ~np.isnat(first) & (first <= esc_limit)).astype(np.int8)
    design = roles.design()
    known = base["la_code"].isin(design["la_code"]).to_numpy()
    dropped.add(table, "LA not in the LA role table", int((~known).sum()), unit)
    base, value, on = base[known].reset_index(drop=True), np.asarray(value)[known], on[known].reset_index(drop=True)
    m = base[["la_code"]].merge(design, on="la_code", how="left")
    cov = _covariates(base, on)
    frame = pd.DataFrame({
        "la": m["la"].to_numpy(), "year": codes.financial_year(on).astype(int), "arm": m["arm"].to_numpy(),
        "adoption_year": m["adoption_year"].to_numpy(dtype=float),
        "settling_years": m["settling_years"].to_numpy(dtype=int), **cov, outcome: value,
        "child_id": base["_child"].to_numpy(dtype=np.int64),   # a pseudonym shared by one child's records
    })
    absent = sorted(set(design["la_code"]) - set(base["la_code"].unique()))
    if absent:
        dropped.add("LA role table", "LAs with no records for this outcome in the CIN data: " + ", ".join(absent),
                    len(absent), "LAs")
    return frame, dropped


def load_cin_outcome(path: Path, roles: LaRoles, outcome: str, *, ssda903_root: Path | None = None,
                     data_end: pd.Timestamp | None = None) -> tuple[pd.DataFrame, str, str, val.DropLog]:
    """CIN census file(s) -> (child-level frame, source label, data hash, dropped records)."""
    data = read_cin(path, data_end=data_end)
    looked_after, extra_hash = None, ""
    if ssda903_root is not None and outcome == "escalation":
        from data.admin.ssda903 import read_ssda903

        s903 = read_ssda903(ssda903_root)
        looked_after, extra_hash = looked_after_starts(s903), s903.data_hash
    frame, dropped = cin_frame(data, roles, outcome, looked_after=looked_after)
    years = f", census years {min(data.years)}-{max(data.years)}" if data.years else ""
    label = (f"CIN census extract {path} ({len(data.files)} files, {data.referrals['la_code'].nunique()} LAs{years}"
             f"{'; care starts from SSDA903 ' + str(ssda903_root) if looked_after is not None else ''}; "
             f"LA roles: {roles.source})")
    digest = hashlib.sha256((data.data_hash + extra_hash + roles.data_hash).encode()).hexdigest()
    return frame, label, "sha256:" + digest, dropped
