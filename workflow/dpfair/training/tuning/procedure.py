"""One job runs every trial of a (cell, method, ε, seed) and returns the selected trial as the run.

The procedure (privacy accounting in :mod:`dpfair.training.tuning.accounting`):

1. From a generator seeded by the run's seed only (public), draw the K = ``tuning.trials`` recipes from
   the arm's search space (private or non-private, :mod:`dpfair.training.tuning.search_space`). K is fixed
   and public, and the same for every arm, the ε = ∞ arm included: equal effort, each in its own space. In
   the opt-in noise-aware space a private recipe's noise ratio sets its expected batch and epochs from ε, δ,
   K, n and the model's size (:mod:`dpfair.training.tuning.regime`); the ε = ∞ arm's first trial is the
   fixed recipe itself.
2. Private arm: calibrate every trial's σ at once so that the composition of all K trials reaches the
   target ε (dp-accounting PLD), each trial taking an equal share of it.
3. Run each trial as a full training run (:func:`dpfair.training.loop.train`) that keeps its best validation
   epoch; score it by validation AUROC; keep the best (ties: the earliest). Only the training and
   validation splits are passed in: the test split cannot influence the choice.
4. The run's record is the selected trial's, with the procedure's ledger (the ``ComposedDpEvent`` of all
   trials), ε replayed by dp-accounting's PLD accountant, and every trial (recipe, σ, q, steps, ε alone,
   validation AUROC) listed: the ledger covers each of them, so all may be published.
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
from dpfair.models import build_model, count_parameters
from dpfair.privacy.ledger import event_from_json, event_to_json, poisson_gaussian, replay_epsilon
from dpfair.privacy.params import is_private
from dpfair.training.config import TrainConfig
from dpfair.training.loop import TrainResult, predict, train
from dpfair.training.tuning.accounting import DISTRIBUTION, calibrate_trials, procedure_epsilon, procedure_event
from dpfair.training.tuning.names import TUNABLE, split_method
from dpfair.training.tuning.search_space import FIELDS, draw, recipe_fields, search_space
from dpfair.training.warm_start import freeze_to_head

log = logging.getLogger(__name__)

#: Mixed into the run's seed for the tuning draws (so they are not the batch generator's stream).
TUNING_SALT = 0x7E57
#: A trial's training seed: trial 0 uses the run's seed (the fixed recipe's), later ones are offset.
TRIAL_SEED_STRIDE = 10_000
#: K when ``tuning.trials`` is unset.
DEFAULT_TRIALS = 3


def number_of_trials(tuning: dict) -> int:
    """K, the fixed number of trials of ``tuning.trials`` (an integer ≥ 1).

    Raises:
        ConfigError: the removed ``tuning.expected_trials`` (a random K, see the accounting module), or a
            K that is not a positive integer.
    """
    if "expected_trials" in tuning:
        raise ConfigError(
            "tuning.expected_trials was removed: a random number of trials is only private while it stays "
            "secret, and a benchmark publishes it; set tuning.trials (a fixed, public K, every trial charged)"
        )
    k = tuning.get("trials", DEFAULT_TRIALS)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"tuning.trials must be an integer >= 1, got {k!r}")
    return k


def trainable_count(model_name: str, *, input_shape: tuple, modality: str, trainable: str) -> int:
    """d, the trainable parameters of ``model_name`` with ``trainable`` parts (``all`` or ``head``): public."""
    model = build_model(model_name, input_shape=input_shape, modality=modality)
    if trainable == "head":
        freeze_to_head(model)
    return count_parameters(model)


def draw_trials(*, seed: int, trials: int, space: dict) -> list[dict]:
    """The ``trials`` recipes of a run, drawn from ``space`` by a generator seeded from ``seed`` only.

    Example:
        >>> from dpfair.training.tuning.search_space import search_space
        >>> a = draw_trials(seed=0, trials=3, space=search_space("tabular"))
        >>> a == draw_trials(seed=0, trials=3, space=search_space("tabular")), len(a)
        (True, 3)
    """
    rng = np.random.default_rng([int(seed), TUNING_SALT])
    return [draw(space, rng) for _ in range(int(trials))]


def fixed_recipe_draw(config: TrainConfig, space: dict) -> dict:
    """The fixed recipe as a draw from ``space``: each key's value is the fixed recipe's own."""
    return {key: getattr(config, FIELDS[key]) for key in sorted(space) if FIELDS[key] is not None}


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
    noise_context: str = "",
    dataset: str | None = None,
) -> TrainResult:
    """Privately tune ``method`` (``m-tuned``) at ``epsilon``; return the selected trial with the procedure recorded.

    ``config`` is the fixed recipe: its fields are the defaults the drawn recipes override. ``tuning``: the
    benchmark's ``tuning:`` block (``trials``: K, ``search_space``, ``nonprivate_search_space``,
    ``private_search_space``).
    """
    base, _ = split_method(method)
    if base not in TUNABLE:
        raise ConfigError(f"method {method!r}: private tuning supports {list(TUNABLE)}")
    if x_val is None or y_val is None or not len(y_val):
        raise ConfigError("private tuning selects on the validation split, and this dataset has none")
    k = number_of_trials(tuning)
    private = is_private(epsilon)
    space = search_space(
        modality,
        tuning.get("search_space"),
        private=private,
        nonprivate_overrides=tuning.get("nonprivate_search_space"),
        private_overrides=tuning.get("private_search_space"),
        fixed=config.params(),
        public_weights=config.init_weights is not None,
    )
    draws = draw_trials(seed=seed, trials=k, space=space)
    if not private:  # the reference starts from the fixed recipe: a tuned ε = ∞ never trails it by a poor draw
        draws[0] = fixed_recipe_draw(config, space)
    n = len(y_train)
    # the model's trainable size is public (its architecture, and which part trains); the privately drawn
    # recipes' batches and epochs follow from it
    n_params = {
        part: trainable_count(model_name, input_shape=tuple(x_train.shape[1:]), modality=modality, trainable=part)
        for part in {r.get("trainable", config.trainable) for r in draws}
    }
    resolved = [
        recipe_fields(
            r,
            epsilon=epsilon,
            delta=delta,
            n=n,
            n_params=n_params[r.get("trainable", config.trainable)],
            trials=k,
            epochs=config.epochs,
        )
        for r in draws
    ]
    configs = [replace(config, **fields, select_best=True, noise_multiplier=None) for fields, _ in resolved]
    plans = [planned_rate_and_steps(n, batch_size=c.batch_size, epochs=c.epochs) for c in configs]
    sigmas = calibrate_trials(plans, epsilon=epsilon, delta=delta) if private else [0.0] * k
    trials, best, best_score, seconds = [], None, -math.inf, 0.0
    for i, (recipe, cfg) in enumerate(zip(draws, configs)):
        trial_eps, entry = math.inf, {"trial": i, **recipe}
        if resolved[i][1]:  # what the noise regime made of the drawn noise ratio
            entry.update(
                epochs_drawn=recipe.get("epochs", config.epochs),  # the compute the trial was given
                expected_batch_size=cfg.batch_size,
                epochs=cfg.epochs,
                noise_ratio_planned=resolved[i][1]["noise_ratio_planned"],
            )
        if private:
            (q, steps), sigma = plans[i], sigmas[i]
            event = poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps)
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
            # each trial of the tuned arm is a release of its own: its own noise, unrelated to the fixed recipe's
            noise_context=f"{noise_context}|{method} trial {i}",
            dataset=dataset,
        )
        if private and event_from_json(result.record["ledger"]) != event:
            # what the trial charged must be what the procedure's ledger composes
            raise PrivacyError(
                f"tuning trial {i} charged {result.record['ledger']}, not its planned {event_to_json(event)}"
            )
        score = safe_auroc(y_val.cpu().numpy(), predict(result.model, x_val, device=device))
        seconds += result.record["train_seconds"]
        entry.update(
            val_auroc=score, best_epoch=result.record["best_epoch"], train_seconds=result.record["train_seconds"]
        )
        trials.append(entry)
        log.info("tuning trial %d/%d: %s -> val_auroc %.4f", i + 1, k, recipe, score)
        if best is None or score > best_score:  # NaN never wins over a number
            best, best_score, chosen = result, score, i
    record = dict(best.record)
    composed = [(t["noise_multiplier"], t["sample_rate"], t["steps"]) for t in trials] if private else []
    ledger = procedure_event(composed) if private else None
    spent = procedure_epsilon(composed, delta=delta) if private else math.inf
    if private and not spent <= epsilon:
        raise PrivacyError(f"the tuning procedure's ledger replays to epsilon {spent:.4f}, above the target {epsilon}")
    selected_alone = trials[chosen].get("epsilon_alone", math.inf)
    record.update(
        # the run's seed, not the selected trial's training seed: tables pair runs across methods and ε by it
        seed=seed,
        trial_seed=best.record["seed"],
        method=method,
        epsilon=epsilon,
        epsilon_spent=spent,
        accountant="pld" if private else "none",
        ledger=event_to_json(ledger) if private else None,
        tuning_trials=k,
        epsilon_per_trial=selected_alone,
        train_seconds=seconds,
        selected_trial=chosen,
        tuning={
            "procedure": "random search over a fixed, public number of trials; the ledger composes all of them",
            "number_of_trials": DISTRIBUTION,
            "trials_run": k,
            "selection": "best validation AUROC (the validation split is outside the guarantee; the test split is not read)",
            "accountant": "dp-accounting PLDAccountant: ComposedDpEvent of every trial's DP-SGD event",
            "budget_sharing": "each trial an equal share by the DP-SGD central limit theorem (Bu et al. 2020)",
            "epsilon_selected_trial_alone": selected_alone,
            "selected_trial": chosen,
            "trials": trials,
        },
    )
    return TrainResult(model=best.model, record=record, history=best.history)
