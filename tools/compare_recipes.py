"""The fixed recipe against private tuning on one prepared dataset, through the train job's own entry point.

    python tools/compare_recipes.py results/prepared/synthetic_lesions out/ --epsilons 10,inf \\
        --benchmark benchmarks/default.yaml --dataset synthetic_lesions [--model cnn] [--seed 0] [--trials 2] \
        [--init-weights W.pt] [--trainable head] [--search-space '{"noise_ratio": [1, 2, 4]}'] [--methods dpsgd]

Trains ``dpsgd`` (the benchmark's fixed recipe for ``--dataset``) and ``dpsgd-tuned`` (private tuning with
``--trials``) at each ε with :func:`dpfair.pipeline.runner.train_run`, and prints one JSON line per run: test
AUROC, the SD of the test scores (near 0 = collapsed), trials, ε per trial, the chosen recipe and the wall
time. ``--init-weights`` / ``--trainable`` set ``training.init_weights`` / ``training.trainable`` for both arms
(a warm start from public weights, dpfair.training.warm_start); ``--search-space`` is ``tuning.private_search_space``.
This is how the README's "Recipes and private tuning" table was measured; the prepared folder of a
dataset is made by ``snakemake results/prepared/<name>/dataset.json --configfile <benchmark>``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from dpfair.data.prepare import load_prepared
from dpfair.pipeline.benchmark import load_benchmark
from dpfair.pipeline.runner import train_run
from sklearn.metrics import roc_auc_score


def train_and_score(
    prepared, out: Path, *, model: str, epsilon: str, seed: int, method: str, config: dict, tuning: dict
) -> tuple[dict, float, float]:
    """Train one run into ``out`` as the train job does; its record, test AUROC and test-score SD (near 0 = collapsed)."""
    out.mkdir(parents=True, exist_ok=True)
    record = train_run(
        prepared=prepared,
        model_name=model,
        epsilon=epsilon,
        seed=seed,
        method=method,
        config=config,
        tuning=tuning,
        device="cpu",
        model_path=out / "model.pt",
        scores_path=out / "scores.csv",
        record_path=out / "run.json",
        card_path=out / "privacy_card.json",
    )
    scores = pd.read_csv(out / "scores.csv")
    test = scores[scores["split"] == "test"]
    return record, float(roc_auc_score(test["label"], test["score"])), float(test["score"].std())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--epsilons", default="10,inf")
    ap.add_argument("--benchmark", type=Path, default=Path("benchmarks/default.yaml"))
    ap.add_argument("--dataset", required=True, help="whose training: block is the fixed recipe")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--init-weights", default=None)
    ap.add_argument("--trainable", default=None, choices=["all", "head"])
    ap.add_argument("--search-space", type=json.loads, default=None)
    ap.add_argument("--methods", default="dpsgd,dpsgd-tuned")
    ap.add_argument("--seeds", default=None, help="comma-separated; overrides --seed")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prepared = load_prepared(
        data=args.prepared / "data.pt", samples=args.prepared / "samples.csv", meta=args.prepared / "dataset.json"
    )
    fixed = load_benchmark(args.benchmark).training(args.dataset).params()
    fixed.update({k: v for k, v in (("init_weights", args.init_weights), ("trainable", args.trainable)) if v})
    tuning = {
        "enabled": True,
        "trials": args.trials,
        **({"private_search_space": args.search_space} if args.search_space else {}),
    }
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    for seed, eps, method in (
        (s, e, m) for s in seeds for e in args.epsilons.split(",") for m in args.methods.split(",")
    ):
        out = args.out / method / f"eps-{eps}" / f"seed-{seed}"
        start = time.time()
        record, test_auroc, test_score_sd = train_and_score(
            prepared, out, model=args.model, epsilon=eps, seed=seed, method=method, config=fixed, tuning=tuning
        )
        print(
            json.dumps(
                {
                    "method": method,
                    "epsilon": eps,
                    "seed": seed,
                    "test_auroc": round(test_auroc, 4),
                    "test_score_sd": round(test_score_sd, 4),
                    "trials": record.get("tuning_trials"),
                    "epsilon_per_trial": record.get("epsilon_per_trial"),
                    "epsilon_spent": record.get("epsilon_spent"),
                    **{
                        k: record.get(k)
                        for k in (
                            "optimizer",
                            "lr",
                            "expected_batch_size",
                            "epochs",
                            "max_grad_norm",
                            "clip_policy",
                            "class_weight",
                            "augmult",
                            "trainable",
                            "best_epoch",
                        )
                    },
                    "wall_seconds": round(time.time() - start),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
