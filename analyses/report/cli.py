"""The command: ``python -m analyses.report`` (options, selection, writing the three files)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from pathlib import Path
from string import Template

from analyses.common import EXIT_BAD_INPUT, EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, log, provenance, run_cli
from analyses.report.cache import RunRecord, _read_cache, analysis_args, run_or_reuse
from analyses.report.entry import ROOT, TABLE8, discover
from analyses.report.readers import Outputs, read_outputs
from analyses.report.sections import Context, build_document, relpaths
from analyses.report.document import to_html, to_markdown

TEMPLATE = Path(__file__).resolve().parents[1] / "report_templates" / "report.html"
DESCRIPTION = (__import__("analyses.report", fromlist=["__doc__"]).__doc__ or "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analyses.report", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="folder holding each analysis's outputs as <results>/<name> (default: results)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <results>/report)")
    p.add_argument("--only", nargs="+", default=None, metavar="NAMES",
                   help="only these analyses (names separated by spaces or commas)")
    p.add_argument("--reuse-only", action="store_true", help="never run an analysis; render the saved outputs")
    p.add_argument("--quick", action="store_true",
                   help="small runs for a smoke test (e.g. --draws 200 --tune 200 --chains 2 where accepted)")
    p.add_argument("--timeout", type=float, default=7200, help="seconds allowed to each analysis (default 7200)")
    p.add_argument("--max-rows", type=int, default=40, help="rows shown per table before truncating (default 40)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when a diagnostic failed or an analysis failed to run")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return p


def select(available: list[str], only: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """(to include, expected but not built, not selected); ValueError for unknown names.

    ``available``: the analyses found (:func:`discover`); the Table 8 analyses are expected
    even when absent, so a missing one is listed rather than silently left out."""
    expected = [n for n in TABLE8.values() if n not in available]
    known = available + expected
    if only is None:
        return available, expected, []
    wanted = [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"--only: unknown analysis {', '.join(unknown)}; valid: {', '.join(known)}")
    chosen = [n for n in known if n in wanted]
    return ([n for n in chosen if n in available], [n for n in chosen if n not in available],
            [n for n in available if n not in chosen])


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    root = args.root.resolve()
    results = args.results if args.results.is_absolute() else Path.cwd() / args.results
    out_dir = args.out if args.out is not None else results / "report"
    try:
        entries = discover(root)
        names, missing, unselected = select(list(entries), args.only)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    records: dict[str, RunRecord] = {}
    outputs: dict[str, Outputs] = {}
    with OutputDir(out_dir) as out:
        for name in names:
            info = entries[name]
            folder = results / name
            rec = run_or_reuse(root, info, folder, analysis_args(root, info, args.quick), reuse_only=args.reuse_only,
                               log_dir=out / "logs", timeout=args.timeout, quiet=args.quiet)
            records[name] = rec
            outputs[name] = read_outputs(root, info, folder, rec)
        for name in missing:
            records[name] = RunRecord(name, "not built", f"no analyses/{name}.py in this checkout")
        log("[report] rendering", quiet=args.quiet)
        caches = {n: (_read_cache(results / n) or {}).get("key") for n in names}
        own = provenance(seed=None, data_hash="sha256:" + hashlib.sha256(json.dumps(caches, sort_keys=True).encode()).hexdigest(),
                         data_label="cache keys of the analyses shown", argv=argv)
        ctx = Context(out.tmp, max_rows=args.max_rows, root=root)
        own["command"] = " ".join(["python -m analyses.report", *(sys.argv[1:] if argv is None else argv)])
        blocks, failures, headline = build_document(records, outputs, missing, unselected, ctx, own)
        page = Template(TEMPLATE.read_text(encoding="utf-8")).safe_substitute(
            title="Signs of Safety: Bayesian re-analysis report", body=relpaths(to_html(blocks), root))
        out.write_text("report.html", page)
        out.write_text("report.md", relpaths(to_markdown(blocks), root))
        out.write_json("report.json", {
            "analyses": {n: {k: v for k, v in vars(r).items() if k != "log_tail"} for n, r in records.items()},
            "missing": missing, "not_selected": unselected,
            "failures": [f.to_dict() for f in failures],
            "unreadable": {o.name: f"{o.did_file} {o.did_error}" for o in outputs.values()
                           if o.run.has_outputs and o.did_error},
            "headline": headline,
            "figures": [f.rel for f in ctx.figures],
            "provenance": own,
        })
        path = out.commit()
    unread = [o.name for o in outputs.values() if o.run.has_outputs and o.did_error]
    if not args.quiet:
        print(f"report: {path / 'report.html'} ({len(names)} analyses; {len(missing)} not built; "
              f"{len(failures)} failing diagnostic block(s))")
        if failures:
            print("  WARNING: failing diagnostics in " + ", ".join(dict.fromkeys(f.analysis for f in failures)))
        broken = [r.name for r in records.values() if r.status in ("failed", "timed out")]
        if broken:
            print("  WARNING: failed to run: " + ", ".join(broken))
        if unread:
            print("  WARNING: results not read (not a valid DiD result): " + ", ".join(unread))
    bad = failures or unread or any(r.status in ("failed", "timed out") for r in records.values())
    return EXIT_DIAGNOSTICS if args.strict and bad else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _run(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
