"""Book-keeping rule for ``nn.Linear``: ghost norms or instantiated per-sample gradients, by flop count."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from typing_extensions import override

from dpfair.privacy.clipping.rules.base import LayerRule, register_layer_rule


def ghost_norms_sq(aa: torch.Tensor, gg: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Σ_{t,t'} aa·gg per sample from float64 Gram matrices, clamped at 0.

    The terms of a ghost norm can cancel (positions whose gradients point opposite ways); in float32 that
    can make a norm come out too small, which would let that sample's clipped gradient exceed C.
    """
    return (aa * gg).flatten(1).sum(dim=1).clamp(min=0).to(dtype)


def ghost_or_instantiate(a_rows: torch.Tensor, g_rows: torch.Tensor) -> tuple[bool, torch.Tensor]:
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
        return False, ghost_norms_sq(aa, gg, a_rows.dtype)
    return True, torch.bmm(g_rows.transpose(1, 2), a_rows)


@dataclass
class MatmulState:
    """What the Linear and Conv2d rules keep of one layer between ``prepare`` and the clipped sum.

    ``per_sample`` is set when the per-sample weight gradients were instantiated, else the rows of ``a``
    and ``g`` (or, for a convolution's ghost strategy, its raw ``a_raw`` and ``g_raw``) rebuild the
    clipped sum. ``weight_norms_sq`` is 0 and the rows None when the weight is frozen.
    """

    a_rows: torch.Tensor  # (B, T, D)
    g_rows: torch.Tensor  # (B, T, O)
    per_sample: torch.Tensor | None  # (B, O, D) when instantiated
    weight_norms_sq: torch.Tensor
    bias_grads: torch.Tensor | None  # (B, O)
    a_raw: torch.Tensor | None = None
    g_raw: torch.Tensor | None = None


@register_layer_rule(nn.Linear)
class LinearRule(LayerRule):
    """``nn.Linear`` over any leading dimensions (positions T): ghost norms or instantiated gradients, by flops."""

    @override
    def prepare(self, module, a, g, strategy="default"):
        b = a.shape[0]
        a_rows, g_rows = a.reshape(b, -1, a.shape[-1]), g.reshape(b, -1, g.shape[-1])
        bias = g_rows.sum(dim=1) if module.bias is not None and module.bias.requires_grad else None
        if not module.weight.requires_grad:
            return MatmulState(None, None, None, 0, bias)
        instantiated, value = ghost_or_instantiate(a_rows, g_rows)
        per_sample = value if instantiated else None
        weight_sq = value.pow(2).sum(dim=(1, 2)) if instantiated else value
        return MatmulState(a_rows, g_rows, per_sample, weight_sq, bias)

    @override
    def norms_sq(self, state):
        out = state.weight_norms_sq
        return out + state.bias_grads.pow(2).sum(dim=1) if state.bias_grads is not None else out

    @override
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

    @override
    def per_sample_grads(self, module, state):
        out = []
        if module.weight.requires_grad:
            out.append(
                state.per_sample
                if state.per_sample is not None
                else torch.bmm(state.g_rows.transpose(1, 2), state.a_rows)
            )
        if state.bias_grads is not None:
            out.append(state.bias_grads)
        return out
