"""The build cache: which analyses to run, and running them.

An analysis is not re-run when its saved output folder holds a cache record (``cache_key.json``)
whose key still matches: a SHA-256 over its source files (the module and every local module it
imports, found by parsing the imports), its data files (the non-code files beside every ``data``
module it imports, plus the entry's ``extra_inputs`` and paths in its arguments) and its arguments.
"""


from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import time

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from analyses.common import EXIT_DIAGNOSTICS, log
from data.hashing import hash_file

from analyses.report.entry import ReportEntry

AnalysisInfo = ReportEntry
CACHE_FILE = "cache_key.json"
LOCAL_PACKAGES = ("analyses", "models", "data", "figures")
#: declarations only: an analysis importing ReportEntry does not depend on the report's code
NOT_INPUTS = ("analyses.report",)


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
                if parts[0] in LOCAL_PACKAGES and not name.startswith(NOT_INPUTS):
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

