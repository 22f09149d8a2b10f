"""Model registry: ``register_model`` / ``get_model``, each model declaring the modalities it accepts.

Every model is built from MONAI blocks with GroupNorm (BatchNorm mixes samples, which per-sample
gradients forbid) and non-inplace activations (MONAI's default ``ReLU(inplace=True)`` breaks Opacus's
grad-sample hooks without ``ModuleValidator`` noticing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dpfair.errors import ConfigError

_ACT = ("relu", {"inplace": False})


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: name, accepted modalities, builder and the smallest image side it takes (0: any)."""

    name: str
    modalities: frozenset[str]
    build: Callable[..., nn.Module]
    min_size: int = 0


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, modalities: Sequence[str], min_size: int = 0, force: bool = False):
    """Register a model builder ``fn(*, input_shape) -> nn.Module`` that outputs one logit per sample.

    Example:
        >>> @register_model("linear", modalities=["tabular"], force=True)
        ... def linear(*, input_shape):
        ...     return nn.Linear(input_shape[0], 1)
        >>> get_model("linear").build(input_shape=(4,))
        Linear(in_features=4, out_features=1, bias=True)
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and not force:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = ModelSpec(name=name, modalities=frozenset(modalities), build=fn, min_size=min_size)
        return fn

    return decorator


def get_model(name: str) -> ModelSpec:
    """Return the registered model spec, or fail with the list of known models."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {available_models()}")
    return _MODELS[name]


def available_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def build_model(name: str, *, input_shape: Sequence[int], modality: str) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (without the batch dimension)."""
    spec = get_model(name)
    if modality not in spec.modalities:
        raise ConfigError(f"model {name!r} accepts {sorted(spec.modalities)} inputs, not {modality!r}")
    if spec.min_size and min(input_shape[1:]) < spec.min_size:
        raise ConfigError(
            f"model {name!r} needs images of at least {spec.min_size} px per side, got {tuple(input_shape)}; "
            "load the dataset at a larger size or use another model"
        )
    return make_dp_compatible(spec.build(input_shape=tuple(input_shape)))


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """Replace BatchNorm by GroupNorm (Opacus's fixer) and turn off in-place activations.

    Some MONAI networks keep BatchNorm or ``ReLU(inplace=True)`` in places their ``norm``/``act``
    arguments do not reach; either breaks per-sample gradients.
    """
    # imported here: importing opacus configures the root logger, which doubles Snakemake's output
    # when this module is loaded while the workflow is parsed
    from opacus.validators import ModuleValidator

    model = ModuleValidator.fix(model)
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return model


@register_model("cnn", modalities=["image"])
def small_cnn(*, input_shape: Sequence[int], channels: Sequence[int] = (16, 32, 64)) -> nn.Module:
    """Three strided conv blocks (conv, GroupNorm, ReLU), global average pooling and a linear head."""
    from monai.networks.blocks import Convolution

    in_channels, *spatial = input_shape
    blocks: list[nn.Module] = []
    prev = in_channels
    for ch in channels:
        blocks.append(
            Convolution(
                spatial_dims=len(spatial),
                in_channels=prev,
                out_channels=ch,
                strides=2,
                kernel_size=3,
                act=_ACT,
                norm=("group", {"num_groups": min(8, ch)}),
            )
        )
        prev = ch
    pool = nn.AdaptiveAvgPool2d(1) if len(spatial) == 2 else nn.AdaptiveAvgPool3d(1)
    return nn.Sequential(*blocks, pool, nn.Flatten(), nn.Linear(prev, 1))


@register_model("mlp", modalities=["tabular"])
def mlp(*, input_shape: Sequence[int], hidden: Sequence[int] = (64, 32)) -> nn.Module:
    """A fully connected network (MONAI ``FullyConnectedNet``) with ReLU, one logit out."""
    from monai.networks.nets import FullyConnectedNet

    (n_features,) = input_shape
    return FullyConnectedNet(in_channels=n_features, out_channels=1, hidden_channels=list(hidden), act=_ACT)


@register_model("resnet18", modalities=["image"])
def resnet18_gn(*, input_shape: Sequence[int]) -> nn.Module:
    """MONAI ResNet-18 (2D or 3D), GroupNorm in place of BatchNorm, trained from scratch."""
    from monai.networks.nets import ResNet
    from monai.networks.nets.resnet import get_inplanes

    in_channels, *spatial = input_shape
    return ResNet(
        block=_out_of_place_resnet_block(),
        layers=[2, 2, 2, 2],
        block_inplanes=get_inplanes(),
        spatial_dims=len(spatial),
        n_input_channels=in_channels,
        num_classes=1,
        act=_ACT,
        norm=("group", {"num_groups": 32}),
    )


@functools.cache
def _out_of_place_resnet_block() -> type[nn.Module]:
    """MONAI's basic block with ``out = out + residual`` instead of its in-place ``+=``.

    The in-place add writes into the output of a hooked norm layer, which Opacus's backward hooks forbid.
    Made on first use so that importing this module does not import MONAI (whose top-level import loads
    all its subpackages: seconds in every job that never builds a MONAI network).
    """
    from monai.networks.nets.resnet import ResNetBlock

    class _OutOfPlaceResNetBlock(ResNetBlock):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            residual = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
            return self.act(out + residual)

    # pickled by name (Opacus's ModuleValidator clones a model through torch.save): found by __getattr__ below
    _OutOfPlaceResNetBlock.__qualname__ = "_OutOfPlaceResNetBlock"
    return _OutOfPlaceResNetBlock


def __getattr__(name: str):
    if name == "_OutOfPlaceResNetBlock":
        return _out_of_place_resnet_block()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register_model("densenet121", modalities=["image"], min_size=32)
def densenet121_gn(*, input_shape: Sequence[int]) -> nn.Module:
    """MONAI DenseNet-121, GroupNorm in place of BatchNorm, trained from scratch (inputs ≥ 32 px)."""
    from monai.networks.nets import DenseNet121

    in_channels, *spatial = input_shape
    return DenseNet121(
        spatial_dims=len(spatial),
        in_channels=in_channels,
        out_channels=1,
        act=_ACT,
        norm=("group", {"num_groups": 32}),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter elements (those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device is {device!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(device)
