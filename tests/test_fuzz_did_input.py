"""Property-based bad input for the DiD input paths (issue 22, item 1).

Each test takes a valid input file, damages it the way real files get damaged (random
truncation, a deleted or renamed column, a cell of the wrong type, an out-of-range code, a
missing value, duplicated rows, an empty or header-only file) and runs the real command on it,
with the model step replaced by a sentinel so that only loading and validation run. Every
example must end in one of two ways:

- the data are still valid (e.g. duplicated child-level rows are two children): the command
  reaches the model step; or
- exit code 2 with one line ``error: bad input data: file ..., row ..., column '...': ...``
  naming the file (and, for a damaged cell or column, its row and column), nothing written to
  ``--out``, no traceback (any other exception fails the test).

Loaders: child-level DiD rows (``--data``, ``data/did_input.py``, through ``analyses.kinship``),
user panels (``data/did_panel.py``, through ``analyses.did``), SSDA903 header and episodes
files (``--ssda903``, ``data/admin/ssda903.py``), the CIN census (``--cin``,
``data/admin/cin.py``) and the LA role table (``--la-roles``, ``data/admin/roles.py``). The
outcomes are tallied and written to ``/tmp/notes/issue22_badinput.md`` (``BADINPUT_TABLE`` to
change the path).
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter, defaultdict
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.admin import writer
from data.synthetic import DidStudyConfig, kinship_twin, simulate_did_study

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MUTATIONS = ("truncate", "drop_column", "rename_column", "wrong_type", "out_of_range", "missing_value",
             "duplicate_rows", "empty", "header_only")
WRONG_TYPES = ("abc", "x", "1.5", "2014.5", "-3", "1e9", "TRUE", "31/02/2016", "NaN", "[c]")
ERROR_LINE = re.compile(r"^error: bad input data: file (?P<file>.+?)(?:, row (?P<row>\d+))?"
                        r"(?:, column '(?P<column>[^']+)')?: (?P<message>.+)$")
TALLY: dict[str, Counter] = defaultdict(Counter)
EXAMPLES_RUN: Counter = Counter()


class Loaded(BaseException):
    """The sentinel raised where the model step would start (the input was accepted)."""


# ---------------------------------------------------------------- damaging a CSV file


def damage(text: str, data: st.DataObject, out_of_range: dict[str, list[str]]) -> tuple[str, str, str | None]:
    """(damaged text, mutation, the column it hit or None)."""
    lines = text.strip("\n").split("\n")
    header = _split(lines[0])
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if kind == "empty":
        return "", kind, None
    if kind == "header_only":
        return lines[0] + "\n", kind, None
    if kind == "truncate":
        cut = data.draw(st.integers(1, len(text) - 1), label="cut")
        return text[:cut], kind, None
    if kind == "duplicate_rows":
        rows = data.draw(st.lists(st.integers(1, len(lines) - 1), min_size=1, max_size=5), label="rows")
        return "\n".join(lines + [lines[r] for r in rows]) + "\n", kind, None
    j = data.draw(st.integers(0, len(header) - 1), label="column")
    col = header[j]
    table = [_split(line) for line in lines]
    if kind == "drop_column":
        return "\n".join(_join([c for k, c in enumerate(r) if k != j]) for r in table) + "\n", kind, col
    if kind == "rename_column":
        table[0][j] = data.draw(st.sampled_from([col + "_x", col.upper() + "S", col[:-1] or "z", "Unnamed"]),
                                label="new name")
        return "\n".join(_join(r) for r in table) + "\n", kind, col
    row = data.draw(st.integers(1, len(lines) - 1), label="row")
    if kind == "missing_value":
        value = ""
    elif kind == "wrong_type":
        value = data.draw(st.sampled_from(WRONG_TYPES), label="value")
    else:
        value = data.draw(st.sampled_from(out_of_range.get(col, ["-1", "999999"])), label="value")
    table[row][j] = value
    return "\n".join(_join(r) for r in table) + "\n", kind, col


def _split(line: str) -> list[str]:
    import csv

    return next(csv.reader([line]))


def _join(fields: list[str]) -> str:
    import csv

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def run_command(main, argv: list[str], out: Path, patch: tuple[str, str]) -> tuple[str, str]:
    """Run ``main(argv)`` with the model step replaced by :class:`Loaded`; (outcome, stderr)."""
    import importlib

    def loaded(*args, **kwargs):
        raise Loaded

    module = importlib.import_module(patch[0])
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, patch[1], loaded)
        with redirect_stderr(stderr):
            try:
                code = main([*argv, "--out", str(out), "--quiet"])
            except Loaded:
                return "accepted", stderr.getvalue()
    return str(code), stderr.getvalue()


def check(loader: str, kind: str, col: str | None, outcome: str, err: str, out: Path, files: list[Path]) -> None:
    EXAMPLES_RUN[loader] += 1
    assert not out.exists(), f"{loader}/{kind}: {out} was written"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "a temporary folder was left"
    assert "Traceback" not in err
    if outcome == "accepted":
        TALLY[loader][(kind, "accepted (still valid)")] += 1
        return
    assert outcome == "2", f"{loader}/{kind}: exit {outcome}\n{err}"
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    m = ERROR_LINE.match(lines[0])
    assert m, f"{loader}/{kind}: the error does not name its file: {lines[0]}"
    assert any(m["file"].startswith(str(f)) or str(f).startswith(m["file"]) for f in files), lines[0]
    if kind in ("drop_column", "rename_column") and m["column"] is None:
        pytest.fail(f"{loader}/{kind} of {col!r}: no column named: {lines[0]}")
    if kind in ("wrong_type", "out_of_range", "missing_value") and (m["row"] is None or m["column"] is None):
        # a damaged cell may break a whole-file rule (e.g. no pilot LA left); it must still say which column
        assert m["column"] is not None, f"{loader}/{kind} of {col!r}: {lines[0]}"
    where = "file" + (", row" if m["row"] else "") + (", column" if m["column"] else "")
    TALLY[loader][(kind, f"DataError naming {where}")] += 1


# ---------------------------------------------------------------- the loaders


@pytest.fixture(scope="module")
def child_csv(tmp_path_factory) -> Path:
    children = kinship_twin().children
    small = children.groupby(["la", "year"], sort=False).head(3).drop(columns="disability", errors="ignore")
    path = tmp_path_factory.mktemp("child") / "children.csv"
    small.to_csv(path, index=False)
    return path


@given(data=st.data())
@FUZZ
def test_child_level_did_rows(tmp_path_factory, child_csv, data):
    from analyses import kinship

    tmp = tmp_path_factory.mktemp("ex")
    text, kind, col = damage(child_csv.read_text(), data, {
        "arm": ["treated", "Pilot", "control"], "kinship": ["2", "-1", "0.5"], "settling_years": ["-1", "0.5"],
        "year": ["20145", "-2014", "2014.5"], "adoption_year": ["x", "2014.5"], "age_band": [""], "sex": [""]})
    path = tmp / "children.csv"
    path.write_text(text)
    outcome, err = run_command(kinship.main, ["--data", str(path)], tmp / "out", ("analyses.sofs_did", "make_plan"))
    check("child-level DiD rows (--data, analyses.kinship)", kind, col, outcome, err, tmp / "out", [path])


@pytest.fixture(scope="module")
def panel_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    rows = [{"unit": f"u{u}", "period": t, "first_treat": (0 if u < 4 else 2004 + u % 3), "y": float(rng.normal())}
            for u in range(10) for t in range(2001, 2009)]
    path = tmp_path_factory.mktemp("panel") / "panel.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


PANEL_ARGS = ["--unit", "unit", "--time", "period", "--cohort", "first_treat", "--outcome", "y", "--likelihood",
              "normal"]


@given(data=st.data())
@FUZZ
def test_user_panel(tmp_path_factory, panel_csv, data):
    from analyses import did

    tmp = tmp_path_factory.mktemp("ex")
    text, kind, col = damage(panel_csv.read_text(), data, {"first_treat": ["2004.5", "x"], "period": ["2001.5"],
                                                           "y": ["inf", "nan", "x"]})
    path = tmp / "panel.csv"
    path.write_text(text)
    outcome, err = run_command(did.main, ["--data", str(path), *PANEL_ARGS], tmp / "out",
                               ("analyses.did", "named_priors"))
    check("user panel (--data, analyses.did)", kind, col, outcome, err, tmp / "out", [path])


SMALL = DidStudyConfig(n_pilot=3, n_comparator=3, years=tuple(range(2012, 2018)), adoption_years=(2014, 2014, 2015),
                       settling_years=(1, 0, 1), children_per_la_year=8.0)


@pytest.fixture(scope="module")
def ssda903_files(tmp_path_factory):
    study = simulate_did_study(SMALL, seed=4)
    return writer.write_ssda903(study.children, tmp_path_factory.mktemp("s903"), seed=2, layout="single")


SSDA903_CODES = {"SEX": ["3", "M"], "ETHNIC": ["WXYZ"], "RNE": ["Q"], "LS": ["C9"], "PLACE": ["U9", "Z9"],
                 "REC": ["E99"], "DECOM": ["31/02/2016", "2016-13-01", "01/01/16"], "DEC": ["31/02/2016"],
                 "DOB": ["32/01/2010", "01/01/2030"], "LA": ["999", "Atlantis"]}


@given(data=st.data())
@FUZZ
def test_ssda903_files(tmp_path_factory, ssda903_files, data):
    import shutil

    from analyses import kinship

    tmp = tmp_path_factory.mktemp("ex")
    root = tmp / "ssda903"
    shutil.copytree(ssda903_files.root, root)
    target = data.draw(st.sampled_from(sorted(p.name for p in root.glob("*.csv"))), label="file")
    text, kind, col = damage((root / target).read_text(), data, SSDA903_CODES)
    (root / target).write_text(text)
    outcome, err = run_command(kinship.main, ["--ssda903", str(root), "--la-roles", str(ssda903_files.roles_path)],
                               tmp / "out", ("analyses.sofs_did", "make_plan"))
    check("SSDA903 header / episodes (--ssda903)", kind, col, outcome, err, tmp / "out", [root / target, root])


@pytest.fixture(scope="module")
def cin_files(tmp_path_factory):
    study = writer.simulate_cin_study(seed=5, config=DidStudyConfig(
        outcome="rereferral", baseline_share=0.31, n_pilot=3, n_comparator=3, years=tuple(range(2012, 2018)),
        adoption_years=(2014, 2014, 2015), settling_years=(1, 0, 1), children_per_la_year=8.0))
    return writer.write_cin(study.children, tmp_path_factory.mktemp("cin"), seed=3, layout="single")


CIN_CODES = {"Type": ["CPPstart", "Referral"], "ReasonForClosure": ["RC10", "RC0"], "ReferralNFA": ["maybe", "2"],
             "CINreferralDate": ["31/02/2016", "2016/01/01"], "CINclosureDate": ["01/01/1900", "31/02/2016"],
             "AssessmentActualStartDate": ["32/12/2016"], "GenderCurrent": ["5"], "Ethnicity": ["WXYZ"],
             "Disabilities": ["XX"], "LA": ["999"], "PersonBirthDate": ["30/02/2010"]}


@given(data=st.data())
@FUZZ
def test_cin_census(tmp_path_factory, cin_files, data):
    from analyses import rereferral

    import shutil

    tmp = tmp_path_factory.mktemp("ex")
    source = cin_files.path
    if source.is_dir():
        root = tmp / source.name
        shutil.copytree(source, root)
        path = sorted(root.rglob("*.csv"))[0]
    else:
        root = path = tmp / source.name
        shutil.copy(source, path)
    text, kind, col = damage(path.read_text(), data, CIN_CODES)
    path.write_text(text)
    outcome, err = run_command(rereferral.main, ["--cin", str(root), "--la-roles", str(cin_files.roles_path)],
                               tmp / "out", ("analyses.sofs_did", "make_plan"))
    check("CIN census (--cin)", kind, col, outcome, err, tmp / "out", [path])


@given(data=st.data())
@FUZZ
def test_la_role_table(tmp_path_factory, ssda903_files, data):
    from analyses import kinship

    tmp = tmp_path_factory.mktemp("ex")
    path = tmp / "roles.csv"
    text, kind, col = damage(ssda903_files.roles_path.read_text(), data, {
        "role": ["treated", "both"], "adoption_date": ["31/02/2016", "soon"], "settling_years": ["-1", "1.5"],
        "la_code": ["999", "Atlantis"]})
    path.write_text(text)
    outcome, err = run_command(kinship.main, ["--ssda903", str(ssda903_files.root), "--la-roles", str(path)],
                               tmp / "out", ("analyses.sofs_did", "make_plan"))
    check("LA role table (--la-roles)", kind, col, outcome, err, tmp / "out", [path])


def test_values_read_as_missing_are_counted_per_column(child_csv, panel_csv, tmp_path):
    """Empty cells, ``NA`` and ``NaN`` are counted per column and reach ``statements.json``
    (``data.missing``, through the runner's :class:`~analyses.did_runner.Inputs`)."""
    from analyses.sofs_did import load_inputs
    from data.did_input import load_did_data
    from data.did_panel import PanelColumns, load_panel

    frame = pd.read_csv(child_csv)
    frame["note"] = ["NA" if i % 3 == 0 else ("" if i % 3 == 1 else "ok") for i in range(len(frame))]
    path = tmp_path / "children.csv"
    frame.to_csv(path, index=False)
    cells = load_did_data(path, "kinship")
    n_comparator_rows = int((frame["arm"] == "comparator").sum())
    assert cells.missing == {"adoption_year": n_comparator_rows, "note": len(frame) - len(frame) // 3}
    import argparse

    from analyses.kinship import SPEC
    args = argparse.Namespace(data=path, covariates=None, max_duration=None, la_attributes=None, exclude_las=None,
                              cutoff_values=())
    assert load_inputs(SPEC, args).inputs.missing == cells.missing
    panel = load_panel(panel_csv, PanelColumns("unit", "period", "first_treat", "y"), "normal")
    assert panel.missing == {}


# ---------------------------------------------------------------- the table of cases


@pytest.fixture(scope="module", autouse=True)
def write_table():
    yield
    if not EXAMPLES_RUN:
        return
    path = Path(os.environ.get("BADINPUT_TABLE", "/tmp/notes/issue22_badinput.md"))
    lines = ["# Bad input tried on the DiD input paths (tests/test_fuzz_did_input.py)", "",
             f"Hypothesis examples per loader (max_examples={EXAMPLES}, derandomized): "
             + ", ".join(f"{k}: {v}" for k, v in EXAMPLES_RUN.items()) + ".", "",
             "Every example ended either in the command reaching its model step (the damaged file was still valid "
             "data) or in exit code 2 with one `DataError` line naming the file (and the row and column where "
             "they apply), nothing written to `--out`, no traceback.", "",
             "| loader | damage | outcome | examples |", "|---|---|---|---|"]
    for loader, counts in TALLY.items():
        for (kind, outcome), n in sorted(counts.items()):
            lines.append(f"| {loader} | {kind.replace('_', ' ')} | {outcome} | {n} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
