"""metrics.csv's ``mia_*`` columns and subgroups.csv's ``mia_auroc`` are each method's own audit, joined by method.

Two methods whose runs leak differently are audited by the real stage; a tuned arm (never audited) and a
label-DP method (whose membership attacks are skipped) are in metrics.csv too. Each row must carry its own
method's loss-attack figures, or none, in metrics.csv, subgroups.csv and the report's "Methods side by side".
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from dpfair.audit.stage import audit_cell, stack_audit_tables
from dpfair.report.fmt import number
from dpfair.report.sections import method_rows
from dpfair.tables.columns import LOSS_METRIC_COLUMNS, join_loss_columns
from dpfair.tables.summary import read_summary, summarise
from scipy.special import expit

KEYS = {"dataset": "toy", "model": "mlp", "epsilon": 1.0, "seed": 0}
#: how far the run's logits favour its training rows: the two audited methods leak differently
LEAK = {"dpsgd": 1.5, "dpsgd_f": 0.1, "label_rr": 1.5}
UNIT = {"dpsgd": ("record", "add_or_remove_one"), "dpsgd_f": ("record", "add_or_remove_one")}
UNIT["label_rr"] = ("label", "replace_one")
METHODS = ["dpsgd", "dpsgd_f", "label_rr", "dpsgd-tuned"]  # the tuned arm is never audited (common.smk)
SETTINGS = {"attacks": ["loss"], "confidence": 0.95, "n_bootstrap": 50}


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """The audit stage on the audited methods' cells, stacked, then summarised with every method's metrics."""
    folder = tmp_path_factory.mktemp("join")
    rng = np.random.default_rng(0)
    n = 600
    split = np.array(["train"] * 300 + ["val"] * 150 + ["test"] * 150)
    label = rng.integers(0, 2, n)
    sex = np.where(np.arange(n) % 3 == 0, "F", "M")
    (folder / "meta.json").write_text(json.dumps({"card": {"sensitive_attributes": ["sex"]}}))
    tables, rocs = [], []
    for method, leak in LEAK.items():
        cell = folder / method
        cell.mkdir()
        logit = (2 * label - 1) * (rng.normal(0.5, 1.0, n) + leak * (split == "train"))
        frame = pd.DataFrame({"split": split, "label": label, "score": expit(logit), "logit": logit, "sex": sex})
        frame.to_csv(cell / "scores.csv", index=False)
        (cell / "run.json").write_text(json.dumps({"dataset": "toy", "model": "mlp", "seed": 0}))
        unit, relation = UNIT[method]
        card = {"target_epsilon": 1.0, "delta": 1e-5, "unit": unit, "neighboring_relation": relation}
        (cell / "card.json").write_text(json.dumps(card))
        audit_cell(
            runs=[{"scores": cell / "scores.csv", "record": cell / "run.json", "card": cell / "card.json"}],
            meta=folder / "meta.json",
            settings=SETTINGS,
            outputs={"table": cell / "audit.csv", "roc": cell / "roc.csv"},
            method=method,
        )
        tables.append(cell / "audit.csv")
        rocs.append(cell / "roc.csv")
    stacked = {"table": folder / "audit.csv", "roc": folder / "audit_roc.csv"}
    audit = stack_audit_tables(tables=tables, rocs=rocs, outputs=stacked)

    metrics = pd.DataFrame(
        [
            {**KEYS, "method": m, "attribute": "sex", "auroc": 0.7, "privacy_unit": "record", "delta": 1e-5}
            for m in METHODS
        ]
    )
    subgroups = pd.DataFrame([{**KEYS, "method": m, "attribute": "sex", "group": g} for m in METHODS for g in "FM"])
    inputs = {}
    for name, frame in (
        ("metrics", metrics),
        ("subgroups", subgroups),
        ("gaps", pd.DataFrame(columns=[*KEYS, "method", "attribute", "metric", "gap"])),
        ("reliability", pd.DataFrame(columns=[*KEYS, "method", "bin"])),
        ("replicates", pd.DataFrame(columns=[*KEYS, "method", "attribute", "metric", "gap"])),
    ):
        frame.to_csv(folder / f"in_{name}.csv", index=False)
        inputs[name] = [folder / f"in_{name}.csv"]
    outputs = {n: folder / f"{n}.csv" for n in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")}
    summarise(inputs=inputs, outputs=outputs, audit=stacked["table"])
    return {
        "audit": audit,
        "metrics": read_summary(outputs["metrics"]),
        "subgroups": read_summary(outputs["subgroups"]),
    }


def loss_figures(audit, method):
    """The loss attack's overall figures of ``method``'s run in audit.csv, as metrics.csv names them."""
    rows = audit.query("attack == 'loss' and method == @method and attribute.isna()")
    return {LOSS_METRIC_COLUMNS[m]: v for m, v in zip(rows["metric"], rows["value"]) if m in LOSS_METRIC_COLUMNS}


def test_each_method_carries_its_own_audit_and_an_unaudited_one_none(summary):
    audit, metrics = summary["audit"], summary["metrics"]
    assert len(metrics) == len(METHODS)  # one row per method: the join duplicated nothing
    by_method = metrics.set_index("method")
    dpsgd, mitigation = loss_figures(audit, "dpsgd"), loss_figures(audit, "dpsgd_f")
    assert dpsgd["mia_auroc"] > mitigation["mia_auroc"] + 0.1  # the two audits differ
    for method, figures in (("dpsgd", dpsgd), ("dpsgd_f", mitigation)):
        assert set(figures) == set(LOSS_METRIC_COLUMNS.values())
        for column, value in figures.items():
            got = by_method.loc[method, column]
            if column == "mia_bound_violated":
                assert str(got).lower() == str(bool(value)).lower(), (method, column)
            elif math.isnan(value):
                assert pd.isna(got), (method, column)
            else:
                assert got == pytest.approx(value), (method, column)
    for method in ("dpsgd-tuned", "label_rr"):  # never audited / its membership attack skipped
        assert by_method.loc[method, list(LOSS_METRIC_COLUMNS.values())].isna().all(), method


def test_subgroups_carry_their_own_methods_group_auroc(summary):
    audit, subgroups = summary["audit"], summary["subgroups"]
    assert len(subgroups) == 2 * len(METHODS)
    groups = audit.query("attack == 'loss' and metric == 'auroc' and attribute == 'sex'")
    expected = {(m, g): v for m, g, v in zip(groups["method"], groups["group"], groups["value"])}
    assert {m for m, _ in expected} == {"dpsgd", "dpsgd_f"}
    for row in subgroups.to_dict("records"):
        key = (row["method"], row["group"])
        if key in expected:
            assert row["mia_auroc"] == pytest.approx(expected[key]), key
        else:
            assert pd.isna(row["mia_auroc"]), key


def test_methods_side_by_side_prints_each_methods_own_attack_auroc(summary):
    audit, metrics = summary["audit"], summary["metrics"]
    shown = {r["method"]: r["mia"] for r in method_rows(metrics)}
    own = {m: loss_figures(audit, m)["mia_auroc"] for m in ("dpsgd", "dpsgd_f")}
    assert shown["dpsgd"] != shown["dpsgd_f"]
    assert shown["dpsgd"] == number(own["dpsgd"]) and shown["dpsgd_f"] == number(own["dpsgd_f"])
    assert shown["dpsgd-tuned"] == "—" and shown["label_rr"] == "—"


def test_join_keeps_methods_apart_without_the_stage():
    """The join alone: the same run keys under two methods get two different figures, not one per ε."""
    audit = pd.DataFrame(
        [
            {**KEYS, "method": m, "attack": "loss", "metric": "auroc", "value": v, "attribute": "", "group": ""}
            for m, v in (("dpsgd", 0.61), ("dpsgd_patient", 0.52))
        ]
    )
    metrics = pd.DataFrame(
        [{**KEYS, "method": m, "attribute": "none"} for m in ("dpsgd", "dpsgd_patient", "dpsgd-tuned")]
    )
    merged, _ = join_loss_columns(metrics=metrics, subgroups=None, audit=audit)
    assert merged["mia_auroc"].tolist()[:2] == [0.61, 0.52] and math.isnan(merged["mia_auroc"].iloc[2])
    assert len(merged) == 3
