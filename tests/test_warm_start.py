"""Warm starts from public weights and head-only training (dpfair.training.warm_start), through the real loop.

What is checked is what the card claims: a run that says it started from public weights did (its first
weights are the file's), one that says only the head trained changed nothing else (bit for bit), the sha256
in the card is the file's, weights trained on the run's own dataset are refused (their rows would reach the
release without noise), and the ledger still replays to the target with dp-accounting.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import dp_accounting
import pytest
import torch
from dpfair.data.prepare import prepare_dataset
from dpfair.errors import ConfigError
from dpfair.findings.claims import leaderboard_claims
from dpfair.models import build_model
from dpfair.pipeline.runner import train_run
from dpfair.privacy.ledger import event_from_json
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.tuning.procedure import trainable_count
from dpfair.training.tuning.regime import private_recipe
from dpfair.training.tuning.search_space import NOISE_AWARE, search_space
from dpfair.training.warm_start import (
    apply_warm_start,
    check_public_weights,
    data_source,
    freeze_to_head,
    load_public_weights,
)

SHAPE = (1, 16, 16)
_spec = importlib.util.spec_from_file_location(
    "replay_ledgers", Path(__file__).parents[1] / "tools" / "replay_ledgers.py"
)
replay_ledgers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replay_ledgers)


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < 0.4).float()
    x = torch.randn(n, *SHAPE, generator=g) * 0.3
    x[y == 1, :, 6:10, 6:10] += 1.0  # a bright square: learnable in a few steps
    return x, y


def _weights(tmp_path, *, trained_on="public_images", seed=7):
    torch.manual_seed(seed)
    model = build_model("cnn", input_shape=SHAPE, modality="image")
    path = tmp_path / "public.pt"
    # saved as a DP run saves it (Opacus's wrapper prefix), which the loader must accept
    torch.save({f"_module.{k}": v for k, v in model.state_dict().items()}, path)
    if trained_on:  # the provenance a user writes beside weights they bring
        (tmp_path / "public.pt.json").write_text(json.dumps({"trained_on": trained_on}))
    else:
        (tmp_path / "public.pt.json").unlink(missing_ok=True)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _train(config, epsilon=3.0, dataset="target"):
    x, y = _images(256, 0)
    xv, yv = _images(128, 1)
    return train(
        model_name="cnn",
        modality="image",
        x_train=x,
        y_train=y,
        epsilon=epsilon,
        delta=1e-3,
        config=config,
        seed=0,
        x_val=xv,
        y_val=yv,
        dataset=dataset,
    )


def test_a_warm_start_begins_from_the_files_weights(tmp_path):
    path, state = _weights(tmp_path)
    torch.manual_seed(0)  # another initialisation than the file's
    model = build_model("cnn", input_shape=SHAPE, modality="image")
    assert not all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    record = load_public_weights(model, path)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_head_only_training_leaves_every_other_weight_as_loaded_and_charges_the_target(tmp_path):
    path, state = _weights(tmp_path)
    result = _train(TrainConfig(epochs=2, batch_size=64, lr=0.05, init_weights=str(path), trainable="head"))
    trained = {k.removeprefix("_module."): v for k, v in result.model.state_dict().items()}
    head = {"5.weight", "5.bias"}  # the cnn's Sequential: three conv blocks (0-2), pool, flatten, Linear(64, 1)
    assert {k for k in trained if not torch.equal(trained[k], state[k])} == head
    record = result.record
    assert record["n_parameters"] == 65 and record["trainable"] == "head"
    assert record["public_pretraining"]["init_weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["public_weights"] == record["public_pretraining"]["init_weights"]["sha256"]
    accountant = dp_accounting.pld.PLDAccountant()
    accountant.compose(event_from_json(record["ledger"]))
    assert accountant.get_epsilon(1e-3) <= 3.0 * 1.001


def test_a_warm_started_run_trains_every_parameter_by_default(tmp_path):
    path, state = _weights(tmp_path)
    result = _train(TrainConfig(epochs=1, batch_size=64, init_weights=str(path)))
    trained = {k.removeprefix("_module."): v for k, v in result.model.state_dict().items()}
    weights = [k for k in trained if k.endswith("weight")]
    assert all(not torch.equal(trained[k], state[k]) for k in weights)
    assert result.record["n_parameters"] == sum(v.numel() for v in state.values())


def test_a_run_from_scratch_records_no_public_pretraining():
    record = _train(TrainConfig(epochs=1, batch_size=64), epsilon=float("inf")).record
    assert record["public_pretraining"] is None and record["public_weights"] is None


def test_weights_trained_on_the_runs_own_dataset_are_refused(tmp_path):
    path, _ = _weights(tmp_path, trained_on="target")
    with pytest.raises(ConfigError, match="training.init_weights.*trained on 'target'"):
        _train(TrainConfig(epochs=1, batch_size=64, init_weights=str(path)))
    record = _train(TrainConfig(epochs=1, batch_size=64, init_weights=str(path)), dataset="other").record
    assert record["public_pretraining"]["init_weights"]["trained_on"] == "target"


def test_weights_without_provenance_or_with_a_stale_one_are_refused(tmp_path):
    """Fail closed: a file nobody said was public (a run's own model.pt has no provenance) never loads."""
    path, _ = _weights(tmp_path, trained_on=None)
    model = build_model("cnn", input_shape=SHAPE, modality="image")
    with pytest.raises(ConfigError, match=r"^training\.init_weights: .*no provenance file public\.pt\.json"):
        load_public_weights(model, path)
    side = tmp_path / "public.pt.json"
    side.write_text(json.dumps({"note": "public"}))
    with pytest.raises(ConfigError, match='no "trained_on"'):
        load_public_weights(model, path)
    side.write_text(json.dumps({"trained_on": "public_images", "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="changed after it was written"):
        load_public_weights(model, path)
    side.write_text(
        json.dumps({"trained_on": "public_images", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    )
    assert load_public_weights(model, path)["trained_on"] == "public_images"


@pytest.mark.parametrize(
    ("provenance", "refused"),
    [
        ({"trained_on": "Pneumonia"}, True),  # the entry name, in other case
        ({"trained_on": "chest x-rays", "source": "MEDMNIST:pneumoniamnist"}, True),  # the same file, another name
        ({"trained_on": "breast ultrasound", "source": "medmnist:breastmnist"}, False),  # another file of the module
        ({"trained_on": "imagenet"}, False),
    ],
)
def test_the_refusal_knows_a_dataset_by_its_name_and_its_source(tmp_path, provenance, refused):
    path, _ = _weights(tmp_path)
    (tmp_path / "public.pt.json").write_text(json.dumps(provenance))
    meta = {"name": "pneumonia", "module": "medmnist", "params": {"flag": "pneumoniamnist", "size": 28}}
    if refused:
        with pytest.raises(ConfigError, match="the data this run trains on"):
            check_public_weights(path, meta=meta)
    else:
        check_public_weights(path, meta=meta)
    synthetic = {"name": "lesions_small", "module": "synthetic_lesions", "params": {"n_samples": 400}}
    (tmp_path / "public.pt.json").write_text(json.dumps({"trained_on": "x", "source": data_source(synthetic)}))
    with pytest.raises(ConfigError, match="'synthetic_lesions'"):  # one generator: other params, the same rows
        check_public_weights(path, meta={**synthetic, "name": "lesions", "params": {"n_samples": 4000}})


@pytest.mark.parametrize("bad", ["missing", "not_a_state_dict", "other_model"])
def test_weights_that_do_not_fit_get_one_error_naming_the_key(tmp_path, bad):
    path = tmp_path / "w.pt"
    if bad == "not_a_state_dict":
        path.write_bytes(b"not torch")
    elif bad == "other_model":
        torch.save(build_model("mlp", input_shape=(5,), modality="tabular").state_dict(), path)
    model = build_model("cnn", input_shape=SHAPE, modality="image")
    with pytest.raises(ConfigError, match=r"^training\.init_weights: "):
        apply_warm_start(model, init_weights=str(path), trainable="all")


def test_the_noise_aware_space_reads_the_trainable_parameters():
    """The noise in the averaged gradient grows with √d: a head of 65 parameters, not the cnn's 23,585,
    allows many more steps at ε = 1 for the same noise ratio (docs/tuning.md)."""
    shape = (1, 32, 32)
    d_all = trainable_count("cnn", input_shape=shape, modality="image", trainable="all")
    d_head = trainable_count("cnn", input_shape=shape, modality="image", trainable="head")
    assert (d_all, d_head) == (23_585, 65)
    plan = {
        d: private_recipe(epsilon=1.0, delta=1e-5, n=3125, n_params=d, trials=3, noise_ratio=1.0, epochs=15)
        for d in (d_all, d_head)
    }
    assert plan[d_head]["steps"] > 10 * plan[d_all]["steps"]
    assert plan[d_head]["noise_ratio_planned"] <= 1.0


def test_freezing_keeps_only_the_last_linear_layer():
    model = build_model("mlp", input_shape=(5,), modality="tabular")
    names = freeze_to_head(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == names and len(trainable) == 2 and all(n.endswith(("weight", "bias")) for n in names)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 32 + 1  # hidden (64, 32) -> 1


def test_claims_name_the_public_weights():
    import pandas as pd

    row = dict(dataset="d", model="cnn", method="dpsgd", epsilon=1.0, delta=1e-5, auroc=0.8, accountant="prv")
    rows = [dict(row, seed=s, epsilon_spent=1.0, public_weights="ab" * 32, trainable="head") for s in (0, 1)]
    (claim,) = leaderboard_claims(pd.DataFrame(rows), benchmark="b")[0]["claims"]
    assert (
        claim["public_data"].startswith("public weights (sha256 abababababab)") and "head only" in claim["public_data"]
    )
    scratch = [dict(row, seed=0, epsilon_spent=1.0, public_weights=None, trainable="all")]
    assert leaderboard_claims(pd.DataFrame(scratch), benchmark="b")[0]["claims"][0]["public_data"] == "None"


@pytest.fixture(scope="module")
def prepared():
    return prepare_dataset(name="synthetic_lesions", params={"n_samples": 500, "image_size": 16}, min_group_size=5)


def _run(prepared, out, **kw):
    out.mkdir(parents=True, exist_ok=True)
    record = train_run(
        prepared=prepared,
        model_name="cnn",
        seed=0,
        device="cpu",
        **{f"{k}_path": out / f for k, f in (("model", "m.pt"), ("scores", "s.csv"), ("record", "r.json"))},
        card_path=out / "privacy_card.json",
        **kw,
    )
    return record, json.loads((out / "privacy_card.json").read_text())


def test_the_card_records_the_public_weights_and_the_ledger_replays(prepared, tmp_path):
    path, _ = _weights(tmp_path, trained_on="another_dataset")
    config = TrainConfig(epochs=1, batch_size=50, init_weights=str(path), trainable="head")
    record, card = _run(prepared, tmp_path / "run", epsilon=3.0, method="dpsgd", config=config)
    public = card["public_pretraining"]
    assert public["trainable"] == "head" and public["trainable_parameters"] == ["5.weight", "5.bias"]
    assert public["init_weights"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert public["init_weights"]["trained_on"] == "another_dataset"
    assert replay_ledgers.main([str(tmp_path / "run")]) == 0  # an accountant dpfair did not write
    # other weights under the same name are another run: the definition hashes the file's bytes
    _weights(tmp_path, trained_on="another_dataset", seed=8)
    assert _definition(prepared, config) != record["definition"]
    # the run's own release has no provenance: it cannot come back as "public" weights of a later run
    own = TrainConfig(epochs=1, batch_size=50, init_weights=str(tmp_path / "run" / "m.pt"))
    with pytest.raises(ConfigError, match="no provenance file"):
        _run(prepared, tmp_path / "again", epsilon=3.0, method="dpsgd", config=own)
    (tmp_path / "public.pt.json").write_text(json.dumps({"trained_on": "lesion photos", "source": "synthetic_lesions"}))
    with pytest.raises(ConfigError, match="the data this run trains on"):  # caught by the run, before training
        _run(prepared, tmp_path / "again", epsilon=3.0, method="dpsgd", config=config)


def test_a_tuned_space_may_draw_head_only_trials_planned_for_the_heads_size(prepared, tmp_path):
    path, _ = _weights(tmp_path)
    tuning = {
        "enabled": True,
        "trials": 3,
        "private_search_space": {**NOISE_AWARE, "epochs": [1], "trainable": ["head"]},
    }
    config = TrainConfig(epochs=1, batch_size=50, init_weights=str(path))
    record, card = _run(prepared, tmp_path / "tuned", epsilon=1.0, method="dpsgd-tuned", config=config, tuning=tuning)
    for t in card["tuning"]["trials"]:
        plan = private_recipe(
            epsilon=1.0, delta=record["delta"], n=record["n_train"], n_params=65, trials=3,
            noise_ratio=t["noise_ratio"], epochs=1,
        )  # fmt: skip
        assert (t["trainable"], t["expected_batch_size"]) == ("head", plan["expected_batch_size"])
    assert record["n_parameters"] == 65 and record["epsilon_spent"] <= 1.0
    assert replay_ledgers.main([str(tmp_path / "tuned")]) == 0


def test_with_public_weights_the_private_space_searches_a_linear_probe_and_the_reference_does_not():
    for modality in ("image", "tabular"):
        assert "trainable" not in search_space(modality)  # no public features: no probe of random ones
        assert search_space(modality, public_weights=True)["trainable"] == ["all", "head"]
        # the ε = ∞ arm fine-tunes every parameter, as non-private transfer learning does
        assert "trainable" not in search_space(modality, private=False, public_weights=True)
    # the fixed recipe's own choice, or the benchmark's key, stays as set
    assert search_space("image", public_weights=True, fixed={"trainable": "head"})["trainable"] == ["head"]
    given = search_space("image", private_overrides={"trainable": ["all"]}, public_weights=True)
    assert given["trainable"] == ["all"]


def test_a_tuned_run_from_public_weights_draws_both_parts_and_each_trial_trains_what_it_drew(prepared, tmp_path):
    path, _ = _weights(tmp_path)
    tuning = {"enabled": True, "trials": 4, "private_search_space": {"epochs": [1]}}
    config = TrainConfig(epochs=1, batch_size=50, init_weights=str(path))
    record, card = _run(prepared, tmp_path / "tuned", epsilon=3.0, method="dpsgd-tuned", config=config, tuning=tuning)
    drawn = [t["trainable"] for t in card["tuning"]["trials"]]
    assert set(drawn) == {"all", "head"}, drawn  # seed 0's four draws hold both parts
    chosen = drawn[record["selected_trial"]]
    assert record["n_parameters"] == (65 if chosen == "head" else trainable_count(
        "cnn", input_shape=tuple(prepared.x.shape[1:]), modality="image", trainable="all"
    ))  # fmt: skip
    assert card["public_pretraining"]["trainable"] == chosen
    assert record["epsilon_spent"] <= 3.0 and replay_ledgers.main([str(tmp_path / "tuned")]) == 0
    # the ε = ∞ arm's trials all fine-tune every parameter
    _, reference = _run(prepared, tmp_path / "inf", epsilon="inf", method="dpsgd-tuned", config=config, tuning=tuning)
    assert {t.get("trainable", "all") for t in reference["tuning"]["trials"]} == {"all"}


def test_federated_methods_refuse_a_warm_start(tmp_path):
    from dpfair.federated.simulation import train_federated

    def train(config):
        x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4)
        train_federated(model_name="cnn", modality="image", x_train=x, y_train=y, epsilon=1.0, delta=1e-5,
                        config=config, seed=0, site=None, method="fed_dpsgd")  # fmt: skip

    with pytest.raises(ConfigError, match="init_weights"):
        train(TrainConfig(init_weights=str(tmp_path / "w.pt")))
    with pytest.raises(ConfigError, match="trainable"):
        train(TrainConfig(trainable="head"))


def _definition(prepared, config):
    from dpfair.pipeline.runner import trained_definition

    return trained_definition(prepared, config=config, tuning=None, datasets_dir=None, model="cnn",
                              method="dpsgd", epsilon=3.0, seed=0)  # fmt: skip


def test_a_benchmark_names_public_weights_and_a_private_only_space(tmp_path):
    from dpfair.pipeline.benchmark import validate_config

    base = {"models": ["cnn"], "epsilons": [1, "inf"], "seeds": [0]}
    dataset = {
        "training": {"init_weights": "weights/public.pt", "trainable": "head"},
        "tuning": {
            "enabled": True,
            "trials": 2,
            "private_search_space": {"noise_ratio": [1, 2], "trainable": ["head"]},
        },
    }
    training = validate_config({**base, "datasets": {"synthetic_lesions": dataset}}).training("synthetic_lesions")
    assert (training.init_weights, training.trainable) == ("weights/public.pt", "head")
    bad = {"training": {"trainable": "body"}}
    with pytest.raises(ConfigError, match=r"trainable.*'body'"):
        validate_config({**base, "datasets": {"synthetic_lesions": bad}})
