"""Saved fits: compact by default (thinned predictive draws beside full summaries, compressed,
narrow integers), everything with ``keep_draws``; nothing recomputed."""
import arviz as az
import numpy as np
import xarray as xr

from models.serialize import PREDICTIVE_DRAWS, compact_idata, thin_index, write_idata


def _fit(chains=4, draws=1000, cells=300, seed=0):
    rng = np.random.default_rng(seed)
    post = xr.Dataset({"att": (("chain", "draw"), rng.normal(size=(chains, draws)))},
                      coords={"chain": range(chains), "draw": range(draws)})
    ppc = xr.Dataset({"y_obs": (("chain", "draw", "cell"), rng.binomial(40, 0.3, size=(chains, draws, cells)))},
                     coords={"chain": range(chains), "draw": range(draws)})
    warm = post.copy()
    tree = xr.DataTree.from_dict({"/posterior": post, "/posterior_predictive": ppc, "/warmup_posterior": warm,
                                  "/log_likelihood": xr.Dataset({"y_obs": (("chain", "draw", "unit"),
                                                                           rng.normal(size=(chains, draws, 18)))}),
                                  "/observed_data": xr.Dataset({"y_obs": ("cell", rng.integers(0, 40, cells))})})
    tree.attrs = {"synthetic": 1, "data_hash": "sha256:x"}
    return tree


def test_thin_index_is_even_within_chains():
    idx = thin_index(4, 1000, 200)
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == 999
    assert np.ptp(np.diff(idx)) <= 1
    assert len(thin_index(4, 10, 200)) == 10 and len(thin_index(8, 1000, 4)) == 1


def test_compact_keeps_posterior_thins_predictive_and_summarises_all_draws():
    fit = _fit()
    small = compact_idata(fit)
    assert "warmup_posterior" not in small.children
    np.testing.assert_array_equal(small["posterior"]["att"].values, fit["posterior"]["att"].values)
    np.testing.assert_array_equal(small["log_likelihood"]["y_obs"].values, fit["log_likelihood"]["y_obs"].values)
    kept = small["posterior_predictive"]["y_obs"]
    assert kept.sizes["chain"] * kept.sizes["draw"] == PREDICTIVE_DRAWS and kept.dtype == np.int8
    full = fit["posterior_predictive"]["y_obs"].values.reshape(-1, 300)
    summary = small["posterior_predictive_summary"]
    np.testing.assert_allclose(summary["y_obs_mean"].values, full.mean(0))
    np.testing.assert_allclose(summary["y_obs_sd"].values, full.std(0))
    for label, q in (("q2.5", 0.025), ("q50", 0.5), ("q97.5", 0.975)):      # numpy's (linear) definition
        np.testing.assert_allclose(summary[f"y_obs_{label}"].values, np.quantile(full, q, axis=0))
    odd = _fit(chains=3, draws=7, cells=5, seed=2)      # interpolation between draws (21 draws)
    sm = compact_idata(odd, predictive_draws=3)["posterior_predictive_summary"]
    np.testing.assert_allclose(sm["y_obs_q2.5"].values, np.quantile(
        odd["posterior_predictive"]["y_obs"].values.reshape(-1, 5).astype(float), 0.025, axis=0))
    # the kept draws are a subset of the originals, not a re-simulation
    np.testing.assert_array_equal(kept.isel(chain=1).values, fit["posterior_predictive"]["y_obs"]
                                  .isel(chain=1, draw=kept["draw"].values).values)
    assert small.attrs["synthetic"] == 1


def test_keep_draws_keeps_everything(tmp_path):
    fit = _fit(draws=300)
    write_idata(fit, tmp_path / "all.nc", keep_draws=True)
    back = az.from_netcdf(tmp_path / "all.nc")
    assert "warmup_posterior" in back.children and "posterior_predictive_summary" not in back.children
    np.testing.assert_array_equal(back["posterior_predictive"]["y_obs"].values,
                                  fit["posterior_predictive"]["y_obs"].values)


def test_written_file_is_small_and_reopens(tmp_path):
    fit = _fit()
    raw = tmp_path / "raw.nc"
    fit.to_netcdf(raw)
    path = write_idata(fit, tmp_path / "small.nc")
    assert path.stat().st_size < raw.stat().st_size / 8
    back = az.from_netcdf(path)
    assert back.attrs["data_hash"] == "sha256:x" and back["posterior"]["att"].shape == (4, 1000)
