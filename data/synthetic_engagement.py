"""Synthetic item-level answers for the contrast study, calibrated to what RR1054 published.

The evaluation never published item-level answers. This generator produces a data set with
the published design and summaries, drawn from the same graded response model with a latent
regression that ``models.psychometric_irt`` fits (so it doubles as the truth for recovery
tests). It is SYNTHETIC: every output made from it must say so.

What is calibrated, and to what (report section "Contrast study"):

- design: 60 families in 4 sites; SofS sites Pilot 4 (14 families, 11 social workers) and
  Pilot 9 (18 families, 6 social workers). The two contrast sites' split (14 + 14 families,
  6 and 5 social workers) is NOT published and is an assumption;
- Yatchmenoff subscale means by arm (Table 5; 1-5 codes, lower = more agreement);
- Yatchmenoff competence slopes (Table 6) with their minus signs restored: the printed
  coefficients (249, 169, 468, 382, 307) lost the decimal point and the sign; the t values
  (-2.159 ...) and coefficient/SE ratios show they are -0.249, -0.169, -0.468, -0.382, -0.307;
- Cronbach's alpha about 0.97 (reported 0.972 over the Yatchmenoff items; WAI 0.955 for
  social workers and 0.974 for families);
- WAI: no SofS difference; competence raises both raters' scores (p = 0.041 social worker,
  p = 0.004 family), implemented as competence-trait correlations of about 0.27 and 0.37.
  WAI mean levels were not published: both raters' means are set to about 5.5 of 7 (an
  assumption; equal because the report's paired t-test found no difference between them).

Competence is the family's observed social-worker competence on a 1-5 scale (the report's
CCBC is ordinal; its scale is not published): worker level N(3, 0.75), family observations
within worker N(0, 0.25), clipped to [1, 5] and rounded to 0.1.

The calibration constants below were produced by :func:`calibrate` (run
``uv run python -m data.synthetic_engagement --calibrate``); ``tests/test_irt.py`` checks that
a large draw from the generator reproduces Table 5 and Table 6.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from data.instruments import Instrument, default_instrument

SYNTHETIC_LABEL = "SYNTHETIC data calibrated to RR1054 (not the evaluation's answers)"

#: Table 5: (pilot, contrast) mean subscale scores, 1-5, lower = more agreement.
TABLE5 = {
    "buy_in": (2.0, 1.9),
    "receptivity": (1.7, 1.7),
    "working_relationship": (2.4, 2.2),
    "mistrust": (2.2, 2.0),
    "overall": (2.1, 1.9),
}
#: Table 6: competence slope, SE, t, p, with the minus signs restored.
TABLE6 = {
    "buy_in": (-0.249, 0.115, -2.159, 0.036),
    "receptivity": (-0.169, 0.086, -1.962, 0.055),
    "working_relationship": (-0.468, 0.143, -3.275, 0.002),
    "mistrust": (-0.382, 0.149, -2.564, 0.013),
    "overall": (-0.307, 0.115, -2.661, 0.010),
}
REPORTED_ALPHA = {"yatchmenoff": 0.972, "wai_worker": 0.955, "wai_family": 0.974}
#: WAI competence: p values of the linear regressions (no coefficients were published).
WAI_COMPETENCE_P = {"worker": 0.041, "family": 0.004}


@dataclass(frozen=True)
class SiteSpec:
    name: str
    arm: str
    families: int
    workers: int


DEFAULT_SITES = (
    SiteSpec("Pilot 4", "sofs", 14, 11),
    SiteSpec("Pilot 9", "sofs", 18, 6),
    SiteSpec("Contrast A", "contrast", 14, 6),   # split of the 28 contrast families: assumed
    SiteSpec("Contrast B", "contrast", 14, 5),
)

COMPETENCE_MEAN = 3.0
COMPETENCE_WORKER_SD = 0.75
COMPETENCE_FAMILY_SD = 0.25


@dataclass(frozen=True)
class InstrumentTruth:
    """True parameters of one instrument, on the model's coding (higher = more of the trait).

    ``dimensions`` are subscales (Yatchmenoff) or raters (WAI). ``discrimination`` and
    ``threshold`` are per generated column (dropped items included), in ``columns`` order.
    """

    dimensions: tuple[str, ...]
    columns: tuple[str, ...]
    column_dimension: tuple[int, ...]
    discrimination: np.ndarray
    threshold: np.ndarray
    sofs_effect: np.ndarray
    competence_slope: np.ndarray
    site_sd: float
    worker_sd: float
    corr: float


# --- calibration output (see calibrate()); thresholds = location[d] + shape ---------------
_Y_DIMS = ("buy_in", "receptivity", "working_relationship", "mistrust")
_Y_SHAPE = np.array([-1.6, -0.85, -0.1, 0.9])          # category spacing, model scale
_Y_ITEM_SHIFT = np.array([0.15, -0.1, 0.05, -0.15, 0.1, 0.0, -0.05, 0.0,   # buy-in (Y08 dropped)
                          0.1, -0.1, 0.05, -0.05,                        # receptivity
                          0.1, -0.05, 0.0, -0.05,                        # working relationship
                          0.05, -0.05, 0.0])                             # mistrust
_Y_DISC = np.array([3.8, 3.4, 4.1, 3.6, 3.1, 3.7, 3.5, 0.4,
                    3.6, 4.0, 3.2, 3.7,
                    3.8, 3.5, 4.0, 3.4,
                    3.5, 3.7, 3.2])
_Y_CORR = 0.92
_Y_SITE_SD = 0.15
_Y_WORKER_SD = 0.4
# Solved by calibrate(): location, SofS effect and competence slope per subscale.
_Y_LOCATION = np.array([-0.7685, -1.0514, -0.4275, -0.6660])
_Y_SOFS = np.array([-0.1273, 0.0000, -0.2252, -0.2418])
_Y_SLOPE = np.array([0.3164, 0.2454, 0.5293, 0.4758])

_W_RATERS = ("family", "worker")
_W_SHAPE = np.array([-3.0, -2.3, -1.6, -0.9, -0.1, 0.8])   # 7 categories
_W_ITEM_SHIFT = np.array([0.1, -0.1, 0.05, -0.05, 0.0, 0.1, -0.1, 0.05, -0.05, 0.0, 0.1, -0.1])
_W_DISC = {"family": np.array([3.0, 2.8, 3.2, 2.6, 3.1, 2.9, 3.3, 2.7, 3.0, 2.5, 3.1, 2.9]),
           "worker": np.array([2.2, 2.0, 2.4, 1.9, 2.3, 2.1, 2.5, 2.0, 2.2, 1.8, 2.3, 2.1])}
_W_CORR = 0.5
_W_SITE_SD = 0.15
_W_WORKER_SD = 0.4
_W_MEAN_TARGET = {"family": 5.5, "worker": 5.5}             # assumption: not published; equal, as the
                                                            # report's paired t-test found no difference
_W_COMP_CORR = {"family": 0.37, "worker": 0.27}            # from p = 0.004 and 0.041 at n = 60
_W_LOCATION = np.array([-0.1081, -0.1401])
_W_SLOPE = np.array([0.5478, 0.3857])


def _comp_sd() -> float:
    return float(np.hypot(COMPETENCE_WORKER_SD, COMPETENCE_FAMILY_SD))


def yatchmenoff_truth() -> InstrumentTruth:
    inst = default_instrument("yatchmenoff")
    cols = tuple(i.id for i in inst.items)
    dim = tuple(_Y_DIMS.index(i.dimension) for i in inst.items)
    loc = _Y_LOCATION[list(dim)]
    return InstrumentTruth(
        dimensions=_Y_DIMS, columns=cols, column_dimension=dim, discrimination=_Y_DISC.copy(),
        threshold=loc[:, None] + _Y_ITEM_SHIFT[:, None] + _Y_SHAPE[None, :],
        sofs_effect=_Y_SOFS.copy(), competence_slope=_Y_SLOPE.copy(),
        site_sd=_Y_SITE_SD, worker_sd=_Y_WORKER_SD, corr=_Y_CORR)


def wai_truth() -> InstrumentTruth:
    inst = default_instrument("wai")
    cols, dim, disc, thr = [], [], [], []
    for r, rater in enumerate(_W_RATERS):
        for j, item in enumerate(inst.items):
            cols.append(inst.column(rater, item.id))
            dim.append(r)
            disc.append(_W_DISC[rater][j])
            thr.append(_W_LOCATION[r] + _W_ITEM_SHIFT[j] + _W_SHAPE)
    return InstrumentTruth(
        dimensions=_W_RATERS, columns=tuple(cols), column_dimension=tuple(dim),
        discrimination=np.asarray(disc), threshold=np.asarray(thr),
        sofs_effect=np.zeros(2), competence_slope=_W_SLOPE.copy(),
        site_sd=_W_SITE_SD, worker_sd=_W_WORKER_SD, corr=_W_CORR)


@dataclass
class SyntheticEngagement:
    """A synthetic data set: the wide answer frame plus the truth that generated it."""

    frame: pd.DataFrame
    truth: dict[str, InstrumentTruth]
    theta: dict[str, np.ndarray]
    label: str = SYNTHETIC_LABEL
    sites: tuple[SiteSpec, ...] = field(default=DEFAULT_SITES)


def _design(rng: np.random.Generator, sites: tuple[SiteSpec, ...]) -> pd.DataFrame:
    rows = []
    for s in sites:
        if s.workers > s.families:
            raise ValueError(f"site {s.name}: more workers than families")
        assign = np.concatenate([np.arange(s.workers), rng.integers(0, s.workers, s.families - s.workers)])
        rng.shuffle(assign)
        worker_comp = rng.normal(COMPETENCE_MEAN, COMPETENCE_WORKER_SD, s.workers)
        for f, w in enumerate(assign):
            comp = worker_comp[w] + rng.normal(0.0, COMPETENCE_FAMILY_SD)
            rows.append({"site": s.name, "arm": s.arm, "worker": f"{s.name.replace(' ', '')}-W{w + 1:02d}",
                         "competence": float(np.round(np.clip(comp, 1.0, 5.0), 1))})
    frame = pd.DataFrame(rows)
    frame.insert(0, "family", [f"F{i + 1:03d}" for i in range(len(frame))])
    return frame


def _latent(rng, design: pd.DataFrame, truth: InstrumentTruth) -> np.ndarray:
    D = len(truth.dimensions)
    sites = design["site"].to_numpy()
    workers = design["worker"].to_numpy()
    site_eff = {s: rng.normal(0, truth.site_sd, D) for s in pd.unique(sites)}
    worker_eff = {w: rng.normal(0, truth.worker_sd, D) for w in pd.unique(workers)}
    R = np.full((D, D), truth.corr) + (1 - truth.corr) * np.eye(D)
    eps = rng.multivariate_normal(np.zeros(D), R, size=len(design))
    sofs = (design["arm"] == "sofs").to_numpy(float)[:, None]
    comp = design["competence"].to_numpy(float)[:, None] - COMPETENCE_MEAN
    return (sofs * truth.sofs_effect + comp * truth.competence_slope
            + np.stack([site_eff[s] for s in sites]) + np.stack([worker_eff[w] for w in workers]) + eps)


def _answers(rng, theta: np.ndarray, truth: InstrumentTruth, inst: Instrument) -> pd.DataFrame:
    K = inst.n_categories
    cats = np.asarray(inst.categories)
    lower_better = inst.score_direction == "lower_is_better"
    reverse = {inst.column(r, i.id): i.reverse for r in inst.raters for i in inst.items}
    out = {}
    for c, col in enumerate(truth.columns):
        th = theta[:, truth.column_dimension[c]]
        pstar = 1 / (1 + np.exp(-truth.discrimination[c] * (th[:, None] - truth.threshold[c][None, :])))
        r = (rng.uniform(size=len(th))[:, None] < pstar).sum(axis=1)     # model category
        if lower_better != reverse[col]:
            r = K - 1 - r                                                  # back to the raw code order
        out[col] = cats[r]
    return pd.DataFrame(out)


def simulate_engagement(
    seed: int | None = None,
    *,
    sites: tuple[SiteSpec, ...] = DEFAULT_SITES,
    truth: dict[str, InstrumentTruth] | None = None,
    instruments: tuple[str, ...] = ("yatchmenoff", "wai"),
    missing_rate: float = 0.0,
) -> SyntheticEngagement:
    """Draw one synthetic contrast study (default: the published 60-family design).

    Parameters
    ----------
    seed
        Random seed (same seed, same data); default :data:`DEFAULT_DATA_SEED`, the embedded
        default data set.
    sites
        Site design; the default is the report's (contrast split assumed).
    truth
        Per-instrument truth overriding :func:`yatchmenoff_truth` / :func:`wai_truth`.
    instruments
        Which instruments to generate.
    missing_rate
        Share of answers blanked at random (missing completely at random).
    """
    rng = np.random.default_rng(DEFAULT_DATA_SEED if seed is None else seed)
    design = _design(rng, sites)
    truths = {"yatchmenoff": yatchmenoff_truth(), "wai": wai_truth()}
    truths.update(truth or {})
    parts, thetas, used = [design], {}, {}
    for name in instruments:
        t = truths[name]
        theta = _latent(rng, design, t)
        ans = _answers(rng, theta, t, default_instrument(name))
        if missing_rate > 0:
            mask = rng.uniform(size=ans.shape) < missing_rate
            ans = ans.astype("Int64").mask(mask)
        parts.append(ans)
        thetas[name] = theta
        used[name] = t
    return SyntheticEngagement(pd.concat(parts, axis=1), used, thetas, sites=sites)


def simulate_generic(
    n_persons: int,
    n_items: int = 20,
    *,
    n_dims: int = 4,
    n_categories: int = 5,
    n_sites: int = 4,
    families_per_worker: float = 2.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, Instrument, InstrumentTruth]:
    """A generic item-level data set of any size (benchmarks, scaling tests).

    ``n_items`` items spread evenly over ``n_dims`` subscales, ``n_categories`` ordered
    answers (higher = more of the trait), half the sites SofS, about ``families_per_worker``
    families per social worker; truth: discriminations 1.5-3, SofS effects 0.3, competence
    slopes 0.4, site SD 0.15, worker SD 0.3, trait correlation 0.7.
    """
    from data.instruments import parse_instrument

    rng = np.random.default_rng(seed)
    dims = [f"d{k + 1}" for k in range(n_dims)]
    items = [{"id": f"I{j + 1:03d}", "dimension": dims[j % n_dims]} for j in range(n_items)]
    inst = parse_instrument({"name": "generic", "categories": list(range(1, n_categories + 1)),
                             "score_direction": "higher_is_better", "dimensions": {d: d for d in dims},
                             "items": items})
    per_site = np.full(n_sites, n_persons // n_sites)
    per_site[: n_persons - per_site.sum()] += 1
    sites = tuple(SiteSpec(f"S{k + 1}", "sofs" if k % 2 == 0 else "contrast", int(n),
                           max(1, int(round(n / families_per_worker)))) for k, n in enumerate(per_site))
    design = _design(rng, sites)
    shape = np.linspace(-1.5, 1.5, n_categories - 1)
    truth = InstrumentTruth(
        dimensions=tuple(dims), columns=tuple(i["id"] for i in items),
        column_dimension=tuple(j % n_dims for j in range(n_items)),
        discrimination=rng.uniform(1.5, 3.0, n_items),
        threshold=rng.normal(0, 0.5, (n_items, 1)) + shape[None, :],
        sofs_effect=np.full(n_dims, 0.3), competence_slope=np.full(n_dims, 0.4),
        site_sd=0.15, worker_sd=0.3, corr=0.7)
    theta = _latent(rng, design, truth)
    return pd.concat([design, _answers(rng, theta, truth, inst)], axis=1), inst, truth


def published_summaries(frame: pd.DataFrame) -> pd.DataFrame:
    """The report's own summaries computed on a wide answer frame, the way the report did them.

    Per Yatchmenoff subscale and overall: mean of the (reverse-coded) item averages by arm
    (Table 5) and the OLS slope of the average on competence (Table 6); plus Cronbach's alpha.
    """
    inst = default_instrument("yatchmenoff")
    used = inst.used_items
    vals = frame[[i.id for i in used]].to_numpy(dtype=float, na_value=np.nan).copy()
    lo, hi = inst.categories[0], inst.categories[-1]
    rev = np.array([i.reverse for i in used])
    vals[:, rev] = lo + hi - vals[:, rev]
    arm = frame["arm"].to_numpy()
    comp = frame["competence"].to_numpy(float)
    rows = []
    for dim in [*_Y_DIMS, "overall"]:
        cols = np.ones(len(used), bool) if dim == "overall" else np.array([i.dimension == dim for i in used])
        avg = np.nanmean(vals[:, cols], axis=1)
        rows.append({"subscale": dim, "pilot_mean": float(avg[arm == "sofs"].mean()),
                     "contrast_mean": float(avg[arm == "contrast"].mean()),
                     "competence_slope": float(np.polyfit(comp, avg, 1)[0]),
                     "table5_pilot": TABLE5[dim][0], "table5_contrast": TABLE5[dim][1],
                     "table6_slope": TABLE6[dim][0]})
    out = pd.DataFrame(rows)
    x = vals[~np.isnan(vals).any(axis=1)]
    k = x.shape[1]
    out.attrs["alpha"] = float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1)))
    return out


def distance_to_report(frame: pd.DataFrame) -> float:
    """How far a sample's Table 5/6 summaries and alpha are from the published ones."""
    s = published_summaries(frame)
    d = ((s["pilot_mean"] - s["table5_pilot"]) ** 2 + (s["contrast_mean"] - s["table5_contrast"]) ** 2
         + 4 * (s["competence_slope"] - s["table6_slope"]) ** 2).sum()
    return float(d + ((s.attrs["alpha"] - REPORTED_ALPHA["yatchmenoff"]) * 5) ** 2)


def closest_seed(seeds: range = range(2000)) -> int:
    """The seed (of ``seeds``) whose 60-family sample is closest to the report's summaries.

    Sampling variation with 60 families in 4 sites is large (arm differences of +-0.4 points
    are common), so a random draw can look nothing like Table 5. The embedded default data
    set is the draw, among the first 2000 seeds, that best reproduces Table 5, Table 6 and
    alpha (see :data:`DEFAULT_DATA_SEED`).
    """
    return min(seeds, key=lambda s: distance_to_report(simulate_engagement(s, instruments=("yatchmenoff",)).frame))


#: The embedded default synthetic data set: ``closest_seed()``.
DEFAULT_DATA_SEED = 1552


# --------------------------------------------------------------------------------------------
# Calibration (how the constants above were found)
# --------------------------------------------------------------------------------------------

def _population(n: int, seed: int, D: int, site_sd: float, worker_sd: float, corr: float):
    rng = np.random.default_rng(seed)
    comp = np.clip(rng.normal(COMPETENCE_MEAN, _comp_sd(), n), 1, 5)
    R = np.full((D, D), corr) + (1 - corr) * np.eye(D)
    other = (rng.multivariate_normal(np.zeros(D), R, size=n)
             + rng.normal(0, site_sd, (n, D)) + rng.normal(0, worker_sd, (n, D)))
    return comp, other


def _mean_code(theta: np.ndarray, disc: np.ndarray, thr: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Expected average code over items per person (codes indexed by model category)."""
    pstar = 1 / (1 + np.exp(-disc[None, :, None] * (theta[:, None, None] - thr[None])))
    ones = np.ones(pstar.shape[:-1] + (1,))
    p = np.concatenate([ones, pstar], -1) - np.concatenate([pstar, 0 * ones], -1)
    return (p @ codes).mean(axis=1)


def _solve_dim(disc, shift, shape, codes, comp, other, target_contrast, target_sofs, target_slope):
    from scipy.optimize import brentq

    def stats(loc, beta, gamma):
        thr = loc + shift[:, None] + shape[None, :]
        base = gamma * (comp - COMPETENCE_MEAN) + other
        m0 = _mean_code(base, disc, thr, codes)
        m1 = _mean_code(base + beta, disc, thr, codes)
        slope = np.polyfit(comp, m0, 1)[0]
        return m0.mean(), m1.mean(), slope

    gamma, loc, beta = 0.5 * np.sign(target_slope * (codes[-1] - codes[0])), 0.0, 0.0
    for _ in range(4):
        loc = brentq(lambda x: stats(x, 0.0, gamma)[0] - target_contrast, -6, 6)
        beta = brentq(lambda x: stats(loc, x, gamma)[1] - target_sofs, -3, 3) if target_sofs != target_contrast else 0.0
        sgn = np.sign(gamma) or 1.0
        gamma = brentq(lambda g: stats(loc, 0.0, g)[2] - target_slope, 1e-4 * sgn, 3.0 * sgn)
    return loc, beta, gamma


def calibrate(n: int = 20000, seed: int = 1) -> dict[str, np.ndarray]:
    """Solve for the location, SofS effect and competence slope of each dimension.

    Yatchmenoff: for each subscale, the contrast-arm mean (Table 5), the SofS-arm mean
    (Table 5) and the slope of the average score on competence (Table 6) of a large
    population drawn from the generator. WAI: the assumed means and the competence-score
    correlations. Monte Carlo with common random numbers, nested root finding.
    """
    y_codes = np.arange(5, 0, -1, dtype=float)   # model category 0..4 -> code 5..1
    comp, other = _population(n, seed, 4, _Y_SITE_SD, _Y_WORKER_SD, _Y_CORR)
    inst = default_instrument("yatchmenoff")
    loc, sofs, slope = [], [], []
    for d, dim in enumerate(_Y_DIMS):
        idx = [k for k, it in enumerate(inst.items) if it.dimension == dim and not it.drop]
        pil, con = TABLE5[dim]
        out = _solve_dim(_Y_DISC[idx], _Y_ITEM_SHIFT[idx], _Y_SHAPE, y_codes, comp, other[:, d], con, pil, TABLE6[dim][0])
        loc.append(out[0]); sofs.append(out[1]); slope.append(out[2])
    w_codes = np.arange(1, 8, dtype=float)
    comp_w, other_w = _population(n, seed + 1, 2, _W_SITE_SD, _W_WORKER_SD, _W_CORR)
    v_other = 1 + _W_SITE_SD**2 + _W_WORKER_SD**2
    w_loc, w_slope = [], []
    for r, rater in enumerate(_W_RATERS):
        rho = _W_COMP_CORR[rater]
        gamma = rho * np.sqrt(v_other / (1 - rho**2)) / _comp_sd()
        from scipy.optimize import brentq
        th = gamma * (comp_w - COMPETENCE_MEAN) + other_w[:, r]
        loc_r = brentq(lambda x: _mean_code(th, _W_DISC[rater], x + _W_ITEM_SHIFT[:, None] + _W_SHAPE[None, :],
                                            w_codes).mean() - _W_MEAN_TARGET[rater], -6, 6)
        w_loc.append(loc_r); w_slope.append(gamma)
    return {"_Y_LOCATION": np.array(loc), "_Y_SOFS": np.array(sofs), "_Y_SLOPE": np.array(slope),
            "_W_LOCATION": np.array(w_loc), "_W_SLOPE": np.array(w_slope)}


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Synthetic engagement data: calibrate or write a CSV")
    p.add_argument("--calibrate", action="store_true", help="print the calibration constants")
    p.add_argument("--write", default=None, help="write a synthetic data set to this CSV")
    p.add_argument("--seed", type=int, default=None, help="data seed (default: DEFAULT_DATA_SEED)")
    p.add_argument("--closest-seed", action="store_true", help="search the seed closest to the report")
    args = p.parse_args(argv)
    if args.calibrate:
        for k, v in calibrate().items():
            print(f"{k} = np.array([{', '.join(f'{x:.4f}' for x in v)}])")
    if args.closest_seed:
        seed = closest_seed()
        print(f"DEFAULT_DATA_SEED = {seed}")
        print(published_summaries(simulate_engagement(seed).frame).round(3).to_string())
    if args.write:
        simulate_engagement(DEFAULT_DATA_SEED if args.seed is None else args.seed).frame.to_csv(args.write, index=False)
        print(f"wrote {args.write} ({SYNTHETIC_LABEL})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


__all__ = ["simulate_generic", "DEFAULT_DATA_SEED", "published_summaries", "distance_to_report", "closest_seed", "SYNTHETIC_LABEL", "TABLE5", "TABLE6", "REPORTED_ALPHA", "WAI_COMPETENCE_P", "SiteSpec",
           "DEFAULT_SITES", "InstrumentTruth", "SyntheticEngagement", "simulate_engagement",
           "yatchmenoff_truth", "wai_truth", "calibrate", "replace"]
