"""A DiD experiment: cells, design, model, fits under named priors, and their summaries.

:class:`DidExperiment` owns what one analysis needs from the engine (as CausalPy's experiment
objects do): the canonical cells, the design and model specifications and how effects are
read. :meth:`DidExperiment.fit` compiles once and fits every named prior; :meth:`summarise`
turns one fit into a :class:`~models.did.result.PriorResult` (the headline effect, its
statements and the staggered aggregates); :meth:`posterior_predictive` and
:meth:`prior_predictive` give the checks. Analyses compose these; they hold no statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from models.did.design import DesignSpec, DidDesign, did_design
from models.did.fit import Fit, PriorFits, SamplerSettings, fit_priors, prior_predictive
from models.did.model import DidModel, ModelSpec, build_did_model, cell_predictors, estimand_draws, map_draw_chunks
from models.did.result import PriorResult
from models.did.summaries import Reading, aggregate, aggregate_summary, effect_statements, event_study_table, interval
from models.priors import NamedPrior


@dataclass
class DidExperiment:
    """One DiD analysis on canonical cells (see :mod:`models.did.design`)."""

    cells: pd.DataFrame
    design_spec: DesignSpec
    model_spec: ModelSpec
    reading: Reading
    secondary: Reading | None = None          # the hurdle's same-day share (pp)
    extensions: dict = field(default_factory=dict)
    units: list[str] | None = None
    periods: list[int] | None = None

    def __post_init__(self) -> None:
        self.design: DidDesign = did_design(self.cells, self.design_spec, units=self.units, periods=self.periods)

    @property
    def lik(self):
        return self.design.lik

    def build(self, prior: NamedPrior, zero_prior: NamedPrior | None = None, *, unit_centred: bool | None = None,
              design: DidDesign | None = None, spec: ModelSpec | None = None) -> DidModel:
        spec = spec or self.model_spec
        spec = spec if unit_centred is None else replace(spec, unit_centred=unit_centred)
        return build_did_model(design or self.design, prior, spec=spec, zero_prior=zero_prior, **self.extensions)

    def fit(self, priors: list[NamedPrior], settings: SamplerSettings, *, seed: int,
            zero_priors: list[NamedPrior | None] | None = None, reweight: bool = False,
            log: Callable[[str], None] = lambda message: None) -> PriorFits:
        zp = (zero_priors or [None])[0]
        dm = self.build(priors[0], zp)
        return fit_priors(dm, priors, settings, seed=seed, zero_priors=zero_priors, reweight=reweight,
                          rebuild=lambda spec: self.build(priors[0], zp, spec=spec), log=log)

    # -- summaries --------------------------------------------------------------------------

    def aggregates(self, fit: Fit, suffix: str = "") -> dict:
        post = fit.posterior
        pre = post[f"pre_gt{suffix}"] if f"pre_gt{suffix}" in post else None
        return aggregate(self.design, post[f"att_gt{suffix}"], pre)

    def summarise(self, fit: Fit, dm: DidModel, *, seed: int = 0) -> PriorResult:
        """The headline effect (``att``: the treated units' post-adoption cells) under one
        prior, and the three estimands (:func:`models.did.model.estimand_draws`)."""
        post = fit.posterior
        st = effect_statements(self.reading, post["att"].values, relative=post["att_relative"].values,
                               estimands=estimand_draws(dm, post, seed=seed))
        secondary = {}
        if self.secondary is not None and "att_zero" in post:
            s2 = effect_statements(self.secondary, post["att_zero"].values,
                                   estimands=estimand_draws(dm, post, seed=seed + 1, suffix="_zero"))
            secondary["att_zero"] = {**s2, "aggregates": aggregate_summary(self.aggregates(fit, "_zero"), self.design)}
        cutoff = dm.design.cutoff
        if cutoff is not None and "att_population" in post:
            # durations were cut off: the headline is the truncated mean; the population mean beside it
            reading = replace(self.reading, label=f"the population mean duration (the lognormal extended beyond the "
                                                  f"{cutoff:g}-{self.reading.units} cut-off: an extrapolation)")
            secondary["att_population"] = effect_statements(reading, post["att_population"].values)
        return PriorResult(
            prior=fit.prior.name, prior_description=fit.prior.describe(), effect=st["effect"],
            probabilities=st["probabilities"], statements=st["statements"], relative=interval(post["att_relative"].values),
            counterfactual_mean=float(post["counterfactual"].values.mean()),
            aggregates=aggregate_summary(self.aggregates(fit), self.design), diagnostics_ok=fit.diagnostics.ok,
            estimands=st["estimands"], secondary=secondary, reweighting=fit.reweighting)

    def event_study(self, fit: Fit, threshold: float, suffix: str = "") -> pd.DataFrame:
        """The interaction-weighted event study of a cohort_period fit (pre-periods from the
        pre-trend terms, relative to the base period)."""
        return event_study_table(self.aggregates(fit, suffix), self.design, threshold)

    # -- predictive checks ------------------------------------------------------------------

    def posterior_predictive(self, dm: DidModel, fit: Fit, *, seed: int, max_draws: int | None = None,
                             store: bool = True) -> dict[str, np.ndarray]:
        """Replicated cell statistics (draws x cells) from the posterior, in NumPy; with
        ``store`` the replicated ``y`` is kept in the fit as ``posterior_predictive/y_obs``."""
        post = fit.posterior
        n_samples = post.sizes["chain"] * post.sizes["draw"]
        samples = np.arange(n_samples)
        if max_draws is not None and n_samples > max_draws:
            samples = np.sort(np.random.default_rng(seed).choice(n_samples, max_draws, replace=False))
        n, log_upper = self.design.data["n"], self.design.data.get("log_upper")

        def replicate(pos: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
            _, eta, nuis = cell_predictors(dm, post, idx=samples[pos])
            return self.lik.predict(rng, eta, nuis, n, log_upper=log_upper)

        parts = map_draw_chunks(replicate, len(samples), seed=seed)
        y_rep = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if store and len(samples) == n_samples:
            import xarray as xr

            y = y_rep["y"].reshape(post.sizes["chain"], post.sizes["draw"], -1)
            fit.idata["posterior_predictive"] = xr.Dataset(
                {"y_obs": (("chain", "draw", "y_obs_dim_0"), y.astype(np.int32) if self.lik.integer_y else y)},
                coords={"chain": post["chain"].values, "draw": post["draw"].values})
        return y_rep

    def prior_predictive(self, dm: DidModel, prior: NamedPrior, *, draws: int, seed: int,
                         zero_prior: NamedPrior | None = None) -> dict[str, np.ndarray]:
        """Prior draws of the headline effect and of the overall reading-scale value."""
        pp = prior_predictive(dm, prior, draws=draws, seed=seed, zero_prior=zero_prior)
        y = pp["prior_predictive"]["y_obs"].values.reshape(-1, len(self.design.cells))
        n = self.design.data["n"]
        factor = self.model_spec.reading_factor(self.lik)
        if self.lik.identity:
            overall = (y * n).sum(1) / n.sum()
        else:
            overall = factor * y.sum(1) / n.sum()
        return {"att": pp["prior"]["att"].values.ravel(), "overall": overall, "idata": pp}

    def observed_overall(self) -> float:
        d = self.design.data
        y = np.asarray(d["y"], float)
        if self.lik.identity:
            return float((y * d["n"]).sum() / d["n"].sum())
        return float(self.model_spec.reading_factor(self.lik) * y.sum() / d["n"].sum())

    def pre_level(self) -> float:
        """The treated units' pre-adoption level on the response scale (share, rate, mean,
        mean duration): the anchor of the named priors."""
        c = self.design.cells
        pre = c[c["phase"] == "pre"]
        if pre.empty:
            pre = c[c["phase"] == "control"]
        n = pre["n"].to_numpy(float)
        if self.lik.identity:
            return float(np.average(pre["y"], weights=n))
        if self.lik.hurdle:
            return float(pre["dur_sum"].sum() / n.sum())
        return float(pre["y"].sum() / n.sum())

    def pre_zero_share(self) -> float:
        c = self.design.cells
        pre = c[c["phase"] == "pre"]
        return float(pre["y"].sum() / pre["n"].sum())
