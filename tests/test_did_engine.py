"""The DiD engine (models/did): its algebra, checked exactly, without sampling.

Every likelihood of the table against scipy at a random point; the g-computation in the
graph against the NumPy recomputation; the pre-trend maps of each control/base choice; the
aggregates against a hand computation; the constrained bases; the named prior on mu_tau as a
prior on the simple aggregate; PSIS reweighting against the conjugate answer; the typed
result and its schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from scipy.special import expit

from models.did.design import DesignSpec, canonical_cells, constrained_basis, did_design, group_basis
from models.did.fit import _failing_vars, _slow_mixing_vars, reweight_prior
from models.did.likelihoods import LIKELIHOODS, STUDENT_NU
from models.did.model import ModelSpec, build_did_model, cell_predictors, model_data
from models.did.summaries import aggregate
from models.priors import NamedPrior

FAST = "FAST_COMPILE"
PRIOR = NamedPrior("neutral", 0.0, 1.0, "test", "test")


def small_panel(likelihood: str, *, seed: int = 0, n_units: int = 9, periods=range(2001, 2008)) -> pd.DataFrame:
    """Canonical cells: 3 cohorts (2003, 2005, never) and the statistics each likelihood needs."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_units):
        cohort = (2003, 2005, np.nan)[i % 3]
        for t in periods:
            n = int(rng.integers(20, 60))
            row = {"unit": f"u{i}", "period": t, "cohort": cohort, "n": float(n)}
            if likelihood in ("binomial", "betabinomial"):
                row["y"] = int(rng.binomial(n, 0.3))
            elif likelihood in ("poisson", "negbinomial"):
                row["y"] = int(rng.poisson(0.2 * n))
            elif likelihood == "hurdle_lognormal":
                d = np.where(rng.random(n) < 0.15, 0.0, np.exp(rng.normal(2.5, 0.7, n)).round())
                pos = d > 0
                row.update(y=int((~pos).sum()), n_pos=int(pos.sum()), log_sum=float(np.log(d[pos]).sum()),
                           log_sq=float((np.log(d[pos]) ** 2).sum()), dur_sum=float(d.sum()))
            else:
                vals = rng.normal(10.0 + i, 2.0, n)
                row.update(y=float(vals.mean()), y_ss=float(((vals - vals.mean()) ** 2).sum()))
            rows.append(row)
    cells = canonical_cells(pd.DataFrame(rows))
    if likelihood == "student":
        cells = cells.drop(columns="y_ss")
    return cells


def _values(dm, names, point):
    m = dm.model
    outs = m.replace_rvs_by_values([m[v] for v in names])
    return dict(zip(names, m.compile_fn(outs, inputs=m.value_vars, mode=FAST, on_unused_input="ignore")(point)))


@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_every_likelihood_equals_scipy(likelihood):
    """The model's observed log-likelihood at a random point equals a direct scipy
    computation on the cells: the algebra of the table (and, for the normal likelihood with
    records, the exact record-level likelihood from the cells' sufficient statistics)."""
    cells = small_panel(likelihood, seed=1)
    design = did_design(cells, DesignSpec(likelihood, effects="cohort_period", base="all", unit_trends=True))
    dm = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=False))
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in dm.model.initial_point().items()}
    parts = dm.lik.parts
    names = [f"{v}{p}" for p in parts for v in ("unit_intercept", "period_effect", "unit_trend", "tau", "pretrend")]
    extra = [n for n in ("phi", "alpha_nb", "sigma_obs", "sigma_log") if n in dm.model.named_vars]
    vals = _values(dm, names + extra, point)
    d = design.data

    def eta(p):
        cell_tau = vals[f"tau{p}"][np.maximum(d["gt_idx"], 0)] * d["treated"]
        cell_pi = np.where(d["pre_idx"] >= 0, vals[f"pretrend{p}"][np.maximum(d["pre_idx"], 0)], 0.0)
        return (vals[f"unit_intercept{p}"][d["unit_idx"]] + vals[f"period_effect{p}"][d["period_idx"]]
                + vals[f"unit_trend{p}"][d["unit_idx"]] * d["time_c"] + cell_tau + cell_pi)

    y, n = d["y"], d["n"]
    e = eta("")
    if likelihood == "binomial":
        expected = stats.binom.logpmf(y, n, expit(e)).sum()
    elif likelihood == "betabinomial":
        mu, phi = expit(e), vals["phi"]
        expected = stats.betabinom.logpmf(y, n, mu * phi, (1 - mu) * phi).sum()
    elif likelihood == "poisson":
        expected = stats.poisson.logpmf(y, n * np.exp(e)).sum()
    elif likelihood == "negbinomial":
        a = vals["alpha_nb"]
        mean = n * np.exp(e)
        expected = stats.nbinom.logpmf(y, a, a / (a + mean)).sum()
    elif likelihood == "student":
        expected = stats.t.logpdf(y, STUDENT_NU, e, vals["sigma_obs"] / np.sqrt(n)).sum()
    elif likelihood == "normal":
        s = vals["sigma_obs"]   # sum over records of log N(y_i | eta, s): mean and within-cell squares
        expected = np.sum(-n * np.log(s) - 0.5 * n * np.log(2 * np.pi) - (d["y_ss"] + n * (y - e) ** 2) / (2 * s ** 2))
    else:
        ez, s = eta("_zero"), vals["sigma_log"]
        expected = stats.binom.logpmf(y, n, expit(ez)).sum() + np.sum(
            -d["n_pos"] * np.log(s) - (d["log_sq"] - 2 * e * d["log_sum"] + d["n_pos"] * e ** 2) / (2 * s ** 2))
    m = dm.model
    got = m.compile_logp(vars=[m["y_obs"]], jacobian=False, mode=FAST)(point)
    if m.potentials:
        pot = m.replace_rvs_by_values(list(m.potentials))
        fn = m.compile_fn(pot, inputs=m.value_vars, mode=FAST, on_unused_input="ignore")
        got += float(sum(np.sum(v) for v in fn(point)))
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize("likelihood", ["binomial", "poisson", "normal", "hurdle_lognormal"])
def test_g_computation_matches_numpy(likelihood):
    """``att``, ``att_gt`` and ``att_unit`` equal a NumPy g-computation from the parameters
    (:func:`cell_predictors`), at draws taken from the prior."""
    import pymc as pm

    cells = small_panel(likelihood, seed=3)
    design = did_design(cells, DesignSpec(likelihood, effects="cohort_period", base="last"))
    dm = build_did_model(design, PRIOR)
    with dm.model:
        prior = pm.sample_prior_predictive(draws=20, random_seed=1, compile_kwargs={"mode": FAST})["prior"]
    eta0, eta, nuis = cell_predictors(dm, prior)
    lik = dm.lik

    def response(e):   # written out here, not taken from the likelihood table
        if likelihood == "binomial":
            return expit(e[""])
        if likelihood == "poisson":
            return np.exp(e[""])
        if likelihood == "normal":
            return e[""]
        s = nuis["sigma_log"][:, None]      # the hurdle: P(positive) x lognormal mean
        return (1 - expit(e["_zero"])) * np.exp(e[""] + s ** 2 / 2)

    r1, r0 = response(eta), response(eta0)
    factor = {"binomial": 100.0}.get(likelihood, 1.0)
    d = design.data
    post = (d["gt_idx"] >= 0) & (d["event_time"] >= 0)
    w = d["n"] * post
    att = factor * ((r1 - r0) * w).sum(1) / w.sum()
    np.testing.assert_allclose(prior["att"].values.ravel(), att, rtol=1e-7)
    k = 3
    sel = d["gt_idx"] == k
    np.testing.assert_allclose(prior["att_gt"].values.reshape(-1, len(design.effect_cells))[:, k],
                               factor * ((r1 - r0)[:, sel] * d["n"][sel]).sum(1) / d["n"][sel].sum(), rtol=1e-7)
    # pre_gt: each pre-trend cell's departure on the reading scale, r(eta0) - r(eta0 - pi)
    sel = d["pre_idx"] == 1
    pi = {p: prior[f"pretrend{p}"].values.reshape(20, -1)[:, d["pre_idx"][sel]] for p in lik.parts}
    flat = {p: eta0[p][:, sel] - pi[p] for p in lik.parts}
    r_pre = response({p: eta0[p][:, sel] for p in lik.parts}) - response(flat)
    np.testing.assert_allclose(prior["pre_gt"].values.reshape(20, -1)[:, 1],
                               factor * (r_pre * d["n"][sel]).sum(1) / d["n"][sel].sum(), rtol=1e-7)


def test_pre_trend_maps_of_each_control_and_base():
    """never/last: one free term per pre-period before the base (the base is the reference);
    never/all: zero-sum terms over each cohort's pre-periods; notyet/all: none; notyet/last:
    one constant per cohort on its periods before the base. With anticipation the base moves."""
    cells = small_panel("normal")
    # cohort 2003: pre-periods 2001, 2002 (base 2002); cohort 2005: 2001-2004 (base 2004)
    d = did_design(cells, DesignSpec("normal", control="never", base="last"))
    assert [(g, t) for g, t, _ in d.pretrend_cells] == [(2003, 2001), (2005, 2001), (2005, 2002), (2005, 2003)]
    np.testing.assert_array_equal(d.data["pre_basis"], np.eye(4))
    d = did_design(cells, DesignSpec("normal", control="never", base="all"))
    b = d.data["pre_basis"]
    assert len(d.pretrend_cells) == 6 and b.shape == (6, 4)            # (2 - 1) + (4 - 1) free terms
    np.testing.assert_allclose(b[:2].sum(0), 0, atol=1e-12)
    np.testing.assert_allclose(b[2:].sum(0), 0, atol=1e-12)
    assert did_design(cells, DesignSpec("normal", control="notyet", base="all")).data["pre_basis"].shape == (0, 0)
    d = did_design(cells, DesignSpec("normal", control="notyet", base="last"))
    np.testing.assert_array_equal(d.data["pre_basis"], [[1, 0], [0, 1], [0, 1], [0, 1]])
    d = did_design(cells, DesignSpec("normal", anticipation=1))
    assert [(g, t) for g, t, _ in d.pretrend_cells] == [(2005, 2001), (2005, 2002)]
    assert min(e for _, _, e in d.effect_cells) == -1                   # anticipation periods get effects
    # the unit structure has no pre-trend terms; settling-in cells are left out
    u = did_design(cells.assign(settling=np.where(np.isfinite(cells["cohort"]), 1, 0)), DesignSpec("normal", effects="unit"))
    assert u.pretrend_cells == [] and not (u.cells["event_time"] == 0).any()


@pytest.mark.parametrize("effects", ["unit", "cohort_period"])
def test_a_model_given_new_cells_is_the_model_of_those_cells(effects):
    """The cells' statistics and layout (which unit, which effect cell, which pre-trend term)
    are ``pm.Data``: a model built on one set of cells, given another's values, has the log
    density of a model built on the other (what re-fits and simulation replicates rely on)."""
    import pymc as pm

    spec = DesignSpec("binomial", effects=effects)
    a = small_panel("binomial", seed=1)
    b = small_panel("binomial", seed=2).iloc[3:].reset_index(drop=True)     # other counts, fewer cells
    da, db = did_design(a, spec), did_design(b, spec, units=None)
    assert da.units == db.units and da.effect_cells == db.effect_cells
    ma = build_did_model(da, PRIOR, spec=ModelSpec(unit_centred=True))
    mb = build_did_model(db, PRIOR, spec=ModelSpec(unit_centred=True))
    point = mb.model.initial_point(random_seed=3)
    with ma.model:
        pm.set_data({k: v for k, v in model_data(ma, db).items()})
    np.testing.assert_allclose(ma.model.compile_logp(mode=FAST)(point), mb.model.compile_logp(mode=FAST)(point),
                               rtol=1e-10)


def test_aggregates_follow_the_did_definitions():
    cells = small_panel("normal")
    d = did_design(cells, DesignSpec("normal"))
    rng = np.random.default_rng(0)
    att = rng.normal(size=(5, len(d.effect_cells)))
    agg = aggregate(d, att)
    w = d.gt_weights
    g = np.array([c[0] for c in d.effect_cells])
    t = np.array([c[1] for c in d.effect_cells])
    e = np.array([c[2] for c in d.effect_cells])
    np.testing.assert_allclose(agg["simple"], att @ w / w.sum())
    np.testing.assert_allclose(agg["dynamic"][2], att[:, e == 2] @ w[e == 2] / w[e == 2].sum())
    np.testing.assert_allclose(agg["dynamic_overall"], np.mean([agg["dynamic"][k] for k in sorted(set(e))], axis=0))
    np.testing.assert_allclose(agg["group"][2003], att[:, g == 2003].mean(1))
    size = {gg: w[g == gg].mean() for gg in (2003, 2005)}
    np.testing.assert_allclose(agg["group_overall"], (agg["group"][2003] * size[2003] + agg["group"][2005] * size[2005])
                               / (size[2003] + size[2005]))
    np.testing.assert_allclose(agg["calendar"][2006], att[:, t == 2006] @ w[t == 2006] / w[t == 2006].sum())
    np.testing.assert_allclose(agg["calendar_overall"], np.mean(list(agg["calendar"].values()), axis=0))


def test_constrained_bases_are_orthonormal_and_have_zero_weighted_mean():
    w = np.array([3.0, 1.0, 0.0, 2.0])
    b = constrained_basis(w)
    assert b.shape == (4, 3)
    np.testing.assert_allclose(w @ b, 0, atol=1e-12)
    np.testing.assert_allclose(b.T @ b, np.eye(3), atol=1e-12)
    gb = group_basis(np.array([0, 0, 1, 2, 2, 2]), np.array([1.0, 2.0, 5.0, 1.0, 1.0, 1.0]))
    assert gb.shape == (6, 3)                     # (2 - 1) + 0 + (3 - 1): a group of one has no deviation
    np.testing.assert_allclose(gb[2], 0)
    np.testing.assert_allclose(np.array([1.0, 2.0]) @ gb[:2], 0, atol=1e-12)


def test_mu_tau_is_the_simple_aggregate_on_the_identity_link():
    """The event-time and cohort deviations have a zero mean under the simple aggregate's
    weights, so the weighted mean of ATT(g,t) over post cells is mu_tau exactly: the named
    prior on mu_tau is a prior on the reported simple effect."""
    cells = small_panel("normal", seed=4)
    d = did_design(cells, DesignSpec("normal"))
    dm = build_did_model(d, PRIOR)
    rng = np.random.default_rng(1)
    for _ in range(3):
        point = {k: v + rng.normal(0, 1.0, np.shape(v)) for k, v in dm.model.initial_point().items()}
        vals = _values(dm, ["tau", "mu_tau"], point)
        w = d.gt_weights * (d.data["gt_event"] >= 0)
        assert vals["tau"] @ w / w.sum() == pytest.approx(float(vals["mu_tau"]), abs=1e-10)


def test_psis_reweighting_matches_the_conjugate_answer():
    rng = np.random.default_rng(0)
    ref, target = NamedPrior("neutral", 0.0, 1.0, "s", "r"), NamedPrior("sceptical", 0.0, 0.1, "s", "r")
    post_sd, post_mean = 0.08, -0.15
    mu = rng.normal(post_mean, post_sd, size=(4, 2000))
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu_tau": (("chain", "draw"), mu)})})
    out, info = reweight_prior(tree, ref, target, seed=1)
    lik_prec = 1 / post_sd**2 - 1 / ref.sd**2
    lik_mean = post_mean / post_sd**2 / lik_prec
    new_prec = lik_prec + 1 / target.sd**2
    new_mean = lik_prec * lik_mean / new_prec
    assert info.ok and info.pareto_k < 0.5
    assert out["posterior"]["mu_tau"].values.mean() == pytest.approx(new_mean, abs=0.01)
    assert out["posterior"]["mu_tau"].values.std() == pytest.approx(new_prec**-0.5, rel=0.1)


@pytest.mark.parametrize("effects", ["unit", "cohort_period"])
def test_three_estimands_are_what_their_names_say(effects):
    """On the identity link: the average unit's effect is the mean effect (unit structure:
    mu_tau exactly); a new unit's effect adds one fresh draw of the between-unit deviation per
    posterior draw (unit structure: (new - average) / sigma_tau ~ N(0, 1)); without unit
    deviations, ATT(g,t) are already these cohorts' averages, so the average unit is these units."""
    import pymc as pm

    from models.did.model import estimand_draws

    cells = small_panel("normal", seed=6)
    design = did_design(cells, DesignSpec("normal", effects=effects, base="all" if effects == "unit" else "last"))
    dm = build_did_model(design, PRIOR)
    with dm.model:
        prior = pm.sample_prior_predictive(draws=4000, random_seed=2, compile_kwargs={"mode": FAST})["prior"]
    est = estimand_draws(dm, prior, seed=1)
    np.testing.assert_allclose(est["these_units"], prior["att"].values.ravel(), rtol=1e-8)
    if effects == "unit":
        np.testing.assert_allclose(est["average_unit"], prior["mu_tau"].values.ravel(), rtol=1e-8, atol=1e-10)
        z = (est["new_unit"] - est["average_unit"]) / prior["sigma_tau"].values.ravel()
        assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)
    else:
        np.testing.assert_allclose(est["average_unit"], est["these_units"], rtol=1e-8)
        assert np.std(est["new_unit"] - est["average_unit"]) > 0.1 * np.std(est["average_unit"])


@pytest.mark.parametrize("likelihood", ["binomial", "betabinomial", "normal", "student", "poisson"])
def test_unit_log_likelihood_sums_to_the_models_log_likelihood(likelihood):
    """``log_likelihood/y_unit`` (each unit's cells summed) adds up, draw by draw, to PyMC's
    own pointwise log-likelihood of the observed cells."""
    import pymc as pm

    from models.did.checks import unit_log_likelihood

    cells = small_panel(likelihood, seed=8).drop(columns="y_ss", errors="ignore")   # no potential term
    design = did_design(cells, DesignSpec(likelihood, effects="unit", base="all"))
    dm = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=False))
    with dm.model:
        prior = pm.sample_prior_predictive(draws=5, random_seed=3, compile_kwargs={"mode": FAST})["prior"]
    ll = unit_log_likelihood(dm, prior)
    tree = xr.DataTree.from_dict({"posterior": prior.to_dataset()})
    theirs = pm.compute_log_likelihood(tree, model=dm.model, extend_inferencedata=False, progressbar=False)
    expected = theirs["y_obs"].values.reshape(5, -1)
    np.testing.assert_allclose(ll.values.reshape(5, -1).sum(1), expected.sum(1), rtol=1e-8)
    # and unit by unit
    unit = design.data["unit_idx"]
    np.testing.assert_allclose(ll.values.reshape(5, -1)[:, 2], expected[:, unit == 2].sum(1), rtol=1e-8)


@pytest.mark.parametrize("unit_centred", [True, False])
def test_power_scaling_uses_the_top_level_priors_only(unit_centred):
    """The log prior power-scaled is the effect prior, the hyperpriors, the fixed terms and the
    nuisance parameters; the exchangeable group effects (raw or centred) are not priors to scale."""
    from models.did.checks import top_level_priors

    cells = small_panel("binomial", seed=9)
    design = did_design(cells, DesignSpec("binomial", effects="unit", base="all", unit_trends=True))
    dm = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=unit_centred, period_effects="hierarchical"))
    names = set(top_level_priors(dm, {rv.name: None for rv in dm.model.free_RVs}))
    assert {"mu_tau", "sigma_tau", "alpha", "sigma_unit", "sigma_trend", "sigma_period"} <= names
    assert not names & {"unit_raw", "unit_intercept", "tau", "tau_raw", "trend_raw", "period_raw"}


def _duration_cells(seed: int, upper: float | None) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Hurdle cells of simulated durations (optionally those above ``upper`` left out), and the
    positive durations of each cell."""
    rng = np.random.default_rng(seed)
    rows, kept = [], []
    for i in range(6):
        for t in range(2001, 2006):
            d = np.where(rng.random(80) < 0.15, 0.0, np.exp(rng.normal(2.5 + 0.1 * i, 0.8, 80)))
            if upper is not None:
                d = d[d <= upper]
            pos = d[d > 0]
            kept.append(pos)
            rows.append({"unit": f"u{i}", "period": t, "cohort": (2003, np.nan)[i % 2], "n": float(d.size),
                         "y": int((d == 0).sum()), "n_pos": int(pos.size), "log_sum": float(np.log(pos).sum()),
                         "log_sq": float((np.log(pos) ** 2).sum()), "dur_sum": float(d.sum()),
                         "log_upper": np.log(upper) if upper is not None else np.nan})
    return canonical_cells(pd.DataFrame(rows)), kept


def test_cut_off_durations_have_the_truncated_lognormal_likelihood():
    """With a cut-off U, the positive durations' log-likelihood is the truncated lognormal's,
    record by record (scipy), up to a constant; without one the truncation term is exactly 0."""
    from models.did.checks import cell_log_likelihood

    cells, kept = _duration_cells(3, upper=30.0)
    design = did_design(cells, DesignSpec("hurdle_lognormal", effects="unit", base="all"))
    assert design.cutoff == pytest.approx(30.0)
    dm = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=False))
    m = dm.model
    rng = np.random.default_rng(4)
    pot = m.replace_rvs_by_values([m.potentials[0]])
    fn = m.compile_fn(pot, inputs=m.value_vars, mode=FAST, on_unused_input="ignore")
    points = [{k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in m.initial_point().items()} for _ in range(2)]
    got, expected = [], []
    for point in points:
        got.append(float(np.sum(fn(point)[0])))
        vals = _values(dm, ["unit_intercept", "period_effect", "tau", "sigma_log"], point)
        d = design.data
        e = (vals["unit_intercept"][d["unit_idx"]] + vals["period_effect"][d["period_idx"]]
             + vals["tau"][d["treated_unit_idx"]] * d["treated"])
        s = vals["sigma_log"]
        lognorm = [stats.lognorm(s, scale=np.exp(ec)) for ec in e]
        order = design.cells.index.to_numpy()        # the design's cell order -> the simulated cells
        expected.append(sum(np.sum(lognorm[c].logpdf(kept[order[c]]) - lognorm[c].logcdf(30.0))
                            for c in range(len(e))))
    # the model drops -sum(log d) and -log(2 pi)/2 per record: compare differences between points
    np.testing.assert_allclose(got[0] - got[1], expected[0] - expected[1], rtol=1e-7)
    # and the cell log-likelihood used for LOO and power scaling is the full one
    vals = _values(dm, ["unit_intercept", "period_effect", "tau", "sigma_log", "unit_intercept_zero",
                        "period_effect_zero", "tau_zero"], points[0])
    d = design.data
    eta = {p: (vals[f"unit_intercept{p}"][d["unit_idx"]] + vals[f"period_effect{p}"][d["period_idx"]]
               + vals[f"tau{p}"][d["treated_unit_idx"]] * d["treated"])[None] for p in ("", "_zero")}
    ll = cell_log_likelihood(dm, eta, {"sigma_log": np.array([vals["sigma_log"]])})
    zero = stats.binom.logpmf(d["y"], d["n"], expit(eta["_zero"][0])).sum()
    assert ll.sum() - zero == pytest.approx(expected[0], rel=1e-8)
    # without a cut-off the term vanishes
    nocut = did_design(_duration_cells(3, upper=None)[0], DesignSpec("hurdle_lognormal", effects="unit", base="all"))
    assert nocut.cutoff is None


def test_truncated_and_population_means_are_what_they_say():
    """The hurdle's response with a cut-off is the mean of durations up to it (Monte Carlo);
    without one, the population mean; the model reports both (``att`` and ``att_population``)."""
    from models.did.likelihoods import LIKELIHOODS

    lik = LIKELIHOODS["hurdle_lognormal"]
    rng = np.random.default_rng(5)
    m, s, p0, upper = 2.6, 0.9, 0.2, 25.0
    eta = {"": np.array([[m]]), "_zero": np.array([[np.log(p0 / (1 - p0))]])}
    nuis = {"sigma_log": np.array([s])}
    d = np.exp(rng.normal(m, s, 2_000_000))
    truncated = lik.response(eta, nuis, lib=np, log_upper=np.log(upper))
    assert truncated[0, 0] == pytest.approx((1 - p0) * d[d <= upper].mean(), rel=2e-3)
    assert lik.response(eta, nuis, lib=np)[0, 0] == pytest.approx((1 - p0) * np.exp(m + s ** 2 / 2), rel=1e-12)
    from models.did.likelihoods import NO_CUTOFF
    assert lik.response(eta, nuis, lib=np, log_upper=NO_CUTOFF)[0, 0] == pytest.approx(
        (1 - p0) * np.exp(m + s ** 2 / 2), rel=1e-12)
    import pymc as pm

    cells, _ = _duration_cells(6, upper=30.0)
    dm = build_did_model(did_design(cells, DesignSpec("hurdle_lognormal", effects="unit", base="all")), PRIOR)
    with dm.model:
        prior = pm.sample_prior_predictive(draws=200, random_seed=1, compile_kwargs={"mode": FAST})["prior"]
    eta0, eta1, nuis = cell_predictors(dm, prior)
    d = dm.design.data
    w = d["n"] * d["post"]
    for name, cut in (("att", {"log_upper": d["log_upper"]}), ("att_population", {})):
        r1, r0 = lik.response(eta1, nuis, lib=np, **cut), lik.response(eta0, nuis, lib=np, **cut)
        np.testing.assert_allclose(prior[name].values.ravel(), ((r1 - r0) * w).sum(1) / w.sum(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(prior["att"].values, prior["att_population"].values)


@pytest.mark.parametrize("effects", ["unit", "cohort_period"])
def test_factorised_binomial_is_the_same_density(effects):
    """``ModelSpec.factorised`` (the national benchmark's form) writes the binomial cells'
    log-likelihood on a unit-period x stratum grid: at any point it must equal the per-cell
    binomial, including the constant, or the benchmark's timings compare two different models."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(8):
        cohort = (2003, 2005, np.nan, np.nan)[i % 4]
        for t in range(2001, 2007):
            for sex in ("f", "m"):
                for age in ("0-4", "5-9", "10-15"):
                    if rng.random() < 0.15:          # empty strata leave holes in the grid
                        continue
                    n = int(rng.integers(5, 40))
                    rows.append({"unit": f"u{i}", "period": t, "cohort": cohort, "sex": sex, "age": age,
                                 "n": float(n), "y": int(rng.binomial(n, 0.25))})
    cells = canonical_cells(pd.DataFrame(rows))
    spec = DesignSpec("binomial", effects=effects, base="all", unit_trends=True, covariates=("sex", "age"))
    design = did_design(cells, spec)
    per_cell = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=True, trend_centred=True))
    grid = build_did_model(design, PRIOR, spec=ModelSpec(unit_centred=True, trend_centred=True, factorised=True))
    assert "y_obs_grid" in grid.model.named_vars and "y_obs" not in grid.model.named_vars
    f_cell = per_cell.model.compile_logp(mode=FAST)
    f_grid = grid.model.compile_logp(mode=FAST)
    start = per_cell.model.initial_point()
    for k in range(3):
        point = {name: rng.normal(0, 0.5, np.shape(v)) for name, v in start.items()}
        assert f_grid(point) == pytest.approx(f_cell(point), rel=1e-10, abs=1e-8)
    # a predictor that varies within a unit-period cannot be factorised: refused, not mis-summed
    with pytest.raises(ValueError, match="cannot be factorised"):
        broken = did_design(cells, spec)
        broken.data["time_c"] = broken.data["time_c"] + rng.normal(0, 1, len(broken.data["time_c"]))
        build_did_model(broken, PRIOR, spec=ModelSpec(factorised=True))


@pytest.mark.parametrize("likelihood, effects", [("normal", "cohort_period"), ("normal", "unit"),
                                                 ("poisson", "cohort_period"), ("negbinomial", "unit"),
                                                 ("binomial", "unit")])
def test_the_prior_check_collapses_groups_only_where_it_is_exact(likelihood, effects):
    """The prior check (``models.did.priors``) merges treated-unit groups that share an effect
    parameter on the identity and log links; the reported effect and relative change must be
    the same as with every group kept, and the logit link must keep every group."""
    from models.did.priors import effect_deviations, reported_effect, reported_scale

    cells = small_panel(likelihood, seed=5)
    spec = DesignSpec(likelihood, effects=effects, base="all")
    dm = build_did_model(did_design(cells, spec), PRIOR)
    full, merged = reported_scale(dm, collapse=False), reported_scale(dm)
    if likelihood == "binomial":
        assert len(merged.weight) == len(full.weight)
    else:       # ATT(g,t): many units share a (g, t) parameter; unit effects: one group per unit already
        assert len(merged.weight) == len(np.unique(full.tau_index))
        assert len(merged.weight) < len(full.weight) or effects == "unit"
    xi = np.random.default_rng(1).standard_normal(400)
    dev = effect_deviations(dm, draws=400, seed=2)
    for mean, sd in ((0.0, 0.3), (0.4, 0.2), (-1.0, 0.5)):
        a = reported_effect(dm, full, mean, sd, xi, dev)
        b = reported_effect(dm, merged, mean, sd, xi, dev)
        np.testing.assert_allclose(b[0], a[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b[1], a[1], rtol=1e-9, atol=1e-12)


def test_only_slow_mixing_switches_the_centring():
    """A re-parametrisation answers slow mixing (an ESS below the minimum: a funnel or a ridge);
    an R-hat just over 1.01 for one of many well-mixed intercepts (mpdta: 1.0103, bulk ESS
    6,104) is Monte Carlo noise, for longer chains, not for the other centring."""
    from models.diagnostics import Diagnostics

    table = pd.DataFrame({"rhat": [1.0103, 1.002], "ess_bulk": [6104.0, 1500.0], "ess_tail": [2198.0, 2000.0]},
                         index=pd.Index(["unit_intercept", "att"], name="variable"))
    noisy = Diagnostics(table, 0, 4000, [0.9] * 4, ["R-hat 1.010 > 1.01 for 'unit_intercept'"])
    assert not noisy.ok and _failing_vars(noisy) == {"unit_intercept"} and _slow_mixing_vars(noisy) == set()
    for kind in ("ess_bulk", "ess_tail"):
        slow = table.copy()
        slow.loc["unit_intercept", kind] = 150.0
        assert _slow_mixing_vars(Diagnostics(slow, 0, 4000, [0.9] * 4, ["ESS"])) == {"unit_intercept"}


def test_vectorised_prior_draws_are_independent_at_every_level_of_the_hierarchy(monkeypatch):
    """``models.sampling.prior_draws`` (one vectorised call) gives each draw its own values at
    every level: with ``tau_i = mu + sigma z_i``, ``sigma ~ HalfNormal(0.5)``, the deviations
    have SD 0.5, are uncorrelated across units, and their sizes correlate (a shared ``sigma``
    within a draw: corr(|dev_1|, |dev_2|) = 0.39 exactly); a ``ZeroSumNormal`` and a
    ``CustomDist`` (symbolic random variables, inlined) are drawn anew in every draw too, all
    without the one-call-per-draw fallback."""
    import pymc as pm

    from models.sampling import prior_draws

    def no_loop(*args, **kwargs):
        raise AssertionError("prior_draws fell back to pm.sample_prior_predictive")

    monkeypatch.setattr(pm, "sample_prior_predictive", no_loop)

    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 0.5)
        z = pm.Normal("z", 0.0, 1.0, shape=5)
        mu = pm.Normal("mu", 1.0, 0.2)
        pm.Deterministic("tau", mu + sigma * z)
        trend_raw = pm.ZeroSumNormal("trend_raw", sigma=1.0, shape=4)     # a SymbolicRandomVariable
        pm.Deterministic("trend", sigma * trend_raw)
    d = prior_draws(model, ["mu", "tau", "sigma", "trend"], draws=20_000, seed=4)
    assert d["trend"].std(0) == pytest.approx(np.full(4, 0.5 * np.sqrt(0.75)), rel=0.03)   # each draw its own raw
    np.testing.assert_allclose(d["trend"].sum(1), 0.0, atol=1e-12)
    assert d["tau"].shape == (20_000, 5) and d["mu"].shape == (20_000,)
    dev = d["tau"] - d["mu"][:, None]
    assert d["mu"].mean() == pytest.approx(1.0, abs=0.01) and d["mu"].std() == pytest.approx(0.2, rel=0.03)
    assert dev.std(0) == pytest.approx(np.full(5, 0.5), rel=0.03)
    assert abs(np.corrcoef(dev[:, 0], dev[:, 1])[0, 1]) < 0.03
    assert np.corrcoef(np.abs(dev[:, 0]), np.abs(dev[:, 1]))[0, 1] == pytest.approx(0.39, abs=0.03)
    assert d["sigma"].std() == pytest.approx(0.5 * np.sqrt(1 - 2 / np.pi), rel=0.03)
    assert (dev / d["sigma"][:, None]).std() == pytest.approx(1.0, rel=0.02)     # each draw's own sigma

    with pm.Model() as custom:
        m = pm.Normal("m", 0.0, 1.0)
        pm.CustomDist("y", m, dist=lambda m, size: pm.Normal.dist(m, 1.0, size=size), shape=3)
    got = prior_draws(custom, ["m", "y"], draws=500, seed=1)
    assert got["m"].shape == (500,) and got["y"].shape == (500, 3)
    assert np.corrcoef(got["m"], got["y"][:, 0])[0, 1] == pytest.approx(1 / np.sqrt(2), abs=0.1)


def test_prior_draws_fall_back_to_the_loop_for_free_and_observed_variables(monkeypatch):
    """Where the graph cannot be vectorised, ``prior_draws`` takes ``pm.sample_prior_predictive``:
    a free variable and an observed one (which PyMC puts in another group) come back alike."""
    import pymc as pm
    import pytensor.graph.replace

    from models.sampling import prior_draws

    def refuse(*args, **kwargs):
        raise NotImplementedError("no vectorisation here")

    monkeypatch.setattr(pytensor.graph.replace, "vectorize_graph", refuse)
    calls, loop = [], pm.sample_prior_predictive
    monkeypatch.setattr(pm, "sample_prior_predictive", lambda *a, **k: calls.append(1) or loop(*a, **k))
    with pm.Model() as model:
        m = pm.Normal("m", 2.0, 1.0)
        pm.Normal("y", m, 1.0, observed=np.zeros(3))
    got = prior_draws(model, ["m", "y"], draws=4000, seed=1)
    assert calls == [1]
    assert got["m"].shape == (4000,) and got["y"].shape == (4000, 3)
    assert got["m"].mean() == pytest.approx(2.0, abs=0.1) and got["y"].std() == pytest.approx(np.sqrt(2), rel=0.05)
