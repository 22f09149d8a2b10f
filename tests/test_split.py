"""Splits: disjoint and complete, stratified by label and attribute, patient-level, fixed by their seed."""

import numpy as np
import pandas as pd
import pytest
from dpfair.data.split import stratified_split


@pytest.fixture
def cohort():
    rng = np.random.default_rng(1)
    n = 3000
    sex = rng.choice(["female", "male"], n, p=[0.3, 0.7])
    labels = (rng.uniform(size=n) < np.where(sex == "female", 0.2, 0.5)).astype(int)
    return labels, pd.DataFrame({"sex": sex})


def test_every_row_in_exactly_one_split_with_the_right_fractions(cohort):
    labels, attrs = cohort
    split = stratified_split(labels=labels, attributes=attrs, val_fraction=0.15, test_fraction=0.2, seed=0)
    assert len(split) == len(labels)
    assert set(split) == {"train", "val", "test"}
    share = pd.Series(split).value_counts(normalize=True)
    assert share["test"] == pytest.approx(0.2, abs=0.005)
    assert share["val"] == pytest.approx(0.15, abs=0.005)


def test_label_by_attribute_strata_keep_their_prevalence(cohort):
    labels, attrs = cohort
    split = stratified_split(labels=labels, attributes=attrs, seed=0)
    frame = pd.DataFrame({"split": split, "label": labels, "sex": attrs["sex"]})
    by = frame.groupby(["sex", "split"])["label"].mean().unstack()
    overall = frame.groupby("sex")["label"].mean()
    for part in ("train", "val", "test"):
        assert (by[part] - overall).abs().max() < 0.01
    sizes = frame.groupby(["sex", "split"]).size().unstack()
    assert ((sizes["test"] / sizes.sum(axis=1)) - 0.15).abs().max() < 0.01


def test_patients_never_span_splits():
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(600), rng.integers(1, 5, 600))
    n = len(patients)
    labels = rng.integers(0, 2, n)
    attrs = pd.DataFrame({"sex": np.where(patients % 2, "female", "male")})
    split = stratified_split(labels=labels, attributes=attrs, patient_id=patients, seed=0)
    assert pd.DataFrame({"p": patients, "s": split}).groupby("p")["s"].nunique().max() == 1
    share = pd.Series(split).value_counts(normalize=True)
    assert share["test"] == pytest.approx(1 / 7, abs=0.03)  # StratifiedGroupKFold with round(1/0.15) folds


def test_split_depends_only_on_its_seed(cohort):
    labels, attrs = cohort
    a = stratified_split(labels=labels, attributes=attrs, seed=5)
    b = stratified_split(labels=labels, attributes=attrs, seed=5)
    c = stratified_split(labels=labels, attributes=attrs, seed=6)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
