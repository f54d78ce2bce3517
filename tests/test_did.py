"""The kinship foundation: generator, input validation, and the engine's recovery on the
kinship twin (the unit effect structure of the SofS analyses), g-computation, event study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.did_input import cells_from_frame
from data.errors import DataError
from data.synthetic import DidStudyConfig, kinship_twin, simulate_did_study
from analyses.sofs_did import canonical
from models.diagnostics import check_sampling
from models.did.crosscheck import lpm_did
from models.did.design import DesignSpec, did_design
from models.did.fit import diagnostic_vars
from models.did.likelihoods import get_likelihood
from models.did.model import SOFS_MODEL_SPEC, build_did_model, cell_predictors, model_data
from models.did.priors import effect_priors
from models.sampling import CompiledSampler

BINOMIAL = get_likelihood("binomial")
KINSHIP = DesignSpec("binomial", effects="unit", base="all", unit_trends=True)


def kinship_prior(share: float = 0.62, name: str = "neutral"):
    return effect_priors(BINOMIAL, share, direction=+1, relative_target=0.2, outcome_label="kinship care")[name]


def design_for(cells, *, covariates=(), spec=KINSHIP, settling=True):
    from dataclasses import replace

    return did_design(canonical(cells.cells), replace(spec, covariates=tuple(covariates), exclude_settling=settling))


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
    design = design_for(cells, covariates=cells.covariates)
    freq = lpm_did(design.cells.assign(treated_post=design.data["treated"]), cells.covariates)
    assert 4.0 <= freq.se <= 8.0                                   # report implies about 6 pp


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
    design = design_for(cells, covariates=cells.covariates)
    prior = kinship_prior()
    dm = build_did_model(design, prior, spec=SOFS_MODEL_SPEC)
    idata = CompiledSampler(dm.model).sample(model_data(dm, prior=prior), draws=500, tune=500, chains=4, seed=3)
    return twin, dm, idata


def test_model_recovers_true_att(twin_fit):
    twin, _, idata = twin_fit
    att = idata["posterior"]["att"].values.ravel()
    lo, hi = np.quantile(att, [0.025, 0.975])
    truth = twin.truth["att_pp"]
    assert lo < truth < hi
    assert abs(att.mean() - truth) < 2.5          # pp; posterior SD is about 2.9 pp
    # LA-specific effects: most true LA effects inside their 95% intervals
    la = idata["posterior"]["att_unit"]
    covered = [
        np.quantile(la.sel(treated_unit=p).values, 0.025) < v < np.quantile(la.sel(treated_unit=p).values, 0.975)
        for p, v in twin.truth["att_la_pp"].items()
    ]
    assert sum(covered) >= 7


def test_g_computation_matches_a_direct_numpy_computation(twin_fit):
    _, dm, idata = twin_fit
    eta0, eta, nuis = cell_predictors(dm, idata["posterior"])
    d = dm.design.data
    w = d["n"] * d["post"]
    direct = 100 * ((BINOMIAL.response(eta, nuis, lib=np) - BINOMIAL.response(eta0, nuis, lib=np)) * w).sum(1) / w.sum()
    np.testing.assert_allclose(direct, idata["posterior"]["att"].values.ravel(), rtol=1e-8, atol=1e-8)


def test_fit_is_checked_on_every_variable(twin_fit):
    """Every sampled quantity is checked (LA trends and their SD included). These test chains
    (4 x 500 draws after 500 tuning steps) are shorter than the command's 4 x 1000: no
    divergences and R-hat below 1.05 here; the command's own run meets 1.01 and ESS 400
    (tests/test_kinship_cli.py and benchmarks/kinship.py)."""
    _, dm, idata = twin_fit
    diag = check_sampling(idata, diagnostic_vars(dm, idata["posterior"]))
    assert {"sigma_trend", "unit_trend", "sigma_tau", "unit_intercept", "att", "att_unit"} <= set(diag.table.index)
    assert diag.divergences == 0
    assert diag.table["rhat"].max() < 1.05, diag.problems


def test_event_study_recovers_flat_pre_trends():
    """The cohort-by-period event study (base: the last pre-adoption year, never-treated
    controls): pre-period departures near zero when there are none, a clear fall after."""
    config = DidStudyConfig(sd_trend=0.0, children_per_la_year=150)
    study = simulate_did_study(config, seed=5)
    cells = cells_from_frame(study.children, "kinship")
    design = design_for(cells, spec=DesignSpec("binomial", effects="cohort_period", base="last"), settling=False)
    prior = kinship_prior()
    dm = build_did_model(design, prior)
    idata = CompiledSampler(dm.model).sample(model_data(dm, prior=prior), draws=300, tune=300, chains=2, seed=1)
    from models.did.summaries import aggregate, aggregate_summary

    agg = aggregate(design, idata["posterior"]["att_gt"], idata["posterior"]["pre_gt"])
    rows = {r["event_time"]: r for r in aggregate_summary(agg, design)["dynamic"]["by"]}
    pre = [r for k, r in rows.items() if k < -1]
    assert len(pre) >= 4
    assert sum(r["eti95_low"] < 0 < r["eti95_high"] for r in pre) >= len(pre) - 1   # no pre-trend in the data
    assert all(abs(r["mean"]) < 4.0 for r in pre if r["n_cohorts"] >= 3)           # where several cohorts inform it
    assert rows[-1]["mean"] == 0.0 and rows[-1]["reference"]
    assert np.mean([r["mean"] for k, r in rows.items() if k >= 2]) < -5.0


def test_binomial_logit_likelihood_equals_pymc_binomial():
    """The hand-written binomial log-likelihood is PyMC's, constant included, and its
    predictive draws are binomial."""
    import pymc as pm
    from models.did.likelihoods import binomial_logit

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

    from models.did.model import PRIOR_DATA, prior_data

    study = simulate_did_study(DidStudyConfig(n_pilot=3, n_comparator=3, adoption_years=(2014, 2015, 2016),
                                              settling_years=(1, 1, 1), children_per_la_year=60), seed=2)
    cells = cells_from_frame(study.children, "kinship")
    design = design_for(cells)
    priors = effect_priors(BINOMIAL, 0.62, relative_target=0.2, direction=+1)
    dm = build_did_model(design, priors["neutral"], spec=SOFS_MODEL_SPEC)
    model = dm.model
    frozen_model = freeze_dims_and_data(model, data=[d.name for d in model.data_vars if d.name not in PRIOR_DATA])
    point = model.initial_point(random_seed=1)
    np.testing.assert_allclose(frozen_model.compile_logp()(point), model.compile_logp()(point), rtol=1e-12)

    kw = dict(draws=400, tune=300, chains=2, seed=4)
    frozen = CompiledSampler(model, mutable=PRIOR_DATA)

    def mean_sd(idata):
        att = idata["posterior"]["att"].values.ravel()
        return att.mean(), att.std()

    a, sd_a = mean_sd(frozen.sample(prior_data(priors["sceptical"]), **kw))
    # new outcome counts for frozen data: the mutable model is compiled and used
    data = model_data(dm, prior=priors["sceptical"])
    data["y"] = np.where(design.data["treated"] == 1, data["n"], data["y"])  # every treated child
    fit = frozen.sample(data, **kw)
    np.testing.assert_array_equal(fit["observed_data"]["y_obs"].values, data["y"])
    c, _ = mean_sd(fit)
    assert c > a + 3 * sd_a     # the effect moved up: the new cells were used, not the frozen ones


def test_low_rank_mass_matrix_reaches_nutpie_and_adapts_to_correlation():
    """``mass_matrix="low_rank"`` (the SofS analyses' default) reaches nutpie: on a Gaussian whose
    coordinates are correlated at 0.999 a diagonal mass matrix needs about 20 leapfrog steps a
    draw and the low-rank one about 5; an unknown name is refused."""
    import pymc as pm

    k, rho = 5, 0.999
    with pm.Model() as model:
        pm.MvNormal("x", np.zeros(k), cov=np.full((k, k), rho) + (1 - rho) * np.eye(k))
    sampler = CompiledSampler(model)
    steps = {mm: float(sampler.sample(draws=300, tune=300, chains=2, seed=1, mass_matrix=mm)
                       .sample_stats["n_steps"].mean()) for mm in ("diag", "low_rank")}
    assert steps["low_rank"] < steps["diag"] / 2, steps
    with pytest.raises(ValueError, match="mass_matrix"):
        sampler.sample(draws=10, tune=10, chains=1, mass_matrix="dense")
