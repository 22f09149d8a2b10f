"""The report's older figures (utility, gap, reliability) share the trade-off figures' styles: one colour per ε,
one marker per method, and colours whose greyscale lightness still orders ε."""

import math

import matplotlib
import numpy as np
import pandas as pd
from dpfair.report.figures import reliability_figure, utility_figure
from dpfair.report.tradeoff_figures import Styles

EPS = [1.0, 3.0, 10.0, math.inf]


def _luminance(rgba) -> float:
    r, g, b = matplotlib.colors.to_rgb(rgba)
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_epsilon_colours_are_ordered_in_greyscale():
    styles = Styles(epsilons=EPS, methods=["dpsgd"])
    finite = [_luminance(styles.colour(e)) for e in EPS[:-1]]
    assert finite == sorted(finite) and min(np.diff(finite)) > 0.1
    assert _luminance(styles.colour(math.inf)) < finite[0]


def test_utility_figure_uses_the_epsilon_colours_and_method_markers():
    styles = Styles(epsilons=EPS, methods=["dpsgd", "dpsgd_patient"])
    rows = [
        {"model": f"cnn · {m}", "method": m, "epsilon": e, "seed": s, "auroc": 0.7 + 0.01 * s}
        for m in ("dpsgd", "dpsgd_patient")
        for e in EPS
        for s in range(2)
    ]
    fig = utility_figure(pd.DataFrame(rows), EPS, styles=styles)
    ax = fig.axes[0]
    means = [c for c in ax.collections if len(c.get_offsets()) == len(EPS) and c.get_sizes()[0] == 36]
    assert len(means) == 2
    for c in means:
        got = [matplotlib.colors.to_hex(f) for f in c.get_facecolors()]
        assert got == [matplotlib.colors.to_hex(styles.colour(e)) for e in EPS]
    assert {h.get_marker() for h in ax.get_legend().legend_handles} == {
        styles.marker("dpsgd"),
        styles.marker("dpsgd_patient"),
    }


def test_reliability_lines_take_the_colour_of_their_epsilon():
    styles = Styles(epsilons=EPS, methods=["dpsgd"])
    rows = [
        {
            "model": "cnn",
            "attribute": "overall",
            "epsilon": e,
            "bin": b,
            "count": 10,
            "mean_predicted": (b + 0.5) / 5,
            "observed_frequency": (b + 0.5) / 5,
        }
        for e in EPS
        for b in range(5)
    ]
    fig = reliability_figure(pd.DataFrame(rows), styles=styles)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("ε")]
    assert [matplotlib.colors.to_hex(ln.get_color()) for ln in lines] == [
        matplotlib.colors.to_hex(styles.colour(e)) for e in EPS
    ]
