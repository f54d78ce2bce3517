"""Figures for the re-analysis of the published results (``analyses.published``).

Each function takes summaries (data frames written by the analysis) and returns a matplotlib
Figure; nothing here fits or recomputes anything.
"""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

FAMILY_COLOURS = {"sceptical": "#1b6ca8", "neutral": "#555555", "enthusiastic": "#c0392b"}
STRENGTH_MARKERS = {"weak": "o", "moderate": "s", "strong": "D"}
PILOT_COLOURS = ["#8da0cb", "#66c2a5", "#fc8d62", "#e5c494", "#a6d854", "#ffd92f"]


def table8_figure(grid: pd.DataFrame, results: pd.DataFrame, *, not_reanalysable: pd.DataFrame | None = None) -> Figure:
    """"Table 8 re-analysed": one panel per result, the nine priors as a forest.

    Parameters
    ----------
    grid
        Rows of the prior grid (``result_id, prior, family, strength, mean, low95, high95,
        p_benefit, p_target``) for the Table 8 results.
    results
        One row per result: ``result_id, label, unit, printed, report_grade, target,
        printed_estimate, benefit_word``.
    not_reanalysable
        Results of Table 8 without an estimate (``label, report_grade, reason``), shown as text.
    """
    n = len(results)
    extra = 1 if not_reanalysable is not None and len(not_reanalysable) else 0
    fig, axes = plt.subplots(n + extra, 1, figsize=(11, 3.3 * n + 1.4 * extra + 0.8), squeeze=False,
                             gridspec_kw={"height_ratios": [3.3] * n + [1.4] * extra})
    order = [f"{f}-{s}" for f in ("sceptical", "neutral", "enthusiastic") for s in ("weak", "moderate", "strong")]
    for ax, (_, res) in zip(axes[:n, 0], results.iterrows()):
        rows = grid[grid["result_id"] == res["result_id"]].set_index("prior").reindex(order).dropna(how="all")
        y = np.arange(len(rows))[::-1]
        for yi, (name, r) in zip(y, rows.iterrows()):
            colour = FAMILY_COLOURS[r["family"]]
            ax.plot([r["low95"], r["high95"]], [yi, yi], color=colour, lw=2)
            ax.plot(r["mean"], yi, marker=STRENGTH_MARKERS[r["strength"]], color=colour, ms=6)
            tgt = "" if pd.isna(r["p_target"]) else f"   P(target) {r['p_target']:.2f}"
            ax.annotate(f"P({res['benefit_word']}) {r['p_benefit']:.2f}{tgt}", xy=(1.01, yi),
                        xycoords=("axes fraction", "data"), va="center", fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        if pd.notna(res.get("target")):
            ax.axvline(res["target"], color="#c0392b", ls="--", lw=0.9)
        ax.axvline(res["printed_estimate"], color="#777777", ls=":", lw=1)
        ax.set_yticks(y, [p.replace("-", " ") for p in rows.index], fontsize=8)
        ax.set_xlabel(f"effect of SofS ({res['unit']}); dotted: printed estimate; dashed: programme's 20% target",
                      fontsize=8)
        grade = textwrap.fill(f"Report: \u201c{res['report_grade']}\u201d", 95)
        ax.set_title(f"{res['label']} \u2014 printed {res['printed']}\n{grade}", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    if extra:
        ax = axes[n, 0]
        ax.axis("off")
        lines = [f"{r['label']}: not re-analysable \u2014 {r['reason']}.\nReport: \u201c{r['report_grade']}\u201d"
                 for _, r in not_reanalysable.iterrows()]
        ax.text(0.0, 0.9, "\n".join(lines), va="top", fontsize=9, wrap=True)
    handles = [Line2D([], [], color=c, lw=2, label=f) for f, c in FAMILY_COLOURS.items()]
    handles += [Line2D([], [], color="black", marker=m, ls="", label=s) for s, m in STRENGTH_MARKERS.items()]
    fig.legend(handles=handles, loc="upper center", ncol=6, fontsize=8, frameon=False, bbox_to_anchor=(0.45, 1.0))
    fig.suptitle("Table 8 re-analysed: posterior mean and 95% interval under nine priors", y=1.02, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.86, 0.98))
    return fig


def pilots_figure(summary: pd.DataFrame, *, pilots: list[str], mid_pp: float) -> Figure:
    """Tables 2 and 4: P(each pilot is best) per item, and the posterior range between pilots.

    ``summary`` has one row per item with ``P(best) <pilot>`` columns and
    ``range pp (mean)``, ``range pp low95``, ``range pp high95``.
    """
    items = [textwrap.shorten(f"T{t}: {i}", 46) + (" (lower better)" if b == "lower" else "")
             for t, i, b in zip(summary["table"], summary["item"], summary["better"])]
    y = np.arange(len(items))[::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.42 * len(items) + 1.8), sharey=True,
                                   gridspec_kw={"width_ratios": [1.2, 1]})
    left = np.zeros(len(items))
    for k, pilot in enumerate(pilots):
        vals = summary[f"P(best) {pilot}"].to_numpy()
        ax1.barh(y, vals, left=left, color=PILOT_COLOURS[k % len(PILOT_COLOURS)], label=pilot, edgecolor="white")
        for yi, start, v in zip(y, left, vals):
            if v >= 0.12:
                ax1.text(start + v / 2, yi, f"{v:.2f}", ha="center", va="center", fontsize=7)
        left += vals
    ax1.set_yticks(y, items, fontsize=8)
    ax1.set_xlim(0, 1)
    ax1.set_xlabel("P(pilot is best on the item)")
    ax1.legend(ncol=len(pilots), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax2.errorbar(summary["range pp (mean)"], y,
                 xerr=[summary["range pp (mean)"] - summary["range pp low95"],
                       summary["range pp high95"] - summary["range pp (mean)"]],
                 fmt="o", color="#333333", capsize=2)
    ax2.axvline(mid_pp, color="#c0392b", ls="--", lw=0.9)
    ax2.set_xlabel(f"range, best to worst pilot (pp); dashed: {mid_pp:g} pp")
    for yi, p in zip(y, summary[f"P(range > {mid_pp:g} pp)"]):
        ax2.annotate(f"P(>{mid_pp:g} pp) {p:.2f}", xy=(1.01, yi), xycoords=("axes fraction", "data"),
                     va="center", fontsize=7)
    ax2.grid(axis="x", alpha=0.3)
    fig.suptitle("Tables 2 and 4 re-analysed: 'the differences were not significant'", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    return fig
