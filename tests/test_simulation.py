"""Simulation studies: the wild cluster bootstrap, SBC ranks and tests, recovery metrics, and the
plumbing of `python -m analyses.simulation` (Dask, one file per replicate, resume, re-run alone).

The plumbing tests run tiny studies (a handful of replicates, 40 draws) on threaded in-process
Dask workers, all on the kinship-sized design, so the model is compiled once for the module.
The full studies are `benchmarks/simulation.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analyses import simulation as cli
from models import simulation as sim
from models.did.crosscheck import lpm_did


# ------------------------------------------------------------------ wild cluster bootstrap

def _few_la_cells(seed: int = 5, treated: int = 2):
    sc = sim.Scenario("t", treated, treated, 0.0, 0.0, "null")
    cells, _ = sim.simulate_cells(sc.config(False), seed, covariates=False)
    return sim.frequentist_cells(sim.replicate_design(cells))


def _brute_force_wcr(cells: pd.DataFrame, w: np.ndarray) -> tuple[float, float]:
    """Refit the child-level-equivalent WLS for every weight vector (slow, obviously right)."""
    n = cells["n"].to_numpy(float)
    sw = np.sqrt(n)
    la = pd.get_dummies(cells["unit"], drop_first=True).to_numpy(float)
    yr = pd.get_dummies(cells["period"], drop_first=True).to_numpy(float)
    z = np.column_stack([np.ones(len(cells)), la, yr])
    x = np.column_stack([z, cells["treated_post"].to_numpy(float)])
    y = cells["y"].to_numpy(float) / n
    groups = pd.factorize(cells["unit"])[0]

    def t_of(yy):
        b, *_ = np.linalg.lstsq(x * sw[:, None], yy * sw, rcond=None)
        e = yy - x @ b
        bread = np.linalg.inv((x * n[:, None]).T @ x)
        scores = np.array([(x[groups == g] * (n * e)[groups == g, None]).sum(0) for g in range(groups.max() + 1)])
        v = bread @ scores.T @ scores @ bread
        return b[-1] / np.sqrt(v[-1, -1])

    t0 = t_of(y)
    br, *_ = np.linalg.lstsq(z * sw[:, None], y * sw, rcond=None)
    fitted, er = z @ br, y - z @ br
    t_star = np.array([t_of(fitted + er * w[groups, j]) for j in range(w.shape[1])])
    return float(t0), float(np.mean(np.abs(t_star) >= abs(t0) - 1e-9))


def test_wild_cluster_bootstrap_matches_a_brute_force_refit_and_the_lpm():
    cells = _few_la_cells()
    fast = sim.wild_cluster_bootstrap(cells, n_boot=999, weights="rademacher", seed=3)
    assert fast.enumerated and fast.n_boot == 16 and fast.n_clusters == 4     # 2^4 sign patterns
    w, _ = sim.bootstrap_weights("rademacher", 4, 999, np.random.default_rng(3))
    t0, p = _brute_force_wcr(cells, w)
    big_n, k = cells["n"].sum(), 1 + 3 + cells["period"].nunique() - 1 + 1
    cr1 = 4 / 3 * (big_n - 1) / (big_n - k)                    # brute force has no CR1 factor
    assert fast.t_stat * np.sqrt(cr1) == pytest.approx(t0, rel=1e-6)
    assert fast.p_value == pytest.approx(p)
    webb = sim.wild_cluster_bootstrap(cells, n_boot=399, weights="webb", seed=3)
    w, _ = sim.bootstrap_weights("webb", 4, 399, np.random.default_rng(3))
    assert webb.p_value == pytest.approx(_brute_force_wcr(cells, w)[1])
    # the same point estimate as the report's LPM (statsmodels on child-equivalent rows)
    freq = lpm_did(cells)
    assert fast.estimate_pp == pytest.approx(freq.estimate, abs=1e-8)
    est, se = sim.cluster_lpm(cells)
    assert est == pytest.approx(freq.estimate, abs=1e-8)
    assert se == pytest.approx(fast.se_pp)
    assert 0.8 < se / freq.se <= 1.0   # statsmodels counts rows, not children, in (N-1)/(N-K)


def test_bootstrap_detects_a_large_effect_and_enumerates_small_designs():
    sc = sim.Scenario("t", 9, 9, -1.5, 0.0, "published")
    cells, _ = sim.simulate_cells(sc.config(False), 2, covariates=False)
    b = sim.wild_cluster_bootstrap(sim.frequentist_cells(sim.replicate_design(cells)), n_boot=199, weights="webb",
                                   seed=1)
    assert not b.enumerated and b.n_boot == 199 and b.p_value < 0.05 and b.estimate_pp < -10
    w, enumerated = sim.bootstrap_weights("webb", 3, 999, np.random.default_rng(0))
    assert enumerated and w.shape == (3, 216)
    with pytest.raises(ValueError, match="webb"):
        sim.bootstrap_weights("mammen", 3, 99, np.random.default_rng(0))


# ------------------------------------------------------------------ the engine's design and model

def test_replicates_use_the_kinship_analysis_design_and_one_compiled_model():
    from dataclasses import replace

    from analyses.sofs_did import canonical
    from models.did.fit import diagnostic_vars
    from models.did.model import build_did_model, choose_centring

    sc = sim.Scenario("t", 9, 9)
    a, _ = sim.simulate_cells(sc.config(False), 1, covariates=False)
    b, _ = sim.simulate_cells(sc.config(False), 2, covariates=False)
    pd.testing.assert_frame_equal(sim.canonical(a.cells), canonical(a.cells))
    da, db = sim.replicate_design(a), sim.replicate_design(b)
    assert da.spec.effects == "unit" and da.spec.unit_trends and da.units == a.las and da.periods == a.years
    assert len(da.cells) == len(a.analysis_cells())           # settling-in cells left out by the design
    assert np.array_equal(sim.frequentist_cells(da)["treated_post"], a.analysis_cells()["treated_post"])
    assert sim._design_key(da) == sim._design_key(db)         # every replicate re-uses one compiled model
    assert sim._design_key(sim.replicate_design(a, la_trends=False)) != sim._design_key(da)
    fewer = sim.replicate_design(replace(a, cells=a.cells.iloc[1:].reset_index(drop=True)))
    assert sim._design_key(fewer) == sim._design_key(da)      # other cells are data: the same compiled model
    assert {"gt_pos", "post", "treated_unit_idx"} <= set(sim.replicate_data({"dm": build_did_model(
        da, sim.study_prior(da, "neutral"), spec=sim.MODEL_SPEC)}, fewer, sim.study_prior(da, "neutral")))
    assert choose_centring(da) and choose_centring(db)        # the engine's own choice = MODEL_SPEC's
    dm = build_did_model(da, sim.study_prior(da, "neutral"), spec=sim.MODEL_SPEC)
    assert dm.unit_centred
    names = set(dm.model.named_vars)
    assert set(sim.RECOVERY_VARS) <= names and {v.partition("[")[0] for v in sim.SBC_VARS} <= names
    assert {"sigma_trend", "unit_trend", "sigma_unit", "unit_intercept", "tau", "att"} <= set(diagnostic_vars(dm))


# ------------------------------------------------------------------ seeds, scenarios, metrics

def test_replicate_seeds_are_stable_and_distinct():
    a = sim.replicate_seeds(1, "kinship", 0)
    assert a == sim.replicate_seeds(1, "kinship", 0)
    assert a != sim.replicate_seeds(1, "kinship", 1) and a != sim.replicate_seeds(2, "kinship", 0)
    assert len(set(a.values())) == 3


def test_few_las_scenarios_and_their_designs():
    grid = sim.study_scenarios("few-las")
    assert len(grid) == 2 * 3 * 3 and len({s.id for s in grid}) == len(grid)
    two = next(s for s in grid if s.n_pilot == 2 and s.effect == "null" and s.sd_tau == 0.6)
    cfg = two.config()
    assert (cfg.n_pilot, cfg.n_comparator, cfg.mu_tau, cfg.sd_tau) == (2, 2, 0.0, 0.6)
    assert cfg.adoption_years == (2014, 2017) and cfg.age_effects == (0.0, 0.0, 0.0, 0.0)
    assert two.config(covariates=True).age_effects != (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="null"):
        sim.study_scenarios("few-las", effects=("big",))
    with pytest.raises(ValueError, match="study"):
        sim.StudySettings("bootstrap")


def test_recovery_metrics_on_hand_made_records():
    def rec(k, truth, centre):
        q = {f"{p:g}": centre + z for p, z in zip(sim.QUANTILES, (-2, -1.6, -0.7, 0, 0.7, 1.6, 2))}
        return {"replicate": k, "truth": {"att": truth}, "posterior": {"att": {"mean": centre, "q": q}}}

    records = [rec(0, 0.0, 0.0), rec(1, 0.0, 1.0), rec(2, 0.0, 1.8), rec(3, 0.0, 3.0)]
    t = sim.recovery_table(records).set_index("parameter").loc["att"]
    assert t["coverage_50"] == 0.25 and t["coverage_90"] == 0.5 and t["coverage_95"] == 0.75
    assert t["bias"] == pytest.approx(1.45) and t["mean_width_90"] == pytest.approx(3.2)


def test_rank_uniformity_tests():
    rng = np.random.default_rng(0)
    uniform = pd.DataFrame({"replicate": range(300), "L": 99, "a": rng.integers(0, 100, 300),
                            "b": rng.integers(0, 40, 300)})
    table, curves = sim.sbc_uniformity(uniform, n_simulations=300)
    table = table.set_index("parameter")
    assert table.loc["a", "p_value"] > 0.01 and table.loc["a", "inside_99pct_envelope"]
    assert table.loc["b", "p_value"] < 1e-6 and not table.loc["b", "inside_99pct_envelope"]
    assert set(curves) == {"a", "b"} and len(curves["a"]["x"]) == len(curves["a"]["diff"])
    kept = sim.thin_draws(np.arange(2 * 500).reshape(2, 500), 99)
    assert kept.size == 99 and kept[0] == 0 and kept[-1] == 999


# ------------------------------------------------------------------ the command: plumbing and resume

TINY = ["--draws", "40", "--tune", "40", "--chains", "2", "--scheduler", "inprocess", "--workers", "2", "--quiet"]


def _files(out, scenario):
    return sorted(p.name for p in (out / "replicates" / scenario).glob("rep_*.json"))


def test_recovery_study_writes_each_replicate_resumes_and_reruns_one_alone(tmp_path, capsys):
    out = tmp_path / "rec"
    assert cli.main(["recovery", "--replicates", "3", "--out", str(out), *TINY]) == 0
    scenario = "kinship_mu-0.66_sd0.6"
    assert _files(out, scenario) == ["rep_00000.json", "rep_00001.json", "rep_00002.json"]
    for name in ("recovery.csv", "recovery.md", "coverage.png", "att_intervals.png", "summary.json", "report.md"):
        assert (out / "summary" / name).exists(), name
    summary = json.loads((out / "summary" / "summary.json").read_text())
    assert summary["replicates_done"] == 3 and summary["checks"][0]["check"].startswith("ATT 90%")
    assert summary["diagnostics"]["timing"]["mean_overhead_s"] < 5

    # an interrupted study: replicate 1 lost, replicate 0 must not be re-run; extend to 4
    first = out / "replicates" / scenario / "rep_00000.json"
    stamp = first.stat().st_mtime_ns
    stored = json.loads((out / "replicates" / scenario / "rep_00001.json").read_text())
    (out / "replicates" / scenario / "rep_00001.json").unlink()
    assert cli.main(["recovery", "--replicates", "4", "--out", str(out), *TINY]) == 0
    assert _files(out, scenario) == [f"rep_{k:05d}.json" for k in range(4)]
    assert first.stat().st_mtime_ns == stamp
    runs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["ran"] for r in runs] == [3, 2] and runs[1]["skipped"] == 2
    redone = json.loads((out / "replicates" / scenario / "rep_00001.json").read_text())
    assert redone["seeds"] == stored["seeds"]
    assert redone["posterior"] == stored["posterior"]        # same seed, same numbers, other run

    # any replicate re-run alone (no Dask, one thread) gives the stored numbers
    capsys.readouterr()
    assert cli.main(["recovery", "--replicates", "4", "--out", str(out), "--replicate", "2",
                     "--cores-per-replicate", "1", *TINY]) == 0
    assert "identical to the stored result" in capsys.readouterr().out

    # a resumed study must keep its settings
    assert cli.main(["recovery", "--replicates", "4", "--out", str(out), *TINY[:-1], "--seed", "1"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_sbc_and_few_las_studies_run_end_to_end(tmp_path):
    out = tmp_path / "sbc"
    assert cli.main(["sbc", "--treated", "9,2", "--replicates", "3", "--sbc-draws", "20", "--out", str(out),
                     *TINY]) == 0
    ranks = pd.read_csv(out / "summary" / "sbc_ranks.csv")
    assert len(ranks) == 6 and ranks.drop(columns=["replicate", "L"]).to_numpy().max() <= 20
    words = pd.read_csv(out / "summary" / "verbal_calibration.csv")
    assert set(words["n_pilot"]) <= {9, 2} and words["statements"].sum() == 12     # 2 statements per replicate
    new = pd.read_csv(out / "summary" / "new_la_coverage.csv")
    assert list(new["n_pilot"]) == [9, 2] and (new["replicates"] == 3).all()
    assert (out / "summary" / "verbal_calibration.png").exists()
    rec = json.loads(next((out / "replicates").glob("prior_t2_c2/rep_00000.json")).read_text())
    assert rec["design"] == {"n_pilot": 2, "n_comparator": 2} and np.isfinite(rec["new_unit"]["truth"])
    assert set(sim.SBC_VARS) <= set(ranks.columns)
    assert (out / "summary" / "sbc_ecdf.png").exists() and (out / "summary" / "sbc_uniformity.md").exists()

    out = tmp_path / "few"
    assert cli.main(["few-las", "--treated", "9", "--sd-tau", "0.3", "--effects", "null,published",
                     "--replicates", "2", "--n-boot", "99", "--out", str(out), *TINY]) == 0
    table = pd.read_csv(out / "summary" / "rejection_rates.csv")
    assert set(table["method"]) == set(sim.METHODS) and (table["replicates"] == 2).all()
    assert table["rejection_rate"].between(0, 1).all()
    assert (out / "summary" / "type1_error.png").exists() and (out / "summary" / "power.png").exists()
    rec = json.loads(next((out / "replicates").glob("null_*/rep_00000.json")).read_text())
    assert rec["bootstrap"]["webb"]["n_boot"] == 99 and rec["truth"]["mu_tau"] == 0.0
    null = pd.read_csv(out / "summary" / "null_statements.csv")
    assert len(null) == 1 and null["very_likely_reduced"].between(0, 1).all()


def _statement_records(p: np.ndarray, true_att: np.ndarray, n_pilot: int = 9) -> list[dict]:
    return [{"scenario": f"s{n_pilot}", "design": {"n_pilot": n_pilot}, "statement": {"p_reduced": float(a),
             "true_att": float(t)}} for a, t in zip(p, true_att)]


def test_verbal_calibration_tells_calibrated_from_overconfident_words():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 4000)
    calibrated = np.where(rng.random(4000) < p, -1.0, 1.0)          # reduced with probability P
    table = sim.verbal_calibration(_statement_records(p, calibrated))
    assert table["matches_stated"].all() and table["statements"].sum() == 8000
    # overconfident: the statements say P, the truth is a coin flip
    coin = np.where(rng.random(4000) < 0.5, -1.0, 1.0)
    bad = sim.verbal_calibration(_statement_records(p, coin)).set_index("level")
    assert not bad.loc["virtually certain", "matches_stated"] and not bad.loc["very likely", "matches_stated"]


def test_new_la_coverage_counts_fresh_effects_inside_the_intervals():
    rng = np.random.default_rng(1)
    recs = []
    for k in range(2000):
        truth = rng.normal()
        q = {f"{a:g}": float(v) for a, v in zip(sim.QUANTILES, np.quantile(rng.normal(size=4000), sim.QUANTILES))}
        recs.append({"scenario": "x", "design": {"n_pilot": 4}, "new_unit": {"truth": truth, "posterior": {"q": q}}})
    table = sim.new_unit_coverage(recs)
    assert table["coverage_90"].iloc[0] == pytest.approx(0.90, abs=0.02)
    assert table["coverage_50"].iloc[0] == pytest.approx(0.50, abs=0.03)


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["few-las", "--effects", "huge", "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "null" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["calibrate"])
