"""Train the models an audit needs, with the audited run's mechanism (through :mod:`dpfair.audit.training_adapter`).

Per audited run (on the reference seeds): the RMIA reference models, on complementary random halves of the
population (train ∪ val ∪ test), and the canary run: the training split plus m canaries (held-out rows with
their label flipped, so that only memorising them fits them), each with an independent fair-coin bit as the
one-run audit requires. What a canary's bit decides follows the relation the mechanism claims
(:func:`dpfair.audit.one_run.canary_design`): whether the canary is trained on (add or remove one record or
patient), or, for a label-DP mechanism (``label_rr``: replace one label), whether the canary is trained on
with its own label or the flipped one. Both use seeds derived from the run's seed, distinct from every run's.

Every audit model gets the validation rows it does not train on, as the audited run got the validation
split: recipes that select the best epoch, weight classes or take a label prior from it train as the run did.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpfair.audit.membership import loss_scores_from_logits
from dpfair.audit.one_run import canary_design
from dpfair.audit.registry import DEFAULT_METHOD, needed_for_unit
from dpfair.audit.training_adapter import derived_seed, train_like
from dpfair.jsonio import write_json
from dpfair.training.loop import predict_logits
from dpfair.training.mechanisms import get_mechanism

log = logging.getLogger(__name__)

HELD_OUT = ("val", "test")
#: canaries.csv's columns (``design``: what ``included`` means, :func:`dpfair.audit.one_run.canary_design`).
CANARY_COLUMNS = ["row", "included", "label", "logit", "score", "design"]


def choose_canaries(*, splits: pd.Series, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (positions) of up to ``m`` held-out canaries and their independent fair-coin inclusion bits.

    Example:
        >>> rows, included = choose_canaries(splits=pd.Series(["train"] * 5 + ["test"] * 5), m=3, seed=0)
        >>> len(rows), bool(np.all(rows >= 5)), set(included.tolist()) <= {0, 1}
        (3, True, True)
    """
    held_out = np.flatnonzero(splits.isin(HELD_OUT).to_numpy())
    rng = np.random.default_rng(derived_seed(seed, 2))
    rows = np.sort(rng.choice(held_out, size=min(m, len(held_out)), replace=False))
    return rows, rng.integers(0, 2, len(rows))


def canary_calibration(*, n_train: int, n_canaries: int, design: str) -> int:
    """The training-set size the canary run's mechanism calibrates for: fixed before the bits are drawn.

    The one-run bound (Steinke, Nasr & Jagielski 2023) holds for a mechanism that is (ε, δ)-DP with respect
    to each canary's bit, the other bits and everything else fixed. DP-SGD's sampling rate q = 1/⌈N/batch⌉,
    its steps (epochs · ⌈N/batch⌉) and the σ calibrated for them are functions of the training-set size N;
    with membership canaries N = n_train + (canaries drawn in) depends on the bits, so flipping one bit
    would change q, steps and σ as well as add or remove the canary. Such a run is not the mechanism whose
    guarantee is tested, so its bound is not certified for the claim. Calibrating for a size fixed in
    advance (n_train plus the canaries' expected inclusion, m/2) and Poisson-sampling the rows actually
    present at that q for those steps makes adding or removing a canary the claimed neighbouring relation
    of one fixed mechanism. Padding to a fixed size instead would swap a canary for a filler row:
    replace-one, a relation DP-SGD's add-or-remove guarantee does not bound at ε.

    Label canaries are all trained on (only their labels depend on the bits), so the size is fixed anyway.

    Example:
        >>> canary_calibration(n_train=1000, n_canaries=400, design="membership")
        1200
        >>> canary_calibration(n_train=1000, n_canaries=400, design="label")
        1400
    """
    if design == "label":
        return n_train + n_canaries
    if design == "membership":
        return n_train + n_canaries // 2
    raise ValueError(f"unknown canary design {design!r}")


def train_audit_models(
    *, prepared, settings: dict, seed: int, n_reference: int, n_canaries: int, outputs: dict[str, str | Path]
) -> dict:
    """Train the reference models and the canary run of one audit seed; write ``references``, ``canaries``, ``record``.

    ``n_reference`` / ``n_canaries`` of 0 (no configured attack needs them, :class:`dpfair.audit.plan.AuditPlan`)
    train nothing for that need; its file is still written, header only, since the rule declares it. Neither
    is trained for a mechanism whose privacy unit no attack with that need tests (reference models of a
    label-DP run: every attack reading them is a membership attack, skipped on such a run).
    """
    x, y = prepared.x, prepared.y.float()
    n = len(y)
    mechanism = get_mechanism(settings.get("method", DEFAULT_METHOD))
    # a need whose every attack skips this unit (registry.skip_reason) would train models nobody reads
    wanted = needed_for_unit(mechanism.unit)
    skipped = {
        name: f"no attack that needs {name} tests a {mechanism.unit}-level guarantee"
        for name, count in (("reference_models", n_reference), ("canaries", n_canaries))
        if count and name not in wanted
    }
    for name, reason in skipped.items():
        log.info("%s of a %s run: %s, so none are trained", name, mechanism.name, reason)
    n_reference = 0 if "reference_models" in skipped else n_reference
    n_canaries = 0 if "canaries" in skipped else n_canaries
    # patient-level mechanisms need each row's unit; halves are drawn by unit so no patient straddles them
    patients = prepared.samples["patient_id"].astype(str).to_numpy() if "patient_id" in prepared.samples else None
    units = patients if patients is not None else np.arange(n).astype(str)
    # group-aware mechanisms (DPSGD-F) see each training row's sensitive attributes, as the audited run did
    attributes = [a for a in prepared.meta["card"]["sensitive_attributes"] if a in prepared.samples.columns]
    groups = prepared.samples[attributes].reset_index(drop=True)
    validation = (prepared.samples["split"] == "val").to_numpy(copy=True)
    records = {"references": [], "canary_run": None, **({"not_trained": skipped} if skipped else {})}
    columns = {"row": np.arange(n)}
    for k in range(n_reference):
        pair, side = divmod(k, 2)  # models 2p and 2p+1 train on complementary halves
        inside = _half(units, seed=derived_seed(seed, 1, pair), side=side)
        mask = torch.from_numpy(inside)
        trained = train_like(
            settings=settings,
            x=x[mask],
            y=y[mask],
            seed=derived_seed(seed, 1, 100 + k),
            patient_id=None if patients is None else patients[inside],
            groups=groups[inside],
            **_validation(x, y, validation & ~inside),
        )
        columns[f"in_{k}"] = inside.astype(int)
        columns[f"logit_{k}"] = predict_logits(trained.model, x, device=settings.get("device", "cpu"))
        records["references"].append(_brief(trained.record))
    pd.DataFrame(columns).to_csv(outputs["references"], index=False)

    if n_canaries == 0:  # no attack needs canaries: a canary run without canaries would be a wasted model
        pd.DataFrame(columns=CANARY_COLUMNS).to_csv(outputs["canaries"], index=False)
        write_json(outputs["record"], records)
        return records
    design = canary_design(unit=mechanism.unit, relation=mechanism.relation)
    rows, included = choose_canaries(splits=prepared.samples["split"], m=n_canaries, seed=seed)
    train_rows = (prepared.samples["split"] == "train").to_numpy(copy=True)
    # fixed from the number of canaries, never from the bits (see canary_calibration)
    calibration = canary_calibration(n_train=int(train_rows.sum()), n_canaries=len(rows), design=design)
    trained = train_canary_run(
        prepared=prepared,
        settings=settings,
        rows=rows,
        included=included,
        design=design,
        calibration_size=calibration,
        seed=seed,
    )
    flipped = 1.0 - y[rows]
    logits = predict_logits(trained.model, x[torch.from_numpy(rows)], device=settings.get("device", "cpu"))
    labels = flipped.numpy().astype(int)
    pd.DataFrame(
        {
            "row": rows,
            "included": included,
            "label": labels,
            "logit": logits,
            # log-likelihood of the flipped label: high where the canary's bit-1 version was learnt
            "score": loss_scores_from_logits(logits=logits, labels=labels),
            "design": design,
        }
    ).to_csv(outputs["canaries"], index=False)
    records["canary_run"] = {
        **_brief(trained.record),
        "n_canaries": int(len(rows)),
        "n_included": int(included.sum()),
        "design": design,
    }
    write_json(outputs["record"], records)
    return records


def train_canary_run(
    *,
    prepared,
    settings: dict,
    rows: np.ndarray,
    included: np.ndarray,
    design: str,
    calibration_size: int,
    seed: int,
):
    """The one-run audit's canary run: the training split plus the canary rows ``rows`` as their bits ``included`` say.

    ``membership``: the canaries with bit 1 are added with their label flipped, each a new patient of its own
    (so a patient-level guarantee covers it). ``label``: every canary is added, with its label flipped where
    its bit is 1 and its own label where it is 0. The mechanism calibrates for ``calibration_size``
    (:func:`canary_calibration`), and the validation split it gets leaves out every canary, drawn in or not:
    the released epoch is then not chosen on the canaries' true labels (which would work against the
    memorisation the audit measures), and the split does not depend on the bits.

    Returns:
        The :class:`~dpfair.audit.training_adapter.AuditModel` of the run.
    """
    x, y = prepared.x, prepared.y.float()
    patients = prepared.samples["patient_id"].astype(str).to_numpy() if "patient_id" in prepared.samples else None
    attributes = [a for a in prepared.meta["card"]["sensitive_attributes"] if a in prepared.samples.columns]
    groups = prepared.samples[attributes].reset_index(drop=True)
    train_rows = (prepared.samples["split"] == "train").to_numpy(copy=True)
    included = np.asarray(included).astype(int)
    if design == "membership":
        chosen = rows[included == 1]
        canary_labels = 1.0 - y[torch.from_numpy(chosen)]
    elif design == "label":
        chosen = rows
        own = y[torch.from_numpy(rows)]
        canary_labels = torch.where(torch.from_numpy(included == 1), 1.0 - own, own)
    else:
        raise ValueError(f"unknown canary design {design!r}")
    x_run = torch.cat([x[torch.from_numpy(train_rows)], x[torch.from_numpy(chosen)]])
    y_run = torch.cat([y[torch.from_numpy(train_rows)], canary_labels])
    run_patients = None
    if patients is not None:  # each canary is a new patient of its own, so a patient-level guarantee covers it
        run_patients = np.concatenate([patients[train_rows], [f"canary-{r}" for r in chosen]])
    run_groups = pd.concat([groups[train_rows], groups.iloc[chosen]])
    canary_mask = np.zeros(len(y), dtype=bool)
    canary_mask[rows] = True
    validation = (prepared.samples["split"] == "val").to_numpy(copy=True) & ~canary_mask
    return train_like(
        settings=settings,
        x=x_run,
        y=y_run,
        seed=derived_seed(seed, 3),
        patient_id=run_patients,
        groups=run_groups,
        calibration_size=calibration_size,
        **_validation(x, y, validation),
    )


def _validation(x: torch.Tensor, y: torch.Tensor, keep: np.ndarray) -> dict:
    """``x_val``/``y_val`` of the rows ``keep`` (both None when there are none, as for a run without a split)."""
    if not keep.any():
        return {"x_val": None, "y_val": None}
    mask = torch.from_numpy(keep)
    return {"x_val": x[mask], "y_val": y[mask]}


def _half(units: np.ndarray, *, seed: int, side: int) -> np.ndarray:
    """Rows of one of two complementary random halves of the units (rows, or patients where there are any).

    Example:
        >>> a, b = _half(np.array(["p1", "p1", "p2", "p3"]), seed=0, side=0), _half(np.array(["p1", "p1", "p2", "p3"]), seed=0, side=1)
        >>> bool(np.all(a ^ b)), bool(a[0] == a[1])
        (True, True)
    """
    distinct = np.unique(units)
    perm = np.random.default_rng(seed).permutation(len(distinct))
    half = distinct[perm[: len(distinct) // 2]] if side == 0 else distinct[perm[len(distinct) // 2 :]]
    return np.isin(units, half)


def _brief(record: dict) -> dict:
    keys = (
        "epsilon",
        "epsilon_spent",
        "delta",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "n_train",
        "seed",
        "train_seconds",
        "method",
        "mitigation_groups",
        "select_best",
        "best_epoch",
        "calibration_size",
        "calibration_fixed",
    )
    return {k: record[k] for k in keys if k in record}
