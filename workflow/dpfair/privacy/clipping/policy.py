"""Clip policies: how per-unit gradient norms become clip factors, separate from how the norms are computed.

The clipping backend (``dpfair.privacy.clipping.bookkeeping``) computes each unit's gradient norm (a unit is a row, or all
rows of one patient) and the weighted sum ``sum_u c_u * grad_u``; a policy only chooses the factors
``c_u``. Its one obligation is the sensitivity: every ``c_u * ||grad_u||`` must stay at or below C, so
that adding or removing a unit moves the sum by at most C and σ·C noise gives the accounted guarantee.
:func:`check_sensitivity` verifies that on every step; a policy that breaks it fails the run.

A policy sees, per unit, its norm and (where the mechanism supplies them) its group label: that is the
seam group-adaptive clipping (DP-SGD-F, Xu et al. 2021; global adaptive clipping) builds on, by
registering a policy and a mechanism that passes groups.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from typing_extensions import override

from dpfair.errors import PrivacyError

#: Opacus's clip factor is C / (norm + 1e-6), capped at 1; the same constant keeps the paths equal.
CLIP_EPSILON = 1e-6


class ClipPolicy:
    """Per-unit clip factors from per-unit gradient norms.

    Subclasses implement :meth:`factors`; the clipper zeroes units whose norm is not finite before
    calling it (their factor is 0 whatever the policy says) and counts them.
    """

    name = "base"

    def factors(self, norms: torch.Tensor, *, max_grad_norm: float, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Clip factors ``c_u`` (shape of ``norms``), with ``c_u * norms[u] <= max_grad_norm``.

        Args:
            norms: per-unit gradient norms, finite and ≥ 0, shape (U,).
            max_grad_norm: the clipping bound C the noise is calibrated to.
            groups: per-unit group codes (shape (U,)) where the mechanism passes them, else None.
        """
        raise NotImplementedError


_POLICIES: dict[str, Callable[[], ClipPolicy]] = {}
#: Policies a benchmark may name in ``privacy.clip_policy`` (built with no arguments by the mechanism).
_CONFIGURABLE: set[str] = set()


def register_clip_policy(name: str, *, force: bool = False, configurable: bool = False):
    """Register a :class:`ClipPolicy` subclass (or factory) under ``name``.

    Args:
        name: the policy's name.
        force: replace a policy already registered as ``name``.
        configurable: a benchmark may name it in ``privacy.clip_policy`` (:func:`configurable_clip_policies`).
            Off by default: a policy that needs a mechanism's state (the group-adaptive ones, built with the
            groups and the noise by their mechanism) is chosen by the method, not by the config.
    """

    def decorator(cls):
        if name in _POLICIES and not force:
            raise ValueError(f"clip policy {name!r} is already registered")
        _POLICIES[name] = cls
        if configurable:
            _CONFIGURABLE.add(name)
        else:
            _CONFIGURABLE.discard(name)
        return cls

    return decorator


def get_clip_policy(name: str) -> ClipPolicy:
    """A new instance of the policy registered as ``name``.

    Example:
        >>> get_clip_policy("flat").factors(torch.tensor([0.5, 2.0]), max_grad_norm=1.0)
        tensor([1.0000, 0.5000])
    """
    if name not in _POLICIES:
        raise ValueError(f"unknown clip policy {name!r}; known: {sorted(_POLICIES)}")
    return _POLICIES[name]()


def available_clip_policies() -> list[str]:
    """Every registered policy's name, the mechanisms' own included."""
    return sorted(_POLICIES)


def configurable_clip_policies() -> list[str]:
    """The policies a benchmark may name in ``privacy.clip_policy`` (registered ``configurable=True``).

    Example:
        >>> configurable_clip_policies()
        ['flat', 'normalized']
    """
    return sorted(_CONFIGURABLE)


@register_clip_policy("flat", configurable=True)
class FlatClip(ClipPolicy):
    """Opacus's flat clipping: ``c_u = min(1, C / (||g_u|| + 1e-6))`` (Abadi et al. 2016)."""

    name = "flat"

    @override
    def factors(self, norms, *, max_grad_norm, groups=None):
        return (max_grad_norm / (norms + CLIP_EPSILON)).clamp(max=1.0)


def safe_factors(
    policy: ClipPolicy, norms: torch.Tensor, *, max_grad_norm: float, groups: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """The policy's factors with non-finite norms given factor 0; returns (factors, how many were dropped).

    A NaN or infinite per-unit gradient (a corrupt row, an overflow) would otherwise turn the whole
    update, and so the model, into NaN; dropping the unit keeps the sensitivity bound (its contribution
    is zero) and the count goes to the run record.
    """
    finite = torch.isfinite(norms)
    n_bad = int((~finite).sum())
    safe_norms = torch.where(finite, norms, torch.zeros_like(norms))
    factors = policy.factors(safe_norms, max_grad_norm=max_grad_norm, groups=groups)
    factors = torch.where(finite, factors, torch.zeros_like(factors))
    check_sensitivity(factors, safe_norms, max_grad_norm=max_grad_norm)
    return factors, n_bad


def check_sensitivity(factors: torch.Tensor, norms: torch.Tensor, *, max_grad_norm: float) -> None:
    """Raise :class:`PrivacyError` if any clipped unit could exceed C (a policy bug is a privacy bug)."""
    if factors.numel() == 0:
        return
    if bool((factors < 0).any()) or not bool(torch.isfinite(factors).all()):
        raise PrivacyError("clip policy returned negative or non-finite clip factors")
    # float32 rounding of C/(n + 1e-6) * n stays below C; allow that rounding only
    if bool((factors.double() * norms.double() > max_grad_norm * (1 + 1e-5)).any()):
        worst = float((factors.double() * norms.double()).max())
        raise PrivacyError(f"clip policy let a unit's clipped gradient reach norm {worst:.6g} > C = {max_grad_norm:g}")


#: Bu et al.'s stability constant γ of automatic clipping (their default 0.01).
NORMALIZED_GAMMA = 0.01


@register_clip_policy("normalized", configurable=True)
class NormalizedClip(ClipPolicy):
    """Normalised ("automatic") clipping: ``c_u = C / (||g_u|| + γ)``.

    From Bu et al., "Automatic Clipping: Differentially Private Deep Learning Made Easier and Stronger",
    NeurIPS 2023. Every unit's clipped gradient has norm ``C·||g||/(||g|| + γ) < C``, so the sensitivity
    stays below C whatever the norms; unlike flat clipping, small gradients are scaled up too, which
    removes the dependence of the update on C up to the learning rate.
    """

    name = "normalized"

    def __init__(self, gamma: float = NORMALIZED_GAMMA):
        if not gamma > 0:
            raise ValueError(f"normalized clipping needs gamma > 0, got {gamma!r}")
        self.gamma = float(gamma)

    @override
    def factors(self, norms, *, max_grad_norm, groups=None):
        return max_grad_norm / (norms + self.gamma)
