"""LA-panel re-analysis: loader and validation on the real DfE files, treatment and comparators,
boundary changes, malformed input (exit 2, nothing written), model recovery on constructed
panels with known effects, PSIS reweighting, and one end-to-end run on the real files."""

from __future__ import annotations

import csv
import json
import shutil

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from analyses import la_panel as cli
from data import la_panel as lp
from data.did_input import add_design
from data.errors import DataError
from models.did.crosscheck import two_factor_anova
from models.did.design import DesignSpec, canonical_cells
from models.did.experiment import DidExperiment
from models.did.fit import SamplerSettings
from models.did.likelihoods import get_likelihood
from models.did.model import ModelSpec, cell_predictors
from models.did.priors import effect_priors
from models.did.summaries import Reading, ppc_coverage
from models.priors import NamedPrior
from tests.conftest import needs_shared

REAL = lp.DEFAULT_PANEL_DIR
PILOT_CODES = {"Brent": "304", "Bristol, City of": "801", "Leicestershire": "855", "Lincolnshire": "925",
               "Norfolk": "926", "Suffolk": "935", "Tower Hamlets": "211", "Wakefield": "384",
               "West Sussex": "938", "Wokingham": "872", "Bexley": "303"}

needs_real = needs_shared(REAL, reason="the shared DfE panel folder")   # fails instead in CI


def _data_rows(path: Path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return sum(1 for _ in csv.reader(f)) - 1


@pytest.fixture(scope="module")
def panel() -> lp.Panel:
    return lp.load_panel(REAL)


@pytest.fixture(scope="module")
def treatment(panel) -> pd.DataFrame:
    return lp.load_treatment(lp.DEFAULT_TREATMENT, panel)


# ---------------------------------------------------------------------------- the real files


@needs_real
def test_loader_reads_every_row_of_the_real_files(panel):
    assert len(panel.referrals) == _data_rows(REAL / lp.FILES["referrals"]) == 1965
    assert len(panel.workforce) == _data_rows(REAL / lp.FILES["workforce"]) == 1339
    n_la = _data_rows(REAL / lp.FILES["neighbours"])
    assert n_la == 153 and len(panel.neighbours) == 10 * n_la
    assert panel.referrals["year"].agg(["min", "max"]).tolist() == [2013, 2025]
    assert panel.workforce["year"].agg(["min", "max"]).tolist() == [2017, 2025]
    # published suppression: the dashboard's negative sentinels and text codes are missing values
    hackney = panel.referrals.query("la_code == '204' and year == 2021").iloc[0]
    assert np.isnan(hackney["referrals"]) and hackney["referrals_code"] == "x"
    scilly = panel.referrals.query("la_code == '420' and year == 2013").iloc[0]
    assert np.isnan(scilly["re_referrals"]) and scilly["re_referrals_code"] == "c" and scilly["referrals"] == 13
    westminster = panel.workforce.query("la_code == '213' and year == 2025").iloc[0]
    assert westminster["turnover_rate_fte_code"] == "x"
    observed = panel.referrals[["referrals", "re_referrals"]].notna().all(axis=1)
    assert observed.sum() == 1965 - 28          # 28 LA-years carry a code in either column
    assert (panel.referrals.loc[observed, "re_referrals"] <= panel.referrals.loc[observed, "referrals"]).all()


@needs_real
def test_pilots_and_their_neighbours_are_found_by_name_and_code(panel, treatment):
    assert dict(zip(treatment["la_name"], treatment["la_code"])) == PILOT_CODES
    nb = panel.neighbours
    first = nb[nb["rank"] == 1].set_index("la_name")["neighbour_name"]
    assert first["Bexley"] == "Havering" and first["Brent"] == "Ealing" and first["Wakefield"] == "Dudley"
    assert nb.query("la_name == 'Bexley' and rank == 1")["neighbour_code"].item() == "311"
    for name, code in PILOT_CODES.items():
        rows = nb[nb["la_code"] == code]
        assert len(rows) == 10 and rows["la_name"].unique().tolist() == [name]
    # the treatment table encodes the report's dates (years ending March)
    t = treatment.set_index("la_name")
    assert (t.loc[[n for n in PILOT_CODES if n != "Bexley"], "adoption_year"] == 2015).all()
    assert t.loc["Bexley", "adoption_year"] == 2018
    assert t.loc["Wakefield", "last_year"] == 2019 and t.loc["Tower Hamlets", "last_year"] == 2016


@needs_real
def test_comparators_are_nearest_non_pilot_neighbours(panel, treatment):
    d = lp.build_design(panel, "rereferral", treatment, n_neighbours=5)
    used = d.comparators[d.comparators["status"] == "used"]
    assert not set(used["la_code"]) & set(PILOT_CODES.values())
    assert used.groupby("pilot").size().max() == 5
    linc = d.comparators[d.comparators["pilot"] == "Lincolnshire"].set_index("neighbour")["status"]
    assert linc["Wakefield"] == linc["Norfolk"] == linc["Suffolk"] == "skipped: a named pilot"
    assert d.neighbours_of()["Lincolnshire"] == ["Lancashire", "Herefordshire, County of", "North Lincolnshire",
                                                 "Dudley", "Derbyshire"]
    assert d.neighbours_of()["Bexley"] == ["Havering", "Bedford", "Kent", "Essex", "Thurrock"]
    # Norfolk's 2012-13 and 2013-14 re-referrals are suppressed: no pre-period, left out with the reason
    assert d.pilots_excluded["pilot"].tolist() == ["Norfolk"]
    assert "2013 (x)" in d.pilots_excluded["reason"].item()
    assert set(d.cells["arm"]) == {"pilot", "comparator"}
    assert d.cells.query("la == 'Bexley' and year == 2018")["treated_post"].item() == 1
    assert d.cells.query("la == 'Bexley' and year == 2017")["treated_post"].item() == 0
    # the workforce panel starts in 2017: only Bexley (adopted 2017-18) has a pre-adoption year
    w = lp.build_design(panel, "turnover", treatment)
    assert w.pilots == ["Bexley"] and len(w.pilots_excluded) == 10


@needs_real
def test_boundary_changes_are_dropped_or_mapped_and_reported(panel, treatment):
    drop = lp.build_design(panel, "rereferral", treatment, n_neighbours=10)
    bex = drop.comparators[drop.comparators["pilot"] == "Bexley"].set_index("neighbour")["status"]
    assert bex["Bournemouth, Christchurch and Poole"].startswith("skipped: boundary change")
    assert set(drop.boundary["la_code"]) >= {"839", "838"}
    mapped = lp.build_design(panel, "rereferral", treatment, n_neighbours=10, boundary="map")
    bcp = [c for c in mapped.comparator_las if c.startswith("Bournemouth, Christchurch and Poole")]
    assert len(bcp) == 1 and "Poole 836 + Bournemouth 837" in bcp[0]
    cells = mapped.cells.set_index(["la", "year"])
    r = panel.referrals.set_index(["la_code", "year"])
    assert cells.loc[(bcp[0], 2019), "n"] == r.loc[("837", 2019), "referrals"] + r.loc[("836", 2019), "referrals"]
    assert (bcp[0], 2020) not in cells.index              # BCP 2020 re-referrals are published as x
    late_bcp = lp.outcome_panel(panel, lp.OUTCOMES["rereferral"], first_year=2013, last_year=2025, boundary="map")
    s839 = late_bcp.series[late_bcp.series["unit"] == "839m"].set_index("year")
    assert s839.loc[2021, "n"] == r.loc[("839", 2021), "referrals"]
    # splits map to the whole former area; joint workforce returns stand for both LAs
    late = lp.outcome_panel(panel, lp.OUTCOMES["rereferral"], first_year=2019, last_year=2025, boundary="map")
    assert late.unit_of["940"] == late.unit_of["941"] == "928m"
    whole = late.series[late.series["unit"] == "928m"].set_index("year")
    assert whole.loc[2023, "n"] == r.loc[("940", 2023), "referrals"] + r.loc[("941", 2023), "referrals"]
    assert whole.loc[2021, "n"] == r.loc[("928", 2021), "referrals"]
    wf = lp.outcome_panel(panel, lp.OUTCOMES["turnover"], first_year=2017, last_year=2025, boundary="map")
    assert wf.unit_of["314"] == wf.unit_of["318"] == "314 / 318"
    wf_drop = lp.outcome_panel(panel, lp.OUTCOMES["turnover"], first_year=2017, last_year=2025, boundary="drop")
    assert "314" not in wf_drop.unit_of and "dropped" in set(wf_drop.boundary["action"])


@needs_real
@pytest.mark.parametrize("policy, wakefield_2020, th_2017", [("drop", None, None), ("treated", 1, 1), ("untreated", 0, 0)])
def test_leaving_the_programme_is_encoded_by_after_exit(panel, treatment, policy, wakefield_2020, th_2017):
    d = lp.build_design(panel, "rereferral", treatment, after_exit=policy)
    c = d.cells.set_index(["la", "year"])
    for key, expected in ((("Wakefield", 2020), wakefield_2020), (("Tower Hamlets", 2017), th_2017)):
        if expected is None:
            assert key not in c.index
        else:
            assert c.loc[key, "treated_post"] == expected
            assert c.loc[key, "phase"] == ("exited" if expected == 0 else "post")
    assert c.loc[("Wakefield", 2019), "treated_post"] == 1    # left in January 2019: that year counts


@needs_real
def test_exclusion_file_removes_a_neighbour_and_the_next_one_steps_in(panel, treatment, tmp_path):
    path = tmp_path / "exclude.csv"
    path.write_text("la_name,old_la_code,reason,source\n# a comment line\nHavering,,uses SofS (test),test\n")
    ex = lp.load_exclusions(path, panel)
    d = lp.build_design(panel, "rereferral", treatment, exclusions=ex)
    assert "Havering" not in d.comparator_las
    assert d.neighbours_of()["Bexley"] == ["Bedford", "Kent", "Essex", "Thurrock", "Medway"]
    assert lp.load_exclusions(lp.DEFAULT_EXCLUSIONS, panel).empty    # the shipped template lists none


# ---------------------------------------------------------------------------- malformed input


def _copy_real(tmp_path: Path) -> Path:
    folder = tmp_path / "panel"
    folder.mkdir()
    for name in lp.FILES.values():
        shutil.copy(REAL / name, folder / name)
    return folder


def _edit(path: Path, fn) -> None:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = fn(rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def _set(row: int, column: str, value: str):
    def fn(rows):
        rows[row][rows[0].index(column)] = value
        return rows
    return fn


MALFORMED = [
    ("referrals", lambda r: [[c for j, c in enumerate(x) if j != 6] for x in r], None, "re_referrals", "missing required column"),
    ("referrals", _set(5, "referrals", "lots"), 5, "referrals", "neither a number nor"),
    ("referrals", _set(7, "re_referrals", "999999"), 7, "re_referrals", "exceed referrals"),
    ("referrals", _set(3, "referrals", "-7"), 3, "referrals", "below 0"),
    ("referrals", _set(4, "referrals", "12.5"), 4, "referrals", "not a whole number"),
    ("referrals", _set(2, "year_ending_march", "2013"), 2, "old_la_code", "a second row"),
    ("referrals", _set(9, "year_ending_march", "20x5"), 9, "year_ending_march", "not a year"),
    ("referrals", _set(6, "old_la_code", "30"), 6, "old_la_code", "three-digit"),
    ("referrals", lambda r: r[:10] + [r[10][:4]] + r[11:], 10, None, "has 4 fields"),
    ("workforce", _set(3, "agency_rate_fte", "140.0"), 3, "agency_rate_fte", "above 100"),
    ("neighbours", _set(4, "SN3", "Atlantis"), 4, "SN3", "not an LA named"),
    ("neighbours", _set(4, "SN2", "York"), 4, "SN2", "listed twice"),
]


@needs_real
@pytest.mark.parametrize("file, edit, row, column, message", MALFORMED)
def test_malformed_panel_files_name_file_row_and_column(tmp_path, file, edit, row, column, message):
    folder = _copy_real(tmp_path)
    _edit(folder / lp.FILES[file], edit)
    with pytest.raises(DataError, match=message) as err:
        lp.load_panel(folder)
    assert err.value.file == str(folder / lp.FILES[file])
    assert err.value.row == row
    assert err.value.column == column


TREATMENT_BAD = [
    (lambda r: r + [["Atlantis", "", "1", "2015", "0", "", "", "x"]], "la_name", "no LA called"),
    (_set(2, "old_la_code", "304"), "la_name", "is 'Brent', not"),
    (_set(3, "adoption_year", "soon"), "adoption_year", "not a whole number"),
    (_set(7, "after_exit", "vanish"), "after_exit", "must be one of"),
    (_set(8, "last_year", "2012"), "last_year", "before the adoption year"),
    (lambda r: r + [r[1]], "la_name", "listed twice"),
]


@needs_real
@pytest.mark.parametrize("edit, column, message", TREATMENT_BAD)
def test_bad_treatment_table_is_a_data_error(panel, tmp_path, edit, column, message):
    path = tmp_path / "treatment.csv"
    shutil.copy(lp.DEFAULT_TREATMENT, path)
    _edit(path, edit)
    with pytest.raises(DataError, match=message) as err:
        lp.load_treatment(path, panel)
    assert err.value.column == column and err.value.file == str(path) and err.value.row is not None


def test_suppression_codes_and_sentinels_read_as_missing(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("year_ending_march,new_la_code,old_la_code,la_name,region_name,referrals,re_referrals\n"
                    "2019,E09000002,301,A,London,100,[c]\n2019,E09000003,302,B,London,-300,-300\n"
                    "2019,E09000004,303,C,London,low,\n2019,E09000005,304,D,London,\"1,200\",200\n")
    f = lp.load_referrals(path)
    codes = lambda col: [c if isinstance(c, str) else None for c in f[col]]  # noqa: E731
    assert codes("re_referrals_code") == ["c", "x", "blank", None]
    assert codes("referrals_code") == [None, "x", "low", None]
    assert f["referrals"].iloc[3] == 1200 and np.isnan(f["referrals"].iloc[1])


@needs_real
@pytest.mark.parametrize("setup, argv_extra", [
    (lambda folder, tmp: _edit(folder / lp.FILES["referrals"], _set(5, "referrals", "lots")), []),
    (lambda folder, tmp: (tmp / "t.csv").write_text("la_name,old_la_code,round,adoption_year,settling_years,"
                                                    "last_year,after_exit,source\nBrent,304,1,later,0,,,x\n"),
     ["--treatment", "{tmp}/t.csv"]),
    (lambda folder, tmp: (tmp / "e.csv").write_text("la_name,old_la_code,reason,source\nHavering,311,,\n"),
     ["--exclude", "{tmp}/e.csv"]),
    (lambda folder, tmp: None, ["--treatment", "{tmp}/missing.csv"]),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, setup, argv_extra):
    folder = _copy_real(tmp_path)
    setup(folder, tmp_path)
    out = tmp_path / "out"
    argv = ["--data", str(folder), "--out", str(out), "--quiet", *[a.format(tmp=tmp_path) for a in argv_extra]]
    assert cli.main(argv) == 2
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))
    assert "error: bad input data" in capsys.readouterr().err


# ---------------------------------------------------------------------------- models on constructed panels


def constructed_panel(*, kind: str, seed: int, tau: float, n_pilots: int = 6, n_comparators: int = 14,
                      years: range = range(2013, 2021)) -> tuple[pd.DataFrame, dict]:
    """LA x year cells with staggered adoption (two thirds of pilots in 2015, the rest in 2018)
    and a known effect ``tau`` (log-odds for counts, outcome units for continuous outcomes)."""
    rng = np.random.default_rng(seed)
    las = [f"Pilot {i + 1}" for i in range(n_pilots)] + [f"Neighbour {i + 1}" for i in range(n_comparators)]
    adopt = {la: (2015 if i < 2 * n_pilots // 3 else 2018) for i, la in enumerate(las[:n_pilots])}
    u = rng.normal(0, 0.3 if kind == "count" else 3.0, len(las))
    v = rng.normal(0, 0.1 if kind == "count" else 1.0, len(years))
    rows = []
    for i, la in enumerate(las):
        size = rng.integers(2000, 8000)
        for j, year in enumerate(years):
            treated = la in adopt and year >= adopt[la]
            if kind == "count":
                eta0 = logit(0.22) + u[i] + v[j]
                mu, mu0 = expit(eta0 + tau * treated), expit(eta0)
                p = rng.beta(mu * 150, (1 - mu) * 150)
                y, n = rng.binomial(size, p), size
            else:
                mu0 = 15 + u[i] + v[j]
                mu = mu0 + tau * treated
                y, n = mu + 1.5 * rng.standard_t(5), 1.0
            rows.append({"la": la, "year": year, "arm": "pilot" if la in adopt else "comparator",
                         "adoption_year": adopt.get(la, np.nan), "settling_years": 0, "y": y, "n": n,
                         "w_effect": (mu - mu0) * n * treated, "w": n * treated})
    cells = pd.DataFrame(rows)
    scale = 100 if kind == "count" else 1
    truth = {"att": scale * cells["w_effect"].sum() / cells["w"].sum()}
    return add_design(cells.drop(columns=["w_effect", "w"])), truth


def _experiment(cells: pd.DataFrame, likelihood: str, effects: str = "unit") -> DidExperiment:
    """The LA panel's specification (analyses.la_panel): unit effects, fixed year effects."""
    canon = canonical_cells(cells, unit="la", period="year", cohort="adoption_year", settling="settling_years")
    spec = DesignSpec(likelihood, effects=effects, base="all" if effects == "unit" else "last")
    return DidExperiment(canon, spec, ModelSpec(period_effects="fixed", period_sd=cli.YEAR_SD, cohort_levels=False),
                         Reading("re-referrals", "pp", 1.0, 2.0))


def _fit(cells: pd.DataFrame, likelihood: str, prior: NamedPrior, seed: int, effects: str = "unit",
         settings: SamplerSettings = SamplerSettings(draws=400, tune=400, chains=2)):
    exp = _experiment(cells, likelihood, effects)
    fits = exp.fit([prior], settings, seed=seed)
    return exp, fits


@pytest.fixture(scope="module")
def count_fit():
    cells, truth = constructed_panel(kind="count", seed=3, tau=-0.3)
    prior = effect_priors(get_likelihood("binomial"), 0.22, direction=-1)["neutral"]
    exp, fits = _fit(cells, "betabinomial", prior, seed=5)
    return cells, truth, exp, fits


def test_betabinomial_did_recovers_a_known_effect(count_fit):
    cells, truth, exp, fits = count_fit
    f = fits.fits["neutral"]
    att = f.posterior["att"].values.ravel()
    lo, hi = np.quantile(att, [0.025, 0.975])
    assert truth["att"] < -4.0                                  # a real fall of about 5 pp
    assert lo < truth["att"] < hi
    assert np.mean(att < 0) > 0.95
    d = f.diagnostics
    assert d.divergences == 0 and d.table["rhat"].max() < 1.05   # short test chains; the CLI default meets 1.01
    eta0, eta, nuis = cell_predictors(fits.model, f.posterior)
    lik = exp.lik
    mu, mu0 = lik.response(eta, nuis, lib=np), lik.response(eta0, nuis, lib=np)
    w = exp.design.data["post"] * exp.design.data["n"]
    np.testing.assert_allclose(100 * ((mu - mu0) * w).sum(1) / w.sum(), att, rtol=1e-6, atol=1e-6)
    y_rep = exp.posterior_predictive(fits.model, f, seed=0, store=False)
    assert ppc_coverage(exp.design, y_rep) > 0.85


def test_event_study_shows_flat_pre_trends_and_the_drop_after_adoption():
    cells, _ = constructed_panel(kind="count", seed=3, tau=-0.3)
    prior = effect_priors(get_likelihood("binomial"), 0.22, direction=-1)["neutral"]
    exp, fits = _fit(cells, "betabinomial", prior, seed=5, effects="cohort_period")
    ev = exp.event_study(fits.fits["neutral"], threshold=2.0)
    pre, post = ev[ev["pre_period"] & ~ev["reference"]], ev[~ev["pre_period"]]
    assert len(pre) >= 3
    covers = (pre["eti95_low"] < 0) & (pre["eti95_high"] > 0)
    assert covers.sum() >= len(pre) - 1                          # no pre-trend in the constructed panel
    assert (pre.loc[pre["n_cohorts"] >= 2, "mean"].abs() < 2.0).all()   # where both cohorts inform it
    assert (post["mean"] < 0).all() and (post.loc[post["n_cohorts"] >= 2, "mean"] < -2.0).all()
    # A fall of about 5 pp after adoption. Half of the post-adoption intervals, not 80%: over seeds
    # 5-7 the upper bounds are about +0.08 at event time 0 and +3.0 to +3.5 at event time 5 (one
    # cohort), and event time 1 crosses zero in one seed of three, so 0.8 held only for one
    # particular chain (it failed once fast-math stopped changing the draws with the cache).
    assert (post["eti95_high"] < 0).mean() >= 0.5 and post["mean"].mean() < -3.0
    assert "pretrend" in fits.fits["neutral"].posterior and "tau_raw" not in fits.fits["neutral"].posterior


def test_student_did_recovers_a_known_effect_on_a_rate():
    cells, truth = constructed_panel(kind="continuous", seed=8, tau=-3.0, n_comparators=10, years=range(2015, 2021))
    prior = effect_priors(get_likelihood("normal"), 15.0, direction=-1, outcome_sd=float(cells["y"].std()))["neutral"]
    # the analysis defaults' 4 x 1000 draws: at 2 x 400 the Student-t fit of this small panel fails its
    # diagnostics (bulk ESS ~330 after the automatic re-fits), and its interval cannot be trusted
    exp, fits = _fit(cells, "student", prior, seed=2, settings=SamplerSettings(draws=1000, tune=1000, chains=4))
    att = fits.fits["neutral"].posterior["att"].values.ravel()
    lo, hi = np.quantile(att, [0.025, 0.975])
    assert fits.fits["neutral"].diagnostics.ok, fits.fits["neutral"].diagnostics.problems
    assert lo < truth["att"] < hi and np.mean(att < 0) > 0.95
    assert exp.design.data["y"].dtype == float                    # rates are not truncated to integers


def test_two_factor_anova_runs_on_design_cells():
    cells, _ = constructed_panel(kind="count", seed=4, tau=0.0)
    canon = canonical_cells(cells, unit="la", period="year", cohort="adoption_year", settling="settling_years")
    res = two_factor_anova(canon, years=(2015, 2019), share=True)
    assert 0 <= res["p_interaction"] <= 1 and res["n_pilots"] == 6


# ---------------------------------------------------------------------------- end to end on the real files


@needs_real
def test_cli_end_to_end_on_the_real_workforce_panel(tmp_path):
    out = tmp_path / "turnover"
    code = cli.main(["--outcome", "turnover", "--prior", "neutral", "--draws", "200", "--tune", "200", "--chains", "2",
                     "--out", str(out), "--quiet"])
    assert code == 0
    for name in ("statements.json", "report.md", "summary.csv", "la_effects.csv", "event_study.csv", "comparators.csv",
                 "trends.png", "la_effects.png", "att_posterior.png", "event_study.png", "ppc.png",
                 "posterior_neutral.nc", "posterior_event_study.nc"):
        assert (out / name).exists(), name
    rec = json.loads((out / "statements.json").read_text())
    assert rec["report"]["grade"] == "No impact" and "Workforce" in rec["report"]["source"]
    assert rec["extra"]["report_verdict"]["verdict"] == "No impact"
    assert rec["extra"]["design"]["pilots"] == ["Bexley"]
    assert "one-LA comparison" in rec["extra"]["notes"][0]
    assert rec["data"]["synthetic"] is False and rec["outcome"]["likelihood"] == "student"
    assert rec["provenance"]["data_hash"].count("sha256:") == 3
    assert rec["results"][0]["statements"][0].split(" (P = ")[0] in {
        "virtually certain", "extremely likely", "very likely", "likely", "about as likely as not", "unlikely",
        "very unlikely", "extremely unlikely", "exceptionally unlikely"}
