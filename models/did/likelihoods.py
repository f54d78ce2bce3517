r"""The DiD engine's table of likelihoods, each on aggregated cells.

Every cell ``c`` carries ``y_c`` and ``n_c`` (and, for some likelihoods, more sufficient
statistics); the linear predictor ``eta_c`` (one per *part*; the hurdle has two) comes from
:mod:`models.did.model`. The table:

==================  ============================  ==========  ==============================================
name                cell statistics               link        likelihood of a cell
==================  ============================  ==========  ==============================================
``binomial``        y successes of n trials       logit       ``Binomial(n, expit(eta))`` (Bernoulli: n = 1)
``betabinomial``    y successes of n trials       logit       ``BetaBinomial(n, mu phi, (1 - mu) phi)``,
                                                              ``mu = expit(eta)``, ``1/sqrt(phi) ~ HN(0.5)``
``poisson``         y events, n exposure          log         ``Poisson(n exp(eta))``
``negbinomial``     y events, n exposure          log         ``NegBinomial(mean n exp(eta), alpha)``,
                                                              ``1/sqrt(alpha) ~ HN(0.5)``
``normal``          y cell mean, n records        identity    records ``N(eta, sigma^2)`` when the cell holds
                    (``y_ss`` optional)                       ``y_ss``, the sum of squared deviations from
                                                              its mean (exact); otherwise the cell mean,
                                                              ``N(eta, sigma^2 / n)``; ``sigma ~ HN(2 s)``
``student``         y cell mean, n weight         identity    ``StudentT(4, eta, sigma / sqrt(n))``
``hurdle_lognormal`` y same-day records of n,      logit, log  same day ``Binomial(n, expit(eta_zero))``;
                    n_pos, log_sum, log_sq,                   positive durations ``log d ~ N(eta, s_log^2)``
                    dur_sum, log_upper                        through their exact sufficient statistics,
                                                              truncated at ``log_upper`` (a cut-off)
==================  ============================  ==========  ==============================================

The hurdle's durations may be cut off: records longer than ``U`` days left out (a maximum
duration, or a sensitivity re-fit). The positive durations are then a lognormal truncated
at ``U``, each contributing ``- log Phi((log U - eta) / s_log)`` beside its density, and two
means are reported, each named: the *truncated mean* (of assessments up to ``U``, what the
cut-off data describe; the headline response) ``(1 - p_0) exp(eta + s^2/2) Phi(a - s) /
Phi(a)`` with ``a = (log U - eta) / s``, and the *population mean* ``(1 - p_0) exp(eta +
s^2/2)``, the lognormal extended beyond the cut-off (an extrapolation). Cells without a
cut-off hold ``log_upper`` = :data:`NO_CUTOFF`, where both terms vanish to machine precision,
so one compiled graph serves data with and without cut-offs.

(``s`` is the outcome's scale, sd(y), for identity links, 1 otherwise.)

Each entry also says how to read an effect: the *response* of a cell (its expected value
per record: a probability, a rate per unit of exposure, a mean, a mean duration), which the
g-computation of :mod:`models.did.model` contrasts with and without the effect, and the
factor that turns it into the units people read (x 100 for percentage points). Predictive
draws of the cell statistics come from :meth:`Likelihood.predict` (NumPy), so that prior and
posterior predictive checks need no second graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.dist_math import binomln
from pytensor.tensor.math import softplus
from scipy.special import expit

#: Degrees of freedom of the Student-t likelihood, fixed: heavy enough tails for the odd cell
#: (a turnover of 0% or 28% after years near 15%); a few dozen cells cannot estimate it.
STUDENT_NU = 4.0

#: ``log_upper`` of a cell without a cut-off: ``Phi((NO_CUTOFF - eta) / s)`` is 1 in floating point.
NO_CUTOFF = 1000.0


def _log_ndtr(x, lib):
    if lib is np:
        from scipy.special import log_ndtr

        return log_ndtr(x)
    from pymc.distributions.dist_math import normal_lcdf

    return normal_lcdf(0.0, 1.0, x)


def _binomial_logit_logp(value, n, eta):
    return binomln(n, value) + value * eta - n * softplus(eta)


def binomial_logit(name: str, *, n, eta, observed) -> pt.TensorVariable:
    """``y ~ Binomial(n, expit(eta))`` with the log-likelihood written directly,
    ``log C(n, y) + y eta - n log(1 + e^eta)``: PyMC's density (tested) at about 60% of its
    cost per gradient (one softplus per cell, no parameter checks; counts are validated on
    input). With frozen data ``log C(n, y)`` is a folded constant."""
    return pm.CustomDist(name, n, eta, logp=_binomial_logit_logp, observed=observed,
                         dist=lambda n_, eta_, size: pm.Binomial.dist(n=n_, logit_p=eta_, size=size))


@dataclass(frozen=True)
class Likelihood:
    """One row of the table (see the module docstring)."""

    name: str
    link: str                              # "logit", "log" or "identity"
    stats: tuple[str, ...] = ("y", "n")    # cell statistics the likelihood needs
    optional: tuple[str, ...] = ()         # statistics used when present
    parts: tuple[str, ...] = ("",)         # suffixes of the linear predictors
    nuisance_names: tuple[str, ...] = ()
    integer_y: bool = False                # y must be a whole number
    y_le_n: bool = False                   # y cannot exceed n
    default_units: str = ""                # how effects are read by default
    factor: float = 1.0                    # response -> reading units

    @property
    def graph_stats(self) -> tuple[str, ...]:
        """The cell statistics the likelihood's graph reads (``dur_sum`` only feeds checks)."""
        return tuple(s for s in (*self.stats, *self.optional) if s != "dur_sum")

    @property
    def identity(self) -> bool:
        return self.link == "identity"

    @property
    def hurdle(self) -> bool:
        return len(self.parts) > 1

    # -- the model -------------------------------------------------------------------------

    def nuisance(self, scale: float) -> dict:
        """The likelihood's own parameters (created in the current ``pm.Model``)."""
        if self.name == "betabinomial":
            inv = pm.HalfNormal("inv_sqrt_phi", 0.5)
            return {"phi": pm.Deterministic("phi", 1.0 / pt.square(inv))}
        if self.name == "negbinomial":
            inv = pm.HalfNormal("inv_sqrt_alpha", 0.5)
            return {"alpha_nb": pm.Deterministic("alpha_nb", 1.0 / pt.square(inv))}
        if self.name in ("normal", "student"):
            return {"sigma_obs": pm.HalfNormal("sigma_obs", 2.0 * scale)}
        if self.hurdle:
            return {"sigma_log": pm.HalfNormal("sigma_log", 1.0)}
        return {}

    def observe(self, eta: dict, data: dict, nuis: dict) -> None:
        """Add the observed cells to the current model (``eta``: part suffix -> predictor)."""
        y, n = data["y"], data["n"]
        e = eta[""] if not self.hurdle else None
        if self.name == "binomial":
            binomial_logit("y_obs", n=n, eta=e, observed=y)
        elif self.name == "betabinomial":
            mu = pm.math.invlogit(e)
            phi = nuis["phi"]
            pm.BetaBinomial("y_obs", alpha=mu * phi, beta=(1.0 - mu) * phi, n=n, observed=y)
        elif self.name == "poisson":
            pm.Poisson("y_obs", mu=n * pt.exp(e), observed=y)
        elif self.name == "negbinomial":
            pm.NegativeBinomial("y_obs", mu=n * pt.exp(e), alpha=nuis["alpha_nb"], observed=y)
        elif self.name == "normal":
            sigma = nuis["sigma_obs"]
            if "y_ss" in data:   # records: the exact likelihood from the cell's sufficient statistics
                pm.Normal("y_obs", mu=e, sigma=sigma / pt.sqrt(n), observed=y)
                pm.Potential("y_within", -(n - 1.0) * pt.log(sigma) - data["y_ss"] / (2.0 * sigma ** 2)
                             - 0.5 * (n - 1.0) * np.log(2 * np.pi) - 0.5 * pt.log(n))
            else:
                pm.Normal("y_obs", mu=e, sigma=sigma / pt.sqrt(n), observed=y)
        elif self.name == "student":
            pm.StudentT("y_obs", nu=STUDENT_NU, mu=e, sigma=nuis["sigma_obs"] / pt.sqrt(n), observed=y)
        elif self.hurdle:
            binomial_logit("y_obs", n=n, eta=eta["_zero"], observed=y)
            m, s = eta[""], nuis["sigma_log"]
            truncation = data["n_pos"] * _log_ndtr((data["log_upper"] - m) / s, pt) if "log_upper" in data else 0.0
            pm.Potential("log_duration", pt.sum(-data["n_pos"] * pt.log(s) - (
                data["log_sq"] - 2.0 * m * data["log_sum"] + data["n_pos"] * m ** 2) / (2.0 * s ** 2) - truncation))
        else:  # pragma: no cover - the table is closed
            raise ValueError(self.name)

    def response(self, eta: dict, nuis: dict, lib=pt, *, log_upper=None):
        """Expected value per record of a cell (probability, rate, mean, mean duration), in
        PyTensor (``lib=pt``) or NumPy (``lib=np``; ``nuis`` then holds arrays). The hurdle's
        mean duration is the truncated mean when ``log_upper`` (per cell) is given, the
        population mean otherwise (see the module docstring)."""
        sigmoid = pm.math.invlogit if lib is pt else expit
        if self.hurdle:
            s = nuis["sigma_log"]
            if lib is np and np.ndim(s) == 1:      # draws in front: one sigma per draw
                s = np.asarray(s)[:, None]
            mean = (1.0 - sigmoid(eta["_zero"])) * lib.exp(eta[""] + 0.5 * s ** 2)
            if log_upper is None:
                return mean
            a = (log_upper - eta[""]) / s
            return mean * lib.exp(_log_ndtr(a - s, lib) - _log_ndtr(a, lib))
        if self.link == "logit":
            return sigmoid(eta[""])
        if self.link == "log":
            return lib.exp(eta[""])
        return eta[""]

    def secondary_response(self, eta: dict, lib=pt):
        """The hurdle's same-day probability (``None`` for one-part likelihoods)."""
        if not self.hurdle:
            return None
        return (pm.math.invlogit if lib is pt else expit)(eta["_zero"])

    # -- predictive draws (NumPy) ------------------------------------------------------------

    def predict(self, rng: np.random.Generator, eta: dict, nuis: dict, n: np.ndarray,
                log_upper: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Replicated cell statistics (``y``; the hurdle adds ``dur_sum``) for draws in front:
        ``eta[part]`` is (draws, cells), ``nuis[name]`` (draws,); the hurdle's durations are
        truncated at ``log_upper`` when given."""
        e = eta.get("")
        if self.name == "binomial":
            return {"y": rng.binomial(n.astype(np.int64), expit(e))}
        if self.name == "betabinomial":
            mu = np.clip(expit(e), 1e-9, 1 - 1e-9)
            phi = nuis["phi"][:, None]
            return {"y": rng.binomial(n.astype(np.int64), rng.beta(mu * phi, (1 - mu) * phi))}
        if self.name == "poisson":
            return {"y": rng.poisson(n * np.exp(e))}
        if self.name == "negbinomial":
            a = nuis["alpha_nb"][:, None]
            mean = n * np.exp(e)
            return {"y": rng.poisson(rng.gamma(a, mean / a))}
        if self.identity:
            sd = nuis["sigma_obs"][:, None] / np.sqrt(n)
            noise = rng.standard_t(STUDENT_NU, e.shape) if self.name == "student" else rng.standard_normal(e.shape)
            return {"y": e + sd * noise}
        zero = rng.binomial(n.astype(np.int64), expit(eta["_zero"]))
        n_pos = n - zero
        s = nuis["sigma_log"][:, None]
        m = eta[""]
        if log_upper is None:
            mean = np.exp(m + s ** 2 / 2)
            var = (np.exp(s ** 2) - 1) * np.exp(2 * m + s ** 2)
        else:       # the truncated lognormal's first two moments
            from scipy.special import log_ndtr

            a = (log_upper - m) / s
            mean = np.exp(m + s ** 2 / 2 + log_ndtr(a - s) - log_ndtr(a))
            var = np.maximum(np.exp(2 * m + 2 * s ** 2 + log_ndtr(a - 2 * s) - log_ndtr(a)) - mean ** 2, 0.0)
        total = np.maximum(rng.normal(n_pos * mean, np.sqrt(n_pos * var)), n_pos)   # sum of n_pos lognormals
        return {"y": zero, "dur_sum": total}

    def reading(self, y: np.ndarray, n: np.ndarray, stats: dict | None = None) -> np.ndarray:
        """A group's observed value on the reading scale from summed cell statistics (the last
        axis is summed): the share in %, the rate per unit of exposure, the mean, the mean
        duration."""
        if self.identity:
            return (y * n).sum(-1) / n.sum(-1)
        if self.hurdle:
            return stats["dur_sum"].sum(-1) / n.sum(-1)
        return self.factor * y.sum(-1) / n.sum(-1)


LIKELIHOODS: dict[str, Likelihood] = {
    "binomial": Likelihood("binomial", "logit", integer_y=True, y_le_n=True, default_units="pp", factor=100.0),
    "betabinomial": Likelihood("betabinomial", "logit", nuisance_names=("inv_sqrt_phi",), integer_y=True,
                               y_le_n=True, default_units="pp", factor=100.0),
    "poisson": Likelihood("poisson", "log", integer_y=True, default_units="events per unit of exposure"),
    "negbinomial": Likelihood("negbinomial", "log", nuisance_names=("inv_sqrt_alpha",), integer_y=True,
                              default_units="events per unit of exposure"),
    "normal": Likelihood("normal", "identity", optional=("y_ss",), nuisance_names=("sigma_obs",)),
    "student": Likelihood("student", "identity", nuisance_names=("sigma_obs",)),
    "hurdle_lognormal": Likelihood("hurdle_lognormal", "log", stats=("y", "n", "n_pos", "log_sum", "log_sq", "dur_sum"),
                                   optional=("log_upper",), parts=("_zero", ""), nuisance_names=("sigma_log",), integer_y=True, y_le_n=True,
                                   default_units="days"),
}


def get_likelihood(name: str) -> Likelihood:
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {name!r}")
    return LIKELIHOODS[name]
