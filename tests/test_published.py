"""Tests of the re-analysis of the published results (data.published, models.consistency,
models.published_reanalysis, analyses.published)."""

from __future__ import annotations

import json
import math
import shutil


import numpy as np
import pandas as pd
import pytest
import yaml

from scipy import special, stats

from data.errors import DataError
from data.published import (PUBLISHED_DIR, default_report_path, load_published, printed_values,
                            verify_against_report)
from models import consistency as cons
from models import published_reanalysis as pr
from models.priors import NamedPrior, spiegelhalter_priors
from tests.conftest import needs_shared

REPORT = default_report_path()
needs_report = needs_shared(REPORT, reason="the report text")   # fails instead in CI


@pytest.fixture(scope="module")
def pub():
    return load_published()


# --------------------------------------------------------------------------------------
# the transcription


@needs_report
def test_every_transcribed_value_appears_in_the_report(pub):
    problems = verify_against_report(pub, REPORT.read_text(encoding="utf-8"))
    assert problems == []
    assert sum(1 for _ in printed_values(pub)) > 250


@needs_report
def test_verification_catches_a_value_not_in_the_report(pub):
    import copy

    bad = copy.deepcopy(pub)
    file, row, rec = bad.records[2]  # did_rereferral
    rec["estimate_printed"] = "9.9"
    problems = verify_against_report(bad, REPORT.read_text(encoding="utf-8"))
    assert any("estimate_printed" in p for p in problems)


def test_transcription_covers_every_result_the_issue_lists(pub):
    est = pub.estimates
    assert set(est.loc[est["group"] == "did", "id"]) == {
        "did_duration_days", "did_same_day", "did_rereferral", "did_rereferral_cpp_lac", "did_kinship"}
    assert (est["group"] == "table6").sum() == 5
    assert (est["group"] == "wai").sum() == 2
    assert (est["group"] == "la_level").sum() >= 10
    assert len(pub.surveys[pub.surveys["table"] == "2"]) == 32
    assert len(pub.surveys[pub.surveys["table"] == "4"]) == 20
    assert len(pub.means) == 5 and len(pub.proportions) == 4 and len(pub.reliability) == 3
    assert pub.ofsted["count"].sum() == 9 * 8  # 9 pilots, 4 aspects, 2 timings
    assert {"grant_per_pilot", "staff_days", "mgmt_days_mean", "salary_median"} <= set(pub.costs["id"])
    # every record names its source and the report's verdict where it gave one
    assert est["source"].notna().all() and est["verdict_printed"].notna().all()
    rr = pub.estimate("did_rereferral")
    assert (rr["estimate"], rr["p_printed"], rr["counterfactual_printed"], rr["observed_printed"]) == (
        -9.8, "p=0.001", "31", "21")


def test_bad_transcription_is_a_data_error_naming_file_row_column(tmp_path):
    folder = tmp_path / "published"
    shutil.copytree(PUBLISHED_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    recs = yaml.safe_load((folder / "estimates.yaml").read_text())
    recs[3]["benefit_direction"] = 5
    (folder / "estimates.yaml").write_text(yaml.safe_dump(recs))
    with pytest.raises(DataError) as err:
        load_published(folder)
    assert err.value.row == 4 and err.value.column == "benefit_direction" and "estimates.yaml" in err.value.file

    shutil.copy(PUBLISHED_DIR / "estimates.yaml", folder / "estimates.yaml")
    surveys = pd.read_csv(folder / "surveys.csv", dtype=str)
    surveys.loc[6, "n"] = "lots"
    surveys.to_csv(folder / "surveys.csv", index=False)
    with pytest.raises(DataError) as err:
        load_published(folder)
    assert err.value.row == 7 and err.value.column == "n"


# --------------------------------------------------------------------------------------
# printed numbers, GRIM and statcheck


def test_printed_intervals():
    assert cons.printed_interval("p=.041") == pytest.approx((0.0405, 0.0415))
    assert cons.printed_interval("P=.013") == pytest.approx((0.0125, 0.0135))
    assert cons.printed_interval("p < .001") == (0.0, 0.001)
    assert cons.printed_interval("88%") == (87.5, 88.5)
    assert cons.printed_interval("12.63") == pytest.approx((12.625, 12.635))
    assert cons.printed_interval("£78,750") == (78749.5, 78750.5)
    assert cons.printed_interval("(p=.002)") == pytest.approx((0.0015, 0.0025))


def test_grim_on_constructed_examples():
    assert cons.admissible_counts("54%", 13) == [7]          # 7/13 = 53.8%
    assert cons.admissible_counts("50%", 13) == []           # 6/13 = 46.2, 7/13 = 53.8: impossible
    assert cons.admissible_counts("83%", 61) == []           # Table 2, Pilot 9: no count of 61
    assert cons.admissible_counts("83%", 60) == [50]
    assert cons.admissible_counts("50%", 2) == [1]
    rec = cons.count_reconstructions("50%", range(10, 13))   # n = 10, 11, 12
    assert list(zip(rec["x"], rec["n"])) == [(5, 10), (6, 12)]
    assert rec["weight"].tolist() == [1 / 3, 1 / 3]


def test_two_by_two_reconstruction_recovers_a_known_table():
    x1, n1, x2, n2 = 13, 18, 22, 22
    p = cons.fisher_p(x1, n1, x2, n2)
    p_txt = f"{p:.3f}"
    pct1, pct2 = f"{100 * x1 / n1:.0f}", f"{100 * x2 / n2:.0f}"
    rec = cons.two_by_two_reconstructions(pct1, pct2, range(16, 33), range(14, 29), p_printed=p_txt)
    assert (x1, n1, x2, n2) in set(zip(rec["x1"], rec["n1"], rec["x2"], rec["n2"]))
    assert all(cons.in_interval(rec["p"], cons.printed_interval(p_txt)))


def test_fisher_matches_scipy():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n1, n2 = rng.integers(1, 50, size=2)
        x1, x2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        for alt in ("two-sided", "less", "greater"):
            ref = stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]], alternative=alt).pvalue
            assert cons.fisher_p(x1, n1, x2, n2, alternative=alt) == pytest.approx(ref, abs=1e-10)


def test_normal_reconstructions_invert_the_p_value():
    rec = cons.normal_reconstructions((2.0, 2.0), (0.0455, 0.0456), n_estimate=1, n_p=1)
    assert rec["se"].iloc[0] == pytest.approx(2.0 / stats.norm.isf(0.04555 / 2))
    assert rec["se"].iloc[0] == pytest.approx(1.0, abs=0.002)
    assert cons.se_from_p(-9.8, 0.001) == pytest.approx(9.8 / 3.2905, rel=1e-4)


def test_checker_passes_correct_and_flags_altered_p_values():
    # Table 6, Mistrust: t(58) = -2.564, p = .013
    assert cons.check_t_test("-2.564", 58, ".013").consistent
    assert not cons.check_t_test("-2.564", 58, ".031").consistent
    # a z test from estimate and SE
    assert cons.check_z_test("-9.8", "2.98", "0.001").consistent
    assert not cons.check_z_test("-9.8", "2.98", "0.01").consistent
    # ratio check: coef / SE against t
    assert cons.check_ratio(".382", ".149", "-2.564")[1]
    assert not cons.check_ratio(".382", ".149", "-3.564")[1]


def test_run_checks_flags_an_altered_p_in_the_transcription(pub):
    import copy

    base = cons.run_checks(pub).set_index("check_id")
    assert base.loc["table6_mistrust:p(t,df=58)", "status"] == cons.CONSISTENT
    bad = copy.deepcopy(pub)
    bad.estimates.loc[bad.estimates["id"] == "table6_mistrust", "p_printed"] = ".13"
    flagged = cons.run_checks(bad).set_index("check_id")
    assert flagged.loc["table6_mistrust:p(t,df=58)", "status"] == cons.INCONSISTENT


def test_run_checks_findings_on_the_report(pub):
    c = cons.run_checks(pub).set_index("check_id")
    st = c["status"]
    assert st["did_rereferral:counterfactual"] == cons.CONSISTENT     # 31 - 9.8 = 21
    assert st["did_kinship:counterfactual"] == cons.CONSISTENT        # 62 - 12.63 = 49
    assert st["family_chart_agree_changes:fisher"] == cons.CONSISTENT  # 13/18 vs 22/22
    assert st["hcsff_aware_of_plan:fisher"] == cons.INCONSISTENT       # no 2x2 table of <= 60 families
    assert st["table3:improved"] == cons.INCONSISTENT                  # 'Five' but four listed
    assert st["table3:transitions-vs-margins"] == cons.CONSISTENT
    assert st["2:Signs of Safety mapping:Pilot 9:grim"] == cons.INCONSISTENT
    assert st["costs:trained-total"] == cons.CONSISTENT
    assert st["table6:joint-df"] == cons.INCONSISTENT


def test_counterfactual_check_flags_an_altered_rate():
    row = {"id": "x", "source": "s", "estimate": -9.8, "estimate_printed": "9.8", "counterfactual_printed": "31",
           "observed_printed": "21"}
    assert cons.check_counterfactual(row).status == cons.CONSISTENT
    assert cons.check_counterfactual({**row, "observed_printed": "25"}).status == cons.INCONSISTENT


# --------------------------------------------------------------------------------------
# conjugate re-analysis against closed forms


def test_prior_grid_extends_the_base_convention():
    g = pr.prior_grid(-6.2, scale="pp", target_label="-6.2 pp")
    base = spiegelhalter_priors(-6.2, neutral_sd=12.4, scale="pp", target_label="-6.2 pp")
    assert len(g) == 9
    for fam in ("sceptical", "enthusiastic"):
        assert g[f"{fam}-moderate"].sd == pytest.approx(base[fam].sd)
        assert g[f"{fam}-moderate"].mean == base[fam].mean
        assert g[f"{fam}-weak"].sd == pytest.approx(2 * base[fam].sd)
        assert g[f"{fam}-strong"].sd == pytest.approx(0.5 * base[fam].sd)
    # sceptical moderate: 5% prior chance of reaching the target
    assert stats.norm.cdf(-6.2, 0, g["sceptical-moderate"].sd) == pytest.approx(0.05)
    assert g["neutral-moderate"].sd == pytest.approx(12.4) and g["enthusiastic-strong"].mean == -6.2


def test_conjugate_normal_single_reconstruction_is_the_closed_form():
    prior = NamedPrior("p", 1.0, 2.0, "pp", "")
    post = pr.conjugate_normal(prior, [4.0], [1.0])
    v = 1 / (1 / 4 + 1 / 1)
    m = v * (1.0 / 4 + 4.0 / 1)
    assert post.mean() == pytest.approx(m) and post.sd() == pytest.approx(math.sqrt(v))
    assert post.quantile(0.975) == pytest.approx(m + 1.959964 * math.sqrt(v), abs=1e-5)
    s = pr.exact_summary(post, rope=1.0, mid=2.0)
    assert s.p_positive == pytest.approx(stats.norm.sf(0, m, math.sqrt(v)))
    assert s.p_beyond_mid == pytest.approx(stats.norm.sf(2, m, math.sqrt(v)) + stats.norm.cdf(-2, m, math.sqrt(v)))
    assert s.eti95_low == pytest.approx(m - 1.959964 * math.sqrt(v), abs=1e-5)


def test_conjugate_normal_mixture_matches_numerical_integration():
    prior = NamedPrior("p", 0.0, 3.0, "pp", "")
    ys, ses, w = np.array([-9.8, -9.75]), np.array([2.8, 3.1]), np.array([0.3, 0.7])
    post = pr.conjugate_normal(prior, ys, ses, w)
    theta = np.linspace(-30, 20, 200001)
    dens = stats.norm.pdf(theta, 0, 3) * sum(wi * stats.norm.pdf(y, theta, s) for wi, y, s in zip(w, ys, ses))
    dens /= np.trapezoid(dens, theta)
    assert post.mean() == pytest.approx(np.trapezoid(theta * dens, theta), abs=1e-6)
    assert post.cdf(-5.0) == pytest.approx(np.trapezoid(dens[theta <= -5.0], theta[theta <= -5.0]), abs=1e-4)


def test_two_arm_binomial_matches_beta_closed_form():
    recon = pd.DataFrame({"x1": [13], "n1": [18], "x2": [15], "n2": [22], "weight": [1.0]})
    flat = NamedPrior("flat", 0.0, 1e4, "pp", "")  # effectively flat on delta
    post = pr.two_arm_posterior(recon, flat, grid_size=801)
    a = stats.beta(14, 6)   # Beta(x1 + 1, n1 - x1 + 1)
    b = stats.beta(16, 8)
    assert post.mean() == pytest.approx(100 * (a.mean() - b.mean()), abs=0.05)
    assert post.sd() == pytest.approx(100 * math.sqrt(a.var() + b.var()), abs=0.05)
    rng = np.random.default_rng(0)
    mc = 100 * (a.rvs(400_000, random_state=rng) - b.rvs(400_000, random_state=rng))
    assert post.sf(0.0) == pytest.approx(np.mean(mc > 0), abs=0.005)
    assert post.quantile(0.025) == pytest.approx(np.quantile(mc, 0.025), abs=0.3)


def test_reconstructions_are_summed_not_averaged_after_the_fact():
    # two tables printing the same: the likelihood is their weighted sum
    recon = pd.DataFrame({"x1": [5, 10], "n1": [10, 20], "x2": [2, 4], "n2": [10, 20], "weight": [0.5, 0.5]})
    prior = NamedPrior("n", 0.0, 40.0, "pp", "")
    both = pr.two_arm_posterior(recon, prior, grid_size=201)
    g = (np.arange(201) + 0.5) / 201
    p1, p2 = np.meshgrid(g, g, indexing="ij")
    like = sum(0.5 * stats.binom.pmf(r.x1, r.n1, p1) * stats.binom.pmf(r.x2, r.n2, p2) for r in recon.itertuples())
    dens = like * stats.norm.pdf(100 * (p1 - p2), 0, 40)
    ref = np.sum(dens * 100 * (p1 - p2)) / dens.sum()
    assert both.mean() == pytest.approx(ref, abs=1e-6)


def test_specs_and_grid_on_the_report(pub):
    specs = {s.result_id: s for s in pr.build_specs(pub)}
    rr = specs["did_rereferral"]
    assert rr.reference == pytest.approx(-6.2) and rr.mid == pytest.approx(3.1) and rr.target_applies
    assert rr.recon["se"].between(2.8, 3.1).all()
    grid = pr.reanalyse([rr])
    neutral_weak = grid[grid["prior"] == "neutral-weak"].iloc[0]
    assert neutral_weak["mean"] == pytest.approx(-9.8, abs=0.1)        # nearly flat prior: the likelihood
    assert neutral_weak["p_benefit"] > 0.99
    sc = grid.set_index("prior")["p_target"]
    assert sc["sceptical-strong"] < sc["sceptical-moderate"] < sc["sceptical-weak"]
    assert specs["family_chart_agree_changes"].recon[["x1", "n1", "x2", "n2"]].values.tolist() == [[13, 18, 22, 22]]
    with pytest.raises(ValueError, match="unknown result"):
        pr.build_specs(pub, baselines={"nope": 1.0})


def test_p_value_bounds_closed_form():
    b = pr.p_value_bounds((0.04, 0.04))
    bf = -math.e * 0.04 * math.log(0.04)
    assert b["bf_min_lo"] == pytest.approx(bf) and b["p_null_min_lo"] == pytest.approx(bf / (1 + bf))
    assert pr.p_value_bounds((0.0, 0.001))["bf_min_lo"] == 0.0


def test_ofsted_transitions_dirichlet(pub):
    out = pr.ofsted_transitions(pub.context["ofsted_transitions"], seed=1)
    assert out["counts"] == {"improved": 4, "same": 3, "worse": 2}
    # Dirichlet(5, 4, 3): E[q_improved - q_worse] = (5 - 3) / 12
    assert out["summary"].mean == pytest.approx(100 * 2 / 12, abs=0.5)


# --------------------------------------------------------------------------------------
# hierarchical binomial across pilots: recovery, predictive checks, reproducibility


def _synthetic_surveys(pub, rng):
    truth = {}
    rows = []
    surveys = pub.surveys
    for i, item in enumerate(dict.fromkeys(surveys["item"])):
        cells = surveys[surveys["item"] == item]
        base = special.expit(rng.normal(0.8, 0.4))
        best = i % 4
        for j, r in enumerate(cells.itertuples()):
            p = min(0.97, base + (0.25 if j == best else 0.0)) if r.better == "higher" else \
                max(0.03, base - (0.25 if j == best else 0.0))
            n = 400
            x = rng.binomial(n, p)
            truth[(item, r.pilot)] = p
            rows.append({"table": r.table, "item": item, "pilot": r.pilot, "printed": f"{100 * x / n:.0f}%",
                         "percent": round(100 * x / n), "n": n, "n_min": n, "better": r.better})
    return pd.DataFrame(rows), truth


@pytest.fixture(scope="module")
def pilot_fit(pub):
    from models.sampling import CompiledSampler

    real = pr.pilot_data(pub.surveys)
    synth_frame, truth = _synthetic_surveys(pub, np.random.default_rng(11))
    synth = pr.pilot_data(synth_frame, pad_to=real.x.shape[2])
    sampler = CompiledSampler(pr.pilot_model(synth))
    data = {"x": synth.x, "n": synth.n, "logw": synth.logw, "logc": synth.logc}
    kw = dict(draws=300, tune=300, chains=2, seed=5)
    idata = sampler.sample(data, **kw)
    again = sampler.sample(data, **kw)
    real_fit = sampler.sample({"x": real.x, "n": real.n, "logw": real.logw, "logc": real.logc}, **kw)
    return {"synth": synth, "truth": truth, "idata": idata, "again": again, "real": real, "real_fit": real_fit}


def test_pilot_model_recovers_known_truth(pilot_fit):
    synth, truth, idata = pilot_fit["synth"], pilot_fit["truth"], pilot_fit["idata"]
    p = idata["posterior"]["p"]
    lo, hi = p.quantile(0.005, dim=("chain", "draw")).values, p.quantile(0.995, dim=("chain", "draw")).values
    t = np.array([[truth[(i, j)] for j in synth.pilots] for i in synth.items])
    assert np.mean((lo <= t) & (t <= hi)) >= 0.9
    assert np.max(np.abs(p.mean(("chain", "draw")).values - t)) < 0.06
    s = pr.pilot_summaries(idata, synth)
    for i, item in enumerate(synth.items):
        true_best = synth.pilots[i % 4]
        assert s.loc[s["item"] == item, f"P(best) {true_best}"].iloc[0] > 0.9


def test_pilot_model_predictive_checks_and_reproducibility(pilot_fit):
    synth, idata = pilot_fit["synth"], pilot_fit["idata"]
    ppc = pr.pilot_predictive_checks(idata, synth, prior_p=pr.prior_pilot_p(synth, draws=500), seed=1)
    assert ppc["posterior_cells_outside_95"] <= 3
    lo, hi = ppc["prior_percent_range_95"]
    assert lo < 20 and hi > 95                       # the prior allows the whole plausible range
    np.testing.assert_array_equal(idata["posterior"]["p"].values, pilot_fit["again"]["posterior"]["p"].values)


def test_pilot_model_on_the_report(pilot_fit):
    real, fit = pilot_fit["real"], pilot_fit["real_fit"]
    s = pr.pilot_summaries(fit, real, best_pilot="Pilot 8", mid_pp=5.0)
    probs = s[[f"P(best) {p}" for p in real.pilots]].sum(axis=1)
    np.testing.assert_allclose(probs, 1.0)
    fnm = s[s["item"] == "Family network meetings"].iloc[0]
    assert fnm["P(best) Pilot 8"] > 0.9                # 91% vs 75/73/60%
    assert "Pilot 8" in fnm["statement"]


# --------------------------------------------------------------------------------------
# the command


def test_command_writes_the_headline_and_provenance(tmp_path):
    from analyses.published import main

    out = tmp_path / "pub"
    rc = main(["--out", str(out), "--draws", "150", "--tune", "150", "--chains", "2", "--quiet", "--seed", "3"])
    assert rc == 0
    for name in ("table8_reanalysed.csv", "table8_reanalysed.md", "table8_reanalysed.png", "statements.json",
                 "grid.csv", "consistency.csv", "pilots.csv", "pilots.png", "p_values_only.csv", "diagnostics.json"):
        assert (out / name).exists(), name
    t8 = pd.read_csv(out / "table8_reanalysed.csv")
    assert {"report's grade", "P(benefit)", "P(harm)", "P(|effect| > MID)", "P(target met)"} <= set(t8.columns)
    assert len(t8) == 4 * 3 + 1
    st = json.loads((out / "statements.json").read_text())
    assert st["provenance"]["seed"] == 3 and st["provenance"]["data_hash"].startswith("sha256:")
    assert len(st["grid"]) == 9 * len(st["results"])


def test_command_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from analyses.published import main

    folder = tmp_path / "published"
    shutil.copytree(PUBLISHED_DIR, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (folder / "costs.yaml").read_text().replace("value: 78750", "value: lots", 1)
    (folder / "costs.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(["--data", str(folder), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert "costs.yaml" in capsys.readouterr().err
