"""The data card's rows that come from the prepared data rather than the card.

Test groups in their natural order with their events, the columns the module dropped, and why an
attribute's gaps are blank when they are.

Reads a prepared ``dataset.json`` (:func:`dpfair.data.prepare.prepare_dataset`'s metadata); metadata
written before ``group_positives`` and ``card.dropped`` existed still renders, without those parts.
"""

from __future__ import annotations

from dpfair.data.contract import group_sort_key

SPLITS = ("train", "val", "test")


def data_card(meta: dict) -> dict:
    """What the report's data card shows beyond the card's own fields.

    Returns:
        ``{"dropped": [...] or None, "groups": [{"attribute", "groups": [{"name", "n", "events"}], "note"}]}``:
        ``dropped`` is ``None`` where the metadata predates the field or the dataset is not tabular; an
        attribute's ``note`` says why its gaps cannot be estimated (one group only, or fewer than two
        test groups of at least ``min_group_size`` rows), else ``None``.

    Example:
        >>> meta = {"modality": "tabular", "card": {"dropped": ["pid"]}, "min_group_size": 30,
        ...         "group_sizes": {"age_group": {"test": {"80+": 40, "<40": 35}}},
        ...         "group_positives": {"age_group": {"test": {"80+": 12, "<40": 3}}}}
        >>> card = data_card(meta)
        >>> card["dropped"], [(g["name"], g["n"], g["events"]) for g in card["groups"][0]["groups"]]
        (['pid'], [('<40', 35, 3), ('80+', 40, 12)])
    """
    card = meta.get("card", {})
    dropped = card.get("dropped") if meta.get("modality", "tabular") == "tabular" else None
    min_group_size = meta.get("min_group_size")
    positives = meta.get("group_positives", {})
    groups = []
    for attribute, sizes in meta.get("group_sizes", {}).items():
        test = sizes.get("test", {})
        events = positives.get(attribute, {}).get("test", {})
        everywhere = set().union(*(sizes.get(s, {}) for s in SPLITS))
        rows = [
            {"name": g, "n": int(test[g]), "events": events.get(g)}
            for g in sorted(test, key=lambda v: group_sort_key(attribute, v))
        ]
        note = None
        if len(everywhere) == 1:
            note = (
                f"one group only ({next(iter(everywhere))}): no gap between groups can be estimated, so this "
                "attribute's gaps are blank"
            )
        elif min_group_size is not None and sum(r["n"] >= min_group_size for r in rows) < 2:
            note = (
                f"fewer than two groups have min_group_size = {min_group_size} test rows: no gap between groups "
                "can be estimated, so this attribute's gaps are blank"
            )
        groups.append({"attribute": attribute, "groups": rows, "note": note})
    return {"dropped": dropped, "groups": groups}
