"""The training loop shared by every privacy mechanism, and the non-private (ε = ∞) arm of each.

The mechanism (``dpfair.training.mechanisms``) calibrates its noise for exactly the steps the loop takes and
supplies the batches and the step; the loop replays the mechanism's ledger before training (a
mis-calibration fails in seconds), after every epoch (ε so far) and at the end (ε spent). Both arms use
the same model, optimizer, loss and Poisson-sampled batches drawn from the same seeded generator; the ∞
arm just skips clipping and noise. σ, q and steps are recorded from the wired optimizer and loader.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import opacus
import pandas as pd
import torch
from opacus.data_loader import DPDataLoader
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from dpfair.errors import ConfigError, PrivacyError
from dpfair.metrics import safe_auroc
from dpfair.models import build_model, count_parameters
from dpfair.privacy.ledger import event_to_json, ledger_steps_and_rates, replay_epsilon
from dpfair.privacy.params import is_private
from dpfair.training.config import TrainConfig
from dpfair.training.iterates import Ema, clone_state, set_lr
from dpfair.training.mechanisms import TrainingData, get_mechanism
from dpfair.training.noise import noise_generator, noise_seed, run_key, secure_generator
from dpfair.training.warm_start import apply_warm_start

log = logging.getLogger(__name__)

#: Expected warnings that would otherwise repeat on every step: Opacus's hooks fire on inputs that need
#: no grad; secure_mode=False is recorded in every run record instead; and the RDP bracketing inside
#: noise calibration notes its alpha range even when the PRV accountant decides.
_QUIET = ("Full backward hook is firing", "Secure RNG turned off", "Optimal order is the largest alpha")

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {  # keys match config.OPTIMIZER_NAMES
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}


@dataclass
class TrainResult:
    """What :func:`train` returns: the model (final, EMA or best-epoch weights), the run record and the per-epoch log."""

    model: nn.Module
    record: dict
    history: list[dict]


def train(
    *,
    model_name: str,
    modality: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    epsilon: float,
    delta: float,
    config: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    method: str = "dpsgd",
    patient_id: np.ndarray | None = None,
    groups: pd.DataFrame | None = None,
    noise_context: str = "",
    synthetic=None,
    dataset: str | None = None,
) -> TrainResult:
    """Train ``model_name`` with privacy mechanism ``method`` at target ``epsilon`` (non-private when ``inf``).

    The mechanism (``dpfair.training.mechanisms``) builds the batches and the step; ε = ∞ runs the same loop and
    batches without clipping and noise. The ledger is replayed before the first step (a mis-calibration
    fails in seconds) and after the last. The validation split, if given, has no DP protection: it is
    scored every ``config.monitor_every`` epochs and after the last (validation loss and AUROC, the run's only training monitor: a private run
    releases no training loss), it selects the released epoch when ``config.select_best`` is set, and
    its prevalence is the label prior of ``label_rr``; the run's privacy card lists each such use.
    ``noise_context`` (e.g. the dataset entry) joins the run's noise key (:mod:`dpfair.training.noise`):
    runs that differ in it draw unrelated noise. ``config.init_weights`` and ``config.trainable`` start from
    public weights and freeze all but the head (:mod:`dpfair.training.warm_start`); ``dataset`` names the data
    trained on, so that weights pretrained on them are refused.

    Example:
        >>> x, y = torch.randn(200, 5), torch.randint(0, 2, (200,)).float()
        >>> result = train(model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=3.0,
        ...                delta=1e-3, config=TrainConfig(epochs=1, batch_size=50), seed=0)
        >>> result.record["epsilon_spent"] <= 3.0, result.record["ledger"]["type"]
        (True, 'SelfComposedDpEvent')
    """
    with warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        return _train(
            model_name=model_name,
            modality=modality,
            x_train=x_train,
            y_train=y_train,
            epsilon=epsilon,
            delta=delta,
            config=config,
            seed=seed,
            device=device,
            x_val=x_val,
            y_val=y_val,
            method=method,
            patient_id=patient_id,
            groups=groups,
            noise_context=noise_context,
            synthetic=synthetic,
            dataset=dataset,
        )


def replayed_epsilon(mechanism, event, *, accountant: str, delta: float) -> float:
    """ε of ``event`` under the run's accountant, else PLD, else dp-accounting's RDP (see :func:`replayed_by`)."""
    return replayed_by(mechanism, event, accountant=accountant, delta=delta)[1]


def replayed_by(mechanism, event, *, accountant: str, delta: float) -> tuple[str, float]:
    """The accountant that replays ``event`` and its ε: the run's, else PLD, else dp-accounting's RDP.

    Opacus's accountants replay only Poisson-subsampled Gaussians; PLD refuses a zCDP event (a DP
    synthesizer's selections), which only the RDP accountant composes. NaN where none can.
    """
    for name in dict.fromkeys((accountant, "pld", "rdp_google")):
        eps = replay_epsilon(event, accountant=name, delta=delta, relation=mechanism.relation)
        if not math.isnan(eps):
            return name, eps
    return accountant, math.nan


def _train(
    *,
    model_name,
    modality,
    x_train,
    y_train,
    epsilon,
    delta,
    config,
    seed,
    device,
    x_val,
    y_val,
    method,
    patient_id,
    groups=None,
    noise_context="",
    synthetic=None,
    dataset=None,
) -> TrainResult:
    mechanism = get_mechanism(method)
    data = TrainingData(
        x=x_train,
        y=y_train,
        patient_id=patient_id,
        groups=groups,
        label_prior=float(y_val.float().mean()) if y_val is not None and len(y_val) else None,
        synthetic=synthetic,
    )
    n_units = mechanism.n_units(data)
    if not 0 < delta < 1.0 / n_units:
        raise PrivacyError(f"delta = {delta:g} is not below 1/n_units = {1.0 / n_units:.3g} ({mechanism.unit}s)")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(model_name, input_shape=tuple(x_train.shape[1:]), modality=modality)
    # public weights and a frozen body come before the optimizer and the clipper see the parameters
    warm = apply_warm_start(model, init_weights=config.init_weights, trainable=config.trainable, dataset=dataset)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"model {model_name!r} is not DP-SGD compatible: {errors}")
    model = model.to(device)
    optimizer = OPTIMIZERS[config.optimizer]([p for p in model.parameters() if p.requires_grad], config.lr)
    secure = bool(config.secure_mode) and is_private(epsilon)
    if secure:  # batches, noise and label flips from the secure RNG: not reproducible, by design
        generator = noise = secure_generator(config)
    else:
        # batches from the seed (shared by the ε arms and methods of a seed, so they pair); noise from a
        # stream of this run's own (dpfair.training.noise: shared noise would cancel between two releases)
        generator = torch.Generator().manual_seed(seed)
        key = run_key(model_name=model_name, config=config, context=noise_context)
        noise = noise_generator(seed=seed, method=method, epsilon=epsilon, key=key, device=device)
    trainer = mechanism.make_trainer(
        model=model,
        optimizer=optimizer,
        data=data,
        config=config,
        epsilon=epsilon,
        delta=delta,
        generator=generator,
        noise_generator=noise,
    )
    loader = trainer.loader
    private = is_private(epsilon)
    if isinstance(loader, DataLoader) and not isinstance(loader, DPDataLoader):
        raise PrivacyError(f"training must use Poisson sampling, got {type(loader).__name__}")
    planned_steps = config.epochs * len(loader)
    accountant = config.accountant if private else "none"
    if private:  # replay the ledger of the planned run before the first step
        planned = replayed_epsilon(mechanism, trainer.ledger(planned_steps), accountant=config.accountant, delta=delta)
        if not planned <= epsilon * (1 + 1e-6):
            raise PrivacyError(f"the planned run's ledger replays to epsilon {planned:.4f}, above the target {epsilon}")

    if config.select_best and (x_val is None or y_val is None):
        raise ConfigError("training.select_best needs a validation split")
    history: list[dict] = []
    steps = 0
    train_seconds = 0.0  # the optimisation loop only; per-epoch monitoring is not counted
    # Post-processing of the iterates (free under DP: the ledger covers every step): an exponential moving
    # average of the weights, and the epoch with the best validation AUROC. Both only read what the
    # private steps released and the validation split, which is outside the guarantee.
    module = trainer.module
    ema = Ema(module, config.ema_decay) if config.ema_decay else None
    best = {"auroc": -math.inf, "epoch": None, "state": None}
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum, n_seen = 0.0, 0
        start = time.perf_counter()
        for batch in loader:
            batch = [t.to(device) for t in batch]
            set_lr(trainer.optimizer, config, step=steps, total=planned_steps)
            loss_sum += trainer.step(*batch)
            if ema is not None:
                ema.update(module)
            n_seen += len(batch[1])
            steps += 1
        train_seconds += time.perf_counter() - start
        # The training loss is a mean of unbounded per-row losses that no event charges: a private run
        # releases none (logs included); its monitor is the validation loss, outside the guarantee.
        entry = {"epoch": epoch, "steps": steps}
        if not private:
            entry["train_loss"] = loss_sum / max(n_seen, 1)
        entry["epsilon_so_far"] = (
            replayed_epsilon(mechanism, trainer.ledger(steps), accountant=config.accountant, delta=delta)
            if private
            else math.inf
        )
        monitored = epoch % config.monitor_every == 0 or epoch == config.epochs
        if monitored and x_val is not None and y_val is not None:
            with ema.swapped(module) if ema is not None else contextlib.nullcontext():
                # AUROC of the probabilities, as the evaluation scores them (float32 sigmoid ties included)
                probs, logits = predict_both(module, x_val, device=device)
                entry["val_auroc"] = safe_auroc(y_val.cpu().numpy(), probs)
                entry["val_loss"] = bce_loss(logits, y_val.cpu().numpy())
                # the first epoch is kept until one beats it (a NaN AUROC never does)
                if config.select_best and (best["epoch"] is None or entry["val_auroc"] > best["auroc"]):
                    best = {"auroc": entry["val_auroc"], "epoch": epoch, "state": clone_state(module)}
        history.append(entry)
        log.info(
            "epoch %d/%d epsilon %.3f%s%s",
            epoch,
            config.epochs,
            entry["epsilon_so_far"],
            f" train_loss {entry['train_loss']:.4f}" if "train_loss" in entry else "",
            f" val_loss {entry['val_loss']:.4f} val_auroc {entry['val_auroc']:.4f}" if "val_auroc" in entry else "",
        )
    trainer.close()
    if ema is not None:
        ema.copy_to(module)
    if config.select_best and best["state"] is not None:
        module.load_state_dict(best["state"])

    if steps != planned_steps:
        raise PrivacyError(f"training took {steps} steps but the loader promised {planned_steps}")
    ledger = trainer.ledger(steps)
    epsilon_spent = math.inf
    if private:
        trainer.check(steps)
        accountant, epsilon_spent = replayed_by(mechanism, ledger, accountant=config.accountant, delta=delta)
        if not epsilon_spent <= epsilon * (1 + 1e-6):  # NaN must fail too
            raise PrivacyError(f"accountant reports epsilon {epsilon_spent:.4f} spent, above the target {epsilon}")
    sample_rate = float(trainer.sample_rate)
    record = {
        "method": method,
        "epsilon": epsilon,
        "epsilon_spent": epsilon_spent,
        "delta": delta,
        "privacy_unit": mechanism.unit,
        "n_units": n_units,
        "neighboring_relation": mechanism.relation,
        "ledger": event_to_json(ledger) if private else None,
        "noise_multiplier": float(trainer.noise_multiplier),
        "max_grad_norm": float(trainer.max_grad_norm),
        "sample_rate": sample_rate,
        "accounted_sample_rate": max(ledger_steps_and_rates(ledger)[1] or [sample_rate]),
        "expected_batch_size": float(trainer.expected_batch_size),
        "batches_per_epoch": len(loader),
        "sampling": "poisson",
        "secure_mode": secure,
        "noise_seed": None if secure or not private else noise_seed(seed=seed, method=method, epsilon=epsilon, key=key),
        "epochs": config.epochs,
        "steps": steps,
        "accountant": accountant,
        "clipping_backend": trainer.mode,
        "max_rows_per_patient": config.max_rows_per_patient,
        "n_train": len(y_train),
        "n_val": len(y_val) if y_val is not None else 0,
        "train_seconds": train_seconds,
        "seed": seed,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "n_parameters": count_parameters(model),
        "device": str(device),
        "torch_version": torch.__version__,
        "opacus_version": opacus.__version__,
        "dp_accounting_version": _dp_accounting_version(),
        # the released model's (after EMA / best-epoch) validation loss; a training loss only for ε = ∞
        "final_val_loss": _released_val_loss(trainer.module, x_val, y_val, history, config=config, device=device),
        "monitor_every": config.monitor_every,
        "final_train_loss": history[-1]["train_loss"] if history and not private else math.nan,
        "lr_schedule": config.lr_schedule,
        "ema_decay": config.ema_decay,
        "select_best": config.select_best,
        "best_epoch": best["epoch"] if config.select_best else None,
        "class_weight": config.class_weight,
        "clip_policy": config.clip_policy if private else "none",
        "augmult": config.augmult,
        "trainable": config.trainable,
        "public_weights": (warm["init_weights"] or {}).get("sha256") if warm else None,
        "public_pretraining": warm,
        "tuning_trials": 0,  # a fixed recipe; dpfair.training.tuning overwrites these for a tuned run
        "epsilon_per_trial": epsilon,
        **trainer.stats(),
    }
    return TrainResult(model=trainer.module, record=record, history=history)


def _released_val_loss(module, x_val, y_val, history, *, config, device) -> float:
    """The released model's validation loss: the last epoch's, when that epoch's weights are the ones released.

    Without an EMA or a best-epoch pick the released weights are the last epoch's, which the loop scored
    already (the same forward pass, so the same value); otherwise they are scored again.
    """
    if x_val is None or y_val is None or not len(y_val):
        return math.nan
    if config.ema_decay is None and not config.select_best and history and "val_loss" in history[-1]:
        return history[-1]["val_loss"]
    return bce_loss(predict_logits(module, x_val, device=device), y_val.cpu().numpy())


def bce_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of ``logits`` against 0/1 labels ``y`` (NaN for no rows)."""
    if not len(y):
        return math.nan
    return float(
        nn.functional.binary_cross_entropy_with_logits(
            torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
        )
    )


def _dp_accounting_version() -> str:
    try:
        return importlib.metadata.version("dp-accounting")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


#: rows per forward pass when scoring: on a 2-core CPU the default cnn scores 12,500 images about twice as fast in
#: batches of 256 as of 1,024 (cache-sized activations; docs/speed.md), and the logits are the same either way
SCORING_BATCH = 256


@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor, *, device, batch_size: int) -> list[torch.Tensor]:
    """The model's logits of label 1 in its own dtype, in eval mode, one CPU tensor per batch of rows."""
    was_training = model.training
    model.eval()
    out = [model(x[i : i + batch_size].to(device)).squeeze(-1).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return out


def _join(parts: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(parts).numpy() if parts else np.empty(0)


def predict(
    model: nn.Module, x: torch.Tensor, *, device: torch.device | str = "cpu", batch_size: int = SCORING_BATCH
) -> np.ndarray:
    """Predicted probabilities of label 1 (the sigmoid of the model's own-dtype logits, batch by batch)."""
    return _join([torch.sigmoid(b) for b in _forward(model, x, device=device, batch_size=batch_size)])


def predict_logits(
    model: nn.Module, x: torch.Tensor, *, device: str | torch.device = "cpu", batch_size: int = SCORING_BATCH
) -> np.ndarray:
    """The model's logit of label 1 for every row (float64): what the audit's attacks read."""
    return _join([b.double() for b in _forward(model, x, device=device, batch_size=batch_size)])


def predict_both(
    model: nn.Module, x: torch.Tensor, *, device: str | torch.device = "cpu", batch_size: int = SCORING_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict` and :func:`predict_logits` from one forward pass: the same values, half the cost.

    Both are elementwise functions of the same per-batch logits, taken batch by batch as the two separate
    calls take them (a vectorised sigmoid can differ in the last bit from its scalar tail, so the batches
    must be the same), so they equal those calls bit for bit (``tests/test_monitor.py``).
    """
    parts = _forward(model, x, device=device, batch_size=batch_size)
    return _join([torch.sigmoid(b) for b in parts]), _join([b.double() for b in parts])
