"""Per-layer rules of the book-keeping clipper, one file per layer kind; importing the package registers them all.

Adding a layer kind: a file here with a :class:`LayerRule` subclass decorated ``@register_layer_rule(<module type>)``,
imported below.
"""

from dpfair.privacy.clipping.rules import conv, linear, norm  # noqa: F401  (registers the rules)
from dpfair.privacy.clipping.rules.base import (
    LayerRule,
    get_layer_rule,
    register_layer_rule,
    trainable_parameters,
    unsupported_layers,
)

__all__ = ["LayerRule", "get_layer_rule", "register_layer_rule", "trainable_parameters", "unsupported_layers"]
