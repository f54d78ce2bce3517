"""The SofS child-level outcomes (kinship, re-referral, escalation, duration) as specifications
of the one DiD engine.

An outcome is an :class:`OutcomeSpec` (its data definition, likelihood, the report's own
result, thresholds and which design-robustness analyses apply); :func:`main` turns it and the
command line into a :class:`~analyses.did_runner.Plan` and runs it. The statistics are the
engine's (:mod:`models.did`); what is specific to SofS lives here: the pilots' data layout
(``la``, ``year``, ``arm``, ``adoption_year``, ``settling_years``), settling-in years, LA
attributes, and the robustness re-fits the report's caveats call for.

**Effect structure.** The SofS analyses use the engine's ``unit`` structure: one effect per
pilot LA, constant after its settling-in years and partially pooled across the 9 pilots,
with LA-specific linear trends (``--no-la-trends`` to drop them). The report's DiD gave one
effect for all pilots after settling-in; with 9 pilots in 4 adoption cohorts (5, 2, 1 and 1
LAs), ATT(g,t) cells would rest on one or two LAs each, so the staggered cohort-by-period
structure is used for the event study instead (a companion fit, cohorts never mixed), where
its pre-trend terms test parallel trends.

Design robustness (re-fits of the compiled main model on cells of the same shape, unless
noted): by default for outcomes with ``robustness_by_default`` (``--no-robustness`` skips
them), comparators running a similar practice model left out, the outcome's own exclusions,
LAs with unreliable NFA coding left out, the report's own sample of LAs, and alternative data
definitions (each child's first record; maximum durations); with ``--robustness`` also the
other choice of LA trends, leave-one-LA-out, LA-level moderators, a child random effect for
repeated children and NFA misclassification over a grid of rates (models of their own).
Every re-fit's diagnostics count for ``--strict``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.admin_inputs import add_admin_args, admin_cells, sdc_guard
from analyses.common import analysis_parser, hash_frame, log, run_cli
from analyses.did_runner import (Inputs, Plan, event_robustness, finish, named_priors, reference_prior, run_plan,
                                 settings_from)
from data.did_input import (COVARIATES, DidCells, cells_from_frame, first_record_mask, load_did_data,
                            load_la_attributes, max_value_mask, validate_la_attributes)
from data.errors import DataError
from data.synthetic import SyntheticStudy
from figures import did as fig
from models.did import robustness as rb
from models.did.honest import DEFAULT_RM_GRID
from models.did.crosscheck import lpm_did, mean_did
from models.did.design import DesignSpec
from models.did.fit import diagnostic_vars
from models.did.model import SOFS_MODEL_SPEC, ModelSpec, build_did_model, model_data, repeated_design
from models.did.result import Refit, ReportedResult, Robustness
from models.did.summaries import Reading
from models.priors import PRIOR_NAMES
from models.sampling import CompiledSampler
from models.statements import state

@dataclass(frozen=True)
class Exclusion:
    """A sensitivity re-fit with some LAs left out, and why."""

    name: str
    las: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class OutcomeSpec:
    """What distinguishes one SofS DiD outcome from another. ``rope``, ``mid`` and
    ``pretrend_threshold`` are in the headline effect's units (pp for binary outcomes, working
    days for durations); the ``zero_*`` values are the duration's same-day share (pp)."""

    name: str
    column: str
    label: str
    population: str
    rises_if_programme_works: bool
    reported: ReportedResult
    default_data: Callable[[], SyntheticStudy]
    rope: float = 2.0
    mid: float = 5.0
    relative_target: float = 0.2
    pretrend_threshold: float = 2.0
    likelihood: str = "binomial"
    la_trends: bool = True
    covariates: tuple[str, ...] | None = None
    robustness_by_default: bool = False
    nfa_population: bool = False
    exclusions: tuple[Exclusion, ...] = ()
    report_sample: tuple[str, ...] = ()
    duration_cutoffs: tuple[float, ...] = ()
    first_record_variant: bool = False
    target_accept: float = 0.9
    tune: int = 500
    units: str = "pp"
    zero_label: str = "same-day assessments"
    zero_rope: float = 2.0
    zero_mid: float = 5.0

    @property
    def direction(self) -> int:
        return 1 if self.rises_if_programme_works else -1

    @property
    def hurdle(self) -> bool:
        return self.likelihood == "hurdle_lognormal"


def build_parser(spec: OutcomeSpec, doc: str | None) -> argparse.ArgumentParser:
    p = analysis_parser(spec.name, doc, priors=PRIOR_NAMES, target_accept=spec.target_accept,
                       mass_matrix="low_rank")
    # nutpie's mass-matrix adaptation settles within a few hundred draws on these models
    # (benchmarks/kinship.py); outcomes that need more set ``OutcomeSpec.tune``.
    p.set_defaults(tune=spec.tune)
    trends = p.add_mutually_exclusive_group()
    trends.add_argument("--no-la-trends", action="store_true",
                        help="leave out LA-specific linear trends" + (" (the default here)" if not spec.la_trends else ""))
    trends.add_argument("--la-trends", action="store_true",
                        help="include LA-specific linear trends" + (" (the default here)" if spec.la_trends else ""))
    p.add_argument("--covariates", default=None, metavar="LIST",
                   help=f"comma-separated covariates to stratify by, from {','.join(COVARIATES)} "
                        f"(default: {','.join(spec.covariates) if spec.covariates is not None else 'all in the data'}; "
                        "'none' for none)")
    p.add_argument("--la-attributes", type=Path, default=None, metavar="PATH",
                   help="LA attributes (la, embeddedness, quality_of_delivery, ofsted, similar_practice_model); "
                        "default: the embedded synthetic ones with the embedded data")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--robustness", action="store_true",
                       help="also run the re-fit-heavy design-robustness analyses (leave-one-LA-out, moderators, "
                            "child random effect, misclassification grid)")
    group.add_argument("--no-robustness", action="store_true",
                       help="skip every robustness re-fit (the event study and relative magnitudes still run)")
    p.add_argument("--robustness-chains", type=int, default=2, metavar="N",
                   help="chains for each robustness re-fit (default 2; draws and tuning as for the main fits)")
    p.add_argument("--exclude-las", default=None, metavar="LIST",
                   help="an extra sensitivity re-fit with these comma-separated LAs left out")
    p.add_argument("--m-grid", default=",".join(f"{m:g}" for m in DEFAULT_RM_GRID), metavar="LIST",
                   help="relative-magnitudes grid of Mbar (comma-separated; Rambachan & Roth: post-period changes "
                        "up to Mbar times the largest pre-period change)")
    if spec.nfa_population:
        p.add_argument("--misclassification-grid", default=",".join(f"{m:g}" for m in rb.DEFAULT_MISCLASSIFICATION_GRID),
                       metavar="LIST", help="contamination: shares of wrongly included referrals in suspect LA-years "
                                            "(with --robustness)")
        p.add_argument("--selection-grid", default=",".join(f"{m:g}" for m in rb.DEFAULT_SELECTION_GRID),
                       metavar="LIST", help="under-coding (the report's NFA problem): in suspect LA-years, how much "
                                            "likelier a re-referred child's record was to keep its NFA code than "
                                            "another's (1: at random; with --robustness)")
    if spec.hurdle:
        p.add_argument("--max-duration", type=float, default=None, metavar="DAYS",
                       help="leave out assessments longer than this from the main analysis (default: keep all)")
        p.add_argument("--cutoffs", default=",".join(f"{c:g}" for c in spec.duration_cutoffs), metavar="LIST",
                       help="maximum durations for the cut-off sensitivity re-fits (comma-separated days)")
    add_admin_args(p)
    return p


# ---------------------------------------------------------------- inputs

@dataclass
class SofsInputs:
    """The SofS cells (their own column names), the canonical inputs and the LA attributes."""

    cells: DidCells
    inputs: Inputs


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _covariates_arg(spec: OutcomeSpec, text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return spec.covariates
    if text.strip().lower() == "none":
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _variants(spec: OutcomeSpec, args: argparse.Namespace) -> dict:
    variants = {}
    if spec.first_record_variant:
        variants["first_record"] = first_record_mask
    for c in getattr(args, "cutoff_values", ()):
        variants[f"max_{c:g}_days"] = max_value_mask(c)
    return variants


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """SofS cells with the engine's column names."""
    from models.did.design import canonical_cells

    return canonical_cells(frame, unit="la", period="year", cohort="adoption_year", settling="settling_years")


def load_inputs(spec: OutcomeSpec, args: argparse.Namespace) -> SofsInputs:
    """The user's file, administrative extracts, or the embedded synthetic study twin."""
    kwargs = {"kind": "duration" if spec.hurdle else "binary",
              "covariates": _covariates_arg(spec, getattr(args, "covariates", None)),
              "variants": _variants(spec, args), "max_value": getattr(args, "max_duration", None)}
    truth, study = None, None
    try:
        admin = admin_cells(args, spec.column, **kwargs) if hasattr(args, "ssda903") else None
        if admin is not None:
            cells = admin[0]
        elif args.data is not None:
            cells = load_did_data(args.data, spec.column, **kwargs)
        else:
            study = spec.default_data()
            cells = cells_from_frame(study.children, spec.column, source=study.label,
                                     data_hash=hash_frame(study.children), synthetic=True, **kwargs)
            truth = _truth(spec, study.truth)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(str(err), column="--covariates") from None
    if getattr(args, "la_attributes", None) is not None:
        attributes, source = load_la_attributes(args.la_attributes, cells.las), str(args.la_attributes)
    elif study is not None and study.la_attributes is not None:
        attributes, source = validate_la_attributes(study.la_attributes, cells.las), "synthetic LA attributes (embedded)"
    else:
        attributes, source = None, "none given"
    if getattr(args, "exclude_las", None):
        unknown = sorted(set(_names(args.exclude_las)) - set(cells.las))
        if unknown:
            raise DataError(f"--exclude-las names LA(s) not in the data: {unknown}", column="la")
    inputs = Inputs(canonical(cells.cells), cells.source, cells.data_hash, cells.synthetic, cells.n_children,
                    list(cells.notes), dict(cells.missing), truth, attributes, source, cells.variants, cells.repeated)
    return SofsInputs(cells, inputs)


def _truth(spec: OutcomeSpec, truth: dict) -> dict:
    """The synthetic study's truth under the engine's names (``att``, ``att_unit``)."""
    out = dict(truth)
    if spec.hurdle:
        out["att"], out["att_zero"] = truth["att_days"], truth["att_sameday_pp"]
        out["att_unit"] = truth.get("att_la_days")
    else:
        out["att"], out["att_unit"] = truth["att_pp"], truth.get("att_la_pp")
    return out


def readings(spec: OutcomeSpec) -> tuple[Reading, Reading | None]:
    main = Reading(spec.label, spec.units, spec.rope, spec.mid, spec.direction, relative_target=spec.relative_target,
                   decimals=1, subject="SofS", where="the pilot LAs", unit_noun="LA")
    if not spec.hurdle:
        return main, None
    return main, Reading(f"the share of {spec.zero_label}", "pp", spec.zero_rope, spec.zero_mid, -spec.direction,
                         decimals=1, subject="SofS", where="the pilot LAs", unit_noun="LA")


def build_priors(spec: OutcomeSpec, args: argparse.Namespace, inputs: Inputs, design_spec: DesignSpec,
                 model_spec: ModelSpec):
    """The named priors (main part) and, for durations, the same-day part's (same names),
    calibrated on the reported scale (:func:`analyses.did_runner.named_priors`), with their checks."""
    main, _ = readings(spec)
    scale = "log mean ratio (positive durations)" if spec.hurdle else "log-odds ratio"
    zero = (-spec.direction, spec.relative_target, spec.zero_label) if spec.hurdle else None
    return named_priors(inputs.cells, design_spec, model_spec, main, direction=spec.direction,
                        relative_target=spec.relative_target, target=None, choice=args.prior,
                        overrides=args.prior_override, neutral_sd=1.0, scale_name=scale, seed=args.seed + 17,
                        zero=zero)


# ---------------------------------------------------------------- robustness

@dataclass
class PlannedFit:
    name: str
    family: str
    description: str
    frame: pd.DataFrame
    note: str = ""


def mask_units(cells: pd.DataFrame, units, stats: tuple[str, ...]) -> pd.DataFrame:
    """``cells`` with every statistic of ``units`` set to zero (rows kept, so that the compiled
    model can be re-used: those units then contribute nothing to the likelihood)."""
    out = cells.copy()
    hit = out["unit"].isin(list(units)).to_numpy()
    for s in stats:
        out.loc[hit, s] = 0
    return out


def robustness_plan(spec: OutcomeSpec, si: SofsInputs, analysis: pd.DataFrame, *, cheap: bool, heavy: bool,
                    extra_exclusion: list[str] | None = None) -> tuple[list[PlannedFit], list[str]]:
    """The shape-preserving re-fits of the main model (on the analysis cells, canonical), and
    notes on what could not be run."""
    inputs, stats, variant_stats = si.inputs, si.cells.stats, si.cells.variant_stats
    las = si.cells.las
    plan, notes = [], []
    if cheap:
        similar = rb.similar_practice_comparators(inputs.attributes, las)
        if similar:
            plan.append(PlannedFit("without similar-practice comparators", "exclusion",
                                   f"comparator LAs with a practice model similar to SofS left out ({', '.join(similar)})",
                                   mask_units(analysis, similar, stats)))
        else:
            notes.append("no comparator is flagged as running a practice model similar to SofS "
                         f"(LA attributes: {inputs.attributes_source})")
        exclusions = list(spec.exclusions)
        if extra_exclusion:
            exclusions.append(Exclusion("without " + ", ".join(extra_exclusion), tuple(extra_exclusion),
                                        "left out on request (--exclude-las)"))
        for ex in exclusions:
            present = [la for la in ex.las if la in las]
            if present:
                plan.append(PlannedFit(ex.name, "exclusion", f"{', '.join(present)} left out: {ex.why}",
                                       mask_units(analysis, present, stats)))
            else:
                notes.append(f"'{ex.name}': none of {list(ex.las)} is in the data")
        if spec.nfa_population:
            _, suspect = rb.suspect_cells(inputs.cells)
            if suspect:
                plan.append(PlannedFit("without LAs with unreliable NFA coding", "exclusion",
                                       f"LAs with years of very few NFA referrals left out ({', '.join(suspect)})",
                                       mask_units(analysis, suspect, stats)))
            else:
                notes.append("no LA has years with unusually few NFA referrals (no unreliable NFA coding detected)")
        if spec.report_sample:
            present = [la for la in spec.report_sample if la in las]
            arms = set(analysis.loc[analysis["unit"].isin(present), "arm"])
            if arms == {"pilot", "comparator"}:
                frame = mask_units(analysis, [la for la in las if la not in present], stats)
                note = ""
                if not spec.hurdle:
                    sub = frame[frame["n"] > 0]
                    f = lpm_did(sub.assign(treated_post=(sub["phase"] == "post").astype(float)),
                                si.cells.covariates)
                    note = (f"the report's method on these LAs: {f.estimate:+.2f} pp (LA-clustered SE {f.se:.2f}, "
                            f"{f.n_clusters} clusters)")
                plan.append(PlannedFit("report's LAs only", "exclusion",
                                       f"only the LAs the report could use ({', '.join(present)}): what partial pooling "
                                       "across all LAs adds", frame, note))
            else:
                notes.append(f"the report's sample {list(spec.report_sample)} is not in the data with both arms")
        for v in inputs.variants:
            frame = analysis.copy()
            for stat in variant_stats:
                frame[stat] = analysis[f"{stat}|{v}"].to_numpy()
            plan.append(PlannedFit(_variant_name(v), "data definition", _variant_description(v), frame))
    if heavy:
        for la in las:
            plan.append(PlannedFit(f"without {la}", "leave one LA out", f"{la} left out", mask_units(analysis, [la], stats)))
    return plan, notes


def _variant_name(v: str) -> str:
    if v == "first_record":
        return "first record per child"
    if v.startswith("max_"):
        return f"durations <= {v.removeprefix('max_').removesuffix('_days')} days"
    return v


def _variant_description(v: str) -> str:
    if v == "first_record":
        return "each child's first record only (repeated children's later records left out)"
    if v.startswith("max_"):
        days = v.removeprefix('max_').removesuffix('_days')
        return (f"assessments longer than {days} working days left out; durations modelled as truncated at {days} "
                f"days: effect 'att' is on the truncated mean (assessments up to {days} days), 'att_population' on "
                "the population mean (the lognormal extended beyond the cut-off)")
    return f"data variant {v}"


def make_robustness(spec: OutcomeSpec, args: argparse.Namespace, si: SofsInputs):
    """The plan's robustness hook: event-study checks, then the re-fits (see the module docstring)."""

    def robustness(plan: Plan, inputs: Inputs, exp, fits, ev, ev_fit):
        rob, tables, figures = event_robustness(plan, inputs, ev, ev_fit)
        cheap = (spec.robustness_by_default and not args.no_robustness) or args.robustness
        heavy = args.robustness
        extra = _names(args.exclude_las) if args.exclude_las else None
        if not cheap and not heavy and not extra:
            rob.notes.append("robustness re-fits not run (use --robustness)")
            return rob, tables, figures
        ref_i = reference_prior(plan)
        ref = plan.priors[ref_i]
        zref = (plan.zero_priors or [None] * len(plan.priors))[ref_i]
        keys = ["att"] + (["att_zero", "att_population"] if spec.hurdle else [])
        main_post = fits.fits[ref.name].posterior
        main_draws = {k: main_post[k].values.ravel() for k in keys}
        design = exp.design
        analysis = design.cells
        kw = {**plan.settings.kwargs(), "chains": max(1, min(args.robustness_chains, plan.settings.chains)),
              "progress": False}

        def make_data(frame: pd.DataFrame) -> dict:
            from models.did.design import did_design

            d = did_design(frame, design.spec, units=design.units, periods=design.periods)
            return model_data(fits.model, d, ref, zref)

        diag_vars = diagnostic_vars(fits.model)
        refitter = rb.Refitter(fits.sampler, make_data, keys, kw, diag_vars)
        planned, notes = robustness_plan(spec, si, analysis, cheap=cheap or bool(extra), heavy=heavy,
                                         extra_exclusion=extra)
        if extra and not cheap:
            planned = [p for p in planned if p.name.startswith("without " + ", ".join(extra))]
        rob.notes += notes
        results = [rb.RefitResult("main (all LAs)", "main", f"main analysis, {ref.name} prior", main_draws, True)]
        for k, item in enumerate(planned):
            log(f"[{spec.name}] robustness re-fit {k + 1}/{len(planned)}: {item.name}...", quiet=plan.quiet)
            results.append(refitter.fit(item.frame, name=item.name, family=item.family, description=item.description,
                                        seed=plan.seed + 300 + k, note=item.note))
        if heavy:
            results += _heavy_refits(spec, args, si, exp, fits, ref, zref, kw, rob, plan)
        rows = [rb.refit_row(r, key, main_draws[key]) for r in results for key in keys if key in r.draws]
        table = pd.DataFrame(rows)
        rob.table = table.to_dict(orient="records")
        rob.refits = [Refit(r.name, r.family, r.description, sorted(r.draws), r.diagnostics_ok, list(r.problems), r.note)
                      for r in results[1:]]
        rob.diagnostics_ok = bool(all(r.diagnostics_ok for r in results))
        for r in results[1:]:
            if not r.diagnostics_ok:
                rob.notes.append(f"re-fit '{r.name}': sampling diagnostics failed ({'; '.join(r.problems[:3])})")
        sign = -1 if np.mean(main_draws["att"]) < 0 else 1
        verb = "reduced" if sign < 0 else "increased"
        for r in results[1:]:
            if r.family in ("leave one LA out", "moderator") or "att" not in r.draws:
                continue
            rob.statements.append(state(float(np.mean(sign * r.draws["att"] > 0)), f"SofS {verb} {spec.label} ({r.name})"))
        loo_rows = [row for row in rows if row["family"] == "leave one LA out" and row["effect"] == "att"]
        rob.leave_one_out = [{"left_out": row["analysis"].removeprefix("without "), "att_mean": row["mean"],
                              "eti95_low": row["eti95_low"], "eti95_high": row["eti95_high"],
                              "p_negative": row["p_negative"]} for row in loo_rows]
        rob.leave_one_out_summary = rb.loo_summary(loo_rows, main_draws["att"])
        if rob.leave_one_out_summary:
            s = rob.leave_one_out_summary
            rob.statements.append(
                f"leaving out one LA at a time, the ATT ranges from {s['mean_min']:+.1f} to {s['mean_max']:+.1f} "
                f"{spec.units}; the most influential LA is {s['most_influential_la']} (shift {s['largest_shift']:+.1f})")
        tables["robustness"] = table
        reading, secondary = plan.reading, plan.secondary
        for key in keys:
            if key == "att_population":     # in the table beside att (the same as att without a cut-off)
                continue
            sub = table[table["effect"] == key]
            r_ = reading if key == "att" else secondary
            figures["robustness.png" if key == "att" else f"robustness_{key}.png"] = fig.plot_robustness(
                sub, xlabel=f"effect on {r_.label} ({r_.units})", title=f"Design robustness: {r_.label}",
                report_value=spec.reported.effect if key == "att" else None, synthetic=inputs.synthetic)
        return rob, tables, figures

    return robustness


def _heavy_refits(spec, args, si: SofsInputs, exp, fits, ref, zref, kw, rob: Robustness, plan: Plan) -> list:
    """The other LA-trend specification, moderators, the child random effect and NFA
    misclassification: models of their own, each compiled once."""
    keys = ["att"] + (["att_zero", "att_population"] if spec.hurdle else [])
    design = exp.design
    results = []
    la_trends = design.spec.unit_trends
    other = "with" if not la_trends else "without"
    say = lambda m: log(f"[{spec.name}] {m}", quiet=plan.quiet)  # noqa: E731
    say(f"specification: the main model {other} LA trends (compiling)...")
    from models.did.design import did_design

    other_design = did_design(design.cells, replace(design.spec, unit_trends=not la_trends), units=design.units,
                              periods=design.periods)
    dm = build_did_model(other_design, ref, spec=replace(exp.model_spec, unit_centred=fits.model.unit_centred),
                         zero_prior=zref)
    idata = CompiledSampler(dm.model, mutable=()).sample(seed=plan.seed + 400, **kw)
    results.append(rb.refit_result(idata, diagnostic_vars(dm), keys, name=f"{other} LA trends", family="specification",
                                   description=f"the main model {other} LA-specific linear trends"))
    groups = rb.moderator_groups(si.inputs.attributes, design.treated_units)
    for k, (vals, text) in groups.items():
        if vals is None:
            rob.notes.append(f"moderator {k}: not analysed ({text}; LA attributes: {si.inputs.attributes_source})")
    available = {k: v for k, v in groups.items() if v[0] is not None}
    mspec = replace(exp.model_spec, unit_centred=fits.model.unit_centred)
    if available:
        say("moderators: compiling...")
        first = next(iter(available.values()))[0]
        mdm = build_did_model(design, ref, spec=mspec, zero_prior=zref, moderator=first)
        msampler = CompiledSampler(mdm.model, mutable=("moderator",))
        for j, (k, (vals, text)) in enumerate(available.items()):
            say(f"moderator {k}...")
            idata = msampler.sample({"moderator": vals}, seed=plan.seed + 500 + j, **kw)
            post = idata["posterior"]
            n_high = int(vals.sum())
            for part in ("high", "low", "diff"):
                name = {"high": "att_moderator_high", "low": "att_moderator_low", "diff": "moderator_diff"}[part]
                label = {"high": f"{k}: mean effect, high group ({n_high} pilots)",
                         "low": f"{k}: mean effect, low group ({len(vals) - n_high} pilots)",
                         "diff": f"{k}: high minus low"}[part]
                r = rb.refit_result(idata, diagnostic_vars(mdm), [name], name=label, family="moderator", description=text)
                r.draws = {"att": post[name].values.ravel()}
                results.append(r)
    if not spec.hurdle and si.inputs.repeated is not None and len(si.inputs.repeated):
        say("repeated children: child random effect (compiling)...")
        rep_frame = canonical(si.inputs.repeated)
        covs = list(design.spec.covariates)
        rep = repeated_design(design.cells, rep_frame, ["unit", "period", *covs])
        rdm = build_did_model(design, ref, spec=mspec, repeated=rep)
        idata = CompiledSampler(rdm.model).sample(seed=plan.seed + 600, **kw)
        sd = float(idata["posterior"]["sigma_child"].values.mean())
        results.append(rb.refit_result(
            idata, diagnostic_vars(rdm), ["att"], name="child random effect", family="repeated children",
            description=(f"a child random effect for the {rep['n_children']} children with more than one record "
                         f"({len(rep['rep_y'])} records); population-averaged ATT"),
            note=f"sigma_child posterior mean {sd:.2f} (log-odds)"))
    elif not spec.hurdle:
        rob.notes.append("repeated children: the data have no child_id column, so the child random effect model "
                         "could not be fitted")
    if spec.nfa_population and not spec.hurdle:
        full_mask, suspect = rb.suspect_cells(si.inputs.cells)
        mask = full_mask[(si.cells.cells["phase"] != "settling").to_numpy()].astype(float)   # the analysis cells
        where = f"LA-years with very few NFA referrals in {', '.join(suspect)}"
        if not suspect:
            mask = np.ones(len(design.cells))
            where = "every cell (no LA-year with unusually few NFA referrals)"
        say("NFA misclassification grid (compiling)...")
        mdm = build_did_model(design, ref, spec=mspec, misclassification=mask * 0.0)
        msampler = CompiledSampler(mdm.model, mutable=("misclass",))
        for j, m in enumerate(args.misclassification_values):
            idata = msampler.sample({"misclass": mask * m}, seed=plan.seed + 700 + j, **kw)
            results.append(rb.refit_result(
                idata, diagnostic_vars(mdm), ["att"], name=f"misclassified share {m:.0%}", family="misclassification",
                description=(f"contamination: {m:.0%} of the referrals recorded as NFA in {where} assumed not to be "
                             "NFA (their re-referral rate estimated; the effect weighted by the NFA records left)")))
        results += undercoding_refits(args, design, ref, mspec, kw, plan.seed, say, rob.notes)
    return results


def undercoding_refits(args: argparse.Namespace, design, ref, mspec, kw: dict, seed: int, say,
                       notes: list[str]) -> list:
    """The report's NFA problem as it describes it: too few records coded NFA in some LA-years
    (a selection problem). The missing share ``u`` of each suspect LA-year comes from its
    deficit of records (:func:`models.did.robustness.undercoded_shares`); whether a record kept
    its code may depend on the outcome, by the ratio psi on ``--selection-grid``
    (``models.did.model``: ``undercoding``)."""
    if not args.selection_values:
        return []
    u, suspect = rb.undercoded_shares(design.cells)
    if not suspect:
        notes.append("NFA under-coding: no LA-year with unusually few NFA records (below half its LA's median), "
                     "so no under-coding sensitivity was fitted")
        return []
    say("NFA under-coding grid (compiling)...")
    flagged = (u > 0).astype(float)
    udm = build_did_model(design, ref, spec=mspec, undercoding=(u, flagged * 0.0))
    usampler = CompiledSampler(udm.model, mutable=("undercoded", "selection"))
    out = []
    where = (f"{int((u > 0).sum())} cells of {', '.join(suspect)} (missing shares "
             f"{u[u > 0].min():.0%}-{u[u > 0].max():.0%}, from each LA-year's deficit of records)")
    for j, psi in enumerate(args.selection_values):
        idata = usampler.sample({"undercoded": u, "selection": flagged * np.log(psi)}, seed=seed + 750 + j, **kw)
        how = ("at random" if psi == 1 else
               f"a re-referred child's record {psi:g} times as likely to keep its NFA code as another's")
        out.append(rb.refit_result(
            idata, diagnostic_vars(udm), ["att"], name=f"under-coded NFA, selection ratio {psi:g}", family="under-coding",
            description=f"under-coding: NFA records missing in {where}, {how}; the effect weighted by the full "
                        "NFA population"))
    return out


# ---------------------------------------------------------------- the plan

def make_plan(spec: OutcomeSpec, args: argparse.Namespace, si: SofsInputs, argv: list[str] | None) -> Plan:
    la_trends = True if args.la_trends else False if args.no_la_trends else spec.la_trends
    design_spec = DesignSpec(spec.likelihood, effects="unit", control="never", base="all", unit_trends=la_trends,
                             covariates=tuple(si.cells.covariates))
    model_spec = replace(SOFS_MODEL_SPEC, effect_centred=spec.hurdle, period_centred=spec.hurdle)
    try:
        priors, zero_priors, checks = build_priors(spec, args, si.inputs, design_spec, model_spec)
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(str(err), column=spec.column) from None
    main, secondary = readings(spec)
    if spec.hurdle and getattr(args, "max_duration", None) is not None:
        main = replace(main, label=f"{main.label} up to {args.max_duration:g} {spec.units} (the truncated mean)")

    def frequentist(plan: Plan, exp) -> list:
        c = exp.design.cells
        c = c.assign(treated_post=(exp.design.data["treated"] > 0).astype(float))
        covs = list(design_spec.covariates)
        if spec.hurdle:
            return [mean_did(c, covs, units="working days", label="mean duration"),
                    lpm_did(c, covs, label="same-day share")]
        return [lpm_did(c, covs)]

    return Plan(name=spec.name, title=f"{spec.label[:1].upper() + spec.label[1:]}: Bayesian re-analysis of the SofS "
                                      "difference-in-differences",
                reading=main, secondary=secondary, design_spec=design_spec, model_spec=model_spec, priors=priors,
                zero_priors=zero_priors, settings=settings_from(args), seed=args.seed, out=args.out,
                population=spec.population, reported=spec.reported, pretrend_threshold=spec.pretrend_threshold,
                unit_word="LA", unit_file="la_effects", period_word="year", strict=args.strict, quiet=args.quiet, keep_draws=args.keep_draws,
                argv=argv, m_grid=args.m_grid_values,
                provenance_extra={"la_trends": la_trends, "robustness_chains": args.robustness_chains,
                                  "covariates": list(si.cells.covariates), "la_attributes": si.inputs.attributes_source,
                                  "robustness": "all" if args.robustness else "none" if args.no_robustness else
                                  "default" if spec.robustness_by_default else "event study only"},
                robustness=make_robustness(spec, args, si), frequentist=frequentist, sdc=sdc_guard(args),
                prior_check=checks,
                why=("One effect per pilot LA after settling-in, partially pooled (the report's estimand); the event "
                     "study is a cohort-by-period companion fit with never-treated controls and the last pre-adoption "
                     "year as base."))


def _floats(parser: argparse.ArgumentParser, text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        parser.error(f"{what} must be comma-separated numbers, got {text!r}")
        raise  # pragma: no cover - parser.error exits


def main(spec: OutcomeSpec, argv: list[str] | None = None, doc: str | None = None) -> int:
    parser = build_parser(spec, doc)
    args = parser.parse_args(argv)
    args.m_grid_values = _floats(parser, args.m_grid, "--m-grid")
    if any(m < 0 for m in args.m_grid_values):
        parser.error("--m-grid values must be >= 0")
    args.misclassification_values = (_floats(parser, args.misclassification_grid, "--misclassification-grid")
                                     if spec.nfa_population else ())
    if any(not 0 <= m < 1 for m in args.misclassification_values):
        parser.error("--misclassification-grid values must lie in [0, 1)")
    args.selection_values = (_floats(parser, args.selection_grid, "--selection-grid") if spec.nfa_population else ())
    if any(m <= 0 for m in args.selection_values):
        parser.error("--selection-grid values must be positive ratios")
    args.cutoff_values = _floats(parser, args.cutoffs, "--cutoffs") if spec.hurdle else ()
    if any(c <= 0 for c in args.cutoff_values):
        parser.error("--cutoffs must be positive numbers of days")
    if getattr(args, "max_duration", None) is not None and args.max_duration <= 0:
        parser.error("--max-duration must be a positive number of days")
    if args.robustness_chains < 1:
        parser.error("--robustness-chains must be at least 1")
    for name in ("max_duration", "exclude_las", "covariates", "la_attributes"):
        if not hasattr(args, name):
            setattr(args, name, None)

    def body() -> int:
        si = load_inputs(spec, args)
        log(f"[{spec.name}] data: {si.inputs.source}: {si.inputs.n_records:g} records, {len(si.inputs.cells)} cells",
            quiet=args.quiet)
        plan = make_plan(spec, args, si, argv)
        return finish(run_plan(plan, si.inputs))

    return run_cli(body)
