"""Bad data gets a clear error naming the dataset, the field and the fix."""

import numpy as np
import pandas as pd
import pytest
from dpfair.data import DatasetCard, RawDataset
from dpfair.data.prepare import prepare_dataset
from dpfair.data.validate import validate_raw, validate_split
from dpfair.errors import ConfigError, DatasetError

CARD = DatasetCard(
    name="toy",
    modality="tabular",
    task="t",
    outcome="o",
    sensitive_attributes=("sex",),
    license="CC0",
    citation="c",
    homepage="h",
)


def raw(n=40, **overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        inputs=pd.DataFrame({"a": rng.normal(size=n)}),
        labels=np.array([0, 1] * (n // 2)),
        attributes=pd.DataFrame({"sex": ["female", "male"] * (n // 2)}),
    )
    fields.update(overrides)
    return RawDataset(**fields)


def test_valid_dataset_passes():
    validate_raw(raw(), CARD)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(labels=np.array([0, 1, np.nan, 1] * 10)), "labels has 10 NaN"),
        (dict(labels=np.array([0, 1, 2, 1] * 10)), "labels must be binary 0/1, found values \\[0, 1, 2\\]"),
        (dict(labels=np.ones(40)), "labels has one class only \\(\\[1\\]\\)"),
        (
            dict(attributes=pd.DataFrame({"gender": ["f"] * 40})),
            "attributes lacks column\\(s\\) \\['sex'\\] that the card declares",
        ),
        (
            dict(attributes=pd.DataFrame({"sex": [None, "male"] * 20})),
            "sensitive attribute 'sex' has 20 missing value\\(s\\); code them as 'unknown'",
        ),
        (dict(inputs=pd.DataFrame({"a": range(39)})), "inputs has 39 rows but labels has 40"),
    ],
)
def test_bad_fields_are_named(overrides, message):
    with pytest.raises(DatasetError, match=f"dataset 'toy': {message}"):
        validate_raw(raw(**overrides), CARD)


def test_empty_dataset():
    empty = RawDataset(inputs=pd.DataFrame({"a": []}), labels=np.array([]), attributes=pd.DataFrame({"sex": []}))
    with pytest.raises(DatasetError, match="dataset 'toy' is empty"):
        validate_raw(empty, CARD)


def test_images_of_inconsistent_shape():
    image_card = DatasetCard(**{**CARD.to_dict(), "modality": "image", "sensitive_attributes": ("sex",)})
    ragged = np.empty(40, dtype=object)
    ragged[:] = [np.zeros((1, 8, 8))] * 20 + [np.zeros((1, 9, 9))] * 20
    with pytest.raises(DatasetError, match="all images the same shape"):
        validate_raw(raw(inputs=ragged), image_card)


def test_patient_in_two_splits():
    split = np.array(["train", "val", "test", "train"] * 10)
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1] * 5)
    patients = np.arange(40) // 2  # every patient has two rows, in different splits
    with pytest.raises(DatasetError, match="patient\\(s\\) appear in more than one split"):
        validate_split(
            name="toy",
            split=split,
            labels=labels,
            attributes=pd.DataFrame({"sex": ["f"] * 40}),
            patient_id=patients,
            min_group_size=1,
        )


def test_split_with_one_class():
    split = np.array(["train"] * 30 + ["val"] * 5 + ["test"] * 5)
    labels = np.array([0, 1] * 15 + [0, 1] * 2 + [0] + [1] * 5)
    with pytest.raises(DatasetError, match="the test split has 5 row\\(s\\) and one class only"):
        validate_split(
            name="toy",
            split=split,
            labels=labels,
            attributes=pd.DataFrame({"sex": ["f"] * 40}),
            patient_id=None,
            min_group_size=1,
        )


def test_small_groups_warn_instead_of_failing():
    split = np.array(["train", "val", "test", "test"] * 10)
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0] * 5)
    attrs = pd.DataFrame({"sex": ["f"] * 38 + ["m"] * 2})
    warnings = validate_split(
        name="toy", split=split, labels=labels, attributes=attrs, patient_id=None, min_group_size=5
    )
    assert any("sex=m has 2 test rows" in w for w in warnings)


def test_delta_at_or_above_one_over_n_is_refused_before_training():
    with pytest.raises(ConfigError, match="datasets.synthetic_lesions.delta = 0.01 .*n_train = \\d+"):
        prepare_dataset(name="synthetic_lesions", params={"n_samples": 300, "image_size": 16}, delta=0.01)
