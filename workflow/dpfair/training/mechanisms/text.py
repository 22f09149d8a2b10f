"""Card text shared by mechanisms: clipping backends, what a record-level guarantee means for patients."""

from __future__ import annotations

import math

#: How each clipping backend computes the norms (all give the same clipped sum).
CLIPPING_PATHS = {
    "bookkeeping": "dpfair book-keeping (one backward pass; equal to Opacus hooks, tested)",
    "hooks": "Opacus hooks",
    "functorch": "Opacus functorch",
    "ew": "Opacus expanded weights",
    "ghost": "Opacus ghost clipping",
}

COVERS_ROWS = (
    "the model's parameters with respect to one training row (adding or removing it); validation and test rows "
    "have no DP protection, and the released model depends on the validation rows wherever the card's "
    "released_outside_guarantee says so"
)


def patient_word(meta: dict) -> str:
    """What the dataset's ``patient_id`` denotes: ``patient`` unless its card names another unit (``lesion``, ...)."""
    return meta.get("card", {}).get("patient_unit") or "patient"


def record_unit_text(meta: dict) -> str:
    """How a record-level run's unit is enforced, in words, for this dataset."""
    k = int((meta.get("train_patients") or {}).get("max_rows", meta.get("max_records_per_patient", 1)))
    who = patient_word(meta)
    if meta.get("train_patients") or int(meta.get("max_records_per_patient", 1)) > 1:
        if k > 1:
            return (
                f"Poisson sampling of rows; the split keeps each {who} in one split, but a {who} has up to {k} rows, "
                f"so a {who} is protected only as a group of {k} rows (see group_privacy)"
            )
        return f"Poisson sampling of rows; one row per {who}"
    row = meta.get("card", {}).get("row_unit") or "person"
    if row == "person":
        return "Poisson sampling of rows; one row per person"
    return (
        f"Poisson sampling of rows; one row per {row}. The dataset has no patient ids, so a person with several "
        f"{row}s is protected only as a group of them, by an amount this run cannot state"
    )


def group_privacy_text(*, meta: dict, epsilon: float, delta: float) -> dict | None:
    """The group-privacy cost of a record-level guarantee for the largest patient (k rows), or None.

    Group privacy turns (ε, δ)-DP for one row into (kε, k·e^{(k−1)ε}·δ) for k rows (Dwork & Roth 2014,
    Lemma 2.2 generalised; Vadhan 2017). When that δ is not below 1/n_patients it allows publishing a
    random patient's data outright, so the record-level run gives no meaningful patient-level guarantee.
    """
    patients = meta.get("train_patients")
    if not patients or int(patients.get("max_rows", 1)) <= 1 or not math.isfinite(epsilon):
        return None
    k, n = int(patients["max_rows"]), int(patients["n"])
    try:
        delta_k = k * math.exp((k - 1) * epsilon) * delta
    except OverflowError:
        delta_k = math.inf
    meaningful = delta_k < 1.0 / n
    who = patient_word(meta)
    statement = f"a {who} with {k} rows is protected at (ε, δ) = ({k * epsilon:g}, {delta_k:.3g})" + (
        "" if meaningful else f": δ is not below 1/n_{who}s = {1.0 / n:.3g}, so no meaningful {who}-level guarantee"
    )
    return {
        "k": k,
        "epsilon": k * epsilon,
        "delta": delta_k,
        "n_patients": n,
        "meaningful": meaningful,
        "unit": who,
        "statement": statement,
    }
