"""Speed benchmark: each DP-SGD path's step time and peak memory against the non-private step.

All paths train copies of one initialised model on the same fixed batch. Timing interleaves them step by
step (rotating the order each round) after warm-up, in one process, so drift in machine load reaches all
paths alike; the median and quartiles of the timed steps are reported. Peak memory is measured per path
afterwards (on the CPU in a fresh process per model), one path at a time, over a path's second step (the first sets up lazy state: optimizer moments,
book-keeping's strategy timing): on CUDA as ``max_memory_allocated``, on the CPU as the process's peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``), each less the memory in use before the
path's model was built. Both include parameters, gradients, optimizer state and activations.

Times are figures to read, never to assert: they depend on the machine and its load.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import opacus
import pandas as pd
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from dpfair.models import build_model, resolve_device
from dpfair.training.steps import PRIVATE_MODES, Trainer, make_nonprivate, make_private, resolve_mode

log = logging.getLogger(__name__)

SPEED_COLUMNS = [
    "dataset",
    "model",
    "input_size",
    "batch",
    "mode",
    "exact",
    "device",
    "threads",
    "torch_version",
    "opacus_version",
    "timed_steps",
    "step_seconds_median",
    "step_seconds_p25",
    "step_seconds_p75",
    "peak_memory_mb",
    "time_ratio",
    "memory_ratio",
    "is_default",
    "status",
]


def measure_speed(
    *,
    model_name: str,
    modality: str,
    input_shape: Sequence[int],
    batch_size: int,
    modes: Sequence[str] = PRIVATE_MODES,
    default_mode: str = "auto",
    warmup_steps: int = 3,
    timed_steps: int = 15,
    device: torch.device | str = "cpu",
    dataset: str = "",
    seed: int = 0,
) -> pd.DataFrame:
    """One row per path (``nonprivate`` first), with the columns of ``SPEED_COLUMNS``.

    A path that cannot run this model (Opacus's ``ew`` on some layers, say) gets its reason in
    ``status`` and NaN figures instead of failing the benchmark.

    Example:
        >>> table = measure_speed(model_name="mlp", modality="tabular", input_shape=(8,), batch_size=16,
        ...                       modes=["bookkeeping", "hooks"], warmup_steps=1, timed_steps=3)
        >>> table[["mode", "is_default", "status"]].values.tolist()
        [['nonprivate', False, 'ok'], ['bookkeeping', True, 'ok'], ['hooks', False, 'ok']]
    """
    device = torch.device(device)
    case = _Case(model_name, modality, tuple(input_shape), batch_size, device, seed)
    default = resolve_mode(default_mode, case.initial)
    paths = ["nonprivate", *dict.fromkeys(modes)]
    times, status = _time_interleaved(paths, case.build, case.x, case.y, warmup_steps, timed_steps, device)
    ok_paths = [p for p in paths if status[p] == "ok"]
    if device.type == "cuda":
        memory = {p: _peak_memory_mb(case.build, p, case.x, case.y, device) for p in ok_paths}
    else:
        memory = _cpu_memory_in_fresh_process(model_name, modality, tuple(input_shape), batch_size, seed, ok_paths)
    memory = {p: memory.get(p, math.nan) for p in paths}

    rows = []
    base_time = statistics.median(times["nonprivate"]) if times["nonprivate"] else math.nan
    for path in paths:
        ok = status[path] == "ok"
        q25, q50, q75 = np.percentile(times[path], [25, 50, 75]) if ok else (math.nan,) * 3
        rows.append(
            {
                "dataset": dataset,
                "model": model_name,
                "input_size": "x".join(map(str, input_shape)),
                "batch": batch_size,
                "mode": path,
                "exact": True,
                "device": _device_name(device),
                "threads": torch.get_num_threads(),
                "torch_version": torch.__version__,
                "opacus_version": opacus.__version__,
                "timed_steps": timed_steps if ok else 0,
                "step_seconds_median": q50,
                "step_seconds_p25": q25,
                "step_seconds_p75": q75,
                "peak_memory_mb": memory[path],
                "time_ratio": _ratio(q50, base_time),
                "memory_ratio": _ratio(memory[path], memory["nonprivate"]),
                "is_default": path == default,
                "status": status[path],
            }
        )
    return pd.DataFrame(rows, columns=SPEED_COLUMNS)


def benchmark_cells(
    *,
    cells: Sequence[dict],
    data: Sequence[str | Path],
    meta: Sequence[str | Path],
    settings: dict,
    device: str = "auto",
    output: str | Path,
) -> pd.DataFrame:
    """Run ``measure_speed`` for each cell (dataset, model, batch_size, clipping_backend) and write a CSV.

    ``data``/``meta`` are the prepared datasets' ``data.pt``/``dataset.json`` files, in any order; the
    input shape comes from the tensors, so each model is measured at the size it trains at.
    """
    shapes = {}
    for data_path, meta_path in zip(data, meta):
        info = json.loads(Path(meta_path).read_text())
        x = torch.load(data_path, weights_only=True)["x"]
        shapes[info["name"]] = (tuple(x.shape[1:]), info["modality"])
    tables = []
    for cell in cells:
        input_shape, modality = shapes[cell["dataset"]]
        log.info("speed: %s / %s, input %s, batch %d", cell["dataset"], cell["model"], input_shape, cell["batch_size"])
        table = measure_speed(
            model_name=cell["model"],
            modality=modality,
            input_shape=input_shape,
            batch_size=cell["batch_size"],
            modes=settings["modes"],
            default_mode=cell["clipping_backend"],
            warmup_steps=settings["warmup_steps"],
            timed_steps=settings["timed_steps"],
            device=resolve_device(device),
            dataset=cell["dataset"],
        )
        log.info(
            "\n%s", table[["mode", "step_seconds_median", "peak_memory_mb", "time_ratio", "memory_ratio", "status"]]
        )
        tables.append(table)
    result = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=SPEED_COLUMNS)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(output, index=False)
    return result


def _ratio(value: float, reference: float) -> float:
    # a tiny model's step can stay within resident pages already held: no rise, no ratio
    return value / reference if reference > 0 else math.nan


class _Case:
    """One model, its fixed batch, and a builder for each path's trainer on a copy of the same weights."""

    def __init__(self, model_name, modality, input_shape, batch_size, device, seed):
        torch.manual_seed(seed)
        self.x = torch.randn(batch_size, *input_shape, device=device)
        self.y = (torch.rand(batch_size, device=device) < 0.5).float()
        self.initial = build_model(model_name, input_shape=input_shape, modality=modality).to(device)
        self.batch_size = batch_size

    def build(self, mode: str) -> Trainer:
        model = copy.deepcopy(self.initial)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(self.x, self.y), batch_size=self.batch_size)
        if mode == "nonprivate":
            return make_nonprivate(model=model, optimizer=optimizer, data_loader=loader)
        return make_private(
            engine=PrivacyEngine(),
            model=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            mode=mode,
        )


def _cpu_memory_in_fresh_process(model_name, modality, input_shape, batch_size, seed, paths) -> dict[str, float]:
    # A process of its own, where glibc returns every large block when it is freed: in the timing
    # process, heap pages one path freed would hide the next path's peak (and the setting that prevents
    # it slows every later step, so it must not touch the timings).
    job = {
        "model_name": model_name,
        "modality": modality,
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "seed": seed,
        "paths": list(paths),
        "threads": torch.get_num_threads(),
    }
    result = subprocess.run(
        [sys.executable, "-m", "dpfair.training.speed", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=3600,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])),
        },
    )
    if result.returncode != 0:
        log.warning("memory measurement failed: %s", result.stderr[-2000:])
        return {}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _memory_main(job: dict) -> dict[str, float]:
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: large blocks are unmapped on free
    except OSError:
        pass
    torch.set_num_threads(job["threads"])
    case = _Case(
        job["model_name"],
        job["modality"],
        tuple(job["input_shape"]),
        job["batch_size"],
        torch.device("cpu"),
        job["seed"],
    )
    for path in job["paths"]:  # one-off costs (kernel caches, thread pools) must not land on the first path
        trainer = case.build(path)
        trainer.step(case.x, case.y)
        trainer.close()
    del trainer
    return {p: _peak_memory_mb(case.build, p, case.x, case.y, torch.device("cpu")) for p in job["paths"]}


def _time_interleaved(paths, build, x, y, warmup_steps, timed_steps, device):
    trainers, status = {}, {}
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainers[path] = build(path)
                trainers[path].step(x, y)  # fails here, not mid-timing, if the path cannot run the model
            status[path] = "ok"
        except Exception as error:  # a path unable to run this model is a result, not a crash
            status[path] = f"unsupported: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
            trainers.pop(path, None)
    times = {p: [] for p in paths}
    live = [p for p in paths if p in trainers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for round_ in range(warmup_steps + timed_steps):
            shift = round_ % len(live)
            for path in live[shift:] + live[:shift]:
                _sync(device)
                start = time.perf_counter()
                trainers[path].step(x, y)
                _sync(device)
                if round_ >= warmup_steps:
                    times[path].append(time.perf_counter() - start)
    for trainer in trainers.values():
        trainer.close()
    return times, status


def _peak_memory_mb(build: Callable[[str], Trainer], path: str, x, y, device: torch.device) -> float:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device.type == "cuda":
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated(device)
            trainer = build(path)
            trainer.step(x, y)  # first step: lazy state (optimizer moments, book-keeping's strategy timing)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            trainer.step(x, y)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
        else:
            _release_freed_memory()
            before = _rss_kb("VmRSS")
            trainer = build(path)
            trainer.step(x, y)
            _release_freed_memory()
            if not _reset_peak_rss():
                return math.nan
            trainer.step(x, y)
            peak = (_rss_kb("VmHWM") - before) * 1024
    trainer.close()
    del trainer
    return peak / 2**20


def _release_freed_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


if __name__ == "__main__":  # the memory-measuring child process
    import warnings as _warnings

    _warnings.simplefilter("ignore")
    print(json.dumps(_memory_main(json.loads(sys.argv[1]))))
