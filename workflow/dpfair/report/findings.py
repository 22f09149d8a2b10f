"""The report's Findings section, first on the page when a benchmark pools its datasets.

Rows come from ``results/summary/findings.csv`` (:mod:`dpfair.findings.table`): per finding the review's claim,
the pooled verdicts as sentences (imaging, tabular, all; finding 2's meta-regression) and a table of every
dataset's and pooled row.
"""

from __future__ import annotations

import math

import pandas as pd

from dpfair.report.fmt import epsilon_label, number

TITLES = {
    1: "Finding 1: at ε ≈ 10, is DP-SGD non-inferior to non-private training?",
    2: "Finding 2: what does ε ≈ 1 cost, and more on smaller datasets?",
    3: "Finding 3: does DP widen the subgroup AUROC gap?",
}


FIXED_RECIPE = (
    "These contrasts come from one fixed recipe per dataset, the same at every ε: a recipe made for non-private "
    "training, so part of what DP costs here is the recipe's (docs/tuning.md); a benchmark that tunes privately "
    "reads its tuned arms instead."
)


def arm_note(table: pd.DataFrame) -> str:
    """Which arm the findings read, and what that implies, in one sentence."""
    methods = set(";".join(table["method"].dropna().astype(str)).split(";")) - {""}
    if methods and all(not m.endswith("-tuned") for m in methods):
        return FIXED_RECIPE
    return (
        "Each dataset's privately tuned arm is read against its tuned ε = ∞ arm (the same number of trials, each "
        "in its own space); a dataset without one enters with its fixed recipe."
    )


def findings_section(table: pd.DataFrame | None) -> dict | None:
    """The arm note and, per finding, its title, the review's claim, the pooled sentences and the table rows."""
    if table is None or table.empty:
        return None
    out = []
    for finding, part in table.groupby("finding", sort=True):
        pooled = part[part["kind"] != "dataset"]
        out.append(
            {
                "title": TITLES.get(int(finding), f"Finding {finding}"),
                "anchor": f"finding-{int(finding)}",
                "claim": part["claim"].iloc[0],
                "sentences": list(pooled["verdict"]) if not pooled.empty else [],
                "no_pooling": pooled.empty,
                "rows": [_row(r) for r in part.itertuples(index=False)],
            }
        )
    return {"note": arm_note(table), "findings": out}


def _row(r) -> dict:
    return {
        "scope": r.scope,
        "epsilon": epsilon_label(r.epsilon),
        "k": int(r.k) if _finite(r.k) else "",
        "estimate": number(r.estimate),
        "interval": f"[{number(r.ci_low)}, {number(r.ci_high)}]",
        "tau": number(math.sqrt(max(float(r.tau2), 0.0))) if _finite(r.tau2) else "",
        "i2": f"{100 * float(r.i2):.0f}%" if _finite(r.i2) else "",
        "pi": f"[{number(r.pi_low)}, {number(r.pi_high)}]" if _finite(r.pi_low) else "",
        "groups": (
            f"{number(r.better_change)} / {number(r.worse_change)}"
            if _finite(r.better_change) and _finite(r.worse_change)
            else ""
        ),
        "verdict_class": r.verdict_class,
        "verdict": r.verdict,
        "pooled": r.kind != "dataset",
    }


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
