"""The per-layer rule contract of the book-keeping clipper and its registry (one file per layer kind beside it).

A rule turns a layer's input activation ``a`` and output gradient ``g`` into per-sample squared norms
and the clipped gradient sum, as Opacus's ``grad_sample/`` holds one file per layer kind.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


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
        >>> original = type(get_layer_rule(nn.Linear(2, 1)))
        >>> @register_layer_rule(nn.Linear)
        ... class MyLinearRule(LayerRule):
        ...     pass
        >>> type(get_layer_rule(nn.Linear(2, 1))).__name__
        'MyLinearRule'
        >>> _ = register_layer_rule(nn.Linear)(original)  # put the real one back
    """

    def decorator(cls: type) -> type:
        for module_type in module_types:
            _RULES[module_type] = cls()
        return cls

    return decorator


def get_layer_rule(module: nn.Module) -> LayerRule | None:
    """The rule for ``module``'s exact type, or None (subclasses may change ``forward``)."""
    return _RULES.get(type(module))


def trainable_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The module's own (not its children's) parameters that take gradients, by name."""
    return [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]


def unsupported_layers(model: nn.Module) -> list[str]:
    """Modules with trainable parameters book-keeping cannot clip exactly (empty: supported).

    That is: no rule for the module's type (or the rule refuses its settings), parameters other than
    ``weight``/``bias`` (weight norm's ``weight_g``/``weight_v``, say), or a parameter shared with another
    module (tied weights: each module's share would be clipped and written separately).
    """
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        for _, p in trainable_parameters(module):
            owners.setdefault(id(p), []).append(name or "<root>")
    out = []
    for name, module in model.named_modules():
        trainable = trainable_parameters(module)
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
