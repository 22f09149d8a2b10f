"""Model and dataset registries: known names resolve, unknown or broken ones fail loudly."""

import pytest
from dpfair.data import available_datasets, get_dataset
from dpfair.errors import ConfigError, DatasetError
from dpfair.models import available_models, build_model, get_model, register_model
from torch import nn

from tests.conftest import write_module

MODULE_HEAD = "from dpfair.data import DatasetCard, RawDataset, register_dataset\n"


def card(name, attrs='("sex",)', modality="tabular"):
    return (
        f'CARD = DatasetCard(name="{name}", modality="{modality}", task="t", outcome="o", '
        f'sensitive_attributes={attrs}, license="CC0", citation="c", homepage="h")\n'
    )


def test_default_models_are_registered_with_modalities():
    assert {"cnn", "mlp"} <= set(available_models())
    assert get_model("cnn").modalities == {"image"}
    assert get_model("mlp").modalities == {"tabular"}


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet9000'.*'cnn'.*'mlp'"):
        get_model("resnet9000")


def test_duplicate_model_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn", modalities=["image"])(lambda *, input_shape: nn.Identity())


def test_model_rejects_other_modality():
    with pytest.raises(ConfigError, match="accepts \\['tabular'\\] inputs, not 'image'"):
        build_model("mlp", input_shape=(1, 16, 16), modality="image")


def test_models_output_one_logit_and_have_no_inplace_activations():
    import torch

    for name, shape, modality in [("cnn", (1, 16, 16), "image"), ("mlp", (7,), "tabular")]:
        model = build_model(name, input_shape=shape, modality=modality)
        assert model(torch.zeros(3, *shape)).shape == (3, 1)
        inplace = [m for m in model.modules() if getattr(m, "inplace", False)]
        assert not inplace, f"{name}: in-place activations break Opacus grad samples: {inplace}"
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_embedded_datasets_are_discovered():
    assert {"synthetic_lesions", "support2"} <= set(available_datasets())


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope'.*synthetic_lesions"):
        get_dataset("nope")


def test_module_that_fails_to_import_is_named(tmp_path):
    path = write_module(tmp_path, "broken", MODULE_HEAD + "raise RuntimeError('boom')\n")
    with pytest.raises(DatasetError, match=f"{path}.*RuntimeError: boom"):
        get_dataset("broken", tmp_path)


def test_module_that_registers_nothing_is_named(tmp_path):
    path = write_module(tmp_path, "silent", MODULE_HEAD + card("silent"))
    with pytest.raises(DatasetError, match=f"{path}: the module registers no dataset named 'silent'"):
        get_dataset("silent", tmp_path)


def test_card_name_must_match_file(tmp_path):
    write_module(tmp_path, "alpha", MODULE_HEAD + card("beta") + "@register_dataset(CARD)\ndef load(): ...\n")
    with pytest.raises(DatasetError, match="card.name is 'beta' but the file is alpha.py"):
        get_dataset("alpha", tmp_path)


def test_unknown_sensitive_attribute_is_refused(tmp_path):
    write_module(
        tmp_path, "gamma", MODULE_HEAD + card("gamma", '("gender",)') + "@register_dataset(CARD)\ndef load(): ...\n"
    )
    with pytest.raises(DatasetError, match=r"unknown sensitive attribute\(s\) \['gender'\].*'sex'"):
        get_dataset("gamma", tmp_path)


def test_dataset_module_does_not_shadow_huggingface_datasets(tmp_path):
    import sys

    write_module(tmp_path, "delta_ds", MODULE_HEAD + card("delta_ds") + "@register_dataset(CARD)\ndef load(): ...\n")
    get_dataset("delta_ds", tmp_path)
    assert "datasets" not in sys.modules or "dpfair" not in str(getattr(sys.modules["datasets"], "__file__", ""))
    assert "dpfair_dataset_modules.delta_ds" in sys.modules
