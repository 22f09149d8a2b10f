"""Book-keeping rules for normalisation layers (``nn.GroupNorm``, ``nn.LayerNorm``): small (B, C) per-sample gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

from dpfair.privacy.clipping.rules.base import LayerRule, register_layer_rule


@dataclass
class AffineState:
    """A normalisation layer's per-sample ``weight`` and ``bias`` gradients, (B, C) each; None if absent or frozen."""

    weight: torch.Tensor | None  # (B, C) per-sample gradients
    bias: torch.Tensor | None


class _NormRule(LayerRule):
    """Normalisation layers: per-sample gradients are (B, C) sums, small enough to instantiate."""

    @override
    def norms_sq(self, state):
        return sum(t.pow(2).sum(dim=1) for t in (state.weight, state.bias) if t is not None)

    @override
    def clipped_grads(self, module, state, clip):
        grads = {}
        if state.weight is not None:
            grads["weight"] = (clip @ state.weight).view_as(module.weight)
        if state.bias is not None:
            grads["bias"] = (clip @ state.bias).view_as(module.bias)
        return grads

    @override
    def per_sample_grads(self, module, state):
        return [t for t in (state.weight, state.bias) if t is not None]


@register_layer_rule(nn.GroupNorm)
class GroupNormRule(_NormRule):
    """``nn.GroupNorm``: per-sample gradients are per-channel sums of ``g · x̂`` (weight) and ``g`` (bias)."""

    @override
    def prepare(self, module, a, g, strategy="default"):
        b, c = a.shape[:2]
        g3 = g.reshape(b, c, -1)  # sums over one flattened axis run several times faster than over (H, W)
        weight = bias = None
        if module.weight is not None and module.weight.requires_grad:
            x_hat = F.group_norm(a, module.num_groups, eps=module.eps).reshape(b, c, -1)
            weight = (g3 * x_hat).sum(dim=2)
        if module.bias is not None and module.bias.requires_grad:
            bias = g3.sum(dim=2)
        return AffineState(weight, bias)


@register_layer_rule(nn.LayerNorm)
class LayerNormRule(_NormRule):
    """``nn.LayerNorm``: per-sample ``g · x̂`` and ``g``, summed over the dimensions before the normalised shape."""

    @override
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
        return AffineState(weight, bias)
