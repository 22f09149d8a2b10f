"""Public weights for a warm start: train a model non-privately on one prepared dataset, for runs on another.

    python tools/public_weights.py results/prepared/synthetic_lesions weights/cnn_lesions.pt \\
        --benchmark benchmarks/default.yaml --dataset synthetic_lesions [--model cnn] [--seed 0]

Trains ``--model`` on the training split of the prepared dataset with the benchmark's fixed recipe for
``--dataset`` at ε = ∞ (the train job's own loop), keeping the epoch with the best validation AUROC, and writes
the state dict and, beside it, ``<weights>.json``: what it was trained on (dataset, rows, recipe, seed, the
validation AUROC) and the file's sha256. A benchmark names the file in ``training.init_weights`` of *another*
dataset; the run refuses weights whose provenance names its own dataset (dpfair.training.warm_start), because
those rows would reach the release without noise. The weights are public to that other dataset's guarantee
only if the data they were trained on are: this tool records where they came from, the user vouches for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch
from dpfair.data.prepare import load_prepared
from dpfair.pipeline.benchmark import load_benchmark
from dpfair.training.loop import predict, train
from dpfair.training.warm_start import PROVENANCE_SUFFIX, data_source, sha256_file
from sklearn.metrics import roc_auc_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", type=Path, help="a prepared dataset folder (results/prepared/<name>)")
    ap.add_argument("out", type=Path, help="the state dict to write (a .pt file)")
    ap.add_argument("--benchmark", type=Path, default=Path("benchmarks/default.yaml"))
    ap.add_argument("--dataset", required=True, help="whose training: block is the recipe")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    prepared = load_prepared(
        data=args.prepared / "data.pt", samples=args.prepared / "samples.csv", meta=args.prepared / "dataset.json"
    )
    config = dataclasses.replace(load_benchmark(args.benchmark).training(args.dataset), select_best=True)
    x_train, y_train = prepared.part("train")
    x_val, y_val = prepared.part("val")
    result = train(
        model_name=args.model,
        modality=prepared.meta["modality"],
        x_train=x_train,
        y_train=y_train,
        epsilon=math.inf,
        delta=1e-5,
        config=config,
        seed=args.seed,
        x_val=x_val,
        y_val=y_val,
        dataset=prepared.meta["name"],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k.removeprefix("_module."): v for k, v in result.model.state_dict().items()}, args.out)
    val_auroc = float(roc_auc_score(y_val.numpy(), predict(result.model, x_val)))
    provenance = {
        "trained_on": prepared.meta["name"],
        "source": data_source(prepared.meta),
        "split": "train",
        "n_rows": len(y_train),
        "model": args.model,
        "input_shape": list(x_train.shape[1:]),
        "recipe": config.params(),
        "seed": args.seed,
        "epsilon": "inf",
        "val_auroc": val_auroc,
        "sha256": sha256_file(args.out),
        "made_by": "tools/public_weights.py",
    }
    Path(str(args.out) + PROVENANCE_SUFFIX).write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance))


if __name__ == "__main__":
    main()
