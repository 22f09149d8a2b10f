"""Benchmark runs as files: train one run, or the seeds of one cell in one process, and write their outputs.

The train rule script calls these (their evaluation is :mod:`dpfair.pipeline.evaluation`); tests call them
directly with temporary paths.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import time
import traceback
from pathlib import Path

import torch

from dpfair.data.prepare import PreparedDataset
from dpfair.data.registry import datasets_dir as registry_datasets_dir
from dpfair.errors import ConfigError
from dpfair.federated import train_federated
from dpfair.jsonio import write_json
from dpfair.models import resolve_device
from dpfair.pipeline.outcome import run_definition
from dpfair.privacy.card import build_privacy_card
from dpfair.privacy.params import format_epsilon, is_private, parse_epsilon
from dpfair.synthesis.release import load_release
from dpfair.training.config import TrainConfig
from dpfair.training.loop import predict_both, train
from dpfair.training.mechanisms import get_mechanism, run_delta, training_data
from dpfair.training.tuning.names import split_method
from dpfair.training.tuning.procedure import tune_and_train
from dpfair.training.warm_start import check_public_weights

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
    synthetic: dict | None = None,
    federated: dict | None = None,
) -> dict:
    """Train one run on the prepared training split; save weights, scores, the run record and its privacy card.

    Scores (probability and logit) cover every row (training rows too: the audit's attacks compare them
    with the held-out rows). The privacy card is checked before anything is written, so a run whose settings
    contradict its accounting leaves no outputs.

    The run record's ``definition`` is the hash of what the run is made from
    (:func:`dpfair.pipeline.outcome.run_definition`: the dataset module in ``datasets_dir``, default
    :func:`dpfair.data.registry.datasets_dir`'s, its params as prepared, and the training settings as given), so
    the report can leave out a run of an earlier definition; ``None`` when the module file is not there.

    ``synthetic``: for a synthesis method (``synth_aim``, ``synth_mst``) at finite ε, the ``codes``, ``log`` and
    ``plan`` files of the run's DP synthetic release (rule ``synthesize``), which it trains on.

    ``federated``: for a federated method (``fed_dpsgd``, ``fed_dp_site``), the benchmark's ``federated:`` block
    (rounds, local epochs, update clip); the run is a Flower simulation over the dataset's sites
    (:func:`dpfair.federated.train_federated`). A workflow run's params carry it in ``config["federated"]``.
    """
    start = time.perf_counter()
    definition = _definition_of(
        prepared=prepared,
        config=config,
        tuning=tuning,
        datasets_dir=datasets_dir,
        model_name=model_name,
        method=method,
        epsilon=epsilon,
        seed=seed,
    )
    eps = parse_epsilon(epsilon)
    if isinstance(config, dict) and "tuning" in config:  # a tuned arm's rule params carry its tuning block
        config = dict(config)
        tuning = {**config.pop("tuning"), **(tuning or {})}
    if isinstance(config, dict) and "federated" in config:  # a federated method's rule params carry its block
        config = dict(config)
        federated = {**config.pop("federated"), **(federated or {})}
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
    check_public_weights(config.init_weights, meta=prepared.meta)
    release = None
    if mechanism.synthesizes and is_private(eps):
        if not synthetic:
            raise ConfigError(f"method {method} at epsilon {epsilon} needs its synthetic release (rule synthesize)")
        release = load_release(**synthetic, epsilon=eps, delta=delta)
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
        **({"synthetic": release} if release is not None else {}),
        # the dataset entry joins the noise key: two entries of one benchmark never share noise
        noise_context=f"dataset={prepared.meta['name']}",
        dataset=prepared.meta["name"],
    )
    # a tuned arm runs all its trials here, in one job (imports and calibration paid once); the test
    # split is never passed to it
    if mechanism.federated:
        result = train_federated(**common, site=data.site, federated=federated)
    elif tuned:
        result = tune_and_train(**common, tuning=tuning or {})
    else:
        result = train(**common)
    score, logit = predict_both(result.model, prepared.x, device=torch_device)  # the audit's attacks read logits
    scores = prepared.samples.assign(score=score, logit=logit)
    record = {
        "dataset": prepared.meta["name"],
        "model": model_name,
        **result.record,
        "preprocessing": prepared.meta["preprocessing"],
    }
    card = build_privacy_card(record, prepared.meta, statement=mechanism.statement(meta=prepared.meta, record=record))
    record.update({k: card[k] for k in ("epsilon_rdp", "epsilon_prv", "epsilon_pld")}, history=result.history)
    record["definition"] = definition  # after the card is built: the card is the same with or without it
    # the run's own wall time in its job, the loop and everything around it but the job's start-up: what the
    # cost table shares a job of several ε cells out by (dpfair.tables.compute_cost)
    record["run_seconds"] = time.perf_counter() - start
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
    epsilons: list[str | float] | None = None,
    park: str | Path | None = None,
    inputs: list[str | Path] = (),
    synthetic: list[dict | None] | None = None,
    **run,
) -> list[dict]:
    """Train several runs of one (dataset, model, method) in this process, one after another: :func:`train_run` each.

    Run i has seed ``seeds[i]`` and target ``epsilons[i]`` (or every run ``run["epsilon"]``: the seeds of one
    cell). One process pays the imports and the data loading once, each ε's noise calibration once (cached by
    :func:`dpfair.training.mechanisms.dpsgd.calibrate_sigma`), and each distinct ledger's replays once (cached by
    :func:`dpfair.privacy.ledger.replay_epsilon`); each run is computed exactly as in a job of its own (its
    batches, noise and scores depend on its seed, ε and settings only), so the per-run folders are identical
    either way (``tests/test_seed_groups.py``).

    ``outputs[i]`` holds ``model``, ``scores``, ``record`` and ``card`` paths of run i; ``run`` the other
    :func:`train_run` arguments. A failing run does not stop the others: every run is tried, then a
    RuntimeError names all that failed. Snakemake deletes a failed or killed job's outputs, so each finished
    run is also kept (hard-linked) in ``park/seed-<s>/`` (``park/eps-<e>/seed-<s>/`` with ``epsilons``) with a
    stamp of what it was made from: its run definition, the job's settings and the size and modification time
    of each of ``inputs`` (the prepared dataset's files, rewritten when the dataset is prepared again). The rerun
    takes a kept run back instead of retraining it when its stamp is the one it would have now, and drops it
    otherwise; a job that succeeds removes what it kept. Code changes are not in the stamp: delete ``park`` to
    retrain anyway.
    """
    if len(seeds) != len(outputs) or (epsilons is not None and len(epsilons) != len(seeds)):
        raise ValueError(f"{len(seeds)} seeds, {len(outputs)} output sets and {len(epsilons or seeds)} epsilons")
    runs = [(s, {**run, "epsilon": e}) for s, e in zip(seeds, epsilons)] if epsilons is not None else [
        (s, run) for s in seeds
    ]  # fmt: skip
    if synthetic is not None:  # a synthesis method's runs: each its own release (dpfair.synthesis.release)
        if len(synthetic) != len(runs):
            raise ValueError(f"{len(runs)} runs but {len(synthetic)} synthetic releases")
        runs = [(s, {**settings, "synthetic": release}) for (s, settings), release in zip(runs, synthetic)]
    records, failed, failed_ids, kept_folders = [], {}, [], []
    for (seed, settings), paths in zip(runs, outputs):
        name = f"seed {seed}" if epsilons is None else f"epsilon {settings['epsilon']} seed {seed}"
        kept = None
        if park is not None:
            kept = Path(park) / (f"seed-{seed}" if epsilons is None else f"eps-{settings['epsilon']}/seed-{seed}")
            kept_folders.append(kept)
        stamp = _stamp(seed=seed, inputs=inputs, **settings) if kept is not None else None
        if kept is not None and _take_back(kept, paths, stamp=stamp):
            log.info("%s: took back the run a failed job finished (%s)", name, kept)
            records.append(json.loads(Path(paths["record"]).read_text()))
            _keep(paths, kept, stamp=stamp)  # kept again: should this job fail too, the run survives its outputs
            continue
        try:
            records.append(train_run(seed=seed, **settings, **{f"{k}_path": v for k, v in paths.items()}))
        except Exception:  # every run is tried; the job still fails, below
            log.exception("%s failed", name)
            failed[name] = traceback.format_exc(limit=1).strip().splitlines()[-1]
            failed_ids.append(seed if epsilons is None else name)
            _release_memory()  # the traceback's frames are gone: the next run gets the memory back
            continue
        if kept is not None:
            _keep(paths, kept, stamp=stamp)
    if failed:
        where = f"; the finished runs are kept in {park} for the rerun" if park is not None else ""
        kind = "runs" if epsilons is not None else "seeds"
        raise RuntimeError(f"{kind} {sorted(failed_ids)} of {len(seeds)} failed{where}: " + "; ".join(
            f"{n}: {message}" for n, message in failed.items()
        ))  # fmt: skip
    for kept in kept_folders:  # this job's own runs only: another job of the cell may keep its own
        shutil.rmtree(kept, ignore_errors=True)
        _remove_empty(kept.parent)
    return records


def _definition_of(*, prepared, config, tuning=None, datasets_dir=None, model_name, method="dpsgd", epsilon, seed, **_):
    """:func:`trained_definition` from :func:`train_run`'s own arguments."""
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


def _stamp(*, seed, inputs, **run) -> str:
    """What a kept run was made from: its definition, the job's other settings, and each input file's size and mtime."""
    # a synthesis run's release files too: a new release under the same names must retrain the run
    inputs = [*inputs, *(run.get("synthetic") or {}).values()]
    files = [[str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in inputs]
    settings = {k: v for k, v in run.items() if k != "prepared"}
    return json.dumps(
        {"definition": _definition_of(seed=seed, **run), "inputs": files, "settings": settings},
        sort_keys=True,
        default=str,
    )


def _keep(paths: dict, folder: Path, *, stamp: str) -> None:
    """Hard-link (else copy) a finished run's files into ``folder``, the stamp last: a stamped folder is complete."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        target = folder / name
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    (folder / "stamp.json").write_text(stamp)


def _take_back(folder: Path, paths: dict, *, stamp: str) -> bool:
    """Move a kept run back into place when it is complete and its stamp is ``stamp``; else drop it."""
    if not folder.is_dir():
        return False
    try:
        current = (folder / "stamp.json").read_text() == stamp and all((folder / n).is_file() for n in paths)
        if current:
            json.loads((folder / "record").read_text())  # a truncated record is not a finished run
    except (OSError, ValueError):
        current = False
    if not current:
        shutil.rmtree(folder, ignore_errors=True)  # stale or incomplete: the run is retrained
        return False
    for name, path in paths.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / name), path)
    shutil.rmtree(folder, ignore_errors=True)
    return True


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its parents up to ``results/partial`` while they are empty."""
    for path in (folder, *folder.parents):
        if path.name == "partial" or not path.is_dir() or any(path.iterdir()):
            break
        path.rmdir()


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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
