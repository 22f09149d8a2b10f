"""The fast clipping paths give Opacus's clipped, noised update: same seed, same batch, float tolerance.

The reference is Opacus's ``hooks`` mode, whose clipping and noise ``test_dp_mechanics`` checks against
hand-computed per-sample gradients and the Gaussian law. Every batch here mixes clipped and unclipped
samples (C is set between the middle per-sample norms), and the noise is on (σ > 0) unless a test
isolates the clipped sum.
"""

import copy
import math

import pytest
import torch
from dpfair.models import available_models, build_model, get_model
from dpfair.privacy.clipping import rules
from dpfair.privacy.clipping.bookkeeping import BookKeepingClipper
from dpfair.privacy.clipping.rules import unsupported_layers
from dpfair.privacy.clipping.rules.conv import Conv2dRule
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.steps import make_private, resolve_mode
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SHAPES = {"image": (1, 16, 16), "tabular": (7,)}


def _input_shape(name: str) -> tuple[int, ...]:
    spec = get_model(name)
    if "image" in spec.modalities:
        side = max(16, spec.min_size)
        return (1, side, side)
    return SHAPES["tabular"]


def _batch(input_shape, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1.5, 1.5, batch)[torch.randperm(batch, generator=g)]  # spread per-sample norms
    x = torch.randn(batch, *input_shape, generator=g) * scales.view(-1, *[1] * len(input_shape))
    y = (torch.rand(batch, generator=g) < 0.5).float()
    return x, y


def _median_clip(model, x, y) -> float:
    """A clipping norm between the two middle per-sample gradient norms, so both cases occur."""
    clipper = BookKeepingClipper(copy.deepcopy(model), max_grad_norm=1e30)
    losses = nn.functional.binary_cross_entropy_with_logits(clipper.model(x).squeeze(-1), y, reduction="none")
    norms = clipper.clip_backward(losses).sort().values
    clipper.remove()
    mid = len(norms) // 2
    return float(norms[mid - 1] + norms[mid]) / 2


def _update(model, mode, x, y, *, clip, sigma, seed=123, expected_batch=None):
    """Parameters after one SGD(lr=1) DP step on (x, y): the update is −(clipped sum + noise) / B."""
    model = copy.deepcopy(model)
    n = expected_batch or len(y)
    trainer = make_private(
        engine=PrivacyEngine(accountant="prv"),
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        data_loader=DataLoader(TensorDataset(torch.zeros(n, *x.shape[1:]), torch.zeros(n)), batch_size=n),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        mode=mode,
    )
    torch.manual_seed(seed)  # Opacus draws the noise from the global generator, parameter by parameter
    trainer.step(x, y)
    trainer.close()
    return [p.detach().clone() for p in trainer.module.parameters()]


def _assert_same_update(got, want, start):
    # float32 sums in another order differ by a few ulps of the largest update entry
    scale = max(float((w - p0).abs().max()) for w, p0 in zip(want, start)) + 1e-12
    for g, w, p0 in zip(got, want, start):
        torch.testing.assert_close(g - p0, w - p0, rtol=1e-4, atol=1e-5 * scale)


def _check_against_hooks(model, x, y, *, sigma):
    clip = _median_clip(model, x, y)
    start = [p.detach().clone() for p in model.parameters()]
    want = _update(model, "hooks", x, y, clip=clip, sigma=sigma)
    got = _update(model, "bookkeeping", x, y, clip=clip, sigma=sigma)
    _assert_same_update(got, want, start)
    return want


@pytest.mark.parametrize("model_name", available_models())
@pytest.mark.parametrize("sigma", [0.0, 0.8])
def test_bookkeeping_update_equals_opacus_hooks_for_every_model(model_name, sigma):
    torch.manual_seed(0)
    input_shape = _input_shape(model_name)
    modality = "tabular" if len(input_shape) == 1 else "image"
    model = build_model(model_name, input_shape=input_shape, modality=modality)
    assert resolve_mode("auto", model) == "bookkeeping", unsupported_layers(model)
    x, y = _batch(input_shape, 12)
    want = _check_against_hooks(model, x, y, sigma=sigma)
    # not vacuous: the unclipped mean gradient is far from the clipped one
    unclipped = _update(model, "hooks", x, y, clip=1e30, sigma=0.0)
    gap = max(float((u - w).abs().max()) for u, w in zip(unclipped, want))
    assert gap > 1e-3


@pytest.mark.parametrize("strategy", ["ghost", "instantiate", "grouped"])
@pytest.mark.parametrize(
    "stride,padding,kernel,bias,dilation",
    [
        (1, 1, 3, True, 1),
        (2, 0, 3, False, 1),
        (2, 3, 7, True, 1),
        (1, 0, 1, True, 1),
        ((2, 1), (1, 0), (3, 2), True, 1),
        (1, 2, 3, True, 2),
    ],
)
def test_every_convolution_strategy_equals_opacus(monkeypatch, strategy, stride, padding, kernel, bias, dilation):
    monkeypatch.setattr(Conv2dRule, "force_strategy", strategy)
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 6, kernel, stride=stride, padding=padding, bias=bias, dilation=dilation),
        nn.GroupNorm(3, 6),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 1),
    )
    x, y = _batch((2, 11, 10), 10, seed=2)  # not square
    _check_against_hooks(model, x, y, sigma=0.5)


class _Tokens(nn.Module):
    """Linear and LayerNorm over a token dimension: the ghost-norm case for Linear (T > 1)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.embed(x))).mean(dim=1))


@pytest.mark.parametrize("tokens", [1, 3, 40])
def test_linear_and_layernorm_over_tokens_equal_opacus(tokens):
    torch.manual_seed(3)
    model = _Tokens()
    x, y = _batch((tokens, 5), 9, seed=4)
    _check_against_hooks(model, x, y, sigma=0.3)


def test_every_sample_is_clipped_to_the_norm():
    """The clipped per-sample gradients the sum is built from have norm min(‖g_i‖, C)."""
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=(1, 16, 16), modality="image")
    x, y = _batch((1, 16, 16), 8)
    clip = _median_clip(model, x, y)
    per_sample = []
    for i in range(len(y)):  # one-sample batches: the clipped sum is that sample's clipped gradient
        clipper = BookKeepingClipper(model, max_grad_norm=clip)
        losses = nn.functional.binary_cross_entropy_with_logits(
            model(x[i : i + 1]).squeeze(-1), y[i : i + 1], reduction="none"
        )
        norm = float(clipper.clip_backward(losses)[0])
        clipper.remove()
        clipped = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
        per_sample.append((norm, clipped))
    assert any(n > clip for n, _ in per_sample) and any(n < clip for n, _ in per_sample)
    for norm, clipped in per_sample:
        assert clipped == pytest.approx(min(norm, clip), rel=1e-4)


def test_empty_batch_gives_noise_only_like_opacus():
    torch.manual_seed(0)
    model = build_model("mlp", input_shape=(7,), modality="tabular")
    x, y = torch.zeros(0, 7), torch.zeros(0)
    start = [p.detach().clone() for p in model.parameters()]
    want = _update(model, "hooks", x, y, clip=1.0, sigma=1.0, expected_batch=10)
    got = _update(model, "bookkeeping", x, y, clip=1.0, sigma=1.0, expected_batch=10)
    _assert_same_update(got, want, start)
    assert max(float((g - s).abs().max()) for g, s in zip(got, start)) > 0  # the noise moved it


@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_frozen_parameters_are_left_alone_and_the_rest_equals_opacus(frozen):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    for layer in (model[0], model[3]):
        getattr(layer, frozen).requires_grad_(False)
    x, y = _batch((1, 8, 8), 10, seed=7)
    _check_against_hooks(model, x, y, sigma=0.4)


def test_layernorm_over_the_whole_sample_equals_opacus():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 1))
    x, y = _batch((5,), 9, seed=9)
    _check_against_hooks(model, x, y, sigma=0.3)


def test_ghost_norms_survive_cancellation():
    """Two positions whose gradients nearly cancel: the ghost norm must not come out too small (the
    sample would escape clipping) or negative (NaN)."""
    from dpfair.privacy.clipping.rules.linear import LinearRule

    torch.manual_seed(10)
    b, d, o = 64, 64, 64
    v, w = torch.randn(b, 1, d), torch.randn(b, 1, o)
    delta = torch.logspace(-6, 0, b).view(b, 1, 1)
    a = torch.cat([v, v], dim=1)
    g = torch.cat([w, -(1 - delta) * w], dim=1)
    layer = nn.Linear(d, o, bias=False)
    state = LinearRule().prepare(layer, a, g)
    assert state.per_sample is None, "the test needs the ghost path"
    exact = torch.einsum("bto,btd->bod", g.double(), a.double()).pow(2).sum(dim=(1, 2))
    got = state.weight_norms_sq.double()
    assert (got >= 0).all()
    assert torch.allclose(got, exact, rtol=1e-3, atol=0)


def test_tied_and_reparametrised_weights_are_refused_and_auto_uses_hooks():
    tied = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3), nn.Linear(3, 1))
    tied[2].weight = tied[0].weight
    assert any("shared by 0, 2" in u for u in unsupported_layers(tied))
    assert resolve_mode("auto", tied) == "hooks"
    normed = nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(3, 3)), nn.Linear(3, 1))
    assert any("weight_g" in u for u in unsupported_layers(normed))
    assert resolve_mode("auto", normed) == "hooks"


def test_a_layer_in_eval_mode_is_refused_not_silently_noise():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    model[2].eval()
    with pytest.raises(ValueError, match=r"\['2'\] did not run in training mode"):
        clipper.clip_backward(model(torch.randn(4, 3)).squeeze(-1))


def test_nothing_from_a_step_outlives_it():
    import gc
    import weakref

    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    outputs = []
    model[0].register_forward_hook(lambda m, i, o: outputs.append(weakref.ref(o)))
    for _ in range(3):
        clipper.clip_backward(model(torch.randn(5, 3)).squeeze(-1))
    gc.collect()
    assert all(ref() is None for ref in outputs)


def test_unsupported_layer_is_named_and_auto_falls_back_to_hooks():
    model = nn.Sequential(nn.Linear(3, 3), nn.PReLU(), nn.Linear(3, 1))
    assert unsupported_layers(model) == ["1 (PReLU)"]
    assert resolve_mode("auto", model) == "hooks"
    with pytest.raises(ValueError, match=r"1 \(PReLU\).*clipping_backend 'hooks'"):
        BookKeepingClipper(model, max_grad_norm=1.0)


def test_layer_run_twice_is_refused():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, shared, nn.Linear(3, 1))
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="ran twice"):
        clipper.clip_backward(model(torch.randn(4, 3)).squeeze(-1))


def test_registry_replaces_rules():
    original = rules.get_layer_rule(nn.Linear(1, 1))

    @rules.register_layer_rule(nn.Linear)
    class Other(rules.LayerRule):
        pass

    try:
        assert isinstance(rules.get_layer_rule(nn.Linear(1, 1)), Other)
    finally:
        rules.register_layer_rule(nn.Linear)(type(original))


@pytest.mark.parametrize("model_name,modality,input_shape", [("mlp", "tabular", (7,)), ("cnn", "image", (1, 12, 12))])
def test_training_with_bookkeeping_equals_training_with_hooks(model_name, modality, input_shape):
    """Whole runs, seed for seed: same Poisson batches, σ, q, steps and ε; weights to float tolerance."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, *input_shape, generator=g)
    y = (x.flatten(1)[:, 0] + 0.5 * torch.randn(300, generator=g) > 0).float()
    runs = {}
    for mode in ("bookkeeping", "hooks"):
        config = TrainConfig(
            epochs=2, batch_size=50, optimizer="sgd", lr=0.05, max_grad_norm=0.5, clipping_backend=mode
        )
        runs[mode] = train(
            model_name=model_name,
            modality=modality,
            x_train=x,
            y_train=y,
            epsilon=3.0,
            delta=1e-3,
            config=config,
            seed=7,
        )
    fast, ref = runs["bookkeeping"], runs["hooks"]
    assert fast.record["clipping_backend"] == "bookkeeping" and ref.record["clipping_backend"] == "hooks"
    for key in (
        "noise_multiplier",
        "sample_rate",
        "accounted_sample_rate",
        "steps",
        "epsilon_spent",
        "expected_batch_size",
    ):
        assert fast.record[key] == ref.record[key], key
    for p, q in zip(fast.model.parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


def test_default_training_path_is_bookkeeping():
    x, y = torch.randn(100, 4), (torch.rand(100) < 0.5).float()
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=2.0,
        delta=1e-3,
        config=TrainConfig(epochs=1, batch_size=20),
        seed=0,
    )
    assert result.record["clipping_backend"] == "bookkeeping"
    inf = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=1e-3,
        config=TrainConfig(epochs=1, batch_size=20),
        seed=0,
    )
    assert inf.record["clipping_backend"] == "nonprivate"
