"""Figures for Table 7 re-analysed. Each takes summary tables, returns a Figure (no refits)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PILOT_COLOUR = "#d95f02"
NEIGHBOUR_COLOUR = "#1b6ca8"


def plot_forest(rows: pd.DataFrame, *, prior: str = "neutral") -> plt.Figure:
    """Forest plot: each indicator's effect (posterior mean, 95% interval) in its own units,
    with its region of practical equivalence shaded; one panel row per indicator."""
    sub = rows[rows["prior"] == prior].reset_index(drop=True)
    n = len(sub)
    fig, axes = plt.subplots(n, 1, figsize=(8, 0.9 * n + 1.2), squeeze=False)
    for ax, r in zip(axes[:, 0], sub.itertuples()):
        ax.axvspan(-r.rope, r.rope, color="0.85", lw=0)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.errorbar([r.mean], [0], xerr=[[r.mean - r.eti95_low], [r.eti95_high - r.mean]], fmt="o",
                    color=PILOT_COLOUR if r.diagnostics_ok else "red", capsize=3)
        ax.set_yticks([0], [f"{r.area}: {r.label}"[:70]], fontsize=8)
        ax.set_ylim(-1, 1)
        span = max(abs(r.eti95_low), abs(r.eti95_high), r.rope) * 1.15
        ax.set_xlim(-span, span)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(f"effect of SofS, {r.units}; P(programme direction) = {r.p_programme_direction:.2f}, "
                      f"P(within ±{r.rope:g}) = {r.p_in_rope:.2f}", fontsize=7)
    fig.suptitle(f"Table 7 re-analysed: effect of SofS in the pilot LAs ({prior} prior; grey: practically nil)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_pilots_vs_neighbours(cells: pd.DataFrame, indicators: dict, neighbours: dict[str, dict[str, list[str]]],
                              *, ncols: int = 6) -> plt.Figure:
    """Small multiples: rows = indicators, columns = pilots; each pilot's observed series (orange)
    against the mean of its own chosen neighbours (blue, range shaded); dotted line: adoption."""
    names = list(indicators)
    pilots = list(dict.fromkeys(cells.loc[cells["arm"] == "pilot", "la"]))
    ncols = max(1, len(pilots))
    fig, axes = plt.subplots(len(names), ncols, figsize=(1.9 * ncols, 1.5 * len(names) + 0.8), squeeze=False,
                             sharex=True)
    for i, name in enumerate(names):
        ind = indicators[name]
        c = cells[cells["indicator"] == name].copy()
        per = ind.per if ind.kind != "level" else 1.0
        c["value"] = c["y"] / c["n"] * per if ind.kind != "level" else c["y"]
        for j, pilot in enumerate(pilots):
            ax = axes[i, j]
            p = c[(c["la"] == pilot) & (c["arm"] == "pilot")].sort_values("year")
            nbs = neighbours.get(name, {}).get(pilot, [])
            nb = c[c["la"].isin(nbs) & (c["arm"] == "comparator")]
            if not nb.empty:
                g = nb.groupby("year")["value"].agg(["mean", "min", "max"])
                ax.fill_between(g.index, g["min"], g["max"], color=NEIGHBOUR_COLOUR, alpha=0.15, lw=0)
                ax.plot(g.index, g["mean"], color=NEIGHBOUR_COLOUR, lw=1)
            if not p.empty:
                ax.plot(p["year"], p["value"], color=PILOT_COLOUR, lw=1.3, marker=".", ms=3)
                ax.axvline(p["adoption_year"].iloc[0] - 0.5, color="0.3", ls=":", lw=0.8)
            ax.tick_params(labelsize=5)
            if i == 0:
                ax.set_title(pilot[:18], fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{name}\n({ind.units})"[:40], fontsize=6)
    fig.suptitle("Each pilot (orange) against its own statistical neighbours (blue: mean, range); dotted: adoption",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_placebo(placebo: np.ndarray, pilots: float, *, label: str, units: str) -> plt.Figure:
    """The placebo distribution (effects with comparators given the pilots' adoption years)
    with the pilots' effect marked."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(placebo, bins=max(5, int(math.sqrt(len(placebo)) * 2)), color=NEIGHBOUR_COLOUR, alpha=0.6,
            label="placebo LAs")
    ax.axvline(pilots, color=PILOT_COLOUR, lw=2, label="pilots")
    ax.set_xlabel(f"effect on {label} ({units})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
