"""Administrative data: SSDA903 / CIN loaders, validation errors, disclosure control, end to end."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses.admin_inputs import (add_admin_args, admin_cells, load_admin_frame, resolve_outcome, sdc_guard)
from analyses.common import EXIT_BAD_INPUT, run_cli
from data.admin import cin, codes, sdc, ssda903, writer
from data.admin.roles import load_roles, roles_from_frame
from data.did_input import cells_from_frame
from data.errors import DataError
from data.synthetic import DidStudyConfig, simulate_did_study

KEYS = ["la", "year", "arm", "age_band", "sex", "ethnicity"]

# ----------------------------------------------------------------------------------------------
# Hand-made files (every outcome below is worked out by hand in the comments)
# ----------------------------------------------------------------------------------------------

HEADER = """LA,CHILD,SEX,DOB,ETHNIC
873,A1,1,15/06/2010,WBRI
873,A2,2,01/01/2005,MWBC
873,A3,1,01/01/2012,BAFR
874,B1,2,10/10/2002,AIND
874,B2,1,01/01/2008,OOTH
"""
# A1: U4 then U1 four months in          -> kinship 1 (FY 2015, age 4)
# A2: U6, then U2 fourteen months in      -> kinship 0 (kin placement after the 12-month window)
# A3: K2 ending on an SGO (E45) in 10 m   -> kinship 1 (FY 2016)
# B1: a short break (V3), dropped; then a period ending on an SGO after 13 months -> kinship 0
# B2: starts 01/06/2017; its 12 months end after the data (31/03/2018) -> dropped
EPISODES = """LA,CHILD,DECOM,RNE,LS,PLACE,DEC,REC
873,A1,01/05/2015,S,C1,U4,01/09/2015,X1
873,A1,01/09/2015,P,C2,U1,01/02/2016,E4A
873,A2,01/06/2015,S,V2,U6,01/08/2016,X1
873,A2,01/08/2016,P,C2,U2,,
873,A3,10/04/2016,S,C1,K2,01/02/2017,E45
874,B1,01/03/2016,S,V3,U1,05/03/2016,E13
874,B1,01/01/2017,S,C1,U4,01/02/2018,E45
874,B2,01/06/2017,S,C1,U1,,
"""
ROLES = """la_code,role,adoption_date,settling_years,label
873,pilot,01/09/2016,0,Pilot A
874,comparator,,,Comparator B
"""
# K1: NFA at referral 03/05/2016; re-referred 01/09/2016 (< 6 months); same-day assessment;
#     CPP 15/10/2016 (< 6 months after the re-referral)      -> rereferral 1, escalation 1
# K2: assessment 20/12/2018 (Thu) -> 03/01/2019 (Thu): 7 working days (25, 26 Dec and 1 Jan are
#     bank holidays); closed RC8 on 03/01/2019; next referral 10/07/2019 (> 6 months) -> 0, 0
# K3: NFA at referral 01/06/2017; re-referred 01/11/2017; CPP 01/06/2018 (> 6 months) -> 1, 0
CIN_COLUMNS = ("LA,LAchildID,Type,CINreferralDate,ReferralNFA,CINclosureDate,ReasonForClosure,"
               "AssessmentActualStartDate,AssessmentAuthorisationDate,CPPstartDate,PersonBirthDate,"
               "GenderCurrent,Ethnicity,Disabilities")
CIN_ROWS = """873,K1,CINreferralDate,03/05/2016,1,03/05/2016,RC8,,,,01/01/2010,1,WBRI,NONE
873,K1,CINreferralDate,01/09/2016,0,01/03/2017,RC7,,,,01/01/2010,1,WBRI,NONE
873,K1,AssessmentActualStartDate,01/09/2016,,,,01/09/2016,01/09/2016,,01/01/2010,1,WBRI,NONE
873,K1,CPPstartDate,01/09/2016,,,,,,15/10/2016,01/01/2010,1,WBRI,NONE
874,K2,CINreferralDate,19/12/2018,0,03/01/2019,RC8,,,,05/05/2003,2,APKN,"MOB,LD"
874,K2,AssessmentActualStartDate,19/12/2018,,,,20/12/2018,03/01/2019,,05/05/2003,2,APKN,"MOB,LD"
874,K2,CINreferralDate,10/07/2019,0,,,,,,05/05/2003,2,APKN,"MOB,LD"
873,K3,CINreferralDate,01/06/2017,true,01/06/2017,RC8,,,,,9,,
873,K3,CINreferralDate,01/11/2017,0,01/09/2018,RC7,,,,,9,,
873,K3,CPPstartDate,01/11/2017,,,,,,01/06/2018,,9,,
"""


def _lines(text: str) -> list[str]:
    return text.strip("\n").split("\n")


def _write(path: Path, text: str | list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if isinstance(text, str) else "\n".join(text) + "\n")
    return path


@pytest.fixture
def s903(tmp_path) -> Path:
    _write(tmp_path / "ssda903" / "header.csv", HEADER)
    _write(tmp_path / "ssda903" / "episodes.csv", EPISODES)
    _write(tmp_path / "roles.csv", ROLES)
    return tmp_path


@pytest.fixture
def cin_file(tmp_path) -> Path:
    _write(tmp_path / "roles.csv", ROLES)
    return _write(tmp_path / "cin.csv", [CIN_COLUMNS, *_lines(CIN_ROWS)])


def _roles(tmp_path: Path):
    return load_roles(tmp_path / "roles.csv")


# ----------------------------------------------------------------------------------------------
# Bank holidays and working days
# ----------------------------------------------------------------------------------------------


def test_holidays_package_gives_englands_bank_holidays():
    days = set(codes.england_bank_holidays(2010, 2023).astype(str))
    for special in ("2011-04-29", "2012-06-04", "2012-06-05", "2020-05-08", "2022-06-02", "2022-06-03",
                    "2022-09-19", "2023-05-08", "2018-12-25", "2018-12-26", "2019-01-01", "2019-04-19",
                    "2019-08-26", "2020-12-28"):
        assert special in days, special
    for other in ("2019-01-02", "2019-08-05", "2019-03-18", "2019-07-12", "2019-12-02", "2020-05-04"):
        assert other not in days, other          # Scottish / Northern Irish days; 2020's moved May Day


def test_working_days_by_hand():
    s = pd.Series(pd.to_datetime(["2018-12-20", "2019-03-01", "2019-03-01", "2019-04-18", "2019-01-01"]))
    e = pd.Series(pd.to_datetime(["2019-01-03", "2019-03-01", "2019-03-04", "2019-04-23", None]))
    got = codes.working_days(s, e)
    # Christmas: 20, 21, 24, 27, 28, 31 Dec and 2 Jan; same day; Fri -> Mon; Maundy Thursday -> Tuesday
    # (Good Friday and Easter Monday are bank holidays)
    assert got[:4].tolist() == [7, 0, 1, 1]
    assert np.isnan(got[4])


def test_financial_year_and_age_band():
    d = pd.Series(pd.to_datetime(["2015-03-31", "2015-04-01", "2016-02-29"]))
    assert codes.financial_year(d).tolist() == [2014, 2015, 2015]
    dob = pd.Series(pd.to_datetime(["2010-04-02", "2010-04-01", "1999-01-01", None]))
    on = pd.Series(pd.to_datetime(["2015-04-01", "2015-04-01", "2018-06-01", "2018-06-01"]))
    assert codes.age_band(dob, on).tolist() == ["0-4", "5-9", "16-17", "unknown"]


# ----------------------------------------------------------------------------------------------
# LA role table
# ----------------------------------------------------------------------------------------------


def test_roles_load(s903):
    roles = _roles(s903)
    t = roles.table.set_index("la_code")
    assert t.loc["873", "la"] == "Pilot A" and t.loc["873", "adoption_year"] == 2016
    assert np.isnan(t.loc["874", "adoption_year"]) and t.loc["874", "settling_years"] == 0
    names = roles_from_frame(pd.DataFrame({"la_code": ["Cambridgeshire", "E06000031"], "role": ["Pilot", "comparator"],
                                           "adoption_date": ["2015-03-31", None]}))
    assert names.codes == ["873", "874"] and names.table["adoption_year"].iloc[0] == 2014


@pytest.mark.parametrize("line, column, message", [
    ("999,pilot,01/09/2016,0,Pilot A", "la_code", "unknown LA code"),
    ("873,treated,01/09/2016,0,Pilot A", "role", "not one of"),
    ("873,pilot,,0,Pilot A", "adoption_date", "needs an adoption date"),
    ("873,pilot,31/02/2016,0,Pilot A", "adoption_date", "not a date"),
    ("873,pilot,01/09/2016,-1,Pilot A", "settling_years", "whole number"),
    ("874,pilot,01/09/2016,0,Pilot A", "la_code", "listed twice"),
])
def test_roles_errors_name_file_row_column(tmp_path, line, column, message):
    path = _write(tmp_path / "roles.csv", [*_lines(ROLES)[:1], line, _lines(ROLES)[2]])
    with pytest.raises(DataError, match=message) as err:
        load_roles(path)
    assert (err.value.file, err.value.column) == (str(path), column)
    assert err.value.row == (2 if message == "listed twice" else 1)


def test_spreadsheet_exports_are_read(tmp_path):
    """A byte-order mark (Excel's 'CSV UTF-8') and Windows-1252 text both load."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeff".encode() + ROLES.replace("Pilot A", "Pilot é").encode())
    cp = tmp_path / "cp1252.csv"
    cp.write_bytes(ROLES.replace("Pilot A", "Pilot é").encode("cp1252"))
    for path in (bom, cp):
        assert load_roles(path).table["la"].tolist() == ["Pilot é", "Comparator B"]


def test_comparator_with_adoption_date_is_an_error(tmp_path):
    path = _write(tmp_path / "roles.csv", [*_lines(ROLES)[:2], "874,comparator,01/01/2016,,B"])
    with pytest.raises(DataError, match="comparator LA has an adoption date") as err:
        load_roles(path)
    assert (err.value.row, err.value.column) == (2, "adoption_date")


# ----------------------------------------------------------------------------------------------
# SSDA903: the kinship outcome by hand, and each validation error
# ----------------------------------------------------------------------------------------------


def test_kinship_outcome_by_hand(s903):
    frame, label, digest, dropped = ssda903.load_kinship(s903 / "ssda903", _roles(s903))
    got = frame.sort_values(["la", "year", "age_band"]).reset_index(drop=True)
    assert got[["la", "year", "age_band", "sex", "ethnicity", "kinship"]].values.tolist() == [
        ["Comparator B", 2016, "10-15", "female", "Asian", 0],
        ["Pilot A", 2015, "0-4", "male", "White", 1],
        ["Pilot A", 2015, "10-15", "female", "Mixed", 0],
        ["Pilot A", 2016, "0-4", "male", "Black", 1],
    ]
    assert set(got["arm"]) == {"pilot", "comparator"} and got["settling_years"].tolist() == [0, 0, 0, 0]
    reasons = dropped.frame()
    assert reasons["count"].tolist() == [1, 1]
    assert "short breaks" in reasons["reason"].iloc[0] and "not complete" in reasons["reason"].iloc[1]
    assert digest.startswith("sha256:") and "SSDA903" in label
    assert "disability" not in frame.columns                      # SSDA903 records none


def test_kinship_definition_can_be_narrowed(s903):
    data = ssda903.read_ssda903(s903 / "ssda903")
    no_sgo = ssda903.KinshipDefinition(sgo_codes=())
    frame, _ = ssda903.kinship_frame(data, _roles(s903), no_sgo)
    assert frame["kinship"].sum() == 1                           # A3's SGO no longer counts


def _mutate(base: Path, table: str, row: int, line: str | None) -> Path:
    """Replace data row ``row`` (1 = first under the header) of an SSDA903 table; None deletes it."""
    path = base / "ssda903" / f"{table}.csv"
    lines = _lines(path.read_text())
    if line is None:
        del lines[row]
    else:
        lines[row] = line
    return _write(path, lines)


@pytest.mark.parametrize("table, row, line, want_row, column, message", [
    # misspelt and missing columns (row None: a header problem)
    ("episodes", 0, "LA,CHILD,DECCOM,RNE,LS,PLACE,DEC,REC", None, "DECOM", "misspelt"),
    ("episodes", 0, "LA,CHILD,DECOM,RNE,LS,PLACE,DEC,REASON", None, "REC", "missing column 'REC'"),
    # invalid codes
    ("episodes", 3, "873,A2,01/06/2015,S,V2,U9,01/08/2016,X1", 3, "PLACE", "invalid code 'U9'"),
    ("episodes", 2, "873,A1,01/09/2015,Q,C2,U1,01/02/2016,E4A", 2, "RNE", "invalid code"),
    ("header", 2, "873,A2,3,01/01/2005,MWBC", 2, "SEX", "invalid code '3'"),
    ("episodes", 5, "873,A3,10/04/2016,S,C1,K2,01/02/2017,E99", 5, "REC", "invalid code"),
    # impossible dates
    ("episodes", 1, "873,A1,01/05/2015,S,C1,U4,01/04/2015,X1", 1, "DEC", "ends before it starts"),
    ("header", 3, "873,A3,1,01/01/2017,BAFR", 3, "DOB", "after care began"),
    ("episodes", 4, "873,A2,31/02/2016,P,C2,U2,,", 4, "DECOM", "not a date"),
    # duplicates
    ("episodes", 2, "873,A1,01/05/2015,S,C1,U4,01/09/2015,X1", 2, None, "duplicate row"),
    ("header", 2, "873,A1,2,15/06/2010,WBRI", 2, "CHILD", "duplicate child"),
    # overlapping episodes
    ("episodes", 2, "873,A1,01/08/2015,P,C2,U1,01/02/2016,E4A", 2, "DECOM", "overlapping episodes"),
    # unknown LA codes
    ("episodes", 6, "999,B1,01/03/2016,S,V3,U1,05/03/2016,E13", 6, "LA", "unknown LA code '999'"),
    # an end without a reason
    ("episodes", 1, "873,A1,01/05/2015,S,C1,U4,01/09/2015,", 1, "REC", "no reason"),
    # a child with episodes but no header
    ("header", 1, None, 1, "CHILD", "no row in any header file"),
])
def test_ssda903_errors_name_file_row_column(s903, table, row, line, want_row, column, message):
    _mutate(s903, table, row, line)
    with pytest.raises(DataError, match=message) as err:
        ssda903.read_ssda903(s903 / "ssda903")
    where = "episodes" if message in ("no row in any header file",) else table
    assert err.value.file == str(s903 / "ssda903" / f"{where}.csv")
    assert err.value.row == want_row
    assert err.value.column == column


def test_year_folders_check_the_collection_year(s903):
    folder = s903 / "ssda903"
    (folder / "2016").mkdir()
    shutil.move(folder / "header.csv", folder / "2016" / "header.csv")
    shutil.move(folder / "episodes.csv", folder / "2016" / "episodes.csv")
    with pytest.raises(DataError, match="after the end of the collection year") as err:
        ssda903.read_ssda903(folder)
    assert err.value.file == str(folder / "2016" / "episodes.csv") and err.value.column == "DEC"


def test_errors_exit_2_through_the_cli_plumbing(s903):
    _mutate(s903, "episodes", 3, "873,A2,01/06/2015,S,V2,U9,01/08/2016,X1")
    args = _args(["--ssda903", str(s903 / "ssda903"), "--la-roles", str(s903 / "roles.csv")])
    assert run_cli(lambda: load_admin_frame(args, "kinship") and 0) == EXIT_BAD_INPUT


# ----------------------------------------------------------------------------------------------
# CIN census: outcomes by hand, and each validation error
# ----------------------------------------------------------------------------------------------


def test_cin_outcomes_by_hand(cin_file):
    roles = _roles(cin_file.parent)
    data = cin.read_cin(cin_file)
    assert data.data_end == pd.Timestamp(2020, 3, 31)
    got = {}
    for outcome in ("rereferral", "escalation"):
        frame, _ = cin.cin_frame(data, roles, outcome)
        got[outcome] = frame.sort_values("year")[outcome].tolist()
        assert frame.sort_values("year")["year"].tolist() == [2016, 2017, 2018]
    assert got == {"rereferral": [1, 1, 0], "escalation": [1, 0, 0]}
    days, _ = cin.cin_frame(data, roles, "assessment_days")
    assert sorted(days["assessment_days"].tolist()) == [0, 7]
    same, _ = cin.cin_frame(data, roles, "same_day_assessment")
    assert sorted(same["same_day_assessment"].tolist()) == [0, 1]
    frame, _ = cin.cin_frame(data, roles, "rereferral")
    k2 = frame[frame["year"] == 2018].iloc[0]
    assert (k2["disability"], k2["sex"], k2["ethnicity"], k2["age_band"]) == ("yes", "female", "Asian", "10-15")
    k3 = frame[frame["year"] == 2017].iloc[0]
    assert (k3["sex"], k3["ethnicity"], k3["age_band"], k3["disability"]) == ("unknown", "Unknown", "unknown", "no")


def test_escalation_counts_care_from_ssda903(cin_file):
    roles = _roles(cin_file.parent)
    data = cin.read_cin(cin_file)
    care = pd.DataFrame({"la_code": ["873"], "CHILD": ["K3"], "event": pd.to_datetime(["2017-12-01"])})
    frame, _ = cin.cin_frame(data, roles, "escalation", looked_after=care)
    assert frame.sort_values("year")["escalation"].tolist() == [1, 1, 0]


@pytest.mark.parametrize("row, line, want_row, column, message", [
    (0, CIN_COLUMNS.replace("LAchildID", "LAchild_ID"), None, "LAchildID", "misspelt"),
    (1, "873,K1,CINreferralDate,03/05/2016,1,02/05/2016,RC8,,,,01/01/2010,1,WBRI,NONE", 1, "CINclosureDate",
     "closes before its referral"),
    (3, "873,K1,AssessmentActualStartDate,01/09/2016,,,,05/09/2016,02/09/2016,,01/01/2010,1,WBRI,NONE", 3,
     "AssessmentAuthorisationDate", "authorised before it started"),
    (2, "873,K1,CINreferralDate,01/09/2016,0,01/03/2017,RC10,,,,01/01/2010,1,WBRI,NONE", 2, "ReasonForClosure",
     "invalid code 'RC10'"),
    (4, "873,K1,CPPstart,01/09/2016,,,,,,15/10/2016,01/01/2010,1,WBRI,NONE", 4, "Type", "invalid code"),
    (6, "874,K2,AssessmentActualStartDate,19/12/2018,,,,20/12/2018,03/01/2019,,05/05/2003,2,APKN,\"MOB,XX\"", 6,
     "Disabilities", "invalid disability code"),
    (2, "873,K1,CINreferralDate,03/05/2016,1,03/05/2016,RC8,,,,01/01/2010,1,WBRI,NONE", 2, None, "duplicate row"),
    # the first referral now closes after the second one starts
    (1, "873,K1,CINreferralDate,03/05/2016,1,01/10/2016,RC8,,,,01/01/2010,1,WBRI,NONE", 2, "CINreferralDate",
     "overlapping CIN episodes"),
    (5, "999,K2,CINreferralDate,19/12/2018,0,03/01/2019,RC8,,,,05/05/2003,2,APKN,NONE", 5, "LA", "unknown LA code"),
])
def test_cin_errors_name_file_row_column(cin_file, row, line, want_row, column, message):
    lines = _lines(cin_file.read_text())
    lines[row] = line
    _write(cin_file, lines)
    with pytest.raises(DataError, match=message) as err:
        cin.read_cin(cin_file)
    assert err.value.file == str(cin_file)
    assert err.value.row == want_row
    assert err.value.column == column


# ----------------------------------------------------------------------------------------------
# The writer: raw files reproduce the simulated child-level records exactly
# ----------------------------------------------------------------------------------------------


SMALL = DidStudyConfig(n_pilot=3, n_comparator=3, years=tuple(range(2012, 2018)), adoption_years=(2014, 2014, 2015),
                       settling_years=(1, 0, 1), children_per_la_year=40.0)


def _cells_equal(frame: pd.DataFrame, expected: pd.DataFrame, outcome: str, keys=KEYS) -> None:
    a = frame.groupby(keys)[outcome].agg(["sum", "count"]).astype(int)
    b = expected.groupby(keys)[outcome].agg(["sum", "count"]).astype(int)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("layout, file_format", [("years", "csv"), ("single", "parquet")])
def test_ssda903_writer_round_trip(tmp_path, layout, file_format):
    study = simulate_did_study(SMALL, seed=4)
    files = writer.write_ssda903(study.children, tmp_path, seed=2, layout=layout, file_format=file_format)
    frame, _, _, dropped = ssda903.load_kinship(files.root, load_roles(files.roles_path))
    _cells_equal(frame, files.expected, "kinship")
    reasons = " | ".join(dropped.frame()["reason"])
    assert "short breaks" in reasons and "LA not in the LA role table" in reasons
    if layout == "years":
        assert "began before the data" in reasons and "in its latest version" in reasons


@pytest.mark.parametrize("layout", ["years", "single"])
def test_cin_writer_round_trip(tmp_path, layout):
    study = writer.simulate_cin_study(seed=5, config=DidStudyConfig(
        outcome="rereferral", baseline_share=0.31, n_pilot=3, n_comparator=3, years=tuple(range(2012, 2018)),
        adoption_years=(2014, 2014, 2015), settling_years=(1, 0, 1), children_per_la_year=40.0))
    files = writer.write_cin(study.children, tmp_path, seed=3, layout=layout)
    roles = load_roles(files.roles_path)
    for outcome in ("rereferral", "escalation"):
        frame, _, _, _ = cin.load_cin_outcome(files.path, roles, outcome)
        _cells_equal(frame, files.expected, outcome, [*KEYS, "disability"])
    frame, _, _, _ = cin.load_cin_outcome(files.path, roles, "assessment_days")
    assert sorted(frame["assessment_days"].astype(int)) == sorted(files.assessments["days"])
    assert frame["year"].min() >= 2011                            # some assessments start before their FY 2012 closure


# ----------------------------------------------------------------------------------------------
# Statistical disclosure control
# ----------------------------------------------------------------------------------------------


PPC = sdc.TableRule(counts=("n",), shares={"observed": "n"})


def test_small_cell_is_suppressed():
    t = pd.DataFrame({"arm": ["pilot", "pilot", "comparator"], "year": [2014, 2015, 2014],
                      "n": [120, 7, 50], "observed": [55.0, 42.9, 96.0]})
    safe, report = sdc.protect_table(t, PPC, name="ppc_share")
    assert np.isnan(safe.loc[1, "n"]) and np.isnan(safe.loc[1, "observed"])      # 7 children: suppressed
    assert np.isnan(safe.loc[2, "observed"]) and safe.loc[2, "n"] == 50           # 96% of 50: 2 not in kin care
    assert safe.loc[0, "n"] == 120 and safe.loc[0, "observed"] == 55.0
    assert {(r, c) for r, c, _ in report.suppressed} == {(2, "n"), (2, "observed"), (3, "observed")}
    assert t.loc[1, "n"] == 7                                                     # the caller's table untouched
    loose, _ = sdc.protect_table(t, PPC, name="ppc_share", threshold=5)
    assert loose.loc[1, "n"] == 7


def test_mean_over_a_small_cell_is_suppressed_in_the_duration_ppc():
    """The runner's ppc_duration rule: a mean duration over fewer children than the threshold
    is one or a few children's own values, so it goes with its count; predictions stay."""
    from analyses.admin_inputs import RUNNER_TABLE_RULES

    t = pd.DataFrame({"arm": ["pilot", "pilot"], "year": [2014, 2015], "n": [120, 3],
                      "observed_mean_days": [21.5, 40.0], "pred_mean_days": [21.0, 25.0],
                      "observed_same_day_pct": [10.0, 33.3], "pred_same_day_pct": [9.0, 12.0]})
    safe, report = sdc.protect_table(t, RUNNER_TABLE_RULES["ppc_duration"], name="ppc_duration")
    assert np.isnan(safe.loc[1, "observed_mean_days"]) and np.isnan(safe.loc[1, "n"])
    assert np.isnan(safe.loc[1, "observed_same_day_pct"])
    assert safe.loc[1, "pred_mean_days"] == 25.0 and safe.loc[0, "observed_mean_days"] == 21.5
    assert (2, "observed_mean_days", "mean over 'n' below threshold") in report.suppressed


def test_unsafe_table_is_refused():
    t = pd.DataFrame({"arm": ["pilot"] * 3, "year": ["2014", "2015", "All"], "n": [120, 7, 127]})
    with pytest.raises(sdc.DisclosureError, match="recovered by subtraction") as err:
        sdc.protect_table(t, sdc.TableRule(counts=("n",), dims=("arm", "year")), name="by_year")
    assert (err.value.row, err.value.column) == (2, "n")
    assert "it must be 7" in str(err.value)


def test_two_way_margins_and_published_totals_are_audited():
    rows = [(a, y, v) for a, vals in (("pilot", [50, 4, 30]), ("comparator", [60, 20, 40]))
            for y, v in zip(["2014", "2015", "2016"], vals)]
    t = pd.DataFrame(rows, columns=["arm", "year", "n"])
    col = t.groupby("year", as_index=False)["n"].sum().assign(arm="All")
    with pytest.raises(sdc.DisclosureError):              # the 2015 column total reveals the pilots' 4
        sdc.protect_table(pd.concat([t, col]), sdc.TableRule(counts=("n",), dims=("arm", "year")), name="2way")
    safe, _ = sdc.protect_table(t, sdc.TableRule(counts=("n",), dims=("arm", "year")), name="2way")
    assert safe["n"].isna().sum() == 1
    with pytest.raises(sdc.DisclosureError):              # a grand total printed elsewhere does the same
        sdc.protect_table(t, sdc.TableRule(counts=("n",)), name="2way", published_totals={"n": 204})
    # two suppressed cells under one total are safe unless the bounds pin them (1 + 1 = 2)
    ok = pd.DataFrame({"g": ["a", "b", "c", "All"], "n": [100, 4, 5, 109]})
    assert sdc.protect_table(ok, sdc.TableRule(counts=("n",), dims=("g",)), name="ok")[0]["n"].isna().sum() == 2
    pinned = pd.DataFrame({"g": ["a", "b", "c", "All"], "n": [100, 1, 1, 102]})
    with pytest.raises(sdc.DisclosureError, match="it must be 1"):
        sdc.protect_table(pinned, sdc.TableRule(counts=("n",), dims=("g",)), name="pinned")


def test_identifiers_are_refused_and_model_files_stripped():
    with pytest.raises(sdc.DisclosureError, match="identifier"):
        sdc.protect_table(pd.DataFrame({"CHILD": ["A1"], "n": [12]}), sdc.TableRule(counts=("n",)), name="rows")
    import xarray as xr

    tree = xr.DataTree.from_dict({"/posterior": xr.Dataset({"att": ("draw", np.zeros(3))}),
                                  "/observed_data": xr.Dataset({"y_obs": ("cell", [1, 2])}),
                                  "/constant_data": xr.Dataset({"n": ("cell", [1, 3])})})
    stripped = sdc.strip_idata(tree)
    assert set(stripped.children) == {"posterior"}
    assert set(sdc.SdcGuard(None).idata(tree).children) == {"posterior", "observed_data", "constant_data"}


# ----------------------------------------------------------------------------------------------
# Command-line options
# ----------------------------------------------------------------------------------------------


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=None)
    add_admin_args(p)
    return p.parse_args(argv)


def test_admin_args_and_outcome_names(s903):
    assert load_admin_frame(_args([]), "kinship") is None
    assert admin_cells(_args([]), "kinship") is None
    assert not sdc_guard(_args([])).active
    assert resolve_outcome("rereferral_6m") == ("cin", "rereferral")
    with pytest.raises(ValueError, match="valid outcomes"):
        resolve_outcome("ofsted")
    with pytest.raises(SystemExit):
        _args(["--sdc-threshold", "0"])
    with pytest.raises(DataError, match="--la-roles"):
        load_admin_frame(_args(["--ssda903", str(s903 / "ssda903")]), "kinship")
    with pytest.raises(DataError, match="--cin"):
        load_admin_frame(_args(["--ssda903", str(s903 / "ssda903"), "--la-roles", str(s903 / "roles.csv")]),
                         "rereferral")
    args = _args(["--ssda903", str(s903 / "ssda903"), "--la-roles", str(s903 / "roles.csv"), "--sdc-threshold", "5"])
    frame, label, digest, dropped = load_admin_frame(args, "kinship_care")
    assert "kinship_care" in frame.columns and len(frame) == 4
    assert dropped["count"].isna().all()                  # 1 short break, 1 censored: below 5, suppressed
    assert sdc_guard(args).active and sdc_guard(args).threshold == 5


# ----------------------------------------------------------------------------------------------
# End to end: synthetic raw files -> loader -> cells -> a tiny fit (no runner CLI)
# ----------------------------------------------------------------------------------------------


def test_raw_files_to_posterior(tmp_path):
    from analyses.sofs_did import canonical
    from models.did.design import DesignSpec, did_design
    from models.did.likelihoods import get_likelihood
    from models.did.model import SOFS_MODEL_SPEC, build_did_model
    from models.did.priors import effect_priors
    from models.sampling import CompiledSampler

    config = DidStudyConfig(n_pilot=4, n_comparator=4, years=tuple(range(2011, 2018)),
                            adoption_years=(2014, 2014, 2015, 2015), settling_years=(1, 1, 1, 0),
                            children_per_la_year=120.0, mu_tau=-0.9, sd_tau=0.2)
    study = simulate_did_study(config, seed=3)
    files = writer.write_ssda903(study.children, tmp_path, seed=9)
    args = _args(["--ssda903", str(files.root), "--la-roles", str(files.roles_path)])
    cells, truth = admin_cells(args, "kinship")
    assert truth is None and not cells.synthetic and cells.covariates == ("age_band", "sex", "ethnicity")
    direct = cells_from_frame(study.children.drop(columns="disability"), "kinship")
    pd.testing.assert_frame_equal(cells.cells, direct.cells)       # files reproduce the simulated cells

    analysis = cells.analysis_cells()
    pre = analysis[analysis.phase == "pre"]
    prior = effect_priors(get_likelihood("binomial"), float(pre["y"].sum() / pre["n"].sum()), direction=1)["neutral"]
    design = did_design(canonical(cells.cells), DesignSpec("binomial", effects="unit", base="all", unit_trends=True,
                                                           covariates=cells.covariates))
    idata = CompiledSampler(build_did_model(design, prior, spec=SOFS_MODEL_SPEC).model).sample(
        draws=150, tune=200, chains=2, seed=1)
    att = idata["posterior"]["att"].values.ravel()
    assert np.isfinite(att).all()
    lo, hi = np.quantile(att, [0.005, 0.995])
    assert lo - 3 < study.truth["att_pp"] < hi + 3                 # the truth is inside the posterior's range
    assert att.mean() < 0                                          # and the sign is recovered

    guard = sdc_guard(args)
    assert "observed_data" not in guard.idata(idata).children
    by_year = (analysis.groupby(["arm", "year"], as_index=False)[["y", "n"]].sum()
               .assign(observed=lambda f: 100 * f["y"] / f["n"]).drop(columns="y"))
    safe = guard.table("ppc_share", by_year, PPC)
    assert safe["n"].notna().all()                                 # LA-year totals are large: nothing hidden
