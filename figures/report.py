"""Figures for the reviewers' report: trace and rank plots of saved posterior draws.

Each function takes draws that were already saved by an analysis (nothing is refitted) and
returns a matplotlib Figure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import rankdata

SYNTHETIC_NOTE = "SYNTHETIC DATA: illustration of the method, not evidence about real children"


def trace_rank_figure(draws: dict[str, np.ndarray], *, title: str, n_bins: int = 20,
                      synthetic: bool = False) -> plt.Figure:
    """Trace (left) and rank histograms per chain (right), one row per scalar quantity.

    Parameters
    ----------
    draws
        ``{name: array (chain, draw)}``.
    title
        Figure title (the fit the draws come from).
    n_bins
        Bins of the rank histograms; a well-mixed chain gives a flat histogram near the dashed
        line (Vehtari et al. 2021, "Rank-normalization, folding, and localization").
    synthetic
        Caption the figure as coming from synthetic data.
    """
    if not draws:
        raise ValueError("trace_rank_figure needs at least one variable")
    names = list(draws)
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 1.7 * len(names) + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]})
    for row, name in enumerate(names):
        x = np.asarray(draws[name], dtype=float)
        if x.ndim != 2:
            raise ValueError(f"draws['{name}'] must be (chain, draw), got shape {x.shape}")
        n_chain, n_draw = x.shape
        ranks = rankdata(x.ravel()).reshape(x.shape)
        edges = np.linspace(0.5, x.size + 0.5, n_bins + 1)
        ax_t, ax_r = axes[row]
        for c in range(n_chain):
            ax_t.plot(np.arange(n_draw), x[c], lw=0.6, alpha=0.8, color=f"C{c}", label=f"chain {c}")
            counts, _ = np.histogram(ranks[c], bins=edges)
            ax_r.stairs(counts + c * (n_draw / n_bins) * 1.6, edges, baseline=c * (n_draw / n_bins) * 1.6,
                        fill=True, alpha=0.6, color=f"C{c}")
            ax_r.axhline(c * (n_draw / n_bins) * 1.6 + n_draw / n_bins, color="k", ls="--", lw=0.7)
        ax_t.set_ylabel(name, fontsize=9)
        ax_t.tick_params(labelsize=8)
        ax_r.set_yticks([(c * 1.6 + 0.5) * n_draw / n_bins for c in range(n_chain)],
                        [f"chain {c}" for c in range(n_chain)], fontsize=8)
        ax_r.tick_params(axis="x", labelsize=8)
        if row == 0:
            ax_t.set_title("trace", fontsize=10)
            ax_r.set_title("rank histogram per chain (flat = well mixed)", fontsize=10)
    axes[-1][0].set_xlabel("draw")
    axes[-1][1].set_xlabel("rank over all chains")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if synthetic:
        fig.text(0.5, -0.01, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")
    return fig


def forest_figure(rows: list[dict], *, title: str = "Table 8 re-analysed") -> plt.Figure:
    """Posterior means and 95% intervals, one panel per outcome (each in its own units).

    Parameters
    ----------
    rows
        ``{"outcome", "label", "mean", "low", "high", "units", "synthetic"}`` per interval (the
        headline's summary; nothing is computed here). Synthetic rows are drawn hollow.
    """
    rows = [r for r in rows if all(isinstance(r.get(k), (int, float)) for k in ("mean", "low", "high"))]
    if not rows:
        raise ValueError("forest_figure needs at least one row with mean, low and high")
    groups = list(dict.fromkeys((r["outcome"], r.get("units") or "") for r in rows))   # one panel per unit
    sizes = [sum((r["outcome"], r.get("units") or "") == g for r in rows) for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8.5, 0.9 + 0.38 * sum(sizes) + 0.45 * len(groups)),
                             squeeze=False, gridspec_kw={"height_ratios": sizes})
    for ax, (outcome, units) in zip(axes[:, 0], groups, strict=True):
        mine = [r for r in rows if (r["outcome"], r.get("units") or "") == (outcome, units)]
        y = np.arange(len(mine))[::-1]
        for yi, r in zip(y, mine, strict=True):
            color = "firebrick" if r.get("synthetic") else "C0"
            ax.plot([r["low"], r["high"]], [yi, yi], color=color, lw=2)
            ax.plot(r["mean"], yi, "o", color=color, mfc="white" if r.get("synthetic") else color)
        ax.axvline(0, color="k", lw=0.8, ls="--")
        ax.set_yticks(y, [r["label"] for r in mine], fontsize=8)
        ax.set_title(f"{outcome}" + (f" ({units})" if units else ""), fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(-0.6, len(mine) - 0.4)
    fig.suptitle(title + ": posterior means and 95% intervals (hollow red: synthetic data)", fontsize=10)
    fig.tight_layout()
    return fig
