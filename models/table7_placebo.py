r"""Placebo tests and contamination for one LA-level indicator, on a compact DiD.

A compact DiD on the indicator's cells (shares: beta-binomial on the logit; rates: negative
binomial with population exposure on the log):

.. math::

    \eta_{jt} = \alpha_j + \gamma_t + \tau D_{jt}, \quad \alpha_j \sim N(a, 1.5^2), \quad
    \gamma \sim \mathrm{ZeroSumNormal}(0.5), \quad \tau \sim N(0, 1),

where the year effects sum to zero, so that no common shift trades with the LA levels (with
independent ``N(0, 0.5^2)`` year effects that direction was identified by the prior alone, and
not one of 53 placebo fits of the re-referral share passed its diagnostics: median lowest bulk
ESS 34 of 2,000 draws), and with two data vectors that change between fits without
recompiling: a cell mask ``w`` (which cells enter the likelihood) and the treatment indicator
``D``. One focal LA is treated per fit:

- *in space*: each pilot in turn against the comparators, and each comparator in turn given the
  adoption year of the pilot it neighbours, against the other comparators (pilots left out).
  The pilots' statistic is the mean of their single-LA effects, per draw; the placebo
  reference is the mean of as many placebo effects, drawn at random per draw. The placebo
  rank probability is P(the pilots' mean moved further in the programme's direction than a
  placebo group's), over draws and placebo groups: near 0.5 when the pilots look like any LA,
  uniform across data sets when no LA is treated.
- *in time*: every pilot given a fake adoption ``lead`` years before the real one, only its
  years before the real adoption kept (and the comparators' years before it), in a model of its
  own on those cells (the years after the last adoption have none).

Contamination (:func:`fit_contamination`): each comparator used SofS with unknown probability
``pi ~ Beta(4, 2)`` (mean 2/3: about two thirds of LAs use it in some form); a user's post-
adoption cells carry the same effect, and each comparator's likelihood is the mixture over
the two, so the contrast is diluted and the pilots' effect is re-estimated accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy.special import expit

from models.diagnostics import Diagnostics, check_sampling
from models.sampling import CompiledSampler


@dataclass
class PlaceboCells:
    cells: pd.DataFrame        # la, arm, year, y, n, adoption (pilot: own; comparator: assigned)
    likelihood: str            # betabinomial or negbinomial
    factor: float
    direction: int


def _frame(pc: PlaceboCells):
    c = pc.cells.reset_index(drop=True)
    las = list(dict.fromkeys(c["la"]))
    years = sorted(set(c["year"]))
    li = c["la"].map({la: k for k, la in enumerate(las)}).to_numpy()
    ti = c["year"].map({y: k for k, y in enumerate(years)}).to_numpy()
    return c, las, years, li, ti


def _cell_logp(pc: PlaceboCells, eta, y, n, prefix: str = ""):
    if pc.likelihood == "negbinomial":
        inv = pm.HalfNormal(f"{prefix}inv_sqrt_alpha", 0.5)
        return pm.logp(pm.NegativeBinomial.dist(mu=n * pt.exp(eta), alpha=1.0 / pt.square(inv)), y)
    inv = pm.HalfNormal(f"{prefix}inv_sqrt_phi", 0.5)
    phi = 1.0 / pt.square(inv)
    p = pm.math.invlogit(eta)
    return pm.logp(pm.BetaBinomial.dist(alpha=p * phi, beta=(1 - p) * phi, n=n.astype(np.int64)), y)


def _level(pc: PlaceboCells, y, n) -> float:
    return float(np.log(y.sum() / n.sum()) if pc.likelihood == "negbinomial" else np.log(y.sum() / (n.sum() - y.sum())))


def build_focal(pc: PlaceboCells) -> tuple[pm.Model, dict]:
    c, las, years, li, ti = _frame(pc)
    y, n = c["y"].to_numpy(np.int64), c["n"].to_numpy(float)
    with pm.Model() as model:
        w = pm.Data("w", np.ones(len(c)))
        d = pm.Data("d", np.zeros(len(c)))
        alpha = pm.Normal("alpha", _level(pc, y, n), 1.5, shape=len(las))
        gamma = pm.ZeroSumNormal("gamma", sigma=0.5, shape=len(years))
        tau = pm.Normal("tau", 0.0, 1.0)
        eta = alpha[li] + gamma[ti] + tau * d
        pm.Potential("loglik", pt.sum(w * _cell_logp(pc, eta, y, n)))
    return model, {"cells": c, "las": las, "li": li, "ti": ti, "n": n}


@dataclass
class CompiledFocal:
    """The focal model of one indicator's cells, compiled once: the placebo fits in space and the
    clean-comparator fit (:func:`no_contamination`) differ only in its data vectors ``w`` and ``D``."""
    sampler: CompiledSampler
    meta: dict


def compile_focal(pc: PlaceboCells) -> CompiledFocal:
    model, meta = build_focal(pc)
    return CompiledFocal(CompiledSampler(model, mutable=None), meta)


def _effect(post, meta: dict, pc: PlaceboCells, d: np.ndarray) -> np.ndarray:
    """Draws of the focal effect on the reading scale, g-computed over its treated cells."""
    sel = d > 0
    a = post["alpha"].values.reshape(-1, len(meta["las"]))[:, meta["li"][sel]]
    g = post["gamma"].values.reshape(a.shape[0], -1)[:, meta["ti"][sel]]
    t = post["tau"].values.reshape(-1, 1)
    eta0 = a + g
    r = (np.exp(eta0 + t) - np.exp(eta0)) if pc.likelihood == "negbinomial" else (expit(eta0 + t) - expit(eta0))
    w = meta["n"][sel] / meta["n"][sel].sum()
    return pc.factor * (r * w).sum(1)


def _verdict(diags: list[Diagnostics]) -> dict:
    """The worst R-hat and ESS over one or more fits, and how many fits failed a check."""
    return {**Diagnostics.merged(diags).summary(max_problems=10), "n_fits": len(diags),
            "n_fits_failing": sum(not d.ok for d in diags)}


def placebo_tests(pc: PlaceboCells, *, draws: int = 1000, tune: int = 1000, chains: int = 2, seed: int = 0,
                  lead: int = 1, groups: int = 200, log=lambda m: None, focal: CompiledFocal | None = None) -> dict:
    """Placebo in space and in time (see the module docstring): one compile for the placebos in
    space (``focal``, compiled here unless given), one fit per focal LA, and one model on the
    years the placebo in time keeps."""
    focal = focal or compile_focal(pc)
    sampler, meta = focal.sampler, focal.meta
    c = meta["cells"]
    pilot = c["arm"].eq("pilot").to_numpy()
    comp = ~pilot
    post_of = c["year"].to_numpy() >= c["adoption"].to_numpy()
    kw = dict(draws=draws, tune=tune, chains=chains, target_accept=0.9)
    effects, diags = {}, []

    def run(w, d, key, s, sampler=sampler, meta=meta):
        idata = sampler.sample({"w": w.astype(float), "d": d.astype(float)}, seed=s, **kw)
        diags.append(check_sampling(idata, ["tau", "alpha", "gamma"]))
        effects[key] = _effect(idata["posterior"], meta, pc, d)

    pilots = list(dict.fromkeys(c.loc[pilot, "la"]))
    comps = list(dict.fromkeys(c.loc[comp, "la"]))
    for k, la in enumerate(pilots):
        me = (c["la"] == la).to_numpy()
        run(comp | me, me & post_of, ("pilot", la), seed + k)
    for k, la in enumerate(comps):
        me = (c["la"] == la).to_numpy()
        if not (me & post_of).any() or not (me & ~post_of).any():
            continue
        run(comp, me & post_of, ("placebo", la), seed + 1000 + k)
    log(f"placebo in space: {len(pilots)} pilots, {sum(1 for k in effects if k[0] == 'placebo')} placebo LAs")
    # in time: fake adoption `lead` years early, years from the real adoption on left out
    year, adopt = c["year"].to_numpy(), c["adoption"].to_numpy()
    before = year < adopt
    fake_post = pilot & before & (year >= adopt - lead)
    has_pre = {la for la in pilots if ((c["la"] == la).to_numpy() & pilot & (year < adopt - lead)).any()}
    keep_p = pilot & before & c["la"].isin(has_pre).to_numpy()
    # Its own model on the cells kept: a year with no cell left would otherwise trade a common
    # shift with the LA levels through the zero-sum year effects (a ridge the sampler crawls along).
    kept = keep_p | (comp & before)
    t_model, t_meta = build_focal(PlaceboCells(c[kept], pc.likelihood, pc.factor, pc.direction))
    run(np.ones(int(kept.sum())), fake_post[kept], ("time", "all"), seed + 5000,
        CompiledSampler(t_model, mutable=None), t_meta)
    pil = np.column_stack([effects[("pilot", la)] for la in pilots])
    plc = np.column_stack([v for k, v in effects.items() if k[0] == "placebo"])
    rng = np.random.default_rng(seed)
    t_pilots = pil.mean(1)
    picks = np.stack([rng.choice(plc.shape[1], size=min(len(pilots), plc.shape[1]), replace=False)
                      for _ in range(groups)])
    m = plc[:, picks].mean(2)                               # (draws, groups)
    p_rank = float(((pc.direction * t_pilots[:, None]) > (pc.direction * m)).mean())
    rank_each = {la: float(((pc.direction * pil[:, k][:, None]) > (pc.direction * plc)).mean())
                 for k, la in enumerate(pilots)}
    tm = effects[("time", "all")]
    return {
        "pilots_mean_effect": {"mean": float(t_pilots.mean()), "eti95_low": float(np.quantile(t_pilots, 0.025)),
                               "eti95_high": float(np.quantile(t_pilots, 0.975))},
        "placebo_effects": {la: float(v.mean()) for (kind, la), v in effects.items() if kind == "placebo"},
        "pilot_effects": {la: float(effects[("pilot", la)].mean()) for la in pilots},
        "p_pilots_beyond_placebo_group": p_rank,
        "p_each_pilot_beyond_placebo_la": rank_each,
        "time_placebo": {"lead_years": lead, "pilots_used": sorted(has_pre), "mean": float(tm.mean()),
                         "eti95_low": float(np.quantile(tm, 0.025)), "eti95_high": float(np.quantile(tm, 0.975)),
                         "p_programme_direction": float((pc.direction * tm > 0).mean())},
        "diagnostics": _verdict(diags),
        "sampler": {"draws": draws, "tune": tune, "chains": chains},
        "placebo_draws": plc.mean(0).tolist(),
    }


def fit_contamination(pc: PlaceboCells, *, draws: int = 1000, tune: int = 500, chains: int = 2, seed: int = 0,
                      prior_ab: tuple[float, float] = (4.0, 2.0)) -> dict:
    """The pilots' effect when each comparator used SofS with probability ``pi ~ Beta(a, b)``."""
    c, las, years, li, ti = _frame(pc)
    y, n = c["y"].to_numpy(np.int64), c["n"].to_numpy(float)
    pilot = c["arm"].eq("pilot").to_numpy()
    post = c["year"].to_numpy() >= c["adoption"].to_numpy()
    comps = list(dict.fromkeys(c.loc[~pilot, "la"]))
    member = np.stack([(c["la"] == la).to_numpy() & ~pilot for la in comps]).astype(float)   # (comparators, cells)
    with pm.Model() as model:
        alpha = pm.Normal("alpha", _level(pc, y, n), 1.5, shape=len(las))
        gamma = pm.ZeroSumNormal("gamma", sigma=0.5, shape=len(years))
        tau = pm.Normal("tau", 0.0, 1.0)
        pi = pm.Beta("pi", *prior_ab)
        eta0 = alpha[li] + gamma[ti]
        d_p = (pilot & post).astype(float)
        d_c = (~pilot & post).astype(float)
        # one set of nuisance parameters: the same cell distribution evaluated under both states
        if pc.likelihood == "negbinomial":
            inv = pm.HalfNormal("inv_sqrt_alpha", 0.5)
            dist = lambda eta: pm.NegativeBinomial.dist(mu=n * pt.exp(eta), alpha=1.0 / pt.square(inv))  # noqa: E731
        else:
            inv = pm.HalfNormal("inv_sqrt_phi", 0.5)
            phi = 1.0 / pt.square(inv)
            dist = lambda eta: pm.BetaBinomial.dist(alpha=pm.math.invlogit(eta) * phi,  # noqa: E731
                                                    beta=(1 - pm.math.invlogit(eta)) * phi, n=n.astype(np.int64))
        lp_none = pm.logp(dist(eta0 + tau * d_p), y)
        lp_user = pm.logp(dist(eta0 + tau * (d_p + d_c)), y)
        pm.Potential("pilots", pt.sum(pilot * lp_none))
        comp_none = pt.dot(member, lp_none)
        comp_user = pt.dot(member, lp_user)
        pm.Potential("comparators", pt.sum(pt.logaddexp(pt.log(pi) + comp_user, pt.log1p(-pi) + comp_none)))
    idata = CompiledSampler(model, mutable=None).sample(seed=seed, draws=draws, tune=tune, chains=chains,
                                                        target_accept=0.9)
    p = idata["posterior"]
    meta = {"las": las, "li": li, "ti": ti, "n": n}
    eff = _effect(p, meta, pc, (pilot & post).astype(float))
    diag = check_sampling(idata, ["tau", "pi", "alpha", "gamma"])
    pis = np.ravel(p["pi"].values)
    return {"prior_pi": f"Beta{prior_ab}", "pi_mean": float(pis.mean()),
            "effect": {"mean": float(eff.mean()), "eti95_low": float(np.quantile(eff, 0.025)),
                       "eti95_high": float(np.quantile(eff, 0.975)),
                       "p_programme_direction": float((pc.direction * eff > 0).mean())},
            "diagnostics": _verdict([diag])}


def no_contamination(pc: PlaceboCells, *, draws: int = 1000, tune: int = 500, chains: int = 2, seed: int = 0,
                     focal: CompiledFocal | None = None) -> dict:
    """The same compact model with every comparator a clean control (for the comparison); it
    reuses the placebo fits' compiled model when given as ``focal``."""
    focal = focal or compile_focal(pc)
    meta = focal.meta
    c = meta["cells"]
    d = (c["arm"].eq("pilot") & (c["year"] >= c["adoption"])).to_numpy(float)
    idata = focal.sampler.sample({"w": np.ones(len(c)), "d": d}, seed=seed, draws=draws,
                                 tune=tune, chains=chains, target_accept=0.9)
    eff = _effect(idata["posterior"], meta, pc, d)
    return {"effect": {"mean": float(eff.mean()), "eti95_low": float(np.quantile(eff, 0.025)),
                       "eti95_high": float(np.quantile(eff, 0.975)),
                       "p_programme_direction": float((pc.direction * eff > 0).mean())},
            "diagnostics": _verdict([check_sampling(idata, ["tau", "alpha", "gamma"])])}
