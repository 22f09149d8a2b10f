"""The report's methods section, generated from the run: privacy statements, software, benchmark hash, checklist.

The privacy statement follows TensorFlow Privacy's DP-SGD statement (N, batch size, epochs, noise
multiplier, δ, sampling, accountant, maximum examples per user) and adds the unit of privacy, the
accountant's implementation and version, and the tuning cost. The checklist marks the reporting items
of the review this project follows (privacy parameters) and of TRIPOD+AI (subgroup performance,
fairness assessment) as present or absent for this run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform

import pandas as pd

from dpfair.audit.registry import SKIPPED_METRIC
from dpfair.report.fmt import epsilon_label, number
from dpfair.report.frames import slug
from dpfair.report.summary import group_privacy_text

#: Packages whose versions a paper cites (distribution names).
SOFTWARE = (
    "dpfair",
    "torch",
    "opacus",
    "dp-accounting",
    "fairlearn",
    "snakemake",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "monai",
    "matplotlib",
)
#: Keys of the benchmark definition that say where this machine keeps things, not what the benchmark is.
MACHINE_KEYS = ("datasets_dir",)
#: Card fields shown once per (dataset, model, method): they do not vary with ε or seed.
CARD_TEXT_FIELDS = [
    ("clipping", "Clipping"),
    ("sampling", "Sampling"),
    ("privacy_unit_enforcement", "Privacy unit"),
    ("guarantee_covers", "What the guarantee covers"),
    ("hyperparameter_selection", "Hyperparameter selection"),
    ("accountant_implementation", "Accountant"),
    ("secure_rng", "Cryptographically secure RNG"),
]
#: Per-run columns of the privacy-statement table: (card key, header).
STATEMENT_COLUMNS = [
    ("epsilon", "target ε"),
    ("seed", "seed"),
    ("epsilon_spent", "ε spent"),
    ("epsilon_prv", "ε PRV"),
    ("epsilon_pld", "ε PLD"),
    ("epsilon_rdp", "ε RDP"),
    ("delta", "δ"),
    ("noise_multiplier", "σ"),
    ("max_grad_norm", "C"),
    ("sample_rate", "q"),
    ("expected_batch_size", "E[batch]"),
    ("epochs", "epochs"),
    ("steps", "steps"),
    ("n_train", "N"),
    ("unit", "unit"),
    ("n_units", "units"),
    ("accountant", "accountant"),
]


def software_versions() -> dict[str, str]:
    """Python and the installed version of each package in :data:`SOFTWARE` ("not installed" if absent)."""
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def canonical_definition(config: dict) -> str:
    """The benchmark definition as canonical JSON (sorted keys, no spaces), machine paths left out.

    Example:
        >>> canonical_definition({"seeds": [0], "name": "t", "datasets_dir": "/home/x/datasets"})
        '{"name":"t","seeds":[0]}'
    """
    definition = {k: v for k, v in config.items() if k not in MACHINE_KEYS}
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def definition_hash(config: dict) -> str:
    """sha256 of :func:`canonical_definition`: one benchmark definition, one hash, on any machine."""
    return hashlib.sha256(canonical_definition(config).encode("utf-8")).hexdigest()


def _value(card: dict, key: str) -> str:
    if key == "epsilon":
        return epsilon_label(card["epsilon"])
    if key == "unit":
        return str(card.get("unit", card.get("privacy_unit", "—")))
    value = card.get(key)
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return number(value, 4) if abs(value) >= 1e-3 or value == 0 else number(value, 2)


def statement_sentence(card: dict, *, meta: dict) -> str:
    """One run's privacy statement in words (the TensorFlow Privacy fields and the unit)."""
    head = f"{card['method']} on {card['dataset']}/{card['model']}, target ε = {epsilon_label(card['epsilon'])}, seed {card['seed']}"
    if not math.isfinite(card["epsilon"]):
        return (
            f"{head}: non-private reference, no guarantee. Same data, model, optimizer and Poisson schedule "
            f"(q = {_value(card, 'sample_rate')}, {_value(card, 'steps')} steps) with no clipping and no noise."
        )
    parts = [f"N = {_value(card, 'n_train')} training rows"]
    if card.get("sample_rate") is not None:
        parts.append(
            f"{card.get('sampling', 'poisson')} sampling with q = {_value(card, 'sample_rate')} "
            f"(expected batch {_value(card, 'expected_batch_size')})"
        )
    if card.get("steps") is not None:
        parts.append(f"{_value(card, 'epochs')} epoch(s) = {_value(card, 'steps')} steps")
    if card.get("noise_multiplier") is not None:
        parts.append(f"noise multiplier σ = {_value(card, 'noise_multiplier')}")
    if card.get("max_grad_norm") is not None:
        parts.append(f"clipping norm C = {_value(card, 'max_grad_norm')} ({card.get('clipping', 'clipping')})")
    k = int(meta.get("max_records_per_patient", 1) or 1)
    unit = _value(card, "unit")
    units = f", {card['n_units']} units" if card.get("n_units") is not None else ""
    parts.append(f"unit of privacy: one {unit}{units}; at most {k} row(s) per patient")
    guarantee = (
        f"satisfies ({_value(card, 'epsilon_spent')}, {_value(card, 'delta')})-DP by the {card.get('accountant', '?')} "
        f"accountant ({card.get('accountant_implementation', 'implementation not recorded')})"
    )
    independent = [
        f"{name.upper()} {_value(card, f'epsilon_{name}')}"
        for name in ("pld", "rdp")
        if card.get(f"epsilon_{name}") is not None
    ]
    if independent:
        guarantee += f"; replayed: {', '.join(independent)}"
    tuning = card.get("hyperparameter_selection", "tuning cost not recorded")
    text = f"{head}: {'; '.join(parts)}. It {guarantee}. Tuning: {tuning}."
    if card.get("group_privacy"):
        text += f" Group privacy: {group_privacy_text(card['group_privacy'])}."
    return text


def _brief(cards: list[dict], private: list[dict]) -> str:
    """One line for a (dataset, model, method): runs, ε spent per target, δ, unit, accountant, tuning."""
    if not private:
        return f"{len(cards)} run(s), all non-private (ε = ∞): no guarantee"
    spent = {}
    for c in private:
        spent.setdefault(c["epsilon"], []).append(c.get("epsilon_spent"))
    targets = "; ".join(
        f"target {epsilon_label(e)}: spent {_value({'x': min(v)}, 'x')}"
        + (f"–{_value({'x': max(v)}, 'x')}" if min(v) != max(v) else "")
        for e, v in sorted(spent.items())
        if None not in v
    )
    first = private[0]
    return (
        f"{len(cards)} runs ({len(private)} private). {targets}. δ = {_value(first, 'delta')}; unit: one {_value(first, 'unit')}; "
        f"accountant: {first.get('accountant', '—')} ({first.get('accountant_implementation', 'implementation not recorded')}); "
        f"tuning: {first.get('hyperparameter_selection', 'not recorded')}."
    )


def privacy_statements(cards: list[dict], metas: dict[str, dict]) -> list[dict]:
    """Per dataset and (model, method): the shared card text, a table of every run, a sentence per run."""
    out = []
    frame = pd.DataFrame(
        [
            {k: c.get(k) for k in ("dataset", "model", "method", "epsilon", "seed")} | {"i": i}
            for i, c in enumerate(cards)
        ]
    )
    if frame.empty:
        return out
    for dataset in [d for d in metas if d in set(frame["dataset"])] + sorted(set(frame["dataset"]) - set(metas)):
        meta = metas.get(dataset, {})
        groups = []
        for (model, method), part in frame[frame["dataset"] == dataset].groupby(["model", "method"], sort=True):
            mine = [cards[i] for i in part.sort_values(["epsilon", "seed"])["i"]]
            private = [c for c in mine if math.isfinite(c["epsilon"])]
            shared = private[0] if private else mine[0]
            text = [(label, str(shared[key])) for key, label in CARD_TEXT_FIELDS if key in shared]
            known = {k for k, _ in CARD_TEXT_FIELDS} | {
                "independent_accountants",
                "group_privacy",
                "released_outside_guarantee",
            }
            text += [
                (key.replace("_", " "), value)
                for key, value in shared.items()
                if isinstance(value, str) and len(value) > 40 and key not in known and not key.startswith("_")
            ]
            if shared.get("group_privacy"):
                text.append(("Group privacy", group_privacy_text(shared["group_privacy"])))
            if shared.get("released_outside_guarantee"):
                text.append(("Released outside the guarantee", "; ".join(shared["released_outside_guarantee"])))
            groups.append(
                {
                    "model": model,
                    "method": method,
                    "id": slug("ps", dataset, model, method),
                    "card": text,
                    "brief": _brief(mine, private),
                    "rows": [
                        {
                            "id": slug("ps", dataset, model, method, c["epsilon"], c["seed"]),
                            "cells": [_value(c, key) for key, _ in STATEMENT_COLUMNS],
                            "sentence": statement_sentence(c, meta=meta),
                            "ledger": json.dumps(c["ledger"], indent=1) if c.get("ledger") else None,
                        }
                        for c in mine
                    ],
                }
            )
        out.append({"dataset": dataset, "id": slug("ps", dataset), "groups": groups})
    return out


def checklist(
    *,
    metrics: pd.DataFrame,
    subgroups: pd.DataFrame,
    changes: pd.DataFrame,
    reliability: pd.DataFrame,
    cards: list[dict],
    metas: dict,
    audit: pd.DataFrame | None,
    compute_cost: bool,
    definition: bool = True,
) -> list[dict]:
    """The reporting items, each ``present``, ``partial`` or ``absent`` for this run, with where to look."""
    private = metrics[metrics["epsilon"].map(math.isfinite)]
    cols = set(metrics.columns)

    def filled(*names) -> bool:
        return all(n in cols and private[n].notna().all() for n in names) and not private.empty

    seeds = (
        metrics.groupby(["dataset", "model", "method", "epsilon"])["seed"].nunique().min() if not metrics.empty else 0
    )
    private_cards = [c for c in cards if math.isfinite(c["epsilon"])]
    tuning = "tuning_trials" in cols or (
        private_cards and all(c.get("hyperparameter_selection") for c in private_cards)
    )
    if audit is not None and not audit.empty:
        skipped = audit[audit["metric"] == SKIPPED_METRIC]
        ran = sorted(set(audit.loc[audit["metric"] != SKIPPED_METRIC, "attack"]))
        audit_status, audit_note = "present", f"attacks: {', '.join(ran)}"
        # an attack not run on a method whose guarantee it does not test (membership attacks on label_rr)
        for method, part in skipped.groupby("method", sort=True):
            audit_note += (
                f"; not run on {method} (its guarantee's unit is not tested): {', '.join(sorted(set(part['attack'])))}"
            )
    elif "mia_auroc" in cols and metrics["mia_auroc"].notna().any():
        audit_status, audit_note = "partial", "loss-threshold attack only; no audit that certifies a lower bound on ε"
    else:
        audit_status, audit_note = "absent", "membership inference switched off"
    multi_row = [d for d, m in metas.items() if int(m.get("max_records_per_patient", 1) or 1) > 1]
    patient_level = {c.get("dataset") for c in private_cards if str(c.get("unit", c.get("privacy_unit"))) == "patient"}
    uncovered = [d for d in multi_row if d not in patient_level]
    items = [
        ("ε and δ of every run, as spent", filled("epsilon_spent", "delta"), "", "privacy-statements"),
        (
            "Unit of privacy and what the guarantee covers",
            filled("privacy_unit") and all("guarantee_covers" in c for c in private_cards),
            "",
            "privacy-statements",
        ),
        (
            "Accountant named, with implementation and version",
            bool(private_cards) and all(c.get("accountant_implementation") for c in private_cards),
            "",
            "privacy-statements",
        ),
        (
            "Noise multiplier, clipping norm, sampling rate and scheme, batch size, epochs and steps",
            filled(
                "noise_multiplier", "max_grad_norm", "sample_rate", "sampling", "expected_batch_size", "epochs", "steps"
            ),
            "",
            "privacy-statements",
        ),
        (
            "Maximum records per person",
            bool(metas) and all("max_records_per_patient" in m for m in metas.values()),
            "",
            "data-cards",
        ),
        (
            "Patient-level guarantee where a patient has several rows",
            ("absent" if uncovered else "present") if multi_row else "n/a",
            (
                f"record-level only on multi-row {', '.join(uncovered)}"
                if uncovered
                else f"multi-row: {', '.join(multi_row)}"
            )
            if multi_row
            else "every dataset has one row per person",
            "privacy-statements",
        ),
        ("Privacy cost of hyperparameter tuning stated", bool(tuning), "", "privacy-statements"),
        (
            "Non-private baseline trained the same way (ε = ∞)",
            bool((~metrics["epsilon"].map(math.isfinite)).any()),
            "",
            "across",
        ),
        (
            "Several training seeds",
            "present" if seeds >= 3 else ("partial" if seeds == 2 else "absent"),
            f"fewest seeds per setting: {seeds}",
            "across",
        ),
        ("Uncertainty intervals for utility", {"auroc_ci_low", "auroc_ci_high"} <= cols, "", "across"),
        ("Subgroup performance (TRIPOD+AI)", not subgroups.empty, "", "across"),
        (
            "Fairness assessment: gaps and their change with intervals (TRIPOD+AI)",
            not changes.empty and {"ci_low", "ci_high"} <= set(changes.columns),
            "",
            "across",
        ),
        ("Multiplicity control for fairness claims", "p_adjusted" in changes.columns, "", "summary"),
        ("Calibration", not reliability.empty, "", "across"),
        ("Empirical privacy audit", audit_status, audit_note, "summary"),
        ("Data: source, licence, split, prevalence", bool(metas), "", "data-cards"),
        (
            "Software versions and benchmark definition hash",
            "present" if definition else "partial",
            "" if definition else "software versions only: rendered without the benchmark definition",
            "software",
        ),
        ("Compute cost", compute_cost, "", "compute-cost" if compute_cost else "methods"),
    ]
    out = []
    for name, status, note, anchor in items:
        if isinstance(status, bool):
            status = "present" if status else "absent"
        out.append(
            {"item": name, "status": status, "note": note, "href": "#" + anchor, "class": status.replace("/", "")}
        )
    return out
