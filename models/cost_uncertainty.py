r"""Monte Carlo cost model that carries posterior uncertainty about SofS's effects into costs.

The report (RR1054, 'Cost benefit') listed what the pilots spent but could not estimate savings.
This model puts every input on a distribution and pushes posterior draws of the DiD effects
through to the net cost of SofS per local authority (LA), so that statements such as
"P(SofS saves money)" can be made.

Model (per Monte Carlo draw :math:`i`, LA :math:`\ell`, all money at one price year)
-----------------------------------------------------------------------------------
Discount weights over a horizon of :math:`H` years at rate :math:`r`, with
:math:`w_t = (1+r)^{-t}`: :math:`W_g = w_0 + w_1` (grant years), :math:`W_o = \sum_{t=2}^{H-1} w_t`
(after the grant), and the discounted effect-years after an uncertain onset lag
:math:`\lambda_i \sim \text{Triangular}(a, c, b)` (default 0, 1, 5 years: the DiD measured the
effects after a settling-in period of up to 5 years),
:math:`W_e(\lambda_i) = \sum_{t=0}^{H-1} w_t \min(1, \max(0, t + 1 - \lambda_i))`: no effect on
costs before the lag, the full effect after it (:func:`effect_weights`).

Implementation:

.. math::

    D_{i\ell} &= G\,(1 + f_{i\ell})                                   && \text{direct spend, 2 years}\\
    d^{s}_i &= s_i (1 + o_i) / 220, \quad d^{m}_i = m_i (1 + o_i)/220  && \text{staff / manager day cost}\\
    I_{i\ell} &= \tfrac{W_g}{2}\big[D_{i\ell} + M_{i\ell} d^{m}_i + T_{i\ell}(d^{s}_i + \tau_i)\big]
               + W_o \tfrac{D_{i\ell}}{2}\big[\sigma_i \kappa_i + (1-\sigma_i)\nu_i\big]

with grant :math:`G`, internal funding share :math:`f`, salaries :math:`s, m`, on-costs :math:`o`,
management days :math:`M`, training days :math:`T` (2,550 split across LAs), travel and subsistence
per training day :math:`\tau`, staff share of spend :math:`\sigma`, and the shares of staff and
non-staff spend that continue after the grant, :math:`\kappa, \nu`.

Outcome consequences, with :math:`\Delta^{k}_i, \Delta^{r}_i` the *same* posterior draw
:math:`i` of the kinship and re-referral effects (percentage points):

.. math::

    K_{i\ell} &= -\tfrac{\Delta^{k}_i}{100} N_{i\ell}            && \text{children moved out of kinship care / year}\\
    C^{k}_{i\ell} &= W_e(\lambda_i)\, K_{i\ell}\, w^{p}_i \big(\textstyle\sum_j \pi_{ij} c_{ij} - c^{kin}_i\big)\\
    R_{i\ell} &= -\tfrac{\Delta^{r}_i}{100} Q_{i\ell}            && \text{re-referrals avoided / year}\\
    C^{r}_{i\ell} &= -W_e(\lambda_i)\, R_{i\ell}\, (c^{ref}_i + p_i c^{ass}_i)

with children entering care :math:`N`, weeks in placement :math:`w^p`, the non-kinship mix
:math:`\pi \sim \text{Dirichlet}` over in-house foster, agency foster and residential care with
weekly costs :math:`c_j`, kinship weekly cost :math:`c^{kin}`, closed cases :math:`Q`, and the
share :math:`p` of re-referrals that lead to an assessment. Net cost
:math:`\text{NC}_{i\ell} = I_{i\ell} + C^{k}_{i\ell} + C^{r}_{i\ell}`; SofS saves money in draw
:math:`i` when :math:`\sum_\ell \text{NC}_{i\ell} < 0`.

Assumptions
-----------
- Perspective: public sector (DfE grant plus LA spending); outcomes count only through the costs
  they cause (no monetary value on a child's wellbeing).
- The DiD effect (an average effect on the treated) applies equally in every LA and every year of
  the horizon after the onset lag; effects and costs are discounted at the same rate (3.5%, 1.5%
  as a sensitivity).
- Unit costs are inflated to the price year with the GDP deflator in :mod:`data.cost_inputs`.
- Inputs are independent across parameters; per-LA inputs are independent across LAs.
- Every quantity for draw :math:`i` uses one posterior draw :math:`j(i)` of each effect
  (:math:`S` posterior draws, chain-major): :math:`j = i \bmod S` when :math:`n \ge S`, else
  :math:`j = \lfloor i S / n \rfloor` (thinned evenly across all chains); no shuffling.

Value of information
--------------------
With :math:`\text{INB}_i = -\sum_\ell \text{NC}_{i\ell}` (money saved by adopting SofS in the
pilots), EVPI :math:`= \overline{\max(\text{INB}, 0)} - \max(\overline{\text{INB}}, 0)` and the
EVPPI of each input and of groups of 2-4 inputs (:data:`EVPPI_GROUPS`) by nonparametric
regression with standard error and noise floor (:mod:`models.cost_voi`: P-spline /
tensor-product P-spline with GCV smoothing, SE from the coefficients' posterior as BCEA and voi
compute it, plus the outer Monte Carlo error). :func:`ceac_table` gives the cost-effectiveness
acceptability over willingness to pay per child kept in kinship care and per re-referral
avoided; :func:`evsi_trial` the expected value of sample information of a new
cluster-randomised trial for a population of LAs (model in its docstring).
"""

from __future__ import annotations

import zlib

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models import cost_voi as voi
from data.cost_inputs import (
    DEFLATOR,
    INPUTS,
    PUBLISHED_EFFECTS,
    Input,
    LAVolumes,
    UnitCost,
)

Z975 = 1.959963984540054
#: Expected range of n standard normal draws (d2 of quality control), for a log-sd from a range.
D2 = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847, 9: 2.970, 10: 3.078}
PLACEMENTS = ("in_house", "agency", "residential")
UNKNOWN_INTERNAL = ("mixture", "none", "reported")
COMPONENTS = ("implementation", "kinship_cost", "rereferral_cost", "net")
DEFAULT_LAS = tuple(f"LA-{c}" for c in "ABCDEFGHI")


def _rng(seed: int, name: str) -> np.random.Generator:
    """An independent stream per named quantity: adding an input never changes the others."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


# ------------------------------------------------------------------------------------------
# Settings and effect draws
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostSettings:
    """Choices that are not inputs: price year, horizon, discounting, the unknown-funding rule.

    ``horizon_years`` counts the 2 grant years; years after them carry ongoing costs. Every year
    of the horizon carries the outcome consequences.
    """

    price_year: int = 2019
    horizon_years: int = 5
    discount_rate: float = 0.035
    sensitivity_rate: float = 0.015
    unknown_internal: str = "mixture"
    deflator: Mapping[int, float] = field(default_factory=lambda: dict(DEFLATOR))
    #: Onset lag (years from the start of the horizon before the effects change costs):
    #: triangular (min, mode, max); ``(0, 0, 0)`` applies the effects from year 0.
    onset_lag: tuple[float, float, float] = (0.0, 1.0, 5.0)

    def __post_init__(self) -> None:
        if self.price_year not in self.deflator:
            raise ValueError(f"price year {self.price_year} is outside the deflator's years "
                             f"{min(self.deflator)}-{max(self.deflator)}")
        if not isinstance(self.horizon_years, (int, np.integer)) or self.horizon_years < 2:
            raise ValueError(f"horizon_years must be an integer >= 2 (the grant lasts 2 years), got {self.horizon_years}")
        for name in ("discount_rate", "sensitivity_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {rate}")
        lag = tuple(float(x) for x in self.onset_lag)
        if len(lag) != 3 or not (0.0 <= lag[0] <= lag[1] <= lag[2]) or not all(np.isfinite(lag)):
            raise ValueError(f"onset_lag must be (min, mode, max) years with 0 <= min <= mode <= max, got {self.onset_lag}")
        object.__setattr__(self, "onset_lag", lag)
        if self.unknown_internal not in UNKNOWN_INTERNAL:
            raise ValueError(f"unknown_internal must be one of {list(UNKNOWN_INTERNAL)}, got '{self.unknown_internal}'")

    @property
    def rates(self) -> tuple[float, ...]:
        return (self.discount_rate,) if self.sensitivity_rate == self.discount_rate else (
            self.discount_rate, self.sensitivity_rate)

    def inflator(self, price_year: int) -> float:
        """Multiply a cost in ``price_year`` money by this to express it at ``self.price_year``."""
        return float(self.deflator[self.price_year] / self.deflator[price_year])


@dataclass(frozen=True)
class EffectDraws:
    """Draws of one DiD effect in percentage points, and where they came from."""

    outcome: str
    draws: np.ndarray
    kind: str  # "posterior" or "published-normal-approximation"
    source: str

    #: Optional population-level draws aligned with ``draws`` (same posterior draw per index):
    #: ``mu_pp`` (mean effect over LAs) and ``sigma_pp`` (between-LA SD), percentage points.
    population: Mapping[str, np.ndarray] | None = None

    def index(self, n: int) -> np.ndarray:
        """Which effect draw each of ``n`` Monte Carlo draws uses.

        With ``n >= S`` posterior draws, draw ``i`` uses ``i mod S``; with fewer, the draws are
        thinned evenly over the whole chain-major sequence, ``floor(i S / n)``, so that every
        chain contributes (not only the first ones).
        """
        S = self.draws.size
        i = np.arange(n)
        return i % S if n >= S else (i * S) // n

    def aligned(self, n: int) -> np.ndarray:
        """The effect draws for ``n`` Monte Carlo draws (see :meth:`index`; no shuffling)."""
        return self.draws[self.index(n)]

    def aligned_population(self, n: int) -> dict[str, np.ndarray] | None:
        """``mu_pp`` and ``sigma_pp`` for ``n`` Monte Carlo draws, the same posterior draws as
        :meth:`aligned`; None when the source has no population-level draws."""
        if self.population is None:
            return None
        idx = self.index(n)
        return {k: np.asarray(v, float)[idx] for k, v in self.population.items()}


def published_effect_draws(outcome: str, n: int, seed: int) -> EffectDraws:
    """Normal approximation to a published estimate: ``N(estimate, se)``, se implied by the p value.

    This is the posterior under a flat prior when the estimate's sampling distribution is
    normal; it is *not* the posterior of the project's own re-analysis (pass a posterior file
    for that).
    """
    if outcome not in PUBLISHED_EFFECTS:
        raise ValueError(f"unknown outcome '{outcome}'; choose from {list(PUBLISHED_EFFECTS)}")
    pub = PUBLISHED_EFFECTS[outcome]
    draws = _rng(seed, f"effect:{outcome}").normal(pub.estimate_pp, pub.se_pp, size=n)
    source = (f"normal approximation to the published estimate {pub.estimate_pp:+.2f} pp "
              f"(p = {pub.p_value:g}, implied SE {pub.se_pp:.2f} pp; flat prior): not a posterior from this toolkit")
    return EffectDraws(outcome, draws, "published-normal-approximation", source)


def posterior_effect_draws(outcome: str, draws: np.ndarray, path: str, *,
                           population: Mapping[str, np.ndarray] | None = None) -> EffectDraws:
    """Wrap draws read from a posterior file (see :func:`data.cost_inputs.load_effect_draws`)."""
    draws = np.asarray(draws, dtype=float).ravel()
    if population is not None:
        population = {k: np.asarray(v, float).ravel() for k, v in population.items()}
        bad = [k for k, v in population.items() if v.size != draws.size]
        if bad:
            raise ValueError(f"population draws {bad} do not have the {draws.size} draws of att")
    return EffectDraws(outcome, draws, "posterior", f"posterior draws of att from {path} ({draws.size} draws)",
                       population)


def effect_diagnostics(tree: Any, var: str = "att") -> dict[str, Any]:
    """Sampling diagnostics of a posterior file's effect (R-hat, ESS; divergences and E-BFMI
    when the file has a ``sample_stats`` group), with the project's thresholds and a banner."""
    from models.diagnostics import ESS_MIN, RHAT_MAX, check_sampling

    if "sample_stats" in tree.children:
        d = check_sampling(tree, [var])
        return {"ok": d.ok, "problems": list(d.problems), "banner": d.banner(), "details": d.to_dict()}
    import arviz as az

    rhat = float(np.nanmax(az.rhat(tree, var_names=[var]).dataset[var].values))
    ess_bulk = float(np.nanmin(az.ess(tree, var_names=[var], method="bulk").dataset[var].values))
    ess_tail = float(np.nanmin(az.ess(tree, var_names=[var], method="tail").dataset[var].values))
    problems = []
    if not rhat <= RHAT_MAX:
        problems.append(f"R-hat {rhat:.3f} > {RHAT_MAX} for '{var}'")
    for label, value in (("bulk", ess_bulk), ("tail", ess_tail)):
        if not value >= ESS_MIN:
            problems.append(f"{label} ESS {value:.0f} < {ESS_MIN} for '{var}'")
    note = "no sample_stats group: divergences and E-BFMI not checked"
    if problems:
        bar = "!" * 72
        banner = "\n".join([bar, "!! POSTERIOR DIAGNOSTICS FAILED for the effect file", *[f"!!  - {p}" for p in problems],
                            f"!!  ({note})", bar])
    else:
        banner = f"Diagnostics passed: R-hat {rhat:.3f}, bulk ESS {ess_bulk:.0f}, tail ESS {ess_tail:.0f} ({note})."
    return {"ok": not problems, "problems": problems, "banner": banner,
            "details": {"rhat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "note": note}}


# ------------------------------------------------------------------------------------------
# Parameter draws
# ------------------------------------------------------------------------------------------

#: Shape of each parameter: "draw" (n,), "la" (n, L) or "mix" (n, 3).
PARAMETER_SHAPES: dict[str, str] = {
    "kinship_pp": "draw", "rereferral_pp": "draw",
    "internal_share": "la", "management_days": "la", "training_days": "la",
    "children_entering_care": "la", "closed_cases": "la",
    "staff_salary": "draw", "manager_salary": "draw", "salary_oncost": "draw", "tns_per_training_day": "draw",
    "staff_share": "draw", "staff_continuing": "draw", "nonstaff_continuing": "draw",
    "weeks_in_placement": "draw", "non_kinship_mix": "mix", "p_assessment": "draw",
    "in_house_foster_week": "draw", "agency_foster_week": "draw", "residential_week": "draw",
    "kinship_week": "draw", "referral": "draw", "assessment": "draw",
    "grant_per_la": "draw", "working_days": "draw", "onset_lag": "draw",
}  # fmt: skip
#: Parameters a hand-built :class:`CostDraws` may leave out, and their value then.
OPTIONAL_PARAMETERS: dict[str, float] = {"onset_lag": 0.0}


@dataclass
class CostDraws:
    """Parameter draws: ``values[name]`` has shape (draw,), (draw, la) or (draw, placement).

    Build it with :func:`sample_parameters`, or by hand (a deterministic case) with every name in
    :data:`PARAMETER_SHAPES`; a scalar is broadcast to one draw.
    """

    las: tuple[str, ...]
    values: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        self.values = {**OPTIONAL_PARAMETERS, **self.values}
        missing = [k for k in PARAMETER_SHAPES if k not in self.values]
        if missing:
            raise ValueError(f"CostDraws lacks parameter(s) {missing}")
        n_la = len(self.las)
        vals = {}
        for k, v in self.values.items():
            a = np.asarray(v, dtype=float)
            shape = PARAMETER_SHAPES.get(k, "draw")
            if shape == "draw":
                a = a.reshape(-1)
            elif shape == "la":
                # a scalar is the same in every LA; a 1-D array is one draw's per-LA values
                a = np.full((1, n_la), float(a)) if a.ndim == 0 else (a[None, :] if a.ndim == 1 else a)
            else:
                a = a.reshape(-1, len(PLACEMENTS))
            vals[k] = a
        n = max(a.shape[0] for a in vals.values())
        for k, a in vals.items():
            if a.shape[0] not in (1, n):
                raise ValueError(f"parameter '{k}' has {a.shape[0]} draws, expected {n}")
            if a.shape[0] == 1 and n > 1:
                vals[k] = np.repeat(a, n, axis=0)
            if PARAMETER_SHAPES.get(k) == "la" and vals[k].shape[1] != n_la:
                raise ValueError(f"parameter '{k}' has {vals[k].shape[1]} LAs, expected {n_la}")
        self.values = vals

    @property
    def n(self) -> int:
        return next(iter(self.values.values())).shape[0]

    def take(self, index: int | np.ndarray) -> "CostDraws":
        idx = np.atleast_1d(index)
        return CostDraws(self.las, {k: v[idx] for k, v in self.values.items()})

    def mean(self) -> "CostDraws":
        """One 'draw' holding every parameter at its mean (the deterministic base case)."""
        return CostDraws(self.las, {k: v.mean(axis=0, keepdims=True) for k, v in self.values.items()})

    def replace(self, **arrays: np.ndarray) -> "CostDraws":
        vals = dict(self.values)
        vals.update(arrays)
        return CostDraws(self.las, vals)

    def to_dataset(self) -> Any:
        """The draws as an ``xarray.Dataset`` with dims (draw, la, placement)."""
        import xarray as xr

        dims = {"draw": ("draw",), "la": ("draw", "la"), "mix": ("draw", "placement")}
        return xr.Dataset(
            {k: (dims[PARAMETER_SHAPES.get(k, "draw")], v) for k, v in self.values.items()},
            coords={"draw": np.arange(self.n), "la": list(self.las), "placement": list(PLACEMENTS)},
        )


def draw_unit_cost(cost: UnitCost, n: int, seed: int) -> np.ndarray:
    """Draws of one unit cost in its own price year's money."""
    rng = _rng(seed, f"unit_cost:{cost.item}")
    if cost.distribution == "fixed":
        return np.full(n, cost.value)
    lo, hi = float(cost.low), float(cost.high)  # type: ignore[arg-type]
    if cost.distribution == "lognormal":
        sigma = np.log(hi / lo) / (2 * Z975)
        return np.exp(rng.normal(np.log(cost.value), sigma, size=n))
    if cost.distribution == "uniform":
        return rng.uniform(lo, hi, size=n)
    if cost.distribution == "pert":
        a = 1 + 4 * (cost.value - lo) / (hi - lo)
        b = 1 + 4 * (hi - cost.value) / (hi - lo)
        return lo + (hi - lo) * rng.beta(a, b, size=n)
    raise ValueError(f"unknown distribution '{cost.distribution}' for '{cost.item}'")


def draw_input(spec: Input, size: int | tuple[int, ...], seed: int) -> np.ndarray:
    """Draws of one non-cost input from its documented distribution."""
    rng = _rng(seed, f"input:{spec.name}")
    p = spec.params
    d = spec.distribution
    if d == "fixed":
        return np.full(size, float(p["value"]))
    if d == "uniform":
        return rng.uniform(p["low"], p["high"], size=size)
    if d == "beta":
        if "mean" in p:
            a, b = p["mean"] * p["concentration"], (1 - p["mean"]) * p["concentration"]
        else:
            a, b = p["a"], p["b"]
        return rng.beta(a, b, size=size)
    if d == "lognormal_median_range":
        sigma = np.log(p["high"] / p["low"]) / (2 * Z975)
        return np.exp(rng.normal(np.log(p["median"]), sigma, size=size))
    if d == "lognormal_mean_range":
        sigma = np.log(p["high"] / p["low"]) / D2[int(p["n"])]
        return np.exp(rng.normal(np.log(p["mean"]) - sigma**2 / 2, sigma, size=size))
    raise ValueError(f"input '{spec.name}': distribution '{d}' is not drawn by draw_input")


def internal_groups(n_la: int) -> list[str]:
    """Which answer each default pilot gave about internal funding (5 some, 2 none, 2 unknown).

    The report does not say which pilot is which; the order here is arbitrary.
    """
    counts = INPUTS["internal_counts"].params
    groups = ["reported"] * int(counts["reported"]) + ["none"] * int(counts["none"]) + ["unknown"] * int(counts["unknown"])
    if n_la != len(groups):
        return ["unknown"] * n_la
    return groups


def sample_parameters(
    unit_costs: Mapping[str, UnitCost],
    *,
    effects: Mapping[str, EffectDraws],
    n_draws: int,
    seed: int,
    settings: CostSettings,
    volumes: LAVolumes | None = None,
    inputs: Mapping[str, Input] = INPUTS,
) -> CostDraws:
    """Draw every input ``n_draws`` times (reproducibly from ``seed``).

    Parameters
    ----------
    unit_costs
        Validated unit-cost rows (:func:`data.cost_inputs.load_unit_costs`); inflated here to
        ``settings.price_year``.
    effects
        ``{"kinship": EffectDraws, "rereferral": EffectDraws}`` in percentage points.
    volumes
        Optional per-LA counts and internal-funding shares supplied by the user; their LAs
        replace the 9 default pilots, blanks fall back to the default distributions.
    """
    if not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws must be a positive integer, got {n_draws!r}")
    for outcome in ("kinship", "rereferral"):
        if outcome not in effects:
            raise ValueError(f"effects lacks '{outcome}'")
    n = int(n_draws)
    las = DEFAULT_LAS if volumes is None else volumes.las
    L = len(las)
    v: dict[str, np.ndarray] = {
        "kinship_pp": effects["kinship"].aligned(n),
        "rereferral_pp": effects["rereferral"].aligned(n),
    }
    for item, cost in unit_costs.items():
        v[item] = draw_unit_cost(cost, n, seed) * settings.inflator(cost.price_year)

    # internal funding as a share of the grant, per LA
    reported = inputs["internal_share_reported"].params
    rng = _rng(seed, "input:internal_share")
    share_some = rng.uniform(reported["low"], reported["high"], size=(n, L))
    is_none = rng.random((n, L)) < inputs["internal_unknown_rule"].params["p_none"]
    groups = internal_groups(L) if volumes is None else ["unknown"] * L
    internal = np.zeros((n, L))
    for j, g in enumerate(groups):
        if g == "reported" or (g == "unknown" and settings.unknown_internal == "reported"):
            internal[:, j] = share_some[:, j]
        elif g == "unknown" and settings.unknown_internal == "mixture":
            internal[:, j] = np.where(is_none[:, j], 0.0, share_some[:, j])
    if volumes is not None:
        given = ~np.isnan(volumes.internal_share)
        internal[:, given] = volumes.internal_share[given]
    v["internal_share"] = internal

    v["management_days"] = draw_input(inputs["management_days"], (n, L), seed)
    split = inputs["training_days_total"].params
    v["training_days"] = split["total"] * _rng(seed, "input:training_days").dirichlet(np.full(L, split["alpha"]), size=n)
    for name in ("children_entering_care", "closed_cases"):
        arr = draw_input(inputs[name], (n, L), seed)
        if volumes is not None:
            given = getattr(volumes, name)
            mask = ~np.isnan(given)
            arr[:, mask] = given[mask]
        v[name] = arr
    for name in ("salary_oncost", "working_days", "staff_share", "staff_continuing", "nonstaff_continuing",
                 "weeks_in_placement", "p_assessment"):
        v[name] = draw_input(inputs[name], n, seed)
    lo, mode, hi = settings.onset_lag
    v["onset_lag"] = (np.full(n, lo) if hi == lo else
                      _rng(seed, "input:onset_lag").triangular(lo, mode, hi, size=n))
    mix = inputs["non_kinship_mix"].params
    alpha = np.array([mix[k] for k in PLACEMENTS]) * mix["concentration"]
    v["non_kinship_mix"] = _rng(seed, "input:non_kinship_mix").dirichlet(alpha, size=n)
    return CostDraws(tuple(las), v)


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def effect_weights(horizon_years: int, rate: float, lag: np.ndarray) -> np.ndarray:
    r"""Discounted effect-years per draw after an onset lag :math:`\lambda` (years):
    :math:`W_e(\lambda) = \sum_{t=0}^{H-1} w_t \min(1, \max(0, t + 1 - \lambda))` (the share
    of year t after the lag counts; :math:`\lambda = 0` gives :math:`W_e`)."""
    lag = np.asarray(lag, dtype=float).reshape(-1)
    t = np.arange(horizon_years, dtype=float)
    w = (1.0 + rate) ** -t
    return (w[None, :] * np.clip(t[None, :] + 1.0 - lag[:, None], 0.0, 1.0)).sum(axis=1)


def discount_weights(horizon_years: int, rate: float) -> tuple[float, float, float]:
    """``(W_grant, W_ongoing, W_effect)``: summed discount factors for years 0-1, 2..H-1, 0..H-1."""
    w = (1.0 + rate) ** -np.arange(horizon_years, dtype=float)
    return float(w[:2].sum()), float(w[2:].sum()), float(w.sum())


@dataclass
class CostOutcomes:
    """Present values per draw and LA (shape (draw, la)), at one discount rate.

    Costs are positive when SofS adds cost; ``kinship_children_kept`` is positive when SofS keeps
    more children in kinship care and ``rereferrals_avoided`` positive when it prevents
    re-referrals (both discounted like costs, summed over the horizon).
    """

    las: tuple[str, ...]
    discount_rate: float
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def total(self, name: str) -> np.ndarray:
        return self.arrays[name].sum(axis=1)


def evaluate(draws: CostDraws, settings: CostSettings, *, discount_rate: float | None = None) -> CostOutcomes:
    """Net cost of SofS per draw and LA (see the module docstring for the equations)."""
    rate = settings.discount_rate if discount_rate is None else discount_rate
    Wg, Wo, _ = discount_weights(settings.horizon_years, rate)
    p = draws.values
    We = effect_weights(settings.horizon_years, rate, p["onset_lag"])[:, None]   # (draw, 1)
    col = lambda name: p[name][:, None]  # noqa: E731 - per-draw scalar broadcast over LAs

    direct = col("grant_per_la") * (1.0 + p["internal_share"])           # 2-year direct spend
    staff_day = col("staff_salary") * (1.0 + col("salary_oncost")) / col("working_days")
    manager_day = col("manager_salary") * (1.0 + col("salary_oncost")) / col("working_days")
    impl_direct = Wg * direct / 2.0
    impl_management = Wg * p["management_days"] * manager_day / 2.0
    impl_training = Wg * p["training_days"] * (staff_day + col("tns_per_training_day")) / 2.0
    continuing = col("staff_share") * col("staff_continuing") + (1.0 - col("staff_share")) * col("nonstaff_continuing")
    impl_ongoing = Wo * direct / 2.0 * continuing
    implementation = impl_direct + impl_management + impl_training + impl_ongoing

    placement_costs = np.stack([p["in_house_foster_week"], p["agency_foster_week"], p["residential_week"]], axis=1)
    non_kin_week = np.einsum("ij,ij->i", p["non_kinship_mix"], placement_costs)
    extra_per_child = (p["weeks_in_placement"] * (non_kin_week - p["kinship_week"]))[:, None]
    moved_out = -col("kinship_pp") / 100.0 * p["children_entering_care"]   # per year
    kinship_cost = We * moved_out * extra_per_child

    avoided = -col("rereferral_pp") / 100.0 * p["closed_cases"]            # per year
    per_rereferral = (p["referral"] + p["p_assessment"] * p["assessment"])[:, None]
    rereferral_cost = -We * avoided * per_rereferral

    arrays = {
        "impl_direct": impl_direct, "impl_management": impl_management, "impl_training": impl_training,
        "impl_ongoing": impl_ongoing, "implementation": implementation,
        "kinship_cost": kinship_cost, "rereferral_cost": rereferral_cost,
        "net": implementation + kinship_cost + rereferral_cost,
        "kinship_children_kept": -We * moved_out, "rereferrals_avoided": We * avoided,
    }  # fmt: skip
    return CostOutcomes(draws.las, rate, arrays)


# ------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------


def describe_draws(x: np.ndarray) -> dict[str, float]:
    """Mean, median, 95% equal-tailed interval, P(< 0) and the Monte Carlo SE of the mean."""
    x = np.asarray(x, dtype=float)
    lo, hi = np.quantile(x, [0.025, 0.975])
    return {
        "mean": float(x.mean()), "median": float(np.median(x)), "eti95_low": float(lo), "eti95_high": float(hi),
        "p_negative": float(np.mean(x < 0)), "mcse_mean": float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0,
    }  # fmt: skip


def by_la_table(outcomes: CostOutcomes) -> pd.DataFrame:
    """Long table: one row per (LA or 'Total', component) with mean, 95% ETI and P(< 0)."""
    rows = []
    for comp in COMPONENTS:
        arr = outcomes[comp]
        for j, la in enumerate(outcomes.las):
            rows.append({"discount_rate": outcomes.discount_rate, "la": la, "component": comp, **describe_draws(arr[:, j])})
        rows.append({"discount_rate": outcomes.discount_rate, "la": "Total", "component": comp,
                     **describe_draws(arr.sum(axis=1))})
    return pd.DataFrame(rows)


def cost_per_unit(net_total: np.ndarray, effect_total: np.ndarray, *, unit: str) -> dict[str, Any]:
    """Cost per unit of effect, only where the effect has the intended (positive) sign.

    ``ratio_of_means`` is E[net cost] / E[effect], reported when E[effect] > 0; the conditional
    median and 95% interval of the per-draw ratio use only draws whose effect is positive (and
    are labelled so). With the wrong sign the ratio is not reported: "cost per child kept in
    kinship care" means nothing when SofS keeps fewer children in kinship care.
    """
    net_total = np.asarray(net_total, float)
    effect_total = np.asarray(effect_total, float)
    right = effect_total > 0
    out: dict[str, Any] = {"unit": unit, "p_right_sign": float(right.mean()),
                           "mean_effect": float(effect_total.mean()), "defined": bool(effect_total.mean() > 0)}
    out["ratio_of_means"] = float(net_total.mean() / effect_total.mean()) if out["defined"] else None
    if right.sum() >= 2:
        ratio = net_total[right] / effect_total[right]
        lo, med, hi = np.quantile(ratio, [0.025, 0.5, 0.975])
        out.update(conditional_median=float(med), conditional_eti95_low=float(lo), conditional_eti95_high=float(hi))
    else:
        out.update(conditional_median=None, conditional_eti95_low=None, conditional_eti95_high=None)
    return out


# ------------------------------------------------------------------------------------------
# Which uncertainty matters: parameter groups, one-way sensitivity, EVPPI
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterGroup:
    """One uncertain quantity for sensitivity analysis, summarised by a scalar per draw.

    Per-LA inputs enter the total net cost additively, so their sum across LAs carries all of
    their information about the total (and is what EVPPI regresses on). The placement mix enters
    through ``mix . E[weekly costs]``.
    """

    name: str
    label: str
    keys: tuple[str, ...]
    summary: Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _one(key: str) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    return lambda v: v[key]


def _sum(key: str) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    return lambda v: v[key].sum(axis=1)


def _mix_cost(v: Mapping[str, np.ndarray]) -> np.ndarray:
    means = np.array([v["in_house_foster_week"].mean(), v["agency_foster_week"].mean(), v["residential_week"].mean()])
    return v["non_kinship_mix"] @ means


PARAMETER_GROUPS: tuple[ParameterGroup, ...] = (
    ParameterGroup("kinship_pp", "Kinship care effect (pp)", ("kinship_pp",), _one("kinship_pp")),
    ParameterGroup("rereferral_pp", "Re-referral effect (pp)", ("rereferral_pp",), _one("rereferral_pp")),
    ParameterGroup("internal_share", "Internal funding (all LAs)", ("internal_share",), _sum("internal_share")),
    ParameterGroup("management_days", "Management days (all LAs)", ("management_days",), _sum("management_days")),
    ParameterGroup("staff_salary", "SofS staff salary", ("staff_salary",), _one("staff_salary")),
    ParameterGroup("manager_salary", "Manager salary", ("manager_salary",), _one("manager_salary")),
    ParameterGroup("salary_oncost", "Salary on-costs", ("salary_oncost",), _one("salary_oncost")),
    ParameterGroup("tns_per_training_day", "Travel & subsistence per training day", ("tns_per_training_day",),
                   _one("tns_per_training_day")),
    ParameterGroup("staff_share", "Staff share of spend", ("staff_share",), _one("staff_share")),
    ParameterGroup("staff_continuing", "Staff continuing after grant", ("staff_continuing",), _one("staff_continuing")),
    ParameterGroup("nonstaff_continuing", "Non-staff spend continuing", ("nonstaff_continuing",),
                   _one("nonstaff_continuing")),
    ParameterGroup("children_entering_care", "Children entering care (all LAs)", ("children_entering_care",),
                   _sum("children_entering_care")),
    ParameterGroup("closed_cases", "Closed cases (all LAs)", ("closed_cases",), _sum("closed_cases")),
    ParameterGroup("weeks_in_placement", "Weeks in placement, first year", ("weeks_in_placement",),
                   _one("weeks_in_placement")),
    ParameterGroup("non_kinship_mix", "Non-kinship placement mix", ("non_kinship_mix",), _mix_cost),
    ParameterGroup("in_house_foster_week", "In-house foster care (weekly)", ("in_house_foster_week",),
                   _one("in_house_foster_week")),
    ParameterGroup("agency_foster_week", "Agency foster care (weekly)", ("agency_foster_week",),
                   _one("agency_foster_week")),
    ParameterGroup("residential_week", "Residential care (weekly)", ("residential_week",), _one("residential_week")),
    ParameterGroup("kinship_week", "Kinship care (weekly)", ("kinship_week",), _one("kinship_week")),
    ParameterGroup("referral", "Referral unit cost", ("referral",), _one("referral")),
    ParameterGroup("assessment", "Assessment unit cost", ("assessment",), _one("assessment")),
    ParameterGroup("p_assessment", "Re-referrals assessed (share)", ("p_assessment",), _one("p_assessment")),
    ParameterGroup("onset_lag", "Onset lag before effects change costs (years)", ("onset_lag",), _one("onset_lag")),
)


def _varying(groups: tuple[ParameterGroup, ...], draws: CostDraws) -> list[tuple[ParameterGroup, np.ndarray]]:
    out = []
    for g in groups:
        s = np.asarray(g.summary(draws.values), dtype=float)
        if s.size > 1 and np.ptp(s) > 1e-12 * max(1.0, float(np.abs(s).max())):
            out.append((g, s))
    return out


def one_way(draws: CostDraws, settings: CostSettings, *, groups: tuple[ParameterGroup, ...] = PARAMETER_GROUPS,
            discount_rate: float | None = None, quantiles: tuple[float, float] = (0.025, 0.975)) -> pd.DataFrame:
    """Tornado table: total net cost with one input at its low / high value, the rest at their means.

    Low and high are the draws whose summary lies at the 2.5% and 97.5% quantiles (for per-LA
    inputs, the whole LA vector of that draw), so a group keeps its internal structure.
    """
    base_draws = draws.mean()
    base = float(evaluate(base_draws, settings, discount_rate=discount_rate).total("net")[0])
    rows = []
    for g, s in _varying(groups, draws):
        q_lo, q_hi = np.quantile(s, quantiles)
        i_lo, i_hi = int(np.argmin(np.abs(s - q_lo))), int(np.argmin(np.abs(s - q_hi)))
        nets = []
        for i in (i_lo, i_hi):
            changed = base_draws.replace(**{k: draws.values[k][i:i + 1] for k in g.keys})
            nets.append(float(evaluate(changed, settings, discount_rate=discount_rate).total("net")[0]))
        rows.append({"parameter": g.name, "label": g.label, "low_value": float(s[i_lo]), "high_value": float(s[i_hi]),
                     "net_at_low": nets[0], "net_at_high": nets[1], "base": base,
                     "swing": abs(nets[1] - nets[0])})
    table = pd.DataFrame(rows)
    return table.sort_values("swing", ascending=False, ignore_index=True) if len(table) else table


def evpi(inb: np.ndarray) -> float:
    """Expected value of perfect information for adopt-vs-not: E[max(INB, 0)] - max(E[INB], 0)."""
    return voi.evpi(inb)


def evppi_estimate(inb: np.ndarray, s: np.ndarray, *, seed: int = 0, se_draws: int = voi.SE_DRAWS) -> voi.VoiEstimate:
    """EVPPI of the parameter(s) in ``s`` ((n,) or (n, d), d <= 4) with SE and noise floor
    (:func:`models.cost_voi.regression_voi`: P-spline / tensor-product P-spline regression)."""
    return voi.regression_voi(inb, s, seed=seed, se_draws=se_draws)


def evppi_regression(inb: np.ndarray, s: np.ndarray, **kw: Any) -> float:
    """The EVPPI value alone (see :func:`evppi_estimate`)."""
    return evppi_estimate(inb, s, **kw).value


#: Parameter groups valued together (by the names in :data:`PARAMETER_GROUPS`).
EVPPI_GROUPS: dict[str, tuple[str, ...]] = {
    "effects": ("kinship_pp", "rereferral_pp"),
    "effects_and_onset": ("kinship_pp", "rereferral_pp", "onset_lag"),
    "placement_unit_costs": ("in_house_foster_week", "agency_foster_week", "residential_week", "kinship_week"),
    "volumes": ("children_entering_care", "closed_cases"),
    "re_referral_costs": ("referral", "assessment", "p_assessment"),
}
EVPPI_GROUP_LABELS = {
    "effects": "Both effects (kinship, re-referral)",
    "effects_and_onset": "Both effects and the onset lag",
    "placement_unit_costs": "Placement unit costs (4 weekly costs)",
    "volumes": "Volumes (children entering care, closed cases)",
    "re_referral_costs": "Re-referral costs (referral, assessment, share assessed)",
}


def _summaries(draws: CostDraws, names: tuple[str, ...]) -> np.ndarray | None:
    by_name = {g.name: g for g in PARAMETER_GROUPS}
    cols = [np.asarray(by_name[k].summary(draws.values), float) for k in names]
    cols = [c for c in cols if c.size > 1 and np.ptp(c) > 1e-12 * max(1.0, float(np.abs(c).max()))]
    return np.column_stack(cols) if cols else None


def evppi_table(draws: CostDraws, outcomes: CostOutcomes, *, groups: tuple[ParameterGroup, ...] = PARAMETER_GROUPS,
                multi: Mapping[str, tuple[str, ...]] | None = None, seed: int = 0,
                se_draws: int = voi.SE_DRAWS) -> pd.DataFrame:
    """EVPPI (GBP, all LAs) per parameter and per group, ranked, with SE, noise floor and EVPI.

    INB is the money saved by adopting SofS (``-`` total net cost); the decision is adopt or
    not. ``multi`` (default :data:`EVPPI_GROUPS`) lists groups valued jointly; a group member
    that does not vary is dropped from it.
    """
    multi = EVPPI_GROUPS if multi is None else multi
    inb = -outcomes.total("net")
    total = evpi(inb)
    rows = []

    def add(name: str, label: str, members: tuple[str, ...], s: np.ndarray) -> None:
        est = evppi_estimate(inb, s, seed=seed + len(rows), se_draws=se_draws)
        rows.append({"parameter": name, "label": label, "kind": "single" if len(members) == 1 else "group",
                     "members": "+".join(members), "evppi": est.value, "se": est.se,
                     "se_regression": est.se_regression, "se_monte_carlo": est.se_monte_carlo,
                     "noise_floor": est.noise_floor, "above_noise_floor": est.above_noise_floor,
                     "share_of_evpi": est.value / total if total > 0 else 0.0, "method": est.method})

    for g, s in _varying(groups, draws):
        add(g.name, g.label, (g.name,), s)
    for name, members in multi.items():
        s = _summaries(draws, members)
        if s is not None and s.shape[1] >= 2:
            add(name, EVPPI_GROUP_LABELS.get(name, name), members, s)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("evppi", ascending=False, ignore_index=True)
        table.insert(0, "rank", np.arange(1, len(table) + 1))
    table.attrs["evpi"] = total
    table.attrs["evpi_se"] = voi.evpi_se(inb)
    return table


# ------------------------------------------------------------------------------------------
# Cost-effectiveness acceptability
# ------------------------------------------------------------------------------------------

#: Default willingness-to-pay grids (GBP per child kept in kinship care, per re-referral avoided).
WTP_KINSHIP = tuple(float(x) for x in np.linspace(0, 200_000, 21))
WTP_REREFERRAL = tuple(float(x) for x in np.linspace(0, 20_000, 21))


def ceac_table(outcomes: CostOutcomes, *, wtp_kinship: tuple[float, ...] = WTP_KINSHIP,
               wtp_rereferral: tuple[float, ...] = WTP_REREFERRAL) -> pd.DataFrame:
    r"""P(SofS is cost-effective) over willingness to pay per child kept in kinship care
    (:math:`\lambda_k`) and per re-referral avoided (:math:`\lambda_r`), on the whole grid:
    :math:`P(\lambda_k K_i + \lambda_r R_i - \text{NC}_i > 0)` with :math:`K, R` the discounted
    children kept in kinship care and re-referrals avoided (all LAs) and NC the total net cost.
    The one-way curves are the rows with the other willingness to pay at 0."""
    res = voi.ceac(outcomes.total("net"),
                   {"wtp_kinship": outcomes.total("kinship_children_kept"),
                    "wtp_rereferral": outcomes.total("rereferrals_avoided")},
                   {"wtp_kinship": np.asarray(wtp_kinship), "wtp_rereferral": np.asarray(wtp_rereferral)})
    t = pd.DataFrame(res)
    t.insert(0, "discount_rate", outcomes.discount_rate)
    return t


# ------------------------------------------------------------------------------------------
# Expected value of sample information of a new cluster-randomised trial
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialDesign:
    """Assumptions of the cluster-randomised trial valued by :func:`evsi_trial` (all overridable).

    ``children_per_la``: children (kinship outcome) and closed cases (re-referral outcome) per
    LA in each of the trial's two periods; ``baseline_pp``: untreated outcome rates, used when
    the posterior file gives no ``counterfactual``; ``residual_sd_pp``: LA-level noise of an
    LA's before-after change beyond binomial sampling; ``between_sd_pp``: the between-LA SD of
    the effect when the effect source has none (the published estimates).
    """

    fixed_cost: float = 500_000.0
    cost_per_la: float = 100_000.0
    population_las: int = 150
    children_per_la: Mapping[str, float] = field(default_factory=lambda: {"kinship": 200.0, "rereferral": 1500.0})
    baseline_pp: Mapping[str, float] = field(default_factory=lambda: {"kinship": 62.0, "rereferral": 31.0})
    residual_sd_pp: float = 3.0
    between_sd_pp: Mapping[str, float] = field(default_factory=lambda: {"kinship": 5.0, "rereferral": 3.0})

    def __post_init__(self) -> None:
        for name in ("fixed_cost", "cost_per_la", "residual_sd_pp"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not isinstance(self.population_las, (int, np.integer)) or self.population_las < 1:
            raise ValueError(f"population_las must be a positive integer, got {self.population_las}")
        for o in ("kinship", "rereferral"):
            if not self.children_per_la.get(o, 0) > 0:
                raise ValueError(f"children_per_la['{o}'] must be > 0")
            if not 0 < self.baseline_pp.get(o, -1) < 100:
                raise ValueError(f"baseline_pp['{o}'] must lie in (0, 100)")
            if not self.between_sd_pp.get(o, -1) >= 0:
                raise ValueError(f"between_sd_pp['{o}'] must be >= 0")

    def cost(self, k: int) -> float:
        return float(self.fixed_cost + self.cost_per_la * k)


DEFAULT_TRIAL_SIZES = (4, 6, 8, 10, 14, 20, 30, 40, 60, 100)


def population_effects(effects: Mapping[str, EffectDraws], n: int, trial: TrialDesign) -> dict[str, dict[str, np.ndarray]]:
    """Per outcome and Monte Carlo draw: ``mu`` (mean effect over LAs, pp), ``sigma`` (between-LA
    SD, pp) and ``baseline`` (untreated rate, pp), aligned with the cost model's effect draws;
    from the posterior file when it has them, else the effect draws with ``trial`` defaults."""
    out = {}
    for o in ("kinship", "rereferral"):
        e = effects[o]
        pop = e.aligned_population(n)
        if pop is not None and {"mu_pp", "sigma_pp"} <= set(pop):
            base = pop.get("baseline_pp", np.full(n, trial.baseline_pp[o]))
            out[o] = {"mu": pop["mu_pp"], "sigma": pop["sigma_pp"], "baseline": base, "source": "posterior mu_tau, sigma_tau"}
        else:
            out[o] = {"mu": e.aligned(n), "sigma": np.full(n, float(trial.between_sd_pp[o])),
                      "baseline": np.full(n, float(trial.baseline_pp[o])),
                      "source": f"effect draws as the mean effect; between-LA SD {trial.between_sd_pp[o]:g} pp (assumed)"}
    return out


def trial_variance(k: int, sigma: np.ndarray, baseline: np.ndarray, children: float, residual_sd: float) -> np.ndarray:
    r"""Sampling variance (pp^2) of the trial's effect estimate given the between-LA SD (see
    :func:`evsi_trial`)."""
    k1, k0 = (k + 1) // 2, k // 2
    q = np.clip(baseline / 100.0, 1e-6, 1 - 1e-6)
    s2 = residual_sd**2 + 2.0 * 1e4 * q * (1 - q) / children
    return (sigma**2 + s2) / k1 + s2 / k0


def evsi_trial(draws: CostDraws, settings: CostSettings, effects: Mapping[str, EffectDraws], *,
               trial: TrialDesign = TrialDesign(), sizes: tuple[int, ...] = DEFAULT_TRIAL_SIZES,
               discount_rate: float | None = None, seed: int = 0, se_draws: int = voi.SE_DRAWS) -> pd.DataFrame:
    r"""EVSI and expected net benefit of sampling (ENBS) of a cluster-randomised trial of SofS
    across :math:`k` LAs, for the decision to adopt SofS in a population of :math:`P` LAs.

    Decision model. A population LA :math:`j` has effect :math:`\theta_{oj} \sim N(\mu_o,
    \sigma_o^2)` on outcome :math:`o` (pp), with :math:`\mu_o, \sigma_o` from the DiD posterior:
    :math:`\mu_o` is ``att_average`` (the g-computed effect at the mean effect ``mu_tau``) and
    :math:`\sigma_o = \sigma_{\tau,o}\, 100\, \bar q_o (1 - \bar q_o)` (``sigma_tau`` on the
    logit scale taken to pp by the logistic slope at :math:`\bar q_o`, midway between the
    untreated and treated rates), per posterior draw. Net cost is linear in the effect, so the
    population's expected INB given the parameters is
    :math:`\text{INB}^{P}_i = -\tfrac{P}{L}\sum_\ell \text{NC}_{i\ell}(\mu_{k,i}, \mu_{r,i})`
    (the cost model's :math:`L` LAs as a sample of the population's, every other input as in
    the PSA, including the onset lag).

    Trial. :math:`k_1 = \lceil k/2 \rceil` LAs randomised to SofS, :math:`k_0 = \lfloor k/2
    \rfloor` to control; each LA's change in outcome rate between a baseline and a follow-up
    period of :math:`m_o` children each, :math:`y_{oj} = a_j \theta_{oj} + \text{period} +
    \varepsilon_{oj}`, :math:`\varepsilon_{oj} \sim N(0, s_o^2)`, :math:`s_o^2 = \sigma_\varepsilon^2
    + 2\cdot 10^4 q_o(1 - q_o)/m_o`. The estimate (difference of arm means of the changes) is
    :math:`T_o \mid \mu_o, \sigma_o \sim N\big(\mu_o, V_o(k)\big)`,
    :math:`V_o(k) = (\sigma_o^2 + s_o^2)/k_1 + s_o^2/k_0`, independent between outcomes.

    EVSI by regression (Strong, Oakley, Brennan and Breeze 2015): one :math:`T_i = (T_{k,i},
    T_{r,i})` per PSA draw (common random numbers across :math:`k`), and
    :math:`\text{EVSI}(k) = \overline{\max(\hat E[\text{INB}^P \mid T], 0)} - \max(\overline{\text{INB}^P}, 0)`
    with the tensor-product P-spline of :mod:`models.cost_voi` (SE and noise floor as for EVPPI).
    As :math:`k \to \infty`, :math:`T \to \mu` and EVSI tends to the EVPPI of
    :math:`(\mu_k, \mu_r)`, reported in the row ``k = inf``. ENBS(k) = EVSI(k) - (fixed cost +
    cost per LA x k); the best k maximises ENBS over the grid. Not modelled: the delay until the
    trial reports, the trial LAs' own costs and benefits, and who pays.
    """
    rate = settings.discount_rate if discount_rate is None else discount_rate
    n, L = draws.n, len(draws.las)
    pop = population_effects(effects, n, trial)
    pop_draws = draws.replace(kinship_pp=pop["kinship"]["mu"], rereferral_pp=pop["rereferral"]["mu"])
    inb = -trial.population_las / L * evaluate(pop_draws, settings, discount_rate=rate).total("net")
    mu = np.column_stack([pop["kinship"]["mu"], pop["rereferral"]["mu"]])
    rng = _rng(seed, "evsi:trial")
    z = rng.standard_normal((n, 2))
    rows = []
    for k in sorted(set(int(k) for k in sizes)):
        if k < 2:
            raise ValueError(f"a trial needs at least 2 LAs (one per arm), got k = {k}")
        sd = np.column_stack([np.sqrt(trial_variance(k, pop[o]["sigma"], pop[o]["baseline"],
                                                     trial.children_per_la[o], trial.residual_sd_pp))
                              for o in ("kinship", "rereferral")])
        est = voi.regression_voi(inb, mu + sd * z, seed=seed + k, se_draws=se_draws)
        cost = trial.cost(k)
        rows.append({"k": k, "evsi": est.value, "se": est.se, "noise_floor": est.noise_floor,
                     "trial_cost": cost, "enbs": est.value - cost,
                     "sd_estimate_kinship_pp": float(np.sqrt(np.mean(sd[:, 0] ** 2))),
                     "sd_estimate_rereferral_pp": float(np.sqrt(np.mean(sd[:, 1] ** 2)))})
    full = voi.regression_voi(inb, mu, seed=seed, se_draws=se_draws)
    rows.append({"k": np.inf, "evsi": full.value, "se": full.se, "noise_floor": full.noise_floor,
                 "trial_cost": np.nan, "enbs": np.nan, "sd_estimate_kinship_pp": 0.0, "sd_estimate_rereferral_pp": 0.0})
    table = pd.DataFrame(rows)
    finite = table[np.isfinite(table["k"])]
    best = finite.loc[finite["enbs"].idxmax()]
    table.attrs.update({
        "population_evpi": evpi(inb), "population_evppi_effects": full.value, "population_evppi_effects_se": full.se,
        "best_k": int(best["k"]) if best["enbs"] > 0 else None, "best_enbs": float(best["enbs"]),
        "population_las": trial.population_las, "discount_rate": rate,
        "effect_sources": {o: pop[o]["source"] for o in pop},
        "mean_between_la_sd_pp": {o: float(pop[o]["sigma"].mean()) for o in pop},
        "p_adopt_now": float(np.mean(inb > 0)), "expected_population_inb": float(inb.mean()),
    })
    return table


# ------------------------------------------------------------------------------------------
# Everything together
# ------------------------------------------------------------------------------------------


@dataclass
class CostResult:
    """Summaries (tables and numbers) plus the draws they came from."""

    settings: CostSettings
    draws: CostDraws
    outcomes: dict[float, CostOutcomes]
    by_la: pd.DataFrame
    headline: dict[str, Any]
    tornado: pd.DataFrame
    evppi: pd.DataFrame
    plane: pd.DataFrame
    histograms: dict[float, tuple[np.ndarray, np.ndarray]]
    ceac: pd.DataFrame | None = None
    evsi: pd.DataFrame | None = None

    def total_net(self, rate: float | None = None) -> np.ndarray:
        return self.outcomes[self.settings.discount_rate if rate is None else rate].total("net")


def analyse(draws: CostDraws, settings: CostSettings, *, plane_points: int = 4000, seed: int = 0,
            effects: Mapping[str, EffectDraws] | None = None, trial: TrialDesign | None = None,
            trial_sizes: tuple[int, ...] = DEFAULT_TRIAL_SIZES, se_draws: int = voi.SE_DRAWS,
            wtp_kinship: tuple[float, ...] = WTP_KINSHIP, wtp_rereferral: tuple[float, ...] = WTP_REREFERRAL,
            **_ignored: Any) -> CostResult:
    """Evaluate at every discount rate, then summarise; tornado, EVPPI, CEAC (at the main rate)
    and, when ``effects`` and ``trial`` are given, the EVSI of a new trial."""
    outcomes = {rate: evaluate(draws, settings, discount_rate=rate) for rate in settings.rates}
    by_la = pd.concat([by_la_table(o) for o in outcomes.values()], ignore_index=True)
    main = outcomes[settings.discount_rate]
    headline: dict[str, Any] = {"n_draws": draws.n, "n_las": len(draws.las), "las": list(draws.las)}
    lag = draws.values["onset_lag"]
    headline["onset_lag_years"] = {"distribution": f"triangular{settings.onset_lag}", "mean": float(lag.mean()),
                                   "eti95_low": float(np.quantile(lag, 0.025)), "eti95_high": float(np.quantile(lag, 0.975))}
    for rate, o in outcomes.items():
        net = o.total("net")
        headline[f"rate_{rate:g}"] = {
            "discount_rate": rate,
            "total_net_cost": describe_draws(net),
            "p_saves_money": float(np.mean(net < 0)),
            "components": {c: describe_draws(o.total(c)) for c in ("impl_direct", "impl_management", "impl_training",
                                                                   "impl_ongoing", "implementation",
                                                                   "kinship_cost", "rereferral_cost")},
            "cost_per_child_kept_in_kinship_care": {
                "all_costs": cost_per_unit(net, o.total("kinship_children_kept"),
                                           unit="GBP of net cost per child kept in kinship care"),
                "implementation_net_of_own_outcome": cost_per_unit(
                    o.total("implementation") + o.total("kinship_cost"), o.total("kinship_children_kept"),
                    unit="GBP of implementation plus placement costs per child kept in kinship care"),
            },
            "cost_per_rereferral_avoided": {
                "all_costs": cost_per_unit(net, o.total("rereferrals_avoided"),
                                           unit="GBP of net cost per re-referral avoided"),
                "implementation_net_of_own_outcome": cost_per_unit(
                    o.total("implementation") + o.total("rereferral_cost"), o.total("rereferrals_avoided"),
                    unit="GBP of implementation net of re-referral savings per re-referral avoided"),
            },
            "children_kept_in_kinship_care": describe_draws(o.total("kinship_children_kept")),
            "rereferrals_avoided": describe_draws(o.total("rereferrals_avoided")),
        }
    tornado = one_way(draws, settings)
    evppi = evppi_table(draws, main, seed=seed, se_draws=se_draws)
    headline["evpi"] = float(evppi.attrs.get("evpi", evpi(-main.total("net"))))
    headline["evpi_se"] = float(evppi.attrs.get("evpi_se", 0.0))
    ceac = ceac_table(main, wtp_kinship=wtp_kinship, wtp_rereferral=wtp_rereferral)
    evsi = None
    if effects is not None and trial is not None:
        evsi = evsi_trial(draws, settings, effects, trial=trial, sizes=trial_sizes, seed=seed, se_draws=se_draws)
        headline["evsi"] = {k: v for k, v in evsi.attrs.items()}
    m = min(plane_points, draws.n)
    idx = np.sort(_rng(seed, "plane").choice(draws.n, size=m, replace=False)) if m < draws.n else np.arange(draws.n)
    plane = pd.DataFrame({
        "draw": idx,
        "net_cost": main.total("net")[idx],
        "implementation": main.total("implementation")[idx],
        "kinship_children_kept": main.total("kinship_children_kept")[idx],
        "rereferrals_avoided": main.total("rereferrals_avoided")[idx],
        **{f"net_cost_{rate:g}": o.total("net")[idx] for rate, o in outcomes.items()},
    })
    histograms = {rate: np.histogram(o.total("net"), bins=80) for rate, o in outcomes.items()}
    return CostResult(settings, draws, outcomes, by_la, headline, tornado, evppi, plane, histograms, ceac, evsi)
