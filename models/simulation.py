r"""Simulation studies of the hierarchical DiD: recovery, calibration (SBC), few treated LAs.

The model is the DiD engine's (:mod:`models.did`) as the SofS kinship analysis fits it
(:func:`analyses.sofs_did.make_plan`): binomial cells, one effect per pilot LA after
settling-in (``effects="unit"``), never-treated controls, all pre-adoption years as base,
LA-specific linear trends (``la_trends``), hierarchical year effects around a common trend;
the unit intercepts are centred in every replicate (:data:`MODEL_SPEC`: a fixed compiled
graph; it is also what the engine chooses from the data at these sizes).

Three studies, each a set of *replicates* (one simulated dataset, one fit), run on Dask:

``recovery``
    Datasets from the generator (:func:`data.synthetic.simulate_did_study`) at the kinship
    design; the hierarchical DiD is fitted to each and its posterior compared with the truth:
    bias, RMSE and coverage of the central 50%, 90% and 95% intervals for the ATT (``att``,
    pp, realised in the pilots), the between-LA SD of the effect (``sigma_tau``), the
    typical-LA effect (``mu_tau``) and the between-LA SD of the outcome level (``sigma_unit``,
    around each adoption cohort's level; the generator's ``sd_la``).
``sbc``
    Simulation-based calibration (Talts et al. 2018): parameters drawn from the model's own
    prior, data from its prior predictive on a fixed kinship-sized design, the model fitted;
    the rank of each true value among ``L`` thinned posterior draws is uniform on
    ``0..L`` when the sampler and the model code are right. Uniformity: a chi-square test per
    parameter (Bonferroni over parameters) and the 99% simultaneous ECDF envelope.
    The SBC replicates also check the toolkit's words and its third estimand: with 9, 4 or 2
    treated LAs (``--treated``), (a) *calibrated words*: each replicate's statements "SofS
    reduced (increased) the outcome in the pilots" carry P(att < 0) (P(att > 0)); grouped by
    the verbal level their P earns (:data:`models.statements.VERBAL_LADDER`), the share that
    are true (the drawn ATT has that sign) should lie in the level's range
    (:func:`verbal_calibration`); (b) *a new LA*: a fresh LA effect ``tau_new ~ N(mu_tau,
    sigma_tau^2)`` is drawn from the true population of each replicate and its effect on the
    pilots' cells computed with the true untreated outcome; the posterior predictive interval
    of the new-LA estimand (:func:`models.did.model.estimand_draws`) should cover it at its
    nominal rate (:func:`new_unit_coverage`).
``few-las``
    The question behind the report's "only 2 comparator LAs and 2 pilot sites": datasets with
    2, 4 or 9 treated LAs (and, by default, as many comparators), growing between-LA effect
    heterogeneity ``sd_tau`` and either a null (``mu_tau = 0``) or the published effect; on
    each the hierarchical Bayesian DiD and the report's frequentist DiD (linear probability
    model, LA-clustered SE, :func:`models.did.crosscheck.lpm_did`) plus a wild cluster
    bootstrap (:func:`wild_cluster_bootstrap`). Type I error and power are rejection rates.

Design choices (stated in every output):

- *Kinship-sized model.* By default the replicates use the kinship design (9 pilot and 9
  comparator LAs, 9 years, ~12,800 children) with the covariate effects of the generator set
  to zero and the fit on LA x year cells, so the model is correctly specified and a fit takes
  ~1 s instead of ~20 s for the ~4,000 covariate strata. ``covariates=True`` keeps the
  generator's covariate effects and fits the covariate strata (the exact kinship analysis).
- *Compile once.* Each Dask worker compiles the model once per design shape (LAs, pilots and
  their cohorts, years, covariates) and re-uses it with new ``pm.Data`` values: the cells'
  statistics and layout (which pilot a cell belongs to, which cells are treated) are data, and
  the number of cells may change between replicates (nutpie's ``with_data`` accepts new lengths).
- *A seed per replicate*: ``SeedSequence([seed, crc32(scenario), k])`` gives the data, the
  sampler and the bootstrap seeds, so replicate ``k`` can be re-run alone with the same result.
- Results are written replicate by replicate (:class:`ReplicateStore`): an interrupted study
  resumes where it stopped.

The statistics (recovery metrics, ranks, uniformity tests, rejection rates) are pure functions
of the replicate records at the end of this module.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
import warnings
import zlib

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from data.did_input import DidCells, cells_from_frame
from data.synthetic import AGE_BANDS, DISABILITY, ETHNIC_GROUPS, SEXES, DidStudyConfig, simulate_did_study
from models.did.design import DesignSpec, DidDesign, canonical_cells, did_design
from models.did.likelihoods import get_likelihood
from models.did.model import SOFS_MODEL_SPEC, DidModel, build_did_model, model_data
from models.did.priors import effect_priors
from models.serialize import jsonable

STUDIES = ("recovery", "sbc", "few-las")
INTERVALS = (0.5, 0.9, 0.95)
QUANTILES = (0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975)
RECOVERY_VARS = ("att", "sigma_tau", "mu_tau", "sigma_unit", "att_average")
SBC_VARS = ("alpha", "sigma_unit", "sigma_period", "sigma_trend", "mu_tau", "sigma_tau", "att", "tau[0]")
#: The engine's model as the SofS kinship analysis fits it, unit intercepts centred in every
#: replicate (one compiled graph; the engine's own choice from the data at these sizes).
MODEL_SPEC = replace(SOFS_MODEL_SPEC, unit_centred=True)
#: Stored with every study's settings, so that a study folder fitted with another model is
#: not resumed with this one.
MODEL_ID = "models.did binomial: unit effects, never-treated controls, all-pre base; hierarchical years; centred"
COVARIATE_LEVELS = {"age_band": AGE_BANDS, "sex": SEXES, "ethnicity": ETHNIC_GROUPS, "disability": DISABILITY}
NO_COVARIATE_EFFECTS = {"age_effects": (0.0, 0.0, 0.0, 0.0), "male_effect": 0.0,
                        "ethnic_effects": (0.0,) * 5, "disability_effect": 0.0}
PUBLISHED_MU_TAU = DidStudyConfig().mu_tau   # log-odds; ATT about -12.6 pp at the kinship design
METHODS = {  # few-LAs study: method key -> label
    "lpm_cluster_z": "LPM, LA-clustered SE, normal (report)",
    "lpm_cluster_t": "LPM, LA-clustered SE, t(G-1)",
    "wcb_webb": "wild cluster bootstrap (Webb, restricted)",
    "wcb_rademacher": "wild cluster bootstrap (Rademacher, restricted)",
    "bayes_mu_tau": "Bayes: 95% interval of typical-LA effect excludes 0",
    "bayes_att": "Bayes: 95% interval of ATT in the pilots excludes 0",
}


# ------------------------------------------------------------------------------ settings

@dataclass(frozen=True)
class Scenario:
    """One data-generating setting of a study; ``id`` names its folder of replicates."""

    id: str
    n_pilot: int = 9
    n_comparator: int = 9
    mu_tau: float = PUBLISHED_MU_TAU
    sd_tau: float = DidStudyConfig().sd_tau
    effect: str = "published"       # 'published' | 'null' | 'prior' (SBC)

    def config(self, covariates: bool = False) -> DidStudyConfig:
        """The generator's configuration: kinship defaults, this scenario's design and effect."""
        base = DidStudyConfig()
        idx = spread_indices(len(base.adoption_years), self.n_pilot)
        changes: dict[str, Any] = {
            "n_pilot": self.n_pilot, "n_comparator": self.n_comparator,
            "adoption_years": tuple(base.adoption_years[i] for i in idx),
            "settling_years": tuple(base.settling_years[i] for i in idx),
            "mu_tau": float(self.mu_tau), "sd_tau": float(self.sd_tau),
        }
        if not covariates:
            changes.update(NO_COVARIATE_EFFECTS)
        return replace(base, **changes)


def spread_indices(n_available: int, k: int) -> list[int]:
    """``k`` indices spread over ``0..n_available-1`` (the kinship rollout's staggering kept)."""
    if k <= n_available:
        return [int(i) for i in np.round(np.linspace(0, n_available - 1, k))]
    return [i % n_available for i in range(k)]


@dataclass(frozen=True)
class StudySettings:
    """What a study's replicates depend on (a resumed study must have the same settings)."""

    study: str
    draws: int = 500
    tune: int = 400
    chains: int = 2
    seed: int = 20201001
    prior: str = "neutral"
    covariates: bool = False
    la_trends: bool = True
    sbc_draws: int = 49          # L: thinned posterior draws each SBC rank is taken among
    n_boot: int = 999            # wild cluster bootstrap draws (all sign patterns when fewer)
    target_accept: float = 0.9
    bayes: bool = True           # few-LAs study: False runs the frequentist methods only
    model: str = MODEL_ID        # the model this code fits (not a choice: it marks the study folder)

    def __post_init__(self) -> None:
        if self.model != MODEL_ID:
            raise ValueError(f"this code fits {MODEL_ID!r}, not {self.model!r}")
        if self.study not in STUDIES:
            raise ValueError(f"study must be one of {STUDIES}, got {self.study!r}")
        if self.prior not in ("sceptical", "neutral", "enthusiastic"):
            raise ValueError(f"prior must be sceptical, neutral or enthusiastic, got {self.prior!r}")
        for name in ("draws", "tune", "chains", "sbc_draws", "n_boot"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.study == "sbc" and self.sbc_draws > self.draws * self.chains:
            raise ValueError("sbc_draws must not exceed draws x chains")
        if not self.bayes and self.study != "few-las":
            raise ValueError("only the few-LAs study can leave out the Bayesian model")

    def to_dict(self) -> dict:
        return asdict(self)


def replicate_seeds(seed: int, scenario_id: str, k: int) -> dict[str, int]:
    """Independent seeds for replicate ``k`` of a scenario: the same on every machine."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(scenario_id.encode()), int(k)]).generate_state(3)
    return {"data": int(state[0]), "sampler": int(state[1]), "bootstrap": int(state[2])}


# ------------------------------------------------------------------------------ data for one replicate

def simulate_cells(config: DidStudyConfig, seed: int, *, covariates: bool) -> tuple[DidCells, dict]:
    """One synthetic study aggregated to cells (LA x year, or with covariate strata)."""
    study = simulate_did_study(config, seed)
    children = study.children
    if not covariates:
        children = children.drop(columns=[c for c in COVARIATE_LEVELS if c in children.columns])
    cells = cells_from_frame(children, config.outcome, source="simulation replicate", synthetic=True)
    return cells, study.truth


def covariate_names(covariates: Sequence[str]) -> list[str]:
    """The design's covariate columns when every level is present (as :func:`did_design` codes them)."""
    names = []
    for cov in covariates:
        levels = sorted(COVARIATE_LEVELS[cov])
        names += [f"{cov}[{level}]" for level in levels[1:]]
    return names


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """SofS cells (la, year, adoption_year, settling_years) with the engine's column names
    (unit, period, cohort, settling): the conversion of :func:`analyses.sofs_did.canonical`."""
    return canonical_cells(frame, unit="la", period="year", cohort="adoption_year", settling="settling_years")


def design_spec(covariates: Sequence[str] = (), la_trends: bool = True) -> DesignSpec:
    """The SofS kinship analysis's design (:func:`analyses.sofs_did.make_plan`)."""
    return DesignSpec("binomial", effects="unit", control="never", base="all", unit_trends=la_trends,
                      covariates=tuple(covariates))


def replicate_design(cells: DidCells, la_trends: bool = True) -> DidDesign:
    """The model's design for a replicate, with a fixed set of covariate columns.

    Settling-in cells are left out by the design (``design.cells`` are the analysis cells).
    A replicate that lacks a covariate level gets a zero column for it, so that ``beta`` keeps
    its shape in every replicate.
    """
    design = did_design(canonical(cells.cells), design_spec(cells.covariates, la_trends), units=cells.las,
                        periods=cells.years)
    names = covariate_names(cells.covariates)
    if design.covariate_names != names:
        analysis = design.cells
        x = np.zeros((len(analysis), len(names)))
        for j, name in enumerate(names):
            cov, level = name[:-1].split("[", 1)
            x[:, j] = (analysis[cov].astype(str) == level).to_numpy(float)
        design.data["x"] = x - x.mean(axis=0)
        design.covariate_names = names
    return design


def frequentist_cells(design: DidDesign) -> pd.DataFrame:
    """The design's analysis cells (canonical columns) with ``treated_post`` (0/1: the cells
    where the pilots' effect acts), for :func:`models.did.crosscheck.lpm_did` and the wild
    cluster bootstrap."""
    return design.cells.assign(treated_post=(design.data["treated"] > 0).astype(float))


def pre_share(design: DidDesign) -> float:
    """The pilots' share before adoption (their analysis cells in the pre-adoption phase)."""
    cells = design.cells
    pre = cells[cells["phase"] == "pre"]
    return float(pre["y"].sum() / pre["n"].sum())


def study_prior(design: DidDesign, name: str):
    """The named prior for ``mu_tau``, anchored as the kinship analysis anchors it (the neutral
    prior needs no anchor: a replicate whose pilots start above 83% cannot rise by 20%, and the
    target-anchored priors refuse it)."""
    if name == "neutral":
        from models.priors import NamedPrior

        return NamedPrior("neutral", 0.0, 1.0, "log-odds ratio", "no effect expected, weakly informative")
    share = min(max(pre_share(design), 0.01), 0.99)
    return effect_priors(get_likelihood("binomial"), share, direction=+1, relative_target=0.2,
                         outcome_label="kinship care")[name]


# ------------------------------------------------------------------------------ compiled models (per worker)

_COMPILED: dict[tuple, dict] = {}
_COMPILE_LOCK = threading.Lock()   # in-process (threaded) workers share one cache


def _design_key(design: DidDesign) -> tuple:
    """What a compiled model is valid for: the coordinates and the design's choices (the cells'
    layout and statistics are ``pm.Data``, so replicates with other cells re-use it)."""
    return (tuple(design.units), tuple(design.treated_units), tuple(design.unit_cohort), tuple(design.periods),
            tuple(design.covariate_names), design.spec, MODEL_SPEC)


def compiled_model(design: DidDesign, prior) -> tuple[dict, float, bool]:
    """This process's compiled model for ``design``'s shape: compiled on first use only.

    Returns the cache entry (``sampler``, ``dm``: the :class:`~models.did.model.DidModel`), the
    seconds spent getting it (compiling, or waiting for another thread's compilation) and
    whether it was compiled by this call.
    """
    t0 = time.perf_counter()
    from models.sampling import CompiledSampler   # imports nutpie: counted with the compilation

    key = _design_key(design)
    with _COMPILE_LOCK:
        if key in _COMPILED:
            return _COMPILED[key], time.perf_counter() - t0, False
        dm = build_did_model(design, prior, spec=MODEL_SPEC)
        entry = {"dm": dm, "model": dm.model, "sampler": CompiledSampler(dm.model), "forward": None,
                 "lock": threading.Lock()}
        _COMPILED[key] = entry
        return entry, time.perf_counter() - t0, True


def replicate_data(entry: dict, design: DidDesign, prior) -> dict:
    """The ``pm.Data`` values of ``design`` (and ``prior``) for the compiled model."""
    return model_data(entry["dm"], design, prior)


def _forward_sampler(entry: dict) -> tuple[Callable, list[str], list]:
    """A compiled prior-predictive function of the model (for SBC), reseedable per replicate."""
    if entry["forward"] is None:
        import pymc as pm
        from pymc.sampling.forward import compile_forward_sampling_function
        from pytensor.compile.sharedvalue import SharedVariable

        model = entry["model"]
        names = sorted({v.name for v in model.basic_RVs + model.deterministics})
        fn, _ = compile_forward_sampling_function([model[n] for n in names], vars_in_trace=[],
                                                  basic_rvs=model.basic_RVs, random_seed=0, model=model,
                                                  allow_input_downcast=True, accept_inplace=True)
        rngs = [v for v in fn.get_shared() if isinstance(v, SharedVariable)
                and isinstance(v.get_value(borrow=True), np.random.Generator)]
        entry["forward"] = (fn, names, rngs, pm)
    fn, names, rngs, pm = entry["forward"]
    return fn, names, rngs


def _posterior_summary(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=float).ravel()
    q = np.quantile(v, QUANTILES)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)),
            "q": {f"{p:g}": float(x) for p, x in zip(QUANTILES, q)},
            "p_negative": float(np.mean(v < 0))}


def _diagnostics(dm: DidModel, idata) -> dict:
    """Sampling checks over every sampled quantity and reported effect (the project standard:
    :func:`models.did.fit.diagnostic_vars`, LA trends and ``sigma_trend`` included)."""
    from models.diagnostics import check_sampling
    from models.did.fit import diagnostic_vars

    d = check_sampling(idata, diagnostic_vars(dm, idata["posterior"]))
    return d.summary(max_problems=5)


def _fit(entry: dict, design: DidDesign, prior, settings: StudySettings, seed: int, cores: int | None):
    return entry["sampler"].sample(replicate_data(entry, design, prior), draws=settings.draws, tune=settings.tune,
                                   chains=settings.chains, seed=seed, cores=cores, progress=False,
                                   target_accept=settings.target_accept)


# ------------------------------------------------------------------------------ replicates

def run_replicate(settings: StudySettings, scenario: Scenario, k: int, cores: int | None = None) -> dict:
    """Run replicate ``k`` of ``scenario``; never raises (a failure is a record with ``error``)."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"study": settings.study, "scenario": scenario.id, "replicate": int(k),
                              "seeds": replicate_seeds(settings.seed, scenario.id, k),
                              "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        runner = {"recovery": _recovery, "sbc": _sbc, "few-las": _few_las}[settings.study]
        with warnings.catch_warnings(record=True) as caught:   # kept in the record, not printed
            warnings.simplefilter("always")
            record.update(runner(settings, scenario, record["seeds"], cores))
        messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        if messages:
            record["warnings"] = messages[:5]
    except Exception as err:  # noqa: BLE001 - a replicate's failure is data for the study
        record["error"] = f"{type(err).__name__}: {err}"
    record.setdefault("timing", {})["total_s"] = time.perf_counter() - t0
    return record


def _recovery(settings: StudySettings, scenario: Scenario, seeds: dict, cores: int | None) -> dict:
    t0 = time.perf_counter()
    config = scenario.config(settings.covariates)
    cells, truth = simulate_cells(config, seeds["data"], covariates=settings.covariates)
    design = replicate_design(cells, settings.la_trends)
    prior = study_prior(design, settings.prior)
    t_sim = time.perf_counter() - t0
    entry, t_compile, compiled = compiled_model(design, prior)
    t1 = time.perf_counter()
    idata = _fit(entry, design, prior, settings, seeds["sampler"], cores)
    t_sample = time.perf_counter() - t1
    post = idata["posterior"]
    t2 = time.perf_counter()
    out = {
        "truth": {"att": truth["att_pp"], "sigma_tau": config.sd_tau, "mu_tau": config.mu_tau,
                  "sigma_unit": config.sd_la, "n_children": truth["n_children"]},
        "posterior": {v: _posterior_summary(post[v].values) for v in RECOVERY_VARS if v in post},
        "n_cells": int(len(design.data["n"])),
        "prior": {"name": prior.name, "mean": prior.mean, "sd": prior.sd},
        "diagnostics": _diagnostics(entry["dm"], idata),
    }
    out["timing"] = {"simulate_s": t_sim, "compile_s": t_compile, "compiled_here": compiled, "sample_s": t_sample,
                     "summarise_s": time.perf_counter() - t2}
    return out


def sbc_template(settings: StudySettings, scenario: Scenario | None = None) -> tuple[DidCells, DidDesign]:
    """The fixed design of an SBC scenario: one study's cells (its children counts) at the
    scenario's numbers of treated and comparator LAs (default: the kinship design)."""
    config = (scenario or Scenario("sbc")).config(settings.covariates)
    cells, _ = simulate_cells(config, int(settings.seed), covariates=settings.covariates)
    return cells, replicate_design(cells, settings.la_trends)


_SBC_TEMPLATES: dict[tuple, tuple] = {}


def _sbc(settings: StudySettings, scenario: Scenario, seeds: dict, cores: int | None) -> dict:
    t0 = time.perf_counter()
    tkey = (settings.seed, settings.covariates, settings.la_trends, scenario.n_pilot, scenario.n_comparator)
    if tkey not in _SBC_TEMPLATES:
        _SBC_TEMPLATES[tkey] = sbc_template(settings, scenario)
    cells, design = _SBC_TEMPLATES[tkey]
    prior = study_prior(design, settings.prior)
    entry, t_compile, compiled = compiled_model(design, prior)
    from pymc.pytensorf import reseed_rngs

    with entry["lock"]:   # the prior draw: the model's data (and named prior) set, rngs reseeded
        t_fw = time.perf_counter()
        fresh = entry["forward"] is None
        fn, names, rngs = _forward_sampler(entry)
        t_compile += time.perf_counter() - t_fw if fresh else 0.0
        compiled = compiled or fresh
        model = entry["model"]
        for name, value in model_data(entry["dm"], design, prior).items():
            model[name].set_value(np.asarray(value, dtype=model[name].dtype))
        reseed_rngs(rngs, seeds["data"])
        draw = dict(zip(names, fn()))
    truth = {}
    for v in SBC_VARS:
        base, _, index = v.partition("[")
        if base in draw:
            truth[v] = float(np.ravel(draw[base])[int(index[:-1])] if index else draw[base])
    y = np.asarray(draw["y_obs"]).astype(int)
    rep_design = replace(design, data={**design.data, "y": y})
    t_sim = time.perf_counter() - t0 - t_compile
    t1 = time.perf_counter()
    idata = _fit(entry, rep_design, prior, settings, seeds["sampler"], cores)
    t_sample = time.perf_counter() - t1
    t2 = time.perf_counter()
    post = idata["posterior"]
    ranks = {}
    for v in truth:
        base, _, index = v.partition("[")
        values = post[base].values
        if index:
            values = values[..., int(index[:-1])]
        thinned = thin_draws(values, settings.sbc_draws)
        ranks[v] = int(np.sum(thinned < truth[v]))
    new_truth, new_post = new_unit_truth_and_posterior(entry["dm"], rep_design, draw, post, seeds)
    return {"truth": truth, "ranks": ranks, "sbc_draws": settings.sbc_draws,
            "design": {"n_pilot": scenario.n_pilot, "n_comparator": scenario.n_comparator},
            "statement": {"p_reduced": float(np.mean(post["att"].values < 0)), "true_att": truth["att"]},
            "new_unit": {"truth": new_truth, "posterior": _posterior_summary(new_post)},
            "observed_share": float(y.sum() / design.data["n"].sum()),
            "prior": {"name": prior.name, "mean": prior.mean, "sd": prior.sd},
            "diagnostics": _diagnostics(entry["dm"], idata),
            "timing": {"simulate_s": t_sim, "compile_s": t_compile, "compiled_here": compiled, "sample_s": t_sample,
                       "summarise_s": time.perf_counter() - t2}}


def new_unit_truth_and_posterior(dm: DidModel, design: DidDesign, draw: dict, post, seeds: dict
                                 ) -> tuple[float, np.ndarray]:
    """A fresh LA's effect on the pilots' cells (pp), drawn from the replicate's true
    population (``tau_new ~ N(mu_tau, sigma_tau^2)``, the true untreated outcome), and the
    posterior predictive draws of the same estimand (both by :func:`estimand_draws`)."""
    import xarray as xr

    from models.did.model import estimand_draws

    rep_dm = replace(dm, design=design)
    one = xr.Dataset({name: (("chain", "draw", *[f"{name}_dim_{i}" for i in range(np.ndim(v))]),
                             np.asarray(v, float)[None, None])
                      for name, v in draw.items() if name != "y_obs"})
    truth = float(estimand_draws(rep_dm, one, seed=seeds["bootstrap"])["new_unit"][0])
    return truth, estimand_draws(rep_dm, post, seed=seeds["sampler"] + 1)["new_unit"]


def verbal_calibration(records: Sequence[dict]) -> pd.DataFrame:
    """Are the words calibrated? Each SBC replicate makes two statements about the ATT in the
    pilots, "reduced" with P = P(att < 0) and "increased" with 1 - P; grouped by scenario and
    by the verbal level their P earns, the share of statements that are true (the drawn ATT
    has that sign) against their mean stated P (``matches_stated``: within 3 binomial SEs)
    and against the level's range (``in_level_range``: within 2 SEs of it)."""
    from models.statements import VERBAL_LADDER, verbal_probability

    bounds = {phrase: (lo, ([1.0] + [b for b, _ in VERBAL_LADDER])[i]) for i, (lo, phrase) in enumerate(VERBAL_LADDER)}
    rows = []
    for r in records:
        st = r.get("statement")
        if st is None:
            continue
        p = st["p_reduced"]
        for claim, prob, true in (("reduced", p, st["true_att"] < 0), ("increased", 1 - p, st["true_att"] > 0)):
            rows.append({"scenario": r["scenario"], "n_pilot": r.get("design", {}).get("n_pilot"), "claim": claim,
                         "level": verbal_probability(float(prob)), "p": float(prob), "true": bool(true)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    out = []
    order = [phrase for _, phrase in VERBAL_LADDER]
    for (scenario, n_pilot, level), g in frame.groupby(["scenario", "n_pilot", "level"]):
        n = len(g)
        share, stated = float(g["true"].mean()), float(g["p"].mean())
        lo, hi = bounds[level]
        se = float(np.sqrt(max(stated * (1 - stated), 1.0 / n) / n))    # binomial SE if the words are calibrated
        out.append({"scenario": scenario, "n_pilot": int(n_pilot), "level": level, "p_low": lo, "p_high": hi,
                    "statements": n, "mean_stated_p": stated, "share_true": share, "mc_se": se,
                    "matches_stated": bool(abs(share - stated) <= 3 * se),
                    "in_level_range": bool(lo - 2 * se <= share <= hi + 2 * se),
                    "order": order.index(level)})
    return pd.DataFrame(out).sort_values(["n_pilot", "order"], ascending=[False, True]).drop(columns="order") \
        .reset_index(drop=True)


def new_unit_coverage(records: Sequence[dict]) -> pd.DataFrame:
    """Coverage of a fresh LA's effect by the new-LA posterior predictive intervals (central
    50%, 90%, 95%), by scenario, with Monte Carlo SEs."""
    rows = []
    for r in records:
        nu = r.get("new_unit")
        if nu is None:
            continue
        q, t = nu["posterior"]["q"], nu["truth"]
        rows.append({"scenario": r["scenario"], "n_pilot": r.get("design", {}).get("n_pilot"),
                     "covered_50": q["0.25"] <= t <= q["0.75"], "covered_90": q["0.05"] <= t <= q["0.95"],
                     "covered_95": q["0.025"] <= t <= q["0.975"]})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    out = []
    for (scenario, n_pilot), g in frame.groupby(["scenario", "n_pilot"]):
        n = len(g)
        row = {"scenario": scenario, "n_pilot": int(n_pilot), "replicates": n}
        for level in (50, 90, 95):
            c = float(g[f"covered_{level}"].mean())
            row[f"coverage_{level}"] = c
            row[f"mc_se_{level}"] = _mc_se(level / 100, n)
        out.append(row)
    return pd.DataFrame(out).sort_values("n_pilot", ascending=False).reset_index(drop=True)


def null_statement_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Under a null effect (few-LAs ``null`` scenarios), how often the toolkit's statement
    "SofS reduced ..." reaches "likely" (P >= 0.66), "very likely" (P >= 0.90) and "extremely
    likely" (P >= 0.95), beside how often the report's method (LPM, LA-clustered SE) finds a
    significant reduction (p < 0.05, estimate below 0) or any significant effect. With a
    between-LA spread the pilots' own ATT is not zero under a null mean effect, so
    ``very_likely_reduced_and_true`` says how many "very likely reduced" statements were true
    (the realised ATT below 0); with no spread it is exactly 0 and every such statement is false."""
    sub = frame[(frame["effect"] == "null") & frame["bayes_p_reduced"].notna()]
    rows = []
    for (k, c, sd), g in sub.groupby(["n_pilot", "n_comparator", "sd_tau"]):
        n = len(g)
        p = g["bayes_p_reduced"].astype(float)
        said = (p >= 0.90).to_numpy()
        true = (g["true_att_pp"] < 0).to_numpy()
        rows.append({"n_pilot": int(k), "n_comparator": int(c), "sd_tau": float(sd), "replicates": n,
                     "likely_reduced": float((p >= 0.66).mean()), "very_likely_reduced": float(said.mean()),
                     "extremely_likely_reduced": float((p >= 0.95).mean()),
                     "very_likely_reduced_and_true": float(true[said].mean()) if said.any() else float("nan"),
                     "report_significant_reduction": float((g["lpm_cluster_z"] & (g["lpm_estimate_pp"] < 0)).mean()),
                     "report_significant_any": float(g["lpm_cluster_z"].mean())})
    return pd.DataFrame(rows)


def thin_draws(values: np.ndarray, n_keep: int) -> np.ndarray:
    """``n_keep`` draws spread evenly over each chain (``values`` is chain x draw)."""
    values = np.asarray(values)
    chains, draws = values.shape[:2]
    per_chain = [n_keep // chains + (1 if c < n_keep % chains else 0) for c in range(chains)]
    kept = [values[c, np.linspace(0, draws - 1, m).round().astype(int)] for c, m in enumerate(per_chain) if m]
    return np.concatenate(kept)


def _few_las(settings: StudySettings, scenario: Scenario, seeds: dict, cores: int | None) -> dict:
    from models.did.crosscheck import lpm_did

    t0 = time.perf_counter()
    config = scenario.config(settings.covariates)
    cells, truth = simulate_cells(config, seeds["data"], covariates=settings.covariates)
    design = replicate_design(cells, settings.la_trends)
    prior = study_prior(design, settings.prior)
    analysis = frequentist_cells(design)
    t_sim = time.perf_counter() - t0
    t1 = time.perf_counter()
    freq = lpm_did(analysis, list(cells.covariates))
    g = freq.n_clusters
    z = freq.estimate / freq.se if freq.se > 0 else np.nan
    boot = {w: wild_cluster_bootstrap(analysis, cells.covariates, n_boot=settings.n_boot, weights=w,
                                      seed=seeds["bootstrap"]) for w in ("webb", "rademacher")}
    t_freq = time.perf_counter() - t1
    out = {
        "design": {"n_pilot": scenario.n_pilot, "n_comparator": scenario.n_comparator, "sd_tau": scenario.sd_tau,
                   "mu_tau": scenario.mu_tau, "effect": scenario.effect, "n_cells": int(len(analysis))},
        "truth": {"att": truth["att_pp"], "mu_tau": config.mu_tau, "sigma_tau": config.sd_tau},
        "frequentist": {**asdict(freq), "p_t": float(2 * stats.t.sf(abs(z), max(g - 1, 1)))},
        "bootstrap": {w: b.to_dict() for w, b in boot.items()},
    }
    timing = {"simulate_s": t_sim, "frequentist_s": t_freq}
    if settings.bayes:
        entry, t_compile, compiled = compiled_model(design, prior)
        t2 = time.perf_counter()
        idata = _fit(entry, design, prior, settings, seeds["sampler"], cores)
        timing.update(compile_s=t_compile, compiled_here=compiled, sample_s=time.perf_counter() - t2)
        t3 = time.perf_counter()
        post = idata["posterior"]
        out["posterior"] = {v: _posterior_summary(post[v].values)
                            for v in ("att", "mu_tau", "att_average", "sigma_tau")}
        out["prior"] = {"name": prior.name, "mean": prior.mean, "sd": prior.sd}
        out["diagnostics"] = _diagnostics(entry["dm"], idata)
        timing["summarise_s"] = time.perf_counter() - t3
    out["timing"] = timing
    return out


# ------------------------------------------------------------------------------ wild cluster bootstrap

WEBB_WEIGHTS = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
RADEMACHER_WEIGHTS = np.array([-1.0, 1.0])


@dataclass(frozen=True)
class WildBootstrap:
    """A restricted wild cluster bootstrap (WCR) test of ``treated_post = 0`` in the LPM DiD."""

    estimate_pp: float
    se_pp: float
    t_stat: float
    p_value: float
    n_boot: int
    weights: str
    enumerated: bool
    n_clusters: int
    method: str = "WCR bootstrap-t, LA clusters, null imposed, CR1 variance (child-level N)"

    def to_dict(self) -> dict:
        return asdict(self)


def _dummies(values: pd.Series) -> np.ndarray:
    codes, levels = pd.factorize(values.astype(str), sort=True)
    return np.eye(len(levels))[codes][:, 1:]


def _cluster_pieces(cells: pd.DataFrame, covariates: Sequence[str]) -> dict:
    """Cell-level WLS pieces of the LPM DiD (exactly the child-level OLS, weights ``n``).

    Fixed effects (intercept, LA, year, covariates) are partialled out (Frisch-Waugh-Lovell)
    with an SVD of the weighted nuisance matrix; ``dt`` is the residualised treatment column.
    """
    n = cells["n"].to_numpy(float)
    if (n <= 0).any():
        raise ValueError("cells need n > 0")
    sw = np.sqrt(n)
    z = np.column_stack([np.ones(len(cells)), _dummies(cells["unit"]), _dummies(cells["period"]),
                         *[_dummies(cells[c]) for c in covariates]])
    u, s, _ = np.linalg.svd(z * sw[:, None], full_matrices=False)
    q = u[:, s > s.max() * 1e-10]
    resid = lambda v: v - q @ (q.T @ v)  # noqa: E731
    yw = cells["y"].to_numpy(float) / n * sw
    dt = resid(cells["treated_post"].to_numpy(float) * sw)
    s_dd = float(dt @ dt)
    if s_dd <= 1e-12:
        raise ValueError("the treatment indicator is collinear with the fixed effects")
    groups, labels = pd.factorize(cells["unit"])
    n_clusters = len(labels)
    big_n, k = n.sum(), q.shape[1] + 1
    cr1 = n_clusters / max(n_clusters - 1, 1) * (big_n - 1) / (big_n - k)
    return {"q": q, "resid": resid, "yw": yw, "dt": dt, "s_dd": s_dd, "groups": groups,
            "n_clusters": n_clusters, "cr1": cr1}


def cluster_lpm(cells: pd.DataFrame, covariates: Sequence[str] = ()) -> tuple[float, float]:
    """The LPM DiD estimate and its LA-clustered (CR1, child-level N) SE, both in pp."""
    p = _cluster_pieces(cells, covariates)
    beta = float(p["dt"] @ p["yw"]) / p["s_dd"]
    eu = p["resid"](p["yw"]) - p["dt"] * beta
    score = np.bincount(p["groups"], p["dt"] * eu, minlength=p["n_clusters"])
    se = np.sqrt(np.sum(score**2) * p["cr1"]) / p["s_dd"]
    return 100 * beta, 100 * float(se)


def bootstrap_weights(kind: str, n_clusters: int, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Cluster weights (clusters x draws); every pattern when there are at most ``n_boot``."""
    support = {"webb": WEBB_WEIGHTS, "rademacher": RADEMACHER_WEIGHTS}.get(kind)
    if support is None:
        raise ValueError(f"weights must be 'webb' or 'rademacher', got {kind!r}")
    if len(support) ** n_clusters <= n_boot:
        return np.array(list(itertools.product(support, repeat=n_clusters))).T, True
    return rng.choice(support, size=(n_clusters, n_boot)), False


def wild_cluster_bootstrap(cells: pd.DataFrame, covariates: Sequence[str] = (), *, n_boot: int = 999,
                           weights: str = "webb", seed: int = 0) -> WildBootstrap:
    r"""Restricted wild cluster bootstrap-t p-value for the LPM DiD (Cameron, Gelbach & Miller 2008;
    MacKinnon & Webb 2017), clusters = LAs.

    With the null ``beta = 0`` imposed, the restricted residuals ``e_r`` (fixed effects only) are
    multiplied by a weight ``w_g`` per LA, ``y* = Z b_r + w_g e_r``, and the cluster-robust t is
    recomputed; ``p = mean(|t*| >= |t|)``. Linear in ``w``, so every draw costs a G x G product:
    ``beta* = a'w / S`` and the cluster scores are ``A w - b beta*``. Webb's six-point weights
    suit few clusters (Rademacher has only 2^G patterns, all used when ``2^G <= n_boot``).
    """
    p = _cluster_pieces(cells, covariates)
    dt, g, G, s_dd = p["dt"], p["groups"], p["n_clusters"], p["s_dd"]
    beta = float(dt @ p["yw"]) / s_dd
    er = p["resid"](p["yw"])                                     # restricted residuals (null imposed)
    eu = er - dt * beta
    score = np.bincount(g, dt * eu, minlength=G)
    se = np.sqrt(np.sum(score**2) * p["cr1"]) / s_dd
    t_stat = beta / se
    onehot = np.eye(G)[g]                                        # cells x clusters
    e_g = er[:, None] * onehot                                   # restricted residuals of each cluster
    f = p["resid"](e_g)
    f = f - np.outer(dt, dt @ f) / s_dd                          # M_[Z,D] applied to each cluster's part
    a_mat = onehot.T @ (dt[:, None] * f)                         # G x G
    a_vec = onehot.T @ (dt * er)
    w, enumerated = bootstrap_weights(weights, G, n_boot, np.random.default_rng(seed))
    beta_star = a_vec @ w / s_dd
    scores = a_mat @ w                                           # cluster scores of the unrestricted fit
    se_star = np.sqrt(np.sum(scores**2, axis=0) * p["cr1"]) / s_dd
    with np.errstate(divide="ignore", invalid="ignore"):
        t_star = np.where(se_star > 0, beta_star / se_star, 0.0)
    p_value = float(np.mean(np.abs(t_star) >= abs(t_stat) - 1e-12))
    return WildBootstrap(100 * beta, 100 * float(se), float(t_stat), p_value, int(w.shape[1]), weights,
                         enumerated, G)


# ------------------------------------------------------------------------------ scenarios of each study

def study_scenarios(study: str, *, treated: Iterable[int] | None = None, comparators: int | None = None,
                    sd_taus: Iterable[float] = (0.0, 0.3, 0.6), effects: Iterable[str] = ("null", "published"),
                    published_mu_tau: float = PUBLISHED_MU_TAU, mu_tau: float | None = None,
                    sd_tau: float | None = None) -> list[Scenario]:
    """The scenarios of a study (one for recovery and SBC; a grid for the few-LAs study).

    ``comparators=None`` gives each few-LAs scenario as many comparators as treated LAs (the
    report's 2 + 2 situation at the smallest size, the kinship design's 9 + 9 at the largest).
    ``treated`` defaults to (9,) for SBC (the kinship design) and (2, 4, 9) for few-LAs.
    """
    treated = tuple(treated) if treated is not None else ((9,) if study == "sbc" else (2, 4, 9))
    if study == "recovery":
        base = Scenario("kinship")
        mu = base.mu_tau if mu_tau is None else float(mu_tau)
        sd = base.sd_tau if sd_tau is None else float(sd_tau)
        if sd < 0:
            raise ValueError("sd_tau must be >= 0")
        return [replace(base, id=f"kinship_mu{mu:g}_sd{sd:g}", mu_tau=mu, sd_tau=sd)]
    if study == "sbc":     # the kinship design's 9 + 9 keeps its folder name, "prior"
        return [Scenario("prior" if k == 9 and (comparators in (None, 9)) else
                         f"prior_t{k}_c{k if comparators is None else comparators}", k,
                         k if comparators is None else int(comparators), effect="prior") for k in treated]
    if study != "few-las":
        raise ValueError(f"study must be one of {STUDIES}, got {study!r}")
    out = []
    for effect in effects:
        if effect not in ("null", "published"):
            raise ValueError(f"effects must be 'null' or 'published', got {effect!r}")
        for k in treated:
            if k < 1:
                raise ValueError("the number of treated LAs must be >= 1")
            c = k if comparators is None else int(comparators)
            for s in sd_taus:
                if s < 0:
                    raise ValueError("sd_tau must be >= 0")
                mu = 0.0 if effect == "null" else float(published_mu_tau)
                out.append(Scenario(f"{effect}_t{k}_c{c}_sd{s:g}", k, c, mu, float(s), effect))
    return out


# ------------------------------------------------------------------------------ storage and execution



class ReplicateStore:
    """One small JSON file per replicate: ``root/replicates/<scenario>/rep_<k>.json``.

    Files are written atomically (temporary file, then rename), so a killed study never leaves
    a half-written replicate; a failed replicate is kept as ``rep_<k>.error.json`` and re-run
    on resume.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / "replicates"

    def path(self, scenario_id: str, k: int, *, error: bool = False) -> Path:
        return self.dir / scenario_id / f"rep_{k:05d}{'.error' if error else ''}.json"

    def done(self, scenario_id: str) -> set[int]:
        folder = self.dir / scenario_id
        if not folder.exists():
            return set()
        return {int(p.name[4:9]) for p in folder.glob("rep_[0-9][0-9][0-9][0-9][0-9].json")}

    def write(self, record: dict) -> Path:
        failed = "error" in record
        target = self.path(record["scenario"], record["replicate"], error=failed)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(jsonable(record), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, target)
        if not failed:
            self.path(record["scenario"], record["replicate"], error=True).unlink(missing_ok=True)
        return target

    def load(self, scenarios: Sequence[Scenario], replicates: int) -> list[dict]:
        out = []
        for sc in scenarios:
            for k in sorted(self.done(sc.id)):
                if k < replicates:
                    out.append(json.loads(self.path(sc.id, k).read_text()))
        return out

    def failures(self, scenarios: Sequence[Scenario]) -> list[dict]:
        out = []
        for sc in scenarios:
            folder = self.dir / sc.id
            if folder.exists():
                out += [json.loads(p.read_text()) for p in sorted(folder.glob("rep_*.error.json"))]
        return out


@dataclass
class RunReport:
    """What one invocation did: replicates run now, skipped (already done), failed, wall time."""

    ran: int = 0
    skipped: int = 0
    failed: int = 0
    wall_s: float = 0.0
    workers: int = 0
    errors: list[str] = field(default_factory=list)


def pending_tasks(store: ReplicateStore, scenarios: Sequence[Scenario], replicates: int) -> tuple[list, int]:
    """(scenario, k) pairs still to run, and how many are already done."""
    todo, done = [], 0
    for sc in scenarios:
        have = store.done(sc.id)
        for k in range(replicates):
            if k in have:
                done += 1
            else:
                todo.append((sc, k))
    return todo, done


def run_study(client, settings: StudySettings, scenarios: Sequence[Scenario], replicates: int,
              store: ReplicateStore, *, cores: int | None = None, progress: bool = True) -> RunReport:
    """Submit every missing replicate to the Dask ``client``; write each result as it arrives.

    Replicates already in ``store`` are skipped (resume). The client side writes the files, so
    the workers need no shared file system.
    """
    from distributed import as_completed
    from tqdm import tqdm

    t0 = time.perf_counter()
    todo, done = pending_tasks(store, scenarios, replicates)
    report = RunReport(skipped=done, workers=len(client.scheduler_info().get("workers", {})))
    if todo:
        futures = [client.submit(run_replicate, settings, sc, k, cores, pure=False,
                                 key=f"{settings.study}-{sc.id}-{k}-{time.time_ns()}") for sc, k in todo]
        bar = tqdm(total=done + len(todo), initial=done, desc=settings.study, unit="rep",
                   disable=not progress, smoothing=0.1)
        try:
            for future in as_completed(futures):
                record = future.result()
                store.write(record)
                future.release()
                if "error" in record:
                    report.failed += 1
                    report.errors.append(f"{record['scenario']} #{record['replicate']}: {record['error']}")
                else:
                    report.ran += 1
                bar.update(1)
        finally:
            bar.close()
            for f in futures:
                f.cancel()
    report.wall_s = time.perf_counter() - t0
    return report


# ------------------------------------------------------------------------------ summaries (pure functions)

def _mc_se(p: float, n: int) -> float:
    return float(np.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)))


def recovery_table(records: Sequence[dict]) -> pd.DataFrame:
    """Bias, RMSE, mean 90% width and 50/90/95% coverage (with Monte Carlo SE) per parameter."""
    rows = []
    ok = [r for r in records if "posterior" in r]
    for var in RECOVERY_VARS:
        have = [r for r in ok if var in r["posterior"] and r["truth"].get(var) is not None]
        if not have:
            continue
        truth = np.array([r["truth"][var] for r in have], float)
        post = [r["posterior"][var] for r in have]
        mean = np.array([p["mean"] for p in post])
        row = {"parameter": var, "replicates": len(have), "truth_mean": truth.mean(),
               "posterior_mean": mean.mean(), "bias": float(np.mean(mean - truth)),
               "rmse": float(np.sqrt(np.mean((mean - truth) ** 2))),
               "mean_width_90": float(np.mean([p["q"]["0.95"] - p["q"]["0.05"] for p in post]))}
        for level in INTERVALS:
            lo, hi = f"{(1 - level) / 2:g}", f"{1 - (1 - level) / 2:g}"
            cover = np.mean([(p["q"][lo] <= t <= p["q"][hi]) for p, t in zip(post, truth)])
            row[f"coverage_{int(round(100 * level))}"] = float(cover)
            row[f"mc_se_{int(round(100 * level))}"] = _mc_se(float(cover), len(have))
        rows.append(row)
    return pd.DataFrame(rows)


def sbc_rank_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per replicate, one column per parameter's rank (plus ``replicate``, ``L``)."""
    rows = [{"replicate": r["replicate"], "L": r["sbc_draws"], **r["ranks"]} for r in records if "ranks" in r]
    return pd.DataFrame(rows).sort_values("replicate").reset_index(drop=True) if rows else pd.DataFrame()


def rank_pit(ranks: np.ndarray, n_draws: int, seed: int = 0) -> np.ndarray:
    """Ranks on 0..L as continuous PIT values, jittered within their bin: uniform under calibration."""
    rng = np.random.default_rng(seed)
    return (np.asarray(ranks, float) + rng.random(len(ranks))) / (n_draws + 1)


def rank_chisq(ranks: np.ndarray, n_draws: int, n_bins: int | None = None) -> tuple[float, int, float]:
    """Chi-square test of uniform ranks on 0..L with about ``R / 10`` bins (at most 20)."""
    ranks = np.asarray(ranks, int)
    n_bins = n_bins or int(np.clip(len(ranks) // 10, 2, 20))
    n_bins = min(n_bins, n_draws + 1)
    edges = np.unique(np.round(np.linspace(0, n_draws + 1, n_bins + 1)).astype(int))
    counts = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / (n_draws + 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    df = len(counts) - 1
    return chi2, df, float(stats.chi2.sf(chi2, df))


def sbc_uniformity(ranks: pd.DataFrame, *, level: float = 0.01, n_simulations: int = 1000) -> tuple[pd.DataFrame, dict]:
    """Uniformity of SBC ranks per parameter: chi-square p-value and the 99% ECDF envelope.

    Returns the test table and, per parameter, the ECDF-difference curve with its simultaneous
    ``1 - level`` envelope (arviz-stats' simulation method), for the figure. The study passes
    when no parameter is rejected at ``level`` after Bonferroni over parameters.
    """
    from arviz_stats.ecdf_utils import ecdf_pit

    params = [c for c in ranks.columns if c not in ("replicate", "L")]
    n_draws = int(ranks["L"].iloc[0])
    rows, curves = [], {}
    for i, name in enumerate(params):
        r = ranks[name].to_numpy()
        chi2, df, p = rank_chisq(r, n_draws)
        pit = rank_pit(r, n_draws, seed=i)
        x, ecdf, lo, hi = ecdf_pit(pit, 1 - level, n_simulations, rng=np.random.default_rng(214 + i))
        inside = bool(np.all((ecdf >= lo - 1e-12) & (ecdf <= hi + 1e-12)))
        curves[name] = {"x": x, "diff": ecdf - x, "lower": lo - x, "upper": hi - x}
        rows.append({"parameter": name, "replicates": len(r), "L": n_draws, "chi2": chi2, "df": df,
                     "p_value": p, "p_bonferroni": min(1.0, p * len(params)),
                     f"inside_{100 * (1 - level):g}pct_envelope": inside})
    return pd.DataFrame(rows), curves


def few_las_frame(records: Sequence[dict], alpha: float = 0.05) -> pd.DataFrame:
    """One row per few-LAs replicate: design, truth and each method's rejection at ``alpha``."""
    rows = []
    lo, hi = f"{alpha / 2:g}", f"{1 - alpha / 2:g}"
    for r in records:
        if "frequentist" not in r:
            continue
        freq, boot = r["frequentist"], r["bootstrap"]
        post = r.get("posterior")
        excl = lambda s: bool(s["q"][lo] > 0 or s["q"][hi] < 0) if lo in s["q"] else np.nan  # noqa: E731
        bayes = {"bayes_mu_tau": np.nan, "bayes_att": np.nan, "bayes_att_mean_pp": np.nan, "bayes_p_reduced": np.nan,
                 "bayes_att_covers": np.nan, "diagnostics_ok": np.nan}
        if post is not None:
            att = post["att"]
            bayes = {"bayes_mu_tau": excl(post["mu_tau"]), "bayes_att": excl(att), "bayes_att_mean_pp": att["mean"],
                     "bayes_p_reduced": att["p_negative"],
                     "bayes_att_covers": (att["q"].get(lo, np.nan) <= r["truth"]["att"] <= att["q"].get(hi, np.nan)),
                     "diagnostics_ok": r["diagnostics"]["ok"]}
        rows.append({
            "scenario": r["scenario"], "replicate": r["replicate"], **r["design"],
            "true_att_pp": r["truth"]["att"],
            "lpm_estimate_pp": freq["estimate"], "lpm_se_pp": freq["se"],
            "lpm_cluster_z": freq["p_value"] < alpha, "lpm_cluster_t": freq["p_t"] < alpha,
            "wcb_webb": boot["webb"]["p_value"] < alpha, "wcb_rademacher": boot["rademacher"]["p_value"] < alpha,
            **bayes,
            "lpm_ci_covers": freq["ci95_low"] <= r["truth"]["att"] <= freq["ci95_high"],
        })
    return pd.DataFrame(rows)


def rejection_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rejection rate (type I error under the null, power under the published effect) per
    scenario and method, with its Monte Carlo SE."""
    if frame.empty:
        return pd.DataFrame()
    keys = ["effect", "n_pilot", "n_comparator", "sd_tau"]
    rows = []
    for key, grp in frame.groupby(keys, sort=True):
        for m, label in METHODS.items():
            if grp[m].isna().all():
                continue
            rate = float(grp[m].astype(float).mean())
            rows.append({**dict(zip(keys, key)), "method": m, "method_label": label, "replicates": len(grp),
                         "rejection_rate": rate, "mc_se": _mc_se(rate, len(grp)),
                         "mean_true_att_pp": float(grp["true_att_pp"].mean())})
    return pd.DataFrame(rows)


def diagnostics_summary(records: Sequence[dict]) -> dict:
    """Share of replicates whose sampling diagnostics failed, worst values, timings."""
    ok = [r for r in records if "diagnostics" in r]
    if not ok:
        return {"replicates": 0}
    d = [r["diagnostics"] for r in ok]
    t = pd.DataFrame([r.get("timing", {}) for r in ok])
    timing = {f"mean_{c}": float(t[c].mean()) for c in t.columns if c != "compiled_here"}
    overhead = t["total_s"] - t.get("sample_s", 0) - t.get("compile_s", 0)
    timing["mean_overhead_s"] = float(overhead.mean())
    timing["compilations"] = int(t["compiled_here"].sum()) if "compiled_here" in t else 0
    return {"replicates": len(ok), "share_failed": float(np.mean([not x["ok"] for x in d])),
            "share_with_divergences": float(np.mean([x["divergences"] > 0 for x in d])),
            "share_rhat_gt_1.01": float(np.mean([x["max_rhat"] > 1.01 for x in d])),
            "median_min_ess_bulk": float(np.median([x["min_ess_bulk"] for x in d])),
            "max_rhat": float(np.max([x["max_rhat"] for x in d])), "timing": timing}


def recovery_frame(records: Sequence[dict], var: str = "att") -> pd.DataFrame:
    """Per replicate: the truth, the posterior mean and the 90% interval of ``var``."""
    rows = [{"replicate": r["replicate"], "truth": r["truth"][var], "mean": r["posterior"][var]["mean"],
             "q05": r["posterior"][var]["q"]["0.05"], "q95": r["posterior"][var]["q"]["0.95"]}
            for r in records if "posterior" in r and var in r["posterior"] and r["truth"].get(var) is not None]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["covered"] = (frame["q05"] <= frame["truth"]) & (frame["truth"] <= frame["q95"])
    return frame


def rejection_wide(table: pd.DataFrame) -> pd.DataFrame:
    """The rejection table with one column per method (rows: effect, treated, comparators, sd_tau)."""
    keys = ["effect", "n_pilot", "n_comparator", "sd_tau", "replicates"]
    wide = table.pivot_table(index=keys, columns="method", values="rejection_rate").reset_index()
    wide.columns.name = None
    return wide[[*keys, *[m for m in METHODS if m in wide.columns]]]


def few_las_coverage(frame: pd.DataFrame) -> pd.DataFrame:
    """95% interval coverage and RMSE for the realised ATT in the pilots: Bayes vs the LPM."""
    keys = ["effect", "n_pilot", "n_comparator", "sd_tau"]
    rows = []
    for key, g in frame.groupby(keys, sort=True):
        rows.append({**dict(zip(keys, key)), "replicates": len(g),
                     "bayes_att_coverage": float(g["bayes_att_covers"].astype(float).mean()),
                     "lpm_ci_coverage": float(g["lpm_ci_covers"].mean()),
                     "bayes_att_rmse_pp": float(np.sqrt(np.mean((g["bayes_att_mean_pp"] - g["true_att_pp"]) ** 2))),
                     "lpm_rmse_pp": float(np.sqrt(np.mean((g["lpm_estimate_pp"] - g["true_att_pp"]) ** 2)))})
    return pd.DataFrame(rows)


def replicate_brief(record: dict) -> dict:
    """The numbers that identify a replicate's result (to compare a re-run with the stored one)."""
    result = {k: record[k] for k in ("posterior", "ranks", "frequentist", "bootstrap", "truth") if k in record}
    if "error" in record:
        result["error"] = record["error"]
    return {"study": record["study"], "scenario": record["scenario"], "replicate": record["replicate"],
            "seeds": record["seeds"], "result": jsonable(result), "timing": record.get("timing")}
