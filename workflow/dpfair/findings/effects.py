"""The per-dataset effects the findings pool: one row per dataset and ε, read from the summary tables.

Each dataset contributes the contrast its own tables already computed (estimate, standard error with the
seeds' spread and the shared test set's noise, df, verdict): the AUROC change at ε against ε = ∞ from
``auroc_changes.csv`` and the primary attribute's signed AUROC-gap change from ``gap_changes.csv``. The
meta-analysis treats each standard error as known, as random-effects pooling does (DerSimonian & Laird 1986).

**Orientation of a gap change.** Datasets name their two groups in no particular order (B − A, female −
male), so a pooled signed change would average directions that mean nothing together. Each dataset's change
is turned so that positive is *widening*: multiplied by the sign of its ε = ∞ gap, i.e. measured as the
change of (better-off − worse-off group) at ε = ∞. Because the ε = ∞ gap's own noise enters the change with
the opposite sign, this orientation is biased towards *narrowing* when a true gap is near zero (regression to
the mean): conservative for the review's claim that DP widens gaps, never in its favour (a seeded simulation in
tests/test_findings.py checks that random groups do not read "widens").
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from dpfair.errors import DpfairError

#: The method whose tuned arm the findings prefer; the fixed recipe stands in where a dataset has no tuned arm.
BASE_METHOD = "dpsgd"
TUNED_METHOD = f"{BASE_METHOD}-tuned"
METRIC = "auroc"


def dataset_info(metas: Mapping[str, Mapping]) -> pd.DataFrame:
    """Per dataset: its modality and training-split size, from the prepared ``dataset.json`` files."""
    rows = [
        {"dataset": name, "modality": meta["modality"], "n_train": int(meta["n"]["train"])}
        for name, meta in metas.items()
    ]
    return pd.DataFrame(rows, columns=["dataset", "modality", "n_train"])


def choose_arm(table: pd.DataFrame, dataset: str, method: str) -> str | None:
    """The method a dataset's findings read: ``method`` itself, or with ``"auto"`` the tuned arm where it exists.

    The tuned arm compares a recipe searched for each ε with one searched for ε = ∞ (equal effort on both sides);
    the fixed recipe was made for non-private training, so its ε cost is partly the recipe's.
    """
    present = set(table.loc[table["dataset"] == dataset, "method"])
    if method != "auto":
        return method if method in present else None
    for candidate in (TUNED_METHOD, BASE_METHOD):
        if candidate in present:
            return candidate
    return None


def utility_effects(
    auroc_changes: pd.DataFrame, info: pd.DataFrame, *, models: Mapping[str, str], method: str = "auto"
) -> pd.DataFrame:
    """Per (dataset, ε): the AUROC change against ε = ∞, its se and df, and the dataset's table verdict."""
    rows = []
    for dataset, modality, n_train in info[["dataset", "modality", "n_train"]].itertuples(index=False):
        arm = choose_arm(auroc_changes, dataset, method)
        model = models.get(dataset)
        if arm is None or model is None:
            continue
        part = auroc_changes[
            (auroc_changes["dataset"] == dataset)
            & (auroc_changes["model"] == model)
            & (auroc_changes["method"] == arm)
            & (auroc_changes["metric"] == METRIC)
        ]
        for r in part.itertuples(index=False):
            rows.append(
                {
                    "dataset": dataset,
                    "modality": modality,
                    "n_train": n_train,
                    "model": model,
                    "method": arm,
                    "epsilon": float(r.epsilon),
                    "estimate": _float(r.change),
                    "se": _float(r.se),
                    "df": _float(r.df),
                    "ci_low": _float(r.ci_low),
                    "ci_high": _float(r.ci_high),
                    "p_value": _float(r.p_value),
                    "n_seeds": int(r.n_seeds),
                    "arm_value": _float(r.arm_value),
                    "reference_value": _float(r.reference_value),
                    "table_verdict_class": r.verdict_class,
                }
            )
    return pd.DataFrame(rows)


def gap_effects(
    gap_changes: pd.DataFrame,
    info: pd.DataFrame,
    *,
    models: Mapping[str, str],
    attributes: Mapping[str, str],
    method: str = "auto",
) -> pd.DataFrame:
    """Per (dataset, ε): the primary attribute's signed AUROC-gap change, oriented so that positive widens.

    Only two-group (``signed``) rows pool: a τ² or excess estimand has no direction to average. The per-group
    changes are renamed to the better-off and the worse-off group at ε = ∞, so levelling down shows.
    """
    rows = []
    for dataset, modality, n_train in info[["dataset", "modality", "n_train"]].itertuples(index=False):
        attribute, model = attributes.get(dataset), models.get(dataset)
        arm = choose_arm(gap_changes, dataset, method)
        if attribute is None or model is None or arm is None:
            continue
        part = gap_changes[
            (gap_changes["dataset"] == dataset)
            & (gap_changes["model"] == model)
            & (gap_changes["method"] == arm)
            & (gap_changes["metric"] == METRIC)
            & (gap_changes["attribute"] == attribute)
        ]
        for r in part.itertuples(index=False):
            if r.estimand != "signed":
                raise DpfairError(
                    f"findings: {dataset}'s primary attribute {attribute!r} has a {r.estimand} gap change, not a "
                    "signed one; declare a two-group attribute in datasets.<name>.primary.attributes (or findings.gap_attribute)"
                )
            baseline = _float(r.baseline_value)
            sign = 1.0 if not math.isfinite(baseline) or baseline >= 0 else -1.0
            # gap = comparison - reference: with a positive ε = ∞ gap the comparison group is the better off
            better, worse = (
                (r.comparison_group, r.reference_group) if sign > 0 else (r.reference_group, r.comparison_group)
            )
            better_change, worse_change = (
                (r.comparison_change, r.reference_change) if sign > 0 else (r.reference_change, r.comparison_change)
            )
            rows.append(
                {
                    "dataset": dataset,
                    "modality": modality,
                    "n_train": n_train,
                    "model": model,
                    "method": arm,
                    "attribute": attribute,
                    "epsilon": float(r.epsilon),
                    "better_group": better,
                    "worse_group": worse,
                    "baseline_gap": abs(baseline) if math.isfinite(baseline) else np.nan,
                    "estimate": sign * _float(r.gap_change),
                    "se": _float(r.se),
                    "df": _float(r.df),
                    "ci_low": sign * _float(r.ci_low if sign > 0 else r.ci_high),
                    "ci_high": sign * _float(r.ci_high if sign > 0 else r.ci_low),
                    "p_value": _float(r.p_value),
                    "mde": _float(r.mde),
                    "n_seeds": int(r.n_seeds),
                    "better_change": _float(better_change),
                    "worse_change": _float(worse_change),
                    "table_verdict_class": r.verdict_class,
                    "table_verdict": r.verdict,
                }
            )
    return pd.DataFrame(rows)


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")
