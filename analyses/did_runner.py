"""The one runner behind every DiD command: a :class:`Plan` in, outputs and an exit code out.

A command (``analyses.did`` for a user's panel; ``analyses.kinship``, ``.rereferral``,
``.escalation``, ``.duration`` for the SofS child-level outcomes; ``analyses.la_panel``) turns
its arguments into :class:`Inputs` (canonical cells, :mod:`models.did.design`) and a
:class:`Plan` (how effects are read, the design, the priors, the report's own result, which
robustness analyses apply). :func:`run_plan` composes the engine (:mod:`models.did`):

data -> :class:`~models.did.experiment.DidExperiment` -> fits under each named prior ->
statements and staggered aggregates -> event study (the main fit's, or a cohort-by-period
companion fit when the main structure has no pre-trend terms) -> robustness -> frequentist
cross-check -> :class:`~models.did.result.DidResult` -> ``statements.json``, tables, figures,
posterior netCDF files, ``report.md``. It holds no statistics of its own.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.admin_inputs import RUNNER_TABLE_RULES as TABLE_RULES
from analyses.common import EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, log, provenance
from data.admin import sdc
from figures import did as fig
from models.diagnostics import Diagnostics
from models.did import honest
from models.did import robustness as rb
from models.did.checks import add_log_groups, loo_by_unit, power_scaling
from models.did.design import DesignSpec
from models.did.experiment import DidExperiment
from models.did.fit import Fit, PriorFits, SamplerSettings
from models.did.model import ModelSpec
from models.did.result import (DataInfo, DesignInfo, DidResult, Frequentist, OutcomeInfo, PriorResult, ReportedResult,
                               Robustness)
from models.did.summaries import Reading, decimals_for, gt_table, interval_table, ppc_coverage, ppc_table
from models.priors import NamedPrior
from models.serialize import write_idata
from models.statements import state

@dataclass
class Inputs:
    """Canonical cells (with an ``arm`` column) and where they came from."""

    cells: pd.DataFrame
    source: str
    data_hash: str
    synthetic: bool
    n_records: float
    notes: list[str] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    truth: dict | None = None
    attributes: pd.DataFrame | None = None
    attributes_source: str = "none given"
    variants: tuple[str, ...] = ()
    repeated: pd.DataFrame | None = None


@dataclass
class Plan:
    """What one DiD command does (built by its specification from the arguments)."""

    name: str
    title: str
    reading: Reading
    design_spec: DesignSpec
    model_spec: ModelSpec
    priors: list[NamedPrior]
    settings: SamplerSettings
    seed: int
    out: Path
    population: str = ""
    secondary: Reading | None = None
    zero_priors: list[NamedPrior | None] | None = None
    reported: ReportedResult | None = None
    pretrend_threshold: float = 0.0
    unit_word: str = "unit"                 # "LA"
    unit_file: str = "unit_effects"         # "la_effects"
    period_word: str = "period"
    reweight: bool = False
    strict: bool = False
    quiet: bool = False
    keep_draws: bool = False                # every predictive and warm-up draw in the saved fits
    argv: list[str] | None = None
    provenance_extra: dict = field(default_factory=dict)
    robustness: Callable | None = None      # (plan, inputs, experiment, fits, event) -> Robustness, tables, figures
    frequentist: Callable | None = None     # (plan, experiment) -> list[Frequentist]
    sdc: sdc.SdcGuard = field(default_factory=lambda: sdc.SdcGuard(None))
    why: str = ""
    extra: dict = field(default_factory=dict)
    extra_outputs: Callable | None = None   # (out, run) -> None: command-specific files
    extra_markdown: Callable | None = None  # (run) -> list of lines appended to report.md
    m_grid: tuple[float, ...] = honest.DEFAULT_RM_GRID   # relative magnitudes' Mbar grid
    prior_check: list[dict] = field(default_factory=list)
    prior_draws: int = 500


@dataclass
class Run:
    """Everything a finished run computed (for outputs and for tests)."""

    plan: Plan
    inputs: Inputs
    experiment: DidExperiment
    fits: PriorFits
    event: DidExperiment
    event_fit: Fit
    results: list[PriorResult]
    event_table: pd.DataFrame
    event_tables: dict[str, pd.DataFrame]
    y_rep: dict
    prior_pred: dict
    robustness: Robustness
    robustness_tables: dict[str, pd.DataFrame]
    robustness_figures: dict
    frequentist: list[Frequentist]
    result: DidResult
    diagnostics: dict[str, Diagnostics]


def named_priors(cells: pd.DataFrame, design_spec: DesignSpec, model_spec: ModelSpec, reading: Reading, *,
                 direction: int, relative_target: float | None, target: float | None, choice: str,
                 overrides: list[str], neutral_sd: float, scale_name: str, seed: int, part: str = "",
                 zero: tuple | None = None) -> tuple[list[NamedPrior], list[NamedPrior] | None, list[dict]]:
    """The named priors, calibrated on the reported scale (:func:`models.did.priors.calibrated_priors`),
    after the user's overrides, with each one's check (overridden priors are checked too).
    ``zero`` (the hurdle's same-day part): (direction, relative target, label)."""
    from models.did.priors import calibrated_priors, check_priors
    from models.priors import select_priors

    provisional = NamedPrior("neutral", 0.0, neutral_sd, scale_name, "provisional")
    dm = DidExperiment(cells, design_spec, model_spec, reading).build(provisional)
    named, _ = calibrated_priors(dm, direction=direction, relative_target=relative_target, target=target,
                                 outcome_label=reading.label, units=reading.units, neutral_sd=neutral_sd,
                                 scale_name=scale_name, seed=seed)
    try:
        priors = select_priors(named, choice, overrides)
    except ValueError as err:
        from data.errors import DataError

        raise DataError(str(err), column="--prior-override") from None
    checks = [{"part": "main", **vars(c)} for c in check_priors(
        dm, priors, direction=direction if target is None else (1 if target > 0 else -1), relative_target=relative_target,
        target=target, units=reading.units, seed=seed + 7)]
    zero_priors = None
    if zero is not None:
        zdir, zrel, zlabel = zero
        znamed, _ = calibrated_priors(dm, direction=zdir, relative_target=zrel, outcome_label=zlabel, units="pp",
                                      neutral_sd=1.0, scale_name="log-odds ratio", part="_zero", seed=seed + 11)
        zero_priors = [znamed.get(p.name, znamed["neutral"]) for p in priors]
        checks += [{"part": "same-day share", **vars(c)} for c in check_priors(
            dm, zero_priors, direction=zdir, relative_target=zrel, target=None, units="pp", part="_zero",
            seed=seed + 13)]
    return priors, zero_priors, checks


def prior_check_lines(checks: list[dict]) -> list[str]:
    out = []
    for c in checks:
        part = f" ({c['part']})" if c["part"] != "main" else ""
        between = (f", between-unit SD prior x {c['between_scale']:.3g}" if c.get("between_scale", 1.0) != 1.0
                   else "")
        out.append(f"{c['prior']}{part}: N({c['mean']:.3g}, {c['sd']:.3g}){between}; "
                   f"P(target met) = {c['p_target_met']:.2f}; "
                   f"median relative change {100 * c['median_relative']:+.0f}%; P(wrong side) = "
                   f"{c['p_wrong_side']:.2f}; 95% of the prior effect in [{c['eti95_low']:+.3g}, "
                   f"{c['eti95_high']:+.3g}] {c['reading_units']}")
    return out


def log_for(plan: Plan) -> Callable[[str], None]:
    return lambda message: log(f"[{plan.name}] {message}", quiet=plan.quiet)


def _has_pretrends(spec: DesignSpec) -> bool:
    return spec.effects == "cohort_period" and not (spec.control == "notyet" and spec.base == "all")


def reference_prior(plan: Plan) -> int:
    """The prior of the event study, its checks and the robustness re-fits: the neutral one
    (or the first named)."""
    return next((i for i, p in enumerate(plan.priors) if p.name == "neutral"), 0)


def event_companion_spec(spec: DesignSpec) -> DesignSpec:
    """The event study's design when the main one has no pre-trend terms: cohort by period,
    base last, never-treated controls, settling-in periods kept, no unit trends."""
    return replace(spec, effects="cohort_period", control="never", base="last", unit_trends=False, exclude_settling=False)


def fit_all(plan: Plan, inputs: Inputs) -> tuple[DidExperiment, PriorFits, DidExperiment, Fit]:
    say = log_for(plan)
    exp = DidExperiment(inputs.cells, plan.design_spec, plan.model_spec, plan.reading, plan.secondary)
    for note in exp.design.notes:
        say(f"note: {note}")
    say(f"compiling the {plan.design_spec.likelihood} DiD ({plan.design_spec.effects} effects; once for all priors)...")
    fits = exp.fit(plan.priors, plan.settings, seed=plan.seed, zero_priors=plan.zero_priors, reweight=plan.reweight,
                   log=say)
    for name, f in fits.fits.items():
        log(f"[{plan.name}] {name}: " + f.diagnostics.banner(), quiet=plan.quiet and f.diagnostics.ok)
    ref = reference_prior(plan)
    ref_fit = fits.fits[plan.priors[ref].name]
    if _has_pretrends(plan.design_spec):
        return exp, fits, exp, ref_fit
    say("event study (cohort by period, base: the last pre-adoption period)...")
    ev = DidExperiment(inputs.cells, event_companion_spec(plan.design_spec),
                       replace(plan.model_spec, unit_centred=(ref_fit.dm or fits.model).unit_centred), plan.reading, plan.secondary,
                       units=exp.design.units, periods=None)
    ev_fits = ev.fit(plan.priors[ref:ref + 1], plan.settings, seed=plan.seed + 50,
                     zero_priors=(plan.zero_priors or [None] * len(plan.priors))[ref:ref + 1], log=say)
    ev_fit = ev_fits.fits[plan.priors[ref].name]
    log(f"[{plan.name}] event study: " + ev_fit.diagnostics.banner(), quiet=plan.quiet and ev_fit.diagnostics.ok)
    return exp, fits, ev, ev_fit


def summary_row(plan: Plan, r: PriorResult, diag: Diagnostics) -> dict:
    e, a = r.effect, r.aggregates
    row = {"prior": r.prior, "att_mean": e["mean"], "att_eti95_low": e["eti95_low"], "att_eti95_high": e["eti95_high"],
           "att_sd": e["sd"], "relative_change_mean": r.relative["mean"],
           **{f"{k}_mean": (a[k] if k == "simple" else a[k]["overall"])["mean"] for k in ("simple", "dynamic", "group", "calendar")},
           **{k: v for k, v in r.probabilities.items()}}
    for key, e in r.estimands.items():
        if key != "these_units":
            row.update({f"{key}_mean": e["mean"], f"{key}_eti95_low": e["eti95_low"],
                        f"{key}_eti95_high": e["eti95_high"]})
    for key, sec in r.secondary.items():
        row.update({f"{key}_mean": sec["effect"]["mean"], f"{key}_eti95_low": sec["effect"]["eti95_low"],
                    f"{key}_eti95_high": sec["effect"]["eti95_high"]})
    verdict = diag.summary()
    row.update({k: verdict[k] for k in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences")})
    row["diagnostics_ok"] = diag.ok
    return row


def aggregates_table(results: list[PriorResult]) -> pd.DataFrame:
    """Every aggregate of every prior in one long table."""
    rows = []
    for r in results:
        a = r.aggregates
        rows.append({"prior": r.prior, "aggregate": "simple", "level": "", **a["simple"]})
        for kind, key in (("dynamic", "event_time"), ("group", "cohort"), ("calendar", "period")):
            rows.append({"prior": r.prior, "aggregate": kind, "level": "overall", **a[kind]["overall"]})
            for row in a[kind]["by"]:
                rows.append({"prior": r.prior, "aggregate": kind, "level": str(row[key]),
                             **{k: row[k] for k in ("mean", "sd", "eti95_low", "eti95_high")}})
    return pd.DataFrame(rows)


def _event_statements(plan: Plan, table: pd.DataFrame, reading: Reading) -> list[str]:
    f = reading.fmt
    out = []
    for row in table.itertuples():
        if row.pre_period and not row.reference:
            out.append(state(float(row.p_abs_gt_threshold),
                             f"the pre-adoption departure from parallel trends at event time {row.event_time} exceeds "
                             f"±{f(plan.pretrend_threshold, sign=False)} {reading.units} ({row.n_cohorts} "
                             f"cohort{'s' if row.n_cohorts != 1 else ''})"))
    return out


def run_plan(plan: Plan, inputs: Inputs) -> Run:
    """Fit, summarise and check (no files written; see :func:`write_outputs`)."""
    say = log_for(plan)
    t0 = time.perf_counter()
    exp, fits, ev, ev_fit = fit_all(plan, inputs)
    first = fits.fits[plan.priors[0].name]
    if plan.reading.decimals is None:
        plan.reading = replace(plan.reading, decimals=decimals_for(float(first.posterior["att"].std())))
        exp.reading = ev.reading = plan.reading
    results, prior_pred, y_reps = [], {}, {}
    for i, prior in enumerate(plan.priors):
        f = fits.fits[prior.name]
        zp = (plan.zero_priors or [None] * len(plan.priors))[i]
        if f.reweighting is None:
            y_reps[prior.name] = exp.posterior_predictive(f.dm, f, seed=plan.seed + 200 + i)
        pp = exp.prior_predictive(fits.model, prior, draws=plan.prior_draws, seed=plan.seed + 100 + i, zero_prior=zp)
        prior_pred[prior.name] = pp
        for group in ("prior", "prior_predictive"):
            f.idata[group] = pp["idata"][group]
        results.append(exp.summarise(f, f.dm, seed=plan.seed + 300 + i))
    y_rep = y_reps.get(plan.priors[0].name)      # the first prior's replicates (saved with its fit)
    if y_rep is None:
        y_rep = exp.posterior_predictive(first.dm, first, seed=plan.seed + 7, store=False)
    say("log-likelihood by unit, log prior, power-scaling sensitivity and leave-one-unit-out...")
    for f in fits.fits.values():
        if f.reweighting is None:      # a reweighted fit's log prior would be the reference prior's
            add_log_groups(f.dm, f.idata)
    ref_fit = fits.fits[plan.priors[reference_prior(plan)].name]
    sens_vars = ["att", "att_zero", "mu_tau", "mu_tau_zero", "sigma_tau", "sigma_cohort", "sigma_unit"]
    log_checks = {}
    if ref_fit.reweighting is None:
        log_checks["power_scaling"] = power_scaling(ref_fit.idata, sens_vars)
        log_checks["loo_by_unit"], log_checks["loo_summary"] = loo_by_unit(ref_fit.idata, plan.unit_word.lower())
    event_tables = {"att": ev.event_study(ev_fit, plan.pretrend_threshold)}
    if plan.secondary is not None:
        event_tables["att_zero"] = ev.event_study(ev_fit, plan.secondary.rope, suffix="_zero")
    diagnostics = {f"main ({k})": f.diagnostics for k, f in fits.fits.items()}
    if ev is not exp:
        diagnostics["event study"] = ev_fit.diagnostics
    say("robustness..." if plan.robustness else "cross-checks...")
    if plan.robustness is not None:
        rob, rob_tables, rob_figs = plan.robustness(plan, inputs, exp, fits, ev, ev_fit)
    else:
        rob, rob_tables, rob_figs = event_robustness(plan, inputs, ev, ev_fit, same_model=ev is exp)
    freq = plan.frequentist(plan, exp) if plan.frequentist else []
    result = build_result(plan, inputs, exp, fits, results, event_tables, rob, freq, diagnostics, y_rep, log_checks)
    say(f"fitted and summarised in {time.perf_counter() - t0:.0f} s")
    return Run(plan, inputs, exp, fits, ev, ev_fit, results, event_tables["att"], event_tables, y_rep, prior_pred,
               rob, rob_tables, rob_figs, freq, result, diagnostics)


def sensitivity_for(plan: Plan, ev: DidExperiment, ev_fit: Fit, same_model: bool, suffix: str = "",
                    reading: Reading | None = None) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Pre-trend probabilities and Rambachan and Roth's sensitivity (relative magnitudes and
    smoothness; the first post-adoption period and the average of the post-periods) on the
    event study's posterior draws (:mod:`models.did.honest`)."""
    reading = reading or plan.reading
    agg = ev.aggregates(ev_fit, suffix)
    a = ev.design.spec.anticipation
    threshold = plan.pretrend_threshold if suffix == "" else reading.rope
    pre = rb.pretrend_table(agg["dynamic"], threshold, a)
    draws, n_pre, times = rb.event_study_draws(agg["dynamic"], a)
    post_times = times[n_pre:]
    n_post = len(post_times)
    first = np.array([1.0 if t == min(k for k in post_times if k >= 0) else 0.0 for t in post_times])
    average = np.array([1.0 if t >= 0 else 0.0 for t in post_times])
    average /= average.sum()
    params = {"first post-adoption period": first, "average of the post-adoption periods": average}
    tables, summary = [], {"computed_on": ("the posterior of the model whose effect is reported" if same_model else
                                           "the cohort-by-period event-study fit, not the model whose ATT is the "
                                           "headline (its unit structure has no event-time effects)"),
                           "same_model": same_model, "n_pre_periods": n_pre, "n_post_periods": n_post,
                           "event_times": times, "restrictions": {}}
    for kind in honest.RESTRICTIONS:
        grid = plan.m_grid if (kind == "relative_magnitudes" and plan.m_grid) else honest.default_grid(kind, draws, n_pre)
        for label, l_vec in params.items():
            t = honest.sensitivity(draws, n_pre, l_vec=l_vec, parameter=label, restriction_kind=kind, grid=grid,
                                   seed=plan.seed + 31)
            side = 1 if float(np.mean(draws[:, n_pre:] @ l_vec)) > 0 else -1
            b = honest.breakdown(t, side=side)
            summary["restrictions"].setdefault(kind, {})[label] = {
                **b, "conclusion": "increase" if side > 0 else "reduction",
                "p_conclusion_at_0": float(t["p_positive" if side > 0 else "p_negative"].iloc[0]),
                "grid": [float(m) for m in grid]}
            tables.append(t.assign(effect=f"att{suffix}"))
    return pd.concat(tables, ignore_index=True), summary, pre.assign(effect=f"att{suffix}")


def event_robustness(plan: Plan, inputs: Inputs, ev: DidExperiment, ev_fit: Fit, same_model: bool = False
                     ) -> tuple[Robustness, dict[str, pd.DataFrame], dict]:
    """Parallel-trends checks from the event study: P(|pre-period departure| > threshold) and
    Rambachan and Roth's sensitivity, for the headline effect (and the hurdle's same-day share)."""
    rob, sens_tables, pre_tables = Robustness(), [], []
    readings = [("", plan.reading)] + ([("_zero", plan.secondary)] if plan.secondary else [])
    if not ev.design.pretrend_cells:
        rob.notes.append("no pre-trend terms (base 'all' with not-yet-treated controls): parallel trends are "
                         "assumed in every pre-period, not checked")
        return rob, {}, {}
    for suffix, reading in readings:
        table, summ, pre = sensitivity_for(plan, ev, ev_fit, same_model, suffix, reading)
        rob.sensitivity[f"att{suffix}"] = summ
        rob.pretrends[f"att{suffix}"] = pre.to_dict(orient="records")
        sens_tables.append(table)
        pre_tables.append(pre)
        p_max = float(pre.iloc[-1]["p_abs_gt_threshold"])
        threshold = plan.pretrend_threshold if suffix == "" else reading.rope
        rob.statements.append(state(p_max, f"the largest pre-period departure from parallel trends in {reading.label} "
                                           f"exceeds ±{reading.fmt(threshold, sign=False)} {reading.units}"))
        rob.statements += sensitivity_statements(summ, reading)
    sens = pd.concat(sens_tables, ignore_index=True)
    tables = {"sensitivity": sens, "pretrends": pd.concat(pre_tables, ignore_index=True)}
    figures = {"sensitivity.png": fig.plot_sensitivity(sens, synthetic=inputs.synthetic)}
    return rob, tables, figures


def sensitivity_statements(summ: dict, reading: Reading) -> list[str]:
    """One sentence per restriction and parameter: the breakdown value in words."""
    names = {"relative_magnitudes": ("relative magnitudes", "Mbar", "times the largest pre-period change"),
             "smoothness": ("smoothness", "M", f"{reading.units} change in slope per period")}
    out = []
    for kind, by in summ["restrictions"].items():
        name, sym, unit = names[kind]
        for label, b in by.items():
            m = b["breakdown_robust_interval"]
            if m is None:
                text = (f"the {b['conclusion']} in {reading.label} ({label}) is not robust even at {sym} = "
                        f"{b['fails_at']:g} ({name}, Rambachan & Roth): its 95% robust credible interval includes 0")
            else:
                more = "or more (the grid's end)" if b["beyond_grid"] else f"(fails at {b['fails_at']:g})"
                text = (f"under {name} (Rambachan & Roth), the {b['conclusion']} in {reading.label} ({label}) holds "
                        f"(95% robust credible interval excludes 0) for post-period violations up to {sym} = {m:g} "
                        f"{unit} {more}")
            out.append(text + f"; computed on {summ['computed_on']}")
    return out


def build_result(plan: Plan, inputs: Inputs, exp: DidExperiment, fits: PriorFits, results: list[PriorResult],
                 event_tables: dict, rob: Robustness, freq: list[Frequentist], diagnostics: dict,
                 y_rep: dict, log_checks: dict | None = None) -> DidResult:
    d = exp.design
    r = plan.reading
    outcome = OutcomeInfo(name=plan.name, label=r.label, units=r.units, likelihood=d.spec.likelihood,
                          population=plan.population, direction=r.direction, rope=r.rope, mid=r.mid, target=r.target,
                          relative_target=r.relative_target, decimals=int(r.decimals if r.decimals is not None else 2),
                          secondary=([{"key": "att_zero", "label": plan.secondary.label, "units": plan.secondary.units,
                                       "rope": plan.secondary.rope, "mid": plan.secondary.mid}] if plan.secondary else []))
    data = DataInfo(source=inputs.source, data_hash=inputs.data_hash, synthetic=inputs.synthetic,
                    n_records=float(inputs.n_records), n_cells=int(len(d.cells)), n_units=len(d.units),
                    n_treated_units=len(d.treated_units), cohorts=d.cohorts, periods=d.periods,
                    notes=[*inputs.notes, *d.notes, *fits.notes], missing=dict(inputs.missing))
    s = d.spec
    design = DesignInfo(effects=s.effects, control=s.control, base=s.base, anticipation=s.anticipation,
                        unit_trends=s.unit_trends, covariates=list(s.covariates),
                        period_effects=plan.model_spec.period_effects,
                        unit_centred=(fits.fits[plan.priors[reference_prior(plan)].name].dm or fits.model).unit_centred,
                        exclude_settling=s.exclude_settling, why=plan.why)
    checks = {"ppc_coverage_95": ppc_coverage(d, y_rep), "prior_draws": plan.prior_draws}
    log_checks = log_checks or {}
    if "power_scaling" in log_checks:
        ps = log_checks["power_scaling"]
        checks["power_scaling"] = ps.to_dict(orient="records")
        checks["power_scaling_note"] = ("arviz psense_summary on the neutral prior's fit: cumulative Jensen-Shannon "
                                        "distance when the prior or the likelihood is powered by 0.99-1.01; above "
                                        "0.05 flags sensitivity")
    if "loo_summary" in log_checks:
        checks["loo_by_unit"] = {**log_checks["loo_summary"], "by_unit": log_checks["loo_by_unit"].to_dict(orient="records")}
    ev = event_tables["att"]
    statements = _event_statements(plan, ev, r)
    return DidResult(
        analysis=plan.name, title=plan.title, outcome=outcome, data=data, design=design, report=plan.reported,
        priors=[vars(p) for p in plan.priors], results=results,
        event_study=pd.concat([t.assign(effect=k) for k, t in event_tables.items()], ignore_index=True).to_dict(orient="records"),
        event_study_statements=statements, checks=checks, frequentist=freq, robustness=rob,
        diagnostics={k: v.to_dict() for k, v in diagnostics.items()},
        diagnostics_ok=all(v.ok for v in diagnostics.values()),
        prior_check=plan.prior_check,
        provenance=provenance(seed=plan.seed, data_hash=inputs.data_hash, data_label=inputs.source, argv=plan.argv,
                              draws=plan.settings.draws, tune=plan.settings.tune, chains=plan.settings.chains,
                              target_accept=plan.settings.target_accept, mass_matrix=plan.settings.mass_matrix,
                              synthetic=inputs.synthetic,
                              **plan.provenance_extra),
        truth=inputs.truth, extra=plan.extra)


# ---------------------------------------------------------------- outputs

def markdown_page(run: Run) -> str:
    res, plan = run.result, run.plan
    r = plan.reading
    f = r.fmt
    lines = [f"# {res.title}", ""]
    if res.synthetic:
        lines += ["> **SYNTHETIC DATA.** These results come from simulated data. They illustrate the method; they "
                  "are not evidence about real people or places.", ""]
    d = res.data
    lines += [f"Outcome: {r.label} ({r.units}){'; population: ' + plan.population if plan.population else ''}. "
              f"Data: {d.source} ({d.n_records:g} records in {d.n_cells} cells; {d.n_treated_units} treated and "
              f"{d.n_units - d.n_treated_units} comparison {plan.unit_word}s; cohorts {d.cohorts}).", ""]
    lines += [f"- note: {n}" for n in d.notes] + ([""] if d.notes else [])
    ds = res.design
    lines += ["## Design", "",
              f"Effects: {ds.effects}; controls: {ds.control}-treated; base period: {ds.base}; anticipation: "
              f"{ds.anticipation}; unit trends: {ds.unit_trends}; period effects: {ds.period_effects}; unit intercepts "
              f"{'centred' if ds.unit_centred else 'non-centred'}; likelihood: {res.outcome.likelihood}."
              + (f" {ds.why}" if ds.why else ""), ""]
    if res.report is not None:
        lines += ["## The report's result", "", f"{res.report.describe()}; graded: *{res.report.grade}* "
                  f"({res.report.source}).", ""]
    if res.prior_check:
        lines += ["## The named priors on the reported scale", "",
                  "Each prior's implications for the reported effect, with the untreated outcome held at the treated "
                  "units' observed pre-adoption levels and the other effect parameters drawn from their priors:", ""]
        lines += [f"- {line}" for line in prior_check_lines(res.prior_check)] + [""]
    lines += ["## Posterior statements", ""]
    for pr in res.results:
        e = pr.effect
        a = pr.aggregates
        lines += [f"**{pr.prior} prior** ({pr.prior_description}): ATT {f(e['mean'])} {r.units} (95% interval "
                  f"{f(e['eti95_low'])} to {f(e['eti95_high'])}); relative change {100 * pr.relative['mean']:+.0f}%. "
                  f"Aggregates: simple {f(a['simple']['mean'])}, dynamic {f(a['dynamic']['overall']['mean'])}, "
                  f"group {f(a['group']['overall']['mean'])}, calendar {f(a['calendar']['overall']['mean'])}.", ""]
        lines += [f"- {s}" for s in pr.statements]
        for sec in pr.secondary.values():
            lines += [f"- {s}" for s in sec["statements"]]
        lines += [""]
    lines += ["## Summary table", "", pd.DataFrame([summary_row(plan, pr, run.diagnostics[f'main ({pr.prior})'])
                                                     for pr in res.results]).to_markdown(index=False, floatfmt=".4g"), ""]
    if res.frequentist:
        lines += ["## Frequentist cross-check (same cells)", ""]
        for fr in res.frequentist:
            lines += [f"- {fr.label + ': ' if fr.label else ''}{fr.method}: {f(fr.estimate)} {fr.units} (SE "
                      f"{f(fr.se, sign=False)}; 95% CI {f(fr.ci95_low)} to {f(fr.ci95_high)})"
                      + (f", p = {fr.p_value:.3f}" if fr.p_value is not None else "") + f", {fr.n_clusters} clusters."]
        lines += [""]
    lines += ["## Event study (interaction-weighted: cohorts are never mixed)", "",
              run.event_table.to_markdown(index=False, floatfmt=".4g"), ""]
    lines += [f"- {s}" for s in res.event_study_statements] + [""]
    rob = res.robustness
    if rob.statements or rob.notes or rob.table:
        lines += ["## Design robustness", ""] + [f"- {s}" for s in rob.statements] + [f"- note: {n}" for n in rob.notes]
        if rob.table:
            cols = ["analysis", "family", "effect", "mean", "eti95_low", "eti95_high", "p_negative", "shift_vs_main",
                    "width_ratio_vs_main", "diagnostics_ok"]
            t = pd.DataFrame(rob.table)
            lines += ["", t[[c for c in cols if c in t.columns]].to_markdown(index=False, floatfmt=".3f")]
        lines += [""]
    lines += ["## Checks and diagnostics", "",
              f"Posterior predictive: {100 * res.checks['ppc_coverage_95']:.0f}% of cells inside their 95% interval.", ""]
    if "power_scaling" in res.checks:
        lines += ["Power-scaling sensitivity (" + res.checks["power_scaling_note"] + "):", "",
                  pd.DataFrame(res.checks["power_scaling"]).to_markdown(index=False, floatfmt=".3f"), ""]
    if "loo_by_unit" in res.checks:
        lo = res.checks["loo_by_unit"]
        bad = lo["units_with_pareto_k_above_0.7"]
        lines += [f"Leave one {plan.unit_word} out (PSIS-LOO): elpd {lo['elpd_loo']:.1f} (SE {lo['se']:.1f}); Pareto k "
                  f"above 0.7 for {len(bad)} of {lo['n_units']} {plan.unit_word}s"
                  + (f" ({', '.join(map(str, bad[:12]))}{', ...' if len(bad) > 12 else ''}): for them the "
                     "approximation is unreliable (each carries its own intercept and effect), so the exact "
                     "re-fits (`--robustness`: leave one out) are the check" if bad else "") + ".", ""]
    lines += [f"- {k}: " + v.banner().replace("\n", " ") for k, v in run.diagnostics.items()]
    if res.truth is not None and "att" in res.truth:
        lines += ["", "## Known truth (synthetic data only)", "", f"True ATT {f(res.truth['att'])} {r.units}."]
    if plan.extra_markdown is not None:
        lines += [""] + plan.extra_markdown(run)
    return "\n".join(lines) + "\n"


def write_outputs(run: Run) -> Path:
    """Every output of a run, written atomically into ``plan.out``."""
    plan, res, exp = run.plan, run.result, run.experiment
    guard = plan.sdc
    syn = res.synthetic
    r = plan.reading
    say = log_for(plan)
    say(f"writing posteriors, tables and figures to {plan.out}...")
    summary = pd.DataFrame([summary_row(plan, pr, run.diagnostics[f"main ({pr.prior})"]) for pr in res.results])
    unit_tables, gt_tables = [], []
    for pr in res.results:
        post = run.fits.fits[pr.prior].posterior
        unit_tables.append(interval_table(post["att_unit"], exp.design.treated_units, plan.unit_word.lower().replace(" ", "_"),
                                          prior=pr.prior).assign(effect="att"))
        gt_tables.append(gt_table(exp.design, post["att_gt"], prior=pr.prior))
        if plan.secondary is not None:
            unit_tables.append(interval_table(post["att_unit_zero"], exp.design.treated_units,
                                              plan.unit_word.lower().replace(" ", "_"), prior=pr.prior).assign(effect="att_zero"))
    unit_effects = pd.concat(unit_tables, ignore_index=True)
    share = exp.lik.hurdle
    factor = plan.model_spec.reading_factor(exp.lik)
    ppc_name = "ppc_share" if share else "ppc"
    ppc = guard.table(ppc_name, ppc_table(exp.design, run.y_rep, factor=factor, share=share), TABLE_RULES[ppc_name])
    diag_table = pd.concat({k: d.table for k, d in run.diagnostics.items()}, names=["fit"]).reset_index()
    events = pd.DataFrame(res.event_study)
    with OutputDir(plan.out) as out:
        stamp = {"synthetic": int(syn), "data_hash": res.data.data_hash, "data_source": res.data.source,
                 "analysis": plan.name, "schema_version": res.schema_version}
        for name, f in run.fits.fits.items():
            f.idata.attrs.update({**stamp, "prior": name})
            write_idata(guard.idata(f.idata), out / f"posterior_{name}.nc", keep_draws=plan.keep_draws)
        if run.event is not exp:
            run.event_fit.idata.attrs.update({**stamp, "fit": "event study"})
            write_idata(guard.idata(run.event_fit.idata), out / "posterior_event_study.nc",
                        keep_draws=plan.keep_draws)
        out.write_table("summary", summary)
        out.write_table(plan.unit_file, unit_effects)
        out.write_table("aggregates", aggregates_table(res.results))
        out.write_table("att_gt", guard.table("att_gt", pd.concat(gt_tables, ignore_index=True), TABLE_RULES["att_gt"]))
        out.write_table("event_study", events)
        out.write_table("ppc_share" if share else "ppc", ppc)
        if share:
            from models.did.summaries import duration_ppc_table

            days = guard.table("ppc_duration", duration_ppc_table(exp.design, run.y_rep), TABLE_RULES["ppc_duration"])
            out.write_table("ppc_duration", days)
            out.save_figure("ppc_duration.png", fig.plot_duration_ppc(days, synthetic=syn))
        out.write_table("diagnostics", diag_table)
        if res.prior_check:
            out.write_table("prior_check", pd.DataFrame(res.prior_check))
        if "power_scaling" in res.checks:
            out.write_table("power_scaling", pd.DataFrame(res.checks["power_scaling"]))
        if "loo_by_unit" in res.checks:
            out.write_table("loo_by_unit", pd.DataFrame(res.checks["loo_by_unit"]["by_unit"]))
        for name, table in run.robustness_tables.items():
            out.write_table(name, guard.table(name, table, TABLE_RULES.get(name, sdc.TableRule())))
        res.write(out / "statements.json")
        out.write_text("report.md", markdown_page(run))
        unit_axis = f"({r.units})"
        out.save_figure("att_posterior.png", fig.plot_effect_by_prior(
            {k: f.posterior["att"].values for k, f in run.fits.fits.items()}, rope=r.rope,
            xlabel=f"effect on {r.label} {unit_axis}", prior_draws={k: v["att"] for k, v in run.prior_pred.items()},
            title=f"Effect on {r.label}: posterior by prior",
            report_value=plan.reported.effect if plan.reported else None, synthetic=syn))
        if plan.secondary is not None:
            s2 = plan.secondary
            out.save_figure("att_posterior_att_zero.png", fig.plot_effect_by_prior(
                {k: f.posterior["att_zero"].values for k, f in run.fits.fits.items()}, rope=s2.rope,
                xlabel=f"effect on {s2.label} ({s2.units})", title=f"Effect on {s2.label}: posterior by prior",
                report_value=next((s[1] for s in plan.reported.secondary), None) if plan.reported else None,
                synthetic=syn))
        head = unit_effects[unit_effects["effect"] == "att"]
        truth_units = (res.truth or {}).get("att_unit")
        out.save_figure(f"{plan.unit_file}.png", fig.plot_forest(
            head, label_col=plan.unit_word.lower().replace(" ", "_"), xlabel=f"effect on {r.label} {unit_axis}",
            title=f"Effect in each treated {plan.unit_word} (partial pooling)", truth=truth_units, synthetic=syn))
        for key, table in run.event_tables.items():
            reading = r if key == "att" else plan.secondary
            out.save_figure("event_study.png" if key == "att" else f"event_study_{key}.png", fig.plot_event_study(
                table, threshold=plan.pretrend_threshold if key == "att" else reading.rope,
                ylabel=f"effect on {reading.label} ({reading.units})", xlabel=f"{plan.period_word}s relative to adoption",
                synthetic=syn))
        out.save_figure("ppc_share.png" if share else "ppc.png", fig.plot_share_ppc(
            ppc, ylabel=(f"{plan.secondary.label} (%)" if share else f"{r.label} ({r.units.replace('pp', '%')})"),
            xlabel=plan.period_word, synthetic=syn))
        out.save_figure("prior_predictive.png", fig.plot_prior_predictive(
            exp.observed_overall(), {k: v["overall"] for k, v in run.prior_pred.items()},
            xlabel=f"overall {r.label}", share=not exp.lik.identity and not exp.lik.link == "log", synthetic=syn))
        for name, figure in run.robustness_figures.items():
            out.save_figure(name, figure)
        if plan.extra_outputs is not None:
            plan.extra_outputs(out, run)
        guard.folder(out.tmp)          # counts of children in sentences (notes, descriptions) below the threshold
        out.commit()
    say("done")
    return plan.out


def print_headline(run: Run) -> None:
    res, r = run.result, run.plan.reading
    f = r.fmt
    if res.synthetic:
        print("NOTE: SYNTHETIC DATA (simulated; an illustration of the method, not evidence)")
    rep = f"report {res.report.describe()} -> '{res.report.grade}'" if res.report else "no published result to compare"
    print(f"{r.label}: {rep}")
    for line in prior_check_lines(res.prior_check):
        print(f"  prior check: {line}")
    for pr in res.results:
        e = pr.effect
        print(f"  {pr.prior:>12}: ATT {f(e['mean'])} {r.units} [{f(e['eti95_low'])}, {f(e['eti95_high'])}]; "
              + pr.statements[0])
        if "att_population" in pr.secondary:      # durations cut off: the population mean beside the truncated
            pe = pr.secondary["att_population"]["effect"]
            print(f"  {'':>12}  population mean: {f(pe['mean'])} {r.units} [{f(pe['eti95_low'])}, "
                  f"{f(pe['eti95_high'])}] (the lognormal extended beyond the cut-off: an extrapolation)")
    for fr in res.frequentist:
        print(f"  frequentist{' (' + fr.label + ')' if fr.label else ''}: {f(fr.estimate)} {fr.units} "
              f"(SE {f(fr.se, sign=False)})" + (f", p = {fr.p_value:.3f}" if fr.p_value is not None else ""))
    sens = res.robustness.sensitivity.get("att")
    if sens:
        for kind, sym in (("relative_magnitudes", "Mbar"), ("smoothness", "M")):
            for label, b in sens["restrictions"][kind].items():
                m = b["breakdown_robust_interval"]
                print(f"  {kind.replace('_', ' ')} (Rambachan & Roth, {label}): the {b['conclusion']} "
                      + (f"holds up to {sym} = {m:g}" if m is not None else
                         f"is not robust even at {sym} = {b['fails_at']:g} (its 95% interval includes 0)"))
    for row in res.robustness.table:
        if row.get("family") not in ("main", "leave one LA out") and row.get("effect") == "att":
            print(f"  robustness: {row['analysis']}: {f(row['mean'])} [{f(row['eti95_low'])}, {f(row['eti95_high'])}]")
    if not res.all_ok:
        print("  WARNING: sampling diagnostics failed (see above and statements.json)")
    print(f"  outputs: {run.plan.out}/")


def finish(run: Run) -> int:
    write_outputs(run)
    print_headline(run)
    if run.plan.strict and not run.result.all_ok:
        log("--strict: sampling diagnostics failed (main, event-study or robustness fits); exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def settings_from(args: argparse.Namespace) -> SamplerSettings:
    return SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains, target_accept=args.target_accept,
                           progress=not args.quiet, mass_matrix=args.mass_matrix)
