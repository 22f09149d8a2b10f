"""Outcome-leakage checks on a tabular loader's features, before anything trains on them.

A feature that predicts the label on its own almost always means the module kept something it should
have dropped: the outcome in another form, follow-up time, a censoring flag, a row id that sorts by
outcome, or a risk score fitted on this same cohort. The checks:

* single-feature AUROC, max(AUROC, 1 − AUROC), of each column against the label (numeric columns as
  they are, missing values at the median; categorical columns by their levels' positive rate): above
  :data:`FAIL_AUROC` is an error, above :data:`WARN_AUROC` a warning naming the column (some real
  predictors are that strong; a person must decide);
* column names that look like follow-up time, status, censoring or row ids: a warning.

Measured on support2 before its fix: ``time`` alone 0.771 (it passed a 0.9-only check and raised the
model's AUROC by 0.1), ``num_surv6m`` 0.741.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dpfair.data.contract import DatasetCard, RawDataset
from dpfair.errors import DatasetError

FAIL_AUROC = 0.9
WARN_AUROC = 0.75
#: Name fragments of follow-up times, status or censoring flags and row ids.
SUSPICIOUS_NAMES = re.compile(
    r"(^|[_\W])(time|futime|fu_?time|follow_?up|duration|days?_to|tte|status|event|censor(ed|ing)?|death|died|"
    r"dead|outcome|id|pid|row_?id|index|record_?id|subject_?id)($|[_\W])",
    re.IGNORECASE,
)


def single_feature_aurocs(inputs: pd.DataFrame, labels) -> dict[str, float]:
    """max(AUROC, 1 − AUROC) of each column alone; constant columns are left out.

    Example:
        >>> frame = pd.DataFrame({"x": [1, 2, 3, 4], "group": ["a", "a", "b", "b"], "flat": 1})
        >>> single_feature_aurocs(frame, [0, 0, 1, 1])
        {'x': 1.0, 'group': 1.0}
    """
    y = np.asarray(labels).astype(int)
    out = {}
    for column in inputs.columns:
        values = inputs[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            x = pd.to_numeric(values, errors="coerce").astype(float)
            x = x.fillna(x.median()).to_numpy()
        else:  # a level's positive rate ranks the levels the way the label does (an upper bound for this column)
            codes = values.astype(object).where(values.notna(), "missing").astype(str)
            x = codes.map(pd.Series(y, index=codes.index).groupby(codes).mean()).to_numpy(dtype=float)
        if np.nanstd(x) == 0:
            continue
        auc = float(roc_auc_score(y, x))
        out[str(column)] = max(auc, 1 - auc)
    return out


def check_leakage(raw: RawDataset, card: DatasetCard) -> list[str]:
    """Warnings for suspicious features; raises :class:`DatasetError` above :data:`FAIL_AUROC`.

    Image datasets are not checked (no columns to look at).
    """
    if card.modality != "tabular" or not isinstance(raw.inputs, pd.DataFrame):
        return []
    aurocs = single_feature_aurocs(raw.inputs, raw.labels)
    failing = {c: round(a, 3) for c, a in aurocs.items() if a > FAIL_AUROC}
    if failing:
        raise DatasetError(
            f"dataset {card.name!r}: feature(s) predict the label alone with AUROC above {FAIL_AUROC}: {failing}; "
            "this is almost always outcome leakage: drop them in the loader and say why in its docstring"
        )
    warnings = [
        f"dataset {card.name!r}: feature {c!r} predicts the label alone with AUROC {a:.3f} (above {WARN_AUROC}); "
        "check it is a baseline measurement and not the outcome, a follow-up time or a score fitted on this cohort"
        for c, a in aurocs.items()
        if a > WARN_AUROC
    ]
    warnings += [
        f"dataset {card.name!r}: feature {c!r} is named like a follow-up time, status, censoring flag or row id; "
        "drop it unless it is known at prediction time"
        for c in raw.inputs.columns
        if SUSPICIOUS_NAMES.search(str(c))
    ]
    return warnings
