"""What the loop does with the iterates: the learning-rate schedule, the EMA of weights, the best epoch's copy.

All of it is post-processing of the DP-SGD iterates (no extra access to training data), so none of it
costs privacy; choosing the best epoch reads the validation split, which the card states.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from dpfair.training.config import TrainConfig


def set_lr(optimizer: torch.optim.Optimizer, config: TrainConfig, *, step: int, total: int) -> None:
    """Learning rate of ``step`` (0-based) of ``total``: constant, or cosine decay from ``config.lr`` to 0."""
    lr = config.lr
    if config.lr_schedule == "cosine" and total > 0:
        lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
    for group in optimizer.param_groups:
        group["lr"] = lr


def clone_state(module: nn.Module) -> dict:
    """A detached copy of the module's weights and buffers (for the best epoch, or the raw weights under EMA)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Ema:
    """Exponential moving average of a module's floating-point weights and buffers (Polyak averaging)."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.state = clone_state(module)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s current weights; integer buffers (counters) are copied as they are."""
        for key, value in module.state_dict().items():
            avg = self.state[key]
            if avg.is_floating_point():
                avg.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                avg.copy_(value)

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` for good (the end of training)."""
        module.load_state_dict(self.state)

    @contextlib.contextmanager
    def swapped(self, module: nn.Module):
        """Run the block with the averaged weights in ``module``, then put the raw weights back."""
        raw = clone_state(module)
        module.load_state_dict(self.state)
        try:
            yield
        finally:
            module.load_state_dict(raw)
