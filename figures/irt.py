"""Figures for the item response models: they take summaries and return a Figure, never refit.

- :func:`item_curves`: category response curves of every item (at the posterior means);
- :func:`test_information`: test information per dimension with a 90% band over draws;
- :func:`ppc_items`: observed vs posterior predictive answer distribution per item;
- :func:`effects_forest`: score-scale effects by subscale and named prior, with the report's
  estimates beside them;
- :func:`person_score_plot`: person scores with 90% intervals.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SYNTHETIC_NOTE = "SYNTHETIC DATA: illustration of the method, not the evaluation's families"


def _caption(fig: Figure, synthetic: bool) -> Figure:
    if synthetic:
        fig.text(0.5, -0.01, SYNTHETIC_NOTE, ha="center", va="top", fontsize=8, color="firebrick")
    return fig


def _grid(n: int, ncols: int = 4, size: tuple[float, float] = (2.6, 2.0)) -> tuple[Figure, np.ndarray]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def item_curves(curves: dict[str, Any], *, title: str | None = None, synthetic: bool = False) -> Figure:
    """Category response curves P(answer = k | trait) per item, from ``information_curves``."""
    grid, probs, items = curves["grid"], curves["category_probs"], curves["items"]
    K = probs.shape[-1]
    codes = curves["code_values"]
    cmap = plt.get_cmap("viridis", K)
    fig, axes = _grid(len(items))
    for j, ax in enumerate(axes[: len(items)]):
        for k in range(K):
            ax.plot(grid, probs[j, :, k], color=cmap(k), lw=1.4, label=f"{codes[k]:g}")
        ax.set_title(f"{items[j]} (a = {curves['a'][j]:.1f})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="answer code (reverse-scored where reversed)", loc="upper right", fontsize=7, title_fontsize=7, ncol=K)
    fig.supxlabel(f"latent trait (higher = more {curves.get('trait', 'of the trait')})", fontsize=9)
    fig.supylabel("P(answer)", fontsize=9)
    fig.suptitle(title or f"Item characteristic curves: {curves['instrument']}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _caption(fig, synthetic)


def test_information(curves: dict[str, Any], reliability: pd.DataFrame | None = None,
                     *, title: str | None = None, synthetic: bool = False) -> Figure:
    """Test information by dimension (posterior median and 90% band)."""
    grid = curves["grid"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    rel = {} if reliability is None else dict(zip(reliability["dimension"], reliability["reliability_mean"]))
    for dim, q in curves["test_info"].items():
        label = curves["dimension_label"].get(dim, dim)
        if dim in rel:
            label += f" (reliability {rel[dim]:.2f})"
        line, = ax.plot(grid, q[1], lw=1.6, label=label)
        ax.fill_between(grid, q[0], q[2], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("latent trait")
    ax.set_ylabel("test information")
    ax.legend(fontsize=8)
    ax.set_title(title or f"Test information: {curves['instrument']} (band: 90% posterior)", fontsize=10)
    fig.tight_layout()
    return _caption(fig, synthetic)


def ppc_items(ppc: pd.DataFrame, *, title: str | None = None, synthetic: bool = False) -> Figure:
    """Observed answer counts (dots) against the posterior predictive 90% interval (bars)."""
    items = list(dict.fromkeys(ppc["item"]))
    fig, axes = _grid(len(items))
    for ax, item in zip(axes, items):
        d = ppc[ppc["item"] == item]
        x = np.arange(len(d))
        ax.bar(x, d["predicted_high90"] - d["predicted_low90"], bottom=d["predicted_low90"],
               color="tab:blue", alpha=0.35, width=0.7)
        ax.plot(x, d["predicted_mean"], "_", color="tab:blue", ms=12)
        inside = d["inside90"].to_numpy()
        ax.plot(x[inside], d["observed"].to_numpy()[inside], "o", color="black", ms=4)
        ax.plot(x[~inside], d["observed"].to_numpy()[~inside], "o", color="tab:red", ms=5)
        ax.set_xticks(x, [str(c) for c in d["category"]], fontsize=7)
        ax.set_title(item, fontsize=8)
        ax.tick_params(labelsize=7)
    share = ppc["inside90"].mean()
    fig.supxlabel("answer code (reverse-worded items reverse-scored)", fontsize=9)
    fig.supylabel("families", fontsize=9)
    fig.suptitle(title or f"Posterior predictive check of item answers: {ppc['instrument'].iloc[0]} "
                 f"({share:.0%} of counts inside the 90% interval; red = outside)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _caption(fig, synthetic)


def effects_forest(effects: pd.DataFrame, *, quantity: str, xlabel: str, title: str,
                   report_col: str | None = None, synthetic: bool = False) -> Figure:
    """Posterior means and 95% intervals by dimension and prior; report's estimate as a cross.

    ``effects`` has columns ``label``, ``prior``, ``mean``, ``eti95_low``, ``eti95_high``,
    ``quantity`` and optionally ``report_col`` (numeric, NaN where the report gave none).
    """
    d = effects[effects["quantity"] == quantity]
    labels = list(dict.fromkeys(d["label"]))
    priors = list(dict.fromkeys(d["prior"]))
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(labels) * max(1, len(priors)) / 1.5 + 1.5))
    offsets = np.linspace(-0.25, 0.25, len(priors)) if len(priors) > 1 else [0.0]
    colors = dict(zip(priors, ["tab:blue", "tab:orange", "tab:green", "tab:purple"]))
    for p, off in zip(priors, offsets):
        dp = d[d["prior"] == p].set_index("label").reindex(labels)
        y = np.arange(len(labels)) + off
        ax.errorbar(dp["mean"], y, xerr=[dp["mean"] - dp["eti95_low"], dp["eti95_high"] - dp["mean"]],
                    fmt="o", color=colors[p], ms=4, capsize=2, label=f"{p} prior")
    if report_col and report_col in d.columns:
        rep = d.drop_duplicates("label").set_index("label").reindex(labels)[report_col]
        ax.plot(rep, np.arange(len(labels)), "kx", ms=7, label="report (OLS on averages)")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _caption(fig, synthetic)


def person_score_plot(scores: pd.DataFrame, *, dimension: str, title: str, xlabel: str, synthetic: bool = False) -> Figure:
    """Each person's expected average score with its 90% interval, sorted."""
    d = scores[scores["dimension"] == dimension].sort_values("score_mean")
    fig, ax = plt.subplots(figsize=(6, max(3, 0.09 * len(d) + 1)))
    y = np.arange(len(d))
    ax.errorbar(d["score_mean"], y, xerr=[d["score_mean"] - d["score_low90"], d["score_high90"] - d["score_mean"]],
                fmt="o", ms=2.5, lw=0.8, color="tab:blue")
    ax.set_yticks([])
    ax.set_ylabel(f"{len(d)} persons (sorted)")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _caption(fig, synthetic)
