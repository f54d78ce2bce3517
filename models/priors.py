"""Named priors for a treatment effect: sceptical, neutral and enthusiastic.

Following Spiegelhalter, Freedman and Parmar (1994) and the Bayesian re-analyses of trials
that use them, each prior is a normal distribution on the model's effect scale (log-odds
ratio, log mean ratio, working days, ...), built from the size of effect the programme claims:

- **sceptical**: centred on no effect, P(effect at least as large as the target) = 5%:
  ``N(0, (target / 1.645)^2)``.
- **neutral**: centred on no effect and weak: ``N(0, neutral_sd^2)``.
- **enthusiastic**: centred on the target, P(effect in the wrong direction) = 5%:
  ``N(target, (target / 1.645)^2)``.

``target`` carries its sign (the direction the programme expects). Every prior can be
overridden from the command line with ``--prior-override NAME:MEAN:SD``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Z95 = 1.6448536269514722  # one-sided 5% normal quantile

PRIOR_NAMES = ("sceptical", "neutral", "enthusiastic")


@dataclass(frozen=True)
class NamedPrior:
    """``effect ~ Normal(mean, sd)`` on ``scale``, with the reason for it in words.

    ``between_scale`` multiplies the scale of a hierarchical model's prior on the between-unit
    SD of the effect (1: the model's default). A named prior about the effect in a few treated
    units may need it: with 2 treated units the spread of their effects alone can put more than
    5% on the target (:func:`models.did.priors.calibrated_priors`)."""

    name: str
    mean: float
    sd: float
    scale: str
    rationale: str
    between_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.sd > 0:
            raise ValueError(f"prior '{self.name}': sd must be > 0, got {self.sd}")
        if not self.between_scale > 0:
            raise ValueError(f"prior '{self.name}': between_scale must be > 0, got {self.between_scale}")

    def describe(self) -> str:
        between = (f"; the between-unit SD's prior scale x {self.between_scale:.3g}" if self.between_scale != 1.0
                   else "")
        return (f"{self.name}: Normal({self.mean:.3g}, {self.sd:.3g}) on the {self.scale} scale{between}; "
                f"{self.rationale}")


def spiegelhalter_priors(target: float, *, neutral_sd: float, scale: str, target_label: str) -> dict[str, NamedPrior]:
    """The three named priors for a programme whose claimed effect is ``target`` on ``scale``."""
    if target == 0:
        raise ValueError("the programme's target effect must be non-zero")
    sd = abs(target) / Z95
    return {
        "sceptical": NamedPrior("sceptical", 0.0, sd, scale,
                                f"no effect expected; 5% prior chance of reaching {target_label}"),
        "neutral": NamedPrior("neutral", 0.0, neutral_sd, scale, "no effect expected, weakly informative"),
        "enthusiastic": NamedPrior("enthusiastic", target, sd, scale,
                                   f"centred on {target_label}; 5% prior chance of an effect in the other direction"),
    }


def select_priors(priors: dict[str, NamedPrior], choice: str, overrides: list[str] | None = None) -> list[NamedPrior]:
    """Priors picked by ``choice`` ('all' or a name), after ``NAME:MEAN:SD[:BETWEEN]`` overrides
    (``BETWEEN``: the between-unit SD prior's scale multiplier, default 1: the model's own)."""
    priors = dict(priors)
    for text in overrides or []:
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in priors:
            raise ValueError(f"--prior-override must be NAME:MEAN:SD[:BETWEEN] with NAME in {sorted(priors)}; "
                             f"got '{text}'")
        try:
            mean, sd = float(parts[1]), float(parts[2])
            between = float(parts[3]) if len(parts) == 4 else 1.0
        except ValueError:
            raise ValueError(f"--prior-override '{text}': MEAN, SD and BETWEEN must be numbers") from None
        if not sd > 0 or not between > 0:
            raise ValueError(f"--prior-override '{text}': SD and BETWEEN must be > 0")
        priors[parts[0]] = replace(priors[parts[0]], mean=mean, sd=sd, between_scale=between,
                                   rationale="overridden by the user")
    if choice == "all":
        return list(priors.values())
    if choice not in priors:
        raise ValueError(f"unknown prior '{choice}'; choose from {[*priors, 'all']}")
    return [priors[choice]]
