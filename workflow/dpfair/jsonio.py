"""JSON files other tools can read: ``inf`` as the string "inf" (what ε = ∞ is called everywhere), NaN as null."""

from __future__ import annotations

import json
import math
from pathlib import Path


def jsonable(value):
    """Plain-JSON copy of ``value`` (numpy scalars unwrapped, non-finite floats spelled out).

    Example:
        >>> import numpy as np
        >>> jsonable({"e": float("inf"), "c": float("nan"), "n": np.int64(3), "l": [np.float32(0.5)]})
        {'e': 'inf', 'c': None, 'n': 3, 'l': [0.5]}
    """
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(path: str | Path, value) -> None:
    """Write :func:`jsonable` of ``value`` to ``path``, indented; anything still not plain JSON raises."""
    Path(path).write_text(json.dumps(jsonable(value), indent=2, allow_nan=False))
