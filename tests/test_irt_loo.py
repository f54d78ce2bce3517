"""Leave one respondent out with the traits integrated out (issue 19, item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import ancestors
from scipy.special import logsumexp

from data.instruments import default_instrument, parse_instrument, validate_responses
from data.synthetic_engagement import simulate_engagement
from models import irt_loo
from models import psychometric_irt as irt


def _instrument(n_items: int, n_dim: int, K: int):
    return parse_instrument({"name": "sim", "categories": list(range(K)), "score_direction": "higher_is_better",
                             "dimensions": {f"d{d}": f"D{d}" for d in range(n_dim)},
                             "items": [{"id": f"Q{j}", "dimension": f"d{j % n_dim}"} for j in range(n_items)]})


def _simulate(n: int, n_items: int, corr: float, seed: int, K: int = 4, missing: float = 0.0):
    """Two correlated traits (items alternate between them), answers from the GRM."""
    rng = np.random.default_rng(seed)
    theta = rng.multivariate_normal([0, 0], [[1, corr], [corr, 1]], size=n)
    a = rng.uniform(1.0, 2.5, n_items)
    b = np.sort(rng.normal(0, 1, (n_items, K - 1)), axis=1)
    dim = np.arange(n_items) % 2
    p = irt.category_probabilities(theta[:, dim], a[None], b[None])
    y = (rng.uniform(size=p.shape[:-1])[..., None] > p.cumsum(-1)).sum(-1).astype(float)
    y[rng.uniform(size=y.shape) < missing] = np.nan
    inst = _instrument(n_items, 2, K)
    frame = validate_responses(pd.DataFrame({f"Q{j}": y[:, j] for j in range(n_items)}), [inst])
    return frame, inst, a, b


def test_latent_means_are_the_models_own():
    """The NumPy latent-regression means equal the model graph's (named ``theta_mean``) at
    prior draws of every variable: arm, competence, site and worker terms, four dimensions."""
    syn = simulate_engagement(3, instruments=("yatchmenoff",))
    inst = default_instrument("yatchmenoff")
    data = irt.grm_data(validate_responses(syn.frame, [inst]), inst, dimensions="subscale")
    model = irt.build_grm(data)
    with model:
        names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
        prior = pm.sample_prior_predictive(draws=3, random_seed=1, var_names=names)["prior"].to_dataset()
    mean_var = next(v for v in ancestors([model["theta"]]) if v.name == "theta_mean")
    tree = xr.DataTree.from_dict({"posterior": prior})
    ours = irt_loo.latent_means(irt_loo._arrays(tree, None, 0), data)
    for k in range(3):
        point = {model[name]: prior[name].values[0, k] for name in map(lambda v: v.name, model.free_RVs)}
        theirs = graph_replace(mean_var, point, strict=False).eval()
        np.testing.assert_allclose(ours[k], theirs, rtol=1e-10, atol=1e-12)
    assert np.abs(ours).max() > 0.05          # the terms are not all zero


def _fake_posterior(frame, inst, a, b, corr: float, n_draws: int, seed: int, dimensions: str):
    """Draws of the item parameters near the truth and, per person, traits drawn from their
    exact posterior given the first draw's items (on a grid): what a fit would hand over."""
    rng = np.random.default_rng(seed)
    data = irt.grm_data(frame, inst, dimensions=dimensions, covariates=False)
    D = data.n_dim
    a_s = a[None] * np.exp(rng.normal(0, 0.05, (n_draws, len(a))))
    b_s = np.sort(b[None] + rng.normal(0, 0.05, (n_draws,) + b.shape), axis=-1)
    g = np.linspace(-5, 5, 201)
    grid = np.stack(np.meshgrid(*([g] * D), indexing="ij"), -1).reshape(-1, D)
    R = np.array([[1, corr], [corr, 1]]) if D == 2 else np.ones((1, 1))
    log_prior = -0.5 * np.einsum("nd,de,ne->n", grid, np.linalg.inv(R), grid)
    wide = data.wide()
    theta = np.empty((n_draws, data.n_person, D))
    probs = irt.category_probabilities(grid[:, data.item_dimension], a[None], b[None])   # (grid, item, K)
    for i, row in enumerate(wide):
        ok = row >= 0
        lp = log_prior + np.log(probs[:, np.flatnonzero(ok), row[ok]]).sum(1)
        w = np.exp(lp - lp.max())
        theta[:, i] = grid[rng.choice(len(grid), n_draws, p=w / w.sum())] + rng.normal(0, 0.025, (n_draws, D))
    post = {"theta": (("chain", "draw", "person", "dimension"), theta[None]),
            "discrimination": (("chain", "draw", "item"), a_s[None]),
            "threshold": (("chain", "draw", "item", "cut"), b_s[None])}
    if D == 2:
        post["trait_corr"] = (("chain", "draw", "dimension", "dimension_bis"), np.broadcast_to(R, (1, n_draws, 2, 2)))
    return data, xr.DataTree.from_dict({"posterior": xr.Dataset(post)}), a_s, b_s, R


@pytest.mark.parametrize("dimensions", ["overall", "subscale"])
def test_quadrature_matches_a_dense_grid(dimensions):
    """The marginal log-likelihood of each respondent (traits integrated out) against a dense
    grid (0.02-wide cells over +-7 SD): within 0.005 nats per respondent, with missing answers."""
    corr = 0.6
    frame, inst, a, b = _simulate(40, 8, corr, seed=4, missing=0.1)
    if dimensions == "overall":
        corr = 1.0
    data, tree, a_s, b_s, R = _fake_posterior(frame, inst, a, b, corr, 60, 1, dimensions)
    out = irt_loo.respondent_log_likelihood(tree, data, max_draws=None)
    ll = out["log_likelihood"][irt_loo.VAR].values[0]
    assert ll.shape == (60, data.n_person)
    D = data.n_dim
    g = np.linspace(-7, 7, 701 if D == 1 else 351)
    grid = np.stack(np.meshgrid(*([g] * D), indexing="ij"), -1).reshape(-1, D)
    log_norm = (-0.5 * np.einsum("nd,de,ne->n", grid, np.linalg.inv(R[:D, :D]), grid)
                - 0.5 * np.log(np.linalg.det(R[:D, :D])) - 0.5 * D * np.log(2 * np.pi) + D * np.log(g[1] - g[0]))
    wide = data.wide()
    for s in (0, 29, 59):
        probs = irt.category_probabilities(grid[:, data.item_dimension], a_s[s][None], b_s[s][None])
        for i in range(0, data.n_person, 3):
            ok = wide[i] >= 0
            ref = logsumexp(log_norm + np.log(probs[:, np.flatnonzero(ok), wide[i][ok]]).sum(1))
            assert abs(ll[s, i] - ref) < 5e-3, (s, i, ll[s, i], ref)


def test_unit_left_out_is_the_respondent_and_pareto_k_is_shown():
    """The comparison table carries the unit and each model's Pareto k; the per-respondent
    table has one row per respondent and model."""
    frame, inst, a, b = _simulate(30, 6, 0.5, seed=2)
    trees = {}
    for dims, corr in (("subscale", 0.5), ("overall", 1.0)):
        data, tree, *_ = _fake_posterior(frame, inst, a, b, corr, 200, 3, dims)
        trees[dims] = irt_loo.respondent_log_likelihood(tree, data, max_draws=150, seed=1)
    table, ks = irt_loo.loo_by_respondent(trees)
    assert set(table["model"]) == {"subscale", "overall"}
    assert {"elpd_diff", "dse", "n_pareto_k_high", "max_pareto_k", "unit"} <= set(table.columns)
    assert (table["unit"] == "respondent (traits integrated out)").all()
    assert len(ks) == 2 * 30 and ks["pareto_k"].notna().all()
    assert (table["max_pareto_k"] == ks.groupby("model")["pareto_k"].max().reindex(table["model"]).values).all()


@pytest.mark.slow
def test_respondent_loo_does_not_favour_more_traits_by_construction():
    """Fitted models (2 x 500 draws). Two traits correlated 0.3: the two-trait model wins by
    more than 2 SE. One trait (correlation 1): the two-trait model does not win by more than
    1 SE, while the answer-level LOO's effective number of parameters grows with the traits.
    Measured (seed 1, 200 x 8, 2026-12-07): correlation 0.3, two traits ahead by 36.4 (SE 10.0);
    correlation 1, one trait ahead by 1.8 (SE 1.7); no Pareto k above 0.35. (The answer-level
    LOO on the first data set: p_loo 303 against 183, 82 and 59 k above 0.67.)"""
    results = {}
    for corr in (0.3, 1.0):
        frame, inst, *_ = _simulate(200, 8, corr, seed=1)
        trees = {}
        for dims in ("subscale", "overall"):
            data = irt.grm_data(frame, inst, dimensions=dims, covariates=False)
            idata = irt.sample_grm(irt.build_grm(data), data, draws=500, tune=400, chains=2, seed=3)
            trees[dims] = irt_loo.respondent_log_likelihood(idata, data, max_draws=1000)
        results[corr], _ = irt_loo.loo_by_respondent(trees)
        print(f"trait correlation {corr}:\n", results[corr][["model", "rank", "elpd", "p", "elpd_diff", "dse",
                                                               "n_pareto_k_high", "max_pareto_k"]].to_string())
    t = results[0.3].set_index("model")
    # arviz's elpd_diff is the best model's elpd minus this one's: <= 0
    assert t.loc["subscale", "rank"] == 0 and -t.loc["overall", "elpd_diff"] > 2 * t.loc["overall", "dse"]
    t = results[1.0].set_index("model")
    assert t.loc["subscale", "rank"] == 1 or -t.loc["overall", "elpd_diff"] < t.loc["overall", "dse"], t
    assert (t["n_pareto_k_high"] == 0).all()


def test_trait_moments_equal_those_of_the_stacked_draws():
    """Moments accumulated chain by chain equal the mean and covariance of all draws stacked."""
    rng = np.random.default_rng(3)
    theta = rng.normal(1.5, 0.4, (3, 50, 7, 2)) + rng.normal(0, 1, (1, 1, 7, 2))
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"theta": (("chain", "draw", "person", "dimension"), theta)})})
    m, cov = irt_loo.trait_moments(tree)
    flat = theta.reshape(-1, 7, 2)
    np.testing.assert_allclose(m, flat.mean(axis=0), atol=1e-12)
    for i in range(7):
        np.testing.assert_allclose(cov[i], np.cov(flat[:, i, :], rowvar=False), atol=1e-10)
