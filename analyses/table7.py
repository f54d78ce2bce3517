"""Table 7 re-analysed: every LA-level indicator the official files allow, through the DiD engine.

The report (RR1054, Table 7 and the text after it) compared the pilots with their statistical
nearest neighbours on LA-level indicators by a two-factor ANOVA and concluded "no impact" for
each outcome area. This command fits every indicator of an indicator table
(``data/indicators.csv``; add one with ``--add-indicator``) by the hierarchical Bayesian DiD of
``analyses.la_panel`` (the engine's ``unit`` structure: an effect per pilot LA, partially pooled,
staggered adoption, named priors, diagnostics) on the DfE official-statistics files, and writes
"Table 7 re-analysed": the report's summary for each outcome area beside the posterior
statements, as CSV, Markdown and a forest plot::

    uv run python -m analyses.table7
    uv run python -m analyses.table7 --only rereferral_pct,cpp_rate --draws 500
    uv run python -m analyses.table7 --add-indicator \\
        'name=cin31_rate;source=dfe-official/b1_children_in_need_2013_to_2025.csv;numerator=At31_episodes;kind=rate;label=children in need at 31 March (per 10,000)'
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analyses.common import OutputDir, analysis_parser, log, provenance, run_cli
from analyses.did_runner import named_priors
from analyses.report.entry import ReportEntry
from data import la_panel as lp
from data import official_stats as ofs
from data.errors import DataError
from models.did.design import DesignSpec, canonical_cells
from models.did.experiment import DidExperiment
from models.did.fit import SamplerSettings
from models.did.likelihoods import get_likelihood
from models.did.model import ModelSpec
from models.did.summaries import Reading, ppc_coverage
from models.priors import PRIOR_NAMES
from models.statements import state

NAME = "table7"

#: how this analysis appears in `python -m analyses.report` (read from the source, not imported)
REPORT = ReportEntry(
    title="Table 7: the published LA indicators",
    question="Did the pilots' published DfE indicators (Table 7) change relative to their statistical neighbours?",
    data_note="REAL published DfE and ONS statistics",
    extra_inputs=("data/indicators.csv", "../shared/data/dfe-official", "../shared/data/dfe-la-panel"),
    order=85,
)
YEAR_SD = 0.5   # as analyses.la_panel: fixed year-effect scale
JOINT_DRAWS_FACTOR = 2   # the joint model samples this many times the separate fits' draws per chain

#: The report's Table 7 'Summary' column for each outcome area (RR1054, Table 7).
REPORT_SUMMARY = {
    "children_in_need": "Significantly lower CIN rate in SofS pilots but no significant change over time, therefore "
                        "no impact",
    "referrals": "No impact",
    "assessments": "Two outliers caused significant difference. When removed, no significant difference between "
                   "pilots and SNN, therefore no impact",
    "child_protection": "Significantly lower CPC, CPP and section 47 rate and duration in SofS pilots but no "
                        "significant change over time, therefore no impact",
    "looked_after_children": "Significantly lower LAC rate in SofS pilots but no significant change over time and "
                             "LAC rate increasing in majority of SofS pilots, therefore no impact",
    "workforce": "No impact",
}
AREA_LABEL = {"children_in_need": "Children in need", "referrals": "Referrals", "assessments": "Assessments",
              "child_protection": "Child protection", "looked_after_children": "Looked after children",
              "workforce": "Workforce"}
REPORT_VERDICT = {a: "No impact" for a in REPORT_SUMMARY}


@dataclass
class IndicatorFit:
    """One indicator's design, fits and summaries."""

    indicator: ofs.Indicator
    design: lp.PanelDesign
    reading: Reading
    results: list                     # PriorResult per prior
    diagnostics: dict                 # prior -> Diagnostics
    att_draws: dict                   # prior -> draws of the headline effect
    mu_draws: np.ndarray              # neutral/reference: mu_tau (link scale)
    tau_draws: pd.DataFrame           # reference prior: pilot LA effects on the reading scale (mean, low, high)
    ppc_coverage: float
    seconds: float
    notes: list[str] = field(default_factory=list)


def build_parser() -> argparse.ArgumentParser:
    p = analysis_parser(NAME, __doc__, priors=PRIOR_NAMES, target_accept=0.9, mass_matrix="diag")
    for action in p._actions:
        if action.dest == "data":
            action.help = f"folder the indicator sources are relative to (default: {ofs.SHARED_DATA})"
        if action.dest == "tune":
            action.default = 500
    p.add_argument("--indicators", type=Path, default=ofs.DEFAULT_INDICATORS,
                   help="indicator table (default: data/indicators.csv)")
    p.add_argument("--add-indicator", action="append", default=[], metavar="'name=..;source=..;numerator=..;...'",
                   help="add an indicator from any official file (keys: " + ", ".join(ofs.INDICATOR_COLUMNS) + ")")
    p.add_argument("--only", default=None, help="comma-separated indicator names to fit (default: all)")
    p.add_argument("--population", type=Path, default=None, help="ONS population file (official layout)")
    p.add_argument("--population-lag", type=int, default=ofs.POPULATION_LAG,
                   help="year ending March Y uses the mid-year estimate of Y - lag (default 1)")
    p.add_argument("--neighbours", type=Path, default=None, help="statistical neighbours CSV")
    p.add_argument("--treatment", type=Path, default=lp.DEFAULT_TREATMENT)
    p.add_argument("--exclude", type=Path, default=None)
    p.add_argument("--n-neighbours", type=int, default=5)
    p.add_argument("--boundary", default="drop", choices=lp.BOUNDARY_POLICIES)
    p.add_argument("--first-year", type=int, default=None)
    p.add_argument("--last-year", type=int, default=2020)
    p.add_argument("--no-reweight", action="store_true")
    p.add_argument("--placebo", default="rereferral_pct",
                   help="comma-separated indicators for the placebo tests and the contamination model "
                        "(default: rereferral_pct; 'none' to skip)")
    p.add_argument("--placebo-lead", type=int, default=1, help="placebo in time: years before the real adoption (default 1)")
    p.add_argument("--joint", action=argparse.BooleanOptionalAction, default=True,
                   help="also fit the joint model over the share and rate indicators (default: on; its chains are "
                        f"{JOINT_DRAWS_FACTOR} x --draws long)")
    return p


def _auto_threshold(ind: ofs.Indicator, design: lp.PanelDesign, frac: float) -> float:
    c = design.cells[design.cells["phase"] == "pre"]
    level = (c["y"].sum() / c["n"].sum() * ind.per) if ind.kind != "level" else c["y"].mean()
    return float(round(abs(level) * frac, 2 if abs(level) * frac < 10 else 0))


def fit_indicator(panel: ofs.IndicatorPanel, ind: ofs.Indicator, treatment: pd.DataFrame, *,
                  exclusions: pd.DataFrame | None, args: argparse.Namespace,
                  settings: SamplerSettings, seed: int) -> IndicatorFit:
    """One indicator through the engine: design (pilots vs nearest eligible neighbours), named
    priors calibrated on the reported scale, the broadest fitted by NUTS and the others by PSIS."""
    t0 = time.perf_counter()
    design = lp.build_design(panel, ind.outcome(), treatment, exclusions=exclusions, n_neighbours=args.n_neighbours,
                             first_year=args.first_year, last_year=args.last_year, boundary=args.boundary)
    cells = canonical_cells(design.cells.assign(exited=design.cells["phase"].eq("exited")), unit="la", period="year",
                            cohort="adoption_year", settling="settling_years")
    lik = get_likelihood(ind.likelihood)
    rope = ind.rope if ind.rope >= 0 else _auto_threshold(ind, design, 0.05)
    mid = ind.mid if ind.mid >= 0 else _auto_threshold(ind, design, 0.10)
    reading = Reading(ind.short, ind.units, rope, mid, ind.direction, relative_target=0.2,
                      decimals=1 if ind.kind != "level" or ind.units == "pp" else 2, subject="SofS",
                      where="the pilot LAs", unit_noun="LA")
    design_spec = DesignSpec(ind.likelihood, effects="unit", control="never", base="all")
    factor = ind.per if lik.link == "log" else (None if lik.link == "logit" else 1.0)
    model_spec = ModelSpec(period_effects="fixed", period_sd=YEAR_SD, cohort_levels=False, factor=factor)
    scale = {"logit": "log-odds ratio", "log": "log rate ratio"}.get(lik.link, "outcome units")
    priors, _, _checks = named_priors(cells, design_spec, model_spec, reading, direction=ind.direction,
                                      relative_target=0.2, target=None, choice=args.prior,
                                      overrides=args.prior_override,
                                      neutral_sd=2.0 * float(cells["y"].std()) if lik.identity else 1.0,
                                      scale_name=scale, seed=seed + 17)
    exp = DidExperiment(cells, design_spec, model_spec, reading)
    fits = exp.fit(priors, settings, seed=seed, reweight=not args.no_reweight)
    results, diags, att = [], {}, {}
    for p in priors:
        f = fits.fits[p.name]
        results.append(exp.summarise(f, f.dm or fits.model, seed=seed + 3))
        diags[p.name] = f.diagnostics
        att[p.name] = np.ravel(f.posterior["att"].values)
    ref_name = "neutral" if "neutral" in fits.fits else priors[0].name
    ref = fits.fits[ref_name]
    post = ref.posterior
    mu = np.ravel(post["mu_tau"].values)
    y_rep = exp.posterior_predictive(ref.dm or fits.model, ref, seed=seed + 5, max_draws=400, store=False)
    cov = ppc_coverage(exp.design, y_rep)
    tau = _unit_effects(post, design)
    return IndicatorFit(ind, design, reading, results, diags, att, mu, tau, cov, time.perf_counter() - t0,
                        list(fits.notes))


def _unit_effects(post, design: lp.PanelDesign) -> pd.DataFrame:
    """Each pilot's own effect (``att_unit`` on the reading scale when the engine stores it)."""
    for name in ("att_unit", "att_by_unit", "tau_reading"):
        if name in post:
            v = post[name]
            draws = v.values.reshape(-1, v.shape[-1])
            labels = [str(x) for x in v[v.dims[-1]].values]
            return pd.DataFrame({"la": labels, "mean": draws.mean(0), "eti95_low": np.quantile(draws, 0.025, 0),
                                 "eti95_high": np.quantile(draws, 0.975, 0)})
    return pd.DataFrame(columns=["la", "mean", "eti95_low", "eti95_high"])


def summary_rows(fit: IndicatorFit) -> list[dict]:
    ind, d = fit.indicator, fit.design
    rows = []
    for r in fit.results:
        e, pr, diag = r.effect, r.probabilities, fit.diagnostics[r.prior]
        verdict = diag.summary()
        rows.append({
            "indicator": ind.name, "area": AREA_LABEL.get(ind.area, ind.area), "label": ind.label, "units": ind.units,
            "likelihood": ind.likelihood, "prior": r.prior, "n_pilots": len(d.pilots), "n_comparators": len(d.comparator_las),
            "n_cells": int((d.cells.phase != "settling").sum()), "missing_cells": len(d.missing),
            "mean": e["mean"], "eti95_low": e["eti95_low"], "eti95_high": e["eti95_high"],
            "relative_mean": r.relative.get("mean"),
            "p_programme_direction": pr.get("p_programme_direction"), "p_in_rope": pr["p_in_rope"],
            "rope": fit.reading.rope, "p_target_met": pr.get("p_target_met"),
            "statement": r.statements[0], "statement_rope": r.statements[2],
            "report_summary": REPORT_SUMMARY.get(ind.area, "not in Table 7"),
            "report_verdict": REPORT_VERDICT.get(ind.area, ""),
            "diagnostics_ok": diag.ok, "max_rhat": verdict["max_rhat"], "min_ess_bulk": verdict["min_ess_bulk"],
            "divergences": int(diag.divergences), "ppc_coverage_95": fit.ppc_coverage,
        })
    return rows


def headline(fit: IndicatorFit) -> str:
    r = next((x for x in fit.results if x.prior == "neutral"), fit.results[0])
    e = r.effect
    f = fit.reading.fmt
    return (f"{fit.indicator.label}: {f(e['mean'])} {fit.indicator.units} [{f(e['eti95_low'])}, {f(e['eti95_high'])}] "
            f"({r.prior}); {r.statements[0]}; {r.statements[2]}")


def area_table(rows: pd.DataFrame, prior: str) -> pd.DataFrame:
    """Table 7 re-analysed: one row per outcome area, the report's summary beside our statements."""
    sub = rows[rows["prior"] == prior]
    out = []
    for area, g in sub.groupby("area", sort=False):
        key = next((k for k, v in AREA_LABEL.items() if v == area), area)
        lines = [f"{r.label}: {r.mean:+.2f} {r.units} [{r.eti95_low:+.2f}, {r.eti95_high:+.2f}]; "
                 + state(r.p_programme_direction, "SofS moved it the intended way") + "; "
                 + f"P(practically nil, ±{r.rope:g}) = {r.p_in_rope:.2f}" for r in g.itertuples()]
        out.append({"outcome_area": area, "report_summary": REPORT_SUMMARY.get(key, "not in Table 7"),
                    "indicators": "; ".join(g["label"]), "posterior (" + prior + " prior)": " | ".join(lines)})
    return pd.DataFrame(out)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    quiet = args.quiet
    base = Path(args.data) if args.data else ofs.SHARED_DATA
    indicators = ofs.load_indicators(args.indicators)
    for text in args.add_indicator:
        ind = ofs.parse_indicator_option(text)
        indicators[ind.name] = ind
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in indicators]
        if unknown:
            raise DataError(f"unknown indicator(s) {unknown}; the table has {list(indicators)}", column="--only")
        indicators = {k: indicators[k] for k in wanted}
    panel = ofs.build_panel(list(indicators.values()), neighbours=args.neighbours, population=args.population,
                            base=base, population_lag=args.population_lag)
    treatment = lp.load_treatment(args.treatment, panel)
    exclusions = lp.load_exclusions(args.exclude, panel) if args.exclude else None
    settings = SamplerSettings(draws=args.draws, tune=args.tune, chains=args.chains, target_accept=args.target_accept,
                               mass_matrix=args.mass_matrix)
    fits: list[IndicatorFit] = []
    for i, ind in enumerate(indicators.values()):
        log(f"[{NAME}] {ind.name} ({i + 1}/{len(indicators)}): {ind.kind}, {ind.likelihood}...", quiet=quiet)
        fit = fit_indicator(panel, ind, treatment, exclusions=exclusions, args=args, settings=settings,
                            seed=args.seed + 101 * i)
        log(f"[{NAME}]   {headline(fit)} ({fit.seconds:.0f} s)", quiet=quiet)
        fits.append(fit)
    rows = pd.DataFrame([r for f in fits for r in summary_rows(f)])
    ref = "neutral" if "neutral" in set(rows["prior"]) else rows["prior"].iloc[0]
    joint = None
    eligible = [f for f in fits if f.indicator.likelihood in ("betabinomial", "negbinomial")]
    if args.joint and len(eligible) >= 2:
        log(f"[{NAME}] joint model over {len(eligible)} indicators (pilot effects correlated, LKJ)...", quiet=quiet)
        joint = fit_joint_model(eligible, rows, ref, settings, args.seed + 7)
        log(f"[{NAME}]   joint: " + "; ".join(f"P(>= {r['k']} improved) = {r['p']:.2f}"
                                           for r in joint["p_at_least_k_improved"]), quiet=quiet)
        if joint["sampling_note"]:
            log(f"[{NAME}]   joint: {joint['sampling_note']}", quiet=quiet)
    placebo = {}
    wanted = [] if args.placebo.strip().lower() == "none" else [w.strip() for w in args.placebo.split(",") if w.strip()]
    for f in fits:
        if f.indicator.name in wanted and f.indicator.likelihood in ("betabinomial", "negbinomial"):
            log(f"[{NAME}] placebo tests and contamination model: {f.indicator.name}...", quiet=quiet)
            placebo[f.indicator.name] = run_placebo(f, settings, args.seed + 11, args.placebo_lead)
            pl = placebo[f.indicator.name]
            log(f"[{NAME}]   P(pilots beyond a placebo group) = {pl['space_time']['p_pilots_beyond_placebo_group']:.2f}; "
                f"time placebo {pl['space_time']['time_placebo']['mean']:+.2f}; contamination: "
                f"{pl['clean']['effect']['mean']:+.2f} -> {pl['contamination']['effect']['mean']:+.2f}", quiet=quiet)
            for part, d in placebo_verdicts(pl).items():
                if not d["ok"]:
                    log(f"!! [{NAME}] {f.indicator.name} {part}: {_verdict_text(d)}")
    write_outputs(args, argv, panel, fits, rows, ref, joint, placebo)
    for f in fits:
        print(headline(f))
    ok = bool(rows["diagnostics_ok"].all())
    if not ok:
        bad = rows.loc[~rows["diagnostics_ok"], ["indicator", "prior"]].to_dict(orient="records")
        print(f"!! sampling diagnostics failed for {bad}", flush=True)
    others = ({"joint model": joint["diagnostics"]["ok"]} if joint else {}) | {
        f"{name} {part}": d["ok"] for name, pl in placebo.items() for part, d in placebo_verdicts(pl).items()}
    if not all(others.values()):
        print(f"!! sampling diagnostics failed for {[k for k, v in others.items() if not v]}", flush=True)
    return 1 if (args.strict and not (ok and all(others.values()))) else 0


def placebo_verdicts(pl: dict) -> dict[str, dict]:
    """The placebo step's three diagnostics verdicts, by part."""
    return {"placebo fits": pl["space_time"]["diagnostics"], "clean-comparator fit": pl["clean"]["diagnostics"],
            "contamination fit": pl["contamination"]["diagnostics"]}


def _verdict_text(d: dict) -> str:
    failing = f"{d['n_fits_failing']} of {d['n_fits']} fits failed" if d["n_fits"] > 1 else (
        "passed" if d["ok"] else "failed")
    return (f"{failing} their diagnostics (max R-hat {d['max_rhat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
            f"{d['divergences']} divergences)")


def fit_joint_model(fits: list[IndicatorFit], rows: pd.DataFrame, ref: str, settings: SamplerSettings, seed: int) -> dict:
    """The joint model (:mod:`models.table7_joint`) on the separate fits' cells, checked against them."""
    from models.table7_joint import JointInput, fit_joint

    inputs = []
    for f in fits:
        c = f.design.analysis_cells()
        c = c[c["phase"] != "exited"]
        factor = f.indicator.per
        inputs.append(JointInput(f.indicator.name, c[["la", "year", "y", "n", "treated_post"]], f.indicator.likelihood,
                                 factor, f.indicator.direction))
    # chains twice as long as the separate fits': with equal lengths the between-pilot SDs missed the
    # R-hat / ESS thresholds narrowly in five of six runs, with twice the draws none of three did
    # (module docstring of models.table7_joint)
    sampler = {"draws": JOINT_DRAWS_FACTOR * settings.draws, "tune": max(settings.tune, 500), "chains": settings.chains}
    res = fit_joint(inputs, **sampler, seed=seed, target_accept=settings.target_accept)
    res.pop("att_draws")
    res["sampler"] = sampler
    sep = rows[rows["prior"] == ref].set_index("indicator")
    res["check"] = {e["indicator"]: {"separate_mean": float(sep.loc[e["indicator"], "mean"]),
                                     "separate_low": float(sep.loc[e["indicator"], "eti95_low"]),
                                     "separate_high": float(sep.loc[e["indicator"], "eti95_high"]),
                                     "joint_mean": e["mean"], "joint_low": e["eti95_low"], "joint_high": e["eti95_high"],
                                     "joint_mean_inside_separate_interval": bool(
                                         sep.loc[e["indicator"], "eti95_low"] <= e["mean"] <= sep.loc[e["indicator"], "eti95_high"])}
                    for e in res["effects"]}
    return res


def placebo_cells(fit: IndicatorFit):
    """The indicator's cells with each comparator given the adoption year of the pilot it neighbours."""
    from models.table7_placebo import PlaceboCells

    d = fit.design
    c = d.analysis_cells()
    c = c[c["phase"] != "exited"].copy()
    adopt = dict(zip(d.treatment["la_name"], d.treatment["adoption_year"]))
    assigned = {}
    for r in d.comparators[d.comparators["status"] == "used"].itertuples():
        assigned.setdefault(r.unit_label, adopt.get(r.pilot))
    c["adoption"] = [a if arm == "pilot" else assigned.get(la, min(adopt.values()))
                     for la, arm, a in zip(c["la"], c["arm"], c["adoption_year"])]
    return PlaceboCells(c[["la", "arm", "year", "y", "n", "adoption"]], fit.indicator.likelihood, fit.indicator.per,
                        fit.indicator.direction)


def run_placebo(fit: IndicatorFit, settings: SamplerSettings, seed: int, lead: int) -> dict:
    from models.table7_placebo import compile_focal, fit_contamination, no_contamination, placebo_tests

    pc = placebo_cells(fit)
    focal = compile_focal(pc)                 # one compile for the placebo fits and the clean fit
    # every fit at the command's chain lengths (the placebo fits too): at 4 x (500 + 500) 18 of 53 missed R-hat
    # 1.01 narrowly on % re-referrals, at 4 x (500 + 1000) none did (benchmarks/README.md)
    kw = dict(draws=settings.draws, tune=settings.tune, chains=settings.chains)
    return {"space_time": placebo_tests(pc, seed=seed, lead=lead, focal=focal, **kw),
            "clean": no_contamination(pc, seed=seed + 1, focal=focal, **kw),
            "contamination": fit_contamination(pc, seed=seed + 2, **kw)}


def write_outputs(args, argv, panel: ofs.IndicatorPanel, fits: list[IndicatorFit], rows: pd.DataFrame, ref: str,
                  joint: dict | None = None, placebo: dict | None = None) -> Path:
    from figures import table7 as fig

    out_path = Path(args.out)
    with OutputDir(out_path) as out:
        out.write_table("table7_posterior", rows)
        areas = area_table(rows, ref)
        out.write_table("table7_reanalysed", areas)
        out.write_table("suppression", panel.suppressed)
        comp = pd.concat([f.design.comparators.assign(indicator=f.indicator.name) for f in fits], ignore_index=True)
        out.write_table("comparators", comp)
        miss = pd.concat([f.design.missing.assign(indicator=f.indicator.name) for f in fits], ignore_index=True)
        out.write_table("missing_cells", miss)
        cells = pd.concat([f.design.cells.assign(indicator=f.indicator.name) for f in fits], ignore_index=True)
        out.write_table("cells", cells)
        out.save_figure("forest.png", fig.plot_forest(rows, prior=ref))
        out.save_figure("pilots_vs_neighbours.png", fig.plot_pilots_vs_neighbours(
            cells, {f.indicator.name: f.indicator for f in fits}, {f.indicator.name: f.design.neighbours_of() for f in fits}))
        doc = {"analysis": NAME, "real_data": True, "reference_prior": ref,
               "headlines": {f.indicator.name: headline(f) for f in fits},
               "indicators": {f.indicator.name: {**vars(f.indicator), "pilots": f.design.pilots,
                                                 "comparators": f.design.comparator_las,
                                                 "pilots_excluded": f.design.pilots_excluded.to_dict(orient="records"),
                                                 "suppressed_in_file": int(panel.suppressed.loc[
                                                     panel.suppressed["indicator"] == f.indicator.name, "count"].sum()),
                                                 "missing_cells_in_design": len(f.design.missing),
                                                 "seconds": round(f.seconds, 1), "notes": f.notes,
                                                 "diagnostics": {k: v.to_dict() for k, v in f.diagnostics.items()}}
                               for f in fits},
               "results": rows.to_dict(orient="records"),
               "table7_reanalysed": areas.to_dict(orient="records"),
               "joint": joint,
               "placebo": {k: {**v, "space_time": {kk: vv for kk, vv in v["space_time"].items() if kk != "placebo_draws"}}
                           for k, v in (placebo or {}).items()},
               "provenance": provenance(seed=args.seed, data_hash=";".join(f"{k}={v}" for k, v in panel.hashes.items()),
                                        data_label=", ".join(sorted({str(p) for p in panel.paths.values()})), argv=argv,
                                        indicators_table=str(args.indicators), treatment=str(args.treatment),
                                        draws=args.draws, tune=args.tune, chains=args.chains,
                                        target_accept=args.target_accept, mass_matrix=args.mass_matrix)}
        out.write_json("statements.json", doc)
        md = ["# Table 7 re-analysed (real data: DfE official statistics)", "",
              "The report's LA-level summary (RR1054, Table 7: pilots vs statistical nearest neighbours, two-factor "
              "ANOVA, 2014/15-2018/19) beside hierarchical Bayesian DiD statements on the same kind of indicators.", "",
              areas.to_markdown(index=False), "", "## Headline per indicator", ""]
        md += [f"- {headline(f)}" for f in fits] + ["", "## Every indicator and prior", "",
                                                    rows.drop(columns=["statement", "statement_rope"]).to_markdown(
                                                        index=False, floatfmt=".3f"), ""]
        if joint is not None:
            jt = pd.DataFrame([{**e, **{k: v for k, v in joint["check"][e["indicator"]].items() if k.startswith("separate")}}
                               for e in joint["effects"]])
            out.write_table("joint", jt)
            pk = pd.DataFrame(joint["p_at_least_k_improved"])
            out.write_table("joint_at_least_k", pk)
            md += ["## Joint model (pilot effects correlated across indicators, LKJ(2))", "",
                   jt.to_markdown(index=False, floatfmt=".3f"), "",
                   "P(SofS improved at least k of these indicators), improved = moved in the programme's direction:", "",
                   pk.to_markdown(index=False, floatfmt=".3f"), "",
                   f"Joint diagnostics ok: {joint['diagnostics']['ok']}; problems: {joint['diagnostics']['problems']}"
                   + (f"; {joint['sampling_note']}" if joint.get("sampling_note") else ""), ""]
        for name, pl in (placebo or {}).items():
            st, ind = pl["space_time"], next(f.indicator for f in fits if f.indicator.name == name)
            out.save_figure(f"placebo_{name}.png", fig.plot_placebo(np.asarray(list(st["placebo_effects"].values())),
                                                                    st["pilots_mean_effect"]["mean"],
                                                                    label=ind.label, units=ind.units))
            tp, cl, ct = st["time_placebo"], pl["clean"]["effect"], pl["contamination"]["effect"]
            md += [f"## Placebo tests and contamination: {ind.label}", "",
                   f"- In space: {len(st['pilot_effects'])} pilots, {len(st['placebo_effects'])} placebo LAs (each "
                   f"comparator given its pilot's adoption year in turn). Pilots' mean single-LA effect "
                   f"{st['pilots_mean_effect']['mean']:+.2f} {ind.units}; P(the pilots moved further in the intended "
                   f"direction than a placebo group of the same size) = {st['p_pilots_beyond_placebo_group']:.2f} "
                   "(0.5: the pilots look like any LA).",
                   f"- In time (fake adoption {tp['lead_years']} year(s) early, {len(tp['pilots_used'])} pilots): "
                   f"{tp['mean']:+.2f} [{tp['eti95_low']:+.2f}, {tp['eti95_high']:+.2f}] {ind.units}.",
                   f"- Contamination (each comparator a SofS user with probability pi ~ {pl['contamination']['prior_pi']}, "
                   f"posterior mean {pl['contamination']['pi_mean']:.2f}): pilots' effect {ct['mean']:+.2f} "
                   f"[{ct['eti95_low']:+.2f}, {ct['eti95_high']:+.2f}], P(intended direction) = "
                   f"{ct['p_programme_direction']:.2f}; with clean comparators (same compact model) {cl['mean']:+.2f} "
                   f"[{cl['eti95_low']:+.2f}, {cl['eti95_high']:+.2f}], P = {cl['p_programme_direction']:.2f}.",
                   "- Diagnostics: " + "; ".join(f"{part}: {_verdict_text(d)}"
                                                 for part, d in placebo_verdicts(pl).items()) + ".", ""]
        out.write_text("report.md", "\n".join(md) + "\n")
        out.commit()
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.n_neighbours <= lp.N_NEIGHBOURS:
        parser.error(f"--n-neighbours must be between 1 and {lp.N_NEIGHBOURS}")
    return run_cli(lambda: run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
