"""What passes between the two environments: the coded training table out, a synthetic release back.

The main environment writes the training rows as codes of the public domain with the domain's sizes
(:func:`write_table`) and the budget each ε gets (:func:`write_plan`); ``workflow/scripts/synthesize.py``
(in ``.venv-synth``) writes synthetic codes and the noise it drew; :func:`load_release` decodes the rows
and turns the noise into the run's ledger.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dp_accounting
import numpy as np
import pandas as pd
import torch

from dpfair.errors import ConfigError, PrivacyError
from dpfair.jsonio import write_json
from dpfair.synthesis.budget import release_event, spent_rho, zcdp_budget
from dpfair.synthesis.domain import Domain, build_domain, decode, encode

#: Where ``make install`` builds the synthesis environment, relative to the workflow's folder.
SYNTH_PYTHON = ".venv-synth/bin/python"
#: A dataset's coded training rows and plan, and one run's release (the workflow's paths).
SYNTH_DIR = "results/synthetic/{dataset}"
SYNTH_RUN_DIR = "results/synthetic/{dataset}/{method}/eps-{epsilon}/seed-{seed}"


def release_files(*, dataset: str, method: str, epsilon: str, seed: int | str) -> dict[str, str]:
    """The ``codes``, ``log`` and ``plan`` files of one run's release, as :func:`load_release` takes them."""
    run = SYNTH_RUN_DIR.format(dataset=dataset, method=method, epsilon=epsilon, seed=seed)
    return {
        "codes": f"{run}/codes.npz",
        "log": f"{run}/noise.json",
        "plan": f"{SYNTH_DIR.format(dataset=dataset)}/plan.json",
    }


@dataclass
class SyntheticRelease:
    """One synthesizer's output, decoded: what the downstream model trains on, and what it cost."""

    x: torch.Tensor
    y: torch.Tensor
    groups: pd.DataFrame
    codes: np.ndarray
    event: dp_accounting.DpEvent
    rho: float
    info: dict


def write_table(path: str | Path, *, domain: Domain, codes: np.ndarray) -> None:
    """The coded training rows and the domain's sizes, for the synthesizer (it reads nothing else)."""
    np.savez_compressed(path, codes=np.asarray(codes, dtype=np.int64), sizes=np.asarray(domain.sizes, dtype=np.int64))


def write_plan(path: str | Path, *, domain: Domain, epsilons: list[float], delta: float, n_train: int) -> None:
    """The domain and, per finite ε, the ρ the synthesizer is handed (:func:`~dpfair.synthesis.budget.zcdp_budget`)."""
    budget = {str(float(e)): zcdp_budget(float(e), delta) for e in epsilons}
    write_json(path, {"domain": domain.to_dict(), "delta": delta, "n_train": n_train, "rho": budget})


def plan_synthesis(prepared, *, epsilons: list, n_bins: int, table: str | Path, plan: str | Path) -> None:
    """Write a dataset's coded training rows (``table``) and its plan (``plan``): domain, δ and each ε's ρ.

    δ is the run's own (:func:`dpfair.training.mechanisms.run_delta` for a record-level synthesis method), so the
    release is made for the (ε, δ) its training run will claim.
    """
    from dpfair.training.mechanisms import get_mechanism, run_delta

    domain = build_domain(prepared, n_bins=n_bins)
    delta, _ = run_delta(prepared, get_mechanism("synth_mst"), where=f"datasets.{prepared.meta['name']}.delta")
    codes = encode(domain, prepared, split="train")
    write_table(table, domain=domain, codes=codes)
    finite = [float(e) for e in epsilons if float(e) != float("inf")]
    write_plan(plan, domain=domain, epsilons=finite, delta=delta, n_train=len(codes))


def read_plan(path: str | Path) -> dict:
    """The plan :func:`write_plan` wrote, its domain a :class:`~dpfair.synthesis.domain.Domain` again."""
    plan = json.loads(Path(path).read_text())
    plan["domain"] = Domain.from_dict(plan["domain"])
    return plan


def load_release(
    *, codes: str | Path, log: str | Path, plan: str | Path, epsilon: float, delta: float
) -> SyntheticRelease:
    """Decode one synthesizer's rows and build its ledger; refuse a release made for another budget."""
    info = json.loads(Path(log).read_text())
    spec = read_plan(plan)
    planned = spec["rho"].get(str(float(epsilon)))
    if planned is None or abs(spec["delta"] - delta) > 1e-15 * max(delta, 1.0) or info["rho"] != planned:
        raise PrivacyError(
            f"{log}: this synthetic release was made at ρ = {info['rho']} for another budget than ε = {epsilon}, "
            f"δ = {delta:g} (planned ρ {planned}); delete results/synthetic and run again"
        )
    spent = spent_rho(info["noise"])
    if spent > info["rho"] * (1 + 1e-9):
        raise PrivacyError(
            f"{log}: the synthesizer drew noise worth ρ = {spent:.6g}, above its budget {info['rho']:.6g}"
        )
    # MST (three thirds) and AIM (its last round spends what remains) spend all of ρ: a log that holds less
    # has missed a draw made outside the recorded calls, and the ledger would under-state the release
    if spent < info["rho"] * (1 - 1e-6):
        raise PrivacyError(
            f"{log}: the recorded draws add up to ρ = {spent:.6g} of a budget of {info['rho']:.6g}; a draw went "
            "unrecorded (a changed synthesizer library?), so the ledger cannot be trusted"
        )
    rows = np.load(codes)["codes"]
    x, y, groups = decode(spec["domain"], rows)
    return SyntheticRelease(
        x=x, y=y, groups=groups, codes=rows, event=release_event(info["noise"]), rho=info["rho"], info=info
    )


def synth_python(basedir: str | Path) -> str:
    """The synthesis environment's interpreter (``DPFAIR_SYNTH_PYTHON`` overrides), refused with the fix if absent."""
    path = Path(os.environ.get("DPFAIR_SYNTH_PYTHON") or Path(basedir) / SYNTH_PYTHON)
    if not path.exists():
        raise ConfigError(
            f"the DP synthesis environment {path} is missing (methods synth_aim / synth_mst run smartnoise-synth "
            "there); run `make install`, or set DPFAIR_SYNTH_PYTHON to a Python with smartnoise-synth 1.0.8"
        )
    return str(path)
