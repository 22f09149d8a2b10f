"""Prepare a dataset once: load, validate, split, encode, and save the artifact training jobs read.

Tabular preprocessing (imputation, scaling, one-hot levels) is fitted on the validation split, so the
training split is touched by nothing but DP-SGD and the guarantee covers everything learned from it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from dpfair.data.contract import DatasetCard, RawDataset, group_sort_key
from dpfair.data.leakage import check_leakage
from dpfair.data.registry import get_dataset
from dpfair.data.split import SPLITS, stratified_split
from dpfair.data.validate import validate_raw, validate_split
from dpfair.errors import DatasetError, DpfairError
from dpfair.jsonio import write_json
from dpfair.privacy.params import resolve_delta

log = logging.getLogger(__name__)


@dataclass
class PreparedDataset:
    """Row-aligned tensors plus a per-row sample table (split, label, sensitive attributes)."""

    x: torch.Tensor
    y: torch.Tensor
    samples: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def part(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of the rows in ``split`` (``train``, ``val`` or ``test``)."""
        mask = torch.from_numpy((self.samples["split"] == split).to_numpy(copy=True))
        return self.x[mask], self.y[mask]

    @property
    def card(self) -> dict:
        """The dataset card (:class:`~dpfair.data.contract.DatasetCard` fields) from the metadata."""
        return self.meta["card"]


def prepare_dataset(
    *,
    name: str,
    module: str | None = None,
    params: dict | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    delta: float | str = "auto",
    min_group_size: int = 30,
    datasets_dir: str | Path | None = None,
    min_split_events: int | None = None,
) -> PreparedDataset:
    """Load dataset ``name`` (through ``module``, default the same name) into a validated, split artifact.

    Every check's error names the module's file. ``min_split_events`` is the number of rows of each
    class every split must hold (default ``min(10, min_group_size)``, see :mod:`dpfair.data.validate`).

    Example:
        >>> prepared = prepare_dataset(name="synthetic_lesions", params={"n_samples": 200, "image_size": 16})
        >>> sorted(prepared.samples["split"].unique())
        ['test', 'train', 'val']
    """
    spec = get_dataset(module or name, datasets_dir)
    card: DatasetCard = spec.card
    try:
        raw = spec.load(**(params or {}))
    except DpfairError:
        raise
    except TypeError as exc:
        raise DatasetError(f"{spec.path}: the loader rejected params {params}: {exc}") from exc
    except Exception as exc:  # a loader's own failure names the module and what it raised
        raise DatasetError(f"{spec.path}: the loader raised {type(exc).__name__}: {exc}") from exc
    with _naming_module(spec.path):
        prepared = _prepare(
            raw,
            card,
            name=name,
            module=module,
            params=params,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            delta=delta,
            min_group_size=min_group_size,
            min_split_events=min_split_events,
        )
    return prepared


@contextmanager
def _naming_module(path: Path) -> Iterator[None]:
    """Add the dataset module's file to a :class:`DatasetError` that does not name it yet."""
    try:
        yield
    except DatasetError as exc:
        shown = _shown_path(path)
        if str(path) in str(exc) or shown in str(exc):
            raise
        raise DatasetError(f"{exc} (dataset module: {shown})") from exc


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it, else as it is."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:  # another drive
        return str(path)


def _prepare(
    raw: RawDataset,
    card: DatasetCard,
    *,
    name: str,
    module: str | None,
    params: dict | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    delta: float | str,
    min_group_size: int,
    min_split_events: int | None,
) -> PreparedDataset:
    validate_raw(raw, card)
    if not card.sensitive_attributes:
        log.warning("dataset %r declares no sensitive attributes: utility only, no subgroup metrics", name)
    labels = np.asarray(raw.labels).ravel().astype(np.int64)
    attributes = raw.attributes[list(card.sensitive_attributes)].astype(str).reset_index(drop=True)
    if raw.split is not None:
        split = np.asarray(raw.split).astype(str)
        split_source = "official"
    else:
        try:
            split = stratified_split(
                labels=labels,
                attributes=attributes,
                patient_id=raw.patient_id,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=split_seed,
            )
        except ValueError as exc:  # sklearn's words for too few rows, classes or patients to split
            n_pos = int(labels.sum())
            units = f", {len(set(np.asarray(raw.patient_id).tolist()))} patients" if raw.patient_id is not None else ""
            raise DatasetError(
                f"dataset {name!r}: {len(labels)} rows ({n_pos} positive, {len(labels) - n_pos} negative{units}) "
                f"are too few to split with val_fraction {val_fraction} and test_fraction {test_fraction} "
                f"({' '.join(str(exc).split())}); give the dataset more rows, or raise split.val_fraction / "
                "split.test_fraction in the benchmark definition"
            ) from exc
        split_source = f"stratified by label and {list(card.sensitive_attributes)}, seed {split_seed}"
    # after the split: its single-feature AUROCs read only held-out rows (they are published in the data card)
    leakage_warnings = check_leakage(raw, card, split=split)
    warnings = validate_split(
        name=name,
        split=split,
        labels=labels,
        attributes=attributes,
        patient_id=raw.patient_id,
        min_group_size=min_group_size,
        min_events=min_split_events,
    )
    warnings = [*leakage_warnings, *warnings]
    train_patients = None
    if raw.patient_id is not None:
        per_patient = pd.Series(np.asarray(raw.patient_id).astype(str)[split == "train"]).value_counts()
        train_patients = {"n": int(len(per_patient)), "max_rows": int(per_patient.max()) if len(per_patient) else 0}
        if train_patients["max_rows"] > 1:
            warnings.append(
                f"dataset {name!r}: training patients have up to {train_patients['max_rows']} rows; record-level DP-SGD "
                f"(method dpsgd) protects each row, so a patient is protected only as a group of rows, at "
                f"(k·ε, k·e^((k-1)ε)·δ) for k rows; method dpsgd_patient protects patients"
            )
    for w in warnings:
        log.warning(w)
    n_train = int((split == "train").sum())
    delta_value = resolve_delta(delta, n_train, where=f"datasets.{name}.delta")

    if card.modality == "image":
        x = torch.from_numpy(np.ascontiguousarray(raw.inputs, dtype=np.float32))
        features: list[str] = []
        columns: list[dict] = []
        preprocessing = "none (images as the loader returns them)"
    else:
        x, features, columns = _encode_tabular(raw.inputs, fit_rows=split == "val", name=name)
        preprocessing = "median imputation, standardisation and one-hot levels fitted on the validation split"
    samples = pd.DataFrame({"row": np.arange(len(labels)), "split": split, "label": labels})
    if raw.patient_id is not None:
        samples["patient_id"] = np.asarray(raw.patient_id).astype(str)
    samples = pd.concat([samples, attributes], axis=1)

    meta = {
        "name": name,
        "module": module or name,
        "card": card.to_dict(),
        "params": params or {},
        "modality": card.modality,
        "input_shape": list(x.shape[1:]),
        "features": features,
        # which encoded features each input column became (numeric: one; categorical: its one-hot levels, fitted
        # on the validation split): what DP synthesis (dpfair.synthesis.domain) builds its public domain from
        "columns": columns,
        "preprocessing": preprocessing,
        "split": split_source,
        # the unit of the default method (dpsgd samples rows); each run records its own mechanism's unit
        "privacy_unit": "record",
        "max_records_per_patient": int(pd.Series(raw.patient_id).value_counts().max())
        if raw.patient_id is not None
        else 1,
        "n": {s: int((split == s).sum()) for s in SPLITS},
        "prevalence": {s: float(labels[split == s].mean()) for s in SPLITS},
        "group_sizes": {
            col: {s: _in_natural_order(col, attributes[col][split == s].value_counts()) for s in SPLITS}
            for col in attributes.columns
        },
        # events (label 1) per group on the held-out splits, in the same order: a group's AUROC rests on these.
        # Not the training split's: exact per-group counts of training records are covered by no privacy card.
        "group_positives": {
            col: {
                s: _in_natural_order(col, _positives(attributes[col], labels, split == s))
                for s in SPLITS
                if s != "train"
            }
            for col in attributes.columns
        },
        "delta": delta_value,
        # the configured δ ('auto' or a number): each run resolves it against its mechanism's unit count
        "delta_setting": delta if delta in (None, "auto") else float(delta),
        "train_patients": train_patients,
        "min_group_size": min_group_size,
        "warnings": warnings,
    }
    return PreparedDataset(x=x, y=torch.from_numpy(labels.astype(np.float32)), samples=samples, meta=meta)


def _positives(groups: pd.Series, labels: np.ndarray, rows: np.ndarray) -> pd.Series:
    """Rows with label 1 per group among ``rows``; a group present there without any counts 0."""
    present = groups[rows].value_counts().index
    return groups[rows & (labels == 1)].value_counts().reindex(present, fill_value=0)


def _in_natural_order(attribute: str, counts: pd.Series) -> dict:
    return {g: int(counts[g]) for g in sorted(counts.index, key=lambda v: group_sort_key(attribute, v))}


def _encode_tabular(
    frame: pd.DataFrame, *, fit_rows: np.ndarray, name: str
) -> tuple[torch.Tensor, list[str], list[dict]]:
    frame = frame.reset_index(drop=True)
    categorical = [
        c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    numeric = [c for c in frame.columns if c not in categorical]
    frame = frame.copy()
    for c in categorical:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), "missing").astype(str)
    all_missing = [c for c in numeric if frame.loc[fit_rows, c].isna().all()]
    if all_missing:
        raise DatasetError(f"dataset {name!r}: feature(s) {all_missing} are missing in every validation row; drop them")
    transformer = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ],
        verbose_feature_names_out=False,
    )
    transformer.fit(frame.loc[fit_rows])
    x = transformer.transform(frame).astype(np.float32)
    names = [str(f) for f in transformer.get_feature_names_out()]
    bad = [f for f, ok in zip(names, np.isfinite(x).all(axis=0), strict=True) if not ok]
    if bad:
        raise DatasetError(
            f"dataset {name!r}: feature(s) {bad[:10]} are not finite after standardisation (values beyond float32's "
            "range, about 3.4e38); rescale or clip them in the loader"
        )
    levels = transformer.named_transformers_["categorical"].categories_ if categorical else []
    columns = [{"name": str(c), "kind": "numeric", "features": [str(c)]} for c in numeric]
    start = len(numeric)
    for c, cats in zip(categorical, levels, strict=True):
        columns.append({"name": str(c), "kind": "categorical", "features": names[start : start + len(cats)]})
        start += len(cats)
    return torch.from_numpy(x), names, columns


def save_prepared(prepared: PreparedDataset, *, data: str | Path, samples: str | Path, meta: str | Path) -> None:
    """Write the tensors (``torch.save``), the sample table (CSV) and the metadata (JSON) to ``data``, ``samples``, ``meta``."""
    torch.save({"x": prepared.x, "y": prepared.y}, data)
    prepared.samples.to_csv(samples, index=False)
    write_json(meta, prepared.meta)


def load_prepared(*, data: str | Path, samples: str | Path, meta: str | Path) -> PreparedDataset:
    """Read back what :func:`save_prepared` wrote; split, patient ids and groups come back as strings, none as missing."""
    tensors = torch.load(data, weights_only=True)
    table = pd.read_csv(samples, dtype={"split": str, "patient_id": str}, keep_default_na=False)
    info = json.loads(Path(meta).read_text())
    for col in info["card"]["sensitive_attributes"]:
        table[col] = table[col].astype(str)
    return PreparedDataset(x=tensors["x"], y=tensors["y"], samples=table, meta=info)
