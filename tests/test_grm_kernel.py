"""The compiled GRM log-likelihood (models/grm_kernel.py) against independent references."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

from models import grm_kernel as gk
from models import psychometric_irt as irt


def test_exp_neg_and_log1p_unit_match_numpy_to_a_few_ulp():
    x = np.concatenate([np.linspace(0.0, 700.0, 200_001), np.geomspace(1e-12, 1.0, 1001)])
    got = np.array([gk.exp_neg(v) for v in x])
    np.testing.assert_allclose(got, np.exp(-x), rtol=4e-16, atol=0)
    assert gk.exp_neg(0.0) == 1.0 and gk.exp_neg(800.0) < 1e-320      # capped, not NaN
    p = np.concatenate([[0.0], np.geomspace(1e-300, 1.0, 20_001), np.linspace(0.0, 1.0, 20_001)])
    got = np.array([gk.log1p_unit(v) for v in p])
    np.testing.assert_allclose(got, np.log1p(p), rtol=8e-16, atol=0)


def _problem(seed=0, n_person=300, n_item=8, n_cat=5, n_dim=2, scale=1.0, tiny_category=True):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_person, n_dim)) * scale
    a = rng.lognormal(0.5, 0.3, n_item)
    cut = rng.normal(-2.0, 0.5, (n_item, 1)) + np.cumsum(0.2 + rng.gamma(2.0, 0.5, (n_item, n_cat - 1)), axis=1)
    if tiny_category:
        cut[0, 1] = cut[0, 0] + 1e-4                      # a nearly empty category
    pad = irt.padded_cutpoints(cut)
    person = np.repeat(np.arange(n_person), n_item)
    item = np.tile(np.arange(n_item), n_person)
    dimension = (np.arange(n_item) % n_dim)[item]
    response = rng.integers(0, n_cat, person.size)
    return theta, a, pad, person, dimension, item, response


def _indices(theta, pad, person, dimension, item, response):
    """The kernel's (theta_index, cell) codes."""
    return ((person * theta.shape[1] + dimension).astype(np.int32),
            (item * (pad.shape[1] - 1) + response).astype(np.int32))


def _reference(theta, a, pad, person, dimension, item, response):
    """log(sigma(eta - c_k) - sigma(eta - c_{k+1})) as log sigma(u) + log sigma(g - u) + log(1 - e^-g)."""
    eta = a[item] * theta[person, dimension]
    lo, hi = pad[item, response], pad[item, response + 1]
    return -np.logaddexp(0.0, -(eta - lo)) - np.logaddexp(0.0, eta - hi) + np.log1p(-np.exp(-(hi - lo)))


@pytest.mark.parametrize("scale", [1.0, 60.0])   # 60: linear predictors far past the cutpoints
def test_kernel_value_and_gradient_match_the_graph_of_log_category_probability(scale):
    args = _problem(scale=scale)
    theta, a, pad, person, dimension, item, response = args
    total, d_theta, d_a, d_pad = gk.grm_loglik_grad(theta, a, pad, *_indices(theta, pad, *args[3:]))
    np.testing.assert_allclose(total, _reference(*args).sum(), rtol=1e-12)
    # Gradient: PyTensor's autodiff of the graph form (log_category_probability).
    th, av, pv = pt.dmatrix(), pt.dvector(), pt.dmatrix()
    u = av[item] * th[person, dimension] - pv[item, response]
    gap = pv[item, response + 1] - pv[item, response]
    graph = irt.log_category_probability(u, gap, pt.exp(gap), gap + pt.log1p(-pt.exp(-gap)), pt).sum()
    f = pytensor.function([th, av, pv], [graph, *pt.grad(graph, [th, av, pv])])
    g_total, g_theta, g_a, g_pad = f(theta, a, pad)
    np.testing.assert_allclose(total, g_total, rtol=1e-12)
    for ours, theirs in [(d_theta, g_theta), (d_a, g_a), (d_pad, g_pad)]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9 * np.abs(theirs).max())


def test_op_gradient_passes_verify_grad_and_compiles_with_numba():
    # (finite differences of eps = 1e-7 need gaps much wider than eps)
    args = _problem(seed=5, n_person=40, n_item=6, n_cat=4, tiny_category=False)
    theta, a, pad, person, dimension, item, response = args
    assert np.diff(pad, axis=1).min() > 0.05
    codes = _indices(theta, pad, *args[3:])
    pytensor.gradient.verify_grad(lambda t, av, p: gk.grm_loglik(t, av, p, *codes), [theta, a, pad],
                                  rng=np.random.default_rng(0), eps=1e-7)
    th, av, pv = pt.dmatrix(), pt.dvector(), pt.dmatrix()
    ll = gk.grm_loglik(th, av, pv, *codes) * 2.0          # a cotangent other than 1
    outs = [ll, *pt.grad(ll, [th, av, pv])]
    expected = gk.grm_loglik_grad(theta, a, pad, *codes)
    for mode in ("NUMBA", "FAST_RUN"):
        got = pytensor.function([th, av, pv], outs, mode=mode)(theta, a, pad)
        for ours, theirs in zip(got, expected, strict=True):
            np.testing.assert_allclose(ours, 2.0 * np.asarray(theirs), rtol=1e-12)


def test_second_derivatives_are_refused_not_wrong():
    theta, a, pad, *codes = _problem(n_person=5)
    th = pt.dmatrix()
    ll = gk.grm_loglik(th, a, pad, *_indices(theta, pad, *codes))
    g = pt.grad(ll, th).sum()
    with pytest.raises(pytensor.gradient.NullTypeGradError, match="second derivatives"):
        pt.grad(g, th)


def test_out_of_range_codes_raise_instead_of_reading_memory():
    theta, a, pad, *codes = _problem(n_person=5)
    theta_index, cell = _indices(theta, pad, *codes)
    for bad in (cell.max() + 1, -1):
        broken = cell.copy()
        broken[3] = bad
        with pytest.raises(IndexError, match="out of range"):
            gk.grm_loglik_grad(theta, a, pad, theta_index, broken)
    broken = theta_index.copy()
    broken[-1] = theta.size
    with pytest.raises(IndexError, match="out of range"):
        gk.grm_loglik_grad(theta, a, pad, broken, cell)
