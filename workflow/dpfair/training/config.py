"""``TrainConfig``: one run's hyperparameters and the checks a run makes of them.

It lives with training (not with the benchmark definition) because the trainer, the mechanisms and the
tuning procedure all build from it; the benchmark merges its YAML into one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from dpfair.errors import ConfigError
from dpfair.privacy.clipping.policy import configurable_clip_policies
from dpfair.privacy.params import check_accountant
from dpfair.training.warm_start import TRAINABLE

OPTIMIZER_NAMES: tuple[str, ...] = ("adam", "sgd")
#: How per-unit gradient norms and the clipped sum are computed: dpfair's book-keeping path and Opacus's
#: grad-sample modes ("auto" picks). Which DP method runs is a separate choice (``methods:``).
CLIPPING_BACKENDS: tuple[str, ...] = ("auto", "bookkeeping", "hooks", "functorch", "ew", "ghost")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")
# The clip policies a benchmark may name come from their registry (``dpfair.privacy.clipping.policy``,
# ``configurable_clip_policies``), so a policy registered there is accepted without an edit here.


#: The recipe options (issue "a fair fight"): a run that leaves them at their defaults ran the recipe of
#: earlier releases, so its rule params omit them (:meth:`TrainConfig.params`).
RECIPE_FIELDS: tuple[str, ...] = (
    "lr_schedule",
    "ema_decay",
    "select_best",
    "class_weight",
    "clip_policy",
    "augmult",
    "noise_multiplier",
    "calibration_size",
    "init_weights",
    "trainable",
)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; identical across the ε grid of a (dataset, model) cell."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    clipping_backend: str = "auto"
    max_rows_per_patient: int | None = None
    # Recipe options (privacy-free post-processing and DP-specific choices; see README "Recipes and tuning")
    lr_schedule: str = "constant"
    ema_decay: float | None = None
    select_best: bool = False
    class_weight: str | float = "none"
    clip_policy: str = "flat"
    augmult: int = 1
    #: A state dict of public weights to start from (dpfair.training.warm_start): public pretraining, in the card.
    init_weights: str | None = None
    #: ``all`` parameters, or only the classifier ``head`` (the last linear layer; dpfair.training.warm_start).
    trainable: str = "all"
    #: Set only by private tuning (``dpfair.training.tuning``): the trial's σ, calibrated for the whole procedure.
    noise_multiplier: float | None = None
    #: ``privacy.secure_mode``: every random draw of the mechanism from Opacus's secure RNG (dpfair.training.noise).
    secure_mode: bool = False
    #: Set only by the audit's canary run (dpfair.audit.train_models): the number of training rows the
    #: sampling rate, steps, σ and the noisy sum's divisor are calibrated for, fixed before the canaries'
    #: inclusion bits are drawn; None: the rows given.
    calibration_size: int | None = None
    #: Settings of the DP fairness mitigations (``mitigation:`` of the benchmark; dpfair.training.mechanisms.mitigation).
    mitigation: dict | None = None
    #: Score the validation split every this many epochs (and always after the last): the training monitor.
    #: Scoring 3,000 images every epoch cost a quarter of a CPU run's time (docs/speed.md); the trained model
    #: does not depend on it, except through ``select_best``, which picks among the scored epochs.
    monitor_every: int = 1

    def params(self) -> dict:
        """The fields as a plain dict for a rule's ``params``, without recipe options left at their defaults.

        Snakemake reruns a job whose params changed; omitting an unset option means that adding a recipe
        option to this class (or to a benchmark's defaults) retrains no finished run whose recipe it does not
        change; ``monitor_every`` is left out at 1 for the same reason. ``TrainConfig(**config.params())``
        gives the same config back.

        Example:
            >>> at_default = set(RECIPE_FIELDS) | {"monitor_every"}
            >>> TrainConfig().params() == {k: v for k, v in vars(TrainConfig()).items() if k not in at_default}
            True
            >>> TrainConfig(monitor_every=5).params()["monitor_every"]
            5
            >>> TrainConfig(**TrainConfig(augmult=2).params()).augmult
            2
        """
        omitted = self.recipe_at_default() | ({"monitor_every"} if self.monitor_every == 1 else set())
        return {k: v for k, v in vars(self).items() if k not in omitted}

    def recipe_at_default(self) -> set[str]:
        """The recipe options (:data:`RECIPE_FIELDS`) this config leaves at the class defaults."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k for k in RECIPE_FIELDS if getattr(self, k) == defaults[k]}

    def __post_init__(self):
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ConfigError(f"training.optimizer = {self.optimizer!r}; allowed: {list(OPTIMIZER_NAMES)}")
        if self.clipping_backend not in CLIPPING_BACKENDS:
            raise ConfigError(
                f"training.clipping_backend = {self.clipping_backend!r}; allowed: {list(CLIPPING_BACKENDS)}"
            )
        m = self.max_rows_per_patient
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"privacy.max_rows_per_patient must be a whole number >= 1 or null, got {m!r}")
        check_accountant(self.accountant)
        for key in ("epochs", "batch_size", "monitor_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"training.{key} must be a whole number >= 1, got {value!r}")
        if not self.lr > 0 or not self.max_grad_norm > 0:
            raise ConfigError("training.lr and privacy.max_grad_norm must be > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"training.lr_schedule = {self.lr_schedule!r}; allowed: {list(LR_SCHEDULES)}")
        d = self.ema_decay
        if d is not None and (isinstance(d, bool) or not 0 < d < 1):
            raise ConfigError(f"training.ema_decay must be in (0, 1) or null, got {d!r}")
        w = self.class_weight
        if not (w in ("none", "balanced") or (isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0)):
            raise ConfigError(f"training.class_weight must be 'none', 'balanced' or a number > 0, got {w!r}")
        if self.clip_policy not in configurable_clip_policies():
            raise ConfigError(f"privacy.clip_policy = {self.clip_policy!r}; allowed: {configurable_clip_policies()}")
        if isinstance(self.augmult, bool) or not isinstance(self.augmult, int) or self.augmult < 1:
            raise ConfigError(f"training.augmult must be a whole number >= 1, got {self.augmult!r}")
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"training.trainable = {self.trainable!r}; allowed: {list(TRAINABLE)}")
        if self.init_weights is not None and not (isinstance(self.init_weights, str) and self.init_weights):
            raise ConfigError(f"training.init_weights must be a file path or null, got {self.init_weights!r}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ConfigError(f"noise_multiplier must be > 0, got {self.noise_multiplier!r}")
