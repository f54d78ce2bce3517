"""Re-analyse every published result of the evaluation from the numbers the report printed.

Reads the transcription in ``data/published/`` (or ``--data FOLDER``), checks it against the
report text when that is available, recomputes what was printed (statcheck/GRIM), and
re-analyses each result under a grid of nine priors (sceptical / neutral / enthusiastic x
weak / moderate / strong, anchored to the programme's claimed 20% shift): posterior mean and
95% interval, P(benefit), P(harm), P(|effect| > MID), P(programme target met). Tables 2 and 4
get a hierarchical binomial model across pilots (P(Pilot 8 is best), spread between pilots).

Writes to ``--out`` (default ``results/published``):
  table8_reanalysed.csv/.md/.png   the headline: Table 8's grades beside our statements
  statements.json                  every statement, with provenance and the reconstructions used
  grid.csv/.md                     every result x every prior
  consistency.csv/.md              every recomputation of a printed number
  pilots.csv/.md/.png              Tables 2 and 4 across pilots; pilots_posterior.nc
  p_values_only.csv/.md            results printed with only a p value (bounds)
  diagnostics.json, summary.md
"""

from __future__ import annotations

import argparse
import sys
import time

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from analyses.common import EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, analysis_parser, hash_file, log, provenance, run_cli
from data.errors import DataError
from data.published import PUBLISHED_DIR, data_files, default_report_path, load_published, verify_against_report
from figures.published import pilots_figure, table8_figure
from models import consistency as cons
from models import published_reanalysis as pr
from models.diagnostics import check_sampling
from models.sampling import CompiledSampler
from models.serialize import write_idata
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Published results re-analysed',
    question='What do the numbers the report printed support, read as posterior probabilities under sceptical, neutral and enthusiastic priors?',
    data_note='REAL published numbers: estimates, p values and survey counts printed in RR1054 (transcribed in data/published/)',
    extra_inputs=('../shared/seed',),
    order=10,
)


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser("published", __doc__)
    for action in p._actions:
        if action.dest == "data":
            action.help = "folder with your own transcription (the files of data/published); default: data/published"
    p.add_argument("--report", type=Path, default=None,
                   help="report text to verify every quote against (default: shared/seed copy when present)")
    p.add_argument("--headline-strength", default="moderate", choices=pr.STRENGTHS,
                   help="prior strength shown in table8_reanalysed (the grid has all three)")
    p.add_argument("--baseline", action="append", default=[], metavar="ID=VALUE",
                   help="counterfactual level of a DiD result the report does not print "
                        "(did_duration_days, did_same_day); repeatable")
    p.add_argument("--sd-range", default="0.3:1.2", metavar="LOW:HIGH",
                   help="range of the family-score SD assumed for Table 5 (Yatchmenoff points)")
    p.add_argument("--best-pilot", default="Pilot 8", help="pilot whose P(best) is stated (Tables 2 and 4)")
    p.add_argument("--pilot-mid", type=float, default=5.0, help="range between pilots worth caring about, pp")
    p.set_defaults(tune=500)  # nutpie adapts quickly; 4 x 1000 draws after 500 tuning steps pass the checks
    return p


def _parse_baselines(items: list[str]) -> dict[str, float]:
    out = {}
    for text in items:
        rid, sep, value = text.partition("=")
        try:
            out[rid.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--baseline must be ID=NUMBER, got '{text}'") from None
        if not sep:
            raise ValueError(f"--baseline must be ID=NUMBER, got '{text}'")
    return out


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--sd-range must be LOW:HIGH, got '{text}'") from None
    if not 0 < lo < hi:
        raise ValueError(f"--sd-range needs 0 < LOW < HIGH, got '{text}'")
    return lo, hi


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    folder = args.data if args.data is not None else PUBLISHED_DIR
    try:
        baselines = _parse_baselines(args.baseline)
        sd_range = _parse_range(args.sd_range)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    # load -> validate
    log(f"reading the transcription in {folder}", quiet=quiet)
    pub = load_published(folder)
    report = args.report if args.report is not None else default_report_path()
    verified: dict[str, Any] = {"report": str(report), "checked": False}
    if report.exists():
        problems = verify_against_report(pub, report.read_text(encoding="utf-8"))
        if problems:
            raise DataError("transcription does not match the report: " + "; ".join(problems[:5]), file=folder)
        verified = {"report": str(report), "checked": True, "report_hash": hash_file(report)}
    elif args.report is not None:
        raise FileNotFoundError(f"report text not found: {report}")
    hashes = {p.name: hash_file(p) for p in data_files(folder)}
    data_hash = "sha256:" + __import__("hashlib").sha256("".join(hashes.values()).encode()).hexdigest()

    lap("load_and_verify_s")

    # recompute what was printed
    log("checking the printed numbers (statcheck / GRIM)", quiet=quiet)
    checks = cons.run_checks(pub)
    lap("consistency_checks_s")

    # conjugate and grid re-analyses
    log("re-analysing each result under the prior grid", quiet=quiet)
    try:
        specs = pr.build_specs(pub, baselines=baselines, sd_range=sd_range)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    grid = pr.reanalyse(specs)
    t8 = pr.table8(pub, specs, grid, strength=args.headline_strength)
    p_only = pr.p_only_table(pub)
    ofsted = pr.ofsted_transitions(pub.context["ofsted_transitions"], seed=args.seed)
    lap("prior_grid_s")

    # hierarchical binomial across pilots
    log("fitting the hierarchical binomial model for Tables 2 and 4 (nutpie)", quiet=quiet)
    pdata = pr.pilot_data(pub.surveys)
    if args.best_pilot not in pdata.pilots:
        print(f"error: --best-pilot must be one of {pdata.pilots}", file=sys.stderr)
        return 2
    sampler = CompiledSampler(pr.pilot_model(pdata))
    lap("pilot_model_compile_s")
    idata = sampler.sample(draws=args.draws, tune=args.tune, chains=args.chains,
                                                         seed=args.seed, progress=not quiet,
                                                         target_accept=0.95)
    lap("pilot_model_sample_s")
    diag = check_sampling(idata, ["mu", "sigma", "z"])
    print(diag.banner(), file=sys.stderr)
    pilots = pr.pilot_summaries(idata, pdata, best_pilot=args.best_pilot, mid_pp=args.pilot_mid)
    ppc = pr.pilot_predictive_checks(idata, pdata, prior_p=pr.prior_pilot_p(pdata, seed=args.seed), seed=args.seed)

    # figures
    did_specs = [s for s in specs if s.group == "did"]
    fig_results = pd.DataFrame([{
        "result_id": s.result_id, "label": s.label, "unit": s.unit, "printed": s.printed,
        "report_grade": s.report_verdict, "target": s.reference if s.target_applies else np.nan,
        "printed_estimate": float(s.recon["estimate"].mean()),
        "benefit_word": "shorter" if s.result_id == "did_duration_days" else "benefit",
    } for s in did_specs])
    missing = t8[t8["prior"] == "-"]
    not_re = pd.DataFrame({"label": missing["outcome"], "report_grade": missing["report's grade"],
                           "reason": "the report prints no estimate, standard error or p value"})
    fig8 = table8_figure(grid[grid["result_id"].isin(fig_results["result_id"])], fig_results, not_reanalysable=not_re)
    figp = pilots_figure(pilots, pilots=pdata.pilots, mid_pp=args.pilot_mid)
    lap("summaries_and_figures_s")

    # write
    prov = provenance(seed=args.seed, data_hash=data_hash, data_label=str(folder), argv=argv,
                      transcription_files=hashes, report_verification=verified,
                      sampler={"draws": args.draws, "tune": args.tune, "chains": args.chains, "engine": "nutpie"},
                      timings=timings)
    results_meta = [{
        "result_id": s.result_id, "group": s.group, "label": s.label, "unit": s.unit, "printed": s.printed,
        "source": s.source, "quote": s.quote, "report_verdict": s.report_verdict,
        "benefit_direction": s.benefit_direction,
        "reference_20pct": s.reference, "target_applies": s.target_applies, "mid": s.mid,
        "baseline": s.baseline, "baseline_source": s.baseline_source, "notes": s.notes,
        "priors": {k: v.describe() for k, v in s.priors().items()},
        "reconstructions": s.recon.round(6).to_dict(orient="records") if len(s.recon) <= 40 else
        {"n": len(s.recon), "columns": list(s.recon.columns),
         "ranges": {c: [float(s.recon[c].min()), float(s.recon[c].max())] for c in s.recon.columns}},
    } for s in specs]
    pilots_tbl = pilots.drop(columns=["sigma logit (mean)"])
    with OutputDir(args.out) as out:
        out.write_table("table8_reanalysed", t8.drop(columns=["result_id"]))
        out.save_figure("table8_reanalysed.png", fig8)
        out.write_table("grid", grid)
        out.write_table("consistency", checks)
        out.write_table("pilots", pilots_tbl)
        out.save_figure("pilots.png", figp)
        out.write_table("p_values_only", p_only.drop(columns=["bf_min_hi", "p_null_min_hi"]))
        slim = xr.DataTree.from_dict({"posterior": idata["posterior"].to_dataset()[["mu", "sigma", "p"]]})
        write_idata(slim, out / "pilots_posterior.nc", keep_draws=args.keep_draws)
        out.write_json("diagnostics.json", {"pilots_model": diag.to_dict(), "predictive_checks": ppc,
                                            "provenance": prov})
        out.write_json("statements.json", {
            "provenance": prov,
            "prior_grid": {"families": pr.FAMILIES, "strengths": pr.STRENGTHS,
                           "sceptical_enthusiastic_sd_factor": pr.STRENGTH_SD_FACTOR,
                           "neutral_sd_factor_of_target": pr.NEUTRAL_SD_FACTOR,
                           "programme_target": pub.context["programme_target"],
                           "mid_rule": "half the 20% shift (a 10% relative change)"},
            "table8_reanalysed": t8.to_dict(orient="records"),
            "results": results_meta,
            "grid": grid.to_dict(orient="records"),
            "pilots": pilots.to_dict(orient="records"),
            "pilots_diagnostics": diag.to_dict(),
            "p_values_only": p_only.to_dict(orient="records"),
            "ofsted_transitions": {"counts": ofsted["counts"], "p_net_improvement": ofsted["p_net_improvement"],
                                   "net_improvement_pp": ofsted["summary"].to_dict(),
                                   "note": "no comparator authorities printed: describes the pilots, not SofS"},
            "consistency": checks.to_dict(orient="records"),
        })
        out.write_text("summary.md", _summary_md(t8, checks, pilots, diag, args, ofsted))
        out.commit()
    log(f"wrote {args.out}", quiet=quiet)
    if args.strict and not diag.ok:
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _summary_md(t8: pd.DataFrame, checks: pd.DataFrame, pilots: pd.DataFrame, diag: Any,
                args: argparse.Namespace, ofsted: dict[str, Any]) -> str:
    lines = ["# Published results re-analysed", "",
             f"Headline priors: {args.headline_strength} strength. Full grid: grid.md.", "",
             "## Table 8 re-analysed", ""]
    for _, r in t8.iterrows():
        lines.append(f"- **{r['outcome']}** ({r['prior']}): report: \u201c{r["report's grade"]}\u201d; "
                     f"ours: {r['statement']}")
    bad = checks[checks["status"] == cons.INCONSISTENT]
    lines += ["", f"## Printed numbers that do not reproduce ({len(bad)} of {len(checks)} checks)", ""]
    for _, c in bad.iterrows():
        lines.append(f"- {c['check_id']}: {c['printed']} -> {c['recomputed']}"
                     + (f" (would reproduce: {c['reproduces']})" if c["reproduces"] else ""))
    lines += ["", f"## Tables 2 and 4 ({args.best_pilot})", ""]
    for _, r in pilots.iterrows():
        lines.append(f"- T{r['table']} {r['item']}: {r['statement']}; range between pilots "
                     f"{r['range pp (mean)']:.1f} pp ({r['range pp low95']:.1f} to {r['range pp high95']:.1f})")
    o = ofsted["summary"]
    lines += ["", "## Table 3 (Ofsted)", "",
              f"- Transitions listed in the text: {ofsted['counts']}; net share improving "
              f"{o.mean:+.0f} pp (95% interval {o.eti95_low:+.0f} to {o.eti95_high:+.0f}); P(more improved than "
              f"worsened) = {ofsted['p_net_improvement']:.2f}. No comparator authorities were printed, so this "
              "describes the pilots, not an effect of SofS."]
    lines += ["", "## Diagnostics", "", diag.banner(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(lambda: _run(parser.parse_args(argv), argv))


if __name__ == "__main__":
    raise SystemExit(main())
