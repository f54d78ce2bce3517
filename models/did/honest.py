r"""Parallel-trends sensitivity as Rambachan and Roth (2023) define it, on posterior draws.

Event-study coefficients ``beta = (beta_pre, beta_post)`` on periods ``-T..-1`` and ``1..K``
with the reference period ``0`` (``beta_0 = 0``; in the toolkit's labels, event times
``-T-1..-2``, ``0..K-1`` and the base ``-1``) are the sum of effects and a violation of
parallel trends, ``beta = tau + delta`` with ``tau_pre = 0``, so ``delta_pre = beta_pre``. For a
parameter ``theta = l' tau_post`` (``l = e_1``: the first post-period effect; ``l = 1/K``: their
average) and a set ``Delta`` of allowed violations, the identified set is

    S(beta, Delta) = { l' beta_post - l' delta_post : delta in Delta, delta_pre = beta_pre },

an interval ``[l' beta_post - max l' delta_post, l' beta_post - min l' delta_post]`` (a linear
programme over ``delta_post``; :func:`identified_set`). The sets:

``Delta^RM(Mbar)`` (relative magnitudes)
    every post-period change ``|delta_{t+1} - delta_t|``, ``t >= 0``, at most ``Mbar`` times the
    largest pre-period change ``max_{s<0} |delta_{s+1} - delta_s|`` (changes accumulate over
    post-periods: ``|delta_k| <= k Mbar m``).
``Delta^SD(M)`` (smoothness)
    every change in slope ``|(delta_{t+1} - delta_t) - (delta_t - delta_{t-1})| <= M``, in pre-
    and post-periods alike (``M = 0``: the violation is a linear trend).

Optionally intersected with a sign (``delta_post >= 0`` or ``<= 0``) or a monotone direction
(``delta`` increasing or decreasing over every period).

**Bayesian version** (:func:`sensitivity`). Draws of ``beta`` from a posterior (the DiD
engine's event study, or ``N(betahat, Sigma)`` for a user's estimates and covariance, the
posterior under a flat prior) are restricted to ``delta in Delta``: for ``Delta^RM`` every draw
qualifies (its pre-periods set its own bound); for ``Delta^SD(M)`` the pre-period curvature of
a draw must be at most ``M``, and the restricted posterior is sampled exactly for a Gaussian
posterior (the moment-matched Gaussian of the draws: the pre-period second differences from a
box-truncated normal by Gibbs sampling, the rest from their Gaussian conditional). Each
restricted draw gives its identified set ``[lb, ub]``; reported are the **robust credible
interval** ``[q_{a/2}(lb), q_{1-a/2}(ub)]`` (contains the whole identified set with posterior
probability about ``1 - a``), ``P(lb > 0)`` and ``P(ub < 0)`` (the identified set lies wholly
on one side), and the **breakdown** value: the largest ``M`` on the grid at which the robust
interval still excludes 0 on the side of the conclusion (and the one at which ``P`` of that side
stays at or above 0.9). These are the posterior counterparts of HonestDiD's robust confidence
sets (C-LF for ``Delta^RM``, FLCI for ``Delta^SD``); tests/test_honest.py compares them on
HonestDiD's own Medicaid example.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linprog

from models.numerics import truncated_std_normal

RESTRICTIONS = ("relative_magnitudes", "smoothness")
SIGNS = (None, "positive", "negative")
MONOTONE = (None, "increasing", "decreasing")
DEFAULT_RM_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0)
CONCLUSION_PROB = 0.9
#: Pre-period curvature within this of M counts as within M (draws restricted to M = 0 carry
#: rounding errors of about 1e-17 times their scale).
CURVATURE_TOL = 1e-9


@dataclass(frozen=True)
class Restriction:
    """``Delta``: relative magnitudes or smoothness at ``m``, with optional shape restrictions."""

    kind: str
    m: float
    sign: str | None = None
    monotone: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in RESTRICTIONS:
            raise ValueError(f"kind must be one of {RESTRICTIONS}, got {self.kind!r}")
        if not self.m >= 0:
            raise ValueError("M must be >= 0")
        if self.sign not in SIGNS or self.monotone not in MONOTONE:
            raise ValueError("sign must be positive/negative/None; monotone increasing/decreasing/None")


def _full(beta_pre: np.ndarray) -> np.ndarray:
    """Pre-period violations with the reference period's 0 appended (periods -T..0)."""
    return np.append(np.asarray(beta_pre, float), 0.0)


def max_pre_change(beta_pre: np.ndarray) -> float:
    """``max_{s<0} |delta_{s+1} - delta_s|`` over the pre-periods and the reference."""
    full = _full(beta_pre)
    return float(np.abs(np.diff(full)).max()) if full.size > 1 else 0.0


def pre_curvature(beta_pre: np.ndarray) -> float:
    """The largest pre-period change in slope ``|delta_{t+1} - 2 delta_t + delta_{t-1}|``."""
    return float(pre_curvatures(np.atleast_2d(beta_pre))[0])


def pre_curvatures(beta_pre: np.ndarray) -> np.ndarray:
    """:func:`pre_curvature` of every row (draw) of ``beta_pre``."""
    beta_pre = np.asarray(beta_pre, float)
    full = np.column_stack([beta_pre, np.zeros(len(beta_pre))])
    return np.abs(np.diff(full, 2, axis=1)).max(axis=1) if full.shape[1] > 2 else np.zeros(len(full))


def identified_set(beta_pre, beta_post, l_vec, restriction: Restriction) -> tuple[float, float]:
    """``S(beta, Delta)`` for ``theta = l' tau_post`` by linear programming (exact); ``(nan,
    nan)`` when no ``delta`` with ``delta_pre = beta_pre`` lies in ``Delta``."""
    beta_pre = np.asarray(beta_pre, float)
    beta_post = np.asarray(beta_post, float)
    l_vec = np.asarray(l_vec, float)
    k = beta_post.size
    full_pre = _full(beta_pre)                        # periods -T..0
    rows, rhs = [], []

    def bound(coef_post: np.ndarray, const: float, lo: float, hi: float) -> None:
        """lo <= coef_post . delta_post + const <= hi."""
        if np.isfinite(hi):
            rows.append(coef_post)
            rhs.append(hi - const)
        if np.isfinite(lo):
            rows.append(-coef_post)
            rhs.append(const - lo)

    def delta_coef(t: int) -> tuple[np.ndarray, float]:
        """delta_t as (coefficients on delta_post, constant) for t in -T..K."""
        c = np.zeros(k)
        if t >= 1:
            c[t - 1] = 1.0
            return c, 0.0
        return c, float(full_pre[len(full_pre) - 1 + t])

    if restriction.kind == "relative_magnitudes":
        cap = restriction.m * max_pre_change(beta_pre)
        for t in range(0, k):
            a1, b1 = delta_coef(t + 1)
            a0, b0 = delta_coef(t)
            bound(a1 - a0, b1 - b0, -cap, cap)
    else:
        if pre_curvature(beta_pre) > restriction.m + CURVATURE_TOL:
            return float("nan"), float("nan")
        T = len(full_pre) - 1
        for t in range(-T + 1, k):
            if t + 1 <= 0:
                continue                              # pre-only: checked above
            (a2, b2), (a1, b1), (a0, b0) = delta_coef(t + 1), delta_coef(t), delta_coef(t - 1)
            bound(a2 - 2 * a1 + a0, b2 - 2 * b1 + b0, -restriction.m, restriction.m)
    bounds = [(None, None)] * k
    if restriction.sign == "positive":
        bounds = [(0, None)] * k
    elif restriction.sign == "negative":
        bounds = [(None, 0)] * k
    if restriction.monotone:
        s = 1.0 if restriction.monotone == "increasing" else -1.0
        if np.any(s * np.diff(full_pre) < -1e-12):
            return float("nan"), float("nan")
        for t in range(0, k):
            a1, b1 = delta_coef(t + 1)
            a0, b0 = delta_coef(t)
            bound(s * (a1 - a0), s * (b1 - b0), 0.0, np.inf)
    A = np.array(rows) if rows else None
    b = np.array(rhs) if rhs else None
    out = []
    for sense in (1.0, -1.0):                          # min and max of l' delta_post
        res = linprog(sense * l_vec, A_ub=A, b_ub=b, bounds=bounds, method="highs")
        if res.status == 2:
            return float("nan"), float("nan")
        if res.status == 3:
            out.append(-sense * np.inf)
            continue
        out.append(sense * res.fun)
    lo_delta, hi_delta = out
    theta = float(l_vec @ beta_post)
    return theta - hi_delta, theta - lo_delta


def closed_form_bounds(beta_pre: np.ndarray, beta_post: np.ndarray, l_vec, restriction: Restriction
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The identified sets of many draws at once, without sign or monotone restrictions (rows
    of ``beta_pre``, ``beta_post`` are draws; :func:`identified_set` is the reference):

    relative magnitudes: ``l' beta_post -+ Mbar m sum_i |sum_{k>=i} l_k|``;
    smoothness: the linear extrapolation of the last pre-period slope, ``l' beta_post +
    beta_{-1} sum_k k l_k``, ``-+ M sum_i |sum_{k>i} (k - i) l_k|`` (NaN where a draw's
    pre-period curvature exceeds ``M``).
    """
    if restriction.sign or restriction.monotone:
        raise ValueError("closed forms hold without sign or monotone restrictions; use identified_set")
    beta_pre = np.atleast_2d(beta_pre)
    beta_post = np.atleast_2d(beta_post)
    l_vec = np.asarray(l_vec, float)
    k = l_vec.size
    theta = beta_post @ l_vec
    full = np.column_stack([beta_pre, np.zeros(len(beta_pre))])
    if restriction.kind == "relative_magnitudes":
        m = np.abs(np.diff(full, axis=1)).max(axis=1)
        weight = sum(abs(l_vec[i:].sum()) for i in range(k))
        half = restriction.m * m * weight
        return theta - half, theta + half
    centre = theta + full[:, -2] * sum((j + 1) * l_vec[j] for j in range(k))
    weight = sum(abs(sum((j + 1 - i) * l_vec[j] for j in range(i, k))) for i in range(k))
    half = restriction.m * weight
    bad = pre_curvatures(beta_pre) > restriction.m + CURVATURE_TOL
    lb, ub = centre - half, centre + half
    lb[bad], ub[bad] = np.nan, np.nan
    return lb, ub


# ---------------------------------------------------------------- the restricted posterior

def second_difference_matrix(n_pre: int, n_post: int) -> np.ndarray:
    """``A`` with ``A beta`` the pre-period changes in slope (periods -T..0, beta_0 = 0)."""
    n = n_pre + n_post
    rows = []
    for t in range(-n_pre + 1, 0):                      # t-1, t, t+1 all <= 0
        r = np.zeros(n)
        for tt, w in ((t + 1, 1.0), (t, -2.0), (t - 1, 1.0)):
            if tt < 0:
                r[n_pre + tt] += w
        rows.append(r)
    return np.array(rows).reshape(-1, n)


def smoothness_restricted_draws(mean: np.ndarray, cov: np.ndarray, n_pre: int, m: float, size: int,
                                rng: np.random.Generator, *, sweeps: int = 20) -> np.ndarray:
    """Draws of ``beta ~ N(mean, cov)`` restricted to pre-period curvature at most ``m``
    (``m = 0``: the exact Gaussian conditional on a linear pre-trend). The curvatures ``z = A
    beta`` come from their box-truncated normal by Gibbs sampling (``sweeps`` per draw, from a
    feasible start), ``beta | z`` from its Gaussian conditional."""
    n_post = mean.size - n_pre
    A = second_difference_matrix(n_pre, n_post)
    if A.shape[0] == 0:
        return rng.multivariate_normal(mean, cov, size=size)
    mz, Sz = A @ mean, A @ cov @ A.T
    K = cov @ A.T @ np.linalg.inv(Sz)
    cond_cov = cov - K @ A @ cov
    cond_cov = 0.5 * (cond_cov + cond_cov.T)
    if m == 0:
        z = np.zeros((size, A.shape[0]))
    else:
        prec = np.linalg.inv(Sz)
        z = np.zeros((size, A.shape[0]))
        cur = np.clip(mz, -m, m) * np.ones((size, 1))
        for _ in range(sweeps):
            for j in range(A.shape[0]):
                others = [i for i in range(A.shape[0]) if i != j]
                sd = 1.0 / np.sqrt(prec[j, j])
                mu = mz[j] - (cur[:, others] - mz[others]) @ prec[j, others] / prec[j, j]
                a, b = (-m - mu) / sd, (m - mu) / sd
                cur[:, j] = mu + sd * truncated_std_normal(a, b, rng)
        z = cur
    base = mean + (z - mz) @ K.T
    noise = rng.multivariate_normal(np.zeros(mean.size), cond_cov, size=size, method="eigh")
    noise = noise @ (np.eye(mean.size) - K @ A).T        # A noise = 0 exactly (rounding left by eigh)
    return base + noise


@dataclass(frozen=True)
class SensitivityRow:
    restriction: str
    m: float
    parameter: str
    lb_mean: float
    ub_mean: float
    robust_low: float
    robust_high: float
    p_positive: float          # P(lb > 0): the identified set lies wholly above 0
    p_negative: float          # P(ub < 0)
    share_compatible: float    # draws whose pre-periods lie in Delta (smoothness; 1 for RM)
    point_lb: float            # the identified set at the posterior mean (LP)
    point_ub: float


def sensitivity(draws: np.ndarray, n_pre: int, *, l_vec, parameter: str, restriction_kind: str,
                grid, sign: str | None = None, monotone: str | None = None, alpha: float = 0.05,
                seed: int = 0) -> pd.DataFrame:
    """The sensitivity table over ``grid`` (see the module docstring): ``draws`` are posterior
    draws of the event-study coefficients (rows; ``n_pre`` pre-periods then the post-periods,
    the reference period left out)."""
    draws = np.asarray(draws, float)
    mean, cov = draws.mean(0), np.cov(draws, rowvar=False)
    rng = np.random.default_rng(seed)
    rows = []
    for m in grid:
        r = Restriction(restriction_kind, float(m), sign, monotone)
        if restriction_kind == "smoothness":
            use = smoothness_restricted_draws(mean, cov, n_pre, float(m), draws.shape[0], rng)
            compatible = float(np.mean(pre_curvatures(draws[:, :n_pre]) <= m + CURVATURE_TOL))
        else:
            use, compatible = draws, 1.0
        pre, post = use[:, :n_pre], use[:, n_pre:]
        if sign or monotone:
            sets = np.array([identified_set(p, q, l_vec, r) for p, q in zip(pre, post)])
            lb, ub = sets[:, 0], sets[:, 1]
        else:
            lb, ub = closed_form_bounds(pre, post, l_vec, r)
        ok = np.isfinite(lb) & np.isfinite(ub)
        lb, ub = lb[ok], ub[ok]
        point = identified_set(mean[:n_pre], mean[n_pre:], l_vec, r)
        rows.append(asdict(SensitivityRow(
            restriction_kind, float(m), parameter, float(lb.mean()) if lb.size else np.nan,
            float(ub.mean()) if ub.size else np.nan,
            float(np.quantile(lb, alpha / 2)) if lb.size else np.nan,
            float(np.quantile(ub, 1 - alpha / 2)) if ub.size else np.nan,
            float(np.mean(lb > 0)) if lb.size else np.nan, float(np.mean(ub < 0)) if ub.size else np.nan,
            compatible, *point)))
    return pd.DataFrame(rows)


def breakdown(table: pd.DataFrame, *, side: int, prob: float = CONCLUSION_PROB) -> dict:
    """The largest ``M`` on the grid at which the conclusion (the effect has sign ``side``)
    still holds: by the robust credible interval (it excludes 0) and by ``P(the identified set
    lies wholly on that side) >= prob``; None when it fails already at the first ``M``, and the
    grid's last ``M`` (with ``beyond_grid``) when it never fails."""
    t = table.sort_values("m")
    holds_ci = (t["robust_low"] > 0) if side > 0 else (t["robust_high"] < 0)
    holds_p = (t["p_positive"] if side > 0 else t["p_negative"]) >= prob

    def last_true(mask) -> tuple[float | None, bool]:
        vals = list(mask)
        if not vals or not vals[0]:
            return None, False
        k = 0
        while k + 1 < len(vals) and vals[k + 1]:
            k += 1
        return float(t["m"].iloc[k]), k == len(vals) - 1

    m_ci, beyond_ci = last_true(holds_ci)
    m_p, beyond_p = last_true(holds_p)
    nxt = lambda m: (float(t["m"][t["m"] > m].min()) if m is not None and (t["m"] > m).any() else None)  # noqa: E731
    return {"side": "positive" if side > 0 else "negative", "breakdown_robust_interval": m_ci,
            "fails_at": nxt(m_ci) if m_ci is not None else float(t["m"].iloc[0]),
            "beyond_grid": beyond_ci, f"breakdown_p_{prob:g}": m_p, "beyond_grid_p": beyond_p}


def default_grid(kind: str, draws: np.ndarray, n_pre: int) -> tuple[float, ...]:
    """Relative magnitudes: Mbar 0 to 3; smoothness: M from 0 to three times the largest
    pre-period change in slope of the posterior mean (10 steps)."""
    if kind == "relative_magnitudes":
        return DEFAULT_RM_GRID
    mean = np.asarray(draws, float).mean(0)
    top = 3 * max(pre_curvature(mean[:n_pre]), max_pre_change(mean[:n_pre]), 1e-6)
    step = float(f"{top / 10:.1g}")
    return tuple(np.round(np.arange(0, 10.5) * step, 12))
