"""Every private cell in the claim shape of the DP image-classification leaderboard.

The leaderboard of Mokhtari, Kodeiri, Mohapatra, Tramèr & Kamath ("Rethinking benchmarks for differentially
private image classification", 2024; https://private-machinelearning.github.io) lists, per private dataset and
public-data scenario, claims of the form ``public_data, model, epsilon, delta, private_accuracy ("78.16% AUC"),
dp_accountant`` (its "Submit Report" issue template). ``claims.yaml`` writes one per (dataset, model, method,
finite ε) of a result folder: the AUROC is the mean over the cell's seeds (the spread beside it, which the
leaderboard has no field for, goes into ``notes``), δ and the accountant are the runs' own (their privacy
cards'), and ``public_data`` is "None" unless the cell's runs started from public weights (``training.init_weights``,
metrics.csv's ``public_weights``): then it names the weights by their sha256 and whether only the head trained.
"""

from __future__ import annotations

import math

import pandas as pd

#: The accountants' names as the leaderboard writes them (e.g. "Torch PRV" for Opacus's PRV accountant).
ACCOUNTANTS = {"prv": "Torch PRV", "rdp": "Torch RDP", "gdp": "Torch GDP", "pld": "dp-accounting PLD"}


def leaderboard_claims(metrics: pd.DataFrame, *, benchmark: str) -> list[dict]:
    """One report per dataset, each with a claim per private (model, method, ε) cell."""
    runs = metrics.drop_duplicates(["dataset", "model", "method", "epsilon", "seed"])
    runs = runs[runs["epsilon"].map(lambda e: math.isfinite(float(e)))]
    reports = []
    for dataset, part in runs.groupby("dataset", sort=True):
        claims = []
        for (model, method, epsilon), cell in part.groupby(["model", "method", "epsilon"], sort=True):
            auroc = cell["auroc"].astype(float).dropna()
            if auroc.empty:
                continue
            accountant = str(cell["accountant"].iloc[0]) if "accountant" in cell else ""
            claims.append(
                {
                    "public_data": _public_data(cell),
                    "model": f"{model} ({method})",
                    "epsilon": float(epsilon),
                    "delta": float(cell["delta"].iloc[0]),
                    "private_accuracy": f"{100 * auroc.mean():.2f}% AUC",
                    "dp_accountant": ACCOUNTANTS.get(accountant, accountant),
                    "notes": (
                        f"mean of {len(auroc)} seeds (SD {100 * auroc.std(ddof=1):.2f} points)"
                        if len(auroc) > 1
                        else "one seed"
                    )
                    + f"; epsilon spent {cell['epsilon_spent'].astype(float).max():.3f}"
                    + f"; privacy unit: {_unit(cell)}",
                }
            )
        reports.append({"name": f"dpfair benchmark '{benchmark}': {dataset}", "dataset": dataset, "claims": claims})
    return reports


def _public_data(cell: pd.DataFrame) -> str:
    """The leaderboard's public-data field: "None", or the public weights the cell's runs started from."""
    if "public_weights" not in cell or cell["public_weights"].isna().all():
        return "None"
    weights = ", ".join(sorted({str(w)[:12] for w in cell["public_weights"].dropna()}))
    head = "trainable" in cell and (cell["trainable"] == "head").all()
    return f"public weights (sha256 {weights}){'; linear probe (head only)' if head else '; fine-tuned'}"


def _unit(cell: pd.DataFrame) -> str:
    """What two neighbouring datasets differ by (the leaderboard assumes one example; label, patient, site)."""
    if "privacy_unit" not in cell or cell["privacy_unit"].isna().all():
        return "record"
    return str(cell["privacy_unit"].dropna().iloc[0])
