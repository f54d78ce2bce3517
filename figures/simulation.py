"""Figures of the simulation studies. Each takes summary tables (never refits), returns a Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SYNTHETIC_NOTE = "SYNTHETIC DATA: simulation study of the method"
LABELS = {"att": "ATT in the pilots (pp)", "sigma_tau": "between-LA SD of the effect",
          "mu_tau": "typical-LA effect (log-odds)", "sigma_unit": "between-LA SD of the level (within cohort)",
          "att_average": "ATT in the average LA (mu_tau; pp)", "alpha": "intercept", "sigma_period": "SD of year effects",
          "sigma_trend": "SD of LA trends", "tau[0]": "effect in pilot 1"}
METHOD_STYLE = {
    "lpm_cluster_z": ("LPM, clustered SE (report)", "#d95f02", "o", "-"),
    "lpm_cluster_t": ("LPM, clustered SE, t(G-1)", "#e6ab02", "s", "--"),
    "wcb_webb": ("wild cluster bootstrap (Webb)", "#7570b3", "^", "-"),
    "wcb_rademacher": ("wild cluster bootstrap (Rademacher)", "#a6a1d4", "v", ":"),
    "bayes_mu_tau": ("Bayes: typical-LA effect", "#1b9e77", "D", "-"),
    "bayes_att": ("Bayes: ATT in the pilots", "#66c2a5", "P", "--"),
}


def _caption(fig: plt.Figure) -> None:
    fig.text(0.5, -0.01, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")


def plot_coverage(table: pd.DataFrame, *, target: tuple[float, float] = (0.86, 0.94)) -> plt.Figure:
    """Empirical coverage of the central 50/90/95% intervals per parameter (95% MC error bars),
    one panel per nominal level; the ATT's 90% target band shaded."""
    levels = [50, 90, 95]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), sharey=False)
    names = list(table["parameter"])
    y = np.arange(len(names))
    for ax, level in zip(axes, levels):
        cov = table[f"coverage_{level}"].to_numpy()
        err = 1.96 * table[f"mc_se_{level}"].to_numpy()
        ax.axvline(level / 100, color="0.4", lw=1, ls=":")
        if level == 90:
            ax.axvspan(*target, color="#1b9e77", alpha=0.15, label=f"ATT target {target[0]:g}-{target[1]:g}")
            ax.legend(fontsize=7, frameon=False, loc="lower left")
        ax.errorbar(cov, y, xerr=err, fmt="o", color="#1b9e77", ecolor="0.3", capsize=3, ms=6)
        for yi, c in zip(y, cov):
            ax.annotate(f"{c:.2f}", (c, yi), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
        ax.set_yticks(y, [LABELS.get(n, n) for n in names] if level == 50 else [""] * len(names))
        ax.set_ylim(-0.6, len(names) - 0.4)
        ax.invert_yaxis()
        lo = min(level / 100 - 0.15, float(np.min(cov - err)) - 0.02)
        ax.set_xlim(max(0.0, lo), 1.03)
        ax.set_title(f"{level}% intervals", fontsize=10)
        ax.set_xlabel("share covering the truth")
        ax.grid(axis="x", alpha=0.3)
    reps = int(table["replicates"].max()) if len(table) else 0
    fig.suptitle(f"Interval coverage over {reps} replicates (dotted: nominal)", fontsize=11)
    fig.tight_layout()
    _caption(fig)
    return fig


def plot_interval_recovery(frame: pd.DataFrame, *, xlabel: str, ylabel: str) -> plt.Figure:
    """Each replicate's 90% interval against its true value (red: interval misses the truth)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    f = frame.sort_values("truth")
    colours = np.where(f["covered"], "#1b9e77", "firebrick")
    ax.vlines(f["truth"], f["q05"], f["q95"], colors=colours, lw=1, alpha=0.7)
    ax.scatter(f["truth"], f["mean"], s=8, color="k", zorder=3, label="posterior mean")
    lo, hi = float(min(f["truth"].min(), f["q05"].min())), float(max(f["truth"].max(), f["q95"].max()))
    ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls=":", label="y = truth")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{f['covered'].mean():.1%} of {len(f)} intervals cover the truth (red: missed)")
    ax.legend(fontsize=8, frameon=False)
    _caption(fig)
    return fig


def plot_sbc_ecdf(curves: dict, table: pd.DataFrame, *, level: float = 0.01) -> plt.Figure:
    """SBC: ECDF of the rank PIT values minus the uniform CDF, with the simultaneous envelope."""
    names = list(curves)
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, 2.6 * nrow), squeeze=False, sharey=True)
    pvals = table.set_index("parameter")["p_value"]
    for ax, name in zip(axes.ravel(), names):
        c = curves[name]
        ax.fill_between(c["x"], c["lower"], c["upper"], step="post", color="0.85",
                        label=f"{100 * (1 - level):g}% simultaneous envelope")
        ax.step(c["x"], c["diff"], where="post", color="#1b9e77", lw=1.4)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_title(f"{LABELS.get(name, name)}\nchi-square p = {pvals[name]:.2f}", fontsize=9)
        ax.set_xlabel("fractional rank", fontsize=8)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("ECDF - uniform")
    axes[0, 0].legend(fontsize=7, frameon=False, loc="lower left")
    reps = int(table["replicates"].max()) if len(table) else 0
    fig.suptitle(f"Simulation-based calibration: {reps} replicates, ranks among L = {int(table['L'].iloc[0])} draws",
                 fontsize=11)
    fig.tight_layout()
    _caption(fig)
    return fig


def plot_sbc_histograms(ranks: pd.DataFrame, *, bins: int = 20) -> plt.Figure:
    """Rank histograms with the 99% band of a uniform count per bin."""
    from scipy import stats

    names = [c for c in ranks.columns if c not in ("replicate", "L")]
    n_draws = int(ranks["L"].iloc[0])
    bins = min(bins, n_draws + 1)
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, 2.4 * nrow), squeeze=False)
    edges = np.linspace(0, n_draws + 1, bins + 1)
    expected = len(ranks) / bins
    lo, hi = stats.binom.ppf([0.005, 0.995], len(ranks), 1 / bins)
    for ax, name in zip(axes.ravel(), names):
        ax.axhspan(lo, hi, color="0.88")
        ax.hist(ranks[name], bins=edges, color="#1b9e77", alpha=0.85)
        ax.axhline(expected, color="0.3", lw=0.8)
        ax.set_title(LABELS.get(name, name), fontsize=9)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle("SBC rank histograms (grey: 99% band for each bin's count under uniformity)", fontsize=10)
    fig.tight_layout()
    _caption(fig)
    return fig


def plot_rejection(table: pd.DataFrame, *, effect: str, alpha: float = 0.05, ylabel: str) -> plt.Figure:
    """Rejection rate against the number of treated LAs, one panel per between-LA SD of the effect."""
    t = table[table["effect"] == effect]
    sds = sorted(t["sd_tau"].unique())
    fig, axes = plt.subplots(1, len(sds), figsize=(3.6 * len(sds), 3.8), sharey=True, squeeze=False)
    for ax, sd in zip(axes.ravel(), sds):
        sub = t[t["sd_tau"] == sd]
        for m, (label, colour, marker, ls) in METHOD_STYLE.items():
            s = sub[sub["method"] == m].sort_values("n_pilot")
            if s.empty:
                continue
            ax.errorbar(s["n_pilot"], s["rejection_rate"], yerr=1.96 * s["mc_se"], color=colour, marker=marker,
                        ls=ls, capsize=2, lw=1.3, ms=5, label=label)
        if effect == "null":
            ax.axhline(alpha, color="k", lw=0.8, ls=":", label=f"nominal {alpha:g}")
        ax.set_xticks(sorted(sub["n_pilot"].unique()))
        comp = sorted(sub["n_comparator"].unique())
        ax.set_xlabel("treated LAs" + (f" (comparators: {comp[0]})" if len(comp) == 1 else " (= comparators)"))
        ax.set_title(f"between-LA SD of the effect = {sd:g}", fontsize=10)
        top = float((sub["rejection_rate"] + 1.96 * sub["mc_se"]).max()) + 0.03
        ax.set_ylim(0, 1.02 if effect != "null" else min(1.02, max(0.2, top)))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.12))
    what = "no effect in a typical LA (mu_tau = 0)" if effect == "null" else "the published effect (mu_tau = -0.66)"
    reps = int(t["replicates"].min()) if len(t) else 0
    kind = "Type I error" if effect == "null" else "Power"
    fig.suptitle(f"{kind} under {what}; {reps}+ replicates per point (bars: 95% Monte Carlo)", fontsize=11)
    fig.tight_layout()
    fig.text(0.5, -0.16, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")
    return fig


def plot_verbal_calibration(table: pd.DataFrame) -> plt.Figure:
    """Share of statements that were true against their stated probability, one point per
    verbal level and number of treated LAs (bars: 95% Monte Carlo); the diagonal is calibration."""
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    colours = {9: "#1b9e77", 4: "#d95f02", 2: "#7570b3"}
    for k, g in table.groupby("n_pilot"):
        ax.errorbar(g["mean_stated_p"], g["share_true"], yerr=1.96 * g["mc_se"], fmt="o", ms=5, capsize=2,
                    color=colours.get(int(k), "0.3"), label=f"{int(k)} treated LAs")
    first = table[table["n_pilot"] == table["n_pilot"].max()]       # each level named once
    for i, (_, r) in enumerate(first.iterrows()):
        ax.annotate(r["level"], (r["mean_stated_p"], r["share_true"]), fontsize=6.5, color="0.3",
                    xytext=(8, -10 if i % 2 else 6), textcoords="offset points")
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
    ax.set_xlabel("stated probability (mean P of the statements at that level)")
    ax.set_ylabel("share of the statements that were true")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    n = int(table["statements"].sum())
    ax.set_title(f"Are the words calibrated? {n} statements 'SofS reduced / increased ...'", fontsize=10)
    fig.tight_layout()
    _caption(fig)
    return fig
