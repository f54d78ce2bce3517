r"""From tidy cells to the arrays of a staggered-adoption DiD.

A *cell* is one unit (an LA, a county) in one period (a year), optionally split by covariate
strata, with the sufficient statistics of its outcome (:mod:`models.did.likelihoods`). The
canonical columns are ``unit``, ``period`` (an integer), ``cohort`` (the first treated period;
NaN for never-treated units), optionally ``settling`` (periods after adoption left out of the
analysis, e.g. the SofS settling-in years), the statistics (``y``, ``n``, ...) and covariate
columns. Analyses rename their own columns to these (:func:`canonical_cells`).

Design choices, each a field of :class:`DesignSpec`:

``effects``
    ``"cohort_period"``: one effect per adoption cohort ``g`` and period ``t >= g - a``,
    ATT(g,t), as R's ``did`` and Sun and Abraham estimate them. ``"unit"``: one effect per
    treated unit, constant after settling-in (the SofS pilots' structure).
``control``
    ``"never"``: period effects are identified by never-treated units; each cohort's own
    pre-adoption periods only anchor its level (and give the pre-trend terms).
    ``"notyet"``: every untreated observation, later cohorts' pre-adoption periods included,
    identifies the period effects.
``base``
    ``"last"``: a cohort is compared with its last period before adoption (``g - a - 1``), as
    ``did`` and Sun and Abraham do; ``"all"``: with all its pre-adoption periods, as the
    imputation estimator of Borusyak, Jaravel and Spiess does.
``anticipation``
    ``a >= 0`` periods before adoption in which the treatment may already act; they get
    effects (event times ``-a .. -1``) and the base moves to ``g - a - 1``.

How control and base enter the model: pre-trend terms ``pi`` on treated cohorts' periods
before adoption (``t < g - a``), one linear map ``B`` from free parameters to cells:

==========  ======  ==================================================================  =========================
control     base    pre-trend terms                                                     equals (linear model)
==========  ======  ==================================================================  =========================
never       last    free for every ``t < g - a - 1`` (the base period is the reference)  ``did``, never-treated
never       all     zero-sum over each cohort's pre-adoption periods                    DiD on the pre-period mean
notyet      all     none: every untreated observation is a control                      BJS imputation
notyet      last    one constant per cohort on its periods before the base              ``did``, not-yet-treated
                                                                                        (approximately)
==========  ======  ==================================================================  =========================

With ``never``/``last`` the terms are the event study's pre-period effects against the base
(``did``'s universal base). With ``notyet``/``last`` the earlier pre-periods still identify
period effects (their changes over time are controls) but not the cohort's level; the change
from them to the base is absorbed by the constant, so comparisons spanning a later cohort's
base period lose that cohort as a control: close to, not identical with, ``did``'s
not-yet-treated estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.did.likelihoods import NO_CUTOFF, Likelihood, get_likelihood

EFFECTS = ("cohort_period", "unit")
CONTROLS = ("never", "notyet")
BASES = ("last", "all")
PERIOD_EFFECTS = ("fixed", "hierarchical")


@dataclass(frozen=True)
class DesignSpec:
    """What the DiD estimates and how (see the module docstring)."""

    likelihood: str = "normal"
    effects: str = "cohort_period"
    control: str = "never"
    base: str = "last"
    anticipation: int = 0
    unit_trends: bool = False
    covariates: tuple[str, ...] = ()
    exclude_settling: bool = True

    def __post_init__(self) -> None:
        get_likelihood(self.likelihood)
        for value, allowed, what in ((self.effects, EFFECTS, "effects"), (self.control, CONTROLS, "control"),
                                     (self.base, BASES, "base")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        if self.anticipation < 0:
            raise ValueError("anticipation must be >= 0 periods")
        if self.unit_trends and self.effects == "cohort_period" and self.control == "never" and self.base == "last":
            raise ValueError("unit-specific trends need the all-pre-periods base (--base all): with the last-period "
                             "base a cohort's earlier pre-periods carry their own pre-trend terms and cannot "
                             "identify its trend")

    @property
    def lik(self) -> Likelihood:
        return get_likelihood(self.likelihood)


def cohort_label(g: float) -> str:
    return "never" if not np.isfinite(g) else str(int(g))


def gt_label(g: int, t: int) -> str:
    return f"{int(g)}:{int(t)}"


@dataclass
class DidDesign:
    """Arrays for :func:`models.did.model.build_did_model`, with the labels behind them.

    ``effect_cells`` are the ATT(g,t) cells ``(g, t, e = t - g)``; ``weights`` their weights in
    the aggregations (the cells' ``n``: records, trials, exposure or 1 per unit-period).
    """

    spec: DesignSpec
    cells: pd.DataFrame
    units: list[str]
    treated_units: list[str]
    periods: list[int]
    cohorts: list[int]                 # treated cohorts, in order
    unit_cohort: list[str]             # per unit: its cohort label ('never' or the year)
    covariate_names: list[str]
    effect_cells: list[tuple[int, int, int]]
    pretrend_cells: list[tuple[int, int, int]]
    data: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def cutoff(self) -> float | None:
        """The hurdle's largest cut-off in days (durations truncated there), or ``None``."""
        lu = self.data.get("log_upper")
        if lu is None or not np.any(lu < NO_CUTOFF):
            return None
        return float(np.exp(lu[lu < NO_CUTOFF].max()))

    @property
    def lik(self) -> Likelihood:
        return self.spec.lik

    @property
    def gt_labels(self) -> list[str]:
        return [gt_label(g, t) for g, t, _ in self.effect_cells]

    @property
    def pre_labels(self) -> list[str]:
        return [gt_label(g, t) for g, t, _ in self.pretrend_cells]

    @property
    def cohort_levels(self) -> list[str]:
        return sorted(set(self.unit_cohort), key=lambda c: (c == "never", c))

    @property
    def coords(self) -> dict[str, list]:
        return {"unit": self.units, "treated_unit": self.treated_units, "period": self.periods,
                "covariate": self.covariate_names, "cohort_period": self.gt_labels,
                "pre_cohort_period": self.pre_labels, "cohort": self.cohort_levels,
                "event_time": sorted({e for _, _, e in self.effect_cells}),
                "pretrend_param": list(range(self.data["pre_basis"].shape[1]))}

    @property
    def n_units_by_cohort(self) -> dict[str, int]:
        return pd.Series(self.unit_cohort).value_counts().to_dict()

    @property
    def gt_weights(self) -> np.ndarray:
        return self.data["gt_weight"]


def canonical_cells(frame: pd.DataFrame, *, unit: str = "unit", period: str = "period", cohort: str = "cohort",
                    settling: str | None = None) -> pd.DataFrame:
    """``frame`` with its design columns renamed to the engine's (unit, period, cohort, settling)."""
    out = frame.rename(columns={unit: "unit", period: "period", cohort: "cohort",
                                **({settling: "settling"} if settling else {})})
    if "settling" not in out.columns:
        out["settling"] = 0
    out["unit"] = out["unit"].astype(str)
    out["period"] = pd.to_numeric(out["period"]).astype(int)
    out["cohort"] = pd.to_numeric(out["cohort"], errors="coerce").astype(float)
    out.loc[out["cohort"] <= 0, "cohort"] = np.nan      # 0 or empty: never treated
    out["settling"] = pd.to_numeric(out["settling"]).fillna(0).astype(int)
    return out


def add_event_time(cells: pd.DataFrame, anticipation: int = 0) -> pd.DataFrame:
    """Event time ``e = t - g`` (NaN for never-treated units) and the phase of each cell:
    'pre', 'anticipation', 'settling', 'post' (treated units) or 'control'; cells flagged in
    an optional boolean column ``exited`` (a unit that left the programme, its later periods
    kept as untreated) are 'exited': neither treated nor pre-adoption."""
    out = cells.copy()
    g = out["cohort"].to_numpy(float)
    e = out["period"].to_numpy(float) - g
    out["event_time"] = e
    treated = np.isfinite(g)
    s = out["settling"].to_numpy()
    phase = np.where(e < -anticipation, "pre", np.where(e < 0, "anticipation", np.where(e < s, "settling", "post")))
    phase = np.where(treated, phase, "control")
    if "exited" in out.columns:
        phase = np.where(out["exited"].fillna(False).to_numpy(bool), "exited", phase)
    out["phase"] = phase
    return out


def constrained_basis(weights: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``{v : w' v = 0}`` (a zero weighted mean), ``K x (K - 1)``:
    deviations ``B u`` with ``u ~ N(0, I)`` carry no direction the data cannot see (a centring
    matrix applied to ``K`` free values would leave one, which mixes badly). Entries with zero
    weight (anticipation periods in the simple aggregate) are free; all-zero weights: plain
    centring."""
    from scipy.linalg import null_space

    w = np.asarray(weights, float)
    if not w.sum() > 0:
        w = np.ones_like(w)
    return null_space(w[None, :])


def group_basis(groups: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Block-diagonal :func:`constrained_basis` within each group (equal weights by default):
    deviations with a zero weighted mean in every group, none for a group of one."""
    k = len(groups)
    w = np.ones(k) if weights is None else np.asarray(weights, float)
    blocks = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if len(idx) > 1:
            b = np.zeros((k, len(idx) - 1))
            b[idx] = constrained_basis(w[idx])
            blocks.append(b)
    return np.column_stack(blocks) if blocks else np.zeros((k, 0))


def _pre_basis(cells: pd.DataFrame, spec: DesignSpec) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """The pre-trend cells and the map ``B`` (cells x free parameters); see the module docstring.
    The unit structure has none: its treated units' levels rest on all their pre-periods."""
    a = spec.anticipation
    pre = cells[cells["phase"] == "pre"]
    if spec.effects == "unit" or (spec.control == "notyet" and spec.base == "all"):
        return [], np.zeros((0, 0))
    if spec.base == "last":    # the base period g - a - 1 is the reference
        pre = pre[pre["period"] < pre["cohort"] - a - 1]
    keys = sorted({(int(g), int(t)) for g, t in zip(pre["cohort"], pre["period"])})
    cells_out = [(g, t, t - g) for g, t in keys]
    blocks = []
    for g in sorted({g for g, _ in keys}):
        k = sum(1 for gg, _ in keys if gg == g)
        if spec.control == "never" and spec.base == "last":
            blocks.append(np.eye(k))
        elif spec.control == "never":         # zero-sum over the cohort's pre-adoption periods
            blocks.append(constrained_basis(np.ones(k)))
        else:                                 # notyet + last: one constant per cohort
            blocks.append(np.ones((k, 1)))
    if not blocks:
        return cells_out, np.zeros((0, 0))
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    basis = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        basis[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return cells_out, basis


def _natural(label: str) -> tuple:
    head, _, tail = str(label).rpartition(" ")
    return (head, int(tail)) if tail.isdigit() else (str(label), 0)


def did_design(cells: pd.DataFrame, spec: DesignSpec, *, units: list[str] | None = None,
               periods: list[int] | None = None) -> DidDesign:
    """Index arrays, covariate contrasts, effect and pre-trend maps for ``cells``.

    ``cells`` has the canonical columns (:func:`canonical_cells`); settling-in cells are left
    out when ``spec.exclude_settling``. Under ``control="notyet"`` the periods in which every
    unit is treated cannot be compared with anything and are left out (said in ``notes``).
    ``units``/``periods`` fix the coordinate order (default: treated units first, natural
    order). Covariate levels are coded against the first level (sorted) and centred.
    """
    lik = spec.lik
    work = add_event_time(cells, spec.anticipation)
    notes: list[str] = []
    if spec.exclude_settling and (work["phase"] == "settling").any():
        work = work[work["phase"] != "settling"]
    if spec.control == "notyet":
        untreated = work["phase"].isin(["pre", "control", "exited"])
        has_control = work.loc[untreated].groupby("period").size()
        lost = sorted(set(work["period"]) - set(has_control.index))
        if lost:
            notes.append(f"periods {lost}: every unit is treated, so no not-yet-treated control exists; left out")
            work = work[~work["period"].isin(lost)]
    work = work.reset_index(drop=True)
    treated_mask = np.isfinite(work["cohort"].to_numpy(float))
    if units is None:
        tr = sorted(work.loc[treated_mask, "unit"].unique(), key=_natural)
        units = tr + sorted(set(work["unit"]) - set(tr), key=_natural)
    treated_units = [u for u in units if u in set(work.loc[treated_mask, "unit"])]
    periods = sorted(int(p) for p in work["period"].unique()) if periods is None else list(periods)
    unit_idx = pd.Categorical(work["unit"], categories=units).codes
    if (unit_idx < 0).any():
        raise ValueError("cells contain a unit that is not in `units`")
    period_idx = pd.Categorical(work["period"], categories=periods).codes
    cohort_of = work.groupby("unit")["cohort"].first()
    unit_cohort = [cohort_label(cohort_of.get(u, np.nan)) for u in units]

    columns, names = [], []
    for cov in spec.covariates:
        levels = sorted(work[cov].astype(str).unique())
        for level in levels[1:]:
            columns.append((work[cov].astype(str) == level).to_numpy(float))
            names.append(f"{cov}[{level}]")
    x = np.column_stack(columns) if columns else np.zeros((len(work), 0))
    x = x - x.mean(axis=0)

    # effect cells: treated observations (anticipation and post; settling when kept)
    eff = work["phase"].isin(["anticipation", "settling", "post"]).to_numpy()
    keys = sorted({(int(g), int(t)) for g, t in zip(work.loc[eff, "cohort"], work.loc[eff, "period"])})
    effect_cells = [(g, t, t - g) for g, t in keys]
    gt_lookup = {(g, t): i for i, (g, t, _) in enumerate(effect_cells)}
    gt_idx = np.array([gt_lookup.get((int(g), int(t)), -1) if e else -1
                       for g, t, e in zip(np.nan_to_num(work["cohort"].to_numpy(float), nan=-1),
                                          work["period"], eff)], dtype=int)
    n = work["n"].to_numpy(float)
    gt_weight = np.bincount(gt_idx[gt_idx >= 0], weights=n[gt_idx >= 0], minlength=len(effect_cells))
    # unit structure: the effect acts after settling-in (post cells; anticipation cells too)
    active = work["phase"].isin(["anticipation", "post"]).to_numpy() if spec.effects == "unit" else eff
    tu_lookup = {u: i for i, u in enumerate(treated_units)}
    treated_unit_idx = np.array([tu_lookup.get(u, 0) for u in work["unit"]], dtype=int)

    pre_cells, basis = _pre_basis(work, spec)
    pre_lookup = {(g, t): i for i, (g, t, _) in enumerate(pre_cells)}
    pre_idx = np.array([pre_lookup.get((int(g), int(t)), -1) if np.isfinite(g) else -1
                        for g, t in zip(work["cohort"].to_numpy(float), work["period"])], dtype=int)
    event = work["event_time"].to_numpy(float)
    centre = (min(periods) + max(periods)) / 2
    data = {
        "unit_idx": unit_idx.astype(int),
        "period_idx": period_idx.astype(int),
        "time_c": work["period"].to_numpy(float) - centre,
        "x": x,
        "treated": active.astype(float),
        "gt_idx": gt_idx,
        "gt_event": np.array([e for _, _, e in effect_cells], dtype=int),
        "gt_weight": gt_weight,
        "treated_unit_idx": treated_unit_idx,
        "pre_idx": pre_idx,
        "pre_basis": basis,
        "gt_pos": np.maximum(gt_idx, 0),
        "has_gt": (gt_idx >= 0).astype(float),
        "post": ((gt_idx >= 0) & (np.nan_to_num(event, nan=-1.0) >= 0)
                 & (active if spec.effects == "unit" else True)).astype(float),
        "pre_pos": np.maximum(pre_idx, 0),
        "has_pre": (pre_idx >= 0).astype(float),
        "unit_cohort_idx": np.array([sorted(set(unit_cohort), key=lambda c: (c == "never", c)).index(c)
                                     for c in unit_cohort], dtype=int),
        "event_time": event,
        "n": n.astype(np.int64) if (lik.link == "logit" or lik.hurdle) and np.all(n == np.round(n)) else n,
        "y": work["y"].to_numpy(np.int64) if lik.integer_y else work["y"].to_numpy(float),
    }
    for stat in (*lik.stats, *lik.optional):
        if stat in ("y", "n"):
            continue
        if stat in work.columns:
            data[stat] = work[stat].to_numpy(np.int64 if stat == "n_pos" else float)
    if lik.hurdle:      # every hurdle graph reads a cut-off (none: NO_CUTOFF), so one graph serves both
        lu = data.get("log_upper", np.full(len(work), NO_CUTOFF))
        data["log_upper"] = np.where(np.isfinite(lu), lu, NO_CUTOFF)
    cohorts = sorted({int(g) for g in work.loc[treated_mask, "cohort"]})
    return DidDesign(spec, work, list(units), treated_units, periods, cohorts, unit_cohort, names, effect_cells,
                     pre_cells, data, notes)
