"""The canary run's calibration is fixed before its inclusion bits are drawn, and every audit model gets the
validation split its recipe needs.

The one-run bound (Steinke, Nasr & Jagielski 2023) needs a mechanism whose parameters do not depend on the
bits: the canary run is calibrated for n_train + m/2 rows whatever the draw. Recipes that select the best
epoch or weight classes by the validation prevalence are audited, as their runs were trained, with a
validation split: the rows the audit model does not train on.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from dpfair.audit import train_models
from dpfair.audit.stage import audit_cell
from dpfair.audit.train_models import canary_calibration, choose_canaries, train_audit_models, train_canary_run
from dpfair.audit.training_adapter import AuditModel, run_settings
from dpfair.data.prepare import PreparedDataset
from dpfair.pipeline.runner import train_run

N_TRAIN, N_VAL, N_TEST, DELTA = 1000, 200, 200, 1e-5
TRAINING = {"epochs": 4, "batch_size": 50, "lr": 1e-2}


@pytest.fixture(scope="module")
def prepared():
    """A linear label on 20 features (rows numbered in the first feature's place by ``row``)."""
    g = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_VAL + N_TEST
    w = torch.nn.functional.normalize(torch.randn(20, generator=g), dim=0)
    x = torch.randn(n, 20, generator=g)
    y = (x @ w > 0).float()
    x += torch.outer(2 * y - 1, w)
    split = ["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * N_TEST
    samples = pd.DataFrame({"split": split, "label": y.int().numpy(), "sex": np.where(np.arange(n) % 3 == 0, "F", "M")})
    meta = {
        "name": "toy",
        "modality": "tabular",
        "delta": DELTA,
        "privacy_unit": "record",
        "preprocessing": {},
        "card": {"sensitive_attributes": ["sex"]},
    }
    return PreparedDataset(x=x, y=y, samples=samples, meta=meta)


def settings(epsilon=1.0, **recipe):
    return run_settings(model="mlp", modality="tabular", epsilon=epsilon, delta=DELTA, training={**TRAINING, **recipe})


def outputs(folder):
    return {k: folder / f for k, f in (("references", "r.csv.gz"), ("canaries", "c.csv"), ("record", "m.json"))}


@pytest.fixture
def calls(monkeypatch):
    """Every train_like call of train_models, by keyword, answered by an untrained linear model (no training)."""
    seen = []

    def fake(**kwargs):
        seen.append(kwargs)
        return AuditModel(model=torch.nn.Linear(kwargs["x"].shape[1], 1), record={"n_train": len(kwargs["y"])})

    monkeypatch.setattr(train_models, "train_like", fake)
    return seen


def rows_of(prepared, x_part):
    """Positions in the prepared data of the rows of ``x_part`` (the features are continuous: no ties)."""
    index = {tuple(r): i for i, r in enumerate(prepared.x.numpy().round(6).tolist())}
    return {index[tuple(r)] for r in x_part.numpy().round(6).tolist()}


# --- 3: the calibration does not depend on the bits --------------------------------------------------------


def test_the_canary_runs_calibration_is_fixed_before_the_bits_are_drawn(prepared, tmp_path, calls):
    m = 300
    expected = canary_calibration(n_train=N_TRAIN, n_canaries=m, design="membership")
    assert expected == N_TRAIN + m // 2
    sizes = set()
    for seed in range(4):  # four draws of the bits (and of the canaries)
        train_audit_models(
            prepared=prepared, settings=settings(), seed=seed, n_reference=0, n_canaries=m, outputs=outputs(tmp_path)
        )
        canary_run = calls[-1]
        _, included = choose_canaries(splits=prepared.samples["split"], m=m, seed=seed)
        assert len(canary_run["y"]) == N_TRAIN + included.sum()  # the rows follow the bits ...
        sizes.add(len(canary_run["y"]))
        assert canary_run["calibration_size"] == expected  # ... the calibration does not
    assert len(sizes) > 1  # the draws did differ in how many canaries they put in


def test_same_canaries_with_other_bits_are_calibrated_alike(prepared, calls):
    rows = np.arange(N_TRAIN, N_TRAIN + 200)
    for included in (np.zeros(200, dtype=int), np.ones(200, dtype=int)):
        train_canary_run(
            prepared=prepared,
            settings=settings(),
            rows=rows,
            included=included,
            design="membership",
            calibration_size=canary_calibration(n_train=N_TRAIN, n_canaries=200, design="membership"),
            seed=0,
        )
    assert [len(c["y"]) for c in calls] == [N_TRAIN, N_TRAIN + 200]
    assert calls[0]["calibration_size"] == calls[1]["calibration_size"] == N_TRAIN + 100


def test_two_draws_of_the_bits_give_the_same_sigma_q_and_steps(prepared):
    rows = np.arange(N_TRAIN, N_TRAIN + 200)
    records = []
    # none drawn in (1000 rows: 20 batches of 50) and all drawn in (1200 rows: 24): q and steps would differ
    for included in (np.zeros(200, dtype=int), np.ones(200, dtype=int)):
        run = train_canary_run(
            prepared=prepared,
            settings=settings(),
            rows=rows,
            included=included,
            design="membership",
            calibration_size=canary_calibration(n_train=N_TRAIN, n_canaries=200, design="membership"),
            seed=0,
        )
        records.append(run.record)
    first, second = records
    assert (first["n_train"], second["n_train"]) == (N_TRAIN, N_TRAIN + 200)
    for key in ("noise_multiplier", "sample_rate", "steps", "expected_batch_size"):
        assert first[key] == pytest.approx(second[key], rel=1e-12), key
    assert first["calibration_fixed"] and second["calibration_fixed"]


# --- 4: the validation split -------------------------------------------------------------------------------


def test_every_audit_model_gets_the_validation_rows_it_does_not_train_on(prepared, tmp_path, calls):
    train_audit_models(
        prepared=prepared, settings=settings(), seed=0, n_reference=2, n_canaries=300, outputs=outputs(tmp_path)
    )
    validation = set(np.flatnonzero((prepared.samples["split"] == "val").to_numpy()))
    canaries, _ = choose_canaries(splits=prepared.samples["split"], m=300, seed=0)
    *references, canary_run = calls
    for call in references:
        trained, checked = rows_of(prepared, call["x"]), rows_of(prepared, call["x_val"])
        assert checked == validation - trained and checked  # the validation rows outside its half
        assert call["y_val"].tolist() == prepared.y[sorted(checked)].tolist()
    checked = rows_of(prepared, canary_run["x_val"])
    assert checked == validation - set(canaries.tolist())  # every canary left out, drawn in or not
    assert 0 < len(checked) < N_VAL


@pytest.mark.parametrize("recipe", [{"select_best": True}, {"class_weight": "balanced"}])
def test_recipes_that_need_the_validation_split_are_audited(prepared, tmp_path, recipe):
    records = train_audit_models(
        prepared=prepared, settings=settings(**recipe), seed=0, n_reference=2, n_canaries=100, outputs=outputs(tmp_path)
    )
    for r in [*records["references"], records["canary_run"]]:
        assert r["epsilon_spent"] <= 1.0
        if recipe.get("select_best"):
            assert r["select_best"] and 1 <= r["best_epoch"] <= TRAINING["epochs"]


def test_a_select_best_run_is_audited_end_to_end(prepared, tmp_path):
    recipe = {**TRAINING, "select_best": True}
    paths = {k: tmp_path / k for k in ("model.pt", "scores.csv", "run.json", "card.json", "meta.json")}
    paths["meta.json"].write_text(json.dumps(prepared.meta))
    train_run(
        prepared=prepared,
        model_name="mlp",
        epsilon=1.0,
        seed=0,
        config=recipe,
        device="cpu",
        model_path=paths["model.pt"],
        scores_path=paths["scores.csv"],
        record_path=paths["run.json"],
        card_path=paths["card.json"],
    )
    out = outputs(tmp_path)
    records = train_audit_models(
        prepared=prepared, settings=settings(select_best=True), seed=0, n_reference=2, n_canaries=200, outputs=out
    )
    assert records["canary_run"]["best_epoch"] is not None
    table = audit_cell(
        runs=[{"scores": paths["scores.csv"], "record": paths["run.json"], "card": paths["card.json"]}],
        meta=paths["meta.json"],
        settings={"attacks": ["loss", "rmia", "one_run"], "n_bootstrap": 50, "guess_counts": [10, 20, 50, 100]},
        trained={"reference_models": {0: out["references"]}, "canaries": {0: out["canaries"]}},
        outputs={"table": tmp_path / "audit.csv", "roc": tmp_path / "roc.csv"},
    )
    assert set(table["attack"]) == {"loss", "rmia", "one_run"}
    assert table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item() <= 1.0
