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

import argparse
import ast
import base64
import hashlib
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from analyses.common import EXIT_BAD_INPUT, EXIT_DIAGNOSTICS, EXIT_OK, OutputDir, log, provenance, run_cli
from data.hashing import hash_file
from models.did.result import DidResult, ResultSchemaError, is_did_result

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).resolve().parent / "report_templates" / "report.html"
CACHE_FILE = "cache_key.json"
LOCAL_PACKAGES = ("analyses", "models", "data", "figures")
#: modules under analyses/ that are not analyses
NOT_ANALYSES = {"__init__", "common", "did_runner", "sofs_did", "admin_inputs", "report"}
#: model modules that hold shared plumbing, not a model (left out of "model in notation")
PLUMBING_MODELS = {"models", "models.statements", "models.priors", "models.diagnostics", "models.sampling",
                   "models.serialize", "models.did", "models.did.result", "models.did.fit", "models.did.experiment",
                   "models.did.summaries", "models.did.crosscheck", "models.did.robustness"}
DEFAULT_QUICK = (("--draws", "200"), ("--tune", "200"), ("--chains", "2"), ("--replicates", "4"))
MAX_POSTERIOR_FILES = 6
MAX_TRACE_VARS = 5


# ====================================================================== what analyses there are

@dataclass(frozen=True)
class AnalysisInfo:
    """What the report knows about an analysis before it runs (all optional but the name)."""

    name: str
    title: str = ""
    question: str = ""
    table8: str | None = None          # the Table 8 indicator this analysis answers
    data_note: str = ""                 # what the data are, when the outputs do not say
    quick: tuple[tuple[str, str], ...] = DEFAULT_QUICK   # --quick arguments (kept when the module accepts them)
    args: tuple[str, ...] = ()         # arguments always passed, first (e.g. a subcommand)
    outputs_in: str = ""                # sub-folder of --out where the outputs land (e.g. "summary")
    extra_inputs: tuple[str, ...] = ()  # files/folders (relative to the repository) hashed into the cache key


TABLE8_INDICATORS = ("Duration of assessments", "Rate of re-referrals",
                     "Rate of re-referrals that progress to CPP/LAC", "Rate of kinship care")

REGISTRY: dict[str, AnalysisInfo] = {a.name: a for a in (
    AnalysisInfo("published", "Published results re-analysed",
                 "What do the numbers the report printed support, read as posterior probabilities under "
                 "sceptical, neutral and enthusiastic priors?",
                 data_note="REAL published numbers: estimates, p values and survey counts printed in RR1054 "
                           "(transcribed in data/published/)",
                 extra_inputs=("../shared/seed",)),
    AnalysisInfo("kinship", "Kinship care", "Did SofS change the share of looked-after children placed with kin?",
                 table8="Rate of kinship care"),
    AnalysisInfo("rereferral", "Re-referrals", "Did SofS change re-referral within 6 months of a closed referral?",
                 table8="Rate of re-referrals"),
    AnalysisInfo("escalation", "Re-referrals that escalate",
                 "Did SofS change re-referrals within 6 months that led to a child protection plan or care?",
                 table8="Rate of re-referrals that progress to CPP/LAC"),
    AnalysisInfo("duration", "Assessment duration",
                 "Did SofS change how long assessments take, and the share completed on the day?",
                 table8="Duration of assessments"),
    AnalysisInfo("engagement", "Family engagement and working alliance",
                 "Did families engage differently with SofS social workers (Yatchmenoff scale, WAI)?"),
    AnalysisInfo("did", "The DiD engine on R did's reference data",
                 "Does the toolkit's staggered DiD reproduce R's did on its own data (mpdta: minimum wage and teen "
                 "employment, 500 US counties, 2003-2007)?",
                 data_note="REAL reference data of R's did package (../shared/validation/mpdta)",
                 args=("--data", "../shared/validation/mpdta/mpdta.csv", "--unit", "countyreal", "--time", "year",
                       "--cohort", "first.treat", "--outcome", "lemp", "--likelihood", "normal", "--label",
                       "log teen employment", "--units", "log points", "--target", "-0.05"),
                 extra_inputs=("../shared/validation/mpdta",)),
    AnalysisInfo("la_panel", "LA-level re-analysis of the named pilots",
                 "Did the named pilot LAs' published statistics change relative to their statistical neighbours?",
                 data_note="REAL published DfE LA-level statistics", extra_inputs=("../shared/data/dfe-la-panel",)),
    AnalysisInfo("costs", "Costs", "How likely is it that Signs of Safety saves money?",
                 data_note="REAL published figures: the report's effect estimates and unit costs (assumptions "
                           "marked in inputs.csv)", quick=(("--draws", "2000"),)),
    AnalysisInfo("simulation", "Simulation study: recovery",
                 "Does the hierarchical DiD recover known effects, with calibrated intervals, on synthetic LA data?",
                 data_note="SYNTHETIC replicates drawn from the study generator", args=("recovery",),
                 outputs_in="summary"),
)}


def discover(root: Path = ROOT) -> list[str]:
    """Runnable analysis modules under ``analyses/``: known ones in report order, then the rest."""
    found = []
    for path in sorted((root / "analyses").glob("*.py")):
        if path.stem in NOT_ANALYSES or path.stem.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "__main__" in text and "def main" in text:
            found.append(path.stem)
    known = [n for n in REGISTRY if n in found]
    return known + [n for n in found if n not in REGISTRY]


def info_for(name: str) -> AnalysisInfo:
    return REGISTRY.get(name, AnalysisInfo(name, name.replace("_", " ").capitalize()))


# ====================================================================== cache keys

def module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def source_closure(root: Path, dotted: str) -> dict[str, Path]:
    """The module and every local module (analyses, models, data, figures) it imports, transitively."""
    seen: dict[str, Path] = {}
    stack = [dotted]
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        path = module_file(root, mod)
        if path is None:
            continue
        seen[mod] = path
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    anchor = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in LOCAL_PACKAGES:
                    stack += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return seen


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and not p.name.startswith("."))
    return []


def _key_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (with ``..`` when outside it), so keys survive moving the checkout."""
    try:
        return os.path.relpath(path.resolve(), root.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute."""
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def input_files(root: Path, info: AnalysisInfo, sources: dict[str, Path], args: list[str]) -> list[Path]:
    """Data files an analysis may read: files beside its data modules, known inputs, paths in args."""
    files: set[Path] = set()
    for mod, path in sources.items():
        if mod.split(".")[0] == "data":
            files.update(p for p in path.parent.iterdir()
                         if p.is_file() and p.suffix not in (".py", ".pyc") and not p.name.startswith("."))
    for extra in info.extra_inputs:
        files.update(_files_under(root / extra))
    for a in args:
        if not a.startswith("-") and (root / a).exists():
            files.update(_files_under(root / a))
    return sorted(files)


def cache_record(root: Path, info: AnalysisInfo, args: list[str]) -> dict[str, Any]:
    """The cache key of one analysis run: sources + data files + arguments."""
    sources = source_closure(root, f"analyses.{info.name}")
    src = {_key_path(p, root): hash_file(p) for p in sorted(sources.values())}
    data = {_key_path(p, root): hash_file(p) for p in input_files(root, info, sources, args)}
    h = hashlib.sha256()
    h.update(json.dumps({"sources": src, "data": data, "args": args}, sort_keys=True).encode())
    return {"key": "sha256:" + h.hexdigest(), "analysis": info.name, "args": args, "sources": src, "data": data}


def accepted_flags(root: Path, name: str) -> set[str]:
    """Every ``--flag`` string literal in the analysis's source closure (what its parser may accept)."""
    flags: set[str] = set()
    for path in source_closure(root, f"analyses.{name}").values():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        flags.update(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                     and re.fullmatch(r"--[a-z][a-z0-9-]*", n.value))
    return flags


def analysis_args(root: Path, info: AnalysisInfo, quick: bool) -> list[str]:
    """Arguments (besides --out and --quiet) the report passes to an analysis."""
    args = list(info.args)
    if quick:
        flags = accepted_flags(root, info.name)
        for flag, value in info.quick:
            if flag in flags and flag not in args:
                args += [flag, value]
    return args


# ====================================================================== running

@dataclass
class RunRecord:
    """What happened to one analysis in this report run."""

    name: str
    status: str            # ran | reused | failed | timed out | no outputs | not built | not selected
    detail: str = ""
    seconds: float | None = None
    returncode: int | None = None
    command: str = ""
    cache: str = ""        # fresh | stale | none | ""
    log_tail: str = ""

    @property
    def has_outputs(self) -> bool:
        return self.status in ("ran", "reused") or (self.status in ("failed", "timed out") and "earlier" in self.detail)


def _read_cache(folder: Path) -> dict | None:
    try:
        return json.loads((folder / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return None


def changes(saved: dict | None, record: dict) -> list[str]:
    """What differs between a saved cache record and the current one (file names, 'arguments')."""
    if not saved:
        return []
    out = []
    for part in ("sources", "data"):
        old, new = saved.get(part) or {}, record.get(part) or {}
        out += sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if saved.get("args") != record.get("args"):
        out.append(f"arguments ({' '.join(saved.get('args') or []) or 'none'} -> {' '.join(record['args']) or 'none'})")
    return out


def _changed_text(changed: list[str]) -> str:
    return ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")


def run_or_reuse(root: Path, info: AnalysisInfo, folder: Path, args: list[str], *, reuse_only: bool,
                 log_dir: Path, timeout: float, quiet: bool) -> RunRecord:
    """Reuse the saved outputs when their cache key matches; otherwise run the analysis."""
    record = cache_record(root, info, args)
    saved = _read_cache(folder)
    where = folder / info.outputs_in
    have = where.is_dir() and any(where.glob("*.json"))
    lead, rest = args[: len(info.args)], args[len(info.args):]
    shown = " ".join(["python -m", f"analyses.{info.name}", *lead, "--out", _rel(folder, root), *rest])
    if have and saved is not None and saved.get("key") == record["key"]:
        return RunRecord(info.name, "reused", "inputs unchanged since the saved run", command=shown, cache="fresh")
    if reuse_only:
        if not have:
            return RunRecord(info.name, "no outputs", f"nothing saved in {folder} (--reuse-only: not run)",
                             command=shown)
        if saved is None:
            return RunRecord(info.name, "reused", "no cache record: cannot tell whether inputs changed",
                             command=shown, cache="none")
        return RunRecord(info.name, "reused", "STALE: changed since these outputs were written: "
                         f"{_changed_text(changes(saved, record))} (--reuse-only: not re-run)", command=shown, cache="stale")

    flags = accepted_flags(root, info.name)
    cmd = [sys.executable, "-m", f"analyses.{info.name}", *lead, "--out", str(folder.resolve()), *rest]
    if "--quiet" in flags:
        cmd.append("--quiet")
    log(f"[report] running {shown}", quiet=quiet)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{info.name}.log"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    start, started_at = time.perf_counter(), time.time()
    try:
        with open(log_path, "w") as fh:
            proc = subprocess.run(cmd, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.perf_counter() - start
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    wrote = where.is_dir() and any(p.stat().st_mtime >= started_at - 1 for p in where.glob("*.json"))
    if code == 0 or (code == EXIT_DIAGNOSTICS and wrote):
        note = "" if code == 0 else f"; exit status {code} (the analysis flagged failed diagnostics)"
        if saved is not None:
            note += f"; re-run because of changes to {_changed_text(changes(saved, record))}"
        record.update(created_at=datetime.now(UTC).isoformat(timespec="seconds"), seconds=round(seconds, 1))
        (folder / CACHE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        log(f"[report] {info.name}: done in {seconds:.0f} s", quiet=quiet)
        return RunRecord(info.name, "ran", f"ran in {seconds:.0f} s{note}", seconds, code, shown, "fresh", tail)
    have = where.is_dir() and any(where.glob("*.json"))
    earlier = " (showing outputs from an earlier run)" if have else ""
    status = "timed out" if code is None else "failed"
    detail = (f"timed out after {timeout:.0f} s" if code is None else f"exit status {code}") + earlier
    log(f"[report] {info.name}: {status}: {detail}\n{tail}", quiet=False)
    return RunRecord(info.name, status, detail, seconds, code, shown, "stale" if have else "", tail)


# ====================================================================== reading outputs

@dataclass
class Outputs:
    """Everything an analysis saved, read defensively."""

    name: str
    folder: Path           # where the outputs are
    info: AnalysisInfo
    run: RunRecord
    cache_dir: Path | None = None   # where the report's cache record is (the --out folder)
    jsons: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    posteriors: list[Path] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    docs: list[tuple[str, str]] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    did: DidResult | None = None    # the typed result of a DiD analysis (read from did_file)
    did_file: str = ""              # the JSON file that claims the DiD result schema
    did_error: str = ""             # why that file could not be read as a DidResult

    @property
    def is_did(self) -> bool:
        """Whether the analysis wrote a DiD result (valid or not)."""
        return bool(self.did_file)

    @property
    def main(self) -> dict:
        for name in ("statements.json", "summary.json"):
            if isinstance(self.jsons.get(name), dict):
                return self.jsons[name]
        return next((v for v in self.jsons.values() if isinstance(v, dict)), {})


def read_outputs(root: Path, info: AnalysisInfo, folder: Path, run: RunRecord) -> Outputs:
    out = Outputs(info.name, folder / info.outputs_in, info, run, cache_dir=folder)
    folder = out.folder
    if module_file(root, f"analyses.{info.name}") is not None:
        out.docs = model_docs(root, info.name)
    if not run.has_outputs or not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".json" and path.name != CACHE_FILE:
                out.jsons[path.name] = json.loads(path.read_text())
            elif path.suffix == ".csv":
                out.tables[path.stem] = pd.read_csv(path)
            elif path.suffix == ".png":
                out.figures.append(path)
            elif path.suffix == ".nc":
                out.posteriors.append(path)
            elif path.suffix == ".md" and not (folder / f"{path.stem}.csv").exists():
                out.pages[path.name] = path.read_text(errors="replace")
        except (OSError, ValueError, pd.errors.ParserError) as err:
            out.read_errors.append(f"{path.name}: {err}")
    read_did(out)
    return out


def read_did(out: Outputs) -> None:
    """Read the analysis's DiD result (``statements.json``, or another JSON file claiming the schema)
    through :meth:`DidResult.from_dict`; on failure keep the error, naming the field."""
    names = sorted(out.jsons, key=lambda n: n != "statements.json")
    fname = next((n for n in names if is_did_result(out.jsons[n])), None)
    if fname is None:
        return
    out.did_file = fname
    source = f"{out.name}/{fname}"
    try:
        out.did = DidResult.from_dict(out.jsons[fname], source=source)
    except ResultSchemaError as err:   # "<source>: field <path>: <what is wrong>"
        out.did_error = f"does not match the DiD result schema: {str(err).removeprefix(source + ': ')}"
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        # valid against the schema but not the dataclasses (e.g. a field the type does not know)
        out.did_error = f"does not fit the DidResult type ({type(err).__name__}: {err})"


def model_docs(root: Path, name: str) -> list[tuple[str, str]]:
    """Docstrings of the analysis module and of every model module it uses (the model in notation)."""
    closure = source_closure(root, f"analyses.{name}")
    mods = [f"analyses.{name}"] + sorted(m for m in closure if m.startswith("models.") and m not in PLUMBING_MODELS)
    docs = []
    for mod in mods:
        try:
            doc = ast.get_docstring(ast.parse(closure[mod].read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, KeyError):
            doc = None
        if doc:
            docs.append((mod, doc))
    return docs


# ====================================================================== extracting (no statistics)

@dataclass
class Failure:
    analysis: str
    where: str
    problems: list[str]


def _label(i: int, item: Any) -> str:
    if isinstance(item, dict):
        for key in ("prior", "name", "fit", "outcome", "label", "result_id", "check", "parameter"):
            if isinstance(item.get(key), str):
                return item[key]
    return str(i)


def find_failures(obj: Any, path: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    """Failing diagnostics anywhere in a JSON document: ``diagnostics_ok: false`` or ``ok: false``
    in a diagnostics block (a key path containing "diagnos", or a dict with problems/variables)."""
    found: list[tuple[str, list[str]]] = []
    if isinstance(obj, dict):
        in_diag = any("diagnos" in p.lower() for p in path)
        if obj.get("ok") is False and (in_diag or "problems" in obj or "variables" in obj):
            found.append(("/".join(path) or "(top level)", [str(p) for p in obj.get("problems") or []]))
        if obj.get("passed") is False and any("check" in p.lower() for p in path):
            name = obj.get("check") or obj.get("name") or "check"
            found.append(("/".join(path), [f"check failed: {name}" + (f" ({obj['value']})" if obj.get("value") else "")]))
        for key, value in obj.items():
            if value is False and re.search(r"diagnostics?_(ok|passed)$", str(key)):
                found.append(("/".join((*path, str(key))), []))
            elif isinstance(value, (dict, list)):
                found += find_failures(value, (*path, str(key)))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            if isinstance(item, (dict, list)):
                found += find_failures(item, (*path, _label(i, item)))
    return found


def robustness_refits(did: DidResult) -> list[dict]:
    """The robustness re-fits of a DiD result (its typed ``robustness.refits``): name, family,
    effects, whether they passed their diagnostics, and the problems when not."""
    return [{"name": r.name, "family": r.family, "effects": list(r.effects), "ok": r.diagnostics_ok,
             "problems": list(r.problems)} for r in did.robustness.refits]


def did_failures(name: str, did: DidResult) -> list[Failure]:
    """Failing diagnostics of a DiD result: each fit in ``diagnostics`` whose ``ok`` is false, each
    robustness re-fit that failed (by name), and the result's own flags when no fit explains them."""
    found = [Failure(name, f"fit '{fit}' failed its diagnostics", [str(p) for p in d.get("problems") or []])
             for fit, d in did.diagnostics.items() if not d.get("ok")]
    if not found:
        found = [Failure(name, f"the fits under the {r.prior} prior failed their diagnostics", [])
                 for r in did.results if not r.diagnostics_ok]
    if not found and not did.diagnostics_ok:
        found.append(Failure(name, "the main fits failed their diagnostics", []))
    refits = robustness_refits(did)
    found += [Failure(name, f"robustness re-fit '{r['name']}' failed its diagnostics", r["problems"])
              for r in refits if not r["ok"]]
    if not did.robustness.diagnostics_ok and all(r["ok"] for r in refits):
        found.append(Failure(name, "robustness re-fits failed their diagnostics",
                             [n for n in did.robustness.notes if n.startswith("re-fit ")]))
    return found


def failures_of(out: Outputs) -> list[Failure]:
    """Failing diagnostics of an analysis: from its typed DiD result when it wrote one (plus any
    other JSON file it saved), else found in any shape in its JSON files and CSV tables."""
    typed = did_failures(out.name, out.did) if out.did is not None else []
    raw: list[tuple[str, list[str]]] = []
    for fname, doc in out.jsons.items():
        if fname != out.did_file:
            raw += [(f"{fname}: {w}", p) for w, p in find_failures(doc)]
    # a valid DiD result is the record of its fits; the CSV tables beside it repeat it
    tables = {} if out.did is not None else out.tables
    for stem, table in tables.items():
        for col in table.columns:
            if re.search(r"diagnostics?_(ok|passed)$", str(col)):
                bad = table[table[col].astype(str).str.lower() == "false"]
                if len(bad):
                    raw.append((f"{stem}.csv: column {col} is False in {len(bad)} row(s)", []))
    detailed, seen = [], set()
    for where, problems in raw:
        if problems:
            key = tuple(problems)
            if key not in seen:
                seen.add(key)
                detailed.append(Failure(out.name, where, problems))
    if detailed:
        return typed + detailed
    return typed + [Failure(out.name, w, p) for w, p in raw[:3]]


def is_synthetic(out: Outputs) -> bool | None:
    if out.did is not None:
        return out.did.synthetic
    if out.is_did:
        return None      # an unreadable DiD result: not guessed from its keys
    main = out.main
    for key in ("synthetic", "is_synthetic"):
        if isinstance(main.get(key), bool):
            return main[key]
    if isinstance(main.get("real_data"), bool):
        return not main["real_data"]
    labels = [main.get("data_source"), main.get("data"), (main.get("provenance") or {}).get("data")]
    text = " ".join(str(x) for x in labels if x)
    if re.search(r"synthetic|simulated", text, re.I):
        return True
    if re.search(r"synthetic", out.info.data_note, re.I):
        return True
    if re.search(r"\breal\b", out.info.data_note, re.I):
        return False
    return None


def data_label(out: Outputs) -> str:
    if out.did is not None:
        return out.did.data.source or out.info.data_note or "not stated by the analysis"
    if out.is_did:
        return f"not read: {out.did_file} {out.did_error}"
    main = out.main
    for value in (main.get("data_source"), (main.get("provenance") or {}).get("data"), main.get("data")):
        if isinstance(value, str) and value:
            return value
    return out.info.data_note or "not stated by the analysis (see its provenance)"


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_did(src: dict | DidResult) -> DidResult | None:
    """``src`` as a DidResult when it is one (a dict claiming the schema is validated: a
    :class:`ResultSchemaError` names the field), else None."""
    if isinstance(src, DidResult):
        return src
    if is_did_result(src):
        return DidResult.from_dict(src)
    return None


def report_verdict(main: dict | DidResult) -> str | None:
    """The evaluation's own result, as an analysis recorded it (a DiD result's ``report``)."""
    did = _as_did(main)
    if did is not None:
        rep_ = did.report
        if rep_ is None:
            return None
        try:
            text = rep_.describe()
        except (TypeError, ValueError) as err:   # the schema does not type the report's fields
            text = f"printed result not readable: {err}"
        return f"\u201c{rep_.grade}\u201d [{text}]" if rep_.grade else text
    rep = main.get("report")
    if isinstance(rep, dict):
        bits = []
        if _num(rep.get("effect_pp")):
            bits.append(f"{rep['effect_pp']:+.2f} pp")
        elif _num(rep.get("effect")):
            bits.append(f"{rep['effect']:+g}")
        if rep.get("before_after"):
            bits.append(f"({rep['before_after']})")
        if rep.get("p_value") is not None:
            bits.append(f"p = {rep['p_value']}")
        grade = rep.get("grade") or rep.get("verdict")
        text = " ".join(bits)
        return f"\u201c{grade}\u201d" + (f" [{text}]" if text else "") if grade else (text or None)
    if isinstance(rep, str):
        return rep
    for key in ("report_verdict", "reported_verdict", "report_result"):
        if isinstance(main.get(key), str):
            return main[key]
    return None


def _interval(eff: dict) -> str:
    if all(_num(eff.get(k)) for k in ("mean", "eti95_low", "eti95_high")):
        return f"{eff['mean']:+.1f} ({eff['eti95_low']:+.1f} to {eff['eti95_high']:+.1f})"
    return ""


def headline_statements(main: dict | DidResult) -> list[str]:
    """One line per prior (or per statement): estimate with 95% interval and the first statement
    (for a DiD result: each ``results[i]``'s ``effect`` and first of its ``statements``)."""
    did = _as_did(main)
    if did is not None:
        out = []
        for r in did.results:
            est = _interval(r.effect)
            first = r.statements[0] if r.statements else ""
            out.append(f"{r.prior}: " + "; ".join(filter(None, [est, first])) if est or first
                       else f"{r.prior}: no estimate recorded")
        return out
    lines = []
    results = main.get("results")
    if isinstance(results, list):
        for r in results:
            if not isinstance(r, dict):
                continue
            eff = next((r[k] for k in ("att_pp", "effect", "att", "effect_days") if isinstance(r.get(k), dict)), {})
            sts = r.get("statements")
            first = sts[0] if isinstance(sts, list) and sts and isinstance(sts[0], str) else r.get("statement")
            est = _interval(eff)
            if est or isinstance(first, str):
                prior = r.get("prior") or r.get("name") or ""
                lines.append(f"{prior}: " * bool(prior) + (f"{est}; " if est else "") + (first or ""))
    if not lines:
        sts = main.get("statements")
        if isinstance(sts, dict):
            lines = [str(v) for v in sts.values() if isinstance(v, str)]
        elif isinstance(sts, list):
            lines = [s for s in sts if isinstance(s, str)]
    return lines


def all_statements(obj: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """Every sentence under a key named like 'statement(s)', with where it was found."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if "statement" in str(key).lower():
                where = "/".join(path)
                if isinstance(value, str):
                    yield where, value
                elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                    yield from ((where, v) for v in value)
                elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
                    yield from ((where, v) for v in value.values())
                    continue
            if isinstance(value, (dict, list)):
                yield from all_statements(value, (*path, str(key)))
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            if isinstance(item, dict) and isinstance(item.get("statement"), str) and len(obj) > 12:
                continue  # a long table of records: shown as a table, not as sentences
            yield from all_statements(item, (*path, _label(i, item)))


def diagnostic_fits(out: Outputs) -> list[tuple[str, dict]]:
    """Diagnostics blocks in the format of ``models.diagnostics.Diagnostics.to_dict`` (deduplicated):
    a DiD result's ``diagnostics`` by fit name, and any found in the other JSON files."""
    found: list[tuple[str, dict]] = list(out.did.diagnostics.items()) if out.did is not None else []
    seen: set[str] = set()

    def walk(obj: Any, path: tuple[str, ...]) -> None:
        if isinstance(obj, dict):
            variables = obj.get("variables")
            if isinstance(variables, list) and variables and isinstance(variables[0], dict) and "rhat" in variables[0]:
                key = json.dumps(obj, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    found.append(("/".join(path), obj))
                return
            for k, v in obj.items():
                walk(v, (*path, str(k)))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, (*path, _label(i, v)))

    for fname, doc in out.jsons.items():
        if fname != out.did_file:
            walk(doc, (fname.removesuffix(".json"),))
    return found


SENSITIVITY = re.compile(r"sensitiv|loo|leave|breakdown|rambachan|robust|misclass|tornado|evppi|grid|exclu|"
                         r"event|pretrend|pre_trend|moderat|magnitude|max_duration|honest|contaminat|psense|"
                         r"power_scal", re.I)
DIAGNOSTIC = re.compile(r"diagnos|rhat|ess_|trace|rank", re.I)
PREDICTIVE = re.compile(r"ppc|predictive|pit|rootogram|calibration_check", re.I)


def classify(stem: str) -> str:
    if DIAGNOSTIC.search(stem):
        return "diagnostics"
    if PREDICTIVE.search(stem):
        return "predictive"
    if SENSITIVITY.search(stem):
        return "sensitivity"
    return "results"


# ====================================================================== document blocks

@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str
    lead: str = ""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Callout:
    kind: str      # danger | warn | info | ok
    title: str
    items: list[str] = field(default_factory=list)
    anchor: str = ""


@dataclass
class Badge:
    kind: str      # synthetic | real | unknown
    text: str


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""
    anchor: str = ""
    bad: set[tuple[int, str]] = field(default_factory=set)
    note: str = ""


@dataclass
class Figure:
    source: Path
    rel: str       # path inside the report folder
    caption: str = ""


@dataclass
class Pre:
    text: str


@dataclass
class Page:
    """Markdown written by an analysis itself (headings demoted)."""

    text: str


@dataclass
class Links:
    """In-page links (a table of contents); plain text in Markdown."""

    items: list[tuple[str, str]]   # (text, anchor)


@dataclass
class Details:
    summary: str
    blocks: list[Any]
    open: bool = False


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "–"
        if v == int(v) and abs(v) < 1e6:
            return str(int(v)) if abs(v) >= 1000 or v == 0 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if 0 < abs(v) < 0.001:
            return f"{v:.1e}"
        return f"{v:.3f}"
    if isinstance(v, (list, tuple)):
        text = ", ".join(fmt(x) for x in v[:12]) + (", ..." if len(v) > 12 else "")
        return f"[{text}]"
    if isinstance(v, dict):
        return json.dumps(v, default=str)[:300]
    return str(v)


def kv_table(d: dict, caption: str = "") -> Table:
    rows = [{"item": str(k), "value": fmt(v)} for k, v in d.items()]
    return Table(pd.DataFrame(rows, columns=["item", "value"]), caption)


def frame_table(frame: pd.DataFrame, caption: str, max_rows: int, source: str = "", *,
                fold_above: int | None = 15) -> Table | Details:
    """A saved table, truncated to ``max_rows``; folded away (HTML) when longer than ``fold_above``."""
    note = ""
    n = len(frame)
    if n > max_rows:
        note = f"First {max_rows} of {n} rows" + (f"; full table: {source}" if source else "") + "."
        frame = frame.head(max_rows)
    table = Table(frame.reset_index(drop=True), caption, note=note)
    if fold_above is not None and n > fold_above:
        return Details(f"{caption} ({n} rows)", [table])
    return table


# ---------------------------------------------------------------------- HTML

def _cell_html(v: Any) -> tuple[str, bool]:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return "".join(f'<div class="line">{html.escape(x)}</div>' for x in v), False
    numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
    return html.escape(fmt(v)), numeric


def _table_html(t: Table) -> str:
    anchor = f' id="{t.anchor}"' if t.anchor else ""
    parts = [f'<div class="tablewrap"><table{anchor}>']
    if t.caption:
        parts.append(f"<caption>{html.escape(t.caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in t.frame.columns) + "</tr></thead>")
    parts.append("<tbody>")
    for i, row in enumerate(t.frame.itertuples(index=False)):
        cells = []
        for col, v in zip(t.frame.columns, row, strict=True):
            text, numeric = _cell_html(v)
            long = not numeric and len(text) > 80
            cls = " ".join(c for c in ("num" if numeric else "", "long" if long else "",
                                       "bad" if (i, col) in t.bad else "") if c)
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    if t.note:
        parts.append(f'<p class="meta">{html.escape(t.note)}</p>')
    return "".join(parts)


def _markdown_to_html(text: str) -> str:
    try:
        from markdown_it import MarkdownIt  # comes with rich (a PyMC dependency); optional here
    except ImportError:
        return f"<pre>{html.escape(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def _demote(text: str, by: int = 3) -> str:
    return "\n".join(("#" * by + line) if re.match(r"#{1,6} ", line) else line for line in text.splitlines())


def to_html(blocks: list[Any]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{b.anchor}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            lead = f"<strong>{html.escape(b.lead)}</strong> " if b.lead else ""
            out.append(f"<p>{lead}{html.escape(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Callout):
            anchor = f' id="{b.anchor}"' if b.anchor else ""
            items = "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in b.items) + "</ul>" if b.items else ""
            out.append(f'<div class="callout {b.kind}"{anchor}><strong>{html.escape(b.title)}</strong>{items}</div>')
        elif isinstance(b, Badge):
            out.append(f'<p><span class="badge {b.kind}">{html.escape(b.text)}</span></p>')
        elif isinstance(b, Table):
            out.append(_table_html(b))
        elif isinstance(b, Figure):
            data = base64.b64encode(b.source.read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.caption)}">'
                       f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
        elif isinstance(b, Pre):
            out.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Page):
            out.append(f'<div class="page">{_markdown_to_html(_demote(b.text))}</div>')
        elif isinstance(b, Links):
            out.append("<ul>" + "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in b.items) + "</ul>")
        elif isinstance(b, Details):
            out.append(f"<details{' open' if b.open else ''}><summary>{html.escape(b.summary)}</summary>"
                       + to_html(b.blocks) + "</details>")
        else:
            raise TypeError(f"unknown block {type(b).__name__}")
    return "\n".join(out)


# ---------------------------------------------------------------------- Markdown

def _md_cell(v: Any) -> str:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        text = "<br>".join(v)
    else:
        text = fmt(v)
    return text.replace("|", "\\|").replace("\n", "<br>")


def _table_md(t: Table) -> str:
    cols = [str(c).replace("|", "\\|") for c in t.frame.columns]
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, row in enumerate(t.frame.itertuples(index=False)):
        cells = [_md_cell(v) for v in row]
        cells = [f"**{c}** (!)" if (i, col) in t.bad else c for c, col in zip(cells, t.frame.columns, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines)


def to_markdown(blocks: list[Any]) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append((f"**{b.lead}** " if b.lead else "") + b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {i}" for i in b.items))
        elif isinstance(b, Callout):
            out.append("\n".join([f"> **{b.title}**", *([">"] if b.items else []), *(f"> - {i}" for i in b.items)]))
        elif isinstance(b, Badge):
            out.append(f"**[{b.text}]**")
        elif isinstance(b, Table):
            out.append(_table_md(b))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.rel})")
        elif isinstance(b, Pre):
            out.append("```text\n" + b.text + "\n```")
        elif isinstance(b, Page):
            out.append(_demote(b.text))
        elif isinstance(b, Links):
            out.append("\n".join(f"- {t}" for t, _ in b.items))
        elif isinstance(b, Details):
            out.append(f"**{b.summary}**\n\n" + to_markdown(b.blocks))
        else:
            raise TypeError(f"unknown block {type(b).__name__}")
    return "\n\n".join(out) + "\n"


# ====================================================================== building the document

@dataclass
class Context:
    """Where figures go while the document is built."""

    out_tmp: Path
    max_rows: int = 40
    figures: list[Figure] = field(default_factory=list)

    def figure(self, source: Path, analysis: str, caption: str) -> Figure:
        rel = f"figures/{analysis}/{source.name}"
        target = self.out_tmp / rel
        if source.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        fig = Figure(target, rel, caption)
        self.figures.append(fig)
        return fig


def _find_col(frame: pd.DataFrame, *names: str) -> str | None:
    lower = {str(c).lower(): c for c in frame.columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    for n in names:
        for low, col in lower.items():
            if n.lower() in low:
                return col
    return None


def published_table8(outputs: dict[str, Outputs]) -> pd.DataFrame | None:
    pub = outputs.get("published")
    if pub is None:
        return None
    if "table8_reanalysed" in pub.tables:
        return pub.tables["table8_reanalysed"]
    records = pub.main.get("table8_reanalysed")
    if isinstance(records, list) and records:
        return pd.DataFrame(records)
    return None


def _doc(o: Outputs) -> dict | DidResult:
    """What the readers take: the typed DiD result when there is one, else the main JSON document
    (never the raw dict of a DiD result that failed validation: check ``o.did_error`` first)."""
    return o.did if o.did is not None else o.main


def headline_rows(outputs: dict[str, Outputs]) -> pd.DataFrame:
    """Table 8 re-analysed: one row per indicator (then other analyses with a verdict of the report)."""
    t8 = published_table8(outputs)
    rows: dict[str, dict] = {}
    by_indicator = {o.info.table8: o for o in outputs.values() if o.info.table8}
    ind_col = out_col = grade_col = printed_col = prior_col = est_col = st_col = None
    if t8 is not None:
        ind_col = _find_col(t8, "indicator")
        out_col = _find_col(t8, "outcome")
        grade_col = _find_col(t8, "report's grade", "grade", "verdict")
        printed_col = _find_col(t8, "printed")
        prior_col = _find_col(t8, "prior")
        est_col = _find_col(t8, "posterior mean (95% CrI)", "posterior")
        st_col = _find_col(t8, "statement")
        key_col = ind_col or out_col
        multi = (t8.groupby(key_col)[out_col].nunique() > 1).to_dict() if key_col and out_col and out_col != key_col else {}
        for _, r in t8.iterrows():
            ind = str(r[key_col]) if key_col else "?"
            row = rows.setdefault(ind, {"outcome": ind, "verdict": [], "published": [], "ours": []})
            verdict = str(r[grade_col]) if grade_col and pd.notna(r[grade_col]) else ""
            printed = str(r[printed_col]) if printed_col and pd.notna(r[printed_col]) else ""
            outcome = str(r[out_col]) if out_col and out_col != key_col and pd.notna(r[out_col]) else ""
            if verdict and f"\u201c{verdict}\u201d" not in row["verdict"]:
                row["verdict"].insert(0, f"\u201c{verdict}\u201d")
            printed_line = f"{outcome}: {printed}" if outcome and printed else printed
            if printed_line and printed_line not in row["verdict"]:
                row["verdict"].append(printed_line)
            bits = [str(r[c]) for c in (prior_col, est_col) if c and pd.notna(r[c]) and str(r[c]) != "-"]
            stmt = str(r[st_col]) if st_col and pd.notna(r[st_col]) else ""
            text = ": ".join(filter(None, [" ".join(bits), stmt]))
            if text:
                row["published"].append(f"[{outcome}] {text}" if multi.get(r[key_col]) else text)
    for ind in TABLE8_INDICATORS:
        rows.setdefault(ind, {"outcome": ind, "verdict": [], "published": [], "ours": []})
    # our models of the underlying data
    for ind, row in rows.items():
        o = by_indicator.get(ind)
        if o is None:
            names = [i.name for i in REGISTRY.values() if i.table8 == ind]
            row["ours"] = ([f"analyses.{n}: not in this report (see the missing analyses)" for n in names]
                           or ["no analysis of this outcome"])
            continue
        if not o.run.has_outputs:
            row["ours"] = [f"analyses.{o.name}: {o.run.status} ({o.run.detail})"]
            continue
        if o.did_error:
            row["ours"] = [f"analyses.{o.name}: results not read: {o.did_file} {o.did_error}"]
            continue
        tag = {True: "[SYNTHETIC DATA] ", False: "[REAL DATA] ", None: ""}[is_synthetic(o)]
        lines = headline_statements(_doc(o)) or ["outputs found but no statements recognised: see its section"]
        row["ours"] = [f"{tag}analyses.{o.name}"] + lines
        verdict = report_verdict(_doc(o))
        if verdict and not row["verdict"]:
            row["verdict"] = [verdict]
    for ind, row in rows.items():
        if not row["published"]:
            row["published"] = (["analyses.published: not available in this report"] if "published" not in outputs
                                or not outputs["published"].run.has_outputs else ["not re-analysable from the printed numbers"])
        if not row["verdict"]:
            row["verdict"] = ["(not recorded)"]
    # other analyses that state the report's verdict
    for o in outputs.values():
        if o.info.table8 or o.name == "published" or not o.run.has_outputs or o.did_error:
            continue
        verdict = report_verdict(_doc(o))
        if verdict:
            tag = {True: "[SYNTHETIC DATA] ", False: "[REAL DATA] ", None: ""}[is_synthetic(o)]
            rows[o.info.title or o.name] = {"outcome": f"{o.info.title or o.name} (not in Table 8)", "verdict": [verdict],
                                            "published": ["–"], "ours": [f"{tag}analyses.{o.name}"] + headline_statements(_doc(o))}
    return pd.DataFrame([{"Outcome": r["outcome"], "The report's verdict (and printed result)": r["verdict"],
                          "Re-analysis of the printed numbers": r["published"],
                          "Our model of the underlying data": r["ours"]} for r in rows.values()])


def top_blocks(records: dict[str, RunRecord], outputs: dict[str, Outputs], failures: list[Failure],
               missing: list[str], unselected: list[str]) -> list[Any]:
    blocks: list[Any] = []
    unread = [o for o in outputs.values() if o.run.has_outputs and o.did_error]
    if failures:
        items = []
        for f in failures:
            shown = "; ".join(f.problems[:3]) + (f" (+{len(f.problems) - 3} more)" if len(f.problems) > 3 else "")
            items.append(f"{f.analysis}: {f.where}" + (f": {shown}" if shown else ""))
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
        blocks += [Details(f"{mod}: model in notation, priors, assumptions", [Pre(doc)], open=(i > 0 or len(o.docs) == 1))
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
            blocks.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, f"{o.folder}/{stem}.csv",
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
            sens.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, f"{o.folder}/{stem}.csv"))
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
    return [Details(f"{mod}: model in notation, priors, assumptions", [Pre(doc)], open=(i > 0 or len(o.docs) == 1))
            for i, (mod, doc) in enumerate(o.docs)]


def _saved(o: Outputs, ctx: Context, kind: str) -> list[Any]:
    """The analysis's saved CSV tables and figures of one kind (results, sensitivity, ...)."""
    blocks: list[Any] = []
    for stem in sorted(o.tables, key=lambda s: (s not in ("summary", "table8_reanalysed"), s)):
        if classify(stem) == kind:
            blocks.append(frame_table(o.tables[stem], f"{stem}.csv", ctx.max_rows, f"{o.folder}/{stem}.csv",
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
    return bool(diagnostic_fits(Outputs("", Path("."), AnalysisInfo(""), RunRecord("", "ran"), jsons={"x": value})))


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
                   unselected: list[str], ctx: Context, own: dict) -> tuple[list[Any], list[Failure], pd.DataFrame]:
    failures = [f for o in outputs.values() if o.run.has_outputs for f in failures_of(o)]
    shown = [o for o in outputs.values()]
    blocks: list[Any] = [Heading(1, "Signs of Safety evaluation: Bayesian re-analysis report"),
                         Para(f"Generated {own['created_at']} by `{own['command']}`"
                              + (f" at git commit {own['git_commit'][:12]}" if own.get("git_commit") else "") + ".")]
    blocks += top_blocks(records, outputs, failures, missing, unselected)
    toc = [("Table 8 re-analysed (headline)", "headline"), ("Analyses in this report", "status")]
    toc += [(f"{o.info.title or o.name} (analyses.{o.name})", f"analysis-{slug(o.name)}") for o in shown]
    toc += [("Diagnostics appendix", "diagnostics"), ("Reproducibility", "reproducibility")]
    blocks.append(Details("Contents", [Links(toc)], open=True))
    blocks.append(Heading(2, "Table 8 re-analysed", anchor="headline"))
    blocks.append(Para("The evaluation's verdict for each outcome of its Table 8, beside posterior probability "
                       "statements: first from the numbers the report printed (analyses.published, moderate-strength "
                       "priors), then from our models of the underlying data (one line per named prior: posterior "
                       "mean with 95% interval, then the statement). Rows from synthetic data are marked."))
    headline = headline_rows(outputs)
    blocks.append(Table(headline, "Table 8 re-analysed: the report's verdicts beside our posterior statements",
                        anchor="headline-table"))
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
    return blocks, failures, headline


# ====================================================================== the command

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analyses.report", description=__doc__,
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
    """(to include, known but not built, not selected); ValueError for unknown names."""
    known = list(REGISTRY) + [n for n in available if n not in REGISTRY]
    if only is None:
        return available, [n for n in REGISTRY if n not in available], []
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
        names, missing, unselected = select(discover(root), args.only)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    records: dict[str, RunRecord] = {}
    outputs: dict[str, Outputs] = {}
    with OutputDir(out_dir) as out:
        for name in names:
            info = info_for(name)
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
        ctx = Context(out.tmp, max_rows=args.max_rows)
        own["command"] = " ".join(["python -m analyses.report", *(sys.argv[1:] if argv is None else argv)])
        blocks, failures, headline = build_document(records, outputs, missing, unselected, ctx, own)
        page = Template(TEMPLATE.read_text(encoding="utf-8")).safe_substitute(
            title="Signs of Safety: Bayesian re-analysis report", body=to_html(blocks))
        out.write_text("report.html", page)
        out.write_text("report.md", to_markdown(blocks))
        out.write_json("report.json", {
            "analyses": {n: {k: v for k, v in vars(r).items() if k != "log_tail"} for n, r in records.items()},
            "missing": missing, "not_selected": unselected,
            "failures": [vars(f) for f in failures],
            "unreadable": {o.name: f"{o.did_file} {o.did_error}" for o in outputs.values()
                           if o.run.has_outputs and o.did_error},
            "headline": headline.to_dict(orient="records"),
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
