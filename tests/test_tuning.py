"""Private hyperparameter tuning: a fixed, public number of trials whose composition is charged; its
calibration, replayed by dp-accounting through tools/replay_ledgers.py for K = 1…6; and end-to-end tuned
runs whose cards list exactly what was released and whose selection never reads the test split."""

import importlib.util
import json
import math
from pathlib import Path

import dp_accounting
import pytest
import torch
from dpfair.data.prepare import prepare_dataset
from dpfair.errors import ConfigError, PrivacyError
from dpfair.pipeline.runner import train_run
from dpfair.privacy.card import check_privacy_card
from dpfair.privacy.ledger import event_from_json, poisson_gaussian
from dpfair.training.config import TrainConfig
from dpfair.training.tuning.accounting import calibrate_trials, clt_sigma, procedure_epsilon, procedure_event
from dpfair.training.tuning.procedure import (
    TRIAL_SEED_STRIDE,
    draw_trials,
    number_of_trials,
    planned_rate_and_steps,
)
from dpfair.training.tuning.regime import private_recipe
from dpfair.training.tuning.search_space import NOISE_AWARE, recipe_fields, search_space

_spec = importlib.util.spec_from_file_location(
    "replay_ledgers", Path(__file__).parents[1] / "tools" / "replay_ledgers.py"
)
replay_ledgers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replay_ledgers)


CNN_PARAMETERS = 23_585  # the default cnn's trainable parameters (dpfair.models.count_parameters)


def _plans(k: int, *, epsilon: float, seed: int = 0, n: int = 900) -> list[tuple[float, int]]:
    """The (q, steps) of the K trials the private image space draws for a seed, on ``n`` training rows."""
    out = []
    for recipe in draw_trials(seed=seed, trials=k, space=search_space("image", {"epochs": [2, 3, 5]})):
        cfg, _ = recipe_fields(recipe, epsilon=epsilon, delta=1e-5, n=n, n_params=CNN_PARAMETERS, trials=k, epochs=3)
        out.append(planned_rate_and_steps(n, batch_size=cfg["batch_size"], epochs=cfg["epochs"]))
    return out


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("epsilon", [1.0, 10.0])
def test_the_composed_ledger_replays_within_the_target_for_every_k(k, epsilon):
    plans = _plans(k, epsilon=epsilon, seed=k)
    sigmas = calibrate_trials(plans, epsilon=epsilon, delta=1e-5)
    ledger = procedure_event([(s, q, n) for s, (q, n) in zip(sigmas, plans)])
    # replayed by the tool that imports nothing of dpfair, from the JSON the card stores
    from dpfair.privacy.ledger import event_to_json

    replayed, accountant = replay_ledgers.replay(replay_ledgers.build(event_to_json(ledger)), 1e-5)
    assert accountant == "pld" and replayed <= epsilon
    assert replayed >= 0.97 * epsilon  # the budget is spent, not wasted on extra noise
    # and the search could not have used less noise: 1% less on every trial overspends
    tighter = [(s * 0.99, q, n) for s, (q, n) in zip(sigmas, plans)]
    assert procedure_epsilon(tighter, delta=1e-5) > epsilon


def test_more_trials_cost_more_noise_per_trial():
    plans = _plans(6, epsilon=3.0, seed=1)
    one = calibrate_trials(plans[:1], epsilon=3.0, delta=1e-5)[0]
    six = calibrate_trials(plans, epsilon=3.0, delta=1e-5)[0]
    assert six > one * 1.5  # each of six trials gets a sixth of the budget


def test_every_trial_gets_an_equal_share_by_the_clt():
    plans = [(0.1, 100), (0.25, 40), (0.05, 600)]
    sigmas = calibrate_trials(plans, epsilon=3.0, delta=1e-5)
    mus = [q * math.sqrt(n * (math.exp(s**-2) - 1)) for s, (q, n) in zip(sigmas, plans)]
    assert max(mus) == pytest.approx(min(mus), rel=1e-9)
    assert clt_sigma(mus[0], sample_rate=0.1, steps=100) == pytest.approx(sigmas[0])


def test_the_procedure_is_the_composition_of_its_trials_under_dp_accounting():
    trials = [(1.2, 0.1, 100), (2.0, 0.2, 50)]
    ours = procedure_epsilon(trials, delta=1e-5)
    acc = dp_accounting.pld.PLDAccountant()
    for s, q, n in trials:
        acc.compose(poisson_gaussian(noise_multiplier=s, sample_rate=q, steps=n))
    assert ours == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


def test_the_number_of_trials_is_fixed_and_the_random_one_is_refused():
    assert number_of_trials({"trials": 4}) == 4 and number_of_trials({}) >= 1
    for seed in range(20):
        assert len(draw_trials(seed=seed, trials=4, space=search_space("tabular"))) == 4
    with pytest.raises(ConfigError, match="tuning.trials"):
        number_of_trials({"expected_trials": 2})
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="tuning.trials"):
            number_of_trials({"trials": bad})


@pytest.fixture(scope="module")
def prepared():
    return prepare_dataset(name="synthetic_lesions", params={"n_samples": 500, "image_size": 16}, min_group_size=5)


SEED = 0
TUNING = {
    "enabled": True,
    "trials": 2,
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


def test_tuned_run_spends_at_most_the_target_and_its_card_lists_every_trial(prepared, tmp_path):
    record, card = _run(prepared, tmp_path, 3.0, "private")
    k = TUNING["trials"]
    assert record["tuning_trials"] == k == len(card["tuning"]["trials"])
    assert record["epsilon_spent"] <= 3.0 and record["epsilon_per_trial"] < record["epsilon_spent"]
    ledger = event_from_json(card["ledger"])
    assert type(ledger).__name__ == "ComposedDpEvent" and len(ledger.events) == k
    listed = [(t["noise_multiplier"], t["sample_rate"], t["steps"]) for t in card["tuning"]["trials"]]
    assert [(e.event.event.noise_multiplier, e.event.sampling_probability, e.count) for e in ledger.events] == listed
    assert card["epsilon_pld"] <= 3.0  # the claim; PRV is an estimate of the same composition, within 1%
    assert card["epsilon_prv"] == pytest.approx(card["epsilon_pld"], rel=0.01)
    assert replay_ledgers.main([str(tmp_path / "private" / "c.json")]) == 0
    # the run keeps its own seed (tables pair runs by it); the selected trial's training seed is beside it
    assert record["seed"] == SEED and record["trial_seed"] == SEED + TRIAL_SEED_STRIDE * record["selected_trial"]
    chosen = card["tuning"]["trials"][record["selected_trial"]]
    assert record["lr"] == chosen["lr"] and record["epochs"] == chosen["epochs"]
    assert record["best_epoch"] == chosen["best_epoch"]
    assert chosen["val_auroc"] == max(t["val_auroc"] for t in card["tuning"]["trials"])
    assert any("selected trial" in r for r in card["released_outside_guarantee"])
    # the private arm drew from the private space (SGD, normalised clipping)
    assert {t["optimizer"] for t in card["tuning"]["trials"]} == {"sgd"}
    assert {t["clip_policy"] for t in card["tuning"]["trials"]} == {"normalized"}
    # a card whose listed trials differ from its ledger is refused
    forged = json.loads(json.dumps(card))
    forged["tuning"]["trials"] = forged["tuning"]["trials"][:1]
    with pytest.raises(PrivacyError, match="trials but its card lists"):
        check_privacy_card(forged)
    forged = json.loads(json.dumps(card))  # a trial listed at half the rate it sampled at
    forged["tuning"]["trials"][0]["sample_rate"] /= 2
    with pytest.raises(PrivacyError, match="trials its card lists|below its sampling rate"):
        check_privacy_card(forged)
    # the ∞ arm runs as many trials (equal effort), drawn from its own (non-private) space
    inf_record, inf_card = _run(prepared, tmp_path, "inf", "nonprivate")
    assert inf_record["tuning_trials"] == k
    nonprivate = search_space("image", TUNING["search_space"], private=False)
    for t in inf_card["tuning"]["trials"]:
        assert all(t[key] in values for key, values in nonprivate.items()), t
        assert t["optimizer"] == "adam"
    # its first trial is the fixed recipe (the run's own config), so the reference starts from it
    first = inf_card["tuning"]["trials"][0]
    assert (first["lr"], first["expected_batch_size"], first["epochs"]) == (0.002, 50, 2)


def test_the_tuned_reference_never_trails_the_fixed_recipe_on_validation(prepared, tmp_path):
    """The ε = ∞ arm's first trial is the fixed recipe with the same seed (the same batches) and keeps its
    best validation epoch, and the selection takes the best trial: its validation AUROC is at least the fixed
    recipe run's last-epoch one."""
    config = TrainConfig(epochs=3, batch_size=50, lr=0.002)

    def run(name, seed, method, **extra):
        out = tmp_path / f"{name}-{seed}"
        out.mkdir()
        paths = {f"{k}_path": out / k for k in ("model", "scores", "record", "card")}
        return train_run(prepared=prepared, model_name="cnn", epsilon="inf", seed=seed, method=method,
                         config=config, device="cpu", **extra, **paths)  # fmt: skip

    for seed in (0, 1):
        fixed = run("fixed", seed, "dpsgd")
        tuned = run(
            "tuned", seed, "dpsgd-tuned", tuning={"enabled": True, "trials": 2, "search_space": {"epochs": [3, 4]}}
        )
        last = fixed["history"][-1]["val_auroc"]
        chosen = tuned["tuning"]["trials"][tuned["selected_trial"]]
        assert tuned["tuning"]["trials"][0]["val_auroc"] >= last - 1e-12, (seed, last)
        assert chosen["val_auroc"] >= last - 1e-12


def test_private_trials_take_the_batches_and_epochs_their_noise_ratio_sets(prepared, tmp_path):
    """A noise-aware private space draws a noise ratio; the trial's expected batch and epochs are the regime's
    (dpfair.training.tuning.regime) for the target ε, K, n and the cnn's size, and the card lists them."""
    out = tmp_path / "regime"
    out.mkdir()
    tuning = {"enabled": True, "trials": 2, "private_search_space": {**NOISE_AWARE, "epochs": [1, 2]}}
    record = train_run(
        prepared=prepared,
        model_name="cnn",
        epsilon=1.0,
        seed=SEED,
        method="dpsgd-tuned",
        config=TrainConfig(epochs=2, batch_size=50, lr=0.002),
        tuning=tuning,
        device="cpu",
        **{f"{k}_path": out / k for k in ("model", "scores", "record", "card")},
    )
    n, n_params = record["n_train"], record["n_parameters"]
    for t in record["tuning"]["trials"]:
        plan = private_recipe(
            epsilon=1.0,
            delta=record["delta"],
            n=n,
            n_params=n_params,
            trials=2,
            noise_ratio=t["noise_ratio"],
            epochs=t["epochs_drawn"],
        )
        assert (t["expected_batch_size"], t["epochs"]) == (plan["expected_batch_size"], plan["epochs"]), t
        assert t["noise_ratio"] in (1.0, 2.0, 4.0) and t["noise_ratio_planned"] > 0
    assert record["epsilon_spent"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_tuned_runs_forced_to_k_trials_replay_within_the_target(prepared, tmp_path, k):
    out = tmp_path / f"k{k}"
    out.mkdir()
    train_run(
        prepared=prepared,
        model_name="cnn",
        epsilon=3.0,
        seed=k,
        method="dpsgd-tuned",
        config=TrainConfig(epochs=1, batch_size=50, lr=0.002),
        tuning={**TUNING, "trials": k, "search_space": {"epochs": [1], "expected_batch_size": [50, 100]}},
        device="cpu",
        model_path=out / "m.pt",
        scores_path=out / "s.csv",
        record_path=out / "r.json",
        card_path=out / "privacy_card.json",
    )
    card = json.loads((out / "privacy_card.json").read_text())
    assert len(card["tuning"]["trials"]) == k
    assert replay_ledgers.main([str(out)]) == 0


def test_each_arm_draws_the_same_number_of_trials_from_its_own_space():
    private, nonprivate = search_space("image"), search_space("image", private=False)
    assert private != nonprivate
    for seed in range(200):
        a = draw_trials(seed=seed, trials=3, space=private)
        b = draw_trials(seed=seed, trials=3, space=nonprivate)
        assert len(a) == len(b)
        assert all(t["optimizer"] == "sgd" for t in a) and all(t["optimizer"] == "adam" for t in b)
    # the ε = ∞ arm's own keys apply on top of the shared ones
    both = search_space("image", {"epochs": [3]}, private=False, nonprivate_overrides={"lr": [0.01]})
    assert both["epochs"] == [3] and both["lr"] == [0.01]
    assert search_space("image", {"epochs": [3]}, nonprivate_overrides={"lr": [0.01]})["lr"] == [4.0, 8.0]
    # a noise-aware private space draws a noise ratio and no batches (they follow from it); the ε = ∞ arm never does
    aware = search_space("image", private_overrides=NOISE_AWARE)
    assert aware["noise_ratio"] == [1.0, 2.0, 4.0] and "expected_batch_size" not in aware
    # its SGD step sizes under normalised clipping stay out of the ε = ∞ arm's Adam space
    reference = search_space("image", private=False, private_overrides=NOISE_AWARE)
    assert "noise_ratio" not in reference and reference["lr"] == search_space("image", private=False)["lr"]
    assert "noise_ratio" not in search_space("image")
    with pytest.raises(ConfigError, match="put it in tuning.private_search_space"):
        search_space("image", NOISE_AWARE, private=False)
    with pytest.raises(ConfigError, match="both noise_ratio and expected_batch_size"):
        search_space("image", {**NOISE_AWARE, "expected_batch_size": [64]})
    # the ε = ∞ space holds the fixed recipe's lr, batch and epochs
    around = search_space("tabular", private=False, fixed={"lr": 0.002, "batch_size": 256, "epochs": 10})
    assert 256 in around["expected_batch_size"] and 0.002 in around["lr"] and 10 in around["epochs"]


def test_selection_never_reads_the_test_split(prepared, tmp_path):
    record, card = _run(prepared, tmp_path, 10.0, "clean")
    poisoned = type(prepared)(
        x=prepared.x.clone(), y=prepared.y.clone(), samples=prepared.samples.copy(), meta=prepared.meta
    )
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
