"""The report's tuning table: per cell and ε, the fixed recipe beside the privately tuned one.

Rows come from the tidy ``metrics.csv`` (one row per run and attribute; runs deduplicated here): test
AUROC (mean over seeds) of method ``m`` and of ``m-tuned``, the difference, how many trials the tuned arm
ran, what each trial was charged, and the recipe the tuning chose (the most frequent over seeds).
"""

from __future__ import annotations

import pandas as pd

from dpfair.report.fmt import epsilon_label, number
from dpfair.training.tuning.names import SUFFIX, split_method

#: The chosen-recipe columns shown (metrics.csv names).
RECIPE_COLUMNS = (
    "lr",
    "expected_batch_size",
    "epochs",
    "max_grad_norm",
    "optimizer",
    "clip_policy",
    "augmult",
    "class_weight",
    "lr_schedule",
    "ema_decay",
)


def _recipe(part: pd.DataFrame) -> str:
    out = []
    for col in RECIPE_COLUMNS:
        if col in part:
            values = part[col].dropna()
            if col == "expected_batch_size":
                values = values.round().astype(int)
            out.append(f"{col}={number(values.mode().iloc[0]) if len(values) else '—'}")
    return ", ".join(out)


def tuning_rows(metrics: pd.DataFrame) -> list[dict]:
    """One row per (model, method, ε) that has a tuned arm: fixed vs tuned test AUROC and the tuning's cost."""
    if metrics.empty or "method" not in metrics or not metrics["method"].astype(str).str.endswith(SUFFIX).any():
        return []
    runs = metrics.drop_duplicates(["model", "method", "epsilon", "seed"])
    rows = []
    for (model, method, eps), tuned in runs[runs["method"].str.endswith(SUFFIX)].groupby(
        ["model", "method", "epsilon"]
    ):
        base, _ = split_method(method)
        fixed = runs[(runs["model"] == model) & (runs["method"] == base) & (runs["epsilon"] == eps)]
        f_auc, t_auc = fixed["auroc"].mean(), tuned["auroc"].mean()
        rows.append(
            {
                "model": model,
                "method": base,
                "epsilon": epsilon_label(float(eps)),
                "seeds": int(len(tuned)),
                "fixed_auroc": number(f_auc),
                "tuned_auroc": number(t_auc),
                "difference": number(t_auc - f_auc, 2) if not fixed.empty else "—",
                "trials": number(float(tuned["tuning_trials"].mean()), 2) if "tuning_trials" in tuned else "—",
                "epsilon_per_trial": number(float(tuned["epsilon_per_trial"].mean()))
                if "epsilon_per_trial" in tuned
                else "—",
                "epsilon_spent": number(float(tuned["epsilon_spent"].max())),
                "recipe": _recipe(tuned),
            }
        )
    return sorted(
        rows, key=lambda r: (r["model"], r["method"], float("inf") if r["epsilon"] == "∞" else float(r["epsilon"]))
    )
