"""What one training step does with a batch before clipping: class-weighted loss and augmentation multiplicity.

Both act on the per-sample losses the clipping backend receives, so clipping comes after them and the
sensitivity stays at C whatever they do:

- **Class weight** (``training.class_weight``): positive rows' losses are multiplied by w, so their
  gradients are scaled by w before clipping. ``balanced`` takes w = (1 - p)/p from the validation
  prevalence p (the validation split is outside the guarantee, like the label prior of ``label_rr``).
- **Augmentation multiplicity** (``training.augmult`` = K; De et al. 2022, "Unlocking High-Accuracy
  Differentially Private Image Classification through Scale", Sec. 3.2): each sampled image is repeated K
  times with independent random flips and shifts, each copy's loss is divided by K, and the K copies are
  one clipping unit, so the clipped quantity is the mean of the K augmented gradients, exactly (the
  book-keeping backend sums per-unit gradients before the norm, as for patients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dpfair.errors import ConfigError


def positive_weight(class_weight, *, label_prior: float | None) -> float:
    """The loss weight of positive rows for ``training.class_weight`` (``none`` → 1)."""
    if class_weight in (None, "none"):
        return 1.0
    if class_weight == "balanced":
        if label_prior is None or not 0 < label_prior < 1:
            raise ConfigError(
                "training.class_weight = 'balanced' needs a validation split with both labels "
                f"(validation prevalence {label_prior!r}); set a number instead"
            )
        return (1.0 - label_prior) / label_prior
    return float(class_weight)


def augment_images(x: torch.Tensor, *, generator: torch.Generator, max_shift: int | None = None) -> torch.Tensor:
    """Random horizontal flip and random shift (replicate padding) of each image of ``x`` (N, C, H, W)."""
    n, c, h, w = x.shape
    s = max(1, h // 8) if max_shift is None else max_shift
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = nn.functional.pad(x, (s, s, s, s), mode="replicate")
    dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@dataclass
class StepRecipe:
    """Per-sample loss weighting and augmentation multiplicity of one training step.

    Example:
        >>> r = StepRecipe(pos_weight=3.0)
        >>> r.losses(torch.zeros(2, 1), torch.tensor([1.0, 0.0])) / r.losses(torch.zeros(2, 1), torch.zeros(2))
        tensor([3., 1.])
    """

    pos_weight: float = 1.0
    augmult: int = 1
    generator: torch.Generator | None = None

    @property
    def plain(self) -> bool:
        """Whether the step is the plain one: unweighted loss, one copy per sample (all Opacus's ghost path can do)."""
        return self.pos_weight == 1.0 and self.augmult == 1

    def expand(self, x: torch.Tensor, y: torch.Tensor, units: torch.Tensor | None = None):
        """``(x, y, units)`` with each row repeated ``augmult`` times and augmented.

        ``units`` maps every copy to its sample's unit (the sample itself when ``units`` is None). Unchanged
        when augmult is 1.
        """
        k = self.augmult
        if k == 1:
            return x, y, units
        if x.dim() != 4:
            raise ConfigError(f"training.augmult = {k} needs image inputs (N, C, H, W); got shape {tuple(x.shape)}")
        base = torch.arange(len(y), device=y.device) if units is None else units
        xs = augment_images(x.repeat_interleave(k, dim=0), generator=self.generator)
        return xs, y.repeat_interleave(k), base.repeat_interleave(k)

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-copy losses: BCE, times ``pos_weight`` for positives, divided by ``augmult``."""
        losses = nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y, reduction="none")
        if self.pos_weight != 1.0:
            losses = losses * (1.0 + (self.pos_weight - 1.0) * y)
        return losses / self.augmult if self.augmult > 1 else losses


def step_recipe(config, *, label_prior: float | None, generator: torch.Generator) -> StepRecipe:
    """The :class:`StepRecipe` of a training config.

    Augmentation draws from its own generator seeded from the batch generator, so both arms of a cell see
    the same augmentations.
    """
    try:
        aug_gen = torch.Generator().manual_seed(generator.initial_seed() + 7919)
    except RuntimeError:  # a secure RNG has no seed to offset; augmentation is not a privacy draw
        aug_gen = torch.Generator().manual_seed(7919)
    return StepRecipe(
        pos_weight=positive_weight(config.class_weight, label_prior=label_prior),
        augmult=config.augmult,
        generator=aug_gen,
    )
