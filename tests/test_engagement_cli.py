"""The engagement command: bad input exits 2 with nothing written; a tiny end-to-end run on a
user CSV writes every output, labels synthetic data, and compares uni- vs multidimensional."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyses import engagement
from data.synthetic_engagement import simulate_engagement


@pytest.fixture(scope="module")
def answers() -> pd.DataFrame:
    return simulate_engagement().frame


def _run(tmp_path, frame: pd.DataFrame | None, *extra: str, capsys=None) -> tuple[int, object]:
    out = tmp_path / "out"
    args = ["--out", str(out), "--quiet", *extra]
    if frame is not None:
        path = tmp_path / "answers.csv"
        frame.to_csv(path, index=False)
        args += ["--data", str(path)]
    return engagement.main(args), out


@pytest.mark.parametrize("change, message", [
    (lambda f: f.assign(Q99=1), "unknown item 'Q99'"),
    (lambda f: f.assign(Y03=f["Y03"].where(f.index != 4, 9)), "row 5, column 'Y03'"),
    (lambda f: f.assign(site=f["site"].where(f.index != 7, "")), "row 8, column 'site': missing site"),
    (lambda f: f.drop(columns="competence"), "'competence' is missing"),
    (lambda f: f.assign(arm="sofs"), "both arms"),
])
def test_bad_data_exits_2_and_writes_nothing(tmp_path, capsys, answers, change, message):
    code, out = _run(tmp_path, change(answers.copy()))
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]   # no temporary folder left


def test_bad_instrument_file_exits_2(tmp_path, capsys, answers):
    bad = tmp_path / "key.yaml"
    bad.write_text("name: yatchmenoff\ncategories: [1, 2, 3]\nscore_direction: sideways\n"
                   "dimensions: {a: A}\nitems: [{id: Y01, dimension: a}, {id: Y02, dimension: a}]\n")
    code, out = _run(tmp_path, answers, "--instrument-yatchmenoff", str(bad))
    assert code == 2 and "score_direction" in capsys.readouterr().err and not out.exists()


def test_missing_file_exits_2(tmp_path, capsys):
    code = engagement.main(["--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 2 and "nope.csv" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.0", "0.3", "often"])
def test_target_accept_outside_half_to_one_exits_2(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stop:
        engagement.main(["--target-accept", value, "--out", str(tmp_path / "out"), "--quiet"])
    assert stop.value.code == 2 and "--target-accept" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert engagement._parser().parse_args([]).target_accept == engagement.TARGET_ACCEPT


def test_default_data_is_labelled_synthetic():
    args = engagement._parser().parse_args([])
    frame, instruments, source, data_hash, synthetic = engagement._load(args)
    assert synthetic and "SYNTHETIC" in source and len(frame) == 60 and data_hash.startswith("sha256:")


def test_end_to_end_on_a_user_csv(tmp_path, answers):
    """Tiny chains (diagnostics are expected to fail and are not asserted), all three fits,
    LOO, statements beside the report's, figures and provenance."""
    code, out = _run(tmp_path, answers, "--draws", "100", "--tune", "150", "--chains", "2", "--prior", "neutral",
                     "--seed", "3", "--target-accept", "0.85")
    assert code == 0
    rec = json.loads((out / "statements.json").read_text())
    assert rec["synthetic"] is False and rec["data_source"].endswith("answers.csv")
    assert rec["provenance"]["data_hash"].startswith("sha256:") and rec["provenance"]["seed"] == 3
    assert rec["provenance"]["target_accept"] == 0.85
    assert set(rec["diagnostics"]) == {"yatchmenoff_subscales / neutral", "yatchmenoff_overall / neutral",
                                       "wai_raters / neutral"}
    texts = [s["statement"] for s in rec["statements"]]
    assert sum("families in SofS sites are more engaged" in t for t in texts) == 5        # 4 subscales + overall
    assert sum("more competent social workers have more engaged" in t for t in texts) == 5
    assert sum("alliance is stronger in SofS sites" in t for t in texts) == 2
    assert any("Table 6: -0.468" in s["report"] for s in rec["statements"])
    assert rec["loo"]["yatchmenoff"][0]["model"] in ("multidimensional (subscales)", "unidimensional (overall)")
    assert {"latent_corr", "score_difference"} <= set(rec["agreement"]["wai_raters"])
    effects = pd.read_csv(out / "effects.csv")
    assert {"p_better", "eti95_low", "eti95_high", "prior", "quantity"} <= set(effects.columns)
    for name in ("yatchmenoff_subscales_icc.png", "yatchmenoff_subscales_information.png",
                 "yatchmenoff_subscales_ppc.png", "wai_raters_icc.png", "wai_raters_ppc.png",
                 "yatchmenoff_sofs_effect.png", "yatchmenoff_competence_slope.png", "wai_sofs_effect.png",
                 "yatchmenoff_person_scores.png", "reliability.csv", "person_scores.csv", "ppc_items.csv",
                 "item_parameters.csv", "loo_yatchmenoff.csv", "posterior_yatchmenoff_subscales.nc", "report.md"):
        assert (out / name).exists(), name
