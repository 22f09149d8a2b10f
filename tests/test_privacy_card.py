"""Privacy cards: complete for every run, and a run whose settings contradict its accounting fails."""

import math

import pytest
import torch

from dpfair.config import TrainConfig
from dpfair.errors import PrivacyError
from dpfair.privacy_card import build_privacy_card, check_privacy_card
from dpfair.training import train

META = {"max_records_per_patient": 1}


@pytest.fixture(scope="module")
def records():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g)
    y = (x[:, 0] > 0).float()
    out = {}
    for eps in (3.0, math.inf):
        r = train(model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=eps, delta=1e-4,
                  config=TrainConfig(epochs=2, batch_size=50), seed=0).record
        out[eps] = {**r, "privacy_unit": "record"}
    return out


def test_private_card_reports_three_accountants_that_agree(records):
    card = build_privacy_card(records[3.0], META)
    for key in ("target_epsilon", "epsilon_spent", "delta", "noise_multiplier", "max_grad_norm", "clipping",
                "sampling", "sample_rate", "expected_batch_size", "epochs", "steps", "n_train", "privacy_unit",
                "privacy_unit_enforcement", "guarantee_covers", "hyperparameter_selection", "accountant_implementation"):
        assert key in card, key
    assert card["epsilon_spent"] == pytest.approx(card["epsilon_prv"], rel=1e-3)
    assert abs(card["epsilon_pld"] - card["epsilon_prv"]) < 0.05
    assert card["epsilon_rdp"] > card["epsilon_pld"]  # RDP is the looser bound at the same σ
    assert card["epsilon_pld"] <= 3.0 * 1.02 + 0.01
    assert card["sampling"] == "poisson" and card["steps"] == 20 and card["sample_rate"] == pytest.approx(0.1)


def test_non_private_card(records):
    card = build_privacy_card(records[math.inf], META)
    assert card["noise_multiplier"] == 0 and card["clipping"] == "none"
    assert all(math.isinf(card[f"epsilon_{a}"]) for a in ("rdp", "prv", "pld"))


def test_patients_with_several_rows_are_stated(records):
    card = build_privacy_card(records[3.0], {"max_records_per_patient": 4})
    assert "group of 4 rows" in card["privacy_unit_enforcement"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sampling": "shuffle"}, "accountants assume Poisson sampling"),
        ({"delta": 0.01}, "not below 1/n_train"),
        ({"epsilon_spent": 3.5}, "exceeds the target"),
        ({"steps": 19}, "19 steps recorded; epochs × int\\(1/q\\) gives 20"),
        ({"accounted_sample_rate": 0.05}, "accounted q 0.05 is below the sampling rate 0.1"),
        ({"noise_multiplier": 0.0}, "noise multiplier 0.0"),
        ({"epsilon_pld": 3.4}, "independent PLD accountant gives epsilon 3.4"),
        ({"epsilon_spent": float("nan")}, "epsilon spent nan exceeds the target"),
        ({"epsilon_pld": float("nan")}, "independent PLD accountant gives epsilon nan"),
    ],
)
def test_contradictions_fail(records, change, message):
    card = build_privacy_card(records[3.0], META)
    card.update(change)
    card["delta_below_one_over_n"] = card["delta"] < card["one_over_n_train"]
    with pytest.raises(PrivacyError, match=message):
        check_privacy_card(card)


def test_a_too_small_noise_multiplier_is_caught_by_the_independent_accountant(records):
    record = {**records[3.0], "noise_multiplier": records[3.0]["noise_multiplier"] * 0.7}
    with pytest.raises(PrivacyError, match="independent PLD accountant"):
        build_privacy_card(record, META)


def test_inf_run_with_noise_fails(records):
    with pytest.raises(PrivacyError, match="non-private run must not record noise"):
        build_privacy_card({**records[math.inf], "noise_multiplier": 1.0}, META)
