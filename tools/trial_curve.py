"""How many tuning trials are enough: the selected trial's AUROC as the number of trials K grows.

    python tools/trial_curve.py results/prepared/support2 out/ --dataset support2 --model mlp \\
        --epsilons 1,10,inf --seeds 0,1,2,3,4 --ks 1,2,3,5,8 [--benchmark benchmarks/default.yaml] \\
        [--search-space '{"noise_ratio": [1, 2, 4]}']

Runs ``dpsgd-tuned`` with each K at each ε and seed through the train job's entry point
(:func:`dpfair.pipeline.runner.train_run`), prints one JSON line per run (the selected trial's validation AUROC,
the test AUROC of the released model, the test-score SD, ε spent) and then one line per (ε, K) from
:func:`summarise`.

Why K is not free under DP: the target ε covers all K trials, so each trial of a K = 8 run is noisier than each
trial of a K = 2 run; a further trial is worth it only while the better draw outweighs the extra noise. At ε = ∞
the trials are prefix-nested (a K-run's draws are the first K of a longer run's, the first is the fixed
recipe), so there the selected validation AUROC can only grow with K. The test AUROC is the held-out figure:
the number of trials "at which a further trial rarely changes the selected model" is read from its mean
change and from how many seeds it moved by more than ``--moved`` (default 0.01); at finite ε every K recalibrates
σ, so a seed's test AUROC moves even when the same recipe is selected, and the mean change is the figure to read.
Measured on SUPPORT2 in docs/tuning.md ("How many trials").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from dpfair.data.prepare import load_prepared
from dpfair.pipeline.benchmark import load_benchmark


def summarise(runs: pd.DataFrame, *, moved: float = 0.01) -> pd.DataFrame:
    """One row per (ε, K): seed means of the selected validation and the test AUROC, and the change from the
    next smaller K of the sweep, paired by seed.

    ``runs`` has the columns ``epsilon``, ``k``, ``seed``, ``val_auroc`` and ``test_auroc``. ``delta_test`` is the
    mean paired change in test AUROC from the previous K and ``delta_test_se`` its standard error over seeds;
    ``moved_share`` the share of seeds whose test AUROC moved by more than ``moved`` (in either direction); all
    three are NaN at the smallest K.
    """
    rows = []
    for eps, block in runs.groupby("epsilon", sort=False):
        wide = block.pivot(index="seed", columns="k", values=["val_auroc", "test_auroc"])  # a duplicate run raises
        ks = sorted(block["k"].unique())
        for i, k in enumerate(ks):
            row = {
                "epsilon": eps,
                "k": int(k),
                "seeds": int(wide["test_auroc"][k].notna().sum()),
                "val_auroc": float(wide["val_auroc"][k].mean()),
                "test_auroc": float(wide["test_auroc"][k].mean()),
                "test_auroc_sd": float(wide["test_auroc"][k].std()),
                "delta_test": float("nan"),
                "delta_test_se": float("nan"),
                "moved_share": float("nan"),
            }
            if i:
                change = (wide["test_auroc"][k] - wide["test_auroc"][ks[i - 1]]).dropna()
                row.update(
                    delta_test=float(change.mean()),
                    delta_test_se=float(change.std() / len(change) ** 0.5),
                    moved_share=float((change.abs() > moved).mean()),
                )
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prepared", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", required=True, help="whose training: block is the fixed recipe")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--benchmark", type=Path, default=Path("benchmarks/default.yaml"))
    ap.add_argument("--epsilons", default="1,10,inf")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--ks", default="1,2,3,5,8")
    ap.add_argument("--search-space", type=json.loads, default=None, help="tuning.private_search_space")
    ap.add_argument("--moved", type=float, default=0.01)
    args = ap.parse_args()
    from compare_recipes import train_and_score  # tools/ is on the path of a script run from it

    torch.set_num_threads(1)
    prepared = load_prepared(
        data=args.prepared / "data.pt", samples=args.prepared / "samples.csv", meta=args.prepared / "dataset.json"
    )
    fixed = load_benchmark(args.benchmark).training(args.dataset).params()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):  # seed outermost: a cut-short sweep is still paired
        for eps in args.epsilons.split(","):
            for k in (int(k) for k in args.ks.split(",")):
                out = args.out / f"eps-{eps}" / f"k-{k}" / f"seed-{seed}"
                tuning = {"enabled": True, "trials": k}
                if args.search_space:
                    tuning["private_search_space"] = args.search_space
                record, test_auroc, test_score_sd = train_and_score(
                    prepared, out, model=args.model, epsilon=eps, seed=seed, method="dpsgd-tuned", config=fixed,
                    tuning=tuning,
                )  # fmt: skip
                card = json.loads((out / "privacy_card.json").read_text())
                run = {
                    "epsilon": eps,
                    "k": k,
                    "seed": seed,
                    "val_auroc": card["tuning"]["trials"][record["selected_trial"]]["val_auroc"],
                    "test_auroc": test_auroc,
                    "test_score_sd": test_score_sd,
                    "selected_trial": record["selected_trial"],
                    "epsilon_spent": record["epsilon_spent"],
                }
                runs.append(run)
                print(json.dumps({**run, "kind": "run"}), flush=True)
    for row in summarise(pd.DataFrame(runs), moved=args.moved).to_dict("records"):
        print(json.dumps({**row, "kind": "summary"}), flush=True)


if __name__ == "__main__":
    main()
