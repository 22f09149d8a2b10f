"""Train the models an audit needs, with the audited run's mechanism (through :mod:`dpfair.audit.training_adapter`).

Per audited run (on the reference seeds): the RMIA reference models, on complementary random halves of the
population (train ∪ val ∪ test), and the canary run: the training split plus m canaries (held-out rows with
their label flipped, so that only memorising them fits them), each included independently with probability
½ as the one-run audit requires. Both use seeds derived from the run's seed, distinct from every run's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpfair.audit.membership import loss_scores_from_logits
from dpfair.audit.training_adapter import derived_seed, train_like
from dpfair.jsonio import write_json
from dpfair.training.loop import predict_logits

HELD_OUT = ("val", "test")


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


def train_audit_models(
    *, prepared, settings: dict, seed: int, n_reference: int, n_canaries: int, outputs: dict[str, str | Path]
) -> dict:
    """Train the reference models and the canary run of one audit seed; write ``references``, ``canaries``, ``record``.

    ``n_reference`` / ``n_canaries`` of 0 (no configured attack needs them, :class:`dpfair.audit.plan.AuditPlan`)
    train nothing for that need; its file is still written, header only, since the rule declares it.
    """
    x, y = prepared.x, prepared.y.float()
    n = len(y)
    # patient-level mechanisms need each row's unit; halves are drawn by unit so no patient straddles them
    patients = prepared.samples["patient_id"].astype(str).to_numpy() if "patient_id" in prepared.samples else None
    units = patients if patients is not None else np.arange(n).astype(str)
    # group-aware mechanisms (DPSGD-F) see each training row's sensitive attributes, as the audited run did
    attributes = [a for a in prepared.meta["card"]["sensitive_attributes"] if a in prepared.samples.columns]
    groups = prepared.samples[attributes].reset_index(drop=True)
    records = {"references": [], "canary_run": None}
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
        )
        columns[f"in_{k}"] = inside.astype(int)
        columns[f"logit_{k}"] = predict_logits(trained.model, x, device=settings.get("device", "cpu"))
        records["references"].append(_brief(trained.record))
    pd.DataFrame(columns).to_csv(outputs["references"], index=False)

    if n_canaries == 0:  # no attack needs canaries: a canary run without canaries would be a wasted model
        pd.DataFrame(columns=["row", "included", "label", "logit", "score"]).to_csv(outputs["canaries"], index=False)
        write_json(outputs["record"], records)
        return records
    rows, included = choose_canaries(splits=prepared.samples["split"], m=n_canaries, seed=seed)
    flipped = 1.0 - y[rows]
    train_mask = torch.from_numpy((prepared.samples["split"] == "train").to_numpy(copy=True))
    chosen = torch.from_numpy(rows[included == 1])
    x_run = torch.cat([x[train_mask], x[chosen]])
    y_run = torch.cat([y[train_mask], 1.0 - y[chosen]])
    run_patients = None
    if patients is not None:  # each canary is a new patient of its own, so a patient-level guarantee covers it
        run_patients = np.concatenate([patients[train_mask.numpy()], [f"canary-{r}" for r in chosen.numpy()]])
    run_groups = pd.concat([groups[train_mask.numpy()], groups.iloc[chosen.numpy()]])
    trained = train_like(
        settings=settings, x=x_run, y=y_run, seed=derived_seed(seed, 3), patient_id=run_patients, groups=run_groups
    )
    logits = predict_logits(trained.model, x[torch.from_numpy(rows)], device=settings.get("device", "cpu"))
    labels = flipped.numpy().astype(int)
    pd.DataFrame(
        {
            "row": rows,
            "included": included,
            "label": labels,
            "logit": logits,
            "score": loss_scores_from_logits(logits=logits, labels=labels),
        }
    ).to_csv(outputs["canaries"], index=False)
    records["canary_run"] = {**_brief(trained.record), "n_canaries": int(len(rows)), "n_included": int(included.sum())}
    write_json(outputs["record"], records)
    return records


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
    )
    return {k: record[k] for k in keys if k in record}
