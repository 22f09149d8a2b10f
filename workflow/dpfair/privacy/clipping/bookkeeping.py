"""Book-keeping per-sample clipping: DP-SGD's clipped gradient sum from one backward pass.

Opacus's hooks instantiate every per-sample gradient and its ghost clipping runs a second backward pass.
Book-keeping (Bu et al., "Differentially Private Optimization on Large Model at Small Cost", ICML 2023)
needs neither: one backward pass yields, for each trainable layer, its input activation ``a`` and the
gradient ``g`` of the summed per-sample loss with respect to its output. From ``(a, g)`` each layer
gives the per-sample squared norms of its parameter gradients (by the ghost-norm identity or by
instantiating the small per-sample gradients: by flop count for Linear, as in mixed ghost clipping, and
by timing the candidates on the first batch for convolutions), and then the clipped sum ``sum_i c_i * grad_i`` as one weighted weight-gradient product. The weight
gradients of the ordinary backward pass are never computed, which pays for the norms.

The result is exactly Opacus's flat clipping (``c_i = min(1, C / (||grad_i|| + 1e-6))``) up to float
rounding; ``tests/test_bookkeeping.py`` checks it against Opacus's hooks. Noise, scaling by the expected
batch size and the accountant stay with Opacus's optimizer (see ``dpfair.training.steps``).

Layers are handled by rules registered per module type (:mod:`dpfair.privacy.clipping.rules`, one file per kind).
A model with a trainable layer no rule covers is refused with the layer named, and ``auto`` mode then
uses Opacus's hooks.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from dpfair.privacy.clipping.policy import ClipPolicy, FlatClip, safe_factors
from dpfair.privacy.clipping.rules import LayerRule, get_layer_rule, trainable_parameters, unsupported_layers


def _synchronize(tensor: torch.Tensor) -> None:
    if tensor.device.type == "cuda":
        torch.cuda.synchronize(tensor.device)


class BookKeepingClipper:
    """Attach to a model; ``clip_backward(per_sample_losses)`` leaves ``sum_i c_i grad_i`` in ``p.grad``.

    Example:
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> clipper = BookKeepingClipper(model, max_grad_norm=1.0)
        >>> losses = model(torch.randn(8, 3)).squeeze(1).pow(2)
        >>> norms = clipper.clip_backward(losses)
        >>> norms.shape, model[0].weight.grad.shape
        (torch.Size([8]), torch.Size([4, 3]))
        >>> clipper.remove()
    """

    def __init__(self, model: nn.Module, *, max_grad_norm: float, clip_policy: ClipPolicy | None = None):
        missing = unsupported_layers(model)
        if missing:
            raise ValueError(
                f"book-keeping clipping has no rule for these trainable layers: {', '.join(missing)}; "
                "use training.clipping_backend 'hooks' (or 'auto', which falls back to it)"
            )
        self.model = model
        self.max_grad_norm = float(max_grad_norm)
        self.clip_policy = clip_policy or FlatClip()
        #: Units (rows or patients) whose gradient norm was NaN or infinite: given clip factor 0, counted here.
        self.nonfinite_units = 0
        self._records: list[_Record] = []
        self._layers = [m for m in model.modules() if trainable_parameters(m)]
        self._names = {id(m): name or "<root>" for name, m in model.named_modules()}
        self._handles = [m.register_forward_hook(self._record) for m in self._layers]
        #: Per layer, the strategy chosen by timing on the first batch (like cuDNN's autotuner).
        self.strategies: dict[nn.Module, str] = {}

    @staticmethod
    def _fastest(rule: LayerRule, module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> str:
        candidates = rule.strategies(module, a, g)
        if len(candidates) == 1:
            return candidates[0]
        ones = a.new_ones(a.shape[0])
        seconds = {s: math.inf for s in candidates}
        # the first call pays one-off costs (allocations, kernel selection); the best of the rest is
        # the least disturbed by whatever else the machine is doing
        for attempt in range(4):
            for strategy in candidates:
                _synchronize(a)
                start = time.perf_counter()
                state = rule.prepare(module, a, g, strategy)
                rule.norms_sq(state)
                rule.clipped_grads(module, state, ones)
                _synchronize(a)
                if attempt:
                    seconds[strategy] = min(seconds[strategy], time.perf_counter() - start)
        return min(seconds, key=seconds.get)

    def _record(self, module, inputs, output):
        if not (torch.is_grad_enabled() and module.training and output.requires_grad):
            return
        record = _Record(module, inputs[0], inputs[0]._version)
        # Roots (layers fed by data that needs no gradient) are what the backward pass targets; every
        # other layer's output lies on a path from the loss to a root, so its hook sees its gradient.
        if not record.a.requires_grad:
            record.root_output = output
        output.register_hook(functools.partial(self._on_output_grad, record))
        self._records.append(record)

    def _on_output_grad(self, record: _Record, g: torch.Tensor) -> None:
        # Runs during the backward pass, so each layer's input can be let go as soon as its gradient
        # arrives, the way plain backward frees activations.
        rule = get_layer_rule(record.module)
        if record.a._version != record.version:  # the norms would be those of the changed tensor
            raise ValueError(
                f"the input of layer {self._names[id(record.module)]} was modified in place after the forward pass "
                "(an inplace activation, say ReLU(inplace=True)); book-keeping's norms would be wrong: make it "
                "out of place"
            )
        a = record.a.detach()
        strategy = self.strategies.get(record.module)
        # Poisson batches vary: a strategy picked on a small first batch may not fit a large one
        if strategy is None or strategy not in rule.strategies(record.module, a, g):
            strategy = self.strategies[record.module] = self._fastest(rule, record.module, a, g)
        record.state = rule.prepare(record.module, a, g, strategy)
        record.a = None

    def remove(self) -> None:
        """Detach the clipper's forward hooks; the model's backward passes are plain ones again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clip_backward(
        self, per_sample_losses: torch.Tensor, *, units: torch.Tensor | None = None, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Backward pass, per-unit clipping and summing; returns the per-unit gradient norms.

        Args:
            per_sample_losses: one loss per row, shape (B,).
            units: the unit of each row as an index 0..U-1, shape (B,) (e.g. the row's patient among the
                batch's patients); None: each row is its own unit (per-sample clipping). A unit's gradient is
                the sum of its rows' gradients, and that sum is clipped as one (user-level DP-SGD).
            groups: per-unit group codes passed to the clip policy, shape (U,), or None.
        """
        records, self._records = self._records, []
        try:
            return self._clip_backward(records, per_sample_losses, units, groups)
        finally:  # the root outputs' graph holds hooks that hold the records: break the cycle every step
            for r in records:
                r.root_output = r.a = r.state = None

    def _clip_backward(self, records: list[_Record], per_sample_losses: torch.Tensor, units, groups) -> torch.Tensor:
        names = self._names
        seen = [id(r.module) for r in records]
        ran = set(seen)
        if len(ran) != len(seen):
            raise ValueError(
                "a layer ran twice in one forward pass (shared weights); use training.clipping_backend 'hooks'"
            )
        params = [p for m in self._layers for _, p in trainable_parameters(m)]
        for p in params:
            p.grad = None
        n = per_sample_losses.shape[0]
        if n == 0:  # an empty Poisson batch: the clipped sum is zero, the optimizer adds the noise
            for p in params:
                p.grad = torch.zeros_like(p)
            return per_sample_losses.new_zeros(0)
        # Opacus refuses a step where a trainable layer recorded nothing; a silent zero gradient would
        # hide an eval-mode layer (or a model called under no_grad) behind pure noise.
        idle = [names[id(m)] for m in self._layers if id(m) not in ran]
        if idle:
            raise ValueError(
                f"trainable layers {idle} did not run in training mode with gradients in this forward pass; "
                "call model.train() and keep the forward pass outside torch.no_grad()"
            )
        roots = [r.root_output for r in records if r.root_output is not None]
        if roots:
            torch.autograd.grad(per_sample_losses.sum(), roots)
        missed = [r for r in records if r.state is None]
        if missed:
            raise ValueError(
                "book-keeping saw no gradient for the output of "
                f"{', '.join(names[id(r.module)] for r in missed)} (unused, or fed by inputs that "
                "require grad); use training.clipping_backend 'hooks'"
            )
        if units is None:
            norms_sq = per_sample_losses.new_zeros(n)
            for r in records:
                norms_sq = norms_sq + get_layer_rule(r.module).norms_sq(r.state)
        else:
            norms_sq = self._unit_norms_sq(records, units, per_sample_losses)
        norms = norms_sq.sqrt()
        unit_clip, n_bad = safe_factors(self.clip_policy, norms, max_grad_norm=self.max_grad_norm, groups=groups)
        clip = unit_clip if units is None else unit_clip[units]
        if n_bad:
            self.nonfinite_units += n_bad
            bad_rows = ~torch.isfinite(norms if units is None else norms[units])
            for r in records:  # 0 · NaN is NaN: the dropped rows' stored a and g must be zeros too
                r.state = _zero_rows(r.state, bad_rows)
        for r in records:
            for name, grad in get_layer_rule(r.module).clipped_grads(r.module, r.state, clip).items():
                getattr(r.module, name).grad = grad
            r.state = None
        for p in params:  # a layer whose output did not reach the loss contributes nothing
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return norms

    @staticmethod
    def _unit_norms_sq(records, units: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """‖Σ_{i∈u} grad_i‖² per unit, exactly: per-sample gradients summed per unit, then squared.

        Used for units of several rows (patients); per-row units keep the cheaper ghost norms.
        """
        n_units = int(units.max()) + 1 if units.numel() else 0
        out = losses.new_zeros(n_units, dtype=torch.float64)
        for r in records:
            for per_sample in get_layer_rule(r.module).per_sample_grads(r.module, r.state):
                flat = per_sample.reshape(per_sample.shape[0], -1).double()
                summed = flat.new_zeros(n_units, flat.shape[1]).index_add_(0, units, flat)
                out = out + summed.pow(2).sum(dim=1)
        return out.to(losses.dtype)


def _zero_rows(state, rows: torch.Tensor):
    """A copy of a layer state with the given rows (batch dimension first) set to zero in every tensor."""
    if state is None:
        return None
    n = rows.shape[0]
    for name, value in list(vars(state).items()):
        if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == n:
            setattr(state, name, torch.where(rows.view(-1, *([1] * (value.dim() - 1))), torch.zeros_like(value), value))
    return state


@dataclass(eq=False)
class _Record:
    module: nn.Module
    a: torch.Tensor | None
    version: int = 0
    root_output: torch.Tensor | None = None
    state: object = None
