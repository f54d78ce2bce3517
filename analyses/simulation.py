"""Simulation studies: does the hierarchical DiD recover known truth, is it calibrated, and how
do the Bayesian and the report's frequentist DiD behave with few treated LAs?

    uv run python -m analyses.simulation recovery --replicates 200          # bias, RMSE, coverage
    uv run python -m analyses.simulation sbc --replicates 200               # simulation-based calibration
    uv run python -m analyses.simulation sbc --treated 9,4,2 --replicates 200   # + calibrated words, new-LA coverage
    uv run python -m analyses.simulation few-las --replicates 100           # type I error and power
    uv run python -m analyses.simulation recovery --replicate 17            # re-run one replicate alone
    uv run python -m analyses.simulation few-las --scheduler tcp://host:8786 --replicates 500

Replicates run on dask.distributed (a local cluster of ``--workers`` processes by default) and
are written one file each under ``OUT/replicates/``: run the same command again and an
interrupted study resumes where it stopped. Tables and figures go to ``OUT/summary/``.
All data are SYNTHETIC (drawn from the project's generator or from the model's prior).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from dataclasses import asdict
from pathlib import Path

from analyses.common import EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, log, provenance, run_cli
from figures import simulation as fig
from models import simulation as sim
from models.serialize import jsonable
from analyses.report.entry import ReportEntry

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title='Simulation study: recovery',
    question='Does the hierarchical DiD recover known effects, with calibrated intervals, on synthetic LA data?',
    data_note='SYNTHETIC replicates drawn from the study generator',
    args=('recovery',),
    outputs_in='summary',
    order=100,
)

DEFAULT_REPLICATES = {"recovery": 200, "sbc": 200, "few-las": 100}
COVERAGE_TARGET = (0.86, 0.94)
SBC_LEVEL = 0.01


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("study and execution")
    g.add_argument("--replicates", type=int, default=None,
                   help="replicates per scenario (default: 200 for recovery and sbc, 100 for few-las)")
    g.add_argument("--workers", type=int, default=2, help="worker processes of the local Dask cluster (default 2)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running dask.distributed scheduler (e.g. tcp://host:8786); "
                        "'inprocess' runs threaded workers inside this process; default: a new LocalCluster")
    g.add_argument("--cores-per-replicate", type=int, default=None,
                   help="threads nutpie may use per replicate (default: CPUs / workers locally, 1 remotely)")
    g.add_argument("--out", type=Path, default=None, help="study folder (default results/simulation/<study>)")
    g.add_argument("--replicate", type=int, default=None, metavar="K",
                   help="re-run replicate K alone, in this process, and overwrite its file")
    g.add_argument("--scenario", default=None, help="with --replicate: only this scenario id")
    g.add_argument("--summary-only", action="store_true", help="only re-make tables and figures from the files")
    g.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    g.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a figure of merit of the study fails")
    m = common.add_argument_group("model and sampler")
    m.add_argument("--draws", type=int, default=500, help="posterior draws per chain (default 500)")
    m.add_argument("--tune", type=int, default=400, help="tuning draws per chain (default 400)")
    m.add_argument("--chains", type=int, default=2)
    m.add_argument("--seed", type=int, default=20201001, help="study seed; replicate seeds derive from it")
    m.add_argument("--prior", default="neutral", choices=["sceptical", "neutral", "enthusiastic"],
                   help="named prior for the typical-LA effect (default neutral)")
    m.add_argument("--covariates", action="store_true",
                   help="generator with covariate effects and the fit on covariate strata (the exact "
                        "kinship model; ~20x slower); default: LA x year cells, covariate effects zero")
    m.add_argument("--no-la-trends", action="store_true", help="leave LA-specific trends out of the model")

    parser = argparse.ArgumentParser(prog="python -m analyses.simulation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="study", required=True, metavar="{recovery,sbc,few-las}")
    rec = sub.add_parser("recovery", parents=[common], help="bias, RMSE and interval coverage against the truth")
    rec.add_argument("--mu-tau", type=float, default=None, help="true typical-LA effect, log-odds (default -0.66)")
    rec.add_argument("--sd-tau", type=float, default=None, help="true between-LA SD of the effect (default 0.6)")
    sbc = sub.add_parser("sbc", parents=[common], help="simulation-based calibration: ranks under the prior")
    sbc.add_argument("--treated", type=_ints, default=[9],
                     help="numbers of treated LAs, each a scenario with as many comparators (default 9: the kinship "
                          "design; 9,4,2 for the calibrated-words and new-LA checks)")
    sbc.add_argument("--sbc-draws", type=int, default=49,
                     help="thinned posterior draws each rank is taken among, L (default 49: about the "
                          "smallest bulk ESS of 2 x 500 draws)")
    few = sub.add_parser("few-las", parents=[common], help="Bayesian vs frequentist DiD with 2, 4, 9 treated LAs")
    few.add_argument("--treated", type=_ints, default=[2, 4, 9], help="numbers of treated LAs (default 2,4,9)")
    few.add_argument("--comparators", type=int, default=None,
                     help="comparator LAs in every scenario (default: as many as treated)")
    few.add_argument("--sd-tau", type=_floats, default=[0.0, 0.3, 0.6],
                     help="between-LA SDs of the effect, log-odds (default 0,0.3,0.6)")
    few.add_argument("--effects", type=lambda t: [x for x in t.split(",") if x], default=["null", "published"],
                     help="null (mu_tau = 0) and/or published (mu_tau = -0.66, ATT about -12.6 pp)")
    few.add_argument("--n-boot", type=int, default=999, help="wild cluster bootstrap draws (default 999)")
    few.add_argument("--alpha", type=float, default=0.05, help="test level (default 0.05)")
    few.add_argument("--frequentist-only", action="store_true",
                     help="only the LPM and the wild cluster bootstraps (fast; many replicates)")
    return parser


def study_setup(args: argparse.Namespace) -> tuple[sim.StudySettings, list[sim.Scenario]]:
    settings = sim.StudySettings(
        study=args.study, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed, prior=args.prior,
        covariates=args.covariates, la_trends=not args.no_la_trends,
        sbc_draws=getattr(args, "sbc_draws", 49), n_boot=getattr(args, "n_boot", 999),
        bayes=not getattr(args, "frequentist_only", False))
    if args.study == "recovery":
        scenarios = sim.study_scenarios("recovery", mu_tau=args.mu_tau, sd_tau=args.sd_tau)
    elif args.study == "sbc":
        scenarios = sim.study_scenarios("sbc", treated=args.treated)
    else:
        scenarios = sim.study_scenarios("few-las", treated=args.treated, comparators=args.comparators,
                                        sd_taus=args.sd_tau, effects=args.effects)
    return settings, scenarios


def check_study_folder(out: Path, settings: sim.StudySettings, argv: list[str] | None) -> None:
    """Create ``study.json``, or check that a resumed study has the same settings."""
    meta = out / "study.json"
    if meta.exists():
        old = json.loads(meta.read_text())["settings"]
        if old != settings.to_dict():
            diff = {k: (old.get(k), v) for k, v in settings.to_dict().items() if old.get(k) != v}
            raise ValueError(f"{out} holds a study with other settings (stored, requested): {diff}; "
                             "use another --out, or the stored settings to resume it")
        return
    out.mkdir(parents=True, exist_ok=True)
    record = {"settings": settings.to_dict(), "design_note": design_note(settings),
              "provenance": provenance(seed=settings.seed, data_hash="", data_label="synthetic (generator / prior)",
                                       argv=argv)}
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps(jsonable(record), indent=2) + "\n")
    os.replace(tmp, meta)


def design_note(settings: sim.StudySettings, scenarios=()) -> str:
    """The data-generating design in words (stored with every study)."""
    sizes = sorted({(s.n_pilot, s.n_comparator) for s in scenarios}, reverse=True)
    size = ("the scenario's treated and comparator LAs (adoption years spread over the kinship rollout)"
            if settings.study == "few-las" or len(sizes) > 1 else
            "{} LAs ({} pilot, {} comparator)".format(sum(sizes[0]), *sizes[0]) if sizes
            else "18 LAs (9 pilot, 9 comparator)")
    cells = ("covariate effects as in the kinship twin, fitted on covariate strata" if settings.covariates else
             "covariate effects set to zero, fitted on LA x year cells")
    what = {"recovery": "data from the generator", "sbc": "parameters and data from the model's prior "
            "(children per cell fixed from one generator draw)", "few-las": "data from the generator"}[settings.study]
    trends = "with" if settings.la_trends else "without"
    model = ("" if not settings.bayes else
             f" Model: the DiD engine (models.did) as the kinship analysis fits it: one effect per pilot LA after "
             f"settling-in, partially pooled; LA intercepts pooled around their adoption cohort's level (centred); "
             f"hierarchical year effects around a common trend; {trends} LA-specific trends.")
    return (f"Kinship-sized design: {size}, financial years 2010-2018, ~80 children per LA-year, staggered "
            f"adoption with settling-in; {what}; {cells}.{model}")


def make_client(args: argparse.Namespace):
    """A Dask client: an existing scheduler, threaded workers in this process, or a LocalCluster."""
    from distributed import Client, LocalCluster

    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    cores = max(1, (os.cpu_count() or 1) // args.workers)
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cores
    if args.scheduler == "inprocess":
        cluster = LocalCluster(n_workers=1, threads_per_worker=args.workers, processes=False,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cores
    return Client(args.scheduler), 1


# ---------------------------------------------------------------- summaries -> files

def summarise(args, settings, scenarios, store, replicates, argv, runs: list[dict]) -> tuple[dict, list[tuple]]:
    """Tables, figures and summary.json from the replicate files; returns (summary, checks)."""
    records = store.load(scenarios, replicates)
    failures = store.failures(scenarios)
    diag = sim.diagnostics_summary(records)
    checks: list[tuple[str, bool, str]] = []
    summary: dict = {"study": settings.study, "settings": settings.to_dict(),
                     "scenarios": [asdict(s) for s in scenarios], "replicates_requested": replicates,
                     "replicates_done": len(records), "replicates_failed": len(failures),
                     "design_note": design_note(settings, scenarios), "diagnostics": diag, "runs": runs, "synthetic": True}
    with OutputDir(store.root / "summary") as out:
        if settings.study == "recovery":
            table = sim.recovery_table(records)
            out.write_table("recovery", table)
            att = table.set_index("parameter").loc["att"] if "att" in set(table.get("parameter", [])) else None
            if att is not None:
                cov = float(att["coverage_90"])
                checks.append(("ATT 90% interval coverage within 0.86-0.94",
                               COVERAGE_TARGET[0] <= cov <= COVERAGE_TARGET[1],
                               f"{cov:.3f} (MC SE {att['mc_se_90']:.3f}, {int(att['replicates'])} replicates)"))
                out.save_figure("coverage.png", fig.plot_coverage(table, target=COVERAGE_TARGET))
                out.save_figure("att_intervals.png", fig.plot_interval_recovery(sim.recovery_frame(records, "att"),
                                xlabel="true ATT in the pilots (pp)", ylabel="posterior 90% interval (pp)"))
            summary["recovery"] = table.to_dict(orient="records")
        elif settings.study == "sbc":
            ranks = sim.sbc_rank_frame(records)
            if not ranks.empty:
                table, curves = sim.sbc_uniformity(ranks, level=SBC_LEVEL)
                out.write_table("sbc_uniformity", table)
                ranks.to_csv(out / "sbc_ranks.csv", index=False)
                worst = float(table["p_bonferroni"].min())
                checks.append((f"SBC uniformity not rejected at {SBC_LEVEL:g} (chi-square, Bonferroni over "
                               f"{len(table)} parameters)", worst >= SBC_LEVEL,
                               f"smallest adjusted p {worst:.3f}; smallest raw p {table['p_value'].min():.3f}"))
                out.save_figure("sbc_ecdf.png", fig.plot_sbc_ecdf(curves, table, level=SBC_LEVEL))
                out.save_figure("sbc_ranks.png", fig.plot_sbc_histograms(ranks))
                summary["sbc"] = table.to_dict(orient="records")
            words = sim.verbal_calibration(records)
            if not words.empty:
                out.write_table("verbal_calibration", words)
                out.save_figure("verbal_calibration.png", fig.plot_verbal_calibration(words))
                bad = words[~words["matches_stated"]]
                checks.append(("calibrated words: at every verbal level and number of treated LAs the share of true "
                               "statements is within 3 Monte Carlo SEs of the stated probability", bad.empty,
                               "all levels match" if bad.empty else
                               "; ".join(f"{r.level} ({r.n_pilot} LAs): {r.share_true:.2f} vs {r.mean_stated_p:.2f}"
                                         for r in bad.itertuples())))
                summary["verbal_calibration"] = words.to_dict(orient="records")
            new = sim.new_unit_coverage(records)
            if not new.empty:
                out.write_table("new_la_coverage", new)
                for r in new.itertuples():
                    checks.append((f"new-LA 90% predictive interval coverage within 0.86-0.94 ({r.n_pilot} treated LAs)",
                                   COVERAGE_TARGET[0] <= r.coverage_90 <= COVERAGE_TARGET[1],
                                   f"{r.coverage_90:.3f} (MC SE {r.mc_se_90:.3f}, {r.replicates} replicates)"))
                summary["new_la_coverage"] = new.to_dict(orient="records")
        else:
            frame = sim.few_las_frame(records, alpha=args.alpha)
            table = sim.rejection_table(frame)
            if not table.empty:
                out.write_table("rejection_rates", table)
                frame.to_csv(out / "few_las_replicates.csv", index=False)
                wide = sim.rejection_wide(table)
                out.write_table("rejection_rates_wide", wide)
                for effect, name, ylabel in (("null", "type1_error.png", "type I error (rejection rate)"),
                                             ("published", "power.png", "power (rejection rate)")):
                    if (table["effect"] == effect).any():
                        out.save_figure(name, fig.plot_rejection(table, effect=effect, alpha=args.alpha, ylabel=ylabel))
                summary["rejection_rates"] = table.to_dict(orient="records")
                summary["coverage_95"] = sim.few_las_coverage(frame).to_dict(orient="records")
                null_words = sim.null_statement_rates(frame)
                if not null_words.empty:
                    out.write_table("null_statements", null_words)
                    summary["null_statements"] = null_words.to_dict(orient="records")
        summary["checks"] = [{"check": c, "passed": ok, "value": v} for c, ok, v in checks]
        summary["headline"] = headline(settings.study, summary, checks)
        summary["provenance"] = provenance(seed=settings.seed, data_hash="", data_label="synthetic (generator / prior)",
                                           argv=argv)
        out.write_json("summary.json", summary)
        out.write_text("report.md", "\n".join(summary["headline"]) + "\n")
        out.commit()
    return summary, checks


def headline(study: str, summary: dict, checks: list[tuple]) -> list[str]:
    n_sc = len(summary["scenarios"])
    lines = [f"# Simulation study: {study} (SYNTHETIC data)", "",
             f"{summary['replicates_done']} replicates done ({summary['replicates_requested']} requested per "
             f"scenario x {n_sc} scenario{'s' if n_sc > 1 else ''}; {summary['replicates_failed']} failed). "
             f"{summary['design_note']}", ""]
    s = summary["settings"]
    if s.get("bayes", True):
        lines.append(f"Sampler: nutpie, {s['chains']} chains x {s['draws']} draws after {s['tune']} tuning; "
                     f"prior on the typical-LA effect: {s['prior']}.")
    d = summary["diagnostics"]
    if d.get("replicates"):
        lines.append(f"Diagnostics (every sampled quantity and reported effect): {100 * d['share_failed']:.0f}% of "
                     f"replicates failed a check (R-hat <= 1.01, ESS >= 400, no divergences); "
                     f"{100 * d['share_with_divergences']:.0f}% had divergences; "
                     f"median min bulk ESS {d['median_min_ess_bulk']:.0f}; mean sampling "
                     f"{d['timing'].get('mean_sample_s', float('nan')):.2f} s and overhead "
                     f"{d['timing'].get('mean_overhead_s', float('nan')):.2f} s per replicate.")
    lines.append("")
    if study == "recovery" and summary.get("recovery"):
        for r in summary["recovery"]:
            lines.append(f"- {r['parameter']}: truth {r['truth_mean']:+.3f}, bias {r['bias']:+.3f}, RMSE {r['rmse']:.3f}, "
                         f"coverage 50/90/95% = {r['coverage_50']:.2f}/{r['coverage_90']:.2f}/{r['coverage_95']:.2f}")
    if study == "sbc" and summary.get("sbc"):
        for r in summary["sbc"]:
            lines.append(f"- {r['parameter']}: chi-square p = {r['p_value']:.3f} (Bonferroni {r['p_bonferroni']:.3f})")
    if study == "sbc" and summary.get("verbal_calibration"):
        import pandas as pd

        cols = ["n_pilot", "level", "statements", "mean_stated_p", "share_true", "mc_se", "matches_stated"]
        lines += ["", "Calibrated words (statements 'SofS reduced / increased ...', effects drawn from the prior):", "",
                  pd.DataFrame(summary["verbal_calibration"])[cols].to_markdown(index=False, floatfmt=".3f")]
    if study == "sbc" and summary.get("new_la_coverage"):
        for r in summary["new_la_coverage"]:
            lines.append(f"- a new LA ({r['n_pilot']} treated LAs): predictive coverage 50/90/95% = "
                         f"{r['coverage_50']:.2f}/{r['coverage_90']:.2f}/{r['coverage_95']:.2f} "
                         f"({r['replicates']} replicates)")
    if study == "few-las" and summary.get("rejection_rates"):
        import pandas as pd

        table = sim.rejection_wide(pd.DataFrame(summary["rejection_rates"]))
        lines += ["Rejection rates at the 5% level (type I error under 'null', power under 'published'):", "",
                  table.to_markdown(index=False, floatfmt=".3f")]
    if study == "few-las" and summary.get("null_statements"):
        import pandas as pd

        lines += ["", "Under a null effect: how often the toolkit says 'SofS reduced ...' at each verbal level, "
                      "beside how often the report's method finds a significant reduction (p < 0.05):", "",
                  pd.DataFrame(summary["null_statements"]).to_markdown(index=False, floatfmt=".3f")]
    lines.append("")
    for c, ok, v in checks:
        lines.append(f"{'PASS' if ok else 'FAIL'}: {c}: {v}")
    return lines


# ---------------------------------------------------------------- the run

def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    settings, scenarios = study_setup(args)
    out = args.out or Path("results") / "simulation" / args.study
    replicates = args.replicates or DEFAULT_REPLICATES[args.study]
    if replicates < 1:
        raise ValueError("--replicates must be >= 1")
    store = sim.ReplicateStore(out)
    check_study_folder(out, settings, argv)
    runs_file = out / "runs.jsonl"

    if args.replicate is not None:
        chosen = [s for s in scenarios if args.scenario in (None, s.id)]
        if not chosen:
            raise ValueError(f"--scenario must be one of {[s.id for s in scenarios]}")
        for sc in chosen:
            old = store.path(sc.id, args.replicate)
            before = json.loads(old.read_text()) if old.exists() else None
            record = sim.run_replicate(settings, sc, args.replicate, args.cores_per_replicate)
            store.write(record)
            print(json.dumps(jsonable(sim.replicate_brief(record)), indent=1))
            if before is not None:
                same = sim.replicate_brief(before)["result"] == sim.replicate_brief(record)["result"]
                print(f"{sc.id} #{args.replicate}: {'identical to' if same else 'DIFFERENT from'} the stored result")
        return EXIT_OK

    runs = [json.loads(x) for x in runs_file.read_text().splitlines()] if runs_file.exists() else []
    if not args.summary_only:
        todo, done = sim.pending_tasks(store, scenarios, replicates)
        log(f"[simulation {args.study}] {len(scenarios)} scenario(s) x {replicates} replicates: {done} done, "
            f"{len(todo)} to run -> {out}", quiet=args.quiet)
        if todo:
            t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S")
            client, cores = make_client(args)
            cores = args.cores_per_replicate or cores
            try:
                log(f"[simulation {args.study}] Dask scheduler {client.scheduler.address}; "
                    f"{args.workers} worker(s), {cores} core(s) per replicate", quiet=args.quiet)
                report = sim.run_study(client, settings, scenarios, replicates, store, cores=cores,
                                       progress=not args.quiet)
            finally:
                cluster = getattr(client, "cluster", None)
                client.close()
                if cluster is not None and args.scheduler in (None, "inprocess"):
                    cluster.close()
            entry = {"started": started, "ran": report.ran, "failed": report.failed,
                     "skipped": report.skipped, "workers": report.workers, "cores_per_replicate": cores,
                     "wall_s_dask": report.wall_s, "wall_s_total": time.perf_counter() - t0,
                     "scheduler": args.scheduler or "LocalCluster"}
            runs.append(entry)
            with runs_file.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            for e in report.errors[:5]:
                log(f"  replicate failed: {e}")
    summary, checks = summarise(args, settings, scenarios, store, replicates, argv, runs)
    print("\n".join(summary["headline"]))
    print(f"outputs: {out}/summary/")
    if args.strict and (not all(ok for _, ok, _ in checks) or summary["replicates_done"] < replicates * len(scenarios)):
        log("--strict: a figure of merit failed or replicates are missing; exiting with status 1")
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def body() -> int:
        try:
            return run(args, argv)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
