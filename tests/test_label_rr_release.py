"""label_rr releases no function of the training labels beyond its ε: the run record carries the expected
number of flipped labels, never the realised count (which, with the noisy labels and every other label
known, gives away the last row's label)."""

import math

import numpy as np
import pytest
import torch
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.mechanisms import TrainingData, get_mechanism
from dpfair.training.mechanisms.label_rr import RR_MARGIN, expected_flips, rr_with_prior_k
from torch import nn

N, DIM = 400, 3


def run(y: np.ndarray, *, epsilon: float, prior: float, noise_seed: int):
    """A label_rr trainer on labels ``y``: its stats and the realised number of flipped labels."""
    x = torch.randn(len(y), DIM, generator=torch.Generator().manual_seed(0))
    model = nn.Linear(DIM, 1)
    trainer = get_mechanism("label_rr").make_trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data=TrainingData(x=x, y=torch.from_numpy(y.astype(np.float32)), label_prior=prior),
        config=TrainConfig(epochs=1, batch_size=50),
        epsilon=epsilon,
        delta=1e-4,
        generator=torch.Generator().manual_seed(0),
        noise_generator=torch.Generator().manual_seed(noise_seed),
    )
    noisy = trainer.loader.dataset.tensors[1].numpy().astype(int)
    return trainer.stats(), int((noisy != y).sum())


def assert_no_realised_count(stats: dict) -> None:
    assert "labels_flipped" not in stats
    assert [k for k in stats if "flip" in k] == ["labels_flipped_expected"]


def test_the_figure_is_the_same_whatever_the_flips_randomized_response():
    # k = 2: two label vectors, two noise streams, two realised counts; one released figure
    rng = np.random.default_rng(0)
    y_a, y_b = rng.integers(0, 2, N), rng.integers(0, 2, N)
    (stats_a, flips_a), (stats_b, flips_b) = (
        run(y_a, epsilon=1.0, prior=0.5, noise_seed=1),
        run(y_b, epsilon=1.0, prior=0.5, noise_seed=2),
    )
    assert rr_with_prior_k(epsilon=1.0 - RR_MARGIN, prior=0.5) == 2
    assert flips_a != flips_b
    assert stats_a == stats_b
    assert stats_a["labels_flipped_expected"] == pytest.approx(N / (1 + math.exp(1.0 - RR_MARGIN)))
    assert_no_realised_count(stats_a)


def test_the_figure_does_not_count_the_minority_labels_when_rr_keeps_one_label():
    # k = 1: every label becomes the prior's top label, so the realised count is the number of training
    # labels that are not it, an exact statistic of the training labels (here 30 against 100)
    y_a, y_b = np.zeros(N, dtype=int), np.zeros(N, dtype=int)
    y_a[:30], y_b[:100] = 1, 1
    (stats_a, flips_a), (stats_b, flips_b) = (
        run(y_a, epsilon=0.1, prior=0.1, noise_seed=1),
        run(y_b, epsilon=0.1, prior=0.1, noise_seed=1),
    )
    assert (flips_a, flips_b) == (30, 100)
    assert stats_a == stats_b == {"labels_flipped_expected": pytest.approx(0.1 * N)}
    assert_no_realised_count(stats_a)


def test_expected_flips_is_a_function_of_public_facts_only():
    assert expected_flips(n=1000, epsilon=2.0, prior=0.3) == pytest.approx(1000 / (1 + math.exp(2.0)))
    assert expected_flips(n=1000, epsilon=0.1, prior=0.8) == pytest.approx(200.0)  # k = 1, top label 1
    assert expected_flips(n=1000, epsilon=0.1, prior=0.2) == pytest.approx(200.0)  # k = 1, top label 0


def test_a_label_rr_runs_record_carries_the_expectation_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, DIM, generator=g)
    y = (x[:, 0] > 0).float()
    x_val = torch.randn(100, DIM, generator=g)
    y_val = (x_val[:, 0] > 0).float()
    record = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        x_val=x_val,
        y_val=y_val,
        epsilon=2.0,
        delta=1e-3,
        config=TrainConfig(epochs=1, batch_size=50),
        seed=0,
        method="label_rr",
    ).record
    assert "labels_flipped" not in record
    assert [k for k in record if "flip" in k] == ["labels_flipped_expected"]
    prior = float(y_val.mean())
    assert record["labels_flipped_expected"] == pytest.approx(
        expected_flips(n=300, epsilon=2.0 - RR_MARGIN, prior=prior)
    )
