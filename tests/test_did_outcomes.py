"""Re-referral, escalation and assessment duration: generator, input, models, design robustness, CLI.

Fast tests use tiny synthetic studies (LA x year cells, few draws); the full ``--robustness``
run of every analysis family is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

from analyses import duration, escalation, rereferral, sofs_did
from analyses.sofs_did import canonical, mask_units
from data.did_input import cells_from_frame, first_record_mask, max_value_mask, validate_la_attributes
from data.errors import DataError
from data.synthetic import (AssessmentStudyConfig, DidStudyConfig, ReferralStudyConfig, assessment_twin,
                            referral_twin, simulate_assessment_study, simulate_referral_study)
from models.did import robustness as sens
from models.did.crosscheck import mean_did
from models.did.design import DesignSpec, did_design
from models.did.likelihoods import get_likelihood
from models.did.model import SOFS_MODEL_SPEC, build_did_model, model_data, repeated_design
from models.did.priors import effect_priors
from models.sampling import CompiledSampler

FAST = "FAST_COMPILE"   # exact log-density checks: no C compilation needed

# ---------------------------------------------------------------- small studies

SMALL_BASE = DidStudyConfig(
    outcome="rereferral", n_pilot=3, n_comparator=3, years=tuple(range(2011, 2018)), adoption_years=(2014, 2014, 2015),
    settling_years=(1, 1, 1), children_per_la_year=120.0, baseline_share=0.33, sd_la=0.25, sd_trend=0.02,
    sd_year=0.05, mu_tau=-0.5, sd_tau=0.2, similar_practice_las=("Comparator 3",))
SMALL_REFERRALS = ReferralStudyConfig(base=SMALL_BASE, unreliable_las=("Comparator 2",), unreliable_until=2012,
                                      escalation_report_sample=("Pilot 1", "Pilot 2", "Comparator 1", "Comparator 2"))
SMALL_ASSESSMENTS = AssessmentStudyConfig(
    base=replace(SMALL_BASE, outcome="assessment_days", baseline_share=0.12, mu_tau=-0.3, sd_tau=0.1),
    practice_change_las=("Pilot 1",), practice_change_year=2016, practice_pre_median_days=(4.0,),
    practice_post_median_days=(30.0,), practice_pre_same_day=(0.25,), practice_post_same_day=(0.05,))

# recovery designs: 12 LAs, LA x year cells, no confounding
RECOVERY_BASE = DidStudyConfig(
    outcome="rereferral", n_pilot=6, n_comparator=6, years=tuple(range(2010, 2019)),
    adoption_years=(2013, 2013, 2014, 2014, 2015, 2015), settling_years=(1, 1, 1, 1, 1, 1), children_per_la_year=400.0,
    baseline_share=0.33, sd_la=0.3, sd_trend=0.03, sd_year=0.05, mu_tau=-0.5, sd_tau=0.15,
    age_effects=(0.0,) * 4, male_effect=0.0, ethnic_effects=(0.0,) * 5, disability_effect=0.0)


def _write(tmp: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp / name
    frame.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------- generator

def test_referral_twin_is_calibrated_to_the_report():
    twin = referral_twin()
    t = twin.truth
    assert 0.29 <= t["counterfactual_share_post"] <= 0.33               # report: 31% without SofS
    assert -12.0 <= t["att_pp"] <= -8.5                                  # report: -9.8 pp
    assert 0.05 <= t["share_records_repeated_children"] <= 0.15        # report: < 15% repeated
    assert t["n_miscoded_records"] > 0
    kids = twin.children
    assert {"child_id", "rereferral", "escalation"} <= set(kids.columns)
    assert (kids["escalation"] <= kids["rereferral"]).all()
    # unreliable NFA coding: few NFA referrals recorded in the early years of those LAs
    per_year = kids.groupby(["la", "year"]).size()
    for la in ReferralStudyConfig().unreliable_las:
        assert per_year[la].loc[:2013].mean() < 0.5 * per_year[la].loc[2014:].mean()
    assert twin.truth["outcomes"]["escalation"]["att_pp"] < 0
    esc = referral_twin("escalation")
    assert esc.truth["att_pp"] == pytest.approx(t["outcomes"]["escalation"]["att_pp"])


def test_assessment_twin_is_calibrated_to_the_report():
    twin = assessment_twin()
    t = twin.truth
    assert 10 <= t["pilot_pre_mean_days"] <= 30
    assert 0.08 <= t["pilot_pre_same_day_share"] <= 0.2
    assert abs(t["att_days"]) < 1.5 and abs(t["att_sameday_pp"]) < 1.5      # SofS itself: small
    assert t["naive_att_days"] > 2.5 and t["naive_att_sameday_pp"] < -1.0  # what a naive DiD targets
    d = twin.children
    p1 = d[d.la == "Pilot 1"]
    assert p1[p1.year < 2014]["assessment_days"].median() <= 4           # report: 2 working days ...
    assert p1[p1.year == 2018]["assessment_days"].median() >= 20         # ... then 32
    assert (d["assessment_days"] >= 0).all() and d["assessment_days"].dtype.kind == "i"


def test_new_generators_are_deterministic_and_leave_kinship_unchanged():
    a = simulate_referral_study(SMALL_REFERRALS, seed=3)
    b = simulate_referral_study(SMALL_REFERRALS, seed=3)
    pd.testing.assert_frame_equal(a.children, b.children)
    assert a.truth == b.truth
    c = simulate_assessment_study(SMALL_ASSESSMENTS, seed=3)
    d = simulate_assessment_study(SMALL_ASSESSMENTS, seed=3)
    pd.testing.assert_frame_equal(c.children, d.children)
    assert a.la_attributes is not None and set(a.la_attributes.columns) >= {"la", "ofsted", "similar_practice_model"}


# ---------------------------------------------------------------- input

def test_duration_cells_hold_exact_sufficient_statistics():
    kids = simulate_assessment_study(SMALL_ASSESSMENTS, seed=1).children
    cells = cells_from_frame(kids, "assessment_days", kind="duration", covariates=(),
                             variants={"max_30": max_value_mask(30), "first_record": first_record_mask})
    assert cells.stats == ("y", "n", "n_pos", "log_sum", "log_sq", "dur_sum")
    one = cells.cells.query("la == 'Pilot 2' and year == 2015").iloc[0]
    d = kids.query("la == 'Pilot 2' and year == 2015")["assessment_days"].to_numpy()
    pos = d[d > 0]
    assert (one["n"], one["y"], one["n_pos"]) == (d.size, (d == 0).sum(), pos.size)
    assert one["log_sum"] == pytest.approx(np.log(pos).sum())
    assert one["log_sq"] == pytest.approx((np.log(pos) ** 2).sum())
    assert one["dur_sum"] == pytest.approx(d.sum())
    assert one["n|max_30"] == (d <= 30).sum()
    assert cells.cells["n|first_record"].sum() == kids["child_id"].nunique()
    short = cells.variant_cells("max_30")
    assert (short["n"] <= cells.cells["n"]).all() and len(short) == len(cells.cells)
    cut = cells_from_frame(kids, "assessment_days", kind="duration", covariates=(), max_value=30)
    assert cut.n_children == (kids["assessment_days"] <= 30).sum() and "left out" in cut.notes[0]


def test_repeated_children_records_and_masked_units():
    kids = simulate_referral_study(SMALL_REFERRALS, seed=2).children
    cells = cells_from_frame(kids, "rereferral", covariates=("sex",))
    counts = kids["child_id"].value_counts()
    assert len(cells.repeated) == int(counts[counts > 1].sum())
    analysis = cells.analysis_cells()
    canon = canonical(analysis)
    rep = repeated_design(canon, canonical(cells.repeated), ["unit", "period", *cells.covariates])
    assert (rep["n_once"] >= 0).all() and (rep["y_once"] >= 0).all()
    assert rep["n_once"].sum() + len(rep["rep_y"]) == analysis["n"].sum()
    masked = mask_units(canon, ["Pilot 1"], ("n", "y"))
    assert masked.loc[masked.unit == "Pilot 1", ["n", "y"]].eq(0).all().all()
    assert len(masked) == len(analysis) and masked["n"].sum() < analysis["n"].sum()


@pytest.mark.parametrize("mutate, column, message", [
    (lambda f: f.assign(assessment_days=f["assessment_days"].where(f.index != 3, -2)), "assessment_days", "negative"),
    (lambda f: f.assign(assessment_days=f["assessment_days"].astype(float).where(f.index != 5, 2.5)),
     "assessment_days", "whole number"),
    (lambda f: f.assign(n=1), "n", "one row per record"),
    (lambda f: f.assign(child_id=f["child_id"].where(f.index != 2, None)), "child_id", "missing"),
])
def test_bad_duration_input_names_the_column(mutate, column, message):
    kids = simulate_assessment_study(SMALL_ASSESSMENTS, seed=1).children
    with pytest.raises(DataError, match=message) as err:
        cells_from_frame(mutate(kids), "assessment_days", kind="duration", source="a.csv")
    assert err.value.column == column and err.value.file == "a.csv"


@pytest.mark.parametrize("mutate, column, message", [
    (lambda f: f.assign(ofsted=f["ofsted"].where(f.index != 1, "excellent")), "ofsted", "not one of"),
    (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), "la", "appears twice"),
    (lambda f: f.iloc[1:], "la", "no row for LA"),
    (lambda f: f.assign(embeddedness=f["embeddedness"].astype(object).where(f.index != 0, "high")), "embeddedness",
     "not a number"),
])
def test_bad_la_attributes(mutate, column, message):
    study = simulate_referral_study(SMALL_REFERRALS, seed=1)
    las = sorted(study.children["la"].unique())
    with pytest.raises(DataError, match=message) as err:
        validate_la_attributes(mutate(study.la_attributes).reset_index(drop=True), las, source="las.csv")
    assert err.value.column == column and err.value.file == "las.csv"


# ---------------------------------------------------------------- sensitivity functions

def test_event_study_draws_leave_out_the_base_period():
    rng = np.random.default_rng(0)
    dyn = {k: rng.normal(k, 0.1, 50) for k in (-4, -3, -2, 0, 1, 2)}
    dyn[-1] = np.zeros(50)
    draws, n_pre, times = sens.event_study_draws(dyn)
    assert n_pre == 3 and times == [-4, -3, -2, 0, 1, 2] and draws.shape == (50, 6)
    np.testing.assert_array_equal(draws[:, 3], dyn[0])
    draws, n_pre, times = sens.event_study_draws({**dyn, -1: rng.normal(size=50), -2: np.zeros(50)}, anticipation=1)
    assert n_pre == 2 and times == [-4, -3, -1, 0, 1, 2]         # base -2; the anticipation period is post


def test_suspect_cells_find_the_lAs_with_unreliable_nfa_coding():
    cells = cells_from_frame(referral_twin().children, "rereferral", covariates=())
    mask, las = sens.suspect_cells(canonical(cells.cells))
    assert sorted(las) == sorted(ReferralStudyConfig().unreliable_las)
    assert set(cells.cells.loc[mask, "year"]) <= set(range(2010, 2014))


def test_moderator_groups_and_similar_practice_from_attributes():
    study = referral_twin()
    las = sorted(study.children["la"].unique())
    attrs = validate_la_attributes(study.la_attributes, las)
    pilots = [f"Pilot {i}" for i in range(1, 10)]
    groups = sens.moderator_groups(attrs, pilots)
    assert set(groups) == {"embeddedness", "quality_of_delivery", "ofsted"}
    emb, _ = groups["embeddedness"]
    assert emb.sum() == 4 and set(np.unique(emb)) == {0.0, 1.0}     # above the median of 9
    assert sens.similar_practice_comparators(attrs, las) == ["Comparator 3", "Comparator 8"]
    assert sens.moderator_groups(None, pilots)["ofsted"][0] is None


def test_robustness_plan_lists_the_cheap_refits():
    import argparse

    args = argparse.Namespace(covariates="none", data=None, la_attributes=None, exclude_las=None, max_duration=None,
                              cutoff_values=())
    si = sofs_did.load_inputs(escalation.SPEC, args)
    analysis = did_design(si.inputs.cells, DesignSpec("binomial", effects="unit", base="all")).cells
    plan, notes = sofs_did.robustness_plan(escalation.SPEC, si, analysis, cheap=True, heavy=False)
    names = [p.name for p in plan]
    assert names == ["without similar-practice comparators", "without LAs with unreliable NFA coding",
                     "report's LAs only", "first record per child"]
    sample = plan[2].frame
    assert set(sample.loc[sample.n > 0, "unit"]) == set(escalation.SPEC.report_sample)
    assert len(sample) == len(analysis)                         # same cells: the compiled model is re-used
    heavy, _ = sofs_did.robustness_plan(escalation.SPEC, si, analysis, cheap=False, heavy=True)
    assert len(heavy) == 18 and all(p.family == "leave one LA out" for p in heavy)


# ---------------------------------------------------------------- model extensions (exact checks, no sampling)

def _small_design(kind: str = "binary"):
    if kind == "binary":
        study = simulate_referral_study(SMALL_REFERRALS, seed=4)
        cells = cells_from_frame(study.children, "rereferral", covariates=())
        spec = DesignSpec("binomial", effects="unit", base="all", unit_trends=True)
    else:
        study = simulate_assessment_study(SMALL_ASSESSMENTS, seed=4)
        cells = cells_from_frame(study.children, "assessment_days", kind="duration", covariates=())
        spec = DesignSpec("hurdle_lognormal", effects="unit", base="all")
    design = did_design(canonical(cells.cells), spec)
    return cells, design.cells, design


def test_extensions_reduce_to_the_plain_model():
    cells, analysis, design = _small_design()
    prior = effect_priors(get_likelihood("binomial"), 0.3, direction=-1)["neutral"]
    plain = build_did_model(design, prior, spec=SOFS_MODEL_SPEC).model
    point = plain.initial_point()
    point.update({"mu_tau": np.array(-0.4), "sigma_unit_log__": np.array(-1.0)})
    lp = plain.compile_logp(mode=FAST)(point)
    # misclassification share 0: same likelihood (plus the prior of the unused q)
    mis = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, misclassification=np.zeros(len(analysis))).model
    mpoint = {**point, "miscoded_logit": np.array(0.0)}
    q_prior = float(mis.compile_logp(vars=[mis["miscoded_logit"]], mode=FAST)(mpoint))
    assert mis.compile_logp(mode=FAST)(mpoint) == pytest.approx(lp + q_prior, rel=1e-9)
    # moderator effect 0: same model (plus the prior of gamma)
    mod = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, moderator=np.array([1.0, 0.0, 1.0])).model
    dpoint = {**point, "moderator_effect": np.array(0.0)}
    g_prior = float(mod.compile_logp(vars=[mod["moderator_effect"]], mode=FAST)(dpoint))
    assert mod.compile_logp(mode=FAST)(dpoint) == pytest.approx(lp + g_prior, rel=1e-9)
    # child random effect with sigma_child -> 0: the binomial likelihood (records of repeated
    # children enter as Bernoulli terms, so compare without the binomial coefficients)
    rep = repeated_design(analysis, canonical(cells.repeated), ["unit", "period"])
    child = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, repeated=rep).model
    cpoint = {**point, "sigma_child_log__": np.array(-30.0)}
    y, n = design.data["y"], design.data["n"]
    log_choose = lambda n_, k_: gammaln(n_ + 1) - gammaln(k_ + 1) - gammaln(n_ - k_ + 1)  # noqa: E731
    offset = log_choose(n, y).sum() - log_choose(rep["n_once"], rep["y_once"]).sum()
    s_prior = float(child.compile_logp(vars=[child["sigma_child"]], mode=FAST)(cpoint))
    assert child.compile_logp(mode=FAST)(cpoint) + offset == pytest.approx(lp + s_prior, rel=1e-6)


def _prior_draws(dm, draws: int = 40):
    import pymc as pm

    with dm.model:
        return pm.sample_prior_predictive(draws=draws, random_seed=3, compile_kwargs={"mode": FAST})["prior"]


def test_recording_error_models_weight_the_effect_by_the_true_population():
    """The contamination model's effect is weighted by the population's (1 - m) n records and
    the under-coding model's by n / (1 - u), not by the n records on file; the under-coding
    model's records have the population's log-odds shifted by log psi; with u = 0 and psi = 1
    it is the plain model."""
    from scipy.special import expit

    from models.did.model import cell_predictors

    cells, analysis, design = _small_design()
    prior = effect_priors(get_likelihood("binomial"), 0.3, direction=-1)["neutral"]
    d = design.data
    rng = np.random.default_rng(0)
    share = np.where(d["treated"] > 0, rng.uniform(0.1, 0.6, len(analysis)), 0.0)   # unequal across treated cells

    def numpy_att(dm, draws, weights):
        eta0, eta, _ = cell_predictors(dm, draws)
        w = weights * (d["post"] > 0)
        return 100 * ((expit(eta[""]) - expit(eta0[""])) * w).sum(1) / w.sum()

    mis = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, misclassification=share)
    draws = _prior_draws(mis)
    np.testing.assert_allclose(draws["att"].values.ravel(), numpy_att(mis, draws, (1 - share) * d["n"]), rtol=1e-6)
    assert not np.allclose(draws["att"].values.ravel(), numpy_att(mis, draws, d["n"]), rtol=1e-3)

    log_psi = np.where(share > 0, np.log(2.0), 0.0)
    und = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, undercoding=(share, log_psi))
    draws = _prior_draws(und)
    np.testing.assert_allclose(draws["att"].values.ravel(), numpy_att(und, draws, d["n"] / (1 - share)), rtol=1e-6)
    # the records' likelihood: Binomial(n, expit(eta + log psi))
    point = und.model.initial_point()
    plain = build_did_model(design, prior, spec=SOFS_MODEL_SPEC)
    lp_plain = plain.model.compile_logp(mode=FAST)(point)
    lp_und = und.model.compile_logp(mode=FAST)(point)
    base = build_did_model(design, prior, spec=SOFS_MODEL_SPEC, undercoding=(np.zeros(len(analysis)),
                                                                              np.zeros(len(analysis))))
    assert base.model.compile_logp(mode=FAST)(point) == pytest.approx(lp_plain, rel=1e-10)
    assert lp_und != pytest.approx(lp_plain, rel=1e-6)
    from scipy import stats

    eta0, eta, _ = cell_predictors(und, {k: _as_draw(v) for k, v in _point_values(und, point).items()})
    y, n = d["y"], d["n"]
    shift = stats.binom.logpmf(y, n, expit(eta[""][0] + log_psi)).sum() - stats.binom.logpmf(y, n, expit(eta[""][0])).sum()
    assert lp_und - lp_plain == pytest.approx(shift, rel=1e-8)


def _point_values(dm, point):
    m = dm.model
    names = ["unit_intercept", "period_effect", "unit_trend", "tau"]
    outs = m.replace_rvs_by_values([m[v] for v in names])
    vals = m.compile_fn(outs, inputs=m.value_vars, mode=FAST, on_unused_input="ignore")(point)
    return dict(zip(names, vals))


def _as_draw(v):
    import xarray as xr

    v = np.asarray(v)
    return xr.DataArray(v[None, None], dims=("chain", "draw", *[f"d{i}" for i in range(v.ndim)]))


def test_hurdle_likelihood_equals_the_record_level_lognormal():
    cells, analysis, design = _small_design("duration")
    kids = simulate_assessment_study(SMALL_ASSESSMENTS, seed=4).children
    prior = effect_priors(get_likelihood("hurdle_lognormal"), 20.0, direction=-1)["neutral"]
    model = build_did_model(design, prior, spec=SOFS_MODEL_SPEC).model
    point = model.initial_point()
    point["sigma_log_log__"] = np.array(np.log(0.8))
    point["alpha"] = np.array(2.5)
    if "unit_intercept" in point:          # centred intercepts: at their mean
        point["unit_intercept"] = np.full_like(point["unit_intercept"], 2.5)
    potential_graph = model.replace_rvs_by_values([model.potentials[0]])[0]
    f = model.compile_fn(potential_graph, inputs=model.value_vars, point_fn=True, on_unused_input="ignore", mode=FAST)
    potential = float(f(point))
    # record level: sum over positive durations of log N(log d | m_c, 0.8) + log d, up to constants
    m = 2.5 + 0.0  # every other term is zero at the initial point
    keep = (kids.arm != "pilot") | ~((kids.year - kids.adoption_year >= 0) & (kids.year - kids.adoption_year < kids.settling_years))
    logd = np.log(kids.loc[keep & (kids.assessment_days > 0), "assessment_days"].to_numpy(float))
    direct = np.sum(-np.log(0.8) - (logd - m) ** 2 / (2 * 0.8 ** 2))
    assert potential == pytest.approx(direct, rel=1e-9)


# ---------------------------------------------------------------- recovery and the command line (tiny fits)
#
# Each outcome's recovery test runs its command line once on a synthetic study whose truth is known
# (12 LAs x 9 years, LA x year cells), so one pair of compilations serves both.

RECOVERY_REFERRALS = ReferralStudyConfig(
    base=replace(RECOVERY_BASE, similar_practice_las=("Comparator 3",)), sd_child=0.3,
    unreliable_las=("Comparator 2",), unreliable_until=2011, miscoded_share=0.0,   # few NFA records, none miscoded
    similar_practice_effect=0.0, escalation_share=0.3)
RECOVERY_ASSESSMENTS = AssessmentStudyConfig(
    base=replace(RECOVERY_BASE, outcome="assessment_days", baseline_share=0.12, mu_tau=-0.35, sd_tau=0.1),
    mu_tau_days=0.15, sd_tau_days=0.05, practice_change_las=(), repeat_share=0.05, sd_child_days=0.0)
FIT = ["--draws", "300", "--tune", "300", "--chains", "2", "--prior", "neutral", "--quiet", "--covariates", "none",
       "--seed", "2"]


@pytest.fixture(scope="module")
def recovery(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recovery")
    ref = simulate_referral_study(RECOVERY_REFERRALS, seed=5)
    ass = simulate_assessment_study(RECOVERY_ASSESSMENTS, seed=6)
    return {"referrals": ref, "assessments": ass, "referral_file": _write(tmp, "referrals.csv", ref.children),
            "assessment_file": _write(tmp, "assessments.csv", ass.children),
            "las": _write(tmp, "las.csv", ref.la_attributes)}


def _short_chains_fail_loudly(code: int, rec: dict) -> None:
    """These command-line runs use 2 x 300 draws (the suite's budget), which cannot reach bulk
    ESS 400 for every variable: the runs must say so (``--strict`` exits 1, the record and its
    problems list the failure), while the headline effect is still estimated precisely enough
    (bulk ESS >= 150) for the recovery assertions that follow."""
    assert code == 1 and rec["diagnostics_ok"] is False
    main = next(v for k, v in rec["diagnostics"].items() if k.startswith("main"))
    assert not main["ok"] and any("ESS" in p for p in main["problems"])
    att = next(v for v in main["variables"] if v["variable"] == "att")
    assert att["ess_bulk"] >= 150 and att["rhat"] < 1.05


def _covers(draws: np.ndarray, truth: float, tol: float) -> None:
    lo, hi = np.quantile(np.ravel(draws), [0.025, 0.975])
    assert lo < truth < hi, (lo, truth, hi)
    assert abs(np.mean(draws) - truth) < tol


def test_rereferral_cli_recovers_the_truth_and_writes_robustness_outputs(recovery, tmp_path):
    import arviz as az

    out = tmp_path / "rr"
    code = rereferral.main(["--data", str(recovery["referral_file"]), "--la-attributes", str(recovery["las"]),
                            "--out", str(out), "--strict", *FIT])
    rec = json.loads((out / "statements.json").read_text())
    _short_chains_fail_loudly(code, rec)
    names = {p.name for p in out.iterdir()}
    assert {"posterior_neutral.nc", "posterior_event_study.nc", "statements.json", "report.md", "summary.csv",
            "robustness.csv", "sensitivity.csv", "pretrends.csv", "sensitivity.png",
            "robustness.png", "event_study.png", "ppc.png"} <= names
    att = az.from_netcdf(out / "posterior_neutral.nc")["posterior"]["att"].values
    _covers(att, recovery["referrals"].truth["att_pp"], tol=2.5)          # posterior SD about 1.3 pp
    rec = json.loads((out / "statements.json").read_text())
    assert rec["report"]["effect"] == -9.8 and rec["data"]["synthetic"] is False
    rob = pd.read_csv(out / "robustness.csv")
    assert list(rob["analysis"]) == ["main (all LAs)", "without similar-practice comparators",
                                     "without LAs with unreliable NFA coding", "first record per child"]
    assert "Comparator 2" in rob["description"].iloc[2]
    assert rob["width_ratio_vs_main"].gt(0).all()
    rm = rec["robustness"]["sensitivity"]["att"]["restrictions"]["relative_magnitudes"]["first post-adoption period"]
    assert rm["conclusion"] == "reduction" and (rm["breakdown_robust_interval"] is None or rm["breakdown_robust_interval"] >= 0)
    assert set(pd.read_csv(out / "sensitivity.csv")["restriction"]) == {"relative_magnitudes", "smoothness"}
    assert pd.read_csv(out / "pretrends.csv")["event_time"].iloc[-1] == "max |pre|"
    assert any("parallel trends" in s for s in rec["robustness"]["statements"])


def test_escalation_model_recovers_the_truth(recovery):
    study = recovery["referrals"]
    cells = cells_from_frame(study.children, "escalation", covariates=())
    design = did_design(canonical(cells.cells), DesignSpec("binomial", effects="unit", base="all", unit_trends=True))
    analysis = design.cells
    prior = effect_priors(get_likelihood("binomial"), float(analysis["y"].sum() / analysis["n"].sum()),
                          direction=-1)["neutral"]
    dm = build_did_model(design, prior, spec=SOFS_MODEL_SPEC)
    idata = CompiledSampler(dm.model).sample(model_data(dm, prior=prior), draws=300, tune=300, chains=2, seed=2)
    _covers(idata["posterior"]["att"].values, study.truth["outcomes"]["escalation"]["att_pp"], tol=1.5)


def test_duration_cli_recovers_days_and_same_day_and_its_ppc_fits(recovery, tmp_path):
    import arviz as az

    out = tmp_path / "du"
    # the generator has LA-specific trends in both parts, so the model that recovers it has them too
    # --target-accept 0.95: with LA trends on this data and these short chains, 0.9 left one
    # chain stuck (492 divergences in 600 draws); 0.95 samples it (a few divergences remain,
    # so the exit code may be 1)
    code = duration.main(["--data", str(recovery["assessment_file"]), "--out", str(out), "--cutoffs", "45",
                          "--la-trends", "--target-accept", "0.95", "--strict", *FIT])
    rec = json.loads((out / "statements.json").read_text())
    _short_chains_fail_loudly(code, rec)
    truth = recovery["assessments"].truth
    assert truth["att_days"] > 2.0 and truth["att_sameday_pp"] < -2.0      # effects worth recovering
    idata = az.from_netcdf(out / "posterior_neutral.nc")
    _covers(idata["posterior"]["att"].values, truth["att_days"], tol=1.5)
    _covers(idata["posterior"]["att_zero"].values, truth["att_sameday_pp"], tol=1.5)
    # posterior predictive: the share of same-day assessments, overall and by arm and year
    same_day = idata["observed_data"]["y_obs"].values
    y_pred = idata["posterior_predictive"]["y_obs"].values
    cells = cells_from_frame(recovery["assessments"].children, "assessment_days", kind="duration", covariates=())
    analysis = cells.analysis_cells()
    share = 100 * y_pred.reshape(-1, len(analysis)).sum(1) / analysis["n"].sum()
    observed = 100 * same_day.sum() / analysis["n"].sum()
    assert np.quantile(share, 0.005) < observed < np.quantile(share, 0.995)
    ppc = pd.read_csv(out / "ppc_duration.csv")
    inside = ppc.observed_same_day_pct.between(ppc.pred_same_day_low, ppc.pred_same_day_high)
    assert inside.mean() >= 0.8
    inside = ppc.observed_mean_days.between(ppc.pred_low_days, ppc.pred_high_days)
    assert inside.mean() >= 0.7
    rec = json.loads((out / "statements.json").read_text())
    res = rec["results"][0]
    assert {"att_zero"} == set(res["secondary"]) and rec["outcome"]["units"] == "working days"
    assert set(rec["robustness"]["sensitivity"]) == {"att", "att_zero"}
    assert {f["label"] for f in rec["frequentist"]} == {"mean duration", "same-day share"}
    rob = pd.read_csv(out / "robustness.csv")
    assert {"without Pilots 1 and 2", "durations <= 45 days", "first record per child"} <= set(rob["analysis"])
    # the 45-day re-fit models its durations as truncated there: its population mean (the
    # lognormal beyond the cut-off) recovers the untruncated truth, its truncated mean is smaller
    cut = rob[rob["analysis"] == "durations <= 45 days"].set_index("effect")
    assert cut.loc["att_population", "eti95_low"] < truth["att_days"] < cut.loc["att_population", "eti95_high"]
    assert abs(cut.loc["att", "mean"]) < abs(cut.loc["att_population", "mean"])
    main_rows = rob[rob["family"] == "main"].set_index("effect")
    assert main_rows.loc["att", "mean"] == pytest.approx(main_rows.loc["att_population", "mean"], rel=1e-9)
    assert {"ppc_duration.png", "att_posterior_att_zero.png", "event_study_att_zero.png",
            "robustness_att_zero.png"} <= {p.name for p in out.iterdir()}
    assert "same-day" in (out / "report.md").read_text()
    assert mean_did(canonical(analysis).assign(treated_post=(analysis["phase"] == "post").astype(float))).n_clusters == 12


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outcomes")
    ref = simulate_referral_study(SMALL_REFERRALS, seed=1)
    ass = simulate_assessment_study(SMALL_ASSESSMENTS, seed=1)
    return {"referrals": _write(tmp, "referrals.csv", ref.children),
            "assessments": _write(tmp, "assessments.csv", ass.children),
            "las": _write(tmp, "las.csv", ref.la_attributes), "tmp": tmp}


FEW = ["--draws", "60", "--tune", "60", "--chains", "2", "--quiet", "--covariates", "none", "--seed", "3"]


@pytest.mark.parametrize("module, data_key, mutate, needle", [
    (rereferral, "referrals", lambda f: f.drop(columns="rereferral"), "column 'rereferral'"),
    (rereferral, "referrals", lambda f: f.assign(rereferral=f["rereferral"].where(f.index != 4, 3)), "row 5"),
    (escalation, "referrals", lambda f: f[f.arm == "pilot"], "no comparator"),
    (duration, "assessments", lambda f: f.assign(assessment_days=f["assessment_days"].where(f.index != 0, -1)),
     "row 1, column 'assessment_days'"),
])
def test_bad_input_exits_2_and_writes_nothing(small_files, tmp_path, capsys, module, data_key, mutate, needle):
    frame = pd.read_csv(small_files[data_key])
    path = _write(tmp_path, "bad.csv", mutate(frame).reset_index(drop=True))
    out = tmp_path / "out"
    code = module.main(["--data", str(path), "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and str(path) in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_bad_la_attributes_and_options_exit_2(small_files, tmp_path, capsys):
    bad = pd.read_csv(small_files["las"]).assign(ofsted="brilliant")
    path = _write(tmp_path, "las.csv", bad)
    out = tmp_path / "out"
    assert rereferral.main(["--data", str(small_files["referrals"]), "--la-attributes", str(path),
                            "--out", str(out), "--quiet"]) == 2
    assert "column 'ofsted'" in capsys.readouterr().err and not out.exists()
    assert rereferral.main(["--data", str(small_files["referrals"]), "--exclude-las", "Atlantis",
                            "--out", str(out), "--quiet"]) == 2
    assert "Atlantis" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit) as exc:
        duration.main(["--cutoffs", "45,abc", "--out", str(out)])
    assert exc.value.code == 2


# ---------------------------------------------------------------- slow: every robustness analysis end to end

@pytest.mark.slow
@pytest.mark.parametrize("module, data_key, families", [
    (rereferral, "referrals", {"main", "exclusion", "data definition", "specification", "leave one LA out",
                               "moderator", "repeated children", "misclassification", "under-coding"}),
    (duration, "assessments", {"main", "exclusion", "data definition", "specification", "leave one LA out",
                               "moderator"}),
])
def test_full_robustness_runs_every_analysis(small_files, tmp_path, module, data_key, families):
    out = tmp_path / "full"
    args = ["--data", str(small_files[data_key]), "--la-attributes", str(small_files["las"]), "--robustness",
            "--prior", "neutral", "--out", str(out), "--strict", *FEW]
    code = module.main(args)
    rob = pd.read_csv(out / "robustness.csv")
    assert families <= set(rob["family"])
    rec = json.loads((out / "statements.json").read_text())
    # 2 x 60 draws are for the plumbing, not for inference: every fit fails its checks, and says so
    assert code == 1 and rec["diagnostics_ok"] is False and rec["robustness"]["diagnostics_ok"] is False
    assert not rob["diagnostics_ok"].iloc[1:].all()
    assert len(rec["robustness"]["leave_one_out"]) == 6 and rec["robustness"]["leave_one_out_summary"]["n_refits"] == 6
    if module is rereferral:
        mis = rob[rob.family == "misclassification"]
        assert len(mis) == 5 and mis["analysis"].iloc[0] == "misclassified share 0%"
        under = rob[rob.family == "under-coding"]
        assert list(under["analysis"]) == [f"under-coded NFA, selection ratio {r:g}" for r in (0.5, 1.0, 2.0)]
        # records that kept their code more often when re-referred (psi = 2) overstate the suspect
        # cells' re-referral rate; psi = 1/2 understates it: the ATT moves in opposite directions
        assert under["mean"].iloc[0] != pytest.approx(under["mean"].iloc[2], abs=1e-6)
        child = rob[rob.family == "repeated children"].iloc[0]
        assert child["width_ratio_vs_main"] > 0 and "sigma_child" in child["note"]
