"""The audit stage as files: train a cell's audit models, audit its runs, stack and join the tables.

Per (dataset, model, method, ε) and each audit seed, :func:`train_audit_models` trains, with the run's own
mechanism (:mod:`dpfair.audit.training_adapter`): the RMIA reference models, on complementary random halves
of the population (train ∪ val ∪ test), and the canary run: the training split plus m canaries, held-out rows
with their label flipped, each included independently with probability ½. :func:`audit_cell` runs every
configured attack on every seed's run (those needing references or canaries on the audit seeds only) and
writes one long table. A finite-ε run whose certified one-run bound exceeds its target fails the stage.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dpfair.audit.membership import loss_scores_from_logits
from dpfair.audit.registry import AuditContext, get_attack
from dpfair.audit.training_adapter import DEFAULT_METHOD, derived_seed, predict_logits, train_like
from dpfair.errors import PrivacyError
from dpfair.jsonio import write_json

log = logging.getLogger(__name__)

AUDIT_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attack", "metric", "value", "ci_low", "ci_high", "n",
                 "attribute", "group"]
ROC_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attack", "fpr", "tpr", "n_nonmembers"]
HELD_OUT = ("val", "test")
#: metrics.csv columns taken from the loss attack's overall rows of audit.csv.
LOSS_METRIC_COLUMNS = {
    "auroc": "mia_auroc", "tpr_at_1pct_fpr": "mia_tpr_at_1pct_fpr", "tpr_at_0p1pct_fpr": "mia_tpr_at_0p1pct_fpr",
    "bound_violated": "mia_bound_violated", "epsilon_empirical": "mia_epsilon_empirical",
}


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


def train_audit_models(*, prepared, settings: dict, seed: int, n_reference: int, n_canaries: int,
                       outputs: dict[str, str | Path]) -> dict:
    """Train the reference models and the canary run of one audit seed; write ``references``, ``canaries``, ``record``."""
    x, y = prepared.x, prepared.y.float()
    n = len(y)
    records = {"references": [], "canary_run": None}
    columns = {"row": np.arange(n)}
    for k in range(n_reference):
        pair, side = divmod(k, 2)  # models 2p and 2p+1 train on complementary halves
        perm = np.random.default_rng(derived_seed(seed, 1, pair)).permutation(n)
        inside = np.zeros(n, dtype=bool)
        inside[perm[: n // 2] if side == 0 else perm[n // 2 :]] = True
        mask = torch.from_numpy(inside)
        trained = train_like(settings=settings, x=x[mask], y=y[mask], seed=derived_seed(seed, 1, 100 + k))
        columns[f"in_{k}"] = inside.astype(int)
        columns[f"logit_{k}"] = predict_logits(trained.model, x, device=settings.get("device", "cpu"))
        records["references"].append(_brief(trained.record))
    pd.DataFrame(columns).to_csv(outputs["references"], index=False)

    rows, included = choose_canaries(splits=prepared.samples["split"], m=n_canaries, seed=seed)
    flipped = 1.0 - y[rows]
    train_mask = torch.from_numpy((prepared.samples["split"] == "train").to_numpy(copy=True))
    chosen = torch.from_numpy(rows[included == 1])
    x_run = torch.cat([x[train_mask], x[chosen]])
    y_run = torch.cat([y[train_mask], 1.0 - y[chosen]])
    trained = train_like(settings=settings, x=x_run, y=y_run, seed=derived_seed(seed, 3))
    logits = predict_logits(trained.model, x[torch.from_numpy(rows)], device=settings.get("device", "cpu"))
    labels = flipped.numpy().astype(int)
    pd.DataFrame({"row": rows, "included": included, "label": labels, "logit": logits,
                  "score": loss_scores_from_logits(logits=logits, labels=labels)}).to_csv(outputs["canaries"], index=False)
    records["canary_run"] = {**_brief(trained.record), "n_canaries": int(len(rows)), "n_included": int(included.sum())}
    write_json(outputs["record"], records)
    return records


def _brief(record: dict) -> dict:
    keys = ("epsilon", "epsilon_spent", "delta", "noise_multiplier", "sample_rate", "steps", "n_train", "seed", "train_seconds")
    return {k: record[k] for k in keys if k in record}


def audit_cell(
    *, runs: list[dict], meta: str | Path, settings: dict, outputs: dict[str, str | Path],
    references: dict[int, str | Path] | None = None, canaries: dict[int, str | Path] | None = None,
    intersections=(), method: str = DEFAULT_METHOD,
) -> pd.DataFrame:
    """Run the configured attacks on every run of a cell and write ``table`` (long) and ``roc``.

    ``runs`` holds one dict per seed with ``scores``, ``record`` and ``card`` paths; ``references`` and
    ``canaries`` map audit seeds to the files :func:`train_audit_models` wrote. Raises
    :class:`~dpfair.errors.PrivacyError` (after writing the tables) when a finite-ε run's certified one-run
    bound exceeds its target ε.
    """
    references, canaries = references or {}, canaries or {}
    info = json.loads(Path(meta).read_text())
    attrs = list(info["card"]["sensitive_attributes"])
    attributes = [*attrs, *(":".join(i) for i in intersections if all(a in attrs for a in i))]
    rows, rocs, violations = [], [], []
    for run in runs:
        record = json.loads(Path(run["record"]).read_text())
        card = json.loads(Path(run["card"]).read_text())
        table = pd.read_csv(run["scores"], dtype={a: str for a in attrs}, keep_default_na=False)
        seed = int(record["seed"])
        keys = {"dataset": record["dataset"], "model": record["model"], "method": method,
                "epsilon": float(card["target_epsilon"]), "seed": seed}
        ctx = AuditContext(keys=keys, table=table, epsilon=float(card["target_epsilon"]), delta=float(card["delta"]),
                           attributes=attributes, settings=settings)
        for name in settings.get("attacks", []):
            attack = get_attack(name)
            if attack.needs == "references":
                if seed not in references:
                    continue
                ctx.references = pd.read_csv(references[seed])
            elif attack.needs == "canaries":
                if seed not in canaries:
                    continue
                ctx.canaries = pd.read_csv(canaries[seed])
            result = attack.run(ctx)
            for r in result.rows:
                rows.append({**keys, "attack": name, "ci_low": math.nan, "ci_high": math.nan, "attribute": "", "group": "", **r})
            if result.roc is not None:
                rocs.append(result.roc.assign(**keys, attack=name))
            bound = next((r["value"] for r in result.rows if r["metric"] == "epsilon_lower_bound"), None)
            if bound is not None:
                log.info("one-run audit %s seed %d: certified epsilon >= %.3f (target %s)", keys, seed, bound, ctx.epsilon)
                if math.isfinite(ctx.epsilon) and bound > ctx.epsilon:
                    violations.append(f"{keys['dataset']}/{keys['model']}/{method} at epsilon={ctx.epsilon:g}, seed {seed}: "
                                      f"certified lower bound {bound:.3f} exceeds the target")
    table = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    table.to_csv(outputs["table"], index=False)
    roc = pd.concat(rocs, ignore_index=True) if rocs else pd.DataFrame(columns=ROC_COLUMNS)
    roc[ROC_COLUMNS].to_csv(outputs["roc"], index=False)
    if violations:
        raise PrivacyError("the one-run audit refutes the claimed privacy (a DP bug): " + "; ".join(violations))
    return table


def join_loss_columns(*, metrics: pd.DataFrame, subgroups: pd.DataFrame | None, audit: pd.DataFrame):
    """metrics.csv's ``mia_*`` columns and subgroups.csv's ``mia_auroc`` from the loss attack's rows of audit.csv."""
    keys = ["dataset", "model", "epsilon", "seed"]
    loss = audit[audit["attack"] == "loss"]
    overall = loss[loss["attribute"].fillna("") == ""]
    wide = overall.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    wide = wide.rename(columns=LOSS_METRIC_COLUMNS)
    for col in LOSS_METRIC_COLUMNS.values():
        if col not in wide:
            wide[col] = math.nan
    if "mia_bound_violated" in wide and wide["mia_bound_violated"].notna().any():
        wide["mia_bound_violated"] = wide["mia_bound_violated"].map(lambda v: v if pd.isna(v) else bool(v))
    drop = [c for c in [*LOSS_METRIC_COLUMNS.values(), "mia_epsilon_lower_bound"] if c in metrics.columns]
    merged = metrics.drop(columns=drop).merge(wide[[*keys, *LOSS_METRIC_COLUMNS.values()]], on=keys, how="left")
    if subgroups is None:
        return merged, None
    per_group = loss[loss["attribute"].fillna("") != ""][[*keys, "attribute", "group", "value"]].rename(columns={"value": "mia_auroc"})
    sub = subgroups.drop(columns=[c for c in ("mia_auroc",) if c in subgroups.columns])
    sub = sub.merge(per_group, on=[*keys, "attribute", "group"], how="left")
    return merged, sub


def stack_audit_tables(*, tables, rocs, outputs: dict[str, str | Path]) -> pd.DataFrame:
    """Stack the cells' audit tables (header-only when nothing was audited) into the summary tables."""
    for key, paths, columns in (("table", tables, AUDIT_COLUMNS), ("roc", rocs, ROC_COLUMNS)):
        frames = [pd.read_csv(p, keep_default_na=False, na_values=["", "nan", "NaN"], dtype={"group": str, "attribute": str})
                  for p in paths]
        frames = [f for f in frames if not f.empty]
        stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        Path(outputs[key]).parent.mkdir(parents=True, exist_ok=True)
        stacked[columns].to_csv(outputs[key], index=False)
    return pd.read_csv(outputs["table"], keep_default_na=False, na_values=["", "nan", "NaN"], dtype={"group": str, "attribute": str})


def join_audit_columns(*, audit: str | Path, metrics: str | Path, subgroups: str | Path) -> None:
    """Rewrite the summary's metrics.csv and subgroups.csv with the loss attack's columns from audit.csv."""
    from dpfair.runner import METRIC_COLUMNS  # the contract's column order
    from dpfair.summary import NA_VALUES

    def read(path):
        return pd.read_csv(path, keep_default_na=False, na_values=NA_VALUES, dtype={"group": str, "attribute": str})

    audit_df = read(audit)
    audit_df["epsilon"] = audit_df["epsilon"].astype(float)
    metrics_df, subgroups_df = read(metrics), read(subgroups)
    for frame in (metrics_df, subgroups_df):
        if "epsilon" in frame:
            frame["epsilon"] = frame["epsilon"].astype(float)
    merged, sub = join_loss_columns(metrics=metrics_df, subgroups=subgroups_df, audit=audit_df)
    ordered = [c for c in METRIC_COLUMNS if c in merged.columns]
    merged[[*ordered, *(c for c in merged.columns if c not in ordered)]].to_csv(metrics, index=False)
    sub.to_csv(subgroups, index=False)
