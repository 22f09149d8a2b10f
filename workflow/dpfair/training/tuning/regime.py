"""The noise regime of DP-SGD at a target ε, and the private recipes it sets, from public quantities alone.

What the private search space offers at each ε follows from what the DP-SGD literature says sets the regime:
the noise in the averaged clipped gradient, σ·C/B per coordinate, and the number of steps (Sander, Stock &
Sablayrolles 2023, "TAN without a burn: scaling laws of DP-SGD"; De et al. 2022; Ponomareva et al. 2023,
"How to DP-fy ML", Sec. 5.4). In the regime where subsampling amplifies well (σ ≳ 1), the DP-SGD central
limit theorem (Bu, Dong, Long & Su 2020) makes T steps at rate q = B/n and noise σ about μ-GDP with
μ = q·√(T(e^{σ⁻²} − 1)), so at a fixed number of steps the per-step noise σ/B ≈ √T/(μ·n) does not depend on B:
a smaller ε (smaller μ) leaves more noise per step at every batch size, and only fewer steps bring it back.

The rule, written down before any benchmark data were seen (docs/tuning.md):

1. μ of the target: the μ-GDP whose (ε, δ) curve passes through the target (Dong, Roth & Su 2022, Cor. 2.13),
   divided by √K for one of K tuning trials (each an equal CLT share; the exact split is the accountant's).
2. A trial draws a noise ratio κ: the norm of the noise in the averaged gradient, σ·√d/B, relative to C (d the
   model's trainable parameters). Normalised clipping makes each per-sample gradient about C long, so κ ≈ 1
   is noise as large as the largest possible signal. The steps that keep it there are T(κ) = (μ·n·κ/√d)²
   (exactly, with the CLT's e^{σ⁻²} − 1 instead of σ⁻²).
3. A trial draws its compute in epochs E, and takes as many steps as that compute and the noise ratio allow:
   the smallest expected batch (most steps) whose noise ratio is at most κ and whose σ stays ≥ 1, where the
   CLT and the amplification by subsampling hold. At small ε the steps are few and the batch large, up to
   full batch for fewer epochs; at large ε the batch shrinks until σ reaches its floor, the noise below κ.
4. The step size lr·C is drawn around the non-private SGD step for unit-norm gradients (SGD with momentum).

The draw reads n, d, ε, δ and K, all public, and never the data (``tests/test_tuning.py``).
"""

from __future__ import annotations

import math

from dpfair.training.tuning.accounting import clt_sigma

#: σ below which a recipe leaves the regime where subsampling amplifies well (and the CLT's steps do not hold)
MIN_SIGMA = 1.0


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gdp_delta(mu: float, epsilon: float) -> float:
    """δ(ε) of μ-GDP: Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (Dong, Roth & Su 2022, Cor. 2.13)."""
    return _phi(-epsilon / mu + mu / 2) - math.exp(epsilon) * _phi(-epsilon / mu - mu / 2)


def gdp_mu(epsilon: float, delta: float) -> float:
    """The μ whose μ-GDP curve passes through (ε, δ): δ(ε) grows with μ, so bisection.

    Example:
        >>> round(gdp_mu(1.0, 1e-5), 3), round(gdp_mu(10.0, 1e-5), 3)
        (0.268, 2.0)
    """
    if not (epsilon > 0 and 0 < delta < 1):
        raise ValueError(f"needs epsilon > 0 and 0 < delta < 1, got {epsilon}, {delta}")
    low, high = 1e-6, 1.0
    while gdp_delta(high, epsilon) < delta:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if gdp_delta(mid, epsilon) < delta else (low, mid)
    return (low + high) / 2


def private_recipe(
    *, epsilon: float, delta: float, n: int, n_params: int, trials: int, noise_ratio: float, epochs: int
) -> dict:
    """The expected batch, epochs and steps of one private trial at noise ratio κ and compute ``epochs``.

    The trial makes k Poisson batches per epoch at q = 1/k (what the accountant charges, Opacus's loader) for
    ``epochs`` epochs. By the CLT, T = epochs·k steps at q leave σ_k = 1/√log(1 + μ²k/epochs) and a noise ratio
    ρ_k = σ_k·√d·k/n, which grows with k. The trial takes the largest k with ρ_k ≤ κ and σ_k ≥ ``MIN_SIGMA``
    (the most steps the noise allows at that compute); where even full batch (k = 1) is noisier than κ, it
    takes full batch for fewer epochs, T = (μ·n·κ/√d)² steps, at least one.

    Returns ``expected_batch_size`` and ``epochs`` (the training-config fields), the planned ``steps``, the
    CLT's ``sigma_planned`` (the accountant calibrates the real one) and the ``noise_ratio_planned`` it
    leaves. Every input is public.

    Example:
        >>> r = private_recipe(epsilon=1.0, delta=1e-5, n=3125, n_params=23000, trials=1, noise_ratio=1.0, epochs=15)
        >>> r["expected_batch_size"], r["steps"], round(r["noise_ratio_planned"], 2)
        (1563, 30, 0.99)
        >>> r = private_recipe(epsilon=10.0, delta=1e-5, n=3125, n_params=23000, trials=1, noise_ratio=1.0, epochs=15)
        >>> r["steps"], r["noise_ratio_planned"] < 1.0, r["sigma_planned"] >= MIN_SIGMA
        (90, True, True)
    """
    if n < 1 or n_params < 1 or trials < 1 or noise_ratio <= 0 or epochs < 1:
        raise ValueError("n, n_params, trials, noise_ratio and epochs must be positive")
    mu = gdp_mu(epsilon, delta) / math.sqrt(trials)
    root_d = math.sqrt(n_params)

    def sigma_at(k: int, e: int) -> float:  # T = e·k steps at q = 1/k
        return clt_sigma(mu, sample_rate=1.0 / k, steps=e * k)

    def fits(k: int) -> bool:
        sigma = sigma_at(k, epochs)
        return sigma * root_d * k / n <= noise_ratio and sigma >= MIN_SIGMA

    if fits(1):
        low, high = 1, n  # fits(low); find the largest k that fits (both conditions tighten as k grows)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(mid) else (low, mid - 1)
        batch = math.ceil(n / low)
        k, full_epochs = math.ceil(n / batch), epochs
    else:
        batch, k = n, 1
        full_epochs = max(1, min(epochs, math.floor((mu * n * noise_ratio / root_d) ** 2)))
    sigma = sigma_at(k, full_epochs)
    return {
        "expected_batch_size": int(batch),
        "epochs": int(full_epochs),
        "steps": int(full_epochs * k),
        "sigma_planned": sigma,
        "noise_ratio_planned": sigma * root_d * k / n,
    }
