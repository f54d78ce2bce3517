"""Posterior probability statements: small pure functions on arrays of draws.

A statement is a probability computed from posterior draws of an effect on the scale people
read (percentage points, working days, pounds), never a p value or a verbal grade. The verbal
form follows a calibrated ladder (the IPCC likelihood scale), always printed with the number:
"very likely (P = 0.93) that ...".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: Calibrated verbal ladder: (lower bound of P, phrase). Checked from the top.
VERBAL_LADDER: tuple[tuple[float, str], ...] = (
    (0.99, "virtually certain"),
    (0.95, "extremely likely"),
    (0.90, "very likely"),
    (0.66, "likely"),
    (0.33, "about as likely as not"),
    (0.10, "unlikely"),
    (0.05, "very unlikely"),
    (0.01, "extremely unlikely"),
    (0.0, "exceptionally unlikely"),
)


def verbal_probability(p: float) -> str:
    """The calibrated phrase for probability ``p`` (IPCC ladder, see ``VERBAL_LADDER``)."""
    if not 0.0 <= p <= 1.0 or np.isnan(p):
        raise ValueError(f"a probability must lie in [0, 1], got {p}")
    for lower, phrase in VERBAL_LADDER:
        if p >= lower:
            return phrase
    return VERBAL_LADDER[-1][1]  # pragma: no cover - p >= 0 always matches


def state(p: float, claim: str) -> str:
    """``"very likely (P = 0.93) that <claim>"``."""
    return f"{verbal_probability(p)} (P = {p:.2f}) that {claim}"


@dataclass(frozen=True)
class EffectSummary:
    """Posterior summary of one effect on its reporting scale.

    ``p_below_rope``, ``p_in_rope`` and ``p_above_rope`` sum to one; the region of practical
    equivalence (ROPE) is ``[-rope, +rope]``; ``p_beyond_mid`` is P(|effect| > mid).
    """

    mean: float
    median: float
    sd: float
    eti95_low: float
    eti95_high: float
    p_negative: float
    p_positive: float
    rope: float
    p_below_rope: float
    p_in_rope: float
    p_above_rope: float
    mid: float
    p_beyond_mid: float
    n_draws: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarise_effect(draws: np.ndarray, *, rope: float, mid: float) -> EffectSummary:
    """Summarise posterior ``draws`` of an effect (any shape; all elements are draws).

    Parameters
    ----------
    draws
        Posterior draws of the effect on its reporting scale.
    rope
        Half-width of the region of practical equivalence around zero.
    mid
        Minimal important difference: reports P(|effect| > mid).
    """
    x = np.asarray(draws, dtype=float).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("effect draws must be a non-empty array of finite numbers")
    if rope < 0 or mid < 0:
        raise ValueError("rope and mid are half-widths and must be >= 0")
    lo, hi = np.quantile(x, [0.025, 0.975])
    below = float(np.mean(x < -rope))
    above = float(np.mean(x > rope))
    return EffectSummary(
        mean=float(x.mean()),
        median=float(np.median(x)),
        sd=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        eti95_low=float(lo),
        eti95_high=float(hi),
        p_negative=float(np.mean(x < 0)),
        p_positive=float(np.mean(x > 0)),
        rope=float(rope),
        p_below_rope=below,
        p_in_rope=1.0 - below - above,
        p_above_rope=above,
        mid=float(mid),
        p_beyond_mid=float(np.mean(np.abs(x) > mid)),
        n_draws=int(x.size),
    )


def prob(condition: np.ndarray) -> float:
    """Posterior probability of a boolean condition evaluated draw by draw."""
    c = np.asarray(condition, dtype=bool)
    return float(c.mean())
