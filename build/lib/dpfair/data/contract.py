"""The dataset contract: what one file in ``datasets/`` declares and returns.

A dataset module holds a :class:`DatasetCard` and a loader decorated with
:func:`dpfair.data.register_dataset`. The loader returns a :class:`RawDataset`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Modality = Literal["image", "tabular"]
MODALITIES: tuple[str, ...] = ("image", "tabular")

#: Harmonised sensitive-attribute names. Use these where the source has the attribute.
SENSITIVE_ATTRIBUTES: tuple[str, ...] = ("sex", "age_group", "race", "site", "skin_type")

#: Age bins shared by every dataset, so age_group means the same thing everywhere.
AGE_BINS: tuple[float, ...] = (0, 40, 60, 80, float("inf"))
AGE_LABELS: tuple[str, ...] = ("<40", "40-59", "60-79", "80+")


def age_group(age: pd.Series | np.ndarray) -> pd.Series:
    """Bin ages in years into the harmonised ``age_group`` codes.

    Example:
        >>> age_group(pd.Series([25, 40, 79.5, 91])).tolist()
        ['<40', '40-59', '60-79', '80+']
    """
    binned = pd.cut(pd.Series(age, dtype=float), bins=list(AGE_BINS), labels=list(AGE_LABELS), right=False)
    return binned.astype(object).where(binned.notna(), "unknown").astype(str)


@dataclass(frozen=True)
class DatasetCard:
    """What a dataset is, for the report and for the people who read it.

    Args:
        name: registry name; must equal the module's file name.
        modality: ``"image"`` or ``"tabular"``; models declare which they accept.
        task: the prediction task in words.
        outcome: what label 1 means, precisely (including what it does not cover).
        sensitive_attributes: harmonised attribute names the loader returns.
        license: the data's license (and the source package's, where different).
        citation: how to cite the data.
        homepage: where the data comes from.
        source: how it is obtained here (package and call, or the files a user brings).
    """

    name: str
    modality: Modality
    task: str
    outcome: str
    sensitive_attributes: tuple[str, ...]
    license: str
    citation: str
    homepage: str
    source: str = ""
    notes: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sensitive_attributes"] = list(self.sensitive_attributes)
        return d


@dataclass
class RawDataset:
    """What a loader returns, row-aligned.

    Args:
        inputs: images as a float array ``(N, C, H, W)``, or a feature table (``pd.DataFrame``).
        labels: binary labels (0/1), shape ``(N,)``.
        attributes: one column per sensitive attribute, string-coded groups.
        patient_id: one id per row where a patient can have several rows; ``None`` if one row per person.
        split: the source's official split per row (``"train"``, ``"val"``, ``"test"``), if it has one.
    """

    inputs: np.ndarray | pd.DataFrame
    labels: np.ndarray
    attributes: pd.DataFrame
    patient_id: np.ndarray | None = None
    split: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)
