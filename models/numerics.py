"""Small numerical helpers that several models share."""

from __future__ import annotations

import numpy as np
from scipy import special


def log_binomial_coefficient(n, k) -> np.ndarray:
    r""":math:`\log \binom{n}{k} = \log\Gamma(n + 1) - \log\Gamma(k + 1) - \log\Gamma(n - k + 1)`,
    elementwise (real ``n >= k >= 0``; exact for counts)."""
    n, k = np.asarray(n, dtype=float), np.asarray(k, dtype=float)
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
