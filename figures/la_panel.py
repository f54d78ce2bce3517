"""Figures for the LA-panel re-analysis. Each takes summary tables, returns a Figure.

The posterior densities, forest plot, event study and predictive check reuse
:mod:`figures.did`; this module adds the pilot-vs-neighbours trend panels.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

YEAR_LABEL = "year ending 31 March"
PILOT_COLOUR = "#d95f02"
NEIGHBOUR_COLOUR = "#1b6ca8"


def plot_trends(table: pd.DataFrame, *, ylabel: str, adoption: dict[str, int], title: str,
                note: str | None = None, ncols: int = 4) -> plt.Figure:
    """Pilot vs its statistical neighbours over time, one panel per pilot plus 'All pilots'.

    ``table`` is :func:`models.la_panel.trend_table`: observed points, the fitted mean with its
    95% posterior band for pilots and neighbours, and the pilot's counterfactual without SofS
    (dashed, with band) in its treated years. The dotted line marks adoption.
    """
    panels = list(dict.fromkeys(table["panel"]))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.7 * nrows), sharex=True, squeeze=False)
    for ax, panel in zip(axes.ravel(), panels):
        sub = table[table["panel"] == panel]
        for group, colour, label in (("neighbours", NEIGHBOUR_COLOUR, "neighbours"), ("pilot", PILOT_COLOUR, "pilot")):
            g = sub[sub["group"] == group].sort_values("year")
            if g.empty:
                continue
            ax.fill_between(g["year"], g["fit_low"], g["fit_high"], color=colour, alpha=0.18, lw=0)
            ax.plot(g["year"], g["fit_mean"], color=colour, lw=1.4, label=f"{label}: fitted (95% band)")
            ax.plot(g["year"], g["observed"], "o", color=colour, ms=3.5, label=f"{label}: observed")
            if group == "pilot":
                t = g[g["treated"]]
                if not t.empty:
                    ax.fill_between(t["year"], t["counterfactual_low"], t["counterfactual_high"], color="0.5",
                                    alpha=0.18, lw=0)
                    ax.plot(t["year"], t["counterfactual_mean"], ls="--", color="0.3", lw=1.2,
                            label="pilot without SofS (counterfactual)")
        if panel in adoption:
            ax.axvline(adoption[panel] - 0.5, color="k", ls=":", lw=1)
        n_nb = int(sub.loc[sub["group"] == "neighbours", "n_las"].max()) if (sub["group"] == "neighbours").any() else 0
        ax.set_title(f"{panel} (vs {n_nb} neighbours)" if panel != "All pilots" else panel, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(YEAR_LABEL, fontsize=8)
    for row in axes:
        row[0].set_ylabel(ylabel, fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title, fontsize=11)
    if note:
        fig.text(0.5, -0.055, note, ha="center", va="top", fontsize=7.5, color="0.25", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


def relabel_years(fig: plt.Figure, title: str | None = None) -> plt.Figure:
    """Years here are years ending March: relabel a reused figure's x axis (and title)."""
    for ax in fig.axes:
        if ax.get_xlabel():
            ax.set_xlabel(YEAR_LABEL)
        if title:
            ax.set_title(title)
    return fig
