"""Synthetic SSDA903 and CIN census files with known truth, so raw files -> posterior is testable.

:func:`write_ssda903` turns child-level records from :func:`data.synthetic.simulate_did_study`
(one row per child entering care: la, year, covariates, ``kinship``) into SSDA903 header and
episodes files whose derived kinship outcome is exactly the simulated one: each child gets a
period of care starting in its financial year, 1-6 contiguous episodes, and either a placement
with a relative or friend (U1-U3) in the first 12 months or a special guardianship order
ending the period within 12 months (kinship = 1), or neither (kinship = 0; kin placements and
SGOs after the first 12 months are generated to exercise the window). Extra records that the
loader must drop are added on request (periods that began before the data, short breaks, an
LA outside the role table).

:func:`simulate_cin_study` and :func:`write_cin` do the same for the CIN census: index
referrals closed with no further action (at referral, or after an assessment with reason RC8),
re-referrals within 6 months or later, child protection plans within 6 months of a re-referral
or later, and assessments whose working-day durations are known.

Files are written as the DfE lays them out (dd/mm/yyyy dates) in one folder per collection
year (named by the 31 March it ends; records open across a year end repeat in the next year's
return, with the end date blank in the earlier one) or as single files across years.
Everything here is synthetic and says so; no real child is described.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.admin import codes
from data.admin.roles import write_roles
from data.synthetic import DidStudyConfig, SyntheticStudy, simulate_did_study

# The evaluation's named pilot LAs (report footnote 2, and Bexley): never used for synthetic LAs,
# so that synthetic outputs cannot be mistaken for statements about them.
_REAL_PILOTS = ("Brent", "Bristol, City of", "Leicestershire", "Lincolnshire", "Norfolk", "Suffolk",
                "Tower Hamlets", "Wakefield", "West Sussex", "Wokingham", "Bexley", "Bristol")
SPARE_CODE = "919"   # an LA left out of the role table (its records must be dropped)


def synthetic_la_codes() -> list[str]:
    """Real English LA codes (so files pass validation) for synthetic LAs, in a fixed order."""
    ref = codes.la_reference()
    ref = ref[(ref["last_year_ending_march"] == "2025") & (ref["first_year_ending_march"] == "2013")
              & ~ref["la_name"].isin(_REAL_PILOTS) & (ref["old_la_code"] != SPARE_CODE)]
    return sorted(ref["old_la_code"].unique())


NON_KIN_PLACES = ("U4", "U5", "U6", "K2", "R1", "P1", "H5", "A3", "Z1")
NON_KIN_WEIGHTS = (0.30, 0.05, 0.30, 0.12, 0.04, 0.10, 0.04, 0.03, 0.02)
OTHER_ENDINGS = ("E4A", "E13", "E8", "E3", "E41", "E5", "E17", "E4B")
ETHNIC_BY_GROUP = {g: tuple(c for c, gg in codes.ETHNIC_GROUP.items() if gg == g)
                   for g in ("White", "Mixed", "Asian", "Black", "Other")}
AGE_RANGE = {"0-4": (0, 4), "5-9": (5, 9), "10-15": (10, 15), "16-17": (16, 17)}
SYNTHETIC_NOTE = "SYNTHETIC administrative files (simulated; not real children)"


# ------------------------------------------------------------------ shared pieces


def la_codes_for(labels: pd.Series, arms: pd.Series) -> dict[str, str]:
    """A real LA code for each synthetic LA label (pilots and comparators from separate lists)."""
    table = pd.DataFrame({"la": labels, "arm": arms}).drop_duplicates("la")
    pilots = sorted(table.loc[table.arm == "pilot", "la"], key=_natural)
    comps = sorted(table.loc[table.arm != "pilot", "la"], key=_natural)
    pool = synthetic_la_codes()
    if len(pilots) + len(comps) > len(pool):
        raise ValueError(f"at most {len(pool)} synthetic LAs")
    return dict(zip([*pilots, *comps], pool))


def _natural(label: str) -> tuple:
    head, _, tail = str(label).rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (str(label), 0)


def roles_table(children: pd.DataFrame, code_of: dict[str, str]) -> pd.DataFrame:
    """The LA role table matching a synthetic study (adoption on 1 September of the adoption year)."""
    las = children.drop_duplicates("la")[["la", "arm", "adoption_year", "settling_years"]]
    las = las.assign(_k=las["la"].map(_natural)).sort_values(["arm", "_k"], ascending=[False, True])
    adoption = pd.to_datetime([f"{int(y)}-09-01" if np.isfinite(y) else None for y in las["adoption_year"]])
    return pd.DataFrame({
        "la_code": las["la"].map(code_of).to_numpy(),
        "role": las["arm"].to_numpy(),
        "adoption_date": adoption,
        "settling_years": np.where(las["arm"] == "pilot", las["settling_years"], np.nan),
        "label": las["la"].to_numpy(),
    })


def _dates(days: np.ndarray) -> np.ndarray:
    return np.asarray(days, dtype="datetime64[D]")


def _fmt(d: pd.Series | np.ndarray) -> pd.Series:
    s = pd.Series(pd.to_datetime(np.asarray(d)))
    return s.dt.strftime("%d/%m/%Y").where(s.notna(), "")


def _fy_start(year: np.ndarray) -> np.ndarray:
    y = np.asarray(year).astype(int)
    return ((y - 1970) * 12 + 3).astype("datetime64[M]").astype("datetime64[D]")   # 1 April


def _add_months(d: np.ndarray, months: int) -> np.ndarray:
    return (pd.DatetimeIndex(d) + pd.DateOffset(months=months)).to_numpy().astype("datetime64[D]")


def _child_characteristics(children: pd.DataFrame, on: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """DOB (age band on ``on``), sex and ethnic codes reproducing the children's covariates."""
    n = len(children)
    band = children["age_band"].to_numpy()
    lo = np.array([AGE_RANGE[b][0] for b in band])
    hi = np.array([AGE_RANGE[b][1] for b in band])
    age = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(int)
    dob = on - np.round(age * 365.25 + rng.integers(30, 331, n)).astype("timedelta64[D]")
    groups = children["ethnicity"].to_numpy()
    ethnic = np.empty(n, dtype=object)
    for g, options in ETHNIC_BY_GROUP.items():
        idx = np.flatnonzero(groups == g)
        ethnic[idx] = np.asarray(options)[rng.integers(0, len(options), idx.size)]
    return pd.DataFrame({"dob": dob, "sex": np.where(children["sex"].to_numpy() == "male", "1", "2"),
                         "ethnic": ethnic})


# ------------------------------------------------------------------ SSDA903


@dataclass
class Ssda903Files:
    """What :func:`write_ssda903` wrote, and the child-level frame the loader must recover."""

    root: Path
    roles_path: Path
    expected: pd.DataFrame
    header: pd.DataFrame
    episodes: pd.DataFrame
    data_end: pd.Timestamp


def ssda903_tables(children: pd.DataFrame, *, outcome: str = "kinship", seed: int = 0, noise: bool = True,
                   data_end: pd.Timestamp | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Header and episodes (complete histories, dates as datetime64) for the children's periods of care.

    Returns (header, episodes, expected child-level frame, data end). Episodes carry ``la_code``.
    """
    rng = np.random.default_rng(seed)
    code_of = la_codes_for(children["la"], children["arm"])
    years = children["year"].to_numpy().astype(int)
    if data_end is None:
        data_end = pd.Timestamp(int(years.max()) + 2, 3, 31)
    end_day = np.datetime64(data_end.date(), "D")
    n = len(children)
    y = children[outcome].to_numpy().astype(int)
    start = _fy_start(years) + rng.integers(0, 365, n).astype("timedelta64[D]")
    k = np.minimum(1 + rng.poisson(1.5, n), 6)
    sgo = (y == 1) & (rng.random(n) < 0.2)
    length = np.where(sgo, rng.integers(60, 330, n), 2 * k + np.round(rng.exponential(450, n))).astype(int)
    # episodes: child index, episode number, start offset (strictly increasing, < length)
    child = np.repeat(np.arange(n), k)
    j = np.arange(child.size) - np.repeat(np.cumsum(k) - k, k)
    gaps = rng.exponential(1.0, child.size)
    gaps[j == 0] = 0.0
    csum = np.cumsum(gaps)
    first = np.repeat(np.cumsum(k) - k, k)
    rel = csum - csum[first]
    total = rel[np.cumsum(k) - 1] + rng.exponential(1.0, n)      # per child
    offset = np.floor(rel / total[child] * (length[child] - k[child])).astype(int) + j
    decom = start[child] + offset.astype("timedelta64[D]")
    last = j == k[child] - 1
    nxt = np.r_[decom[1:], np.datetime64("NaT", "D")]
    dec = np.where(last, start[child] + length[child].astype("timedelta64[D]"), nxt)
    window = _add_months(start, 12)[child]
    in_window = decom < window

    place = np.asarray(NON_KIN_PLACES)[rng.choice(len(NON_KIN_PLACES), child.size, p=NON_KIN_WEIGHTS)]
    late_kin = ~in_window & (rng.random(child.size) < 0.3)        # kin placements after the window
    place = np.where(late_kin, "U1", place)
    kin_place = (y == 1) & ~sgo
    n_in = np.bincount(child, weights=in_window, minlength=n).astype(int)
    pick = np.floor(rng.random(n) * n_in).astype(int)              # which in-window episode is kin
    chosen = kin_place[child] & (j == pick[child])
    place = np.where(chosen, np.asarray(["U1", "U2", "U3"])[rng.integers(0, 3, child.size)], place)

    dec_fy = codes.financial_year(pd.Series(pd.to_datetime(dec)))
    sgo_code = np.where(dec_fy >= 2016, np.asarray(["E45", "E47", "E46", "E48"])[rng.integers(0, 4, child.size)],
                        np.asarray(["E43", "E44"])[rng.integers(0, 2, child.size)])
    other_end = np.asarray(OTHER_ENDINGS)[rng.integers(0, len(OTHER_ENDINGS), child.size)]
    ends_in_window = dec < window
    late_sgo = last & ~ends_in_window & (rng.random(child.size) < 0.2)
    rec = np.where(~last, "X1", np.where(sgo[child] | late_sgo, sgo_code, other_end))
    rne = np.where(j == 0, "S", np.asarray(["P", "L", "T", "B", "U"])[rng.choice(5, child.size,
                                                                              p=[0.6, 0.2, 0.1, 0.05, 0.05])])
    ls = np.where(j == 0, np.asarray(["V2", "C1", "L2"])[rng.choice(3, child.size, p=[0.6, 0.3, 0.1])],
                  np.asarray(["C2", "C1", "V2", "E1"])[rng.choice(4, child.size, p=[0.5, 0.2, 0.2, 0.1])])
    chars = _child_characteristics(children, start, rng)
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 7))
    la_code = children["la"].map(code_of).to_numpy()
    episodes = pd.DataFrame({
        "la_code": la_code[child], "CHILD": ids[child], "DECOM": decom, "RNE": rne, "LS": ls,
        "CIN": np.asarray(codes.CIN_NEED_CODES)[rng.choice(8, child.size)], "PLACE": place,
        "PLACE_PROVIDER": np.where(np.isin(place, ["P1", "H5", "Z1"]), "PR0", "PR1"), "DEC": dec, "REC": rec,
    })
    header = pd.DataFrame({"la_code": la_code, "CHILD": ids, "SEX": chars["sex"], "DOB": chars["dob"],
                           "ETHNIC": chars["ethnic"]})
    expected = children[["la", "year", "arm", "adoption_year", "settling_years", "age_band", "sex", "ethnicity",
                         outcome]].reset_index(drop=True)
    if noise:
        h2, e2 = _ssda903_noise(children, code_of, rng, data_start=pd.Timestamp(int(years.min()), 4, 1))
        header = pd.concat([header, h2], ignore_index=True)
        episodes = pd.concat([episodes, e2], ignore_index=True)
    open_ = episodes["DEC"].to_numpy() > end_day
    episodes.loc[open_, "DEC"] = np.datetime64("NaT", "D")
    episodes.loc[open_, "REC"] = None
    episodes = episodes[episodes["DECOM"].to_numpy() <= end_day].reset_index(drop=True)
    return header, episodes, expected, pd.Timestamp(data_end)


def _ssda903_noise(children: pd.DataFrame, code_of: dict[str, str], rng: np.random.Generator,
                   data_start: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records the loader must drop: care begun before the data, short breaks, an LA without a role."""
    m = max(3, len(children) // 100)
    sample = children.sample(n=3 * m, random_state=int(rng.integers(1 << 31)), replace=len(children) < 3 * m)
    la_code = sample["la"].map(code_of).to_numpy()
    la_code[2 * m:] = SPARE_CODE
    ids = np.char.add("N", np.char.zfill(np.arange(3 * m).astype(str), 7))
    s0 = np.datetime64(data_start.date(), "D")
    starts = np.concatenate([
        s0 - rng.integers(200, 400, m).astype("timedelta64[D]"),                   # begun before the data
        _fy_start(sample["year"].to_numpy()[m:]) + rng.integers(0, 300, 2 * m).astype("timedelta64[D]"),
    ])
    chars = _child_characteristics(sample, starts, rng)
    header = pd.DataFrame({"la_code": la_code, "CHILD": ids, "SEX": chars["sex"], "DOB": chars["dob"],
                           "ETHNIC": chars["ethnic"]})
    # before-the-data children: S episode ending before data_start, then a P episode across it
    mid = s0 - rng.integers(20, 150, m).astype("timedelta64[D]")
    e_before = pd.DataFrame({"la_code": la_code[:m], "CHILD": ids[:m], "DECOM": starts[:m], "RNE": "S", "LS": "C1",
                             "CIN": "N1", "PLACE": "U4", "PLACE_PROVIDER": "PR1", "DEC": mid, "REC": "X1"})
    e_cont = pd.DataFrame({"la_code": la_code[:m], "CHILD": ids[:m], "DECOM": mid, "RNE": "P", "LS": "C2",
                           "CIN": "N1", "PLACE": "U1", "PLACE_PROVIDER": "PR1",
                           "DEC": mid + rng.integers(300, 600, m).astype("timedelta64[D]"), "REC": "E4A"})
    short = pd.DataFrame({"la_code": la_code[m:2 * m], "CHILD": ids[m:2 * m], "DECOM": starts[m:2 * m], "RNE": "S",
                          "LS": "V3", "CIN": "N2", "PLACE": "U1", "PLACE_PROVIDER": "PR1",
                          "DEC": starts[m:2 * m] + np.timedelta64(3, "D"), "REC": "E13"})
    spare = pd.DataFrame({"la_code": la_code[2 * m:], "CHILD": ids[2 * m:], "DECOM": starts[2 * m:], "RNE": "S",
                          "LS": "V2", "CIN": "N1", "PLACE": "U2", "PLACE_PROVIDER": "PR1",
                          "DEC": starts[2 * m:] + np.timedelta64(100, "D"), "REC": "E4A"})
    return header, pd.concat([e_before, e_cont, short, spare], ignore_index=True)


def _year_slices(first_day: np.ndarray, last_day: np.ndarray, years: range):
    """For each collection year: rows open during it (starting by its end, not ended before its start)."""
    for y in years:
        y_start, y_end = np.datetime64(f"{y - 1}-04-01"), np.datetime64(f"{y}-03-31")
        keep = (first_day <= y_end) & (np.isnat(last_day) | (last_day >= y_start))
        yield y, y_end, keep


def write_ssda903(children: pd.DataFrame, root: Path, *, outcome: str = "kinship", seed: int = 0,
                  layout: str = "years", noise: bool = True, file_format: str = "csv") -> Ssda903Files:
    """Write SSDA903 header/episodes files for ``children`` under ``root`` plus ``root/la_roles.csv``.

    ``layout="years"``: ``root/ssda903/<collection year>/{header,episodes}.csv`` (each year's return
    holds the episodes open during it, end dates after its 31 March blank); ``layout="single"``:
    ``root/ssda903/{header,episodes}.csv`` with complete histories (no records begun before the data
    are added in this layout, since a single file has no window to begin before).
    """
    if layout not in ("years", "single"):
        raise ValueError(f"layout must be 'years' or 'single', got {layout!r}")
    root = Path(root)
    folder = root / "ssda903"
    folder.mkdir(parents=True, exist_ok=True)
    header, episodes, expected, data_end = ssda903_tables(children, outcome=outcome, seed=seed,
                                                          noise=noise and layout == "years")
    if noise and layout == "single":
        rng = np.random.default_rng(seed + 1)
        h2, e2 = _ssda903_noise(children, la_codes_for(children["la"], children["arm"]), rng,
                                data_start=pd.Timestamp(int(children["year"].min()), 4, 1))
        keep = ~e2["CHILD"].isin(e2.loc[e2["RNE"] == "P", "CHILD"])
        header = pd.concat([header, h2[h2["CHILD"].isin(e2.loc[keep, "CHILD"])]], ignore_index=True)
        episodes = pd.concat([episodes, e2[keep]], ignore_index=True)
    code_of = la_codes_for(children["la"], children["arm"])
    roles_path = write_roles(roles_table(children, code_of), root / "la_roles.csv")
    ext = "parquet" if file_format == "parquet" else "csv"

    def save(frame: pd.DataFrame, path: Path) -> None:
        out = frame.rename(columns={"la_code": "LA"})
        for c in ("DECOM", "DEC", "DOB"):
            if c in out.columns:
                out[c] = _fmt(out[c]).to_numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_parquet(path, index=False) if ext == "parquet" else out.to_csv(path, index=False)

    if layout == "single":
        save(header, folder / f"header.{ext}")
        save(episodes, folder / f"episodes.{ext}")
    else:
        first = int(children["year"].min()) + 1
        last = data_end.year
        decom = episodes["DECOM"].to_numpy().astype("datetime64[D]")
        dec = episodes["DEC"].to_numpy().astype("datetime64[D]")
        for y, y_end, keep in _year_slices(decom, dec, range(first, last + 1)):
            ep = episodes[keep].copy()
            late = ep["DEC"].to_numpy().astype("datetime64[D]") > y_end
            ep.loc[late, "DEC"] = np.datetime64("NaT", "D")
            ep.loc[late, "REC"] = None
            hd = header[header.set_index(["la_code", "CHILD"]).index.isin(
                pd.MultiIndex.from_frame(ep[["la_code", "CHILD"]]))]
            save(hd, folder / str(y) / f"header.{ext}")
            save(ep, folder / str(y) / f"episodes.{ext}")
    return Ssda903Files(folder, roles_path, expected, header, episodes, data_end)


# ------------------------------------------------------------------ CIN census


@dataclass
class CinStudy:
    """Synthetic index children (one NFA referral each) with re-referral and escalation truth."""

    children: pd.DataFrame
    truth: dict
    seed: int


def simulate_cin_study(seed: int = 0, *, config: DidStudyConfig | None = None,
                       escalation_share: float = 0.3) -> CinStudy:
    """Children whose referral closed NFA (from :func:`simulate_did_study`, outcome ``rereferral``),
    with ``escalation`` (a CPP within 6 months of the re-referral) among the re-referred."""
    cfg = config or DidStudyConfig(outcome="rereferral", baseline_share=0.31, mu_tau=-0.45, sd_tau=0.3,
                                   children_per_la_year=60.0)
    study: SyntheticStudy = simulate_did_study(cfg, seed=seed)
    rng = np.random.default_rng(seed + 10_000)
    children = study.children.copy()
    children["escalation"] = ((children[cfg.outcome] == 1) & (rng.random(len(children)) < escalation_share)).astype(int)
    return CinStudy(children, study.truth, seed)


@dataclass
class CinFiles:
    """What :func:`write_cin` wrote and what the loader must recover."""

    path: Path
    roles_path: Path
    expected: pd.DataFrame          # one row per index referral: design, covariates, rereferral, escalation
    assessments: pd.DataFrame      # one row per completed assessment: la, start, auth, days
    events: pd.DataFrame
    data_end: pd.Timestamp


def _busday(d: np.ndarray, offset: np.ndarray, hol: np.ndarray, roll: str) -> np.ndarray:
    return np.busday_offset(d.astype("datetime64[D]"), offset, roll=roll, holidays=hol)


def cin_events(children: pd.DataFrame, *, seed: int = 0, data_end: pd.Timestamp | None = None,
               rereferral: str = "rereferral", escalation: str = "escalation"):
    """CIN census events (long format, dates as datetime64) realising the children's outcomes."""
    rng = np.random.default_rng(seed)
    code_of = la_codes_for(children["la"], children["arm"])
    years = children["year"].to_numpy().astype(int)
    if data_end is None:
        data_end = pd.Timestamp(int(years.max()) + 2, 3, 31)
    end_day = np.datetime64(data_end.date(), "D")
    hol = codes.england_bank_holidays(int(years.min()) - 1, int(years.max()) + 3)
    n = len(children)
    ids = np.char.add("R", np.char.zfill(np.arange(n).astype(str), 7))
    la_code = children["la"].map(code_of).to_numpy()
    close_raw = _fy_start(years) + rng.integers(0, 358, n).astype("timedelta64[D]")
    close = _busday(close_raw, np.zeros(n, int), hol, "forward")
    close = np.where(codes.financial_year(pd.Series(pd.to_datetime(close))) != years,
                     _busday(close_raw, np.zeros(n, int), hol, "backward"), close)
    at_referral = rng.random(n) < 0.4
    days0 = _durations(rng, n)
    a_start = _busday(close, -days0, hol, "forward")
    ref0 = np.where(at_referral, close, a_start - rng.integers(0, 4, n).astype("timedelta64[D]"))
    chars = _child_characteristics(children, close, rng)
    dis = np.where(children["disability"].to_numpy() == "yes",
                   np.asarray(["MOB", "LD", "AUT,COMM", "HAND", "BEH"])[rng.integers(0, 5, n)], "NONE") \
        if "disability" in children.columns else np.full(n, "NONE")
    child_cols = {"PersonBirthDate": chars["dob"], "GenderCurrent": chars["sex"], "Ethnicity": chars["ethnic"],
                  "Disabilities": dis}
    rows = []

    def add(mask: np.ndarray, **cols) -> None:
        idx = np.flatnonzero(mask)
        frame = {"LA": la_code[idx], "LAchildID": ids[idx]}
        for k, v in cols.items():
            frame[k] = v[idx] if isinstance(v, np.ndarray) and v.shape == (n,) else v
        for k, v in child_cols.items():
            frame[k] = np.asarray(v)[idx]
        rows.append(pd.DataFrame(frame))

    all_ = np.ones(n, bool)
    add(all_, Type="CINreferralDate", CINreferralDate=ref0, ReferralNFA=np.where(at_referral, "1", "0"),
        CINclosureDate=close, ReasonForClosure="RC8")
    add(~at_referral, Type="AssessmentActualStartDate", CINreferralDate=ref0, AssessmentActualStartDate=a_start,
        AssessmentAuthorisationDate=close)
    # the next referral: within 6 months (re-referred) or later, or none
    re = children[rereferral].to_numpy().astype(bool)
    later = ~re & (rng.random(n) < 0.4)
    six = _add_months(close, 6)
    r1 = np.where(re, close + rng.integers(1, 180, n).astype("timedelta64[D]"),
                  six + rng.integers(5, 400, n).astype("timedelta64[D]"))
    has_r1 = (re | later) & (r1 <= end_day)
    esc = children[escalation].to_numpy().astype(bool) & re
    late_cpp = has_r1 & ~esc & (rng.random(n) < 0.2)
    cpp = np.where(esc, r1 + rng.integers(10, 170, n).astype("timedelta64[D]"),
                   _add_months(r1, 6) + rng.integers(10, 200, n).astype("timedelta64[D]"))
    has_cpp = (esc | late_cpp) & has_r1 & (cpp <= end_day)
    s47 = cpp - rng.integers(3, 10, n).astype("timedelta64[D]")
    a1_start = _busday(r1, np.ones(n, int), hol, "forward")
    d1 = _durations(rng, n)
    a1_auth = _busday(a1_start, d1, hol, "forward")
    has_a1 = has_r1 & (a1_auth <= end_day)
    last_event = np.maximum(np.where(has_cpp, cpp, r1), a1_auth)
    close1 = last_event + rng.integers(30, 300, n).astype("timedelta64[D]")
    open1 = close1 > end_day
    close1 = np.where(open1, np.datetime64("NaT", "D"), close1)
    add(has_r1, Type="CINreferralDate", CINreferralDate=r1, ReferralNFA="0", CINclosureDate=close1,
        ReasonForClosure=np.where(open1, None, "RC7"))
    add(has_r1 & (a1_start <= end_day), Type="AssessmentActualStartDate", CINreferralDate=r1,
        AssessmentActualStartDate=a1_start, AssessmentAuthorisationDate=np.where(has_a1, a1_auth, np.datetime64("NaT", "D")))
    add(has_cpp, Type="S47ActualStartDate", CINreferralDate=r1, S47ActualStartDate=s47)
    add(has_cpp, Type="CPPstartDate", CINreferralDate=r1, CPPstartDate=cpp)
    events = pd.concat(rows, ignore_index=True)
    for c in ("ReferralNFA", "CINclosureDate", "ReasonForClosure", "AssessmentActualStartDate",
              "AssessmentAuthorisationDate", "S47ActualStartDate", "CPPstartDate"):
        if c not in events.columns:
            events[c] = None
    design = children[["la", "year", "arm", "adoption_year", "settling_years", "age_band", "sex", "ethnicity"]]
    expected = design.assign(disability=children["disability"].to_numpy() if "disability" in children.columns
                             else "no", rereferral=re.astype(int), escalation=esc.astype(int)).reset_index(drop=True)
    assessments = pd.concat([
        pd.DataFrame({"la": children["la"].to_numpy()[~at_referral], "start": a_start[~at_referral],
                      "auth": close[~at_referral], "days": days0[~at_referral]}),
        pd.DataFrame({"la": children["la"].to_numpy()[has_a1], "start": a1_start[has_a1], "auth": a1_auth[has_a1],
                      "days": d1[has_a1]}),
    ], ignore_index=True)
    return events, expected, assessments, pd.Timestamp(data_end), code_of


def _durations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Assessment durations in working days: some same-day, most a few weeks (national mean ~30)."""
    same = rng.random(n) < 0.08
    return np.where(same, 0, 1 + rng.negative_binomial(3, 3 / (3 + 24), n)).astype(int)


def write_cin(children: pd.DataFrame, root: Path, *, seed: int = 0, layout: str = "years",
              rereferral: str = "rereferral", escalation: str = "escalation") -> CinFiles:
    """Write CIN census flat files for ``children`` (see :func:`simulate_cin_study`) under ``root``.

    ``layout="years"``: ``root/cin/<census year>/cin_census.csv`` (each census holds the referrals
    open during its year with their events so far; later dates blank); ``"single"``:
    ``root/cin/cin_census.csv``. Also writes ``root/la_roles.csv``.
    """
    if layout not in ("years", "single"):
        raise ValueError(f"layout must be 'years' or 'single', got {layout!r}")
    root = Path(root)
    folder = root / "cin"
    folder.mkdir(parents=True, exist_ok=True)
    events, expected, assessments, data_end, code_of = cin_events(children, seed=seed, rereferral=rereferral,
                                                                   escalation=escalation)
    roles_path = write_roles(roles_table(children, code_of), root / "la_roles.csv")
    date_cols = ("CINreferralDate", "CINclosureDate", "AssessmentActualStartDate", "AssessmentAuthorisationDate",
                 "S47ActualStartDate", "CPPstartDate", "PersonBirthDate")

    def save(frame: pd.DataFrame, path: Path) -> None:
        out = frame.copy()
        for c in date_cols:
            out[c] = _fmt(out[c]).to_numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(path, index=False)

    if layout == "single":
        save(events, folder / "cin_census.csv")
    else:
        ref = pd.to_datetime(events["CINreferralDate"]).to_numpy().astype("datetime64[D]")
        closes = events.loc[events["Type"] == "CINreferralDate", ["LAchildID", "CINreferralDate", "CINclosureDate"]]
        ep_close = events[["LAchildID", "CINreferralDate"]].merge(
            closes.rename(columns={"CINclosureDate": "_close"}), how="left", on=["LAchildID", "CINreferralDate"])
        ep_close = pd.to_datetime(ep_close["_close"]).to_numpy().astype("datetime64[D]")
        event_day = np.full(len(events), np.datetime64("NaT", "D"), dtype="datetime64[D]")
        for c in date_cols[:6]:
            d = pd.to_datetime(events[c]).to_numpy().astype("datetime64[D]")
            has = (events["Type"].to_numpy() == c) & ~np.isnat(d)
            event_day[has] = d[has]
        first, last = int(children["year"].min()) + 1, data_end.year
        for y, y_end, keep in _year_slices(ref, ep_close, range(first, last + 1)):
            yr = events[keep & ~(event_day > y_end)].copy()
            for c in ("CINclosureDate", "AssessmentAuthorisationDate"):
                late = pd.to_datetime(yr[c]).to_numpy().astype("datetime64[D]") > y_end
                yr.loc[late, c] = None
                if c == "CINclosureDate":
                    yr.loc[late, "ReasonForClosure"] = None
            save(yr, folder / str(y) / "cin_census.csv")
    return CinFiles(folder, roles_path, expected, assessments, events, data_end)
