"""The wide views of the summary: metrics.csv and subgroups.csv columns, and the audit's columns joined in.

The long tables (gaps.csv, audit.csv, ...) are the source of truth; the per-run rows of metrics.csv are
derived here from a run's fairness report, and the loss attack's ``mia_*`` columns from audit.csv.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from dpfair.fairness import metric_names
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.tables.summary import NA_VALUES

#: Column order of results/summary/metrics.csv (the output contract in the README).
METRIC_COLUMNS = [
    "dataset", "model", "method", "epsilon", "seed", "attribute",
    "auroc", "auroc_ci_low", "auroc_ci_high", "worst_group_auroc", "auroc_gap", "n_groups_in_gap",
    "auroc_null_gap", "auroc_gap_p_value",
    "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "sample_rate", "expected_batch_size",
    # recipe: what produced the row (chosen by tuning for a tuned arm; tuning_trials 0 for a fixed recipe)
    "tuning_trials", "epsilon_per_trial", "lr", "optimizer", "lr_schedule", "ema_decay", "select_best", "best_epoch",
    "class_weight", "clip_policy", "augmult",
    "sampling", "epochs", "steps", "accountant", "n_train", "n_test", "train_seconds", "privacy_unit", "n_units", "device",
    "epsilon_rdp", "epsilon_prv", "epsilon_pld",
    "mia_auroc", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0p1pct_fpr", "mia_bound_violated", "mia_epsilon_empirical",
    "auroc_gap_ci_low", "auroc_gap_ci_high", "worst_group_auroc_ci_low", "worst_group_auroc_ci_high", "auroc_ratio",
    "auprc", "auprc_ci_low", "auprc_ci_high", "auprc_gap", "auprc_gap_ci_low", "auprc_gap_ci_high",
    "ece", "ece_ci_low", "ece_ci_high", "ece_gap", "ece_gap_ci_low", "ece_gap_ci_high",
    "threshold", "tpr", "tpr_ci_low", "tpr_ci_high", "fpr", "fpr_ci_low", "fpr_ci_high",
    "ppv", "ppv_ci_low", "ppv_ci_high", "balanced_accuracy", "balanced_accuracy_ci_low", "balanced_accuracy_ci_high",
    "eod", "eod_ci_low", "eod_ci_high", "eqodds_diff", "eqodds_diff_ci_low", "eqodds_diff_ci_high",
    "dpd", "dpd_ci_low", "dpd_ci_high",
]
SUBGROUP_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attribute", "group", "n", "n_positive", "auroc"]


#: metrics.csv names for the gaps of evaluate_fairness (equal opportunity = TPR gap, demographic parity =
#: selection-rate gap, equalized odds = max of TPR and FPR gaps).
GAP_NAMES = {"auroc": "auroc_gap", "auprc": "auprc_gap", "tpr": "eod", "equalized_odds": "eqodds_diff",
             "selection_rate": "dpd", "ece": "ece_gap"}


def metric_rows(report) -> list[dict]:
    overall = {}
    for r in report.overall.to_dict("records"):
        if r["metric"] in ("auroc", "auprc", "ece", "tpr", "fpr", "ppv", "balanced_accuracy"):
            overall.update({r["metric"]: r["value"], f"{r['metric']}_ci_low": r["ci_low"], f"{r['metric']}_ci_high": r["ci_high"]})
    overall["threshold"] = report.threshold
    rows = []
    for attr, gaps in report.gaps.groupby("attribute", sort=False):
        row = {"attribute": attr, **overall}
        for g in gaps.to_dict("records"):
            if g["metric"] == "auroc":
                row.update(worst_group_auroc=g["worst_group"], worst_group_auroc_ci_low=g["worst_group_ci_low"],
                           worst_group_auroc_ci_high=g["worst_group_ci_high"], auroc_ratio=g["ratio"],
                           n_groups_in_gap=g["n_groups"], auroc_null_gap=g["null_gap"], auroc_gap_p_value=g["p_value"])
            if g["metric"] in GAP_NAMES:
                name = GAP_NAMES[g["metric"]]
                row.update({name: g["gap"], f"{name}_ci_low": g["ci_low"], f"{name}_ci_high": g["ci_high"]})
        rows.append(row)
    if not rows:  # a dataset without sensitive attributes still reports utility and the audit
        rows.append({"attribute": NO_ATTRIBUTE, **overall, "n_groups_in_gap": 0})
    return rows


def subgroup_rows(groups: pd.DataFrame) -> pd.DataFrame:
    if groups.empty:
        return pd.DataFrame(columns=["attribute", "group", "n", "n_positive", "flagged", "auroc"])
    keys = ["attribute", "group"]
    sizes = groups[[*keys, "n", "n_positive", "flagged"]].drop_duplicates(keys)
    wide = groups.pivot(index=keys, columns="metric", values=["value", "ci_low", "ci_high"])
    wide.columns = [m if stat == "value" else f"{m}_{stat}" for stat, m in wide.columns]
    metrics = [m for m in metric_names() if m in groups["metric"].unique()]
    wide = wide[[c for m in metrics for c in (m, f"{m}_ci_low", f"{m}_ci_high")]].reset_index()
    return sizes.merge(wide, on=keys, how="left")


#: metrics.csv columns taken from the loss attack's overall rows of audit.csv.
LOSS_METRIC_COLUMNS = {
    "auroc": "mia_auroc", "tpr_at_1pct_fpr": "mia_tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr": "mia_tpr_at_0p1pct_fpr",
    "bound_violated": "mia_bound_violated", "epsilon_empirical": "mia_epsilon_empirical",
}


def join_loss_columns(*, metrics: pd.DataFrame, subgroups: pd.DataFrame | None, audit: pd.DataFrame):
    """metrics.csv's ``mia_*`` columns and subgroups.csv's ``mia_auroc`` from the loss attack's rows of audit.csv."""
    keys = ["dataset", "model", "epsilon", "seed"]
    loss = audit[audit["attack"] == "loss"]
    overall = loss[loss["attribute"].fillna("") == ""]
    wide = overall.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    wide = wide.rename(columns=LOSS_METRIC_COLUMNS)
    for col in LOSS_METRIC_COLUMNS.values():
        if col not in wide:
            wide[col] = math.nan
    if "mia_bound_violated" in wide and wide["mia_bound_violated"].notna().any():
        wide["mia_bound_violated"] = wide["mia_bound_violated"].map(lambda v: v if pd.isna(v) else bool(v))
    drop = [c for c in [*LOSS_METRIC_COLUMNS.values(), "mia_epsilon_lower_bound"] if c in metrics.columns]
    merged = metrics.drop(columns=drop).merge(wide[[*keys, *LOSS_METRIC_COLUMNS.values()]], on=keys, how="left")
    if subgroups is None:
        return merged, None
    per_group = loss[loss["attribute"].fillna("") != ""][[*keys, "attribute", "group", "value"]].rename(columns={"value": "mia_auroc"})
    sub = subgroups.drop(columns=[c for c in ("mia_auroc",) if c in subgroups.columns])
    sub = sub.merge(per_group, on=[*keys, "attribute", "group"], how="left")
    return merged, sub


def join_audit_columns(*, audit: str | Path, metrics: str | Path, subgroups: str | Path) -> None:
    """Rewrite the summary's metrics.csv and subgroups.csv with the loss attack's columns from audit.csv."""
    def read(path):
        return pd.read_csv(path, keep_default_na=False, na_values=NA_VALUES, dtype={"group": str, "attribute": str})

    audit_df = read(audit)
    audit_df["epsilon"] = audit_df["epsilon"].astype(float)
    metrics_df, subgroups_df = read(metrics), read(subgroups)
    for frame in (metrics_df, subgroups_df):
        if "epsilon" in frame:
            frame["epsilon"] = frame["epsilon"].astype(float)
    merged, sub = join_loss_columns(metrics=metrics_df, subgroups=subgroups_df, audit=audit_df)
    ordered = [c for c in METRIC_COLUMNS if c in merged.columns]
    merged[[*ordered, *(c for c in merged.columns if c not in ordered)]].to_csv(metrics, index=False)
    sub.to_csv(subgroups, index=False)
