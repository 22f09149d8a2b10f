"""The search space of private tuning and the public draw of each trial's recipe.

A space maps each tunable key of the training config to a list of candidate values; a trial draws one
value per key uniformly (random search, Bergstra & Bengio 2012). The draw uses only a seeded generator,
never data, so it is public to the guarantee. ``expected_batch_size`` is ``training.batch_size`` (Poisson
sampling at q = 1/ceil(n/b)). Every trial keeps its best validation epoch (``select_best``), which is
post-processing and free.

Each arm searches the space suited to it, with the same number of trials K (drawn before the recipes, from
the same seed) and the same compute (the same epochs): a space made for one arm would hand the comparison to
that arm, which is the fixed recipe's flaw again.

The private space follows what the DP-SGD literature finds matters (De et al. 2022, "Unlocking
high-accuracy differentially private image classification through scale"; Bu et al. 2023, "Automatic
clipping"; Ponomareva et al. 2023, "How to DP-fy ML", Sec. 5.4): SGD with momentum at a large step,
normalised clipping with a small C (so the step is about lr·C whatever the gradient norms), larger expected
batches and more epochs than non-private training, augmentation multiplicity for images, and a
class-weighted loss (clipping equalises per-sample contributions, so without weights the majority class's
gradients dominate and scores collapse to a constant). Its batches are the same at every ε. A space given a
``noise_ratio`` (``tuning.private_search_space: {noise_ratio: [...]}``, e.g. :data:`NOISE_AWARE`) is noise-aware
instead (:mod:`dpfair.training.tuning.regime`): each trial's expected batch and steps follow from its drawn
noise ratio, the target ε, δ, K, the training rows n and the model's parameters d, all public (Sander, Stock
& Sablayrolles 2023). It is not the default: its first check collapsed at ε = 1 (docs/tuning.md). The ε = ∞ space is the
usual Adam one around the benchmark's fixed recipe, whose values it always contains, and its first trial is
the fixed recipe itself, so the tuned ε = ∞ reference never starts from a space poorer than the fixed recipe.
Where the run starts from public weights (``training.init_weights``), the private space also searches which part
trains: the fixed recipe's (every parameter) or only the classifier head, a linear probe on the public features.
At small ε a linear model on good public features beats end-to-end DP training (Tramèr & Boneh 2021,
"Differentially private learning needs better features (or much more data)"; Mehta et al. 2023, "Towards large
scale transfer learning for differentially private image classification"), because the noise norm grows with the
trainable parameters' √d; which of the two suits a given ε and dataset is left to the selection, not fixed here.
The ε = ∞ arm fine-tunes every parameter, as non-private transfer learning does.
Either default is replaced key by key by the benchmark's ``tuning.search_space`` (both arms), then the
ε = ∞ arm's by ``tuning.nonprivate_search_space``, the private arms' by ``tuning.private_search_space``.
"""

from __future__ import annotations

import numpy as np

from dpfair.errors import ConfigError
from dpfair.privacy.params import is_private
from dpfair.training.tuning.regime import private_recipe

#: Search-space keys and the training-config field each sets (``noise_ratio`` sets none: the private recipe
#: derives the expected batch and the epochs from it, :func:`recipe_fields`).
FIELDS = {
    "noise_ratio": None,
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
    "trainable": "trainable",
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
#: The noise-aware space's own keys (opt in with ``tuning.search_space``; docs/tuning.md): the noise ratio
#: (large DP-SGD runs train at about 0.4-1.2, De et al. 2022, Sander et al. 2023; small data cannot reach
#: that with enough steps) and lr·C = 0.25, 0.5, 1 under normalised clipping with C = 0.1.
NOISE_AWARE = {"noise_ratio": [1.0, 2.0, 4.0], "lr": [2.5, 5.0, 10.0]}
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
    modality: str,
    overrides: dict | None = None,
    *,
    private: bool = True,
    nonprivate_overrides: dict | None = None,
    private_overrides: dict | None = None,
    fixed: dict | None = None,
    public_weights: bool = False,
) -> dict[str, list]:
    """The space of one arm for ``modality``: the arm's default with the benchmark's keys replacing it.

    ``overrides`` (``tuning.search_space``) apply to both arms; ``nonprivate_overrides``
    (``tuning.nonprivate_search_space``) to the ε = ∞ arm on top, ``private_overrides``
    (``tuning.private_search_space``, e.g. :data:`NOISE_AWARE`, whose lr·C under normalised clipping would be a
    wild Adam step) to the private arms on top. ``fixed``, the fixed recipe's training
    fields, joins the ε = ∞ default's lr, batch and epochs (a key the benchmark sets stays as set).
    ``public_weights``: the runs start from public weights; the private default then searches ``trainable`` over
    the fixed recipe's part and the head (a key the benchmark sets stays as set). The ε = ∞
    arm has no ``noise_ratio``; a private space with one draws no batch sizes (the noise ratio sets them), and
    one given both is refused.

    Example:
        >>> sorted(search_space("tabular", {"lr": [0.01]})["lr"])
        [0.01]
        >>> search_space("image", private=False)["optimizer"], search_space("image")["optimizer"]
        (['adam'], ['sgd'])
        >>> search_space("image", public_weights=True)["trainable"], "trainable" in search_space("image")
        (['all', 'head'], False)
    """
    base = DEFAULT_SPACES["private" if private else "nonprivate"]
    space = {k: list(v) for k, v in base.get(modality, base["tabular"]).items()}
    for name, given in (
        ("search_space", overrides),
        ("nonprivate_search_space", None if private else nonprivate_overrides),
        ("private_search_space", private_overrides if private else None),
    ):
        for key, values in (given or {}).items():
            if key not in FIELDS:
                raise ConfigError(f"tuning.{name}.{key}: not tunable; allowed: {sorted(FIELDS)}")
            if not values:
                raise ConfigError(f"tuning.{name}.{key}: needs at least one value")
            space[key] = list(values)
    given = {**(overrides or {}), **((nonprivate_overrides if not private else private_overrides) or {})}
    if private and public_weights and "trainable" not in given:
        space["trainable"] = sorted({(fixed or {}).get("trainable", "all"), "head"})
    if not private:
        if "noise_ratio" in space:
            raise ConfigError(
                "tuning.search_space.noise_ratio applies to both arms, and the epsilon = inf arm has no noise: "
                "put it in tuning.private_search_space"
            )
        for key, field in (("lr", "lr"), ("expected_batch_size", "batch_size"), ("epochs", "epochs")):
            if fixed and field in fixed and key not in given and fixed[field] not in space[key]:
                space[key] = sorted([*space[key], fixed[field]])
    elif "noise_ratio" in space:
        if "expected_batch_size" in given:
            raise ConfigError(
                "the private search space (tuning.search_space, tuning.private_search_space) sets both noise_ratio and expected_batch_size, but the noise ratio sets each "
                "trial's batch (docs/tuning.md): drop one of them"
            )
        space.pop("expected_batch_size", None)
    return space


def draw(space: dict[str, list], rng: np.random.Generator) -> dict:
    """One trial's hyperparameters: a uniform draw per key, in a fixed key order (reproducible)."""
    return {key: space[key][int(rng.integers(len(space[key])))] for key in sorted(space)}


def as_config_fields(hyperparameters: dict) -> dict:
    """Search-space keys renamed to training-config fields (``noise_ratio``, which sets none, left out)."""
    return {FIELDS[k]: v for k, v in hyperparameters.items() if FIELDS[k] is not None}


def recipe_fields(
    recipe: dict, *, epsilon: float, delta: float, n: int, n_params: int, trials: int, epochs: int
) -> tuple[dict, dict]:
    """The training-config fields of a drawn recipe, and what the noise regime derived for it (empty if nothing).

    A private recipe with a ``noise_ratio`` gets its expected batch and epochs from
    :func:`dpfair.training.tuning.regime.private_recipe` (its drawn ``epochs``, else ``epochs``, the fixed
    recipe's, as the compute); the derived plan is returned for the card. Public: no data are read.
    """
    fields = as_config_fields(recipe)
    ratio = recipe.get("noise_ratio")
    if ratio is None or not is_private(epsilon):
        return fields, {}
    plan = private_recipe(
        epsilon=epsilon,
        delta=delta,
        n=n,
        n_params=n_params,
        trials=trials,
        noise_ratio=float(ratio),
        epochs=int(fields.get("epochs", epochs)),
    )
    fields.update(batch_size=plan["expected_batch_size"], epochs=plan["epochs"])
    return fields, plan
