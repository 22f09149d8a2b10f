"""Benchmark runs as files: train one run, or the seeds of one cell in one process, and write their outputs.

The train rule script calls these (their evaluation is :mod:`dpfair.pipeline.evaluation`); tests call them
directly with temporary paths.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from dpfair.data.prepare import PreparedDataset
from dpfair.data.registry import datasets_dir as registry_datasets_dir
from dpfair.jsonio import write_json
from dpfair.models import resolve_device
from dpfair.pipeline.outcome import run_definition
from dpfair.privacy.card import build_privacy_card
from dpfair.privacy.params import format_epsilon, parse_epsilon
from dpfair.training.config import TrainConfig
from dpfair.training.loop import predict, predict_logits, train
from dpfair.training.mechanisms import get_mechanism, run_delta, training_data
from dpfair.training.tuning.names import split_method
from dpfair.training.tuning.procedure import tune_and_train

log = logging.getLogger(__name__)


def train_run(
    *,
    prepared: PreparedDataset,
    model_name: str,
    epsilon: str | float,
    seed: int,
    config: TrainConfig | dict,
    method: str = "dpsgd",
    device: str = "auto",
    tuning: dict | None = None,
    datasets_dir: str | Path | None = None,
    model_path: str | Path,
    scores_path: str | Path,
    record_path: str | Path,
    card_path: str | Path,
) -> dict:
    """Train one run on the prepared training split; save weights, scores, the run record and its privacy card.

    Scores (probability and logit) cover every row (training rows too: the audit's attacks compare them
    with the held-out rows). The privacy card is checked before anything is written, so a run whose settings
    contradict its accounting leaves no outputs.

    The run record's ``definition`` is the hash of what the run is made from
    (:func:`dpfair.pipeline.outcome.run_definition`: the dataset module in ``datasets_dir``, default
    :func:`dpfair.data.registry.datasets_dir`'s, its params as prepared, and the training settings as given), so
    the report can leave out a run of an earlier definition; ``None`` when the module file is not there.
    """
    definition = trained_definition(
        prepared,
        config=config,
        tuning=tuning,
        datasets_dir=datasets_dir,
        model=model_name,
        method=method,
        epsilon=epsilon,
        seed=seed,
    )
    eps = parse_epsilon(epsilon)
    if isinstance(config, dict) and "tuning" in config:  # a tuned arm's rule params carry its tuning block
        config = dict(config)
        tuning = {**config.pop("tuning"), **(tuning or {})}
    config = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    torch_device = resolve_device(device)
    x_train, y_train = prepared.part("train")
    x_val, y_val = prepared.part("val")
    base_method, tuned = split_method(method)
    mechanism = get_mechanism(base_method)
    data = training_data(prepared, groups=mechanism.uses_groups)
    delta, n_units = run_delta(
        prepared, mechanism, where=f"datasets.{prepared.meta['name']}.delta ({method}: {{n_units}} {mechanism.unit}s)"
    )
    log.info(
        "train %s / %s / %s at epsilon=%s seed=%d on %s: n_train=%d, n_units=%d, delta=%g, %s",
        prepared.meta["name"],
        model_name,
        method,
        format_epsilon(eps),
        seed,
        torch_device,
        len(y_train),
        n_units,
        delta,
        config,
    )
    common = dict(
        model_name=model_name,
        modality=prepared.meta["modality"],
        x_train=x_train,
        y_train=y_train,
        epsilon=eps,
        delta=delta,
        config=config,
        seed=seed,
        device=torch_device,
        x_val=x_val,
        y_val=y_val,
        method=method,
        patient_id=data.patient_id,
        groups=data.groups,
        # the dataset entry joins the noise key: two entries of one benchmark never share noise
        noise_context=f"dataset={prepared.meta['name']}",
    )
    # a tuned arm runs all its trials here, in one job (imports and calibration paid once); the test
    # split is never passed to it
    result = tune_and_train(**common, tuning=tuning or {}) if tuned else train(**common)
    scores = prepared.samples.assign(
        score=predict(result.model, prepared.x, device=torch_device),
        logit=predict_logits(result.model, prepared.x, device=torch_device),  # the audit's attacks read logits
    )
    record = {
        "dataset": prepared.meta["name"],
        "model": model_name,
        **result.record,
        "preprocessing": prepared.meta["preprocessing"],
    }
    card = build_privacy_card(record, prepared.meta, statement=mechanism.statement(meta=prepared.meta, record=record))
    record.update({k: card[k] for k in ("epsilon_rdp", "epsilon_prv", "epsilon_pld")}, history=result.history)
    record["definition"] = definition  # after the card is built: the card is the same with or without it
    log.info("privacy card: %s", {k: v for k, v in card.items() if k != "independent_accountants"})
    write_json(card_path, card)
    torch.save(result.model.state_dict(), model_path)
    scores.to_csv(scores_path, index=False)
    write_json(record_path, record)
    return record


def train_runs(
    *,
    seeds: list[int],
    outputs: list[dict[str, str | Path]],
    park: str | Path | None = None,
    **run,
) -> list[dict]:
    """Train several seeds of one cell in this process, one after another: :func:`train_run` per seed.

    One process per cell pays the imports, the data loading and the noise calibration (cached by
    :func:`dpfair.training.mechanisms.dpsgd.calibrate_sigma`) once; each seed's run is computed exactly as in a
    job of its own (its batches, noise and scores depend on its seed and settings only), so the per-seed run
    folders are identical either way (``tests/test_seed_groups.py``).

    ``outputs[i]`` holds ``model``, ``scores``, ``record`` and ``card`` paths of ``seeds[i]``; ``run`` the other
    :func:`train_run` arguments. A failing seed does not stop the others: every seed is tried, then the first
    error is raised naming all that failed. Snakemake deletes a failed job's outputs, so the finished seeds'
    files are first copied to ``park/seed-<s>/``; the rerun takes a parked run back instead of retraining it
    when its recorded definition is the one it would train now, and clears the park once the job succeeds.
    """
    if len(seeds) != len(outputs):
        raise ValueError(f"{len(seeds)} seeds but {len(outputs)} output sets")
    records, failed, first_error = [], [], None
    for seed, paths in zip(seeds, outputs):
        parked = Path(park) / f"seed-{seed}" if park is not None else None
        try:
            if parked is not None and _take_back(parked, paths, definition=_definition_for(seed=seed, **run)):
                log.info("seed %d: took back the run a failed job finished (%s)", seed, parked)
                records.append(json.loads(Path(paths["record"]).read_text()))
                continue
            records.append(train_run(seed=seed, **run, **{f"{k}_path": v for k, v in paths.items()}))
        except Exception as exc:  # every seed is tried; the job still fails, below
            log.exception("seed %d failed", seed)
            failed.append(seed)
            first_error = first_error or exc
    if failed:
        if park is not None:
            for seed, paths in zip(seeds, outputs):
                if seed not in failed:
                    _park(paths, Path(park) / f"seed-{seed}")
            log.error("seeds %s failed; the finished seeds are kept in %s for the rerun", failed, park)
        raise first_error
    if park is not None:
        shutil.rmtree(park, ignore_errors=True)
    return records


def _definition_for(
    *, seed, prepared, config, tuning=None, datasets_dir=None, model_name, method="dpsgd", epsilon, **_
):
    return trained_definition(
        prepared,
        config=config,
        tuning=tuning,
        datasets_dir=datasets_dir,
        model=model_name,
        method=method,
        epsilon=epsilon,
        seed=seed,
    )


def _park(paths: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        if Path(path).exists():
            shutil.copy2(path, folder / name)


def _take_back(folder: Path, paths: dict, *, definition: str | None) -> bool:
    """Move a parked run back into place when it is complete and of ``definition``; else drop it."""
    if not folder.is_dir():
        return False
    complete = all((folder / name).is_file() for name in paths)
    recorded = json.loads((folder / "record").read_text()).get("definition") if complete else None
    if definition is None or recorded != definition:
        shutil.rmtree(folder, ignore_errors=True)  # stale: the run is retrained
        return False
    for name, path in paths.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / name), path)
    folder.rmdir()
    return True


def trained_definition(prepared: PreparedDataset, *, config, tuning, datasets_dir, **run) -> str | None:
    """The run's :func:`~dpfair.pipeline.outcome.run_definition` from what it is given, as the workflow computes it.

    ``training`` is the train rule's ``training`` params as they came (a tuned arm's carry its ``tuning``
    block), so it hashes to what the workflow's ``get_training_config`` gives for the run.
    """
    training = config.params() if isinstance(config, TrainConfig) else dict(config)
    if tuning:
        training["tuning"] = {**training.get("tuning", {}), **tuning}
    module = prepared.meta.get("module", prepared.meta.get("name"))
    module_file = registry_datasets_dir(datasets_dir) / f"{module}.py"
    if not module_file.is_file():
        log.warning("no dataset module %s to hash: run.json records no definition", module_file)
        return None
    return run_definition(
        dataset=prepared.meta["name"],
        module_name=module,
        module_file=module_file,
        params=prepared.meta.get("params", {}),
        training=training,
        **run,
    )
