"""Tests of the Monte Carlo cost model (models.cost_uncertainty) and `python -m analyses.costs`."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from analyses import costs as cli
from data.cost_inputs import (
    DEFAULT_UNIT_COSTS,
    DEFLATOR,
    PUBLISHED_EFFECTS,
    load_effect_draws,
    load_la_volumes,
    load_unit_costs,
)
from data.errors import DataError
from models import cost_uncertainty as cu

SMALL = 2_000


def hand_case(**overrides) -> cu.CostDraws:
    """One LA, one draw, round numbers (see the arithmetic in the tests below)."""
    values = {
        "grant_per_la": 78_750, "internal_share": 0.5, "management_days": 100, "training_days": 200,
        "children_entering_care": 100, "closed_cases": 1_000,
        "staff_salary": 35_200, "manager_salary": 44_000, "salary_oncost": 0.25, "working_days": 220,
        "tns_per_training_day": 50, "staff_share": 0.75, "staff_continuing": 0.8, "nonstaff_continuing": 0.4,
        "weeks_in_placement": 40, "non_kinship_mix": [0.5, 0.3, 0.2],
        "in_house_foster_week": 600, "agency_foster_week": 900, "residential_week": 3_000, "kinship_week": 300,
        "referral": 300, "assessment": 1_200, "p_assessment": 0.5,
        "kinship_pp": -10.0, "rereferral_pp": -10.0,
    }  # fmt: skip
    values.update(overrides)
    return cu.CostDraws(("A",), values)


def small_run(n=SMALL, seed=7, **settings_kw):
    settings = cu.CostSettings(**settings_kw)
    effects = {o: cu.published_effect_draws(o, n, seed) for o in ("kinship", "rereferral")}
    draws = cu.sample_parameters(load_unit_costs(), effects=effects, n_draws=n, seed=seed, settings=settings)
    return draws, settings


# ----------------------------------------------------------------------------------------------
# Deterministic case computed by hand
# ----------------------------------------------------------------------------------------------


def test_hand_computed_two_years_undiscounted():
    o = cu.evaluate(hand_case(), cu.CostSettings(horizon_years=2), discount_rate=0.0)
    # direct spend 78,750 x 1.5 = 118,125; manager day 44,000 x 1.25 / 220 = 250; staff day 200
    assert o["impl_direct"][0, 0] == pytest.approx(118_125)
    assert o["impl_management"][0, 0] == pytest.approx(100 * 250)
    assert o["impl_training"][0, 0] == pytest.approx(200 * (200 + 50))
    assert o["impl_ongoing"][0, 0] == pytest.approx(0)
    assert o["implementation"][0, 0] == pytest.approx(193_125)
    # 10 children a year move out of kinship care; each costs 40 x (0.5*600 + 0.3*900 + 0.2*3000 - 300) = 34,800
    assert o["kinship_cost"][0, 0] == pytest.approx(2 * 10 * 34_800)
    assert o["kinship_children_kept"][0, 0] == pytest.approx(-20)
    # 100 re-referrals a year avoided at 300 + 0.5 x 1,200 = 900 each
    assert o["rereferral_cost"][0, 0] == pytest.approx(-2 * 100 * 900)
    assert o["rereferrals_avoided"][0, 0] == pytest.approx(200)
    assert o["net"][0, 0] == pytest.approx(193_125 + 696_000 - 180_000)


def test_hand_computed_ongoing_costs_and_discounting():
    o = cu.evaluate(hand_case(), cu.CostSettings(horizon_years=4), discount_rate=0.0)
    # after the grant: 118,125 / 2 a year x (0.75 x 0.8 + 0.25 x 0.4) = 41,343.75 a year, 2 years
    assert o["impl_ongoing"][0, 0] == pytest.approx(2 * 59_062.5 * 0.7)
    assert o["net"][0, 0] == pytest.approx(193_125 + 82_687.5 + 4 * 348_000 - 4 * 90_000)

    r = 0.035
    wg, wo, we = 1 + 1 / 1.035, 1 / 1.035**2, 1 + 1 / 1.035 + 1 / 1.035**2
    assert cu.discount_weights(3, r) == pytest.approx((wg, wo, we))
    o = cu.evaluate(hand_case(), cu.CostSettings(horizon_years=3), discount_rate=r)
    expected = (wg / 2 * (118_125 + 25_000 + 50_000) + wo * 59_062.5 * 0.7 + we * 348_000 - we * 90_000)
    assert o["net"][0, 0] == pytest.approx(expected)


def test_right_sign_effect_gives_cost_per_unit_and_wrong_sign_does_not():
    o = cu.evaluate(hand_case(kinship_pp=+10.0), cu.CostSettings(horizon_years=2), discount_rate=0.0)
    assert o["kinship_children_kept"][0, 0] == pytest.approx(20)
    res = cu.cost_per_unit(np.array([100.0, 300.0]), np.array([10.0, 10.0]), unit="GBP per child")
    assert res["defined"] and res["ratio_of_means"] == pytest.approx(20.0)
    wrong = cu.cost_per_unit(np.array([100.0, 300.0]), np.array([-10.0, -5.0]), unit="GBP per child")
    assert not wrong["defined"] and wrong["ratio_of_means"] is None and wrong["p_right_sign"] == 0.0


def test_inflation_to_price_year():
    costs = load_unit_costs()
    settings = cu.CostSettings(price_year=2019)
    effects = {o: cu.published_effect_draws(o, 10, 1) for o in ("kinship", "rereferral")}
    draws = cu.sample_parameters(costs, effects=effects, n_draws=10, seed=1, settings=settings)
    grant = costs["grant_per_la"]
    assert grant.distribution == "fixed" and grant.price_year == 2017
    assert np.allclose(draws.values["grant_per_la"], 78_750 * DEFLATOR[2019] / DEFLATOR[2017])
    later = cu.sample_parameters(costs, effects=effects, n_draws=10, seed=1, settings=cu.CostSettings(price_year=2023))
    ratio = later.values["kinship_week"] / draws.values["kinship_week"]
    assert np.allclose(ratio, DEFLATOR[2023] / DEFLATOR[2019])


def test_published_effect_standard_errors():
    assert PUBLISHED_EFFECTS["kinship"].se_pp == pytest.approx(12.63 / 2.1701, rel=1e-3)
    assert PUBLISHED_EFFECTS["rereferral"].se_pp == pytest.approx(9.8 / 3.2905, rel=1e-3)
    eff = cu.published_effect_draws("kinship", 200_000, 3)
    assert eff.draws.mean() == pytest.approx(-12.63, abs=0.05)
    assert eff.draws.std() == pytest.approx(5.82, abs=0.05)
    assert "normal approximation" in eff.source


# ----------------------------------------------------------------------------------------------
# Monte Carlo behaviour
# ----------------------------------------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, s = small_run(seed=11)
    b, _ = small_run(seed=11)
    c, _ = small_run(seed=12)
    for k in a.values:
        np.testing.assert_array_equal(a.values[k], b.values[k])
    na, nb, nc = (cu.evaluate(d, s).total("net") for d in (a, b, c))
    np.testing.assert_array_equal(na, nb)
    assert not np.allclose(na, nc)


def test_monte_carlo_error_falls_as_one_over_root_n():
    def spread(n: int, reps: int = 40) -> float:
        means = []
        for seed in range(reps):
            d, s = small_run(n=n, seed=1000 + seed)
            means.append(cu.evaluate(d, s).total("net").mean())
        return float(np.std(means, ddof=1))

    ratio = spread(250) / spread(4_000)  # 16x the draws -> 4x smaller error
    assert 2.8 < ratio < 5.7, ratio


def test_every_quantity_for_draw_i_uses_posterior_draw_i():
    posterior = np.linspace(-20, 5, 7)  # 7 posterior draws, cycled over 20 Monte Carlo draws
    effects = {"kinship": cu.posterior_effect_draws("kinship", posterior, "test"),
               "rereferral": cu.posterior_effect_draws("rereferral", posterior[::-1], "test")}
    settings = cu.CostSettings()
    draws = cu.sample_parameters(load_unit_costs(), effects=effects, n_draws=20, seed=5, settings=settings)
    np.testing.assert_array_equal(draws.values["kinship_pp"], posterior[np.arange(20) % 7])
    np.testing.assert_array_equal(draws.values["rereferral_pp"], posterior[::-1][np.arange(20) % 7])
    full = cu.evaluate(draws, settings)
    for i in (0, 6, 13):
        one = cu.evaluate(draws.take(i), settings)
        np.testing.assert_allclose(one["net"][0], full["net"][i])
        # the kinship cost has the sign of -effect (fewer kinship placements cost more)
        assert np.all(np.sign(one["kinship_cost"][0]) == -np.sign(posterior[i % 7]))


def test_volumes_and_internal_funding_rules(tmp_path):
    f = tmp_path / "las.csv"
    f.write_text("la,children_entering_care,closed_cases,internal_share\nNorth,120,,0.4\nSouth,,800,\n")
    vol = load_la_volumes(f)
    settings = cu.CostSettings(unknown_internal="none")
    effects = {o: cu.published_effect_draws(o, 500, 1) for o in ("kinship", "rereferral")}
    d = cu.sample_parameters(load_unit_costs(), effects=effects, n_draws=500, seed=1, settings=settings, volumes=vol)
    assert d.las == ("North", "South")
    assert np.all(d.values["children_entering_care"][:, 0] == 120)
    assert np.all(d.values["closed_cases"][:, 1] == 800)
    assert np.all(d.values["internal_share"][:, 0] == 0.4) and np.all(d.values["internal_share"][:, 1] == 0.0)
    assert np.allclose(d.values["training_days"].sum(axis=1), 2_550)
    # default pilots: 5 reported some funding, 2 none, 2 unknown (mixture)
    d9, _ = small_run(n=4_000)
    share = d9.values["internal_share"]
    assert np.all(share[:, :5] >= 0.37) and np.all(share[:, 5:7] == 0)
    assert 0.15 < np.mean(share[:, 7:] == 0) < 0.42  # 2/7 = 0.29


# ----------------------------------------------------------------------------------------------
# Which uncertainty matters
# ----------------------------------------------------------------------------------------------


def test_evppi_regression_recovers_analytic_value():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 40_000))
    inb = a + b
    # INB = a + b with a, b ~ N(0, 1): EVPI = E[max(a+b, 0)] = 1/sqrt(pi), EVPPI(a) = 1/sqrt(2 pi)
    assert cu.evpi(inb) == pytest.approx(1 / np.sqrt(np.pi), abs=0.02)
    assert cu.evppi_regression(inb, a) == pytest.approx(1 / np.sqrt(2 * np.pi), abs=0.02)
    assert cu.evppi_regression(inb, c) < 0.01  # an irrelevant parameter
    # non-linear: INB = a^2 - 1 depends on a only -> EVPPI(a) = EVPI
    assert cu.evppi_regression(a**2 - 1, a) == pytest.approx(cu.evpi(a**2 - 1), rel=0.03)


def test_tornado_and_evppi_tables():
    draws, settings = small_run(n=4_000)
    result = cu.analyse(draws, settings)
    t = result.tornado
    base = cu.evaluate(draws.mean(), settings).total("net")[0]
    assert t["base"].iloc[0] == pytest.approx(base)
    assert t["parameter"].iloc[0] == "kinship_pp"  # the kinship effect dominates
    assert (t["swing"].diff().dropna() <= 1e-6).all()
    e = result.evppi
    assert list(e["rank"]) == list(range(1, len(e) + 1))
    assert (e["evppi"] <= result.headline["evpi"] + 1e-6).all()
    singles = e[e["kind"] == "single"]
    assert singles["parameter"].iloc[0] == "kinship_pp"
    assert e["parameter"].iloc[0] in ("kinship_pp", "effects", "effects_and_onset")
    assert len(singles) >= 10 and {"effects", "volumes"} <= set(e["parameter"])
    assert (e["se"] >= 0).all() and (e["noise_floor"] >= 0).all()


# ----------------------------------------------------------------------------------------------
# The unit-cost table
# ----------------------------------------------------------------------------------------------


def _edited_table(tmp_path: Path, item: str, column: str, value: str) -> Path:
    frame = pd.read_csv(DEFAULT_UNIT_COSTS, dtype=str, keep_default_na=False)
    frame.loc[frame["item"] == item, column] = value
    path = tmp_path / "unit_costs.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("item", "column", "value", "message"), [
    ("kinship_week", "price_year", "", "missing price year"),
    ("referral", "value", "-300", "negative cost"),
    ("assessment", "category", "transport", "unknown category"),
    ("residential_week", "distribution", "gaussian", "unknown distribution"),
    ("in_house_foster_week", "price_year", "1999", "outside the deflator"),
    ("agency_foster_week", "low", "900", "must contain value"),
    ("referral", "source", "", "missing source"),
])  # fmt: skip
def test_bad_unit_cost_table_names_file_row_column_and_exits_2(tmp_path, capsys, item, column, value, message):
    path = _edited_table(tmp_path, item, column, value)
    row = int(pd.read_csv(DEFAULT_UNIT_COSTS).index[pd.read_csv(DEFAULT_UNIT_COSTS)["item"] == item][0]) + 1
    with pytest.raises(DataError) as err:
        load_unit_costs(path)
    assert err.value.row == row and err.value.column == column and err.value.file == str(path)
    assert message in str(err.value)
    out = tmp_path / "out"
    assert cli.main(["--data", str(path), "--out", str(out), "--draws", "200", "--quiet", "--no-evsi"]) == 2
    assert not out.exists()
    assert list(tmp_path.glob(".out.*")) == []
    stderr = capsys.readouterr().err
    assert str(path) in stderr and f"row {row}" in stderr and f"column '{column}'" in stderr


def test_table_missing_an_item_or_column(tmp_path):
    frame = pd.read_csv(DEFAULT_UNIT_COSTS, dtype=str, keep_default_na=False)
    frame[frame["item"] != "referral"].to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(DataError, match="lacks required item"):
        load_unit_costs(tmp_path / "a.csv")
    frame.drop(columns="price_year").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError) as err:
        load_unit_costs(tmp_path / "b.csv")
    assert err.value.column == "price_year" and err.value.row == 0


def test_yaml_table_gives_the_same_costs(tmp_path):
    import yaml

    frame = pd.read_csv(DEFAULT_UNIT_COSTS, dtype=str, keep_default_na=False)
    (tmp_path / "u.yaml").write_text(yaml.safe_dump({"unit_costs": frame.to_dict(orient="records")}))
    assert load_unit_costs(tmp_path / "u.yaml") == load_unit_costs()


# ----------------------------------------------------------------------------------------------
# Posterior files and the command line
# ----------------------------------------------------------------------------------------------


def write_posterior(path: Path, draws: np.ndarray, *, sample_stats: bool = True, var: str = "att") -> Path:
    chains, n = draws.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(n)}
    groups = {"posterior": xr.Dataset({var: (("chain", "draw"), draws)}, coords=coords)}
    if sample_stats:
        rng = np.random.default_rng(0)
        groups["sample_stats"] = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((chains, n), bool)),
                                             "energy": (("chain", "draw"), rng.normal(size=(chains, n)))},
                                            coords=coords)
    xr.DataTree.from_dict(groups).to_netcdf(path, engine="h5netcdf")
    return path


def test_reads_att_chain_major(tmp_path):
    arr = np.arange(12.0).reshape(3, 4) - 20
    draws, tree = load_effect_draws(write_posterior(tmp_path / "p.nc", arr, sample_stats=False))
    np.testing.assert_array_equal(draws, arr.ravel())
    with pytest.raises(DataError) as err:
        load_effect_draws(write_posterior(tmp_path / "q.nc", arr, var="att_pp"))
    assert err.value.column == "att"


def test_cli_end_to_end_with_posterior_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    kin = write_posterior(tmp_path / "posterior_neutral.nc", rng.normal(-10, 5, size=(2, 1000)))
    rer = write_posterior(tmp_path / "rereferral.nc", rng.normal(-8, 3, size=(2, 500)), sample_stats=False)
    out = tmp_path / "costs"
    code = cli.main(["--kinship-posterior", str(kin), "--rereferral-posterior", str(rer), "--draws", "3000",
                     "--out", str(out), "--seed", "3", "--save-draws", "--onset-lag", "0,0,0",
                     "--evppi-se-draws", "50", "--trial-sizes", "4,20"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    for name in ("summary.json", "net_cost_by_la.csv", "net_cost_by_la.md", "tornado.csv", "evppi.csv",
                 "inputs.csv", "cost_distribution.png", "tornado.png", "evppi.png", "cost_effect_plane.png",
                 "ceac.csv", "ceac.md", "ceac.png", "evsi.csv", "evsi.md", "evsi.png", "LABEL.txt", "draws.nc"):
        assert name in names, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["effect_sources"]["kinship"]["kind"] == "posterior"
    assert summary["effect_sources"]["kinship"]["n_effect_draws"] == 2000
    assert summary["posterior_diagnostics"]["kinship"]["ok"]
    assert "sample_stats" in summary["posterior_diagnostics"]["rereferral"]["details"]["note"]
    assert summary["provenance"]["seed"] == 3 and summary["provenance"]["data_hash"].startswith("sha256:")
    head = summary["headline"]["rate_0.035"]
    assert 0 <= head["p_saves_money"] <= 1 and "rate_0.015" in summary["headline"]
    assert "SofS saves money" in summary["statements"]["saves_money_0.035"]
    ds = xr.open_dataset(out / "draws.nc")
    posterior = xr.open_datatree(kin)["posterior"]["att"].values.ravel()
    np.testing.assert_allclose(ds["kinship_pp"].values, posterior[np.arange(3000) % 2000])
    ds.close()
    stdout = capsys.readouterr().out
    assert "posterior draws of att" in stdout and "P = " in stdout


def test_cli_default_uses_published_estimates_and_strict_flags_bad_posterior(tmp_path, capsys):
    out = tmp_path / "a"
    assert cli.main(["--draws", "1000", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["effect_sources"]["kinship"]["kind"] == "published-normal-approximation"
    # two chains that disagree: R-hat far above 1.01 -> exit 1 under --strict
    rng = np.random.default_rng(2)
    bad = write_posterior(tmp_path / "bad.nc", np.stack([rng.normal(-20, 1, 500), rng.normal(0, 1, 500)]))
    assert cli.main(["--kinship-posterior", str(bad), "--draws", "1000", "--out", str(tmp_path / "b"),
                     "--quiet", "--strict"]) == 1
    assert "DIAGNOSTICS FAILED" in capsys.readouterr().err
    # a missing file or variable is bad input: exit 2, nothing written
    assert cli.main(["--kinship-posterior", str(tmp_path / "none.nc"), "--out", str(tmp_path / "c"), "--quiet"]) == 2
    assert not (tmp_path / "c").exists()


def test_a_synthetic_posterior_labels_every_cost_output(tmp_path, capsys):
    """The synthetic flag the DiD commands write into their posterior files travels into the
    cost analysis: summary, statements, draws and the printed headline say so."""
    rng = np.random.default_rng(3)
    kin = write_posterior(tmp_path / "k.nc", rng.normal(-10, 3, size=(2, 500)))
    tree = xr.open_datatree(kin)
    tree.attrs["synthetic"] = 1
    tree.to_netcdf(tmp_path / "k_syn.nc", engine="h5netcdf")
    out = tmp_path / "c"
    assert cli.main(["--kinship-posterior", str(tmp_path / "k_syn.nc"), "--draws", "1000", "--out", str(out),
                     "--save-draws"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["effect_data"]["kinship"] == "synthetic"
    assert all(v.startswith("[SYNTHETIC DATA]") for v in summary["statements"].values())
    assert xr.open_dataset(out / "draws.nc").attrs["synthetic"] == 1
    assert "SYNTHETIC DATA" in capsys.readouterr().out
    # a file that does not say is not called real
    out2 = tmp_path / "d"
    assert cli.main(["--kinship-posterior", str(kin), "--draws", "1000", "--out", str(out2), "--quiet"]) == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert s2["synthetic"] is False and s2["effect_data"]["kinship"] == "not stated by the posterior file"


# ----------------------------------------------------------------------------------------------
# Issue 19: onset lag, thinning, EVPPI with SE, CEAC, EVSI, synthetic labels, fuzzed tables
# ----------------------------------------------------------------------------------------------

from scipy.stats import norm  # noqa: E402



def _emax(m: float, s: float) -> float:
    """E[max(X, 0)] for X ~ N(m, s^2)."""
    return m * norm.cdf(m / s) + s * norm.pdf(m / s)


@pytest.mark.parametrize("seed", [0, 1])
def test_evppi_linear_gaussian_closed_form_within_two_se(seed):
    # INB = mu + a + b + 0.5 c, a, b, c ~ N(0, 1): E[INB | a] = mu + a, E[INB | a, b] = mu + a + b, so
    # EVPPI(a) = E max(mu + a, 0) - mu and EVPPI(a, b) = E max(mu + a + b, 0) - mu (closed forms)
    rng = np.random.default_rng(seed)
    a, b, c, junk = rng.normal(size=(4, 20_000))
    mu = 0.3
    inb = mu + a + b + 0.5 * c
    one = cu.evppi_estimate(inb, a, seed=seed)
    two = cu.evppi_estimate(inb, np.column_stack([a, b]), seed=seed)
    three = cu.evppi_estimate(inb, np.column_stack([a, b, junk]), seed=seed)
    for est, true in ((one, _emax(mu, 1) - mu), (two, _emax(mu, np.sqrt(2)) - mu), (three, _emax(mu, np.sqrt(2)) - mu)):
        assert est.se > 0
        assert abs(est.value - true) < 2 * est.se, (est.value, true, est.se)
        assert abs(est.value - cu.evpi(inb)) > 2 * est.se       # the check can fail: EVPI is far off
        assert est.above_noise_floor
    irrelevant = cu.evppi_estimate(inb, junk, seed=seed)
    assert irrelevant.value < 2 * irrelevant.se + irrelevant.noise_floor + 1e-3
    assert not irrelevant.above_noise_floor


def test_evsi_of_an_infinite_trial_is_the_evppi_of_the_effects_and_grows_with_k():
    n = 6_000
    settings = cu.CostSettings()
    effects = {o: cu.published_effect_draws(o, n, 4) for o in ("kinship", "rereferral")}
    draws = cu.sample_parameters(load_unit_costs(), effects=effects, n_draws=n, seed=4, settings=settings)
    table = cu.evsi_trial(draws, settings, effects, sizes=(2, 20, 10**9), se_draws=100)
    by_k = table.set_index("k")
    limit = by_k.loc[np.inf]
    huge = by_k.loc[10**9]
    assert limit["evsi"] > 0 and limit["se"] > 0
    assert abs(huge["evsi"] - limit["evsi"]) < 2 * np.hypot(huge["se"], limit["se"]) + 1e-6 * limit["evsi"]
    assert by_k.loc[2, "evsi"] <= by_k.loc[20, "evsi"] + 2 * by_k.loc[20, "se"]
    assert by_k.loc[20, "evsi"] <= limit["evsi"] + 2 * limit["se"]
    assert (table["enbs"].dropna() == table["evsi"].iloc[:-1] - table["trial_cost"].iloc[:-1]).all()
    assert table.attrs["population_evppi_effects"] == pytest.approx(limit["evsi"])
    # cheap trials: the best size maximises ENBS on the grid
    cheap = cu.evsi_trial(draws, settings, effects, sizes=(2, 20, 200), se_draws=20,
                          trial=cu.TrialDesign(fixed_cost=0, cost_per_la=1.0))
    finite = cheap[np.isfinite(cheap["k"])]
    assert cheap.attrs["best_k"] == int(finite.loc[finite["enbs"].idxmax(), "k"])


def test_onset_lag_delays_the_effects_costs_and_savings_only():
    # effect-years after a lag: 5 undiscounted years, lag 2 -> 3, lag 1.5 -> 3.5, lag 0 -> 5
    np.testing.assert_allclose(cu.effect_weights(5, 0.0, np.array([0.0, 1.5, 2.0, 7.0])), [5, 3.5, 3, 0])
    assert cu.effect_weights(3, 0.035, np.array([0.0]))[0] == pytest.approx(cu.discount_weights(3, 0.035)[2])
    base = cu.evaluate(hand_case(), cu.CostSettings(horizon_years=4), discount_rate=0.0)
    lagged = cu.evaluate(hand_case(onset_lag=1.0), cu.CostSettings(horizon_years=4), discount_rate=0.0)
    assert lagged["implementation"][0, 0] == pytest.approx(base["implementation"][0, 0])
    assert lagged["kinship_cost"][0, 0] == pytest.approx(0.75 * base["kinship_cost"][0, 0])
    assert lagged["rereferral_cost"][0, 0] == pytest.approx(0.75 * base["rereferral_cost"][0, 0])
    # on the Monte Carlo draws: a longer lag shrinks both consequences, and it enters one-way and EVPPI
    d0, s0 = small_run(onset_lag=(0.0, 0.0, 0.0))
    d3, s3 = small_run(onset_lag=(3.0, 3.0, 3.0))
    o0, o3 = cu.evaluate(d0, s0), cu.evaluate(d3, s3)
    assert 0 < o3.total("kinship_cost").mean() < o0.total("kinship_cost").mean()
    assert o0.total("rereferral_cost").mean() < o3.total("rereferral_cost").mean() < 0
    np.testing.assert_allclose(o3.total("implementation"), o0.total("implementation"))
    dl, sl = small_run(n=3_000)
    assert np.all((dl.values["onset_lag"] >= 0) & (dl.values["onset_lag"] <= 5))
    res = cu.analyse(dl, sl, se_draws=20)
    assert "onset_lag" in set(res.tornado["parameter"]) and "onset_lag" in set(res.evppi["parameter"])
    with pytest.raises(ValueError, match="onset_lag"):
        cu.CostSettings(onset_lag=(2.0, 1.0, 3.0))


def test_fewer_monte_carlo_than_posterior_draws_thins_across_all_chains(tmp_path):
    chains = np.repeat(np.arange(4.0)[:, None], 500, axis=1) - 20   # chain c holds the value c - 20
    values, tree = load_effect_draws(write_posterior(tmp_path / "p.nc", chains, sample_stats=False))
    eff = cu.posterior_effect_draws("kinship", values, "test", population={"mu_pp": values + 1, "sigma_pp": values * 0})
    drawn = eff.aligned(100)
    assert sorted(np.unique(drawn)) == [-20, -19, -18, -17]
    assert all(np.sum(drawn == v) == 25 for v in (-20, -19, -18, -17))   # evenly over the chains
    np.testing.assert_array_equal(eff.aligned_population(100)["mu_pp"], drawn + 1)  # the same posterior draws
    np.testing.assert_array_equal(eff.aligned(2_500), values[np.arange(2_500) % 2_000])   # more: cycled


def write_did_posterior(path: Path, *, synthetic: int | None, seed: int = 0) -> Path:
    """A posterior like the DiD commands write: att, att_average, counterfactual (pp), mu_tau,
    sigma_tau (logit), and the ``synthetic`` stamp in the attributes."""
    rng = np.random.default_rng(seed)
    shape = (2, 400)
    coords = {"chain": np.arange(2), "draw": np.arange(400)}
    mu = rng.normal(-0.5, 0.2, shape)
    cf = np.full(shape, 60.0)
    q = 0.6
    avg = 100 * (1 / (1 + np.exp(-(np.log(q / (1 - q)) + mu))) - q)
    post = xr.Dataset({"att": (("chain", "draw"), avg + rng.normal(0, 1, shape)),
                       "att_average": (("chain", "draw"), avg), "counterfactual": (("chain", "draw"), cf),
                       "mu_tau": (("chain", "draw"), mu), "sigma_tau": (("chain", "draw"), np.abs(rng.normal(0.3, 0.05, shape)))},
                      coords=coords)
    tree = xr.DataTree.from_dict({"posterior": post})
    if synthetic is not None:
        tree.attrs.update({"synthetic": synthetic, "data_hash": "sha256:x", "analysis": "kinship"})
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def test_synthetic_flag_of_the_posterior_labels_every_output_and_evsi_uses_mu_sigma(tmp_path):
    from data.cost_inputs import load_population_draws

    syn = write_did_posterior(tmp_path / "syn.nc", synthetic=1)
    _, tree = load_effect_draws(syn)
    pop = load_population_draws(tree)
    assert pop is not None and np.all(pop["sigma_pp"] > 0)
    np.testing.assert_allclose(pop["mu_pp"], tree["posterior"]["att_average"].values.ravel())
    # sigma_tau on the logit scale times the logistic slope 100 q (1 - q) near q = 0.6 (about 24 pp per logit)
    assert 20 < np.median(pop["sigma_pp"] / tree["posterior"]["sigma_tau"].values.ravel()) < 25
    out = tmp_path / "o"
    args = ["--draws", "1000", "--evppi-se-draws", "20", "--trial-sizes", "4,10", "--quiet"]
    assert cli.main(["--kinship-posterior", str(syn), "--out", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["data_label"].startswith("SYNTHETIC")
    assert "posterior" in summary["headline"]["evsi"]["effect_sources"]["kinship"]
    for stem in ("net_cost_by_la", "tornado", "evppi", "ceac", "evsi", "inputs"):
        assert set(pd.read_csv(out / f"{stem}.csv")["effect_data"]) == {summary["data_label"]}, stem
        assert (out / f"{stem}.md").read_text().startswith("**SYNTHETIC DATA"), stem
    assert "SYNTHETIC" in (out / "LABEL.txt").read_text()
    # a file stamped real says so; a file without the stamp is 'not stated', never called real
    real = write_did_posterior(tmp_path / "real.nc", synthetic=0)
    none = write_did_posterior(tmp_path / "none.nc", synthetic=None)
    for path, label in ((real, "real data"), (none, "not stated")):
        o = tmp_path / path.stem
        assert cli.main(["--kinship-posterior", str(path), "--out", str(o), *args]) == 0
        s = json.loads((o / "summary.json").read_text())
        assert s["synthetic"] is False and s["data_label"].startswith(label)
        assert (o / "evppi.md").read_text().startswith(f"Effects: {label}")


def test_ceac_over_willingness_to_pay():
    draws, settings = small_run(n=3_000)
    o = cu.evaluate(draws, settings)
    t = cu.ceac_table(o, wtp_kinship=(0.0, 1e5), wtp_rereferral=(0.0, 1e4))
    assert len(t) == 4
    at0 = t[(t["wtp_kinship"] == 0) & (t["wtp_rereferral"] == 0)]["p_cost_effective"].iloc[0]
    assert at0 == pytest.approx(np.mean(o.total("net") < 0))
    # paying for re-referrals avoided (mostly positive) raises it; paying per child kept in kinship
    # care (mostly negative: SofS keeps fewer) lowers it
    p = t.set_index(["wtp_kinship", "wtp_rereferral"])["p_cost_effective"]
    assert p[(0.0, 1e4)] > at0 and p[(1e5, 0.0)] <= at0
    nmb = 1e4 * o.total("rereferrals_avoided") - o.total("net")
    assert p[(0.0, 1e4)] == pytest.approx(np.mean(nmb > 0))


# ----------------------------------------------------------------------------------------------
# Fuzzed unit-cost tables: always a DataError naming file, row and column (exit 2), never a traceback
# ----------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

_CLEAN = DEFAULT_UNIT_COSTS.read_text()
_BAD_CELLS = ["", " ", "abc", "-5", "nan", "inf", "-inf", "1e400", "2019.5", "£", "1,2,3", "0", "1e-300",
              "\"", "99999999999999999999", "2019-20", "fixed", "pert", "grant", "staff_salary", "\x00", "é"]


@st.composite
def mutated_tables(draw):
    import csv
    import io

    rows = list(csv.reader(io.StringIO(_CLEAN)))
    kind = draw(st.sampled_from(["truncate", "delete_column", "rename_column", "cell", "duplicate_row",
                                 "empty", "header_only", "extra_field", "drop_row", "cells"]))
    if kind == "truncate":
        return kind, _CLEAN[: draw(st.integers(0, len(_CLEAN) - 1))]
    if kind == "empty":
        return kind, draw(st.sampled_from(["", "\n", "  \n\n"]))
    if kind == "header_only":
        return kind, ",".join(rows[0]) + "\n"
    if kind in ("delete_column", "rename_column"):
        j = draw(st.integers(0, len(rows[0]) - 1))
        if kind == "delete_column":
            rows = [r[:j] + r[j + 1:] for r in rows]
        else:
            rows[0][j] = draw(st.sampled_from(["Value", "cost", "", "item ", "price year", rows[0][(j + 1) % 9]]))
    elif kind in ("cell", "cells"):
        for _ in range(1 if kind == "cell" else draw(st.integers(2, 5))):
            i, j = draw(st.integers(1, len(rows) - 1)), draw(st.integers(0, len(rows[0]) - 1))
            rows[i][j] = draw(st.one_of(st.sampled_from(_BAD_CELLS), st.text(max_size=6)))
    elif kind == "duplicate_row":
        i = draw(st.integers(1, len(rows) - 1))
        rows.insert(draw(st.integers(1, len(rows))), list(rows[i]))
    elif kind == "drop_row":
        del rows[draw(st.integers(1, len(rows) - 1))]
    elif kind == "extra_field":
        rows[draw(st.integers(1, len(rows) - 1))].append("surplus")
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return kind, buf.getvalue()


@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_tables())
def test_fuzzed_unit_cost_tables_fail_cleanly(case):
    import contextlib
    import io
    import tempfile

    kind, text = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unit_costs.csv"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            costs = load_unit_costs(path)
        except DataError as err:
            assert err.file == str(path), (kind, err)
            assert err.row is not None and err.column is not None, (kind, str(err))
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                code = cli.main(["--data", str(path), "--out", str(Path(tmp) / "out"), "--quiet", "--no-evsi"])
            assert code == 2, (kind, stderr.getvalue())
            assert "Traceback" not in stderr.getvalue() and str(path) in stderr.getvalue()
            assert not (Path(tmp) / "out").exists()
        else:   # a harmless edit (e.g. a changed source text): the table is complete and valid
            assert set(costs) == set(load_unit_costs())
