"""The wide views of the summary: metrics.csv and subgroups.csv columns, and the audit's columns joined in.

The long tables (gaps.csv, audit.csv, ...) are the source of truth; the per-run rows of metrics.csv are
derived here from a run's fairness report, and the loss attack's ``mia_*`` columns from audit.csv (the
run's own method's audit: empty where that method's run was not audited).

metrics.csv's metric columns come from the metric registry (:mod:`dpfair.fairness.metrics_registry`):
each entry says whether the wide table has its overall value and what its gap is called there, so a
registered metric reaches every table without an edit here. The layout, in order:

1. the run's keys (:data:`KEY_COLUMNS`);
2. the primary metric (:data:`PRIMARY_METRIC`, AUROC): value and interval, worst group, gap, the number
   of groups in the gap, null gap and p-value;
3. what produced the run (:data:`RUN_COLUMNS`: privacy accounting, recipe, cost, the audit's ``mia_*``);
4. the rest of the primary metric's gap statistics (gap interval, worst group's interval, ratio);
5. the other metrics computed from the scores alone (AUPRC, ECE), each value then gap;
6. ``threshold``, the values of the operating-point metrics (TPR, FPR, ...), then their gaps
   (``eod``, ``eqodds_diff``, ``dpd``): a derived gap follows the last metric it combines.

Within sections 5 and 6 entries keep registration order, so a new metric lands next to its kind.
"""

from __future__ import annotations

import math

import pandas as pd

from dpfair.fairness import (
    derived_gaps,
    gap_metric_names,
    get_gap,
    get_metric,
    metric_names,
    with_interval,
)
from dpfair.metrics import NO_ATTRIBUTE

#: The run's keys, the first columns of metrics.csv.
KEY_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attribute"]
#: The metric whose gap statistics metrics.csv carries in full (every metric's are in gaps.csv).
PRIMARY_METRIC = "auroc"
#: metrics.csv columns that are not metrics: copied from the run record, or joined from the audit.
RUN_COLUMNS = [
    "epsilon_spent",
    "delta",
    "noise_multiplier",
    "max_grad_norm",
    "sample_rate",
    "expected_batch_size",
    # recipe: what produced the row (chosen by tuning for a tuned arm; tuning_trials 0 for a fixed recipe)
    "tuning_trials",
    "epsilon_per_trial",
    "lr",
    "optimizer",
    "lr_schedule",
    "ema_decay",
    "select_best",
    "best_epoch",
    "class_weight",
    "clip_policy",
    "augmult",
    "trainable",
    "public_weights",
    "sampling",
    "epochs",
    "steps",
    "accountant",
    "n_train",
    "n_test",
    "train_seconds",
    "privacy_unit",
    "n_units",
    "device",
    "epsilon_rdp",
    "epsilon_prv",
    "epsilon_pld",
    "mia_auroc",
    "mia_tpr_at_1pct_fpr",
    "mia_tpr_at_0p1pct_fpr",
    "mia_bound_violated",
    "mia_epsilon_empirical",
]
SUBGROUP_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attribute", "group", "n", "n_positive", "auroc"]


def _primary_extras() -> dict[str, str]:
    """The primary metric's gap statistics beyond gap and interval: gaps-table field -> metrics.csv column."""
    name, gap = PRIMARY_METRIC, get_metric(PRIMARY_METRIC).gap_name
    return {
        "worst_group": f"worst_group_{name}",
        "n_groups": "n_groups_in_gap",
        "null_gap": f"{name}_null_gap",
        "p_value": f"{gap}_p_value",
        "worst_group_ci_low": f"worst_group_{name}_ci_low",
        "worst_group_ci_high": f"worst_group_{name}_ci_high",
        "ratio": f"{name}_ratio",
    }


def _primary_columns() -> tuple[list[str], list[str]]:
    """The primary metric's columns before and after :data:`RUN_COLUMNS` (sections 2 and 4)."""
    primary, extra = get_metric(PRIMARY_METRIC), _primary_extras()
    gap, gap_low, gap_high = primary.gap_columns
    head = [*primary.overall_columns, extra["worst_group"], gap, extra["n_groups"], extra["null_gap"], extra["p_value"]]
    tail = [gap_low, gap_high, extra["worst_group_ci_low"], extra["worst_group_ci_high"], extra["ratio"]]
    return head, tail


def _wide_order() -> list:
    """Metrics in registration order, each derived gap right after the last metric it combines."""
    position = {m: i for i, m in enumerate(metric_names())}
    after = {}
    for derived in derived_gaps():
        after.setdefault(max(derived.parts, key=position.__getitem__), []).append(derived)
    return [entry for m in metric_names() for entry in (get_metric(m), *after.get(m, ()))]


def metric_columns() -> list[str]:
    """Column order of results/summary/metrics.csv (the output contract in the README), from the registry.

    Raises:
        ValueError: Two columns have one name (a metric named like a run column, e.g. ``delta``).

    Example:
        >>> columns = metric_columns()
        >>> columns[:9]
        ['dataset', 'model', 'method', 'epsilon', 'seed', 'attribute', 'auroc', 'auroc_ci_low', 'auroc_ci_high']
        >>> columns[-3:]
        ['dpd', 'dpd_ci_low', 'dpd_ci_high']
    """
    head, tail = _primary_columns()
    entries = [e for e in _wide_order() if e.name != PRIMARY_METRIC]
    scores = [c for e in entries if not e.needs_threshold for c in (*e.overall_columns, *e.gap_columns)]
    operating = [e for e in entries if e.needs_threshold]
    columns = [
        *KEY_COLUMNS,
        *head,
        *RUN_COLUMNS,
        *tail,
        *scores,
        "threshold",
        *(c for e in operating for c in e.overall_columns),
        *(c for e in operating for c in e.gap_columns),
    ]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ValueError(f"metrics.csv would have repeated columns {repeated}: rename the metric or its wide_gap")
    return columns


def gap_names() -> dict[str, str]:
    """metrics.csv names of the gaps of evaluate_fairness, per gaps-table metric that has one.

    Example:
        >>> names = gap_names()
        >>> names["tpr"], names["selection_rate"], names["equalized_odds"], names["auroc"]
        ('eod', 'dpd', 'eqodds_diff', 'auroc_gap')
    """
    return {m: get_gap(m).gap_name for m in gap_metric_names() if get_gap(m).gap_name}


def overall_metrics() -> tuple[str, ...]:
    """Metrics whose overall value (with its interval) metrics.csv carries."""
    return tuple(m for m in metric_names() if get_metric(m).wide_overall)


def metric_rows(report) -> list[dict]:
    """metrics.csv's metric columns for one run, one row per attribute (one ``none`` row without any).

    Args:
        report: The run's :class:`~dpfair.fairness.FairnessReport`.

    Returns:
        Rows with the overall values, ``threshold`` and per attribute the gaps the registry names
        (:func:`gap_names`), plus the primary metric's worst group, ratio, null gap and p-value.
    """
    wide_overall = set(overall_metrics())
    overall = {}
    for r in report.overall.to_dict("records"):
        if r["metric"] in wide_overall:
            overall.update(zip(with_interval(r["metric"]), (r["value"], r["ci_low"], r["ci_high"])))
    overall["threshold"] = report.threshold
    names, extras = gap_names(), _primary_extras()
    rows = []
    for attr, gaps in report.gaps.groupby("attribute", sort=False):
        row = {"attribute": attr, **overall}
        for g in gaps.to_dict("records"):
            if g["metric"] == PRIMARY_METRIC:
                row.update({column: g[field] for field, column in extras.items()})
            if g["metric"] in names:
                row.update(zip(with_interval(names[g["metric"]]), (g["gap"], g["ci_low"], g["ci_high"])))
        rows.append(row)
    if not rows:  # a dataset without sensitive attributes still reports utility and the audit
        rows.append({"attribute": NO_ATTRIBUTE, **overall, "n_groups_in_gap": 0})
    return rows


def subgroup_rows(groups: pd.DataFrame) -> pd.DataFrame:
    """Per-group metrics made wide: one row per (attribute, group), its sizes and flag, each metric and its interval."""
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
    "auroc": "mia_auroc",
    "tpr_at_1pct_fpr": "mia_tpr_at_1pct_fpr",
    "tpr_at_0p1pct_fpr": "mia_tpr_at_0p1pct_fpr",
    "bound_violated": "mia_bound_violated",
    "epsilon_empirical": "mia_epsilon_empirical",
}


#: The keys a run's audit rows are joined on: the run's, method included (each method is audited on its own).
AUDIT_JOIN_KEYS = ["dataset", "model", "method", "epsilon", "seed"]


def join_loss_columns(*, metrics: pd.DataFrame, subgroups: pd.DataFrame | None, audit: pd.DataFrame):
    """metrics.csv's ``mia_*`` columns and subgroups.csv's ``mia_auroc`` from the loss attack's rows of audit.csv.

    Joined on the run's keys with its method (:data:`AUDIT_JOIN_KEYS`): each row carries its own method's
    audit, and a run that was not audited (a tuned arm, or a method whose unit the loss attack does not test,
    whose row in audit.csv is ``skipped``) has the columns empty. A table without a ``method`` column comes
    from before there were methods, when every run was :data:`dpfair.audit.registry.DEFAULT_METHOD`'s.

    Returns:
        ``(metrics, subgroups)`` with the columns joined in (``subgroups`` None when given None).

    Example:
        >>> audit = pd.DataFrame([{"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": 1.0, "seed": 0,
        ...                        "attack": "loss", "metric": "auroc", "value": 0.6, "attribute": ""}])
        >>> metrics = pd.DataFrame({"dataset": "d", "model": "m", "method": ["dpsgd", "dpsgd-tuned"], "epsilon": 1.0,
        ...                         "seed": 0, "attribute": "none"})
        >>> join_loss_columns(metrics=metrics, subgroups=None, audit=audit)[0]["mia_auroc"].tolist()
        [0.6, nan]
    """
    keys = AUDIT_JOIN_KEYS
    metrics, audit = _with_method(metrics), _with_method(audit)
    loss = audit[(audit["attack"] == "loss") & audit["metric"].isin(list(LOSS_METRIC_COLUMNS))]
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
    subgroups = _with_method(subgroups)
    per_group = loss[(loss["attribute"].fillna("") != "") & (loss["metric"] == "auroc")]
    per_group = per_group[[*keys, "attribute", "group", "value"]].rename(columns={"value": "mia_auroc"})
    sub = subgroups.drop(columns=[c for c in ("mia_auroc",) if c in subgroups.columns])
    sub = sub.merge(per_group, on=[*keys, "attribute", "group"], how="left")
    return merged, sub


def _with_method(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``method`` column: :data:`~dpfair.audit.registry.DEFAULT_METHOD` where a table predates it."""
    if "method" in frame.columns:
        return frame
    from dpfair.audit.registry import DEFAULT_METHOD

    return frame.assign(method=DEFAULT_METHOD)
