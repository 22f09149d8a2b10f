"""Privacy cards: complete for every run, and a run whose settings contradict its accounting fails."""

import math

import pytest
import torch
from dpfair.errors import PrivacyError
from dpfair.privacy.card import build_privacy_card, check_privacy_card
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train

META = {"card": {}}


def card_of(record: dict, meta: dict) -> dict:
    """The card the runner builds: the run's mechanism states what it covers."""
    from dpfair.training.mechanisms import get_mechanism
    from dpfair.training.tuning.names import split_method

    mechanism = get_mechanism(split_method(record.get("method", "dpsgd"))[0])
    return build_privacy_card(record, meta, statement=mechanism.statement(meta=meta, record=record))


@pytest.fixture(scope="module")
def records():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g)
    y = (x[:, 0] > 0).float()
    out = {}
    for eps in (3.0, math.inf):
        r = train(
            model_name="mlp",
            modality="tabular",
            x_train=x,
            y_train=y,
            epsilon=eps,
            delta=1e-4,
            config=TrainConfig(epochs=2, batch_size=50),
            seed=0,
        ).record
        out[eps] = r
    return out


def test_private_card_reports_three_accountants_that_agree(records):
    card = card_of(records[3.0], META)
    for key in (
        "target_epsilon",
        "epsilon_spent",
        "delta",
        "noise_multiplier",
        "max_grad_norm",
        "clipping",
        "sampling",
        "sample_rate",
        "expected_batch_size",
        "epochs",
        "steps",
        "n_train",
        "privacy_unit",
        "privacy_unit_enforcement",
        "guarantee_covers",
        "hyperparameter_selection",
        "accountant_implementation",
        "method",
        "unit",
        "n_units",
        "ledger",
    ):
        assert key in card, key
    assert card["epsilon_spent"] == pytest.approx(card["epsilon_prv"], rel=1e-3)
    assert abs(card["epsilon_pld"] - card["epsilon_prv"]) < 0.05
    assert card["epsilon_rdp"] > card["epsilon_pld"]  # RDP is the looser bound at the same σ
    assert card["epsilon_pld"] <= 3.0 * 1.02 + 0.01
    assert card["sampling"] == "poisson" and card["steps"] == 20 and card["sample_rate"] == pytest.approx(0.1)


def test_non_private_card(records):
    card = card_of(records[math.inf], META)
    assert card["noise_multiplier"] == 0 and card["clipping"] == "none"
    assert all(math.isinf(card[f"epsilon_{a}"]) for a in ("rdp", "prv", "pld"))


def test_patients_with_several_rows_are_stated_with_their_group_privacy(records):
    card = card_of(records[3.0], {"card": {}, "train_patients": {"n": 200, "max_rows": 4}})
    assert "group of 4 rows" in card["privacy_unit_enforcement"]
    gp = card["group_privacy"]  # (kε, k e^{(k-1)ε} δ) at ε = 3, k = 4, δ = 1e-4
    assert gp["epsilon"] == 12.0 and gp["delta"] == pytest.approx(4 * math.exp(9) * 1e-4)
    assert not gp["meaningful"] and "no meaningful patient-level guarantee" in gp["statement"]
    small = card_of(records[3.0], {"card": {}, "train_patients": {"n": 200, "max_rows": 1}})
    assert "group_privacy" not in small and "one row per patient" in small["privacy_unit_enforcement"]
    lesions = card_of(records[3.0], {"card": {"patient_unit": "lesion"}, "train_patients": {"n": 200, "max_rows": 2}})
    assert "a lesion has up to 2 rows" in lesions["privacy_unit_enforcement"]
    images = card_of(records[3.0], {"card": {"row_unit": "image"}})
    assert (
        "one row per image" in images["privacy_unit_enforcement"]
        and "no patient ids" in images["privacy_unit_enforcement"]
    )


def test_card_epsilons_are_replays_of_the_ledger_json_alone(records):
    from dp_accounting.pld import PLDAccountant
    from dpfair.privacy.ledger import event_from_json

    card = card_of(records[3.0], META)
    acc = PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(event_from_json(card["ledger"]))
    assert acc.get_epsilon(card["delta"]) == pytest.approx(card["epsilon_pld"]) and card["epsilon_pld"] <= 3.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sampling": "shuffle"}, "accountants assume Poisson sampling"),
        ({"delta": 0.01}, "not below 1/n_units"),
        ({"epsilon_spent": 3.5, "epsilon_prv": 3.5}, "exceeds the target"),
        ({"steps": 19}, "19 steps recorded; epochs × int\\(1/q\\) gives 20"),
        ({"accounted_sample_rate": 0.05}, "accounted q 0.05 is below the sampling rate 0.1"),
        ({"noise_multiplier": 0.0}, "noise multiplier 0.0"),
        ({"noise_multiplier": 5.0}, "the ledger charges noise multiplier"),
        (
            {
                "ledger": {
                    "type": "SelfComposedDpEvent",
                    "count": 10,
                    "event": {
                        "type": "PoissonSampledDpEvent",
                        "sampling_probability": 0.1,
                        "event": {"type": "GaussianDpEvent", "noise_multiplier": 1.0},
                    },
                }
            },
            "the ledger charges 10 steps but training took 20",
        ),
        ({"epsilon_pld": 3.4}, "independent PLD accountant gives epsilon 3.4"),
        ({"epsilon_spent": float("nan")}, "epsilon spent nan is not the ledger's replay"),
        ({"epsilon_spent": 0.1}, "epsilon spent 0.1 is not the ledger's replay under prv"),
        # a record-level claim whose ledger charges no DP-SGD step
        ({"ledger": {"type": "NoOpDpEvent"}}, "must charge its Poisson-subsampled Gaussian steps"),
        (
            {"ledger": {"type": "GaussianDpEvent", "noise_multiplier": 50.0}},
            "must charge its Poisson-subsampled Gaussian steps",
        ),
        ({"epsilon_pld": float("nan")}, "independent PLD accountant gives epsilon nan"),
    ],
)
def test_contradictions_fail(records, change, message):
    card = card_of(records[3.0], META)
    card.update(change)
    card["delta_below_one_over_n"] = card["delta"] < card["one_over_n_units"]
    with pytest.raises(PrivacyError, match=message):
        check_privacy_card(card)


def test_a_too_small_noise_multiplier_is_caught_by_the_independent_accountant(records):
    import copy

    sigma = records[3.0]["noise_multiplier"] * 0.7
    ledger = copy.deepcopy(records[3.0]["ledger"])
    ledger["event"]["event"]["noise_multiplier"] = sigma
    record = {**records[3.0], "noise_multiplier": sigma, "ledger": ledger}
    with pytest.raises(PrivacyError, match="not the ledger's replay"):  # the claimed ε is not the ledger's
        card_of(record, META)
    from dpfair.privacy.ledger import replay_epsilon

    spent = replay_epsilon(ledger, accountant="prv", delta=record["delta"])
    with pytest.raises(PrivacyError, match="exceeds the target"):  # and claimed as what it is, it overspends
        card_of({**record, "epsilon_spent": spent}, META)


def test_inf_run_with_noise_fails(records):
    with pytest.raises(PrivacyError, match="non-private run must not record noise"):
        card_of({**records[math.inf], "noise_multiplier": 1.0}, META)
