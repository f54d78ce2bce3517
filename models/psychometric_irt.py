r"""Bayesian graded response models (GRM) for questionnaire items, with a latent regression.

The report averaged Likert items into subscale scores, checked them with Cronbach's alpha and
regressed the averages on the social worker's competence. Here the items themselves are
modelled.

Measurement model (Samejima's graded response model)
-----------------------------------------------------
Person :math:`i`, item :math:`j` (loading on dimension :math:`d(j)`), answer
:math:`y_{ij} \in \{0, \dots, K-1\}` coded so that *higher = more of the trait* (reverse-worded
items and "lower is better" scales are flipped by configuration, see :func:`grm_data`):

.. math::

   P(y_{ij} \ge k \mid \theta) = \operatorname{logit}^{-1}\big(a_j(\theta_{i,d(j)} - b_{jk})\big),
   \qquad k = 1, \dots, K-1,

an ordered logistic per item with discrimination :math:`a_j > 0` and ordered thresholds
:math:`b_{j1} < \dots < b_{j,K-1}` (Samejima 1969; the parametrisation of ``ltm::grm``). The
model is sampled in slope-intercept form, :math:`\operatorname{logit} P(y_{ij} \ge k) = a_j
\theta - c_{jk}` with :math:`b_{jk} = c_{jk} / a_j` reported: for rarely used categories the
data pin :math:`c` much better than :math:`b`, and the :math:`(a, b)` form mixed slowly.

Priors (``GRMPriors``; default ``pooling='none'``: fixed weakly informative priors)
-----------------------------------------------------------------------------------
- discriminations log-normal, each on its own: :math:`\log a_j \sim N(0.5, 1)`;
- cutpoints as an item location (their mean) plus positive gaps (ordered by construction):
  :math:`\bar c_j = m + \delta_j`, :math:`m, \delta_j \sim N(0, 3^2/2)` (so each
  :math:`\bar c_j \sim N(0, 3)`, correlated 0.5 across items: independent locations made the
  prior predictive share of each category nearly equal in every data set),
  :math:`\log(c_{jk} - c_{j,k-1}) \sim N(0.5, 1)` (logit scale); the prior is symmetric in
  the categories. An empty category gets its gap from this prior. No spread is learnt
  from the items, so a well-measured item is not pulled towards the others.
- With these priors the posterior means of the discriminations match maximum likelihood at
  a few hundred respondents (ltm's Environment data, 291 x 6; and 20 simulated data sets of
  400 x 10 with discriminations 2.3: ``benchmarks/irt.py --recovery``).
- ``GRMPriors(pooling='all')`` pools across items instead (the former default):
  :math:`\log a_j = \mu_a + \sigma_a z_j`, :math:`\mu_a \sim N(0.5, 0.5)`,
  :math:`\sigma_a \sim \text{HalfNormal}(0.5)`; :math:`\bar c_j = m + \tau_l z_j`,
  :math:`m \sim N(0, 3)`, :math:`\tau_l \sim \text{HalfNormal}(2)`; log gaps
  :math:`g_k + \tau_g z_{jk}`, :math:`g_k \sim N(0.5, 1)`, :math:`\tau_g \sim
  \text{HalfNormal}(0.5)`. It shrank a discrimination of 2.3 (ML) to 1.7 at n = 300.

Latent structure
----------------
Without covariates :math:`\theta_i \sim N(0, R)`; with several dimensions (one per subscale,
or one per rater) :math:`R` is a correlation matrix with an LKJ(2) prior (unit variances fix
the scale). With the explanatory latent regression (``LatentDesign``):

.. math::

   \theta_{id} = \beta_d\,(\text{sofs}_i - \overline{\text{sofs}}) + \gamma_d\,(c_i - \bar c)
                 + s_{\text{site}(i),d} + u_{\text{worker}(i),d} + \varepsilon_{id},

with site effects :math:`s \sim N(0, \tau^2_{s,d})` (given a zero family-weighted sum), worker effects
:math:`u \sim N(0, \sigma^2_{w,d})` and family residuals :math:`\varepsilon_i \sim N(0,
\sigma^2_{f,d} R)` whose shares of the within-site variance are :math:`(\sigma^2_w,
\sigma^2_f) = (\tau_w^2, 1) / (1 + \tau_w^2)`; zero-avoiding priors :math:`\tau_s \sim
\text{Gamma}(2, 2/m_s)`, :math:`\tau_w \sim \text{Gamma}(2, 2/0.5)` (means :math:`m_s` and
0.5; :math:`m_s` = ``GRMPriors.site_sd``, default 0.3, is ``pm.Data`` named
``site_sd_prior_mean``, so one compiled model re-samples under other values).
Every term is optional: the regression has only the terms whose columns the data hold
(``LatentDesign.covariates``); without a site column the arm effect enters as
:math:`\beta_d(\text{sofs}_i - \overline{\text{sofs}})` and is judged against the families'
own variation only; without a worker column there is no worker term; with none of the
columns, :math:`\theta_i \sim N(0, R)`. The
latent variance among families of the same site, arm and competence is 1, so the trait's
scale cannot trade against the discriminations (a free worker SD did, and the thresholds
mixed slowly; so did a unit that included the site variance, which four sites cannot pin).
The unit of the latent scale is one SD of the trait among families of the same site, arm and
competence; ``sd_site`` is the site SD in that unit, ``sd_worker`` the worker share's SD.
:math:`R` (LKJ(2)) correlates the dimensions.

How it is sampled:

- Site means :math:`M_s = \beta a_s + s_s` through the arm difference (see
  :func:`_site_means`): the site effects have a zero family-weighted sum, and the SofS effect
  and the arm contrast of the site effects, which with two sites per arm only their priors
  tell apart, are sampled as their (identified) sum and a prior-only direction.
  The within-arm site contrasts are non-centred, or centred when every site has at least
  ``CENTRED_FROM`` families (its data pin each site's mean).
- Family and worker terms together as :math:`(z_i + k_w \sum_{j \in w} z_j) / T`, the
  symmetric square root of the compound-symmetric covariance of the families sharing worker
  :math:`w` (:math:`k_w = (\sqrt{1 + n_w \tau_w^2} - 1)/n_w`, :math:`T^2 = 1 + \tau_w^2`),
  with :math:`z_i \sim N(0, R)` centred over families. Separate worker draws left
  :math:`\tau_w` with an ESS near 100 when most workers see one to three families; in this
  form a worker seen once is untouched by :math:`\tau_w` (the worker and family parts share
  the correlation :math:`R`). Centring the draws, the covariates and the site effects pins the
  latent location. The draws are shifted by the competence term mapped back through
  :math:`T`, the worker term and :math:`R`, so that the slopes :math:`\gamma` are learnt from
  the draws as a regression rather than by moving all of them (same model, other
  coordinates).

:math:`\beta_d` (SofS arm vs contrast arm) gets a *named* prior (sceptical / neutral /
enthusiastic, stored as ``pm.Data`` so one compiled model serves all three);
:math:`\gamma_d \sim N(0, (1 / \text{sd}(c))^2)`, one latent SD per SD of competence. Because
each arm has only two sites, the site effects are what keeps the arm effect from absorbing
site-to-site differences: the arm effect is judged against between-site variation, and with
two sites per arm its posterior stays wide.

Assumptions: local independence given :math:`\theta`; simple structure (each item loads on
one dimension); the same item parameters in both arms (no differential item functioning;
checked by ``build_grm(dif=True)``, and local independence and item fit by the posterior
predictive checks of :mod:`models.irt_fit`); missing answers missing at random. Models are
compared by leaving one respondent out, traits integrated out (:mod:`models.irt_loo`).

Everything after fitting (category probabilities, item and test information, expected
scores, marginal reliability, score-scale effects, predictive checks) is a NumPy function
over axes in this module; the analysis only calls them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy.special import expit

from data.instruments import ARMS, Instrument
from models.grm_kernel import grm_loglik

#: The outer "cutpoints" -inf/+inf of the ordered logistic stand this far (logit scale)
#: beyond an item's first and last cutpoints: exact in double precision while the linear
#: predictor is within about 250 logits of them, and exp(gap) stays finite.
_PAD = 300.0

DIMENSION_MODES = ("overall", "subscale", "rater", "rater_subscale")

#: From this many families in every site on, the within-arm site contrasts are sampled
#: centred (see :func:`build_grm`'s ``centring``).
CENTRED_FROM = 200


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatentDesign:
    """Person-level covariates of the latent regression; each part is optional.

    ``sofs`` (arm indicator), ``competence``, ``worker`` and ``site`` are ``None`` when the
    data have no such column (:attr:`covariates` lists those present). ``competence_centre``
    is subtracted from ``competence`` inside the model (slopes are per unit of the raw
    competence scale; the intercept is the contrast arm at average competence).
    """

    sofs: np.ndarray | None
    competence: np.ndarray | None
    competence_centre: float
    competence_sd: float
    worker: tuple[str, ...] | None
    worker_idx: np.ndarray | None
    site: tuple[str, ...] | None
    site_idx: np.ndarray | None
    site_arm: tuple[str, ...] | None

    @property
    def covariates(self) -> tuple[str, ...]:
        """The terms of the latent regression, in words the outputs use."""
        out = []
        if self.sofs is not None:
            out.append("arm")
        if self.competence is not None:
            out.append("competence")
        if self.site is not None:
            out.append("site")
        if self.worker is not None:
            out.append("worker")
        return tuple(out)


@dataclass(frozen=True)
class GRMData:
    """Item answers in long form, coded 0..K-1 with higher = more of the trait.

    ``code_values[k]`` is the report's code for model category ``k`` (for average scores on
    the report's own scale); ``item_dimension[j]`` indexes ``dimension``.
    """

    instrument: str
    person: tuple[str, ...]
    item: tuple[str, ...]
    dimension: tuple[str, ...]
    dimension_label: tuple[str, ...]
    item_dimension: np.ndarray
    n_categories: int
    person_idx: np.ndarray
    item_idx: np.ndarray
    response: np.ndarray
    code_values: np.ndarray
    score_direction: str = "higher_is_better"
    design: LatentDesign | None = None
    mode: str = "subscale"
    trait: str = "trait"
    scale_label: str = "average score"

    @property
    def n_person(self) -> int:
        return len(self.person)

    @property
    def n_item(self) -> int:
        return len(self.item)

    @property
    def n_dim(self) -> int:
        return len(self.dimension)

    def wide(self) -> np.ndarray:
        """Answers as a person x item array (-1 = missing)."""
        out = np.full((self.n_person, self.n_item), -1, dtype=int)
        out[self.person_idx, self.item_idx] = self.response
        return out


def grm_data(
    frame: pd.DataFrame,
    instrument: Instrument,
    *,
    dimensions: str = "subscale",
    covariates: bool = True,
) -> GRMData:
    """Long-form GRM data from a validated wide answer frame (see ``data.instruments``).

    Parameters
    ----------
    frame
        Validated answers (``data.instruments.validate_responses``), or any frame with the
        instrument's item columns when ``covariates=False``. Never modified.
    instrument
        The item key (reverse coding, dropped items, categories, raters).
    dimensions
        ``'overall'`` (one trait), ``'subscale'`` (one per subscale), ``'rater'`` (one per
        rater, all items) or ``'rater_subscale'``.
    covariates
        Build the ``LatentDesign`` from whichever of the ``arm``, ``competence``, ``worker``
        and ``site`` columns the frame has (none: no latent regression, ``design`` is ``None``).

    Persons with no answer to any used item are left out.
    """
    if dimensions not in DIMENSION_MODES:
        raise ValueError(f"dimensions must be one of {list(DIMENSION_MODES)}, got '{dimensions}'")
    K = instrument.n_categories
    cats = np.asarray(instrument.categories)
    lower_better = instrument.score_direction == "lower_is_better"
    code_values = cats[::-1].astype(float) if lower_better else cats.astype(float)
    items, item_dim_names, columns, flips = [], [], [], []
    for rater in instrument.raters:
        for it in instrument.used_items:
            col = instrument.column(rater, it.id)
            if col not in frame.columns:
                continue
            columns.append(col)
            items.append(col)
            if dimensions == "overall":
                item_dim_names.append("overall")
            elif dimensions == "subscale":
                item_dim_names.append(it.dimension)
            elif dimensions == "rater":
                item_dim_names.append(rater)
            else:
                item_dim_names.append(f"{rater}:{it.dimension}")
            flips.append(it.reverse != lower_better)
    if not columns:
        raise ValueError(f"the frame has no item columns of instrument '{instrument.name}'")
    # Dimension order follows the configuration.
    if dimensions == "overall":
        dim_order, dim_label = ["overall"], ["Overall score"]
    elif dimensions == "subscale":
        dim_order = [d for d in instrument.dimensions if d in item_dim_names]
        dim_label = [instrument.dimensions[d] for d in dim_order]
    elif dimensions == "rater":
        dim_order = [r for r in instrument.raters if r in item_dim_names]
        dim_label = [r.capitalize() for r in dim_order]
    else:
        dim_order = [f"{r}:{d}" for r in instrument.raters for d in instrument.dimensions
                     if f"{r}:{d}" in item_dim_names]
        dim_label = [f"{n.split(':')[0].capitalize()}: {instrument.dimensions[n.split(':')[1]]}" for n in dim_order]
    answers = frame[columns]
    raw = answers.to_numpy(dtype=float, na_value=np.nan)
    keep = ~np.all(np.isnan(raw), axis=1)
    raw = raw[keep]
    # code -> index 0..K-1, then flip so that higher = more of the trait
    idx = np.full(raw.shape, -1, dtype=int)
    ok = ~np.isnan(raw)
    idx[ok] = np.searchsorted(cats, raw[ok].astype(int))
    flips_arr = np.asarray(flips)
    idx = np.where(ok & flips_arr[None, :], K - 1 - idx, idx)
    p_idx, i_idx = np.nonzero(ok)
    persons = (frame["family"].astype(str).to_numpy()[keep] if "family" in frame.columns
               else np.asarray([f"row {i + 1}" for i in np.flatnonzero(keep)]))
    design = _latent_design(frame.loc[keep]) if covariates else None
    return GRMData(
        instrument=instrument.name,
        person=tuple(persons),
        item=tuple(items),
        dimension=tuple(dim_order),
        dimension_label=tuple(dim_label),
        item_dimension=np.asarray([dim_order.index(n) for n in item_dim_names]),
        n_categories=K,
        person_idx=p_idx.astype(np.int64),
        item_idx=i_idx.astype(np.int64),
        response=idx[p_idx, i_idx].astype(np.int64),
        code_values=code_values,
        score_direction=instrument.score_direction,
        design=design,
        mode=dimensions,
        trait=instrument.trait,
        scale_label=instrument.scale_label,
    )


def _latent_design(frame: pd.DataFrame) -> LatentDesign | None:
    """The latent regression's covariates from whichever of ``arm``, ``competence``, ``site``
    and ``worker`` the frame has (``None`` when it has none of them)."""
    cols = [c for c in ("arm", "competence", "site", "worker") if c in frame.columns]
    if not cols:
        return None
    sofs = site = site_idx = site_arm = worker = worker_idx = comp = None
    if "arm" in frame.columns:
        sofs = (frame["arm"].astype(str).str.lower().to_numpy() == ARMS[0]).astype(float)
    if "site" in frame.columns:
        site_codes, sites = pd.factorize(frame["site"].astype(str), sort=True)
        site, site_idx = tuple(sites), site_codes.astype(np.int64)
        if sofs is not None:
            site_arm = tuple(ARMS[0] if sofs[np.flatnonzero(site_codes == s)[0]] else ARMS[1]
                             for s in range(len(sites)))
    if "worker" in frame.columns:
        key = frame["worker"].astype(str)
        if "site" in frame.columns:
            key = frame["site"].astype(str) + "/" + key
        worker_codes, workers = pd.factorize(key, sort=True)
        worker, worker_idx = tuple(workers), worker_codes.astype(np.int64)
    centre, sd = 0.0, 1.0
    if "competence" in frame.columns:
        comp = frame["competence"].to_numpy(dtype=float)
        centre = float(np.mean(comp))
        sd = float(np.std(comp, ddof=1)) if len(comp) > 1 else 1.0
        sd = sd if sd > 0 else 1.0
    return LatentDesign(sofs=sofs, competence=comp, competence_centre=centre, competence_sd=sd,
                        worker=worker, worker_idx=worker_idx, site=site, site_idx=site_idx, site_arm=site_arm)


def grm_coords(data: GRMData) -> dict[str, list]:
    """Named dims of the model (one pure function, never mutating its input)."""
    coords: dict[str, list] = {
        "person": list(data.person),
        "item": list(data.item),
        "cut": [f">={k}" for k in range(1, data.n_categories)],
        "gap": [f"{k}-{k + 1}" for k in range(1, data.n_categories - 1)],
        "dimension": list(data.dimension),
        "dimension_bis": list(data.dimension),
        "obs": list(range(len(data.response))),
    }
    if data.design is not None and data.design.worker is not None:
        coords["worker"] = list(data.design.worker)
    if data.design is not None and data.design.site is not None:
        coords["site"] = list(data.design.site)
        coords["site_within"] = [f"w{k + 1}" for k in range(site_arm_basis(data.design)[1].shape[1])]
    return coords


# --------------------------------------------------------------------------------------------
# Priors and model
# --------------------------------------------------------------------------------------------

#: Valid values of ``GRMPriors.pooling``.
POOLING_MODES = ("none", "all")


@dataclass(frozen=True)
class GRMPriors:
    r"""Prior hyper-parameters (see the module docstring for the model in notation).

    Precedence: a named prior passed to :func:`build_grm` (``effect_prior``) overrides
    ``effect_mean``/``effect_sd``; everything else comes from this object, whose defaults
    are documented here.

    ``pooling`` (default ``'none'``): whether item parameters borrow strength across items.

    - ``'none'``: every discrimination, item location and cutpoint gap has a fixed weakly
      informative prior, the same whatever the other items do, so a well-measured item is
      not pulled towards the others (at a few hundred respondents the posterior means are
      the ML estimates'; see the Environment validation and ``benchmarks/irt.py
      --recovery``). An empty category (common at n = 60) gets its gap from the prior,
      :math:`\log(c_{k+1} - c_k) \sim N(0.5, 1)`;
    - ``'all'``: discriminations, locations and gaps partially pooled (the defaults of
      earlier versions; they shrank a discrimination of 2.3 to 1.7 at n = 300). Partial
      pooling of the gaps alone is not offered: the gaps are on the logit scale
      (:math:`a_j` times the threshold gaps), so pooling them pulled the larger
      discriminations down (posterior means 2.1-2.3 for a true 2.3 at n = 400 in a first
      run of the recovery study).
    """

    pooling: str = "none"
    log_discrimination_mean: float = 0.5   # log a_j ~ N(this, log_discrimination_sd); 'all': mu_a ~ N(this, 0.5)
    log_discrimination_sd: float = 1.0     # fixed prior SD of log a_j (pooling 'none')
    log_discrimination_spread: float = 0.5  # 'all' only: sigma_a ~ HalfNormal(this)
    cut_location_sd: float = 3.0           # l_j ~ N(0, this), correlated 0.5; 'all': m ~ N(0, this)  (logit)
    cut_location_spread: float = 2.0       # 'all' only: tau_l ~ HalfNormal(this)
    log_gap_mean: float = 0.5              # g_k ~ N(this, log_gap_sd) pooled; log gaps ~ N(this, log_gap_sd) 'none'
    log_gap_sd: float = 1.0
    log_gap_spread: float = 0.5            # 'all' only: tau_g ~ HalfNormal(this)
    lkj_eta: float = 2.0                   # trait correlations ~ LKJ(this)
    effect_mean: float = 0.0               # SofS arm effect beta_d ~ N(mean, sd) (named prior)
    effect_sd: float = 1.0
    slope_sd_per_sd: float = 1.0           # gamma_d ~ N(0, (this / sd(competence))^2)
    site_sd: float = 0.3                   # site SD ~ Gamma(2, 2 / this): mean this (pm.Data 'site_sd_prior_mean')
    worker_sd: float = 0.5                 # worker SD before scaling ~ Gamma(2, 2 / this): mean this
    dif_sd: float = 0.3                    # build_grm(dif=True): SD of the item x arm shifts ~ HalfNormal(this)

    def __post_init__(self) -> None:
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {list(POOLING_MODES)}, got '{self.pooling}'")
        if not self.site_sd > 0 or not self.worker_sd > 0:
            raise ValueError(f"site_sd and worker_sd must be positive, got {self.site_sd} and {self.worker_sd}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def padded_cutpoints(cut, xp=np):
    """(..., item, K-1) cutpoints -> (..., item, K+1), with the outer ones ``_PAD`` beyond the ends."""
    return xp.concatenate([cut[..., :1] - _PAD, cut, cut[..., -1:] + _PAD], axis=-1)


def category_tables(pad, xp=np):
    r"""Per (item, category) tables for :func:`log_category_probability`, from padded cutpoints.

    Returns the lower cutpoint :math:`c_{k}`, the gap :math:`g = c_{k+1} - c_k`,
    :math:`e^{g}` and :math:`\log(e^{g} - 1)`, each (..., item, K). Exact for gaps below
    about 700 logits (beyond, :math:`e^{g}` overflows).
    """
    lower = pad[..., :-1]
    gap = pad[..., 1:] - lower
    return lower, gap, xp.exp(gap), gap + xp.log1p(-xp.exp(-gap))


def log_category_probability(u, gap, exp_gap, log_expm1_gap, xp=np):
    r""":math:`\log\{\sigma(u) - \sigma(u - g)\}`, stably, with one exponential and one logarithm.

    :math:`u = \eta - c_k` is the linear predictor less the answer's lower cutpoint and
    :math:`g > 0` the gap to its upper cutpoint. With :math:`e = e^{-u}`,
    :math:`\sigma(u) - \sigma(u - g) = e\,(e^{g} - 1) / \{(1 + e)(1 + e\,e^{g})\}`; the
    interval probability is symmetric under :math:`u \to g - u`, so it is evaluated at
    :math:`u^* = \max(u, g - u) \ge g/2`, where neither exponential overflows. (The direct
    difference of two logistic functions loses everything when both are near 1: it returned
    :math:`-\infty` once :math:`\eta` passed the answer's upper cutpoint by about 37 logits.)
    ``xp`` is ``numpy`` or ``pytensor.tensor``.
    """
    u_star = xp.maximum(u, gap - u)
    e = xp.exp(-u_star)
    return -u_star + log_expm1_gap - xp.log((1.0 + e) * (1.0 + e * exp_gap))


def _grm_logp(value, theta, a, pad, theta_index, item):
    """log P(answers | theta, a, cutpoints): the ordered logistic of every answer, summed.

    Computed by the compiled kernel of :mod:`models.grm_kernel` (the same value as
    :func:`log_category_probability` summed over answers, and its gradient, in one pass).
    ``pad`` is (item, K+1) from :func:`padded_cutpoints`; ``theta_index`` is each answer's
    flat index into ``theta`` (person * n_dimension + dimension).
    """
    cell = pt.cast(item, "int32") * (pad.shape[-1] - 1) + pt.cast(value, "int32")
    return grm_loglik(theta, a, pad, theta_index, cell)


def trait_start(data: GRMData) -> np.ndarray:
    """Starting values of the standardised traits (person, dimension): each person's mean
    answer over the dimension's items, standardised over persons (0 where none answered).

    Passed to the sampler as the initial value of the trait draws (:func:`start_points`; the
    sampler jitters it). Not set as the model's ``initval``: ``pm.do`` (through
    ``fgraph_from_model``) refuses models with non-default initial values. From the prior's
    starting point (traits unrelated to the answers) the warm-up of a chain could settle where
    one dimension's discriminations had collapsed to about 0.01 and its trait was carried by the
    site effects: at 5,000 x 20 with unpooled item priors, one chain in four, 12,000 nats below
    the others (R-hat 1.6). Starting from the answers, the items inform the traits from the
    first step, as mirt starts its EM from the data.
    """
    D, P = data.n_dim, data.n_person
    dim = data.item_dimension[data.item_idx]
    cell = data.person_idx * D + dim
    total = np.bincount(cell, weights=data.response.astype(float), minlength=P * D).reshape(P, D)
    count = np.bincount(cell, minlength=P * D).reshape(P, D)
    mean = np.divide(total, count, out=np.full((P, D), np.nan), where=count > 0)
    centre, spread = np.nanmean(mean, axis=0), np.nanstd(mean, axis=0)
    z = (mean - centre) / np.where(spread > 0, spread, 1.0)
    return np.nan_to_num(z, nan=0.0)


def start_points(data: GRMData) -> dict[str, np.ndarray]:
    """Initial values for the sampler (what :func:`grm_sampler` passes): the trait draws
    ``z_theta_raw`` at :func:`trait_start` (the same name with or without the latent
    regression)."""
    return {"z_theta_raw": trait_start(data)}


def grm_sampler(model: pm.Model, data: GRMData, **kwargs: Any):
    """The one way to sample a GRM: a :class:`models.sampling.CompiledSampler` of ``model``
    (built by :func:`build_grm` from ``data``) whose chains start the trait draws from the
    answers (:func:`start_points`). ``kwargs`` go to the sampler (``mutable=...``)."""
    from models.sampling import CompiledSampler   # imports nutpie

    return CompiledSampler(model, initial_points=start_points(data), **kwargs)


def sample_grm(model: pm.Model, data: GRMData, **sample_kwargs: Any) -> xr.DataTree:
    """Compile ``model`` once (:func:`grm_sampler`) and sample it (arguments of
    :meth:`models.sampling.CompiledSampler.sample`)."""
    return grm_sampler(model, data).sample(**sample_kwargs)


def _centred_normal(name: str, dims: tuple[str, str]) -> pt.TensorVariable:
    """N(0, 1) draws centred over the first dim: the zero-sum normal's distribution.

    One direction (the mean of the raw draws) is left to its N(0, 1/n) prior; it does not
    enter the likelihood and is well conditioned.
    """
    raw = pm.Normal(f"{name}_raw", 0.0, 1.0, dims=dims)
    return raw - raw.mean(axis=0, keepdims=True)


def site_arm_basis(design: LatentDesign) -> tuple[np.ndarray, np.ndarray]:
    r"""The site-level arm contrast and an orthonormal basis of the within-arm site contrasts.

    Returns ``arm`` (site,): each site's value of the person-centred SofS indicator (so
    :math:`\sum_s n_s a_s = 0`), and ``within`` (site, site_within): orthonormal columns
    orthogonal to both ``arm`` and the site sizes :math:`n_s`. Together, ``arm / |arm|`` and
    ``within`` are an orthonormal basis of the site vectors with a zero family-weighted sum.
    With one arm only, ``arm`` is zero and ``within`` spans every such vector.
    """
    from scipy.linalg import null_space

    S = len(design.site)
    sofs = design.sofs if design.sofs is not None else np.zeros(len(design.site_idx))
    sofs_c = sofs - sofs.mean()
    arm = np.zeros(S)
    arm[design.site_idx] = sofs_c
    if not np.allclose(arm[design.site_idx], sofs_c):
        raise ValueError("every site must be in one arm (SofS or contrast)")
    sizes = np.bincount(design.site_idx, minlength=S).astype(float)
    constraints = [sizes / sizes.sum()] + ([arm] if np.linalg.norm(arm) > 1e-12 else [])
    return arm, null_space(np.vstack(constraints))


def _site_means(data: GRMData, sd_site, eff_mu: float, eff_sd: float, centred: bool = False) -> pt.TensorVariable:
    r"""Site means of the latent trait, :math:`M_s = \beta a_s + s_s`, sampled as the data see them.

    Site effects: :math:`s \sim N(0, \sigma_s^2)` independently, conditioned on a zero
    family-weighted sum (this pins the latent location: the family mean of :math:`\theta`
    stays 0). Write :math:`s = \sigma_s(\zeta\, a/|a| + B z)`, with :math:`B` the within-arm
    basis of :func:`site_arm_basis` and :math:`\zeta, z \sim N(0, 1)`. Then
    :math:`M = \Delta a + \sigma_s B z`, where the *arm difference*
    :math:`\Delta = \beta + \kappa\zeta`, :math:`\kappa = \sigma_s / |a|`, is what the
    data identify: with two sites per arm, the SofS effect :math:`\beta` and the arm contrast
    of the site effects :math:`\kappa\zeta` are told apart by their priors alone. Sampling
    :math:`(\beta, \zeta)` directly made a thin diagonal valley at large n (bulk ESS 13 for
    :math:`\beta` at 5,000 families); here the same joint prior is written as
    :math:`\Delta \sim N(\mu, \sigma^2 + \kappa^2)` (centred: the data pin it) and
    :math:`\zeta \mid \Delta \sim N\big(\kappa(\Delta - \mu)/(\sigma^2 + \kappa^2),
    \sigma^2/(\sigma^2 + \kappa^2)\big)` (non-centred), with
    :math:`\beta = \Delta - \kappa\zeta` a deterministic: an exact change of variables, so
    the posterior is unchanged. :math:`(\mu, \sigma)` is the named prior of :math:`\beta`.
    The within-arm contrasts :math:`\sigma_s z` are sampled non-centred (``z_site_within``)
    or, with ``centred`` (many families per site pin them), as ``site_within_effect``
    :math:`\sim N(0, \sigma_s^2)`.
    """
    des = data.design
    arm, within = site_arm_basis(des)
    norm = float(np.linalg.norm(arm))
    mu_eff, sd_eff = eff_mu, eff_sd
    if within.shape[1] and centred:
        spread = pt.dot(within, pm.Normal("site_within_effect", 0.0, sd_site[None, :], dims=("site_within", "dimension")))
    elif within.shape[1]:
        z_within = pm.Normal("z_site_within", 0.0, 1.0, dims=("site_within", "dimension"))
        spread = pt.dot(within, z_within) * sd_site[None, :]
    else:
        spread = pt.zeros((len(des.site), data.n_dim))
    if norm == 0.0:   # one arm only (or no arm column): no SofS effect in the likelihood
        if des.sofs is not None:
            pm.Normal("sofs_effect", mu_eff, sd_eff, dims="dimension")
        pm.Deterministic("site_effect", spread, dims=("site", "dimension"))
        return spread
    kappa = sd_site / norm
    total_var = sd_eff**2 + kappa**2
    diff = pm.Normal("arm_difference", mu_eff, pt.sqrt(total_var), dims="dimension")
    zeta = (kappa * (diff - mu_eff) / total_var
            + sd_eff / pt.sqrt(total_var) * pm.Normal("z_site_arm", 0.0, 1.0, dims="dimension"))
    pm.Deterministic("sofs_effect", diff - kappa * zeta, dims="dimension")
    arm_c = pt.as_tensor(arm)[:, None]
    pm.Deterministic("site_effect", (sd_site * zeta)[None, :] * arm_c / norm + spread, dims=("site", "dimension"))
    return diff[None, :] * arm_c + spread


def _solve_lower_rows(chol, rows, D: int) -> pt.TensorVariable:
    """Rows :math:`L^{-1} g_i` of ``rows`` (n, D) for a lower-triangular ``chol`` (D, D).

    Forward substitution written out over the (few) dimensions: elementwise operations that
    the compiler fuses, much cheaper per gradient on small models than a general solve or
    inverse.
    """
    cols = []
    for d in range(D):
        acc = rows[:, d]
        for e in range(d):
            acc = acc - chol[d, e] * cols[e]
        cols.append(acc / chol[d, d])
    return pt.stack(cols, axis=1)


def _latent_regression(data: GRMData, priors: GRMPriors, chol, eff_mu: float, eff_sd: float,
                       centred: bool = False) -> pt.TensorVariable:
    """theta = site means + competence + (worker and family terms); see the module docstring.

    Site means from :func:`_site_means`. Family and worker terms non-centred: ``z_theta_raw``
    (person, dimension) less the competence shift (see the comment in the code), centred over
    persons, correlated by ``chol``; the worker term comes
    from the symmetric square root of the compound-symmetric covariance of the families
    sharing a worker, ``(z_i + k_w * sum_{j in w} z_j) / T``. (A centred version of the family
    residuals mixed no better at 60 families and sampled 2-3 times slower; one with the worker
    effects integrated out analytically mixed worse at 5,000: trait-correlation bulk ESS 29
    against 129 in 2 x 300 draws.)
    """
    des = data.design
    D, P = data.n_dim, data.n_person
    # Named prior of the SofS effect as data: one compiled model serves all three priors.
    eff_mu = pm.Data("effect_prior_mean", eff_mu)
    eff_sd = pm.Data("effect_prior_sd", eff_sd)
    if des.competence is not None:
        gamma = pm.Normal("competence_slope", 0.0, priors.slope_sd_per_sd / des.competence_sd, dims="dimension")
        comp = pm.Data("competence_c", des.competence - des.competence_centre, dims="person")
        cg = comp[:, None] * gamma[None, :]
    else:
        cg = pt.zeros((P, D))
    # The latent unit is the SD within a site (worker + family): thousands of families pin it,
    # where a unit that included the site variance (T^2 = 1 + sd_site^2 + sd_worker^2) let the
    # scale of every trait, discrimination and threshold trade with the site SD, which four
    # sites cannot teach (bulk ESS 16-19 for the item parameters at 5,000 families).
    if des.worker is not None:
        W = len(des.worker)
        # Zero-avoiding Gamma(2) prior (mean worker_sd).
        sd_w = pm.Gamma("worker_sd_raw", alpha=2.0, beta=2.0 / priors.worker_sd, dims="dimension")
        total = pt.sqrt(1.0 + sd_w**2)
        pm.Deterministic("sd_worker", sd_w / total, dims="dimension")
        n_w = np.bincount(des.worker_idx, minlength=W).astype(float)[:, None]
        k_w = (pt.sqrt(1.0 + n_w * sd_w[None, :] ** 2) - 1.0) / n_w

        def worker_sums(x):   # (person, dimension) -> (worker, dimension)
            return pt.inc_subtensor(pt.zeros((W, D))[des.worker_idx], x)

        # The family draws carry the competence term: z_theta_raw ~ N(shift, 1), with shift the
        # draws that reproduce gamma * c through the worker and correlation maps, so that gamma
        # drops out of the likelihood (up to the centring) and is learnt from the draws as a
        # regression. The same model in other coordinates: when the items pin the traits, a slope
        # outside the draws had to drag every draw with it (bulk ESS 184 in 4 x 600 draws at
        # 5,000 families, about 470 in 4 x 2,000 at 60; 1,700-1,900 at 60 this way).
        g = total[None, :] * (cg - (k_w / (1.0 + n_w * k_w) * worker_sums(cg))[des.worker_idx])
    else:
        g = cg
    shift = _solve_lower_rows(chol, g, D) if chol is not None else g   # rows L^-1 g_i
    # Sampled from the answers' start (start_points): the competence shift is 0 at the prior's support point.
    raw = pm.Normal("z_theta_raw", shift, 1.0, dims=("person", "dimension")) - shift
    z = raw - raw.mean(axis=0, keepdims=True)
    # Residual draws centred over persons, competence centred and site effects with a zero
    # family-weighted sum: the sample mean of theta stays (close to) 0 whatever the effects are.
    eps = z @ chol.T if chol is not None else z
    if des.worker is not None:
        resid = (eps + (k_w * worker_sums(eps))[des.worker_idx]) / total[None, :]
    else:
        resid = eps
    mean = cg
    if des.site is not None:
        # Zero-avoiding Gamma(2) prior with mean site_sd (pm.Data 'site_sd_prior_mean', so one
        # compiled model serves a sensitivity analysis over it): four sites cannot teach us the
        # site SD, and a half-normal's mass at zero made a funnel with the arm effect.
        site_sd_mean = pm.Data("site_sd_prior_mean", priors.site_sd)
        sd_s = pm.Gamma("site_sd_raw", alpha=2.0, beta=2.0 / site_sd_mean, dims="dimension")
        sd_site = pm.Deterministic("sd_site", sd_s, dims="dimension")
        site = _site_means(data, sd_site, eff_mu, eff_sd, centred=centred)
        mean = mean + site[des.site_idx]
    elif des.sofs is not None:
        # No site column: the arm effect is judged against the families' own variation only.
        beta = pm.Normal("sofs_effect", eff_mu, eff_sd, dims="dimension")
        mean = mean + (des.sofs - des.sofs.mean())[:, None] * beta[None, :]
    mean = pt.as_tensor(mean)
    mean.name = "theta_mean"       # the latent-regression mean (models.irt_loo reconstructs it from the draws)
    return pm.Deterministic("theta", mean + resid, dims=("person", "dimension"))


def build_grm(
    data: GRMData,
    *,
    priors: GRMPriors | None = None,
    effect_prior: Any | None = None,
    regression: bool | None = None,
    centring: str = "auto",
    dif: bool = False,
) -> pm.Model:
    r"""The graded response model of ``data`` as a ``pm.Model`` (see module docstring).

    Parameters
    ----------
    data
        From :func:`grm_data`.
    priors
        Hyper-parameters (default ``GRMPriors()``).
    effect_prior
        A ``models.priors.NamedPrior`` for the SofS arm effect (overrides ``priors``); its
        mean and sd are ``pm.Data`` (``effect_prior_mean``, ``effect_prior_sd``) so a compiled
        model can be re-sampled under another named prior.
    regression
        Include the latent regression (default: when ``data.design`` is present).
    centring
        How the latent regression samples the within-arm site contrasts (see
        :func:`_site_means`): ``'non_centred'`` (few families per site), ``'centred'``
        (many: the data pin each site's mean), or ``'auto'`` (default): centred when every
        site has at least ``CENTRED_FROM`` families. Both are the same model; only the
        geometry the sampler sees differs (at 5,000 families the non-centred form left the
        site SD with a bulk ESS of 10 in 600 draws; at 60 the centred one had 3-49
        divergences in 8,000 draws).
    dif
        Differential item functioning between the arms, as a check (needs an arm column):
        :math:`\operatorname{logit} P(y_{ij} \ge k) = a_j(\theta_{i,d(j)} + \delta_j \tilde s_i)
        - c_{jk}`, with :math:`\tilde s_i` the centred SofS indicator and item shifts
        :math:`\delta_j` (latent SDs, SofS minus contrast) shrunken towards zero,
        :math:`\delta = \sigma_\delta (z - \bar z_{d(j)})`, :math:`z_j \sim t_4(0, 1)` (heavy tails:
        DIF is usually in a few items),
        :math:`\sigma_\delta \sim \text{HalfNormal}(` ``priors.dif_sd`` :math:`)`. The shifts sum to
        zero within each dimension, so a shift common to all of a dimension's items stays the
        arm effect on the trait: :math:`\delta_j` is item *j*'s arm difference relative to
        its dimension's other items (what DIF can mean without anchor items). Variables
        ``dif`` (item) and ``dif_sd``. The NumPy functions of this module (predictive
        checks, scores, LOO) assume no DIF: read only ``dif`` and the arm effect from such a fit.

    Variables: ``discrimination`` (item), ``threshold`` (item, cut), ``theta`` (person,
    dimension), ``trait_corr`` (dimension, dimension_bis) when there are several dimensions,
    and with the regression ``sofs_effect``, ``competence_slope`` (dimension),
    ``sd_site``, ``sd_worker`` (dimension; SDs on the unit latent scale), raw
    ``site_sd_raw``/``worker_sd_raw``, ``arm_difference`` (dimension; see :func:`_site_means`),
    ``site_effect`` (site, dimension), raw ``z_site_arm`` and ``z_site_within`` (or, centred,
    ``site_within_effect``), and non-centred ``z_theta_raw`` (person, dimension). The observed
    variable is ``y`` (obs).
    """
    priors = priors or GRMPriors()
    regression = data.design is not None if regression is None else regression
    if centring not in ("auto", "centred", "non_centred"):
        raise ValueError(f"centring must be 'auto', 'centred' or 'non_centred', got '{centring}'")
    if centring == "auto":
        smallest = (np.bincount(data.design.site_idx).min()
                    if data.design is not None and data.design.site_idx is not None else 0)
        centring = "centred" if smallest >= CENTRED_FROM else "non_centred"
    if regression and data.design is None:
        raise ValueError("regression=True needs data built with covariates=True")
    J, K, D, P = data.n_item, data.n_categories, data.n_dim, data.n_person
    eff_mu = float(getattr(effect_prior, "mean", priors.effect_mean))
    eff_sd = float(getattr(effect_prior, "sd", priors.effect_sd))
    with pm.Model(coords=grm_coords(data)) as model:
        # --- item parameters (slope-intercept form: logit P(y >= k) = a * theta - c_k) ---
        if priors.pooling == "all":
            mu_a = pm.Normal("log_discrimination_mean", priors.log_discrimination_mean, 0.5)
            sd_a = pm.HalfNormal("log_discrimination_sd", priors.log_discrimination_spread)
            z_a = pm.Normal("z_discrimination", 0.0, 1.0, dims="item")
            log_a = mu_a + sd_a * z_a
            m_loc = pm.Normal("cut_location_mean", 0.0, priors.cut_location_sd)
            tau_loc = pm.HalfNormal("cut_location_spread", priors.cut_location_spread)
            z_loc = pm.Normal("z_cut_location", 0.0, 1.0, dims="item")
            loc = m_loc + tau_loc * z_loc
        else:
            log_a = pm.Normal("log_discrimination", priors.log_discrimination_mean, priors.log_discrimination_sd,
                              dims="item")
            # Each item's location is N(0, cut_location_sd^2), correlated 0.5 across items through
            # a common part (a fixed prior, nothing learnt about its spread): independent locations
            # made the prior predictive share of each category nearly the same in every data set.
            half = priors.cut_location_sd / np.sqrt(2.0)
            common = pm.Normal("cut_location_common", 0.0, half)
            loc = pm.Deterministic("cut_location", common + half * pm.Normal("z_cut_location", 0.0, 1.0, dims="item"),
                                   dims="item")
        if K > 2 and priors.pooling == "none":
            log_gap = pm.Normal("log_gap", priors.log_gap_mean, priors.log_gap_sd, dims=("item", "gap"))
        elif K > 2:
            g = pm.Normal("log_gap_mean", priors.log_gap_mean, priors.log_gap_sd, dims="gap")
            taug = pm.HalfNormal("log_gap_spread", priors.log_gap_spread)
            zg = pm.Normal("z_log_gap", 0.0, 1.0, dims=("item", "gap"))
            log_gap = g[None, :] + taug * zg
        a = pm.Deterministic("discrimination", pt.exp(log_a), dims="item")
        if K > 2:
            # Each item's cutpoints: its location (the mean cutpoint) plus positive gaps, so the
            # prior is symmetric in the categories (a first-cutpoint prior piled the prior
            # predictive answers into the lowest category).
            steps = pt.concatenate([pt.zeros((J, 1)), pt.cumsum(pt.exp(log_gap), axis=1)], axis=1)
            cut = loc[:, None] + steps - steps.mean(axis=1, keepdims=True)
        else:
            cut = loc[:, None]
        pm.Deterministic("threshold", cut / a[:, None], dims=("item", "cut"))

        # --- latent traits ---
        chol = None
        if D > 1:
            chol = pm.LKJCorr("trait_chol", n=D, eta=priors.lkj_eta)
            pm.Deterministic("trait_corr", chol @ chol.T, dims=("dimension", "dimension_bis"))
        if regression:
            theta = _latent_regression(data, priors, chol, eff_mu, eff_sd, centring == "centred")
        else:
            # Non-centred, centred over persons: this pins the latent location exactly (a free
            # location traded off against all thresholds and mixed slowly). Centring N(0, 1)
            # draws gives the zero-sum normal's distribution and compiles much faster.
            z = _centred_normal("z_theta", ("person", "dimension"))
            theta = pm.Deterministic("theta", z @ chol.T if chol is not None else z, dims=("person", "dimension"))

        # --- likelihood ---
        # One compiled pass gives the log-likelihood of all answers and its gradient
        # (models.grm_kernel): at 5,000 x 20, 1.0 ms against 2.6 ms for the same expression as a graph.
        pad = padded_cutpoints(cut, pt)
        theta_index = (data.person_idx * D + data.item_dimension[data.item_idx]).astype(np.int32)
        item_code = data.item_idx.astype(np.int32)
        a_lik = a
        if dif:
            # Each (arm, item) is its own row of cutpoints, shifted by a_j delta_j s_i: the same
            # compiled likelihood, with 2J rows instead of J.
            pad, a_lik, item_code = _dif_rows(data, a, pad, priors)
        pm.CustomDist("y", theta, a_lik, pad, theta_index, item_code, logp=_grm_logp,
                      signature="(p,d),(j),(j,c),(n),(n)->(n)", observed=data.response, dims="obs")
    return model


#: Degrees of freedom of the DIF shifts' Student-t: DIF is usually in a few items, so the prior
#: lets one item shift a lot while shrinking the others (a normal prior shrinks all alike).
DIF_NU = 4.0


def _dif_rows(data: GRMData, a, pad, priors: GRMPriors):
    """Cutpoint rows per (arm, item) for :func:`build_grm`'s ``dif`` (see its docstring)."""
    des = data.design
    if des is None or des.sofs is None or len(np.unique(des.sofs)) < 2:
        raise ValueError("dif=True needs an arm column with families in both arms")
    J = data.n_item
    centre = np.zeros((J, J))       # z - (mean of z over the items of the same dimension)
    for d in range(data.n_dim):
        idx = np.flatnonzero(data.item_dimension == d)
        centre[np.ix_(idx, idx)] = np.eye(len(idx)) - 1.0 / len(idx)
    sd = pm.HalfNormal("dif_sd", priors.dif_sd)
    z = pm.StudentT("z_dif", nu=DIF_NU, mu=0.0, sigma=1.0, dims="item")
    delta = pm.Deterministic("dif", sd * pt.dot(centre, z), dims="item")
    arm = (des.sofs > 0.5).astype(np.int32)
    level = np.array([0.0, 1.0]) - des.sofs.mean()                       # centred indicator by arm
    shifted = pad[None, :, :] - (level[:, None, None] * (a * delta)[None, :, None])
    rows = shifted.reshape((2 * J, pad.shape[-1]))
    return rows, pt.concatenate([a, a]), (arm[data.person_idx] * J + data.item_idx).astype(np.int32)


def dif_table(idata: xr.DataTree, data: GRMData, *, threshold: float = 0.25) -> pd.DataFrame:
    r"""Per item, the posterior of its arm shift :math:`\delta_j` (latent SDs; ``build_grm(dif=True)``):
    mean, 95% interval, P(|delta| > ``threshold``), and ``flagged`` when the 95% interval excludes 0."""
    d = _stack(idata, "dif")
    lo, hi = np.quantile(d, [0.025, 0.975], axis=0)
    return pd.DataFrame({"instrument": data.instrument, "item": list(data.item),
                         "dimension": [data.dimension[k] for k in data.item_dimension],
                         "dif_mean": d.mean(0), "dif_eti95_low": lo, "dif_eti95_high": hi,
                         "p_abs_gt_threshold": (np.abs(d) > threshold).mean(0), "threshold": threshold,
                         "flagged": (lo > 0) | (hi < 0)})


# --------------------------------------------------------------------------------------------
# NumPy functions over axes (draws broadcast in front)
# --------------------------------------------------------------------------------------------

def cumulative_probabilities(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(Y >= k), k = 1..K-1: ``theta`` (...), ``a`` (...), ``b`` (..., K-1) -> (..., K-1)."""
    theta = np.asarray(theta, dtype=float)[..., None]
    return expit(np.asarray(a, dtype=float)[..., None] * (theta - np.asarray(b, dtype=float)))


def category_probabilities(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(Y = k), k = 0..K-1, broadcasting ``theta``, ``a`` and ``b`` (last axis K-1)."""
    pstar = cumulative_probabilities(theta, a, b)
    ones = np.ones(pstar.shape[:-1] + (1,))
    upper = np.concatenate([ones, pstar], axis=-1)
    lower = np.concatenate([pstar, np.zeros_like(ones)], axis=-1)
    return np.clip(upper - lower, 0.0, 1.0)


def item_information(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""Fisher information of a graded item: :math:`I(\theta) = \sum_k P_k'(\theta)^2 / P_k(\theta)`."""
    pstar = cumulative_probabilities(theta, a, b)
    d = np.asarray(a, dtype=float)[..., None] * pstar * (1.0 - pstar)
    zeros = np.zeros(d.shape[:-1] + (1,))
    dp = np.concatenate([zeros, d], axis=-1) - np.concatenate([d, zeros], axis=-1)
    p = category_probabilities(theta, a, b)
    return np.sum(np.where(p > 1e-300, dp**2 / np.maximum(p, 1e-300), 0.0), axis=-1)


def expected_score(theta: np.ndarray, a: np.ndarray, b: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
    """E[value of the answer]; ``values`` per category (default 0..K-1)."""
    p = category_probabilities(theta, a, b)
    v = np.arange(p.shape[-1], dtype=float) if values is None else np.asarray(values, dtype=float)
    return p @ v


def cronbach_alpha(answers: np.ndarray) -> float:
    """Cronbach's alpha of a person x item array (complete rows only), for comparison with the report."""
    x = np.asarray(answers, dtype=float)
    x = x[~np.isnan(x).any(axis=1)]
    k = x.shape[1]
    if k < 2 or x.shape[0] < 2:
        raise ValueError("alpha needs at least two items and two complete rows")
    item_var = x.var(axis=0, ddof=1).sum()
    total_var = x.sum(axis=1).var(ddof=1)
    return float(k / (k - 1) * (1.0 - item_var / total_var))


def marginal_reliability(theta: np.ndarray, info: np.ndarray, variance: float | np.ndarray | None = None) -> np.ndarray:
    r"""Posterior marginal reliability per draw.

    .. math:: \rho^{(s)} = 1 - \frac{1}{n}\sum_i \frac{1}{I^{(s)}(\theta^{(s)}_i) + 1/\sigma^{2}}
                             \Big/ \sigma^{2},

    the share of the trait's variance :math:`\sigma^2` that is not error: the fraction is the
    approximate posterior error variance of a person's trait at its test information, with
    the prior variance :math:`\sigma^2`. ``variance`` is :math:`\sigma^2`; the GRMs of this
    module fix the trait's variance given the latent regression's covariates at 1, so
    :func:`reliability_draws` passes 1 (the reliability of the trait among respondents with
    the same covariates). ``None`` uses the variance of the persons' traits in each draw.
    ``theta`` is (draw, person) and ``info`` (draw, person) the test information at those
    traits; returns (draw,).
    """
    var = np.var(theta, axis=-1, ddof=1) if variance is None else np.broadcast_to(
        np.asarray(variance, dtype=float), np.shape(theta)[:-1])
    err = np.mean(1.0 / (info + 1.0 / var[..., None]), axis=-1)
    return 1.0 - err / var


# --------------------------------------------------------------------------------------------
# Posterior summaries (DataTree in, tables/arrays out)
# --------------------------------------------------------------------------------------------

def _stack(idata: xr.DataTree, name: str, max_draws: int | None = None, seed: int = 0) -> np.ndarray:
    da = idata["posterior"][name]
    da = da.stack(sample=("chain", "draw")).transpose("sample", ...)
    x = np.asarray(da.values)
    if max_draws is not None and x.shape[0] > max_draws:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_draws, replace=False))
        x = x[keep]
    return x


def posterior_arrays(idata: xr.DataTree, *, max_draws: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Draws (sample first) of the quantities the summaries need."""
    names = ["discrimination", "threshold", "theta"]
    for extra in ("sofs_effect", "competence_slope", "trait_corr",
                  "sd_site", "sd_worker"):
        if extra in idata["posterior"]:
            names.append(extra)
    return {n: _stack(idata, n, max_draws, seed) for n in names}


def _dim_items(data: GRMData) -> list[np.ndarray]:
    return [np.flatnonzero(data.item_dimension == d) for d in range(data.n_dim)]


def mean_expected_score(theta: np.ndarray, a: np.ndarray, b: np.ndarray, data: GRMData) -> np.ndarray:
    """Average expected answer over each dimension's items, on the report's code scale.

    ``theta`` (draw, person, dimension), ``a`` (draw, item), ``b`` (draw, item, cut) ->
    (draw, person, dimension).
    """
    out = np.empty(theta.shape)
    for d, items in enumerate(_dim_items(data)):
        es = expected_score(theta[:, :, d, None], a[:, None, items], b[:, None, items], data.code_values)
        out[:, :, d] = es.mean(axis=-1)
    return out


def score_scale_effects(idata: xr.DataTree, data: GRMData, *, max_draws: int = 2000, seed: int = 0,
                        overall: bool | None = None) -> dict[str, Any]:
    """The latent-regression effects translated to the report's average-score scale.

    By g-computation over the sample's families, for each draw and dimension:

    - ``sofs``: mean over families of the expected average score with every family in a
      SofS site minus with every family in a contrast site (each family keeps its own
      competence, worker, site and residual);
    - ``competence``: mean change in the expected average score for one more unit of
      competence (average marginal effect, as Table 6's slopes);
    - ``observed_gap``: mean expected score of the SofS-site families minus that of the
      contrast-site families as they are (the model's version of Table 5's difference).

    With ``overall`` (default: when there are several subscale dimensions) a last column is
    the same for the average over *all* items, the report's "overall score", computed from
    the multidimensional model. Also the latent ``sofs_latent`` and ``competence_latent``
    draws (no overall column). Arrays are (draw, column); ``columns`` and ``labels`` name them.
    """
    if data.design is None:
        raise ValueError("score-scale effects need a latent regression")
    overall = (data.mode == "subscale" and data.n_dim > 1) if overall is None else overall
    post = posterior_arrays(idata, max_draws=max_draws, seed=seed)
    a, b, theta = post["discrimination"], post["threshold"], post["theta"]
    beta, gamma = post.get("sofs_effect"), post.get("competence_slope")
    weights = np.array([len(i) for i in _dim_items(data)], dtype=float)

    def scores(t: np.ndarray) -> np.ndarray:
        s = mean_expected_score(t, a, b, data)
        if overall:
            s = np.concatenate([s, (s @ weights / weights.sum())[..., None]], axis=-1)
        return s

    now = scores(theta)
    out: dict[str, Any] = {"sofs": None, "observed_gap": None, "competence": None,
                           "sofs_latent": beta, "competence_latent": gamma}
    if beta is not None and data.design.sofs is not None:
        sofs = data.design.sofs[None, :, None]
        base = theta - sofs * beta[:, None, :]
        out["sofs"] = (scores(base + beta[:, None, :]) - scores(base)).mean(axis=1)
        arm = data.design.sofs.astype(bool)
        out["observed_gap"] = now[:, arm].mean(axis=1) - now[:, ~arm].mean(axis=1)
    if gamma is not None:
        out["competence"] = (scores(theta + gamma[:, None, :]) - now).mean(axis=1)
    out["columns"] = list(data.dimension) + (["overall"] if overall else [])
    out["labels"] = list(data.dimension_label) + (["Overall score"] if overall else [])
    return out


def reliability_draws(idata: xr.DataTree, data: GRMData, *, max_draws: int = 1000, seed: int = 0) -> np.ndarray:
    """Posterior marginal reliability (draw, dimension) of the trait given the covariates
    (its model variance, 1); see :func:`marginal_reliability`."""
    post = posterior_arrays(idata, max_draws=max_draws, seed=seed)
    a, b, theta = post["discrimination"], post["threshold"], post["theta"]
    out = np.empty((theta.shape[0], data.n_dim))
    for d, items in enumerate(_dim_items(data)):
        info = item_information(theta[:, :, d, None], a[:, None, items], b[:, None, items]).sum(axis=-1)
        # The latent unit: variance 1 given the covariates (with or without latent regression).
        out[:, d] = marginal_reliability(theta[:, :, d], info, variance=1.0)
    return out


def summarise_draws(draws: np.ndarray, *, prob: float = 0.9) -> dict[str, float]:
    x = np.asarray(draws, dtype=float).ravel()
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "low": float(lo), "high": float(hi)}


def reliability_table(idata: xr.DataTree, data: GRMData, **kw: Any) -> pd.DataFrame:
    """One row per dimension: posterior mean and 90% interval of the marginal reliability,
    beside Cronbach's alpha of the same answers (complete cases)."""
    rel = reliability_draws(idata, data, **kw)
    wide = data.wide().astype(float)
    wide[wide < 0] = np.nan
    rows = []
    for d, items in enumerate(_dim_items(data)):
        s = summarise_draws(rel[:, d])
        try:
            alpha = cronbach_alpha(wide[:, items]) if len(items) > 1 else np.nan
        except ValueError:
            alpha = np.nan
        rows.append({"instrument": data.instrument, "dimension": data.dimension[d],
                     "label": data.dimension_label[d], "n_items": len(items),
                     "reliability_mean": s["mean"], "reliability_low90": s["low"],
                     "reliability_high90": s["high"], "cronbach_alpha": alpha})
    return pd.DataFrame(rows)


def person_scores(idata: xr.DataTree, data: GRMData, *, max_draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Person scores with uncertainty: latent trait and expected average score (report scale).

    For a subscale model an ``overall`` row per person gives the expected average over all
    items (the report's overall score; no latent trait of its own)."""
    post = posterior_arrays(idata, max_draws=max_draws, seed=seed)
    theta = post["theta"]
    score = mean_expected_score(theta, post["discrimination"], post["threshold"], data)
    dims = list(data.dimension)
    if data.mode == "subscale" and data.n_dim > 1:
        w = np.array([len(i) for i in _dim_items(data)], dtype=float)
        score = np.concatenate([score, (score @ w / w.sum())[..., None]], axis=-1)
        dims.append("overall")
    rows = []
    nan = {"mean": np.nan, "sd": np.nan, "low": np.nan, "high": np.nan}
    for i, pid in enumerate(data.person):
        for d, dim in enumerate(dims):
            t = summarise_draws(theta[:, i, d]) if d < data.n_dim else nan
            s = summarise_draws(score[:, i, d])
            rows.append({"instrument": data.instrument, "person": pid, "dimension": dim,
                         "theta_mean": t["mean"], "theta_sd": t["sd"], "theta_low90": t["low"],
                         "theta_high90": t["high"], "score_mean": s["mean"], "score_low90": s["low"],
                         "score_high90": s["high"]})
    return pd.DataFrame(rows)


def item_parameter_table(idata: xr.DataTree, data: GRMData) -> pd.DataFrame:
    """Posterior mean, sd and 90% interval of each discrimination and threshold."""
    post = posterior_arrays(idata)
    rows = []
    for j, item in enumerate(data.item):
        dim = data.dimension[data.item_dimension[j]]
        rows.append({"instrument": data.instrument, "item": item, "dimension": dim, "parameter": "a",
                     **summarise_draws(post["discrimination"][:, j])})
        for k in range(data.n_categories - 1):
            rows.append({"instrument": data.instrument, "item": item, "dimension": dim,
                         "parameter": f"b{k + 1}", **summarise_draws(post["threshold"][:, j, k])})
    return pd.DataFrame(rows)


def information_curves(idata: xr.DataTree, data: GRMData, grid: np.ndarray | None = None,
                       *, max_draws: int = 500, seed: int = 0) -> dict[str, Any]:
    """Item and test information and category curves on a trait grid (for the figures).

    Returns ``grid``, ``items`` (item labels), ``item_dimension``, ``a`` and ``b``
    (posterior means), ``category_probs`` (item, grid, K) at the posterior means,
    ``test_info`` (dimension -> (3, grid): 5%, 50%, 95% over draws) and ``dimension_label``.
    """
    grid = np.linspace(-4, 4, 161) if grid is None else np.asarray(grid, dtype=float)
    post = posterior_arrays(idata, max_draws=max_draws, seed=seed)
    a, b = post["discrimination"], post["threshold"]
    a_mean, b_mean = a.mean(axis=0), b.mean(axis=0)
    probs = category_probabilities(grid[None, :], a_mean[:, None], b_mean[:, None, :])
    test = {}
    for d, items in enumerate(_dim_items(data)):
        info = item_information(grid[None, :, None], a[:, None, items], b[:, None, items]).sum(axis=-1)
        test[data.dimension[d]] = np.quantile(info, [0.05, 0.5, 0.95], axis=0)
    return {"grid": grid, "items": list(data.item), "item_dimension": [data.dimension[d] for d in data.item_dimension],
            "a": a_mean, "b": b_mean, "category_probs": probs, "test_info": test,
            "dimension_label": dict(zip(data.dimension, data.dimension_label)),
            "code_values": data.code_values, "instrument": data.instrument, "trait": data.trait}


def ppc_item_distributions(idata: xr.DataTree, data: GRMData, *, n_draws: int = 400, seed: int = 0) -> pd.DataFrame:
    """Posterior predictive check of each item's answer distribution.

    For ``n_draws`` posterior draws, new answers are drawn for every observed (person, item)
    cell; the table gives, per item and category, the observed count and the predictive mean
    and 90% interval of the count, and whether the observed count lies inside it.
    """
    post = posterior_arrays(idata, max_draws=n_draws, seed=seed)
    y_rep = _draw_answers(post["theta"], post["discrimination"], post["threshold"], data, np.random.default_rng(seed))
    j = data.item_idx
    K = data.n_categories
    rows = []
    for item in range(data.n_item):
        sel = j == item
        obs_counts = np.bincount(data.response[sel], minlength=K)
        rep_counts = np.stack([np.bincount(r, minlength=K) for r in y_rep[:, sel]])
        lo, hi = np.quantile(rep_counts, [0.05, 0.95], axis=0)
        for k in range(K):
            rows.append({"instrument": data.instrument, "item": data.item[item],
                         "category": int(data.code_values[k]) if float(data.code_values[k]).is_integer() else data.code_values[k],
                         "model_category": k, "observed": int(obs_counts[k]),
                         "predicted_mean": float(rep_counts[:, k].mean()), "predicted_low90": float(lo[k]),
                         "predicted_high90": float(hi[k]),
                         "inside90": bool(lo[k] <= obs_counts[k] <= hi[k])})
    return pd.DataFrame(rows)


def trait_correlations(idata: xr.DataTree, data: GRMData) -> pd.DataFrame:
    """Posterior of each pairwise (residual) trait correlation."""
    if "trait_corr" not in idata["posterior"]:
        return pd.DataFrame(columns=["dimension_1", "dimension_2", "mean", "sd", "low", "high"])
    r = _stack(idata, "trait_corr")
    rows = []
    for i in range(data.n_dim):
        for k in range(i + 1, data.n_dim):
            rows.append({"instrument": data.instrument, "dimension_1": data.dimension[i],
                         "dimension_2": data.dimension[k], **summarise_draws(r[:, i, k])})
    return pd.DataFrame(rows)


def rater_agreement(idata: xr.DataTree, data: GRMData, *, max_draws: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Agreement between two rater dimensions (WAI: family vs social worker), as posteriors.

    - ``latent_corr``: correlation of the two raters' traits after the covariates (the
      model's ``trait_corr``), replacing item-wise kappa;
    - ``sample_corr``: correlation across the sample's families of the two traits (draw-wise);
    - ``score_difference``: mean over families of (first rater's expected average score minus
      the second's), on the report's scale, replacing the paired t-test;
    - ``slope_difference``: difference of the competence effects on the average-score scale
      (first minus second), when there is a latent regression.
    """
    if data.n_dim != 2:
        raise ValueError("rater agreement needs exactly two rater dimensions")
    post = posterior_arrays(idata, max_draws=max_draws, seed=seed)
    theta = post["theta"]
    score = mean_expected_score(theta, post["discrimination"], post["threshold"], data)
    tc = theta - theta.mean(axis=1, keepdims=True)
    sample_corr = (tc[:, :, 0] * tc[:, :, 1]).sum(1) / np.sqrt((tc[:, :, 0] ** 2).sum(1) * (tc[:, :, 1] ** 2).sum(1))
    out = {"latent_corr": post["trait_corr"][:, 0, 1], "sample_corr": sample_corr,
           "score_difference": (score[:, :, 0] - score[:, :, 1]).mean(axis=1)}
    if "competence_slope" in post:
        up = mean_expected_score(theta + post["competence_slope"][:, None, :], post["discrimination"],
                                 post["threshold"], data)
        eff = (up - score).mean(axis=1)
        out["slope_difference"] = eff[:, 0] - eff[:, 1]
    return out


def pointwise_log_likelihood(theta: np.ndarray, a: np.ndarray, b: np.ndarray, data: GRMData) -> np.ndarray:
    """log p(y_obs | theta, a, b) per answer: ``theta`` (..., person, dimension), ``a`` (..., item),
    ``b`` (..., item, cut) -> (..., obs). The same density as the model's ``y``."""
    j, p = data.item_idx, data.person_idx
    a = np.asarray(a, dtype=float)
    eta = a[..., j] * theta[..., p, data.item_dimension[j]]
    # Tables per (item, category), then one row per answer: the exponentials are per item.
    tables = category_tables(padded_cutpoints(a[..., None] * np.asarray(b, dtype=float)))
    lower, gap, exp_gap, log_expm1_gap = (t[..., j, data.response] for t in tables)
    return log_category_probability(eta - lower, gap, exp_gap, log_expm1_gap)


def marginal_log_likelihood(wide: np.ndarray, a: np.ndarray, b: np.ndarray, *, n_nodes: int = 41) -> float:
    """Marginal log-likelihood of a unidimensional GRM with theta ~ N(0, 1) (Gauss-Hermite).

    ``wide`` is person x item with -1 for missing; used to compare a posterior-mean fit with
    a published maximum-likelihood value.
    """
    x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    w = w / w.sum()
    probs = category_probabilities(x[:, None], a[None, :], b[None, :, :])  # (node, item, K)
    logp = np.log(np.maximum(probs, 1e-300))
    total = 0.0
    for row in wide:
        ok = row >= 0
        lp = logp[:, np.flatnonzero(ok), row[ok]].sum(axis=1)
        m = lp.max()
        total += m + np.log(np.sum(w * np.exp(lp - m)))
    return float(total)


# --------------------------------------------------------------------------------------------
# Named priors, effect tables, slim posteriors
# --------------------------------------------------------------------------------------------

#: The SofS effect the named priors are anchored to, in latent SDs. The report gives no
#: target for engagement; SofS's theory of change expects more collaborative relationships,
#: and 0.5 SD (a "medium" standardised difference) is the size such a claim would need.
ENGAGEMENT_TARGET_SD = 0.5

#: Main variables checked by the diagnostics of a latent-regression fit.
DIAGNOSTIC_VARS = ["discrimination", "threshold", "theta", "sofs_effect", "competence_slope",
                   "sd_site", "sd_worker", "trait_corr", "dif", "dif_sd"]


def engagement_priors(trait: str = "engagement") -> dict[str, Any]:
    """Sceptical / neutral / enthusiastic priors for the SofS arm effect (latent SD units)."""
    from models.priors import spiegelhalter_priors

    return spiegelhalter_priors(
        ENGAGEMENT_TARGET_SD, neutral_sd=1.0,
        scale=f"latent {trait} (SD among families of the same site, arm and competence)",
        target_label=f"a {ENGAGEMENT_TARGET_SD} SD gain in {trait}")


def diagnostic_vars(idata: xr.DataTree) -> list[str]:
    """The main variables present in a fit (for ``models.diagnostics.check_sampling``)."""
    return [v for v in DIAGNOSTIC_VARS if v in idata["posterior"]]


def effect_table(effects: dict[str, np.ndarray], data: GRMData, *, prior: str, rope: float, mid: float) -> pd.DataFrame:
    """One row per dimension and effect: score-scale summary and the probability of 'better'.

    ``effects`` comes from :func:`score_scale_effects`. "Better" is a lower average score on
    a ``lower_is_better`` instrument (Yatchmenoff) and a higher one otherwise (WAI), i.e. a
    positive latent effect; ``p_better`` equals P(latent effect > 0).
    """
    from models.statements import summarise_effect

    better_sign = -1.0 if data.score_direction == "lower_is_better" else 1.0
    latent = {"sofs": effects["sofs_latent"], "competence": effects["competence_latent"], "observed_gap": None}
    columns = effects.get("columns", list(data.dimension))
    labels = effects.get("labels", list(data.dimension_label))
    rows = []
    for q in ("sofs", "competence", "observed_gap"):
        if effects.get(q) is None:
            continue
        for d, (dim, label) in enumerate(zip(columns, labels)):
            x = effects[q][:, d]
            s = summarise_effect(x, rope=rope, mid=mid)
            row = {"instrument": data.instrument, "dimension": dim, "label": label,
                   "prior": prior, "quantity": q, **s.to_dict(),
                   "p_better": float(np.mean(better_sign * x > 0))}
            if latent[q] is not None and d < latent[q].shape[1]:
                lat = summarise_draws(latent[q][:, d], prob=0.95)
                row.update(latent_mean=lat["mean"], latent_low95=lat["low"], latent_high95=lat["high"],
                           p_latent_positive=float(np.mean(latent[q][:, d] > 0)))
            rows.append(row)
    return pd.DataFrame(rows)


def slim_posterior(idata: xr.DataTree, var_names: list[str] | None = None) -> xr.DataTree:
    """The posterior of the main variables plus ``sample_stats`` (for saving next to results)."""
    names = var_names or [v for v in ("sofs_effect", "competence_slope", "sd_site", "sd_worker", "discrimination",
                                      "trait_corr") if v in idata["posterior"]]
    post = idata["posterior"].to_dataset()[names]
    stats = idata["sample_stats"].to_dataset()
    stats = stats[[v for v in stats.data_vars if stats[v].dtype != object]]
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def prior_predictive_categories(model: pm.Model, data: GRMData, *, draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """Prior predictive check: share of answers in each category, prior predictive vs observed.

    Traits and item parameters are drawn from the prior by PyMC; answers are then drawn for
    every observed (person, item) cell with :func:`category_probabilities` (the same
    density as the model's ``y``).
    """
    with model:
        prior = pm.sample_prior_predictive(draws=draws, random_seed=seed,
                                           var_names=["theta", "discrimination", "threshold"])
    grp = prior["prior"]
    theta = grp["theta"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    a = grp["discrimination"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    b = grp["threshold"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    y = _draw_answers(theta, a, b, data, np.random.default_rng(seed))
    K = data.n_categories
    shares = np.stack([np.bincount(r, minlength=K) / len(r) for r in y])
    obs = np.bincount(data.response, minlength=K) / len(data.response)
    lo, mid, hi = np.quantile(shares, [0.05, 0.5, 0.95], axis=0)
    return pd.DataFrame({"instrument": data.instrument, "category": data.code_values, "model_category": np.arange(K),
                         "observed_share": obs, "prior_median": mid, "prior_low90": lo, "prior_high90": hi})


def _draw_answers(theta: np.ndarray, a: np.ndarray, b: np.ndarray, data: GRMData, rng: np.random.Generator) -> np.ndarray:
    """New answers (draw, obs) for every observed cell, given draws of traits and items."""
    j, p = data.item_idx, data.person_idx
    probs = category_probabilities(theta[:, p, data.item_dimension[j]], a[:, j], b[:, j, :])
    u = rng.uniform(size=probs.shape[:-1])[..., None]
    return np.minimum((u > probs.cumsum(axis=-1)).sum(axis=-1), data.n_categories - 1)
