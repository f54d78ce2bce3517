"""The DfE official-statistics loader, indicators as data, and fuzzing of every LA-level loader
(official files, the LA panel, the treatment and exclusion tables): bad input ends in a
DataError, never a traceback."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data import la_panel as lp
from data import official_stats as ofs
from data.errors import DataError

OFFICIAL = ofs.DEFAULT_OFFICIAL_DIR
FILES = sorted(OFFICIAL.glob("*.csv")) if OFFICIAL.exists() else []
PILOT_CODES = {"Brent": "304", "Bristol, City of": "801", "Leicestershire": "855", "Lincolnshire": "925",
               "Norfolk": "926", "Suffolk": "935", "Tower Hamlets": "211", "Wakefield": "384",
               "West Sussex": "938", "Wokingham": "872", "Bexley": "303"}


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is not present (the shared data sit beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.fail(message)      # the shared data are part of the task: never a silent skip
    return path


def _la_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return sum(1 for r in csv.DictReader(f) if r["geographic_level"] == "Local authority")


# ---------------------------------------------------------------------------- the shared files

def test_every_shared_file_is_there():
    _require(OFFICIAL)
    names = {p.name for p in FILES}
    assert {"b1_children_in_need_2013_to_2025.csv", "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv",
            "d3_cpps_subsequent_plan_2013_to_2025.csv", "ons_mid-year_population_estimates_2012_to_2024.csv"} <= names


@pytest.mark.parametrize("name", ["b1_children_in_need_2013_to_2025.csv",
                                  "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv",
                                  "d3_cpps_subsequent_plan_2013_to_2025.csv",
                                  "ons_mid-year_population_estimates_2012_to_2024.csv"])
def test_loader_reads_every_la_row(name):
    path = _require(OFFICIAL / name)
    t = ofs.load_official(path)
    assert len(t.frame) == _la_rows(path) == 1976
    assert t.frame.la_code.nunique() == 158
    assert not t.frame.duplicated(["la_code", "year"]).any()
    assert "category" not in t.measures and "age_group" not in t.measures   # text columns are filters
    assert t.measures


def test_suppression_codes_are_missing_and_counted():
    t = ofs.load_official(_require(OFFICIAL / "c1_children_in_need_referrals_and_rereferrals_2013_to_2025.csv"))
    nfa = t.frame["no_further_action_count"]
    codes = t.frame["no_further_action_count_code"]
    assert nfa.isna().sum() == 102 == codes.notna().sum()
    assert t.suppressed_count("no_further_action_count") == 102
    s = t.suppressed[t.suppressed.measure == "no_further_action_count"].set_index("code")["count"].to_dict()
    assert s == {"c": 94, "x": 5, "u": 3}


def test_pilots_and_neighbours_found_by_name_and_code():
    inds = ofs.load_indicators()
    panel = ofs.build_panel([inds["rereferral_pct"], inds["cpp_rate"]])
    tr = lp.load_treatment(lp.DEFAULT_TREATMENT, panel)
    assert dict(zip(tr.la_name, tr.la_code)) == PILOT_CODES
    design = lp.build_design(panel, inds["cpp_rate"].outcome(), tr)
    assert set(design.pilots) <= set(PILOT_CODES) and len(design.pilots) >= 9
    assert not set(design.comparator_las) & set(PILOT_CODES)
    nb = design.neighbours_of()
    assert all(1 <= len(v) <= 5 for v in nb.values())
    # a rate's denominator is the ONS child population of the previous mid-year
    cells = design.cells.set_index(["la", "year"])
    pop = ofs.load_official(ofs.DEFAULT_POPULATION).frame.set_index(["la_code", "year"])["population_estimate"]
    assert cells.loc[("Brent", 2016), "n"] == pop.loc[("304", 2015)]


def test_shipped_indicators_cover_table7():
    inds = ofs.load_indicators()
    assert {"cin_rate", "referral_rate", "rereferral_pct", "nfa_pct", "not_in_need_pct", "cpp_rate",
            "cpp_subsequent_pct", "turnover", "agency", "absence", "vacancy", "caseload"} <= set(inds)
    assert {inds[k].likelihood for k in ("rereferral_pct", "nfa_pct", "cpp_subsequent_pct")} == {"betabinomial"}
    assert {inds[k].likelihood for k in ("cin_rate", "referral_rate", "cpp_rate")} == {"negbinomial"}
    assert inds["cpp_rate"].denominator == "population" and inds["cpp_rate"].per == 10000


def test_added_indicator_carries_its_label():
    ind = ofs.parse_indicator_option("name=cin31_rate;source=dfe-official/b1_children_in_need_2013_to_2025.csv;"
                                     "numerator=At31_episodes;kind=rate;label=CIN at 31 March per 10k;units=per 10k")
    assert ind.denominator == "population" and ind.likelihood == "negbinomial"
    assert ind.outcome().label == "CIN at 31 March per 10k" and ind.units == "per 10k"
    with pytest.raises(DataError, match="unknown key"):
        ofs.parse_indicator_option("name=x;colour=red")
    with pytest.raises(DataError, match="likelihood"):
        ofs.parse_indicator_option("name=x;source=a.csv;numerator=a;denominator=b;kind=share;likelihood=student;label=x")


# ---------------------------------------------------------------------------- malformed files

GOOD = """time_period,time_identifier,geographic_level,country_code,old_la_code,new_la_code,la_name,category,cnt,tot
2015,Reporting year,National,E92000001,,,,All,10,100
2015,Reporting year,Local authority,E92000001,304,E09000005,Brent,All,5,50
2016,Reporting year,Local authority,E92000001,304,E09000005,Brent,All,c,60
2015,Reporting year,Local authority,E92000001,801,E06000023,"Bristol, City of",All,7,70
2016,Reporting year,Local authority,E92000001,801,E06000023,"Bristol, City of",All,x,[z]
"""


def _write(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_small_file(tmp_path):
    t = ofs.load_official(_write(tmp_path, GOOD))
    assert len(t.frame) == 4 and t.measures == ["cnt", "tot"]
    assert t.suppressed_count("cnt") == 2 and t.suppressed_count("tot") == 1
    assert t.frame.year.tolist() == [2015, 2016, 2015, 2016]


@pytest.mark.parametrize("mutate,row,column", [
    (lambda s: s.replace("old_la_code", "la_number"), None, "old_la_code"),
    (lambda s: s.replace("time_period,", "period,"), None, "time_period"),
    (lambda s: s.replace("Brent,All,5,50", "Brent,All,five,50"), 2, "cnt"),
    (lambda s: s.replace("2016,Reporting year,Local authority,E92000001,304", "2015,Reporting year,Local authority,E92000001,304"), 3, "old_la_code"),
    (lambda s: s.replace("E06000023,\"Bristol, City of\",All,7", "E06000023,\"Bristol, City of\",All,7,9"), 4, None),
    (lambda s: s.replace(",801,", ",80,"), 4, "old_la_code"),
    (lambda s: s.replace("2016,Reporting", "20x6,Reporting"), 3, "time_period"),
    (lambda s: "", None, None),
    (lambda s: s.splitlines()[0] + "\n", None, None),
])
def test_malformed_file_is_a_located_data_error(tmp_path, mutate, row, column):
    path = _write(tmp_path, mutate(GOOD))
    with pytest.raises(DataError) as err:
        ofs.load_official(path)
    e = err.value
    assert e.file == str(path) and e.row == row and e.column == column, str(e)


# ---------------------------------------------------------------------------- fuzzing every loader

def _mutations():
    kinds = st.sampled_from(["truncate", "drop_col", "rename_col", "bad_type", "bad_code", "dup_row", "empty",
                             "header_only", "bad_year", "shuffle_cell", "negative", "blank_cell"])
    return st.tuples(kinds, st.integers(0, 10_000), st.integers(0, 10_000),
                     st.text(alphabet="abcxyz-!?., 0123456789", min_size=0, max_size=6))


def _mutate(text: str, m) -> str:
    kind, a, b, junk = m
    rows = list(csv.reader(text.splitlines()))
    header, body = rows[0], rows[1:]
    import io
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if kind == "empty":
        return ""
    if kind == "header_only":
        w.writerow(header)
        return out.getvalue()
    if kind == "truncate":
        return text[: a % max(1, len(text))]
    j = a % len(header)
    i = b % max(1, len(body))
    if kind == "drop_col":
        header = header[:j] + header[j + 1:]
        body = [r[:j] + r[j + 1:] for r in body]
    elif kind == "rename_col":
        header = header[:j] + [header[j] + "_x"] + header[j + 1:]
    elif kind in ("bad_type", "bad_code", "bad_year", "shuffle_cell", "negative", "blank_cell") and body:
        value = {"bad_type": junk or "text", "bad_code": "9999", "bad_year": "19" + junk,
                 "shuffle_cell": body[(i + 1) % len(body)][(j + 1) % len(header)], "negative": "-5",
                 "blank_cell": ""}[kind]
        body[i] = body[i][:j] + [value] + body[i][j + 1:]
    elif kind == "dup_row" and body:
        body = body + [body[i]]
    w.writerow(header)
    w.writerows(body)
    return out.getvalue()


def _no_traceback(call):
    try:
        call()
    except DataError as err:
        assert str(err)
        return "error"
    return "ok"


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(m=_mutations())
def test_fuzz_official_loader(tmp_path, m):
    path = _write(tmp_path, _mutate(GOOD, m))
    res = _no_traceback(lambda: ofs.load_official(path))
    body = GOOD.splitlines()[1:]
    # a second copy of an LA-year is an error; a second National row is not read at all
    duplicated_la_row = m[0] == "dup_row" and "Local authority" in body[m[2] % len(body)]
    if m[0] in ("empty", "header_only") or duplicated_la_row:
        assert res == "error"


def _small_panel(tmp_path: Path) -> Path:
    d = tmp_path / "panel"
    d.mkdir(exist_ok=True)
    for key, name in lp.FILES.items():
        src = lp.DEFAULT_PANEL_DIR / name
        lines = src.read_text(encoding="utf-8-sig").splitlines()
        (d / name).write_text("\n".join(lines if key == "neighbours" else lines[:40]) + "\n")
    return d


@FUZZ
@given(m=_mutations(), which=st.sampled_from(["referrals", "workforce", "neighbours"]))
def test_fuzz_la_panel_loader(tmp_path, m, which):
    d = _small_panel(tmp_path)
    path = d / lp.FILES[which]
    text = path.read_text()
    if which == "neighbours":   # keep it small: fuzz the first 30 lines and keep the rest
        lines = text.splitlines()
        path.write_text(_mutate("\n".join(lines[:30]), m) + "\n".join(lines[30:]) + "\n")
    else:
        path.write_text(_mutate(text, m))
    res = _no_traceback(lambda: lp.load_panel(d))
    if m[0] in ("empty", "header_only"):
        assert res == "error"


@pytest.fixture(scope="module")
def real_panel():
    return lp.load_panel(_require(lp.DEFAULT_PANEL_DIR))


@FUZZ
@given(m=_mutations(), which=st.sampled_from(["treatment", "exclusions"]))
def test_fuzz_treatment_and_exclusions(tmp_path, real_panel, m, which):
    if which == "treatment":
        text = lp.DEFAULT_TREATMENT.read_text()
        path = _write(tmp_path, _mutate(text, m), "treatment.csv")
        res = _no_traceback(lambda: lp.build_design(real_panel, "rereferral", lp.load_treatment(path, real_panel)))
        if m[0] in ("empty", "header_only", "dup_row"):
            assert res == "error"
    else:
        text = "la_name,old_la_code,reason,source\nHavering,311,uses SofS,test\nCamden,202,uses SofS,test\n"
        path = _write(tmp_path, _mutate(text, m), "exclusions.csv")
        res = _no_traceback(lambda: lp.load_exclusions(path, real_panel))
        if m[0] == "empty":
            assert res == "error"


def test_header_only_la_panel_file_is_a_data_error(tmp_path):
    d = tmp_path / "panel"
    shutil.copytree(_require(lp.DEFAULT_PANEL_DIR), d)
    for name in lp.FILES.values():
        text = (d / name).read_text(encoding="utf-8-sig")
        (d / name).write_text(text.splitlines()[0] + "\n")
        with pytest.raises(DataError, match="no data rows"):
            lp.load_panel(d)
        (d / name).write_text(text)


def test_cli_bad_file_exits_2_and_writes_nothing(tmp_path, capsys):
    from analyses import table7

    bad = _write(tmp_path, GOOD.replace("Brent,All,5,50", "Brent,All,five,50"))
    out = tmp_path / "out"
    code = table7.main(["--add-indicator", f"name=bad;source={bad};numerator=cnt;denominator=tot;kind=share;label=bad",
                        "--only", "bad", "--out", str(out), "--quiet"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "row 2" in err and "'cnt'" in err and str(bad) in err
    assert not list(tmp_path.glob(".out.*"))
    np.testing.assert_equal(code, 2)
