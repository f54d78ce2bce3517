"""Named priors (sceptical, neutral, enthusiastic) for the DiD engine's mean effect ``mu_tau``.

The programme's claimed effect is turned into a target on the model's link scale at the
treated units' pre-adoption level ``p0`` (:meth:`models.did.experiment.DidExperiment.pre_level`):

============  ====================================================  ======================
link          target for a relative change ``r`` (or ``target``     neutral prior
              in the outcome's units)
============  ====================================================  ======================
logit         ``logit(p0 (1 + r)) - logit(p0)``                      N(0, 1)
log           ``log(1 + r)``                                         N(0, 1)
identity      ``r |p0|`` (or ``target``)                            N(0, (2 sd(y))^2)
============  ====================================================  ======================

and :func:`models.priors.spiegelhalter_priors` builds the three priors from it. A user's own
``target`` (``--target``, in the outcome's units) replaces ``r`` on the identity link; on the
logit and log links it is converted at ``p0`` (percentage points: ``p0 + target / 100``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logit

from models.did.likelihoods import Likelihood
from models.priors import NamedPrior, spiegelhalter_priors


def effect_priors(lik: Likelihood, pre_level: float, *, direction: int = +1, relative_target: float | None = 0.2,
                  target: float | None = None, factor: float | None = None, outcome_label: str = "the outcome",
                  outcome_sd: float | None = None) -> dict[str, NamedPrior]:
    """The three named priors for ``mu_tau`` (see the module docstring).

    ``target`` is in reading units (``factor`` times the response: pp for shares); when it is
    None, ``relative_target`` in ``direction`` is used. ``outcome_sd`` (identity link) sets the
    neutral prior's SD.
    """
    factor = lik.factor if factor is None else factor
    if target is None and (relative_target is None or direction == 0):
        raise ValueError("named priors need a target: a relative change with a direction, or an absolute target")
    if target is not None:
        label = f"the target change of {target:+g} in {outcome_label}"
    else:
        label = f"the programme's {relative_target:.0%} {'rise' if direction > 0 else 'fall'} in {outcome_label}"
    if lik.identity:
        if outcome_sd is None or not outcome_sd > 0:
            raise ValueError("priors on the identity link need the outcome's SD (> 0)")
        t = target if target is not None else direction * relative_target * abs(pre_level)
        return spiegelhalter_priors(t, neutral_sd=2.0 * outcome_sd, scale="outcome units", target_label=label)
    if lik.link == "log":
        if not pre_level > 0:
            raise ValueError(f"the pre-period level must be > 0, got {pre_level}")
        moved = pre_level + target / factor if target is not None else pre_level * (1 + direction * relative_target)
        if not moved > 0:
            raise ValueError(f"the target moves the pre-period level {pre_level:g} below zero")
        scale = "log mean ratio (positive durations)" if lik.hurdle else "log rate ratio"
        return spiegelhalter_priors(float(np.log(moved / pre_level)), neutral_sd=1.0, scale=scale, target_label=label)
    if not 0 < pre_level < 1:
        raise ValueError(f"pre-period share must lie in (0, 1), got {pre_level}")
    moved = pre_level + target / factor if target is not None else pre_level * (1 + direction * relative_target)
    moved = float(np.clip(moved, 1e-6, 1 - 1e-6))
    return spiegelhalter_priors(float(logit(moved) - logit(pre_level)), neutral_sd=1.0, scale="log-odds ratio",
                                target_label=label)
