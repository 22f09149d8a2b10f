"""The report's view of the summary tables: run keys with a ``method``, optional tables, run cards, anchors.

Tables written before mechanisms had names carry no ``method`` column: every run in them is DP-SGD
(``dpsgd``), so :func:`with_method` adds that. Cards are keyed from their own fields or their run
record, not from the run folder's depth, which gains a ``method`` level with the mechanisms.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from dpfair.tables.summary import read_summary

#: The method of runs recorded before the ``method`` column existed (the only mechanism then).
DEFAULT_METHOD = "dpsgd"
RUN_KEYS = ["dataset", "model", "method", "epsilon", "seed"]
CELL_KEYS = ["dataset", "model", "method"]


def with_method(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a ``method`` column right after ``model`` (``dpsgd`` where absent or empty).

    Example:
        >>> with_method(pd.DataFrame({"dataset": ["d"], "model": ["m"], "epsilon": [1.0]})).columns.tolist()
        ['dataset', 'model', 'method', 'epsilon']
    """
    table = table.copy()
    if "method" not in table.columns:
        table.insert(table.columns.get_loc("model") + 1 if "model" in table.columns else 0, "method", DEFAULT_METHOD)
    table["method"] = table["method"].fillna(DEFAULT_METHOD).astype(str).replace("", DEFAULT_METHOD)
    return table


def read_optional(path: str | Path | None) -> pd.DataFrame | None:
    """A summary table with its ``method`` column, or None when no path was given or the file is absent."""
    if path is None or not Path(path).exists():
        return None
    table = read_summary(path)
    return with_method(table) if "model" in table.columns else table


def slug(*parts) -> str:
    """An HTML id from key parts (ε = ∞ reads ``inf``).

    Example:
        >>> slug("gc", "support2", "mlp", "dpsgd", "age_group", "auroc", 10.0)
        'gc-support2-mlp-dpsgd-age_group-auroc-10'
        >>> slug("u", "d", float("inf"), "a:b")
        'u-d-inf-a-b'
    """

    def text(p) -> str:
        if isinstance(p, float):
            return "inf" if math.isinf(p) else f"{p:g}"
        return str(p)

    return re.sub(r"[^A-Za-z0-9_]+", "-", "-".join(text(p) for p in parts)).strip("-")


def cell_label(model: str, method: str, *, methods: int) -> str:
    """How a (model, method) series is named in figures: the model alone while a dataset has one method."""
    return model if methods <= 1 else f"{model} · {method}"


def _run_keys_from_path(path: Path) -> dict:
    """Keys from ``…/runs/<dataset>/<model>[/<method>]/eps-<ε>/seed-<s>/<file>`` (the last resort)."""
    parts = path.parts
    at = next((i for i, p in enumerate(parts) if p.startswith("eps-")), None)
    if at is None or at + 1 >= len(parts) or "runs" not in parts[:at]:
        return {}
    above = parts[parts.index("runs") + 1 : at]
    keys = {"epsilon": parts[at][4:], "seed": parts[at + 1].removeprefix("seed-")}
    keys.update(zip(("dataset", "model", "method"), above))
    return keys


def read_cards(paths: Iterable[str | Path]) -> list[dict]:
    """Every privacy card with its run's keys (dataset, model, method, epsilon as float, seed as int).

    Keys come from the card itself, else its run record (``run.json`` beside it), else the folder names.
    """
    cards = []
    for path in map(Path, paths):
        card = json.loads(path.read_text())
        record_path = path.with_name("run.json")
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        from_path = _run_keys_from_path(path.resolve()) or _run_keys_from_path(path)
        keys = {}
        for key in ("dataset", "model", "method", "seed"):
            keys[key] = card.get(key, record.get(key, from_path.get(key)))
        eps = card.get("target_epsilon", record.get("epsilon", from_path.get("epsilon")))
        keys["epsilon"] = float(eps) if eps is not None else math.nan
        keys["method"] = keys["method"] or DEFAULT_METHOD
        keys["seed"] = int(keys["seed"]) if keys["seed"] is not None else None
        cards.append({**card, **keys, "_record": record})
    return cards


def epsilon_order(values: Iterable[float]) -> list[float]:
    """Distinct ε values in ascending order with ∞ last."""
    return sorted({float(v) for v in values})
