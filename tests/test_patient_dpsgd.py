"""Patient-level DP-SGD (``dpsgd_patient``) against a slow reference, and its sampling and accounting.

The reference computes every row's gradient with its own autograd call, sums them per patient, clips each
patient's sum to C, adds N(0, σ²C²) noise drawn the way Opacus draws it (global generator, parameter by
parameter) and divides by the expected number of patients per batch. The mechanism's own step (book-keeping
per-unit norms) must give the same parameters after one SGD(lr=1) step, for every registered model.
"""

import copy
import math

import numpy as np
import pytest
import torch
from dpfair.errors import ConfigError, PrivacyError
from dpfair.models import available_models, build_model, get_model
from dpfair.privacy.clipping.bookkeeping import BookKeepingClipper
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.mechanisms import TrainingData, get_mechanism
from dpfair.training.mechanisms.dpsgd_patient import PatientBatches
from torch import nn

UNIT_SIZES = [1, 2, 3, 4, 2]  # rows per patient in the test batch


def _input_shape(name):
    spec = get_model(name)
    if "image" in spec.modalities:
        side = max(16, spec.min_size)
        return (1, side, side)
    return (7,)


def _batch(input_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = sum(UNIT_SIZES)
    scales = torch.logspace(-1.5, 1.5, b)[torch.randperm(b, generator=g)]
    x = torch.randn(b, *input_shape, generator=g) * scales.view(-1, *[1] * len(input_shape))
    y = (torch.rand(b, generator=g) < 0.5).float()
    units = torch.repeat_interleave(torch.arange(len(UNIT_SIZES)), torch.tensor(UNIT_SIZES))
    return x, y, units


def _loss(model, x, y):
    return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y, reduction="none")


def _reference_unit_grads(model, x, y, units):
    """Per-patient summed gradients from one autograd call per row (no shortcuts)."""
    params = [p for p in model.parameters() if p.requires_grad]
    per_unit = [[torch.zeros_like(p, dtype=torch.float64) for p in params] for _ in range(int(units.max()) + 1)]
    for i in range(len(y)):
        grads = torch.autograd.grad(_loss(model, x[i : i + 1], y[i : i + 1]).sum(), params)
        for acc, g in zip(per_unit[int(units[i])], grads):
            acc += g.double()
    return params, per_unit


def _norm(grads):
    return math.sqrt(sum(float(g.pow(2).sum()) for g in grads))


def _model(name, seed=0):
    torch.manual_seed(seed)
    shape = _input_shape(name)
    return build_model(name, input_shape=shape, modality="tabular" if len(shape) == 1 else "image"), shape


DEEP = {"resnet18", "densenet121"}  # a minute each on a busy 2-core machine: marked slow


@pytest.mark.parametrize(
    "model_name", [pytest.param(m, marks=pytest.mark.slow) if m in DEEP else m for m in available_models()]
)
def test_per_patient_clipping_equals_slow_reference_for_every_model(model_name):
    model, shape = _model(model_name)
    # float64 throughout: the comparison is of the algorithm, not of float32 summation orders in deep models
    model = model.double()
    x, y, units = _batch(shape)
    x, y = x.double(), y.double()
    _, per_unit = _reference_unit_grads(model, x, y, units)
    norms = sorted(_norm(g) for g in per_unit)
    clip = (norms[1] + norms[2]) / 2  # some patients clipped, some not
    assert norms[0] < clip < norms[-1]

    # the mechanism's own trainer (fitted to 100 one-row patients: q = 0.1), stepped on the test batch
    data = TrainingData(x=torch.zeros(100, *shape, dtype=torch.float64), y=torch.zeros(100), patient_id=np.arange(100))
    work = copy.deepcopy(model)
    start = [p.detach().clone() for p in work.parameters()]
    trainer = get_mechanism("dpsgd_patient").make_trainer(
        model=work,
        optimizer=torch.optim.SGD(work.parameters(), lr=1.0),
        data=data,
        config=TrainConfig(epochs=1, batch_size=10, max_grad_norm=clip, optimizer="sgd", accountant="rdp"),
        epsilon=3.0,
        delta=1e-3,
        generator=torch.Generator().manual_seed(0),
    )
    sigma, expected = trainer.noise_multiplier, trainer.expected_batch_size
    assert sigma > 0 and expected == pytest.approx(10.0)
    torch.manual_seed(123)
    trainer.step(x, y, units)
    trainer.close()
    got = [p.detach() - p0 for p, p0 in zip(work.parameters(), start)]

    # reference: clip each patient's sum, add Opacus-style noise from the same seed, scale, SGD(lr=1)
    params, per_unit = _reference_unit_grads(copy.deepcopy(model), x, y, units)
    clipped = [torch.zeros_like(g) for g in per_unit[0]]
    for grads in per_unit:
        factor = min(1.0, clip / (_norm(grads) + 1e-6))
        for acc, g in zip(clipped, grads):
            acc += factor * g
    torch.manual_seed(123)
    want = []
    for acc, p in zip(clipped, params):
        noise = torch.normal(mean=0, std=sigma * clip, size=p.shape, dtype=p.dtype)  # as Opacus draws it
        want.append(-(acc + noise) / expected)
    scale = max(float(w.abs().max()) for w in want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9 * scale)

    # not vacuous: clipping rows one by one (record-level) gives another clipped sum
    rows_only = BookKeepingClipper(copy.deepcopy(model), max_grad_norm=clip)
    rows_only.clip_backward(_loss(rows_only.model, x, y))
    rows_only.remove()
    gap = max(float((p.grad - c).abs().max()) for p, c in zip(rows_only.model.parameters(), clipped))
    assert gap > 1e-3 * max(float(c.abs().max()) for c in clipped)


def test_patient_batches_take_whole_patients_at_the_poisson_rate():
    n_patients, sizes = 400, np.resize([1, 2, 3, 4], 400)
    pid = np.repeat([f"p{i}" for i in range(n_patients)], sizes)
    x = torch.arange(len(pid)).float().unsqueeze(1)
    loader = PatientBatches(
        x=x, y=torch.zeros(len(pid)), patient_id=pid, batch_size=50, generator=torch.Generator().manual_seed(0)
    )
    assert loader.sample_rate == 1 / math.ceil(len(pid) / 50) and len(loader) == int(1 / loader.sample_rate)
    counts, batches = [], 0
    for _ in range(20):
        for xb, _, units in loader:
            batches += 1
            rows = xb.squeeze(1).long().numpy()
            sampled = set(pid[rows])
            counts.append(len(sampled))
            for u in units.unique():  # every row of each sampled patient, and one unit per patient
                assert len(set(pid[rows[units.numpy() == int(u)]])) == 1
            assert all((pid[rows] == p).sum() == (pid == p).sum() for p in sampled)
    # patients per batch ~ Binomial(n_patients, q): mean within 4 standard errors
    q = loader.sample_rate
    se = math.sqrt(n_patients * q * (1 - q) / batches)
    assert abs(np.mean(counts) - n_patients * q) < 4 * se


def test_row_cap_is_the_first_rows_in_data_order():
    pid = np.array(["a", "b", "a", "a", "b", "c"])
    loader = PatientBatches(
        x=torch.arange(6).float(),
        y=torch.zeros(6),
        patient_id=pid,
        batch_size=6,
        generator=torch.Generator().manual_seed(0),
        max_rows=2,
    )
    assert [r.tolist() for r in loader.rows] == [[0, 2], [1, 4], [5]]


def _data(n_patients=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = np.resize([1, 2, 3], n_patients)
    pid = np.repeat([f"p{i:03d}" for i in range(n_patients)], sizes)
    x = torch.randn(len(pid), 5, generator=g)
    y = (x[:, 0] > 0).float()
    return x, y, pid


def test_patient_run_accounts_over_patients_and_infinity_uses_the_same_batches():
    x, y, pid = _data()
    config = TrainConfig(epochs=1, batch_size=40, accountant="rdp")
    run = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=2.0,
        delta=1e-3,
        config=config,
        seed=0,
        method="dpsgd_patient",
        patient_id=pid,
    )
    r = run.record
    assert r["privacy_unit"] == "patient" and r["n_units"] == 300 and r["n_train"] == len(y)
    assert r["ledger"]["event"]["sampling_probability"] == r["sample_rate"] == 1 / math.ceil(len(y) / 40)
    assert r["ledger"]["count"] == r["steps"] and r["epsilon_spent"] <= 2.0
    # ε = ∞: the same patient batches (same generator), no clipping or noise
    seen = {}
    for eps in (2.0, math.inf):
        loader = (
            get_mechanism("dpsgd_patient")
            .make_trainer(
                model=nn.Linear(5, 1),
                optimizer=torch.optim.SGD(nn.Linear(5, 1).parameters(), lr=0.1),
                data=TrainingData(x=x, y=y, patient_id=pid),
                config=config,
                epsilon=eps,
                delta=1e-3,
                generator=torch.Generator().manual_seed(0),
            )
            .loader
        )
        seen[eps] = [b[0].sum().item() for b in loader]
    assert seen[2.0] == seen[math.inf]
    # δ must be below 1 / n_patients, not 1 / n_rows
    with pytest.raises(PrivacyError, match="n_units"):
        train(
            model_name="mlp",
            modality="tabular",
            x_train=x,
            y_train=y,
            epsilon=2.0,
            delta=1 / 250,
            config=config,
            seed=0,
            method="dpsgd_patient",
            patient_id=pid,
        )


def test_patient_method_needs_ids_and_book_keeping():
    x, y, pid = _data(30)
    with pytest.raises(ConfigError, match="needs patient ids"):
        train(
            model_name="mlp",
            modality="tabular",
            x_train=x,
            y_train=y,
            epsilon=2.0,
            delta=1e-4,
            config=TrainConfig(epochs=1, batch_size=10, accountant="rdp"),
            seed=0,
            method="dpsgd_patient",
        )
    with pytest.raises(ConfigError, match="book-keeping"):
        train(
            model_name="mlp",
            modality="tabular",
            x_train=x,
            y_train=y,
            epsilon=2.0,
            delta=1e-4,
            config=TrainConfig(epochs=1, batch_size=10, clipping_backend="hooks", accountant="rdp"),
            seed=0,
            method="dpsgd_patient",
            patient_id=pid,
        )


def test_nonfinite_norm_gets_factor_zero_and_is_counted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.randn(6, 3)
    x[2, 0] = float("nan")
    y = torch.ones(6)
    for units in (None, torch.tensor([0, 0, 1, 1, 2, 2])):
        clipper = BookKeepingClipper(copy.deepcopy(model), max_grad_norm=1.0)
        norms = clipper.clip_backward(_loss(clipper.model, x, y), units=units)
        assert clipper.nonfinite_units == 1 and not torch.isfinite(norms).all()
        assert all(torch.isfinite(p.grad).all() for p in clipper.model.parameters())
        # equal to the clipped sum of the other units alone
        keep = [0, 1, 3, 4, 5] if units is None else [0, 1, 4, 5]
        ref = BookKeepingClipper(copy.deepcopy(model), max_grad_norm=1.0)
        ref.clip_backward(
            _loss(ref.model, x[keep], y[keep]), units=None if units is None else torch.tensor([0, 0, 1, 1])
        )
        for p, q in zip(clipper.model.parameters(), ref.model.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
        clipper.remove()
        ref.remove()


def test_input_changed_in_place_after_forward_is_refused():
    class Inplace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            h = self.a(x) * 1.0  # a copy whose backward saves nothing, so autograd itself cannot notice
            out = self.b(h)
            h.add_(1.0)  # changes the stored input of b after b ran
            return out

    model = Inplace()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="modified in place"):
        clipper.clip_backward(_loss(model, torch.randn(4, 3), torch.ones(4)))
