"""One DP-SGD training step, whichever path computes the per-sample clipping.

Every private path is wired the way ``PrivacyEngine.make_private`` wires it: a Poisson ``DPDataLoader``,
an Opacus DP optimizer that adds N(0, σ²C²) noise and divides by the expected batch size, and the
engine's accountant charged at q = 1/len(loader) on every step. Only the clipping differs:

- ``bookkeeping``: dpfair's single-backward clipped sum (``dpfair.bookkeeping``); noise and scaling by
  Opacus's ``DPOptimizerFastGradientClipping``.
- ``hooks``, ``functorch``, ``ew``: Opacus's per-sample gradient modes (instantiated per-sample grads).
- ``ghost``: Opacus's fast gradient clipping (ghost norms, then a second backward pass).

``auto`` resolves to ``bookkeeping`` when every trainable layer has a rule, else ``hooks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizerFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader

from dpfair.bookkeeping import BookKeepingClipper, unsupported_layers
from dpfair.errors import ConfigError

#: Private paths, fastest-first preference for ``auto``; all compute the same clipped update.
PRIVATE_MODES: tuple[str, ...] = ("bookkeeping", "hooks", "functorch", "ew", "ghost")


def resolve_mode(mode: str, model: nn.Module) -> str:
    """``auto`` → ``bookkeeping`` if it covers every trainable layer of ``model``, else ``hooks``.

    Example:
        >>> resolve_mode("auto", nn.Sequential(nn.Linear(3, 1)))
        'bookkeeping'
        >>> resolve_mode("auto", nn.Sequential(nn.Linear(3, 3), nn.PReLU()))
        'hooks'
    """
    if mode == "auto":
        return "bookkeeping" if not unsupported_layers(model) else "hooks"
    if mode not in PRIVATE_MODES:
        raise ConfigError(f"training.grad_sample_mode = {mode!r}; allowed: ['auto', *{list(PRIVATE_MODES)}]")
    return mode


@dataclass
class Trainer:
    """A model, its (DP) optimizer and data loader, and ``step(x, y)`` that runs one update.

    ``step`` returns the summed loss of the batch (a float) for logging. ``module`` is the plain network
    to save and predict with (Opacus wraps the one it trains in some modes).
    """

    mode: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    step: Callable[[torch.Tensor, torch.Tensor], float]
    close: Callable[[], None] = field(default=lambda: None)


def _per_sample_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits.squeeze(-1), y, reduction="none")


def make_nonprivate(*, model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: DataLoader) -> Trainer:
    """The ε = ∞ reference: the same Poisson batches, mean loss, no clipping, no noise."""
    loader = DPDataLoader.from_data_loader(data_loader)

    def step(x, y):
        optimizer.zero_grad(set_to_none=False)
        losses = _per_sample_loss(model(x), y)
        if len(y):
            losses.mean().backward()
        optimizer.step()  # on an empty batch too, as a DP step would (momentum still moves)
        return float(losses.detach().sum())

    return Trainer(mode="nonprivate", module=model, optimizer=optimizer, loader=loader, step=step)


def make_private(
    *,
    engine: PrivacyEngine,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    noise_multiplier: float,
    max_grad_norm: float,
    mode: str = "auto",
) -> Trainer:
    """Wrap ``model``/``optimizer``/``data_loader`` for DP-SGD with the clipping path ``mode``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> data = DataLoader(TensorDataset(torch.randn(64, 3), torch.ones(64)), batch_size=16)
        >>> model = nn.Sequential(nn.Linear(3, 1))
        >>> trainer = make_private(engine=PrivacyEngine(), model=model, data_loader=data,
        ...     optimizer=torch.optim.SGD(model.parameters(), lr=0.1), noise_multiplier=1.0, max_grad_norm=1.0)
        >>> trainer.mode, trainer.optimizer.expected_batch_size
        ('bookkeeping', 16)
    """
    mode = resolve_mode(mode, model)
    if mode == "bookkeeping":
        return _make_bookkeeping(
            engine=engine, model=model, optimizer=optimizer, data_loader=data_loader,
            noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
        )
    wrapped = engine.make_private(
        module=model, optimizer=optimizer, data_loader=data_loader, noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm, poisson_sampling=True, grad_sample_mode=mode,
        criterion=nn.BCEWithLogitsLoss(),
    )
    if mode == "ghost":
        dp_model, dp_optimizer, criterion, loader = wrapped

        def step(x, y):
            dp_optimizer.zero_grad(set_to_none=True)
            logits = dp_model(x).squeeze(-1)
            loss = criterion(logits, y)  # its backward runs the norm pass and the clipped pass
            loss.backward()
            dp_optimizer.step()
            return float(loss.detach()) * len(y)

    else:
        dp_model, dp_optimizer, loader = wrapped

        def step(x, y):
            dp_optimizer.zero_grad(set_to_none=True)
            logits = dp_model(x)
            if len(y):
                losses = _per_sample_loss(logits, y)
                losses.mean().backward()
            else:  # an empty Poisson batch is still a DP step: Opacus adds noise to a zero gradient
                losses = logits.sum() * 0.0
                losses.backward()
            dp_optimizer.step()
            return float(losses.detach().sum())

    return Trainer(
        mode=mode, module=dp_model._module, optimizer=dp_optimizer, loader=loader, step=step,
        close=dp_model._close,
    )


class _ClippedSumDPOptimizer(DPOptimizerFastGradientClipping):
    """Opacus's optimizer for clipped sums computed before ``step`` (noise, scaling, accountant hook as is).

    The clipper hands over a fresh ``p.grad`` every step, so it becomes the sum as it is; Opacus deep-copies
    it because its own ghost path reuses ``p.grad``, which cost the mlp's step 15% here.
    """

    def accumulate(self):
        for p in self.params:
            if p.summed_grad is None:
                p.summed_grad = p.grad.detach()
            else:
                p.summed_grad.add_(p.grad)


def _make_bookkeeping(*, engine, model, optimizer, data_loader, noise_multiplier, max_grad_norm) -> Trainer:
    # The same wiring as PrivacyEngine.make_private, with the clipping done by BookKeepingClipper.
    owned = set(model.parameters())
    if any(p not in owned for group in optimizer.param_groups for p in group["params"]):
        raise ValueError("Module parameters are different than optimizer Parameters")
    loader = DPDataLoader.from_data_loader(data_loader, generator=engine.secure_rng, distributed=False)
    sample_rate = 1 / len(loader)
    dp_optimizer = _ClippedSumDPOptimizer(
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=int(len(loader.dataset) * sample_rate),
        loss_reduction="mean",
        generator=engine.secure_rng if engine.secure_mode else None,
        secure_mode=engine.secure_mode,
    )
    dp_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=sample_rate))
    clipper = BookKeepingClipper(model, max_grad_norm=max_grad_norm)

    def step(x, y):
        dp_optimizer.zero_grad(set_to_none=True)
        losses = _per_sample_loss(model(x), y)
        clipper.clip_backward(losses)
        dp_optimizer.step()
        return float(losses.detach().sum())

    return Trainer(
        mode="bookkeeping", module=model, optimizer=dp_optimizer, loader=loader, step=step, close=clipper.remove,
    )
