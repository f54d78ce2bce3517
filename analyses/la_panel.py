"""LA-level re-analysis of the named SofS pilots on published DfE statistics.

Compares the named pilot LAs (treatment table: ``data/la_panel_treatment.csv``) with their
nearest DfE statistical neighbours by a hierarchical Bayesian difference-in-differences with LA
and year effects, staggered adoption (Round 1 pilots from 2014-15, Bexley from 2017-18) and
an event study, on the public panels in ``../shared/data/dfe-la-panel/`` (or fresh copies)::

    uv run python -m analyses.la_panel                          # re-referrals within 12 months
    uv run python -m analyses.la_panel --outcome turnover       # or agency, absence, vacancy, caseload
    uv run python -m analyses.la_panel --exclude my_sofs_users.csv --n-neighbours 3 --strict

Beside each posterior statement stands the report's own verdict for the indicator (RR1054,
Table 7 and the text after it: a two-factor ANOVA of pilots vs neighbours that found "No
impact"), and the same ANOVA re-run on these data.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.common import (EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, analysis_parser, log, provenance, run_cli)
from data import la_panel as lp
from figures import did as did_fig
from figures import la_panel as fig
from models import la_panel as lm
from models.did_hierarchical import effect_priors
from models.priors import PRIOR_NAMES, select_priors
from models.statements import state

NAME = "la_panel"
REPORT_YEARS = (2015, 2019)  # 2014/15-2018/19, the report's analysis period, as years ending March


@dataclass(frozen=True)
class ReportVerdict:
    """The report's own LA-level result for an indicator, in its words, with where it is."""

    verdict: str
    table_row: str
    text: str
    method: str


_METHOD = ("pilots compared with their statistical nearest neighbours (SNNs) not reported to use SofS, "
           "2014/15-2018/19, by a two-factor analysis (pilot status x year); a difference that did not "
           "change over time was read as 'no impact' (RR1054, 'Outcomes for children and families' and Appendix 9)")
REPORT = {
    "referrals": ReportVerdict(
        "No impact",
        "Table 7, 'Referrals': 'Referral rate  Percentage of (1) repeat referrals, (2) resulted in no further "
        "action and (3) where the child was assessed not to be in need' -> 'No impact'",
        "There were no significant differences between the pilots and SNNs in outcome measures related to referrals.",
        _METHOD),
    "workforce": ReportVerdict(
        "No impact",
        "Table 7, 'Workforce': 'Caseload and CiN per social worker Sickness absence rate Vacancy, turnover and "
        "agency worker rates' -> 'No impact'",
        "When data from the DfE Children's Social Work workforce collected between 2015 and 2019 were examined "
        "there was no evidence that the use of SofS had had any impact on staff wellbeing (as measured by caseload "
        "and the level of sickness absence). Nor did it have any impact on the retention of staff or the use of "
        "agency staff (see Appendix 9).",
        _METHOD),
}
NOTES = {
    "rereferral": ("Re-referrals here are re-referrals within 12 months of a previous referral, as a share of the "
                   "year's referrals (DfE children in need census). The report's child-level DiD (Table 8) used "
                   "re-referral within 6 months of a case closure, a different measure: the two are not comparable."),
    "workforce": ("The workforce panel starts in the year ending March 2017, after the Round 1 pilots adopted SofS "
                  "(2014-15): they have no pre-adoption year and cannot enter a DiD. Only pilots adopting later "
                  "(Bexley, 2017-18) contribute, with one pre-adoption year: read the result as a one-LA comparison."),
}


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser(NAME, __doc__, priors=PRIOR_NAMES)
    for action in p._actions:  # the shared --data is a file; here it is the panel folder
        if action.dest == "data":
            action.help = f"folder holding the three panel CSVs (default: {lp.DEFAULT_PANEL_DIR})"
        if action.dest == "out":
            action.default = None
            action.help = "output folder (default: results/la_panel/<outcome>)"
        if action.dest == "tune":
            action.default = 500
            action.help = "tuning draws per chain (nutpie adapts quickly; default 500)"
    p.add_argument("--outcome", default="rereferral", choices=list(lp.OUTCOMES), help="indicator (default: rereferral)")
    p.add_argument("--referrals", type=Path, help="referrals CSV (overrides the folder's la_referrals.csv)")
    p.add_argument("--workforce", type=Path, help="workforce CSV (overrides the folder's la_workforce.csv)")
    p.add_argument("--neighbours", type=Path, help="statistical neighbours CSV (overrides the folder's)")
    p.add_argument("--treatment", type=Path, default=lp.DEFAULT_TREATMENT,
                   help="treatment table: pilot LAs, adoption year, leaving (default: data/la_panel_treatment.csv)")
    p.add_argument("--exclude", type=Path, default=None,
                   help="LAs to leave out, e.g. neighbours known to use SofS (template: data/la_panel_exclusions.csv)")
    p.add_argument("--n-neighbours", type=int, default=5, help="nearest eligible neighbours per pilot (1-10; default 5)")
    p.add_argument("--boundary", default="drop", choices=lp.BOUNDARY_POLICIES,
                   help="LAs whose boundaries changed in the window: drop them (default) or map them to a consistent area")
    p.add_argument("--after-exit", default=None, choices=lp.AFTER_EXIT,
                   help="years after a pilot left (overrides the treatment table's after_exit column)")
    p.add_argument("--first-year", type=int, default=None, help="first year ending March (default: the panel's first)")
    p.add_argument("--last-year", type=int, default=2020,
                   help="last year ending March (default 2020: the end of Round 2 in September 2019)")
    p.add_argument("--likelihood", default=None, choices=lm.PANEL_LIKELIHOODS,
                   help="default: betabinomial for re-referrals, student for rates and caseloads")
    p.add_argument("--la-trends", action="store_true", help="add LA-specific linear trends (main form)")
    p.add_argument("--no-reweight", action="store_true",
                   help="fit every named prior by NUTS instead of reweighting the broadest prior's fit")
    return p


# ---------------------------------------------------------------------------- text

def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fmt(x: float, unit: str) -> str:
    return f"{x:+.1f} {unit}" if unit == "pp" else f"{x:+.2f} {unit}"


def headline(outcome: lp.Outcome, design: lp.PanelDesign, statements: list[dict], verdict: ReportVerdict) -> str:
    """One paragraph: the estimate under each prior beside the report's verdict."""
    u = outcome.unit
    main = next((s for s in statements if s["prior"] == "neutral"), statements[0])
    a = main["att"]
    text = (f"{_cap(outcome.label)}, {len(design.pilots)} pilot LA{'s' if len(design.pilots) != 1 else ''} vs {len(design.comparator_las)} statistical "
            f"neighbours, {design.first_year}-{design.last_year} (years ending March): effect of SofS "
            f"{_fmt(a['mean'], u)} (95% interval {_fmt(a['eti95_low'], u)} to {_fmt(a['eti95_high'], u)}) under the "
            f"{main['prior']} prior; {main['statements'][0]}; {main['statements'][2]}.")
    others = [f"{s['prior']} {_fmt(s['att']['mean'], u)} [{_fmt(s['att']['eti95_low'], u)}, {_fmt(s['att']['eti95_high'], u)}]"
              for s in statements if s is not main]
    if others:
        text += " Other priors: " + "; ".join(others) + "."
    return text + f" Report: \"{verdict.verdict}\" ({verdict.table_row.split(':')[0]})."


def markdown_page(ctx: dict) -> str:
    o: lp.Outcome = ctx["outcome"]
    d: lp.PanelDesign = ctx["design"]
    v: ReportVerdict = ctx["verdict"]
    lines = [f"# {_cap(o.label)}: LA-level Bayesian re-analysis of the SofS pilots", "",
             "Real data: published DfE official statistics (children in need census, children's social work "
             "workforce), pilots named in RR1054 footnote 2, compared with their DfE statistical neighbours.", ""]
    lines += [f"> {n}" for n in ctx["notes"]] + [""]
    lines += ["## Headline", "", ctx["headline"], "",
              "## The report's verdict", "", f"*{v.verdict}* — {v.table_row}.", "", f"> {v.text}", "",
              f"Method: {v.method}.", "",
              "## Our posterior statements", ""]
    for st in ctx["statements"]:
        a = st["att"]
        lines += [f"**{st['prior']} prior** ({st['prior_description']}): effect {_fmt(a['mean'], o.unit)} "
                  f"(95% interval {_fmt(a['eti95_low'], o.unit)} to {_fmt(a['eti95_high'], o.unit)}); relative change "
                  f"{100 * st['att_relative_mean']:+.0f}%; counterfactual {st['counterfactual_mean']:.1f}.", ""]
        if ctx["reweighting"].get(st["prior"]):
            r = ctx["reweighting"][st["prior"]]
            lines += [f"(Obtained by PSIS reweighting of the {r['reference_prior']} fit: Pareto k {r['pareto_k']:.2f}, "
                      f"importance ESS {r['importance_ess']:.0f} of {r['n_draws']}.)", ""]
        lines += [f"- {s}" for s in st["statements"]] + [""]
    lines += ["## Summary table", "", ctx["summary"].to_markdown(index=False, floatfmt=".3f"), "",
              "## Pilot LAs", "", ctx["la_effects"].to_markdown(index=False, floatfmt=".2f"), ""]
    if len(d.pilots_excluded):
        lines += ["Pilots left out:", ""] + [f"- {r.pilot}: {r.reason}" for r in d.pilots_excluded.itertuples()] + [""]
    lines += ["## Parallel trends and dynamics (event study)", "", ctx["events"].to_markdown(index=False, floatfmt=".3f"),
              ""] + [f"- {s}" for s in ctx["pretrend"]] + [""]
    an = ctx["anova"]
    lines += ["## The report's method on these data", ""]
    if "p_interaction" in an:
        lines += [f"Two-factor ANOVA ({an['method']}), years ending March {an['years'][0]}-{an['years'][1]}, "
                  f"{an['n_pilots']} pilots and {an['n_comparators']} neighbours: pilot status p = {an['p_pilot_status']:.3f}, "
                  f"year p = {an['p_year']:.3f}, interaction p = {an['p_interaction']:.3f} (pilot mean "
                  f"{an['mean_pilot']:.1f}, neighbours {an['mean_comparator']:.1f}). For the Round 1 pilots every one of "
                  "these years is after adoption, so the report's design had no before period for them: a level "
                  "difference could itself be the effect, and 'no change over time' is not evidence of no effect.", ""]
    else:
        lines += [an.get("note", "not run"), ""]
    lines += ["## Data decisions", "",
              f"Window: years ending March {d.first_year}-{d.last_year}; neighbours per pilot: {d.settings['n_neighbours']}; "
              f"boundary changes: {d.settings['boundary']}; after a pilot left: {d.settings['after_exit']}; "
              f"likelihood: {ctx['likelihood']}; LA trends: {ctx['la_trends']}.", "",
              "Comparators chosen (nearest first; see comparators.csv for every neighbour and why it was skipped):", ""]
    for pilot, nbs in d.neighbours_of().items():
        lines.append(f"- {pilot}: {', '.join(nbs)}")
    lines += [""]
    if len(d.boundary):
        lines += ["Boundary changes among these LAs:", ""] + [
            f"- {r.la_name} ({r.la_code}): {r.action}{' -> ' + r.unit if r.unit else ''}" for r in d.boundary.itertuples()] + [""]
    if len(d.exclusions):
        lines += ["Excluded by the user:", ""] + [f"- {r.la_name} ({r.la_code}): {r.reason}" for r in d.exclusions.itertuples()] + [""]
    if len(d.missing):
        lines += [f"Missing LA-years (published as codes, left out): " + ", ".join(
            f"{r.la_name} {r.year} ({r.code})" for r in d.missing.itertuples()), ""]
    lines += ["## Checks", "", f"Posterior predictive: {100 * ctx['ppc_coverage']:.0f}% of LA-year cells lie inside "
              "their 95% predictive interval.", ""]
    for name, dg in ctx["diagnostics"].items():
        lines.append(f"- {name}: " + dg.banner().replace("\n", " "))
    lines += ["", "Figures: trends.png, la_effects.png, att_posterior.png, event_study.png, ppc.png, prior_predictive.png."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the run

def _priors(outcome: lp.Outcome, cells: pd.DataFrame, likelihood: str, args) -> list:
    pre = cells[cells.phase == "pre"]
    if lm.is_count(likelihood):
        named = effect_priors(float(pre["y"].sum() / pre["n"].sum()), direction=outcome.direction,
                              outcome_label=outcome.label, likelihood="binomial")
    else:
        named = effect_priors(float(pre["y"].mean()), direction=outcome.direction, outcome_label=outcome.label,
                              likelihood="normal", outcome_sd=float(cells["y"].std()))
    return select_priors(named, args.prior, args.prior_override)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    outcome = lp.OUTCOMES[args.outcome]
    likelihood = args.likelihood or lm.DEFAULT_LIKELIHOOD[outcome.kind]
    out_path = args.out or Path("results") / NAME / outcome.name

    panel = lp.load_panel(args.data, referrals=args.referrals, workforce=args.workforce, neighbours=args.neighbours)
    treatment = lp.load_treatment(args.treatment, panel)
    exclusions = lp.load_exclusions(args.exclude, panel) if args.exclude else None
    design = lp.build_design(panel, outcome, treatment, exclusions=exclusions, n_neighbours=args.n_neighbours,
                             first_year=args.first_year, last_year=args.last_year, boundary=args.boundary,
                             after_exit=args.after_exit)
    cells = design.analysis_cells()
    log(f"[{NAME}] {outcome.name}: {len(design.pilots)} pilots, {len(design.comparator_las)} neighbours, "
        f"{len(cells)} LA-year cells, {design.first_year}-{design.last_year}", quiet=quiet)
    for r in design.pilots_excluded.itertuples():
        log(f"[{NAME}] pilot left out: {r.pilot}: {r.reason}", quiet=quiet)

    priors = _priors(outcome, cells, likelihood, args)
    md = lm.panel_design(cells, las=design.las, pilots=design.pilots, years=design.years, likelihood=likelihood)
    log(f"[{NAME}] compiling the {likelihood} DiD (one graph for every prior and the event study)...", quiet=quiet)
    fits = lm.fit_panel(md, priors, likelihood=likelihood, la_trends=args.la_trends, draws=args.draws, tune=args.tune,
                        chains=args.chains, seed=args.seed, reweight=not args.no_reweight, progress=not quiet,
                        log=lambda m: log(f"[{NAME}] {m}", quiet=quiet))
    for name, dg in fits.diagnostics.items():
        log(f"[{NAME}] {name}: " + dg.banner(), quiet=quiet and dg.ok)
    log(f"[{NAME}] event study: " + fits.event_diagnostics.banner(), quiet=quiet and fits.event_diagnostics.ok)

    # summaries (pure functions of the draws)
    t_sum = time.perf_counter()
    nm = lm.names_for(likelihood)
    reading = lm.Reading(outcome.short, outcome.unit, outcome.rope, outcome.mid, outcome.direction)
    statements = [lm.effect_statements(reading, p, fits.fits[p.name]["posterior"], likelihood=likelihood) for p in priors]
    summary = pd.DataFrame([lm.summary_row(s, fits.diagnostics[s["prior"]], outcome.unit) for s in statements])
    la_effects = pd.concat([lm.interval_table(fits.fits[p.name]["posterior"], nm["att_la"], "pilot", p.name,
                                              outcome.direction) for p in priors], ignore_index=True)
    events = lm.event_table(fits.event["posterior"], nm["event"], outcome.mid, md)
    pretrend = [state(float(r.p_abs_gt_threshold), f"the pre-adoption effect at year {r.event_time} exceeds "
                                                   f"±{outcome.mid:g} {outcome.unit} (parallel trends violated; "
                                                   f"{r.n_pilots} pilot LA{'s' if r.n_pilots != 1 else ''} in this bin)")
                for r in events.itertuples() if r.pre_period]
    ref_post = fits.fits[fits.reference]["posterior"]
    mu, mu0 = lm.cell_expectations(md, ref_post, likelihood=likelihood, la_trends=args.la_trends)
    y_rep = lm.posterior_predict(md, ref_post, mu, likelihood=likelihood, rng=np.random.default_rng(args.seed + 7))
    coverage = lm.ppc_coverage(cells, y_rep)
    ppc = lm.ppc_table(cells, y_rep, count=lm.is_count(likelihood))
    trends = lm.trend_table(cells, mu, mu0, design.neighbours_of(), count=lm.is_count(likelihood))
    anova = lm.two_factor_anova(design.cells, years=REPORT_YEARS, count=lm.is_count(likelihood))
    log(f"[{NAME}] prior predictive check...", quiet=quiet)
    t_pp = time.perf_counter()
    prior_pred = lm.prior_predictive(md, priors, likelihood=likelihood, la_trends=args.la_trends, seed=args.seed + 300)
    t_pp = time.perf_counter() - t_pp
    t_sum = time.perf_counter() - t_sum - t_pp
    verdict = REPORT[outcome.file]
    notes = [NOTES["rereferral"] if outcome.name == "rereferral" else NOTES["workforce"]]
    if lm.is_count(likelihood):
        notes.append("Effects are in percentage points (pp) of the re-referral share, averaged over the pilots' "
                     "treated years weighted by referrals.")
    diags = {**{f"main ({k})": v for k, v in fits.diagnostics.items()}, "event study": fits.event_diagnostics}
    ok = all(d.ok for d in diags.values())
    text = headline(outcome, design, statements, verdict)

    ctx = {"outcome": outcome, "design": design, "verdict": verdict, "notes": notes, "headline": text,
           "statements": statements, "summary": summary, "la_effects": la_effects, "events": events,
           "pretrend": pretrend, "anova": anova, "ppc_coverage": coverage, "diagnostics": diags,
           "reweighting": fits.reweighting, "likelihood": likelihood, "la_trends": args.la_trends}
    record = {
        "outcome": outcome.name, "label": outcome.label, "unit": outcome.unit, "real_data": True,
        "headline": text, "notes": notes,
        "report": {"indicator_group": outcome.file, **vars(verdict)},
        "reports_method_on_these_data": anova,
        "priors": {p.name: vars(p) for p in priors}, "results": statements, "reweighting": fits.reweighting,
        "event_study": events.to_dict(orient="records"), "pretrend_statements": pretrend,
        "ppc_coverage_95": coverage,
        "design": {"pilots": design.pilots, "comparators": design.comparator_las, "neighbours_of": design.neighbours_of(),
                   "pilots_excluded": design.pilots_excluded.to_dict(orient="records"),
                   "boundary": design.boundary.to_dict(orient="records"),
                   "exclusions": design.exclusions.to_dict(orient="records"),
                   "missing_cells": design.missing.to_dict(orient="records"), "n_cells": len(cells),
                   **design.settings, "likelihood": likelihood, "la_trends": args.la_trends},
        "diagnostics": {k: d.to_dict() for k, d in diags.items()}, "diagnostics_ok": ok,
        "timings_seconds": {"compile": fits.compile_seconds, **fits.sample_seconds, "prior_predictive": round(t_pp, 2),
                            "summaries": round(t_sum, 2)},
        "provenance": provenance(seed=args.seed, data_hash=";".join(f"{k}={v}" for k, v in panel.hashes.items()),
                                 data_label=", ".join(str(p) for p in panel.paths.values()), argv=argv,
                                 treatment=str(args.treatment), exclusions=str(args.exclude) if args.exclude else None,
                                 draws=args.draws, tune=args.tune, chains=args.chains),
    }

    ylabel = "re-referrals (% of referrals)" if outcome.kind == "count" else outcome.label
    t_out = time.perf_counter()
    with OutputDir(out_path) as out:
        for name, idata in fits.fits.items():
            idata.to_netcdf(out / f"posterior_{name}.nc")
        fits.event.to_netcdf(out / "posterior_event_study.nc")
        out.write_table("summary", summary)
        out.write_table("la_effects", la_effects)
        out.write_table("event_study", events)
        out.write_table("comparators", design.comparators)
        out.write_table("boundary", design.boundary)
        out.write_table("cells", design.cells)
        out.write_table("trends", trends)
        out.write_table("ppc", ppc)
        out.write_table("diagnostics", pd.concat({k: d.table for k, d in diags.items()}, names=["fit"]).reset_index())
        out.write_json("statements.json", record)
        out.write_text("report.md", markdown_page(ctx))
        adoption = {r.la_name: int(r.adoption_year) for r in design.treatment.itertuples()}
        adoption["All pilots"] = int(design.treatment["adoption_year"].min())
        out.save_figure("trends.png", fig.plot_trends(
            trends, ylabel=ylabel, adoption=adoption,
            title=f"{_cap(outcome.label)}: pilots vs their statistical neighbours",
            note=notes[0] + " Bands: 95% posterior intervals (" + fits.reference + " prior); dotted line: adoption."))
        out.save_figure("la_effects.png", did_fig.plot_forest(
            la_effects, label_col="pilot", xlabel=f"effect on {outcome.label} ({outcome.unit})",
            title="Effect in each pilot LA (partial pooling)"))
        out.save_figure("att_posterior.png", did_fig.plot_effect_by_prior(
            {p.name: fits.fits[p.name]["posterior"][nm["att"]].values for p in priors}, rope=outcome.rope,
            xlabel=f"effect of SofS on {outcome.label} ({outcome.unit})",
            prior_draws={k: v["att"] for k, v in prior_pred.items()},
            title=f"Effect in the pilot LAs by prior (report: '{verdict.verdict}')"))
        out.save_figure("event_study.png", did_fig.plot_event_study(
            events, threshold=outcome.mid, ylabel=f"effect on {outcome.label} ({outcome.unit})"))
        out.save_figure("ppc.png", fig.relabel_years(did_fig.plot_share_ppc(ppc, ylabel=ylabel),
                                                     title=f"Posterior predictive check ({100 * coverage:.0f}% of "
                                                           "LA-years inside their 95% interval)"))
        observed = float(100 * cells["y"].sum() / cells["n"].sum()) if lm.is_count(likelihood) else float(cells["y"].mean())
        out.save_figure("prior_predictive.png", did_fig.plot_prior_predictive(
            observed, {k: v["overall"] for k, v in prior_pred.items()}, xlabel=f"overall {outcome.label}"))
        out.commit()
    log(f"[{NAME}] outputs written in {time.perf_counter() - t_out:.1f} s", quiet=quiet)

    print(text)
    for st in statements:
        print(f"  {st['prior']:>12}: " + "; ".join(st["statements"][:3]))
    if "p_interaction" in anova:
        print(f"  the report's two-factor ANOVA on these data ({anova['years'][0]}-{anova['years'][1]}): "
              f"pilot status p = {anova['p_pilot_status']:.3f}, interaction p = {anova['p_interaction']:.3f}")
    print(f"  note: {notes[0]}")
    if not ok:
        print("  WARNING: sampling diagnostics failed (see above and statements.json)")
    print(f"  outputs: {out_path}/")
    if args.strict and not ok:
        log("--strict: sampling diagnostics failed; exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.n_neighbours <= lp.N_NEIGHBOURS:
        parser.error(f"--n-neighbours must be between 1 and {lp.N_NEIGHBOURS}")
    kind = lp.OUTCOMES[args.outcome].kind
    if args.likelihood and lm.is_count(args.likelihood) != (kind == "count"):
        parser.error(f"--likelihood {args.likelihood} does not fit {args.outcome} ({kind}); use "
                     + ("betabinomial or binomial" if kind == "count" else "student or normal"))
    return run_cli(lambda: run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
