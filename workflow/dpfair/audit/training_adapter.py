"""The one place where the audit trains models: "train like the audited run did".

Reference models (RMIA) and the canary run (one-run audit) must be trained by the same mechanism, at the
same ε and δ, with the same hyperparameters and a validation split as the run they audit; only the
training rows, the validation rows (those the model does not train on) and the seed differ. Every audit training call goes through :func:`train_like`, so that when training gains a mechanism
registry only this file changes ("train with the run's mechanism").
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = [
    "CALIBRATION_FIELD",
    "AuditModel",
    "calibration_is_supported",
    "derived_seed",
    "predict_logits",
    "run_delta",
    "run_settings",
    "train_like",
]

from dpfair.audit.registry import DEFAULT_METHOD
from dpfair.privacy.params import parse_epsilon
from dpfair.training.config import TrainConfig
from dpfair.training.loop import predict_logits, train

log = logging.getLogger(__name__)

#: The :class:`~dpfair.training.config.TrainConfig` field that fixes the training-set size a mechanism
#: calibrates its sampling rate, steps and noise for (instead of the rows it is given); see
#: :func:`dpfair.audit.train_models.canary_calibration` for why the canary run needs it.
CALIBRATION_FIELD = "calibration_size"


def calibration_is_supported() -> bool:
    """Whether training can calibrate for a given size (:data:`CALIBRATION_FIELD` is a ``TrainConfig`` field)."""
    return CALIBRATION_FIELD in {f.name for f in dataclasses.fields(TrainConfig)}


@dataclass
class AuditModel:
    """A model :func:`train_like` trained, with the run record :func:`~dpfair.training.loop.train` wrote for it."""

    model: nn.Module
    record: dict


def run_settings(
    *,
    model: str,
    modality: str,
    epsilon,
    delta: float,
    training: dict,
    device: str = "cpu",
    method: str = DEFAULT_METHOD,
) -> dict:
    """The settings of an audited run that audit models copy (a plain dict, so rules can pass it)."""
    return {
        "model": model,
        "modality": modality,
        "epsilon": parse_epsilon(epsilon),
        "delta": float(delta),
        "training": dict(training),
        "device": device,
        "method": method,
    }


def train_like(
    *,
    settings: dict,
    x: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    patient_id: np.ndarray | None = None,
    groups: pd.DataFrame | None = None,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    calibration_size: int | None = None,
) -> AuditModel:
    """Train a model on ``(x, y)`` with the audited run's mechanism, ε, δ and hyperparameters, from ``seed``.

    Args:
        settings: the audited run's settings (:func:`run_settings`).
        x: the training inputs.
        y: the training labels (0/1, float).
        seed: the training seed (:func:`derived_seed`).
        patient_id: each row's unit for patient-level mechanisms (ignored by record-level ones).
        groups: each row's sensitive attributes, for mechanisms that clip by group (DPSGD-F); passed only to
            mechanisms that declare ``uses_groups``, as :func:`dpfair.pipeline.runner.train_run` does.
        x_val: validation inputs, as the audited run had its validation split: a recipe that selects the
            best epoch (``select_best``), weights classes by the validation prevalence (``class_weight:
            balanced``) or takes a label prior from it (``label_rr``) needs them, as the run did.
        y_val: validation labels, with ``x_val``.
        calibration_size: the training-set size the mechanism calibrates its sampling rate, steps and noise
            for, in place of ``len(y)``: the canary run's, fixed before its inclusion bits are drawn
            (:func:`dpfair.audit.train_models.canary_calibration`). Needs training's
            :data:`CALIBRATION_FIELD`; without it the run calibrates for ``len(y)`` and the record says so
            (``calibration_fixed`` false), with a warning.

    Returns:
        The model and the run record, with ``calibration_size`` and ``calibration_fixed`` when a size was asked.

    Example:
        >>> s = run_settings(model="mlp", modality="tabular", epsilon=2, delta=1e-3, training={"epochs": 1, "batch_size": 20})
        >>> out = train_like(settings=s, x=torch.randn(100, 4), y=torch.randint(0, 2, (100,)).float(), seed=0)
        >>> out.record["epsilon_spent"] <= 2, out.record["n_train"]
        (True, 100)
    """
    from dpfair.training.mechanisms import get_mechanism

    method = settings.get("method", DEFAULT_METHOD)
    training = dict(settings["training"])
    fixed = calibration_size is not None and calibration_is_supported()
    if fixed:
        training[CALIBRATION_FIELD] = int(calibration_size)
    elif calibration_size is not None:
        log.warning(
            "training has no TrainConfig.%s: the audit model of %s calibrates for its own %d rows, not the fixed %d, "
            "so its sampling rate, steps and noise follow the rows it is given",
            CALIBRATION_FIELD,
            method,
            len(y),
            calibration_size,
        )
    result = train(
        model_name=settings["model"],
        modality=settings["modality"],
        x_train=x,
        y_train=y,
        epsilon=settings["epsilon"],
        delta=settings["delta"],
        config=TrainConfig(**training),
        seed=seed,
        device=settings.get("device", "cpu"),
        x_val=x_val,
        y_val=y_val,
        method=method,
        patient_id=patient_id,
        groups=groups.reset_index(drop=True) if groups is not None and get_mechanism(method).uses_groups else None,
    )
    record = dict(result.record)
    if calibration_size is not None:
        record.update(calibration_size=int(calibration_size), calibration_fixed=fixed)
    return AuditModel(model=result.model, record=record)


def run_delta(prepared, method: str) -> float:
    """The δ the audited run used (:func:`dpfair.training.mechanisms.run_delta`)."""
    from dpfair.training.mechanisms import get_mechanism
    from dpfair.training.mechanisms import run_delta as resolve

    return resolve(prepared, get_mechanism(method))[0]


def derived_seed(seed: int, *tags: int) -> int:
    """A training seed for an audit model, distinct from the audited runs' seeds and reproducible.

    Example:
        >>> derived_seed(0, 1) != derived_seed(0, 2) and derived_seed(0, 1) == derived_seed(0, 1)
        True
    """
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0] % (2**31 - 1))
