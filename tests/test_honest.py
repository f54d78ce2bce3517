"""Parallel-trends sensitivity (Rambachan and Roth 2023): exact identified sets, the posterior
version, and HonestDiD's published Medicaid example.

Tolerance against HonestDiD's published robust confidence sets: 0.01 on each endpoint (ours
are posterior robust credible intervals, theirs frequentist C-LF and FLCI sets: the smoothness
set at M = 0 agrees to 0.001, the relative-magnitudes sets are up to 0.009 wider at Mbar = 2);
the breakdown values fall in the same brackets of the published grids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.did.honest import (Restriction, breakdown, closed_form_bounds, identified_set, max_pre_change,
                               pre_curvature, sensitivity, smoothness_restricted_draws)
from tests.conftest import SHARED, require_shared

RM, SD = "relative_magnitudes", "smoothness"


def test_relative_magnitudes_bound_changes_that_accumulate():
    """Pre-periods -2, -1 and the reference 0: changes -0.03 and +0.02, so m = 0.03. Each post
    change is at most Mbar m, so the k-th post-period violation is at most k Mbar m."""
    pre, post = [0.01, -0.02], [0.10, 0.20]
    assert max_pre_change(pre) == pytest.approx(0.03)
    r = Restriction(RM, 1.0)
    assert identified_set(pre, post, [1, 0], r) == pytest.approx((0.07, 0.13))
    assert identified_set(pre, post, [0, 1], r) == pytest.approx((0.14, 0.26))      # 2 x 0.03, not 0.03
    assert identified_set(pre, post, [0.5, 0.5], r) == pytest.approx((0.105, 0.195))
    assert identified_set(pre, post, [1, 0], Restriction(RM, 0.0)) == pytest.approx((0.10, 0.10))
    # a sign restriction: violations are non-negative, so theta cannot exceed the estimate
    assert identified_set(pre, post, [1, 0], Restriction(RM, 1.0, sign="positive")) == pytest.approx((0.07, 0.10))


def test_smoothness_extrapolates_the_pre_trend_and_bounds_changes_in_slope():
    """A linear pre-trend (slope 0.01 up to the reference): M = 0 extrapolates it exactly;
    M > 0 allows changes in slope of at most M, which accumulate (1, then 1 + 2 for period 2)."""
    pre, post = [-0.02, -0.01], [0.10, 0.20]
    assert pre_curvature(pre) == pytest.approx(0.0)
    assert identified_set(pre, post, [1, 0], Restriction(SD, 0.0)) == pytest.approx((0.09, 0.09))
    assert identified_set(pre, post, [0, 1], Restriction(SD, 0.0)) == pytest.approx((0.18, 0.18))
    assert identified_set(pre, post, [1, 0], Restriction(SD, 0.005)) == pytest.approx((0.085, 0.095))
    assert identified_set(pre, post, [0, 1], Restriction(SD, 0.005)) == pytest.approx((0.165, 0.195))
    # pre-periods that bend by more than M: no violation in Delta matches them (an empty set)
    assert np.isnan(identified_set([0.02, -0.01], post, [1, 0], Restriction(SD, 0.005))).all()
    # monotone (increasing) violations: the bias is at least the last step's 0
    lo, hi = identified_set(pre, post, [1, 0], Restriction(SD, 0.005, monotone="increasing"))
    assert (lo, hi) == pytest.approx((0.085, 0.095))
    lo, hi = identified_set(pre, post, [1, 0], Restriction(RM, 1.0, monotone="increasing"))
    assert (lo, hi) == pytest.approx((0.09, 0.10))      # m = 0.01; increasing: delta_1 in [0, 0.01]


@pytest.mark.parametrize("kind, m", [(RM, 0.7), (SD, 0.02)])
@pytest.mark.parametrize("l_vec", [[1, 0, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3], [0.2, -0.5, 0.3]])
def test_closed_forms_equal_the_linear_programme(kind, m, l_vec):
    rng = np.random.default_rng(4)
    for _ in range(5):
        pre = np.cumsum(rng.normal(0, 0.005, 4))
        pre = pre - pre[-1] + rng.normal(0, 0.002)
        post = rng.normal(0.05, 0.02, 3)
        r = Restriction(kind, m)
        lp = identified_set(pre, post, l_vec, r)
        lb, ub = closed_form_bounds(pre[None, :], post[None, :], l_vec, r)
        if np.isnan(lp[0]):
            assert np.isnan(lb[0])
        else:
            np.testing.assert_allclose([lb[0], ub[0]], lp, atol=1e-10)


def test_restricted_draws_have_the_gaussian_conditional_at_m_zero_and_respect_m():
    rng = np.random.default_rng(0)
    mean = np.array([-0.01, -0.004, 0.002, 0.05, 0.07])
    a = rng.normal(size=(5, 5))
    cov = 1e-4 * (a @ a.T + 5 * np.eye(5))
    d0 = smoothness_restricted_draws(mean, cov, 3, 0.0, 4000, rng)
    assert max(pre_curvature(x[:3]) for x in d0) < 1e-9
    d1 = smoothness_restricted_draws(mean, cov, 3, 0.01, 4000, rng)
    assert max(pre_curvature(x[:3]) for x in d1) <= 0.01 + 1e-9
    # rejection sampling from the unrestricted posterior agrees with the Gibbs draws
    raw = rng.multivariate_normal(mean, cov, size=200_000)
    keep = raw[[pre_curvature(x[:3]) <= 0.01 for x in raw]]
    np.testing.assert_allclose(d1.mean(0), keep.mean(0), atol=0.002)
    np.testing.assert_allclose(d1.std(0), keep.std(0), rtol=0.08)


# ---------------------------------------------------------------- HonestDiD's Medicaid example

PUBLISHED_RM = {0.5: (0.0241, 0.0673), 1.0: (0.0171, 0.0720), 1.5: (0.00859, 0.0796), 2.0: (-0.00107, 0.0883)}
PUBLISHED_SD = {0.0: (0.0259, 0.0607), 0.01: (0.0132, 0.0787), 0.02: (0.00286, 0.0907), 0.03: (-0.00714, 0.101),
                0.04: (-0.0171, 0.111), 0.05: (-0.0271, 0.121)}


@pytest.fixture(scope="module")
def medicaid():
    """HonestDiD's example: TWFE event study of insurance coverage on the 2014 expansion
    (reference year 2013, state-clustered SEs), as its README sets it up."""
    import warnings

    import pyfixest as pf

    path = require_shared(SHARED / "validation" / "honestdid-medicaid" / "ehec_data.csv")
    df = pd.read_csv(path)
    df = df[(df["year"] < 2016) & ~(df["yexp2"] == 2015)].copy()
    df["D"] = (df["yexp2"] == 2014).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pf.feols("dins ~ i(year, D, ref=2013) | stfips + year", data=df, vcov={"CRV1": "stfips"})
    b, v = fit.coef().to_numpy(), np.asarray(fit._vcov)
    np.testing.assert_allclose(b, [-0.00529, -0.01130, -0.00268, -0.00142, 0.00034, 0.04645, 0.06921], atol=1e-5)
    draws = np.random.default_rng(0).multivariate_normal(b, v, size=8000)   # the flat-prior posterior
    return draws


def test_relative_magnitudes_agree_with_honestdid(medicaid):
    t = sensitivity(medicaid, 5, l_vec=[1, 0], parameter="2014", restriction_kind=RM, grid=list(PUBLISHED_RM))
    for row in t.itertuples():
        lo, hi = PUBLISHED_RM[row.m]
        assert row.robust_low == pytest.approx(lo, abs=0.01) and row.robust_high == pytest.approx(hi, abs=0.01), row
    b = breakdown(t, side=1)
    assert b["breakdown_robust_interval"] == 1.5 and b["fails_at"] == 2.0      # HonestDiD: 1.5 holds, 2 fails


def test_smoothness_agrees_with_honestdid(medicaid):
    t = sensitivity(medicaid, 5, l_vec=[1, 0], parameter="2014", restriction_kind=SD, grid=list(PUBLISHED_SD))
    for row in t.itertuples():
        lo, hi = PUBLISHED_SD[row.m]
        assert row.robust_low == pytest.approx(lo, abs=0.01) and row.robust_high == pytest.approx(hi, abs=0.01), row
    m0 = t.set_index("m").loc[0.0]
    assert (m0.robust_low, m0.robust_high) == pytest.approx(PUBLISHED_SD[0.0], abs=0.001)
    b = breakdown(t, side=1)
    assert b["breakdown_robust_interval"] == 0.02 and b["fails_at"] == 0.03   # HonestDiD: about 0.03
