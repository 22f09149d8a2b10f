"""Every registered model trains under DP-SGD (Opacus grad-sample hooks) and builds at the benchmarks' sizes."""

import pytest
import torch
from dpfair.errors import ConfigError
from dpfair.models import available_models, build_model, get_model
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train

SHAPES = {"image": (1, 32, 32), "tabular": (9,)}


@pytest.mark.parametrize("name", available_models())
def test_model_takes_a_private_step(name):
    modality = sorted(get_model(name).modalities)[0]
    shape = SHAPES[modality]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, *shape, generator=g)
    y = torch.tensor([0.0, 1.0] * 16)
    result = train(
        model_name=name,
        modality=modality,
        x_train=x,
        y_train=y,
        epsilon=10.0,
        delta=1e-3,
        config=TrainConfig(epochs=1, batch_size=8),
        seed=0,
    )
    assert result.record["steps"] == 4 and result.record["epsilon_spent"] <= 10.0
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_densenet_refuses_inputs_too_small_for_its_pooling():
    with pytest.raises(ConfigError, match="densenet121' needs images of at least 32 px"):
        build_model("densenet121", input_shape=(1, 28, 28), modality="image")


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_monai_backbones_use_groupnorm(name):
    model = build_model(name, input_shape=(3, 64, 64), modality="image")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
