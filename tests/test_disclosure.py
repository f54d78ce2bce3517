"""Disclosure control on every output written from administrative data (issue 22, item 3).

Each SofS DiD command (kinship from SSDA903; re-referral, escalation and duration from the
CIN census) runs on synthetic raw files with tiny draws and a high ``--sdc-threshold`` (so that
many counts fall below it), and every CSV, Markdown, JSON and netCDF file it writes is scanned:

- no count of children below the threshold (count columns of tables, count keys of JSON, and
  numbers before "children", "records", ... in any text);
- no child-level record: no identifier column, no child ID or date of birth from the raw
  files anywhere, no table with one row per child;
- no model file group holding the data or draws bounded by them (observed / constant data,
  posterior and prior predictive).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.admin import sdc, writer
from data.synthetic import DidStudyConfig, simulate_did_study

THRESHOLD = 60            # children per LA-year are about 40: LA-level and cohort-level counts fall below it
DRAWS = ["--draws", "40", "--tune", "60", "--chains", "1", "--robustness-chains", "1", "--prior", "neutral",
         "--quiet", "--seed", "3"]
CONFIG = dict(n_pilot=3, n_comparator=3, years=tuple(range(2012, 2018)), adoption_years=(2014, 2014, 2015),
              settling_years=(1, 0, 1), children_per_la_year=40.0)
COUNT_COLUMNS = {"n", "count", "weight", "y", "n_records", "n_children", "children", "records", "observed_n"}
COUNT_KEYS = {"n", "count", "weight", "n_children", "n_records", "children", "records"}
TEXT_COUNT = re.compile(r"(?<![\w.\-])(\d+)\s+(?:\w+\s+){0,2}?(" + "|".join(sdc.COUNT_NOUNS) + r")\b")


@pytest.fixture(scope="module")
def admin_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("admin")
    study = simulate_did_study(DidStudyConfig(**CONFIG), seed=4)
    s903 = writer.write_ssda903(study.children, root / "s903", seed=2)
    cin_study = writer.simulate_cin_study(seed=5, config=DidStudyConfig(outcome="rereferral", baseline_share=0.31,
                                                                          **CONFIG))
    cin = writer.write_cin(cin_study.children, root / "cin", seed=3)
    ids = set(map(str, s903.header["CHILD"])) | set(map(str, pd.read_csv(next(cin.path.rglob("*.csv")) if cin.path.is_dir()
                                                                       else cin.path, dtype=str)["LAchildID"]))
    return {"ssda903": s903, "cin": cin, "child_ids": ids, "n_children": len(study.children)}


def _run(module: str, args: list[str], out: Path) -> int:
    import importlib

    return importlib.import_module(f"analyses.{module}").main([*args, *DRAWS, "--out", str(out),
                                                               "--sdc-threshold", str(THRESHOLD)])


def _small(values) -> list[float]:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    return [float(x) for x in v[np.isfinite(v) & (v >= 1) & (v < THRESHOLD)]]


def _scan_text(name: str, text: str, ids: set[str]) -> list[str]:
    problems = []
    for m in TEXT_COUNT.finditer(text):
        if 1 <= int(m.group(1)) < THRESHOLD:
            problems.append(f"{name}: count in text: {m.group(0)!r}")
    tokens = set(re.findall(r"[A-Za-z0-9_]+", text))
    leaked = sorted(tokens & ids)
    if leaked:
        problems.append(f"{name}: child IDs from the raw files: {leaked[:5]}")
    return problems


def _scan_json(name: str, obj, path: str = "") -> list[str]:
    problems = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if str(k).casefold() in COUNT_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                if _small([v]):
                    problems.append(f"{name}: {path}/{k} = {v}")
            if str(k).strip().casefold() in sdc.IDENTIFIER_COLUMNS - {"name"}:   # "name" keys name priors, outcomes
                problems.append(f"{name}: identifier key {path}/{k}")
            problems += _scan_json(name, v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            problems += _scan_json(name, v, f"{path}/{i}")
    return problems


def scan_outputs(out: Path, ids: set[str], n_children: int) -> list[str]:
    """Every disclosure problem in an output folder (empty: safe)."""
    import xarray as xr

    problems = []
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files, f"nothing written to {out}"
    for p in files:
        suffix = p.suffix.lower()
        if suffix in {".csv", ".md", ".json", ".txt"}:
            problems += _scan_text(p.name, p.read_text(), ids)
        if suffix == ".csv":
            t = pd.read_csv(p)
            for c in t.columns:
                if str(c).strip().casefold() in sdc.IDENTIFIER_COLUMNS:
                    problems.append(f"{p.name}: identifier column {c!r}")
                if str(c).casefold() in COUNT_COLUMNS and _small(t[c]):
                    problems.append(f"{p.name}: column {c!r} has counts below {THRESHOLD}: {_small(t[c])[:5]}")
            if len(t) >= 0.5 * n_children:
                problems.append(f"{p.name}: {len(t)} rows (about one per child)")
        elif suffix == ".json":
            problems += _scan_json(p.name, json.loads(p.read_text()))
        elif suffix == ".nc":
            tree = xr.open_datatree(p)
            for group in tree.children:
                if group in (*sdc.DATA_GROUPS, *sdc.PREDICTIVE_GROUPS):
                    problems.append(f"{p.name}: group {group!r} (the data, or draws bounded by them)")
            for node in tree.subtree:
                for var, da in node.data_vars.items():
                    if str(var).casefold() in sdc.IDENTIFIER_COLUMNS:
                        problems.append(f"{p.name}: variable {var!r}")
            tree.close()
    return problems


CASES = [   # kinship (about 60 s) in the default run; the CIN commands (1-4 min each) with -m slow
    ("kinship", "ssda903"),
    pytest.param("rereferral", "cin", marks=pytest.mark.slow),      # + the default robustness re-fits
    pytest.param("escalation", "cin", marks=pytest.mark.slow),
    pytest.param("duration", "cin", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("command, source", CASES)
def test_every_output_from_administrative_data_is_safe(admin_files, tmp_path, command, source):
    files = admin_files[source]
    args = (["--ssda903", str(files.root)] if source == "ssda903" else ["--cin", str(files.path)])
    args += ["--la-roles", str(files.roles_path)]
    out = tmp_path / command
    code = _run(command, args, out)
    assert code in (0, 1), f"{command}: exit {code}"
    problems = scan_outputs(out, admin_files["child_ids"], admin_files["n_children"])
    assert problems == [], "\n".join(problems)
    record = json.loads((out / "statements.json").read_text())
    assert record["data"]["synthetic"] is False


def test_the_scanner_finds_what_it_looks_for(tmp_path, admin_files):
    """The scan can fail: a table with small counts, a child ID, a note with a small count and
    a model file with its data are each reported."""
    import xarray as xr

    out = tmp_path / "leaky"
    out.mkdir()
    pd.DataFrame({"arm": ["pilot"], "n": [7]}).to_csv(out / "ppc.csv", index=False)
    some_id = sorted(admin_files["child_ids"])[0]
    (out / "report.md").write_text(f"note: 3 records left out; child {some_id}\n")
    (out / "statements.json").write_text(json.dumps({"data": {"weight": 4}}))
    xr.DataTree.from_dict({"/posterior": xr.Dataset({"att": ("draw", np.zeros(3))}),
                           "/posterior_predictive": xr.Dataset({"y": ("cell", [1, 2])})}).to_netcdf(out / "p.nc")
    problems = "\n".join(scan_outputs(out, admin_files["child_ids"], 10_000))
    for needle in ("ppc.csv: column 'n'", "count in text: '3 records'", "child IDs", "/data/weight = 4",
                   "group 'posterior_predictive'"):
        assert needle in problems, problems
    assert sdc.protect_text("3 records left out", THRESHOLD) == f"fewer than {THRESHOLD} records left out"
