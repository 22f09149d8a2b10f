"""The DP-SGD mechanism itself, checked directly on real Opacus (no mocks): noise calibration against
independent accountants, per-sample clipping, the Gaussian noise actually added, Poisson sampling
statistics, and the ε = ∞ path being unclipped.

Statistical tolerances are 5 standard errors (a two-sided 5-SE band is exceeded with probability
≈ 6e-7 for a correct mechanism); every seed is fixed, so the tests are deterministic anyway.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from dpfair.models import build_model
from dpfair.pipeline.benchmark import load_benchmark
from dpfair.privacy.ledger import epsilon_for
from dpfair.privacy.params import resolve_delta
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
TARGETS = (1.0, 3.0, 10.0)
Z = 5.0  # standard errors allowed in every statistical check

pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
    pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha"),
]


# --------------------------------------------------------------------------------------------------
# 1. Noise calibration
# --------------------------------------------------------------------------------------------------

#: (n_train, batch_size, epochs, delta): small and large cases.
CALIBRATION_TABLE = [
    (442, 32, 20, 1e-4),
    (1629, 64, 10, 1e-4),
    (2099, 128, 15, 1e-5),
    (6373, 256, 10, 1e-5),
    (10000, 256, 10, 1e-5),
    (50000, 512, 5, 1e-6),
]


def _pld_tolerance(target: float) -> float:
    """PLD (Google dp-accounting, pessimistic, discretisation 1e-4) vs PRV (Opacus, upper end of its
    eps_error = 0.01 interval) are both numerical upper bounds on the same Poisson-subsampled Gaussian
    composition: they must agree within PRV's stated error (0.01) plus PLD's discretisation error, which
    grows with ε. Allowed: |ε_pld − ε_prv| ≤ 0.02·target + 0.01."""
    return 0.02 * target + 0.01


#: get_noise_multiplier's bisection stops once target − ε ≤ 0.01 (its epsilon_tolerance); the
#: calibrated σ must not be looser than that (a σ far too large would be a utility bug).
CALIBRATION_SLACK = 0.01 + 1e-9

#: Data-you-bring datasets are not in the repository: their calibration is checked at the published
#: size of the training split (approximate; the pipeline's 70/15/15 split where there is no official one).
PUBLISHED_N_TRAIN = {
    "chexpert": round(0.70 * 191_229),  # CheXpert-v1.0-small frontal views, train.csv + valid.csv
    "ham10000": round(0.70 * 10_015),
    "fitzpatrick17k": round(0.70 * 16_577),  # fewer if missing images are skipped
    "pneumoniamnist": 4_708,  # official MedMNIST v2 train split
    "breastmnist": 546,  # official MedMNIST v2 train split
}


def _shipped_cells() -> list[tuple[str, str]]:
    return [
        (path.stem, name)
        for path in sorted((REPO / "benchmarks").glob("*.yaml"))
        for name in load_benchmark(path).datasets
    ]


@functools.cache
def _shipped_setting(benchmark: str, dataset: str) -> tuple[str, int, int, int, float]:
    """(accountant, n_train, batch_size, epochs, delta) of a shipped benchmark dataset."""
    b = load_benchmark(REPO / "benchmarks" / f"{benchmark}.yaml")
    config, privacy = b.training(dataset), b.privacy(dataset)
    if dataset in PUBLISHED_N_TRAIN:
        n = PUBLISHED_N_TRAIN[dataset]
        delta = resolve_delta(privacy["delta"], n)
    else:  # embedded: prepare it with the settings the Snakefile's prepare_dataset rule passes (~0.5 s)
        from dpfair.data.prepare import prepare_dataset

        split = b.config["split"]
        prepared = prepare_dataset(
            name=dataset,
            module=b.module(dataset),
            params=b.dataset_settings(dataset).get("params", {}),
            val_fraction=split["val_fraction"],
            test_fraction=split["test_fraction"],
            split_seed=split["seed"],
            delta=privacy["delta"],
            min_group_size=b.config["evaluation"]["min_group_size"],
        )
        n, delta = int(prepared.meta["n"]["train"]), float(prepared.meta["delta"])
    return config.accountant, n, config.batch_size, config.epochs, delta


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch of the Poisson loader ``train`` iterates: Opacus's sampler yields ``int(1 / q)``
    batches with ``q = 1 / ceil(n / batch_size)``, one fewer than ceil(n / batch_size) for some sizes
    (93 → 92); its accountant then uses ``1 / len(loader)`` as the sample rate."""
    return len(DPDataLoader.from_data_loader(DataLoader(TensorDataset(torch.zeros(n, 1)), batch_size=batch_size)))


def _key(accountant, n, batch_size, epochs, delta, target) -> tuple:
    """What ``dpfair.training.loop.train`` does: calibrate σ with ``get_noise_multiplier`` at
    ``q = 1 / ceil(n / batch_size)`` for ``epochs · ceil(n / batch_size)`` steps, then run
    ``epochs · len(loader)`` steps that the engine's accountant charges at ``1 / len(loader)``.
    ``test_train_calibrates_noise_as_these_tests_do`` checks this mirror against ``train``."""
    return (accountant, math.ceil(n / batch_size), _steps_per_epoch(n, batch_size), epochs, delta, target)


def _calibrate(key: tuple, with_rdp: bool) -> dict:
    """Opacus's noise calibration, then ε of that σ over the run, under the calibrating accountant and
    Google's two. Runs in a worker process (the 45 distinct calibrations take ~65 s on one core)."""
    accountant, k, steps_per_epoch, epochs, delta, target = key
    q, steps = 1 / steps_per_epoch, epochs * steps_per_epoch  # as the run's accountant sees it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)  # Opacus's RDP logs non-converging fractional orders
        sigma = get_noise_multiplier(
            target_epsilon=target, target_delta=delta, sample_rate=1 / k, steps=epochs * k, accountant=accountant
        )
        result = {"sigma": sigma}
        for name in {accountant, "pld", "rdp_google"}:
            result[name] = epsilon_for(name, noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
        if with_rdp:
            result["sigma_rdp"] = get_noise_multiplier(
                target_epsilon=target, target_delta=delta, sample_rate=q, steps=steps, accountant="rdp"
            )
            result["pld_of_sigma_rdp"] = epsilon_for(
                "pld", noise_multiplier=result["sigma_rdp"], sample_rate=q, steps=steps, delta=delta
            )
    return result


def _calibrate_job(job):
    return _calibrate(*job)


def _one_thread_per_worker():
    """OpenBLAS would spin a second thread per worker for no speed-up (PRV's numerics are serial)."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    threadpool_limits(1)


@pytest.fixture(scope="module")
def calibrations() -> dict:
    """All calibrations of this module, computed once, in parallel worker processes."""
    jobs: dict[tuple, bool] = {}
    for setting in CALIBRATION_TABLE:
        for target in TARGETS:
            jobs[_key("prv", *setting, target)] = True
    for benchmark, dataset in _shipped_cells():
        for target in TARGETS:
            key = _key(*_shipped_setting(benchmark, dataset), target)
            jobs[key] = jobs.get(key, False)
    # slowest first (large ε, many steps), so the workers finish together
    ordered = sorted(jobs.items(), key=lambda kv: (-kv[0][5], -kv[0][2] * kv[0][3]))
    workers = max(1, min(4, os.cpu_count() or 1))
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork"), initializer=_one_thread_per_worker
    ) as pool:
        results = list(pool.map(_calibrate_job, ordered))
    return {key: result for (key, _), result in zip(ordered, results)}


def _check_calibration(result: dict, key: tuple) -> None:
    """σ as train calibrates it keeps ε ≤ target over the run, per its own accountant, and Google's
    independent accountants agree."""
    accountant, k, steps_per_epoch, epochs, delta, target = key
    sigma, eps_own, eps_pld, eps_rdp_google = result["sigma"], result[accountant], result["pld"], result["rdp_google"]
    where = f"q=1/{k} steps={epochs}x{steps_per_epoch} delta={delta:g} target={target:g} sigma={sigma:.5f}"
    assert steps_per_epoch == k, f"{where}: the loader yields {steps_per_epoch} batches per epoch, not {k}"
    assert eps_own <= target, f"{where}: {accountant} epsilon {eps_own:.5f} exceeds the target"
    assert eps_own >= target - CALIBRATION_SLACK, f"{where}: noise calibrated looser than the bisection allows"
    assert eps_pld <= target + _pld_tolerance(target), f"{where}: Google PLD says epsilon {eps_pld:.5f}"
    if accountant == "prv":
        assert abs(eps_pld - eps_own) <= _pld_tolerance(target), f"{where}: PRV {eps_own:.5f} vs PLD {eps_pld:.5f}"
    # RDP is an upper bound on the optimal ε, which PLD approximates from above within its discretisation
    assert eps_rdp_google >= eps_pld, f"{where}: Google RDP {eps_rdp_google:.5f} below PLD {eps_pld:.5f}"
    if "sigma_rdp" in result:  # the σ Opacus's RDP accountant calibrates is also within target
        assert result["sigma_rdp"] >= sigma, f"{where}: RDP calibrated less noise ({result['sigma_rdp']:.5f}) than PRV"
        assert result["pld_of_sigma_rdp"] <= target, (
            f"{where}: RDP-calibrated sigma {result['sigma_rdp']:.5f} "
            f"gives PLD epsilon {result['pld_of_sigma_rdp']:.5f}"
        )


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("n,batch_size,epochs,delta", CALIBRATION_TABLE)
def test_calibrated_noise_meets_the_target_under_prv_and_google_accountants(
    calibrations, n, batch_size, epochs, delta, target
):
    key = _key("prv", n, batch_size, epochs, delta, target)
    assert "sigma_rdp" in calibrations[key]
    _check_calibration(calibrations[key], key)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("benchmark,dataset", _shipped_cells())
def test_calibrated_noise_meets_the_target_for_every_shipped_benchmark_dataset(
    calibrations, benchmark, dataset, target
):
    key = _key(*_shipped_setting(benchmark, dataset), target)
    _check_calibration(calibrations[key], key)


def _train_tabular(n, batch_size, epochs, delta, target, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).float()
    return train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=target,
        delta=delta,
        config=TrainConfig(epochs=epochs, batch_size=batch_size),
        seed=seed,
    ).record


def test_train_calibrates_noise_as_these_tests_do():
    """The mirror in ``_key``/``_calibrate`` gives the σ, q and steps the real ``train`` records."""
    n, batch_size, epochs, delta, target = 442, 32, 2, 1e-4, 1.0
    record = _train_tabular(n, batch_size, epochs, delta, target)
    accountant, k, steps_per_epoch, *_ = _key("prv", n, batch_size, epochs, delta, target)
    assert record["accountant"] == accountant and record["sample_rate"] == 1 / k
    assert record["steps"] == epochs * steps_per_epoch == epochs * k
    assert record["noise_multiplier"] == get_noise_multiplier(
        target_epsilon=target, target_delta=delta, sample_rate=1 / k, steps=epochs * k, accountant=accountant
    )


def test_train_calibrates_for_every_step_it_takes():
    """k = 75 batches per epoch, 3 epochs: Opacus's make_private_with_epsilon would calibrate for
    int(3 / (1 / 75)) = 224 steps and overspend ε = 1 over the 225 the run takes; train must not."""
    n, batch_size, epochs, delta, target = 9_550, 128, 3, 1e-6, 1.0
    sigma_224 = get_noise_multiplier(
        target_epsilon=target, target_delta=delta, sample_rate=1 / 75, epochs=epochs, accountant="prv"
    )
    assert epsilon_for("prv", noise_multiplier=sigma_224, sample_rate=1 / 75, steps=225, delta=delta) > target
    record = _train_tabular(n, batch_size, epochs, delta, target)
    assert record["steps"] == 225 and record["sample_rate"] == 1 / 75
    assert record["epsilon_spent"] <= target
    assert (
        epsilon_for("prv", noise_multiplier=record["noise_multiplier"], sample_rate=1 / 75, steps=225, delta=delta)
        <= target
    )


def test_train_accounting_when_the_loader_is_one_batch_short():
    """ceil(n / batch) = 93, but Opacus's Poisson loader yields int(1 / (1/93)) = 92 batches per epoch and
    its accountant charges q = 1/92: train must calibrate for that view (it used to overspend ε = 3 and
    fail after the whole run), and the true mechanism (q = 1/93, 184 steps) must stay within target."""
    n, batch_size, epochs, delta, target = 11_800, 128, 2, 1e-5, 3.0
    assert math.ceil(n / batch_size) == 93 and _steps_per_epoch(n, batch_size) == 92
    record = _train_tabular(n, batch_size, epochs, delta, target)
    assert record["steps"] == 184 and record["epsilon_spent"] <= target
    assert record["sample_rate"] == 1 / 93 and record["accounted_sample_rate"] == 1 / 92
    assert (
        epsilon_for("prv", noise_multiplier=record["noise_multiplier"], sample_rate=1 / 93, steps=184, delta=delta)
        <= target
    )


# --------------------------------------------------------------------------------------------------
# 2. Per-sample clipping
# --------------------------------------------------------------------------------------------------


def _per_sample_grads_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Each sample's own loss gradient, one backward pass per sample (independent of Opacus's hooks)."""
    loss_fn = nn.BCEWithLogitsLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    out = [torch.empty(len(x), *p.shape) for p in params]
    for i in range(len(x)):
        grads = torch.autograd.grad(loss_fn(model(x[i : i + 1]).squeeze(-1), y[i : i + 1]), params)
        for o, g in zip(out, grads):
            o[i] = g
    return out


@pytest.mark.parametrize(
    "model_name,modality,input_shape",
    [
        ("cnn", "image", (1, 16, 16)),
        ("mlp", "tabular", (6,)),
    ],
)
def test_each_per_sample_gradient_is_clipped_to_max_grad_norm(model_name, modality, input_shape):
    """update = −lr · Σ_i min(1, C / (‖g_i‖ + 1e-6)) · g_i / B, with ‖g_i‖ the norm over all parameters."""
    torch.manual_seed(0)
    batch = 32
    scales = torch.logspace(-2, 2, batch)[torch.randperm(batch)]  # spread the per-sample norms
    x = torch.randn(batch, *input_shape) * scales.view(-1, *[1] * len(input_shape))
    y = torch.randint(0, 2, (batch,)).float()
    model = build_model(model_name, input_shape=input_shape, modality=modality)
    by_hand = _per_sample_grads_by_hand(model, x, y)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in by_hand))
    ordered = norms.sort().values
    clip = float(ordered[batch // 2 - 1] + ordered[batch // 2]) / 2  # C between the two middle norms
    assert (norms > clip).sum() >= batch // 2 - 1 and (norms < clip).sum() >= batch // 2 - 1, "need both cases"

    before = copy.deepcopy(list(model.parameters()))
    engine = PrivacyEngine(accountant="prv")
    private, optimizer, _ = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        data_loader=DataLoader(TensorDataset(x, y), batch_size=batch),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        poisson_sampling=False,
    )
    assert optimizer.expected_batch_size == batch
    optimizer.zero_grad()
    nn.BCEWithLogitsLoss()(private(x).squeeze(-1), y).backward()
    optimizer.step()

    factor = (clip / (norms + 1e-6)).clamp(max=1.0)
    assert torch.all(factor * norms <= clip * (1 + 1e-6))
    params = [p for p in private.parameters() if p.requires_grad]
    for p, g, p0 in zip(params, by_hand, before):
        scale = float(g.abs().max())
        torch.testing.assert_close(p.grad_sample, g, rtol=1e-4, atol=1e-5 * scale)  # Opacus clips the right thing
        clipped_sum = torch.einsum("i,i...->...", factor, g)
        tol = 1e-5 * max(float(clipped_sum.abs().max()), 1e-12) + 1e-7
        torch.testing.assert_close(p.summed_grad, clipped_sum, rtol=1e-4, atol=tol)
        torch.testing.assert_close(p0.detach() - p.detach(), clipped_sum / batch, rtol=1e-4, atol=tol / batch)
    # not vacuous: without clipping the sum would be far outside that tolerance
    unclipped_gap = max(float((g.sum(0) - torch.einsum("i,i...->...", factor, g)).abs().max()) for g in by_hand)
    assert unclipped_gap > 100 * 1e-5 * max(float(torch.einsum("i,i...->...", factor, g).abs().max()) for g in by_hand)


# --------------------------------------------------------------------------------------------------
# 3. The Gaussian noise
# --------------------------------------------------------------------------------------------------


def test_noise_is_gaussian_with_std_sigma_c_over_expected_batch_size():
    """With zero gradients, SGD(lr=1, no momentum) moves each coordinate by −noise/B with
    noise ~ N(0, (σ·C)²) and B = expected batch size = int(n·q) (Opacus, loss_reduction="mean"),
    i.e. per-coordinate std σ·C / B, zero mean, independent across coordinates and steps."""
    sigma, clip, n, batch_size, dim, n_steps = 1.3, 0.7, 640, 64, 999, 200
    torch.manual_seed(0)
    model = nn.Linear(dim, 1)
    data = DataLoader(
        TensorDataset(torch.randn(n, dim)),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    engine = PrivacyEngine(accountant="prv")
    model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.0),
        data_loader=data,
        noise_multiplier=sigma,
        max_grad_norm=clip,
        poisson_sampling=True,
    )
    assert loader.sample_rate == 0.1 and optimizer.expected_batch_size == 64
    expected_std = sigma * clip / (n * loader.sample_rate)

    moves = []
    while len(moves) < n_steps:
        for (xb,) in loader:
            optimizer.zero_grad()
            (model(xb).sum() * 0.0).backward()
            before = torch.cat([p.detach().flatten() for p in model.parameters()])
            optimizer.step()
            assert all(float(p.summed_grad.abs().max()) == 0.0 for p in model.parameters())  # gradient is zero
            moves.append(before - torch.cat([p.detach().flatten() for p in model.parameters()]))
            if len(moves) == n_steps:
                break
    noise = torch.stack(moves).double()  # (steps, coordinates)
    values = noise.flatten()
    count = values.numel()  # 200 000

    std = float(values.std())
    # sample std of N normal values: relative standard error 1/sqrt(2N)
    assert abs(std / expected_std - 1) <= Z / math.sqrt(2 * count), f"noise std {std:.6g} vs σ·C/B = {expected_std:.6g}"
    assert abs(float(values.mean())) <= Z * expected_std / math.sqrt(count), "noise is not zero-mean"
    # Gaussian shape: P(|X| < std) = 0.6827 (Laplace 0.757, uniform 0.577 at the same std)
    inside = float((values.abs() < expected_std).double().mean())
    p = math.erf(1 / math.sqrt(2))
    assert abs(inside - p) <= Z * math.sqrt(p * (1 - p) / count), f"P(|noise| < std) = {inside:.4f}, Gaussian {p:.4f}"
    # fresh noise every step and every coordinate: correlations within 5/sqrt(N) of 0
    standardised = noise / expected_std
    across_steps = float((standardised[1:] * standardised[:-1]).mean())
    across_coords = float((standardised[:, 1:] * standardised[:, :-1]).mean())
    assert abs(across_steps) <= Z / math.sqrt(standardised[1:].numel()), f"step-to-step correlation {across_steps:.4f}"
    assert abs(across_coords) <= Z / math.sqrt(standardised[:, 1:].numel()), (
        f"coordinate-to-coordinate correlation {across_coords:.4f}"
    )


# --------------------------------------------------------------------------------------------------
# 4. Poisson sampling
# --------------------------------------------------------------------------------------------------


def _check_binomial_batches(sizes: np.ndarray, n: int, q: float) -> None:
    """Batch sizes ~ Binomial(n, q): mean n·q, variance n·q·(1−q), each within 5 standard errors."""
    m = len(sizes)
    var = n * q * (1 - q)
    mu4 = var * (1 + 3 * (n - 2) * q * (1 - q))  # binomial fourth central moment
    mean_se = math.sqrt(var / m)
    var_se = math.sqrt((mu4 - var**2) / m)  # standard error of the sample variance
    assert abs(sizes.mean() - n * q) <= Z * mean_se, f"mean batch {sizes.mean():.3f} vs n·q = {n * q:.3f}"
    assert abs(sizes.var(ddof=1) - var) <= Z * var_se, (
        f"batch variance {sizes.var(ddof=1):.3f} vs n·q·(1−q) = {var:.3f}"
    )


def test_poisson_loader_batch_sizes_and_inclusions_are_binomial():
    """The ε = ∞ path's loader (``DPDataLoader.from_data_loader``, as in ``train``)."""
    n, batch_size, n_batches = 600, 64, 2000
    base = DataLoader(
        TensorDataset(torch.arange(n)), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    loader = DPDataLoader.from_data_loader(base)
    q = loader.sample_rate
    assert q == 1 / math.ceil(n / batch_size) == 0.1
    sizes, counts = [], np.zeros(n)
    while len(sizes) < n_batches:
        for (rows,) in loader:
            assert len(rows.unique()) == len(rows), "a row drawn twice in one batch"
            sizes.append(len(rows))
            counts[rows.numpy()] += 1
            if len(sizes) == n_batches:
                break
    _check_binomial_batches(np.array(sizes), n, q)
    # each row is included independently with probability q: counts ~ Binomial(2000, q) per row, so
    # Σ (c − Mq)² / (Mq(1−q)) ~ χ²(n) (mean n, sd sqrt(2n)), and no single row strays past 5.5 sd
    expected, sd = n_batches * q, math.sqrt(n_batches * q * (1 - q))
    chi2 = float((((counts - expected) / sd) ** 2).sum())
    assert abs(chi2 - n) <= Z * math.sqrt(2 * n), f"row inclusion chi2 {chi2:.1f} for {n} rows"
    assert np.abs(counts - expected).max() <= 5.5 * sd


def test_private_loader_batch_sizes_are_binomial_with_empty_batches():
    """The loader ``make_private`` returns on train's base loader, at n·q = 1: empty batches at rate (1−q)^n."""
    n, batch_size, n_batches = 12, 1, 2400
    model = nn.Linear(1, 1)
    base = DataLoader(
        TensorDataset(torch.zeros(n, 1)),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    _, _, loader = PrivacyEngine(accountant="prv").make_private(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=base,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=True,
    )
    q = loader.sample_rate
    assert q == 1 / 12
    sizes = []
    while len(sizes) < n_batches:
        for (xb,) in loader:
            assert xb.shape[1:] == (1,)
            sizes.append(len(xb))
    sizes = np.array(sizes[:n_batches])
    _check_binomial_batches(sizes, n, q)
    p_empty = (1 - q) ** n  # 0.352
    empty = float((sizes == 0).mean())
    assert abs(empty - p_empty) <= Z * math.sqrt(p_empty * (1 - p_empty) / n_batches), f"empty batch rate {empty:.3f}"


# --------------------------------------------------------------------------------------------------
# 5. ε = ∞: no clipping
# --------------------------------------------------------------------------------------------------


def test_inf_run_applies_huge_gradients_unclipped():
    """One full-batch step (batch_size = n, so q = 1) of the ∞ run with SGD: the first momentum step is
    −lr·∇L, whose norm is far above max_grad_norm = 1; a clipped update would be at most lr·C."""
    g = torch.Generator().manual_seed(0)
    n, lr, seed = 40, 1e-4, 3
    x = torch.randn(n, 6, generator=g) * 1000.0
    y = torch.tensor([0.0, 1.0] * (n // 2))
    config = TrainConfig(epochs=1, batch_size=n, optimizer="sgd", lr=lr, max_grad_norm=1.0)
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=1e-3,
        config=config,
        seed=seed,
    )
    assert result.record["steps"] == 1 and result.record["sample_rate"] == 1.0

    torch.manual_seed(seed)  # train seeds the model initialisation the same way
    reference = build_model("mlp", input_shape=(6,), modality="tabular")
    per_sample = _per_sample_grads_by_hand(reference, x, y)
    per_sample_norms = torch.sqrt(sum(gs.flatten(1).pow(2).sum(1) for gs in per_sample))
    assert float(per_sample_norms.max()) > 100 * config.max_grad_norm
    grads = torch.autograd.grad(nn.BCEWithLogitsLoss()(reference(x).squeeze(-1), y), list(reference.parameters()))
    moved = []
    for p, p0, grad in zip(result.model.parameters(), reference.parameters(), grads):
        torch.testing.assert_close(p.detach(), p0.detach() - lr * grad, rtol=1e-4, atol=1e-6)
        moved.append((p0.detach() - p.detach()).flatten())
    update_norm = float(torch.cat(moved).norm())
    assert update_norm > 50 * lr * config.max_grad_norm, f"update norm {update_norm:.3g} looks clipped"
