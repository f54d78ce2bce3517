"""Bayesian re-analysis of the report's published results, from the printed numbers alone.

Four models, each exact or nearly so, plus one hierarchical model fitted by NUTS:

1. **Conjugate normal, p-value-implied standard error** (DiD estimates, Table 6, Table 5).
   A printed estimate ``y`` with a two-sided p value ``p`` implies ``se = |y| / z(p)`` where
   ``z(p) = Phi^-1(1 - p/2)``. Because ``y`` and ``p`` are rounded, each result has a set of
   admissible reconstructions ``r = (y_r, se_r)`` (``models.consistency``) with prior weights
   ``pi_r``; with ``theta ~ N(m0, s0^2)``::

       y_r | theta ~ N(theta, se_r^2)
       p(theta | printed) = sum_r w_r N(theta; m_r, v_r),
       v_r = 1 / (1/s0^2 + 1/se_r^2),  m_r = v_r (m0/s0^2 + y_r/se_r^2),
       w_r ∝ pi_r N(y_r; m0, s0^2 + se_r^2)

   -- a mixture of normals, summarised exactly (:class:`NormalMixture`). Assumes the
   reported test was a z (or large-df t) test of the printed estimate.

2. **Two-arm binomial with reconstructed counts** (HCSFF, Family Chart). ``x_g ~ Bin(n_g, p_g)``
   for the SofS (g = 1) and contrast (g = 2) groups; prior ``p_2 ~ U(0, 1)`` and
   ``delta = 100 (p_1 - p_2) ~ N(m0, s0^2)`` in percentage points, truncated to the feasible
   region. The likelihood of what was printed sums over the admissible tables ``r``:
   ``L(p1, p2) = sum_r pi_r Bin(x1_r | n1_r, p1) Bin(x2_r | n2_r, p2)``. Computed on a grid
   (:func:`two_arm_posterior`, exact up to grid resolution).

3. **Hierarchical binomial across pilots** (Tables 2 and 4), item ``i``, pilot ``j``::

       mu_i ~ N(logit 0.7, 1.5^2),   sigma_i ~ HalfNormal(0.75),   z_ij ~ N(0, 1)
       logit p_ij = mu_i + sigma_i z_ij                              (non-centred)
       printed % | p_ij ~ sum_k pi_k Bin(x_k | n_k, p_ij)            (admissible counts k)

   ``sigma_i`` is the between-pilot spread the report called "not significant";
   P(Pilot 8 is best) is the share of draws in which Pilot 8 has the best ``p_ij`` (highest or
   lowest, per item). Fitted with nutpie (:func:`pilot_model`, :func:`pilot_summaries`).

4. **Results with only a p value** (WAI, LA-level): no effect size can be recovered; we give
   the bounds on the Bayes factor for "no difference" that any p value implies
   (:func:`p_value_bounds`; Sellke, Bayarri and Berger 2001), and for Table 3 a
   Dirichlet-multinomial on the Ofsted transitions (:func:`ofsted_transitions`).

Priors: :func:`prior_grid` -- sceptical / neutral / enthusiastic (``models.priors``'s
convention, anchored to the programme's claimed 20% shift), each weak, moderate or strong.
"""

from __future__ import annotations

import math

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from scipy import optimize, special, stats

from models import consistency as cons
from models.priors import NamedPrior, spiegelhalter_priors
from models.numerics import log_binomial_coefficient
from models.statements import EffectSummary, state, summarise_effect

# --------------------------------------------------------------------------------------
# the prior grid

FAMILIES = ("sceptical", "neutral", "enthusiastic")
STRENGTHS = ("weak", "moderate", "strong")

#: Sceptical and enthusiastic: multiple of the base Spiegelhalter SD ``|target| / 1.645``.
#: Moderate is the base convention of ``models.priors`` (5% prior probability beyond the
#: target, or in the wrong direction); weak doubles the SD (21%), strong halves it (0.05%).
STRENGTH_SD_FACTOR = {"weak": 2.0, "moderate": 1.0, "strong": 0.5}

#: Neutral (centred on no effect): SD as a multiple of ``|target|``. Weak is nearly flat
#: (the posterior is the likelihood); moderate puts 68% of its mass within two targets of
#: zero; strong within one.
NEUTRAL_SD_FACTOR = {"weak": 10.0, "moderate": 2.0, "strong": 1.0}


def prior_grid(target: float, *, scale: str, target_label: str) -> dict[str, NamedPrior]:
    """The nine named priors ``'<family>-<strength>'`` for an effect whose claimed size is ``target``.

    ``target`` carries the direction the programme expects. The moderate sceptical and
    enthusiastic priors are exactly :func:`models.priors.spiegelhalter_priors`'s.

    Examples
    --------
    >>> g = prior_grid(-6.2, scale="pp", target_label="a 20% fall (-6.2 pp)")
    >>> round(g["sceptical-moderate"].sd, 3), g["enthusiastic-strong"].mean
    (3.769, -6.2)
    """
    grid: dict[str, NamedPrior] = {}
    for strength in STRENGTHS:
        base = spiegelhalter_priors(target, neutral_sd=NEUTRAL_SD_FACTOR[strength] * abs(target), scale=scale,
                                    target_label=target_label)
        for family in FAMILIES:
            p = base[family]
            factor = 1.0 if family == "neutral" else STRENGTH_SD_FACTOR[strength]
            sd = p.sd * factor
            if family == "neutral":
                why = f"no effect expected; 95% of prior mass within ±{1.96 * sd:.3g} {scale}"
            else:
                tail = stats.norm.sf(abs(target) / sd)
                where = f"beyond {target_label}" if family == "sceptical" else "in the other direction"
                why = f"{'centred on ' + target_label if family == 'enthusiastic' else 'centred on no effect'}; " \
                      f"{100 * tail:.2g}% prior chance of an effect {where}"
            grid[f"{family}-{strength}"] = replace(p, name=f"{family}-{strength}", sd=sd, rationale=why)
    return grid


def split_prior_name(name: str) -> tuple[str, str]:
    family, _, strength = name.partition("-")
    return family, strength


# --------------------------------------------------------------------------------------
# posteriors that can be summarised exactly


class Posterior(Protocol):
    def mean(self) -> float: ...
    def sd(self) -> float: ...
    def cdf(self, x: float) -> float: ...
    def quantile(self, q: float) -> float: ...


@dataclass(frozen=True)
class NormalMixture:
    """``sum_r w_r N(mu_r, sd_r^2)``: the posterior of a conjugate normal model over reconstructions."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, float)
        if w.ndim != 1 or len(w) != len(self.means) or len(w) != len(self.sds) or not np.isclose(w.sum(), 1):
            raise ValueError("weights, means and sds must be equal-length vectors with weights summing to 1")

    def mean(self) -> float:
        return float(np.sum(self.weights * self.means))

    def sd(self) -> float:
        m = self.mean()
        return float(np.sqrt(np.sum(self.weights * (self.sds**2 + (self.means - m) ** 2))))

    def cdf(self, x: float) -> float:
        return float(np.dot(self.weights, special.ndtr((x - self.means) / self.sds)))

    def quantile(self, q: float) -> float:
        lo = float(np.min(self.means - 10 * self.sds))
        hi = float(np.max(self.means + 10 * self.sds))
        return float(optimize.brentq(lambda x: self.cdf(x) - q, lo, hi, xtol=1e-10))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return rng.normal(self.means[k], self.sds[k])


def conjugate_normal(prior: NamedPrior, estimates: Sequence[float], ses: Sequence[float],
                     weights: Sequence[float] | None = None) -> NormalMixture:
    """Posterior of ``theta ~ N(prior.mean, prior.sd^2)`` given reconstructions ``y_r ~ N(theta, se_r^2)``.

    With several reconstructions the likelihood of the printed numbers is their weighted sum,
    so the posterior is a normal mixture whose weights are the prior weights times each
    reconstruction's marginal likelihood ``N(y_r; m0, s0^2 + se_r^2)``.
    """
    y = np.asarray(estimates, float)
    se = np.asarray(ses, float)
    if y.shape != se.shape or y.ndim != 1 or not np.all(se > 0):
        raise ValueError("estimates and ses must be equal-length vectors with ses > 0")
    pi = np.full(len(y), 1.0 / len(y)) if weights is None else np.asarray(weights, float)
    m0, v0 = prior.mean, prior.sd**2
    v = 1.0 / (1.0 / v0 + 1.0 / se**2)
    m = v * (m0 / v0 + y / se**2)
    logw = np.log(pi) + stats.norm.logpdf(y, m0, np.sqrt(v0 + se**2))
    w = np.exp(logw - logw.max())
    return NormalMixture(w / w.sum(), m, np.sqrt(v))


@dataclass(frozen=True)
class GridPosterior:
    """A discrete posterior: ``values`` (sorted) with probabilities ``probs``."""

    values: np.ndarray
    probs: np.ndarray

    @classmethod
    def from_unsorted(cls, values: np.ndarray, probs: np.ndarray) -> "GridPosterior":
        v, p = np.asarray(values, float).ravel(), np.asarray(probs, float).ravel()
        order = np.argsort(v, kind="stable")
        v, p = v[order], p[order]
        uniq, idx = np.unique(v, return_index=True)
        p = np.add.reduceat(p, idx)
        return cls(uniq, p / p.sum())

    def mean(self) -> float:
        return float(np.sum(self.values * self.probs))

    def sd(self) -> float:
        m = self.mean()
        return float(np.sqrt(np.sum(self.probs * (self.values - m) ** 2)))

    def cdf(self, x: float) -> float:
        return float(self.probs[self.values <= x + 1e-12].sum())

    def sf(self, x: float) -> float:
        return float(self.probs[self.values > x + 1e-12].sum())

    def quantile(self, q: float) -> float:
        c = np.cumsum(self.probs)
        return float(np.interp(q, c - 0.5 * self.probs, self.values))


@dataclass(frozen=True)
class DrawsPosterior:
    """A posterior known by its draws."""

    draws: np.ndarray

    def mean(self) -> float:
        return float(np.mean(self.draws))

    def sd(self) -> float:
        return float(np.std(self.draws, ddof=1))

    def cdf(self, x: float) -> float:
        return float(np.mean(self.draws <= x))

    def sf(self, x: float) -> float:
        return float(np.mean(self.draws > x))

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.draws, q))


def _sf(post: Any, x: float) -> float:
    return post.sf(x) if hasattr(post, "sf") else 1.0 - post.cdf(x)


def exact_summary(post: Posterior, *, rope: float, mid: float) -> EffectSummary:
    """:class:`models.statements.EffectSummary` from an exactly known posterior (``n_draws = 0``)."""
    if isinstance(post, DrawsPosterior):
        return summarise_effect(post.draws, rope=rope, mid=mid)
    below, above = post.cdf(-rope - 1e-12), _sf(post, rope)
    return EffectSummary(
        mean=post.mean(), median=post.quantile(0.5), sd=post.sd(),
        eti95_low=post.quantile(0.025), eti95_high=post.quantile(0.975),
        p_negative=post.cdf(-1e-12), p_positive=_sf(post, 0.0), rope=rope,
        p_below_rope=below, p_in_rope=max(0.0, 1.0 - below - above), p_above_rope=above,
        mid=mid, p_beyond_mid=post.cdf(-mid - 1e-12) + _sf(post, mid), n_draws=0,
    )


# --------------------------------------------------------------------------------------
# two-arm binomial on a grid


@dataclass(frozen=True)
class TwoArmLikelihood:
    """The likelihood of printed two-group results on a (p1, p2) grid, computed once per result.

    ``like[i, j] = sum_r pi_r Bin(x1_r | n1_r, g_i) Bin(x2_r | n2_r, g_j)`` (rescaled), with
    ``g`` the mid-points of ``grid_size`` equal bins of (0, 1); ``delta`` = 100 (g_i - g_j).
    """

    like: np.ndarray
    delta: np.ndarray
    values: np.ndarray = field(default=None, repr=False)
    inverse: np.ndarray = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.values is None:
            values, inverse = np.unique(self.delta.ravel(), return_inverse=True)
            object.__setattr__(self, "values", values)
            object.__setattr__(self, "inverse", inverse)

    @classmethod
    def from_reconstructions(cls, recon: pd.DataFrame, *, grid_size: int = 401) -> "TwoArmLikelihood":
        if recon.empty:
            raise ValueError("no admissible reconstruction to condition on")
        g = (np.arange(grid_size) + 0.5) / grid_size
        lg, l1g = np.log(g), np.log1p(-g)

        def lik(x: np.ndarray, n: np.ndarray) -> np.ndarray:
            logc = log_binomial_coefficient(n, x)
            ll = logc[:, None] + x[:, None] * lg[None, :] + (n - x)[:, None] * l1g[None, :]
            return np.exp(ll - ll.max())

        b1 = lik(recon["x1"].to_numpy(float), recon["n1"].to_numpy(float))
        b2 = lik(recon["x2"].to_numpy(float), recon["n2"].to_numpy(float))
        like = (b1 * recon["weight"].to_numpy(float)[:, None]).T @ b2  # (p1 grid, p2 grid)
        return cls(like, np.round(100.0 * (g[:, None] - g[None, :]), 9))

    def posterior(self, prior: NamedPrior) -> GridPosterior:
        post = self.like * np.exp(-0.5 * ((self.delta - prior.mean) / prior.sd) ** 2)
        probs = np.bincount(self.inverse, weights=post.ravel(), minlength=len(self.values))
        return GridPosterior(self.values, probs / probs.sum())


def two_arm_posterior(recon: pd.DataFrame, prior: NamedPrior, *, grid_size: int = 401) -> GridPosterior:
    """Posterior of ``delta = 100 (p1 - p2)`` (pp) for a two-group binomial comparison.

    Parameters
    ----------
    recon
        Admissible tables: columns ``x1, n1, x2, n2, weight``
        (:func:`models.consistency.two_by_two_reconstructions`).
    prior
        Normal prior on ``delta`` in percentage points; ``p2 ~ U(0, 1)``.
    grid_size
        Points per proportion (mid-points of equal bins of (0, 1)).
    """
    return TwoArmLikelihood.from_reconstructions(recon, grid_size=grid_size).posterior(prior)


# --------------------------------------------------------------------------------------
# one result, one prior: the statement


@dataclass
class ResultSpec:
    """Everything needed to re-analyse one published result under any prior.

    ``kind`` is ``'normal'`` (reconstructions with ``estimate``, ``se``, ``weight``) or
    ``'two_arm'`` (``x1, n1, x2, n2, weight``). ``reference`` is the signed 20% shift that
    anchors the priors; ``target_applies`` says whether it is the programme's own target.
    """

    result_id: str
    group: str
    label: str
    unit: str
    kind: str
    recon: pd.DataFrame
    benefit_direction: int
    reference: float
    target_applies: bool
    baseline: float | None
    baseline_source: str
    report_verdict: str
    printed: str
    source: str
    notes: list[str] = field(default_factory=list)
    benefit_claim: str = ""
    harm_claim: str = ""
    quote: str = ""
    _likelihood: Any = field(default=None, repr=False, compare=False)

    def claims(self) -> tuple[str, str]:
        """Words for 'the effect is beneficial' and 'the effect is harmful' on this result."""
        up, down = "is higher with SofS", "is lower with SofS"
        good = up if self.benefit_direction > 0 else down
        bad = down if self.benefit_direction > 0 else up
        return (self.benefit_claim or f"{self.label} {good}", self.harm_claim or f"{self.label} {bad}")

    @property
    def mid(self) -> float:
        """Minimal important difference: half the 20% shift (a 10% relative change)."""
        return 0.5 * abs(self.reference)

    def priors(self) -> dict[str, NamedPrior]:
        label = f"a 20% shift ({self.reference:+.3g} {self.unit})"
        return prior_grid(self.reference, scale=self.unit, target_label=label)

    def posterior(self, prior: NamedPrior) -> NormalMixture | GridPosterior:
        if self.kind == "normal":
            return conjugate_normal(prior, self.recon["estimate"], self.recon["se"], self.recon["weight"])
        if self.kind == "two_arm":
            if self._likelihood is None:
                self._likelihood = TwoArmLikelihood.from_reconstructions(self.recon)
            return self._likelihood.posterior(prior)
        raise ValueError(f"unknown kind '{self.kind}'")


@dataclass(frozen=True)
class Statement:
    """One result under one prior, on its reporting scale."""

    result_id: str
    prior: str
    family: str
    strength: str
    prior_mean: float
    prior_sd: float
    unit: str
    mean: float
    median: float
    low95: float
    high95: float
    p_benefit: float
    p_harm: float
    mid: float
    p_beyond_mid: float
    target: float
    p_target: float
    statement: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_result(spec: ResultSpec, prior: NamedPrior, post: Posterior) -> Statement:
    """Posterior probability statements for ``spec`` under ``prior``."""
    summary = exact_summary(post, rope=spec.mid, mid=spec.mid)
    if spec.benefit_direction > 0:
        p_benefit, p_harm = summary.p_positive, summary.p_negative
    elif spec.benefit_direction < 0:
        p_benefit, p_harm = summary.p_negative, summary.p_positive
    else:
        p_benefit = p_harm = math.nan
    target = spec.reference if spec.target_applies else math.nan
    if spec.target_applies:
        p_target = _sf(post, target - 1e-12) if target > 0 else post.cdf(target + 1e-12)
    else:
        p_target = math.nan
    family, strength = split_prior_name(prior.name)
    if spec.benefit_direction:
        good, bad = spec.claims()
        text = state(p_benefit, good) if p_benefit >= 0.5 else state(p_harm, bad)
    else:
        text = state(summary.p_positive, "the difference is positive")
    if spec.target_applies:
        text += f"; {state(p_target, f'the programme target ({target:+.3g} {spec.unit}) was met')}"
    return Statement(spec.result_id, prior.name, family, strength, prior.mean, prior.sd, spec.unit,
                     summary.mean, summary.median, summary.eti95_low, summary.eti95_high,
                     p_benefit, p_harm, spec.mid, summary.p_beyond_mid, target, p_target, text)


def reanalyse(specs: Iterable[ResultSpec], prior_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every result under every prior of the grid (or the named ones): one row per pair."""
    rows = []
    for spec in specs:
        for name, prior in spec.priors().items():
            if prior_names is not None and name not in prior_names:
                continue
            rows.append(state_result(spec, prior, spec.posterior(prior)).to_dict())
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# building the specs from the transcription


def _text(value: Any) -> str:
    """A transcription field as text ('' for missing values, including pandas' NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _reference(baseline: float, direction: int, share: float) -> float:
    return share * baseline * (direction if direction else 1)


def did_spec(row: pd.Series, *, share: float, baseline: float | None = None) -> ResultSpec:
    """A DiD estimate with a p value: normal likelihood, SE implied by the rounded p value."""
    est_int = cons.signed_estimate_interval(row)
    if pd.notna(row.get("p_low")) and pd.notna(row.get("p_high")):
        p_int = (float(row["p_low"]), float(row["p_high"]))
    else:
        p_int = cons.printed_interval(row["p_printed"])
    recon = cons.normal_reconstructions(est_int, p_int)
    base = float(row["baseline"]) if baseline is None else float(baseline)
    d = int(row["benefit_direction"])
    notes = [f"estimate in {est_int[0]:g}..{est_int[1]:g}, p in {p_int[0]:g}..{p_int[1]:g}: "
             f"SE {recon['se'].min():.3g}..{recon['se'].max():.3g} {row['unit']}"]
    notes.append("conditional on the printed p value: the report's design concerns (parallel trends, serial "
                 "correlation, data quality, few LAs) are not in this likelihood, so the interval is a lower bound "
                 "on the uncertainty")
    if row.get("baseline_source") == "assumed" or baseline is not None:
        notes.append(f"baseline {base:g} {row['unit']} is an assumption (not printed)")
    return ResultSpec(row["id"], row["group"], row["outcome"], row["unit"], "normal", recon, d,
                      _reference(base, d, share), bool(row["target_applies"]), base,
                      "user" if baseline is not None else str(row.get("baseline_source")),
                      _text(row.get("verdict_printed")),
                      f"{row['estimate']:+g} {row['unit']} ({row['p_printed']})", row["source"], notes,
                      _text(row.get("benefit_claim")), _text(row.get("harm_claim")))


def regression_spec(row: pd.Series, *, share: float) -> ResultSpec:
    """A regression coefficient with its printed SE (Table 6): normal likelihood."""
    e_lo, e_hi = cons.signed_estimate_interval({"estimate": row["estimate"],
                                                "estimate_printed": "." + str(row["coef_printed"])})
    s_lo, s_hi = cons.printed_interval(row["se_printed"])
    e, s = np.meshgrid(np.linspace(e_lo, e_hi, 3), np.linspace(s_lo, s_hi, 3), indexing="ij")
    recon = pd.DataFrame({"estimate": e.ravel(), "se": s.ravel(), "weight": 1.0 / e.size})
    d = int(row["benefit_direction"])
    sub = row["outcome"].split(":")[0].lower()
    return ResultSpec(row["id"], row["group"], row["outcome"], row["unit"], "normal", recon, d,
                      _reference(float(row["baseline"]), d, share), False, float(row["baseline"]), "printed",
                      _text(row.get("verdict_printed")),
                      f"{row['estimate']:+.3f} (SE {row['se_printed']}, p {row['p_printed']})", row["source"],
                      ["printed coefficient lacks its decimal point and minus sign; read as "
                       f"{row['estimate']:+.3f}"],
                      f"families of more competent social workers score better (lower) on {sub}",
                      f"families of more competent social workers score worse (higher) on {sub}")


def difference_spec(row: pd.Series, *, n1: int, n2: int, sd_range: tuple[float, float], share: float) -> ResultSpec:
    """A non-significant difference of two printed means (Table 5), SD unknown within ``sd_range``."""
    recon = cons.nonsignificant_difference_reconstructions(row["pilot_printed"], row["contrast_printed"], n1, n2,
                                                           sd_range=sd_range)
    base = float(row["contrast_printed"])
    return ResultSpec(row["id"], "table5", f"{row['subscale']}: pilot minus contrast mean (Yatchmenoff points)",
                      "Yatchmenoff points", "normal", recon, -1, _reference(base, -1, share), False, base, "printed",
                      _text(row.get("verdict_printed")),
                      f"{row['pilot_printed']} vs {row['contrast_printed']}", row["source"],
                      [f"SD of family scores assumed in {sd_range[0]:g}..{sd_range[1]:g}; 'no significant "
                       f"difference' keeps |t| < t(0.975, {n1 + n2 - 2})"],
                      f"SofS families score better (lower) than contrast families on {row['subscale'].lower()}",
                      f"SofS families score worse (higher) than contrast families on {row['subscale'].lower()}")


def proportion_spec(row: pd.Series, recon: pd.DataFrame, *, share: float, p_reproduced: bool) -> ResultSpec:
    """A two-group comparison of printed percentages (HCSFF, Family Chart)."""
    base = float(row["percent2_printed"])
    d = int(row["benefit_direction"])
    ref = _reference(base, d, share)
    notes = [f"{len(recon)} admissible table(s)" + ("" if p_reproduced else
             " (the printed p value is not reproducible, so only the percentages constrain them)")]
    return ResultSpec(row["id"], "contrast", row["outcome"], "pp", "two_arm", recon, d, ref, False, base, "printed",
                      _text(row.get("verdict_printed")),
                      f"{row['percent1_printed']}% vs {row['percent2_printed']}% ({row['p_printed']})",
                      row["source"], notes,
                      f"more SofS than contrast families: {row['outcome'][0].lower() + row['outcome'][1:]}",
                      f"fewer SofS than contrast families: {row['outcome'][0].lower() + row['outcome'][1:]}")


def _with_quote(spec: ResultSpec, row: pd.Series) -> ResultSpec:
    spec.quote = _text(row.get("quote"))
    return spec


def build_specs(published: Any, *, baselines: dict[str, float] | None = None,
                sd_range: tuple[float, float] = (0.3, 1.2)) -> list[ResultSpec]:
    """Every published result that carries an effect size, ready for :func:`reanalyse`.

    ``baselines`` overrides the assumed baselines of results (by id), e.g. the duration of
    assessments, whose counterfactual mean the report does not print.
    """
    baselines = dict(baselines or {})
    share = float(published.context["programme_target"])
    est = published.estimates
    specs: list[ResultSpec] = []
    for _, row in est[(est["group"] == "did") & est["estimate"].notna()].iterrows():
        specs.append(_with_quote(did_spec(row, share=share, baseline=baselines.pop(row["id"], None)), row))
    for _, row in est[est["group"] == "table6"].iterrows():
        specs.append(_with_quote(regression_spec(row, share=share), row))
    samples = published.samples.set_index("id")["value"]
    n1 = int(samples["pilot4_families"] + samples["pilot9_families"])
    n2 = int(samples["families_total"]) - n1
    for _, row in published.means.iterrows():
        if row["subscale"] == "Overall score":
            continue
        specs.append(_with_quote(difference_spec(row, n1=n1, n2=n2, sd_range=sd_range, share=share), row))
    for _, row in published.proportions.iterrows():
        recon, reproduced = proportion_reconstructions(row)
        specs.append(_with_quote(proportion_spec(row, recon, share=share, p_reproduced=reproduced), row))
    if baselines:
        raise ValueError(f"--baseline given for unknown result(s) {sorted(baselines)}; "
                         f"choose from {list(est.loc[est['group'] == 'did', 'id'])}")
    return specs


def proportion_reconstructions(row: pd.Series) -> tuple[pd.DataFrame, bool]:
    """Admissible tables for a printed comparison: those reproducing the p value too, if any do."""
    n1v = range(int(row["n1_min"]), int(row["n1_max"]) + 1)
    n2v = range(int(row["n2_min"]), int(row["n2_max"]) + 1)
    extra = cons._extra_constraint(row)
    with_p = cons.two_by_two_reconstructions(row["percent1_printed"], row["percent2_printed"], n1v, n2v,
                                             p_printed=row["p_printed"], extra=extra)
    if len(with_p):
        return with_p, True
    return cons.two_by_two_reconstructions(row["percent1_printed"], row["percent2_printed"], n1v, n2v,
                                           extra=extra), False


# --------------------------------------------------------------------------------------
# results with only a p value


def p_value_bounds(p_interval: tuple[float, float], *, prior_null: float = 0.5) -> dict[str, float]:
    """What a two-sided p value alone can say, over its rounding interval.

    ``bf_min``: Sellke, Bayarri and Berger's lower bound ``-e p ln p`` on the Bayes factor for
    the null (p < 1/e) -- no prior on the alternative can make the data favour it more.
    ``p_null_min``: the resulting lower bound on P(no difference | p) with prior P = ``prior_null``.
    Reported at both ends of the p interval (``_lo`` for the smallest admissible p).
    """
    def bf(p: float) -> float:
        return float(-math.e * p * math.log(p)) if 0 < p < 1 / math.e else (0.0 if p <= 0 else 1.0)

    out = {}
    for tag, p in (("lo", max(p_interval[0], 0.0)), ("hi", p_interval[1])):
        b = bf(p)
        odds = prior_null / (1 - prior_null) * b
        out[f"p_{tag}"] = p
        out[f"bf_min_{tag}"] = b
        out[f"p_null_min_{tag}"] = odds / (1 + odds)
    return out


def ofsted_transitions(transitions: Sequence[dict[str, Any]], *, draws: int = 20000, seed: int = 0,
                       prior: float = 1.0) -> dict[str, Any]:
    """Dirichlet-multinomial on the pilots' Ofsted transitions (improved / same / worse).

    ``(q_improved, q_same, q_worse) ~ Dirichlet(prior, prior, prior)``; the listed counts are
    multinomial. Returns the posterior of the net share improving, ``100 (q_improved - q_worse)``
    pp, as an :class:`EffectSummary` and P(net improvement > 0). No comparator authorities were
    printed, so this describes the pilots, not an effect of SofS.
    """
    counts = {"improved": 0, "same": 0, "worse": 0}
    for t in transitions:
        counts[t["direction"]] += int(t["count"])
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.array([counts["improved"], counts["same"], counts["worse"]], float) + prior, size=draws)
    net = 100.0 * (q[:, 0] - q[:, 2])
    summary = summarise_effect(net, rope=10.0, mid=10.0)
    return {"counts": counts, "summary": summary, "p_net_improvement": float(np.mean(net > 0))}


# --------------------------------------------------------------------------------------
# hierarchical binomial across pilots (Tables 2 and 4)


@dataclass(frozen=True)
class PilotData:
    """Padded reconstructions for the (item, pilot) cells of Tables 2 and 4.

    ``x``, ``n``, ``logw`` have shape (item, pilot, k): the k-th admissible (count, size) of a
    cell and ``log`` of its prior weight (``-inf`` for padding); ``logc`` = log binomial
    coefficient. ``better`` is +1 where a higher percentage is better, -1 where lower is.
    """

    items: list[str]
    tables: list[str]
    pilots: list[str]
    x: np.ndarray
    n: np.ndarray
    logw: np.ndarray
    logc: np.ndarray
    better: np.ndarray
    printed: np.ndarray
    n_printed: np.ndarray

    @property
    def coords(self) -> dict[str, list[str]]:
        return {"item": self.items, "pilot": self.pilots}


def pilot_data(surveys: pd.DataFrame, *, pad_to: int | None = None) -> PilotData:
    """Reconstruct every cell's admissible counts (GRIM) and pad them into arrays.

    ``pad_to`` fixes the padded length (to re-use a compiled model on other data).
    """
    items = list(dict.fromkeys(surveys["item"]))
    pilots = list(dict.fromkeys(surveys["pilot"]))
    tables = [str(surveys.loc[surveys["item"] == i, "table"].iloc[0]) for i in items]
    cells = {}
    for r in surveys.itertuples():
        rec = cons.count_reconstructions(r.printed, range(int(r.n_min), int(r.n) + 1))
        if rec.empty:
            raise ValueError(f"no count reproduces {r.printed} for '{r.item}', {r.pilot} (n {r.n_min}-{r.n})")
        cells[(r.item, r.pilot)] = rec
    k = max(len(v) for v in cells.values())
    if pad_to is not None:
        if pad_to < k:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest reconstruction list ({k})")
        k = pad_to
    shape = (len(items), len(pilots), k)
    x, n = np.zeros(shape), np.ones(shape)
    logw = np.full(shape, -np.inf)
    printed, n_pr = np.zeros(shape[:2]), np.zeros(shape[:2])
    better = np.zeros(len(items))
    for (item, pilot), rec in cells.items():
        i, j = items.index(item), pilots.index(pilot)
        m = len(rec)
        x[i, j, :m], n[i, j, :m] = rec["x"], rec["n"]
        logw[i, j, :m] = np.log(rec["weight"])
        row = surveys[(surveys["item"] == item) & (surveys["pilot"] == pilot)].iloc[0]
        printed[i, j], n_pr[i, j] = row["percent"], row["n"]
        better[i] = 1 if row["better"] == "higher" else -1
    logc = log_binomial_coefficient(n, x)
    return PilotData(items, tables, pilots, x, n, logw, logc, better, printed, n_pr)


PILOT_PRIORS = {"mu_mean": float(special.logit(0.7)), "mu_sd": 1.5, "sigma_scale": 0.75}


def pilot_model(data: PilotData, priors: dict[str, float] | None = None) -> pm.Model:
    """Hierarchical binomial across pilots, one spread per item (see the module docstring).

    Every array is a ``pm.Data`` so that a compiled model can be re-used on data of the same
    shape (:class:`models.sampling.CompiledSampler`). ``priors`` overrides
    :data:`PILOT_PRIORS` (keys ``mu_mean``, ``mu_sd``, ``sigma_scale``).
    """
    pr = {**PILOT_PRIORS, **(priors or {})}
    unknown = set(pr) - set(PILOT_PRIORS)
    if unknown:
        raise ValueError(f"unknown prior key(s) {sorted(unknown)}; valid: {sorted(PILOT_PRIORS)}")
    coords = {**data.coords, "recon": list(range(data.x.shape[2]))}
    with pm.Model(coords=coords) as model:
        x = pm.Data("x", data.x, dims=("item", "pilot", "recon"))
        n = pm.Data("n", data.n, dims=("item", "pilot", "recon"))
        logw = pm.Data("logw", data.logw, dims=("item", "pilot", "recon"))
        logc = pm.Data("logc", data.logc, dims=("item", "pilot", "recon"))
        mu = pm.Normal("mu", pr["mu_mean"], pr["mu_sd"], dims="item")
        sigma = pm.HalfNormal("sigma", pr["sigma_scale"], dims="item")
        z = pm.Normal("z", 0.0, 1.0, dims=("item", "pilot"))
        eta = pm.Deterministic("eta", mu[:, None] + sigma[:, None] * z, dims=("item", "pilot"))
        pm.Deterministic("p", pm.math.sigmoid(eta), dims=("item", "pilot"))
        log_p = -pt.softplus(-eta)[:, :, None]
        log_q = -pt.softplus(eta)[:, :, None]
        ll = logw + logc + x * log_p + (n - x) * log_q
        pm.Potential("printed_percentages", pm.math.logsumexp(ll, axis=-1).sum())
    return model


def pilot_summaries(idata: xr.DataTree, data: PilotData, *, best_pilot: str = "Pilot 8",
                    mid_pp: float = 5.0) -> pd.DataFrame:
    """Per item: P(each pilot is best), between-pilot spread (SD and range of p, in pp).

    ``mid_pp``: the range between pilots worth caring about; reports P(range > mid_pp).
    """
    p = idata["posterior"]["p"].stack(sample=("chain", "draw")).transpose("item", "pilot", "sample").values
    score = p * data.better[:, None, None]
    best = np.argmax(score, axis=1)  # (item, sample)
    sigma = idata["posterior"]["sigma"].stack(sample=("chain", "draw")).values
    rows = []
    for i, item in enumerate(data.items):
        sd_pp = 100 * p[i].std(axis=0, ddof=0)
        rng_pp = 100 * (p[i].max(axis=0) - p[i].min(axis=0))
        row: dict[str, Any] = {"table": data.tables[i], "item": item,
                               "better": "higher" if data.better[i] > 0 else "lower"}
        for j, pilot in enumerate(data.pilots):
            row[f"printed {pilot}"] = data.printed[i, j]
        for j, pilot in enumerate(data.pilots):
            row[f"P(best) {pilot}"] = float(np.mean(best[i] == j))
        printed_best = int(np.argmax(data.printed[i] * data.better[i]))
        row["P(best pilot is printed best)"] = float(np.mean(best[i] == printed_best))
        row["spread SD pp (mean)"] = float(sd_pp.mean())
        row["spread SD pp low95"], row["spread SD pp high95"] = (float(v) for v in np.quantile(sd_pp, [0.025, 0.975]))
        row["range pp (mean)"] = float(rng_pp.mean())
        row["range pp low95"], row["range pp high95"] = (float(v) for v in np.quantile(rng_pp, [0.025, 0.975]))
        row[f"P(range > {mid_pp:g} pp)"] = float(np.mean(rng_pp > mid_pp))
        row["sigma logit (mean)"] = float(sigma[i].mean())
        row["statement"] = state(row[f"P(best) {best_pilot}"], f"{best_pilot} is the best of the four on this item")
        rows.append(row)
    return pd.DataFrame(rows)


def simulate_percentages(p: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replicated printed percentages: ``round(100 Bin(n, p) / n)`` (``p`` has draws last)."""
    x = rng.binomial(n[..., None].astype(int), p)
    return np.floor(100.0 * x / n[..., None] + 0.5)


def pilot_predictive_checks(idata: xr.DataTree, data: PilotData, *, prior_p: np.ndarray | None = None,
                            seed: int = 0) -> dict[str, Any]:
    """Prior and posterior predictive checks of the printed percentages.

    Posterior: for each cell, where the printed percentage falls among replicated ones
    (``ppc_pvalue`` = P(rep <= printed), two-sided extremes flagged below 0.025 / above 0.975).
    Prior: the 2.5-97.5% range of replicated percentages over all cells.
    """
    rng = np.random.default_rng(seed)
    p = idata["posterior"]["p"].stack(sample=("chain", "draw")).transpose("item", "pilot", "sample").values
    rep = simulate_percentages(p, data.n_printed, rng)
    below = (rep < data.printed[..., None]).mean(axis=-1)
    equal = (rep == data.printed[..., None]).mean(axis=-1)
    pval = below + 0.5 * equal
    out: dict[str, Any] = {
        "posterior_cells": int(pval.size),
        "posterior_cells_outside_95": int(np.sum((pval < 0.025) | (pval > 0.975))),
        "posterior_ppc_pvalues": {f"{it} | {pl}": float(pval[i, j]) for i, it in enumerate(data.items)
                                  for j, pl in enumerate(data.pilots)},
    }
    if prior_p is not None:
        prep = simulate_percentages(prior_p, data.n_printed, rng)
        out["prior_percent_range_95"] = [float(v) for v in np.quantile(prep, [0.025, 0.975])]
        out["prior_printed_within_95"] = float(np.mean(
            (data.printed >= np.quantile(prep, 0.025, axis=-1)) & (data.printed <= np.quantile(prep, 0.975, axis=-1))))
    return out


def prior_pilot_p(data: PilotData, *, draws: int = 2000, seed: int = 0,
                  priors: dict[str, float] | None = None) -> np.ndarray:
    """Prior draws of ``p`` (item, pilot, draw), straight from the model's priors (NumPy)."""
    pr = {**PILOT_PRIORS, **(priors or {})}
    rng = np.random.default_rng(seed)
    ni, nj = data.x.shape[:2]
    mu = rng.normal(pr["mu_mean"], pr["mu_sd"], size=(ni, 1, draws))
    sigma = np.abs(rng.normal(0, pr["sigma_scale"], size=(ni, 1, draws)))
    z = rng.normal(size=(ni, nj, draws))
    return special.expit(mu + sigma * z)


# --------------------------------------------------------------------------------------
# tables of statements


def _fmt(x: float, unit: str) -> str:
    digits = 2 if "Yatchmenoff" in unit else 1
    return f"{x:+.{digits}f}"


def table8(published: Any, specs: Sequence[ResultSpec], grid: pd.DataFrame, *,
           strength: str = "moderate") -> pd.DataFrame:
    """"Table 8 re-analysed": the report's grade beside our statements, per DiD result and prior.

    One row per (result, prior family) at ``strength``; results of Table 8 without a printed
    estimate get one row saying so.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {STRENGTHS}, got '{strength}'")
    by_id = {s.result_id: s for s in specs}
    rows = []
    est = published.estimates
    for _, e in est[est["group"] == "did"].iterrows():
        base = {"indicator": e["table8_indicator"], "outcome": e["outcome"],
                "expected (MTM)": e.get("expected_printed"), "report's grade": e.get("verdict_printed")}
        spec = by_id.get(e["id"])
        if spec is None:
            rows.append({**base, "printed": "no estimate printed", "prior": "-", "posterior mean (95% CrI)": "-",
                         "P(benefit)": np.nan, "P(harm)": np.nan, "P(|effect| > MID)": np.nan,
                         "P(target met)": np.nan, "MID": np.nan, "target": np.nan, "result_id": e["id"],
                         "statement": "not re-analysable: " + (_text(e.get("estimate_note")) or "no estimate printed")})
            continue
        for family in FAMILIES:
            g = grid[(grid["result_id"] == spec.result_id) & (grid["prior"] == f"{family}-{strength}")].iloc[0]
            rows.append({
                **base, "printed": spec.printed, "prior": f"{family} ({strength})",
                "posterior mean (95% CrI)": f"{_fmt(g['mean'], spec.unit)} ({_fmt(g['low95'], spec.unit)} to "
                                            f"{_fmt(g['high95'], spec.unit)}) {spec.unit}",
                "P(benefit)": g["p_benefit"], "P(harm)": g["p_harm"], "P(|effect| > MID)": g["p_beyond_mid"],
                "P(target met)": g["p_target"], "MID": spec.mid, "target": g["target"],
                "result_id": spec.result_id, "statement": g["statement"],
            })
    return pd.DataFrame(rows)


def p_only_table(published: Any, *, prior_null: float = 0.5) -> pd.DataFrame:
    """Results printed with a p value only (WAI, LA-level): what the p value can and cannot say."""
    est = published.estimates
    rows = []
    for _, e in est[est["group"].isin(["wai", "la_level"]) & est["p_printed"].notna()].iterrows():
        p_int = cons.printed_interval(e["p_printed"])
        b = p_value_bounds(p_int, prior_null=prior_null)
        lo_txt = "0 (p may be arbitrarily small)" if b["p_lo"] == 0 else f"{b['p_null_min_lo']:.3f}"
        rows.append({
            "result_id": e["id"], "outcome": e["outcome"], "printed": e["p_printed"],
            "report's verdict": e.get("verdict_printed"),
            "min Bayes factor for no difference": f"{b['bf_min_lo']:.3f}-{b['bf_min_hi']:.3f}",
            f"min P(no difference) at prior {prior_null:g}": f"{lo_txt}-{b['p_null_min_hi']:.3f}",
            "bf_min_hi": b["bf_min_hi"], "p_null_min_hi": b["p_null_min_hi"],
            "note": _text(e.get("estimate_note")),
        })
    return pd.DataFrame(rows)
