"""Federated DP through the real Snakefile: Flower simulations as train jobs, then evaluation, audit, report."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from tiny_grid import REPO, snakemake

FEDERATED_GRID = {
    "name": "tiny_federated",
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {"synthetic_lesions": {"params": {"n_samples": 600, "image_size": 16, "n_sites": 3}}},
    "models": ["cnn"],
    "methods": ["dpsgd", "fed_dpsgd", "fed_dp_site"],
    "epsilons": [3, "inf"],
    "seeds": [0],
    "training": {"epochs": 2, "batch_size": 64},
    "federated": {"rounds": 2, "local_epochs": 1},
    "evaluation": {"n_bootstrap": 100, "min_group_size": 10, "min_class_size": 5},
    "audit": {"attacks": ["loss"], "n_bootstrap": 50},
}


@pytest.mark.integration
@pytest.mark.slow
def test_the_federated_grid_runs_end_to_end(tmp_path):
    done = snakemake(tmp_path, FEDERATED_GRID)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = pd.read_csv(tmp_path / "results/summary/metrics.csv")
    cells = set(zip(metrics["method"], metrics["epsilon"].astype(str)))
    assert {
        ("dpsgd", "3.0"),
        ("dpsgd", "inf"),
        ("fed_dpsgd", "3.0"),
        ("fed_dpsgd", "inf"),
        ("fed_dp_site", "3.0"),
    } <= cells
    assert ("fed_dp_site", "inf") not in cells  # its ε = ∞ arm is fed_dpsgd's FedAvg, trained once
    # centralised against federated at every ε, ∞ included (the cost of federation alone), on the site attribute
    comparison = pd.read_csv(tmp_path / "results/summary/method_comparison.csv")
    rows = set(zip(comparison["method"], comparison["epsilon"].astype(str)))
    assert rows == {("fed_dpsgd", "3.0"), ("fed_dp_site", "3.0"), ("fed_dpsgd", "inf")}
    assert set(comparison["attribute"]) == {"site"} and comparison["auroc_diff_ci_low"].notna().all()
    run_dir = tmp_path / "results/runs/synthetic_lesions/cnn"
    record = json.loads((run_dir / "fed_dpsgd/eps-3/seed-0/run.json").read_text())
    assert record["federated"]["rounds"] == 2 and [s["site"] for s in record["federated"]["sites"]] == ["A", "B", "C"]
    card = json.loads((run_dir / "fed_dp_site/eps-3/seed-0/privacy_card.json").read_text())
    assert card["unit"] == "site" and card["n_units"] == 3 and card["federated"]["flower_accountant"]["releases"] == 2
    replay = subprocess.run(
        [sys.executable, str(REPO / "tools/replay_ledgers.py"), str(tmp_path / "results/runs")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout
    assert "3 ledgers replayed" in replay.stdout and "(site " in replay.stdout
    audit = pd.read_csv(tmp_path / "results/summary/audit.csv")
    assert {"fed_dpsgd", "fed_dp_site"} <= set(audit["method"])
    html = (tmp_path / "report/index.html").read_text()
    assert "fed_dp_site" in html and "the cost of federation alone" in html
