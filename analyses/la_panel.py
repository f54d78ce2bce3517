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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyses.common import analysis_parser, log, run_cli
from analyses.did_runner import Inputs, Plan, finish, named_priors, run_plan, settings_from
from data import la_panel as lp
from figures import la_panel as fig
from models.did.crosscheck import mean_did, two_factor_anova
from models.did.design import DesignSpec, canonical_cells
from models.did.likelihoods import get_likelihood
from models.did.model import ModelSpec, cell_predictors
from models.did.result import ReportedResult
from models.did.summaries import Reading, trend_table
from models.priors import PRIOR_NAMES
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported;
#: named REPORT_ENTRY because REPORT below holds the report's verdicts)
REPORT_ENTRY = ReportEntry(
    title='LA-level re-analysis of the named pilots',
    question="Did the named pilot LAs' published statistics change relative to their statistical neighbours?",
    data_note='REAL published DfE LA-level statistics',
    extra_inputs=('../shared/data/dfe-la-panel',),
    order=80,
)

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


#: Likelihoods by indicator kind (the engine's table, models.did.likelihoods)
PANEL_LIKELIHOODS = ("betabinomial", "binomial", "student", "normal")
DEFAULT_LIKELIHOOD = {"count": "betabinomial", "continuous": "student"}
#: Year effects: a fixed N(0, 0.5^2) scale (times the within-LA sd for continuous outcomes).
#: With eight to thirteen years there is little to pool, and on the real referrals panel a
#: learned scale was small and about as uncertain as the effects: a funnel that caused
#: divergent transitions in the event study.
YEAR_SD = 0.5



def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser(NAME, __doc__, priors=PRIOR_NAMES, target_accept=0.9, mass_matrix="diag")
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
    p.add_argument("--likelihood", default=None, choices=PANEL_LIKELIHOODS,
                   help="default: betabinomial for re-referrals, student for rates and caseloads")
    p.add_argument("--la-trends", action="store_true", help="add LA-specific linear trends (main form)")
    p.add_argument("--no-reweight", action="store_true",
                   help="fit every named prior by NUTS instead of reweighting the broadest prior's fit")
    return p


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def headline(outcome: lp.Outcome, design: lp.PanelDesign, result, verdict: ReportVerdict) -> str:
    """One paragraph: the estimate under each prior beside the report's verdict."""
    r = result.outcome
    f = lambda x: f"{x:+.{r.decimals}f} {r.units}"  # noqa: E731
    main = result.headline
    a = main.effect
    text = (f"{_cap(outcome.label)}, {len(design.pilots)} pilot LA{'s' if len(design.pilots) != 1 else ''} vs "
            f"{len(design.comparator_las)} statistical neighbours, {design.first_year}-{design.last_year} (years ending "
            f"March): effect of SofS {f(a['mean'])} (95% interval {f(a['eti95_low'])} to {f(a['eti95_high'])}) under the "
            f"{main.prior} prior; {main.statements[0]}; {main.statements[2]}.")
    others = [f"{s.prior} {f(s.effect['mean'])} [{f(s.effect['eti95_low'])}, {f(s.effect['eti95_high'])}]"
              for s in result.results if s is not main]
    if others:
        text += " Other priors: " + "; ".join(others) + "."
    return text + f" Report: \"{verdict.verdict}\" ({verdict.table_row.split(':')[0]})."


def extra_markdown(outcome: lp.Outcome, design: lp.PanelDesign, verdict: ReportVerdict, notes: list[str],
                   anova: dict, likelihood: str, la_trends: bool):
    def lines(run) -> list[str]:
        d = design
        out = ["## Data (real: published DfE official statistics)", "",
               "Children in need census and children's social work workforce; pilots named in RR1054 footnote 2, "
               "compared with their DfE statistical neighbours.", ""]
        out += [f"> {n}" for n in notes] + [""]
        out += ["## Headline", "", headline(outcome, d, run.result, verdict), "",
                "## The report's verdict", "", f"*{verdict.verdict}* — {verdict.table_row}.", "", f"> {verdict.text}", "",
                f"Method: {verdict.method}.", ""]
        for st in run.result.results:
            if st.reweighting:
                rw = st.reweighting
                out += [f"({st.prior} prior obtained by PSIS reweighting of the {rw['reference_prior']} fit: Pareto k "
                        f"{rw['pareto_k']:.2f}, importance ESS {rw['importance_ess']:.0f} of {rw['n_draws']}.)", ""]
        if len(d.pilots_excluded):
            out += ["Pilots left out:", ""] + [f"- {r.pilot}: {r.reason}" for r in d.pilots_excluded.itertuples()] + [""]
        out += ["## The report's method on these data", ""]
        if "p_interaction" in anova:
            out += [f"Two-factor ANOVA ({anova['method']}), years ending March {anova['years'][0]}-{anova['years'][1]}, "
                    f"{anova['n_pilots']} pilots and {anova['n_comparators']} neighbours: pilot status p = "
                    f"{anova['p_pilot_status']:.3f}, year p = {anova['p_year']:.3f}, interaction p = "
                    f"{anova['p_interaction']:.3f} (pilot mean {anova['mean_pilot']:.1f}, neighbours "
                    f"{anova['mean_comparator']:.1f}). For the Round 1 pilots every one of these years is after "
                    "adoption, so the report's design had no before period for them: a level difference could itself "
                    "be the effect, and 'no change over time' is not evidence of no effect.", ""]
        else:
            out += [anova.get("note", "not run"), ""]
        out += ["## Data decisions", "",
                f"Window: years ending March {d.first_year}-{d.last_year}; neighbours per pilot: "
                f"{d.settings['n_neighbours']}; boundary changes: {d.settings['boundary']}; after a pilot left: "
                f"{d.settings['after_exit']}; likelihood: {likelihood}; LA trends: {la_trends}.", "",
                "Comparators chosen (nearest first; see comparators.csv for every neighbour and why it was skipped):", ""]
        out += [f"- {pilot}: {', '.join(nbs)}" for pilot, nbs in d.neighbours_of().items()] + [""]
        if len(d.boundary):
            out += ["Boundary changes among these LAs:", ""] + [
                f"- {r.la_name} ({r.la_code}): {r.action}{' -> ' + r.unit if r.unit else ''}" for r in d.boundary.itertuples()]
            out += [""]
        if len(d.exclusions):
            out += ["Excluded by the user:", ""] + [f"- {r.la_name} ({r.la_code}): {r.reason}"
                                                   for r in d.exclusions.itertuples()] + [""]
        if len(d.missing):
            out += ["Missing LA-years (published as codes, left out): " + ", ".join(
                f"{r.la_name} {r.year} ({r.code})" for r in d.missing.itertuples()), ""]
        return out
    return lines


def extra_outputs(outcome: lp.Outcome, design: lp.PanelDesign, notes: list[str], ylabel: str):
    def write(out, run) -> None:
        exp = run.experiment
        ref = run.fits.fits[run.plan.priors[0].name]
        eta0, eta, nuis = cell_predictors(run.fits.model, ref.posterior)
        lik = exp.lik
        mu, mu0 = lik.response(eta, nuis, lib=np), lik.response(eta0, nuis, lib=np)
        panels = {"All pilots": (design.pilots, design.comparator_las),
                  **{p: ([p], nbs) for p, nbs in design.neighbours_of().items()}}
        trends = trend_table(exp.design, mu, mu0, panels, factor=100.0)
        out.write_table("comparators", design.comparators)
        out.write_table("boundary", design.boundary)
        out.write_table("cells", design.cells)
        out.write_table("trends", trends)
        adoption = {r.la_name: int(r.adoption_year) for r in design.treatment.itertuples()}
        adoption["All pilots"] = int(design.treatment["adoption_year"].min())
        out.save_figure("trends.png", fig.plot_trends(
            trends, ylabel=ylabel, adoption=adoption,
            title=f"{_cap(outcome.label)}: pilots vs their statistical neighbours",
            note=notes[0] + " Bands: 95% posterior intervals (" + run.plan.priors[0].name + " prior); dotted line: adoption."))
    return write


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    outcome = lp.OUTCOMES[args.outcome]
    likelihood = args.likelihood or DEFAULT_LIKELIHOOD[outcome.kind]
    lik = get_likelihood(likelihood)
    out_path = args.out or Path("results") / NAME / outcome.name

    panel = lp.load_panel(args.data, referrals=args.referrals, workforce=args.workforce, neighbours=args.neighbours)
    treatment = lp.load_treatment(args.treatment, panel)
    exclusions = lp.load_exclusions(args.exclude, panel) if args.exclude else None
    design = lp.build_design(panel, outcome, treatment, exclusions=exclusions, n_neighbours=args.n_neighbours,
                             first_year=args.first_year, last_year=args.last_year, boundary=args.boundary,
                             after_exit=args.after_exit)
    cells = canonical_cells(design.cells.assign(exited=design.cells["phase"].eq("exited")), unit="la", period="year",
                            cohort="adoption_year", settling="settling_years")
    log(f"[{NAME}] {outcome.name}: {len(design.pilots)} pilots, {len(design.comparator_las)} neighbours, "
        f"{len(cells)} LA-year cells, {design.first_year}-{design.last_year}", quiet=quiet)
    for r in design.pilots_excluded.itertuples():
        log(f"[{NAME}] pilot left out: {r.pilot}: {r.reason}", quiet=quiet)
    units = "pp" if outcome.kind == "count" else outcome.unit
    reading = Reading(outcome.short, units, outcome.rope, outcome.mid, outcome.direction, relative_target=0.2,
                      decimals=1 if units == "pp" else 2, subject="SofS", where="the pilot LAs", unit_noun="LA")
    design_spec = DesignSpec(likelihood, effects="unit", control="never", base="all", unit_trends=args.la_trends)
    model_spec = ModelSpec(period_effects="fixed", period_sd=YEAR_SD, cohort_levels=False)   # as its earlier releases
    priors, _, checks = named_priors(cells, design_spec, model_spec, reading, direction=outcome.direction,
                                     relative_target=0.2, target=None, choice=args.prior,
                                     overrides=args.prior_override,
                                     neutral_sd=2.0 * float(cells["y"].std()) if lik.identity else 1.0,
                                     scale_name="outcome units" if lik.identity else "log-odds ratio", seed=args.seed + 17)
    verdict = REPORT[outcome.file]
    notes = [NOTES["rereferral"] if outcome.name == "rereferral" else NOTES["workforce"]]
    if outcome.kind == "count":
        notes.append("Effects are in percentage points (pp) of the re-referral share, averaged over the pilots' "
                     "treated years weighted by referrals.")
    anova = two_factor_anova(cells.assign(phase=design.cells["phase"].to_numpy()), years=REPORT_YEARS,
                             share=outcome.kind == "count")
    ylabel = "re-referrals (% of referrals)" if outcome.kind == "count" else outcome.label
    inputs = Inputs(cells, ", ".join(str(p) for p in panel.paths.values()),
                    ";".join(f"{k}={v}" for k, v in panel.hashes.items()), False, float(cells["n"].sum()), notes)

    def frequentist(plan, exp):
        c = exp.design.cells.assign(treated_post=(exp.design.data["treated"] > 0).astype(float))
        if outcome.kind == "count":
            c = c.assign(y=100 * c["y"] / c["n"], n=1.0)
        return [mean_did(c, total=None, units=units, label="two-way fixed effects on LA-year values")]

    plan = Plan(name=NAME, title=f"{_cap(outcome.label)}: LA-level Bayesian re-analysis of the SofS pilots",
                reading=reading, design_spec=design_spec, model_spec=model_spec, priors=priors,
                settings=settings_from(args), seed=args.seed, out=out_path,
                population="LA-year indicators of the pilots and their statistical neighbours",
                reported=ReportedResult(None, units, None, "", verdict.verdict, verdict.table_row),
                pretrend_threshold=outcome.mid, unit_word="LA", unit_file="la_effects", period_word="year ending March",
                reweight=not args.no_reweight, strict=args.strict, quiet=quiet, keep_draws=args.keep_draws, argv=argv,
                provenance_extra={"treatment": str(args.treatment), "exclusions": str(args.exclude) if args.exclude else None,
                                  "outcome": outcome.name},
                frequentist=frequentist, prior_check=checks,
                why=("One effect per pilot LA after settling-in, partially pooled; comparators never treated; the event "
                     "study is a cohort-by-period companion fit."),
                extra={"real_data": True, "indicator": outcome.name, "notes": notes,
                       "report_verdict": {"indicator_group": outcome.file, **vars(verdict)},
                       "reports_method_on_these_data": anova,
                       "design": {"pilots": design.pilots, "comparators": design.comparator_las,
                                  "neighbours_of": design.neighbours_of(),
                                  "pilots_excluded": design.pilots_excluded.to_dict(orient="records"),
                                  "boundary": design.boundary.to_dict(orient="records"),
                                  "exclusions": design.exclusions.to_dict(orient="records"),
                                  "missing_cells": design.missing.to_dict(orient="records"), "n_cells": len(cells),
                                  **design.settings, "likelihood": likelihood, "la_trends": args.la_trends}},
                extra_outputs=extra_outputs(outcome, design, notes, ylabel),
                extra_markdown=extra_markdown(outcome, design, verdict, notes, anova, likelihood, args.la_trends))
    result_run = run_plan(plan, inputs)
    result_run.result.extra["headline"] = headline(outcome, design, result_run.result, verdict)
    code = finish(result_run)
    print(result_run.result.extra["headline"])
    if "p_interaction" in anova:
        print(f"  the report's two-factor ANOVA on these data ({anova['years'][0]}-{anova['years'][1]}): "
              f"pilot status p = {anova['p_pilot_status']:.3f}, interaction p = {anova['p_interaction']:.3f}")
    print(f"  note: {notes[0]}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.n_neighbours <= lp.N_NEIGHBOURS:
        parser.error(f"--n-neighbours must be between 1 and {lp.N_NEIGHBOURS}")
    kind = lp.OUTCOMES[args.outcome].kind
    if args.likelihood and (get_likelihood(args.likelihood).link == "logit") != (kind == "count"):
        parser.error(f"--likelihood {args.likelihood} does not fit {args.outcome} ({kind}); use "
                     + ("betabinomial or binomial" if kind == "count" else "student or normal"))
    return run_cli(lambda: run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
