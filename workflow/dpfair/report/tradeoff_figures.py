"""Trade-off figures: AUROC against the headline gap per dataset, and AUROC cost against ε across datasets.

Styles are fixed for the whole report so a reader can carry them from figure to figure: each ε has one
colour (viridis, whose lightness rises with ε, so the order survives greyscale printing; ε = ∞ is
black) and each method one marker; every point is also labelled with its ε in text.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dpfair.report.fmt import epsilon_label  # noqa: E402

#: Markers of the known methods, then the rest in order.
METHOD_MARKERS = {"dpsgd": "o", "dpsgd_patient": "s", "label_rr": "D", "dpsgd_f": "^", "dpsgd_global_adapt": "v"}
SPARE_MARKERS = "P*Xh<>"
LINESTYLES = ["-", "--", ":", "-."]


class Styles:
    """Colour per ε and marker per method, the same in every figure of one report."""

    def __init__(self, *, epsilons, methods):
        finite = sorted({float(e) for e in epsilons if math.isfinite(float(e))})
        positions = np.linspace(0.2, 0.85, len(finite)) if len(finite) > 1 else [0.5]
        self.colours = {e: matplotlib.colormaps["viridis"](p) for e, p in zip(finite, positions)}
        self.colours[math.inf] = (0.0, 0.0, 0.0, 1.0)
        spare = iter(SPARE_MARKERS)
        self.markers = {m: METHOD_MARKERS.get(m) or next(spare, "o") for m in sorted(set(methods))}

    def colour(self, eps: float):
        """The colour of ε (grey for an ε the legend does not know)."""
        return self.colours.get(float(eps), (0.5, 0.5, 0.5, 1.0))

    def marker(self, method: str) -> str:
        """The marker of a method (a circle for one the legend does not know)."""
        return self.markers.get(method, "o")

    def legend(self) -> list[dict]:
        """The legend as rows (ε → hex colour, method → marker) for the page's key."""
        return [
            {"epsilon": epsilon_label(e), "colour": matplotlib.colors.to_hex(c)}
            for e, c in sorted(self.colours.items())
        ]


def _whiskers(ax, x, xlo, xhi, y, ylo, yhi, colour):
    if np.isfinite([xlo, xhi]).all():
        ax.plot([xlo, xhi], [y, y], color=colour, linewidth=1, alpha=0.8)
    if np.isfinite([ylo, yhi]).all():
        ax.plot([x, x], [ylo, yhi], color=colour, linewidth=1, alpha=0.8)


def tradeoff_figure(points: pd.DataFrame, styles: Styles) -> plt.Figure:
    """Test AUROC against the AUROC gap, one panel per (model, attribute) of one dataset.

    Each point is a (method, ε) mean over seeds with both intervals as whiskers; ε = ∞ is a black star;
    the dashed step line joins the Pareto front of the private points (higher AUROC, smaller gap).
    """
    panels = list(points.groupby(["model", "attribute"], sort=True))
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows), squeeze=False)
    for ax, ((model, attribute), panel) in zip(axes.flat, panels):
        for r in panel.itertuples():
            colour = styles.colour(r.epsilon)
            _whiskers(ax, r.gap, r.gap_low, r.gap_high, r.auroc, r.auroc_low, r.auroc_high, colour)
            plain = math.isinf(r.epsilon)
            ax.scatter(
                [r.gap],
                [r.auroc],
                s=110 if plain else 48,
                marker="*" if plain else styles.marker(r.method),
                color=colour,
                edgecolor="black",
                linewidth=0.6,
                zorder=3,
            )
        # one ε label per cluster (methods at one ε sit close together), so the label survives greyscale
        for eps, group in panel.groupby("epsilon"):
            top = group.loc[group["auroc"].idxmax()]
            ax.annotate(
                "ε = ∞" if math.isinf(eps) else f"ε = {epsilon_label(eps)}",
                (top["gap"], top["auroc"]),
                textcoords="offset points",
                xytext=(6, 5),
                fontsize=7.5,
                fontweight="bold",
            )
        front = panel[panel["pareto"]].sort_values("gap")
        if len(front) > 1:
            ax.step(front["gap"], front["auroc"], where="post", linestyle="--", color="0.35", linewidth=1, zorder=2)
        title = f"{model}: {attribute}" if points["model"].nunique() > 1 else f"AUROC gap across {attribute}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("AUROC gap (best − worst group) ← fairer")
        ax.set_ylabel("test AUROC ↑")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles = [
        plt.Line2D([], [], linestyle="", marker=styles.marker(m), color="0.4", label=m)
        for m in sorted(points["method"].unique())
    ]
    handles.append(plt.Line2D([], [], linestyle="", marker="*", markersize=10, color="black", label="ε = ∞"))
    handles.append(plt.Line2D([], [], linestyle="--", color="0.35", label="Pareto front (private)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if nrows == 1 else 0.04, 1, 1))
    return fig


def cost_figure(costs: pd.DataFrame, styles: Styles) -> plt.Figure:
    """AUROC cost (AUROC at ε minus ε = ∞) against ε, one line per (dataset, model, method)."""
    epsilons = sorted(costs["epsilon"].unique())
    pos = {e: i for i, e in enumerate(epsilons)}
    fig, ax = plt.subplots(figsize=(7.2, 3.3))
    series = list(costs.groupby(["dataset", "model", "method"], sort=True))
    methods = costs["method"].nunique()
    cells = {c: j for j, c in enumerate(sorted({(d, m) for d, m, _ in (key for key, _ in series)}))}
    for i, ((dataset, model, method), part) in enumerate(series):
        part = part.sort_values("epsilon")
        x = part["epsilon"].map(pos).to_numpy() + 0.05 * (i - (len(series) - 1) / 2)
        label = f"{dataset} / {model}" + (f" · {method}" if methods > 1 else "")
        # line style per (dataset, model), marker per method
        ax.plot(
            x,
            part["cost"],
            linestyle=LINESTYLES[cells[(dataset, model)] % len(LINESTYLES)],
            color="0.3",
            linewidth=1.2,
            label=label,
        )
        for xi, r in zip(x, part.itertuples()):
            if np.isfinite([r.cost_low, r.cost_high]).all():
                ax.plot([xi, xi], [r.cost_low, r.cost_high], color=styles.colour(r.epsilon), linewidth=1.2)
            ax.scatter(
                [xi],
                [r.cost],
                marker=styles.marker(method),
                color=styles.colour(r.epsilon),
                edgecolor="black",
                linewidth=0.6,
                s=40,
                zorder=3,
            )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(epsilons)), [epsilon_label(e) for e in epsilons])
    ax.set_xlabel("target ε")
    ax.set_ylabel("AUROC cost (vs non-private)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig
