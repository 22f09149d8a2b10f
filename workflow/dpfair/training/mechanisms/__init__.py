"""Privacy mechanisms as plugins: one file per mechanism, found by name through a registry.

The contract and the registry are in :mod:`dpfair.training.mechanisms.base`; each other module of this
package registers one mechanism. Adding one: a file ``<name>.py`` here with a :class:`Mechanism`
subclass decorated ``@register_mechanism("<name>")``, then list it in a benchmark's ``methods:``.
"""

from dpfair.training.mechanisms.base import (
    UNITS,
    Mechanism,
    TrainingData,
    available_mechanisms,
    get_mechanism,
    register_mechanism,
    require_bookkeeping,
    require_plain_recipe,
    run_delta,
    training_data,
)

__all__ = [
    "UNITS",
    "Mechanism",
    "TrainingData",
    "available_mechanisms",
    "get_mechanism",
    "register_mechanism",
    "require_bookkeeping",
    "require_plain_recipe",
    "run_delta",
    "training_data",
]
