"""One contract test over every dataset module (DomainBed style).

Embedded datasets load with small parameters; datasets that users bring load the tiny copy their
module's ``make_example`` writes in the published layout, so no test needs real data or a download.

A module whose data package lives in an optional extra (``pip install 'dpfair[cohorts]'``) is skipped,
naming the package, where that package is not installed: importing it (at the module's top or in its
loader) raises ``ModuleNotFoundError``, which :func:`dpfair.data.registry.missing_package` recognises.
No list of modules and packages to keep up to date here.
"""

import contextlib

import numpy as np
import pytest
from dpfair.data import SENSITIVE_ATTRIBUTES, available_datasets, get_dataset
from dpfair.data.prepare import prepare_dataset
from dpfair.data.registry import missing_package
from dpfair.data.validate import validate_raw
from sklearn.metrics import roc_auc_score

#: Loader parameters that keep the contract test fast; datasets not listed load with their defaults.
SMALL_PARAMS = {"synthetic_lesions": {"n_samples": 300, "image_size": 16}}


@contextlib.contextmanager
def skip_if_package_missing(name):
    """Skip (rather than fail) where the module needs a package that is not installed here."""
    try:
        yield
    except Exception as exc:
        package = missing_package(exc)
        if package is None:
            raise
        pytest.skip(f"dataset {name!r} needs package {package!r}, not installed here (an optional extra)")


@pytest.fixture(params=available_datasets())
def spec(request):
    with skip_if_package_missing(request.param):
        return get_dataset(request.param)


@pytest.fixture
def params(spec, tmp_path):
    if spec.make_example is not None:
        return spec.make_example(tmp_path)
    return SMALL_PARAMS.get(spec.card.name, {})


def prepare(spec, params):
    """Prepare as the pipeline does; a make_example copy is tiny, so its splits need one row of each class only."""
    with skip_if_package_missing(spec.card.name):
        return prepare_dataset(
            name=spec.card.name,
            params=params,
            min_group_size=5,
            min_split_events=1 if spec.make_example is not None else None,
        )


def test_card_is_complete(spec):
    card = spec.card
    for field in ("task", "outcome", "license", "citation", "homepage", "source"):
        assert getattr(card, field).strip(), f"{spec.path}: card.{field} is empty"
    assert set(card.sensitive_attributes) <= set(SENSITIVE_ATTRIBUTES)


def test_loader_output_passes_validation(spec, params):
    with skip_if_package_missing(spec.card.name):
        raw = spec.load(**params)
    validate_raw(raw, spec.card)
    if spec.card.modality == "tabular":
        kept = sorted(set(spec.card.dropped) & {str(c) for c in raw.inputs.columns})
        assert not kept, f"{spec.path}: card.dropped lists {kept}, but the loader keeps them as features"
    if spec.card.patient_ids is not None:  # what config check reads instead of loading the data
        has_ids = raw.patient_id is not None
        assert has_ids == spec.card.patient_ids, (
            f"{spec.path}: card.patient_ids = {spec.card.patient_ids}, loader: {has_ids}"
        )


def test_prepared_artifact_is_consistent(spec, params):
    prepared = prepare(spec, params)
    n = len(prepared.samples)
    assert prepared.x.shape[0] == n == prepared.y.shape[0]
    assert np.isfinite(prepared.x.numpy()).all()
    assert prepared.meta["delta"] < 1 / prepared.meta["n"]["train"]
    assert set(prepared.samples["split"]) == {"train", "val", "test"}


def test_no_single_feature_predicts_the_label(spec, params):
    """A feature with near-perfect AUROC on its own is almost always outcome leakage in the module."""
    if spec.card.modality != "tabular" or spec.make_example is not None:
        pytest.skip("only embedded tabular data can be checked for leakage")
    prepared = prepare(spec, params)
    x, y = prepared.x.numpy(), prepared.y.numpy()
    aurocs = {f: roc_auc_score(y, x[:, j]) for j, f in enumerate(prepared.meta["features"]) if np.std(x[:, j]) > 0}
    leaky = {f: round(a, 3) for f, a in aurocs.items() if max(a, 1 - a) > 0.9}
    assert not leaky, f"{spec.path}: features that predict the outcome alone: {leaky}"


def test_synthetic_lesions_is_deterministic_and_plants_the_site_gap():
    spec = get_dataset("synthetic_lesions")
    a = spec.load(n_samples=400, image_size=16, seed=3)
    b = spec.load(n_samples=400, image_size=16, seed=3)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    c = spec.load(n_samples=400, image_size=16, seed=4)
    assert not np.array_equal(a.inputs, c.inputs)
    big = spec.load(n_samples=2000, image_size=16, seed=0)
    site = big.attributes["site"].to_numpy()
    prevalence = {s: big.labels[site == s].mean() for s in ("A", "B")}
    assert prevalence["B"] > prevalence["A"] + 0.1
    # site B's scanner is noisier: the residual around the background is larger
    noise = {s: np.abs(np.diff(big.inputs[site == s], axis=-1)).mean() for s in ("A", "B")}
    assert noise["B"] > 1.5 * noise["A"]


def test_synthetic_lesions_sites_alternate_the_two_scanners():
    from dpfair.data.registry import get_dataset

    spec = get_dataset("synthetic_lesions")
    assert spec.card.site_attribute == "site"
    four = spec.load(n_samples=800, image_size=16, seed=1, images_per_patient=1, n_sites=4)
    site = four.attributes["site"].to_numpy()
    shares = {s: float((site == s).mean()) for s in "ABCD"}
    assert set(np.unique(site)) == set("ABCD") and all(abs(v - 0.25) < 0.06 for v in shares.values())
    prevalence = {s: float(four.labels[site == s].mean()) for s in "ABCD"}
    assert min(prevalence["B"], prevalence["D"]) > max(prevalence["A"], prevalence["C"])  # 0.5 against 0.3
    with pytest.raises(ValueError, match="n_sites must be a whole number from 2 to 26"):
        spec.load(n_samples=50, n_sites=1)


def test_a_site_attribute_must_be_a_sensitive_attribute():
    from dpfair.data.contract import DatasetCard
    from dpfair.data.registry import register_dataset
    from dpfair.errors import DatasetError

    card = DatasetCard(name="toy", modality="tabular", task="t", outcome="o", sensitive_attributes=("sex",),
                       license="CC0", citation="c", homepage="h", site_attribute="hospital")  # fmt: skip
    with pytest.raises(DatasetError, match=r"card.site_attribute is 'hospital', not one of card.sensitive_attributes"):
        register_dataset(card)
