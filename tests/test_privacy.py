"""DP correctness (a DP bug is a security bug): ε spent within target, honest records, a clean ∞ path."""

import math

import dpfair.training.loop as training
import pytest
import torch
from dpfair.errors import ConfigError, PrivacyError
from dpfair.models import build_model
from dpfair.privacy.params import default_delta, format_epsilon, parse_epsilon, resolve_delta
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(600, generator=g) > 0).float()
    return x, y


def test_delta_defaults_below_one_over_n():
    for n in (10, 442, 2099, 6373, 100_000):
        assert default_delta(n) <= 1 / (10 * n)
    assert default_delta(6373) == 1e-5


@pytest.mark.parametrize("delta", [1 / 100, 0.02, 1.0, 0.0, -1e-5])
def test_delta_at_or_above_one_over_n_is_refused(delta):
    with pytest.raises(ConfigError, match="delta must lie in \\(0, 1/n_train\\)"):
        resolve_delta(delta, 100)


@pytest.mark.parametrize("bad", [0, -1, "nan", "abc", None])
def test_non_positive_or_non_numeric_epsilon_is_refused(bad):
    with pytest.raises(ConfigError, match="epsilon"):
        parse_epsilon(bad)


def test_inf_spellings():
    assert math.isinf(parse_epsilon("inf")) and format_epsilon(float("inf")) == "inf" and format_epsilon(3.0) == "3"


@pytest.mark.parametrize("target", [1.0, 3.0, 10.0])
@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_epsilon_spent_is_within_target_and_reproducible_by_an_independent_accountant(data, target, accountant):
    x, y = data
    config = TrainConfig(epochs=2, batch_size=64, accountant=accountant)
    record = train(
        model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=target, delta=1e-4, config=config, seed=0
    ).record
    assert record["epsilon_spent"] <= target
    assert record["epsilon_spent"] >= 0.9 * target, "noise calibrated far looser than the target"
    assert record["sample_rate"] == pytest.approx(1 / math.ceil(600 / 64))
    assert record["steps"] == 2 * math.ceil(600 / 64)
    assert record["noise_multiplier"] > 0 and record["max_grad_norm"] == 1.0
    # replay the recorded (σ, q, steps) in fresh accountants
    fresh = {"prv": PRVAccountant, "rdp": RDPAccountant}[accountant]()
    for _ in range(record["steps"]):
        fresh.step(noise_multiplier=record["noise_multiplier"], sample_rate=record["sample_rate"])
    assert fresh.get_epsilon(1e-4) == pytest.approx(record["epsilon_spent"], rel=1e-3)
    if accountant == "prv":  # RDP is a looser upper bound at the same σ
        rdp = RDPAccountant()
        rdp.history = [(record["noise_multiplier"], record["sample_rate"], record["steps"])]
        assert rdp.get_epsilon(1e-4) >= record["epsilon_spent"]


def test_train_refuses_delta_at_or_above_one_over_n(data):
    x, y = data
    with pytest.raises(PrivacyError, match="delta = 0.002 is not below 1/n_units"):
        train(
            model_name="mlp",
            modality="tabular",
            x_train=x,
            y_train=y,
            epsilon=1.0,
            delta=2e-3,
            config=TrainConfig(epochs=1),
            seed=0,
        )


def test_inf_run_is_plain_training_on_the_same_poisson_batches(data):
    """ε = ∞ must equal ordinary training (no clipping, no noise) with the same seeded Poisson batches."""
    x, y = data
    config = TrainConfig(epochs=2, batch_size=64, lr=0.01)
    result = train(
        model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=math.inf, delta=1e-4, config=config, seed=7
    )
    assert result.record["noise_multiplier"] == 0.0 and math.isnan(result.record["max_grad_norm"])

    torch.manual_seed(7)
    reference = build_model("mlp", input_shape=(6,), modality="tabular")
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    base = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(7))
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(2):
        for xb, yb in DPDataLoader.from_data_loader(base):
            optimizer.zero_grad()
            loss_fn(reference(xb).squeeze(-1), yb).backward()
            optimizer.step()
    for (name, p), q in zip(result.model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=f"parameter {name} differs from plain training")


def _record_batches(monkeypatch):
    seen = []
    original = training.build_model

    def build_and_watch(*args, **kwargs):
        model = original(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(float(inp[0].sum())) if m.training else None)
        return model

    monkeypatch.setattr(training, "build_model", build_and_watch)
    return seen


def test_private_and_inf_runs_see_the_same_batches(data, monkeypatch):
    x, y = data
    config = TrainConfig(epochs=2, batch_size=64)
    seen = _record_batches(monkeypatch)
    train(model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=3.0, delta=1e-4, config=config, seed=1)
    private = list(seen)
    seen.clear()
    train(
        model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=math.inf, delta=1e-4, config=config, seed=1
    )
    assert len(private) == 2 * math.ceil(600 / 64)
    assert private == pytest.approx(seen)


def test_dp_changes_the_update(data):
    """Same seed and batches: the private model must differ from the non-private one (clipping + noise act)."""
    x, y = data
    config = TrainConfig(epochs=1, batch_size=64)
    kwargs = dict(model_name="mlp", modality="tabular", x_train=x, y_train=y, delta=1e-4, config=config, seed=0)
    private = train(epsilon=1.0, **kwargs).model
    plain = train(epsilon=math.inf, **kwargs).model
    diffs = [float((p - q).detach().abs().max()) for p, q in zip(private.parameters(), plain.parameters())]
    assert max(diffs) > 1e-3


@pytest.mark.parametrize("epsilon", [1.0, math.inf])
def test_empty_poisson_batches_are_steps_not_crashes(epsilon, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, generator=g), torch.tensor([0.0, 1.0] * 6)
    seen_sizes = []
    original = training.build_model

    def build_and_watch(*args, **kwargs):
        model = original(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen_sizes.append(len(inp[0])) if m.training else None)
        return model

    monkeypatch.setattr(training, "build_model", build_and_watch)
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=epsilon,
        delta=1e-3,
        config=TrainConfig(epochs=3, batch_size=1),
        seed=0,
    )
    assert 0 in seen_sizes, "the test needs at least one empty batch"
    assert result.record["steps"] == 36
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
