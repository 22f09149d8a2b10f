"""Loaders for imaging data users bring (MedMNIST, CheXpert, HAM10000, Fitzpatrick 17k), run on their make_example copies."""

import re

import numpy as np
import pandas as pd
import pytest
from dpfair.data import get_dataset
from dpfair.data.prepare import prepare_dataset
from dpfair.data.validate import validate_raw
from dpfair.errors import DatasetError


def _check_images(raw, channels, size):
    assert raw.inputs.dtype == np.float32
    assert raw.inputs.shape == (len(raw.labels), channels, size, size)
    assert raw.inputs.min() >= 0.0 and raw.inputs.max() <= 1.0
    assert raw.inputs.max() > 0.5  # scaled from 0..255, not left as raw bytes nor squashed
    assert raw.labels.dtype == np.int64 and set(np.unique(raw.labels)) == {0, 1}


# ---------------------------------------------------------------- medmnist


@pytest.fixture
def medmnist():
    return get_dataset("medmnist")


def test_medmnist_multiclass_rgb_keeps_official_splits(medmnist, tmp_path):
    params = medmnist.make_example(tmp_path)
    assert (tmp_path / "dermamnist.npz").is_file()
    raw = medmnist.load(**params)
    validate_raw(raw, medmnist.card)
    _check_images(raw, 3, 28)
    with np.load(tmp_path / "dermamnist.npz") as npz:
        expected_y = np.concatenate([npz[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
        first = npz["train_images"][0]  # (H, W, 3) uint8
        sizes = [len(npz[f"{s}_labels"]) for s in ("train", "val", "test")]
    np.testing.assert_array_equal(raw.labels, np.isin(expected_y, params["positive_labels"]).astype(int))
    np.testing.assert_allclose(raw.inputs[0], np.moveaxis(first, -1, 0) / 255.0, atol=1e-6)  # channels first
    assert raw.split.tolist() == ["train"] * sizes[0] + ["val"] * sizes[1] + ["test"] * sizes[2]
    for part in ("train", "val", "test"):
        assert set(raw.labels[raw.split == part]) == {0, 1}
    assert list(raw.attributes.columns) == [] and len(raw.attributes) == len(raw.labels)
    assert medmnist.card.sensitive_attributes == ()
    assert raw.patient_id is None


def test_medmnist_binary_grey_flags_work_as_is(medmnist, tmp_path):
    params = medmnist.make_example(tmp_path, flag="pneumoniamnist")
    assert "positive_labels" not in params
    raw = medmnist.load(**params)
    validate_raw(raw, medmnist.card)
    _check_images(raw, 1, 28)
    with np.load(tmp_path / "pneumoniamnist.npz") as npz:
        y = np.concatenate([npz[f"{s}_labels"].ravel() for s in ("train", "val", "test")])
    np.testing.assert_array_equal(raw.labels, y)
    # BreastMNIST's class 0 is malignant: positive_labels=[0] flips it
    params = medmnist.make_example(tmp_path, flag="breastmnist")
    as_is = medmnist.load(**params)
    malignant = medmnist.load(**params, positive_labels=[0])
    np.testing.assert_array_equal(malignant.labels, 1 - as_is.labels)
    assert malignant.extras["positive_classes"] == ["malignant"]


def test_medmnist_larger_sizes_read_the_suffixed_file(medmnist, tmp_path):
    params = medmnist.make_example(tmp_path, flag="bloodmnist", size=64)
    assert (tmp_path / "bloodmnist_64.npz").is_file() and not (tmp_path / "bloodmnist.npz").exists()
    raw = medmnist.load(**params)
    validate_raw(raw, medmnist.card)
    _check_images(raw, 3, 64)


def test_medmnist_chestmnist_is_positive_if_any_listed_finding(medmnist, tmp_path):
    params = medmnist.make_example(tmp_path, flag="chestmnist")
    with np.load(tmp_path / "chestmnist.npz") as npz:
        y = np.concatenate([npz[f"{s}_labels"] for s in ("train", "val", "test")])
    assert y.shape[1] == 14
    raw = medmnist.load(**{**params, "positive_labels": [2, 7]})
    validate_raw(raw, medmnist.card)
    _check_images(raw, 1, 28)
    np.testing.assert_array_equal(raw.labels, ((y[:, 2] == 1) | (y[:, 7] == 1)).astype(int))


def test_medmnist_accepts_flat_labels(medmnist, tmp_path):
    rng = np.random.RandomState(0)
    arrays = {}
    for part in ("train", "val", "test"):
        arrays[f"{part}_images"] = rng.randint(0, 256, size=(6, 28, 28)).astype(np.uint8)
        arrays[f"{part}_labels"] = np.array([0, 1, 2, 3, 0, 1], dtype=np.uint8)  # shape (N,)
    np.savez(tmp_path / "octmnist.npz", **arrays)
    raw = medmnist.load(root=tmp_path, flag="octmnist", positive_labels=[0, 1, 2])
    assert raw.labels.tolist() == [1, 1, 1, 0, 1, 1] * 3


def test_medmnist_errors(medmnist, tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "pathmnist_128.npz"))) as err:
        medmnist.load(root=tmp_path, flag="pathmnist", size=128, positive_labels=[8])
    assert "zenodo.org/records/10519652" in str(err.value)
    with pytest.raises(DatasetError, match="unknown flag 'organmnist3d'.*pathmnist"):
        medmnist.load(root=tmp_path, flag="organmnist3d")
    with pytest.raises(DatasetError, match=r"sizes \[28, 64, 128, 224\]"):
        medmnist.load(root=tmp_path, flag="pneumoniamnist", size=32)
    with pytest.raises(DatasetError, match="positive_labels") as err:
        medmnist.load(root=tmp_path, flag="dermamnist")
    assert "4=melanoma" in str(err.value) and "e.g. positive_labels: [4]" in str(err.value)
    with pytest.raises(DatasetError, match="positive_labels"):
        medmnist.load(root=tmp_path, flag="dermamnist", positive_labels=[7])  # classes are 0..6
    with pytest.raises(DatasetError, match="every class"):
        medmnist.load(root=tmp_path, flag="octmnist", positive_labels=[0, 1, 2, 3])
    # a file whose images do not match the requested size names the mismatch
    params = medmnist.make_example(tmp_path, flag="pneumoniamnist")
    (tmp_path / "pneumoniamnist.npz").rename(tmp_path / "pneumoniamnist_64.npz")
    with pytest.raises(DatasetError, match="28x28"):
        medmnist.load(**{**params, "size": 64})


# ---------------------------------------------------------------- chexpert


@pytest.fixture
def chexpert():
    return get_dataset("chexpert")


def _chexpert_frontal(root):
    frames = [pd.read_csv(root / f) for f in ("train.csv", "valid.csv")]
    table = pd.concat(frames, ignore_index=True)
    return table[table["Frontal/Lateral"] == "Frontal"].reset_index(drop=True)


def test_chexpert_loads_frontal_views_with_patient_ids_and_attributes(chexpert, tmp_path):
    params = chexpert.make_example(tmp_path)
    root = tmp_path / "CheXpert-v1.0-small"
    raw = chexpert.load(**params)
    validate_raw(raw, chexpert.card)
    _check_images(raw, 1, params["image_size"])
    table = _chexpert_frontal(root)
    assert len(raw.labels) == len(table)
    # U-Zeros: only 1.0 is positive; blank and -1.0 are 0
    effusion = table["Pleural Effusion"]
    assert effusion.isna().any() and (effusion == -1).any()
    np.testing.assert_array_equal(raw.labels, (effusion == 1.0).astype(int))
    # patient id from the path; a patient's several images share it
    assert all(re.fullmatch(r"patient\d{5}", p) for p in raw.patient_id)
    assert raw.patient_id.tolist() == table["Path"].str.split("/").str[2].tolist()
    assert len(set(raw.patient_id)) < len(raw.patient_id)
    assert raw.split is None
    attrs = raw.attributes
    assert set(attrs["sex"]) == {"female", "male", "unknown"}
    assert set(attrs["age_group"]) <= {"<40", "40-59", "60-79", "80+", "unknown"} and attrs["age_group"].nunique() >= 2
    assert set(attrs["race"]) == {"white", "black", "asian", "other", "unknown"}
    demo = pd.read_csv(root / "CHEXPERT DEMO.csv").set_index("PATIENT")["PRIMARY_RACE"]
    expected = {
        "White": "white",
        "Black or African American": "black",
        "Asian, non-Hispanic": "asian",
        "Other": "other",
        "Patient Refused": "unknown",
    }
    assert attrs["race"].tolist() == [expected[demo[p]] for p in raw.patient_id]


def test_chexpert_uncertainty_policies_and_options(chexpert, tmp_path):
    params = chexpert.make_example(tmp_path)
    root = tmp_path / "CheXpert-v1.0-small"
    table = _chexpert_frontal(root)
    ones = chexpert.load(**params, uncertain="ones")
    np.testing.assert_array_equal(ones.labels, table["Pleural Effusion"].isin([1.0, -1.0]).astype(int))
    ignore = chexpert.load(**params, uncertain="ignore")
    kept = table[table["Pleural Effusion"] != -1.0]
    np.testing.assert_array_equal(ignore.labels, (kept["Pleural Effusion"] == 1.0).astype(int))
    every_view = chexpert.load(**params, frontal_only=False, target="Cardiomegaly")
    assert len(every_view.labels) == sum(len(pd.read_csv(root / f)) for f in ("train.csv", "valid.csv"))
    subset = chexpert.load(**params, max_images=10)
    assert len(subset.labels) == 10 and subset.inputs.shape[0] == 10
    assert np.array_equal(chexpert.load(**params, max_images=10).inputs, subset.inputs)  # deterministic
    # without demographics race is unknown throughout; an explicit file path also works
    (root / "CHEXPERT DEMO.csv").rename(tmp_path / "demo.csv")
    assert set(chexpert.load(**params).attributes["race"]) == {"unknown"}
    with_demo = chexpert.load(**params, demographics=tmp_path / "demo.csv")
    assert with_demo.attributes["race"].nunique() == 5


def test_chexpert_renamed_root_folder_still_finds_images(chexpert, tmp_path):
    params = chexpert.make_example(tmp_path)
    moved = tmp_path / "chexpert_data"
    (tmp_path / "CheXpert-v1.0-small").rename(moved)
    raw = chexpert.load(**{**params, "root": str(moved)})
    validate_raw(raw, chexpert.card)


def test_chexpert_race_mapping():
    race_group = get_dataset("chexpert").load.__globals__["race_group"]
    values = pd.Series(
        [
            "White",
            "White, Hispanic",
            "Black, non-Hispanic",
            "Asian - Historical Conv",
            "Native American, non-Hispanic",
            "Other, Hispanic",
            "Race and Ethnicity Unknown",
            "Declined to State",
            "Unknown",
            None,
            "",
        ]
    )
    assert race_group(values).tolist() == [
        "white",
        "white",
        "black",
        "asian",
        "other",
        "other",
        "unknown",
        "unknown",
        "unknown",
        "unknown",
        "unknown",
    ]


def test_chexpert_errors(chexpert, tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "train.csv"))):
        chexpert.load(root=tmp_path)
    params = chexpert.make_example(tmp_path)
    with pytest.raises(DatasetError, match="observations"):
        chexpert.load(**params, target="Effusion")
    with pytest.raises(DatasetError, match="U-Zeros"):
        chexpert.load(**params, uncertain="maybe")
    with pytest.raises(DatasetError, match="demographics file"):
        chexpert.load(**params, demographics=tmp_path / "nope.csv")
    table = pd.read_csv(tmp_path / "CheXpert-v1.0-small" / "train.csv")
    victim = tmp_path / table.loc[0, "Path"]
    victim.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(victim))):
        chexpert.load(**params)


# ---------------------------------------------------------------- ham10000


@pytest.fixture
def ham10000():
    return get_dataset("ham10000")


def test_ham10000_loads_malignancy_labels_grouped_by_lesion(ham10000, tmp_path):
    params = ham10000.make_example(tmp_path)
    assert (tmp_path / "HAM10000_metadata.csv").is_file()
    assert any((tmp_path / "HAM10000_images_part_1").iterdir()) and any((tmp_path / "HAM10000_images_part_2").iterdir())
    raw = ham10000.load(**params)
    validate_raw(raw, ham10000.card)
    _check_images(raw, 3, params["image_size"])
    meta = pd.read_csv(tmp_path / "HAM10000_metadata.csv")
    assert list(meta.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    np.testing.assert_array_equal(raw.labels, meta["dx"].isin(["mel", "bcc", "akiec"]).astype(int))
    np.testing.assert_array_equal(raw.patient_id, meta["lesion_id"].to_numpy())
    assert len(set(raw.patient_id)) < len(raw.patient_id)  # some lesions have several images
    assert raw.split is None
    assert set(raw.attributes["sex"]) == {"female", "male", "unknown"}
    assert (raw.attributes["age_group"][meta["age"].isna()] == "unknown").all()
    assert raw.attributes["age_group"].nunique() >= 3
    melanoma_only = ham10000.load(**params, positive_dx=["mel"])
    np.testing.assert_array_equal(melanoma_only.labels, (meta["dx"] == "mel").astype(int))
    assert len(ham10000.load(**params, max_images=7).labels) == 7


def test_ham10000_errors(ham10000, tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "HAM10000_metadata.csv"))):
        ham10000.load(root=tmp_path)
    params = ham10000.make_example(tmp_path)
    with pytest.raises(DatasetError, match="positive_dx"):
        ham10000.load(**params, positive_dx=["melanoma"])
    first = pd.read_csv(tmp_path / "HAM10000_metadata.csv")["image_id"][0]
    for folder in ("HAM10000_images_part_1", "HAM10000_images_part_2"):
        (tmp_path / folder / f"{first}.jpg").unlink(missing_ok=True)
    with pytest.raises(DatasetError, match=f"{first}.jpg"):
        ham10000.load(**params)


# ---------------------------------------------------------------- through the pipeline


@pytest.mark.parametrize("name", ["medmnist", "chexpert", "ham10000", "fitzpatrick17k"])
def test_examples_prepare_with_patients_in_one_split(name, tmp_path):
    spec = get_dataset(name)
    params = spec.make_example(tmp_path)
    prepared = prepare_dataset(name=name, params=params, min_group_size=1)
    samples = prepared.samples
    assert set(samples["split"]) == {"train", "val", "test"}
    if name == "medmnist":
        assert prepared.meta["split"] == "official"
    elif name in ("chexpert", "ham10000"):
        assert samples["patient_id"].duplicated().any()  # several images per patient / lesion
        assert samples.groupby("patient_id")["split"].nunique().max() == 1


# ---------------------------------------------------------------- fitzpatrick17k


@pytest.fixture
def fitzpatrick17k():
    return get_dataset("fitzpatrick17k")


def test_fitzpatrick17k_loads_malignancy_and_skin_type(fitzpatrick17k, tmp_path):
    params = fitzpatrick17k.make_example(tmp_path)
    table = pd.read_csv(tmp_path / "fitzpatrick17k.csv")
    assert {"md5hash", "fitzpatrick_scale", "label", "nine_partition_label", "three_partition_label", "url"} <= set(
        table.columns
    )
    raw = fitzpatrick17k.load(**params)
    validate_raw(raw, fitzpatrick17k.card)
    _check_images(raw, 3, params["image_size"])
    np.testing.assert_array_equal(raw.labels, (table["three_partition_label"] == "malignant").astype(int))
    three = {1: "I-II", 2: "I-II", 3: "III-IV", 4: "III-IV", 5: "V-VI", 6: "V-VI", -1: "unknown"}
    assert raw.attributes["skin_type"].tolist() == [three[v] for v in table["fitzpatrick_scale"]]
    six = fitzpatrick17k.load(**params, skin_type_groups="six")
    assert set(six.attributes["skin_type"]) == {"I", "II", "III", "IV", "V", "VI", "unknown"}
    assert raw.patient_id is None and raw.split is None


def test_fitzpatrick17k_missing_images(fitzpatrick17k, tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "fitzpatrick17k.csv"))):
        fitzpatrick17k.load(root=tmp_path)
    params = fitzpatrick17k.make_example(tmp_path)
    first = pd.read_csv(tmp_path / "fitzpatrick17k.csv")["md5hash"][0]
    (tmp_path / "images" / f"{first}.jpg").unlink()
    with pytest.raises(DatasetError, match=f"{first}.jpg.*missing_images: skip"):
        fitzpatrick17k.load(**params)
    raw = fitzpatrick17k.load(**params, missing_images="skip")
    assert len(raw.labels) == 35 and raw.extras["n_missing_images"] == 1
