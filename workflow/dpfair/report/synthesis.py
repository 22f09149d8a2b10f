"""The report's DP-synthesis table: do the synthetic rows keep each group's share and prevalence?

Rows come from ``results/summary/synthesis_fidelity.csv`` (:mod:`dpfair.synthesis.fidelity`), averaged over
seeds: per synthesis method, ε, attribute and group, the real and synthetic share and label prevalence, and
per method and ε the mean total variation of the one-way marginals.
"""

from __future__ import annotations

import pandas as pd

from dpfair.report.fmt import epsilon_label, number


def synthesis_section(table: pd.DataFrame | None, dataset: str) -> dict | None:
    """The dataset's fidelity rows for the template (``groups``, ``marginals``), or None without synthesis."""
    if table is None or table.empty:
        return None
    t = table[table["dataset"] == dataset]
    if t.empty:
        return None
    keys = ["method", "epsilon"]
    t = t.assign(epsilon=t["epsilon"].astype(float))
    groups = (
        t[t["kind"] == "group"]
        .groupby([*keys, "attribute", "group"], sort=True)
        .agg(
            seeds=("seed", "nunique"),
            real_share=("real_share", "mean"),
            synthetic_share=("synthetic_share", "mean"),
            real_prevalence=("real_prevalence", "mean"),
            synthetic_prevalence=("synthetic_prevalence", "mean"),
        )
        .reset_index()
    )
    marginals = (
        t[t["kind"] == "marginal"]
        .groupby(keys, sort=True)
        .agg(seeds=("seed", "nunique"), tv_mean=("total_variation", "mean"), tv_max=("total_variation", "max"))
        .reset_index()
    )
    return {
        "groups": [
            {
                "method": r.method,
                "epsilon": epsilon_label(r.epsilon),
                "attribute": r.attribute,
                "group": r.group,
                "seeds": int(r.seeds),
                "real_share": number(r.real_share),
                "synthetic_share": number(r.synthetic_share),
                "real_prevalence": number(r.real_prevalence),
                "synthetic_prevalence": number(r.synthetic_prevalence),
            }
            for r in groups.itertuples()
        ],
        "marginals": [
            {
                "method": r.method,
                "epsilon": epsilon_label(r.epsilon),
                "seeds": int(r.seeds),
                "tv_mean": number(r.tv_mean),
                "tv_max": number(r.tv_max),
            }
            for r in marginals.itertuples()
        ],
    }
