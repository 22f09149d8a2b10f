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
#: The group of rows whose attribute the source does not give.
UNKNOWN = "unknown"
#: Attributes with a fixed coding; a loader's values must be among these (checked when a dataset is prepared).
HARMONISED_CODES: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male", UNKNOWN),
    "age_group": (*AGE_LABELS, UNKNOWN),
}


def group_sort_key(attribute: str, value: str) -> tuple:
    """Natural order of an attribute's groups, ``unknown`` last.

    The harmonised order where there is one (age bins by age), else alphabetical.

    Example:
        >>> sorted(["80+", "<40", "unknown", "60-79", "40-59"], key=lambda v: group_sort_key("age_group", v))
        ['<40', '40-59', '60-79', '80+', 'unknown']
    """
    value = str(value)
    known = HARMONISED_CODES.get(attribute, ())
    return (value == UNKNOWN, known.index(value) if value in known else len(known), value)


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
        patient_unit: what the loader's ``patient_id`` identifies (``patient``; ``lesion`` or ``study`` where
            the source has no patient ids): the unit that patient-level DP protects, named on privacy cards.
        row_unit: what one row is when there are no patient ids (``person``, ``image``): record-level cards
            say "one row per <row_unit>".
        patient_ids: whether the loader returns patient ids (``patient_id``); None when it depends on the
            params. Declared, it lets ``dpfair config check`` refuse a patient-level method without loading the data.
        dropped: the source's columns the loader leaves out of the features (ids, the outcome in other
            forms, follow-up times, scores fitted on the cohort); the module docstring says why. Listed on
            the report's data card, so a reader sees what the model never saw.
        site_attribute: the sensitive attribute that names the hospital, scanner or centre a row comes from,
            where the data have one: federated methods (``fed_dpsgd``, ``fed_dp_site``) partition the training
            rows by it, one Flower client per site. None: the dataset cannot be federated.
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
    patient_unit: str = "patient"
    row_unit: str = "person"
    dropped: tuple[str, ...] = ()
    patient_ids: bool | None = None
    site_attribute: str | None = None

    def to_dict(self) -> dict:
        """The card's fields as JSON-ready values (the tuples as lists)."""
        d = asdict(self)
        d["sensitive_attributes"] = list(self.sensitive_attributes)
        d["dropped"] = list(self.dropped)
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
