"""Item fit and global fit of graded response models as posterior predictive checks
(models.irt_fit; issue 19, item 4): the moment and discrepancy computations against
brute-force loops, calibration under the true parameters, and three fits to simulated data
(well specified, one non-monotone item, two locally dependent items)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from data.instruments import parse_instrument, validate_responses
from models import irt_fit
from models import psychometric_irt as irt

N_PERSONS, N_ITEMS, K = 300, 8, 4


# ----------------------------------------------------------------------------- helpers

def _grm_answers(rng: np.random.Generator, theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """GRM answers 0..K-1 for traits ``theta`` (person, item) and item parameters."""
    probs = irt.category_probabilities(theta, a[None, :], b[None, :, :])
    u = rng.uniform(size=probs.shape[:-1])[..., None]
    return np.minimum((u > probs.cumsum(axis=-1)).sum(axis=-1), probs.shape[-1] - 1)


def _simulate(seed: int, *, misfit: str | None = None, n: int = N_PERSONS, n_items: int = N_ITEMS,
              missing: float = 0.05) -> irt.GRMData:
    """A unidimensional GRM data set with known parameters (theta ~ N(0, 1), discriminations
    1.2-2.5, thresholds spread over -1.5..1.5), 5% of answers missing at random.

    ``misfit='nonmonotone'``: item Q3 follows |theta| (a U-shaped relation to the trait, which
    no GRM item reproduces. Answers that ignore the trait are no misfit for the GRM: a
    discrimination near 0 reproduces them exactly).
    ``misfit='copy'``: item Q1 repeats the answer to Q0 with probability 0.7 (local dependence).
    """
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    a = rng.uniform(1.2, 2.5, n_items)
    b = np.sort(rng.normal(0, 0.4, (n_items, 1)) + np.linspace(-1.5, 1.5, K - 1)[None, :], axis=1)
    traits = np.repeat(theta[:, None], n_items, axis=1)
    if misfit == "nonmonotone":
        traits[:, 3] = 1.6 * (np.abs(theta) - np.sqrt(2 / np.pi))     # mean zero
        a[3] = 2.0
    y = _grm_answers(rng, traits, a, b)
    if misfit == "copy":
        y[:, 1] = np.where(rng.uniform(size=n) < 0.7, y[:, 0], y[:, 1])
    items = [f"Q{j}" for j in range(n_items)]
    inst = parse_instrument({"name": "sim", "categories": list(range(K)), "score_direction": "higher_is_better",
                             "dimensions": {"t": "Trait"}, "items": [{"id": q, "dimension": "t"} for q in items]})
    frame = pd.DataFrame(y, columns=items).astype(float).mask(rng.uniform(size=y.shape) < missing)
    return irt.grm_data(validate_responses(frame, [inst]), inst, dimensions="overall", covariates=False)


def _fit(data: irt.GRMData, seed: int) -> xr.DataTree:
    return irt.sample_grm(irt.build_grm(data), data, draws=300, tune=300, chains=2, seed=seed)


def _tiny(n_categories: int) -> irt.GRMData:
    """Five persons, four items on two dimensions, some answers missing."""
    wide = np.array([[0, 1, -1, 2], [2, -1, 1, 0], [1, 1, 2, -1], [-1, 0, 0, 1], [2, 2, 1, 2]])
    wide = np.where(wide >= 0, np.minimum(wide, n_categories - 1), -1)
    p, j = np.nonzero(wide >= 0)
    return irt.GRMData(instrument="tiny", person=tuple("ABCDE"), item=("i1", "i2", "i3", "i4"),
                       dimension=("d1", "d2"), dimension_label=("D1", "D2"), item_dimension=np.array([0, 1, 0, 1]),
                       n_categories=n_categories, person_idx=p, item_idx=j, response=wide[p, j],
                       code_values=np.arange(n_categories, dtype=float))


def _as_idata(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> xr.DataTree:
    """Draws (draw, ...) as a one-chain posterior."""
    post = xr.Dataset({"theta": (("chain", "draw", "person", "dimension"), theta[None]),
                       "discrimination": (("chain", "draw", "item"), a[None]),
                       "threshold": (("chain", "draw", "item", "cut"), b[None])})
    return xr.DataTree.from_dict({"posterior": post})


def _random_parameters(rng, data: irt.GRMData, draws: int = 1):
    theta = rng.normal(size=(draws, data.n_person, data.n_dim))
    a = rng.uniform(0.5, 2.5, (draws, data.n_item))
    b = np.sort(rng.normal(0, 1, (draws, data.n_item, data.n_categories - 1)), axis=-1)
    return theta, a, b


# ----------------------------------------------------------------------------- unit level

@pytest.mark.parametrize("n_categories", [2, 3])
def test_moments_match_a_brute_force_loop(n_categories):
    """E_j, v_j, E_jl, v_jl and the sample moments on a tiny hand-made case (missing answers,
    two dimensions) against loops over persons, with Var(y_j y_l | theta) from the joint
    category distribution rather than the closed form; then the whole discrepancy of
    global_fit for one draw against the same loops."""
    data = _tiny(n_categories)
    rng = np.random.default_rng(4)
    theta, a, b = _random_parameters(rng, data)
    wide = data.wide()
    k = np.arange(n_categories, dtype=float)
    P = irt.category_probabilities(theta[0][:, data.item_dimension], a[0][None, :], b[0][None])  # (person, item, K)
    J = data.n_item
    E1, v1, m1 = np.zeros(J), np.zeros(J), np.zeros(J)
    E2, v2, m2 = np.zeros((J, J)), np.zeros((J, J)), np.zeros((J, J))
    w2, c2 = np.zeros((J, J)), np.zeros((J, J))
    for j in range(J):
        who = [i for i in range(data.n_person) if wide[i, j] >= 0]
        E1[j] = np.mean([P[i, j] @ k for i in who])
        v1[j] = np.sum([P[i, j] @ k**2 - (P[i, j] @ k) ** 2 for i in who]) / len(who) ** 2
        m1[j] = np.mean([wide[i, j] for i in who])
        for l in range(J):
            both = [i for i in range(data.n_person) if wide[i, j] >= 0 and wide[i, l] >= 0]
            joint = [np.outer(P[i, j], P[i, l]) for i in both]            # independent given theta
            prod = np.outer(k, k)
            E2[j, l] = np.mean([(q * prod).sum() for q in joint])
            v2[j, l] = np.sum([(q * prod**2).sum() - (q * prod).sum() ** 2 for q in joint]) / len(both) ** 2
            m2[j, l] = np.mean([wide[i, j] * wide[i, l] for i in both])
            # residual cross-products: Var((y_j - mu_j)(y_l - mu_l)) from the joint distribution too
            res = [np.outer(k - P[i, j] @ k, k - P[i, l] @ k) for i in both]
            w2[j, l] = np.sum([(q * r**2).sum() - (q * r).sum() ** 2 for q, r in zip(joint, res)]) / len(both) ** 2
            c2[j, l] = np.mean([(wide[i, j] - P[i, j] @ k) * (wide[i, l] - P[i, l] @ k) for i in both])
    mask = (wide >= 0).astype(float)
    mu = np.where(mask > 0, (P @ k), 0.0)[None]
    second = np.where(mask > 0, (P @ k**2), 0.0)[None]
    parts = irt_fit.moment_parts(mu, second, mask)
    np.testing.assert_allclose(parts["E1"][0], E1, rtol=1e-12)
    np.testing.assert_allclose(parts["v1"][0], v1, rtol=1e-12)
    off = ~np.eye(J, dtype=bool)
    np.testing.assert_allclose(parts["E2"][0][off], E2[off], rtol=1e-12)
    np.testing.assert_allclose(parts["v2"][0][off], v2[off], rtol=1e-12)
    np.testing.assert_allclose(parts["w2"][0][off], w2[off], rtol=1e-12)
    got1, got2 = irt_fit.sample_moments(np.where(mask > 0, wide, 0).astype(float), mask)
    np.testing.assert_allclose(got1, m1, rtol=1e-12)
    np.testing.assert_allclose(got2[off], m2[off], rtol=1e-12)
    # The whole discrepancy for one draw, both forms, and the pairs table.
    iu, ju = np.triu_indices(J, k=1)
    first = np.sum((m1 - E1) ** 2 / v1)
    for moments, r in (("raw", (m2 - E2) / np.sqrt(v2)), ("residual", c2 / np.sqrt(w2))):
        fit = irt_fit.global_fit(_as_idata(theta, a, b), data, n_draws=1, moments=moments)
        np.testing.assert_allclose(fit.observed, first + np.sum(r[iu, ju] ** 2), rtol=1e-10)
        np.testing.assert_allclose(fit.pairs["std_residual"], r[iu, ju], rtol=1e-10)
        assert fit.n_draws == 1 and fit.n_moments == J + len(iu) and len(fit.pairs) == len(iu)
        assert fit.moments == moments and fit.to_dict()["statistic"] == "moment_discrepancy"
    np.testing.assert_allclose(fit.pairs["observed"], c2[iu, ju], rtol=1e-10)
    assert list(zip(fit.pairs["item_1"], fit.pairs["item_2"]))[0] == ("i1", "i2")
    assert len(fit.to_dict()["pairs"]) == len(iu)


@pytest.mark.parametrize("n_categories", [2, 4])
def test_item_statistics_match_a_brute_force_loop(n_categories):
    """Grouped chi-square (persons grouped by the item's own dimension's trait) and outfit of
    item_fit for single draws against direct loops; missing answers and two dimensions."""
    rng = np.random.default_rng(5)
    n, J = 23, 4
    wide = rng.integers(0, n_categories, (n, J))
    wide[rng.uniform(size=(n, J)) < 0.2] = -1
    p, j = np.nonzero(wide >= 0)
    data = irt.GRMData(instrument="t", person=tuple(map(str, range(n))), item=("a", "b", "c", "d"),
                       dimension=("x", "y"), dimension_label=("X", "Y"), item_dimension=np.array([1, 0, 0, 1]),
                       n_categories=n_categories, person_idx=p, item_idx=j, response=wide[p, j],
                       code_values=np.arange(n_categories, dtype=float))
    theta, a, b = _random_parameters(rng, data, draws=2)
    table = irt_fit.item_fit(_as_idata(theta[:1], a[:1], b[:1]), data, n_draws=1, n_groups=3).set_index(
        ["item", "statistic"])
    k = np.arange(n_categories)
    for item in range(J):
        who = np.flatnonzero(wide[:, item] >= 0)
        t = theta[0, who, data.item_dimension[item]]
        P = irt.category_probabilities(t, a[0, item], b[0, item])
        y = wide[who, item]
        order = np.argsort(t)
        chi2 = 0.0
        for g in np.array_split(order, 3):                     # quantile groups, lowest first
            O = np.array([(y[g] == c).sum() for c in k])
            E = P[g].sum(axis=0)
            chi2 += np.sum((O - E) ** 2 / E)
        mu, var = P @ k, P @ k**2 - (P @ k) ** 2
        row = table.loc[(data.item[item], "grouped_chi2")]
        np.testing.assert_allclose(row["observed"], chi2, rtol=1e-10)
        assert row["n_persons"] == len(who) and row["n_groups"] == 3
        np.testing.assert_allclose(table.loc[(data.item[item], "outfit"), "observed"],
                                   np.mean((y - mu) ** 2 / var), rtol=1e-10)
    assert set(table.columns) >= {"instrument", "dimension", "replicated", "ppp", "flagged", "n_draws"}
    # Two draws: the observed column is the mean of the per-draw discrepancies.
    both = irt_fit.item_fit(_as_idata(theta, a, b), data, n_draws=2, n_groups=3)
    second = irt_fit.item_fit(_as_idata(theta[1:], a[1:], b[1:]), data, n_draws=1, n_groups=3)
    np.testing.assert_allclose(both["observed"], (table["observed"].to_numpy() + second["observed"]) / 2, rtol=1e-10)


def test_ppps_are_calibrated_under_the_true_parameters():
    """With the true parameters as every 'posterior draw', observed and replicated answers
    come from the same distribution, so each PPP is uniform: over 8 data sets (two
    dimensions, 5 categories, missing answers) the PPPs average near 0.5 and few are below
    0.05, for both forms of the global discrepancy. Under the true parameters any
    discrepancy gives uniform PPPs, so this checks the replication and the PPP bookkeeping
    (replicated answers that do not line up with the observed cells' persons, items or
    dimensions push every PPP to 0 or 1), not the discrepancies: the loops above do that."""
    item_ppp, global_ppp = [], {"residual": [], "raw": []}
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        n, J, D, Kc = 250, 6, 2, 5
        theta = rng.normal(size=(n, D))
        dims = np.arange(J) % D
        a = rng.uniform(1.0, 2.5, J)
        b = np.sort(rng.normal(0, 1, (J, Kc - 1)), axis=1)
        wide = _grm_answers(rng, theta[:, dims], a, b)
        wide[rng.uniform(size=wide.shape) < 0.1] = -1
        p, j = np.nonzero(wide >= 0)
        data = irt.GRMData(instrument="t", person=tuple(map(str, range(n))), item=tuple(f"i{q}" for q in range(J)),
                           dimension=("x", "y"), dimension_label=("X", "Y"), item_dimension=dims, n_categories=Kc,
                           person_idx=p, item_idx=j, response=wide[p, j], code_values=np.arange(Kc, dtype=float))
        S = 100
        idata = _as_idata(np.repeat(theta[None], S, 0), np.repeat(a[None], S, 0), np.repeat(b[None], S, 0))
        item_ppp.append(irt_fit.item_fit(idata, data, n_draws=S, seed=seed)["ppp"].to_numpy())
        for moments, out in global_ppp.items():
            out.append(irt_fit.global_fit(idata, data, n_draws=S, moments=moments, seed=seed).ppp)
    item_ppp = np.concatenate(item_ppp)                          # 8 data sets x 6 items x 2 statistics
    assert 0.35 < item_ppp.mean() < 0.65 and np.mean(item_ppp < 0.05) < 0.15, item_ppp
    for moments, ppp in global_ppp.items():                      # mean of 8 uniforms: sd 0.10
        assert 0.2 < np.mean(ppp) < 0.8 and min(ppp) > 0.01, (moments, ppp)


# ----------------------------------------------------------------------------- fits to simulated data

@pytest.fixture(scope="module")
def well_specified():
    data = _simulate(11)
    return data, _fit(data, seed=1)


@pytest.fixture(scope="module")
def nonmonotone_item():
    data = _simulate(12, misfit="nonmonotone")
    return data, _fit(data, seed=2)


@pytest.fixture(scope="module")
def copied_item():
    data = _simulate(13, misfit="copy")
    return data, _fit(data, seed=3)


def test_well_specified_model_passes(well_specified):
    """Data from the model: the global PPP is unremarkable and at most one item is flagged
    by each item statistic (PPPs are conservative, so with 8 items 0 is typical)."""
    data, idata = well_specified
    table = irt_fit.item_fit(idata, data)
    assert len(table) == 2 * N_ITEMS and (table["n_draws"] == 400).all()
    assert set(table["statistic"]) == {"grouped_chi2", "outfit"}
    for _, rows in table.groupby("statistic"):
        assert rows["flagged"].sum() <= 1, rows
    outfit = table.query("statistic == 'outfit'")
    assert np.all(np.abs(outfit["replicated"] - 1) < 0.1)          # the mean square's model value, ~1
    pd.testing.assert_frame_equal(table, irt_fit.item_fit(idata, data))   # same seed, same table
    fit = irt_fit.global_fit(idata, data)
    assert 0.05 < fit.ppp < 0.95 and not fit.flagged, fit.to_dict()
    assert fit.pairs["flagged"].sum() <= 2, fit.pairs
    raw = irt_fit.global_fit(idata, data, moments="raw")
    assert 0.05 < raw.ppp < 0.95, raw.to_dict()


def test_nonmonotone_item_is_flagged_by_the_grouped_chi_square(nonmonotone_item):
    """An item following |theta| (U-shaped in the trait) gets a discrimination near 0 and
    fails the grouped chi-square; the other items pass."""
    data, idata = nonmonotone_item
    chi2 = irt_fit.item_fit(idata, data).query("statistic == 'grouped_chi2'").set_index("item")
    assert chi2.loc["Q3", "ppp"] < 0.05 and chi2.loc["Q3", "flagged"], chi2
    assert chi2.loc["Q3", "observed"] > chi2.loc["Q3", "replicated"]
    assert chi2.drop(index="Q3")["flagged"].sum() <= 1, chi2


def test_local_dependence_fails_the_global_check_and_flags_the_pair(copied_item):
    """Q1 repeats Q0's answer 70% of the time: the global PPP is below 0.05, the pair
    (Q0, Q1) is flagged and has the largest positive residual of all pairs."""
    data, idata = copied_item
    fit = irt_fit.global_fit(idata, data)
    assert fit.ppp < 0.05 and fit.flagged, fit.to_dict()
    pairs = fit.pairs.set_index(["item_1", "item_2"])
    assert pairs.loc[("Q0", "Q1"), "flagged"] and pairs.loc[("Q0", "Q1"), "ppp_positive"] < 0.05, pairs
    assert pairs["std_residual"].idxmax() == ("Q0", "Q1"), pairs
