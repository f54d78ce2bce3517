"""``python -m analyses.did`` on a user's own panel: staggered recovery, labels, bad input.

Recovery: a synthetic panel whose effects grow with time since adoption (known ATT(g,t) and
aggregates). The cohort-by-period model covers the truth; the constant effect per unit (the
toolkit's earlier structure, still the SofS one) is biased, as two-way fixed effects are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyses import did
from data.synthetic import StaggeredPanelConfig, simulate_staggered_panel

FEW = ["--draws", "600", "--tune", "500", "--chains", "4", "--prior", "neutral", "--quiet", "--seed", "4"]
COLS = ["--unit", "unit", "--time", "period", "--cohort", "cohort", "--outcome", "y"]


@pytest.fixture(scope="module")
def staggered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("staggered")
    frame, truth = simulate_staggered_panel(StaggeredPanelConfig(n_units=240), seed=3)
    path = tmp / "panel.csv"
    frame.to_csv(path, index=False)
    runs = {}
    for effects in ("cohort_period", "unit"):
        out = tmp / effects
        code = did.main(["--data", str(path), "--out", str(out), *COLS, "--likelihood", "normal", "--effects", effects,
                         "--label", "test score", "--units", "points", "--rope", "0.01", "--mid", "0.05",
                         "--base", "last" if effects == "cohort_period" else "all", "--strict", *FEW])
        runs[effects] = json.loads((out / "statements.json").read_text())
        runs[effects + "_code"] = code
        runs[effects + "_out"] = out
    return truth, runs


def test_the_right_model_passes_every_check_and_the_wrong_one_says_where_it_fails(staggered):
    """ATT(g,t) effects (the data's structure) pass every diagnostic (``--strict`` exits 0). One
    constant effect per unit is misspecified when effects grow with exposure: its between-unit
    SD absorbs the growth and mixes slowly (R-hat just above 1.01 even after the engine's
    re-fits); ``--strict`` exits 1 and the problem is named, nothing else fails."""
    _, runs = staggered
    assert runs["cohort_period_code"] == 0 and runs["cohort_period"]["diagnostics_ok"]
    assert runs["unit_code"] == 1 and not runs["unit"]["diagnostics_ok"]
    problems = [p for d in runs["unit"]["diagnostics"].values() for p in d["problems"]]
    assert problems and all("'sigma_tau'" in p for p in problems)


def _inside(summary: dict, value: float) -> bool:
    return summary["eti95_low"] < value < summary["eti95_high"]


def test_cohort_period_effects_cover_the_truth(staggered):
    truth, runs = staggered
    agg = runs["cohort_period"]["results"][0]["aggregates"]
    assert _inside(agg["simple"], truth["simple"])
    for kind in ("dynamic", "group", "calendar"):
        assert _inside(agg[kind]["overall"], truth[f"{kind}_overall"]), kind
    by_e = {r["event_time"]: r for r in agg["dynamic"]["by"]}
    covered = [_inside(by_e[e], v) for e, v in truth["dynamic"].items()]
    assert sum(covered) >= len(covered) - 1
    att_gt = pd.read_csv(runs["cohort_period_out"] / "att_gt.csv")
    lab = {f"{g}:{t}": row for g, t, row in zip(att_gt["cohort"], att_gt["period"], att_gt.itertuples())}
    inside = [lab[k].eti95_low < v < lab[k].eti95_high for k, v in truth["att_gt"].items()]
    assert np.mean(inside) >= 0.85                 # 95% intervals, 18 cells
    assert runs["cohort_period"]["diagnostics_ok"]


def test_a_constant_effect_per_unit_is_biased_when_effects_grow(staggered):
    """The unit structure (one effect per treated unit after adoption) misses the truth: its
    already-treated units' growing effects leak into the period effects, as in two-way FE."""
    truth, runs = staggered
    simple = runs["unit"]["results"][0]["aggregates"]["simple"]
    assert not _inside(simple, truth["simple"])
    assert abs(simple["mean"] - truth["simple"]) > 3 * simple["sd"]
    twfe = next(f for f in runs["unit"]["frequentist"] if "two-way" in f["label"])
    assert abs(twfe["estimate"] - truth["simple"]) > abs(runs["cohort_period"]["results"][0]["aggregates"]["simple"]
                                                            ["mean"] - truth["simple"])


def test_every_label_and_unit_comes_from_the_user(staggered):
    _, runs = staggered
    rec = runs["cohort_period"]
    text = " ".join(rec["results"][0]["statements"])
    assert "test score" in text and "points" in text and "pp" not in text.split()
    assert rec["outcome"]["units"] == "points" and rec["outcome"]["label"] == "test score"
    report = (runs["cohort_period_out"] / "report.md").read_text()
    assert "kinship" not in report.lower() and "SofS" not in report and "LA" not in report.split()
    # numbers are printed to the outcome's scale: the effect's SD is a few hundredths
    assert rec["outcome"]["decimals"] >= 3


def _write(tmp: Path, frame: pd.DataFrame, name: str = "bad.csv") -> Path:
    path = tmp / name
    frame.to_csv(path, index=False)
    return path


def _panel() -> pd.DataFrame:
    frame, _ = simulate_staggered_panel(StaggeredPanelConfig(n_units=30, periods=tuple(range(2001, 2007)),
                                                             cohorts=(2004,), cohort_shares=(0.5,)), seed=1)
    return frame


def _counts() -> pd.DataFrame:
    f = _panel()
    return f.assign(y=np.random.default_rng(0).poisson(5, len(f)), trials=20, pop=1000.0)


@pytest.mark.parametrize("make, extra, needle", [
    (lambda: _panel().rename(columns={"cohort": "cohrt"}), ["--likelihood", "normal"], "no column 'cohort'"),
    (lambda: _panel(), ["--likelihood", "normal", "--unit", "unti"], "did you mean 'unit'"),
    (lambda: _panel().assign(cohort=lambda f: np.where(f.index == 7, 2005, f["cohort"])), ["--likelihood", "normal"],
     "changes"),
    (lambda: _counts().assign(y=lambda f: np.where(f.index == 3, -1, f["y"])), ["--likelihood", "poisson"],
     "row 4, column 'y'"),
    (lambda: _counts().assign(y=lambda f: np.where(f.index == 5, 25, f["y"])),
     ["--likelihood", "binomial", "--trials", "trials"], "row 6, column 'y'"),
    (lambda: _panel().assign(y=lambda f: np.where(f.index == 2, -3.0, f["y"].abs())), ["--likelihood", "hurdle_lognormal"],
     "negative"),
    (lambda: _panel()[lambda f: ~((f["unit"] == "u000") & (f["period"] > 2001))], ["--likelihood", "normal"],
     "observed in one period only"),
    (lambda: _panel().assign(cohort=lambda f: np.where(f["cohort"] == 0, 2006, f["cohort"])),
     ["--likelihood", "normal"], "no never-treated units"),
    (lambda: _panel().assign(cohort=lambda f: np.where(f["cohort"] == 0, 2006, f["cohort"])).assign(
        cohort=lambda f: np.where(f["cohort"] == 2006, 2004, f["cohort"])),
     ["--likelihood", "normal", "--control", "notyet"], "no not-yet-treated"),
    (lambda: _panel().iloc[:0], ["--likelihood", "normal"], "no rows"),
])
def test_bad_input_exits_2_names_file_row_column_and_writes_nothing(tmp_path, capsys, make, extra, needle):
    path = _write(tmp_path, make())
    out = tmp_path / "out"
    argv = ["--data", str(path), "--out", str(out), *COLS, "--quiet"]
    for flag in ("--unit",):
        if flag in extra:
            i = argv.index(flag)
            argv[i + 1] = extra[extra.index(flag) + 1]
            extra = extra[:extra.index(flag)] + extra[extra.index(flag) + 2:]
    code = did.main([*argv, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and str(path) in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_an_empty_file_and_a_missing_file_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path in (empty, tmp_path / "nope.csv"):
        code = did.main(["--data", str(path), "--out", str(tmp_path / "o"), *COLS, "--likelihood", "normal", "--quiet"])
        assert code == 2
        assert str(path) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
