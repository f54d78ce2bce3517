"""Figures for the cost model: cost distribution, tornado, EVPPI ranking, cost-effect plane.

Each function takes summaries produced by :mod:`models.cost_uncertainty` (tables, histogram
counts, a thinned set of draws), returns a matplotlib Figure and never computes a statistic of
its own or calls ``plt.show()``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

SAVE_COLOUR = "#1b7837"
COST_COLOUR = "#b2182b"
NEUTRAL = "#4d4d4d"


def _money(x: float, _pos: object = None) -> str:
    sign, ax = ("-" if x < 0 else ""), abs(x)
    if ax >= 1e6:
        return f"{sign}£{ax / 1e6:,.1f}m"
    if ax >= 1e3:
        return f"{sign}£{ax / 1e3:,.0f}k"
    return f"{sign}£{ax:,.0f}"


MONEY = FuncFormatter(_money)


def cost_distribution(histogram: tuple[np.ndarray, np.ndarray], by_la: pd.DataFrame, *, p_saves: float,
                      discount_rate: float, price_year: int, horizon_years: int) -> Figure:
    """Left: distribution of the total net cost (all LAs). Right: per-LA net cost, mean and 95% interval.

    Parameters
    ----------
    histogram
        ``(counts, edges)`` of the total net cost draws.
    by_la
        Long table from :func:`models.cost_uncertainty.by_la_table` (one discount rate).
    """
    counts, edges = histogram
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.25, 1]})
    centres = 0.5 * (edges[:-1] + edges[1:])
    colours = np.where(centres < 0, SAVE_COLOUR, COST_COLOUR)
    ax.bar(centres, counts / counts.sum(), width=np.diff(edges), color=colours, alpha=0.8, linewidth=0)
    ax.axvline(0, color=NEUTRAL, lw=1)
    ax.xaxis.set_major_formatter(MONEY)
    ax.set_xlabel(f"Net cost of SofS, all pilots ({price_year}-{(price_year + 1) % 100:02d} prices, "
                  f"{horizon_years} years, {discount_rate:.1%} discount)")
    ax.set_ylabel("Share of draws")
    ax.set_title(f"Total net cost: P(SofS saves money) = {p_saves:.2f}", loc="left", fontsize=11)
    ax.text(0.98, 0.95, "green: saves money\nred: costs money", transform=ax.transAxes, ha="right", va="top",
            fontsize=9, color=NEUTRAL)

    rows = by_la[(by_la["la"] != "Total")]
    las = list(dict.fromkeys(rows["la"]))
    y = np.arange(len(las))[::-1]
    for comp, colour, offset, label in (("net", COST_COLOUR, 0.15, "net cost"),
                                        ("implementation", NEUTRAL, -0.15, "implementation only")):
        sub = rows[rows["component"] == comp].set_index("la").loc[las]
        ax2.errorbar(sub["mean"], y + offset,
                     xerr=[sub["mean"] - sub["eti95_low"], sub["eti95_high"] - sub["mean"]],
                     fmt="o", color=colour, ms=4, capsize=2, label=label)
    ax2.axvline(0, color=NEUTRAL, lw=1)
    ax2.set_yticks(y, las)
    ax2.xaxis.set_major_formatter(MONEY)
    ax2.set_xlabel("Per LA: mean and 95% interval")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    ax2.set_title("Per LA", loc="left", fontsize=11)
    fig.tight_layout()
    return fig


def tornado(table: pd.DataFrame, *, top: int = 12, title: str = "One-way sensitivity of the total net cost") -> Figure:
    """Bars from the base case to the total net cost at each input's 2.5% and 97.5% values."""
    t = table.head(top).iloc[::-1]
    base = float(table["base"].iloc[0]) if len(table) else 0.0
    fig, ax = plt.subplots(figsize=(9, 0.42 * max(len(t), 3) + 1.4))
    y = np.arange(len(t))
    for yi, (_, row) in zip(y, t.iterrows(), strict=True):
        for value, colour, label in ((row["net_at_low"], "#4393c3", "input at its 2.5% value"),
                                     (row["net_at_high"], "#d6604d", "input at its 97.5% value")):
            ax.barh(yi, value - base, left=base, color=colour, height=0.6, label=label if yi == y[-1] else None)
    ax.axvline(base, color=NEUTRAL, lw=1)
    ax.axvline(0, color=NEUTRAL, lw=0.8, ls=":")
    ax.set_yticks(y, t["label"])
    ax.xaxis.set_major_formatter(MONEY)
    ax.set_xlabel(f"Total net cost (base case {_money(base)}; dotted line: break-even)")
    ax.set_title(title, loc="left", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def evppi_ranking(table: pd.DataFrame, *, evpi: float, top: int = 15) -> Figure:
    """EVPPI per input (GBP, all LAs), ranked, with the EVPI for reference."""
    t = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.38 * max(len(t), 3) + 1.4))
    colours = ["#5e3c99" if k != "group" else "#b2abd2" for k in t.get("kind", ["single"] * len(t))]
    xerr = 2 * t["se"] if "se" in t else None
    ax.barh(np.arange(len(t)), t["evppi"], color=colours, height=0.6, xerr=xerr, ecolor=NEUTRAL, capsize=2)
    for yi, value in enumerate(t["evppi"]):
        ax.text(value, yi, f" {_money(value)}", va="center", fontsize=8, color=NEUTRAL)
    ax.axvline(evpi, color=NEUTRAL, ls="--", lw=1)
    ax.text(evpi, len(t) - 0.5, f" EVPI {_money(evpi)}", va="top", fontsize=8, color=NEUTRAL)
    ax.set_yticks(np.arange(len(t)), t["label"])
    ax.xaxis.set_major_formatter(MONEY)
    ax.set_xlabel("Expected value of partial perfect information (adopt vs not, all pilots; bars: +/- 2 SE;\n"
                  "light: groups valued jointly). £0: this input alone could not change the decision")
    ax.set_title("Which uncertainty matters for the decision", loc="left", fontsize=11)
    fig.tight_layout()
    return fig


def cost_effect_plane(plane: pd.DataFrame) -> Figure:
    """Draws on the cost-effect plane: net cost against children kept in kinship care and
    against re-referrals avoided (positive effect = the direction SofS intended)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, col, label in ((axes[0], "kinship_children_kept", "Children kept in kinship care (discounted; < 0: fewer)"),
                           (axes[1], "rereferrals_avoided", "Re-referrals avoided (discounted; < 0: more)")):
        ax.scatter(plane[col], plane["net_cost"], s=3, alpha=0.25, color="#2166ac", rasterized=True)
        ax.axhline(0, color=NEUTRAL, lw=1)
        ax.axvline(0, color=NEUTRAL, lw=1)
        ax.set_xlabel(label)
        x_lo, x_hi = ax.get_xlim()
        y_lo, y_hi = ax.get_ylim()
        ax.text(x_hi, y_lo, "better and cheaper", ha="right", va="bottom", fontsize=8, color=SAVE_COLOUR)
        ax.text(x_lo, y_hi, "worse and dearer", ha="left", va="top", fontsize=8, color=COST_COLOUR)
    axes[0].yaxis.set_major_formatter(MONEY)
    axes[0].set_ylabel("Net cost of SofS, all pilots")
    fig.suptitle(f"Cost-effect plane ({len(plane):,} draws)", x=0.01, ha="left", fontsize=11)
    fig.tight_layout()
    return fig


def ceac_curves(table: pd.DataFrame) -> Figure:
    """Cost-effectiveness acceptability: P(SofS cost-effective) against willingness to pay per
    child kept in kinship care (left, other WTP 0) and per re-referral avoided (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, col, other, label in ((axes[0], "wtp_kinship", "wtp_rereferral", "per child kept in kinship care"),
                                  (axes[1], "wtp_rereferral", "wtp_kinship", "per re-referral avoided")):
        sub = table[table[other] == table[other].min()].sort_values(col)
        ax.plot(sub[col], sub["p_cost_effective"], color="#2166ac", lw=2)
        ax.fill_between(sub[col], sub["p_cost_effective"] - 2 * sub["mcse"], sub["p_cost_effective"] + 2 * sub["mcse"],
                        color="#2166ac", alpha=0.2, lw=0)
        ax.axhline(0.5, color=NEUTRAL, lw=0.8, ls=":")
        ax.xaxis.set_major_formatter(MONEY)
        ax.set_xlabel(f"Willingness to pay {label} (other at {_money(float(table[other].min()))})")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("P(SofS cost-effective)")
    fig.suptitle("Cost-effectiveness acceptability curves (all pilots, main discount rate)", x=0.01, ha="left",
                 fontsize=11)
    fig.tight_layout()
    return fig


def evsi_curve(table: pd.DataFrame, *, best_k: int | None, population_las: int) -> Figure:
    """EVSI (+/- 2 SE), trial cost and ENBS against the number of LAs in the trial, with the
    EVPPI of the mean effects (the EVSI of an infinitely large trial) as a dashed line."""
    finite = table[np.isfinite(table["k"])].sort_values("k")
    limit = table[~np.isfinite(table["k"])]
    fig, ax = plt.subplots(figsize=(9, 4.6))
    ax.errorbar(finite["k"], finite["evsi"], yerr=2 * finite["se"], fmt="o-", color="#5e3c99", capsize=2, label="EVSI")
    ax.plot(finite["k"], finite["trial_cost"], "s--", color=COST_COLOUR, label="trial cost")
    ax.plot(finite["k"], finite["enbs"], "^-", color=SAVE_COLOUR, label="ENBS = EVSI - cost")
    if len(limit):
        ax.axhline(float(limit["evsi"].iloc[0]), color=NEUTRAL, ls="--", lw=1,
                   label="EVPPI of the mean effects (k = infinity)")
    ax.axhline(0, color=NEUTRAL, lw=0.8)
    if best_k is not None:
        ax.axvline(best_k, color=SAVE_COLOUR, ls=":", lw=1)
    ax.yaxis.set_major_formatter(MONEY)
    ax.set_xlabel("LAs in the cluster-randomised trial (k)")
    ax.set_title(f"Value of a new trial of SofS for {population_las} LAs: "
                 + (f"best k = {best_k}" if best_k is not None else "no size on the grid is worth its cost"),
                 loc="left", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
