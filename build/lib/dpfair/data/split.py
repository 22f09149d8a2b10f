"""Train/validation/test splits, stratified by label and sensitive attributes, grouped by patient.

The split depends only on the data and its own seed, so it is identical across the ε grid and the
model seeds, and the test rows never reach training or model selection.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

SPLITS: tuple[str, ...] = ("train", "val", "test")


def strata(labels: np.ndarray, attributes: pd.DataFrame, *, min_count: int) -> np.ndarray:
    """Label × attribute strata; strata smaller than ``min_count`` fall back to the label alone.

    Example:
        >>> strata(np.array([0, 0, 1, 1]), pd.DataFrame({"sex": ["f", "f", "m", "f"]}), min_count=2).tolist()
        ['0|f', '0|f', '1', '1']
    """
    key = pd.Series(labels.astype(int).astype(str), index=range(len(labels)))
    for col in attributes.columns:
        key = key + "|" + attributes[col].astype(str).to_numpy()
    counts = key.map(key.value_counts())
    fallback = pd.Series(labels.astype(int).astype(str), index=key.index)
    return key.where(counts >= min_count, fallback).to_numpy()


def stratified_split(
    *,
    labels: np.ndarray,
    attributes: pd.DataFrame,
    patient_id: np.ndarray | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> np.ndarray:
    """Assign each row to ``train``, ``val`` or ``test``.

    Without patient ids this is two stratified ``train_test_split`` calls. With them, every patient's
    rows land in one split (``StratifiedGroupKFold``, which matches the fractions approximately:
    ``1/round(1/fraction)``).

    Example:
        >>> y = np.array([0, 1] * 50)
        >>> s = stratified_split(labels=y, attributes=pd.DataFrame({"sex": ["f", "m"] * 50}), seed=0)
        >>> sorted(pd.Series(s).value_counts().to_dict().items())
        [('test', 15), ('train', 69), ('val', 16)]
    """
    n = len(labels)
    min_count = max(2, math.ceil(2 / min(val_fraction, test_fraction)))
    key = strata(labels, attributes, min_count=min_count)
    out = np.full(n, "train", dtype=object)
    idx = np.arange(n)
    if patient_id is None:
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=key, random_state=seed)
        rel_val = val_fraction / (1 - test_fraction)
        train, val = train_test_split(rest, test_size=rel_val, stratify=key[rest], random_state=seed + 1)
    else:
        groups = np.asarray(patient_id)
        rest, test = _group_fold(idx, key, groups, fraction=test_fraction, seed=seed)
        rel_val = val_fraction / (1 - test_fraction)
        train, val = _group_fold(rest, key[rest], groups[rest], fraction=rel_val, seed=seed + 1)
    out[val] = "val"
    out[test] = "test"
    return out.astype(str)


def _group_fold(idx, key, groups, *, fraction: float, seed: int):
    n_splits = max(2, round(1 / fraction))
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, held = next(cv.split(idx, key, groups))
    return idx[keep], idx[held]
