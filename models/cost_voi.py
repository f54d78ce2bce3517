r"""Value of information on a probabilistic sensitivity analysis (PSA) sample, in NumPy.

Nonparametric-regression EVPPI with its standard error and a noise floor, for one parameter
or a group of two to four (Strong, Oakley and Brennan 2014, *Med Decis Making* 34:311-326; the
method of BCEA and voi), a cost-effectiveness acceptability curve, and the regression-based
EVSI of a new trial (Strong, Oakley, Brennan and Breeze 2015, *Med Decis Making* 35:570-583).
The functions take plain arrays over a ``draw`` axis; :mod:`models.cost_uncertainty` wraps
them for the cost model.

Regression EVPPI
----------------
For a two-option decision (adopt vs not) with incremental net benefit :math:`\text{INB}_i`
at PSA draw :math:`i` and a parameter (group) :math:`\phi_i \in \mathbb{R}^d`,

.. math::

    \text{EVPPI}(\phi) = E_\phi\big[\max(g(\phi), 0)\big] - \max\big(E[\text{INB}], 0\big),
    \qquad g(\phi) = E[\text{INB} \mid \phi],

and :math:`g` is estimated by regressing :math:`\text{INB}_i` on :math:`\phi_i`:
:math:`\hat{\text{EVPPI}} = \overline{\max(\hat g_i, 0)} - \max(\overline{\hat g}, 0)`.

*The smoother.* Each column of :math:`\phi` is replaced by the normal score of its mid-rank,
:math:`u = \Phi^{-1}\big((\text{rank} - 1/2)/n\big)` rescaled to [0, 1] (a monotone transform,
so :math:`E[\text{INB}\mid\phi] = E[\text{INB}\mid u]`: conditioning is unchanged; skewed
inputs get evenly spread knots, and the tails, where the decision often turns, keep their
resolution). :math:`\hat g = X\hat\beta` is a penalised regression spline
(P-spline; Eilers and Marx 1996): :math:`X` holds cubic B-splines on equally spaced knots, for
:math:`d \ge 2` their row-wise tensor product (the ``te()`` smooth of mgcv, as BCEA and voi use
for groups), with 16, 9, 6 and 4 basis functions per dimension for :math:`d = 1, \dots, 4`
(fewer when the sample is small: at most :math:`n/10` in all). The penalty is on second
differences of the coefficients along each dimension,
:math:`S_j = I \otimes \cdots \otimes D_j^\top D_j \otimes \cdots \otimes I`, one smoothing
parameter per dimension (anisotropic, as mgcv's ``te()``), :math:`S_\lambda = \sum_j \lambda_j S_j`, and

.. math::

    \hat\beta = (X^\top X + S_\lambda)^{-1} X^\top y, \qquad
    \lambda = \arg\min_\lambda \text{GCV}(\lambda) = \frac{n\,\text{RSS}(\lambda)}{(n - \text{edf}(\lambda))^2},
    \quad \text{edf} = \operatorname{tr}\big[(X^\top X + S_\lambda)^{-1} X^\top X\big],

searched first for a common value on a grid of 29 (:math:`10^{-8}` to :math:`10^{6}` times
:math:`\operatorname{tr}X^\top X / \operatorname{tr}S_j`), then per dimension by coordinate search
on every other grid value (two rounds for :math:`d = 2`, one for :math:`d \ge 3`).

A parameter with at most 20 distinct values is regressed on indicators of its values (group
means, no penalty).

*Standard error.* As in BCEA and voi: :math:`B` draws of the coefficients from their
approximate posterior :math:`\beta^{(b)} \sim N\big(\hat\beta, \hat\sigma^2 (X^\top X +
S_\lambda)^{-1}\big)`, :math:`\hat\sigma^2 = \text{RSS}/(n - \text{edf})` (mgcv's Bayesian covariance
``Vp``), each giving an EVPPI; their SD is the regression SE. The Monte Carlo SE of the outer
average is :math:`\text{sd}(h_i)/\sqrt{n_u}` with :math:`h_i = \max(\hat g_i, 0) - \hat g_i
\mathbb{1}[\overline{\hat g} > 0]` and :math:`n_u` the number of distinct values of
:math:`\phi` (posterior draws recycled over Monte Carlo draws count once). The reported SE is
:math:`\sqrt{\text{SE}_\text{reg}^2 + \text{SE}_\text{MC}^2}`.

*Noise floor.* The estimator is biased upwards (the fit follows noise, and
:math:`\max(\cdot, 0)` is convex). The floor is the same estimator applied to a random
permutation of the rows of :math:`\phi` (same marginal distribution and smoother, no relation
to INB): an EVPPI within 2 SE of the floor is not told apart from zero.

Regression EVSI
---------------
A study gives data :math:`X^{(s)}` summarised by a statistic :math:`T`; one :math:`T_i` is
simulated from its sampling distribution given the parameters of PSA draw :math:`i`, and

.. math::

    \text{EVSI} = E_T\big[\max(E[\text{INB}\mid T], 0)\big] - \max(E[\text{INB}], 0),

estimated by regressing :math:`\text{INB}_i` on :math:`T_i` with the smoother above (Strong
et al. 2015). When the study is so large that :math:`T_i` equals the parameters, EVSI is their
EVPPI. The trial model itself lives in :mod:`models.cost_uncertainty` (:func:`evsi_trial`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Basis functions per dimension of the tensor-product smoother, by number of dimensions.
BASIS_PER_DIM = {1: 16, 2: 9, 3: 6, 4: 4}
MAX_GROUP = max(BASIS_PER_DIM)
DISCRETE_MAX = 20
SE_DRAWS = 200
_LOG_LAMBDA = np.linspace(-8.0, 6.0, 29)


@dataclass(frozen=True)
class VoiEstimate:
    """One regression estimate of EVPPI or EVSI (in the money of the net benefit).

    ``se`` combines ``se_regression`` (uncertainty of the fitted conditional mean) and
    ``se_monte_carlo`` (the outer average over draws); ``noise_floor`` is the estimate for a
    permuted, unrelated copy of the regressors; ``edf`` the effective degrees of freedom.
    """

    value: float
    se: float
    se_regression: float
    se_monte_carlo: float
    noise_floor: float
    method: str
    n_basis: int
    edf: float

    @property
    def above_noise_floor(self) -> bool:
        """True when the estimate exceeds the noise floor by more than 2 SE."""
        return bool(self.value - 2.0 * self.se > self.noise_floor)

    def to_dict(self) -> dict:
        return {**asdict(self), "above_noise_floor": self.above_noise_floor}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Normal scores of the mid-ranks, rescaled to [0, 1]; ties share their average rank."""
    from scipy.stats import norm, rankdata

    z = norm.ppf((rankdata(x, method="average") - 0.5) / x.size)
    span = z.max() - z.min()
    return (z - z.min()) / span if span > 0 else np.full(x.size, 0.5)


def _bspline_1d(u: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` B-splines on [0, 1] (cubic when m >= 4, else degree m - 1) and their penalty."""
    from scipy.interpolate import BSpline

    degree = min(3, m - 1)
    n_seg = m - degree
    inner = np.linspace(0.0, 1.0, n_seg + 1)
    t = np.r_[[0.0] * degree, inner, [1.0] * degree]
    X = BSpline.design_matrix(np.clip(u, 0.0, 1.0), t, degree).toarray()
    order = min(2, m - 1)
    D = np.diff(np.eye(m), n=order, axis=0)
    return X, D.T @ D


def design(phi: np.ndarray, *, max_basis: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Design matrix, penalties (one per dimension, stacked) and a description of the smoother
    for regressors ``phi`` (n, d)."""
    phi = np.asarray(phi, dtype=float)
    if phi.ndim == 1:
        phi = phi[:, None]
    n, d = phi.shape
    if d < 1 or d > MAX_GROUP:
        raise ValueError(f"a parameter group must have 1 to {MAX_GROUP} columns, got {d}")
    if d == 1:
        uniq, inv = np.unique(phi[:, 0], return_inverse=True)
        if uniq.size <= DISCRETE_MAX:
            X = np.zeros((n, uniq.size))
            X[np.arange(n), inv] = 1.0
            return X, np.zeros((1, uniq.size, uniq.size)), f"group means ({uniq.size} distinct values)"
    cap = max(2, int(np.floor((max(n, 20) / 10.0) ** (1.0 / d)))) if max_basis is None else max_basis
    m = max(2, min(BASIS_PER_DIM[d], cap))
    parts = [_bspline_1d(_ranks(phi[:, j]), m) for j in range(d)]
    X = parts[0][0]
    for Xj, _ in parts[1:]:
        X = np.einsum("ni,nj->nij", X, Xj).reshape(n, -1)
    Ss = []
    for j in range(d):
        mats = [np.eye(m)] * d
        mats[j] = parts[j][1]
        K = mats[0]
        for M in mats[1:]:
            K = np.kron(K, M)
        Ss.append(K)
    S = np.stack(Ss)
    kind = "P-spline" if d == 1 else "tensor-product P-spline"
    return X, S, f"{kind}, {m} cubic B-splines per dimension on ranks, GCV smoothing" if m >= 4 else \
        f"{kind}, degree {m - 1} polynomial on ranks, GCV smoothing"


@dataclass
class _Fit:
    fitted: np.ndarray
    beta: np.ndarray
    cov: np.ndarray   # Bayesian covariance of beta (standardised y)
    edf: float
    X: np.ndarray
    centre: float
    scale: float


def _fit(y: np.ndarray, X: np.ndarray, S: np.ndarray) -> _Fit:
    """Penalised least squares, one smoothing parameter per dimension chosen by GCV (on a
    standardised response): a common lambda on a grid first, then coordinate search over each
    dimension's lambda (see the module docstring)."""
    n, p = X.shape
    centre, scale = float(y.mean()), float(y.std())
    scale = scale if scale > 0 else 1.0
    z = (y - centre) / scale
    XtX, Xtz, ztz = X.T @ X, X.T @ z, float(z @ z)
    jitter = 1e-10 * np.trace(XtX) / p * np.eye(p)
    cache: dict[tuple, tuple] = {}

    def score(logs: tuple) -> tuple:
        if logs in cache:
            return cache[logs]
        A = XtX + jitter
        for j, g in enumerate(logs):
            if np.isfinite(g):
                A = A + base[j] * 10.0**g * S[j]
        try:
            Ainv = np.linalg.inv(A)
        except np.linalg.LinAlgError:
            cache[logs] = (np.inf,)
            return cache[logs]
        beta = Ainv @ Xtz
        rss = max(ztz - 2 * beta @ Xtz + beta @ XtX @ beta, 0.0)
        edf = float(np.sum(Ainv * XtX))
        cache[logs] = (n * rss / max(n - edf, 1.0) ** 2, beta, Ainv, rss, edf)
        return cache[logs]

    d = S.shape[0]
    if not np.any(S):
        best = (-np.inf,) * d
        base = np.zeros(d)
    else:
        base = np.array([np.trace(XtX) / max(np.trace(Sj), 1e-300) for Sj in S])
        best = min(((g,) * d for g in _LOG_LAMBDA), key=lambda t: score(t)[0])
        coarse = tuple(_LOG_LAMBDA[::2]) + (best[0],)
        for _ in range((2 if d == 2 else 1) if d > 1 else 0):
            for j in range(d):
                best = min((best[:j] + (g,) + best[j + 1:] for g in coarse), key=lambda t: score(t)[0])
    res = score(best)
    if not np.isfinite(res[0]):
        raise np.linalg.LinAlgError("the EVPPI regression could not be solved")
    _, beta, Ainv, rss, edf = res
    sigma2 = rss / max(n - edf, 1.0)
    return _Fit(centre + scale * (X @ beta), beta, sigma2 * Ainv, edf, X, centre, scale)


def _evppi_from_fitted(g: np.ndarray) -> np.ndarray:
    """EVPPI along axis 0 of fitted conditional means (n,) or (n, B)."""
    return np.maximum(np.maximum(g, 0).mean(axis=0) - np.maximum(g.mean(axis=0), 0), 0.0)


def _distinct_rows(phi: np.ndarray) -> int:
    phi = phi if phi.ndim == 2 else phi[:, None]
    return int(np.unique(phi, axis=0).shape[0])


def regression_voi(inb: np.ndarray, phi: np.ndarray, *, seed: int = 0, se_draws: int = SE_DRAWS,
                   noise_floor: bool = True) -> VoiEstimate:
    """See :func:`_regression_voi`; runs with one BLAS thread (the matrices are small: many
    threads are an order of magnitude slower on a shared machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scipy's stack
        return _regression_voi(inb, phi, seed=seed, se_draws=se_draws, noise_floor=noise_floor)
    with threadpool_limits(limits=1, user_api="blas"):
        return _regression_voi(inb, phi, seed=seed, se_draws=se_draws, noise_floor=noise_floor)


def _regression_voi(inb: np.ndarray, phi: np.ndarray, *, seed: int = 0, se_draws: int = SE_DRAWS,
                    noise_floor: bool = True) -> VoiEstimate:
    """EVPPI (or EVSI, when ``phi`` holds simulated study statistics) by regression.

    Parameters
    ----------
    inb
        Incremental net benefit of adopting, one value per draw (n,).
    phi
        Regressors: (n,) for one parameter, (n, d) with d <= 4 for a group or study summaries.
    seed
        Seeds the coefficient draws of the SE and the permutation of the noise floor.
    """
    inb = np.asarray(inb, dtype=float).ravel()
    phi = np.asarray(phi, dtype=float)
    phi = phi[:, None] if phi.ndim == 1 else phi
    if phi.shape[0] != inb.size:
        raise ValueError(f"inb has {inb.size} draws but phi has {phi.shape[0]}")
    if not (np.all(np.isfinite(inb)) and np.all(np.isfinite(phi))):
        raise ValueError("inb and phi must be finite")
    n = inb.size
    if np.ptp(inb) == 0:
        return VoiEstimate(0.0, 0.0, 0.0, 0.0, 0.0, "constant net benefit", 0, 0.0)
    X, S, method = design(phi)
    fit = _fit(inb, X, S)
    value = float(_evppi_from_fitted(fit.fitted))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    se_reg = 0.0
    if se_draws > 1:
        try:
            L = np.linalg.cholesky(fit.cov + 1e-12 * np.trace(fit.cov) / fit.cov.shape[0] * np.eye(fit.cov.shape[0]))
        except np.linalg.LinAlgError:
            w, V = np.linalg.eigh(fit.cov)
            L = V * np.sqrt(np.clip(w, 0, None))
        betas = fit.beta[:, None] + L @ rng.standard_normal((fit.beta.size, se_draws))
        g_b = fit.centre + fit.scale * (X @ betas)
        se_reg = float(np.std(_evppi_from_fitted(g_b), ddof=1))
    g = fit.fitted
    h = np.maximum(g, 0) - g * (g.mean() > 0)
    se_mc = float(h.std(ddof=1) / np.sqrt(min(n, _distinct_rows(phi))))
    floor = 0.0
    if noise_floor:
        perm = rng.permutation(n)
        Xp, Sp, _ = design(phi[perm])
        floor = float(_evppi_from_fitted(_fit(inb, Xp, Sp).fitted))
    return VoiEstimate(value, float(np.hypot(se_reg, se_mc)), se_reg, se_mc, floor, method, X.shape[1], fit.edf)


def evpi(inb: np.ndarray) -> float:
    """Expected value of perfect information for adopt vs not: E[max(INB, 0)] - max(E[INB], 0)."""
    inb = np.asarray(inb, float)
    return float(np.maximum(inb, 0).mean() - max(inb.mean(), 0.0))


def evpi_se(inb: np.ndarray) -> float:
    """Monte Carlo SE of :func:`evpi` (independent draws)."""
    inb = np.asarray(inb, float)
    h = np.maximum(inb, 0) - inb * (inb.mean() > 0)
    return float(h.std(ddof=1) / np.sqrt(inb.size))


def ceac(net_cost: np.ndarray, effects: dict[str, np.ndarray], wtp: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    r"""Cost-effectiveness acceptability over a grid of willingness to pay.

    With effects :math:`E_{ji}` (units of outcome :math:`j` gained at draw :math:`i`), and
    willingness to pay :math:`\lambda_j` per unit, the net monetary benefit of adopting is
    :math:`\text{NMB}_i(\lambda) = \sum_j \lambda_j E_{ji} - C_i`, and the curve is
    :math:`P(\text{NMB}(\lambda) > 0)` estimated by the share of draws. Returns the grid (one
    array per effect, flattened meshgrid over ``wtp``), ``p_cost_effective``, ``expected_nmb``
    and ``mcse`` (binomial Monte Carlo SE of the probability).
    """
    names = list(wtp)
    mesh = np.meshgrid(*[np.asarray(wtp[k], float) for k in names], indexing="ij")
    grid = np.stack([m.ravel() for m in mesh], axis=1)                       # (G, J)
    E = np.stack([np.asarray(effects[k], float) for k in names], axis=0)     # (J, n)
    nmb = grid @ E - np.asarray(net_cost, float)[None, :]                     # (G, n)
    p = (nmb > 0).mean(axis=1)
    return {**{k: grid[:, j] for j, k in enumerate(names)}, "p_cost_effective": p,
            "expected_nmb": nmb.mean(axis=1), "mcse": np.sqrt(p * (1 - p) / nmb.shape[1])}
