"""Checking what was printed: statcheck- and GRIM-style recomputation of published numbers.

A printed number stands for an interval (``0.041`` means ``[0.0405, 0.0415]``; ``88%`` means
``[87.5, 88.5]``), so every check here asks whether *some* set of unrounded numbers inside
those intervals reproduces everything that was printed together, and returns that set: the
*admissible reconstructions*. The re-analysis then integrates over them instead of pretending
one of them is known.

- **GRIM** (Brown and Heathers, 2017): which counts ``x`` of ``n`` print as a given percentage
  (:func:`admissible_counts`), and which sample sizes allow one at all.
- **statcheck** (Epskamp and Nuijten): does a printed test statistic give the printed p value
  (:func:`check_t_test`, :func:`check_z_test`); which degrees of freedom reproduce it
  (:func:`consistent_df`).
- **Two-by-two tables**: which counts and group sizes reproduce two printed percentages *and*
  a printed Fisher exact p value (:func:`two_by_two_reconstructions`), and how large a study
  would have had to be to print that p value (:func:`sizes_reproducing_p`).
- **Normal estimates**: which standard errors a printed estimate and p value imply
  (:func:`normal_reconstructions`).

:func:`run_checks` applies all of them to the transcribed report (``data.published``) and
returns one row per check with its verdict and, where a number cannot be reproduced, what
would reproduce it.
"""

from __future__ import annotations

import math
import re

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from scipy import stats

from models.numerics import log_binomial_coefficient

#: Slack on interval ends for floating-point comparisons of recomputed numbers.
EPS = 1e-9

CONSISTENT = "consistent"
INCONSISTENT = "inconsistent"
NOT_CHECKABLE = "not checkable"


# --------------------------------------------------------------------------------------
# printed numbers as intervals


def decimals_of(text: str) -> int:
    """Number of decimals printed in ``text`` (``'.041'`` -> 3, ``'12.63'`` -> 2, ``'88%'`` -> 0)."""
    m = re.search(r"\.(\d+)", str(text))
    return len(m.group(1)) if m else 0


def parse_printed(text: str | float) -> tuple[float, int, str]:
    """``(value, decimals, relation)`` of a printed number such as ``'p=.041'``, ``'<.001'``, ``'88%'``.

    ``relation`` is ``'='``, ``'<'`` or ``'>'``. Labels (``p=``, ``P =``), ``%``, ``£`` and
    thousands separators are ignored.
    """
    if isinstance(text, (int, float, np.integer, np.floating)):
        s = repr(float(text))
        return float(text), decimals_of(s) if not float(text).is_integer() else 0, "="
    s = str(text).strip().strip("()")
    s = re.sub(r"^[pP]\s*(?=[=<>])", "", s)  # 'p=' / 'P =' / 'p <' label
    s = re.sub(r"^=\s*", "", s)
    s = s.replace("£", "").replace("%", "").replace("per cent", "").strip()
    relation = "="
    if s.startswith("<"):
        relation, s = "<", s[1:].strip()
    elif s.startswith(">"):
        relation, s = ">", s[1:].strip()
    s = s.replace(",", "")
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"cannot read a number from printed text '{text}'") from None
    return value, decimals_of(s), relation


def printed_interval(text: str | float, *, decimals: int | None = None) -> tuple[float, float]:
    """The closed interval of unrounded values that print as ``text``.

    ``'0.041'`` -> ``(0.0405, 0.0415)``; ``'<.001'`` -> ``(0, 0.001)``; ``'88%'`` -> ``(87.5, 88.5)``.
    Both rounding conventions (half up, half to even) are admitted, so ends are inclusive.
    ``decimals`` overrides the number of printed decimals (for a bare ``'0'`` whose precision is
    known from its neighbours).
    """
    value, d, relation = parse_printed(text)
    d = d if decimals is None else decimals
    half = 0.5 * 10.0 ** (-d)
    if relation == "<":
        return 0.0 if value > 0 else -math.inf, value
    if relation == ">":
        return value, math.inf
    lo, hi = value - half, value + half
    return lo, hi


def in_interval(x: float | np.ndarray, interval: tuple[float, float]) -> np.ndarray | bool:
    lo, hi = interval
    return (np.asarray(x) >= lo - EPS) & (np.asarray(x) <= hi + EPS)


def prints_as(x: float | np.ndarray, printed: str | float, *, decimals: int | None = None) -> np.ndarray | bool:
    """Whether unrounded ``x`` prints as ``printed`` (inclusive rounding interval)."""
    return in_interval(x, printed_interval(printed, decimals=decimals))


# --------------------------------------------------------------------------------------
# GRIM: counts behind percentages


def admissible_counts(percent: str | float, n: int, *, decimals: int | None = None) -> list[int]:
    """Counts ``x`` in ``0..n`` with ``100 x / n`` printing as ``percent`` (GRIM).

    An empty list means no count of ``n`` gives that percentage: the pair is GRIM-inconsistent.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    x = np.arange(n + 1)
    ok = prints_as(100.0 * x / n, percent, decimals=decimals)
    return [int(v) for v in x[ok]]


def count_reconstructions(
    percent: str | float, n_values: Iterable[int], *, decimals: int | None = None
) -> pd.DataFrame:
    """All ``(x, n)`` with ``n`` in ``n_values`` and ``100 x / n`` printing as ``percent``.

    Columns ``x``, ``n`` and ``weight``: each candidate ``n`` gets prior weight
    ``1 / len(n_values)``, shared by nothing else -- the *likelihood* of the printed percentage
    given a true proportion ``p`` is ``sum(weight * Binomial(x | n, p))`` over the rows, because
    every count that prints the same is a way the print could have arisen.
    """
    n_values = sorted({int(n) for n in n_values})
    rows = [(x, n) for n in n_values for x in admissible_counts(percent, n, decimals=decimals)]
    frame = pd.DataFrame(rows, columns=["x", "n"], dtype=int)
    frame["weight"] = 1.0 / len(n_values)
    return frame


# --------------------------------------------------------------------------------------
# p values from test statistics (statcheck)


def p_from_z(z: float | np.ndarray) -> np.ndarray | float:
    """Two-sided normal p value."""
    return 2.0 * stats.norm.sf(np.abs(z))


def p_from_t(t: float | np.ndarray, df: float | np.ndarray) -> np.ndarray | float:
    """Two-sided Student-t p value."""
    return 2.0 * stats.t.sf(np.abs(t), df)


def z_from_p(p: float | np.ndarray) -> np.ndarray | float:
    """|z| whose two-sided normal p value is ``p``."""
    return stats.norm.isf(np.asarray(p) / 2.0)


@dataclass(frozen=True)
class TestCheck:
    """Result of recomputing a printed test: the p interval implied by the statistic's interval."""

    p_printed: str
    p_interval: tuple[float, float]
    p_recomputed: tuple[float, float]
    consistent: bool


def _interval_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] + EPS and b[0] <= a[1] + EPS


def check_t_test(t_printed: str | float, df: float, p_printed: str) -> TestCheck:
    """Does ``t(df) = t_printed`` give ``p = p_printed`` (two-sided) for some unrounded t?"""
    lo, hi = printed_interval(t_printed)
    a, b = sorted(np.abs([lo, hi]))
    if lo <= 0 <= hi:
        a = 0.0
    p_rec = (float(p_from_t(b, df)), float(p_from_t(a, df)))
    p_int = printed_interval(p_printed)
    return TestCheck(str(p_printed), p_int, p_rec, _interval_overlap(p_rec, p_int))


def check_z_test(estimate: str | float, se: str | float, p_printed: str) -> TestCheck:
    """Does ``estimate / se`` (normal) give ``p = p_printed`` for some unrounded estimate and se?"""
    e_lo, e_hi = printed_interval(estimate)
    s_lo, s_hi = printed_interval(se)
    s_lo = max(s_lo, 1e-12)
    abs_e = sorted(np.abs([e_lo, e_hi]))
    if e_lo <= 0 <= e_hi:
        abs_e[0] = 0.0
    z_lo, z_hi = abs_e[0] / s_hi, abs_e[1] / s_lo
    p_rec = (float(p_from_z(z_hi)), float(p_from_z(z_lo)))
    p_int = printed_interval(p_printed)
    return TestCheck(str(p_printed), p_int, p_rec, _interval_overlap(p_rec, p_int))


def check_ratio(coef: str | float, se: str | float, t_printed: str | float) -> tuple[tuple[float, float], bool]:
    """Is ``|coef| / se`` compatible with the printed ``|t|``? Returns the ratio interval and the verdict."""
    c_lo, c_hi = sorted(np.abs(printed_interval(coef)))
    s_lo, s_hi = printed_interval(se)
    ratio = (c_lo / s_hi, c_hi / max(s_lo, 1e-12))
    t_lo, t_hi = sorted(np.abs(printed_interval(t_printed)))
    return ratio, _interval_overlap(ratio, (t_lo, t_hi))


def consistent_df(t_printed: str | float, p_printed: str, df_values: Iterable[int]) -> list[int]:
    """Degrees of freedom for which the printed t gives the printed p (two-sided)."""
    return [int(df) for df in df_values if check_t_test(t_printed, df, p_printed).consistent]


# --------------------------------------------------------------------------------------
# normal estimates: standard errors implied by a printed estimate and p value


def se_from_p(estimate: float | np.ndarray, p: float | np.ndarray) -> np.ndarray | float:
    """Standard error implied by a two-sided normal p value: ``|estimate| / z(p)``."""
    return np.abs(estimate) / z_from_p(p)


def normal_reconstructions(
    estimate_interval: tuple[float, float],
    p_interval: tuple[float, float],
    *,
    n_estimate: int = 5,
    n_p: int = 21,
) -> pd.DataFrame:
    """Estimate / standard-error pairs consistent with a printed estimate and p value.

    The estimate is spread evenly over ``estimate_interval`` (its rounding interval, or the
    range a phrase such as 'almost 3' allows) and the p value evenly over ``p_interval``
    (mid-points of ``n_p`` equal bins, so an open end at 0 never gives an infinite z); each
    pair gives ``se = |estimate| / z(p)``. Columns ``estimate``, ``se``, ``p``, ``weight``
    (equal weights summing to one).
    """
    e_lo, e_hi = estimate_interval
    p_lo, p_hi = p_interval
    if not (0 <= p_lo < p_hi <= 1):
        raise ValueError(f"p interval must lie in [0, 1] with lo < hi, got {p_interval}")
    est = np.linspace(e_lo, e_hi, n_estimate) if n_estimate > 1 and e_hi > e_lo else np.array([0.5 * (e_lo + e_hi)])
    edges = np.linspace(p_lo, p_hi, n_p + 1)
    ps = 0.5 * (edges[:-1] + edges[1:])
    e, p = np.meshgrid(est, ps, indexing="ij")
    if np.any(e == 0):
        raise ValueError("an estimate of exactly zero has no p-implied standard error")
    se = se_from_p(e, p)
    frame = pd.DataFrame({"estimate": e.ravel(), "se": se.ravel(), "p": p.ravel()})
    frame["weight"] = 1.0 / len(frame)
    return frame


def nonsignificant_difference_reconstructions(
    mean1: str | float,
    mean2: str | float,
    n1: int,
    n2: int,
    *,
    sd_range: tuple[float, float],
    alpha: float = 0.05,
    n_grid: int = 5,
) -> pd.DataFrame:
    """Differences of two printed means, with standard errors, consistent with 'not significant'.

    Each mean is spread over its rounding interval and the (common) SD over ``sd_range``
    (not printed: an assumption); a pair is kept when the two-sample t test of the difference
    is not significant at ``alpha`` (as the report says). Columns ``estimate`` (mean1 - mean2),
    ``se``, ``weight`` (equal).
    """
    a = np.linspace(*printed_interval(mean1), n_grid)
    b = np.linspace(*printed_interval(mean2), n_grid)
    sd = np.linspace(*sd_range, n_grid + 2)
    aa, bb, ss = np.meshgrid(a, b, sd, indexing="ij")
    d = (aa - bb).ravel()
    se = (ss * math.sqrt(1.0 / n1 + 1.0 / n2)).ravel()
    keep = np.abs(d) / se < stats.t.isf(alpha / 2, n1 + n2 - 2)
    if not keep.any():
        raise ValueError(f"no SD in {sd_range} makes {mean1} vs {mean2} non-significant")
    frame = pd.DataFrame({"estimate": d[keep], "se": se[keep]})
    frame["weight"] = 1.0 / len(frame)
    return frame


# --------------------------------------------------------------------------------------
# two-by-two tables and Fisher's exact test


def fisher_p(x1: int, n1: int, x2: int, n2: int, *, alternative: str = "two-sided") -> float:
    """Fisher's exact test of ``x1/n1`` against ``x2/n2`` (same definition as SciPy and SPSS).

    Two-sided: the sum of the hypergeometric probabilities of all tables no more probable than
    the observed one (relative tolerance 1e-7, as SciPy). ``'greater'``: P(X1 >= x1).
    ``'less'``: P(X1 <= x1).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got '{alternative}'")
    k = x1 + x2
    support = np.arange(max(0, k - n2), min(k, n1) + 1)
    lc = log_binomial_coefficient
    logpmf = lc(n1, support) + lc(n2, k - support) - lc(n1 + n2, k)
    pmf = np.exp(logpmf)
    if alternative == "greater":
        return float(min(1.0, pmf[support >= x1].sum()))
    if alternative == "less":
        return float(min(1.0, pmf[support <= x1].sum()))
    p_obs = pmf[support == x1][0]
    return float(min(1.0, pmf[pmf <= p_obs * (1 + 1e-7)].sum()))


def two_by_two_reconstructions(
    percent1: str | float,
    percent2: str | float,
    n1_values: Iterable[int],
    n2_values: Iterable[int],
    *,
    p_printed: str | None = None,
    alternative: str = "two-sided",
    extra: Any = None,
) -> pd.DataFrame:
    """Counts and group sizes reproducing two printed percentages (and a printed Fisher p).

    Parameters
    ----------
    percent1, percent2
        Printed percentages of the two groups.
    n1_values, n2_values
        Candidate group sizes (e.g. every size from half the group to all of it, allowing for
        item non-response).
    p_printed
        The printed Fisher exact p value; ``None`` keeps every percentage-consistent table.
    extra
        Optional ``callable(x1, n1, x2, n2) -> bool`` for further printed constraints (for
        example, a printed 50/50 split of one group's answers needs an even group).

    Returns
    -------
    DataFrame with ``x1, n1, x2, n2, p`` (the recomputed p value) and ``weight`` -- the prior
    weight of the pair of group sizes, uniform over ``n1_values x n2_values`` -- so that the
    likelihood of everything printed is ``sum(weight * Bin(x1|n1,p1) * Bin(x2|n2,p2))``.
    """
    n1_values = sorted({int(n) for n in n1_values})
    n2_values = sorted({int(n) for n in n2_values})
    p_int = printed_interval(p_printed) if p_printed is not None else None
    rows = []
    for n1 in n1_values:
        for x1 in admissible_counts(percent1, n1):
            for n2 in n2_values:
                for x2 in admissible_counts(percent2, n2):
                    if extra is not None and not extra(x1, n1, x2, n2):
                        continue
                    p = fisher_p(x1, n1, x2, n2, alternative=alternative) if p_int is not None else np.nan
                    if p_int is not None and not in_interval(p, p_int):
                        continue
                    rows.append((x1, n1, x2, n2, p))
    frame = pd.DataFrame(rows, columns=["x1", "n1", "x2", "n2", "p"])
    frame[["x1", "n1", "x2", "n2"]] = frame[["x1", "n1", "x2", "n2"]].astype(int)
    frame["weight"] = 1.0 / (len(n1_values) * len(n2_values))
    return frame


def closest_fisher_p(
    percent1: str | float, percent2: str | float, n1_values: Iterable[int], n2_values: Iterable[int]
) -> dict[str, Any]:
    """The percentage-consistent table whose two-sided Fisher p is smallest, and that p."""
    best: dict[str, Any] = {"p": math.inf}
    n2_values = list(n2_values)
    for n1 in n1_values:
        for x1 in admissible_counts(percent1, n1):
            for n2 in n2_values:
                for x2 in admissible_counts(percent2, n2):
                    p = fisher_p(x1, n1, x2, n2)
                    if p < best["p"]:
                        best = {"x1": x1, "n1": n1, "x2": x2, "n2": n2, "p": p}
    return best


def sizes_reproducing_p(
    percent1: str | float,
    percent2: str | float,
    p_printed: str,
    *,
    share1: float,
    totals: Iterable[int],
) -> dict[str, Any] | None:
    """The smallest study (total size in ``totals``, split ``share1`` : ``1 - share1``) whose
    percentage-consistent tables give the printed two-sided Fisher p; ``None`` if none does."""
    p_int = printed_interval(p_printed)
    for total in totals:
        n1 = int(round(total * share1))
        n2 = total - n1
        for x1 in admissible_counts(percent1, n1):
            for x2 in admissible_counts(percent2, n2):
                p = fisher_p(x1, n1, x2, n2)
                if in_interval(p, p_int):
                    return {"total": total, "x1": x1, "n1": n1, "x2": x2, "n2": n2, "p": p}
    return None


def chi_square_p(table: np.ndarray) -> float:
    """Pearson chi-square test of independence (no continuity correction)."""
    return float(stats.chi2_contingency(np.asarray(table), correction=False).pvalue)


# --------------------------------------------------------------------------------------
# the checks of the report, one row each


@dataclass(frozen=True)
class Check:
    """One recomputation: what was printed, what we get from the printed numbers, the verdict.

    ``status`` is ``'consistent'``, ``'inconsistent'`` or ``'not checkable'``;
    ``reproduces`` says, for an inconsistent result, what would reproduce it.
    """

    check_id: str
    result_id: str
    source: str
    printed: str
    recomputed: str
    status: str
    reproduces: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _fmt_p(interval: tuple[float, float]) -> str:
    lo, hi = interval
    return f"{lo:.4f}" if abs(hi - lo) < 5e-5 else f"{lo:.4f}-{hi:.4f}"


def _status(ok: bool) -> str:
    return CONSISTENT if ok else INCONSISTENT


def check_regression_row(row: pd.Series | dict, *, df_values: Sequence[int], df_nominal: int) -> list[Check]:
    """statcheck one regression row: coefficient / SE against t, t against p, and which df work."""
    rid, src = row["id"], row["source"]
    out = []
    coef = str(row["coef_printed"])
    coef = coef if "." in coef else "." + coef.lstrip("-")  # Table 6 prints '249' for -.249
    ratio, ok = check_ratio(coef, row["se_printed"], row["t_printed"])
    out.append(Check(
        f"{rid}:t=coef/se", rid, src,
        f"coef {row['coef_printed']} (read as -{coef}), SE {row['se_printed']}, t {row['t_printed']}",
        f"|coef|/SE in {ratio[0]:.3f}-{ratio[1]:.3f}", _status(ok),
        "" if ok else "a coefficient or SE other than printed",
    ))
    tc = check_t_test(row["t_printed"], df_nominal, row["p_printed"])
    dfs = consistent_df(row["t_printed"], row["p_printed"], df_values)
    span = f"{min(dfs)}-{max(dfs)}" if dfs else "none"
    out.append(Check(
        f"{rid}:p(t,df={df_nominal})", rid, src,
        f"t {row['t_printed']}, p {row['p_printed']}",
        f"p {_fmt_p(tc.p_recomputed)} with {df_nominal} df; df reproducing the printed p: {span}",
        _status(tc.consistent),
        "" if tc.consistent else (f"residual df in {span}" if dfs else "no df reproduces it"),
    ))
    return out


def check_counterfactual(row: pd.Series | dict) -> Check:
    """'X% -> Y%' after a DiD coefficient: is ``Y = X + coefficient`` within rounding (footnote 42)?"""
    rid = row["id"]
    e_lo, e_hi = signed_estimate_interval(row)
    b_lo, b_hi = printed_interval(row["counterfactual_printed"])
    a_lo, a_hi = printed_interval(row["observed_printed"])
    # the observed post-period mean a must satisfy a = b + e for some admissible b, e
    implied = (b_lo + e_lo, b_hi + e_hi)
    ok = _interval_overlap(implied, (a_lo, a_hi))
    return Check(
        f"{rid}:counterfactual", rid, row["source"],
        f"{row['counterfactual_printed']}% -> {row['observed_printed']}% with coefficient {row['estimate_printed']} pp",
        f"{row['counterfactual_printed']} + ({row['estimate_printed']}) = {implied[0]:.2f}..{implied[1]:.2f}",
        _status(ok), "" if ok else "a different counterfactual or coefficient",
    )


def signed_estimate_interval(row: pd.Series | dict) -> tuple[float, float]:
    """The interval of unrounded signed estimates behind a transcribed estimate.

    Uses ``estimate_low``/``estimate_high`` where the transcription gives them (a phrase such as
    'almost 3'), else the rounding interval of ``estimate_printed`` carrying the sign of
    ``estimate`` (the report prints '9.8 percentage points' for a decrease).
    """
    lo, hi = row.get("estimate_low"), row.get("estimate_high")
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        return float(lo), float(hi)
    a, b = sorted(np.abs(printed_interval(row["estimate_printed"])))
    return (a, b) if float(row["estimate"]) >= 0 else (-b, -a)


def run_checks(published: Any) -> pd.DataFrame:
    """Every recomputation this module knows, applied to the transcribed report.

    ``published`` is :class:`data.published.Published`. Returns one row per :class:`Check`.
    """
    checks: list[Check] = []
    est = published.estimates
    ctx = published.context

    # DiD counterfactuals ('31 per cent to 21 per cent') and the '20 per cent' claim
    for _, row in est[est["counterfactual_printed"].notna()].iterrows():
        checks.append(check_counterfactual(row))
        if row["id"] == "did_rereferral":
            e_lo, e_hi = sorted(np.abs(printed_interval(row["estimate_printed"])))
            b_lo, b_hi = printed_interval(row["counterfactual_printed"])
            rel = (e_lo / b_hi, e_hi / b_lo)
            checks.append(Check(
                "did_rereferral:greater-than-20%", row["id"], row["source"],
                "the 9.8 pp fall 'is greater than the projected 20 per cent change'",
                f"relative change {100 * rel[0]:.1f}%-{100 * rel[1]:.1f}% of the counterfactual 31%",
                _status(rel[0] > 0.2), "",
            ))

    # DiD estimates with p values only: the SE is not printed, so nothing to recompute
    for _, row in est[(est["group"] == "did") & est["estimate_printed"].notna()].iterrows():
        checks.append(Check(
            f"{row['id']}:p", row["id"], row["source"], f"estimate {row['estimate_printed']}, {row['p_printed']}",
            "no standard error printed: the p value defines it (see reconstructions)", NOT_CHECKABLE,
        ))

    # Table 6: t = coef / SE and p from t with df = families - 2
    n_families = int(ctx["contrast_families"])
    for _, row in est[est["group"] == "table6"].iterrows():
        checks.extend(check_regression_row(row, df_values=range(5, 121), df_nominal=n_families - 2))
    t6 = est[est["group"] == "table6"]
    if len(t6):
        common = set(range(5, 121))
        for _, row in t6.iterrows():
            common &= set(consistent_df(row["t_printed"], row["p_printed"], range(5, 121)))
        span = f"{min(common)}-{max(common)}" if common else "none"
        ok = (n_families - 2) in common
        checks.append(Check(
            "table6:joint-df", "table6", "Table 6",
            f"five t and p values from one set of families (n = {n_families} in the contrast study)",
            f"df reproducing all five p values: {span}", _status(ok),
            "" if ok else (f"{min(common) + 2}-{max(common) + 2} families in the regressions, "
                           f"not {n_families}" if common else "no single df reproduces them"),
        ))

    # Table 2 and 4: GRIM of each percentage against its sample size
    surveys = published.surveys
    for _, row in surveys.iterrows():
        n = int(row["n"])
        rec = count_reconstructions(row["printed"], range(int(row["n_min"]), n + 1))
        exact = admissible_counts(row["printed"], n)
        rid = f"{row['table']}:{row['item']}:{row['pilot']}"
        if str(row["table"]) == "2":  # the table prints its own n ('Number')
            largest = next((m for m in range(n - 1, 0, -1) if admissible_counts(row["printed"], m)), None)
            checks.append(Check(
                f"{rid}:grim", rid, f"Table {row['table']}", f"{row['printed']} of n = {n}",
                f"count {exact[0]} of {n}" if len(exact) == 1 else (f"counts {exact}" if exact else f"no count of {n}"),
                _status(bool(exact)),
                "" if exact else f"fewer answering this item: n = {largest} (or fewer) reproduces it",
            ))
        else:
            checks.append(Check(
                f"{rid}:grim", rid, f"Table {row['table']}",
                f"{row['printed']}% (n not printed; survey n = {n})",
                f"{len(rec)} admissible (x, n) with n in {row['n_min']}-{n}; "
                f"with n = {n}: {exact if exact else 'none'}",
                CONSISTENT if len(rec) else INCONSISTENT,
            ))

    # Table 4: 'the differences were not significant' -- chi-square across the 4 pilots
    t4 = surveys[surveys["table"] == "4"]
    for item, cells in t4.groupby("item", sort=False):
        xs = [admissible_counts(r.printed, int(r.n)) for r in cells.itertuples()]
        if all(xs):
            table = np.array([[x[len(x) // 2], int(r.n) - x[len(x) // 2]] for x, r in zip(xs, cells.itertuples())])
            p = chi_square_p(table)
            checks.append(Check(
                f"4:{item}:not-significant", f"4:{item}", "Table 4 and the text before it",
                "'the differences were not significant'",
                f"chi-square across the 4 pilots, counts reconstructed with the survey n: p = {p:.3f}",
                _status(p >= 0.05), "" if p >= 0.05 else "a smaller number answering this item, or another test",
            ))

    # Table 2 'percentage of social workers in the pilot' vs the text's 44-52 per cent response
    cov = published.context["table2_coverage"]
    lo, hi = published.context["survey_response_range"]
    outside = {k: v for k, v in cov.items() if not (lo - 0.5 <= v <= hi + 0.5)}
    checks.append(Check(
        "survey:response-share", "table2:coverage", "Table 2 and 'Workforce outcomes'",
        f"responses 'from between {lo} and {hi} per cent of social workers'; Table 2 row: "
        + ", ".join(f"{k} {v}%" for k, v in cov.items()),
        "outside the stated range: " + (", ".join(f"{k} {v}%" for k, v in outside.items()) or "none"),
        _status(not outside),
        "" if not outside else "different denominators (the text may count the social workers the survey was sent to)",
    ))

    # Table 5: overall score against the mean of the four subscales
    means = published.means
    for group in ("pilot", "contrast"):
        sub = means[means["subscale"] != "Overall score"]
        lo_ = float(np.mean([printed_interval(v)[0] for v in sub[f"{group}_printed"]]))
        hi_ = float(np.mean([printed_interval(v)[1] for v in sub[f"{group}_printed"]]))
        overall = means.loc[means["subscale"] == "Overall score", f"{group}_printed"].iloc[0]
        ok = _interval_overlap((lo_, hi_), printed_interval(overall))
        checks.append(Check(
            f"table5:overall-{group}", "table5", "Table 5", f"{group} overall {overall}",
            f"mean of the 4 subscales {lo_:.3f}-{hi_:.3f} (equal item counts assumed)", _status(ok),
        ))

    # HCSFF and Family Chart: percentages + Fisher p against the families in each group
    for _, row in published.proportions.iterrows():
        n1v = range(int(row["n1_min"]), int(row["n1_max"]) + 1)
        n2v = range(int(row["n2_min"]), int(row["n2_max"]) + 1)
        extra = _extra_constraint(row)
        rec = two_by_two_reconstructions(row["percent1_printed"], row["percent2_printed"], n1v, n2v,
                                         p_printed=row["p_printed"], extra=extra)
        if len(rec):
            recs = "; ".join(f"{r.x1}/{r.n1} vs {r.x2}/{r.n2} (p = {r.p:.4f})" for r in rec.head(4).itertuples())
            checks.append(Check(
                f"{row['id']}:fisher", row["id"], row["source"],
                f"{row['percent1_printed']}% vs {row['percent2_printed']}%, {row['p_printed']}",
                f"{len(rec)} reconstruction(s): {recs}", CONSISTENT,
            ))
        else:
            best = closest_fisher_p(row["percent1_printed"], row["percent2_printed"], n1v, n2v)
            need = sizes_reproducing_p(row["percent1_printed"], row["percent2_printed"], row["p_printed"],
                                       share1=row["n1_max"] / (row["n1_max"] + row["n2_max"]),
                                       totals=range(int(row["n1_max"] + row["n2_max"]), 601))
            what = (f"about {need['total']} families ({need['x1']}/{need['n1']} vs {need['x2']}/{need['n2']}, "
                    f"p = {need['p']:.4f}), i.e. {need['total'] / (row['n1_max'] + row['n2_max']):.1f} times the study"
                    if need else "no study of up to 600 families in the same proportions")
            checks.append(Check(
                f"{row['id']}:fisher", row["id"], row["source"],
                f"{row['percent1_printed']}% vs {row['percent2_printed']}%, {row['p_printed']}",
                f"no 2x2 table with n1 <= {row['n1_max']}, n2 <= {row['n2_max']} gives it; the smallest attainable "
                f"two-sided Fisher p is {best['p']:.3f} ({best['x1']}/{best['n1']} vs {best['x2']}/{best['n2']})",
                INCONSISTENT, what + "; or a test on more than two answer categories (not printed)",
            ))

    # Table 3: column totals, and the text's account of transitions
    ofsted = published.ofsted
    n_pilots = int(ctx["ofsted_pilots"])
    for (timing, aspect), cells in ofsted.groupby(["timing", "aspect"], sort=False):
        total = int(cells["count"].sum())
        checks.append(Check(
            f"table3:{timing}:{aspect}:total", "table3", "Table 3", f"{timing}, {aspect}",
            f"judgements sum to {total}", _status(total == n_pilots),
            "" if total == n_pilots else f"{n_pilots} pilots",
        ))
    trans = published.context["ofsted_transitions"]
    improved_listed = sum(t["count"] for t in trans if t["direction"] == "improved")
    claimed = int(ctx["ofsted_improved_claimed"])
    checks.append(Check(
        "table3:improved", "table3", "Ofsted judgements 2014-19 (text after Table 3)",
        f"'Five pilots were judged to have improved' followed by transitions totalling {improved_listed}",
        f"listed improvements: {improved_listed}; all listed transitions: {sum(t['count'] for t in trans)} pilots",
        _status(improved_listed == claimed),
        "" if improved_listed == claimed else
        f"'{improved_listed} pilots' (the listed transitions also match Table 3's margins)",
    ))
    # margins of the listed transitions against Table 3 (overall)
    start = ofsted[(ofsted["timing"] == "start") & (ofsted["aspect"] == "overall")].set_index("judgement")["count"]
    end = ofsted[(ofsted["timing"] == "end") & (ofsted["aspect"] == "overall")].set_index("judgement")["count"]
    s_m: dict[str, int] = {}
    e_m: dict[str, int] = {}
    for t in trans:
        s_m[t["from"]] = s_m.get(t["from"], 0) + t["count"]
        e_m[t["to"]] = e_m.get(t["to"], 0) + t["count"]
    ok = all(s_m.get(k, 0) == v for k, v in start.items()) and all(e_m.get(k, 0) == v for k, v in end.items())
    checks.append(Check(
        "table3:transitions-vs-margins", "table3", "Table 3 and the text after it",
        "transitions listed in the text", f"start margins {s_m}; end margins {e_m}", _status(ok),
    ))

    # costs
    checks.extend(_cost_checks(published.costs))
    return pd.DataFrame([c.to_dict() for c in checks])


def _extra_constraint(row: pd.Series) -> Any:
    split = row.get("group2_split_printed")
    if isinstance(split, str) and split:
        return lambda x1, n1, x2, n2: bool(admissible_counts(split, x2)) if x2 > 0 else False
    return None


def _cost_checks(costs: pd.DataFrame) -> list[Check]:
    v = costs.set_index("id")["value"].to_dict()
    src = "Cost benefit"
    out = []
    parts = v["trained_5day"] + v["trained_family_finding"] + v["trained_1day"]
    out.append(Check("costs:trained-total", "costs", src, "866 staff = 176 + 245 + 445",
                     f"sum {parts:.0f}", _status(parts == v["trained_staff"])))
    days_known = 5 * v["trained_5day"] + 1 * v["trained_1day"]
    ff_days = (v["staff_days"] - days_known) / v["trained_family_finding"]
    out.append(Check(
        "costs:staff-days", "costs", src, "2,550 staff days from 176 x 5-day, 245 Family Finding, 445 x 1-day",
        f"5-day and 1-day courses give {days_known:.0f} days; the rest implies {ff_days:.2f} days "
        "per Family Finding trainee",
        CONSISTENT if abs(ff_days - round(ff_days)) < 1e-9 else INCONSISTENT,
        f"reproducible only if Family Finding training lasted {ff_days:g} days (its length is not printed)",
    ))
    # mean 230 days (52-1118) over 6 pilots
    n, mean_lo, mean_hi = 6, v["mgmt_days_mean"] - 0.5, v["mgmt_days_mean"] + 0.5
    lo, hi = v["mgmt_days_min"], v["mgmt_days_max"]
    rest_lo, rest_hi = n * mean_lo - lo - hi, n * mean_hi - lo - hi
    feasible = rest_hi >= (n - 2) * lo and rest_lo <= (n - 2) * hi
    top = rest_hi - (n - 3) * lo  # the most any one of the other four can have reported
    out.append(Check(
        "costs:management-days", "costs", src, "mean 230 days per site, range 52-1118, 6 pilots",
        f"the other 4 sites sum to {rest_lo:.0f}-{rest_hi:.0f} days, each >= 52: "
        f"{rest_lo / 4:.1f}-{rest_hi / 4:.1f} days on average",
        _status(feasible),
        f"consistent only if the other four sites each reported {lo:.0f}-{math.floor(top):.0f} days: "
        "one site's 1,118 days makes the mean",
    ))
    return out
