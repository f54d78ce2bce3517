"""Figures for the DiD analyses. Each takes summaries (tables or draws), returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

PRIOR_COLOURS = {"sceptical": "#1b9e77", "neutral": "#444444", "enthusiastic": "#d95f02"}
SYNTHETIC_NOTE = "SYNTHETIC DATA: illustration of the method, not evidence about real children"


def _colour(name: str, i: int) -> str:
    return PRIOR_COLOURS.get(name, f"C{i}")


def _caption(fig: plt.Figure, synthetic: bool) -> None:
    if synthetic:
        fig.text(0.5, -0.02, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")


def plot_effect_by_prior(draws: dict[str, np.ndarray], *, rope: float, xlabel: str, title: str,
                         report_value: float | None = None, prior_draws: dict[str, np.ndarray] | None = None,
                         synthetic: bool = False) -> plt.Figure:
    """Posterior densities of an effect under each named prior, ROPE shaded, report marked."""
    fig, ax = plt.subplots(figsize=(7, 4))
    allx = np.concatenate([np.ravel(v) for v in draws.values()])
    lo, hi = np.quantile(allx, [0.001, 0.999])
    pad = 0.15 * (hi - lo)
    grid = np.linspace(min(lo - pad, -rope * 1.5), max(hi + pad, rope * 1.5), 400)
    ax.axvspan(-rope, rope, color="0.9", label=f"ROPE (±{rope:g})")
    for i, (name, x) in enumerate(draws.items()):
        ax.plot(grid, gaussian_kde(np.ravel(x))(grid), color=_colour(name, i), lw=2, label=f"{name} posterior")
        if prior_draws and name in prior_draws:
            px = np.ravel(prior_draws[name])
            px = px[(px > grid[0]) & (px < grid[-1])]
            if px.size > 10:
                ax.plot(grid, gaussian_kde(px)(grid) * px.size / np.ravel(prior_draws[name]).size,
                        color=_colour(name, i), lw=1, ls=":", label=f"{name} prior")
    if report_value is not None:
        ax.axvline(report_value, color="firebrick", ls="--", label=f"report: {report_value:g}")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("posterior density")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    _caption(fig, synthetic)
    return fig


def plot_forest(table: pd.DataFrame, *, label_col: str, xlabel: str, title: str, truth: dict | None = None,
                synthetic: bool = False) -> plt.Figure:
    """Forest plot: one row per ``label_col`` (and per prior), mean and 95% interval."""
    priors = list(dict.fromkeys(table["prior"]))
    labels = list(dict.fromkeys(table[label_col]))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.5))
    offsets = np.linspace(-0.25, 0.25, len(priors)) if len(priors) > 1 else [0.0]
    for i, (prior, off) in enumerate(zip(priors, offsets)):
        sub = table[table["prior"] == prior].set_index(label_col).loc[labels]
        ypos = np.arange(len(labels)) + off
        ax.errorbar(sub["mean"], ypos, xerr=[sub["mean"] - sub["eti95_low"], sub["eti95_high"] - sub["mean"]],
                    fmt="o", color=_colour(prior, i), ms=4, capsize=2, label=prior)
    if truth:
        ax.scatter([truth.get(lbl, np.nan) for lbl in labels], np.arange(len(labels)), marker="x",
                   color="firebrick", zorder=5, label="true (synthetic)")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    _caption(fig, synthetic)
    return fig


def plot_event_study(table: pd.DataFrame, *, threshold: float, ylabel: str, xlabel: str = "years relative to adoption",
                     title: str = "Event study: effects by time relative to adoption (cohorts not mixed)",
                     synthetic: bool = False) -> plt.Figure:
    """Event-study effects by time relative to adoption with 95% intervals and P(|pre| > t);
    the base period (held at 0) is drawn as a hollow marker."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(table))
    pre = table["pre_period"].to_numpy(bool)
    for mask, colour, label in [(pre, "C0", "pre-adoption (parallel-trends check)"),
                                (~pre, "C3", "after adoption (settling-in and post)")]:
        ax.errorbar(x[mask], table["mean"][mask],
                    yerr=[(table["mean"] - table["eti95_low"])[mask], (table["eti95_high"] - table["mean"])[mask]],
                    fmt="o", color=colour, capsize=3, label=label)
    if "reference" in table.columns:
        ref = table["reference"].to_numpy(bool)
        ax.plot(x[ref], np.zeros(ref.sum()), "o", mfc="white", color="C0", label="base period (reference)")
    for xi, row in zip(x, table.itertuples()):
        if row.pre_period and not getattr(row, "reference", False):
            ax.annotate(f"P(|·|>{threshold:g})\n= {row.p_abs_gt_threshold:.2f}", (xi, row.eti95_high),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.axhspan(-threshold, threshold, color="0.9")
    ax.axhline(0, color="k", lw=0.8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.15 * (hi - lo))   # room for the P(|pre-trend| > t) labels
    ax.set_xticks(x, table["event_time"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    _caption(fig, synthetic)
    return fig


def plot_share_ppc(table: pd.DataFrame, *, ylabel: str, xlabel: str = "period", synthetic: bool = False) -> plt.Figure:
    """Observed value by arm and period against the posterior predictive mean and 95% band."""
    fig, ax = plt.subplots(figsize=(7, 4))
    time = "period" if "period" in table.columns else "year"
    for i, (arm, sub) in enumerate(table.groupby("arm", sort=True)):
        sub = sub.sort_values(time)
        ax.fill_between(sub[time], sub["pred_low"], sub["pred_high"], color=f"C{i}", alpha=0.2)
        ax.plot(sub[time], sub["pred_mean"], color=f"C{i}", lw=1.5, label=f"{arm}: posterior predictive")
        ax.plot(sub[time], sub["observed"], "o", color=f"C{i}", label=f"{arm}: observed")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Posterior predictive check: observed vs predicted by arm and period")
    ax.legend(fontsize=8, frameon=False)
    _caption(fig, synthetic)
    return fig


def plot_prior_predictive(observed: float, simulated: dict[str, np.ndarray], *, xlabel: str, share: bool = True,
                          synthetic: bool = False) -> plt.Figure:
    """Prior predictive distribution of the overall value under each prior (a share in % when
    ``share``), observed marked."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if share:
        bins = np.linspace(0, 100, 51)
    else:
        allx = np.concatenate([np.ravel(v) for v in simulated.values()])
        lo, hi = np.quantile(allx[np.isfinite(allx)], [0.01, 0.99])
        bins = np.linspace(min(lo, observed), max(hi, observed), 51)
    for i, (name, x) in enumerate(simulated.items()):
        ax.hist(np.ravel(x), bins=bins, histtype="step", lw=1.5, density=True, color=_colour(name, i), label=name)
    ax.axvline(observed, color="firebrick", ls="--", label=f"observed {observed:.1f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("prior predictive density")
    ax.set_title("Prior predictive check")
    ax.legend(fontsize=8, frameon=False)
    _caption(fig, synthetic)
    return fig


def plot_sensitivity(table: pd.DataFrame, *, synthetic: bool = False) -> plt.Figure:
    """Rambachan-Roth sensitivity: for each restriction (columns) and parameter (colours), the
    95% robust credible interval of the identified set against M, with the breakdown where it
    first includes 0 (one row per effect)."""
    effects = list(dict.fromkeys(table["effect"]))
    kinds = list(dict.fromkeys(table["restriction"]))
    fig, axes = plt.subplots(len(effects), len(kinds), figsize=(6.5 * len(kinds), 3.6 * len(effects)), squeeze=False)
    for i, eff in enumerate(effects):
        for j, kind in enumerate(kinds):
            ax = axes[i, j]
            sub = table[(table["effect"] == eff) & (table["restriction"] == kind)]
            for c, (param, g) in enumerate(sub.groupby("parameter", sort=False)):
                g = g.sort_values("m")
                ax.fill_between(g["m"], g["robust_low"], g["robust_high"], color=f"C{c}", alpha=0.2)
                ax.plot(g["m"], g["lb_mean"], color=f"C{c}", lw=1, ls="--")
                ax.plot(g["m"], g["ub_mean"], color=f"C{c}", lw=1, ls="--", label=f"{param}: identified set (mean)")
                ax.plot([], [], color=f"C{c}", lw=6, alpha=0.2, label=f"{param}: 95% robust credible interval")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xlabel("Mbar (relative magnitudes)" if kind == "relative_magnitudes" else "M (smoothness)")
            ax.set_ylabel(f"effect ({eff})")
            ax.set_title(f"{kind.replace('_', ' ')} (Rambachan & Roth 2023)")
            ax.legend(fontsize=7, frameon=False)
    _caption(fig, synthetic)
    fig.tight_layout()
    return fig


FAMILY_COLOURS = {"main": "k", "exclusion": "C0", "data definition": "C2", "repeated children": "C4", "specification": "C6",
                  "misclassification": "C1", "moderator": "C5", "leave one LA out": "0.55"}


def plot_robustness(table: pd.DataFrame, *, xlabel: str, title: str, report_value: float | None = None,
                    synthetic: bool = False) -> plt.Figure:
    """Forest plot of the effect under each robustness analysis (posterior mean, 95% interval)."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.36 * len(t) + 2.0))
    y = np.arange(len(t))
    main = t[t["family"] == "main"]
    if len(main):
        ax.axvspan(float(main["eti95_low"].iloc[0]), float(main["eti95_high"].iloc[0]), color="0.92", zorder=0)
    seen = set()
    for i, row in t.iterrows():
        colour = FAMILY_COLOURS.get(row["family"], "C7")
        label = row["family"] if row["family"] not in seen else None
        seen.add(row["family"])
        ax.errorbar(row["mean"], i, xerr=[[row["mean"] - row["eti95_low"]], [row["eti95_high"] - row["mean"]]],
                    fmt="o", color=colour, ms=4, capsize=2, label=label)
    if report_value is not None:
        ax.axvline(report_value, color="firebrick", ls="--", lw=1, label=f"report: {report_value:g}")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, t["analysis"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=7, frameon=False, loc="best")
    fig.tight_layout()
    _caption(fig, synthetic)
    return fig


def plot_duration_ppc(table: pd.DataFrame, *, synthetic: bool = False) -> plt.Figure:
    """Observed vs posterior-predicted mean duration and same-day share by arm and year."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    time = "period" if "period" in table.columns else "year"
    for i, (arm, sub) in enumerate(table.groupby("arm", sort=True)):
        sub = sub.sort_values(time)
        for ax, (obs, mean, lo, hi) in zip(axes, [
                ("observed_mean_days", "pred_mean_days", "pred_low_days", "pred_high_days"),
                ("observed_same_day_pct", "pred_same_day_pct", "pred_same_day_low", "pred_same_day_high")]):
            ax.fill_between(sub[time], sub[lo], sub[hi], color=f"C{i}", alpha=0.2)
            ax.plot(sub[time], sub[mean], color=f"C{i}", lw=1.5, label=f"{arm}: posterior predictive")
            ax.plot(sub[time], sub[obs], "o", color=f"C{i}", label=f"{arm}: observed")
    axes[0].set_ylabel("mean duration (working days)")
    axes[1].set_ylabel("assessments completed the same day (%)")
    for ax in axes:
        ax.set_xlabel("financial year (start)")
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle("Posterior predictive check: the hurdle-lognormal duration model")
    _caption(fig, synthetic)
    fig.tight_layout()
    return fig
