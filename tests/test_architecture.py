"""The layering of ARCHITECTURE.md, checked on every import of every module.

data/ -> models/ -> analyses/, figures/ from summaries only. Every ``import`` and ``from ...
import`` statement (at module level and inside functions) of every ``.py`` file under the four
packages is parsed with :mod:`ast`, relative imports resolved, and checked against the rules.
``ALLOWED_EXCEPTIONS`` lists the imports that break a rule today, each with its reason; the test
fails on a new violation and also when a listed one is gone (then remove it from the list).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("data", "models", "figures", "analyses")
#: top-level folders that are not layers (may import anything, are imported by none)
NOT_LAYERS = {"tests", "benchmarks", "docs", "results", "shared"}

SAMPLING = ("pymc", "pytensor", "nutpie", "bambi", "numba", "jax")
FORBIDDEN = {
    "data": ("models", "analyses", "figures", *SAMPLING, "matplotlib"),
    "models": ("analyses", "figures", "matplotlib"),
    "figures": ("data", "models", "analyses", *SAMPLING),
}

#: (importing file, imported module) -> why it is allowed today
ALLOWED_EXCEPTIONS = {
    ("data/did_input.py", "models.did.likelihoods"):
        "takes the NO_CUTOFF sentinel of the duration hurdle's cut-off (a constant)",
    ("data/did_panel.py", "models.did.likelihoods"):
        "checks each outcome against the chosen likelihood's support (get_likelihood)",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names; ``from a import b`` gives ``a`` and, when
    ``a.b`` is a module of this repository, ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.append(mod)
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (ROOT / Path(*sub.split("."))).is_dir():
                    found.append(sub)
    return found


def _top(mod: str) -> str:
    return mod.split(".")[0]


def _files(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts)


def _is_command(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id in ("REPORT", "REPORT_ENTRY") for t in targets):
            return True
    return False


def violations() -> dict[tuple[str, str], str]:
    """Every import that breaks a rule: (file, imported module) -> the rule."""
    out: dict[tuple[str, str], str] = {}
    commands = {_module_name(p) for p in _files("analyses") if _is_command(p)}
    for layer in LAYERS:
        for path in _files(layer):
            rel = path.relative_to(ROOT).as_posix()
            me = _module_name(path)
            for mod in imports_of(path):
                top = _top(mod)
                if layer in FORBIDDEN and top in FORBIDDEN[layer]:
                    out[(rel, mod)] = f"{layer}/ must not import {top}"
                if layer != "analyses" or top != "analyses":
                    continue
                in_report = me.startswith("analyses.report")
                if me == "analyses.common" and mod != "analyses":
                    out[(rel, mod)] = "analyses/common.py imports no other analyses module"
                elif in_report and mod not in ("analyses", "analyses.common") and not mod.startswith("analyses.report"):
                    out[(rel, mod)] = "the report imports from analyses only analyses.common and itself"
                elif not in_report and mod.startswith("analyses.report") and mod != "analyses.report.entry":
                    out[(rel, mod)] = "an analysis imports from the report only analyses.report.entry"
                elif me in commands and mod in commands and mod != me:
                    out[(rel, mod)] = "a command does not import another command"
            if me == "analyses.report.entry":
                for mod in imports_of(path):
                    if _top(mod) not in sys.stdlib_module_names and mod != "__future__":
                        out[(rel, mod)] = "analyses/report/entry.py imports only the standard library"
    return out


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    unplaced = packages - set(LAYERS) - NOT_LAYERS
    assert not unplaced, f"new top-level package(s) {sorted(unplaced)}: give them a place in ARCHITECTURE.md and here"


def test_imports_respect_the_layers():
    found = violations()
    new = {k: v for k, v in found.items() if k not in ALLOWED_EXCEPTIONS}
    assert not new, "imports that break ARCHITECTURE.md:\n" + "\n".join(
        f"  {f} imports {m}: {why}" for (f, m), why in sorted(new.items()))


def test_listed_exceptions_still_exist():
    gone = set(ALLOWED_EXCEPTIONS) - set(violations())
    assert not gone, f"no longer needed, remove from ALLOWED_EXCEPTIONS and ARCHITECTURE.md: {sorted(gone)}"


def test_the_commands_are_found():
    """The command rule is checked on something: the SofS commands declare REPORT entries."""
    commands = {_module_name(p) for p in _files("analyses") if _is_command(p)}
    assert {"analyses.kinship", "analyses.did", "analyses.costs"} <= commands, commands


@pytest.mark.parametrize("source, rule", [
    ("import pymc\n", "data/ must not import pymc"),
    ("from models.did import fit\n", "data/ must not import models"),
    ("def f():\n    import matplotlib.pyplot as plt\n", "data/ must not import matplotlib"),
    ("from ..models import priors\n", "data/ must not import models"),
])
def test_a_violation_is_caught(tmp_path, monkeypatch, source, rule):
    """The checker itself: a planted import in a data/ module is reported (including one inside a
    function and a relative one)."""
    fake_root = tmp_path
    for layer in LAYERS:
        (fake_root / layer).mkdir()
        (fake_root / layer / "__init__.py").write_text("")
    (fake_root / "models" / "priors.py").write_text("")
    (fake_root / "data" / "bad.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert rule in violations().values()
