"""The search space of private tuning and the public draw of each trial's recipe.

A space maps each tunable key of the training config to a list of candidate values; a trial draws one
value per key uniformly (random search, Bergstra & Bengio 2012). The draw uses only a seeded generator,
never data, so it is public to the guarantee. ``expected_batch_size`` is ``training.batch_size`` (Poisson
sampling at q = 1/ceil(n/b)). Every trial keeps its best validation epoch (``select_best``), which is
post-processing and free.

Each arm searches the space suited to it, with the same number of trials K (drawn before the recipes, from
the same seed): a space made for one arm would hand the comparison to that arm, which is the fixed
recipe's flaw again. The private space follows what the DP-SGD literature finds matters (De et al. 2022,
"Unlocking high-accuracy differentially private image classification through scale"; Bu et al. 2023,
"Automatic clipping"; Ponomareva et al. 2023, "How to DP-fy ML", Sec. 5.4): SGD with momentum at a large
step, normalised clipping with a small C (so the step is about lr·C whatever the gradient norms), larger
expected batches and more epochs than non-private training, augmentation multiplicity for images, and a
class-weighted loss (clipping equalises per-sample contributions, so without weights the majority class's
gradients dominate and scores collapse to a constant). The non-private space is the usual Adam one, as narrow
as the private one (two learning rates and batch sizes around the fixed recipe's, and at least as many
epochs), so neither arm draws from a space with more bad corners than the other's.
Either default is replaced key by key by the benchmark's ``tuning.search_space`` (both arms), then the
ε = ∞ arm's by ``tuning.nonprivate_search_space``.
"""

from __future__ import annotations

import numpy as np

from dpfair.errors import ConfigError

#: Search-space keys and the training-config field each sets.
FIELDS = {
    "lr": "lr",
    "expected_batch_size": "batch_size",
    "epochs": "epochs",
    "max_grad_norm": "max_grad_norm",
    "optimizer": "optimizer",
    "augmult": "augmult",
    "clip_policy": "clip_policy",
    "class_weight": "class_weight",
    "lr_schedule": "lr_schedule",
    "ema_decay": "ema_decay",
}

_NONPRIVATE = {
    "lr": [1e-3, 2e-3],
    "expected_batch_size": [64, 128],
    "max_grad_norm": [1.0],  # unused without privacy
    "optimizer": ["adam"],
    "clip_policy": ["flat"],
    "class_weight": ["none", "balanced"],
    "lr_schedule": ["constant", "cosine"],
    "ema_decay": [None, 0.95],
}
_PRIVATE = {
    "lr": [4.0, 8.0],  # SGD steps of about lr·C = 0.4–0.8 under normalised clipping
    "expected_batch_size": [256, 512],
    "max_grad_norm": [0.1],
    "optimizer": ["sgd"],
    "clip_policy": ["normalized"],
    "class_weight": ["balanced"],
    "lr_schedule": ["constant", "cosine"],
    "ema_decay": [None],
}
#: Default space per arm and modality (the dataset card's ``modality``).
DEFAULT_SPACES: dict[str, dict[str, dict[str, list]]] = {
    "private": {
        "image": {**_PRIVATE, "epochs": [20, 40], "augmult": [1, 2]},
        "tabular": {**_PRIVATE, "epochs": [20, 40], "augmult": [1]},
    },
    "nonprivate": {
        "image": {**_NONPRIVATE, "epochs": [15, 30], "augmult": [1]},
        "tabular": {**_NONPRIVATE, "epochs": [10, 20], "augmult": [1]},
    },
}


def search_space(
    modality: str, overrides: dict | None = None, *, private: bool = True, nonprivate_overrides: dict | None = None
) -> dict[str, list]:
    """The space of one arm for ``modality``: the arm's default with the benchmark's keys replacing it.

    ``overrides`` (``tuning.search_space``) apply to both arms; ``nonprivate_overrides``
    (``tuning.nonprivate_search_space``) to the ε = ∞ arm on top.

    Example:
        >>> sorted(search_space("tabular", {"lr": [0.01]})["lr"])
        [0.01]
        >>> search_space("image", private=False)["optimizer"], search_space("image")["optimizer"]
        (['adam'], ['sgd'])
    """
    base = DEFAULT_SPACES["private" if private else "nonprivate"]
    space = {k: list(v) for k, v in base.get(modality, base["tabular"]).items()}
    for name, given in (
        ("search_space", overrides),
        ("nonprivate_search_space", None if private else nonprivate_overrides),
    ):
        for key, values in (given or {}).items():
            if key not in FIELDS:
                raise ConfigError(f"tuning.{name}.{key}: not tunable; allowed: {sorted(FIELDS)}")
            if not values:
                raise ConfigError(f"tuning.{name}.{key}: needs at least one value")
            space[key] = list(values)
    return space


def draw(space: dict[str, list], rng: np.random.Generator) -> dict:
    """One trial's hyperparameters: a uniform draw per key, in a fixed key order (reproducible)."""
    return {key: space[key][int(rng.integers(len(space[key])))] for key in sorted(space)}


def as_config_fields(hyperparameters: dict) -> dict:
    """Search-space keys renamed to training-config fields."""
    return {FIELDS[k]: v for k, v in hyperparameters.items()}
