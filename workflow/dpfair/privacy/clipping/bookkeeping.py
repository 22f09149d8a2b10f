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

Layers are handled by rules registered per module type (``register_layer_rule`` / ``get_layer_rule``).
A model with a trainable layer no rule covers is refused with the layer named, and ``auto`` mode then
uses Opacus's hooks.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dpfair.privacy.clipping.policy import CLIP_EPSILON, ClipPolicy, FlatClip, safe_factors  # noqa: F401 (re-export)


class LayerRule:
    """Per-sample norms and clipped sums for one module type, from its input ``a`` and output grad ``g``."""

    def supports(self, module: nn.Module) -> bool:
        """Whether this module's settings are ones the rule handles exactly."""
        return True

    def strategies(self, module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> list[str]:
        """Exact ways to do this layer worth timing; the clipper keeps the fastest (one: no timing)."""
        return ["default"]

    def prepare(self, module: nn.Module, a: torch.Tensor, g: torch.Tensor, strategy: str = "default") -> object:
        """Work done once ``g`` is known; returns the state ``norms_sq`` and ``clipped_grads`` use."""
        raise NotImplementedError

    def norms_sq(self, state) -> torch.Tensor:
        """Per-sample squared norm of all this layer's parameter gradients, shape (B,)."""
        raise NotImplementedError

    def clipped_grads(self, module: nn.Module, state, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        """``sum_i clip_i * grad_i`` for each trainable parameter, by parameter name."""
        raise NotImplementedError

    def per_sample_grads(self, module: nn.Module, state) -> list[torch.Tensor]:
        """Each trainable parameter's per-sample gradients, shape (B, ...): what per-unit norms sum per unit."""
        raise NotImplementedError


_RULES: dict[type, LayerRule] = {}


def register_layer_rule(*module_types: type) -> Callable[[type], type]:
    """Register a ``LayerRule`` subclass for the given module types.

    Example:
        >>> @register_layer_rule(nn.Linear)
        ... class MyLinearRule(LayerRule):
        ...     pass
        >>> type(get_layer_rule(nn.Linear(2, 1))).__name__
        'MyLinearRule'
        >>> _ = register_layer_rule(nn.Linear)(LinearRule)  # put the real one back
    """

    def decorator(cls: type) -> type:
        for module_type in module_types:
            _RULES[module_type] = cls()
        return cls

    return decorator


def get_layer_rule(module: nn.Module) -> LayerRule | None:
    """The rule for ``module``'s exact type, or None (subclasses may change ``forward``)."""
    return _RULES.get(type(module))


def _trainable(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]


def unsupported_layers(model: nn.Module) -> list[str]:
    """Modules with trainable parameters book-keeping cannot clip exactly (empty: supported).

    That is: no rule for the module's type (or the rule refuses its settings), parameters other than
    ``weight``/``bias`` (weight norm's ``weight_g``/``weight_v``, say), or a parameter shared with another
    module (tied weights: each module's share would be clipped and written separately).
    """
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for _, p in _trainable(module):
            owners.setdefault(id(p), []).append(name or "<root>")
    out = []
    for name, module in model.named_modules():
        trainable = _trainable(module)
        if not trainable:
            continue
        label = f"{name or '<root>'} ({type(module).__name__})"
        rule = get_layer_rule(module)
        if rule is None or not rule.supports(module):
            out.append(label)
        elif {n for n, _ in trainable} - {"weight", "bias"}:
            out.append(f"{label}: parameters {sorted({n for n, _ in trainable} - {'weight', 'bias'})}")
        elif any(len(owners[id(p)]) > 1 for _, p in trainable):
            shared = next(owners[id(p)] for _, p in trainable if len(owners[id(p)]) > 1)
            out.append(f"{label}: a parameter shared by {', '.join(shared)}")
    return out


def _ghost_norms_sq(aa: torch.Tensor, gg: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Σ_{t,t'} aa·gg per sample from float64 Gram matrices, clamped at 0.

    The terms of a ghost norm can cancel (positions whose gradients point opposite ways); in float32 that
    can make a norm come out too small, which would let that sample's clipped gradient exceed C.
    """
    return (aa * gg).flatten(1).sum(dim=1).clamp(min=0).to(dtype)


def _ghost_or_instantiate(a_rows: torch.Tensor, g_rows: torch.Tensor) -> tuple[bool, torch.Tensor]:
    """Per-sample squared norm of ``sum_t g_t a_t^T`` for a (B, T, D) and g (B, T, O).

    One position (T = 1): ‖g‖²·‖a‖², exact. Otherwise ghost norm costs about B·T²·(D + O) flops and
    instantiation B·T·D·O; take the cheaper (mixed ghost clipping). Returns (instantiated, norms_sq or
    per-sample gradients of shape (B, O, D)).
    """
    _, t, d = a_rows.shape
    o = g_rows.shape[-1]
    if t == 1:
        return False, a_rows.pow(2).sum(dim=(1, 2)) * g_rows.pow(2).sum(dim=(1, 2))
    if t * (d + o) < d * o:
        a64, g64 = a_rows.double(), g_rows.double()
        aa = torch.bmm(a64, a64.transpose(1, 2))
        gg = torch.bmm(g64, g64.transpose(1, 2))
        return False, _ghost_norms_sq(aa, gg, a_rows.dtype)
    return True, torch.bmm(g_rows.transpose(1, 2), a_rows)


@dataclass
class _MatmulState:
    a_rows: torch.Tensor  # (B, T, D)
    g_rows: torch.Tensor  # (B, T, O)
    per_sample: torch.Tensor | None  # (B, O, D) when instantiated
    weight_norms_sq: torch.Tensor
    bias_grads: torch.Tensor | None  # (B, O)
    a_raw: torch.Tensor | None = None
    g_raw: torch.Tensor | None = None


@register_layer_rule(nn.Linear)
class LinearRule(LayerRule):
    def prepare(self, module, a, g, strategy="default"):
        b = a.shape[0]
        a_rows, g_rows = a.reshape(b, -1, a.shape[-1]), g.reshape(b, -1, g.shape[-1])
        bias = g_rows.sum(dim=1) if module.bias is not None and module.bias.requires_grad else None
        if not module.weight.requires_grad:
            return _MatmulState(None, None, None, 0, bias)
        instantiated, value = _ghost_or_instantiate(a_rows, g_rows)
        per_sample = value if instantiated else None
        weight_sq = value.pow(2).sum(dim=(1, 2)) if instantiated else value
        return _MatmulState(a_rows, g_rows, per_sample, weight_sq, bias)

    def norms_sq(self, state):
        out = state.weight_norms_sq
        return out + state.bias_grads.pow(2).sum(dim=1) if state.bias_grads is not None else out

    def clipped_grads(self, module, state, clip):
        grads = {}
        if module.weight.requires_grad:
            if state.per_sample is not None:
                grads["weight"] = torch.einsum("b,bod->od", clip, state.per_sample)
            else:
                scaled = state.g_rows * clip[:, None, None]
                grads["weight"] = scaled.flatten(0, 1).T @ state.a_rows.flatten(0, 1)
        if state.bias_grads is not None:
            grads["bias"] = clip @ state.bias_grads
        return grads

    def per_sample_grads(self, module, state):
        out = []
        if module.weight.requires_grad:
            out.append(state.per_sample if state.per_sample is not None
                       else torch.bmm(state.g_rows.transpose(1, 2), state.a_rows))
        if state.bias_grads is not None:
            out.append(state.bias_grads)
        return out


def _patches(module: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """im2col as (B, T, D) with D = C_in·kh·kw; a strided view copied once (``F.unfold`` is slower on CPU)."""
    (ph, pw), (sh, sw), (dh, dw) = module.padding, module.stride, module.dilation
    kh, kw = module.kernel_size
    if (dh, dw) != (1, 1):
        return F.unfold(a, module.kernel_size, module.dilation, module.padding, module.stride).transpose(1, 2)
    padded = F.pad(a, (pw, pw, ph, ph)) if ph or pw else a
    windows = padded.unfold(2, kh, sh).unfold(3, kw, sw)  # (B, C, H', W', kh, kw)
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(a.shape[0], -1, a.shape[1] * kh * kw)


def _patch_gram(module: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    """The (B, T, T) Gram matrix of a's patches, ⟨patch_t, patch_t'⟩, without building the patches.

    A patch inner product is a sum over the kernel offsets (i, j) of channel inner products of two pixels,
    so one pixel Gram matrix of the padded input, summed along kh·kw shifted strided slices, gives all of
    them; this reads the input once instead of copying it kh·kw times.
    """
    (ph, pw), (sh, sw) = module.padding, module.stride
    kh, kw = module.kernel_size
    if module.dilation != (1, 1):
        rows = _patches(module, a)
        return torch.bmm(rows, rows.transpose(1, 2))
    padded = F.pad(a, (pw, pw, ph, ph)) if ph or pw else a
    b, c, hp, wp = padded.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    pixels = padded.reshape(b, c, hp * wp)
    gram = torch.bmm(pixels.transpose(1, 2), pixels).view(b, hp, wp, hp, wp)
    out = None
    for i in range(kh):
        for j in range(kw):
            rows, cols = slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw)
            term = gram[:, rows, cols, rows, cols]
            out = term.clone() if out is None else out.add_(term)
    return out.reshape(b, ho * wo, ho * wo)


@register_layer_rule(nn.Conv2d)
class Conv2dRule(LayerRule):
    """2-D convolutions (groups = 1, zero padding), by one of three exact strategies:

    - ``grouped``: per-sample weight gradients from one grouped convolution backward (batch as groups);
      fastest on the CPU for the narrow early layers.
    - ``ghost``: ghost norms from the patch Gram matrices (cheap when few output positions T remain),
      clipped sum from the convolution's own weight gradient with each sample's ``g`` scaled.
    - ``instantiate``: per-sample gradients as a batched product of patches and ``g``.
    """

    #: Tests set this to check every strategy against Opacus; None lets the clipper time them.
    force_strategy: str | None = None
    #: Candidates whose flop or memory estimate is this many times the smallest are not even timed.
    PRUNE_FACTOR = 4.0
    MAX_ELEMENTS = 2**28  # 1 GiB of float32 for one layer's per-sample work

    def supports(self, module: nn.Conv2d) -> bool:
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)

    def strategies(self, module, a, g):
        if self.force_strategy:
            return [self.force_strategy]
        b, t = g.shape[0], g.shape[2] * g.shape[3]
        p = (a.shape[2] + 2 * module.padding[0]) * (a.shape[3] + 2 * module.padding[1])  # padded pixels
        d = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        o = module.out_channels
        cost = {  # (flops, elements held) per strategy
            "ghost": (b * (p * p * module.in_channels + t * t * o), b * (p * p + 2 * t * t))
            if module.dilation == (1, 1) else (b * t * t * (d + o), b * (t * d + 2 * t * t)),  # via patches
            "instantiate": (b * t * d * o, b * (t * d + o * d)),
            "grouped": (b * t * d * o, b * o * d),
        }
        fits = {k: v for k, v in cost.items() if v[1] <= self.MAX_ELEMENTS} or {
            min(cost, key=lambda k: cost[k][1]): None
        }
        if len(fits) == 1:
            return list(fits)
        least = min(cost[k][0] for k in fits)
        return [k for k in fits if cost[k][0] <= self.PRUNE_FACTOR * least]

    def prepare(self, module, a, g, strategy="ghost"):
        b = a.shape[0]
        bias = g.sum(dim=(2, 3)) if module.bias is not None and module.bias.requires_grad else None
        if not module.weight.requires_grad:
            return _MatmulState(None, None, None, 0, bias)
        if strategy == "grouped":
            per_sample = torch.nn.grad.conv2d_weight(
                a.reshape(1, -1, *a.shape[2:]), (b * module.out_channels, *module.weight.shape[1:]),
                g.reshape(1, -1, *g.shape[2:]), stride=module.stride, padding=module.padding,
                dilation=module.dilation, groups=b,
            ).view(b, module.out_channels, -1)
            return _MatmulState(None, None, per_sample, per_sample.pow(2).sum(dim=(1, 2)), bias)
        g_rows = g.flatten(2).transpose(1, 2)
        if strategy == "ghost":
            aa = _patch_gram(module, a.double())
            g64 = g_rows.double()
            gg = torch.bmm(g64, g64.transpose(1, 2))
            return _MatmulState(None, None, None, _ghost_norms_sq(aa, gg, a.dtype), bias, a_raw=a, g_raw=g)
        a_rows = _patches(module, a)
        per_sample = torch.bmm(g_rows.transpose(1, 2), a_rows)
        return _MatmulState(None, None, per_sample, per_sample.pow(2).sum(dim=(1, 2)), bias)

    def norms_sq(self, state):
        return LinearRule.norms_sq(self, state)

    def clipped_grads(self, module, state, clip):
        grads = {}
        if module.weight.requires_grad:
            if state.per_sample is not None:
                grads["weight"] = torch.einsum("b,bod->od", clip, state.per_sample).reshape(module.weight.shape)
            else:
                grads["weight"] = torch.nn.grad.conv2d_weight(
                    state.a_raw, module.weight.shape, state.g_raw * clip.view(-1, 1, 1, 1),
                    stride=module.stride, padding=module.padding, dilation=module.dilation,
                )
        if state.bias_grads is not None:
            grads["bias"] = clip @ state.bias_grads
        return grads

    def per_sample_grads(self, module, state):
        out = []
        if module.weight.requires_grad:
            per_sample = state.per_sample
            if per_sample is None:  # ghost kept only a and g: one grouped convolution gives them
                b = state.a_raw.shape[0]
                per_sample = torch.nn.grad.conv2d_weight(
                    state.a_raw.reshape(1, -1, *state.a_raw.shape[2:]), (b * module.out_channels, *module.weight.shape[1:]),
                    state.g_raw.reshape(1, -1, *state.g_raw.shape[2:]), stride=module.stride, padding=module.padding,
                    dilation=module.dilation, groups=b,
                ).view(b, module.out_channels, -1)
            out.append(per_sample)
        if state.bias_grads is not None:
            out.append(state.bias_grads)
        return out


@dataclass
class _AffineState:
    weight: torch.Tensor | None  # (B, C) per-sample gradients
    bias: torch.Tensor | None


class _NormRule(LayerRule):
    """Normalisation layers: per-sample gradients are (B, C) sums, small enough to instantiate."""

    def norms_sq(self, state):
        return sum(t.pow(2).sum(dim=1) for t in (state.weight, state.bias) if t is not None)

    def clipped_grads(self, module, state, clip):
        grads = {}
        if state.weight is not None:
            grads["weight"] = (clip @ state.weight).view_as(module.weight)
        if state.bias is not None:
            grads["bias"] = (clip @ state.bias).view_as(module.bias)
        return grads

    def per_sample_grads(self, module, state):
        return [t for t in (state.weight, state.bias) if t is not None]


@register_layer_rule(nn.GroupNorm)
class GroupNormRule(_NormRule):
    def prepare(self, module, a, g, strategy="default"):
        b, c = a.shape[:2]
        g3 = g.reshape(b, c, -1)  # sums over one flattened axis run several times faster than over (H, W)
        weight = bias = None
        if module.weight is not None and module.weight.requires_grad:
            x_hat = F.group_norm(a, module.num_groups, eps=module.eps).reshape(b, c, -1)
            weight = (g3 * x_hat).sum(dim=2)
        if module.bias is not None and module.bias.requires_grad:
            bias = g3.sum(dim=2)
        return _AffineState(weight, bias)


@register_layer_rule(nn.LayerNorm)
class LayerNormRule(_NormRule):
    def prepare(self, module, a, g, strategy="default"):
        # per-sample sums run over the non-normalised middle dimensions (e.g. tokens), if any
        dims = tuple(range(1, a.dim() - len(module.normalized_shape)))

        def per_sample(t: torch.Tensor) -> torch.Tensor:
            return (t.sum(dim=dims) if dims else t).flatten(1)  # sum(dim=()) would sum everything

        weight = bias = None
        if module.weight is not None and module.weight.requires_grad:
            weight = per_sample(g * F.layer_norm(a, module.normalized_shape, eps=module.eps))
        if module.bias is not None and module.bias.requires_grad:
            bias = per_sample(g)
        return _AffineState(weight, bias)


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
        self._records: list["_Record"] = []
        self._layers = [m for m in model.modules() if _trainable(m)]
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

    def _on_output_grad(self, record: "_Record", g: torch.Tensor) -> None:
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
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clip_backward(self, per_sample_losses: torch.Tensor, *, units: torch.Tensor | None = None,
                      groups: torch.Tensor | None = None) -> torch.Tensor:
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

    def _clip_backward(self, records: list["_Record"], per_sample_losses: torch.Tensor, units, groups) -> torch.Tensor:
        names = self._names
        seen = [id(r.module) for r in records]
        ran = set(seen)
        if len(ran) != len(seen):
            raise ValueError("a layer ran twice in one forward pass (shared weights); use training.clipping_backend 'hooks'")
        params = [p for m in self._layers for _, p in _trainable(m)]
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
