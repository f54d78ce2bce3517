"""Graded response models: instruments, coding, NumPy pieces, synthetic calibration,
validation against published ML estimates (ltm's Environment data) and recovery of the
latent regression coefficients."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.special import expit
import pandas as pd
import pytest

from data.errors import DataError
from data.instruments import default_instrument, parse_instrument, validate_responses
from data.synthetic_engagement import (DEFAULT_DATA_SEED, DEFAULT_SITES, TABLE5, TABLE6, SiteSpec,
                                       published_summaries, simulate_engagement, yatchmenoff_truth)
from models import irt_loo
from models import psychometric_irt as irt
from models.diagnostics import check_sampling
from tests.conftest import needs_shared

ENVIRONMENT = Path(__file__).resolve().parents[2] / "shared" / "validation" / "grm-environment"

# Published ML estimates of the unconstrained GRM (Rizopoulos 2006; README in ENVIRONMENT).
PUBLISHED = {
    "LeadPetrol": (0.463, 2.535, 1.393), "RiverSea": (1.017, 2.421, 2.440),
    "RadioWaste": (0.755, 1.747, 3.157), "AirPollution": (0.440, 2.131, 3.141),
    "Chemicals": (0.788, 1.835, 2.900), "Nuclear": (0.054, 1.378, 1.811),
}


# ----------------------------------------------------------------------------- instruments

def test_default_instruments_describe_the_report():
    y = default_instrument("yatchmenoff")
    assert len(y.items) == 19 and len(y.used_items) == 18            # "1 removed"
    assert sum(i.reverse for i in y.items) == 3                      # "3 questions were reversed"
    assert y.score_direction == "lower_is_better" and y.n_categories == 5
    assert set(y.dimension_items()) == {"buy_in", "receptivity", "working_relationship", "mistrust"}
    w = default_instrument("wai")
    assert len(w.items) == 12 and w.raters == ("family", "worker")
    assert sum(i.reverse for i in w.items) == 2 and w.n_categories == 7
    assert w.column("family", "WAI01") == "family_WAI01"


@pytest.mark.parametrize("config, message", [
    ({"name": "x", "categories": [1, 2], "dimensions": {"a": "A"}, "items": [{"id": "I1", "dimension": "a"}]},
     "score_direction"),
    ({"name": "x", "categories": [1, 2], "score_direction": "up", "dimensions": {"a": "A"},
      "items": [{"id": "I1", "dimension": "a"}, {"id": "I2", "dimension": "a"}]}, "score_direction"),
    ({"name": "x", "categories": [1, 2], "score_direction": "higher_is_better", "dimensions": {"a": "A"},
      "items": [{"id": "I1", "dimension": "b"}, {"id": "I2", "dimension": "a"}]}, "dimension 'b'"),
    ({"name": "x", "categories": [1, 2], "score_direction": "higher_is_better", "dimensions": {"a": "A"},
      "items": [{"id": "I1", "dimension": "a"}, {"id": "I1", "dimension": "a"}]}, "twice"),
    ({"name": "x", "categories": [2, 1], "score_direction": "higher_is_better", "dimensions": {"a": "A"},
      "items": [{"id": "I1", "dimension": "a"}, {"id": "I2", "dimension": "a"}]}, "increasing"),
])
def test_bad_instrument_configuration_is_a_data_error(config, message):
    with pytest.raises(DataError, match=message):
        parse_instrument(config)


def _frame(**items) -> pd.DataFrame:
    base = {"family": ["F1", "F2"], "site": ["A", "B"], "arm": ["sofs", "contrast"], "worker": ["w1", "w2"],
            "competence": [3.0, 4.0]}
    return pd.DataFrame({**base, **items})


def test_coding_flips_reverse_items_and_lower_is_better_scales():
    y = default_instrument("yatchmenoff")
    frame = validate_responses(_frame(Y01=[1, 5], Y17=[1, 5]), [y], require_all_items=False)
    data = irt.grm_data(frame, y, dimensions="subscale")
    got = dict(zip([(data.person[p], data.item[i]) for p, i in zip(data.person_idx, data.item_idx)], data.response))
    # Yatchmenoff: 1 = strongly agree = most engaged -> top model category 4 ...
    assert got[("F1", "Y01")] == 4 and got[("F2", "Y01")] == 0
    # ... except on a reverse-worded (mistrust) item, where agreeing means less engaged.
    assert got[("F1", "Y17")] == 0 and got[("F2", "Y17")] == 4
    assert list(data.code_values) == [5, 4, 3, 2, 1]
    w = default_instrument("wai")
    frame = validate_responses(_frame(family_WAI01=[7, 1], family_WAI04=[7, 1], worker_WAI01=[4, ""]), [w],
                               require_all_items=False)
    data = irt.grm_data(frame, w, dimensions="rater")
    got = dict(zip([(data.person[p], data.item[i]) for p, i in zip(data.person_idx, data.item_idx)], data.response))
    assert got[("F1", "family_WAI01")] == 6 and got[("F1", "family_WAI04")] == 0
    assert ("F2", "worker_WAI01") not in got                       # blank = missing, not an answer
    assert data.dimension == ("family", "worker")
    assert data.design.sofs.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("change, column, row", [
    ({"Y99": [1, 2]}, "Y99", None),                                  # unknown item
    ({"Y01": [1, 6]}, "Y01", 2),                                     # out-of-range category
    ({"Y01": [1, 2.5]}, "Y01", 2),                                   # not a category code
    ({"site": ["A", ""]}, "site", 2),                                # missing site
    ({"site": ["A", "A"]}, "arm", 1),                                # a site in both arms
    ({"competence": ["3", "high"]}, "competence", 2),                # non-numeric competence
    ({"arm": ["sofs", "pilot"]}, "arm", 2),                          # unknown arm
])
def test_validation_names_row_and_column(change, column, row):
    frame = _frame(Y01=[1, 2])
    for k, v in change.items():
        frame[k] = v
    with pytest.raises(DataError) as err:
        validate_responses(frame, [default_instrument("yatchmenoff")], require_all_items=False)
    assert err.value.column == column and err.value.row == row


# ----------------------------------------------------------------------------- NumPy pieces

def test_category_probabilities_information_and_scores():
    a, b = 2.0, np.array([-1.0, 0.2, 1.5])
    theta = np.linspace(-3, 3, 61)
    p = irt.category_probabilities(theta, a, b)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    # Fisher information = sum_k P_k'^2 / P_k, checked against finite differences.
    h = 1e-5
    dp = (irt.category_probabilities(theta + h, a, b) - irt.category_probabilities(theta - h, a, b)) / (2 * h)
    np.testing.assert_allclose(irt.item_information(theta, a, b), (dp**2 / p).sum(-1), rtol=1e-5)
    assert np.all(np.diff(irt.expected_score(theta, a, b)) > 0)
    # Reliability: near 1 with huge information, near 0 with none.
    th = np.random.default_rng(1).normal(size=(3, 200))
    assert np.all(irt.marginal_reliability(th, np.full_like(th, 1e6)) > 0.99)
    assert np.all(irt.marginal_reliability(th, np.zeros_like(th)) < 0.02)


def test_log_category_probability_is_exact_and_finite_far_from_the_cutpoints():
    """The one-exponential form against an independent stable form, log sigma(u) +
    log sigma(g - u) + log(1 - e^-g), from -250 to 250 logits, and its gradient (PyTensor)
    against the analytic one; the direct difference of logistic functions fails here."""
    import pytensor
    import pytensor.tensor as pt

    u = np.linspace(-250.0, 250.0, 2001)[:, None]
    gaps = np.array([1e-3, 0.5, 2.0, 15.0, irt._PAD])
    lower, gap, exp_gap, log_expm1_gap = irt.category_tables(np.concatenate([[0.0], np.cumsum(gaps)])[None, :])
    np.testing.assert_allclose(gap[0], gaps, rtol=1e-12)
    np.testing.assert_allclose(lower[0], np.concatenate([[0.0], np.cumsum(gaps)[:-1]]))
    gap = gaps[None, :]
    reference = -np.logaddexp(0.0, -u) - np.logaddexp(0.0, u - gap) + np.log1p(-np.exp(-gap))
    ours = irt.log_category_probability(u, gap, exp_gap, log_expm1_gap)
    np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-12)
    with np.errstate(divide="ignore"):
        direct = np.log(expit(u) - expit(u - gap))
    assert not np.isfinite(direct).all()   # what the old form returned out here

    u_t = pt.dmatrix("u")
    logp = irt.log_category_probability(u_t, gap, exp_gap, log_expm1_gap, pt)
    grad = pytensor.function([u_t], pt.grad(logp.sum(), u_t))(np.broadcast_to(u, reference.shape).copy())
    analytic = expit(-u) - expit(u - gap)   # d/du [log sigma(u) + log sigma(g - u)]
    np.testing.assert_allclose(grad, analytic, rtol=1e-9, atol=1e-12)


def test_numpy_log_likelihood_matches_the_model_density():
    data = _small_data()
    rng = np.random.default_rng(2)
    theta = rng.normal(size=(data.n_person, data.n_dim))
    a = rng.lognormal(0.5, 0.3, data.n_item)
    b = np.sort(rng.normal(0, 1.5, (data.n_item, data.n_categories - 1)), axis=1)
    ours = irt.pointwise_log_likelihood(theta, a, b, data)
    # Same density through the model's own log-likelihood (the compiled kernel's Op).
    cut = a[:, None] * b
    pad = irt.padded_cutpoints(cut)
    theta_index = data.person_idx * data.n_dim + data.item_dimension[data.item_idx]
    model_logp = irt._grm_logp(data.response, theta, a, pad, theta_index, data.item_idx).eval()
    np.testing.assert_allclose(model_logp, ours.sum(), rtol=1e-12)
    # ... and through category probabilities.
    probs = irt.category_probabilities(theta[data.person_idx, data.item_dimension[data.item_idx]],
                                       a[data.item_idx], b[data.item_idx])
    np.testing.assert_allclose(ours, np.log(probs[np.arange(len(ours)), data.response]), rtol=1e-8)
    # ... and with draws in front (as the draws of a posterior are), each draw on its own.
    stacked = irt.pointwise_log_likelihood(np.stack([theta, -theta]), np.stack([a, a]), np.stack([b, b - 0.5]), data)
    np.testing.assert_allclose(stacked[0], ours, rtol=1e-12)
    np.testing.assert_allclose(stacked[1], irt.pointwise_log_likelihood(-theta, a, b - 0.5, data), rtol=1e-12)


@pytest.mark.parametrize("form", ["non_centred", "centred"])
def test_worker_term_gives_the_intended_covariance(form):
    """Families sharing a social worker: var(theta) = 1 at fixed covariates, covariance
    tau_w^2 / (1 + tau_w^2) within a worker, 0 across workers, and mean gamma * competence
    (prior draws of the model, in both of its parametrisations)."""
    import pymc as pm

    frame = pd.DataFrame({"family": [f"f{i}" for i in range(6)], "site": list("AABBCC"),
                          "arm": ["sofs", "sofs", "contrast", "contrast", "sofs", "sofs"],
                          "worker": ["w1", "w1", "w1", "w2", "w3", "w3"], "competence": [3.0, 3.5, 2.5, 3.0, 4.0, 2.0],
                          "I1": [1, 2, 3, 1, 2, 3], "I2": [3, 2, 1, 1, 2, 3]})
    inst = parse_instrument({"name": "t", "categories": [1, 2, 3], "score_direction": "higher_is_better",
                             "dimensions": {"a": "A"}, "items": [{"id": "I1", "dimension": "a"},
                                                                 {"id": "I2", "dimension": "a"}]})
    data = irt.grm_data(frame, inst, dimensions="overall")
    tau = 0.8
    # No site or arm effect (the arm enters theta through the arm difference of the site means).
    slope = 0.7
    model = pm.do(irt.build_grm(data, centring=form),
                  {"worker_sd_raw": np.array([tau]), "site_sd_raw": np.array([1e-9]),
                   "arm_difference": np.zeros(1), "competence_slope": np.array([slope])})
    theta = pm.draw(model["theta"], draws=20000, random_seed=1)[:, :, 0]
    np.testing.assert_allclose(theta.mean(0), slope * (frame["competence"] - frame["competence"].mean()), atol=0.03)
    cov = np.cov(theta.T)
    # Exact prior covariance of the construction: M C M' with C the centring matrix and
    # M = (I + K) / T, K_ij = k_w for families of the same worker.
    n, w = len(frame), data.design.worker_idx
    n_w = np.bincount(w)
    k = (np.sqrt(1 + n_w * tau**2) - 1) / n_w
    M = (np.eye(n) + np.where(w[:, None] == w[None, :], k[w][:, None], 0.0)) / np.sqrt(1 + tau**2)
    exact = M @ (np.eye(n) - 1 / n) @ M.T
    np.testing.assert_allclose(cov, exact, atol=0.04)
    # Before centring this is var 1 and within-worker covariance tau^2 / (1 + tau^2):
    np.testing.assert_allclose(M @ M.T, np.where(w[:, None] == w[None, :], tau**2 / (1 + tau**2), 0.0)
                               + np.eye(n) / (1 + tau**2), atol=1e-12)


@pytest.mark.parametrize("form", ["non_centred", "centred"])
def test_site_means_keep_the_named_prior_of_the_sofs_effect_and_the_site_effects(form):
    """The arm-difference parametrisation is a change of variables, not a new prior: in prior
    draws the SofS effect is N(mu, sigma) (the named prior), the site effects are N(0, sd^2)
    conditioned on a zero family-weighted sum, and the two are independent (both ways of
    sampling the within-arm contrasts)."""
    import pymc as pm

    from models.priors import NamedPrior

    sites = ["A", "B", "C", "D", "E"]
    size = [3, 5, 2, 4, 6]                       # unequal sites; A, C, E SofS
    site = np.repeat(sites, size)
    n = len(site)
    frame = pd.DataFrame({"family": [f"f{i}" for i in range(n)], "site": site,
                          "arm": np.where(np.isin(site, ["A", "C", "E"]), "sofs", "contrast"),
                          "worker": [f"w{i}" for i in range(n)], "competence": np.linspace(2, 4, n),
                          "I1": np.arange(n) % 3 + 1, "I2": (np.arange(n) + 1) % 3 + 1})
    inst = parse_instrument({"name": "t", "categories": [1, 2, 3], "score_direction": "higher_is_better",
                             "dimensions": {"a": "A"}, "items": [{"id": "I1", "dimension": "a"},
                                                                 {"id": "I2", "dimension": "a"}]})
    data = irt.grm_data(frame, inst, dimensions="overall")
    arm, within = irt.site_arm_basis(data.design)
    w = np.asarray(size, float) / n
    assert abs(w @ arm) < 1e-12 and within.shape == (5, 3)
    np.testing.assert_allclose(within.T @ within, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(within.T @ np.c_[arm, w], 0.0, atol=1e-12)
    sd_raw = 0.6
    model = pm.do(irt.build_grm(data, effect_prior=NamedPrior("test", 0.2, 0.4, "latent SD", ""), centring=form),
                  {"site_sd_raw": np.array([sd_raw]), "worker_sd_raw": np.array([0.5])})
    beta, effect = pm.draw([model["sofs_effect"], model["site_effect"]], draws=40000, random_seed=2)
    beta, effect = beta[:, 0], effect[:, :, 0]
    assert abs(beta.mean() - 0.2) < 0.01 and abs(beta.std() - 0.4) < 0.01
    sd = sd_raw                                   # site SD in within-site latent SDs
    exact = sd**2 * (np.eye(5) - np.outer(w, w) / (w @ w))     # iid N(0, sd^2) given w's = 0
    np.testing.assert_allclose(np.cov(effect.T), exact, atol=0.006)
    np.testing.assert_allclose(effect @ w, 0.0, atol=1e-10)
    assert np.all(np.abs([np.corrcoef(beta, effect[:, s])[0, 1] for s in range(5)]) < 0.02)


def test_row_forward_solve_matches_the_inverse():
    import pytensor.tensor as pt

    rng = np.random.default_rng(0)
    L = np.linalg.cholesky(np.cov(rng.normal(size=(4, 50))))
    g = rng.normal(size=(7, 4))
    ours = irt._solve_lower_rows(pt.as_tensor(L), pt.as_tensor(g), 4).eval()
    np.testing.assert_allclose(ours, g @ np.linalg.inv(L).T, atol=1e-12)


def _small_data() -> irt.GRMData:
    syn = simulate_engagement(3, instruments=("yatchmenoff",))
    inst = default_instrument("yatchmenoff")
    return irt.grm_data(validate_responses(syn.frame, [inst]), inst, dimensions="subscale")


# ----------------------------------------------------------------------------- synthetic data

def test_generator_is_calibrated_to_tables_5_and_6():
    """A large population from the generator reproduces Table 5 means and Table 6 slopes."""
    sites = tuple(SiteSpec(f"S{k}", "sofs" if k % 2 else "contrast", 250, 60) for k in range(40))
    frame = simulate_engagement(11, sites=sites, instruments=("yatchmenoff",)).frame
    s = published_summaries(frame).set_index("subscale")
    for dim in TABLE5:
        assert abs(s.loc[dim, "pilot_mean"] - TABLE5[dim][0]) < 0.07, dim
        assert abs(s.loc[dim, "contrast_mean"] - TABLE5[dim][1]) < 0.07, dim
        assert abs(s.loc[dim, "competence_slope"] - TABLE6[dim][0]) < 0.06, dim
        assert TABLE6[dim][0] < 0                                     # the restored minus signs


def test_default_synthetic_data_matches_the_published_design():
    syn = simulate_engagement()
    f = syn.frame
    assert len(f) == 60 and f["site"].nunique() == 4
    for spec in DEFAULT_SITES:
        sub = f[f["site"] == spec.name]
        assert len(sub) == spec.families and sub["worker"].nunique() == spec.workers
    assert f.loc[f["site"].isin(["Pilot 4", "Pilot 9"]), "arm"].eq("sofs").all()
    s = published_summaries(f)
    assert 0.95 < s.attrs["alpha"] < 0.985                             # reported 0.972
    assert (abs(s["pilot_mean"] - s["table5_pilot"]) < 0.15).all()
    assert (abs(s["contrast_mean"] - s["table5_contrast"]) < 0.15).all()
    pd.testing.assert_frame_equal(f, simulate_engagement(DEFAULT_DATA_SEED).frame)   # reproducible
    validate_responses(f, [default_instrument("yatchmenoff"), default_instrument("wai")])


# ----------------------------------------------------------------------------- validation fit

def _environment() -> tuple[irt.GRMData, pd.DataFrame]:
    raw = pd.read_csv(ENVIRONMENT / "Environment.csv")
    order = {"very concerned": 1, "slightly concerned": 2, "not very concerned": 3}
    frame = raw.apply(lambda c: c.map(order))
    inst = parse_instrument({"name": "environment", "categories": [1, 2, 3], "score_direction": "higher_is_better",
                             "dimensions": {"concern": "Concern"},
                             "items": [{"id": c, "dimension": "concern"} for c in raw.columns]})
    return irt.grm_data(frame, inst, dimensions="overall", covariates=False), frame


@needs_shared(ENVIRONMENT, reason="the GRM validation data set")   # fails instead in CI
def test_grm_reproduces_published_ml_estimates():
    """Fit ltm's Environment data (291 x 6) with the DEFAULT priors and compare with Rizopoulos (2006).

    Measured (issue 19 defaults, 2 x 600 draws): posterior means within 0.12 of the ML
    discriminations and 0.09 of the thresholds, all 18 inside their 90% intervals, marginal
    log-likelihood at the posterior means -1090.6.

    Tolerance (stated in advance, from the README): every published value inside the
    posterior 90% interval; posterior means within 0.15 of the ML thresholds and within 0.3
    of the ML discriminations (the README's quadrature re-fit differs from the table by up to
    0.05 and 0.14; posterior means of discriminations sit a little off the mode because
    their posteriors are skewed); and the marginal log-likelihood at the posterior means
    within 1.0 of the ML fit's (-1091.2 by ltm, -1090.5 by 41-point quadrature).
    """
    data, _ = _environment()
    idata = irt.sample_grm(irt.build_grm(data), data,   # the default priors (issue 19)
                           draws=600, tune=600, chains=2, seed=7)
    diag = check_sampling(idata, ["discrimination", "threshold"])
    assert diag.divergences == 0 and diag.table["rhat"].max() < 1.02
    table = irt.item_parameter_table(idata, data)
    for row in table.itertuples():
        b1, b2, a = PUBLISHED[row.item]
        published = {"b1": b1, "b2": b2, "a": a}[row.parameter]
        assert row.low <= published <= row.high, (row.item, row.parameter, row.mean, published)
        tol = 0.3 if row.parameter == "a" else 0.15
        assert abs(row.mean - published) <= tol, (row.item, row.parameter, row.mean, published)
    post = irt.posterior_arrays(idata)
    ll = irt.marginal_log_likelihood(data.wide(), post["discrimination"].mean(0), post["threshold"].mean(0))
    assert ll > -1091.232 - 1.0


# ----------------------------------------------------------------------------- recovery

# The centred form (used from CENTRED_FROM families per site) is a slow benchmark-style run
# (about 110 s); its prior is checked in the default suite by the two prior tests above.
@pytest.mark.parametrize("form", ["non_centred", pytest.param("centred", marks=pytest.mark.slow)])
def test_latent_regression_recovers_known_coefficients(form):
    """Known SofS effects and competence slopes on a larger synthetic study (8 sites, 240
    families, the Yatchmenoff key): every true coefficient inside its 95% interval, posterior
    means within 0.35 (SofS, judged against 8 sites) and 0.3 (competence) latent SD, about
    2.5 posterior SDs. Reverse coding, orientation or the g-computation going wrong breaks it
    (e.g. the mistrust slope would change sign).

    The data's own sampling variation is large (the OLS slope of the *true* traits on
    competence has SD 0.095 across seeds of this design, and the four subscales move together
    because their traits correlate 0.92), so about one seed in ten puts a truth just outside a
    95% interval; seed 7 is a typical draw (its true-trait OLS slopes are within 0.05 of the
    truth)."""
    base = yatchmenoff_truth()
    truth = replace(base, sofs_effect=np.array([0.6, 0.0, -0.6, 0.3]),
                    competence_slope=np.array([0.5, 0.3, 0.8, 0.6]), site_sd=0.1, worker_sd=0.3)
    sites = tuple(SiteSpec(f"S{k}", "sofs" if k < 4 else "contrast", 30, 12) for k in range(8))
    syn = simulate_engagement(7, sites=sites, truth={"yatchmenoff": truth}, instruments=("yatchmenoff",),
                              missing_rate=0.02)
    inst = default_instrument("yatchmenoff")
    data = irt.grm_data(validate_responses(syn.frame, [inst]), inst, dimensions="subscale")
    model = irt.build_grm(data, centring=form)
    idata = irt.sample_grm(model, data, draws=500, tune=500, chains=4, seed=3, target_accept=0.95)
    # Short chains: only the coefficients under test are held to an R-hat bound here (the
    # weakly identified worker SD needs the default run's longer chains).
    diag = check_sampling(idata, ["sofs_effect", "competence_slope", "discrimination"])
    # 4 x 500 draws (target_accept 0.95): R-hat for these coefficients <= 1.05 still catches a
    # chain stuck in another mode (2 x 500 draws of an earlier parametrisation gave 1.02-1.09).
    # The default CLI run is held to 1.01.
    assert diag.divergences == 0 and diag.table["rhat"].max() < 1.05
    # The model's latent unit is the SD within a site at fixed arm and competence (worker + family).
    unit = np.sqrt(1 + truth.worker_sd**2)
    post = irt.posterior_arrays(idata)
    for name, true, tol in (("sofs_effect", truth.sofs_effect / unit, 0.35),
                            ("competence_slope", truth.competence_slope / unit, 0.3)):
        draws = post[name]
        lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
        assert np.all((lo <= true) & (true <= hi)), (name, lo, hi, true)
        assert np.all(np.abs(draws.mean(0) - true) < tol), (name, draws.mean(0), true)
    # Posterior predictive check of the item answer distributions, reliability, LOO plumbing.
    ppc = irt.ppc_item_distributions(idata, data, n_draws=200)
    assert ppc["inside90"].mean() > 0.85
    rel = irt.reliability_table(idata, data, max_draws=200)
    assert (rel["reliability_mean"] > 0.7).all() and (rel["reliability_mean"] < 1).all()
    tree = irt_loo.respondent_log_likelihood(idata, data, max_draws=300)
    loo, _ = irt_loo.loo_by_respondent({"a": tree, "b": tree})
    assert {"elpd_diff", "dse", "n_pareto_k_high"} <= set(loo.columns) and np.allclose(loo["elpd_diff"], 0)
    assert loo["n_pareto_k_high"].iloc[0] <= 0.05 * data.n_person      # the latent regression is the model's
    eff = irt.score_scale_effects(idata, data, max_draws=500)
    # Positive latent competence slopes = lower (better) Yatchmenoff scores.
    assert np.all(eff["competence"][:, :4].mean(0) < 0) and eff["columns"][-1] == "overall"
    # Prior predictive check: the priors put mass on every category and are not concentrated
    # (each category's 90% range of shares is wider than 0.15). With the default fixed priors
    # (issue 19) the strongly skewed observed shares of this data set (0.04 in the lowest
    # category, 0.47 in the highest) lie just outside the range for two of the five categories;
    # the former pooled priors covered them.
    pp = irt.prior_predictive_categories(model, data, draws=100)
    assert (pp["prior_median"] > 0.02).all()
    assert (pp["prior_high90"] - pp["prior_low90"] > 0.15).all()


# ----------------------------------------------------------------------------- issue 19

def _likert_key(n_items: int = 4) -> dict:
    return {"name": "myscale", "title": "My scale", "trait": "wellbeing", "respondents": "pupils",
            "more_trait": "report more wellbeing", "categories": [0, 1, 2, 3], "score_direction": "higher_is_better",
            "dimensions": {"w": "Wellbeing"}, "items": [{"id": f"Q{j}", "dimension": "w"} for j in range(n_items)]}


def test_item_answers_alone_need_no_administrative_columns():
    inst = parse_instrument(_likert_key())
    frame = pd.DataFrame({f"Q{j}": [0, 1, 2, 3, 2] for j in range(4)})
    clean = validate_responses(frame, [inst])
    assert list(clean.columns) == [f"Q{j}" for j in range(4)]
    data = irt.grm_data(clean, inst, dimensions="overall")
    assert data.design is None and data.person[0] == "row 1"
    assert inst.scale_label == "My scale average score (0-3, higher = more wellbeing)"
    assert data.scale_label == inst.scale_label and data.trait == "wellbeing"
    # Some covariates: the regression uses those present and says which.
    with_arm = validate_responses(frame.assign(arm=["sofs", "contrast"] * 2 + ["sofs"], competence=[1, 2, 3, 4, 5.0]),
                                  [inst])
    design = irt.grm_data(with_arm, inst, dimensions="overall").design
    assert design.covariates == ("arm", "competence") and design.site is None and design.worker is None


def test_dropped_item_column_is_a_data_error_naming_it():
    inst = parse_instrument(_likert_key())
    frame = pd.DataFrame({f"Q{j}": [0, 1, 2] for j in (0, 1, 3)})            # Q2 dropped
    with pytest.raises(DataError) as err:
        validate_responses(frame, [inst])
    assert err.value.column == "Q2" and "missing" in err.value.message


@pytest.mark.parametrize("covariates", [("arm",), ("site",), ("arm", "site"), ("competence", "worker")])
def test_latent_regression_with_only_some_covariates(covariates):
    """Prior draws: the arm shifts theta by the SofS effect (no site column: directly), the
    site SD prior is the option given, and the variance given the covariates is 1."""
    import pymc as pm

    inst = parse_instrument(_likert_key(2))
    n = 40
    cols = {"arm": np.where(np.arange(n) % 2 == 0, "sofs", "contrast"),
            "site": np.where(np.arange(n) % 4 < 2, "A", "B") if "arm" not in covariates
            else np.array(["S1", "S2", "S3", "S4"])[np.arange(n) % 4],
            "competence": np.linspace(1, 3, n), "worker": [f"w{i // 2}" for i in range(n)]}
    frame = pd.DataFrame({c: cols[c] for c in covariates} | {"Q0": np.arange(n) % 4, "Q1": (np.arange(n) + 1) % 4})
    data = irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="overall")
    assert data.design.covariates == tuple(c for c in ("arm", "competence", "site", "worker") if c in covariates)
    model = irt.build_grm(data, priors=irt.GRMPriors(site_sd=0.7))
    names = set(model.named_vars)
    assert ("sofs_effect" in names) == ("arm" in covariates)
    assert ("sd_site" in names) == ("site" in covariates) and ("sd_worker" in names) == ("worker" in covariates)
    if "site" in covariates:
        sd = pm.draw(model["sd_site"], draws=4000, random_seed=1)
        assert abs(sd.mean() - 0.7) < 0.03                                  # Gamma(2, 2 / 0.7): mean 0.7
    if covariates == ("arm",):
        fixed = pm.do(model, {"sofs_effect": np.array([1.5])})
        theta = pm.draw(fixed["theta"], draws=4000, random_seed=2)[:, :, 0]
        sofs = cols["arm"] == "sofs"
        np.testing.assert_allclose(theta[:, sofs].mean() - theta[:, ~sofs].mean(), 1.5, atol=0.03)
        np.testing.assert_allclose(theta.var(axis=0).mean(), 1.0, atol=0.05)


def test_reliability_uses_the_conditional_variance_one():
    """With a latent regression the traits vary more than 1 across persons, but the model's
    variance given the covariates is 1: the reliability is 1 - mean 1 / (I + 1)."""
    rng = np.random.default_rng(3)
    theta = rng.normal(0, 2.0, (5, 300))                                  # spread by covariates
    info = np.full_like(theta, 4.0)
    np.testing.assert_allclose(irt.marginal_reliability(theta, info, variance=1.0), 1 - 1 / 5.0)
    assert np.all(irt.marginal_reliability(theta, info) > 0.9)           # the old definition: inflated


def test_priors_pooling_modes_are_validated():
    with pytest.raises(ValueError, match="pooling"):
        irt.GRMPriors(pooling="gaps")
    assert irt.GRMPriors().pooling == "none"


def test_sampling_starts_from_traits_read_off_the_answers():
    """The trait draws start from each person's standardised mean answer per dimension (0 where
    none answered), with and without the latent regression: from the prior's starting point one
    chain in four at 5,000 x 20 settled with one dimension's discriminations collapsed."""
    syn = simulate_engagement(3, instruments=("yatchmenoff",))
    inst = default_instrument("yatchmenoff")
    frame = syn.frame.copy()
    first = [i.id for i in inst.used_items if i.dimension == inst.used_items[0].dimension]
    frame.loc[frame.index[0], first] = np.nan       # person 0 answered nothing on dimension 0
    data = irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="subscale")
    start = irt.trait_start(data)
    assert start.shape == (data.n_person, data.n_dim)
    row = {f: i for i, f in enumerate(data.person)}[str(frame["family"].iloc[0])]
    assert start[row, 0] == 0.0
    answered = np.ones(data.n_person, bool)
    answered[row] = False
    np.testing.assert_allclose([start[answered, 0].mean(), *start[:, 1:].mean(axis=0)], 0.0, atol=1e-12)
    np.testing.assert_allclose([start[answered, 0].std(), *start[:, 1:].std(axis=0)], 1.0, atol=1e-12)
    frame_row = {str(f): i for i, f in enumerate(frame["family"])}
    truth = syn.theta["yatchmenoff"][[frame_row[f] for f in data.person]]
    for d in range(data.n_dim):
        assert np.corrcoef(start[answered, d], truth[answered, d])[0, 1] > 0.5
    from pymc.initial_point import make_initial_point_fn
    for regression in (True, False):
        model = irt.build_grm(data, regression=regression)
        point = make_initial_point_fn(model=model, overrides=irt.start_points(data), return_transformed=True)(0)
        np.testing.assert_allclose(point["z_theta_raw"], start)
