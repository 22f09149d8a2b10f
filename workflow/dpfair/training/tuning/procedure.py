"""One job runs every trial of a (cell, method, ε, seed) and returns the selected trial as the run.

The procedure (privacy accounting in :mod:`dpfair.training.tuning.accounting`):

1. From a generator seeded by the run's seed only (public), draw the number of trials K, geometric on
   K ≥ 1 with mean ``tuning.expected_trials``, then K recipes from the arm's search space (private or
   non-private, :mod:`dpfair.training.tuning.search_space`). Every ε of a seed, and the ε = ∞ arm, get the same K:
   both arms get equal effort, each in the space made for it.
2. Private arm: calibrate the reference trial (the fixed recipe's batch size and epochs) so that the
   repeat-and-select event reaches the target ε, then each trial's σ so its RDP curve stays under the
   reference's. Noise calibration is done once per distinct (q, steps).
3. Run each trial as a full training run (:func:`dpfair.training.loop.train`) that keeps its best validation
   epoch; score it by validation AUROC; keep the best (ties: the earliest). Only the training and
   validation splits are passed in: the test split cannot influence the choice.
4. The run's record is the selected trial's, with the procedure's ledger (``RepeatAndSelectDpEvent``),
   ε replayed by dp-accounting's RDP accountant, and every trial (recipe, σ, validation AUROC) listed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import torch
from opacus.data_loader import DPDataLoader
from torch.utils.data import DataLoader, TensorDataset

from dpfair.errors import ConfigError, PrivacyError
from dpfair.metrics import safe_auroc
from dpfair.privacy.ledger import event_from_json, event_to_json, poisson_gaussian, replay_epsilon
from dpfair.privacy.params import is_private
from dpfair.training.config import TrainConfig
from dpfair.training.loop import TrainResult, predict, train
from dpfair.training.tuning.accounting import (
    DISTRIBUTION,
    calibrate_dominated,
    calibrate_reference,
    check_dominated,
    procedure_epsilon,
    procedure_event,
    rdp_curve,
)
from dpfair.training.tuning.names import TUNABLE, split_method
from dpfair.training.tuning.search_space import as_config_fields, draw, search_space

log = logging.getLogger(__name__)

#: Mixed into the run's seed for the tuning draws (so they are not the batch generator's stream).
TUNING_SALT = 0x7E57
#: A trial's training seed: trial 0 uses the run's seed (the fixed recipe's), later ones are offset.
TRIAL_SEED_STRIDE = 10_000


def draw_trials(*, seed: int, expected_trials: float, space: dict) -> list[dict]:
    """The K recipes of a run: K geometric on K ≥ 1 with mean ``expected_trials``, from ``seed`` only.

    Example:
        >>> from dpfair.training.tuning.search_space import search_space
        >>> a = draw_trials(seed=0, expected_trials=3, space=search_space("tabular"))
        >>> a == draw_trials(seed=0, expected_trials=3, space=search_space("tabular")) and len(a) >= 1
        True
    """
    if not expected_trials >= 1:
        raise ConfigError(f"tuning.expected_trials must be >= 1, got {expected_trials!r}")
    rng = np.random.default_rng([int(seed), TUNING_SALT])
    n_trials = int(rng.geometric(1.0 / expected_trials))
    return [draw(space, rng) for _ in range(n_trials)]


def planned_rate_and_steps(n_rows: int, *, batch_size: int, epochs: int) -> tuple[float, int]:
    """The q dpsgd charges per step and its step count (Opacus's Poisson loader over ``n_rows``)."""
    batches = len(
        DPDataLoader.from_data_loader(DataLoader(TensorDataset(torch.zeros(n_rows, 1)), batch_size=batch_size))
    )
    return 1.0 / batches, epochs * batches


def tune_and_train(
    *,
    method: str,
    model_name: str,
    modality: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    epsilon: float,
    delta: float,
    config: TrainConfig,
    tuning: dict,
    seed: int,
    device="cpu",
    patient_id=None,
    groups=None,
) -> TrainResult:
    """Privately tune ``method`` (``m-tuned``) at ``epsilon``; return the selected trial with the procedure recorded.

    ``config`` is the fixed recipe: its batch size and epochs define the reference trial, its other fields
    are the defaults the drawn recipe overrides. ``tuning``: the benchmark's ``tuning:`` block.
    """
    base, _ = split_method(method)
    if base not in TUNABLE:
        raise ConfigError(f"method {method!r}: private tuning supports {list(TUNABLE)}")
    if x_val is None or y_val is None or not len(y_val):
        raise ConfigError("private tuning selects on the validation split, and this dataset has none")
    mean = float(tuning.get("expected_trials", 3))
    private = is_private(epsilon)
    # same K for every arm of a seed (drawn first); each arm's recipes come from its own space
    space = search_space(
        modality,
        tuning.get("search_space"),
        private=private,
        nonprivate_overrides=tuning.get("nonprivate_search_space"),
    )
    draws = draw_trials(seed=seed, expected_trials=mean, space=space)
    n = len(y_train)
    reference = ref_curve = None
    sigmas: dict[tuple[float, int], float] = {}
    if private:
        ref_q, ref_steps = planned_rate_and_steps(n, batch_size=config.batch_size, epochs=config.epochs)
        ref_sigma = calibrate_reference(
            epsilon=epsilon, delta=delta, sample_rate=ref_q, steps=ref_steps, mean_trials=mean
        )
        reference = poisson_gaussian(noise_multiplier=ref_sigma, sample_rate=ref_q, steps=ref_steps)
        ref_curve = rdp_curve(reference)
        sigmas[(ref_q, ref_steps)] = ref_sigma
    trials, best, best_score, seconds = [], None, -math.inf, 0.0
    for i, recipe in enumerate(draws):
        cfg = replace(config, **as_config_fields(recipe), select_best=True, noise_multiplier=None)
        trial_eps, entry = math.inf, {"trial": i, **recipe}
        if private:
            q, steps = planned_rate_and_steps(n, batch_size=cfg.batch_size, epochs=cfg.epochs)
            if (q, steps) not in sigmas:
                sigmas[(q, steps)] = calibrate_dominated(ref_curve, sample_rate=q, steps=steps)
            sigma = sigmas[(q, steps)]
            event = poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps)
            check_dominated(event, ref_curve)
            trial_eps = replay_epsilon(event, accountant=cfg.accountant, delta=delta)
            cfg = replace(cfg, noise_multiplier=sigma)
            entry.update(noise_multiplier=sigma, sample_rate=q, steps=steps, epsilon_alone=trial_eps)
        result = train(
            model_name=model_name,
            modality=modality,
            x_train=x_train,
            y_train=y_train,
            epsilon=trial_eps,
            delta=delta,
            config=cfg,
            seed=seed + TRIAL_SEED_STRIDE * i,
            device=device,
            x_val=x_val,
            y_val=y_val,
            method=base,
            patient_id=patient_id,
            groups=groups,
        )
        if private:  # what the trial actually charged must be what was calibrated
            check_dominated(event_from_json(result.record["ledger"]), ref_curve)
        score = safe_auroc(y_val.cpu().numpy(), predict(result.model, x_val, device=device))
        seconds += result.record["train_seconds"]
        entry.update(
            val_auroc=score, best_epoch=result.record["best_epoch"], train_seconds=result.record["train_seconds"]
        )
        trials.append(entry)
        log.info("tuning trial %d/%d: %s -> val_auroc %.4f", i + 1, len(draws), recipe, score)
        if best is None or score > best_score:  # NaN never wins over a number
            best, best_score, chosen = result, score, i
    record = dict(best.record)
    ledger = procedure_event(reference, mean_trials=mean) if private else None
    spent = procedure_epsilon(ledger, delta=delta) if private else math.inf
    if private and not spent <= epsilon * (1 + 1e-6):
        raise PrivacyError(f"the tuning procedure's ledger replays to epsilon {spent:.4f}, above the target {epsilon}")
    record.update(
        # the run's seed, not the selected trial's training seed: tables pair runs across methods and ε by it
        seed=seed,
        trial_seed=best.record["seed"],
        method=method,
        epsilon=epsilon,
        epsilon_spent=spent,
        accountant="rdp_google" if private else "none",
        ledger=event_to_json(ledger) if private else None,
        tuning_trials=len(draws),
        epsilon_per_trial=procedure_epsilon(reference, delta=delta) if private else math.inf,
        train_seconds=seconds,
        selected_trial=chosen,
        tuning={
            "procedure": "random search with private selection (Papernot & Steinke, ICLR 2022)",
            "number_of_trials": DISTRIBUTION,
            "expected_trials": mean,
            "trials_run": len(draws),
            "selection": "best validation AUROC (the validation split is outside the guarantee; the test split is not read)",
            "accountant": "dp-accounting RdpAccountant: RepeatAndSelectDpEvent (not supported by its PLD accountant)",
            "reference_trial_event": event_to_json(reference) if private else None,
            "epsilon_per_trial": procedure_epsilon(reference, delta=delta) if private else math.inf,
            "selected_trial": chosen,
            "trials": trials,
        },
    )
    return TrainResult(model=best.model, record=record, history=best.history)
