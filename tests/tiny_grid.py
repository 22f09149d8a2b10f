"""The tiny grid every end-to-end test shares: one dataset, one model, ε ∈ {1, inf}, one seed, one epoch."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]

TINY = {
    "name": "tiny",
    "datasets_dir": str(REPO / "datasets"),
    "datasets": {"synthetic_lesions": {"params": {"n_samples": 400, "image_size": 16}}},
    "models": ["cnn"],
    "epsilons": [1, "inf"],
    "seeds": [0],
    "training": {"epochs": 1, "batch_size": 64},
    "evaluation": {"n_bootstrap": 200, "min_group_size": 10, "min_class_size": 5},  # tiny groups: few positives
    "speed": {"enabled": True, "warmup_steps": 1, "timed_steps": 3, "modes": ["bookkeeping", "hooks"]},
    # a small one-run canary audit: the audit tests read results/summary/audit.csv
    "audit": {"canaries": 100, "n_bootstrap": 50},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    path = workdir / "benchmark.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), *args, "--configfile", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
