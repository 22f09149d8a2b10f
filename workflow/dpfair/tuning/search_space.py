"""The search space of private tuning and the public draw of each trial's recipe.

A space maps each tunable key of the training config to a list of candidate values; a trial draws one
value per key uniformly (random search, Bergstra & Bengio 2012). The draw uses only a seeded generator,
never data, so it is public to the guarantee. ``expected_batch_size`` is ``training.batch_size`` (Poisson
sampling at q = 1/ceil(n/b)). Every trial keeps its best validation epoch (``select_best``), which is
post-processing and free.

The defaults follow what the DP-SGD literature finds matters (De et al. 2022; Ponomareva et al. 2023,
"How to DP-fy ML", Sec. 5.4): larger expected batches and more epochs than non-private training, learning
rates around Adam's 1e-3, the clipping norm around and below typical gradient norms, normalised clipping,
and for images augmentation multiplicity. Values are kept small enough that one trial costs about one fixed
run on the default benchmark's CPU budget.
"""

from __future__ import annotations

import numpy as np

from dpfair.errors import ConfigError

#: Search-space keys and the training-config field each sets.
FIELDS = {
    "lr": "lr", "expected_batch_size": "batch_size", "epochs": "epochs", "max_grad_norm": "max_grad_norm",
    "optimizer": "optimizer", "augmult": "augmult", "clip_policy": "clip_policy", "class_weight": "class_weight",
    "lr_schedule": "lr_schedule", "ema_decay": "ema_decay",
}

_COMMON = {
    "lr": [5e-4, 1e-3, 2e-3, 4e-3],
    "expected_batch_size": [64, 128, 256],
    "max_grad_norm": [0.1, 0.5, 1.0],
    "optimizer": ["adam"],
    "clip_policy": ["flat", "normalized"],
    "class_weight": ["none", "balanced"],
    "lr_schedule": ["constant", "cosine"],
    "ema_decay": [None, 0.95],
}
#: Default space per modality (the dataset card's ``modality``).
DEFAULT_SPACES: dict[str, dict[str, list]] = {
    "image": {**_COMMON, "epochs": [10, 20], "augmult": [1, 2]},
    "tabular": {**_COMMON, "epochs": [10, 20], "augmult": [1]},
}


def search_space(modality: str, overrides: dict | None = None) -> dict[str, list]:
    """The space for ``modality`` with the benchmark's ``tuning.search_space`` keys replacing the defaults.

    Example:
        >>> sorted(search_space("tabular", {"lr": [0.01]})["lr"])
        [0.01]
    """
    base = DEFAULT_SPACES.get(modality, DEFAULT_SPACES["tabular"])
    space = {k: list(v) for k, v in base.items()}
    for key, values in (overrides or {}).items():
        if key not in FIELDS:
            raise ConfigError(f"tuning.search_space.{key}: not tunable; allowed: {sorted(FIELDS)}")
        if not values:
            raise ConfigError(f"tuning.search_space.{key}: needs at least one value")
        space[key] = list(values)
    return space


def draw(space: dict[str, list], rng: np.random.Generator) -> dict:
    """One trial's hyperparameters: a uniform draw per key, in a fixed key order (reproducible)."""
    return {key: space[key][int(rng.integers(len(space[key])))] for key in sorted(space)}


def as_config_fields(hyperparameters: dict) -> dict:
    """Search-space keys renamed to training-config fields."""
    return {FIELDS[k]: v for k, v in hyperparameters.items()}
