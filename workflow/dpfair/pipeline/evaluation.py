"""One run's evaluation as files: utility and fairness of its test rows, with intervals, in the summary's columns.

Kept apart from :mod:`dpfair.pipeline.runner` so an evaluate job imports pandas, scikit-learn and fairlearn
but neither torch, Opacus nor MONAI (``tests/test_config.py`` checks it; the import times: docs/speed.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dpfair.fairness import evaluate_fairness
from dpfair.tables.columns import SUBGROUP_COLUMNS, metric_columns, subgroup_rows
from dpfair.tables.columns import metric_rows as wide_metric_rows


def evaluate_runs(*, runs: list[dict[str, str | Path]], **common) -> None:
    """:func:`evaluate_run` for each of ``runs`` (``scores``, ``record`` and ``outputs``) in this process."""
    for run in runs:
        evaluate_run(**run, **common)


def evaluate_run(
    *,
    scores: str | Path,
    record: str | Path,
    meta: str | Path,
    settings: dict,
    outputs: dict[str, str | Path],
) -> dict[str, pd.DataFrame]:
    """Evaluate one run and write its rows of the summary tables.

    Fairness and utility on the test rows at a threshold chosen on the validation rows
    (:func:`dpfair.fairness.evaluate_fairness`); where the scores carry ``patient_id`` (a dataset with
    several rows per patient), resamples and permutations are of whole patients unless
    ``settings["cluster_resampling"]`` is false. The membership-inference attacks are the audit stage's
    (:mod:`dpfair.audit.stage`); the aggregate joins the loss attack's ``mia_*`` columns in.

    ``outputs`` maps ``metrics``, ``subgroups``, ``gaps``, ``replicates`` and ``reliability`` to paths.
    """
    run = json.loads(Path(record).read_text())
    info = json.loads(Path(meta).read_text())
    attributes = list(info["card"]["sensitive_attributes"])
    table = pd.read_csv(scores, dtype={**{a: str for a in attributes}, "patient_id": str}, keep_default_na=False)
    held_out = table[table["split"].isin(["val", "test"])]
    intersections = [tuple(i) for i in settings.get("intersections", []) if all(a in attributes for a in i)]
    report = evaluate_fairness(
        scores=held_out,
        attributes=attributes,
        intersections=intersections,
        min_group_size=settings.get("min_group_size", info.get("min_group_size", 30)),
        min_class_size=settings.get("min_class_size", 15),
        # several test rows per patient: resample and permute whole patients (scores.csv carries patient_id)
        clusters="patient_id" if settings.get("cluster_resampling", True) else None,
        threshold_method=settings.get("threshold_method", "sensitivity"),
        target_sensitivity=settings.get("target_sensitivity", 0.9),
        n_bins=settings.get("calibration_bins", 10),
        n_boot=settings.get("n_bootstrap", 1000),
        n_perm=settings.get("n_permutations", settings.get("n_bootstrap", 1000)),
        level=settings.get("ci_level", 0.95),
        seed=settings.get("bootstrap_seed", 0),  # one seed for all runs: replicates pair across ε
    )
    keys = {
        "dataset": run["dataset"],
        "model": run["model"],
        "method": run.get("method", "dpsgd"),
        "epsilon": float(run["epsilon"]),
        "seed": run["seed"],
    }
    metric_rows = wide_metric_rows(report)
    columns = metric_columns()  # read now: a metric registered after import has its columns too
    metrics = pd.DataFrame(metric_rows).assign(
        **keys,
        n_test=int((table["split"] == "test").sum()),
        **{k: run[k] for k in columns if k in run and k not in keys},
    )
    metrics = metrics[[c for c in columns if c in metrics.columns]]
    subgroups = subgroup_rows(report.groups).assign(**keys)
    subgroups = subgroups[[*SUBGROUP_COLUMNS, *(c for c in subgroups.columns if c not in SUBGROUP_COLUMNS)]]
    gaps = report.gaps.assign(**keys)
    replicates = report.gap_replicates.assign(**keys)
    reliability = report.reliability.assign(**keys)
    tables = {
        "metrics": metrics,
        "subgroups": subgroups,
        "gaps": gaps,
        "replicates": replicates,
        "reliability": reliability,
    }
    for name, frame in tables.items():
        frame.to_csv(outputs[name], index=False)
    return tables
