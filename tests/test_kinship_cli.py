"""`python -m analyses.kinship` end to end (few draws), and its answers to bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analyses import kinship
from data.did_input import cells_from_frame
from data.synthetic import kinship_twin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("kin") / "out"
    code = kinship.main(["--draws", "100", "--tune", "100", "--chains", "2", "--prior", "all",
                         "--out", str(out), "--quiet", "--strict", "--seed", "5"])
    return code, out


def test_cli_writes_every_output(cli_run):
    _, out = cli_run
    expected = {"posterior_sceptical.nc", "posterior_neutral.nc", "posterior_enthusiastic.nc",
                "posterior_event_study.nc", "summary.csv", "summary.md", "statements.json", "report.md",
                "la_effects.csv", "event_study.csv", "ppc.csv", "diagnostics.csv", "aggregates.csv", "att_gt.csv",
                "att_posterior.png", "la_effects.png", "event_study.png", "ppc.png", "prior_predictive.png"}
    assert expected <= {p.name for p in out.iterdir()}
    record = json.loads((out / "statements.json").read_text())
    assert record["data"]["synthetic"] is True
    assert [r["prior"] for r in record["results"]] == ["sceptical", "neutral", "enthusiastic"]
    first = record["results"][0]
    for key in ("p_negative", "p_below_minus_mid", "p_target_met"):
        assert 0.0 <= first["probabilities"][key] <= 1.0
    a = first["effect"]
    assert a["p_below_rope"] + a["p_in_rope"] + a["p_above_rope"] == pytest.approx(1.0)
    assert a["eti95_low"] < a["mean"] < a["eti95_high"]
    assert set(first["aggregates"]) == {"simple", "dynamic", "group", "calendar"}
    assert first["aggregates"]["simple"]["mean"] == pytest.approx(a["mean"], abs=1e-9)   # one effect, two names
    assert record["report"]["effect"] == -12.63 and record["report"]["units"] == "pp"
    assert record["frequentist"][0]["n_clusters"] == 18
    assert record["design"]["effects"] == "unit" and record["schema_version"].startswith("1.")
    prov = record["provenance"]
    assert prov["seed"] == 5 and prov["data_hash"].startswith("sha256:") and prov["packages"]["pymc"]
    assert prov["mass_matrix"] == "low_rank"      # the SofS commands' default (--mass-matrix)
    assert "SYNTHETIC" in (out / "report.md").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["prior"]) == ["sceptical", "neutral", "enthusiastic"]


def test_strict_exits_1_when_diagnostics_fail(cli_run):
    code, out = cli_run
    record = json.loads((out / "statements.json").read_text())
    assert record["diagnostics_ok"] is False   # 2 x 100 draws cannot reach bulk ESS 400
    assert code == 1


def test_saved_posterior_reopens_with_arviz(cli_run):
    import arviz as az

    _, out = cli_run
    idata = az.from_netcdf(out / "posterior_neutral.nc")
    assert {"posterior", "sample_stats", "posterior_predictive", "prior", "observed_data"} <= set(idata.children)
    chains, draws = idata["posterior"]["att"].shape   # a failed short fit may be re-fitted twice as long
    assert chains == 2 and draws in (100, 200)
    assert idata.attrs["synthetic"] == 1


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "cells.csv"
    frame.to_csv(path, index=False)
    return path


def _cells() -> pd.DataFrame:
    cells = cells_from_frame(kinship_twin().children, "kinship").cells
    return cells.rename(columns={"y": "kinship"})[["la", "year", "arm", "adoption_year", "settling_years",
                                                   "age_band", "kinship", "n"]]


@pytest.mark.parametrize("mutate, needle", [
    (lambda f: f.drop(columns="settling_years"), "column 'settling_years'"),
    (lambda f: f.assign(n=f["n"].where(f.index != 9, -1)), "row 10, column 'n'"),
    (lambda f: f.assign(kinship=f["kinship"].where(f.index != 0, f["n"] + 5)), "row 1, column 'kinship'"),
    (lambda f: f[f["arm"] == "pilot"], "no comparator"),
    (lambda f: f[f["arm"] == "comparator"], "no pilot"),
])
def test_bad_file_exits_2_and_writes_nothing(tmp_path, capsys, mutate, needle):
    path = _write(tmp_path, mutate(_cells()).reset_index(drop=True))
    out = tmp_path / "out"
    code = kinship.main(["--data", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and str(path) in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv"]


def test_missing_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analyses.kinship", "--data", str(tmp_path / "nope.csv"),
                           "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nope.csv" in proc.stderr and "not found" in proc.stderr
    assert not (tmp_path / "o").exists()
