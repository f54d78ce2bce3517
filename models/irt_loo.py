r"""Leave one respondent out, with the respondent's traits integrated out.

PSIS-LOO on the answers' pointwise log-likelihood :math:`\log p(y_{ij} \mid \theta_i, a_j, b_j)`
leaves out one *answer* and keeps the respondent's trait :math:`\theta_i`, learnt from the
other answers: the unit left out is not the unit sampled, and a model with more traits
predicts a held-out answer from a trait fitted to that very respondent's other answers, which
favours more traits by construction. The unit here is the respondent (Merkle, Furr and
Rabe-Hesketh 2019, *Psychometrika* 84, "Bayesian comparison of latent variable models:
conditional versus marginal likelihoods"): for each posterior draw :math:`s`,

.. math::

   \log p(\mathbf y_i \mid \psi^{(s)}) = \log \int \prod_j p(y_{ij} \mid \theta, a_j^{(s)}, b_j^{(s)})
       \, N\big(\theta;\ \mu_i^{(s)}, R^{(s)}\big)\, d\theta,

where :math:`\mu_i` is the respondent's latent-regression mean (arm, competence and site
terms of :mod:`models.psychometric_irt`; 0 without a regression) and :math:`R` the trait
correlation matrix (1 with one dimension). The worker term is integrated out with the
family's own residual (their sum has covariance :math:`R`: the latent unit is the SD among
families of the same site, arm and competence), so the predictive is for a new family of
the same site, arm and competence seen by a worker we know nothing about.

The integral is an adaptive Gauss-Hermite product rule (as in mirt's and lme4's adaptive
quadrature): nodes :math:`\theta_{iq} = m_i + L_i z_q` centred on the respondent's posterior
mean :math:`m_i` with :math:`L_i L_i^\top` their posterior covariance inflated by
:data:`INFLATE`\ :sup:`2`, and weights :math:`w_q\, N(\theta_{iq}; \mu_i, R)/\phi(z_q) |L_i|`.
The same nodes serve every draw. :func:`nodes_per_dimension` gives the rule's size (about
600-1,000 nodes in all up to 6 dimensions). The PSIS-LOO over respondents is arviz's
``loo``/``compare`` on these values, with each respondent's Pareto :math:`\hat k`.
"""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd
import xarray as xr

from models import psychometric_irt as irt
from models.grm_kernel import grm_marginal_loglik

#: Posterior SDs of a respondent's traits are multiplied by this for the quadrature's
#: Gaussian: the integrand is the likelihood times the latent-regression density, which is
#: wider than the posterior under any one draw's item parameters.
INFLATE = 1.5

#: Gauss-Hermite nodes per dimension by number of dimensions.
NODES = {1: 31, 2: 15, 3: 9, 4: 5, 5: 4, 6: 3}

#: The respondent-level variable in the ``log_likelihood`` group, and its dimension.
VAR = "answers_of_respondent"
DIM = "respondent"

#: Pareto k above this: the respondent's PSIS estimate is unreliable (Vehtari et al. 2024).
PARETO_K_MAX = 0.7


def nodes_per_dimension(n_dim: int) -> int:
    if n_dim not in NODES:
        raise ValueError(f"leave-one-respondent-out integrates up to {max(NODES)} traits by quadrature; "
                         f"this model has {n_dim}")
    return NODES[n_dim]


def latent_means(post: dict[str, np.ndarray], data: irt.GRMData) -> np.ndarray:
    r"""Each respondent's latent-regression mean :math:`\mu_i`, (draw, person, dimension).

    ``post`` from :func:`models.psychometric_irt.posterior_arrays` (draws first). The terms are
    those of the model: :math:`\gamma_d (c_i - \bar c)` with competence; the site mean
    :math:`\beta_d a_{s(i)} + s_{s(i),d}` with a site column (``a`` the site-level centred arm
    indicator of :func:`~models.psychometric_irt.site_arm_basis`, zero with one arm); without a
    site column :math:`\beta_d (\text{sofs}_i - \overline{\text{sofs}})`.
    """
    S = post["theta"].shape[0]
    mean = np.zeros((S, data.n_person, data.n_dim))
    des = data.design
    if des is None:
        return mean
    if des.competence is not None and "competence_slope" in post:
        mean += (des.competence - des.competence_centre)[None, :, None] * post["competence_slope"][:, None, :]
    if des.site is not None and "site_effect" in post:
        arm, _ = irt.site_arm_basis(des)
        site_mean = post["site_effect"]
        if np.linalg.norm(arm) > 1e-12:
            site_mean = site_mean + arm[None, :, None] * post["sofs_effect"][:, None, :]
        mean += site_mean[:, des.site_idx, :]
    elif des.sofs is not None and "sofs_effect" in post:
        mean += (des.sofs - des.sofs.mean())[None, :, None] * post["sofs_effect"][:, None, :]
    return mean


def _arrays(idata: xr.DataTree, max_draws: int | None, seed: int) -> dict[str, np.ndarray]:
    post = irt.posterior_arrays(idata, max_draws=max_draws, seed=seed)
    if "site_effect" in idata["posterior"]:
        post["site_effect"] = irt._stack(idata, "site_effect", max_draws, seed)
    return post


def trait_moments(idata: xr.DataTree) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (person, dimension) and covariance (person, dimension, dimension) of
    the traits over all draws, accumulated one chain at a time (the stacked draws of 5,000
    families x 4 traits x 4,000 draws, and their deviations, would hold about 1.3 GB)."""
    da = idata["posterior"]["theta"].transpose("chain", "draw", "person", "dimension")
    n, total, cross = 0, 0.0, 0.0
    for c in range(da.sizes["chain"]):
        x = np.asarray(da.isel(chain=c).values, dtype=float)      # (draw, P, D)
        n += x.shape[0]
        total = total + x.sum(axis=0)
        cross = cross + np.einsum("spd,spe->pde", x, x)
    m = total / n
    cov = (cross - n * m[:, :, None] * m[:, None, :]) / max(n - 1, 1)
    return m, cov


def _quadrature(m: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (person, node, dimension) and log weights (person, node), from each person's
    posterior mean ``m`` (P, D) and covariance ``cov`` (P, D, D) of the traits
    (:func:`trait_moments`); the weights include :math:`-\\log\\phi(z)` and the Jacobian :math:`|L_i|`."""
    n_dim = m.shape[1]
    n = nodes_per_dimension(n_dim)
    x, w = np.polynomial.hermite_e.hermegauss(n)           # for the weight exp(-x^2 / 2)
    z = np.array(list(product(x, repeat=n_dim)))             # (Q, D)
    log_w = np.log(np.array(list(product(w / w.sum(), repeat=n_dim)))).sum(axis=1)
    log_w = log_w + 0.5 * (z**2).sum(axis=1) + 0.5 * n_dim * np.log(2 * np.pi)   # divide by phi(z)
    cov = cov * INFLATE**2 + 1e-9 * np.eye(n_dim)
    L = np.linalg.cholesky(cov)                              # (P, D, D)
    nodes = m[:, None, :] + np.einsum("pde,qe->pqd", L, z)
    log_det = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    return nodes, log_w[None, :] + log_det[:, None]


def respondent_log_likelihood(idata: xr.DataTree, data: irt.GRMData, *, max_draws: int | None = 1000,
                              seed: int = 0) -> xr.DataTree:
    r"""The marginal log-likelihood of each respondent's answers per posterior draw
    (module docstring), as a DataTree with ``posterior`` and ``log_likelihood`` groups (var
    :data:`VAR`, dims chain, draw and :data:`DIM`), ready for ``az.loo``/``az.compare``.

    ``max_draws`` draws are taken at random (one chain of that length is returned); the
    respondents' posterior means and covariances that place the quadrature come from all draws.
    """
    nodes, log_w = _quadrature(*trait_moments(idata))                # (P, Q, D), (P, Q)
    post = _arrays(idata, max_draws, seed)
    S = post["theta"].shape[0]
    mean = latent_means(post, data)
    if data.n_dim > 1:
        L = np.linalg.cholesky(post["trait_corr"])
        chol_inv = np.linalg.inv(L)
        log_det = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    else:
        chol_inv, log_det = np.ones((S, 1, 1)), np.zeros(S)
    a = post["discrimination"]
    pad = irt.padded_cutpoints(a[..., None] * post["threshold"])       # slope-intercept cutpoints
    out = grm_marginal_loglik(np.ascontiguousarray(np.moveaxis(nodes, 1, 2)), log_w, np.ascontiguousarray(a),
                              np.ascontiguousarray(pad), data.person_idx.astype(np.int64),
                              data.item_dimension[data.item_idx].astype(np.int64),
                              (data.item_idx * data.n_categories + data.response).astype(np.int64),
                              np.ascontiguousarray(mean), np.ascontiguousarray(chol_inv), log_det)
    coords = {"chain": [0], "draw": np.arange(S), DIM: list(data.person)}
    ll = xr.Dataset({VAR: (("chain", "draw", DIM), out[None])}, coords=coords)
    # A posterior group for arviz (r_eff); the draws were taken at random, so one chain.
    pst = xr.Dataset({"discrimination": (("chain", "draw", "item"), post["discrimination"][None])},
                     coords={"chain": [0], "draw": np.arange(S), "item": list(data.item)})
    return xr.DataTree.from_dict({"posterior": pst, "log_likelihood": ll})


def loo_by_respondent(trees: dict[str, xr.DataTree]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``az.compare`` of respondent-level log-likelihoods (:func:`respondent_log_likelihood`)
    and each model's Pareto k summary: the comparison table (with ``n_pareto_k_high`` and
    ``max_pareto_k`` per model) and a long table of every respondent's k."""
    import arviz as az

    table = az.compare(trees, var_name=VAR, round_to="none")
    table = table.reset_index().rename(columns={"index": "model"})
    if "model" not in table.columns:
        table = table.rename(columns={table.columns[0]: "model"})
    rows = []
    for name, tree in trees.items():
        res = az.loo(tree, pointwise=True, var_name=VAR)
        k = np.asarray(res.pareto_k).ravel()
        rows.append(pd.DataFrame({"model": name, DIM: tree["log_likelihood"][DIM].values,
                                  "pareto_k": k, "elpd_loo": np.asarray(res.elpd_i).ravel()}))
    ks = pd.concat(rows, ignore_index=True)
    high = ks.groupby("model")["pareto_k"].agg(n_pareto_k_high=lambda k: int((k > PARETO_K_MAX).sum()),
                                                max_pareto_k="max")
    table = table.merge(high, left_on="model", right_index=True, how="left")
    table["unit"] = "respondent (traits integrated out)"
    return table, ks
