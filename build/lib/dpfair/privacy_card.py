"""The privacy card of a run: every parameter a reader needs to interpret its ε, checked for consistency.

A run whose settings contradict its accounting fails here with an error, not a footnote.
"""

from __future__ import annotations

import math

from dpfair.accounting import CARD_ACCOUNTANTS, epsilons_for_card
from dpfair.errors import PrivacyError

#: How far the independent PLD accountant may exceed the target before the run is rejected. PRV (what
#: Opacus calibrates with) is an upper bound that PLD matches to about 0.01 on this stack.
PLD_TOLERANCE = (0.02, 0.01)  # relative, absolute


#: How each grad-sample mode computes the per-sample norms (all give the same clipped sum).
CLIPPING_PATHS = {
    "bookkeeping": "dpfair book-keeping (one backward pass; equal to Opacus hooks, tested)",
    "hooks": "Opacus hooks", "functorch": "Opacus functorch", "ew": "Opacus expanded weights",
    "ghost": "Opacus ghost clipping",
}


def _clipping(record: dict) -> str:
    mode = record.get("grad_sample_mode")
    path = f", computed by {CLIPPING_PATHS.get(mode, mode)}" if mode else ""
    return f"flat per-sample clipping (all parameters, one norm){path}"


def build_privacy_card(record: dict, meta: dict) -> dict:
    """Assemble and check the card of one finished run from its training record and dataset metadata.

    Raises:
        PrivacyError: δ ≥ 1/n_train, non-Poisson sampling, ε spent above the target, steps or sample rate
            inconsistent with the schedule, or an independent accountant that contradicts the target.
    """
    epsilon = float(record["epsilon"])
    private = math.isfinite(epsilon)
    n_train = int(record["n_train"])
    card = {
        "target_epsilon": epsilon,
        "epsilon_spent": float(record["epsilon_spent"]),
        "accountant": record["accountant"],
        "accountant_implementation": f"opacus {record['opacus_version']}" if private else "none (non-private)",
        "delta": float(record["delta"]),
        "delta_below_one_over_n": float(record["delta"]) < 1.0 / n_train,
        "one_over_n_train": 1.0 / n_train,
        "noise_multiplier": float(record["noise_multiplier"]),
        "max_grad_norm": float(record["max_grad_norm"]),
        "clipping": _clipping(record) if private else "none",
        "sampling": record["sampling"],
        "sample_rate": float(record["sample_rate"]),
        "accounted_sample_rate": float(record.get("accounted_sample_rate", record["sample_rate"])),
        "expected_batch_size": float(record["expected_batch_size"]),
        "epochs": int(record["epochs"]),
        "steps": int(record["steps"]),
        "n_train": n_train,
        "privacy_unit": record["privacy_unit"],
        "privacy_unit_enforcement": _unit_enforcement(meta),
        "guarantee_covers": (
            "the model's parameters with respect to one training row; validation and test rows are outside it "
            "(the validation split fits tabular preprocessing and is scored each epoch for the log, never for "
            "selection). Not covered: the split itself, the training split's reported size, prevalence and group "
            "sizes, and the membership audit's statistics"
        ),
        "hyperparameter_selection": "none on private data: hyperparameters are fixed in the benchmark definition; no budget spent",
        "secure_rng": bool(record.get("secure_mode", False)),
        "independent_accountants": CARD_ACCOUNTANTS,
    }
    if private:
        card.update(epsilons_for_card(
            noise_multiplier=card["noise_multiplier"], sample_rate=card["sample_rate"], steps=card["steps"], delta=card["delta"]
        ))
    else:
        card.update({f"epsilon_{name}": math.inf for name in CARD_ACCOUNTANTS})
    check_privacy_card(card)
    return card


def check_privacy_card(card: dict) -> None:
    """Raise :class:`PrivacyError` if the card's settings contradict its accounting."""
    if not card["delta_below_one_over_n"]:
        raise PrivacyError(f"delta {card['delta']:g} is not below 1/n_train = {card['one_over_n_train']:.3g}")
    if card["sampling"] != "poisson":
        raise PrivacyError(f"sampling is {card['sampling']!r} but the accountants assume Poisson sampling")
    expected_steps = card["epochs"] * int(1 / card["sample_rate"])  # Opacus's Poisson loader: int(1/q) batches
    if card["steps"] != expected_steps:
        raise PrivacyError(f"{card['steps']} steps recorded; epochs × int(1/q) gives {expected_steps}")
    if not math.isfinite(card["target_epsilon"]):
        if card["noise_multiplier"] != 0 or math.isfinite(card["max_grad_norm"]):
            raise PrivacyError("a non-private run must not record noise or clipping")
        return
    if card["accounted_sample_rate"] < card["sample_rate"]:
        raise PrivacyError(f"accounted q {card['accounted_sample_rate']:.6g} is below the sampling rate {card['sample_rate']:.6g}")
    if not card["noise_multiplier"] > 0:
        raise PrivacyError(f"target epsilon {card['target_epsilon']} but noise multiplier {card['noise_multiplier']}")
    if not card["epsilon_spent"] <= card["target_epsilon"] * (1 + 1e-6):  # NaN must fail too
        raise PrivacyError(f"epsilon spent {card['epsilon_spent']:.4f} exceeds the target {card['target_epsilon']}")
    rel, absolute = PLD_TOLERANCE
    if not card["epsilon_pld"] <= card["target_epsilon"] * (1 + rel) + absolute:
        raise PrivacyError(
            f"the independent PLD accountant gives epsilon {card['epsilon_pld']:.4f} for target {card['target_epsilon']}"
        )


def _unit_enforcement(meta: dict) -> str:
    k = int(meta.get("max_records_per_patient", 1))
    if k > 1:
        return (
            f"Poisson sampling of rows; the split keeps each patient in one split, but a patient has up to {k} rows, "
            f"so a patient is protected only as a group of {k} rows"
        )
    return "Poisson sampling of rows; one row per person"
