"""The audit stage end to end on real DP-SGD: a mechanism with its noise switched off while it claims ε = 1 is
caught by the one-run audit; the honest mechanism passes."""

import json
import math

import numpy as np
import opacus.optimizers.optimizer as opacus_optimizer
import opacus.optimizers.optimizer_fast_gradient_clipping as opacus_fast
import pandas as pd
import pytest
import torch
from dpfair.audit.stage import audit_cell
from dpfair.audit.train_models import choose_canaries, train_audit_models
from dpfair.audit.training_adapter import run_settings
from dpfair.data.prepare import PreparedDataset
from dpfair.errors import PrivacyError
from dpfair.pipeline.runner import train_run

N_TRAIN, N_HELD_OUT, DELTA = 1000, 400, 1e-5
TRAINING = {"epochs": 20, "batch_size": 50, "lr": 1e-2}
SETTINGS = {
    "attacks": ["loss", "rmia", "one_run"],
    "confidence": 0.95,
    "n_bootstrap": 100,
    "guess_counts": [10, 20, 50, 100],
}


@pytest.fixture(scope="module")
def prepared():
    """A linear label on 50 random features: a canary (flipped label) contradicts what the model learns, so only
    memorising it fits it, and an excluded canary gets a confidently wrong prediction."""
    g = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_HELD_OUT
    w = torch.nn.functional.normalize(torch.randn(50, generator=g), dim=0)
    x = torch.randn(n, 50, generator=g)
    y = (x @ w > 0).float()
    x += torch.outer(2 * y - 1, w) * 2.0  # a margin: no row sits near the boundary
    split = ["train"] * N_TRAIN + ["val"] * (N_HELD_OUT // 2) + ["test"] * (N_HELD_OUT // 2)
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


def _audit(prepared, tmp_path, *, epsilon, n_reference=0):
    paths = {
        k: tmp_path / f"{k}"
        for k in (
            "model.pt",
            "scores.csv",
            "run.json",
            "card.json",
            "meta.json",
            "references.csv.gz",
            "canaries.csv",
            "models.json",
            "audit.csv",
            "roc.csv",
        )
    }
    paths["meta.json"].write_text(json.dumps(prepared.meta))
    train_run(
        prepared=prepared,
        model_name="mlp",
        epsilon=epsilon,
        seed=0,
        config=TRAINING,
        device="cpu",
        model_path=paths["model.pt"],
        scores_path=paths["scores.csv"],
        record_path=paths["run.json"],
        card_path=paths["card.json"],
    )
    settings = run_settings(model="mlp", modality="tabular", epsilon=epsilon, delta=DELTA, training=TRAINING)
    train_audit_models(
        prepared=prepared,
        settings=settings,
        seed=0,
        n_reference=n_reference,
        n_canaries=N_HELD_OUT,
        outputs={
            "references": paths["references.csv.gz"],
            "canaries": paths["canaries.csv"],
            "record": paths["models.json"],
        },
    )
    attacks = SETTINGS["attacks"] if n_reference else ["loss", "one_run"]
    return paths, lambda: audit_cell(
        runs=[{"scores": paths["scores.csv"], "record": paths["run.json"], "card": paths["card.json"]}],
        meta=paths["meta.json"],
        settings={**SETTINGS, "attacks": attacks},
        trained={
            "reference_models": {0: paths["references.csv.gz"]} if n_reference else {},
            "canaries": {0: paths["canaries.csv"]},
        },
        outputs={"table": paths["audit.csv"], "roc": paths["roc.csv"]},
    )


def test_noise_switched_off_while_claiming_epsilon_one_fails_the_audit(prepared, tmp_path, monkeypatch):
    def no_noise(
        std, reference, generator=None, secure_mode=False
    ):  # the bug: σ is calibrated and recorded, never applied
        return torch.zeros_like(reference)

    monkeypatch.setattr(opacus_optimizer, "_generate_noise", no_noise)
    monkeypatch.setattr(opacus_fast, "_generate_noise", no_noise)
    paths, run_audit = _audit(prepared, tmp_path, epsilon=1.0)
    card = json.loads(paths["card.json"].read_text())
    assert card["noise_multiplier"] > 0.5 and card["epsilon_spent"] <= 1.0  # the accounting cannot see the bug
    with pytest.raises(PrivacyError, match="certified lower bound .* exceeds the target"):
        run_audit()
    table = pd.read_csv(paths["audit.csv"])  # written before failing, for the log
    bound = table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item()
    assert bound > 1.0


def test_honest_dp_sgd_passes_the_audit_with_all_attacks(prepared, tmp_path):
    paths, run_audit = _audit(prepared, tmp_path, epsilon=1.0, n_reference=2)
    table = run_audit()
    assert set(table["attack"]) == {"loss", "rmia", "one_run"}
    assert table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item() <= 1.0
    assert set(table.query("attribute == 'sex'")["group"]) == {"F", "M"}
    assert list(table.columns) == [
        "dataset",
        "model",
        "method",
        "epsilon",
        "seed",
        "attack",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "attribute",
        "group",
        "note",
    ]
    assert (table["method"] == "dpsgd").all()
    bound_note = table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["note"].item()
    assert bound_note.startswith("membership canaries")
    refs = pd.read_csv(paths["references.csv.gz"])
    assert (refs["in_0"] + refs["in_1"] == 1).all()  # complementary halves of the population
    models = json.loads(paths["models.json"].read_text())
    assert all(
        m["epsilon_spent"] <= 1.0 and m["noise_multiplier"] > 0 for m in [*models["references"], models["canary_run"]]
    )
    roc = pd.read_csv(paths["roc.csv"])
    assert set(roc["attack"]) == {"loss", "rmia"} and roc["fpr"].min() >= 1 / N_HELD_OUT


def test_non_private_training_leaks_through_the_canaries(prepared, tmp_path):
    _, run_audit = _audit(prepared, tmp_path, epsilon=math.inf)
    table = run_audit()  # ε = ∞ claims nothing, so nothing fails
    assert table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item() > 1.0


def test_canaries_come_from_held_out_rows_with_fair_independent_coins():
    splits = pd.Series(["train"] * 3000 + ["val"] * 1000 + ["test"] * 1000)
    rows, included = choose_canaries(splits=splits, m=2000, seed=0)
    assert len(rows) == len(set(rows)) == 2000 and (rows >= 3000).all()
    assert abs(included.mean() - 0.5) < 3 * 0.5 / math.sqrt(2000)
    some, _ = choose_canaries(splits=splits, m=500, seed=0)
    other, _ = choose_canaries(splits=splits, m=500, seed=1)
    assert not np.array_equal(some, other)
    capped, _ = choose_canaries(splits=splits, m=5000, seed=0)
    assert len(capped) == 2000


@pytest.mark.parametrize("method", ["dpsgd_f", "dpsgd_global_adapt"])
def test_audit_models_of_a_mitigation_are_trained_by_it_with_the_rows_groups(prepared, tmp_path, method):
    # the audit trains "like the run": DPSGD-F needs each training row's group, as the audited run had it
    settings = run_settings(
        model="mlp",
        modality="tabular",
        epsilon=1.0,
        delta=DELTA,
        method=method,
        training={**TRAINING, "epochs": 2, "mitigation": {"attribute": "sex"}},
    )
    outputs = {k: tmp_path / f for k, f in (("references", "r.csv.gz"), ("canaries", "c.csv"), ("record", "m.json"))}
    records = train_audit_models(
        prepared=prepared, settings=settings, seed=0, n_reference=2, n_canaries=50, outputs=outputs
    )
    for r in [*records["references"], records["canary_run"]]:
        assert r["method"] == method and r["epsilon_spent"] <= 1.0
        assert r["mitigation_groups"] == (["F", "M"] if method == "dpsgd_f" else [])


def test_a_need_no_attack_has_trains_nothing(prepared, tmp_path):
    """n_canaries = 0 (no configured attack needs canaries, dpfair.audit.plan): no canary run, header-only file."""
    settings = run_settings(model="mlp", modality="tabular", epsilon=1.0, delta=DELTA, training=TRAINING)
    outputs = {k: tmp_path / f for k, f in (("references", "r.csv.gz"), ("canaries", "c.csv"), ("record", "m.json"))}
    records = train_audit_models(
        prepared=prepared, settings=settings, seed=0, n_reference=0, n_canaries=0, outputs=outputs
    )
    assert records == {"references": [], "canary_run": None} == json.loads(outputs["record"].read_text())
    assert pd.read_csv(outputs["canaries"]).empty and list(pd.read_csv(outputs["references"]).columns) == ["row"]
