r"""One joint DiD over several LA-level indicators, pilot effects correlated across indicators.

For indicator ``i``, LA ``j`` and year ``t`` (the separate fits' cells, :mod:`analyses.table7`):

.. math::

    \eta_{ijt} = \alpha_{ij} + \gamma_{it} + \tau_{ij} D_{ijt}, \qquad
    \alpha_{ij} \sim N(a_i, 1.5^2), \quad \gamma_{i\cdot} \sim \mathrm{ZeroSumNormal}(0.5),

    \boldsymbol\tau_j = (\tau_{1j}, \dots, \tau_{Ij}) \sim \mathrm{MvN}(\boldsymbol\mu, \Sigma), \quad
    \Sigma = \mathrm{diag}(s)\, \Omega\, \mathrm{diag}(s), \quad \Omega \sim \mathrm{LKJ}(2), \quad
    s_i \sim HN(0.3), \quad \mu_i \sim N(0, 1)

on each indicator's link (logit for shares: beta-binomial; log for rates: negative binomial with
the child population as exposure), so a pilot that moved one indicator may have moved the
others, and the correlation is learned. ``a_i`` is the indicator's pooled logit/log level. The
effect of indicator ``i`` on its reading scale (pp, per 10,000) is g-computed over the pilots'
treated post-adoption cells, as the engine does; "improved" means moved in the programme's
direction, so P(SofS improved at least k indicators) is read off the joint draws.

The year effects sum to zero within each indicator: with independent ``N(0, 0.5^2)`` years a
common shift of an indicator's years against its LA levels was identified by the priors alone
(on the seven official indicators: R-hat up to 1.19 and bulk ESS 15 on ``alpha`` and ``gamma``,
which the diagnostics did not then check; they now cover every sampled quantity).

The SDs ``s`` and the Cholesky factor ``L`` of ``\Omega`` are sampled as separate variables,
``\tau_j = \mu + \mathrm{diag}(s) L z_j`` with ``z_j \sim N(0, I)``. PyMC's ``LKJCholeskyCov``
samples the Cholesky factor of ``\Sigma`` and derives ``s`` from its rows; on the seven official
indicators (4 x 1,000 draws) its ``s`` had R-hat 1.029-1.046 and bulk ESS 105-142; here, over
six runs (three seeds, 500 or 1,000 tuning draws), R-hat 1.004-1.016, bulk ESS 381-684 and tail
ESS 326-557, with the same posterior and at half the cost per run (89 against 179 s at one
seed). That still misses the thresholds narrowly in five of the six runs: the SDs remain the
slowest quantity. With chains twice as long (4 x 2,000 draws, 500 tuning; three seeds) every run
passed: ``chol_stds`` R-hat 1.005-1.007, bulk ESS 800-967, tail ESS 594-889, 87 s per fit (one
seed needed its divergence re-fit, 287 s in all; it is the command's seed, and the command's run
in ``benchmarks/table7.py`` did the same). ``analyses.table7`` therefore gives the joint model twice
the separate fits' draws; P(at least k improved) is reported with its verdict either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit

from models.diagnostics import check_sampling
from models.sampling import CompiledSampler, sample_checked


@dataclass
class JointInput:
    name: str
    cells: pd.DataFrame      # la, year, y, n, treated_post (analysis cells)
    likelihood: str          # betabinomial or negbinomial
    factor: float            # 100 (pp) or per (rate per 10,000)
    direction: int


def build_joint(inputs: list[JointInput]) -> tuple[pm.Model, dict]:
    pilots = sorted({la for x in inputs for la in x.cells.loc[x.cells.treated_post > 0, "la"]})
    pidx = {p: k for k, p in enumerate(pilots)}
    meta = {"pilots": pilots, "indicators": [x.name for x in inputs], "parts": []}
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 1.0, shape=len(inputs))
        # The SDs and the correlation's Cholesky factor sampled apart (Stan's parametrisation):
        # with LKJCholeskyCov, which samples the covariance's Cholesky factor and derives the SDs,
        # the SDs mixed slowly (see the module docstring).
        sd = pm.HalfNormal("chol_stds", 0.3, shape=len(inputs))
        corr_chol = pm.LKJCorr("corr_chol", n=len(inputs), eta=2.0)
        pm.Deterministic("chol_corr", corr_chol @ corr_chol.T)
        chol = sd[:, None] * corr_chol
        z = pm.Normal("z", 0.0, 1.0, shape=(len(pilots), len(inputs)))
        tau = pm.Deterministic("tau", mu[None, :] + pt.dot(z, chol.T))
        for i, x in enumerate(inputs):
            c = x.cells
            las = sorted(set(c["la"]))
            years = sorted(set(c["year"]))
            li = c["la"].map({la: k for k, la in enumerate(las)}).to_numpy()
            ti = c["year"].map({y: k for k, y in enumerate(years)}).to_numpy()
            y, n = c["y"].to_numpy(np.int64), c["n"].to_numpy(float)
            level = np.log(y.sum() / n.sum()) if x.likelihood == "negbinomial" else np.log(y.sum() / (n.sum() - y.sum()))
            alpha = pm.Normal(f"alpha_{i}", level, 1.5, shape=len(las))
            gamma = pm.ZeroSumNormal(f"gamma_{i}", sigma=0.5, shape=len(years))
            d = c["treated_post"].to_numpy(float)
            pj = np.array([pidx.get(la, 0) for la in c["la"]])
            eta0 = alpha[li] + gamma[ti]
            eta = eta0 + tau[pj, i] * d
            if x.likelihood == "negbinomial":
                inv = pm.HalfNormal(f"inv_sqrt_alpha_{i}", 0.5)
                pm.NegativeBinomial(f"y_{i}", mu=n * pt.exp(eta), alpha=1.0 / pt.square(inv), observed=y)
            else:
                inv = pm.HalfNormal(f"inv_sqrt_phi_{i}", 0.5)
                phi = 1.0 / pt.square(inv)
                p = pm.math.invlogit(eta)
                pm.BetaBinomial(f"y_{i}", alpha=p * phi, beta=(1 - p) * phi, n=n.astype(np.int64), observed=y)
            meta["parts"].append({"li": li, "ti": ti, "pj": pj, "d": d, "n": n})
    return model, meta


def _att(post, meta: dict, inputs: list[JointInput]) -> np.ndarray:
    """Draws (samples, indicators) of each indicator's effect on its reading scale."""
    tau = post["tau"].values.reshape(-1, len(meta["pilots"]), len(inputs))
    out = np.zeros((tau.shape[0], len(inputs)))
    for i, (x, part) in enumerate(zip(inputs, meta["parts"])):
        sel = part["d"] > 0
        a = post[f"alpha_{i}"].values.reshape(tau.shape[0], -1)[:, part["li"][sel]]
        g = post[f"gamma_{i}"].values.reshape(tau.shape[0], -1)[:, part["ti"][sel]]
        t = tau[:, part["pj"][sel], i]
        w = part["n"][sel] / part["n"][sel].sum()
        eta0 = a + g
        if x.likelihood == "negbinomial":
            r = np.exp(eta0 + t) - np.exp(eta0)
        else:
            r = expit(eta0 + t) - expit(eta0)
        out[:, i] = x.factor * (r * w).sum(1)
    return out


def fit_joint(inputs: list[JointInput], *, draws: int = 1000, tune: int = 1000, chains: int = 2, seed: int = 0,
              target_accept: float = 0.9) -> dict:
    """Fit the joint model; effects per indicator, P(at least k improved), correlations, diagnostics."""
    model, meta = build_joint(inputs)
    sampler = CompiledSampler(model)

    def check(idata):
        return check_sampling(idata, ["mu", "chol_stds", "chol_corr", "tau"] + [
            v for v in idata["posterior"].data_vars if v.startswith(("inv_sqrt", "alpha_", "gamma_"))])

    # divergent transitions alone: re-sampled with smaller steps (the engine's first recovery step)
    idata, diag, note = sample_checked(
        lambda ta, s: sampler.sample(draws=draws, tune=tune, chains=chains, seed=s, target_accept=ta), check,
        target_accept=target_accept, seed=seed)
    post = idata["posterior"]
    att = _att(post, meta, inputs)
    improved = np.stack([(x.direction * att[:, i]) > 0 for i, x in enumerate(inputs)], axis=1)
    count = improved.sum(1)
    corr = post["chol_corr"].values.reshape(-1, len(inputs), len(inputs)).mean(0)
    return {
        "indicators": meta["indicators"], "pilots": meta["pilots"],
        "effects": [{"indicator": x.name, "mean": float(att[:, i].mean()), "eti95_low": float(np.quantile(att[:, i], 0.025)),
                     "eti95_high": float(np.quantile(att[:, i], 0.975)), "p_improved": float(improved[:, i].mean())}
                    for i, x in enumerate(inputs)],
        "p_at_least_k_improved": [{"k": k, "p": float((count >= k).mean())} for k in range(1, len(inputs) + 1)],
        "correlation_mean": corr.round(3).tolist(),
        "diagnostics": diag.to_dict(), "sampling_note": note, "att_draws": att,
    }
