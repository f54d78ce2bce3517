"""Fitting the DiD engine's models: named priors on one compiled model, every sampled
quantity checked, an automatic re-parametrisation when the checks fail, PSIS reweighting.

:func:`fit_priors` compiles a :class:`~models.did.model.DidModel` once (cells frozen as
constants, the priors' hyper-parameters mutable) and samples it under each named prior. Each
fit's diagnostics (:func:`models.diagnostics.check_sampling`) cover every free variable and
every reported effect (:func:`diagnostic_vars`). When the unit intercepts' parametrisation was
chosen from the data (``ModelSpec.unit_centred=None``) and a fit fails its checks, the model
is rebuilt with the other parametrisation and re-fitted; the fit that passes (or, when neither
does, the one with the larger smallest bulk ESS) is kept and the switch is recorded.

:func:`reweight_prior` obtains the posterior under one prior from a fit under another by
Pareto-smoothed importance resampling; its own Pareto k and importance ESS are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pymc as pm
import xarray as xr

from models.diagnostics import Diagnostics, check_sampling
from models.did.model import BETWEEN_SD, PRIOR_DATA, DidModel, ModelSpec, build_did_model, prior_data
from models.priors import NamedPrior
from models.sampling import REFIT_TARGET_ACCEPT, CompiledSampler

PARETO_K_MAX = 0.7


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    progress: bool = False
    mass_matrix: str = "diag"     # see models.sampling.MASS_MATRICES (the SofS analyses use "low_rank")

    def kwargs(self) -> dict:
        return {"draws": self.draws, "tune": self.tune, "chains": self.chains, "target_accept": self.target_accept,
                "progress": self.progress, "mass_matrix": self.mass_matrix}


@dataclass
class Fit:
    """One posterior with its checks and how it was obtained."""

    prior: NamedPrior
    idata: xr.DataTree
    diagnostics: Diagnostics
    seconds: float = 0.0
    reweighting: dict | None = None
    notes: list[str] = field(default_factory=list)
    dm: DidModel | None = None          # the model it was drawn from (a re-parametrised twin after a re-fit)

    @property
    def posterior(self):
        return self.idata["posterior"]


def diagnostic_vars(dm: DidModel, posterior=None) -> list[str]:
    """Every free variable of the model (on its constrained scale) and every reported
    effect, that holds values in ``posterior``."""
    names = [rv.name for rv in dm.model.free_RVs]
    names += [v.name for v in dm.model.deterministics
              if v.name.startswith(("att", "tau", "counterfactual", "unit_intercept", "period_effect", "unit_trend",
                                    "pretrend", "moderator_diff", "phi", "alpha_nb"))]
    out = list(dict.fromkeys(names))
    if posterior is not None:
        out = [v for v in out if v in posterior and posterior[v].size > 0]
    return out


class PriorFitter:
    """One compiled model sampled under several named priors."""

    def __init__(self, dm: DidModel, *, mutable: tuple[str, ...] = PRIOR_DATA) -> None:
        self.dm = dm
        t0 = time.perf_counter()
        known = set(dm.data_names) or {d.name for d in dm.model.data_vars}   # the data the graph reads
        self.sampler = CompiledSampler(dm.model, mutable=tuple(m for m in mutable if m in known))
        self.compile_seconds = time.perf_counter() - t0

    def fit(self, prior: NamedPrior, settings: SamplerSettings, *, seed: int, zero_prior: NamedPrior | None = None,
            data: dict | None = None) -> Fit:
        t0 = time.perf_counter()
        known = set(self.dm.data_names) or {d.name for d in self.dm.model.data_vars}
        values = {k: v for k, v in {**prior_data(prior, zero_prior), **(data or {})}.items() if k in known}
        idata = self.sampler.sample(values, seed=seed, **settings.kwargs())
        diag = check_sampling(idata, diagnostic_vars(self.dm, idata["posterior"]))
        return Fit(prior, idata, diag, time.perf_counter() - t0, dm=self.dm)


def _better(a: Fit, b: Fit) -> Fit:
    """The fit that passes its checks; when both or neither do, the one without divergent
    transitions (a sign of bias, not only of inefficiency), then the larger smallest bulk ESS."""
    return a if a.diagnostics.rank() >= b.diagnostics.rank() else b


@dataclass
class PriorFits:
    """Posteriors under each named prior, from one model (or its re-parametrised twin)."""

    model: DidModel
    fits: dict[str, Fit]
    compile_seconds: float
    notes: list[str] = field(default_factory=list)
    sampler: CompiledSampler | None = None     # the compiled model (re-fits on new cells re-use it)

    @property
    def ok(self) -> bool:
        return all(f.diagnostics.ok for f in self.fits.values())


def fit_priors(dm: DidModel, priors: list[NamedPrior], settings: SamplerSettings, *, seed: int,
               zero_priors: list[NamedPrior | None] | None = None, reweight: bool = False,
               auto_reparametrise: bool = True, rebuild: Callable[[ModelSpec], DidModel] | None = None,
               log: Callable[[str], None] = lambda message: None) -> PriorFits:
    """Fit ``dm`` under each prior (see the module docstring).

    ``reweight=True`` samples only the broadest prior and obtains the others by PSIS
    reweighting, refitting any whose Pareto k exceeds 0.7. ``rebuild(spec)`` builds the
    re-parametrised model (default: ``build_did_model`` with the same design); it is used when
    ``auto_reparametrise`` and the centring of the intercepts or of the effects was left open.
    A fit that fails its checks is re-fitted once (:func:`_recover`).
    """
    zero_priors = zero_priors or [None] * len(priors)
    fitter = PriorFitter(dm)
    compile_s = fitter.compile_seconds
    notes: list[str] = []
    order = list(zip(priors, zero_priors))
    if reweight:
        order.sort(key=lambda pz: -pz[0].sd)
    fits: dict[str, Fit] = {}
    reference: Fit | None = None
    for i, (prior, zp) in enumerate(order):
        if reweight and reference is not None:
            tree, info = reweight_prior(reference.idata, reference.prior, prior, seed=seed + 10 + i,
                                        between_base=BETWEEN_SD * dm.change)
            if info.ok:
                fits[prior.name] = Fit(prior, tree, reweighted_diagnostics(reference.diagnostics, info), 0.0,
                                       info.to_dict(), dm=reference.dm)
                continue
            log(f"the {prior.name} prior is too far from the {reference.prior.name} fit "
                f"(Pareto k {info.pareto_k:.2f}); sampling it")
        log(f"sampling under the {prior.name} prior ({i + 1}/{len(order)})...")
        fit = fitter.fit(prior, settings, seed=seed + i, zero_prior=zp)
        if not fit.diagnostics.ok and auto_reparametrise:
            fit, fitter, dm, extra_compile, note = _recover(fit, fitter, dm, prior, zp, settings, seed + i, rebuild, log)
            compile_s += extra_compile
            if note:
                fit.notes.append(note)
                notes.append(note)
        fits[prior.name] = fit
        if reference is None:
            reference = fit
    ordered = {p.name: fits[p.name] for p in priors}
    return PriorFits(dm, ordered, round(compile_s, 2), notes, fitter.sampler)


UNIT_LEVEL = ("unit_intercept", "unit_raw", "sigma_unit", "alpha", "cohort_level")
EFFECT_LEVEL = ("sigma_tau", "tau_raw", "tau", "mu_tau")


def _failing_vars(diag: Diagnostics) -> set[str]:
    from models.diagnostics import ESS_MIN, RHAT_MAX

    t = diag.table
    bad = t[(t["rhat"] > RHAT_MAX) | (t["ess_bulk"] < ESS_MIN) | (t["ess_tail"] < ESS_MIN)]
    return {str(v).split("[")[0] for v in bad.index}


def _slow_mixing_vars(diag: Diagnostics) -> set[str]:
    """The variables whose bulk or tail ESS is below the minimum: the signature of a funnel or
    a ridge, which a re-parametrisation removes. An R-hat just over its bound with ESS above the
    minimum is Monte Carlo noise among many exchangeable variables (mpdta: 1.0103 for one of 500
    unit intercepts, bulk ESS 6,104, in a fit that mixes well); longer chains are its remedy."""
    from models.diagnostics import ESS_MIN

    t = diag.table
    return {str(v).split("[")[0] for v in t[(t["ess_bulk"] < ESS_MIN) | (t["ess_tail"] < ESS_MIN)].index}


def _recover(fit: Fit, fitter: PriorFitter, dm: DidModel, prior, zp, settings: SamplerSettings, seed: int,
             rebuild, log) -> tuple[Fit, PriorFitter, DidModel, float, str]:
    """A failed fit, re-fitted (the better fit is kept, :func:`_better`, and the steps said):

    1. divergent transitions the only problem: smaller steps (target acceptance 0.99);
    2. the unit-level variables mix slowly (bulk or tail ESS below the minimum,
       :func:`_slow_mixing_vars`) and their centring was chosen from the data: the other
       centring (a funnel or a ridge between the intercepts and their SD); likewise the treated
       units' effects (``sigma_tau``, unit structure, centring left open): centred effects,
       which mix better when every treated unit has much data;
    3. anything else still failing: chains twice as long (draws and tuning).
    """
    build = rebuild or (lambda spec: build_did_model(dm.design, prior, spec=spec))
    extra = 0.0
    steps = []
    if fit.diagnostics.only_divergences and settings.target_accept < REFIT_TARGET_ACCEPT:
        log(f"{fit.diagnostics.divergences} divergent transitions under the {prior.name} prior; re-fitting with "
            f"target acceptance {REFIT_TARGET_ACCEPT:g}")
        refit = fitter.fit(prior, replace(settings, target_accept=REFIT_TARGET_ACCEPT), seed=seed + 1000, zero_prior=zp)
        kept = _better(fit, refit)
        steps.append(f"{fit.diagnostics.divergences} divergences at target acceptance {settings.target_accept}; "
                     f"re-fitted at {REFIT_TARGET_ACCEPT:g} ({'kept' if kept is refit else 'not better'})")
        return kept, fitter, dm, extra, f"{prior.name}: " + "; ".join(steps)
    if dm.spec.unit_centred is None and _slow_mixing_vars(fit.diagnostics) & set(UNIT_LEVEL):
        other = not fitter.dm.unit_centred
        form = "centred" if other else "non-centred"
        log(f"the unit intercepts mix badly under the {prior.name} prior; re-fitting with {form} intercepts")
        twin_dm = build(replace(fitter.dm.spec, unit_centred=other))
        twin = PriorFitter(twin_dm)
        extra += twin.compile_seconds
        refit = twin.fit(prior, settings, seed=seed, zero_prior=zp)
        kept = _better(fit, refit)
        steps.append(f"the data chose {'centred' if fitter.dm.unit_centred else 'non-centred'} unit intercepts, which "
                     f"mixed badly; re-fitted {form} ({'kept' if kept is refit else 'not better'})")
        if kept is refit:
            fitter, dm = twin, twin_dm     # later priors use the form that worked
        fit = kept
    if (not fit.diagnostics.ok and dm.design.spec.effects == "unit" and dm.spec.effect_centred is None
            and _slow_mixing_vars(fit.diagnostics) & set(EFFECT_LEVEL)):
        log(f"the treated units' effects mix badly under the {prior.name} prior; re-fitting with centred effects")
        twin_dm = build(replace(fitter.dm.spec, unit_centred=fitter.dm.unit_centred, effect_centred=True))
        twin = PriorFitter(twin_dm)
        extra += twin.compile_seconds
        refit = twin.fit(prior, settings, seed=seed, zero_prior=zp)
        kept = _better(fit, refit)
        steps.append(f"non-centred effects mixed badly; re-fitted centred ({'kept' if kept is refit else 'not better'})")
        if kept is refit:
            fitter, dm = twin, twin_dm
        fit = kept
    if not fit.diagnostics.ok and not fit.diagnostics.only_divergences:
        longer = replace(settings, draws=2 * settings.draws, tune=2 * settings.tune)
        log(f"diagnostics failed under the {prior.name} prior ({', '.join(sorted(_failing_vars(fit.diagnostics)))}); "
            f"re-fitting with {longer.draws} draws and {longer.tune} tuning steps per chain")
        refit = fitter.fit(prior, longer, seed=seed + 2000, zero_prior=zp)
        kept = _better(fit, refit)
        steps.append(f"re-fitted with chains twice as long ({'kept' if kept is refit else 'not better'})")
        fit = kept
    return fit, fitter, dm, extra, (f"{prior.name}: " + "; ".join(steps)) if steps else ""


# ---------------------------------------------------------------- other priors by reweighting

@dataclass(frozen=True)
class Reweighting:
    """How a posterior under one prior was obtained from a fit under another (PSIS)."""

    reference: str
    pareto_k: float
    importance_ess: float
    n_draws: int

    @property
    def ok(self) -> bool:
        return self.pareto_k <= PARETO_K_MAX and self.importance_ess >= 0.1 * self.n_draws

    def to_dict(self) -> dict:
        return {"reference_prior": self.reference, "pareto_k": self.pareto_k, "importance_ess": self.importance_ess,
                "n_draws": self.n_draws, "ok": self.ok, "threshold_pareto_k": PARETO_K_MAX}


def reweighted_diagnostics(reference: Diagnostics, info: Reweighting) -> Diagnostics:
    """The reference fit's sampling checks plus the reweighting's own: its Pareto k and its
    importance ESS against the ESS threshold."""
    problems = list(reference.problems)
    if info.pareto_k > PARETO_K_MAX:
        problems.append(f"reweighting Pareto k {info.pareto_k:.2f} > {PARETO_K_MAX}")
    table = reference.table.copy()
    table["ess_bulk"] = np.minimum(table["ess_bulk"], info.importance_ess)
    table["ess_tail"] = np.minimum(table["ess_tail"], info.importance_ess)
    from models.diagnostics import ESS_MIN
    if info.importance_ess < ESS_MIN:
        problems.append(f"reweighting importance ESS {info.importance_ess:.0f} < {ESS_MIN}")
    return Diagnostics(table, reference.divergences, reference.n_draws, reference.ebfmi, problems)


def reweight_prior(idata, reference: NamedPrior, target: NamedPrior, *, seed: int, var: str = "mu_tau",
                   between_base: float | None = None, between_var: str = "sigma_tau"):
    """The posterior under ``target`` from a fit under ``reference`` (they differ only in the
    prior on ``var`` and, when their ``between_scale`` differ, on ``between_var``, whose prior
    is ``HalfNormal(between_scale x between_base)``), by Pareto-smoothed importance resampling
    to equal weights."""
    from arviz_stats.base.array import array_stats
    from scipy.stats import halfnorm, norm

    post = idata["posterior"].to_dataset()
    mu = post[var].values
    log_ratio = norm.logpdf(mu, target.mean, target.sd) - norm.logpdf(mu, reference.mean, reference.sd)
    if target.between_scale != reference.between_scale and between_var in post:
        if between_base is None:
            raise ValueError("reweighting between priors with different between-unit scales needs between_base")
        sig = post[between_var].values
        log_ratio = log_ratio + (halfnorm.logpdf(sig, scale=target.between_scale * between_base)
                                 - halfnorm.logpdf(sig, scale=reference.between_scale * between_base))
    log_w, khat = array_stats.psislw(-log_ratio.ravel())  # psislw weights by exp(-input)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    n = w.size
    positions = (np.random.default_rng(seed).random() + np.arange(n)) / n
    idx = np.minimum(np.searchsorted(np.cumsum(w), positions), n - 1)
    new = {}
    for name, da in post.data_vars.items():
        flat = da.values.reshape(n, *da.shape[2:])[idx]
        new[name] = (da.dims, flat.reshape(*mu.shape, *da.shape[2:]))
    ds = xr.Dataset(new, coords=post.coords, attrs={**post.attrs, "reweighted_from_prior": reference.name,
                                                    "pareto_k": float(khat)})
    info = Reweighting(reference.name, float(khat), float(1.0 / np.sum(w ** 2)), n)
    groups = {"posterior": ds}
    for g in ("sample_stats", "observed_data"):
        if g in idata.children:
            groups[g] = idata[g].to_dataset()
    return xr.DataTree.from_dict(groups), info


# ---------------------------------------------------------------- prior predictive

def prior_predictive(dm: DidModel, prior: NamedPrior, *, draws: int, seed: int,
                     zero_prior: NamedPrior | None = None) -> xr.DataTree:
    """Draws from the prior of ``att`` and from the prior predictive of the cells' ``y_obs``
    under ``prior`` (:func:`models.sampling.prior_draws`: one vectorised call). Groups
    ``prior`` and ``prior_predictive``, as ``pm.sample_prior_predictive`` makes them."""
    from models.sampling import prior_draws

    with dm.model:
        known = {d.name for d in dm.model.data_vars}
        pm.set_data({k: v for k, v in prior_data(prior, zero_prior).items() if k in known})
    values = prior_draws(dm.model, ["att", "y_obs"], draws=draws, seed=seed)
    coords = {"chain": [0], "draw": np.arange(draws)}
    return xr.DataTree.from_dict({
        "prior": xr.Dataset({"att": (("chain", "draw"), values["att"][None])}, coords=coords),
        "prior_predictive": xr.Dataset({"y_obs": (("chain", "draw", "y_obs_dim_0"), values["y_obs"][None])},
                                       coords=coords)})
