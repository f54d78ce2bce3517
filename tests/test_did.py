"""The kinship foundation: generator, input validation, hierarchical DiD recovery, g-computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.did_input import cells_from_frame
from data.errors import DataError
from data.synthetic import DidStudyConfig, kinship_twin, simulate_did_study
from models.diagnostics import check_sampling
from models.did_frequentist import lpm_did
from models.did_hierarchical import att_from_draws, build_did_model, did_design, effect_priors, model_data
from models.sampling import CompiledSampler


def test_generator_is_deterministic_for_a_seed():
    a = simulate_did_study(DidStudyConfig(), seed=11)
    b = simulate_did_study(DidStudyConfig(), seed=11)
    c = simulate_did_study(DidStudyConfig(), seed=12)
    pd.testing.assert_frame_equal(a.children, b.children)
    assert a.truth == b.truth
    assert not a.children.equals(c.children)


def test_kinship_twin_is_calibrated_to_the_report():
    twin = kinship_twin()
    assert twin.children["la"].nunique() == 18
    assert twin.children.query("arm == 'pilot'")["la"].nunique() == 9
    assert 0.60 <= twin.truth["pilot_pre_share"] <= 0.64          # report: 62%
    assert -14.0 <= twin.truth["att_pp"] <= -11.0                 # report: -12.63 pp
    cells = cells_from_frame(twin.children, "kinship", synthetic=True)
    freq = lpm_did(cells.analysis_cells(), cells.covariates)
    assert 4.0 <= freq.se_pp <= 8.0                                # report implies about 6 pp


def _frame() -> pd.DataFrame:
    return kinship_twin().children.copy()


@pytest.mark.parametrize(
    "mutate, column, message",
    [
        (lambda f: f.drop(columns="arm"), "arm", "missing required column"),
        (lambda f: f.assign(kinship=f["kinship"].where(f.index != 4, 2)), "kinship", "0 or 1"),
        (lambda f: f[(f["la"] != "Pilot 3") | (f["year"] >= 2014)], "year", "no pre-period"),
        (lambda f: f.assign(arm="comparator", adoption_year=np.nan), "arm", "no pilot"),
        (lambda f: f.assign(arm="pilot", adoption_year=f["adoption_year"].fillna(2014)), "arm", "no comparator"),
        (lambda f: f.assign(arm=f["arm"].where(f.index != 7, "treated")), "arm", "not one of"),
    ],
)
def test_child_level_bad_input_names_column(mutate, column, message):
    with pytest.raises(DataError, match=message) as err:
        cells_from_frame(mutate(_frame()).reset_index(drop=True), "kinship", source="kids.csv")
    assert err.value.column == column
    assert err.value.file == "kids.csv"


def _aggregated() -> pd.DataFrame:
    cells = cells_from_frame(kinship_twin().children, "kinship").cells
    return cells.rename(columns={"y": "kinship"})[
        ["la", "year", "arm", "adoption_year", "settling_years", "kinship", "n"]]


def test_aggregated_bad_counts_name_row_and_column():
    bad = _aggregated()
    bad.loc[5, "n"] = -3
    with pytest.raises(DataError, match="negative") as err:
        cells_from_frame(bad, "kinship")
    assert (err.value.row, err.value.column) == (6, "n")
    bad = _aggregated()
    bad.loc[2, "kinship"] = bad.loc[2, "n"] + 1
    with pytest.raises(DataError, match="exceeds") as err:
        cells_from_frame(bad, "kinship")
    assert (err.value.row, err.value.column) == (3, "kinship")


def test_aggregated_and_child_level_inputs_give_the_same_cells():
    children = kinship_twin().children
    from_children = cells_from_frame(children, "kinship").cells
    agg = _aggregated()
    from_cells = cells_from_frame(agg, "kinship").cells
    assert from_cells["n"].sum() == from_children["n"].sum() == len(children)
    assert from_cells["y"].sum() == from_children["y"].sum() == children["kinship"].sum()


@pytest.fixture(scope="module")
def twin_fit():
    twin = kinship_twin()
    cells = cells_from_frame(twin.children, "kinship", synthetic=True)
    analysis = cells.analysis_cells()
    design = did_design(analysis, las=cells.las, pilots=cells.pilots, years=cells.years,
                        covariates=cells.covariates)
    prior = effect_priors(0.62, outcome_label="kinship care")["neutral"]
    idata = CompiledSampler(build_did_model(design, prior)).sample(
        model_data(design, prior), draws=500, tune=500, chains=2, seed=3)
    return twin, design, idata


def test_model_recovers_true_att(twin_fit):
    twin, _, idata = twin_fit
    att = idata["posterior"]["att_pp"].values.ravel()
    lo, hi = np.quantile(att, [0.025, 0.975])
    truth = twin.truth["att_pp"]
    assert lo < truth < hi
    assert abs(att.mean() - truth) < 2.5          # pp; posterior SD is about 2.7 pp
    # LA-specific effects: most true LA effects inside their 95% intervals
    la = idata["posterior"]["att_la_pp"]
    covered = [
        np.quantile(la.sel(pilot=p).values, 0.025) < v < np.quantile(la.sel(pilot=p).values, 0.975)
        for p, v in twin.truth["att_la_pp"].items()
    ]
    assert sum(covered) >= 7


def test_g_computation_matches_a_direct_numpy_computation(twin_fit):
    _, design, idata = twin_fit
    direct = att_from_draws(design, idata["posterior"])
    np.testing.assert_allclose(direct, idata["posterior"]["att_pp"].values, rtol=1e-8, atol=1e-8)


def test_fit_passes_divergence_and_rhat_checks(twin_fit):
    _, _, idata = twin_fit
    diag = check_sampling(idata, ["mu_tau", "sigma_tau", "att_pp", "la_effect", "period_effect"])
    assert diag.divergences == 0
    assert diag.table["rhat"].max() < 1.05  # short chains; the CLI's default run meets 1.01


def test_event_study_recovers_flat_pre_trends_without_la_trends():
    config = DidStudyConfig(sd_trend=0.0, children_per_la_year=150)
    study = simulate_did_study(config, seed=5)
    cells = cells_from_frame(study.children, "kinship")
    design = did_design(cells.cells, las=cells.las, pilots=cells.pilots, years=cells.years, covariates=())
    prior = effect_priors(0.62)["neutral"]
    idata = CompiledSampler(build_did_model(design, prior, event_study=True)).sample(
        draws=300, tune=300, chains=2, seed=1)
    ev = idata["posterior"]["event_pp"]
    pre = [k for k in ev["event_time"].values if str(k).startswith("<=") or (str(k).lstrip("-").isdigit() and int(k) < -1)]
    post = [k for k in ev["event_time"].values if str(k).startswith(">=")]
    for k in pre:
        assert abs(float(ev.sel(event_time=k).mean())) < 4.0
    assert float(ev.sel(event_time=post[0]).mean()) < -5.0


def test_binomial_logit_likelihood_equals_pymc_binomial():
    """The hand-written binomial log-likelihood is PyMC's, constant included, and its
    predictive draws are binomial."""
    import pymc as pm
    from models.did_hierarchical import binomial_logit

    rng = np.random.default_rng(0)
    n = rng.integers(1, 40, size=50)
    y = rng.binomial(n, 0.4)
    eta = rng.normal(0, 2, size=50)
    with pm.Model() as ours:
        binomial_logit("y", n=n, eta=eta, observed=y)
    with pm.Model() as theirs:
        pm.Binomial("y", n=n, logit_p=eta, observed=y)
    np.testing.assert_allclose(ours.compile_logp(sum=False)({})[0], theirs.compile_logp(sum=False)({})[0], rtol=1e-10)
    draws = pm.draw(ours["y"], draws=4000, random_seed=1)
    assert draws.max() <= n.max() and np.all(draws <= n)
    np.testing.assert_allclose(draws.mean(0).sum(), (n / (1 + np.exp(-eta))).sum(), rtol=0.02)


def test_frozen_cells_give_the_same_model_and_new_cells_recompile():
    """Cells frozen as constants (the runner's fast path) change nothing but speed: the same
    log density; passing new cells to a frozen sampler falls back to the mutable model, and the
    fit conditions on the new cells."""
    from pymc.model.transform.optimization import freeze_dims_and_data

    from models.did_hierarchical import PRIOR_DATA, prior_data

    study = simulate_did_study(DidStudyConfig(n_pilot=3, n_comparator=3, adoption_years=(2014, 2015, 2016),
                                              settling_years=(1, 1, 1), children_per_la_year=60), seed=2)
    cells = cells_from_frame(study.children, "kinship")
    analysis = cells.analysis_cells()
    design = did_design(analysis, las=cells.las, pilots=cells.pilots, years=cells.years, covariates=())
    priors = effect_priors(0.62)
    model = build_did_model(design, priors["neutral"])
    frozen_model = freeze_dims_and_data(model, data=[d.name for d in model.data_vars if d.name not in PRIOR_DATA])
    point = model.initial_point(random_seed=1)
    np.testing.assert_allclose(frozen_model.compile_logp()(point), model.compile_logp()(point), rtol=1e-12)

    kw = dict(draws=400, tune=300, chains=2, seed=4)
    frozen = CompiledSampler(model, mutable=PRIOR_DATA)

    def mean_sd(idata):
        att = idata["posterior"]["att_pp"].values.ravel()
        return att.mean(), att.std()

    a, sd_a = mean_sd(frozen.sample(prior_data(priors["sceptical"]), **kw))
    # new outcome counts for frozen data: the mutable model is compiled and used
    data = model_data(design, priors["sceptical"])
    data["y"] = np.where(analysis["treated_post"].to_numpy() == 1, data["n"], data["y"])  # every treated child
    fit = frozen.sample(data, **kw)
    np.testing.assert_array_equal(fit["observed_data"]["y_obs"].values, data["y"])
    c, _ = mean_sd(fit)
    assert c > a + 3 * sd_a     # the effect moved up: the new cells were used, not the frozen ones
