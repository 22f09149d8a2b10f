"""Figures of the report (matplotlib, Agg backend). Each function returns a Figure for one dataset.

ε is drawn on a categorical axis (1, 3, 10, ∞) so that the non-private reference sits beside the
private runs instead of at an infinite coordinate.

With ``styles`` (the report's :class:`dpfair.report.tradeoff_figures.Styles`), every figure uses the report's one
colour per ε and one marker per method, so a reader carries them from figure to figure; series are told
apart by marker and line style, never by hue alone, so the figures read in greyscale. Groups (which have no
report-wide style) get line styles and markers plus cividis colours of distinct lightness.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dpfair.report.fmt import epsilon_label  # noqa: E402
from dpfair.tables.seeds import seed_summary  # noqa: E402

MARKERS = "osD^vP*X"
LINESTYLES = ["-", "--", ":", "-."]


def _group_colour(j: int, n: int):
    """Cividis at evenly spaced lightness: distinct in greyscale and for the common colour-vision deficiencies."""
    return matplotlib.colormaps["cividis"](0.85 * j / max(n - 1, 1))


def _series(ax, x, s: pd.DataFrame, *, i: int, method: str | None, label: str, styles) -> None:
    """One series against ε: with ``styles``, a grey line (line style per series), method marker, ε colours."""
    if styles is None:
        _errorbar(ax, x, s, marker=MARKERS[i % len(MARKERS)], label=label)
        return
    marker = styles.marker(method) if method else MARKERS[i % len(MARKERS)]
    _errorbar(ax, x, s, color="0.35", linestyle=LINESTYLES[i % len(LINESTYLES)], linewidth=1, label=None)
    ax.scatter(
        x,
        s["mean"],
        marker=marker,
        s=36,
        c=[styles.colour(e) for e in s["epsilon"]],
        edgecolors="black",
        linewidths=0.6,
        zorder=3,
    )
    ax.plot(
        [],
        [],
        color="0.35",
        linestyle=LINESTYLES[i % len(LINESTYLES)],
        marker=marker,
        markerfacecolor="white",
        markeredgecolor="black",
        label=label,
    )


def _method_of(part: pd.DataFrame) -> str | None:
    return str(part["method"].iloc[0]) if "method" in part.columns and part["method"].nunique() == 1 else None


def _axis(ax, epsilons: list[float], ylabel: str) -> None:
    ax.set_xticks(range(len(epsilons)), [epsilon_label(e) for e in epsilons])
    ax.set_xlabel("target ε  (∞ = non-private)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _errorbar(ax, x, s: pd.DataFrame, **kw):
    yerr = np.vstack([s["mean"] - s["low"], s["high"] - s["mean"]])
    yerr = np.where(np.isfinite(yerr), yerr, 0)
    ax.errorbar(x, s["mean"], yerr=yerr, capsize=3, **kw)


def utility_figure(
    metrics: pd.DataFrame,
    epsilons: list[float],
    *,
    value: str = "auroc",
    ylabel: str = "test AUROC",
    reference: float | None = None,
    level: float = 0.95,
    styles=None,
) -> plt.Figure:
    """``value`` (test AUROC by default) vs ε per model: mean over seeds with its ``level`` interval; dots are single seeds."""
    runs = metrics.drop_duplicates(["model", "epsilon", "seed"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    pos = {e: i for i, e in enumerate(epsilons)}
    for i, (model, part) in enumerate(runs.groupby("model")):
        s = seed_summary(part, value, ["epsilon"], level).sort_values("epsilon")
        x = s["epsilon"].map(pos).to_numpy() + 0.06 * i
        _series(ax, x, s, i=i, method=_method_of(part), label=model, styles=styles)
        ax.scatter(part["epsilon"].map(pos) + 0.06 * i + 0.03, part[value], s=8, alpha=0.35, color="k")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", linewidth=1)
    _axis(ax, epsilons, ylabel)
    ax.legend(title="model", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(reliability: pd.DataFrame, *, styles=None) -> plt.Figure:
    """Reliability diagram per model on the whole test set, one line per ε, bins pooled over seeds."""
    overall = reliability[(reliability["attribute"] == "overall") & (reliability["count"] > 0)].copy()
    models = sorted(overall["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes.flat, models):
        part = overall[overall["model"] == model]
        for j, (eps, g) in enumerate(part.groupby("epsilon", sort=True)):
            weighted = g.assign(p=g["mean_predicted"] * g["count"], o=g["observed_frequency"] * g["count"])
            pooled = weighted.groupby("bin")[["p", "o", "count"]].sum()
            colour = {} if styles is None else {"color": styles.colour(eps)}
            ax.plot(
                pooled["p"] / pooled["count"],
                pooled["o"] / pooled["count"],
                marker=MARKERS[j % len(MARKERS)],
                linestyle=LINESTYLES[j % len(LINESTYLES)],
                label=f"ε = {epsilon_label(eps)}",
                **colour,
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"{model}: calibration (test set)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def subgroup_figure(subgroups: pd.DataFrame, epsilons: list[float]) -> plt.Figure:
    """Per-group AUROC vs ε (mean over seeds), one panel per (model, attribute); flagged groups dashed."""
    panels = list(subgroups.groupby(["model", "attribute"], sort=True))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False)
    pos = {e: i for i, e in enumerate(epsilons)}
    for ax, ((model, attr), part) in zip(axes.flat, panels):
        n_groups = part["group"].nunique()
        for j, (group, g) in enumerate(part.groupby("group", sort=True)):
            s = seed_summary(g, "auroc", ["epsilon"]).sort_values("epsilon")
            flagged = bool(g["flagged"].any())
            ax.plot(
                s["epsilon"].map(pos) + 0.04 * j,
                s["mean"],
                marker=MARKERS[j % len(MARKERS)],
                color=_group_colour(j, n_groups),
                markeredgecolor="black",
                markeredgewidth=0.5,
                linestyle=":" if flagged else LINESTYLES[j % 2],
                alpha=0.5 if flagged else 1.0,
                label=f"{group} (n={int(g['n'].max())}{', flagged' if flagged else ''})",
            )
        ax.set_title(f"{model}: AUROC by {attr}", fontsize=10)
        _axis(ax, epsilons, "test AUROC")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def gap_figure(metrics: pd.DataFrame, epsilons: list[float], *, level: float = 0.95, styles=None) -> plt.Figure:
    """AUROC gap (max − min over unflagged groups) vs ε, one panel per attribute, mean over seeds with its interval."""
    attributes = sorted(metrics["attribute"].unique())
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.6 * len(attributes), 3.4), squeeze=False)
    pos = {e: i for i, e in enumerate(epsilons)}
    for ax, attr in zip(axes.flat, attributes):
        part = metrics[metrics["attribute"] == attr]
        for i, (model, m) in enumerate(part.groupby("model")):
            s = seed_summary(m, "auroc_gap", ["epsilon"], level).sort_values("epsilon")
            _series(
                ax,
                s["epsilon"].map(pos).to_numpy() + 0.06 * i,
                s,
                i=i,
                method=_method_of(m),
                label=model,
                styles=styles,
            )
        ax.set_title(f"AUROC gap across {attr}", fontsize=10)
        _axis(ax, epsilons, "max − min group AUROC")
        ax.legend(title="model", fontsize=8)
    fig.tight_layout()
    return fig
