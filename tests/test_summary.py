"""Summary and report from run outputs, including a grid whose datasets have no sensitive attributes."""

import json

import numpy as np
import pandas as pd
from dpfair.pipeline.evaluation import evaluate_run
from dpfair.report.page import render_report
from dpfair.tables.summary import read_summary, summarise

NAMES = ("metrics", "subgroups", "gaps", "replicates", "reliability")


def fake_run(folder, *, epsilon, seed, attributes=()):
    """Files of one finished run, as train_run writes them (scores of every row, run.json)."""
    rng = np.random.default_rng(seed)
    n = 300
    labels = rng.integers(0, 2, n)
    table = pd.DataFrame({"row": np.arange(n), "split": np.repeat(["train", "val", "test"], n // 3), "label": labels})
    for a in attributes:
        table[a] = rng.choice(["g1", "g2"], n)
    table["score"] = 1 / (1 + np.exp(-(labels + rng.normal(0, 1, n))))
    folder.mkdir(parents=True)
    table.to_csv(folder / "scores.csv", index=False)
    private = not np.isinf(epsilon)
    spent = epsilon * 0.99 if private else "inf"
    record = {
        "dataset": "d",
        "model": "m",
        "epsilon": epsilon if private else "inf",
        "seed": seed,
        "delta": 1e-5,
        "epsilon_spent": spent,
        "epsilon_rdp": spent,
        "epsilon_prv": spent,
        "epsilon_pld": spent,
        "noise_multiplier": 1.0 if private else 0.0,
        "max_grad_norm": 1.0 if private else None,
        "sample_rate": 0.1,
        "expected_batch_size": 10.0,
        "sampling": "poisson",
        "epochs": 1,
        "steps": 10,
        "accountant": "prv" if private else "none",
        "n_train": 100,
        "privacy_unit": "record",
        "train_seconds": 0.1,
        "device": "cpu",
    }
    (folder / "run.json").write_text(json.dumps(record))
    return {name: folder / f"{name}.csv" for name in NAMES}


def run_grid(tmp_path, attributes):
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
        for seed in (0, 1):
            folder = tmp_path / f"run-{eps}-{seed}"
            out = fake_run(folder, epsilon=eps, seed=seed, attributes=attributes)
            evaluate_run(
                scores=folder / "scores.csv",
                record=folder / "run.json",
                meta=meta,
                settings={"n_bootstrap": 200},
                outputs=out,
            )
            outputs.append(out)
    summary = {
        name: tmp_path / f"summary_{name}.csv"
        for name in ("metrics", "subgroups", "gaps", "gap_changes", "reliability")
    }
    summarise(inputs={name: [o[name] for o in outputs] for name in NAMES}, outputs=summary)
    return summary


def test_grid_without_sensitive_attributes_summarises_and_reports(tmp_path):
    summary = run_grid(tmp_path, attributes=())
    metrics = read_summary(summary["metrics"])
    assert len(metrics) == 4 and set(metrics["attribute"]) == {"none"}
    assert read_summary(summary["gaps"]).empty and read_summary(summary["gap_changes"]).empty
    html = render_report(
        metrics=summary["metrics"],
        subgroups=summary["subgroups"],
        dataset_meta=[tmp_path / "dataset.json"],
        benchmark={
            "name": "t",
            "description": "",
            "epsilons": [1, "inf"],
            "seeds": [0, 1],
            "models": ["m"],
            "evaluation": {"min_group_size": 10, "ci_level": 0.9},
        },
        output=tmp_path / "index.html",
        gap_changes=summary["gap_changes"],
        reliability=summary["reliability"],
    )
    assert "no sensitive attributes, so there are no subgroup metrics" in html
    assert "test AUROC, mean [90% CI]" in html  # the configured level, not a hard-coded 95%


def test_grid_with_attributes_gives_gap_changes_per_finite_epsilon(tmp_path):
    summary = run_grid(tmp_path, attributes=("sex",))
    changes = read_summary(summary["gap_changes"])
    assert set(changes["epsilon"]) == {1.0} and changes["verdict"].str.startswith("DP at ε = 1").all()


def test_report_renders_without_the_optional_tables(tmp_path):
    summary = run_grid(tmp_path, attributes=("sex",))
    html = render_report(
        metrics=summary["metrics"],
        subgroups=summary["subgroups"],
        dataset_meta=[tmp_path / "dataset.json"],
        benchmark={
            "name": "t",
            "description": "",
            "epsilons": [1, "inf"],
            "seeds": [0, 1],
            "models": ["m"],
            "evaluation": {"min_group_size": 10, "ci_level": 0.95},
        },
        output=tmp_path / "index.html",
    )
    assert "test AUROC" in html and 'id="speed"' not in html and 'id="compute-cost"' not in html
