"""Checks a dataset must pass before anything trains on it.

Every failure names the dataset, the field and the fix. Small subgroups are a warning, returned to the
caller to be flagged in the report, not an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpfair.data.contract import HARMONISED_CODES, DatasetCard, RawDataset
from dpfair.data.split import SPLITS
from dpfair.errors import DatasetError


def validate_raw(raw: RawDataset, card: DatasetCard) -> None:
    """Check what a loader returned against its card (before splitting)."""
    name = card.name
    if not isinstance(raw, RawDataset):
        raise DatasetError(
            f"dataset {name!r}: the loader returned {type(raw).__name__}; return a dpfair.data.RawDataset"
        )
    n = len(raw.labels)
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
        if not np.isfinite(raw.inputs).all():
            raise DatasetError(f"dataset {name!r}: image inputs contain NaN or inf values")
    else:
        if not isinstance(raw.inputs, pd.DataFrame) or raw.inputs.shape[1] == 0:
            raise DatasetError(f"dataset {name!r}: tabular inputs must be a non-empty pandas DataFrame of features")
    attrs = raw.attributes
    if not isinstance(attrs, pd.DataFrame) or len(attrs) != n:
        raise DatasetError(f"dataset {name!r}: attributes must be a DataFrame with one row per label ({n})")
    missing = [a for a in card.sensitive_attributes if a not in attrs.columns]
    if missing:
        raise DatasetError(
            f"dataset {name!r}: attributes lacks column(s) {missing} that the card declares; "
            f"found {list(attrs.columns)}"
        )
    extra = [c for c in attrs.columns if c not in card.sensitive_attributes]
    if extra:
        raise DatasetError(
            f"dataset {name!r}: attributes has column(s) {extra} not declared in card.sensitive_attributes"
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
        raise DatasetError(f"dataset {name!r}: patient_id has {len(raw.patient_id)} rows, labels {n}")


def validate_split(
    *,
    name: str,
    split: np.ndarray,
    labels: np.ndarray,
    attributes: pd.DataFrame,
    patient_id: np.ndarray | None,
    min_group_size: int,
) -> list[str]:
    """Check a split; returns warnings about subgroups below ``min_group_size`` in the test split."""
    unknown = set(np.unique(split)) - set(SPLITS)
    if unknown:
        raise DatasetError(f"dataset {name!r}: split has unknown value(s) {sorted(unknown)}; use {list(SPLITS)}")
    for part in SPLITS:
        in_part = labels[split == part]
        if len(np.unique(in_part)) < 2:
            raise DatasetError(
                f"dataset {name!r}: the {part} split has {len(in_part)} row(s) and one class only; "
                "use more data or different split fractions"
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
        for group, size in test[col].value_counts().items():
            if size < min_group_size:
                warnings.append(
                    f"dataset {name!r}: group {col}={group} has {size} test rows, below min_group_size={min_group_size}; "
                    "its metrics are flagged and left out of the gaps"
                )
    return warnings
