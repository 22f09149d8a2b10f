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
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from dpfair.errors import ConfigError
from dpfair.privacy.params import resolve_delta
from dpfair.training.config import TrainConfig
from dpfair.training.steps import Trainer

#: Privacy units a mechanism may declare.
UNITS: tuple[str, ...] = ("record", "patient", "label", "site")


@dataclass
class TrainingData:
    """What a mechanism may see of the training split, row-aligned.

    Args:
        x, y: inputs and 0/1 labels (float) of the training rows.
        patient_id: each row's patient (or lesion/study) id where the dataset has them, else None.
        groups: the training rows' sensitive attributes (string codes), for group-aware clip policies.
        label_prior: P(label = 1) from the validation split (public to the guarantee), for label-DP priors.
        synthetic: a DP synthetic release of the training rows (:class:`dpfair.synthesis.release.SyntheticRelease`),
            for a mechanism that :attr:`Mechanism.synthesizes` (made before the run, in its own environment).
        site: each training row's site (the dataset card's ``site_attribute``) where the data have one, else
            None: the partition of a federated mechanism (:attr:`Mechanism.federated`).
    """

    x: torch.Tensor
    y: torch.Tensor
    patient_id: np.ndarray | None = None
    groups: pd.DataFrame | None = None
    label_prior: float | None = None
    synthetic: object | None = None
    site: np.ndarray | None = None


class Mechanism:
    """A privacy mechanism (DP-SGD over records, over patients, label randomisation, ...).

    Class attributes: ``name`` (set by the registry), ``unit`` (one of :data:`UNITS`), ``relation`` (the
    neighbouring relation its ledger is accounted under: ``add_or_remove_one`` or ``replace_one``).
    """

    name: ClassVar[str] = ""
    unit: ClassVar[str] = "record"
    relation: ClassVar[str] = "add_or_remove_one"
    #: Receives the training rows' sensitive attributes (``TrainingData.groups``), e.g. DPSGD-F's group clipping.
    uses_groups: ClassVar[bool] = False
    #: A fairness mitigation: the benchmark must name the attribute it targets (``mitigation.attribute``),
    #: and the method comparison sets it against ``dpsgd``.
    targets_attribute: ClassVar[bool] = False
    #: Another method whose ε = ∞ run is this one's exactly, so a grid running both trains it once.
    nonprivate_arm_of: ClassVar[str | None] = None
    #: Trains on a DP synthetic copy of the training rows (``TrainingData.synthetic``), made by a synthesizer
    #: of this name before the run (``dpfair.synthesis``); None for a mechanism that trains on the real rows.
    synthesizes: ClassVar[str | None] = None
    #: The dataset modalities the mechanism can run on; None for any.
    modalities: ClassVar[tuple[str, ...] | None] = None
    #: Trains as a Flower simulation over the sites of ``TrainingData.site`` (:mod:`dpfair.federated`), not through
    #: :meth:`make_trainer`'s central loop.
    federated: ClassVar[bool] = False

    def n_units(self, data: TrainingData) -> int:
        """How many units the training split holds (δ must be below 1/n_units)."""
        return len(data.y)

    def make_trainer(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: TrainingData,
        config: TrainConfig,
        epsilon: float,
        delta: float,
        generator: torch.Generator,
        noise_generator: torch.Generator | None = None,
    ) -> Trainer:
        """Calibrate (for a finite ``epsilon``) and wire the loader and step; ε = ∞: same loop, nothing private.

        Batches must be drawn from ``generator`` only, so the ε = ∞ arm sees the same batches. Every noise
        draw (Gaussian noise, label flips, noisy counts) must come from ``noise_generator``, the run's own
        stream (:mod:`dpfair.training.noise`), never from the batch generator or torch's global one.
        """
        raise NotImplementedError

    def card_text(self, *, meta: dict, record: dict) -> dict:
        """``clipping``, ``privacy_unit_enforcement`` and ``guarantee_covers`` for the privacy card."""
        raise NotImplementedError

    def group_privacy(self, *, meta: dict, epsilon: float, delta: float) -> dict | None:
        """The guarantee for a unit of several rows (``k``, ``epsilon``, ``delta``), where one applies; else None."""
        return None

    def also_releases(self, *, meta: dict, record: dict) -> list[str]:
        """What this mechanism's run releases beyond its guarantee, one phrase each (the card lists them).

        Only the mechanism's own releases (e.g. group levels read from training rows); what every run
        releases outside the guarantee (validation-based choices, diagnostics) the card adds itself.
        """
        return []

    def statement(self, *, meta: dict, record: dict) -> dict:
        """What the privacy card states for a finished run: unit, relation, the card text and group privacy.

        The runner hands this to :func:`dpfair.privacy.card.build_privacy_card`, so the card never looks the
        mechanism up again.
        """
        return {
            "unit": self.unit,
            "relation": self.relation,
            **self.card_text(meta=meta, record=record),
            "group_privacy": self.group_privacy(
                meta=meta, epsilon=float(record["epsilon"]), delta=float(record["delta"])
            ),
            "also_releases": self.also_releases(meta=meta, record=record),
        }


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
    """Import every module of this package, so each ``@register_mechanism`` has run."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{info.name}")


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
    from dpfair.privacy.clipping.rules import unsupported_layers
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


def training_data(prepared, *, groups: bool = False) -> TrainingData:
    """The training split of a prepared dataset as a mechanism sees it (patient ids where the data have them).

    ``groups``: also the rows' sensitive attributes, for a mechanism that :attr:`Mechanism.uses_groups`.
    """
    train_rows = (prepared.samples["split"] == "train").to_numpy()
    x_train, y_train = prepared.part("train")
    patient_id = prepared.samples.loc[train_rows, "patient_id"].to_numpy() if "patient_id" in prepared.samples else None
    attributes = [a for a in prepared.meta["card"]["sensitive_attributes"] if a in prepared.samples.columns]
    site_attribute = prepared.meta["card"].get("site_attribute")
    site = None
    if site_attribute and site_attribute in prepared.samples.columns:
        site = prepared.samples.loc[train_rows, site_attribute].astype(str).to_numpy()
    return TrainingData(
        x=x_train,
        y=y_train,
        patient_id=patient_id,
        groups=prepared.samples.loc[train_rows, attributes].reset_index(drop=True) if groups else None,
        site=site,
    )


def run_delta(prepared, mechanism: Mechanism, *, where: str | None = None) -> tuple[float, int]:
    """The run's δ and unit count: the dataset's δ setting resolved against the mechanism's units.

    δ 'auto' follows the mechanism's unit count (patients for a patient-level method); a number must be
    below 1/n_units. The one place a run's δ is decided: training and the audit's models both call it.
    ``where`` names the setting in an error; ``{n_units}`` in it is filled in.
    """
    n_units = mechanism.n_units(training_data(prepared))
    named = {"where": where.format(n_units=n_units)} if where else {}
    delta = resolve_delta(prepared.meta.get("delta_setting", prepared.meta["delta"]), n_units, **named)
    return delta, n_units
