"""Synthetic child-level records for a staggered-adoption DiD study, with known truth.

The generating model (per child ``i`` in LA ``l``, financial year ``t``)::

    y_i ~ Bernoulli(p_i)
    logit p_i = alpha + u_l + trend_l * (t - t_mid) + v_t + x_i' beta + tau_l * treated_post_lt
    u_l ~ N(0, sd_la^2),   trend_l ~ N(0, sd_trend^2),   v_t ~ N(0, sd_year^2)
    tau_l ~ N(mu_tau, sd_tau^2)                      (pilot LAs only)

``treated_post_lt`` is 1 for a pilot LA in years at or after ``adoption_year + settling_years``
(the report's post settling-in period); during settling-in the effect ramps up linearly.
Comparator LAs never adopt. Children's covariates (age band, sex, ethnic group, disability)
are drawn from fixed shares. The truth returned includes the realised average treatment effect
on the treated in percentage points, computed by g-computation with the *true* probabilities
over the treated post-period children: mean_i [p_i - p_i(tau = 0)] * 100.

:func:`kinship_twin` is the embedded default for ``analyses.kinship``: a "study twin" with
9 pilot and 9 comparator LAs, pre-period kinship share about 62% in the pilots and a true ATT of
about -12.6 pp, sized so that the report's frequentist DiD has a standard error of about 6 pp.
Everything made from it is synthetic and labelled so.

Two further generators build on the same LA design (:func:`_la_design`, :func:`_units`):

- :func:`simulate_referral_study` -- referrals closed with no further action (NFA), one row
  per referral, with ``rereferral`` (re-referred within 6 months) and ``escalation`` (that
  re-referral led to a child protection plan or care). Children can be referred repeatedly
  (``child_id``, a child random effect), some LAs code NFA unreliably in their early years
  (few NFA referrals recorded, some of them not NFA at all), and some comparators run a
  practice model similar to SofS. :func:`referral_twin` is calibrated to the report
  (re-referral 31% -> 21%, -9.8 pp).
- :func:`simulate_assessment_study` -- assessments with their duration in working days
  (``assessment_days``; 0 = same day) from a hurdle: a same-day probability and a lognormal
  positive part, each with the DiD structure. Two pilots change their assessment practice
  for reasons unrelated to SofS (external consultants, a backlog of long assessments).
  :func:`assessment_twin` is calibrated to the report (about +3 working days, same-day
  -3.9 pp in the naive DiD; a much smaller true SofS effect).

Every study also carries synthetic LA attributes (``SyntheticStudy.la_attributes``:
embeddedness, quality of delivery, Ofsted rating, similar practice model), drawn from a
separate random stream so that adding them changed no earlier dataset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, logit

AGE_BANDS = ("0-4", "5-9", "10-15", "16-17")
SEXES = ("female", "male")
ETHNIC_GROUPS = ("White", "Mixed", "Asian", "Black", "Other")
DISABILITY = ("no", "yes")
OFSTED_GRADES = ("outstanding", "good", "requires improvement", "inadequate")
SYNTHETIC_LABEL = "SYNTHETIC study twin (simulated data calibrated to the published results; not real children)"


@dataclass(frozen=True)
class DidStudyConfig:
    """Design and truth of one synthetic DiD study. Effects are on the logit scale."""

    outcome: str = "kinship"
    n_pilot: int = 9
    n_comparator: int = 9
    years: tuple[int, ...] = tuple(range(2010, 2019))  # financial years 2010-11 .. 2018-19
    adoption_years: tuple[int, ...] = (2014, 2014, 2014, 2014, 2014, 2015, 2015, 2016, 2017)
    settling_years: tuple[int, ...] = (2, 2, 3, 1, 2, 1, 2, 1, 1)
    children_per_la_year: float = 80.0
    baseline_share: float = 0.67
    sd_la: float = 0.35
    sd_trend: float = 0.06
    sd_year: float = 0.08
    mu_tau: float = -0.66
    sd_tau: float = 0.6
    age_shares: tuple[float, ...] = (0.38, 0.18, 0.30, 0.14)
    age_effects: tuple[float, ...] = (0.0, -0.15, -0.35, -0.6)
    male_effect: float = -0.05
    ethnic_shares: tuple[float, ...] = (0.74, 0.09, 0.06, 0.07, 0.04)
    ethnic_effects: tuple[float, ...] = (0.0, -0.1, 0.2, -0.3, -0.2)
    disability_share: float = 0.1
    disability_effect: float = -0.4
    la_size_sd: float = 0.3
    extra: dict = field(default_factory=dict)
    pilot_offset: float = 0.0                    # log-odds: pilots' level relative to comparators
    similar_practice_las: tuple[str, ...] = ()   # comparators whose practice model resembles SofS

    def __post_init__(self) -> None:
        if len(self.adoption_years) != self.n_pilot or len(self.settling_years) != self.n_pilot:
            raise ValueError("adoption_years and settling_years need one entry per pilot LA")
        if self.n_pilot < 1 or self.n_comparator < 1:
            raise ValueError("a DiD study needs at least one pilot and one comparator LA")


@dataclass
class SyntheticStudy:
    """Child-level records and the truth that generated them.

    ``la_attributes`` (one row per LA): ``embeddedness`` (self-reported T-score, pilots),
    ``quality_of_delivery`` (MTM's score 1-10, pilots), ``ofsted`` (overall grade) and
    ``similar_practice_model`` (comparators: 'yes'/'no'); see :func:`synthetic_la_attributes`.
    """

    children: pd.DataFrame
    truth: dict
    config: DidStudyConfig
    seed: int
    label: str = SYNTHETIC_LABEL
    la_attributes: pd.DataFrame | None = None


@dataclass(frozen=True)
class _Layout:
    las: list[str]
    is_pilot: np.ndarray
    adoption: np.ndarray
    settling: np.ndarray
    years: np.ndarray


def _ramp(year: np.ndarray, adoption: np.ndarray, settling: np.ndarray) -> np.ndarray:
    """Share of the full effect: 0 before adoption, linear during settling-in, 1 after."""
    rel = year - adoption
    full = rel >= settling
    during = (rel >= 0) & ~full
    out = np.where(full, 1.0, 0.0)
    return np.where(during, (rel + 1) / (settling + 1.0), out)


def _la_design(config: DidStudyConfig) -> _Layout:
    n_la = config.n_pilot + config.n_comparator
    las = [f"Pilot {i + 1}" for i in range(config.n_pilot)] + [
        f"Comparator {i + 1}" for i in range(config.n_comparator)
    ]
    adoption = np.full(n_la, np.nan)
    adoption[: config.n_pilot] = config.adoption_years
    settling = np.zeros(n_la, dtype=int)
    settling[: config.n_pilot] = config.settling_years
    return _Layout(las, np.arange(n_la) < config.n_pilot, adoption, settling, np.asarray(config.years))


def _la_effects(config: DidStudyConfig, rng: np.random.Generator, lay: _Layout):
    """LA intercepts, LA trends, year shocks, LA effects and LA sizes (in this order from ``rng``)."""
    n_la = len(lay.las)
    u = rng.normal(0, config.sd_la, n_la)
    trend = rng.normal(0, config.sd_trend, n_la)
    v = rng.normal(0, config.sd_year, lay.years.size)
    tau = np.where(lay.is_pilot, rng.normal(config.mu_tau, config.sd_tau, n_la), 0.0)
    size = np.exp(rng.normal(0, config.la_size_sd, n_la))
    return u, trend, v, tau, size


def _units(config: DidStudyConfig, rng: np.random.Generator, lay: _Layout, size: np.ndarray):
    """Records per LA x year (Poisson) with their covariates; ordered by LA, then year."""
    n_la = len(lay.las)
    counts = rng.poisson(config.children_per_la_year * size[:, None], (n_la, lay.years.size))
    la_idx = np.repeat(np.repeat(np.arange(n_la), lay.years.size), counts.ravel())
    yr_idx = np.repeat(np.tile(np.arange(lay.years.size), n_la), counts.ravel())
    n = la_idx.size
    age = rng.choice(len(AGE_BANDS), n, p=config.age_shares)
    male = rng.random(n) < 0.5
    eth = rng.choice(len(ETHNIC_GROUPS), n, p=config.ethnic_shares)
    dis = rng.random(n) < config.disability_share
    return la_idx, yr_idx, age, male, eth, dis


def _covariate_effect(config: DidStudyConfig, age, male, eth, dis) -> np.ndarray:
    return (np.asarray(config.age_effects)[age] + config.male_effect * male
            + np.asarray(config.ethnic_effects)[eth] + config.disability_effect * dis)


def _frame(config: DidStudyConfig, lay: _Layout, la_idx, yr_idx, age, male, eth, dis, **outcomes) -> pd.DataFrame:
    return pd.DataFrame({
        "la": np.asarray(lay.las)[la_idx],
        "year": lay.years[yr_idx],
        "arm": np.where(lay.is_pilot[la_idx], "pilot", "comparator"),
        "adoption_year": lay.adoption[la_idx],
        "settling_years": lay.settling[la_idx],
        "age_band": np.asarray(AGE_BANDS)[age],
        "sex": np.where(male, "male", "female"),
        "ethnicity": np.asarray(ETHNIC_GROUPS)[eth],
        "disability": np.where(dis, "yes", "no"),
        **outcomes,
    })


def synthetic_la_attributes(config: DidStudyConfig, seed: int) -> pd.DataFrame:
    """Synthetic LA-level moderators, from their own random stream ``[seed, 0xA77]``.

    Pilots: ``embeddedness`` ~ N(50, 10) (a T-score, as the report's profiling exercise),
    ``quality_of_delivery`` ~ N(6, 1.5) clipped to 1-10; every LA: ``ofsted`` drawn with shares
    10/45/35/10% (outstanding / good / requires improvement / inadequate); comparators:
    ``similar_practice_model`` 'yes' for ``config.similar_practice_las``. None of them changes
    the treatment effect in these generators (the report found no differential impact).
    """
    lay = _la_design(config)
    rng = np.random.default_rng([seed, 0xA77])
    n_la = len(lay.las)
    emb = np.round(rng.normal(50, 10, n_la), 1)
    qual = np.round(np.clip(rng.normal(6, 1.5, n_la), 1, 10), 1)
    ofsted = np.asarray(OFSTED_GRADES)[rng.choice(4, n_la, p=(0.1, 0.45, 0.35, 0.1))]
    similar = np.isin(lay.las, config.similar_practice_las)
    return pd.DataFrame({
        "la": lay.las,
        "embeddedness": np.where(lay.is_pilot, emb, np.nan),
        "quality_of_delivery": np.where(lay.is_pilot, qual, np.nan),
        "ofsted": ofsted,
        "similar_practice_model": np.where(lay.is_pilot, None, np.where(similar, "yes", "no")),
    })


def simulate_did_study(config: DidStudyConfig = DidStudyConfig(), seed: int = 0) -> SyntheticStudy:
    """Simulate child-level records for ``config``; deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    lay = _la_design(config)
    years, is_pilot, adoption, settling, las = lay.years, lay.is_pilot, lay.adoption, lay.settling, lay.las

    alpha = float(logit(config.baseline_share))
    u, trend, v, tau, size = _la_effects(config, rng, lay)
    la_idx, yr_idx, age, male, eth, dis = _units(config, rng, lay, size)
    n = la_idx.size

    t_mid = years.mean()
    eta0 = (alpha + config.pilot_offset * is_pilot[la_idx] + u[la_idx]
            + trend[la_idx] * (years[yr_idx] - t_mid) + v[yr_idx] + _covariate_effect(config, age, male, eth, dis))
    ramp = np.where(is_pilot[la_idx], _ramp(years[yr_idx], adoption[la_idx], settling[la_idx]), 0.0)
    eta = eta0 + tau[la_idx] * ramp
    p1, p0 = expit(eta), expit(eta0)
    y = (rng.random(n) < p1).astype(int)

    children = _frame(config, lay, la_idx, yr_idx, age, male, eth, dis, **{config.outcome: y})
    post = ramp == 1.0
    pre_pilot = is_pilot[la_idx] & (years[yr_idx] < adoption[la_idx])
    truth = {
        **_binary_truth(p1, p0, post, la_idx, las, config.n_pilot),
        "pilot_pre_share": float(y[pre_pilot].mean()),
        "mu_tau": config.mu_tau,
        "sd_tau": config.sd_tau,
        "tau_la": {las[l]: float(tau[l]) for l in range(config.n_pilot)},
        "n_children": int(n),
        "n_treated_post_children": int(post.sum()),
        "config": {k: v for k, v in asdict(config).items() if k != "extra"},
    }
    return SyntheticStudy(children=children, truth=truth, config=config, seed=seed,
                          la_attributes=synthetic_la_attributes(config, seed))


def _binary_truth(p1, p0, post, la_idx, las, n_pilot) -> dict:
    """ATT (pp), relative change, counterfactual share and LA ATTs from the true probabilities."""
    return {
        "att_pp": float(100 * (p1 - p0)[post].mean()),
        "att_relative": float((p1 - p0)[post].mean() / p0[post].mean()),
        "counterfactual_share_post": float(p0[post].mean()),
        "att_la_pp": {las[l]: float(100 * (p1 - p0)[post & (la_idx == l)].mean())
                      for l in range(n_pilot) if np.any(post & (la_idx == l))},
    }


KINSHIP_TWIN_SEED = 7  # chosen so the realised truth matches the report: ATT -12.5 pp, pre-share 62%


def kinship_twin(seed: int = KINSHIP_TWIN_SEED) -> SyntheticStudy:
    """The embedded default data for ``analyses.kinship`` (synthetic; see module docstring)."""
    return simulate_did_study(DidStudyConfig(), seed=seed)


# ---------------------------------------------------------------- repeated children

def _child_ids(rng: np.random.Generator, la_idx: np.ndarray, yr_idx: np.ndarray, repeat_share: float) -> np.ndarray:
    """A child id per record: in each LA, a record from year t is, with probability
    ``repeat_share``, a child already seen in an earlier year there (uniformly among earlier
    records), otherwise a new child. Records must be ordered by LA, then year."""
    n = la_idx.size
    child = np.full(n, -1, dtype=np.int64)
    next_id = 0
    keys = la_idx.astype(np.int64) * 10_000 + yr_idx
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], n]
    la_start = 0
    for s, e in zip(starts, ends):
        if s == 0 or la_idx[s] != la_idx[s - 1]:
            la_start = s
        m = e - s
        repeat = (rng.random(m) < repeat_share) & (s > la_start)
        earlier = la_start + np.floor(rng.random(m) * max(s - la_start, 1)).astype(np.int64)
        fresh = np.arange(next_id, next_id + m)
        next_id += m
        child[s:e] = np.where(repeat, child[np.minimum(earlier, max(s - 1, 0))], fresh)
    _, dense = np.unique(child, return_inverse=True)
    return dense.astype(np.int64)


def _first_of(child: np.ndarray) -> np.ndarray:
    """For each record, the index of its child's first record."""
    order = np.argsort(child, kind="stable")
    first = np.empty_like(child)
    sc = child[order]
    starts = np.r_[True, sc[1:] != sc[:-1]]
    first_pos = order[np.flatnonzero(starts)]
    first[order] = np.repeat(first_pos, np.diff(np.r_[np.flatnonzero(starts), sc.size]))
    return first


# ---------------------------------------------------------------- referrals closed NFA

REFERRAL_BASE = DidStudyConfig(
    outcome="rereferral", children_per_la_year=300.0, baseline_share=0.355, pilot_offset=-0.3,
    sd_la=0.3, sd_trend=0.04, sd_year=0.06, mu_tau=-0.62, sd_tau=0.3,
    age_effects=(0.0, 0.1, 0.15, -0.1), male_effect=0.0, ethnic_effects=(0.0, 0.05, -0.1, 0.0, -0.05),
    disability_effect=0.2, similar_practice_las=("Comparator 3", "Comparator 8"))


@dataclass(frozen=True)
class ReferralStudyConfig:
    """Referrals closed with no further action (NFA): re-referral and escalation within 6 months.

    ``base`` sets the LA design and the re-referral model (``base.mu_tau``: SofS effect on the
    log-odds of re-referral). Escalation happens only to re-referred children, with probability
    ``expit(logit(escalation_share) + u_e[la] + tau_e[la] * ramp)``.
    """

    base: DidStudyConfig = field(default_factory=lambda: REFERRAL_BASE)
    repeat_share: float = 0.08          # P(a record is a child already referred in an earlier year)
    sd_child: float = 0.8               # child random effect on re-referral (log-odds)
    escalation_share: float = 0.22      # P(re-referral leads to a CPP or care)
    escalation_sd_la: float = 0.35
    escalation_mu_tau: float = -0.1     # SofS effect on that conditional log-odds
    escalation_sd_tau: float = 0.15
    unreliable_las: tuple[str, ...] = ("Pilot 3", "Comparator 2", "Comparator 5")
    unreliable_until: int = 2013        # NFA coded unreliably in these LAs up to this year
    nfa_capture: float = 0.3            # share of true NFA referrals coded NFA there
    miscoded_share: float = 0.3         # share of the recorded 'NFA' referrals there that were not NFA
    miscoded_shift: float = 1.0         # their re-referral log-odds shift
    similar_practice_effect: float = -0.25  # log-odds, comparators with a similar model, from the first adoption
    escalation_report_sample: tuple[str, ...] = ("Pilot 4", "Pilot 6", "Comparator 1", "Comparator 6")


def simulate_referral_study(config: ReferralStudyConfig = ReferralStudyConfig(), seed: int = 0) -> SyntheticStudy:
    """Referral-level records (one row per referral recorded as closed NFA) with known truth.

    Columns: the design columns, covariates, ``child_id``, ``rereferral`` and ``escalation``.
    ``truth`` holds the re-referral truth at the top level (as :func:`simulate_did_study`) and
    both outcomes under ``truth['outcomes']``; the ATTs are over true NFA referrals of the pilots'
    post-settling-in years.
    """
    base = config.base
    rng = np.random.default_rng(seed)
    lay = _la_design(base)
    years, is_pilot = lay.years, lay.is_pilot
    u, trend, v, tau, size = _la_effects(base, rng, lay)
    la_idx, yr_idx, age, male, eth, dis = _units(base, rng, lay, size)
    n = la_idx.size
    child = _child_ids(rng, la_idx, yr_idx, config.repeat_share)
    first = _first_of(child)
    age, male, eth, dis = age[first], male[first], eth[first], dis[first]   # a child keeps its characteristics
    b = rng.normal(0, config.sd_child, child.max() + 1)[child]

    la_name = np.asarray(lay.las)[la_idx]
    unreliable = np.isin(la_name, config.unreliable_las) & (years[yr_idx] <= config.unreliable_until)
    recorded = ~unreliable | (rng.random(n) < config.nfa_capture)
    miscoded = unreliable & (rng.random(n) < config.miscoded_share)
    first_adoption = np.nanmin(lay.adoption)
    similar = np.isin(la_name, base.similar_practice_las) & (years[yr_idx] >= first_adoption)

    t_mid = years.mean()
    eta0 = (logit(base.baseline_share) + base.pilot_offset * is_pilot[la_idx] + u[la_idx]
            + trend[la_idx] * (years[yr_idx] - t_mid) + v[yr_idx] + _covariate_effect(base, age, male, eth, dis)
            + b + config.similar_practice_effect * similar + config.miscoded_shift * miscoded)
    ramp = np.where(is_pilot[la_idx], _ramp(years[yr_idx], lay.adoption[la_idx], lay.settling[la_idx]), 0.0)
    p1, p0 = expit(eta0 + tau[la_idx] * ramp), expit(eta0)
    rereferral = rng.random(n) < p1

    n_la = len(lay.las)
    u_e = rng.normal(0, config.escalation_sd_la, n_la)
    tau_e = np.where(is_pilot, rng.normal(config.escalation_mu_tau, config.escalation_sd_tau, n_la), 0.0)
    q0 = expit(logit(config.escalation_share) + u_e[la_idx])
    q1 = expit(logit(config.escalation_share) + u_e[la_idx] + tau_e[la_idx] * ramp)
    escalation = rereferral & (rng.random(n) < q1)

    keep = recorded
    children = _frame(base, lay, la_idx, yr_idx, age, male, eth, dis, child_id=child,
                      rereferral=rereferral.astype(int), escalation=escalation.astype(int))[keep].reset_index(drop=True)
    post = (ramp == 1.0) & keep & ~miscoded
    pre_pilot = is_pilot[la_idx] & (years[yr_idx] < lay.adoption[la_idx]) & keep
    n_records = np.bincount(child[keep], minlength=child.max() + 1)
    common = {
        "n_children": int(keep.sum()),
        "n_distinct_children": int((n_records > 0).sum()),
        "share_records_repeated_children": float((n_records[child[keep]] > 1).mean()),
        "n_treated_post_children": int(post.sum()),
        "n_miscoded_records": int((miscoded & keep).sum()),
        "unreliable_las": list(config.unreliable_las),
        "similar_practice_las": list(base.similar_practice_las),
        "escalation_report_sample": list(config.escalation_report_sample),
        "config": {k: v for k, v in asdict(base).items() if k != "extra"},
    }
    outcomes = {
        "rereferral": {**_binary_truth(p1, p0, post, la_idx, lay.las, base.n_pilot),
                       "pilot_pre_share": float(rereferral[pre_pilot].mean()),
                       "mu_tau": base.mu_tau, "sd_tau": base.sd_tau},
        "escalation": {**_binary_truth(p1 * q1, p0 * q0, post, la_idx, lay.las, base.n_pilot),
                       "pilot_pre_share": float(escalation[pre_pilot].mean())},
    }
    truth = {**outcomes["rereferral"], **common, "outcomes": outcomes}
    return SyntheticStudy(children=children, truth=truth, config=base, seed=seed,
                          label=SYNTHETIC_LABEL.replace("study twin", "referral twin"),
                          la_attributes=synthetic_la_attributes(base, seed))


REFERRAL_TWIN_SEED = 11


def referral_twin(outcome: str = "rereferral", seed: int = REFERRAL_TWIN_SEED) -> SyntheticStudy:
    """Embedded default for ``analyses.rereferral`` and ``analyses.escalation`` (synthetic):
    18 LAs x 9 years, about 50,000 NFA referrals; ``truth`` is that of ``outcome``."""
    if outcome not in ("rereferral", "escalation"):
        raise ValueError(f"outcome must be 'rereferral' or 'escalation', got {outcome!r}")
    study = simulate_referral_study(ReferralStudyConfig(), seed=seed)
    study.truth = {**study.truth, **study.truth["outcomes"][outcome]}
    return study


# ---------------------------------------------------------------- assessments and their duration

ASSESSMENT_BASE = DidStudyConfig(
    outcome="assessment_days", children_per_la_year=260.0, baseline_share=0.12, sd_la=0.35, sd_trend=0.03,
    sd_year=0.05, mu_tau=-0.05, sd_tau=0.1, age_effects=(0.0, -0.1, -0.2, -0.1), male_effect=0.0,
    ethnic_effects=(0.0, 0.0, 0.1, -0.05, 0.0), disability_effect=-0.2)


@dataclass(frozen=True)
class AssessmentStudyConfig:
    """Assessments and their duration in working days: a hurdle with the DiD structure in both parts.

    Same day (0 working days) with probability ``pi``, ``logit pi`` as the binary generator with
    ``base`` (``base.baseline_share`` is the same-day share, ``base.mu_tau`` SofS's effect on its
    log-odds). Otherwise ``max(1, round(exp(m + sd_log_days * z)))`` days, ``m`` with LA
    intercepts, trends, year shocks, covariates (``covariate_scale_days`` x the base effects),
    a child effect and SofS effects ``tau_days ~ N(mu_tau_days, sd_tau_days)`` (log scale).
    ``practice_change_las`` (Pilots 1 and 2) assess quickly before ``practice_change_year``
    and slowly after, with a backlog of very long assessments: unrelated to SofS.
    """

    base: DidStudyConfig = field(default_factory=lambda: ASSESSMENT_BASE)
    median_days: float = 20.0
    sd_log_days: float = 0.7
    sd_la_days: float = 0.25
    sd_trend_days: float = 0.03
    sd_year_days: float = 0.05
    mu_tau_days: float = 0.03
    sd_tau_days: float = 0.05
    covariate_scale_days: float = 0.3
    practice_change_las: tuple[str, ...] = ("Pilot 1", "Pilot 2")
    practice_change_year: int = 2018
    practice_pre_median_days: tuple[float, ...] = (2.0, 7.0)
    practice_post_median_days: tuple[float, ...] = (32.0, 26.0)
    practice_pre_same_day: tuple[float, ...] = (0.30, 0.20)
    practice_post_same_day: tuple[float, ...] = (0.04, 0.05)
    backlog_share: float = 0.03
    backlog_days: tuple[int, int] = (90, 260)
    repeat_share: float = 0.06
    sd_child_days: float = 0.3


def simulate_assessment_study(config: AssessmentStudyConfig = AssessmentStudyConfig(),
                              seed: int = 0) -> SyntheticStudy:
    """Assessment-level records with ``assessment_days`` (working days, 0 = same day).

    ``truth``: ``att_days`` (the SofS effect on the mean duration over the pilots' post-period
    assessments, by common random numbers: each assessment's duration with and without the SofS
    effects, everything else equal), ``att_sameday_pp``, and ``naive_att_days`` /
    ``naive_att_sameday_pp``: what a DiD that cannot tell the practice change from SofS targets.
    """
    base = config.base
    rng = np.random.default_rng(seed)
    lay = _la_design(base)
    years, is_pilot = lay.years, lay.is_pilot
    n_la = len(lay.las)
    u, trend, v, tau, size = _la_effects(base, rng, lay)
    la_idx, yr_idx, age, male, eth, dis = _units(base, rng, lay, size)
    n = la_idx.size
    child = _child_ids(rng, la_idx, yr_idx, config.repeat_share)
    first = _first_of(child)
    age, male, eth, dis = age[first], male[first], eth[first], dis[first]
    b = rng.normal(0, config.sd_child_days, child.max() + 1)[child]
    u_d = rng.normal(0, config.sd_la_days, n_la)
    trend_d = rng.normal(0, config.sd_trend_days, n_la)
    v_d = rng.normal(0, config.sd_year_days, years.size)
    tau_d = np.where(is_pilot, rng.normal(config.mu_tau_days, config.sd_tau_days, n_la), 0.0)

    la_name = np.asarray(lay.las)[la_idx]
    t_mid = years.mean()
    tc = years[yr_idx] - t_mid
    cov = _covariate_effect(base, age, male, eth, dis)
    ramp = np.where(is_pilot[la_idx], _ramp(years[yr_idx], lay.adoption[la_idx], lay.settling[la_idx]), 0.0)
    zero0 = logit(base.baseline_share) + u[la_idx] + trend[la_idx] * tc + v[yr_idx] + cov
    loc0 = (np.log(config.median_days) + u_d[la_idx] + trend_d[la_idx] * tc + v_d[yr_idx]
            + config.covariate_scale_days * cov + b)
    # practice change in Pilots 1 and 2: their own levels, then a jump (not SofS)
    zero_pc, loc_pc = zero0.copy(), loc0.copy()
    zero_pre, loc_pre = zero0.copy(), loc0.copy()     # their own levels, no jump
    backlog_la = np.zeros(n, bool)
    for k, la in enumerate(config.practice_change_las):
        sel = la_name == la
        after = sel & (years[yr_idx] >= config.practice_change_year)
        zero_pc[sel] += logit(config.practice_pre_same_day[k]) - logit(base.baseline_share)
        loc_pc[sel] += np.log(config.practice_pre_median_days[k] / config.median_days)
        zero_pre[sel], loc_pre[sel] = zero_pc[sel], loc_pc[sel]
        zero_pc[after] += logit(config.practice_post_same_day[k]) - logit(config.practice_pre_same_day[k])
        loc_pc[after] += np.log(config.practice_post_median_days[k] / config.practice_pre_median_days[k])
        backlog_la |= after

    uz, z = rng.random(n), rng.normal(0, 1, n)
    backlog = backlog_la & (rng.random(n) < config.backlog_share)
    backlog_len = rng.integers(config.backlog_days[0], config.backlog_days[1] + 1, n)

    def durations(zero_eta, loc, with_backlog=True):
        d = np.maximum(1, np.round(np.exp(loc + config.sd_log_days * z))).astype(int)
        d = np.where(backlog & with_backlog, backlog_len, d)
        return np.where(uz < expit(zero_eta), 0, d)

    treat_z, treat_d = tau[la_idx] * ramp, tau_d[la_idx] * ramp
    d_obs = durations(zero_pc + treat_z, loc_pc + treat_d)
    d_no_sofs = durations(zero_pc, loc_pc)
    d_neither = durations(zero_pre, loc_pre, with_backlog=False)

    children = _frame(base, lay, la_idx, yr_idx, age, male, eth, dis, child_id=child, assessment_days=d_obs)
    post = ramp == 1.0
    pre_pilot = is_pilot[la_idx] & (years[yr_idx] < lay.adoption[la_idx])
    pi1, pi0 = expit(zero_pc + treat_z), expit(zero_pc)
    truth = {
        "att_days": float((d_obs - d_no_sofs)[post].mean()),
        "att_sameday_pp": float(100 * (pi1 - pi0)[post].mean()),
        "att_relative": float((d_obs - d_no_sofs)[post].mean() / d_no_sofs[post].mean()),
        "counterfactual_days_post": float(d_no_sofs[post].mean()),
        "naive_att_days": float((d_obs - d_neither)[post].mean()),
        "naive_att_sameday_pp": float(100 * (pi1 - expit(zero_pre))[post].mean()),
        "att_la_days": {lay.las[l]: float((d_obs - d_no_sofs)[post & (la_idx == l)].mean())
                        for l in range(base.n_pilot) if np.any(post & (la_idx == l))},
        "pilot_pre_mean_days": float(d_obs[pre_pilot].mean()),
        "pilot_pre_same_day_share": float((d_obs[pre_pilot] == 0).mean()),
        "mu_tau_days": config.mu_tau_days,
        "mu_tau_same_day": base.mu_tau,
        "practice_change_las": list(config.practice_change_las),
        "n_children": int(n),
        "n_treated_post_children": int(post.sum()),
        "share_records_repeated_children": float((np.bincount(child)[child] > 1).mean()),
        "n_backlog": int(backlog.sum()),
        "config": {k: v for k, v in asdict(base).items() if k != "extra"},
    }
    return SyntheticStudy(children=children, truth=truth, config=base, seed=seed,
                          label=SYNTHETIC_LABEL.replace("study twin", "assessment twin"),
                          la_attributes=synthetic_la_attributes(base, seed))


ASSESSMENT_TWIN_SEED = 1


def assessment_twin(seed: int = ASSESSMENT_TWIN_SEED) -> SyntheticStudy:
    """Embedded default for ``analyses.duration`` (synthetic): 18 LAs x 9 years, ~45,000 assessments."""
    return simulate_assessment_study(AssessmentStudyConfig(), seed=seed)


# ---------------------------------------------------------------- a staggered panel with dynamic effects

@dataclass(frozen=True)
class StaggeredPanelConfig:
    """A unit-by-period panel (one continuous value per unit and period) with staggered
    adoption and effects that grow with time since adoption: ``y_it = a_i + v_t + tau(t - g_i)
    + e_it``, ``tau(e) = effect_start + effect_slope * e`` for ``e >= 0``."""

    n_units: int = 400
    periods: tuple[int, ...] = tuple(range(2001, 2011))
    cohorts: tuple[int, ...] = (2004, 2006, 2008)
    cohort_shares: tuple[float, ...] = (0.2, 0.2, 0.3)     # the rest are never treated
    sd_unit: float = 1.0
    sd_period: float = 0.1
    sd_noise: float = 0.15
    effect_start: float = -0.02
    effect_slope: float = -0.04

    def effect(self, e: np.ndarray) -> np.ndarray:
        e = np.asarray(e, float)
        return np.where(e >= 0, self.effect_start + self.effect_slope * e, 0.0)


def simulate_staggered_panel(config: StaggeredPanelConfig = StaggeredPanelConfig(), seed: int = 0
                             ) -> tuple[pd.DataFrame, dict]:
    """Rows ``unit``, ``period``, ``cohort`` (0 = never treated), ``y``; and the truth: ATT(g,t)
    (``att_gt``: ``"g:t" -> effect``) and the four aggregates of R's ``did`` computed from it
    with the realised cohort sizes (``simple``, ``dynamic`` by event time, ``group``,
    ``calendar``)."""
    rng = np.random.default_rng(seed)
    n, periods = config.n_units, np.asarray(config.periods)
    cohort = rng.choice(np.r_[config.cohorts, 0], size=n, p=np.r_[config.cohort_shares, 1 - sum(config.cohort_shares)])
    a = rng.normal(0, config.sd_unit, n)
    v = rng.normal(0, config.sd_period, periods.size)
    unit = np.repeat(np.arange(n), periods.size)
    t = np.tile(periods, n)
    g = cohort[unit]
    e = np.where(g > 0, t - g, -999)
    effect = config.effect(np.where(g > 0, e, -1))
    y = a[unit] + np.tile(v, n) + effect + rng.normal(0, config.sd_noise, unit.size)
    frame = pd.DataFrame({"unit": [f"u{i:03d}" for i in unit], "period": t, "cohort": g, "y": y})
    att_gt = {}
    weights = {}
    for gg in config.cohorts:
        size = int((cohort == gg).sum())
        for tt in periods[periods >= gg]:
            att_gt[f"{gg}:{tt}"] = float(config.effect(tt - gg))
            weights[(gg, int(tt))] = size
    keys = list(weights)
    w = np.array([weights[k] for k in keys], float)
    val = np.array([att_gt[f"{g_}:{t_}"] for g_, t_ in keys])
    ev = np.array([t_ - g_ for g_, t_ in keys])
    dynamic = {int(k): float(val[ev == k] @ w[ev == k] / w[ev == k].sum()) for k in sorted(set(ev))}
    group = {int(g_): float(val[[k[0] == g_ for k in keys]].mean()) for g_ in config.cohorts}
    sizes = {g_: float((cohort == g_).sum()) for g_ in config.cohorts}
    cal = {int(t_): float(val[[k[1] == t_ for k in keys]] @ w[[k[1] == t_ for k in keys]]
                          / w[[k[1] == t_ for k in keys]].sum()) for t_ in sorted({k[1] for k in keys})}
    truth = {"att_gt": att_gt, "simple": float(val @ w / w.sum()), "dynamic": dynamic,
             "dynamic_overall": float(np.mean(list(dynamic.values()))), "group": group,
             "group_overall": float(sum(group[k] * sizes[k] for k in group) / sum(sizes.values())),
             "calendar": cal, "calendar_overall": float(np.mean(list(cal.values())))}
    return frame, truth
