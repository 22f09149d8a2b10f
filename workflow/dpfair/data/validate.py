"""Checks a dataset must pass before anything trains on it.

Every failure names the dataset, the field and the fix (preparation adds the module's file). Small
subgroups, and attributes left with one group, are warnings, returned to the caller to be flagged in the
report, not errors.

Tiny data: every split must hold at least ``min(MIN_SPLIT_EVENTS, min_group_size)`` rows of each class
(10 by default). Below that an AUROC is a coin toss dressed as a number: with 3 test rows it is 0 or 1
and its bootstrap interval is [1.0, 1.0]. A user who lowers ``evaluation.min_group_size`` (to smoke-test
a module on a tiny copy of its data) lowers this floor with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpfair.data.contract import HARMONISED_CODES, DatasetCard, RawDataset
from dpfair.data.split import SPLITS
from dpfair.errors import DatasetError

#: Rows of each class (positives and negatives) every split must hold, unless min_group_size is smaller.
MIN_SPLIT_EVENTS = 10


def min_split_events(min_group_size: int) -> int:
    """Rows of each class a split needs: ``min(MIN_SPLIT_EVENTS, min_group_size)``, at least 1.

    Example:
        >>> min_split_events(30), min_split_events(5), min_split_events(1)
        (10, 5, 1)
    """
    return max(1, min(MIN_SPLIT_EVENTS, int(min_group_size)))


def validate_raw(raw: RawDataset, card: DatasetCard) -> None:
    """Check what a loader returned against its card (before splitting)."""
    name = card.name
    if not isinstance(raw, RawDataset):
        raise DatasetError(
            f"dataset {name!r}: the loader returned {type(raw).__name__}; return a dpfair.data.RawDataset"
        )
    label_array = np.asarray(raw.labels)
    if label_array.ndim != 1 and not (label_array.ndim == 2 and label_array.shape[1] == 1):
        hint = (
            "; they look one-hot: pass labels[:, 1] (the positive class's column)"
            if label_array.ndim == 2 and label_array.shape[1] == 2
            else ""
        )
        raise DatasetError(
            f"dataset {name!r}: labels must be 1-D, one 0/1 value per row (shape (N,)), got shape "
            f"{label_array.shape}{hint}"
        )
    n = len(label_array)
    if n == 0:
        raise DatasetError(
            f"dataset {name!r} is empty: the loader returned no rows; check its data source or parameters"
        )
    labels = pd.to_numeric(pd.Series(np.asarray(raw.labels).ravel()), errors="coerce")
    if labels.isna().any():
        bad = int(labels.isna().sum())
        raise DatasetError(
            f"dataset {name!r}: labels has {bad} NaN or non-numeric value(s); drop those rows or define the outcome for them"
        )
    values = {float(v) if v % 1 else int(v) for v in np.unique(labels)}
    if not values <= {0, 1}:
        raise DatasetError(
            f"dataset {name!r}: labels must be binary 0/1, found values {sorted(values)[:10]}; map the outcome to 0/1"
        )
    if len(values) < 2:
        raise DatasetError(f"dataset {name!r}: labels has one class only ({sorted(values)}); a binary task needs both")
    if len(raw.inputs) != n:
        raise DatasetError(
            f"dataset {name!r}: inputs has {len(raw.inputs)} rows but labels has {n}; they must be row-aligned"
        )
    if card.modality == "image":
        if not isinstance(raw.inputs, np.ndarray) or raw.inputs.ndim not in (4, 5):
            shape = getattr(raw.inputs, "shape", None)
            raise DatasetError(
                f"dataset {name!r}: image inputs must be one array shaped (N, C, H, W) or (N, C, D, H, W) "
                f"(all images the same shape), got {type(raw.inputs).__name__} with shape {shape}; resize them in the loader"
            )
        finite = np.isfinite(raw.inputs)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1))
            raise DatasetError(
                f"dataset {name!r}: image inputs contain NaN or inf values in {len(bad)} image(s) (first: row "
                f"{int(bad[0])}); replace them in the loader (np.nan_to_num) or drop those rows"
            )
    else:
        if not isinstance(raw.inputs, pd.DataFrame) or raw.inputs.shape[1] == 0:
            raise DatasetError(
                f"dataset {name!r}: tabular inputs must be a non-empty pandas DataFrame of features, got "
                f"{type(raw.inputs).__name__}; return pd.DataFrame(features) from the loader"
            )
        _check_finite_features(raw.inputs, name)
    attrs = raw.attributes
    if not isinstance(attrs, pd.DataFrame) or len(attrs) != n:
        raise DatasetError(f"dataset {name!r}: attributes must be a DataFrame with one row per label ({n})")
    missing = [a for a in card.sensitive_attributes if a not in attrs.columns]
    if missing:
        raise DatasetError(
            f"dataset {name!r}: attributes lacks column(s) {missing} that the card declares; "
            f"found {list(attrs.columns)}; return one string column per declared attribute, named as in the card "
            "(rename the source's column, e.g. attributes.rename(columns={'gender': 'sex'}), and code it as in "
            "docs/adding-a-dataset.md), or remove the attribute from card.sensitive_attributes"
        )
    extra = [c for c in attrs.columns if c not in card.sensitive_attributes]
    if extra:
        raise DatasetError(
            f"dataset {name!r}: attributes has column(s) {extra} not declared in card.sensitive_attributes; "
            "add them to the card (harmonised names) or leave them out of attributes"
        )
    for col in card.sensitive_attributes:
        if attrs[col].isna().any():
            raise DatasetError(
                f"dataset {name!r}: sensitive attribute {col!r} has {int(attrs[col].isna().sum())} missing value(s); "
                "code them as 'unknown' in the loader"
            )
        allowed = HARMONISED_CODES.get(col)
        if allowed is not None:
            found = pd.Series(attrs[col]).astype(str)
            bad = sorted(set(found) - set(allowed))
            if bad:
                counts = found[found.isin(bad)].value_counts()
                shown = ", ".join(f"{v!r} ({counts[v]} rows)" for v in bad[:8])
                raise DatasetError(
                    f"dataset {name!r}: sensitive attribute {col!r} has value(s) outside its harmonised coding "
                    f"{list(allowed)}: {shown}; map them in the loader"
                    + (" (use dpfair.data.age_group(ages) for age bins)" if col == "age_group" else "")
                )
    if raw.patient_id is not None and len(raw.patient_id) != n:
        raise DatasetError(
            f"dataset {name!r}: patient_id has {len(raw.patient_id)} rows, labels {n}; return one id per row"
        )


def _check_finite_features(inputs: pd.DataFrame, name: str) -> None:
    """NaN is a missing value (imputed in preparation); ±inf in a numeric column is an error naming it."""
    for column in inputs.columns:
        values = inputs[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        infinite = np.isinf(x)
        if infinite.any():
            rows = np.flatnonzero(infinite)
            raise DatasetError(
                f"dataset {name!r}: feature {str(column)!r} has {len(rows)} infinite value(s) (first at row "
                f"{int(rows[0])}); replace them in the loader with NaN (a missing value, imputed in preparation) "
                "or a finite value"
            )


def validate_split(
    *,
    name: str,
    split: np.ndarray,
    labels: np.ndarray,
    attributes: pd.DataFrame,
    patient_id: np.ndarray | None,
    min_group_size: int,
    min_events: int | None = None,
) -> list[str]:
    """Check a split; returns warnings about small test subgroups and attributes left with one group.

    Args:
        name: the dataset's name, for messages.
        split: ``train``, ``val`` or ``test`` per row.
        labels: 0/1 per row.
        attributes: one string column per sensitive attribute.
        patient_id: one id per row, or ``None``.
        min_group_size: test groups smaller than this are flagged (a warning).
        min_events: rows of each class every split needs (an error below it); default
            :func:`min_split_events` of ``min_group_size``.
    """
    unknown = set(np.unique(split)) - set(SPLITS)
    if unknown:
        raise DatasetError(f"dataset {name!r}: split has unknown value(s) {sorted(unknown)}; use {list(SPLITS)}")
    sizes = "   ".join(f"{p} {int((split == p).sum())} ({int(labels[split == p].sum())} positive)" for p in SPLITS)
    for part in SPLITS:
        in_part = labels[split == part]
        if len(np.unique(in_part)) < 2:
            raise DatasetError(
                f"dataset {name!r}: the {part} split has {len(in_part)} row(s) and one class only (split: {sizes}); "
                "use more data or different split fractions"
            )
    floor = min_split_events(min_group_size) if min_events is None else int(min_events)
    for part in ("test", "val", "train"):  # the splits metrics are read from first
        in_part = labels[split == part]
        n_pos, n_neg = int((in_part == 1).sum()), int((in_part == 0).sum())
        if min(n_pos, n_neg) < floor:
            raise DatasetError(
                f"dataset {name!r}: the {part} split has {len(in_part)} row(s), {n_pos} positive and {n_neg} "
                f"negative, below the {floor} of each class a split needs for its metrics to mean anything "
                f"(split: {sizes}); give the dataset more rows, or raise split.val_fraction / split.test_fraction "
                "in the benchmark definition (a smaller evaluation.min_group_size lowers the floor, for smoke "
                "tests only)"
            )
    if patient_id is not None:
        owners = pd.DataFrame({"patient": patient_id, "split": split}).groupby("patient")["split"].nunique()
        leaked = owners[owners > 1]
        if len(leaked):
            raise DatasetError(
                f"dataset {name!r}: {len(leaked)} patient(s) appear in more than one split "
                f"(e.g. {list(leaked.index[:3])}); split by patient"
            )
    warnings = []
    test = attributes[split == "test"]
    for col in attributes.columns:
        groups = attributes[col].astype(str).value_counts()
        if len(groups) == 1:
            warnings.append(
                f"dataset {name!r}: sensitive attribute {col!r} has one group only ({groups.index[0]!r}, every row): "
                "no gap between groups can be estimated, so its gaps are blank in the report; give rows their "
                "groups in the loader, or remove the attribute from card.sensitive_attributes"
            )
            continue
        counts = test[col].value_counts()
        for group, size in counts.items():
            if size < min_group_size:
                warnings.append(
                    f"dataset {name!r}: group {col}={group} has {size} test rows, below min_group_size={min_group_size}; "
                    "its metrics are flagged and left out of the gaps"
                )
        large = [g for g, size in counts.items() if size >= min_group_size]
        if len(large) < 2:
            warnings.append(
                f"dataset {name!r}: sensitive attribute {col!r}: {len(large)} of its {len(counts)} groups "
                f"{'has' if len(large) == 1 else 'have'} at least min_group_size={min_group_size} test rows, so no "
                "gap between its groups can be estimated "
                "(blank in the report); more rows or a larger split.test_fraction would give it two"
            )
    return warnings
