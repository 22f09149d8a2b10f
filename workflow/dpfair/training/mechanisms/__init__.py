"""Privacy mechanisms as plugins: one file per mechanism, found by name through a registry.

A mechanism decides what a private run releases and what it is charged: it sees the training data
(rows, labels, patient ids where the dataset has them), builds the batch loader and the training step,
states the ledger of ``DpEvent``s its releases cost, and the text of its privacy card (clipping, unit,
what the guarantee covers). It is separate from the clipping backend (``training.clipping_backend``:
how per-unit norms and the clipped sum are computed) and from the clip policy
(``dpfair.privacy.clipping.policy``: how norms become clip factors).

ε = ∞ is the same mechanism's loop and batches with nothing private (no clipping, no noise, no label
noise), so every method has its own non-private reference.

Adding a mechanism: a file ``dpfair/mechanisms/<name>.py`` with a :class:`Mechanism` subclass decorated
``@register_mechanism("<name>")``; list it in a benchmark's ``methods:``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import dp_accounting
import numpy as np
import pandas as pd
import torch
from torch import nn

from dpfair.pipeline.benchmark import TrainConfig
from dpfair.errors import ConfigError

#: Privacy units a mechanism may declare.
UNITS: tuple[str, ...] = ("record", "patient", "label")


@dataclass
class TrainingData:
    """What a mechanism may see of the training split, row-aligned.

    Args:
        x, y: inputs and 0/1 labels (float) of the training rows.
        patient_id: each row's patient (or lesion/study) id where the dataset has them, else None.
        groups: the training rows' sensitive attributes (string codes), for group-aware clip policies.
        label_prior: P(label = 1) from the validation split (public to the guarantee), for label-DP priors.
    """

    x: torch.Tensor
    y: torch.Tensor
    patient_id: np.ndarray | None = None
    groups: pd.DataFrame | None = None
    label_prior: float | None = None


@dataclass
class Trainer:
    """A model, its optimizer and batch loader, and ``step(*batch)`` that runs one update.

    ``step`` takes what the loader yields (``x, y`` or ``x, y, units``) and returns the batch's summed loss.
    ``module`` is the plain network to save and predict with. ``ledger(steps)`` is the ``DpEvent`` of
    ``steps`` steps of this trainer (``NoOpDpEvent`` for a non-private one); ``stats()`` counts for the run
    record (e.g. units dropped for a non-finite gradient).
    """

    mode: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: object
    step: Callable[..., float]
    close: Callable[[], None] = field(default=lambda: None)
    sample_rate: float = 1.0
    expected_batch_size: float = 0.0
    noise_multiplier: float = 0.0
    max_grad_norm: float = float("nan")
    ledger: Callable[[int], dp_accounting.DpEvent] = field(default=lambda steps: dp_accounting.NoOpDpEvent())
    stats: Callable[[], dict] = field(default=dict)
    check: Callable[[int], None] = field(default=lambda steps: None)


class Mechanism:
    """A privacy mechanism (DP-SGD over records, over patients, label randomisation, ...).

    Class attributes: ``name`` (set by the registry), ``unit`` (one of :data:`UNITS`), ``relation`` (the
    neighbouring relation its ledger is accounted under: ``add_or_remove_one`` or ``replace_one``).
    """

    name: ClassVar[str] = ""
    unit: ClassVar[str] = "record"
    relation: ClassVar[str] = "add_or_remove_one"

    def n_units(self, data: TrainingData) -> int:
        """How many units the training split holds (δ must be below 1/n_units)."""
        return len(data.y)

    def make_trainer(
        self, *, model: nn.Module, optimizer: torch.optim.Optimizer, data: TrainingData, config: TrainConfig,
        epsilon: float, delta: float, generator: torch.Generator,
    ) -> Trainer:
        """Calibrate (for a finite ``epsilon``) and wire the loader and step; ε = ∞: same loop, nothing private.

        Batches must be drawn from ``generator`` only, so the ε = ∞ arm sees the same batches.
        """
        raise NotImplementedError

    def card_text(self, *, meta: dict, record: dict) -> dict:
        """``clipping``, ``privacy_unit_enforcement`` and ``guarantee_covers`` for the privacy card."""
        raise NotImplementedError


_MECHANISMS: dict[str, type[Mechanism]] = {}


def register_mechanism(name: str, *, force: bool = False):
    """Register a :class:`Mechanism` subclass under ``name`` (the ``methods:`` entry of a benchmark).

    Example:
        >>> @register_mechanism("toy", force=True)
        ... class Toy(Mechanism):
        ...     unit = "record"
        >>> get_mechanism("toy").name
        'toy'
        >>> _ = _MECHANISMS.pop("toy")
    """

    def decorator(cls: type[Mechanism]) -> type[Mechanism]:
        if name in _MECHANISMS and not force:
            raise ValueError(f"mechanism {name!r} is already registered")
        if cls.unit not in UNITS:
            raise ValueError(f"mechanism {name!r}: unit {cls.unit!r} is not one of {list(UNITS)}")
        cls.name = name
        _MECHANISMS[name] = cls
        return cls

    return decorator


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def available_mechanisms() -> list[str]:
    """Registered mechanism names."""
    _load_all()
    return sorted(_MECHANISMS)


def get_mechanism(name: str) -> Mechanism:
    """A new instance of the mechanism registered as ``name``; unknown names raise with the known ones."""
    _load_all()
    if name not in _MECHANISMS:
        raise ConfigError(f"unknown method {name!r}; allowed: {sorted(_MECHANISMS)}")
    return _MECHANISMS[name]()


def require_bookkeeping(model: nn.Module, config: TrainConfig, *, method: str, why: str) -> None:
    """Refuse a clipping backend other than book-keeping for ``method`` (``why``: what only book-keeping does)."""
    from dpfair.privacy.clipping.bookkeeping import unsupported_layers
    from dpfair.training.steps import resolve_mode

    if resolve_mode(config.clipping_backend, model) != "bookkeeping":
        missing = unsupported_layers(model)
        raise ConfigError(
            f"method {method} {why}, which only the book-keeping backend does; "
            f"training.clipping_backend = {config.clipping_backend!r}"
            + (f" and these layers have no book-keeping rule: {', '.join(missing)}" if missing else "")
        )


def require_plain_recipe(config: TrainConfig, *, method: str) -> None:
    """Refuse the per-step recipe options (``dpfair.training.recipe``) for a method whose loop does not implement them.

    A silently ignored ``class_weight`` or ``augmult`` would make a row claim a recipe it did not run.
    """
    unset = config.recipe_at_default()
    given = {k: getattr(config, k) for k in ("class_weight", "augmult", "clip_policy") if k not in unset}
    if given:
        raise ConfigError(
            f"method {method} does not implement the recipe options {given}; "
            "set them only for dpsgd / dpsgd_patient (training: / privacy: of that dataset)"
        )
