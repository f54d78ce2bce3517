"""The sections of the report, built as a document (:mod:`analyses.report.document`).
"""


from __future__ import annotations

import json
import re
import shutil

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analyses.report.cache import RunRecord, _read_cache
from analyses.report.document import (Badge, Block, Bullets, Callout, Details, Figure, Heading, Links, Notes, Page,
                                      Para, Table, fmt, frame_table, kv_table, slug)
from analyses.report.entry import ReportEntry
from analyses.report.headline import display_frame, headline_summary
from analyses.report.readers import (PREDICTIVE, SENSITIVITY, Failure, Outputs, _num, all_statements, classify,
                                     data_label, diagnostic_fits, failures_of, headline_statements, is_synthetic,
                                     report_verdict, robustness_refits)
from models.did.result import DidResult

MAX_POSTERIOR_FILES = 6
MAX_TRACE_VARS = 5


@dataclass
class Context:
    """Where figures go while the document is built."""

    out_tmp: Path
    max_rows: int = 40
    figures: list[Figure] = field(default_factory=list)
    root: Path = Path(".")

    def rel(self, path: Path) -> str:
        """``path`` relative to the project (or as given when outside it)."""
        return relpaths(str(path), self.root)

    def figure(self, source: Path, analysis: str, caption: str) -> Figure:
        rel = f"figures/{analysis}/{source.name}"
        target = self.out_tmp / rel
        if source.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        fig = Figure(target, rel, caption)
        self.figures.append(fig)
        return fig


def relpaths(text: str, root: Path) -> str:
    """Absolute paths inside the project written relative to it (the report names no machine)."""
    root_s = str(Path(root).resolve())
    return text.replace(root_s + "/", "").replace(root_s, ".")


def _doc(o: Outputs) -> dict | DidResult:
    """What the readers take: the typed DiD result when there is one, else the main JSON document."""
    return o.did if o.did is not None else o.main


def headline_blocks(outputs: dict[str, Outputs], ctx: Context) -> tuple[list[Block], pd.DataFrame, list[dict]]:
    """The compact headline table, its forest figure, and the sentences folded below."""
    rows = headline_summary(outputs)
    frame = display_frame(rows)
    bad = {(i, "Source") for i, r in enumerate(rows) if "not in this report" in r.source or "not read" in r.source}
    blocks: list[Block] = [Table(frame, "Table 8 re-analysed: posterior mean, 95% interval, P(benefit) and "
                                        "P(target met) per outcome and prior, beside the report's estimate and grade",
                                 anchor="headline-table", bad=bad)]
    forest = [{"outcome": r.outcome, "label": f"{r.prior} [{_short(r.source)}]", "mean": r.mean, "low": r.low,
               "high": r.high, "units": r.units, "synthetic": r.synthetic}
              for r in rows if _num(r.mean) and _num(r.low) and _num(r.high)]
    if forest:
        import matplotlib.pyplot as plt

        from figures.report import forest_figure

        fig = forest_figure(forest)
        target = ctx.out_tmp / "figures" / "report" / "headline_forest.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=90, bbox_inches="tight")
        plt.close(fig)
        block = Figure(target, "figures/report/headline_forest.png",
                       "Table 8 re-analysed: the intervals of the table above (hollow red: synthetic data)")
        ctx.figures.append(block)
        blocks.append(block)
    sentences: list[Block] = []
    for outcome in dict.fromkeys(r.outcome for r in rows):
        lines = [f"{r.prior} [{_short(r.source)}]: {s}" if r.prior else s
                 for r in rows if r.outcome == outcome for s in r.statements]
        if lines:
            sentences += [Para(outcome, lead="Outcome:"), Bullets(lines)]
    if sentences:
        blocks.append(Details("The posterior statements behind these numbers", sentences))
    return blocks, frame, [r.to_dict() for r in rows]


def _short(source: str) -> str:
    m = re.search(r"\((analyses\.[a-z_]+)\)", source)
    return m.group(1).removeprefix("analyses.") if m else source


def top_blocks(records: dict[str, RunRecord], outputs: dict[str, Outputs], failures: list[Failure],
               missing: list[str], unselected: list[str]) -> list[Any]:
    blocks: list[Any] = []
    unread = [o for o in outputs.values() if o.run.has_outputs and o.did_error]
    if failures:
        items = []
        for f in failures:
            shown = "; ".join(f.problems[:3]) + (f" (+{len(f.problems) - 3} more)" if len(f.problems) > 3 else "")
            items.append(f.text + (f" ({shown})" if shown else ""))
        blocks.append(Callout("danger", "FAILING DIAGNOSTICS: do not trust the affected results as they are "
                              "(details in the diagnostics appendix)", items, anchor="failing-diagnostics"))
    else:
        title = "No failing diagnostic was recorded by the analyses shown"
        title += (" (but the results of " + ", ".join(o.name for o in unread) + " could not be read: see below)."
                  if unread else ".")
        blocks.append(Callout("warn" if unread else "ok", title, anchor="failing-diagnostics"))
    if unread:
        blocks.append(Callout("danger", "RESULTS THAT COULD NOT BE READ: these analyses wrote a DiD result that does "
                              "not match its schema, so none of their results are shown",
                              [f"{o.name}: {o.did_file} {o.did_error}" for o in unread], anchor="unreadable-results"))
    broken = [r for r in records.values() if r.status in ("failed", "timed out")]
    if broken:
        blocks.append(Callout("danger", "Analyses that failed to run in this report",
                              [f"{r.name}: {r.detail}; log: logs/{r.name}.log" for r in broken]))
    stale = [r for r in records.values() if r.cache == "stale" and r.status == "reused"]
    if stale:
        blocks.append(Callout("warn", "Stale outputs (inputs changed since they were written; not re-run)",
                              [r.name for r in stale]))
    unreadable = [f"{o.name}: {e}" for o in outputs.values() for e in o.read_errors]
    if unreadable:
        blocks.append(Callout("warn", "Output files that could not be read", unreadable))
    absent = [r.name for r in records.values() if r.status == "no outputs"]
    miss_items = [f"{n}: not built yet (no analyses/{n}.py)" for n in missing]
    miss_items += [f"{n}: no saved outputs" for n in absent]
    miss_items += [f"{n}: not selected (--only)" for n in unselected]
    if miss_items:
        blocks.append(Callout("warn", "Missing analyses (listed, not silently omitted)", miss_items, anchor="missing"))
    synthetic = [o.name for o in outputs.values() if o.run.has_outputs and is_synthetic(o) is True]
    if synthetic:
        blocks.append(Callout("info", "SYNTHETIC DATA in: " + ", ".join(synthetic) + ". These sections illustrate "
                              "the method on simulated children calibrated to the published results; they are not "
                              "evidence about real children."))
    return blocks


def status_table(records: dict[str, RunRecord], outputs: dict[str, Outputs], failures: list[Failure]) -> Table:
    failed = {f.analysis for f in failures}
    rows = []
    for name, r in records.items():
        o = outputs.get(name)
        syn = is_synthetic(o) if o is not None and r.has_outputs else None
        unread = o is not None and r.has_outputs and bool(o.did_error)
        rows.append({"analysis": name, "status": r.status, "detail": r.detail,
                     "data": "not read" if unread else
                     {True: "SYNTHETIC", False: "real", None: "–" if not r.has_outputs else "not stated"}[syn],
                     "diagnostics": "–" if not r.has_outputs else "RESULTS NOT READ" if unread
                     else ("FAILED" if name in failed else "passed / none")})
    frame = pd.DataFrame(rows, columns=["analysis", "status", "detail", "data", "diagnostics"])
    bad = {(i, "diagnostics") for i, row in frame.iterrows() if row["diagnostics"] in ("FAILED", "RESULTS NOT READ")}
    bad |= {(i, "status") for i, row in frame.iterrows() if row["status"] in ("failed", "timed out", "not built")}
    return Table(frame, "Analyses in this report", anchor="status-table", bad=bad)


def priors_blocks(main: dict) -> list[Any]:
    priors = main.get("priors")
    if isinstance(priors, dict) and priors and all(isinstance(v, dict) for v in priors.values()):
        frame = pd.DataFrame([{"prior": k, **{kk: fmt(vv) for kk, vv in v.items() if kk != "name"}}
                              for k, v in priors.items()])
        return [Table(frame, "Named priors")]
    if isinstance(priors, list) and priors and all(isinstance(v, dict) for v in priors):
        return [Table(pd.DataFrame([{k: fmt(v) for k, v in p.items()} for p in priors]), "Priors")]
    blocks: list[Any] = []
    for key in ("prior_grid", "prior", "priors_used"):
        if isinstance(main.get(key), dict):
            blocks.append(kv_table(main[key], key.replace("_", " ")))
    results = main.get("results")
    if isinstance(results, list):
        described = [r["prior_description"] for r in results if isinstance(r, dict) and isinstance(r.get("prior_description"), str)]
        if described:
            blocks.append(Bullets(described))
    return blocks or [Para("The analysis's outputs do not list its priors; see the model description above.")]


CONSUMED = {"provenance", "priors", "prior_grid", "results", "diagnostics", "diagnostics_ok", "report", "synthetic",
            "data_source", "label", "outcome", "population", "statements", "question", "report_verdict", "truth"}


def _json_blocks(key: str, value: Any, ctx: Context, csv_stems: set[str]) -> list[Any]:
    """Render a leftover JSON entry compactly (tables for records, key/values for flat dicts)."""
    if key in csv_stems:
        return []
    title = key.replace("_", " ")
    if key in ("headline", "summary_text", "markdown"):
        if isinstance(value, str):
            return [Page(value)]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [Page("\n".join(value))]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        frame = pd.DataFrame([{k: (fmt(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in value])
        return [frame_table(frame, title, ctx.max_rows)]
    if isinstance(value, dict) and value:
        flat = {k: v for k, v in value.items() if not isinstance(v, (dict, list)) or len(json.dumps(v, default=str)) < 200}
        if flat:
            return [kv_table(flat, title)]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [Para(fmt(value), lead=f"{title}:")]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [Para(title, lead=""), Bullets(value)]
    return []


def analysis_section(o: Outputs, ctx: Context) -> list[Any]:
    info, main = o.info, o.main
    title = info.title or o.name
    blocks: list[Any] = [Heading(2, f"{title} (analyses.{o.name})", anchor=f"analysis-{slug(o.name)}")]
    blocks.append(Para(f"{o.run.status}: {o.run.detail}" if o.run.detail else o.run.status, lead="Run:"))
    if not o.run.has_outputs:
        blocks.append(Callout("warn", f"No outputs to show for {o.name}: {o.run.status}",
                              [o.run.detail] + ([o.run.log_tail] if o.run.log_tail else [])))
        return blocks
    if o.run.status in ("failed", "timed out"):
        blocks.append(Callout("danger", f"This run failed; the outputs below are from an EARLIER run: {o.run.detail}",
                              [o.run.log_tail] if o.run.log_tail else []))
    if o.is_did:
        return blocks + did_section(o, ctx)
    question = main.get("question") if isinstance(main.get("question"), str) else info.question
    if not question and o.docs:
        question = o.docs[0][1].split("\n\n")[0]
    blocks.append(Para(question or "(not stated)", lead="Question:"))
    syn = is_synthetic(o)
    blocks.append(Badge({True: "synthetic", False: "real", None: "unknown"}[syn],
                        {True: "SYNTHETIC DATA", False: "REAL DATA", None: "DATA: NOT STATED"}[syn]))
    blocks.append(Para(data_label(o), lead="Data:"))
    if isinstance(main.get("population"), str):
        blocks.append(Para(main["population"], lead="Population:"))

    blocks.append(Heading(3, "Model"))
    if o.docs:
        blocks += [Details(f"{mod}: model in notation, priors, assumptions", [Notes(doc)], open=(i > 0 or len(o.docs) == 1))
                   for i, (mod, doc) in enumerate(o.docs)]
    else:
        blocks.append(Para("No module docstring found."))
    blocks.append(Heading(3, "Priors"))
    blocks += priors_blocks(main)

    blocks.append(Heading(3, "Results"))
    verdict = report_verdict(main)
    if verdict:
        blocks.append(Para(verdict, lead="The report's own result:"))
    statements: dict[str, list[str]] = {}
    for where, text in all_statements(main):
        statements.setdefault(where, []).append(text)
    for where, texts in statements.items():
        if where.startswith(("table8", "grid", "consistency")):
            continue
        blocks.append(Para(f"Posterior statements ({where.replace('results/', 'prior: ') or 'headline'}):"))
        blocks.append(Bullets(list(dict.fromkeys(texts))))
    stems = sorted(o.tables, key=lambda s: (s not in ("summary", "table8_reanalysed"), s))
    for stem in stems:
        if classify(stem) == "results":
            blocks.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, ctx.rel(o.folder / f"{stem}.csv"),
                                      fold_above=None if stem == "summary" else 15))
    csv_stems = set(o.tables)
    for key, value in main.items():
        if key not in CONSUMED and not SENSITIVITY.search(key) and not PREDICTIVE.search(key):
            blocks += _json_blocks(key, value, ctx, csv_stems)
    for fig in o.figures:
        if classify(fig.stem) == "results":
            blocks.append(ctx.figure(fig, o.name, f"{o.name}: {fig.name}"))
    truth = main.get("truth")
    if isinstance(truth, dict):
        flat = {k: v for k, v in truth.items() if not isinstance(v, (dict, list))}
        blocks.append(kv_table(flat, "Known truth of the synthetic data (for checking recovery)"))

    blocks.append(Heading(3, "What would change the conclusion (sensitivity)"))
    sens: list[Any] = []
    if isinstance(main.get("results"), list) and len(main["results"]) > 1:
        lines = headline_statements(main)
        if lines:
            sens += [Para("Under each named prior:"), Bullets(lines)]
    for stem in stems:
        if classify(stem) == "sensitivity":
            sens.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, ctx.rel(o.folder / f"{stem}.csv")))
    for key, value in main.items():
        if key not in CONSUMED and SENSITIVITY.search(key):
            sens += _json_blocks(key, value, ctx, csv_stems)
    for fig in o.figures:
        if classify(fig.stem) == "sensitivity":
            sens.append(ctx.figure(fig, o.name, f"{o.name}: {fig.name}"))
    blocks += sens or [Para("This analysis saved no sensitivity results.")]
    for name, text in o.pages.items():
        blocks.append(Details(f"The analysis's own page ({name})", [Page(text)]))
    return blocks


def _model_blocks(o: Outputs) -> list[Any]:
    if not o.docs:
        return [Para("No module docstring found.")]
    return [Details(f"{mod}: model in notation, priors, assumptions", [Notes(doc)], open=(i > 0 or len(o.docs) == 1))
            for i, (mod, doc) in enumerate(o.docs)]


def _saved(o: Outputs, ctx: Context, kind: str) -> list[Any]:
    """The analysis's saved CSV tables and figures of one kind (results, sensitivity, ...)."""
    blocks: list[Any] = []
    for stem in sorted(o.tables, key=lambda s: (s not in ("summary", "table8_reanalysed"), s)):
        if classify(stem) == kind:
            blocks.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, ctx.rel(o.folder / f"{stem}.csv"),
                                      fold_above=None if stem == "summary" else 15))
    for fig in o.figures:
        if classify(fig.stem) == kind:
            blocks.append(ctx.figure(fig, o.name, f"{o.name}: {fig.name}"))
    return blocks


def _agg_mean(block: dict) -> Any:
    """The overall posterior mean of one staggered aggregate (``simple`` is flat; the others have ``overall``)."""
    return (block.get("overall") if isinstance(block.get("overall"), dict) else block).get("mean")


def did_section(o: Outputs, ctx: Context) -> list[Any]:
    """An analysis section from a DiD analysis's typed result (:class:`DidResult`)."""
    did = o.did
    question = o.info.question or (did.title if did is not None else "")
    if not question and o.docs:
        question = o.docs[0][1].split("\n\n")[0]
    blocks: list[Any] = [Para(question or "(not stated)", lead="Question:")]
    if did is None:
        blocks.append(Callout("danger", f"The results of {o.name} could not be read: {o.did_file} {o.did_error}",
                              ["Re-run the analysis (it writes its result with DidResult.write, which validates it) "
                               "or correct the named field. The files below are as saved, not checked."]))
        blocks.append(Badge("unknown", "DATA: NOT READ"))
        blocks += [Heading(3, "Model")] + _model_blocks(o)
        blocks += [Heading(3, "Saved tables and figures (not checked against the result)")]
        for kind in ("results", "sensitivity"):
            blocks += _saved(o, ctx, kind)
        blocks += [Details(f"The analysis's own page ({name})", [Page(text)]) for name, text in o.pages.items()]
        return blocks
    out, data = did.outcome, did.data
    blocks.append(Badge("synthetic" if did.synthetic else "real", "SYNTHETIC DATA" if did.synthetic else "REAL DATA"))
    blocks.append(Para(data_label(o), lead="Data:"))
    blocks.append(Para(f"{fmt(data.n_records)} records in {data.n_cells} cells; {data.n_units} units, "
                       f"{data.n_treated_units} treated; cohorts {fmt(data.cohorts)}; periods {fmt(data.periods)}; "
                       f"data hash {data.data_hash}", lead="Panel:"))
    if data.missing:
        blocks.append(Para("; ".join(f"{k}: {v}" for k, v in data.missing.items()), lead="Missing values:"))
    if data.notes:
        blocks.append(Bullets(list(data.notes)))
    blocks.append(Para(f"{out.label} ({out.units}; {out.likelihood} likelihood; region of practical equivalence "
                       f"±{fmt(out.rope)}, minimal important difference {fmt(out.mid)})", lead="Outcome:"))
    if out.population:
        blocks.append(Para(out.population, lead="Population:"))

    blocks += [Heading(3, "Model")] + _model_blocks(o)
    blocks.append(kv_table(asdict(did.design), "Design"))
    blocks.append(Heading(3, "Priors"))
    blocks.append(Table(pd.DataFrame([{k: fmt(v) for k, v in p.items()} for p in did.priors]), "Named priors"))
    described = [r.prior_description for r in did.results if r.prior_description]
    if described:
        blocks.append(Bullets(described))

    blocks.append(Heading(3, "Results"))
    verdict = report_verdict(did)
    if verdict:
        blocks.append(Para(verdict, lead="The report's own result:"))
        blocks.append(Para(did.report.source, lead="Source:"))
    elif did.report is None:
        blocks.append(Para("none (these data have no published counterpart)", lead="The report's own result:"))
    rows, bad = [], set()
    for i, r in enumerate(did.results):
        e, a = r.effect, r.aggregates
        rows.append({"prior": r.prior, "mean": e.get("mean"), "95% low": e.get("eti95_low"),
                     "95% high": e.get("eti95_high"), "P(< 0)": e.get("p_negative"), "P(> 0)": e.get("p_positive"),
                     "relative change": r.relative.get("mean"),
                     **{f"{k} aggregate": _agg_mean(a[k]) for k in ("simple", "dynamic", "group", "calendar")},
                     "diagnostics ok": r.diagnostics_ok})
        if not r.diagnostics_ok:
            bad.add((i, "diagnostics ok"))
    blocks.append(Table(pd.DataFrame(rows), f"Effect on {out.label} ({out.units}), posterior per named prior", bad=bad))
    blocks.append(Table(pd.DataFrame([{"prior": r.prior, **r.probabilities} for r in did.results]),
                        "Posterior probabilities per named prior"))
    for r in did.results:
        if r.statements:
            blocks += [Para(f"Posterior statements (prior: {r.prior}):"), Bullets(list(r.statements))]
        for key, sec in r.secondary.items():
            if sec.get("statements"):
                blocks += [Para(f"Posterior statements ({key}, prior: {r.prior}):"), Bullets(list(sec["statements"]))]
    estimands = [{"prior": r.prior, "estimand": e.get("label", key),
                  **{k: e.get(k) for k in ("mean", "eti95_low", "eti95_high")}}
                 for r in did.results for key, e in r.estimands.items()]
    if estimands:
        blocks.append(Table(pd.DataFrame(estimands), "Three estimands: these treated units, the average unit, "
                                                     "and a new unit like them"))
    if did.event_study_statements:
        blocks += [Para("Event study:"), Bullets(list(did.event_study_statements))]
    if did.frequentist:
        blocks.append(Table(pd.DataFrame([vars(f) for f in did.frequentist]),
                            "Classical estimate (frequentist cross check)"))
    if did.checks:
        blocks.append(kv_table(did.checks, "Checks recorded by the analysis"))
    blocks += _saved(o, ctx, "results")
    csv_stems = set(o.tables)
    for key, value in did.extra.items():
        blocks += _json_blocks(key, value, ctx, csv_stems)
    if isinstance(did.truth, dict):
        flat = {k: v for k, v in did.truth.items() if not isinstance(v, (dict, list))}
        blocks.append(kv_table(flat, "Known truth of the synthetic data (for checking recovery)"))

    blocks.append(Heading(3, "What would change the conclusion (sensitivity)"))
    rob = did.robustness
    sens: list[Any] = []
    if len(did.results) > 1:
        sens += [Para("Under each named prior:"), Bullets(headline_statements(did))]
    if rob.statements:
        sens += [Para("Robustness:"), Bullets(list(rob.statements))]
    if rob.notes:
        sens += [Para("Notes on the robustness re-fits:"), Bullets(list(rob.notes))]
    # the schema leaves these rows untyped: records (dicts) are shown, anything else is left out
    table = [r for r in rob.table if isinstance(r, dict)]
    if table and "robustness" not in o.tables:
        frame = pd.DataFrame([{k: (fmt(v) if isinstance(v, (dict, list)) else v) for k, v in r.items()} for r in table])
        sens.append(frame_table(frame, "robustness re-fits", ctx.max_rows))
    loo = [r for r in rob.leave_one_out if isinstance(r, dict)]
    if loo:
        sens.append(frame_table(pd.DataFrame(loo), "leave one LA out (robustness re-fits)", ctx.max_rows))
    if rob.leave_one_out_summary:
        sens.append(kv_table(rob.leave_one_out_summary, "leave one LA out: summary"))
    for key, title in (("sensitivity", "parallel-trends sensitivity (Rambachan & Roth)"), ("pretrends", "pre-trends")):
        if key not in o.tables:
            for effect, value in getattr(rob, key).items():
                sens += _json_blocks(f"{title} ({effect})", value, ctx, set())
    sens += _saved(o, ctx, "sensitivity")
    blocks += sens or [Para("This analysis saved no sensitivity results.")]
    blocks += [Details(f"The analysis's own page ({name})", [Page(text)]) for name, text in o.pages.items()]
    return blocks


def _diag_table(where: str, d: dict) -> list[Any]:
    thr = d.get("thresholds") or {}
    rhat_max, ess_min = thr.get("rhat_max", 1.01), thr.get("ess_min", 400)
    variables = d.get("variables")
    frame = pd.DataFrame([v for v in variables if isinstance(v, dict)] if isinstance(variables, list) else [])
    bad = set()
    for i, row in frame.iterrows():
        if _num(row.get("rhat")) and row["rhat"] > rhat_max:
            bad.add((i, "rhat"))
        for col in ("ess_bulk", "ess_tail"):
            if _num(row.get(col)) and row[col] < ess_min:
                bad.add((i, col))
    ebfmi = d.get("ebfmi") or []
    verdict = "passed" if d.get("ok") else "FAILED"
    line = (f"{verdict}; divergences: {d.get('divergences', '–')} of {d.get('n_draws', '–')} draws; "
            f"E-BFMI by chain: {fmt(ebfmi) if ebfmi else '–'}; thresholds: R-hat <= {rhat_max}, "
            f"bulk/tail ESS >= {ess_min}, E-BFMI >= {thr.get('ebfmi_min', 0.3)}")
    blocks: list[Any] = [Heading(4, f"Fit: {where}"), Para(line)]
    blocks.append(Table(frame, f"R-hat and ESS ({where})", bad=bad))
    if d.get("problems"):
        blocks.append(Details(f"{len(d['problems'])} problem(s)", [Bullets([str(p) for p in d["problems"]])]))
    return blocks


def _scalar_draws(ds, prefer: list[str]) -> dict[str, np.ndarray]:
    """Up to MAX_TRACE_VARS quantities as (chain, draw) arrays: scalars first, then first elements."""
    names = sorted(ds.data_vars, key=lambda v: (v not in prefer, prefer.index(v) if v in prefer else 0, v))
    picked: dict[str, np.ndarray] = {}
    for v in names:
        if set(ds[v].dims) == {"chain", "draw"}:
            picked[v] = ds[v].transpose("chain", "draw").values
        if len(picked) >= MAX_TRACE_VARS:
            return picked
    for v in names:
        extra = [d for d in ds[v].dims if d not in ("chain", "draw")]
        if extra and v not in picked and len(picked) < min(MAX_TRACE_VARS, 4):
            first = ds[v].isel({d: 0 for d in extra})
            label = f"{v}[{', '.join(str(ds[v][d].values[0]) for d in extra)}]"
            picked[label] = first.transpose("chain", "draw").values
    return picked


def posterior_blocks(o: Outputs, ctx: Context, prefer: list[str]) -> tuple[list[Any], list[Any]]:
    """Trace/rank figures and power-scaling sensitivity from the saved posterior files."""
    import xarray as xr

    from figures.report import trace_rank_figure

    figs: list[Any] = []
    psense: list[Any] = []
    lacking: list[str] = []
    files = o.posteriors[:MAX_POSTERIOR_FILES]
    for path in files:
        try:
            tree = xr.open_datatree(path, engine="h5netcdf")
        except (OSError, ValueError) as err:
            figs.append(Para(f"{path.name}: could not be opened ({err})"))
            continue
        try:
            if "posterior" not in tree.children:
                continue
            post = tree["posterior"].to_dataset()
            if not {"chain", "draw"} <= set(post.dims):
                continue
            draws = _scalar_draws(post, prefer)
            if draws:
                fig = trace_rank_figure(draws, title=f"{o.name}: {path.name}", synthetic=is_synthetic(o) is True)
                target = ctx.out_tmp / "figures" / o.name / f"trace_rank_{path.stem}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                fig.savefig(target, dpi=90, bbox_inches="tight")
                import matplotlib.pyplot as plt

                plt.close(fig)
                block = Figure(target, f"figures/{o.name}/{target.name}", f"Trace and rank plots, {o.name}: {path.name}")
                ctx.figures.append(block)
                figs.append(block)
            if {"log_prior", "log_likelihood"} <= set(tree.children):
                import arviz as az

                names = [v for v in draws if v in post.data_vars]
                table = az.psense_summary(tree, var_names=names or None)
                frame = table.reset_index().rename(columns={"index": "variable"})
                bad = {(i, "diagnosis") for i, row in frame.iterrows()
                       if "diagnosis" in frame.columns and str(row["diagnosis"]).strip() not in ("✓", "")}
                psense.append(Table(frame, f"Power-scaling sensitivity, {path.name}", bad=bad))
            else:
                lacking.append(path.name)
        except Exception as err:  # noqa: BLE001 - a bad file must not stop the report
            figs.append(Para(f"{path.name}: diagnostics plots failed ({type(err).__name__}: {err})"))
        finally:
            tree.close()
    if len(o.posteriors) > len(files):
        figs.append(Para(f"Trace/rank plots shown for the first {len(files)} of {len(o.posteriors)} posterior files."))
    if lacking:
        psense.append(Para(
            "Not computed for " + ", ".join(lacking) + ": power scaling needs the log prior and pointwise log "
            "likelihood of every draw (log_prior and log_likelihood groups), which these files do not hold, and "
            "the report does not rebuild models. An analysis can save them with pm.compute_log_prior(idata) and "
            "pm.compute_log_likelihood(idata) before writing its posterior; the named-prior comparison in each "
            "section is the prior sensitivity available meanwhile."))
    return figs, psense


def appendix_section(o: Outputs, ctx: Context) -> list[Any]:
    blocks: list[Any] = [Heading(3, f"{o.info.title or o.name} (analyses.{o.name})", anchor=f"diagnostics-{slug(o.name)}")]
    if o.did_error:
        blocks.append(Callout("danger", f"Diagnostics not shown: {o.did_file} {o.did_error}"))
    fits = diagnostic_fits(o)
    prefer: list[str] = []
    for where, d in fits:
        blocks += _diag_table(where, d)
        prefer += [v.get("variable") for v in d.get("variables") or [] if isinstance(v, dict) and v.get("variable")]
    if o.did is not None:
        blocks += refit_blocks(o.did)
    if not fits and o.did is None:
        for stem, table in o.tables.items():
            if classify(stem) == "diagnostics":
                blocks.append(frame_table(table, f"{stem}.csv", ctx.max_rows))
                fits.append((stem, {}))
    for key, value in ({} if o.is_did else o.main).items():
        if "diagnos" in key and not isinstance(value, bool) and not diagnostic_fits_in(value):
            blocks += _json_blocks(key, value, ctx, set())
    if not fits:
        blocks.append(Para("No sampling diagnostics recorded (this analysis may not use MCMC)."))
    figs, psense = posterior_blocks(o, ctx, prefer)
    if figs:
        blocks += [Heading(4, "Trace and rank plots")] + figs
    for fig in o.figures:
        if classify(fig.stem) == "diagnostics":
            blocks.append(ctx.figure(fig, o.name, f"{o.name}: {fig.name}"))
    ppc: list[Any] = []
    for stem, table in o.tables.items():
        if classify(stem) == "predictive":
            ppc.append(frame_table(table, f"{stem}.csv", ctx.max_rows))
    for fname, doc in o.jsons.items():
        if isinstance(doc, dict) and fname != o.did_file:
            for key, value in doc.items():
                if PREDICTIVE.search(key):
                    ppc += _json_blocks(key, value, ctx, set())
    if o.did is not None and o.did.checks:
        ppc.append(kv_table(o.did.checks, "Checks recorded by the analysis (predictive coverage, prior draws)"))
    for fig in o.figures:
        if classify(fig.stem) == "predictive":
            ppc.append(ctx.figure(fig, o.name, f"{o.name}: {fig.name}"))
    blocks += [Heading(4, "Prior and posterior predictive checks")] + (ppc or [Para("None saved by this analysis.")])
    for key, value in ({} if o.is_did else o.main).items():
        if re.search(r"psense|power_scal", key):
            psense = _json_blocks(key, value, ctx, set()) + psense
    if psense:
        blocks += [Heading(4, "Prior sensitivity by power scaling")] + psense
    return blocks


def refit_blocks(did: DidResult) -> list[Any]:
    """The robustness re-fits of a DiD result and whether each passed its diagnostics."""
    refits = robustness_refits(did)
    if not refits:
        return [Heading(4, "Robustness re-fits"), Para("No robustness re-fit recorded.")]
    frame = pd.DataFrame([{"re-fit": r["name"], "family": r["family"], "effects": ", ".join(map(str, r["effects"])),
                           "diagnostics": "passed" if r["ok"] else "FAILED", "problems": r["problems"]} for r in refits])
    bad = {(i, "diagnostics") for i, r in enumerate(refits) if not r["ok"]}
    line = ("every re-fit passed its diagnostics" if did.robustness.diagnostics_ok
            else "at least one re-fit FAILED its diagnostics: its estimate is not to be trusted as it is")
    return [Heading(4, "Robustness re-fits"), Para(line),
            Table(frame, "Robustness re-fits: sampling diagnostics (R-hat, ESS, divergences)", bad=bad)]


def diagnostic_fits_in(value: Any) -> bool:
    return bool(diagnostic_fits(Outputs("", Path("."), ReportEntry(name=""), RunRecord("", "ran"), jsons={"x": value})))


def reproducibility(outputs: dict[str, Outputs], records: dict[str, RunRecord], own: dict) -> list[Any]:
    blocks: list[Any] = [Heading(2, "Reproducibility", anchor="reproducibility")]
    rows, packages = [], {}
    for name, o in outputs.items():
        if not o.run.has_outputs:
            continue
        if o.is_did:
            prov = o.did.provenance if o.did is not None else {}
        else:
            prov = o.main.get("provenance") if isinstance(o.main.get("provenance"), dict) else {}
        cache = _read_cache(o.cache_dir or o.folder) or {}
        rows.append({"analysis": name, "re-run with": records[name].command,
                     "seed": prov.get("seed"), "data": prov.get("data") or data_label(o),
                     "data hash": prov.get("data_hash"), "written": prov.get("created_at"),
                     "git commit": (prov.get("git_commit") or "")[:12] or None,
                     "analysis's own command": prov.get("command"), "cache key": (cache.get("key") or "")[:19] or None})
        if isinstance(prov.get("packages"), dict):
            packages[name] = prov["packages"]
        extras = {k: v for k, v in prov.items() if k not in ("packages", "command", "seed", "data", "data_hash",
                                                              "created_at", "git_commit") and not isinstance(v, (dict, list))}
        if extras:
            rows[-1]["other settings"] = "; ".join(f"{k}={fmt(v)}" for k, v in extras.items())
    if rows:
        blocks.append(Table(pd.DataFrame(rows), "Seeds, input data hashes and command lines"))
    else:
        blocks.append(Para("No analysis outputs to describe."))
    if packages:
        frame = pd.DataFrame(packages)
        frame.index.name = "package"
        same = frame.nunique(axis=1, dropna=False) <= 1
        if bool(same.all()):
            frame = frame.iloc[:, :1].rename(columns={frame.columns[0]: "version (all analyses)"})
        blocks.append(Table(frame.reset_index().astype(object).where(lambda x: x.notna(), None),
                            "Package versions recorded by the analyses"))
    blocks.append(kv_table({k: v for k, v in own.items() if not isinstance(v, dict)}, "This report"))
    blocks.append(kv_table(own.get("packages", {}), "Package versions of this report run"))
    return blocks


def build_document(records: dict[str, RunRecord], outputs: dict[str, Outputs], missing: list[str],
                   unselected: list[str], ctx: Context, own: dict) -> tuple[list[Any], list[Failure], list[dict]]:
    failures = [f for o in outputs.values() if o.run.has_outputs for f in failures_of(o)]
    shown = [o for o in outputs.values()]
    blocks: list[Any] = [Heading(1, "Signs of Safety evaluation: Bayesian re-analysis report"),
                         Para(f"Generated {own['created_at']} by `{own['command']}`"
                              + (f" at git commit {own['git_commit'][:12]}" if own.get("git_commit") else "") + ".")]
    blocks += top_blocks(records, outputs, failures, missing, unselected)
    declared = [o.info.error for o in outputs.values() if o.info.error]
    if declared:
        blocks.append(Callout("warn", "Report entries that could not be read (defaults used)", declared))
    toc = [("Table 8 re-analysed (headline)", "headline"), ("Analyses in this report", "status")]
    toc += [(f"{o.info.title or o.name} (analyses.{o.name})", f"analysis-{slug(o.name)}") for o in shown]
    toc += [("Diagnostics appendix", "diagnostics"), ("Reproducibility", "reproducibility")]
    blocks.append(Details("Contents", [Links(toc)], open=True))
    blocks.append(Heading(2, "Table 8 re-analysed", anchor="headline"))
    blocks.append(Para("For each outcome of the evaluation's Table 8: the report's own estimate and grade, beside "
                       "the posterior mean, 95% interval, P(benefit) and P(target met) under each named prior, first "
                       "from the numbers the report printed (analyses.published, moderate-strength priors), then from "
                       "our models of the underlying data. Rows from synthetic data are marked; the sentences are "
                       "folded below the figure."))
    head, headline, records_ = headline_blocks(outputs, ctx)
    blocks += head
    pub = outputs.get("published")
    if pub is not None:
        for fig in pub.figures:
            if fig.stem.startswith("table8"):
                blocks.append(ctx.figure(fig, "published", "Table 8 re-analysed (analyses.published)"))
    blocks.append(Heading(2, "Analyses in this report", anchor="status"))
    blocks.append(status_table(records, outputs, failures))
    for o in shown:
        blocks += analysis_section(o, ctx)
    blocks.append(Heading(2, "Diagnostics appendix", anchor="diagnostics"))
    blocks.append(Para("Every fitted model: R-hat (<= 1.01), bulk and tail ESS (>= 400), divergences, E-BFMI "
                       "(>= 0.3); failing cells are highlighted. Trace and rank plots are drawn from the saved "
                       "posterior files; a well-mixed chain has a flat rank histogram."))
    for o in shown:
        if o.run.has_outputs:
            blocks += appendix_section(o, ctx)
    blocks += reproducibility(outputs, records, own)
    return blocks, failures, records_


