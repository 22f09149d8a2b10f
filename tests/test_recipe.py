"""Recipe options against slow references: normalised clipping, class-weighted loss, augmentation multiplicity,
and the privacy-free post-processing (best validation epoch, EMA, LR schedule).

The references compute every per-sample (or per-copy) gradient with its own autograd call, apply the clip
rule by hand and sum; the book-keeping clipper must give the same clipped sum, and each unit's clipped
contribution must stay at or below C (the sensitivity the noise is calibrated to).
"""

import math

import pytest
import torch
from dpfair.errors import ConfigError
from dpfair.models import build_model
from dpfair.privacy.clipping.bookkeeping import BookKeepingClipper
from dpfair.privacy.clipping.policy import NORMALIZED_GAMMA, check_sensitivity, get_clip_policy
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.recipe import StepRecipe, augment_images, positive_weight
from torch import nn

C = 0.7


def _cnn(seed=0):
    torch.manual_seed(seed)
    return build_model("cnn", input_shape=(1, 16, 16), modality="image").double()


def _batch(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(-1.5, 1.5, n)[torch.randperm(n, generator=g)]
    x = (torch.randn(n, 1, 16, 16, generator=g) * scales.view(-1, 1, 1, 1)).double()
    y = (torch.arange(n) % 3 == 0).double()
    return x, y


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def _reference(model, xs, ys, units, recipe, factor):
    """Σ_u factor(‖Σ_{i∈u} ∇ℓ_i‖) · Σ_{i∈u} ∇ℓ_i, one autograd call per row; also each unit's clipped norm."""
    params = _params(model)
    n_units = int(units.max()) + 1
    per_unit = [[torch.zeros_like(p) for p in params] for _ in range(n_units)]
    for i in range(len(ys)):
        loss = recipe.losses(model(xs[i : i + 1]), ys[i : i + 1]).sum()
        for acc, g in zip(per_unit[int(units[i])], torch.autograd.grad(loss, params)):
            acc += g
    total = [torch.zeros_like(p) for p in params]
    clipped_norms = []
    for grads in per_unit:
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
        c = factor(norm)
        clipped_norms.append(c * norm)
        for t, g in zip(total, grads):
            t += c * g
    return total, clipped_norms


def _bookkeeping(model, xs, ys, units, recipe, policy):
    clipper = BookKeepingClipper(model, max_grad_norm=C, clip_policy=get_clip_policy(policy))
    norms = clipper.clip_backward(recipe.losses(model(xs), ys), units=units)
    clipper.remove()
    return [p.grad.clone() for p in _params(model)], norms


FLAT = lambda n: min(1.0, C / (n + 1e-6))  # noqa: E731
NORMALIZED = lambda n: C / (n + NORMALIZED_GAMMA)  # noqa: E731


@pytest.mark.parametrize("policy,factor", [("flat", FLAT), ("normalized", NORMALIZED)])
@pytest.mark.parametrize("pos_weight,augmult", [(1.0, 1), (4.0, 1), (1.0, 3), (2.5, 2)])
def test_clipped_sum_equals_slow_reference(policy, factor, pos_weight, augmult):
    model = _cnn()
    x, y = _batch()
    recipe = StepRecipe(pos_weight=pos_weight, augmult=augmult, generator=torch.Generator().manual_seed(5))
    xs, ys, units = recipe.expand(x, y)
    units = torch.arange(len(y)) if units is None else units
    if augmult > 1:
        assert torch.equal(units, torch.arange(len(y)).repeat_interleave(augmult))
    got, norms = _bookkeeping(model, xs, ys, units, recipe, policy)
    model.zero_grad(set_to_none=True)
    want, clipped = _reference(model, xs, ys, units, recipe, factor)
    assert len(norms) == len(y)  # one unit per sample, whatever K
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9)
    assert max(clipped) <= C * (1 + 1e-9)
    if policy == "normalized":  # every unit is rescaled, so each contributes nearly C
        assert min(clipped) > 0.5 * C


def test_normalized_clipping_keeps_sensitivity_below_c_for_any_norm():
    norms = torch.tensor([0.0, 1e-8, 1e-3, 0.3, 1.0, 7.0, 1e6], dtype=torch.float64)
    f = get_clip_policy("normalized").factors(norms, max_grad_norm=2.0)
    assert bool((f * norms < 2.0).all())
    check_sensitivity(f.float(), norms.float(), max_grad_norm=2.0)  # the run-time check passes in float32 too
    torch.testing.assert_close(f, 2.0 / (norms + NORMALIZED_GAMMA))


def test_class_weight_scales_the_positive_gradient_before_clipping():
    model = _cnn()
    x, y = _batch()
    plain, weighted = StepRecipe(), StepRecipe(pos_weight=5.0)
    _, n_plain = _bookkeeping(model, x, y, None, plain, "flat")
    _, n_weighted = _bookkeeping(model, x, y, None, weighted, "flat")
    ratio = n_weighted / n_plain
    torch.testing.assert_close(ratio, 1.0 + 4.0 * y)  # positives' norms ×5, negatives' unchanged
    # the clipped per-sample contributions are still at most C: weighting happens before clipping
    contributions = torch.clamp(C / (n_weighted + 1e-6), max=1.0) * n_weighted
    assert float(contributions.max()) <= C * (1 + 1e-9)


def test_positive_weight_from_validation_prior():
    assert positive_weight("none", label_prior=0.3) == 1.0
    assert positive_weight("balanced", label_prior=0.25) == pytest.approx(3.0)
    assert positive_weight(2.0, label_prior=None) == 2.0
    with pytest.raises(ConfigError, match="balanced"):
        positive_weight("balanced", label_prior=None)


def test_augmentation_is_a_flip_and_a_shift_of_the_image():
    x = torch.arange(64.0).view(1, 1, 8, 8).repeat(50, 1, 1, 1)
    out = augment_images(x, generator=torch.Generator().manual_seed(0), max_shift=1)
    assert out.shape == x.shape
    # the centre 6x6 of every output is a shifted (possibly flipped) window of the input
    for img in out[:, 0]:
        centre = img[1:7, 1:7]
        found = any(
            torch.equal(centre, src[1 + dy : 7 + dy, 1 + dx : 7 + dx])
            for src in (x[0, 0], x[0, 0].flip(-1))
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        assert found
    assert len({tuple(o.flatten()[:10].tolist()) for o in out}) > 3  # copies differ


def test_augmult_needs_images():
    with pytest.raises(ConfigError, match="image"):
        StepRecipe(augmult=2, generator=torch.Generator()).expand(torch.randn(4, 3), torch.ones(4))


@pytest.fixture(scope="module")
def tabular():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(600, generator=g) > 0).float()
    return x[:400], y[:400], x[400:], y[400:]


def test_select_best_keeps_the_best_validation_epoch(tabular):
    x, y, xv, yv = tabular
    cfg = TrainConfig(epochs=5, batch_size=50, lr=0.3, optimizer="sgd", select_best=True)
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=2.0,
        delta=1e-3,
        config=cfg,
        seed=0,
        x_val=xv,
        y_val=yv,
    )
    aurocs = [h["val_auroc"] for h in result.history]
    best = max(range(len(aurocs)), key=lambda i: aurocs[i])
    assert result.record["best_epoch"] == best + 1
    from dpfair.metrics import safe_auroc
    from dpfair.training.loop import predict

    assert safe_auroc(yv.numpy(), predict(result.model, xv)) == pytest.approx(aurocs[best])


def test_ema_and_cosine_schedule(tabular):
    x, y, xv, yv = tabular
    base = dict(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=1e-3,
        seed=0,
        x_val=xv,
        y_val=yv,
    )
    plain = train(config=TrainConfig(epochs=2, batch_size=50), **base)
    ema = train(config=TrainConfig(epochs=2, batch_size=50, ema_decay=0.9), **base)
    cosine = train(config=TrainConfig(epochs=2, batch_size=50, lr_schedule="cosine"), **base)
    w = lambda r: torch.cat([p.detach().flatten() for p in r.model.parameters()])  # noqa: E731
    assert not torch.allclose(w(plain), w(ema)) and not torch.allclose(w(plain), w(cosine))
    assert ema.record["ema_decay"] == 0.9 and cosine.record["lr_schedule"] == "cosine"
    # the schedule's last step uses a learning rate near 0
    from dpfair.training.iterates import set_lr

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    set_lr(opt, TrainConfig(lr=0.5, lr_schedule="cosine"), step=99, total=100)
    assert opt.param_groups[0]["lr"] < 0.5 * 1e-3
    set_lr(opt, TrainConfig(lr=0.5, lr_schedule="cosine"), step=0, total=100)
    assert opt.param_groups[0]["lr"] == 0.5


def test_private_training_with_every_recipe_option_stays_within_budget():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 1, 16, 16, generator=g)
    y = (torch.rand(300, generator=g) < 0.3).float()
    cfg = TrainConfig(
        epochs=2,
        batch_size=60,
        lr=0.01,
        augmult=2,
        class_weight="balanced",
        clip_policy="normalized",
        ema_decay=0.8,
        select_best=True,
        lr_schedule="cosine",
    )
    result = train(
        model_name="cnn",
        modality="image",
        x_train=x,
        y_train=y,
        epsilon=3.0,
        delta=1e-3,
        config=cfg,
        seed=0,
        x_val=x[:60],
        y_val=y[:60],
    )
    assert result.record["epsilon_spent"] <= 3.0
    assert result.record["augmult"] == 2 and result.record["clip_policy"] == "normalized"


def test_opacus_modes_refuse_what_only_bookkeeping_does():
    x, y = torch.randn(100, 1, 16, 16), (torch.rand(100) < 0.5).float()
    for cfg in (
        TrainConfig(epochs=1, clipping_backend="hooks", augmult=2),
        TrainConfig(epochs=1, clipping_backend="hooks", clip_policy="normalized"),
    ):
        with pytest.raises(ConfigError, match="book-keeping"):
            train(model_name="cnn", modality="image", x_train=x, y_train=y, epsilon=3.0, delta=1e-3, config=cfg, seed=0)


@pytest.mark.parametrize("method", ["dpsgd_f", "dpsgd_global_adapt", "label_rr"])
@pytest.mark.parametrize("option", [{"class_weight": "balanced"}, {"augmult": 2}, {"clip_policy": "normalized"}])
def test_methods_without_the_recipe_refuse_it_instead_of_ignoring_it(method, option):
    from dpfair.errors import ConfigError
    from dpfair.training.mechanisms import get_mechanism

    with pytest.raises(ConfigError, match=f"method {method} does not implement the recipe options"):
        get_mechanism(method).make_trainer(
            model=None, optimizer=None, data=None, config=TrainConfig(**option), epsilon=1.0, delta=1e-5, generator=None
        )
