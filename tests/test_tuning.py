"""Private hyperparameter tuning: its accountant against the paper and dp-accounting, its calibration, its
random number of trials, and an end-to-end tuned run whose selection never reads the test split."""

import json
import math

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting.rdp import RdpAccountant
from dpfair.data.prepare import prepare_dataset
from dpfair.errors import PrivacyError
from dpfair.pipeline.runner import train_run
from dpfair.privacy.ledger import event_from_json, poisson_gaussian
from dpfair.training.config import TrainConfig
from dpfair.training.tuning.accounting import (
    ORDERS,
    calibrate_dominated,
    calibrate_reference,
    check_dominated,
    procedure_epsilon,
    procedure_event,
    rdp_curve,
)
from dpfair.training.tuning.procedure import TRIAL_SEED_STRIDE, draw_trials
from dpfair.training.tuning.search_space import search_space


def test_repeat_and_select_matches_papernot_steinke_corollary_4():
    """A Gaussian with ρ-zCDP (RDP ρλ), geometric K with mean μ (η = 1, γ = 1/μ): Corollary 4 of Papernot &
    Steinke gives RDP ρ(λ-1) + log μ/(λ-1) + 2(1+η)√(ρ log(1/γ)) - ηρ for λ above 1 + √(log μ / ρ), with the
    best λ̂; on a grid of integer λ̂ the bound can only be larger, and by little."""
    rho, mean = 0.1, 10.0
    event = procedure_event(dp_accounting.GaussianDpEvent(math.sqrt(0.5 / rho)), mean_trials=mean)
    curve = rdp_curve(event)
    eta, gamma = 1.0, 1.0 / mean
    checked = 0
    for order, got in zip(ORDERS, curve):
        if order > 1 + math.sqrt(math.log(mean) / rho):
            paper = (
                rho * (order - 1)
                + math.log(mean) / (order - 1)
                + 2 * (1 + eta) * math.sqrt(-rho * math.log(gamma))
                - eta * rho
            )
            assert paper * (1 - 1e-9) <= got <= paper * 1.02, order
            checked += 1
    assert checked > 20


def test_tuning_epsilon_is_dp_accountings_own_replay_on_its_default_grid_or_above():
    trial = poisson_gaussian(noise_multiplier=1.1, sample_rate=0.05, steps=300)
    event = procedure_event(trial, mean_trials=3)
    ours = procedure_epsilon(event, delta=1e-5)
    acc = RdpAccountant()
    acc.compose(dp_accounting.dp_event.RepeatAndSelectDpEvent(trial, 3.0, 1.0))
    reference = acc.get_epsilon(1e-5)
    assert reference <= ours <= reference * 1.1  # a sub-grid is conservative, and close
    # tuning costs more than the trial alone, and less than running every trial of a long tail
    alone = procedure_epsilon(trial, delta=1e-5)
    assert alone < ours < 3 * alone


@pytest.mark.parametrize("epsilon,mean", [(1.0, 2.0), (10.0, 4.0)])
def test_calibration_reaches_the_target_and_no_more(epsilon, mean):
    q, steps = 0.04, 250
    sigma = calibrate_reference(epsilon=epsilon, delta=1e-5, sample_rate=q, steps=steps, mean_trials=mean)
    spent = lambda s: procedure_epsilon(  # noqa: E731
        procedure_event(poisson_gaussian(noise_multiplier=s, sample_rate=q, steps=steps), mean_trials=mean), delta=1e-5
    )
    assert 0.97 * epsilon <= spent(sigma) <= epsilon
    assert spent(sigma * 0.99) > epsilon  # not over-noised


def test_every_trial_is_dominated_by_the_reference_and_tightly():
    ref = rdp_curve(poisson_gaussian(noise_multiplier=1.3, sample_rate=0.05, steps=200))
    for q, steps in [(0.02, 500), (0.1, 100), (0.05, 400)]:
        sigma = calibrate_dominated(ref, sample_rate=q, steps=steps)
        check_dominated(poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps), ref)
        with pytest.raises(PrivacyError, match="above the reference"):
            check_dominated(poisson_gaussian(noise_multiplier=sigma * 0.99, sample_rate=q, steps=steps), ref)


def test_number_of_trials_is_geometric_with_the_expected_mean():
    space = search_space("image")
    counts = np.array([len(draw_trials(seed=s, expected_trials=3.0, space=space)) for s in range(3000)])
    assert counts.min() >= 1
    assert abs(counts.mean() - 3.0) < 0.15  # SE of the mean: sqrt(6)/sqrt(3000) ≈ 0.045
    assert abs((counts == 1).mean() - 1 / 3) < 0.03  # P(K = 1) = 1/μ


@pytest.fixture(scope="module")
def prepared():
    return prepare_dataset(name="synthetic_lesions", params={"n_samples": 500, "image_size": 16}, min_group_size=5)


SEED = 0  # draws K = 2 trials with this space: the selection has a choice to make
TUNING = {
    "enabled": True,
    "expected_trials": 2,
    "search_space": {"epochs": [2, 3], "expected_batch_size": [50, 100], "augmult": [1, 2]},
}


def _run(prepared, tmp_path, epsilon, name):
    out = tmp_path / name
    out.mkdir()
    paths = {
        k: out / f
        for k, f in (
            ("model_path", "m.pt"),
            ("scores_path", "s.csv"),
            ("record_path", "r.json"),
            ("card_path", "c.json"),
        )
    }
    record = train_run(
        prepared=prepared,
        model_name="cnn",
        epsilon=epsilon,
        seed=SEED,
        method="dpsgd-tuned",
        config=TrainConfig(epochs=2, batch_size=50, lr=0.002),
        tuning=TUNING,
        device="cpu",
        **paths,
    )
    return record, json.loads(paths["card_path"].read_text())


def test_tuned_run_spends_at_most_the_target_and_its_ledger_replays(prepared, tmp_path):
    record, card = _run(prepared, tmp_path, 3.0, "private")
    k = len(draw_trials(seed=SEED, expected_trials=2, space=search_space("image", TUNING["search_space"])))
    assert record["tuning_trials"] == k == len(card["tuning"]["trials"])
    assert record["epsilon_spent"] <= 3.0 and record["epsilon_per_trial"] < record["epsilon_spent"]
    ledger = event_from_json(card["ledger"])
    assert type(ledger).__name__ == "RepeatAndSelectDpEvent" and ledger.mean == 2 and ledger.shape == 1
    acc = RdpAccountant()  # replay with dp-accounting's own default orders
    acc.compose(ledger)
    assert acc.get_epsilon(record["delta"]) <= 3.0
    assert card["epsilon_pld"] is None and card["epsilon_rdp_google"] <= 3.0  # PLD cannot replay it (NaN → null)
    # the run keeps its own seed (tables pair runs by it); the selected trial's training seed is beside it
    assert record["seed"] == SEED and record["trial_seed"] == SEED + TRIAL_SEED_STRIDE * record["selected_trial"]
    chosen = card["tuning"]["trials"][record["selected_trial"]]
    assert record["lr"] == chosen["lr"] and record["epochs"] == chosen["epochs"]
    assert record["best_epoch"] == chosen["best_epoch"]
    assert chosen["val_auroc"] == max(t["val_auroc"] for t in card["tuning"]["trials"])
    # the private arm drew from the private space (SGD, normalised clipping)
    assert {t["optimizer"] for t in card["tuning"]["trials"]} == {"sgd"}
    assert {t["clip_policy"] for t in card["tuning"]["trials"]} == {"normalized"}
    # the ∞ arm runs as many trials (equal effort), drawn from its own (non-private) space
    inf_record, inf_card = _run(prepared, tmp_path, "inf", "nonprivate")
    assert inf_record["tuning_trials"] == k
    nonprivate = search_space("image", TUNING["search_space"], private=False)
    for t in inf_card["tuning"]["trials"]:
        assert all(t[key] in values for key, values in nonprivate.items()), t
        assert t["optimizer"] == "adam"


def test_each_arm_draws_the_same_number_of_trials_from_its_own_space():
    private, nonprivate = search_space("image"), search_space("image", private=False)
    assert private != nonprivate
    for seed in range(200):
        a = draw_trials(seed=seed, expected_trials=3, space=private)
        b = draw_trials(seed=seed, expected_trials=3, space=nonprivate)
        assert len(a) == len(b)
        assert all(t["optimizer"] == "sgd" for t in a) and all(t["optimizer"] == "adam" for t in b)
    # the ε = ∞ arm's own keys apply on top of the shared ones
    both = search_space("image", {"epochs": [3]}, private=False, nonprivate_overrides={"lr": [0.01]})
    assert both["epochs"] == [3] and both["lr"] == [0.01]
    assert search_space("image", {"epochs": [3]}, nonprivate_overrides={"lr": [0.01]})["lr"] == [4.0, 8.0]


def test_selection_never_reads_the_test_split(prepared, tmp_path):
    record, card = _run(prepared, tmp_path, 10.0, "clean")
    poisoned = type(prepared)(
        x=prepared.x.clone(), y=prepared.y.clone(), samples=prepared.samples.copy(), meta=prepared.meta
    )
    assert record["tuning_trials"] >= 2
    test = torch.from_numpy((prepared.samples["split"] == "test").to_numpy(copy=True))
    poisoned.y[test] = 1 - poisoned.y[test]
    poisoned.samples.loc[test.numpy(), "label"] = 1 - poisoned.samples.loc[test.numpy(), "label"]
    poisoned.x[test] = poisoned.x[test] * -3.0 + 1.0
    record2, card2 = _run(poisoned, tmp_path, 10.0, "poisoned")
    assert record2["selected_trial"] == record["selected_trial"]
    assert [t["val_auroc"] for t in card2["tuning"]["trials"]] == [t["val_auroc"] for t in card["tuning"]["trials"]]


def test_report_rows_put_the_fixed_recipe_beside_the_tuned_one():
    import pandas as pd
    from dpfair.report.tuning import tuning_rows

    base = dict(
        dataset="d",
        model="cnn",
        attribute="site",
        epsilon_spent=9.9,
        expected_batch_size=128.0,
        epochs=15,
        max_grad_norm=1.0,
        optimizer="adam",
        clip_policy="flat",
        augmult=1,
        class_weight="none",
        lr_schedule="constant",
        ema_decay=float("nan"),
    )
    rows = []
    for seed in (0, 1):
        rows.append(
            {
                **base,
                "method": "dpsgd",
                "epsilon": 10.0,
                "seed": seed,
                "auroc": 0.6,
                "lr": 0.002,
                "tuning_trials": 0,
                "epsilon_per_trial": 10.0,
            }
        )
        rows.append(
            {
                **base,
                "method": "dpsgd-tuned",
                "epsilon": 10.0,
                "seed": seed,
                "auroc": 0.7 + 0.1 * seed,
                "lr": 0.004,
                "tuning_trials": 2 + seed,
                "epsilon_per_trial": 6.5,
            }
        )
        rows.append(
            {
                **base,
                "method": "dpsgd",
                "epsilon": 10.0,
                "seed": seed,
                "auroc": 0.6,
                "lr": 0.002,
                "attribute": "sex",
                "tuning_trials": 0,
                "epsilon_per_trial": 10.0,
            }
        )  # a second attribute row
    out = tuning_rows(pd.DataFrame(rows))
    assert len(out) == 1
    r = out[0]
    assert (r["method"], r["epsilon"], r["seeds"]) == ("dpsgd", "10", 2)
    assert (r["fixed_auroc"], r["tuned_auroc"], r["difference"], r["trials"]) == ("0.6", "0.75", "0.15", "2.5")
    assert "lr=0.004" in r["recipe"] and "expected_batch_size=128" in r["recipe"]
    assert tuning_rows(pd.DataFrame([rows[0]])) == []  # no tuned arm: no table
