"""The one runner behind every child-level DiD analysis (kinship, re-referral, ...).

An outcome analysis is an :class:`OutcomeSpec` (its data definition, the report's own result,
the reporting thresholds) handed to :func:`main`. The runner composes
data -> model -> posterior -> statements -> figures and holds no statistics of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm

from analyses.common import (EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, analysis_parser, hash_frame, log,
                             provenance, run_cli)
from data.did_input import DidCells, cells_from_frame, load_did_data
from data.synthetic import SyntheticStudy
from figures import did as fig
from models.diagnostics import Diagnostics, check_sampling
from models.did_frequentist import FrequentistDid, lpm_did
from models.did_hierarchical import (build_did_model, did_design, effect_priors, model_data)
from models.priors import PRIOR_NAMES, NamedPrior, select_priors
from models.sampling import CompiledSampler
from models.statements import prob, state, summarise_effect

MAIN_VARS = ["alpha", "sigma_la", "la_effect", "sigma_period", "period_effect", "beta",
             "mu_tau", "sigma_tau", "tau", "att_pp", "att_relative", "att_typical_pp"]
EVENT_VARS = ["alpha", "sigma_la", "la_effect", "period_effect", "beta", "event_effect", "event_pp"]


@dataclass(frozen=True)
class ReportedResult:
    """The evaluation's own result for an outcome, with its provenance."""

    effect_pp: float
    p_value: float | None
    before_after: str
    grade: str
    source: str


@dataclass(frozen=True)
class OutcomeSpec:
    """What distinguishes one binary DiD outcome analysis from another."""

    name: str
    column: str
    label: str                       # "kinship care"
    population: str                  # who is counted
    rises_if_programme_works: bool   # the programme's theory of change
    reported: ReportedResult
    default_data: Callable[[int], SyntheticStudy]
    rope_pp: float = 2.0
    mid_pp: float = 5.0
    relative_target: float = 0.2
    pretrend_threshold_pp: float = 2.0

    @property
    def direction(self) -> int:
        return 1 if self.rises_if_programme_works else -1


def build_parser(spec: OutcomeSpec, doc: str | None) -> argparse.ArgumentParser:
    p = analysis_parser(spec.name, doc, priors=PRIOR_NAMES)
    p.add_argument("--no-la-trends", action="store_true", help="leave out LA-specific linear trends")
    return p


def load_cells(spec: OutcomeSpec, path: Path | None) -> tuple[DidCells, dict | None]:
    """The user's file, or the embedded synthetic study twin (with its truth)."""
    if path is not None:
        return load_did_data(path, spec.column), None
    study = spec.default_data()
    cells = cells_from_frame(study.children, spec.column, source=study.label,
                             data_hash=hash_frame(study.children), synthetic=True)
    return cells, study.truth


# ---------------------------------------------------------------- summaries (pure functions)

def effect_statements(spec: OutcomeSpec, prior: NamedPrior, post) -> dict:
    """Posterior statements about the ATT under one prior (all numbers from draws)."""
    att = post["att_pp"].values.ravel()
    rel = post["att_relative"].values.ravel()
    s = summarise_effect(att, rope=spec.rope_pp, mid=spec.mid_pp)
    typ = summarise_effect(post["att_typical_pp"].values, rope=spec.rope_pp, mid=spec.mid_pp)
    p_target = prob(spec.direction * rel >= spec.relative_target)
    worse = "falls" if spec.rises_if_programme_works else "rises"
    p_decrease = s.p_negative
    verb = "reduced" if s.mean < 0 else "increased"
    p_verb = p_decrease if s.mean < 0 else s.p_positive
    return {
        "prior": prior.name,
        "prior_description": prior.describe(),
        "att_pp": s.to_dict(),
        "att_relative_mean": float(rel.mean()),
        "att_relative_eti95": [float(q) for q in np.quantile(rel, [0.025, 0.975])],
        "counterfactual_pp_mean": float(post["counterfactual_pp"].values.mean()),
        "typical_la_effect_log_odds": summarise_effect(post["mu_tau"].values, rope=0, mid=0).to_dict(),
        "att_typical_pp": typ.to_dict(),
        "sigma_tau_mean": float(post["sigma_tau"].values.mean()),
        "p_att_negative": p_decrease,
        "p_att_below_minus_mid": float(np.mean(att < -spec.mid_pp)),
        "p_target_met": p_target,
        "statements": [
            state(p_verb, f"SofS {verb} {spec.label} in the pilot LAs"),
            state(float(np.mean(att < -spec.mid_pp)), f"{spec.label} fell by more than {spec.mid_pp:g} pp"),
            state(s.p_in_rope, f"the change in {spec.label} was within ±{spec.rope_pp:g} pp (practically nil)"),
            state(typ.p_negative if s.mean < 0 else typ.p_positive,
                  f"SofS {verb} {spec.label} in a typical LA like the pilots (between-LA variation included)"),
            state(p_target, f"the programme's target was met ({spec.label} {'rose' if spec.direction > 0 else 'fell'} "
                            f"by at least {spec.relative_target:.0%} relative)"),
        ],
        "direction_note": f"the programme expected {spec.label} to {'rise' if spec.direction > 0 else 'fall'}; "
                          f"a result where it {worse} is contrary to its theory of change",
    }


def interval_table(post, var: str, dim: str, prior: str) -> pd.DataFrame:
    x = post[var]
    draws = x.stack(sample=("chain", "draw")).transpose(dim, "sample").values
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=1)
    return pd.DataFrame({dim: list(x[dim].values), "prior": prior, "mean": draws.mean(1),
                         "eti95_low": lo, "eti95_high": hi, "p_negative": (draws < 0).mean(1)})


def event_table(post, threshold: float) -> pd.DataFrame:
    table = interval_table(post, "event_pp", "event_time", "neutral")
    draws = post["event_pp"].stack(sample=("chain", "draw")).transpose("event_time", "sample").values
    table["p_abs_gt_threshold"] = (np.abs(draws) > threshold).mean(1)
    table["pre_period"] = [str(k).startswith("<=") or (str(k).lstrip("-").isdigit() and int(k) < 0)
                           for k in table["event_time"]]
    return table.rename(columns={"event_time": "event_time"}).drop(columns="prior")


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
    a = st["att_pp"]
    return {"prior": st["prior"], "att_pp_mean": a["mean"], "att_pp_eti95_low": a["eti95_low"],
            "att_pp_eti95_high": a["eti95_high"], "typical_la_att_pp_mean": st["att_typical_pp"]["mean"],
            "typical_la_att_pp_eti95_low": st["att_typical_pp"]["eti95_low"],
            "typical_la_att_pp_eti95_high": st["att_typical_pp"]["eti95_high"], "relative_change_mean": st["att_relative_mean"],
            "p_att_lt_0": a["p_negative"], f"p_att_lt_minus_{spec.mid_pp:g}pp": st["p_att_below_minus_mid"],
            "p_below_rope": a["p_below_rope"], "p_in_rope": a["p_in_rope"], "p_above_rope": a["p_above_rope"],
            "p_target_met": st["p_target_met"], "max_rhat": diag.table["rhat"].max(),
            "min_ess_bulk": diag.table["ess_bulk"].min(), "divergences": diag.divergences,
            "diagnostics_ok": diag.ok}


def markdown_page(spec: OutcomeSpec, cells: DidCells, statements: list[dict], summary: pd.DataFrame,
                  freq: FrequentistDid, events: pd.DataFrame, diags: dict[str, Diagnostics], truth: dict | None) -> str:
    r = spec.reported
    lines = [f"# {spec.label.capitalize()}: Bayesian re-analysis of the SofS difference-in-differences", ""]
    if cells.synthetic:
        lines += ["> **SYNTHETIC DATA.** These results come from the embedded study twin: simulated children "
                  "calibrated to the published results. They illustrate the method; they are not evidence "
                  "about real children.", ""]
    lines += [f"Population: {spec.population}. Data: {cells.source} ({cells.n_children} children in "
              f"{len(cells.cells)} cells, {len(cells.pilots)} pilot and {len(cells.las) - len(cells.pilots)} "
              "comparator LAs).", "", "## The report's result", "",
              f"{r.effect_pp:+.2f} pp ({r.before_after}), p = {r.p_value}; graded: *{r.grade}* ({r.source}).", "",
              "## Our posterior statements", ""]
    for st in statements:
        a = st["att_pp"]
        lines += [f"**{st['prior']} prior** ({st['prior_description']}): ATT {a['mean']:+.1f} pp "
                  f"(95% interval {a['eti95_low']:+.1f} to {a['eti95_high']:+.1f}); relative change "
                  f"{100 * st['att_relative_mean']:+.0f}%.", ""]
        lines += [f"- {s}" for s in st["statements"]] + [""]
    lines += ["## Summary table", "", summary.to_markdown(index=False, floatfmt=".3f"), "",
              "## Frequentist cross-check (the report's method on the same data)", "",
              f"{freq.method}: {freq.estimate_pp:+.2f} pp (SE {freq.se_pp:.2f}; 95% CI {freq.ci95_low_pp:+.1f} "
              f"to {freq.ci95_high_pp:+.1f}), p = {freq.p_value:.3f}, {freq.n_clusters} clusters.", "",
              "The Bayesian ATT is the effect in these pilot LAs (g-computation over their post-period children); "
              "the typical-LA ATT carries the between-LA variation and is closer to what the frequentist LA-clustered "
              "standard error describes.", "",
              "## Parallel trends (event study)", "",
              events.to_markdown(index=False, floatfmt=".3f"), "", "## Diagnostics", ""]
    for name, d in diags.items():
        lines += [f"- {name}: " + d.banner().replace("\n", " ")]
    if truth is not None:
        lines += ["", "## Known truth (synthetic data only)", "",
                  f"True ATT {truth['att_pp']:+.2f} pp; true relative change {100 * truth['att_relative']:+.1f}%."]
    lines += ["", "Figures: att_posterior.png, la_effects.png, event_study.png, ppc_share.png, prior_predictive.png."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the run

def run(spec: OutcomeSpec, args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    cells, truth = load_cells(spec, args.data)
    log(f"[{spec.name}] data: {cells.source}: {cells.n_children} children, {len(cells.cells)} cells", quiet=quiet)
    analysis = cells.analysis_cells()
    pre = analysis[analysis.phase == "pre"]
    pre_share = float(pre["y"].sum() / pre["n"].sum())
    priors = select_priors(effect_priors(pre_share, relative_target=spec.relative_target,
                                         direction=spec.direction, outcome_label=spec.label),
                           args.prior, args.prior_override)
    la_trends = not args.no_la_trends
    design = did_design(analysis, las=cells.las, pilots=cells.pilots, years=cells.years, covariates=cells.covariates)
    model = build_did_model(design, priors[0], la_trends=la_trends)
    log(f"[{spec.name}] compiling the DiD model (once for all priors)...", quiet=quiet)
    sampler = CompiledSampler(model)

    fits, diags, statements, la_tables, prior_att, prior_share = {}, {}, [], [], {}, {}
    for i, prior in enumerate(priors):
        log(f"[{spec.name}] sampling under the {prior.name} prior ({i + 1}/{len(priors)})...", quiet=quiet)
        idata = sampler.sample(model_data(design, prior), draws=args.draws, tune=args.tune, chains=args.chains,
                               seed=args.seed + i, progress=not quiet)
        with model:
            pm.set_data({"prior_mean": prior.mean, "prior_sd": prior.sd})
            prior_pred = pm.sample_prior_predictive(draws=500, random_seed=args.seed + 100 + i,
                                                    var_names=["att_pp", "y_obs"])
            ppc = pm.sample_posterior_predictive(idata, var_names=["y_obs"], random_seed=args.seed + 200 + i,
                                                 progressbar=False)
        idata["posterior_predictive"] = ppc["posterior_predictive"]
        idata["prior"] = prior_pred["prior"]
        idata["prior_predictive"] = prior_pred["prior_predictive"]
        diag = check_sampling(idata, [v for v in MAIN_VARS if v in idata["posterior"]])
        log(diag.banner(), quiet=quiet and diag.ok)
        fits[prior.name], diags[prior.name] = idata, diag
        post = idata["posterior"]
        statements.append(effect_statements(spec, prior, post))
        la_tables.append(interval_table(post, "att_la_pp", "pilot", prior.name))
        prior_att[prior.name] = prior_pred["prior"]["att_pp"].values.ravel()
        prior_share[prior.name] = 100 * prior_pred["prior_predictive"]["y_obs"].values.reshape(-1, len(analysis)).sum(1) / analysis["n"].sum()

    log(f"[{spec.name}] event study (parallel-trends check)...", quiet=quiet)
    event_design = did_design(cells.cells, las=cells.las, pilots=cells.pilots, years=cells.years,
                              covariates=cells.covariates)
    event_fit = CompiledSampler(build_did_model(event_design, priors[0], event_study=True)).sample(
        draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed + 50, progress=not quiet)
    diags["event study"] = check_sampling(event_fit, EVENT_VARS)
    log(diags["event study"].banner(), quiet=quiet and diags["event study"].ok)
    events = event_table(event_fit["posterior"], spec.pretrend_threshold_pp)

    freq = lpm_did(analysis, cells.covariates)
    summary = pd.DataFrame([summary_row(spec, st, diags[st["prior"]]) for st in statements])
    la_effects = pd.concat(la_tables, ignore_index=True)
    first = fits[priors[0].name]
    y_pred = first["posterior_predictive"]["y_obs"].values.reshape(-1, len(analysis))
    ppc_table = share_ppc_table(analysis, y_pred)
    diag_table = pd.concat({k: d.table for k, d in diags.items()}, names=["fit"]).reset_index()

    record = {
        "outcome": spec.name, "label": spec.label, "population": spec.population,
        "synthetic": cells.synthetic, "data_source": cells.source,
        "report": vars(spec.reported), "priors": {p.name: vars(p) for p in priors},
        "results": statements, "frequentist_cross_check": freq.to_dict(),
        "event_study": events.to_dict(orient="records"),
        "pretrend_statement": [state(float(r.p_abs_gt_threshold),
                                     f"the pre-period effect at year {r.event_time} exceeds ±{spec.pretrend_threshold_pp:g} pp")
                               for r in events.itertuples() if r.pre_period],
        "diagnostics": {k: d.to_dict() for k, d in diags.items()},
        "diagnostics_ok": all(d.ok for d in diags.values()),
        "truth": truth,
        "provenance": provenance(seed=args.seed, data_hash=cells.data_hash, data_label=cells.source, argv=argv,
                                 draws=args.draws, tune=args.tune, chains=args.chains, la_trends=la_trends),
    }

    with OutputDir(args.out) as out:
        for name, idata in fits.items():
            idata.to_netcdf(out / f"posterior_{name}.nc")
        event_fit.to_netcdf(out / "posterior_event_study.nc")
        out.write_table("summary", summary)
        out.write_table("la_effects", la_effects)
        out.write_table("event_study", events)
        out.write_table("ppc_share", ppc_table)
        out.write_table("diagnostics", diag_table)
        out.write_json("statements.json", record)
        out.write_text("report.md", markdown_page(spec, cells, statements, summary, freq, events, diags, truth))
        syn = cells.synthetic
        out.save_figure("att_posterior.png", fig.plot_effect_by_prior(
            {p.name: fits[p.name]["posterior"]["att_pp"].values for p in priors}, rope=spec.rope_pp,
            xlabel=f"ATT on {spec.label} (percentage points)", prior_draws=prior_att,
            title=f"SofS effect on {spec.label}: posterior by prior", report_value=spec.reported.effect_pp,
            synthetic=syn))
        out.save_figure("la_effects.png", fig.plot_forest(
            la_effects, label_col="pilot", xlabel=f"LA-specific effect on {spec.label} (pp)",
            title="Pilot LA effects (partial pooling)", truth=(truth or {}).get("att_la_pp"), synthetic=syn))
        out.save_figure("event_study.png", fig.plot_event_study(
            events, threshold=spec.pretrend_threshold_pp, ylabel=f"effect on {spec.label} (pp)", synthetic=syn))
        out.save_figure("ppc_share.png", fig.plot_share_ppc(ppc_table, ylabel=f"{spec.label} (%)", synthetic=syn))
        out.save_figure("prior_predictive.png", fig.plot_prior_predictive(
            100 * analysis["y"].sum() / analysis["n"].sum(), prior_share,
            xlabel=f"overall {spec.label} share (%)", synthetic=syn))
        out.commit()

    _print_headline(spec, statements, freq, record["diagnostics_ok"], cells.synthetic, args.out)
    if args.strict and not record["diagnostics_ok"]:
        log("--strict: sampling diagnostics failed; exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _print_headline(spec: OutcomeSpec, statements: list[dict], freq: FrequentistDid, ok: bool,
                    synthetic: bool, out: Path) -> None:
    r = spec.reported
    if synthetic:
        print("NOTE: SYNTHETIC DATA (embedded study twin calibrated to the published results)")
    print(f"{spec.label}: report {r.effect_pp:+.2f} pp, p = {r.p_value} -> '{r.grade}'")
    for st in statements:
        a = st["att_pp"]
        print(f"  {st['prior']:>12}: ATT {a['mean']:+.1f} pp [{a['eti95_low']:+.1f}, {a['eti95_high']:+.1f}]; "
              + st["statements"][0])
    print(f"  frequentist LPM DiD on the same data: {freq.estimate_pp:+.2f} pp (SE {freq.se_pp:.2f}), p = {freq.p_value:.3f}")
    if not ok:
        print("  WARNING: sampling diagnostics failed (see above and statements.json)")
    print(f"  outputs: {out}/")


def main(spec: OutcomeSpec, argv: list[str] | None = None, doc: str | None = None) -> int:
    parser = build_parser(spec, doc)
    args = parser.parse_args(argv)
    return run_cli(lambda: run(spec, args, argv))
