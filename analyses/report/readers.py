"""Readers of what the analyses saved: the typed DiD result, other JSON, tables, figures, posteriors.

The DiD analyses write ``statements.json`` as a :class:`models.did.result.DidResult`; it is read
through ``DidResult`` (validated against its schema) and its typed fields are used. Other analyses
write free-form JSON, read by the generic readers below. Nothing here computes a statistic.
"""


from __future__ import annotations

import ast
import json
import math
import re

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from models.did.result import DidResult, ResultSchemaError, is_did_result

from analyses.report.cache import CACHE_FILE, RunRecord, module_file, source_closure
from analyses.report.entry import ReportEntry

AnalysisInfo = ReportEntry
#: model modules that hold shared plumbing, not a model (left out of "model in notation")
PLUMBING_MODELS = {"models", "models.statements", "models.priors", "models.diagnostics", "models.sampling",
                   "models.serialize", "models.did", "models.did.result", "models.did.fit", "models.did.experiment",
                   "models.did.summaries", "models.did.crosscheck", "models.did.robustness"}


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

KINDS = (("R-hat", "R-hat"), ("bulk ESS", "bulk ESS"), ("tail ESS", "tail ESS"), ("ESS", "ESS"),
         ("diverg", "divergences"), ("E-BFMI", "E-BFMI"), ("check failed", "a check"))


def failed_kinds(problems: list[str]) -> str:
    """What kind of diagnostic failed, from the problems' wording ("R-hat and bulk ESS")."""
    kinds: list[str] = []
    for p in problems:
        for needle, kind in KINDS:
            if needle.lower() in p.lower():
                if kind == "ESS" and any("ESS" in k for k in kinds):
                    break
                if kind not in kinds:
                    kinds.append(kind)
                break
    if not kinds:
        return "its diagnostics"
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]


@dataclass
class Failure:
    """One fit that failed its diagnostics: which analysis, which fit, and its problems."""

    analysis: str
    where: str             # the fit, in words ("robustness re-fit 'no LA trends'")
    problems: list[str]
    title: str = ""        # the analysis's title ("Re-referrals")

    @property
    def text(self) -> str:
        """"Re-referrals: robustness re-fit 'no LA trends' failed R-hat" (problems not included)."""
        return f"{self.title or self.analysis}: {self.where} failed {failed_kinds(self.problems)}"

    def to_dict(self) -> dict:
        return {"analysis": self.analysis, "title": self.title, "where": self.where, "problems": self.problems,
                "text": self.text}


def fit_name(path: str) -> str:
    """A JSON path of a diagnostics block as a fit's name: ``statements.json: pilots_diagnostics``
    -> ``fit 'pilots'``; ``summary.json: results/neutral/diagnostics_ok`` -> ``fit 'results / neutral'``."""
    path = path.split(": ", 1)[-1]
    parts = [p for p in path.split("/") if p and not re.fullmatch(r"diagnostics?(_ok|_passed)?|ok|fits?", p)]
    parts = [re.sub(r"_?diagnostics?$", "", p).replace("_", " ") or p for p in parts]
    return f"fit '{' / '.join(parts)}'" if parts else "the main fit"


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


def did_failures(name: str, did: DidResult, title: str = "") -> list[Failure]:
    """Failing diagnostics of a DiD result: each fit in ``diagnostics`` whose ``ok`` is false, each
    robustness re-fit that failed (by name), and the result's own flags when no fit explains them."""
    found = [Failure(name, f"fit '{fit}'", [str(p) for p in d.get("problems") or []], title)
             for fit, d in did.diagnostics.items() if not d.get("ok")]
    if not found:
        found = [Failure(name, f"the fits under the {r.prior} prior", [], title)
                 for r in did.results if not r.diagnostics_ok]
    if not found and not did.diagnostics_ok:
        found.append(Failure(name, "the main fits", [], title))
    refits = robustness_refits(did)
    found += [Failure(name, f"robustness re-fit '{r['name']}'", r["problems"], title)
              for r in refits if not r["ok"]]
    if not did.robustness.diagnostics_ok and all(r["ok"] for r in refits):
        found.append(Failure(name, "the robustness re-fits",
                             [n for n in did.robustness.notes if n.startswith("re-fit ")], title))
    return found


def failures_of(out: Outputs) -> list[Failure]:
    """Failing diagnostics of an analysis: from its typed DiD result when it wrote one (plus any
    other JSON file it saved), else found in any shape in its JSON files and CSV tables."""
    typed = did_failures(out.name, out.did, out.info.title) if out.did is not None else []
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
                    raw.append((f"{stem}.csv: table {stem} ({len(bad)} row(s) with {col} False)", []))
    detailed, seen = [], set()
    for where, problems in raw:
        if problems:
            key = tuple(problems)
            if key not in seen:
                seen.add(key)
                detailed.append(Failure(out.name, fit_name(where), problems, out.info.title))
    if detailed:
        return typed + detailed
    return typed + [Failure(out.name, fit_name(w), p, out.info.title) for w, p in raw[:3]]


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

