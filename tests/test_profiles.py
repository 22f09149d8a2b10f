"""The shipped profiles: the GPU profile shares one card between train jobs by their memory claims.

No GPU is needed: a ``sitecustomize`` makes ``torch.cuda.is_available()`` true in the Snakemake process of
a dry run, which is all that decides the train jobs' resources.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dpfair.pipeline.benchmark import load_benchmark
from dpfair.pipeline.gpu import train_gpu_memory_mb

REPO = Path(__file__).resolve().parents[1]


def test_gpu_profile_runs_several_small_train_jobs_per_card(repo):
    profile = yaml.safe_load((repo / "profiles/gpu/config.yaml").read_text())
    slots, memory = profile["resources"]["gpu"], profile["resources"]["gpu_mem_mb"]
    assert slots >= 2
    benchmark = load_benchmark(repo / "benchmarks/default.yaml")
    for dataset, model in benchmark.cells():
        params = benchmark.dataset_settings(dataset).get("params", {})
        claim = train_gpu_memory_mb(
            model=model, batch_size=benchmark.training(dataset).batch_size, image_size=params.get("image_size")
        )
        assert min(slots, memory // claim) >= 2, (dataset, model, claim)
    # a large image model claims more than a small one at the same batch
    assert train_gpu_memory_mb(model="densenet121", batch_size=64, image_size=64) > 2 * train_gpu_memory_mb(
        model="cnn", batch_size=64, image_size=64
    )


@pytest.mark.integration
def test_train_jobs_claim_a_gpu_and_their_memory_when_cuda_is_there(tmp_path):
    fake = tmp_path / "fake_cuda"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text("import torch\ntorch.cuda.is_available = lambda: True\n")
    env = {**os.environ, "PYTHONPATH": f"{fake}{os.pathsep}{REPO / 'workflow'}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "-n",
            "--workflow-profile",
            str(REPO / "profiles/gpu"),
            "--configfile",
            str(REPO / "benchmarks/chexpert.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    claims = [
        dict(re.findall(r"(gpu|gpu_mem_mb)=(\d+)", line))
        for line in result.stdout.splitlines()
        if "resources:" in line and "gpu_mem_mb" in line
    ]
    assert claims and all(c["gpu"] == "1" for c in claims)
    limit = yaml.safe_load((REPO / "profiles/gpu/config.yaml").read_text())["resources"]["gpu_mem_mb"]
    mems = sorted({int(c["gpu_mem_mb"]) for c in claims})
    assert max(mems) == limit  # DenseNet-121 at 128 px, batch 512: more than the card, so it runs alone
    assert min(mems) <= limit // 2  # the small CNN shares the card
