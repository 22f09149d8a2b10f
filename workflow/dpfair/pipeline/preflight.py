"""Checks that run when the workflow loads its config, before any job: a refusal here costs no output.

A refused setting found by a job instead (δ when the dataset is prepared, CUDA when a train job starts)
would first let Snakemake delete that job's old outputs, and a rerun of the valid benchmark would then
redo everything downstream. What can be known before any job is checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

from dpfair.errors import ConfigError, DpfairError
from dpfair.privacy.params import resolve_delta


def check_delta_against_prepared(benchmark, *, meta_path) -> None:
    """Refuse a numeric δ ≥ 1/n_train for every dataset already prepared with the same module and params.

    Args:
        benchmark: the validated :class:`dpfair.pipeline.benchmark.Benchmark`.
        meta_path: ``dataset name -> path`` of its prepared ``dataset.json`` (it may not exist yet: a dataset
            not prepared is checked when it is, before any of its training).
    """
    for name in benchmark.datasets:
        delta = benchmark.privacy(name)["delta"]
        path = Path(meta_path(name))
        if delta == "auto" or not path.exists():
            continue
        try:
            meta = json.loads(path.read_text())
            n_train = int(meta["n"]["train"])
            same = meta.get("module", name) == benchmark.module(name) and meta.get(
                "params", {}
            ) == benchmark.dataset_settings(name).get("params", {})
        except (ValueError, KeyError, TypeError):
            continue  # an unreadable record is rewritten by the prepare job, which checks δ itself
        if same:
            overridden = "delta" in benchmark.dataset_settings(name).get("privacy", {})
            key = f"datasets.{name}.privacy.delta" if overridden else "privacy.delta"
            try:
                resolve_delta(delta, n_train, where=key)
            except DpfairError as exc:
                raise ConfigError(f"{exc} (n_train from {path}); nothing was run or deleted") from exc


def check_device(device: str, *, cuda_available: bool) -> None:
    """Refuse a CUDA device on a machine without CUDA (call it where the jobs run: locally, or in a cluster job).

    Example:
        >>> check_device("cpu", cuda_available=False)
        >>> check_device("cuda", cuda_available=False)
        Traceback (most recent call last):
        ...
        dpfair.errors.ConfigError: device: 'cuda' but this machine has no CUDA GPU (torch.cuda.is_available() is False); use device: auto (CUDA when present, else CPU) or cpu, or run on a GPU node (profiles/gpu, profiles/slurm)
    """
    if device.startswith("cuda") and not cuda_available:
        raise ConfigError(
            f"device: {device!r} but this machine has no CUDA GPU (torch.cuda.is_available() is False); use "
            "device: auto (CUDA when present, else CPU) or cpu, or run on a GPU node (profiles/gpu, profiles/slurm)"
        )
