"""A patient-level method on data without patient ids is refused before any job (issue 27), from the card when
it declares ``patient_ids``, else from the prepared record, else by loading the data once."""

import json

import pytest
from dpfair.errors import ConfigError
from dpfair.pipeline.benchmark import validate_config
from dpfair.pipeline.preflight import check_patient_ids

GRID = {"epsilons": [1], "seeds": [0]}
SINGLE = {
    "params": {"n_samples": 200, "image_size": 16, "images_per_patient": 1},
    "methods": ["dpsgd", "dpsgd_patient"],
}


def test_a_card_that_declares_no_ids_refuses_without_loading(tmp_path):
    support2 = validate_config(
        {**GRID, "datasets": {"support2": None}, "models": ["mlp"], "methods": ["dpsgd_patient"]}
    )
    with pytest.raises(
        ConfigError, match=r"^methods\[0\] = 'dpsgd_patient' needs patient ids, and dataset 'support2' "
    ):
        check_patient_ids(support2, meta_path=lambda name: tmp_path / name, load_data=False)


def test_params_without_ids_are_found_by_loading_once_and_the_fix_is_named(tmp_path):
    one_per_person = validate_config({**GRID, "datasets": {"synthetic_lesions": SINGLE}, "models": ["cnn"]})
    with pytest.raises(
        ConfigError,
        match=r"^datasets.synthetic_lesions.methods\[1\] = 'dpsgd_patient' needs patient ids.*"
        r"datasets.synthetic_lesions.methods: \['dpsgd'\]$",
    ):
        check_patient_ids(one_per_person, meta_path=lambda name: tmp_path / "not-prepared" / name)
    several = {**SINGLE, "params": {**SINGLE["params"], "images_per_patient": 3}}
    check_patient_ids(
        validate_config({**GRID, "datasets": {"synthetic_lesions": several}, "models": ["cnn"]}),
        meta_path=lambda name: tmp_path / "not-prepared" / name,
    )


def test_a_prepared_record_for_the_same_params_answers_without_loading(tmp_path):
    meta = tmp_path / "dataset.json"
    meta.write_text(json.dumps({"module": "synthetic_lesions", "params": SINGLE["params"], "train_patients": None}))
    benchmark = validate_config({**GRID, "datasets": {"synthetic_lesions": SINGLE}, "models": ["cnn"]})
    with pytest.raises(ConfigError, match="needs patient ids"):
        check_patient_ids(benchmark, meta_path=lambda name: meta, load_data=False)
