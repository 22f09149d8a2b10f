"""One forward pass scores a run's rows; the validation monitor runs every ``monitor_every`` epochs.

Both are speed changes (docs/speed.md) that must not move what a run releases: the scores, logits and the
released model's validation loss are the same values as before, bit for bit.
"""

import math

import numpy as np
import pytest
import torch
from dpfair.models import build_model
from dpfair.privacy.card import released_outside_guarantee
from dpfair.training.config import TrainConfig
from dpfair.training.loop import bce_loss, predict, predict_both, predict_logits, train


@pytest.mark.parametrize("model_name,shape,modality", [("cnn", (1, 16, 16), "image"), ("mlp", (7,), "tabular")])
def test_one_pass_gives_the_two_calls_values_bit_for_bit(model_name, shape, modality):
    torch.manual_seed(0)
    model = build_model(model_name, input_shape=shape, modality=modality)
    x = torch.randn(301, *shape)  # 301 rows in batches of 64: a ragged last batch, a scalar sigmoid tail
    probs, logits = predict_both(model, x, batch_size=64)
    assert probs.dtype == np.float32 and logits.dtype == np.float64 and len(probs) == len(logits) == 301
    assert np.array_equal(probs, predict(model, x, batch_size=64))
    assert np.array_equal(logits, predict_logits(model, x, batch_size=64))
    assert model.training  # the pass leaves the model's mode as it found it


def _data(n=240, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()
    return x, y


def _train(config, epsilon=3.0):
    x, y = _data()
    xv, yv = _data(120, seed=1)
    return train(
        model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=epsilon, delta=1e-3,
        config=config, seed=0, x_val=xv, y_val=yv,
    ), (xv, yv)  # fmt: skip


def test_monitor_every_scores_those_epochs_and_the_last():
    result, _ = _train(TrainConfig(epochs=7, batch_size=40, monitor_every=3))
    scored = [h["epoch"] for h in result.history if "val_auroc" in h]
    assert scored == [3, 6, 7]
    assert [h["epoch"] for h in result.history] == list(range(1, 8))  # ε so far is still logged every epoch
    assert all(math.isfinite(h["epsilon_so_far"]) for h in result.history)
    assert result.record["monitor_every"] == 3


def test_monitoring_less_does_not_change_the_trained_model():
    every, _ = _train(TrainConfig(epochs=4, batch_size=40))
    sparse, (xv, yv) = _train(TrainConfig(epochs=4, batch_size=40, monitor_every=4))
    for a, b in zip(every.model.state_dict().values(), sparse.model.state_dict().values()):
        assert torch.equal(a, b)
    assert every.history[-1]["val_loss"] == sparse.history[-1]["val_loss"]


@pytest.mark.parametrize("recipe", [{}, {"ema_decay": 0.9}, {"select_best": True}])
def test_released_val_loss_is_the_released_models(recipe):
    result, (xv, yv) = _train(TrainConfig(epochs=3, batch_size=40, **recipe))
    recomputed = bce_loss(predict_logits(result.model, xv), yv.numpy())
    assert result.record["final_val_loss"] == recomputed  # reused only where it is the same forward pass


def test_select_best_picks_among_the_scored_epochs():
    result, _ = _train(TrainConfig(epochs=6, batch_size=40, select_best=True, monitor_every=2), epsilon=math.inf)
    assert result.record["best_epoch"] in {2, 4, 6}


def test_monitor_every_is_in_params_only_when_set():
    assert "monitor_every" not in TrainConfig().params()  # finished runs of older benchmarks keep their hash
    assert TrainConfig(monitor_every=5).params()["monitor_every"] == 5
    assert TrainConfig(**TrainConfig(monitor_every=5).params()).monitor_every == 5
    with pytest.raises(Exception, match="monitor_every"):
        TrainConfig(monitor_every=0)


def test_the_card_says_how_often_the_validation_split_was_scored():
    text = " ".join(released_outside_guarantee({"n_val": 50, "monitor_every": 5}, {}, {}))
    assert "every 5 epochs and after the last" in text
    assert "every epoch" in " ".join(released_outside_guarantee({"n_val": 50}, {}, {}))
