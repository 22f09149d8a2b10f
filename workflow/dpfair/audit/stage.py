"""The audit stage as files: audit a cell's runs, stack the tables, join the loss attack into metrics.csv.

:func:`audit_cell` runs every configured attack on every seed's run of a (dataset, model, method, ε) cell
(an attack with ``needs`` on the seeds that have what it needs, the files :mod:`dpfair.audit.train_models`
wrote on the reference seeds) and writes one long table. An attack that does not test the run's privacy unit
(a membership attack on a label-DP run) is not run: it gets one ``skipped`` row whose ``note`` says why.
A finite-ε run whose certified bound (a row ``epsilon_lower_bound``, from any attack) exceeds its target
fails the stage. Nothing here imports torch: the audit job stays light.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from dpfair.audit.registry import DEFAULT_METHOD, NEEDS, SKIPPED_METRIC, AuditContext, get_attack, skip_reason
from dpfair.errors import PrivacyError

log = logging.getLogger(__name__)

AUDIT_COLUMNS = [
    "dataset",
    "model",
    "method",
    "epsilon",
    "seed",
    "attack",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "attribute",
    "group",
    "note",
]
ROC_COLUMNS = ["dataset", "model", "method", "epsilon", "seed", "attack", "fpr", "tpr", "n_nonmembers"]
#: What a row holds where its attack gives nothing (an overall row, no interval, no note).
BLANK = {
    "value": math.nan,
    "ci_low": math.nan,
    "ci_high": math.nan,
    "n": math.nan,
    "attribute": "",
    "group": "",
    "note": "",
}


def audit_cell(
    *,
    runs: list[dict],
    meta: str | Path,
    settings: dict,
    outputs: dict[str, str | Path],
    trained: dict[str, dict[int, str | Path]] | None = None,
    intersections=(),
    method: str = DEFAULT_METHOD,
) -> pd.DataFrame:
    """Run the configured attacks on every run of a cell and write ``table`` (long) and ``roc``.

    Args:
        runs: one dict per seed with ``scores``, ``record`` and ``card`` paths.
        meta: the prepared dataset's dataset.json (its sensitive attributes).
        settings: the benchmark's ``audit:`` settings; ``attacks`` names the attacks to run.
        outputs: paths of ``table`` and ``roc``.
        trained: per need (:data:`dpfair.audit.registry.NEEDS`), the audit seeds' files that
            :func:`~dpfair.audit.train_models.train_audit_models` wrote, e.g.
            ``{"canaries": {0: "seed-0/canaries.csv"}}``. An attack runs on the seeds that have all it needs.
        intersections: attribute tuples to break results down by as well, where the dataset has them all.
        method: the audited runs' method (the table's ``method``).

    Raises:
        PrivacyError: after writing the tables, when a finite-ε run's certified bound exceeds its target ε.
    """
    trained = {name: (trained or {}).get(name) or {} for name in NEEDS}
    info = json.loads(Path(meta).read_text())
    attrs = list(info["card"]["sensitive_attributes"])
    attributes = [*attrs, *(":".join(i) for i in intersections if all(a in attrs for a in i))]
    rows, rocs, violations = [], [], []
    for run in runs:
        record = json.loads(Path(run["record"]).read_text())
        card = json.loads(Path(run["card"]).read_text())
        table = pd.read_csv(run["scores"], dtype={a: str for a in attrs}, keep_default_na=False)
        seed = int(record["seed"])
        keys = {
            "dataset": record["dataset"],
            "model": record["model"],
            "method": method,
            "epsilon": float(card["target_epsilon"]),
            "seed": seed,
        }
        ctx = AuditContext(
            keys=keys,
            table=table,
            epsilon=float(card["target_epsilon"]),
            delta=float(card["delta"]),
            unit=card.get("unit", "record"),
            relation=card.get("neighboring_relation", record.get("neighboring_relation", "add_or_remove_one")),
            attributes=attributes,
            settings=settings,
        )
        for name in settings.get("attacks", []):
            attack = get_attack(name)
            reason = skip_reason(attack, unit=ctx.unit, relation=ctx.relation, method=method)
            if reason is not None:  # its figures would stand for a relation the run does not claim
                log.info("%s audit %s seed %d: %s", name, keys, seed, reason)
                rows.append({**keys, **BLANK, "attack": name, "metric": SKIPPED_METRIC, "note": reason})
                continue
            if any(seed not in trained[need] for need in attack.needs):
                continue  # not a reference seed: nothing was trained for this run
            for need in attack.needs:
                setattr(ctx, NEEDS[need].field, pd.read_csv(trained[need][seed]))
            result = attack.run(ctx)
            for r in result.rows:
                rows.append({**keys, **BLANK, "attack": name, **r})
            if result.roc is not None:
                rocs.append(result.roc.assign(**keys, attack=name))
            bound = next((r["value"] for r in result.rows if r["metric"] == "epsilon_lower_bound"), None)
            if bound is not None:
                log.info(
                    "%s audit %s seed %d: certified epsilon >= %.3f (target %s)", name, keys, seed, bound, ctx.epsilon
                )
                if math.isfinite(ctx.epsilon) and bound > ctx.epsilon:
                    violations.append(
                        f"{keys['dataset']}/{keys['model']}/{method} at epsilon={ctx.epsilon:g}, seed {seed}: "
                        f"{name}'s certified lower bound {bound:.3f} exceeds the target"
                    )
    table = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    table.to_csv(outputs["table"], index=False)
    roc = pd.concat(rocs, ignore_index=True) if rocs else pd.DataFrame(columns=ROC_COLUMNS)
    roc[ROC_COLUMNS].to_csv(outputs["roc"], index=False)
    if violations:
        raise PrivacyError(
            "the audit's certified bound refutes the claimed privacy (a DP bug): " + "; ".join(violations)
        )
    return table


def stack_audit_tables(*, tables, rocs, outputs: dict[str, str | Path]) -> pd.DataFrame:
    """Stack the cells' audit tables (header-only when nothing was audited) into the summary tables."""
    for key, paths, columns in (("table", tables, AUDIT_COLUMNS), ("roc", rocs, ROC_COLUMNS)):
        frames = [
            pd.read_csv(
                p,
                keep_default_na=False,
                na_values=["", "nan", "NaN"],
                dtype={"group": str, "attribute": str, "note": str},
            )
            for p in paths
        ]
        frames = [f for f in frames if not f.empty]
        stacked = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        stacked = stacked.reindex(columns=columns)  # a cell's table written before ``note`` existed has none
        Path(outputs[key]).parent.mkdir(parents=True, exist_ok=True)
        stacked[columns].to_csv(outputs[key], index=False)
    return pd.read_csv(
        outputs["table"],
        keep_default_na=False,
        na_values=["", "nan", "NaN"],
        dtype={"group": str, "attribute": str, "note": str},
    )
