"""Book-keeping rule for ``nn.Conv2d``: grouped, ghost or instantiated per-sample gradients, timed per layer."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import override

from dpfair.errors import ConfigError
from dpfair.privacy.clipping.rules.base import LayerRule, register_layer_rule
from dpfair.privacy.clipping.rules.linear import LinearRule, MatmulState, ghost_norms_sq


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


STRATEGIES = ("grouped", "ghost", "instantiate")


@register_layer_rule(nn.Conv2d)
class Conv2dRule(LayerRule):
    """2-D convolutions (groups = 1, zero padding), by one of three exact strategies.

    - ``grouped``: per-sample weight gradients from one grouped convolution backward (batch as groups);
      fastest on the CPU for the narrow early layers.
    - ``ghost``: ghost norms from the patch Gram matrices (cheap when few output positions T remain),
      clipped sum from the convolution's own weight gradient with each sample's ``g`` scaled.
    - ``instantiate``: per-sample gradients as a batched product of patches and ``g``.
    """

    #: Tests set this to check every strategy against Opacus; None lets the clipper time them. The timed pick
    #: depends on the machine's load, and the strategies sum in different orders, so two runs of one setting
    #: can differ in the last float bits; DPFAIR_CONV_STRATEGY=grouped|ghost|instantiate pins it (bit-identical
    #: reruns, e.g. to diff the summary tables of two versions).
    force_strategy: str | None = os.environ.get("DPFAIR_CONV_STRATEGY") or None
    #: Candidates whose flop or memory estimate is this many times the smallest are not even timed.
    PRUNE_FACTOR = 4.0
    MAX_ELEMENTS = 2**28  # 1 GiB of float32 for one layer's per-sample work

    @override
    def supports(self, module: nn.Conv2d) -> bool:
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)

    @override
    def strategies(self, module, a, g):
        if self.force_strategy:
            if self.force_strategy not in STRATEGIES:
                raise ConfigError(
                    f"DPFAIR_CONV_STRATEGY = {self.force_strategy!r} is not a conv strategy; allowed: {list(STRATEGIES)}"
                )
            return [self.force_strategy]
        b, t = g.shape[0], g.shape[2] * g.shape[3]
        p = (a.shape[2] + 2 * module.padding[0]) * (a.shape[3] + 2 * module.padding[1])  # padded pixels
        d = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        o = module.out_channels
        cost = {  # (flops, elements held) per strategy
            "ghost": (b * (p * p * module.in_channels + t * t * o), b * (p * p + 2 * t * t))
            if module.dilation == (1, 1)
            else (b * t * t * (d + o), b * (t * d + 2 * t * t)),  # via patches
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

    @override
    def prepare(self, module, a, g, strategy="ghost"):
        b = a.shape[0]
        bias = g.sum(dim=(2, 3)) if module.bias is not None and module.bias.requires_grad else None
        if not module.weight.requires_grad:
            return MatmulState(None, None, None, 0, bias)
        if strategy == "grouped":
            per_sample = torch.nn.grad.conv2d_weight(
                a.reshape(1, -1, *a.shape[2:]),
                (b * module.out_channels, *module.weight.shape[1:]),
                g.reshape(1, -1, *g.shape[2:]),
                stride=module.stride,
                padding=module.padding,
                dilation=module.dilation,
                groups=b,
            ).view(b, module.out_channels, -1)
            return MatmulState(None, None, per_sample, per_sample.pow(2).sum(dim=(1, 2)), bias)
        g_rows = g.flatten(2).transpose(1, 2)
        if strategy == "ghost":
            aa = _patch_gram(module, a.double())
            g64 = g_rows.double()
            gg = torch.bmm(g64, g64.transpose(1, 2))
            return MatmulState(None, None, None, ghost_norms_sq(aa, gg, a.dtype), bias, a_raw=a, g_raw=g)
        a_rows = _patches(module, a)
        per_sample = torch.bmm(g_rows.transpose(1, 2), a_rows)
        return MatmulState(None, None, per_sample, per_sample.pow(2).sum(dim=(1, 2)), bias)

    @override
    def norms_sq(self, state):
        return LinearRule.norms_sq(self, state)

    @override
    def clipped_grads(self, module, state, clip):
        grads = {}
        if module.weight.requires_grad:
            if state.per_sample is not None:
                grads["weight"] = torch.einsum("b,bod->od", clip, state.per_sample).reshape(module.weight.shape)
            else:
                grads["weight"] = torch.nn.grad.conv2d_weight(
                    state.a_raw,
                    module.weight.shape,
                    state.g_raw * clip.view(-1, 1, 1, 1),
                    stride=module.stride,
                    padding=module.padding,
                    dilation=module.dilation,
                )
        if state.bias_grads is not None:
            grads["bias"] = clip @ state.bias_grads
        return grads

    @override
    def per_sample_grads(self, module, state):
        out = []
        if module.weight.requires_grad:
            per_sample = state.per_sample
            if per_sample is None:  # ghost kept only a and g: one grouped convolution gives them
                b = state.a_raw.shape[0]
                per_sample = torch.nn.grad.conv2d_weight(
                    state.a_raw.reshape(1, -1, *state.a_raw.shape[2:]),
                    (b * module.out_channels, *module.weight.shape[1:]),
                    state.g_raw.reshape(1, -1, *state.g_raw.shape[2:]),
                    stride=module.stride,
                    padding=module.padding,
                    dilation=module.dilation,
                    groups=b,
                ).view(b, module.out_channels, -1)
            out.append(per_sample)
        if state.bias_grads is not None:
            out.append(state.bias_grads)
        return out
