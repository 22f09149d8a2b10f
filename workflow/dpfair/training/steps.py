"""One DP-SGD training step, whichever path computes the per-sample clipping.

Every private path of :func:`make_private` is wired the way ``PrivacyEngine.make_private`` wires it: a
Poisson ``DPDataLoader``, an Opacus DP optimizer that adds N(0, σ²C²) noise and divides by the expected
batch size, and the engine's accountant charged at q = 1/len(loader) on every step. Only the clipping differs:

- ``bookkeeping``: dpfair's single-backward clipped sum (``dpfair.privacy.clipping.bookkeeping``); noise and scaling by
  Opacus's ``DPOptimizerFastGradientClipping``. :func:`make_bookkeeping_trainer` wires it, for ``dpsgd`` (through
  :func:`make_private`) and for every mechanism that clips units of several rows or with its own clip policy
  (``dpsgd_patient``, the fairness mitigations).
- ``hooks``, ``functorch``, ``ew``: Opacus's per-sample gradient modes (instantiated per-sample grads).
- ``ghost``: Opacus's fast gradient clipping (ghost norms, then a second backward pass).

``auto`` resolves to ``bookkeeping`` when every trainable layer has a rule, else ``hooks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dp_accounting
import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizerFastGradientClipping
from torch import nn
from torch.utils.data import DataLoader
from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.privacy.clipping.bookkeeping import BookKeepingClipper
from dpfair.privacy.clipping.policy import ClipPolicy, FlatClip
from dpfair.privacy.clipping.rules import unsupported_layers
from dpfair.training.recipe import StepRecipe


@dataclass
class Trainer:
    """A model, its optimizer and batch loader, and ``step(*batch)`` that runs one update.

    ``step`` takes what the loader yields (``x, y`` or ``x, y, ids``: units or groups) and returns the batch's summed loss.
    ``module`` is the plain network to save and predict with. ``ledger(steps)`` is the ``DpEvent`` of
    ``steps`` steps of this trainer (``NoOpDpEvent`` for a non-private one); ``stats()`` counts for the run
    record (e.g. units dropped for a non-finite gradient).
    """

    mode: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    loader: object
    step: Callable[..., float]
    close: Callable[[], None] = field(default=lambda: None)
    sample_rate: float = 1.0
    expected_batch_size: float = 0.0
    noise_multiplier: float = 0.0
    max_grad_norm: float = float("nan")
    ledger: Callable[[int], dp_accounting.DpEvent] = field(default=lambda steps: dp_accounting.NoOpDpEvent())
    stats: Callable[[], dict] = field(default=dict)
    check: Callable[[int], None] = field(default=lambda steps: None)


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
        raise ConfigError(f"training.clipping_backend = {mode!r}; allowed: ['auto', *{list(PRIVATE_MODES)}]")
    return mode


class FixedLengthBatches:
    """A batch sampler that only has a length: a loader built on it tells ``DPDataLoader`` how many batches.

    Why: Opacus derives the Poisson rate from the loader's length (q = 1/len). The audit's canary run must
    use the q of a training-set size fixed before its canaries were drawn in (``TrainConfig.calibration_size``),
    not of the rows it got; ``DPDataLoader`` replaces this sampler, so it is never iterated.
    """

    def __init__(self, n_batches: int):
        self.n_batches = int(n_batches)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        raise RuntimeError("FixedLengthBatches only sets a loader's length; DPDataLoader samples the batches")


def row_loader(
    dataset, *, batch_size: int, generator: torch.Generator, calibration_size: int | None = None
) -> DataLoader:
    """The base loader DP-SGD's Poisson loader is built from: ``ceil(rows / batch_size)`` batches.

    ``rows`` is the dataset's length or, for the audit's canary run, ``calibration_size``.
    """
    if calibration_size is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    batches = -(-int(calibration_size) // int(batch_size))
    return DataLoader(dataset, batch_sampler=FixedLengthBatches(batches), generator=generator)


def make_nonprivate(
    *, model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: DataLoader, recipe: StepRecipe | None = None
) -> Trainer:
    """The ε = ∞ reference: the same Poisson batches, mean loss, no clipping, no noise.

    ``recipe``: class weight and augmentation multiplicity, as in the private step (the mean over a
    sample's augmented copies is its loss).
    """
    loader = DPDataLoader.from_data_loader(data_loader)
    recipe = recipe or StepRecipe()

    def step(x, y):
        optimizer.zero_grad(set_to_none=False)
        xs, ys, _ = recipe.expand(x, y)
        losses = recipe.losses(model(xs), ys)
        if len(y):
            (losses.sum() / len(y)).backward()
        optimizer.step()  # on an empty batch too, as a DP step would (momentum still moves)
        return float(losses.detach().sum())

    return Trainer(
        mode="nonprivate",
        module=model,
        optimizer=optimizer,
        loader=loader,
        step=step,
        sample_rate=float(loader.sample_rate),
        expected_batch_size=float(loader.sample_rate) * len(loader.dataset),
    )


def make_private(
    *,
    engine: PrivacyEngine,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data_loader: DataLoader,
    noise_multiplier: float,
    max_grad_norm: float,
    mode: str = "auto",
    recipe: StepRecipe | None = None,
    clip_policy: ClipPolicy | None = None,
    noise_generator: torch.Generator | None = None,
    calibration_size: int | None = None,
) -> Trainer:
    """Wrap ``model``/``optimizer``/``data_loader`` for DP-SGD with the clipping path ``mode``.

    ``calibration_size``: the rows the noisy sum's divisor (the expected batch size, q·rows) is computed for,
    where it is not the loader's dataset (the audit's canary run); None: the dataset's rows.

    ``noise_generator`` draws the Gaussian noise (the run's own stream, :mod:`dpfair.training.noise`); an
    engine in secure mode draws it, and the batches, from its secure RNG instead.

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
    recipe = recipe or StepRecipe()
    rows = len(data_loader.dataset) if calibration_size is None else int(calibration_size)
    if mode == "bookkeeping":
        # the checks, loader and divisor PrivacyEngine.make_private would give; the clipping by book-keeping
        owned = set(model.parameters())
        if any(p not in owned for group in optimizer.param_groups for p in group["params"]):
            raise ValueError("Module parameters are different than optimizer Parameters")
        loader = DPDataLoader.from_data_loader(data_loader, generator=engine.secure_rng, distributed=False)
        return make_bookkeeping_trainer(
            model=model,
            optimizer=optimizer,
            loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=int(rows * (1 / len(loader))),
            recipe=recipe,
            clip_policy=clip_policy,
            engine=engine,
            noise_generator=noise_generator,
            calibration_size=calibration_size,
        )
    # Opacus's modes clip per row with its own flat rule: per-sample units of K copies and other clip
    # policies exist only in book-keeping; its ghost path computes the loss itself (no weights).
    if clip_policy is not None and not isinstance(clip_policy, FlatClip):
        raise ConfigError(
            f"privacy.clip_policy {clip_policy.name!r} needs the book-keeping backend; "
            f"training.clipping_backend resolves to {mode!r}"
        )
    if recipe.augmult > 1 or (mode == "ghost" and not recipe.plain):
        raise ConfigError(
            f"training.augmult > 1{' or class_weight' if mode == 'ghost' else ''} needs the "
            f"book-keeping backend; training.clipping_backend resolves to {mode!r}"
        )
    wrapped = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=data_loader,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=True,
        grad_sample_mode=mode,
        criterion=nn.BCEWithLogitsLoss(),
        noise_generator=None if engine.secure_mode else noise_generator,
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
                losses = recipe.losses(logits, y)
                losses.mean().backward()
            else:  # an empty Poisson batch is still a DP step: Opacus adds noise to a zero gradient
                losses = logits.sum() * 0.0
                losses.backward()
            dp_optimizer.step()
            return float(losses.detach().sum())

    # Opacus divides the noisy sum by q·len(dataset); a canary run's must not count the canaries drawn in
    dp_optimizer.expected_batch_size = int(rows * loader.sample_rate)
    return Trainer(
        mode=mode,
        module=dp_model._module,
        optimizer=dp_optimizer,
        loader=loader,
        step=step,
        close=dp_model._close,
        **_private_fields(dp_optimizer, loader, rows=rows),
    )


def _private_fields(dp_optimizer, loader, *, rows: int | None = None) -> dict:
    """What the run record and the ledger take from the wired optimizer and loader (never from the config).

    ``rows``: what the expected batch size counts (the calibration size of a canary run); None: the dataset.
    """
    return {
        "sample_rate": float(loader.sample_rate),
        "expected_batch_size": float(loader.sample_rate) * (len(loader.dataset) if rows is None else rows),
        "noise_multiplier": float(dp_optimizer.noise_multiplier),
        "max_grad_norm": float(dp_optimizer.max_grad_norm),
    }


class ClippedSumDPOptimizer(DPOptimizerFastGradientClipping):
    """Opacus's optimizer for clipped sums computed before ``step`` (noise, scaling, accountant hook as is).

    The clipper hands over a fresh ``p.grad`` every step, so it becomes the sum as it is; Opacus deep-copies
    it because its own ghost path reuses ``p.grad``, which cost the mlp's step 15% here.
    """

    @override
    def accumulate(self):
        for p in self.params:
            if p.summed_grad is None:
                p.summed_grad = p.grad.detach()
            else:
                p.summed_grad.add_(p.grad)


def make_bookkeeping_trainer(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    row_ids: str | None = None,
    recipe: StepRecipe | None = None,
    clip_policy: ClipPolicy | None = None,
    clip_cap: float | None = None,
    noise_bound: Callable[[], float] | None = None,
    ledger: Callable[[int], dp_accounting.DpEvent] | None = None,
    stats: Callable[[], dict] | None = None,
    engine: PrivacyEngine | None = None,
    noise_generator: torch.Generator | None = None,
    secure_mode: bool = False,
    calibration_size: int | None = None,
) -> Trainer:
    """The DP-SGD trainer whose clipped sum :class:`BookKeepingClipper` computes in one backward pass.

    Each step: the recipe's per-copy losses, their clipped sum over units (``sum_u c_u · grad_u``), then
    :class:`ClippedSumDPOptimizer` adds N(0, σ² · bound²) noise and divides by ``expected_batch_size``.

    Args:
        model: the network; its trainable layers must all have a book-keeping rule.
        optimizer: the optimizer over ``model``'s parameters, wrapped here.
        loader: a Poisson batch loader with ``sample_rate``, ``dataset`` and ``len`` (a ``DPDataLoader``,
            or a mechanism's own, e.g. one sampling patients); the run record's sample rate and expected
            batch size (``sample_rate · len(dataset)``) are read from it.
        noise_multiplier: σ, of the gradient's noise.
        max_grad_norm: C, the run's clipping norm and the noise's bound (unless ``noise_bound`` moves it).
        expected_batch_size: what the noisy sum is divided by (Opacus's ``expected_batch_size``; callers
            keep their own rounding of it).
        row_ids: what the loader's third tensor holds for each row. ``"units"``: the row's unit among the
            batch's units (0..U-1, e.g. its patient), whose rows' gradients are summed and clipped as one;
            ``"groups"``: the row's group code, handed to the clip policy (each row its own unit); None:
            the loader yields ``(x, y)`` and each row is its own unit.
        recipe: class weight and augmentation multiplicity (the augmented copies of a sample stay in its
            unit); None: plain BCE.
        clip_policy: how unit norms become clip factors; None: flat clipping at C.
        clip_cap: the clipper's static cap on every unit's clipped norm (a policy may clip above C, e.g.
            DPSGD-F's group bounds); None: ``max_grad_norm``.
        noise_bound: called after the clipping of every step; its value replaces the noise's bound for that
            step (a policy's sensitivity that moves with its noisy counts). None: C every step.
        ledger: ``steps → DpEvent`` of the run; None: left to the caller to set on the trainer.
        stats: counts for the run record beyond ``nonfinite_units`` (units dropped for a non-finite norm).
        engine: an Opacus engine whose accountant is charged 1/len(loader) every step and whose secure RNG,
            in secure mode, draws the noise (what ``PrivacyEngine.make_private`` wires). None: the ledger
            alone accounts.
        noise_generator: the source of the Gaussian noise (the run's own stream, dpfair.training.noise;
            in secure mode the secure RNG). None falls back to torch's global generator, which the loop
            seeds with the run's seed: only for direct callers such as the speed benchmark.
        secure_mode: Opacus's floating-point-safe noise (a sum of 2n Gaussians) for a secure-mode run
            without an engine (its ``noise_generator`` is then the secure RNG).
        calibration_size: the units the record's expected batch size counts (a canary run's fixed size);
            None: the loader's dataset.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> rows = TensorDataset(torch.randn(64, 3), torch.ones(64), torch.zeros(64, dtype=torch.long))
        >>> model = nn.Sequential(nn.Linear(3, 1))
        >>> trainer = make_bookkeeping_trainer(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        ...     loader=DPDataLoader.from_data_loader(DataLoader(rows, batch_size=16)), noise_multiplier=1.0,
        ...     max_grad_norm=1.0, expected_batch_size=16, row_ids="groups")
        >>> trainer.step(*next(iter(trainer.loader))) >= 0, trainer.expected_batch_size
        (True, 16.0)
        >>> trainer.close()
    """
    if row_ids not in (None, "units", "groups"):
        raise ValueError(f"row_ids = {row_ids!r}; allowed: None, 'units', 'groups'")
    dp_optimizer = ClippedSumDPOptimizer(
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
        generator=engine.secure_rng if engine is not None and engine.secure_mode else noise_generator,
        secure_mode=secure_mode or (engine is not None and engine.secure_mode),
    )
    if engine is not None:
        dp_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=1 / len(loader)))
    clipper = BookKeepingClipper(
        model, max_grad_norm=max_grad_norm if clip_cap is None else clip_cap, clip_policy=clip_policy
    )
    recipe = recipe or StepRecipe()

    def step(x, y, ids=None):
        # a loader that drops (or adds) the ids would silently change what is clipped as one unit
        if (ids is None) != (row_ids is None):
            raise ValueError(f"the batch {'lacks' if ids is None else 'has'} row ids, but row_ids = {row_ids!r}")
        dp_optimizer.zero_grad(set_to_none=True)
        units, groups = (ids, None) if row_ids == "units" else (None, ids)
        xs, ys, copy_units = recipe.expand(x, y, units)  # K augmented copies of a sample stay in its unit
        losses = recipe.losses(model(xs), ys)
        clipper.clip_backward(losses, units=copy_units, groups=groups)
        if noise_bound is not None:
            dp_optimizer.max_grad_norm = noise_bound()
        dp_optimizer.step()
        return float(losses.detach().sum())

    trainer = Trainer(
        mode="bookkeeping",
        module=model,
        optimizer=dp_optimizer,
        loader=loader,
        step=step,
        close=clipper.remove,
        stats=lambda: {"nonfinite_units": clipper.nonfinite_units, **(stats() if stats else {})},
        **_private_fields(dp_optimizer, loader, rows=calibration_size),
    )
    if ledger is not None:
        trainer.ledger = ledger
    return trainer
