"""DP synthesis through the real Snakefile: plan, synthesize (in .venv-synth), train, evaluate, audit, report."""

import subprocess
import sys

import pandas as pd
import pytest
from tiny_grid import REPO, snakemake

SYNTH_GRID = {
    "name": "tiny_synthesis",
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {"diabetes": {}},
    "models": ["mlp"],
    "methods": ["dpsgd", "synth_mst", "synth_aim"],
    "epsilons": [1, "inf"],
    "seeds": [0],
    "training": {"epochs": 2, "batch_size": 32},
    "synthesis": {"aim_rounds_per_column": 1},
    "evaluation": {"n_bootstrap": 100, "min_group_size": 10, "min_class_size": 5},
    "audit": {"attacks": ["loss"], "n_bootstrap": 50},
}


@pytest.mark.integration
@pytest.mark.slow
def test_the_synthesis_grid_runs_end_to_end(tmp_path):
    done = snakemake(tmp_path, SYNTH_GRID)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = pd.read_csv(tmp_path / "results/summary/metrics.csv")
    cells = set(zip(metrics["method"], metrics["epsilon"].astype(str)))
    assert {("synth_mst", "1.0"), ("synth_aim", "1.0"), ("dpsgd", "1.0"), ("dpsgd", "inf")} <= cells
    # the synthesis methods share dpsgd's ε = ∞ arm (the model on the real rows): no run of their own
    assert ("synth_mst", "inf") not in cells
    fidelity = pd.read_csv(tmp_path / "results/summary/synthesis_fidelity.csv")
    assert set(fidelity["method"]) == {"synth_mst", "synth_aim"}
    assert {"group", "marginal"} == set(fidelity["kind"])
    # every card, the synthesis ones included, replays under dp-accounting alone
    replay = subprocess.run(
        [sys.executable, str(REPO / "tools/replay_ledgers.py"), str(tmp_path / "results/runs")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout
    synthesis_lines = [line for line in replay.stdout.splitlines() if "/synth_" in line]
    assert len(synthesis_lines) == 2 and all(": rdp epsilon" in line for line in synthesis_lines), replay.stdout
    audit = pd.read_csv(tmp_path / "results/summary/audit.csv")
    assert {"synth_mst", "synth_aim"} <= set(audit["method"])
    html = (tmp_path / "report/index.html").read_text()
    assert "DP synthetic data: what the synthetic rows keep" in html
