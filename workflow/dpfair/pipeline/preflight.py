"""Checks that run when the workflow loads its config, before any job: a refusal here costs no output.

A refused setting found by a job instead (δ when the dataset is prepared, CUDA when a train job starts, a
patient-level method on data without patient ids when the first train job loads it) would first let
Snakemake delete that job's old outputs, and a rerun of the valid benchmark would then redo everything
downstream. What can be known before any job is checked here, by :func:`check_benchmark`, which the
Snakefile (``workflow/rules/common.smk``) and ``dpfair config check`` both call after
:func:`dpfair.pipeline.benchmark.validate_config`: the two refuse the same configs with the same message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from dpfair.errors import ConfigError, DpfairError
from dpfair.privacy.params import resolve_delta

log = logging.getLogger(__name__)

#: A dataset's prepared record below the workflow's working directory (``PREPARED_DIR`` of common.smk).
PREPARED_META = "results/prepared/{dataset}/dataset.json"

#: Per process, whether a dataset module's loader, called with given params, returns patient ids.
_LOADED_PATIENT_IDS: dict[tuple[str, str], bool | None] = {}


def check_benchmark(
    benchmark,
    *,
    meta_path: Callable[[str], str | Path],
    load_data: bool = True,
    check_cuda: bool = True,
) -> None:
    """Every check of a validated benchmark that needs more than its config, before any job.

    In order: patient-level methods against the datasets' patient ids (:func:`check_patient_ids`), a numeric
    δ against the datasets already prepared (:func:`check_delta_against_prepared`), and a CUDA device against
    this machine (:func:`check_device`).

    Args:
        benchmark: the validated :class:`dpfair.pipeline.benchmark.Benchmark`.
        meta_path: ``dataset name -> path`` of its prepared ``dataset.json`` (it may not exist yet).
        load_data: load a dataset to learn whether it has patient ids where neither its card nor a prepared
            record says (false in a cluster job, whose submitting process checked already).
        check_cuda: check ``device: cuda`` against this machine (false on a cluster's submitting host, whose
            jobs run on GPU nodes).

    Raises:
        ConfigError: one line naming the key and the fix.
    """
    check_patient_ids(benchmark, meta_path=meta_path, load_data=load_data)
    check_delta_against_prepared(benchmark, meta_path=meta_path)
    device = benchmark.config["device"]
    if check_cuda and device.startswith("cuda"):
        import torch

        check_device(device, cuda_available=torch.cuda.is_available())


def check_patient_ids(benchmark, *, meta_path: Callable[[str], str | Path], load_data: bool = True) -> None:
    """Refuse a patient-level method (``unit = "patient"``, e.g. dpsgd_patient) on a dataset without patient ids.

    Whether a dataset has patient ids is read from its card where the card declares it (``patient_ids``),
    else from its prepared record (``train_patients``) when it was prepared with the same module and params,
    else by loading it once (a loader that fails is left to the prepare job, which reports it).
    """
    for name in benchmark.datasets:
        own = benchmark.dataset_settings(name).get("methods")
        key = f"datasets.{name}.methods" if own else "methods"
        methods = list(own or benchmark.config["methods"])
        needing = [(i, m) for i, m in enumerate(methods) if _unit_of(m) == "patient"]
        if not needing or _has_patient_ids(benchmark, name, meta_path=meta_path, load_data=load_data) is not False:
            continue
        i, method = needing[0]
        others = [m for m in methods if m != method] or ["dpsgd"]
        raise ConfigError(
            f"{key}[{i}] = {method!r} needs patient ids, and dataset {name!r} has none (one row per person, or the "
            f"source has no ids); run record-level methods on it: datasets.{name}.methods: {others}"
        )


def _has_patient_ids(benchmark, name: str, *, meta_path, load_data: bool) -> bool | None:
    """True or False where known (card, prepared record, or one load), None where it cannot be told."""
    from dpfair.data.registry import get_dataset

    spec = get_dataset(benchmark.module(name), benchmark.config["datasets_dir"])
    declared = spec.card.patient_ids
    if isinstance(declared, bool):
        return declared
    meta = _prepared_meta(benchmark, name, meta_path)
    if meta is not None and "train_patients" in meta:
        return meta["train_patients"] is not None
    if not load_data:
        return None
    params = benchmark.dataset_settings(name).get("params", {})
    cache_key = (str(spec.path), json.dumps(params, sort_keys=True, default=str))
    if cache_key not in _LOADED_PATIENT_IDS:
        try:
            raw = spec.load(**params)
            _LOADED_PATIENT_IDS[cache_key] = getattr(raw, "patient_id", None) is not None
        except Exception as exc:  # noqa: BLE001 - the prepare job reports a loader's failure with its message
            log.debug("dataset %r: loading it to look for patient ids failed (%s)", name, exc)
            _LOADED_PATIENT_IDS[cache_key] = None
    return _LOADED_PATIENT_IDS[cache_key]


def _prepared_meta(benchmark, name: str, meta_path) -> dict | None:
    """The dataset's prepared record when it exists and was prepared with this entry's module and params."""
    path = Path(meta_path(name))
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text())
        same = meta.get("module", name) == benchmark.module(name) and meta.get(
            "params", {}
        ) == benchmark.dataset_settings(name).get("params", {})
    except (ValueError, TypeError, AttributeError):
        return None  # an unreadable record is rewritten by the prepare job, which checks again
    return meta if same else None


def check_delta_against_prepared(benchmark, *, meta_path) -> None:
    """Refuse a numeric δ ≥ 1/n_train for every dataset already prepared with the same module and params.

    Args:
        benchmark: the validated :class:`dpfair.pipeline.benchmark.Benchmark`.
        meta_path: ``dataset name -> path`` of its prepared ``dataset.json`` (it may not exist yet: a dataset
            not prepared is checked when it is, before any of its training).
    """
    for name in benchmark.datasets:
        delta = benchmark.privacy(name)["delta"]
        if delta == "auto":
            continue
        meta = _prepared_meta(benchmark, name, meta_path)
        try:
            n_train = int(meta["n"]["train"])
        except (KeyError, TypeError, ValueError):
            continue  # not prepared (or unreadable): the prepare job checks δ itself
        overridden = "delta" in benchmark.dataset_settings(name).get("privacy", {})
        key = f"datasets.{name}.privacy.delta" if overridden else "privacy.delta"
        # a patient-level run's bound, 1/n_patients, is looser than 1/n_train: this one check covers every method
        try:
            resolve_delta(delta, n_train, where=key)
        except DpfairError as exc:
            raise ConfigError(f"{exc} (n_train from {meta_path(name)}); nothing was run or deleted") from exc


def _unit_of(method: str) -> str:
    """The unit a method protects (``record``, ``patient``, ``label``); a tuned arm's is its mechanism's."""
    # the mechanisms import Opacus: load them when checking, not on import
    from dpfair.training.mechanisms import get_mechanism
    from dpfair.training.tuning.names import split_method

    return get_mechanism(split_method(method)[0]).unit


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
