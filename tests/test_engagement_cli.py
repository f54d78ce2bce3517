"""The engagement command: bad input exits 2 with nothing written; a tiny end-to-end run on a
user CSV writes every output, labels synthetic data, and compares uni- vs multidimensional."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    (lambda f: f.drop(columns="Y05"), "column 'Y05': item 'Y05' of yatchmenoff"),   # a dropped item column
    (lambda f: f.assign(arm="sofs"), "both arms"),
])
def test_bad_data_exits_2_and_writes_nothing(tmp_path, capsys, answers, change, message):
    code, out = _run(tmp_path, change(answers.copy()))
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "answers.csv" in err                               # names the file
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
    LOO by respondent, item and global fit, the DIF check, statements beside the report's,
    figures and provenance."""
    code, out = _run(tmp_path, answers, "--draws", "100", "--tune", "150", "--chains", "2", "--prior", "neutral",
                     "--seed", "3", "--target-accept", "0.85", "--site-sd-sensitivity", "0.1,1")
    assert code == 0
    rec = json.loads((out / "statements.json").read_text())
    assert rec["synthetic"] is False and rec["data_source"].endswith("answers.csv")
    assert rec["provenance"]["data_hash"].startswith("sha256:") and rec["provenance"]["seed"] == 3
    assert rec["provenance"]["target_accept"] == 0.85
    assert set(rec["diagnostics"]) == {"yatchmenoff_subscales / neutral", "yatchmenoff_overall / neutral",
                                       "wai_raters / neutral", "yatchmenoff_subscales / DIF check (neutral)",
                                       "wai_raters / DIF check (neutral)",   # and the site-SD re-samples, which --strict counts
                                       *(f"{k} / site-SD prior mean {m} (neutral)" for k in ("yatchmenoff_subscales", "wai_raters")
                                         for m in ("0.1", "1"))}
    assert isinstance(rec["sampling_notes"], list)        # re-fits after divergences alone, in words
    texts = [s["statement"] for s in rec["statements"] if s["quantity"] != "sofs over site-SD priors"]
    assert sum("families in SofS sites are more engaged" in t for t in texts) == 5        # 4 subscales + overall
    assert sum("families of more competent social workers are more engaged" in t for t in texts) == 5
    assert sum("families in SofS sites have a stronger working alliance" in t for t in texts) == 2
    # The arm statement over the site-SD prior (4 subscales + overall, 2 raters), both prior means.
    sens = [s["statement"] for s in rec["statements"] if s["quantity"] == "sofs over site-SD priors"]
    assert len(sens) == 7 and all("Gamma(2, 2/0.1)" in t and "Gamma(2, 2/1)" in t for t in sens)
    assert {r["site_sd_prior_mean"] for r in rec["site_sd_sensitivity"]} == {0.1, 1.0}
    assert rec["latent_regression"]["yatchmenoff_subscales"] == ["arm", "competence", "site", "worker"]
    assert any("Table 6: -0.468" in s["report"] for s in rec["statements"])
    assert rec["loo"]["yatchmenoff"][0]["model"] in ("multidimensional (subscales)", "unidimensional (overall)")
    assert {r["unit"] for r in rec["loo"]["yatchmenoff"]} == {"respondent (traits integrated out)"}
    assert all(r["n_pareto_k_high"] >= 0 and 0 < r["max_pareto_k"] < 5 for r in rec["loo"]["yatchmenoff"])
    # Model checks: item fit per item and statistic, global fit per model, DIF per item of the arm models.
    item_fit = pd.read_csv(out / "item_fit.csv")
    assert set(item_fit["statistic"]) == {"grouped_chi2", "outfit"} and item_fit["ppp"].between(0, 1).all()
    assert set(rec["global_fit"]) == {"yatchmenoff_subscales", "yatchmenoff_overall", "wai_raters"}
    assert set(pd.read_csv(out / "local_dependence.csv")["model"]) == set(rec["global_fit"])
    dif = pd.read_csv(out / "dif.csv")
    assert set(dif["model"]) == {"subscales", "raters"} and len(dif) == 18 + 24
    assert {"yatchmenoff_subscales / DIF check (neutral)", "wai_raters / DIF check (neutral)"} <= set(rec["diagnostics"])
    assert {"latent_corr", "score_difference"} <= set(rec["agreement"]["wai_raters"])
    effects = pd.read_csv(out / "effects.csv")
    assert {"p_better", "eti95_low", "eti95_high", "prior", "quantity"} <= set(effects.columns)
    for name in ("yatchmenoff_subscales_icc.png", "yatchmenoff_subscales_information.png",
                 "yatchmenoff_subscales_ppc.png", "wai_raters_icc.png", "wai_raters_ppc.png",
                 "yatchmenoff_sofs_effect.png", "yatchmenoff_competence_slope.png", "wai_sofs_effect.png",
                 "yatchmenoff_person_scores.png", "reliability.csv", "person_scores.csv", "ppc_items.csv",
                 "item_parameters.csv", "loo_yatchmenoff.csv", "item_fit.csv", "dif.csv", "local_dependence.csv", "posterior_yatchmenoff_subscales.nc", "report.md"):
        assert (out / name).exists(), name


def test_item_answers_alone_with_a_users_instrument(tmp_path):
    """A public-style Likert file of item answers only, and its own key: it runs, says the
    latent regression has no terms, and labels everything from the key."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=120)
    a, b = 2.0, np.array([-0.8, 0.6])
    items = {f"Item{j}": 1 + (a * (theta - b[0] - 0.2 * j) > rng.logistic(size=120)).astype(int)
             + (a * (theta - b[1] - 0.2 * j) > rng.logistic(size=120)).astype(int) for j in range(4)}
    pd.DataFrame(items).to_csv(tmp_path / "likert.csv", index=False)
    key = tmp_path / "key.yaml"
    key.write_text("name: concern\ntitle: Concern scale\ntrait: concern\nrespondents: respondents\n"
                   "more_trait: are more concerned\ncategories: [1, 2, 3]\nscore_direction: higher_is_better\n"
                   "dimensions: {c: Concern}\nitems:\n" + "".join(f"  - {{id: Item{j}, dimension: c}}\n" for j in range(4)))
    out = tmp_path / "out"
    code = engagement.main(["--data", str(tmp_path / "likert.csv"), "--instrument", str(key), "--out", str(out),
                            "--quiet", "--draws", "150", "--tune", "150", "--chains", "2"])
    assert code in (0, 1)
    rec = json.loads((out / "statements.json").read_text())
    assert rec["latent_regression"] == {"concern_overall": []}
    assert rec["instruments"]["concern"]["scale"] == "Concern scale average score (1-3, higher = more concern)"
    text = (out / "statements.json").read_text() + (out / "report.md").read_text()
    assert "working alliance" not in text and "1-7" not in text and "Yatchmenoff" not in text
    items = pd.read_csv(out / "item_parameters.csv")
    assert set(items["item"]) == set(items_ := items["item"]) and len(set(items_)) == 4
    assert (out / "concern_overall_icc.png").exists() and (out / "concern_person_scores.png").exists()


# ----------------------------------------------------------------------------- fuzzing (hypothesis)

from hypothesis import HealthCheck, given, settings, strategies as st   # noqa: E402

from data.errors import DataError   # noqa: E402
from data.instruments import default_instrument, load_instrument, read_responses   # noqa: E402

_SMALL = simulate_engagement().frame.groupby("arm").head(3).reset_index(drop=True)   # both arms
_INSTRUMENTS = [default_instrument("yatchmenoff"), default_instrument("wai")]
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _csv_text() -> str:
    return _SMALL.to_csv(index=False)


def _check(path, text: str):
    """read_responses either returns a frame or raises a DataError naming the file; never another error."""
    path.write_text(text)
    try:
        read_responses(path, _INSTRUMENTS)
    except DataError as err:
        assert err.file == str(path), err
        return err
    return None


@_FUZZ
@given(cut=st.integers(min_value=0, max_value=len(_csv_text()) - 1))
def test_fuzz_truncated_item_file(tmp_path, cut):
    text = _csv_text()[:cut]
    err = _check(tmp_path / "answers.csv", text)
    lines = text.splitlines()
    header = _csv_text().splitlines()[0]
    if not text.strip() or len(lines) == 1:
        assert err is not None                                    # empty, or header (or part of it) only
    elif text.endswith("\n") is False and lines[-1].count(",") < header.count(","):
        assert err is not None and err.row == len(lines) - 1      # a cut row: too few fields, row named


@_FUZZ
@given(data=st.data())
def test_fuzz_deleted_renamed_or_bad_cells(tmp_path, data):
    frame = _SMALL.copy()
    items = default_instrument("yatchmenoff").columns(used_only=True)   # Y08 is dropped by the key
    kind = data.draw(st.sampled_from(["delete", "rename", "bad_type", "out_of_range", "duplicate_row", "header_only"]))
    row = column = None
    if kind == "delete":
        column = data.draw(st.sampled_from(items))
        frame = frame.drop(columns=column)
    elif kind == "rename":
        old = data.draw(st.sampled_from(items))
        column = old + data.draw(st.sampled_from(["x", "_", " 2", "Q"]))
        frame = frame.rename(columns={old: column})
    elif kind in ("bad_type", "out_of_range"):
        column = data.draw(st.sampled_from(items + ["competence"] if kind == "bad_type" else items))
        row = data.draw(st.integers(1, len(frame)))
        value = (data.draw(st.sampled_from(["often", "3.5.1", "x", "[1]"])) if kind == "bad_type"
                 else data.draw(st.sampled_from(["0", "6", "-1", "99", "2.5"])))
        frame[column] = frame[column].astype(object)
        frame.iloc[row - 1, frame.columns.get_loc(column)] = value
    elif kind == "duplicate_row":
        row = data.draw(st.integers(1, len(frame)))
        frame = pd.concat([frame, frame.iloc[[row - 1]]], ignore_index=True)
        row, column = len(frame), "family"
    else:
        frame = frame.iloc[:0]
    path = tmp_path / "answers.csv"
    err = _check(path, frame.to_csv(index=False))
    assert err is not None, kind
    if column is not None:
        assert err.column == column, (kind, err)
    if row is not None:
        assert err.row == row, (kind, err)


_KEY_TEXT = (Path(engagement.__file__).resolve().parents[1] / "data" / "instruments" / "yatchmenoff.yaml").read_text()


@_FUZZ
@given(data=st.data())
def test_fuzz_instrument_file(tmp_path, data):
    """Truncated, emptied, key-renamed or mistyped item keys end in a DataError naming the file."""
    import yaml

    config = yaml.safe_load(_KEY_TEXT)
    kind = data.draw(st.sampled_from(["truncate", "empty", "delete_key", "rename_key", "wrong_type", "item_type",
                                      "duplicate_item"]))
    if kind == "truncate":
        text = _KEY_TEXT[: data.draw(st.integers(0, len(_KEY_TEXT) - 1))]
    elif kind == "empty":
        text = data.draw(st.sampled_from(["", "\n", "# nothing\n", "[]\n", "42\n"]))
    else:
        if kind == "delete_key":
            del config[data.draw(st.sampled_from(["name", "categories", "dimensions", "items", "score_direction"]))]
        elif kind == "rename_key":
            k = data.draw(st.sampled_from(sorted(config)))
            config[k + "s"] = config.pop(k)
        elif kind == "wrong_type":
            k = data.draw(st.sampled_from(["categories", "dimensions", "items", "raters", "score_direction",
                                           "category_labels"]))
            config[k] = data.draw(st.sampled_from([5, "text", None, [], {"a": 1}, [1.5, 2.5], True]))
        elif kind == "item_type":
            j = data.draw(st.integers(0, len(config["items"]) - 1))
            field = data.draw(st.sampled_from(["id", "dimension", "reverse", "drop"]))
            config["items"][j][field] = data.draw(st.sampled_from([None, [1], {"x": 1}, "yes please", 3.5]))
        else:
            config["items"].append(dict(config["items"][0]))
        text = yaml.safe_dump(config)
    path = tmp_path / "key.yaml"
    path.write_text(text)
    try:
        load_instrument(path)
    except DataError as err:
        assert err.file == str(path)
        return
    # Only a harmless change may load: a truncation that ends at an item boundary with enough
    # items left, a list-valued field that is still valid, or a dimension id/label type YAML reads as text.
    assert kind in ("truncate", "wrong_type", "item_type", "rename_key"), kind
