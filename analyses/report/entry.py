"""What an analysis tells the report about itself: its :class:`ReportEntry`.

Each analysis module declares, at module level::

    from analyses.report.entry import ReportEntry

    REPORT = ReportEntry(title="Kinship care", question="Did SofS change ...?",
                         table8="Rate of kinship care", order=20)

The report reads the declaration from the module's source (``ast``; nothing is imported, so
reading every analysis costs milliseconds and no PyMC start-up). The arguments must therefore
be literals (strings, numbers, tuples). A module that already uses the name ``REPORT`` for something
else declares ``REPORT_ENTRY = ReportEntry(...)`` instead. An analysis without a declaration is still run and shown,
titled from its name and asked the first paragraph of its docstring.
"""

from __future__ import annotations

import ast

from dataclasses import dataclass, fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the module-level names a declaration may have (REPORT_ENTRY where a module already uses REPORT)
ENTRY_NAMES = ("REPORT", "REPORT_ENTRY")
#: modules under analyses/ that are not analyses
NOT_ANALYSES = {"__init__", "common", "did_runner", "sofs_did", "admin_inputs", "report"}
DEFAULT_QUICK = (("--draws", "200"), ("--tune", "200"), ("--chains", "2"), ("--replicates", "4"))
#: the outcomes of the evaluation's Table 8 (the headline), and the analysis expected to answer each
TABLE8 = {"Duration of assessments": "duration", "Rate of re-referrals": "rereferral",
          "Rate of re-referrals that progress to CPP/LAC": "escalation", "Rate of kinship care": "kinship"}
TABLE8_INDICATORS = tuple(TABLE8)


@dataclass(frozen=True)
class ReportEntry:
    """How an analysis appears in the report (every field optional).

    title, question
        Section title and the question it answers.
    table8
        The Table 8 indicator it answers (one of :data:`TABLE8_INDICATORS`), for the headline.
    data_note
        What the data are, when the outputs do not say.
    quick
        ``--quick`` arguments (each kept only when the module accepts the flag).
    args
        Arguments always passed, first (e.g. a subcommand).
    outputs_in
        Sub-folder of ``--out`` where the outputs land (e.g. ``"summary"``).
    extra_inputs
        Files/folders (relative to the repository) hashed into the cache key.
    order
        Position in the report (smaller first; undeclared analyses come last, by name).
    """

    title: str = ""
    question: str = ""
    table8: str | None = None
    data_note: str = ""
    quick: tuple[tuple[str, str], ...] = DEFAULT_QUICK
    args: tuple[str, ...] = ()
    outputs_in: str = ""
    extra_inputs: tuple[str, ...] = ()
    order: int = 1000
    name: str = ""          # filled in by the report from the module name
    error: str = ""         # filled in when the declaration could not be read


AnalysisInfo = ReportEntry   # the name used before entries moved into the analyses


def _literal(node: ast.AST):
    value = ast.literal_eval(node)
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def read_entry(path: Path, name: str | None = None) -> ReportEntry:
    """The ``REPORT = ReportEntry(...)`` declaration of an analysis module (defaults when absent)."""
    name = name or path.stem
    default = ReportEntry(name=name, title=name.replace("_", " ").capitalize())
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as err:
        return replace(default, error=f"analyses/{path.name} could not be parsed: {err}")
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and any(isinstance(t, ast.Name) and t.id in ENTRY_NAMES for t in node.targets)
                and getattr(node.value.func, "id", getattr(node.value.func, "attr", "")) == "ReportEntry"):
            known = {f.name for f in fields(ReportEntry)} - {"name", "error"}
            try:
                kwargs = {k.arg: _literal(k.value) for k in node.value.keywords if k.arg in known}
                if node.value.args:
                    raise ValueError("use keyword arguments")
            except ValueError as err:
                return replace(default, error=f"REPORT in analyses/{path.name} is not a literal declaration "
                                              f"(line {node.lineno}): {err}")
            if kwargs.get("quick") is not None:
                kwargs["quick"] = tuple(tuple(q) for q in kwargs["quick"])
            entry = ReportEntry(**kwargs, name=name)
            return entry if entry.title else replace(entry, title=default.title)
    return default


def discover(root: Path = ROOT) -> dict[str, ReportEntry]:
    """Runnable analysis modules under ``analyses/`` (a ``main`` and a ``__main__`` guard), with
    their entries, in report order (declared ``order``, then name)."""
    found: dict[str, ReportEntry] = {}
    for path in sorted((root / "analyses").glob("*.py")):
        if path.stem in NOT_ANALYSES or path.stem.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "__main__" in text and "def main" in text:
            found[path.stem] = read_entry(path)
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def info_for(name: str, root: Path = ROOT) -> ReportEntry:
    """The entry of one analysis (its declaration, or defaults when it has none or does not exist)."""
    path = root / "analyses" / f"{name}.py"
    if path.is_file():
        return read_entry(path)
    return ReportEntry(name=name, title=name.replace("_", " ").capitalize())
