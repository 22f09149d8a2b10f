"""The per-dataset effects the findings pool: one row per dataset and ε, read from the summary tables.

Each dataset contributes the contrast its own tables already computed (estimate, standard error with the
seeds' spread and the shared test set's noise, df, verdict): the AUROC change at ε against ε = ∞ from
``auroc_changes.csv`` and the primary attribute's signed AUROC-gap change from ``gap_changes.csv``. The
meta-analysis treats each standard error as known, as random-effects pooling does (DerSimonian & Laird 1986);
at 10 seeds (9 df) that costs little, at 3 it would (docs/findings.md).

A contrast with one seed per arm (the table's ``one model``) carries the test set's noise only, not the seeds'
spread: it would be over-weighted and is left out, as is a row without an estimate.

**Orientation of a gap change.** Datasets name their two groups in no particular order, so each change is turned
to mean the same thing everywhere: the change of the advantage of the group better off at ε = ∞ (positive: that
advantage grew, the gap widened). Which group is better off is judged on the validation split, never on the
test rows the change is estimated on (:mod:`dpfair.findings.orientation`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from dpfair.errors import DpfairError
from dpfair.findings.orientation import direction

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
        part = _cell(auroc_changes, dataset=dataset, model=model, method=arm)
        keys = {"dataset": dataset, "modality": modality, "n_train": n_train, "model": model, "method": arm}
        for r in part.itertuples(index=False):
            if not _usable(r.n_seeds, r.verdict_class, r.change, r.se):
                continue
            rows.append(
                {
                    **keys,
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
    validation: Mapping[tuple, Mapping[str, float]] | None = None,
    better_off: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per (dataset, ε): the primary attribute's AUROC-gap change, turned so that positive widens.

    Only two-group (``signed``) rows pool: a τ² or excess estimand has no direction to average. ``validation``
    holds each ε = ∞ cell's validation AUROC per group (:func:`~dpfair.findings.orientation.validation_aurocs`),
    ``better_off`` the declared better-off group per dataset. The per-group changes are renamed to the better-off
    and the worse-off group, so levelling down shows.
    """
    validation, better_off = validation or {}, better_off or {}
    rows = []
    for dataset, modality, n_train in info[["dataset", "modality", "n_train"]].itertuples(index=False):
        attribute, model = attributes.get(dataset), models.get(dataset)
        arm = choose_arm(gap_changes, dataset, method)
        if attribute is None or model is None or arm is None:
            continue
        part = _cell(gap_changes, dataset=dataset, model=model, method=arm, attribute=attribute)
        keys = {"dataset": dataset, "modality": modality, "n_train": n_train, "model": model, "method": arm}
        for r in part.itertuples(index=False):
            if r.estimand != "signed":
                raise DpfairError(
                    f"findings: {dataset}'s finding-3 attribute {attribute!r} has a {r.estimand} gap change, not a "
                    "signed one (it has more than two usable groups); name a two-group attribute in "
                    f"findings.attributes.{dataset} or datasets.{dataset}.primary.attributes"
                )
            baseline, arm_value = _float(r.baseline_value), _float(r.arm_value)
            if not (_usable(r.n_seeds, r.verdict_class, r.gap_change, r.se) and math.isfinite(baseline)):
                continue
            reference, comparison = str(r.reference_group), str(r.comparison_group)
            sign, source = direction(
                validation.get((dataset, model, arm, attribute)),
                reference=reference,
                comparison=comparison,
                declared=better_off.get(dataset),
            )
            if not math.isfinite(sign):
                continue
            # gap = comparison - reference: with sign +1 the comparison group is the better off
            better, worse = (comparison, reference) if sign > 0 else (reference, comparison)
            better_change, worse_change = (
                (r.comparison_change, r.reference_change) if sign > 0 else (r.reference_change, r.comparison_change)
            )
            low, high = sign * _float(r.ci_low), sign * _float(r.ci_high)
            rows.append(
                {
                    **keys,
                    "attribute": attribute,
                    "epsilon": float(r.epsilon),
                    "better_group": better,
                    "worse_group": worse,
                    "oriented_by": source,
                    "baseline_gap": sign * baseline,
                    "arm_gap": sign * arm_value,
                    "estimate": sign * _float(r.gap_change),
                    "se": _float(r.se),
                    "df": _float(r.df),
                    "ci_low": min(low, high),
                    "ci_high": max(low, high),
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


def _cell(table: pd.DataFrame, **values) -> pd.DataFrame:
    """The table's AUROC rows whose columns equal ``values``."""
    mask = table["metric"] == METRIC
    for column, value in values.items():
        mask &= table[column] == value
    return table[mask]


def _usable(n_seeds, verdict_class, estimate, se) -> bool:
    """A contrast with the seeds' spread in its se (two or more seeds) and a finite estimate."""
    return (
        _float(n_seeds) >= 2
        and verdict_class != "one model"
        and math.isfinite(_float(estimate))
        and math.isfinite(_float(se))
        and _float(se) > 0
    )


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")
