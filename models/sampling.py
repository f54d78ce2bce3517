"""One way to run NUTS in this project: nutpie on a model compiled once.

Compilation dominates small models (see ``shared/notes/bayes-stack.md``), so a model is
compiled once and re-used whenever only its ``pm.Data`` containers change (new data, or new
prior hyper-parameters stored as data): :class:`CompiledSampler`.

Data that will not change should be frozen into the compiled graph (``mutable=``): constants
let PyTensor fold everything that depends only on data. For the binomial DiD on 4,005 cells,
freezing the cells and keeping only the prior hyper-parameters mutable cut sampling time by
40% (the log binomial coefficients of the counts, among others, are then computed once, not
at every gradient); see ``benchmarks/kinship.py``.

Draws from a model's priors (prior checks, prior predictive) go through :func:`prior_draws`:
one vectorised call for thousands of draws, where ``pm.sample_prior_predictive`` makes one
call per draw.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import nutpie
import pymc as pm
import xarray as xr
from pymc.model.transform.optimization import freeze_dims_and_data
from pytensor.graph.traversal import graph_inputs
from pytensor.scalar import Cast
from pytensor.tensor.elemwise import Elemwise

from models.diagnostics import Diagnostics

#: nutpie's mass-matrix adaptations we use: ``"diag"`` (its default: a diagonal estimated from
#: draw and gradient variances) and ``"low_rank"`` (that diagonal modified by the few directions
#: in which draws and gradients are most correlated). On the kinship DiD the low-rank matrix
#: took 15 leapfrog steps a draw against 18 and gave 3.5 to 5 times the ATT's bulk ESS, 4%
#: faster in all (``benchmarks/README.md``); on re-referral and duration it changed neither
#: much. On mpdta (500 unit intercepts, normal likelihood) it was over 30 times slower than
#: the diagonal, so the generic DiD, the LA panel and Table 7 keep ``"diag"``.
MASS_MATRICES = ("diag", "low_rank")


def default_cores(chains: int) -> int:
    """Use every core we have, up to one per chain (PyMC's default would use half)."""
    return max(1, min(chains, os.cpu_count() or 1))


class CompiledSampler:
    """A PyMC model compiled once by nutpie, sampled many times with new data.

    Parameters
    ----------
    model
        The PyMC model; every quantity that may change between fits must be a ``pm.Data``.
    mutable
        Names of the ``pm.Data`` that may change between fits (e.g. prior hyper-parameters).
        Every other ``pm.Data`` (and every dimension) is frozen as a constant in the compiled
        graph, which samples faster. ``None`` (default) keeps all data mutable. A fit that
        passes new values for frozen data is still correct: the first such fit compiles the
        fully mutable model once, and later ones re-use it.
    **compile_kwargs
        Passed to ``nutpie.compile_pymc_model`` (e.g. ``backend="jax"``); default numba.
    """

    def __init__(self, model: pm.Model, *, mutable: Iterable[str] | None = None, **compile_kwargs: Any) -> None:
        self.model = model
        self.mutable = None if mutable is None else frozenset(mutable)
        self._compile_kwargs = compile_kwargs
        self._all_mutable = None
        if self.mutable is None:
            self.compiled = self._all_mutable = nutpie.compile_pymc_model(model, **compile_kwargs)
        else:
            frozen = [d.name for d in model.data_vars if d.name not in self.mutable]
            self.compiled = nutpie.compile_pymc_model(freeze_dims_and_data(model, data=frozen), **compile_kwargs)

    def _compiled_for(self, data: dict[str, Any]):
        if self.mutable is None or set(data) <= self.mutable:
            return self.compiled
        if self._all_mutable is None:   # new values for frozen data: compile the mutable model once
            self._all_mutable = nutpie.compile_pymc_model(self.model, **self._compile_kwargs)
        return self._all_mutable

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
        mass_matrix: str = "diag",
    ) -> xr.DataTree:
        """Draw from the posterior, with ``data`` replacing the model's ``pm.Data`` values.

        ``mass_matrix``: one of :data:`MASS_MATRICES` (nutpie's ``adaptation``).
        """
        if mass_matrix not in MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {MASS_MATRICES}, not {mass_matrix!r}")
        compiled = self._compiled_for(data).with_data(**data) if data else self.compiled
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores or default_cores(chains),
            seed=int(seed),
            progress_bar=progress,
            target_accept=target_accept,
            adaptation=mass_matrix,
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
            elif len(feeds) == 1 and _is_cast_of(value, feeds[0]):   # no function to compile
                obs = np.asarray(feeds[0].get_value()).astype(value.dtype)
            else:
                obs = np.asarray(value.eval())
            dims = self.model.named_vars_to_dims.get(rv.name) or tuple(f"{rv.name}_dim_{i}" for i in range(obs.ndim))
            out[rv.name] = (dims, obs)
        return xr.Dataset(out)


def _is_cast_of(value, data) -> bool:
    """Whether ``value`` is the ``pm.Data`` ``data`` itself or a dtype cast of it."""
    owner = value.owner
    return value is data or (owner is not None and isinstance(owner.op, Elemwise)
                             and isinstance(owner.op.scalar_op, Cast) and owner.inputs[0] is data)


def sample_model(model: pm.Model, **kwargs: Any) -> xr.DataTree:
    """Compile and sample ``model`` once (see :meth:`CompiledSampler.sample` for arguments)."""
    return CompiledSampler(model).sample(**kwargs)


#: Target acceptance of the re-fit after divergent transitions (Stan's advice), here and in the
#: DiD engine's first recovery step (:func:`models.did.fit._recover`, which re-fits a fit it
#: already has; :func:`sample_checked` samples the first fit itself).
REFIT_TARGET_ACCEPT = 0.99


def sample_checked(sample: Callable[[float, int], xr.DataTree], check: Callable[[xr.DataTree], Diagnostics], *,
                   target_accept: float, seed: int) -> tuple[xr.DataTree, Diagnostics, str]:
    """``sample(target_accept, seed)``, checked by ``check``; when divergent transitions are its
    only problem, sampled again with smaller steps (target acceptance 0.99, seed + 1000) and the
    better fit kept (:meth:`Diagnostics.rank`). Returns the fit, its diagnostics and what was
    done in words ("" when the first fit was kept without a re-fit)."""
    idata = sample(target_accept, seed)
    diag = check(idata)
    if not (diag.only_divergences and target_accept < REFIT_TARGET_ACCEPT):
        return idata, diag, ""
    again = sample(REFIT_TARGET_ACCEPT, seed + 1000)
    diag_again = check(again)
    kept = diag_again.rank() > diag.rank()
    note = (f"{diag.divergences} divergent transitions at target acceptance {target_accept:g}; re-fitted at "
            f"{REFIT_TARGET_ACCEPT:g} ({'kept' if kept else 'not better'}: {diag_again.divergences} divergences)")
    return (again, diag_again, note) if kept else (idata, diag, note)


def seed_sequence(seed: int, n: int) -> list[int]:
    """``n`` independent integer seeds derived from ``seed`` (for chains of sub-tasks)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def prior_draws(model: pm.Model, var_names: Iterable[str], *, draws: int, seed: int) -> dict[str, np.ndarray]:
    """``draws`` joint draws (draws in front) of ``var_names`` from the model's priors, in one
    call of one compiled function: symbolic random variables (``ZeroSumNormal``,
    ``CustomDist``) are inlined into the basic ones they are made of, and the forward graph
    is vectorised over draws (``pytensor.graph.replace.vectorize_graph``), with every random
    variable's parameters that do not already depend on another random variable given a
    leading axis of length ``draws``, so that each draw has its own values at every level of
    the hierarchy. ``pm.sample_prior_predictive`` gives the same distribution with one call
    per draw (several times slower for thousands of draws); it is used when a node cannot be
    vectorised."""
    import pytensor.tensor as pt
    from pytensor.compile.builders import OpFromGraph
    from pytensor.compile.rewriting import inline_ofg_node
    from pytensor.graph.replace import graph_replace, vectorize_graph
    from pytensor.graph.traversal import ancestors, io_toposort
    from pytensor.tensor.random.type import RandomType

    names = list(var_names)
    outs = [model[v] for v in names]

    def random_nodes(outputs) -> list:
        return [n for n in io_toposort([], outputs) if any(isinstance(i.type, RandomType) for i in n.inputs)]

    while symbolic := [n for n in random_nodes(outs) if isinstance(n.op, OpFromGraph)]:
        outs = graph_replace(outs, {o: i for n in symbolic for o, i in zip(n.outputs, inline_ofg_node(n))},
                             strict=False)
    nodes = random_nodes(outs)
    drawn = {o for n in nodes for o in n.outputs if not isinstance(o.type, RandomType)}
    batched = {}
    try:
        for node in nodes:
            for p in node.op.dist_params(node):
                if p not in batched and not any(a in drawn for a in ancestors([p])):
                    batched[p] = pt.broadcast_to(p, (draws, *p.shape))
        vectorised = vectorize_graph(outs, replace=batched)
    except (AttributeError, NotImplementedError):      # an op without dist_params or a vectorisation
        import logging
        import warnings

        pymc_log = logging.getLogger("pymc")
        level = pymc_log.level
        with model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Potential.*", category=UserWarning)
            pymc_log.setLevel(logging.WARNING)
            try:
                tree = pm.sample_prior_predictive(draws=draws, random_seed=seed, var_names=names,
                                                  compile_kwargs={"mode": "FAST_COMPILE"})
            finally:
                pymc_log.setLevel(level)
        # free variables land in "prior", observed ones in "prior_predictive"
        found = {v: (tree["prior"] if v in tree["prior"] else tree["prior_predictive"])[v] for v in names}
        return {v: da.values.reshape(draws, *da.shape[2:]) for v, da in found.items()}
    values = pm.draw(vectorised, draws=1, random_seed=seed, mode="FAST_COMPILE")
    return {v: np.asarray(x) for v, x in zip(names, values)}
