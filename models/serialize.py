"""Plain JSON values from the objects results hold (NumPy scalars and arrays, paths, tuples)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """``obj`` with dict keys as strings, tuples as lists, NumPy values as Python ones, paths
    as strings and non-finite floats as None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- posterior files --------------------------------------------------------------------------

#: draws of the posterior and prior predictive kept in a saved file (thinned across chains)
PREDICTIVE_DRAWS = 200
#: groups of draws made while tuning: dropped unless all draws are kept
WARMUP_GROUPS = ("warmup_posterior", "warmup_sample_stats")
PREDICTIVE_GROUPS = ("posterior_predictive", "prior_predictive")
#: the groups a reviewer needs and that are always kept (when the fit has them)
ALWAYS_KEPT = ("posterior", "sample_stats", "prior", "log_likelihood", "log_prior", "observed_data",
               "constant_data")


def thin_index(n_chain: int, n_draw: int, keep: int) -> np.ndarray:
    """Draw indices, evenly spaced within every chain, so that about ``keep`` draws remain in
    all (every chain keeps the same draws; at least one each)."""
    per_chain = max(1, min(n_draw, -(-keep // max(n_chain, 1))))
    return np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))


def smallest_int(values: np.ndarray) -> np.ndarray:
    """``values`` (integers) in the narrowest signed integer type that holds them."""
    if values.size == 0:
        return values.astype(np.int8)
    lo, hi = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return values.astype(dtype)
    return values


def sorted_quantiles(ordered: np.ndarray, probs) -> list[np.ndarray]:
    """Quantiles along the first axis of an array already sorted along it, by NumPy's default
    (linear) definition, as ``np.quantile(x, probs, axis=0)`` gives them: sorting once in the
    array's own type (integer counts sort fast) serves every quantile."""
    n = ordered.shape[0]
    out = []
    for p in probs:
        h = (n - 1) * p
        lo = int(np.floor(h))
        hi = min(lo + 1, n - 1)
        a, b = ordered[lo].astype(float), ordered[hi].astype(float)
        out.append(a + (h - lo) * (b - a))
    return out


def predictive_summary(ds) -> Any:
    """Per-cell mean, SD and 2.5/50/97.5% quantiles of every predictive variable over all its
    draws (what predictive-check tables and figures read), without the draws."""
    import xarray as xr

    out = {}
    for name, da in ds.data_vars.items():
        if not {"chain", "draw"} <= set(da.dims):
            continue
        da = da.transpose("chain", "draw", ...)
        cell_dims = da.dims[2:]
        flat = np.asarray(da.values).reshape(-1, *da.shape[2:])
        coords = {k: v for k, v in da.coords.items() if set(v.dims) <= set(cell_dims)}
        cell = lambda x: xr.DataArray(x, dims=cell_dims, coords=coords)  # noqa: E731
        out[f"{name}_mean"] = cell(flat.mean(0, dtype=float))
        out[f"{name}_sd"] = cell(flat.std(0, dtype=float))
        for label, q in zip(("q2.5", "q50", "q97.5"), sorted_quantiles(np.sort(flat, axis=0), (0.025, 0.5, 0.975))):
            out[f"{name}_{label}"] = cell(q)
    return xr.Dataset(out, attrs={"draws_summarised": int(ds.sizes.get("chain", 1) * ds.sizes.get("draw", 1))})


def compact_idata(idata, *, keep_draws: bool = False, predictive_draws: int = PREDICTIVE_DRAWS):
    """The fit as it is saved: what reviewers use, at a size people keep.

    Always kept: the posterior, sample statistics, prior draws, log-likelihood (as the fit
    holds it: by unit for the DiD models, what leave-one-unit-out and power scaling need), log
    prior, observed and constant data, and the attributes (provenance, synthetic flag). Unless
    ``keep_draws``: the posterior and prior predictive keep ``predictive_draws`` draws, evenly
    thinned within every chain, beside ``<group>_summary`` groups with per-cell summaries over
    all draws; the warm-up draws are dropped. Integer variables are stored in the narrowest
    integer type that holds them. Nothing is recomputed: the kept draws are a subset.
    """
    import xarray as xr

    groups = {}
    for name, node in idata.children.items():
        ds = node.to_dataset()
        if name in WARMUP_GROUPS and not keep_draws:
            continue
        if name in PREDICTIVE_GROUPS and not keep_draws and {"chain", "draw"} <= set(ds.dims):
            idx = thin_index(ds.sizes["chain"], ds.sizes["draw"], predictive_draws)
            if len(idx) < ds.sizes["draw"]:
                groups[f"/{name}_summary"] = predictive_summary(ds)
                ds = ds.isel(draw=idx)
                ds.attrs = {**ds.attrs, "thinned_from_draws": int(node.to_dataset().sizes["draw"]),
                            "note": f"thinned to {len(idx)} draws per chain; --keep-draws keeps them all"}
        ds = ds.map(lambda v: v.copy(data=smallest_int(v.values)) if v.dtype.kind in "iu" else v)
        groups[f"/{name}"] = ds
    out = xr.DataTree.from_dict(groups, name=idata.name)
    out.attrs = dict(idata.attrs)
    return out


def write_idata(idata, path: Path | str, **compact) -> Path:
    """:func:`compact_idata`, then netCDF-4 with zlib compression and byte shuffling on every
    variable (ArviZ and xarray read it as any other file)."""
    tree = compact_idata(idata, **compact)
    encoding = {node.path: {v: {"zlib": True, "complevel": 4, "shuffle": True}
                            for v, da in node.to_dataset().data_vars.items() if da.dtype.kind in "biuf"}
                for node in tree.subtree if node.has_data}
    tree.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return Path(path)
