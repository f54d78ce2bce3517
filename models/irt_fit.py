r"""Item fit and limited-information global fit of a graded response model, as posterior
predictive checks (issue 19, item 4: the model checks mirt users expect).

Every check here is a posterior predictive check with a *realised discrepancy*
:math:`D(y, \omega)` (Gelman, Meng and Stern 1996, Statistica Sinica 6): a function of the
answers and of the parameters :math:`\omega^{(s)} = (\theta^{(s)}, a^{(s)}, b^{(s)})` of one
posterior draw :math:`s`. For each of ``n_draws`` draws, new answers
:math:`y^{\text{rep}(s)}` are drawn for every observed (person, item) cell from the same draw
(``models.psychometric_irt._draw_answers``) and

.. math::

   \text{PPP} = \Pr\big(D(y^{\text{rep}}, \omega) \ge D(y, \omega) \mid y\big)
              \approx \frac{1}{S} \sum_s \mathbf 1\{D(y^{\text{rep}(s)}, \omega^{(s)})
              \ge D(y, \omega^{(s)})\}.

A small PPP says the observed answers are more discrepant from the model than answers the
model itself produces. Because the same answers fit the traits and the item parameters,
PPPs are conservative (they pile up near 0.5 rather than being uniform when the model is
right; Meng 1994, Ann Stat 22; Robins, van der Vaart and Ventura 2000, JASA 95), so
``flagged`` (PPP < 0.05) is a screen, not a test at level 5%, and several flags from many
items or pairs are not corrected for multiplicity.

Notation: person :math:`i`, item :math:`j` on dimension :math:`d(j)`, answer
:math:`y_{ij} \in \{0, \dots, K-1\}` (the model's category codes), :math:`P_{ijk}^{(s)} =
P(y_{ij} = k \mid \theta^{(s)}_{i,d(j)}, a^{(s)}_j, b^{(s)}_j)`,
:math:`\mu_{ij} = \sum_k k P_{ijk}`, :math:`\sigma^2_{ij} = \sum_k k^2 P_{ijk} - \mu_{ij}^2`;
:math:`I_j` is the set of persons who answered item :math:`j` (missing answers are left
out of every sum, so persons need not answer every item) and :math:`n_j = |I_j|`.

- :func:`item_fit`: per item, Sinharay's (2006) grouped chi-square and the outfit mean
  square (Wright and Masters 1982) as discrepancies.
- :func:`global_fit`: a moment discrepancy over all items from the first- and second-order
  moments of the item scores (item means and, by default, the cross-products of the
  residuals; the raw cross-products of Maydeu-Olivares and Joe's limited-information
  statistics for ordinal data on request), and per item pair a local-dependence screen.

Everything is NumPy over posterior draws, in chunks of draws so that the memory stays
bounded: at 5,000 persons x 20 items x 5 categories x 400 draws, :func:`item_fit` took
about 30 s and :func:`global_fit` about 20 s on one core, with a peak resident memory of
0.5 GiB for the whole process (shared 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from models import psychometric_irt as irt
from models.psychometric_irt import GRMData

#: Floor for expected counts and model variances in the denominators (a cell the model
#: gives practically no mass would otherwise divide by zero; the same floor is used for the
#: observed and the replicated answers, so it cannot favour either side of the PPP).
_FLOOR = 1e-8

#: At most about this many floats per array that grows with (draw, cell, category):
#: the draws are processed in chunks of this size divided by cells x categories.
_CHUNK_FLOATS = 1 << 22

#: PPPs below this are flagged.
FLAG_BELOW = 0.05


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------

def _draws(idata: xr.DataTree, n_draws: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    post = irt.posterior_arrays(idata, max_draws=n_draws, seed=seed)
    return post["theta"], post["discrimination"], post["threshold"]


def _chunks(n_draws: int, per_draw: int):
    """Slices of draws holding about ``_CHUNK_FLOATS`` floats of ``per_draw`` each."""
    size = max(1, min(n_draws, _CHUNK_FLOATS // max(per_draw, 1)))
    for start in range(0, n_draws, size):
        yield slice(start, min(start + size, n_draws))


def _cell_probabilities(theta: np.ndarray, a: np.ndarray, b: np.ndarray, data: GRMData) -> np.ndarray:
    """P(y = k) for every observed cell: (draw, obs, K)."""
    j = data.item_idx
    return irt.category_probabilities(theta[:, data.person_idx, data.item_dimension[j]], a[:, j], b[:, j, :])


def _ppp(replicated: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Share of draws with D(y_rep) >= D(y), along the first axis (NaN where undefined)."""
    ok = np.isfinite(replicated) & np.isfinite(observed)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.sum(ok & (replicated >= observed), axis=0) / n, np.nan)


# --------------------------------------------------------------------------------------------
# Item fit
# --------------------------------------------------------------------------------------------

def quantile_groups(t: np.ndarray, n_groups: int) -> np.ndarray:
    """Group index 0..G-1 of each person by the rank of ``t`` along the last axis: G groups of
    sizes differing by at most one (the larger first, as ``np.array_split``), lowest trait
    first; G = ``min(n_groups, n)``."""
    n = t.shape[-1]
    g = max(1, min(n_groups, n))
    order = np.argsort(t, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(n), order.shape), axis=-1)
    sizes = np.full(g, n // g)
    sizes[: n % g] += 1
    return np.searchsorted(np.cumsum(sizes)[:-1], ranks, side="right")


def grouped_chi2(y: np.ndarray, probs: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    r"""Sinharay's (2006) grouped chi-square of one item, per draw.

    .. math::

       X^2_j = \sum_{g=1}^{G} \sum_{k=0}^{K-1} \frac{(O_{gk} - E_{gk})^2}{E_{gk}}, \qquad
       O_{gk} = \#\{i \in g : y_{ij} = k\}, \quad E_{gk} = \sum_{i \in g} P_{ijk},

    with :math:`E_{gk}` floored at ``_FLOOR``. ``y`` (draw, n) or (n,) answers, ``probs``
    (draw, n, K), ``groups`` (draw, n) in 0..n_groups-1; returns (draw,).
    """
    S, n, K = probs.shape
    y = np.broadcast_to(y, (S, n))
    base = (np.arange(S)[:, None] * n_groups + groups) * K
    observed = np.bincount((base + y).ravel(), minlength=S * n_groups * K).reshape(S, n_groups, K)
    expected = np.zeros((S * n_groups, K))
    cell = (np.arange(S)[:, None] * n_groups + groups).ravel()
    for k in range(K):
        expected[:, k] = np.bincount(cell, weights=probs[..., k].ravel(), minlength=S * n_groups)
    expected = expected.reshape(S, n_groups, K)
    return np.sum((observed - expected) ** 2 / np.maximum(expected, _FLOOR), axis=(1, 2))


def outfit(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    r"""Outfit (unweighted) mean square of one item, per draw (Wright and Masters 1982).

    .. math:: \text{Outfit}_j = \frac{1}{n_j} \sum_{i \in I_j}
              \frac{(y_{ij} - \mu_{ij})^2}{\sigma^2_{ij}},

    :math:`\sigma^2_{ij}` floored at ``_FLOOR``; near 1 when the model holds. ``y`` (draw, n)
    or (n,), ``probs`` (draw, n, K); returns (draw,).
    """
    k = np.arange(probs.shape[-1], dtype=float)
    mu = probs @ k
    var = probs @ k**2 - mu**2
    return np.mean((y - mu) ** 2 / np.maximum(var, _FLOOR), axis=-1)


def item_fit(idata: xr.DataTree, data: GRMData, *, n_draws: int = 400, n_groups: int = 5,
             seed: int = 0) -> pd.DataFrame:
    r"""Posterior predictive item fit: grouped chi-square and outfit per item, with PPPs.

    For each of ``n_draws`` posterior draws :math:`s` (a random subset of the fit's draws,
    ``seed``) and each item :math:`j`, two realised discrepancies are computed on the
    observed answers and on answers replicated from the same draw:

    - ``grouped_chi2`` (Sinharay 2006, "Bayesian item fit analysis for unidimensional item
      response theory models", Br J Math Stat Psychol 59, 429-449): the persons who answered
      item :math:`j` are grouped by their draw-:math:`s` trait on the item's dimension,
      :math:`\theta^{(s)}_{i,d(j)}`, into ``n_groups`` quantile groups (the same groups for
      observed and replicated answers), and :math:`X^2_j = \sum_g \sum_k (O_{gk} -
      E_{gk})^2 / E_{gk}` with :math:`E_{gk} = \sum_{i \in g} P^{(s)}_{ijk}`
      (see :func:`grouped_chi2`). It detects answers whose relation to the trait is not the
      model's ordered-logistic curve (e.g. non-monotone items).
    - ``outfit``: the outfit mean square :math:`\frac{1}{n_j} \sum_{i \in I_j} (y_{ij} -
      \mu_{ij})^2 / \sigma^2_{ij}` on the category codes 0..K-1 (see :func:`outfit`). It
      reacts to answers noisier (or more deterministic) than the model says; an item
      unrelated to the trait or non-monotone in it is fitted with a small discrimination
      and has an ordinary outfit (in the tests the non-monotone item's outfit PPP was 0.43).

    PPP :math:`= \Pr(D(y^{\text{rep}}) \ge D(y))` over the draws (module docstring).
    Several dimensions: each item's groups and expectations use its own dimension's trait.

    Returns one row per item and statistic: ``instrument``, ``item``, ``dimension``,
    ``statistic`` (``'grouped_chi2'`` | ``'outfit'``), ``n_persons`` (:math:`n_j`),
    ``n_groups`` (groups used, for the chi-square), ``observed`` (mean over draws of
    :math:`D(y, \omega^{(s)})`), ``replicated`` (mean of :math:`D(y^{\text{rep}(s)},
    \omega^{(s)})`), ``ppp``, ``flagged`` (``ppp < 0.05``) and ``n_draws``.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be at least 1, got {n_groups}")
    theta, a, b = _draws(idata, n_draws, seed)
    S, J, K = a.shape[0], data.n_item, data.n_categories
    cells = [np.flatnonzero(data.item_idx == j) for j in range(J)]
    groups_used = [max(1, min(n_groups, len(c))) for c in cells]
    obs = {"grouped_chi2": np.full((S, J), np.nan), "outfit": np.full((S, J), np.nan)}
    rep = {name: np.full((S, J), np.nan) for name in obs}
    rng = np.random.default_rng([seed, 1])
    for sl in _chunks(S, len(data.response) * K):
        th, aa, bb = theta[sl], a[sl], b[sl]
        y_rep = irt._draw_answers(th, aa, bb, data, rng)
        for j, c in enumerate(cells):
            if len(c) == 0:
                continue
            t = th[:, data.person_idx[c], data.item_dimension[j]]
            p_j = irt.category_probabilities(t, aa[:, j, None], bb[:, j, None, :])
            y_j, r_j = data.response[c], y_rep[:, c]
            groups = quantile_groups(t, n_groups)
            obs["grouped_chi2"][sl, j] = grouped_chi2(y_j, p_j, groups, groups_used[j])
            rep["grouped_chi2"][sl, j] = grouped_chi2(r_j, p_j, groups, groups_used[j])
            obs["outfit"][sl, j] = outfit(y_j, p_j)
            rep["outfit"][sl, j] = outfit(r_j, p_j)
    rows = []
    for j, item in enumerate(data.item):
        for name in ("grouped_chi2", "outfit"):
            ppp = float(_ppp(rep[name][:, j], obs[name][:, j]))
            rows.append({"instrument": data.instrument, "item": item,
                         "dimension": data.dimension[data.item_dimension[j]], "statistic": name,
                         "n_persons": len(cells[j]),
                         "n_groups": groups_used[j] if name == "grouped_chi2" else np.nan,
                         "observed": float(np.nanmean(obs[name][:, j])) if len(cells[j]) else np.nan,
                         "replicated": float(np.nanmean(rep[name][:, j])) if len(cells[j]) else np.nan,
                         "ppp": ppp, "flagged": bool(ppp < FLAG_BELOW), "n_draws": S})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Global (limited-information) fit
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class GlobalFit:
    """Result of :func:`global_fit` (see there for the definitions).

    ``moments`` is the second-order part of the discrepancy (``'residual'`` or ``'raw'``);
    ``observed`` and ``replicated`` are the means over draws of the discrepancy on the
    observed and on replicated answers; ``ppp`` is P(D(y_rep) >= D(y)); ``n_moments`` the
    number of first- and second-order moments in the discrepancy; ``pairs`` one row per item
    pair (the local-dependence screen).
    """

    instrument: str
    statistic: str
    moments: str
    observed: float
    replicated: float
    ppp: float
    n_draws: int
    n_moments: int
    pairs: pd.DataFrame

    @property
    def flagged(self) -> bool:
        return bool(self.ppp < FLAG_BELOW)

    def to_dict(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "statistic": self.statistic, "moments": self.moments,
                "observed": self.observed, "replicated": self.replicated, "ppp": self.ppp,
                "flagged": self.flagged, "n_draws": self.n_draws, "n_moments": self.n_moments,
                "n_pairs_flagged": int(self.pairs["flagged"].sum()),
                "pairs": self.pairs.to_dict(orient="records")}


MOMENTS = ("residual", "raw")


def _wide(values: np.ndarray, data: GRMData) -> np.ndarray:
    """(..., obs) -> (..., person, item), zero where an answer is missing."""
    out = np.zeros(values.shape[:-1] + (data.n_person, data.n_item))
    out[..., data.person_idx, data.item_idx] = values
    return out


def _cross(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Per leading index, x^T y over persons: (..., person, item) -> (..., item, item)."""
    return np.swapaxes(x, -1, -2) @ (x if y is None else y)


def moment_parts(mu: np.ndarray, second: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    r"""Model moments of the item scores and their variances, given the traits of one draw.

    ``mu`` and ``second`` are (..., person, item) arrays of :math:`\mu_{ij} = E[y_{ij} \mid
    \theta_i]` and :math:`E[y_{ij}^2 \mid \theta_i]`, zero where person :math:`i` did not
    answer item :math:`j`; ``mask`` (person, item) is 1 for an answer. With :math:`n_{jl}` the
    number of persons who answered both :math:`j` and :math:`l` (:math:`n_{jj} = n_j`) and
    :math:`\sigma^2_{ij} = E[y_{ij}^2] - \mu_{ij}^2`:

    .. math::

       E_j = \frac{1}{n_j} \sum_{i \in I_j} \mu_{ij}, \qquad
       v_j = \frac{1}{n_j^2} \sum_{i \in I_j} \sigma^2_{ij},

       E_{jl} = \frac{1}{n_{jl}} \sum_{i \in I_j \cap I_l} \mu_{ij} \mu_{il}, \qquad
       v_{jl} = \frac{1}{n_{jl}^2} \sum_{i \in I_j \cap I_l}
                \big(E[y_{ij}^2] E[y_{il}^2] - \mu_{ij}^2 \mu_{il}^2\big), \qquad
       w_{jl} = \frac{1}{n_{jl}^2} \sum_{i \in I_j \cap I_l} \sigma^2_{ij} \sigma^2_{il}:

    the expectations and variances, given :math:`\theta`, of the sample moments
    :math:`m_j = \bar y_j` and :math:`m_{jl} = \overline{y_j y_l}`, and (``w2``) the variance
    of the mean residual cross-product :math:`c_{jl} = \overline{(y_j - \mu_j)(y_l - \mu_l)}`
    (whose expectation is 0). Answers are independent across persons and, by local
    independence, across the items of a person given :math:`\theta`, so
    :math:`\operatorname{Var}(y_j y_l \mid \theta) = E[y_j^2] E[y_l^2] - \mu_j^2 \mu_l^2`
    and :math:`\operatorname{Var}((y_j - \mu_j)(y_l - \mu_l) \mid \theta) =
    \sigma^2_j \sigma^2_l`. Returns ``E1``, ``v1`` (..., item), ``E2``, ``v2``, ``w2``
    (..., item, item; diagonal unused), ``n1`` and ``n2``; NaN where no person answered.
    """
    mask = np.asarray(mask, dtype=float)
    n1 = mask.sum(axis=0)
    n2 = mask.T @ mask
    var = second - mu**2
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"E1": mu.sum(axis=-2) / n1, "v1": var.sum(axis=-2) / n1**2,
                "E2": _cross(mu) / n2, "v2": (_cross(second) - _cross(mu**2)) / n2**2,
                "w2": _cross(var) / n2**2, "n1": n1, "n2": n2}


def sample_moments(y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Sample moments :math:`m_j = \bar y_j` and :math:`m_{jl} = \overline{y_j y_l}` of wide
    answers (or residuals) ``y`` (..., person, item), zero where missing, over the persons who
    answered (both)."""
    mask = np.asarray(mask, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return y.sum(axis=-2) / mask.sum(axis=0), _cross(y) / (mask.T @ mask)


def global_fit(idata: xr.DataTree, data: GRMData, *, n_draws: int = 400, moments: str = "residual",
               seed: int = 0) -> GlobalFit:
    r"""Posterior predictive check of the whole model with a limited-information moment
    discrepancy, and a local-dependence screen per item pair.

    The discrepancy uses only the first- and second-order moments of the item scores (the
    category codes 0..K-1), as Maydeu-Olivares and Joe's limited-information statistics for
    ordinal items do (:math:`M_2`: Maydeu-Olivares and Joe 2006, Psychometrika 71,
    713-732; :math:`M_{ord}`: Joe and Maydeu-Olivares 2010, Psychometrika 75, 393-419;
    mirt's default ``M2(type = "M2*")``, Cai and Hansen 2013, uses the same means and
    cross-products for polytomous items). For draw :math:`s`, with the moments and
    variances of :func:`moment_parts` given :math:`\theta^{(s)}, a^{(s)}, b^{(s)}` and the
    sample moments over the persons who answered (both items),

    .. math::

       D(y, \omega^{(s)}) = \sum_j \frac{(m_j - E_j)^2}{v_j}
                         + \sum_{j < l} r_{jl}^2, \qquad
       r_{jl} = \begin{cases}
           c_{jl} / \sqrt{w_{jl}}, & c_{jl} = \frac{1}{n_{jl}} \sum_i (y_{ij} - \mu_{ij})
                                      (y_{il} - \mu_{il}) \quad (\texttt{moments='residual'}),\\
           (m_{jl} - E_{jl}) / \sqrt{v_{jl}}, & m_{jl} = \frac{1}{n_{jl}} \sum_i y_{ij} y_{il}
                                      \quad (\texttt{moments='raw'}),
       \end{cases}

    computed on the observed answers and on answers replicated from the same draw, and
    PPP :math:`= \Pr(D(y^{\text{rep}}) \ge D(y))`.

    ``'raw'`` compares the raw cross-products :math:`\overline{y_j y_l}` with
    :math:`E_{jl}` (the moments of :math:`M_{ord}`, here conditional on the draw's traits).
    ``'residual'`` (default) uses the cross-products of the residuals, the model-based
    covariance of Reckase (1997) used in posterior predictive checks of IRT models by Levy,
    Mislevy and Sinharay (2009, Appl Psychol Meas 33, 519-537) and, with Yen's Q3, by Zhu
    and Stone (2011, J Educ Meas 48, 81-97) for the GRM. Given the traits, the raw
    cross-product :math:`\overline{y_j y_l} - E_{jl} = c_{jl} + \overline{\mu_j (y_l -
    \mu_l)} + \overline{\mu_l (y_j - \mu_j)}` carries two first-order residual terms whose
    variance swamps :math:`c_{jl}` (and the posterior traits, fitted to the same answers,
    keep them small in the observed data). On simulated data like the tests' (300 persons,
    8 items, one item repeating another's answer 70% of the time; four fits) the raw form
    gave global PPPs of 0.29 to 0.40 and a pair residual under 2 SD, the residual form PPPs
    of 0 and a pair residual of 7 to 8.5 SD; on well-specified data both gave PPPs between
    0.1 and 0.75 (nine fits).

    This is **not** the frequentist :math:`M_2`/:math:`M_{ord}`: the moments are
    conditional on the draw's traits (not marginal over the trait distribution), each is
    weighted by its own variance only (no full weight matrix, so the moments' covariances
    are ignored), and there is no chi-square reference distribution or degrees of freedom;
    the reference distribution is the posterior predictive one. (For K = 2 the raw moments
    are the item proportions and the joint proportions of the pairs, those of
    :math:`M_2`.)

    ``pairs`` (one row per item pair :math:`j < l` answered by at least one person):
    ``item_1``, ``item_2``, ``dimension_1``, ``dimension_2``, ``n_persons``
    (:math:`n_{jl}`), ``observed`` (mean over draws of the pair's observed moment:
    :math:`c_{jl}`, or :math:`m_{jl}` with ``'raw'``), ``expected`` (its model expectation
    given the traits, averaged over draws: 0, or :math:`E_{jl}`), ``std_residual`` (mean
    over draws of :math:`r_{jl}`; positive: the two items agree more than the model says),
    ``ppp`` (two-sided: :math:`\Pr(r_{jl}(y^{\text{rep}})^2 \ge r_{jl}(y)^2)`, the PPP of
    the pair's squared standardised residual), ``ppp_positive`` (one-sided, excess
    agreement: :math:`\Pr(r_{jl}(y^{\text{rep}}) \ge r_{jl}(y))`) and ``flagged`` (``ppp <
    0.05``): a screen for local dependence in the spirit of mirt's ``residuals(type =
    "LD")`` (Chen and Thissen 1997, J Educ Behav Stat 22, 265-289), again a predictive
    check, not their chi-square test. Other pairs of a locally dependent pair's items may be
    flagged too (the fit bends the traits towards the pair).
    """
    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {list(MOMENTS)}, got '{moments}'")
    theta, a, b = _draws(idata, n_draws, seed)
    S, J, K = a.shape[0], data.n_item, data.n_categories
    mask = _wide(np.ones(len(data.response)), data)
    y_obs = _wide(data.response.astype(float), data)
    m1_obs, m2_obs = sample_moments(y_obs, mask)
    n2 = mask.T @ mask
    iu, ju = np.triu_indices(J, k=1)
    answered = n2[iu, ju] > 0
    iu, ju = iu[answered], ju[answered]
    d_obs, d_rep = np.empty(S), np.empty(S)
    r_obs, r_rep = np.empty((S, len(iu))), np.empty((S, len(iu)))
    pair_obs, pair_exp = np.empty((S, len(iu))), np.empty((S, len(iu)))
    codes = np.arange(K, dtype=float)
    rng = np.random.default_rng([seed, 2])
    for sl in _chunks(S, max(len(data.response) * K, data.n_person * J * 6)):
        th, aa, bb = theta[sl], a[sl], b[sl]
        probs = _cell_probabilities(th, aa, bb, data)
        mu = _wide(probs @ codes, data)
        second = _wide(probs @ codes**2, data)
        del probs
        parts = moment_parts(mu, second, mask)
        y_rep = _wide(irt._draw_answers(th, aa, bb, data, rng).astype(float), data)
        m1_rep, m2_rep = sample_moments(y_rep, mask)
        sd1 = np.sqrt(np.maximum(parts["v1"], _FLOOR))
        z1_obs, z1_rep = (m1_obs - parts["E1"]) / sd1, (m1_rep - parts["E1"]) / sd1
        if moments == "raw":
            expected = parts["E2"][:, iu, ju]
            sd2 = np.sqrt(np.maximum(parts["v2"][:, iu, ju], _FLOOR))
            obs2, rep2 = np.broadcast_to(m2_obs[iu, ju], expected.shape), m2_rep[:, iu, ju]
        else:
            expected = np.zeros((th.shape[0], len(iu)))
            sd2 = np.sqrt(np.maximum(parts["w2"][:, iu, ju], _FLOOR))
            obs2 = sample_moments(y_obs - mu, mask)[1][:, iu, ju]       # mu is 0 where missing
            rep2 = sample_moments(y_rep - mu, mask)[1][:, iu, ju]
        pair_obs[sl], pair_exp[sl] = obs2, expected
        r_obs[sl], r_rep[sl] = (obs2 - expected) / sd2, (rep2 - expected) / sd2
        d_obs[sl] = np.nansum(z1_obs**2, axis=-1) + np.sum(r_obs[sl] ** 2, axis=-1)
        d_rep[sl] = np.nansum(z1_rep**2, axis=-1) + np.sum(r_rep[sl] ** 2, axis=-1)
    dim = [data.dimension[d] for d in data.item_dimension]
    pairs = pd.DataFrame({
        "instrument": data.instrument,
        "item_1": [data.item[j] for j in iu], "item_2": [data.item[j] for j in ju],
        "dimension_1": [dim[j] for j in iu], "dimension_2": [dim[j] for j in ju],
        "n_persons": n2[iu, ju].astype(int), "observed": pair_obs.mean(axis=0),
        "expected": pair_exp.mean(axis=0), "std_residual": r_obs.mean(axis=0),
        "ppp": _ppp(r_rep**2, r_obs**2), "ppp_positive": _ppp(r_rep, r_obs)})
    pairs["flagged"] = pairs["ppp"] < FLAG_BELOW
    return GlobalFit(instrument=data.instrument, statistic="moment_discrepancy", moments=moments,
                     observed=float(np.mean(d_obs)), replicated=float(np.mean(d_rep)), ppp=float(_ppp(d_rep, d_obs)),
                     n_draws=S, n_moments=int(np.sum(mask.sum(axis=0) > 0) + len(iu)), pairs=pairs)
