"""The one runner behind every child-level DiD analysis (kinship, re-referral, escalation, duration).

An outcome analysis is an :class:`OutcomeSpec` (its data definition, its likelihood, the
report's own result, the reporting thresholds and which design-robustness analyses apply)
handed to :func:`main`. The runner composes data -> model -> posterior -> statements ->
robustness -> figures and holds no statistics of its own: the models live in
:mod:`models.did_hierarchical`, the sensitivity analyses in :mod:`models.did_sensitivity`.

Design robustness (see :mod:`models.did_sensitivity`):

- always: event-study pre-trends as P(|pre-trend| > threshold), and the relative-magnitudes
  sensitivity (a grid of M with P(effect < 0) and the breakdown M) from the event study;
- by default for outcomes whose ``robustness_by_default`` is set (``--no-robustness`` skips
  them): re-fits with comparators that run a similar practice model left out, with the
  outcome's own exclusions (e.g. Pilots 1 and 2 for duration), with LAs whose NFA coding looks
  unreliable left out, on the report's own sample of LAs, and on alternative data definitions
  (each child's first record only; maximum durations);
- with ``--robustness``: the main model with the other choice of LA-specific trends,
  leave-one-LA-out, LA-level moderators (embeddedness, quality of delivery, Ofsted), a child
  random effect for repeated children, and NFA misclassification over a grid of rates.

Every re-fit whose cells keep their shape re-uses the compiled main model; re-fits run on
``--robustness-chains`` chains (default 2) with the main fits' draws and tuning.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm

from analyses.admin_inputs import RUNNER_TABLE_RULES, add_admin_args, admin_cells, sdc_guard
from analyses.common import (EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, analysis_parser, hash_frame, log,
                             provenance, run_cli)
from data.did_input import (COVARIATES, DidCells, cells_from_frame, first_record_mask, load_did_data,
                            load_la_attributes, mask_las, max_value_mask, validate_la_attributes)
from data.errors import DataError
from data.synthetic import SyntheticStudy
from figures import did as fig
from models import did_sensitivity as sens
from models.diagnostics import Diagnostics, check_sampling
from models.did_duration import FrequentistMean, duration_ppc, mean_did
from models.did_frequentist import FrequentistDid, lpm_did
from models.did_hierarchical import (build_did_model, did_design, effect_names, effect_priors, is_pre_period,
                                     PRIOR_DATA, model_data, prior_data, repeated_design)
from models.priors import PRIOR_NAMES, NamedPrior, select_priors
from models.sampling import CompiledSampler
from models.statements import prob, state, summarise_effect

MAIN_VARS = ["alpha", "sigma_la", "la_effect", "sigma_period", "period_effect", "beta", "common_trend",
             "mu_tau", "sigma_tau", "tau", "att_pp", "att_relative", "att_typical_pp"]
EVENT_VARS = ["alpha", "sigma_la", "la_effect", "period_effect", "beta", "event_effect", "event_pp"]
_PART = ["alpha", "sigma_la", "la_effect", "sigma_period", "period_effect", "beta", "common_trend", "mu_tau",
         "sigma_tau", "tau"]
HURDLE_VARS = [*_PART, *[f"{v}_zero" for v in _PART], "sigma_log", "att_days", "att_relative", "att_typical_days",
               "att_sameday_pp"]
HURDLE_EVENT_VARS = ["alpha", "la_effect", "period_effect", "beta", "event_effect", "alpha_zero", "la_effect_zero",
                     "event_effect_zero", "sigma_log", "event_days", "event_sameday_pp"]
LINK_SCALE = {"binomial": "log_odds", "hurdle_lognormal": "log_mean_ratio"}


@dataclass(frozen=True)
class ReportedResult:
    """The evaluation's own result for an outcome, with its provenance.

    ``effect_pp`` is the headline effect in percentage points (binary outcomes); outcomes on
    another scale give ``effect`` with its ``unit`` instead, and further reported effects in
    ``secondary`` as ``(label, effect, unit, p value)``.
    """

    effect_pp: float | None
    p_value: float | None
    before_after: str
    grade: str
    source: str
    effect: float | None = None
    unit: str = "pp"
    secondary: tuple[tuple[str, float, str, float | None], ...] = ()

    @property
    def headline(self) -> float | None:
        return self.effect if self.effect is not None else self.effect_pp

    def describe(self) -> str:
        text = f"{self.headline:+.2f} {self.unit}" if self.headline is not None else "no effect size printed"
        text += f" ({self.before_after})" if self.before_after else ""
        text += f", p = {self.p_value}" if self.p_value is not None else ""
        for label, value, unit, p in self.secondary:
            text += f"; {label}: {value:+.2f} {unit}" + (f", p = {p}" if p is not None else "")
        return text


@dataclass(frozen=True)
class Exclusion:
    """A sensitivity re-fit with some LAs left out, and why."""

    name: str
    las: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class OutcomeSpec:
    """What distinguishes one DiD outcome analysis from another.

    ``rope_pp``, ``mid_pp`` and ``pretrend_threshold_pp`` are in the headline effect's unit
    (percentage points for binary outcomes, working days for durations; the ``zero_*`` values
    are for the duration's same-day share, in pp).
    """

    name: str
    column: str
    label: str                       # "kinship care"
    population: str                  # who is counted
    rises_if_programme_works: bool   # the programme's theory of change
    reported: ReportedResult
    default_data: Callable[[], SyntheticStudy]
    rope_pp: float = 2.0
    mid_pp: float = 5.0
    relative_target: float = 0.2
    pretrend_threshold_pp: float = 2.0
    likelihood: str = "binomial"                       # or "hurdle_lognormal" (durations)
    la_trends: bool = True                             # LA-specific linear trends in the main model
    covariates: tuple[str, ...] | None = None          # None: every covariate in the data
    robustness_by_default: bool = False                # run the cheap re-fits without --robustness
    nfa_population: bool = False                       # population defined by NFA coding (misclassification)
    exclusions: tuple[Exclusion, ...] = ()
    report_sample: tuple[str, ...] = ()                # LAs the report's own analysis used
    duration_cutoffs: tuple[float, ...] = ()           # maximum durations for the sensitivity re-fits
    first_record_variant: bool = False                 # re-fit on each child's first record
    target_accept: float = 0.9                         # NUTS target acceptance (higher: smaller steps)
    tune: int = 500                                    # default tuning draws per chain (see build_parser)
    zero_label: str = "same-day assessments"
    zero_rope_pp: float = 2.0
    zero_mid_pp: float = 5.0
    zero_pretrend_threshold_pp: float = 2.0

    @property
    def direction(self) -> int:
        return 1 if self.rises_if_programme_works else -1

    @property
    def hurdle(self) -> bool:
        return self.likelihood == "hurdle_lognormal"


@dataclass(frozen=True)
class EffectScale:
    """How one reported effect is read: its variables, unit and thresholds."""

    key: str               # JSON key and variable name of the ATT ("att_pp", "att_days", "att_sameday_pp")
    unit: str              # "pp" or "working days"
    label: str             # what changes
    rope: float
    mid: float
    pretrend_threshold: float
    typical: str
    la: str
    counterfactual: str
    event: str
    event_att: str
    mu_tau: str
    sigma_tau: str
    headline: bool


def effect_scales(spec: OutcomeSpec) -> list[EffectScale]:
    """The reported effects of an outcome: one for binary outcomes, two for durations."""
    n = effect_names(spec.likelihood)
    if not spec.hurdle:
        return [EffectScale(n["att"], "pp", spec.label, spec.rope_pp, spec.mid_pp, spec.pretrend_threshold_pp,
                            n["att_typical"], n["att_la"], n["counterfactual"], n["event"], n["event_att"],
                            "mu_tau", "sigma_tau", True)]
    return [EffectScale(n["att"], "working days", spec.label, spec.rope_pp, spec.mid_pp, spec.pretrend_threshold_pp,
                        n["att_typical"], n["att_la"], n["counterfactual"], n["event"], n["event_att"],
                        "mu_tau", "sigma_tau", True),
            EffectScale(n["att_zero"], "pp", spec.zero_label, spec.zero_rope_pp, spec.zero_mid_pp,
                        spec.zero_pretrend_threshold_pp, n["att_typical_zero"], n["att_la_zero"],
                        n["counterfactual_zero"], n["event_zero"], n["event_att_zero"], "mu_tau_zero",
                        "sigma_tau_zero", False)]


def build_parser(spec: OutcomeSpec, doc: str | None) -> argparse.ArgumentParser:
    p = analysis_parser(spec.name, doc, priors=PRIOR_NAMES, target_accept=spec.target_accept)
    # nutpie's mass-matrix adaptation settles within a few hundred draws on these models: for
    # the kinship twin, 500 tuning draws gave the same posterior and a larger bulk ESS than
    # 1,000 (benchmarks/kinship.py). Outcomes that need more set ``OutcomeSpec.tune``.
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
    p.add_argument("--m-grid", default=",".join(f"{m:g}" for m in sens.DEFAULT_M_GRID), metavar="LIST",
                   help="relative-magnitudes grid of M (comma-separated)")
    if spec.nfa_population:
        p.add_argument("--misclassification-grid", default=",".join(f"{m:g}" for m in sens.DEFAULT_MISCLASSIFICATION_GRID),
                       metavar="LIST", help="shares of wrongly included referrals in suspect LA-years (with --robustness)")
    if spec.hurdle:
        p.add_argument("--max-duration", type=float, default=None, metavar="DAYS",
                       help="leave out assessments longer than this from the main analysis (default: keep all)")
        p.add_argument("--cutoffs", default=",".join(f"{c:g}" for c in spec.duration_cutoffs), metavar="LIST",
                       help="maximum durations for the cut-off sensitivity re-fits (comma-separated days)")
    add_admin_args(p)  # --ssda903 / --cin / --la-roles / --sdc-threshold: real administrative extracts
    return p


def _floats(parser: argparse.ArgumentParser, text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        parser.error(f"{what} must be comma-separated numbers, got {text!r}")
        raise  # pragma: no cover - parser.error exits


# ---------------------------------------------------------------- inputs

@dataclass
class Inputs:
    cells: DidCells
    truth: dict | None
    attributes: pd.DataFrame | None
    attributes_source: str


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


def load_cells(spec: OutcomeSpec, path: Path | None, args: argparse.Namespace | None = None) -> tuple[DidCells, dict | None]:
    """The user's file, or the embedded synthetic study twin (with its truth)."""
    inputs = load_inputs(spec, path, args)
    return inputs.cells, inputs.truth


def load_inputs(spec: OutcomeSpec, path: Path | None, args: argparse.Namespace | None = None) -> Inputs:
    """Cells (with the outcome's data variants), the truth of synthetic data, LA attributes."""
    kwargs = {"kind": "duration" if spec.hurdle else "binary",
              "covariates": _covariates_arg(spec, getattr(args, "covariates", None)),
              "variants": _variants(spec, args) if args is not None else {},
              "max_value": getattr(args, "max_duration", None)}
    try:
        admin = admin_cells(args, spec.column, **kwargs) if hasattr(args, "ssda903") else None
        if admin is not None:
            cells, truth, study = admin[0], None, None
        elif path is not None:
            cells, truth, study = load_did_data(path, spec.column, **kwargs), None, None
        else:
            study = spec.default_data()
            cells = cells_from_frame(study.children, spec.column, source=study.label,
                                     data_hash=hash_frame(study.children), synthetic=True, **kwargs)
            truth = study.truth
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise DataError(str(err), column="--covariates") from None
    attr_path = getattr(args, "la_attributes", None)
    if attr_path is not None:
        attributes, source = load_la_attributes(attr_path, cells.las), str(attr_path)
    elif study is not None and study.la_attributes is not None:
        attributes, source = validate_la_attributes(study.la_attributes, cells.las), "synthetic LA attributes (embedded)"
    else:
        attributes, source = None, "none given"
    extra = getattr(args, "exclude_las", None)
    if extra:
        unknown = sorted(set(_names(extra)) - set(cells.las))
        if unknown:
            raise DataError(f"--exclude-las names LA(s) not in the data: {unknown}", column="la")
    return Inputs(cells, truth, attributes, source)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_priors(spec: OutcomeSpec, analysis: pd.DataFrame, args: argparse.Namespace) -> tuple[list[NamedPrior], list[NamedPrior | None]]:
    """The named priors (main part) and, for durations, the same-day part's priors (same names)."""
    pre = analysis[analysis.phase == "pre"]
    pre_share = float(pre["y"].sum() / pre["n"].sum())
    if not spec.hurdle:
        priors = select_priors(effect_priors(pre_share, relative_target=spec.relative_target,
                                             direction=spec.direction, outcome_label=spec.label),
                               args.prior, args.prior_override)
        return priors, [None] * len(priors)
    pre_mean = float(pre["dur_sum"].sum() / pre["n"].sum())
    priors = select_priors(effect_priors(pre_mean, relative_target=spec.relative_target, direction=spec.direction,
                                         outcome_label=spec.label, likelihood="hurdle_lognormal"),
                           args.prior, args.prior_override)
    zero = effect_priors(min(max(pre_share, 1e-3), 0.8), relative_target=spec.relative_target,
                         direction=-spec.direction, outcome_label=spec.zero_label)
    return priors, [zero.get(p.name, zero["neutral"]) for p in priors]


# ---------------------------------------------------------------- summaries (pure functions)

def _mid_statement(scale: EffectScale, draws: np.ndarray, binomial: bool) -> tuple[str, float, str]:
    """'fell by more than MID' for binary outcomes; in the direction of the estimate otherwise."""
    if binomial or np.mean(draws) < 0:
        return "p_att_below_minus_mid", float(np.mean(draws < -scale.mid)), f"{scale.label} fell by more than {scale.mid:g} {scale.unit}"
    return "p_att_above_mid", float(np.mean(draws > scale.mid)), f"{scale.label} rose by more than {scale.mid:g} {scale.unit}"


def effect_statements(spec: OutcomeSpec, prior: NamedPrior, post) -> dict:
    """Posterior statements about the ATT under one prior (all numbers from draws)."""
    scales = effect_scales(spec)
    head = scales[0]
    binomial = not spec.hurdle
    att = post[head.key].values.ravel()
    rel = post["att_relative"].values.ravel()
    s = summarise_effect(att, rope=head.rope, mid=head.mid)
    typ = summarise_effect(post[head.typical].values, rope=head.rope, mid=head.mid)
    p_target = prob(spec.direction * rel >= spec.relative_target)
    worse = "falls" if spec.rises_if_programme_works else "rises"
    p_decrease = s.p_negative
    verb = "reduced" if s.mean < 0 else "increased"
    p_verb = p_decrease if s.mean < 0 else s.p_positive
    mid_key, p_mid, mid_text = _mid_statement(head, att, binomial)
    unit = head.unit if not binomial else "pp"
    out = {
        "prior": prior.name,
        "prior_description": prior.describe(),
        head.key: s.to_dict(),
        "att_relative_mean": float(rel.mean()),
        "att_relative_eti95": [float(q) for q in np.quantile(rel, [0.025, 0.975])],
        f"{head.counterfactual}_mean": float(post[head.counterfactual].values.mean()),
        f"typical_la_effect_{LINK_SCALE[spec.likelihood]}": summarise_effect(post["mu_tau"].values, rope=0, mid=0).to_dict(),
        head.typical: typ.to_dict(),
        "sigma_tau_mean": float(post["sigma_tau"].values.mean()),
        "p_att_negative": p_decrease,
        mid_key: p_mid,
        "p_target_met": p_target,
        "statements": [
            state(p_verb, f"SofS {verb} {spec.label} in the pilot LAs"),
            state(p_mid, mid_text),
            state(s.p_in_rope, f"the change in {spec.label} was within ±{head.rope:g} {unit} (practically nil)"),
            state(typ.p_negative if s.mean < 0 else typ.p_positive,
                  f"SofS {verb} {spec.label} in a typical LA like the pilots (between-LA variation included)"),
            state(p_target, f"the programme's target was met ({spec.label} {'rose' if spec.direction > 0 else 'fell'} "
                            f"by at least {spec.relative_target:.0%} relative)"),
        ],
        "direction_note": f"the programme expected {spec.label} to {'rise' if spec.direction > 0 else 'fall'}; "
                          f"a result where it {worse} is contrary to its theory of change",
    }
    if not binomial:
        out["effect"] = {**s.to_dict(), "unit": head.unit, "variable": head.key}
        out["p_att_positive"] = s.p_positive
    for sc in scales[1:]:
        x = post[sc.key].values.ravel()
        z = summarise_effect(x, rope=sc.rope, mid=sc.mid)
        zverb = "reduced" if z.mean < 0 else "increased"
        out[sc.key] = z.to_dict()
        out[f"{sc.counterfactual}_mean"] = float(post[sc.counterfactual].values.mean())
        out[sc.typical] = summarise_effect(post[sc.typical].values, rope=sc.rope, mid=sc.mid).to_dict()
        out["statements"] += [
            state(z.p_negative if z.mean < 0 else z.p_positive, f"SofS {zverb} the share of {sc.label} in the pilot LAs"),
            state(z.p_in_rope, f"the change in the share of {sc.label} was within ±{sc.rope:g} pp (practically nil)"),
        ]
    return out


def interval_table(post, var: str, dim: str, prior: str) -> pd.DataFrame:
    x = post[var]
    draws = x.stack(sample=("chain", "draw")).transpose(dim, "sample").values
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=1)
    return pd.DataFrame({dim: list(x[dim].values), "prior": prior, "mean": draws.mean(1),
                         "eti95_low": lo, "eti95_high": hi, "p_negative": (draws < 0).mean(1)})


def event_table(post, threshold: float, var: str = "event_pp") -> pd.DataFrame:
    table = interval_table(post, var, "event_time", "neutral")
    draws = post[var].stack(sample=("chain", "draw")).transpose("event_time", "sample").values
    table["p_abs_gt_threshold"] = (np.abs(draws) > threshold).mean(1)
    table["pre_period"] = [is_pre_period(k) for k in table["event_time"]]
    return table.drop(columns="prior")


def share_ppc_table(cells: pd.DataFrame, y_pred: np.ndarray) -> pd.DataFrame:
    """Observed and posterior-predicted share (%) by arm and year; y_pred is (draws, cells)."""
    rows = []
    for (arm, year), idx in cells.groupby(["arm", "year"]).indices.items():
        n = cells["n"].to_numpy()[idx].sum()
        pred = 100 * y_pred[:, idx].sum(1) / n
        rows.append({"arm": arm, "year": int(year), "n": int(n),
                     "observed": 100 * cells["y"].to_numpy()[idx].sum() / n,
                     "pred_mean": pred.mean(), "pred_low": np.quantile(pred, 0.025),
                     "pred_high": np.quantile(pred, 0.975)})
    return pd.DataFrame(rows)


def summary_row(spec: OutcomeSpec, st: dict, diag: Diagnostics) -> dict:
    scales = effect_scales(spec)
    head = scales[0]
    a, t = st[head.key], st[head.typical]
    if not spec.hurdle:
        row = {"prior": st["prior"], "att_pp_mean": a["mean"], "att_pp_eti95_low": a["eti95_low"],
               "att_pp_eti95_high": a["eti95_high"], "typical_la_att_pp_mean": t["mean"],
               "typical_la_att_pp_eti95_low": t["eti95_low"], "typical_la_att_pp_eti95_high": t["eti95_high"],
               "relative_change_mean": st["att_relative_mean"],
               "p_att_lt_0": a["p_negative"], f"p_att_lt_minus_{spec.mid_pp:g}pp": st["p_att_below_minus_mid"],
               "p_below_rope": a["p_below_rope"], "p_in_rope": a["p_in_rope"], "p_above_rope": a["p_above_rope"],
               "p_target_met": st["p_target_met"]}
    else:
        row = {"prior": st["prior"], "att_days_mean": a["mean"], "att_days_eti95_low": a["eti95_low"],
               "att_days_eti95_high": a["eti95_high"], "typical_la_att_days_mean": t["mean"],
               "relative_change_mean": st["att_relative_mean"], "p_att_days_gt_0": a["p_positive"],
               "p_att_days_lt_0": a["p_negative"], "p_days_in_rope": a["p_in_rope"], "p_target_met": st["p_target_met"]}
        for sc in scales[1:]:
            z = st[sc.key]
            row.update({f"{sc.key}_mean": z["mean"], f"{sc.key}_eti95_low": z["eti95_low"],
                        f"{sc.key}_eti95_high": z["eti95_high"], f"p_{sc.key}_lt_0": z["p_negative"],
                        f"p_{sc.key}_in_rope": z["p_in_rope"]})
    row.update({"max_rhat": diag.table["rhat"].max(), "min_ess_bulk": diag.table["ess_bulk"].min(),
                "divergences": diag.divergences, "diagnostics_ok": diag.ok})
    return row


def _fmt_freq(freq) -> str:
    if isinstance(freq, FrequentistDid):
        return (f"{freq.method}: {freq.estimate_pp:+.2f} pp (SE {freq.se_pp:.2f}; 95% CI {freq.ci95_low_pp:+.1f} "
                f"to {freq.ci95_high_pp:+.1f}), p = {freq.p_value:.3f}, {freq.n_clusters} clusters.")
    return (f"{freq.method}: {freq.estimate:+.2f} {freq.unit} (SE {freq.se:.2f}; 95% CI {freq.ci95_low:+.1f} "
            f"to {freq.ci95_high:+.1f}), p = {freq.p_value:.3f}, {freq.n_clusters} clusters.")


def markdown_page(spec: OutcomeSpec, cells: DidCells, statements: list[dict], summary: pd.DataFrame,
                  freq, events: pd.DataFrame, diags: dict[str, Diagnostics], truth: dict | None,
                  robustness: dict | None = None) -> str:
    r = spec.reported
    scales = effect_scales(spec)
    head = scales[0]
    freqs = freq if isinstance(freq, dict) else {"": freq}
    lines = [f"# {spec.label.capitalize()}: Bayesian re-analysis of the SofS difference-in-differences", ""]
    if cells.synthetic:
        lines += ["> **SYNTHETIC DATA.** These results come from the embedded study twin: simulated children "
                  "calibrated to the published results. They illustrate the method; they are not evidence "
                  "about real children.", ""]
    lines += [f"Population: {spec.population}. Data: {cells.source} ({cells.n_children} children in "
              f"{len(cells.cells)} cells, {len(cells.pilots)} pilot and {len(cells.las) - len(cells.pilots)} "
              "comparator LAs).", ""]
    lines += [f"- note: {note}" for note in cells.notes] + ([""] if cells.notes else [])
    lines += ["## The report's result", "", f"{r.describe()}; graded: *{r.grade}* ({r.source}).", "",
              "## Our posterior statements", ""]
    for st in statements:
        a = st[head.key]
        extra = "".join(f"; {sc.label} {st[sc.key]['mean']:+.1f} {sc.unit} ({st[sc.key]['eti95_low']:+.1f} to "
                        f"{st[sc.key]['eti95_high']:+.1f})" for sc in scales[1:])
        lines += [f"**{st['prior']} prior** ({st['prior_description']}): ATT {a['mean']:+.1f} {head.unit} "
                  f"(95% interval {a['eti95_low']:+.1f} to {a['eti95_high']:+.1f}); relative change "
                  f"{100 * st['att_relative_mean']:+.0f}%{extra}.", ""]
        lines += [f"- {s}" for s in st["statements"]] + [""]
    lines += ["## Summary table", "", summary.to_markdown(index=False, floatfmt=".3f"), "",
              "## Frequentist cross-check (the report's method on the same data)", ""]
    lines += [(f"{k}: " if k else "") + _fmt_freq(f) for k, f in freqs.items()] + [""]
    lines += ["The Bayesian ATT is the effect in these pilot LAs (g-computation over their post-period children); "
              "the typical-LA ATT carries the between-LA variation and is closer to what the frequentist LA-clustered "
              "standard error describes.", "",
              "## Parallel trends (event study)", "",
              events.to_markdown(index=False, floatfmt=".3f"), ""]
    if robustness:
        lines += _robustness_markdown(robustness)
    lines += ["## Diagnostics", ""]
    for name, d in diags.items():
        lines += [f"- {name}: " + d.banner().replace("\n", " ")]
    if truth is not None:
        lines += ["", "## Known truth (synthetic data only)", ""]
        if spec.hurdle:
            lines += [f"True SofS effect {truth['att_days']:+.2f} working days on the mean duration and "
                      f"{truth['att_sameday_pp']:+.2f} pp on the same-day share; a DiD that mistakes the practice "
                      f"change in {', '.join(truth.get('practice_change_las', []))} for SofS targets "
                      f"{truth['naive_att_days']:+.2f} days and {truth['naive_att_sameday_pp']:+.2f} pp."]
        else:
            lines += [f"True ATT {truth['att_pp']:+.2f} pp; true relative change {100 * truth['att_relative']:+.1f}%."]
    figures = ["att_posterior.png", "la_effects.png", "event_study.png", "ppc_share.png", "prior_predictive.png"]
    if robustness:
        figures += robustness.get("figures", [])
    lines += ["", "Figures: " + ", ".join(figures) + "."]
    return "\n".join(lines) + "\n"


def _robustness_markdown(rob: dict) -> list[str]:
    lines = ["## Design robustness", ""]
    for eff, summ in rob.get("relative_magnitudes", {}).items():
        m = summ["breakdown_m"]
        lines += [f"**Relative magnitudes ({eff}).** Allowing a post-period violation of parallel trends up to M times "
                  f"the largest pre-period deviation (mean {summ['max_pre_mean']:.2f}), the conclusion of a "
                  f"{summ['conclusion']} holds with P >= {summ['conclusion_prob']:g} up to the breakdown "
                  f"M = {m:.2f} (P at M = 0: {summ['p_conclusion_at_m0']:.2f}).", ""]
    for line in rob.get("statements", []):
        lines += [f"- {line}"]
    if rob.get("statements"):
        lines += [""]
    if rob.get("table") is not None and len(rob["table"]):
        cols = ["analysis", "family", "effect", "mean", "eti95_low", "eti95_high", "p_negative",
                "shift_vs_main", "width_ratio_vs_main", "diagnostics_ok"]
        t = rob["table"]
        lines += ["Re-fits (neutral prior; `robustness.csv` has the descriptions):", "",
                  t[[c for c in cols if c in t.columns]].to_markdown(index=False, floatfmt=".3f"), ""]
    for note in rob.get("notes", []):
        lines += [f"- {note}"]
    if rob.get("notes"):
        lines += [""]
    return lines


# ---------------------------------------------------------------- robustness plan (which re-fits, on what data)

@dataclass
class PlannedFit:
    name: str
    family: str
    description: str
    frame: pd.DataFrame
    note: str = ""


def robustness_plan(spec: OutcomeSpec, inputs: Inputs, analysis: pd.DataFrame, *, cheap: bool, heavy: bool,
                    extra_exclusion: list[str] | None = None) -> tuple[list[PlannedFit], list[str]]:
    """The shape-preserving re-fits of the main model, and notes on what could not be run."""
    cells, stats = inputs.cells, inputs.cells.stats
    plan, notes = [], []
    if cheap:
        similar = sens.similar_practice_comparators(inputs.attributes, cells.las)
        if similar:
            plan.append(PlannedFit("without similar-practice comparators", "exclusion",
                                   f"comparator LAs with a practice model similar to SofS left out ({', '.join(similar)})",
                                   mask_las(analysis, similar, stats)))
        else:
            notes.append("no comparator is flagged as running a practice model similar to SofS "
                         f"(LA attributes: {inputs.attributes_source})")
        exclusions = list(spec.exclusions)
        if extra_exclusion:
            exclusions.append(Exclusion("without " + ", ".join(extra_exclusion), tuple(extra_exclusion),
                                        "left out on request (--exclude-las)"))
        for ex in exclusions:
            present = [la for la in ex.las if la in cells.las]
            if present:
                plan.append(PlannedFit(ex.name, "exclusion", f"{', '.join(present)} left out: {ex.why}",
                                       mask_las(analysis, present, stats)))
            else:
                notes.append(f"'{ex.name}': none of {list(ex.las)} is in the data")
        if spec.nfa_population:
            _, suspect = sens.suspect_cells(cells.cells)
            if suspect:
                plan.append(PlannedFit("without LAs with unreliable NFA coding", "exclusion",
                                       f"LAs with years of very few NFA referrals left out ({', '.join(suspect)})",
                                       mask_las(analysis, suspect, stats)))
            else:
                notes.append("no LA has years with unusually few NFA referrals (no unreliable NFA coding detected)")
        if spec.report_sample:
            present = [la for la in spec.report_sample if la in cells.las]
            arms = set(analysis.loc[analysis.la.isin(present), "arm"])
            if arms == {"pilot", "comparator"}:
                others = [la for la in cells.las if la not in present]
                frame = mask_las(analysis, others, stats)
                note = ""
                if not spec.hurdle:
                    f = lpm_did(frame[frame["n"] > 0], cells.covariates)
                    note = (f"the report's method on these LAs: {f.estimate_pp:+.2f} pp (LA-clustered SE {f.se_pp:.2f}, "
                            f"{f.n_clusters} clusters)")
                plan.append(PlannedFit("report's LAs only", "exclusion",
                                       f"only the LAs the report could use ({', '.join(present)}): what partial pooling "
                                       "across all LAs adds", frame, note))
            else:
                notes.append(f"the report's sample {list(spec.report_sample)} is not in the data with both arms")
        for v in cells.variants:
            plan.append(PlannedFit(_variant_name(v), "data definition", _variant_description(v),
                                   cells.variant_cells(v, analysis)))
    if heavy:
        for la in cells.las:
            plan.append(PlannedFit(f"without {la}", "leave one LA out", f"{la} left out", mask_las(analysis, [la], stats)))
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
        return f"assessments longer than {v.removeprefix('max_').removesuffix('_days')} working days left out"
    return f"data variant {v}"


# ---------------------------------------------------------------- the run

@dataclass
class Settings:
    draws: int
    tune: int
    chains: int
    quiet: bool
    target_accept: float = 0.9
    refit_chains: int = 2

    def sample_kwargs(self) -> dict:
        return {"draws": self.draws, "tune": self.tune, "chains": self.chains, "progress": not self.quiet,
                "target_accept": self.target_accept}

    def refit_kwargs(self) -> dict:
        """Robustness re-fits: the main fits' draws and tuning on fewer chains."""
        return {**self.sample_kwargs(), "chains": max(1, min(self.refit_chains, self.chains))}


def _present(post, names: list[str]) -> list[str]:
    """The variables of ``names`` in ``post`` that hold values (no covariates: ``beta`` is empty)."""
    return [v for v in names if v in post and post[v].size > 0]


def _diag_vars(spec: OutcomeSpec, event: bool = False) -> list[str]:
    if spec.hurdle:
        return HURDLE_EVENT_VARS if event else HURDLE_VARS
    return EVENT_VARS if event else MAIN_VARS


def run(spec: OutcomeSpec, args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    inputs = load_inputs(spec, args.data, args)
    cells, truth = inputs.cells, inputs.truth
    log(f"[{spec.name}] data: {cells.source}: {cells.n_children} records, {len(cells.cells)} cells", quiet=quiet)
    analysis = cells.analysis_cells()
    priors, zero_priors = build_priors(spec, analysis, args)
    la_trends = True if args.la_trends else False if args.no_la_trends else spec.la_trends
    lik = spec.likelihood
    scales = effect_scales(spec)
    head = scales[0]
    design = did_design(analysis, las=cells.las, pilots=cells.pilots, years=cells.years, covariates=cells.covariates)
    model = build_did_model(design, priors[0], la_trends=la_trends, likelihood=lik, zero_prior=zero_priors[0])
    log(f"[{spec.name}] compiling the DiD model (once for all priors and re-fits)...", quiet=quiet)
    # cells frozen as constants (faster); priors stay mutable; a re-fit on new cells compiles
    # the mutable model once (models.sampling.CompiledSampler)
    sampler = CompiledSampler(model, mutable=PRIOR_DATA)
    settings = Settings(args.draws, args.tune, args.chains, quiet, args.target_accept, args.robustness_chains)

    fits, diags, statements, la_tables, prior_att, prior_share = {}, {}, [], [], {}, {}
    for i, (prior, zp) in enumerate(zip(priors, zero_priors)):
        log(f"[{spec.name}] sampling under the {prior.name} prior ({i + 1}/{len(priors)})...", quiet=quiet)
        idata = sampler.sample(prior_data(prior, zp), seed=args.seed + i,
                               **settings.sample_kwargs())
        with model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Potential.*", category=UserWarning)
            pm.set_data({"prior_mean": prior.mean, "prior_sd": prior.sd,
                         **({"prior_mean_zero": zp.mean, "prior_sd_zero": zp.sd} if zp is not None else {})})
            prior_pred = pm.sample_prior_predictive(draws=500, random_seed=args.seed + 100 + i,
                                                    var_names=[head.key, "y_obs"])
            ppc = pm.sample_posterior_predictive(idata, var_names=["y_obs"], random_seed=args.seed + 200 + i,
                                                 freeze_vars=[v.name for v in model.free_RVs],
                                                 progressbar=False)
        idata["posterior_predictive"] = ppc["posterior_predictive"]
        idata["prior"] = prior_pred["prior"]
        idata["prior_predictive"] = prior_pred["prior_predictive"]
        diag = check_sampling(idata, _present(idata["posterior"], _diag_vars(spec)))
        log(diag.banner(), quiet=quiet and diag.ok)
        fits[prior.name], diags[prior.name] = idata, diag
        post = idata["posterior"]
        statements.append(effect_statements(spec, prior, post))
        for sc in scales:
            t = interval_table(post, sc.la, "pilot", prior.name)
            la_tables.append(t.assign(effect=sc.key) if spec.hurdle else t)
        prior_att[prior.name] = prior_pred["prior"][head.key].values.ravel()
        prior_share[prior.name] = 100 * prior_pred["prior_predictive"]["y_obs"].values.reshape(-1, len(analysis)).sum(1) / analysis["n"].sum()

    log(f"[{spec.name}] event study (parallel-trends check)...", quiet=quiet)
    event_design = did_design(cells.cells, las=cells.las, pilots=cells.pilots, years=cells.years,
                              covariates=cells.covariates)
    event_fit = CompiledSampler(build_did_model(event_design, priors[0], event_study=True, likelihood=lik,
                                                zero_prior=zero_priors[0]), mutable=()).sample(
        seed=args.seed + 50, **settings.sample_kwargs())
    diags["event study"] = check_sampling(event_fit, _present(event_fit["posterior"], _diag_vars(spec, event=True)))
    log(diags["event study"].banner(), quiet=quiet and diags["event study"].ok)
    ev_post = event_fit["posterior"]
    event_tables = {sc.key: event_table(ev_post, sc.pretrend_threshold, sc.event) for sc in scales}
    events = (event_tables[head.key] if not spec.hurdle else
              pd.concat([t.assign(effect=k) for k, t in event_tables.items()], ignore_index=True))

    # ---- design robustness
    rob = robustness(spec, args, inputs, analysis, design, sampler, priors, zero_priors, fits, ev_post, settings,
                     la_trends)

    if spec.hurdle:
        freq = {"mean duration": mean_did(analysis, cells.covariates),
                "same-day share": lpm_did(analysis, cells.covariates)}
    else:
        freq = lpm_did(analysis, cells.covariates)
    summary = pd.DataFrame([summary_row(spec, st, diags[st["prior"]]) for st in statements])
    la_effects = pd.concat(la_tables, ignore_index=True)
    first = fits[priors[0].name]
    y_pred = first["posterior_predictive"]["y_obs"].values.reshape(-1, len(analysis))
    ppc_table = share_ppc_table(analysis, y_pred)
    guard = sdc_guard(args)  # disclosure control: active for administrative data only
    ppc_table = guard.table("ppc_share", ppc_table, RUNNER_TABLE_RULES["ppc_share"])
    ppc_days = duration_ppc(design, first, analysis, la_trends=la_trends, seed=args.seed) if spec.hurdle else None
    if ppc_days is not None:
        ppc_days = guard.table("ppc_duration", ppc_days, RUNNER_TABLE_RULES["ppc_duration"])
    diag_table = pd.concat({k: d.table for k, d in diags.items()}, names=["fit"]).reset_index()

    record = {
        "outcome": spec.name, "label": spec.label, "population": spec.population,
        "synthetic": cells.synthetic, "data_source": cells.source, "data_notes": list(cells.notes),
        "report": {**{k: v for k, v in vars(spec.reported).items() if k != "secondary"},
                   "secondary": [list(s) for s in spec.reported.secondary]},
        "priors": {p.name: vars(p) for p in priors},
        "results": statements,
        "frequentist_cross_check": (freq.to_dict() if not isinstance(freq, dict)
                                    else {k: f.to_dict() for k, f in freq.items()}),
        "event_study": events.to_dict(orient="records"),
        "pretrend_statement": [state(float(r.p_abs_gt_threshold),
                                     f"the pre-period effect at year {r.event_time} exceeds ±{_threshold(spec, r)} "
                                     f"{_unit(spec, r)}")
                               for r in events.itertuples() if r.pre_period],
        "pretrends": {k: v.to_dict(orient="records") for k, v in rob["pretrends"].items()},
        "relative_magnitudes": rob["relative_magnitudes"],
        "robustness": rob["table"].to_dict(orient="records") if rob["table"] is not None else [],
        "robustness_statements": rob["statements"],
        "robustness_notes": rob["notes"],
        "leave_one_la_out": rob["loo"],
        "leave_one_la_out_summary": rob["loo_summary"],
        "diagnostics": {k: d.to_dict() for k, d in diags.items()},
        "diagnostics_ok": all(d.ok for d in diags.values()),
        "robustness_diagnostics_ok": rob["diagnostics_ok"],
        "truth": truth,
        "provenance": provenance(seed=args.seed, data_hash=cells.data_hash, data_label=cells.source, argv=argv,
                                 draws=args.draws, tune=args.tune, chains=args.chains, la_trends=la_trends,
                                 target_accept=args.target_accept, robustness_chains=args.robustness_chains,
                                 covariates=list(cells.covariates), la_attributes=inputs.attributes_source,
                                 robustness="all" if args.robustness else "none" if args.no_robustness else
                                 "default" if spec.robustness_by_default else "event study only"),
    }

    syn = cells.synthetic
    log(f"[{spec.name}] writing posteriors, tables and figures to {args.out}...", quiet=quiet)
    with OutputDir(args.out) as out:
        for name, idata in fits.items():
            guard.idata(idata).to_netcdf(out / f"posterior_{name}.nc")
        guard.idata(event_fit).to_netcdf(out / "posterior_event_study.nc")
        out.write_table("summary", summary)
        out.write_table("la_effects", la_effects)
        out.write_table("event_study", events)
        out.write_table("pretrends", pd.concat([t.assign(effect=k) for k, t in rob["pretrends"].items()], ignore_index=True))
        out.write_table("relative_magnitudes", rob["rm_table"])
        out.write_table("ppc_share", ppc_table)
        if ppc_days is not None:
            out.write_table("ppc_duration", ppc_days)
        if rob["table"] is not None:
            out.write_table("robustness", rob["table"])
        out.write_table("diagnostics", diag_table)
        out.write_json("statements.json", record)
        out.write_text("report.md", markdown_page(spec, cells, statements, summary, freq, events, diags, truth, rob))
        out.save_figure("att_posterior.png", fig.plot_effect_by_prior(
            {p.name: fits[p.name]["posterior"][head.key].values for p in priors}, rope=head.rope,
            xlabel=f"ATT on {spec.label} ({'percentage points' if head.unit == 'pp' else head.unit})",
            prior_draws=prior_att, title=f"SofS effect on {spec.label}: posterior by prior",
            report_value=spec.reported.headline, synthetic=syn))
        for sc in scales[1:]:
            out.save_figure(f"att_posterior_{sc.key}.png", fig.plot_effect_by_prior(
                {p.name: fits[p.name]["posterior"][sc.key].values for p in priors}, rope=sc.rope,
                xlabel=f"ATT on the share of {sc.label} (percentage points)",
                title=f"SofS effect on the share of {sc.label}: posterior by prior",
                report_value=next((s[1] for s in spec.reported.secondary), None), synthetic=syn))
        la_head = la_effects[la_effects["effect"] == head.key] if spec.hurdle else la_effects
        la_truth = (truth or {}).get("att_la_days" if spec.hurdle else "att_la_pp")
        out.save_figure("la_effects.png", fig.plot_forest(
            la_head, label_col="pilot", xlabel=f"LA-specific effect on {spec.label} ({head.unit})",
            title="Pilot LA effects (partial pooling)", truth=la_truth, synthetic=syn))
        for sc in scales:
            stem = "event_study" if sc.headline else f"event_study_{sc.key}"
            out.save_figure(f"{stem}.png", fig.plot_event_study(
                event_tables[sc.key], threshold=sc.pretrend_threshold,
                ylabel=f"effect on {'the share of ' if not sc.headline else ''}{sc.label} ({sc.unit})", synthetic=syn))
        out.save_figure("relative_magnitudes.png", fig.plot_relative_magnitudes(
            rob["rm_table"], rob["relative_magnitudes"], synthetic=syn))
        out.save_figure("ppc_share.png", fig.plot_share_ppc(
            ppc_table, ylabel=f"{spec.zero_label if spec.hurdle else spec.label} (%)", synthetic=syn))
        if ppc_days is not None:
            out.save_figure("ppc_duration.png", fig.plot_duration_ppc(ppc_days, synthetic=syn))
        out.save_figure("prior_predictive.png", fig.plot_prior_predictive(
            100 * analysis["y"].sum() / analysis["n"].sum(), prior_share,
            xlabel=f"overall {spec.zero_label if spec.hurdle else spec.label} share (%)", synthetic=syn))
        if rob["table"] is not None:
            for sc in scales:
                sub = rob["table"][rob["table"]["effect"] == sc.key]
                stem = "robustness" if sc.headline else f"robustness_{sc.key}"
                out.save_figure(f"{stem}.png", fig.plot_robustness(
                    sub, xlabel=f"effect on {'the share of ' if not sc.headline else ''}{sc.label} ({sc.unit})",
                    title=f"Design robustness: {spec.label}" if sc.headline else f"Design robustness: {sc.label}",
                    report_value=spec.reported.headline if sc.headline else None, synthetic=syn))
        out.commit()
    log(f"[{spec.name}] done", quiet=quiet)

    _print_headline(spec, statements, freq, record["diagnostics_ok"], cells.synthetic, args.out, rob)
    if args.strict and not record["diagnostics_ok"]:
        log("--strict: sampling diagnostics failed; exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _threshold(spec: OutcomeSpec, row) -> str:
    sc = next((s for s in effect_scales(spec) if s.key == getattr(row, "effect", effect_scales(spec)[0].key)))
    return f"{sc.pretrend_threshold:g}"


def _unit(spec: OutcomeSpec, row) -> str:
    sc = next((s for s in effect_scales(spec) if s.key == getattr(row, "effect", effect_scales(spec)[0].key)))
    return sc.unit


def robustness(spec: OutcomeSpec, args: argparse.Namespace, inputs: Inputs, analysis: pd.DataFrame, design,
               sampler: CompiledSampler, priors: list[NamedPrior], zero_priors: list, fits: dict, ev_post,
               settings: Settings, la_trends: bool) -> dict:
    """Pre-trends, relative magnitudes and the robustness re-fits (see the module docstring)."""
    cells, lik, quiet = inputs.cells, spec.likelihood, settings.quiet
    scales = effect_scales(spec)
    names = effect_names(lik)
    out: dict = {"pretrends": {}, "relative_magnitudes": {}, "statements": [], "notes": [], "loo": [],
                 "loo_summary": {}, "table": None, "diagnostics_ok": True, "figures": ["relative_magnitudes.png"]}
    rm_tables = []
    for sc in scales:
        event = ev_post[sc.event]
        pt_table = sens.pretrend_table(event, sc.pretrend_threshold)
        out["pretrends"][sc.key] = pt_table
        max_pre = sens.max_abs_pre(event)
        table, summ = sens.relative_magnitudes(ev_post[sc.event_att].values.ravel(), max_pre, args.m_grid_values)
        summ = {"effect": sc.key, "unit": sc.unit, "label": ("the share of " if not sc.headline else "") + sc.label, **summ,
                "event_att_mean": float(ev_post[sc.event_att].values.mean())}
        out["relative_magnitudes"][sc.key] = summ
        rm_tables.append(table.assign(effect=sc.key))
        p_max = float(pt_table.iloc[-1]["p_abs_gt_threshold"])
        out["statements"].append(state(p_max, f"the largest pre-period deviation from parallel trends in "
                                              f"{'the share of ' if not sc.headline else ''}{sc.label} exceeds "
                                              f"±{sc.pretrend_threshold:g} {sc.unit}"))
        out["statements"].append(
            f"the event-study conclusion of a {summ['conclusion']} in {'the share of ' if not sc.headline else ''}"
            f"{sc.label} (P = {summ['p_conclusion_at_m0']:.2f}) holds with P >= {summ['conclusion_prob']:g} for "
            f"post-period violations up to M = {summ['breakdown_m']:.2f} times the largest pre-period deviation")
    out["rm_table"] = pd.concat(rm_tables, ignore_index=True)

    cheap = (spec.robustness_by_default and not args.no_robustness) or args.robustness
    heavy = args.robustness
    extra = _names(args.exclude_las) if args.exclude_las else None
    if not cheap and not heavy and not extra:
        out["notes"].append("robustness re-fits not run (use --robustness)")
        return out
    ref_i = next((i for i, p in enumerate(priors) if p.name == "neutral"), 0)
    ref, zref = priors[ref_i], zero_priors[ref_i]
    main_post = fits[ref.name]["posterior"]
    main_draws = {sc.key: main_post[sc.key].values.ravel() for sc in scales}
    covs = cells.covariates

    def make_data(frame: pd.DataFrame) -> dict:
        d = did_design(frame, las=cells.las, pilots=cells.pilots, years=cells.years, covariates=covs)
        return model_data(d, ref, likelihood=lik, zero_prior=zref)

    refitter = sens.Refitter(sampler, make_data, [sc.key for sc in scales], settings.refit_kwargs(), _diag_vars(spec))
    plan, notes = robustness_plan(spec, inputs, analysis, cheap=cheap or bool(extra), heavy=heavy,
                                  extra_exclusion=extra)
    if extra and not cheap:
        plan = [p for p in plan if p.name.startswith("without " + ", ".join(extra))]
    out["notes"] += notes
    results: list[sens.RefitResult] = [sens.RefitResult("main (all LAs)", "main", f"main analysis, {ref.name} prior",
                                                        main_draws, True)]
    for k, item in enumerate(plan):
        log(f"[{spec.name}] robustness re-fit {k + 1}/{len(plan)}: {item.name}...", quiet=quiet)
        results.append(refitter.fit(item.frame, name=item.name, family=item.family, description=item.description,
                                    seed=args.seed + 300 + k, note=item.note))
    if heavy:
        results += _heavy_refits(spec, args, inputs, analysis, design, ref, zref, settings, la_trends, names, out)
    rows = [sens.refit_row(r, sc.key, main_draws[sc.key]) for r in results for sc in scales if sc.key in r.draws]
    table = pd.DataFrame(rows)
    out["table"] = table
    out["diagnostics_ok"] = bool(all(r.diagnostics_ok for r in results))
    for r in results[1:]:
        if not r.diagnostics_ok:
            out["notes"].append(f"re-fit '{r.name}': sampling diagnostics failed ({'; '.join(r.problems[:3])})")
    head = scales[0]
    main_sign = -1 if np.mean(main_draws[head.key]) < 0 else 1
    verb = "reduced" if main_sign < 0 else "increased"
    for r in results[1:]:
        if r.family in ("leave one LA out",) or head.key not in r.draws:
            continue
        x = r.draws[head.key]
        if r.family == "moderator":
            continue
        out["statements"].append(state(float(np.mean(main_sign * x > 0)), f"SofS {verb} {spec.label} ({r.name})"))
    loo_rows = [row for row in rows if row["family"] == "leave one LA out" and row["effect"] == head.key]
    out["loo"] = [{"left_out": row["analysis"].removeprefix("without "), f"{head.key}_mean": row["mean"],
                   "eti95_low": row["eti95_low"], "eti95_high": row["eti95_high"], "p_negative": row["p_negative"]}
                  for row in loo_rows]
    out["loo_summary"] = sens.loo_summary(loo_rows, main_draws[head.key])
    if out["loo_summary"]:
        s = out["loo_summary"]
        out["statements"].append(
            f"leaving out one LA at a time, the ATT ranges from {s['mean_min']:+.1f} to {s['mean_max']:+.1f} "
            f"{head.unit}; the most influential LA is {s['most_influential_la']} (shift {s['largest_shift']:+.1f})")
    out["figures"] += ["robustness.png"] + [f"robustness_{sc.key}.png" for sc in scales[1:]]
    return out


def _heavy_refits(spec, args, inputs, analysis, design, ref, zref, settings, la_trends, names, out) -> list:
    """Moderators, child random effect and misclassification: models of their own, compiled once each."""
    cells, lik, quiet = inputs.cells, spec.likelihood, settings.quiet
    scales = effect_scales(spec)
    results = []
    kw = settings.refit_kwargs()

    other = "with" if not la_trends else "without"
    log(f"[{spec.name}] specification: the main model {other} LA trends (compiling)...", quiet=quiet)
    idata = CompiledSampler(build_did_model(design, ref, la_trends=not la_trends, likelihood=lik, zero_prior=zref),
                            mutable=()).sample(seed=args.seed + 400, **kw)
    post = idata["posterior"]
    diag = check_sampling(idata, _present(post, _diag_vars(spec)))
    results.append(sens.RefitResult(f"{other} LA trends", "specification",
                                    f"the main model {other} LA-specific linear trends",
                                    {sc.key: post[sc.key].values.ravel() for sc in scales}, diag.ok, diag.problems))

    groups = {k: v for k, v in sens.moderator_groups(inputs.attributes, cells.pilots).items()}
    available = {k: v for k, v in groups.items() if v[0] is not None}
    for k, (vals, text) in groups.items():
        if vals is None:
            out["notes"].append(f"moderator {k}: not analysed ({text}; LA attributes: {inputs.attributes_source})")
    if available:
        log(f"[{spec.name}] moderators: compiling...", quiet=quiet)
        first = next(iter(available.values()))[0]
        msampler = CompiledSampler(build_did_model(design, ref, la_trends=la_trends, likelihood=lik, zero_prior=zref,
                                                   moderator=first), mutable=("moderator",))
        for j, (k, (vals, text)) in enumerate(available.items()):
            log(f"[{spec.name}] moderator {k}...", quiet=quiet)
            idata = msampler.sample({"moderator": vals}, seed=args.seed + 500 + j, **kw)
            post = idata["posterior"]
            diag = check_sampling(idata, _present(post, _diag_vars(spec)))
            n_high = int(vals.sum())
            for part, suffix in [("high", ""), ("low", ""), ("diff", "")]:
                keys = {sc.key: names[f"mod_{part}" + ("" if sc.headline else "_zero")] for sc in scales}
                draws = {sc.key: post[keys[sc.key]].values.ravel() for sc in scales}
                label = {"high": f"{k}: typical LA, high group ({n_high} pilots)",
                         "low": f"{k}: typical LA, low group ({len(vals) - n_high} pilots)",
                         "diff": f"{k}: high minus low"}[part]
                results.append(sens.RefitResult(label, "moderator", text, draws, diag.ok, diag.problems))

    if not spec.hurdle and cells.repeated is not None and len(cells.repeated):
        log(f"[{spec.name}] repeated children: child random effect (compiling)...", quiet=quiet)
        rep = repeated_design(analysis, cells.repeated, cells.covariates)
        idata = CompiledSampler(build_did_model(design, ref, la_trends=la_trends, repeated=rep), mutable=()).sample(
            seed=args.seed + 600, **kw)     # built with its data (the counts enter as y_once, not y)
        post = idata["posterior"]
        diag = check_sampling(idata, _present(post, [*MAIN_VARS, "sigma_child"]))
        sd = float(post["sigma_child"].values.mean())
        results.append(sens.RefitResult(
            "child random effect", "repeated children",
            f"a child random effect for the {rep['n_children']} children with more than one record "
            f"({len(rep['rep_y'])} records); population-averaged ATT", {scales[0].key: post[scales[0].key].values.ravel()},
            diag.ok, diag.problems, note=f"sigma_child posterior mean {sd:.2f} (log-odds)"))
    elif not spec.hurdle:
        out["notes"].append("repeated children: the data have no child_id column, so the child random effect "
                            "model could not be fitted")

    if spec.nfa_population and not spec.hurdle:
        full_mask, suspect = sens.suspect_cells(cells.cells)
        mask = full_mask[(cells.cells.phase != "settling").to_numpy()].astype(float)
        where = f"LA-years with very few NFA referrals in {', '.join(suspect)}"
        if not suspect:
            mask = np.ones(len(analysis))
            where = "every cell (no LA-year with unusually few NFA referrals)"
        log(f"[{spec.name}] NFA misclassification grid (compiling)...", quiet=quiet)
        msampler = CompiledSampler(build_did_model(design, ref, la_trends=la_trends, misclassification=mask * 0.0),
                                   mutable=("misclass",))
        for j, m in enumerate(args.misclassification_values):
            idata = msampler.sample({"misclass": mask * m}, seed=args.seed + 700 + j, **kw)
            post = idata["posterior"]
            diag = check_sampling(idata, _present(post, MAIN_VARS))
            results.append(sens.RefitResult(
                f"misclassified share {m:.0%}", "misclassification",
                f"{m:.0%} of the referrals recorded as NFA in {where} assumed not to be NFA (their re-referral "
                "rate estimated)", {scales[0].key: post[scales[0].key].values.ravel()}, diag.ok, diag.problems))
    return results


def _print_headline(spec: OutcomeSpec, statements: list[dict], freq, ok: bool,
                    synthetic: bool, out: Path, rob: dict | None = None) -> None:
    r = spec.reported
    head = effect_scales(spec)[0]
    if synthetic:
        print("NOTE: SYNTHETIC DATA (embedded study twin calibrated to the published results)")
    print(f"{spec.label}: report {r.describe()} -> '{r.grade}'")
    for st in statements:
        a = st[head.key]
        print(f"  {st['prior']:>12}: ATT {a['mean']:+.1f} {head.unit} [{a['eti95_low']:+.1f}, {a['eti95_high']:+.1f}]; "
              + st["statements"][0])
    for k, f in (freq.items() if isinstance(freq, dict) else [("", freq)]):
        est, se, unit = ((f.estimate_pp, f.se_pp, "pp") if isinstance(f, FrequentistDid) else (f.estimate, f.se, f.unit))
        print(f"  frequentist DiD on the same data{' (' + k + ')' if k else ''}: {est:+.2f} {unit} (SE {se:.2f}), "
              f"p = {f.p_value:.3f}")
    if rob:
        rm = rob["relative_magnitudes"].get(head.key)
        if rm:
            print(f"  relative magnitudes: the {rm['conclusion']} holds (P >= {rm['conclusion_prob']:g}) up to "
                  f"M = {rm['breakdown_m']:.2f}")
        t = rob.get("table")
        if t is not None:
            sub = t[(t["effect"] == head.key) & (t["family"] != "main") & (t["family"] != "leave one LA out")]
            for row in sub.itertuples():
                print(f"  robustness: {row.analysis}: {row.mean:+.1f} [{row.eti95_low:+.1f}, {row.eti95_high:+.1f}]")
        if rob.get("loo_summary"):
            s = rob["loo_summary"]
            print(f"  leave-one-LA-out: {s['mean_min']:+.1f} to {s['mean_max']:+.1f} {head.unit}")
    if not ok:
        print("  WARNING: sampling diagnostics failed (see above and statements.json)")
    print(f"  outputs: {out}/")


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
    args.cutoff_values = _floats(parser, args.cutoffs, "--cutoffs") if spec.hurdle else ()
    if any(c <= 0 for c in args.cutoff_values):
        parser.error("--cutoffs must be positive numbers of days")
    if args.robustness_chains < 1:
        parser.error("--robustness-chains must be at least 1")
    for name in ("max_duration", "exclude_las", "covariates", "la_attributes"):
        if not hasattr(args, name):
            setattr(args, name, None)
    return run_cli(lambda: run(spec, args, argv))
