"""One way to run NUTS in this project: nutpie on a model compiled once.

Compilation dominates small models (see ``shared/notes/bayes-stack.md``), so a model is
compiled once and re-used whenever only its ``pm.Data`` containers change (new data, or new
prior hyper-parameters stored as data): :class:`CompiledSampler`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import nutpie
import pymc as pm
import xarray as xr
from pytensor.graph.traversal import graph_inputs


def default_cores(chains: int) -> int:
    """Use every core we have, up to one per chain (PyMC's default would use half)."""
    return max(1, min(chains, os.cpu_count() or 1))


class CompiledSampler:
    """A PyMC model compiled once by nutpie, sampled many times with new data.

    Parameters
    ----------
    model
        The PyMC model; every quantity that may change between fits must be a ``pm.Data``.
    """

    def __init__(self, model: pm.Model) -> None:
        self.model = model
        self.compiled = nutpie.compile_pymc_model(model)

    def sample(
        self,
        data: dict[str, Any] | None = None,
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        seed: int = 0,
        cores: int | None = None,
        progress: bool = False,
        target_accept: float = 0.9,
    ) -> xr.DataTree:
        """Draw from the posterior, with ``data`` replacing the model's ``pm.Data`` values."""
        compiled = self.compiled.with_data(**data) if data else self.compiled
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores or default_cores(chains),
            seed=int(seed),
            progress_bar=progress,
            target_accept=target_accept,
        )
        if "observed_data" not in idata.children:
            idata["observed_data"] = self._observed(data or {})
        return idata

    def _observed(self, data: dict[str, Any]) -> xr.Dataset:
        """The observed values the fit conditioned on (nutpie does not store them)."""
        out = {}
        for rv in self.model.observed_RVs:
            value = self.model.rvs_to_values[rv]
            feeds = [v for v in graph_inputs([value]) if hasattr(v, "get_value")]  # its pm.Data
            if len(feeds) == 1 and feeds[0].name in data:
                obs = np.asarray(data[feeds[0].name])
            else:
                obs = np.asarray(value.eval())
            dims = self.model.named_vars_to_dims.get(rv.name) or tuple(f"{rv.name}_dim_{i}" for i in range(obs.ndim))
            out[rv.name] = (dims, obs)
        return xr.Dataset(out)


def sample_model(model: pm.Model, **kwargs: Any) -> xr.DataTree:
    """Compile and sample ``model`` once (see :meth:`CompiledSampler.sample` for arguments)."""
    return CompiledSampler(model).sample(**kwargs)


def seed_sequence(seed: int, n: int) -> list[int]:
    """``n`` independent integer seeds derived from ``seed`` (for chains of sub-tasks)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
