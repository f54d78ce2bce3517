"""One document for reviewers: run (or reuse) every analysis and write a self-contained report.

    uv run python -m analyses.report                    # run what changed, reuse the rest
    uv run python -m analyses.report --reuse-only       # never run anything; render what is saved
    uv run python -m analyses.report --quick            # small MCMC runs, for a smoke test
    uv run python -m analyses.report --only kinship,published

Every analysis module ``analyses/<name>.py`` that exists is run as a subprocess
(``python -m analyses.<name> --out results/<name> ...``), unless its saved output folder holds a
cache record (``cache_key.json``) whose key still matches: a hash of the analysis's source files
(the module and every local module it imports), its data files (the non-code files beside every
``data`` module it imports, plus known external inputs) and its arguments.

Writes to ``--out`` (default ``results/report``):
  report.html   self-contained (figures embedded as data URIs; no scripts, no links out)
  report.md     the same content as Markdown, figures under figures/
  report.json   statuses, flagged failures, the headline rows, provenance
  figures/      the analyses' figures and the report's trace/rank plots
  logs/         stdout and stderr of every analysis run by this command

The report shows, in order: failing diagnostics and failed or missing analyses (at the top), the
headline "Table 8 re-analysed" (the report's verdicts beside our posterior statements), one
section per analysis (question, data marked synthetic or real, model in notation, priors,
results with figures, sensitivity), a diagnostics appendix (R-hat, ESS, divergences, E-BFMI,
trace and rank plots, predictive checks, power-scaling prior sensitivity where the saved fits
allow it) and the reproducibility record (versions, seeds, data hashes, command lines).

The package: :mod:`~analyses.report.entry` (what each analysis declares about itself,
``REPORT = ReportEntry(...)``), :mod:`~analyses.report.cache` (the build cache and the runner),
:mod:`~analyses.report.readers` (the typed DiD result and the other outputs),
:mod:`~analyses.report.document` (one document model that renders itself to HTML and Markdown),
:mod:`~analyses.report.notes` (docstrings to HTML with MathML formulas),
:mod:`~analyses.report.headline` (Table 8 re-analysed), :mod:`~analyses.report.sections` and
:mod:`~analyses.report.cli`.

The DiD analyses (kinship, rereferral, escalation, duration, la_panel, did) write their
``statements.json`` as a :class:`models.did.result.DidResult`; the report reads those through
``DidResult`` (validated against its schema) and uses the typed fields: the data and their
synthetic flag, the report's own result, each prior's effect and statements, every fit's
diagnostics and the robustness re-fits. A file that claims that schema but does not match it is
reported as an error of its analysis, naming the field. Other analyses (published, costs,
engagement, simulation) write free-form JSON, read by the generic readers.

The report computes no statistics about the programme: it runs analyses and renders what they
saved. Its only computations are diagnostics of saved draws (ranks, power-scaling sensitivity).
"""

from __future__ import annotations

import importlib

from typing import Any

_WHERE = {
    "entry": ("ReportEntry", "AnalysisInfo", "discover", "info_for", "read_entry", "TABLE8", "TABLE8_INDICATORS",
              "ROOT", "NOT_ANALYSES", "DEFAULT_QUICK"),
    "cache": ("CACHE_FILE", "RunRecord", "cache_record", "source_closure", "run_or_reuse", "analysis_args",
              "accepted_flags", "changes"),
    "readers": ("Outputs", "read_outputs", "read_did", "model_docs", "Failure", "find_failures", "did_failures",
                "failures_of", "is_synthetic", "data_label", "report_verdict", "headline_statements",
                "all_statements", "diagnostic_fits", "classify", "robustness_refits", "ResultSchemaError"),
    "document": ("Block", "Document", "Heading", "Para", "Bullets", "Callout", "Badge", "Table", "Figure", "Pre",
                 "Page", "Notes", "Links", "Details", "to_html", "to_markdown", "fmt", "slug", "kv_table",
                 "frame_table"),
    "headline": ("headline_rows", "headline_summary", "HeadlineRow"),
    "sections": ("Context", "build_document"),
    "cli": ("main", "build_parser", "select"),
}
_NAMES = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    """Names of the submodules, imported on first use (so that an analysis importing
    :class:`~analyses.report.entry.ReportEntry` loads nothing else)."""
    mod = _NAMES.get(name)
    if mod is None:
        raise AttributeError(f"module 'analyses.report' has no attribute '{name}'")
    return getattr(importlib.import_module(f"analyses.report.{mod}"), name)
