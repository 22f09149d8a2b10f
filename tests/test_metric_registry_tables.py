"""A metric is one registry entry: the Brier score of docs/adding-a-metric.md reaches every table and the report.

The metric is registered by running the document's code block as a temporary module, and unregistered
after each test, so the document is what is tested.
"""

import contextlib
import dataclasses
import importlib.util
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from dpfair.fairness import (
    DerivedGap,
    Metric,
    evaluate_fairness,
    gap_changes,
    gap_metric_names,
    get_gap,
    get_metric,
    metric_names,
    register_derived_gap,
    register_metric,
    stratified_bootstrap_weights,
    unregister_metric,
    weighted_metrics,
)
from dpfair.fairness.gap_changes import PrimaryFamily
from dpfair.pipeline.evaluation import evaluate_run
from dpfair.report.page import render_report
from dpfair.tables.columns import metric_columns, metric_rows
from dpfair.tables.summary import read_summary, summarise
from sklearn.metrics import brier_score_loss
from test_summary import NAMES, fake_run  # a finished run's files, as train_run writes them

BRIER_COLUMNS = ["brier", "brier_ci_low", "brier_ci_high", "brier_gap", "brier_gap_ci_low", "brier_gap_ci_high"]


@contextlib.contextmanager
def doc_metric(repo, tmp_path):
    """The Brier score registered by the document's code block, imported from a temporary file."""
    doc = (repo / "docs" / "adding-a-metric.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "register_metric(" in b)
    path = tmp_path / "brier_metric.py"
    path.write_text(block)
    spec = importlib.util.spec_from_file_location("brier_metric", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the metric
    try:
        yield get_metric("brier")
    finally:
        unregister_metric("brier")


@pytest.fixture
def brier(repo, tmp_path):
    before = gap_metric_names()
    with doc_metric(repo, tmp_path) as metric:
        yield metric
    assert gap_metric_names() == before


def small_scores(seed=0, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    site = rng.choice(["A", "B"], n)
    score = 1 / (1 + np.exp(-(2 * y - 1) * np.where(site == "A", 1.5, 0.7) - rng.normal(0, 1, n)))
    return pd.DataFrame(
        {
            "row": range(n),
            "split": np.where(np.arange(n) < n // 4, "val", "test"),
            "label": y,
            "site": site,
            "score": score,
        }
    )


def run_grid(tmp_path, attributes=("sex",)):
    """Two ε × one seed of small runs through evaluate_run and the summary (as tests/test_summary.py)."""
    meta = tmp_path / "dataset.json"
    card = {
        "sensitive_attributes": list(attributes),
        "task": "t",
        "outcome": "o",
        "source": "s",
        "homepage": "h",
        "license": "l",
        "citation": "c",
    }
    meta.write_text(
        json.dumps(
            {
                "name": "d",
                "card": card,
                "min_group_size": 10,
                "n": {"train": 100, "val": 100, "test": 100},
                "prevalence": {"train": 0.5, "val": 0.5, "test": 0.5},
                "split": "stratified",
                "privacy_unit": "record",
                "delta": 1e-5,
                "preprocessing": "none",
                "warnings": [],
                "group_sizes": {a: {"train": {}, "val": {}, "test": {"g1": 50, "g2": 50}} for a in attributes},
            }
        )
    )
    outputs = []
    for eps in (1.0, np.inf):
        folder = tmp_path / f"run-{eps}"
        out = fake_run(folder, epsilon=eps, seed=0, attributes=attributes)
        evaluate_run(
            scores=folder / "scores.csv",
            record=folder / "run.json",
            meta=meta,
            settings={"n_bootstrap": 100},
            outputs=out,
        )
        outputs.append(out)
    summary = {
        name: tmp_path / f"summary_{name}.csv"
        for name in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")
    }
    summarise(inputs={name: [o[name] for o in outputs] for name in NAMES}, outputs=summary)
    return summary, meta


def test_the_doc_entry_is_computed_per_group_overall_and_as_a_gap(brier):
    assert brier.name in metric_names() and brier.label == "Brier score"
    with pytest.raises(ValueError, match="already registered"):
        register_metric(brier)
    with pytest.raises(KeyError, match="known: .*'brier'"):
        get_metric("brierr")
    frame = small_scores()
    report = evaluate_fairness(scores=frame, attributes=["site"], n_boot=50)
    test = frame[frame["split"] == "test"]
    groups = report.groups.set_index(["group", "metric"])["value"]
    for site in ("A", "B"):
        part = test[test["site"] == site]
        assert groups[(site, "brier")] == pytest.approx(brier_score_loss(part["label"], part["score"]))
    overall = report.overall.set_index("metric")
    assert overall.loc["brier", "value"] == pytest.approx(brier_score_loss(test["label"], test["score"]))
    assert overall.loc["brier", "ci_low"] < overall.loc["brier", "value"] < overall.loc["brier", "ci_high"]
    gap = report.gaps.set_index("metric").loc["brier"]
    assert gap["gap"] == pytest.approx(abs(groups[("A", "brier")] - groups[("B", "brier")])) and 0 < gap["p_value"] <= 1
    assert gap["worst_group"] == pytest.approx(max(groups[("A", "brier")], groups[("B", "brier")]))  # lower is better
    # the kernel's contract: a bootstrap resample as case weights gives the value on the resampled rows
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    weights = stratified_bootstrap_weights(strata=test["site"], n_boot=3, seed=1)
    reps = weighted_metrics(y_true=y, score=s, weights=weights, metrics=("brier",))["brier"]
    for b, w in enumerate(weights):
        idx = np.repeat(np.arange(len(y)), w.astype(int))
        assert reps[b] == pytest.approx(brier_score_loss(y[idx], s[idx]))
    # the derived gap stays last in the gaps table, after the new metric
    assert report.gaps["metric"].drop_duplicates().tolist()[-2:] == ["brier", "equalized_odds"]


def test_brier_reaches_every_table_and_the_report(brier, tmp_path):
    summary, meta = run_grid(tmp_path)
    metrics = read_summary(summary["metrics"])
    assert set(BRIER_COLUMNS) <= set(metrics.columns)
    assert metrics["brier"].between(0, 1).all() and (metrics["brier_ci_low"] <= metrics["brier_ci_high"]).all()
    assert metrics["brier_gap"].notna().all()
    subgroups = read_summary(summary["subgroups"])
    assert {"brier", "brier_ci_low", "brier_ci_high"} <= set(subgroups.columns) and subgroups["brier"].notna().all()
    gaps = read_summary(summary["gaps"])
    brier_gaps = gaps[gaps["metric"] == "brier"].set_index("epsilon")
    assert len(brier_gaps) == 2
    # the wide table's gap is the long table's
    wide = metrics.set_index("epsilon")
    assert wide["brier_gap"].to_dict() == pytest.approx(brier_gaps["gap"].to_dict())
    changes = read_summary(summary["gap_changes"])
    row = changes[changes["metric"] == "brier"].iloc[0]
    assert row["family"] == "exploratory" and "gap in Brier score" in row["verdict"]
    html = render_report(
        metrics=summary["metrics"],
        subgroups=summary["subgroups"],
        dataset_meta=[meta],
        benchmark={
            "name": "t",
            "description": "",
            "epsilons": [1, "inf"],
            "seeds": [0],
            "models": ["m"],
            "evaluation": {"min_group_size": 10, "ci_level": 0.95},
        },
        output=tmp_path / "index.html",
        gap_changes=summary["gap_changes"],
        gaps=summary["gaps"],
    )
    assert ">Brier score<" in html  # its gap changes' row in the exploratory table


def test_a_new_metric_adds_its_columns_and_moves_none(repo, tmp_path):
    before = metric_columns()
    with doc_metric(repo, tmp_path):
        after = metric_columns()
    assert metric_columns() == before
    assert [c for c in after if c not in BRIER_COLUMNS] == before
    start = after.index("brier")
    assert after[start : start + len(BRIER_COLUMNS)] == BRIER_COLUMNS
    # a metric of the scores (not the operating point): with the others of its kind, before the threshold
    assert after.index("ece_gap_ci_high") < start < after.index("threshold")


def test_an_operating_point_metric_with_a_renamed_gap():
    fnr = Metric(
        "fnr",
        "FNR",
        "lower",
        True,
        "label",
        kernel=lambda c: 1 - c.tpr,
        reference=lambda y_true, y_score, **kw: 1 - get_metric("tpr").reference(y_true, y_score, **kw),
        wide_gap="fnr_diff",
    )
    before = metric_columns()
    register_metric(fnr)
    try:
        after = metric_columns()
        assert [c for c in after if not c.startswith("fnr")] == before
        # its value after the other operating-point values, its gap after the other gaps (at the end)
        assert after[after.index("balanced_accuracy_ci_high") + 1 :][:3] == ["fnr", "fnr_ci_low", "fnr_ci_high"]
        assert after[-3:] == ["fnr_diff", "fnr_diff_ci_low", "fnr_diff_ci_high"]
        report = evaluate_fairness(scores=small_scores(), attributes=["site"], n_boot=20)
        row = metric_rows(report)[0]
        assert row["fnr_diff"] == pytest.approx(report.gaps.set_index("metric").loc["fnr", "gap"])
        assert row["fnr_diff"] == pytest.approx(row["eod"])  # |1 − a − (1 − b)| = |a − b|
    finally:
        unregister_metric("fnr")


def test_column_clashes_are_refused():
    tpr = get_metric("tpr")
    with pytest.raises(ValueError, match=r"eod \(by 'tpr'\)"):
        register_metric(dataclasses.replace(tpr, name="tnr", wide_gap="eod"))
    with pytest.raises(ValueError, match="already registered"):
        register_derived_gap(DerivedGap("tpr", "TPR", ("tpr",)))
    with pytest.raises(ValueError, match="unknown"):
        register_derived_gap(DerivedGap("odds", "odds", ("tpr", "nope")))
    with pytest.raises(ValueError, match="derived gaps"):
        unregister_metric("fpr")  # equalized odds is combined from it
    register_metric(dataclasses.replace(tpr, name="delta", wide_gap=None))  # delta is a run column
    try:
        with pytest.raises(ValueError, match="repeated columns.*delta"):
            metric_columns()
    finally:
        unregister_metric("delta")
    assert "tnr" not in metric_names() and "odds" not in gap_metric_names()


def test_a_registered_metric_can_be_declared_the_primary_family(brier):
    """The primary family is what the benchmark declares (any registered metric), not the registry's flag."""
    keys = {"dataset": "d", "model": "m", "attribute": "site", "metric": "brier"}
    rng = np.random.default_rng(0)
    runs = [(e, s, g + rng.normal(0, 0.005)) for e, g in ((math.inf, -0.02), (1.0, -0.06)) for s in range(4)]
    est = pd.DataFrame(
        [
            {**keys, "epsilon": e, "seed": s, "gap": abs(g), "null_gap": 0.0, "signed_gap": g, "tau2": np.nan}
            | {"reference_group": "A", "comparison_group": "B"}
            for e, s, g in runs
        ]
    )
    noise = rng.normal(0, 0.005, 200)
    rep = pd.concat(
        [
            pd.DataFrame({**keys, "epsilon": e, "seed": s, "replicate": np.arange(200), "gap": abs(g) + noise}).assign(
                signed_gap=g + noise, tau2=np.nan
            )
            for e, s, g in runs
        ],
        ignore_index=True,
    )
    assert gap_changes(estimates=est, replicates=rep)["family"].tolist() == ["exploratory"]
    row = gap_changes(estimates=est, replicates=rep, primary={"d": PrimaryFamily(metric="brier")}).iloc[0]
    assert row["family"] == "primary" and row["verdict"].startswith("DP at ε = 1 widens the site gap in Brier score")


@pytest.mark.parametrize("name", gap_metric_names())
def test_each_registered_gap_metric_writes_its_declared_columns(name):
    """Contract of every entry: its declared metrics.csv columns are written and have a place in the order."""
    entry = get_gap(name)
    report = evaluate_fairness(scores=small_scores(), attributes=["site"], n_boot=20)
    row = metric_rows(report)[0]
    declared = [*entry.overall_columns, *entry.gap_columns]
    assert set(declared) <= set(row) and set(declared) <= set(metric_columns())
    gap = report.gaps.set_index("metric").loc[name]
    if entry.gap_name:
        assert [row[c] for c in entry.gap_columns] == pytest.approx([gap["gap"], gap["ci_low"], gap["ci_high"]])
    if entry.overall_columns:
        overall = report.overall.set_index("metric").loc[name]
        assert [row[c] for c in entry.overall_columns] == pytest.approx(
            overall[["value", "ci_low", "ci_high"]].tolist()
        )


def test_every_column_a_run_writes_has_a_place_in_the_order():
    """evaluate_run keeps only metric_columns(): a column metric_rows writes outside it would be lost."""
    report = evaluate_fairness(scores=small_scores(), attributes=["site"], n_boot=20)
    assert set(metric_rows(report)[0]) <= set(metric_columns())
