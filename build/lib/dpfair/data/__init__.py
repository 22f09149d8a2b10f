"""Dataset contract, discovery, validation, splitting and preparation."""

from dpfair.data.contract import AGE_LABELS, SENSITIVE_ATTRIBUTES, DatasetCard, RawDataset, age_group
from dpfair.data.registry import available_datasets, get_dataset, register_dataset

__all__ = [
    "AGE_LABELS",
    "SENSITIVE_ATTRIBUTES",
    "DatasetCard",
    "RawDataset",
    "age_group",
    "available_datasets",
    "get_dataset",
    "register_dataset",
]
