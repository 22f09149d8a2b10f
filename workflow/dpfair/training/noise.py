"""Where a run's privacy noise comes from: a stream of its own per (seed, method, ε), or Opacus's secure RNG.

Why a stream per run: the runs of one seed share their Poisson batches (the batch generator is seeded by
the seed alone), so that ε arms and methods pair row by row in the tables. If they also shared the noise,
two released models of one seed (say ε = 1 and ε = 3) would add the same standard-normal draw z at
different scales σ·C to the same clipped sum g, and the pair of updates would solve for g exactly: the
noise cancels and neither ε holds for what ``results/runs`` ships together. Each run's noise therefore
comes from a generator seeded by a hash of (seed, method, ε), apart from the batch generator: runs stay
deterministic for a seed, pairing by batches stays, and no two runs repeat a draw.

``privacy.secure_mode: true`` replaces the seeded stream by Opacus's cryptographically secure RNG
(``torchcsprng``, read from ``/dev/urandom``), which also draws the Poisson batches and sums 2n Gaussians
per coordinate against floating-point attacks (Mironov 2012; Opacus's ``_generate_noise``). Runs are then
not reproducible, which is the point.
"""

from __future__ import annotations

import hashlib
import math

import torch

from dpfair.errors import ConfigError


def noise_seed(*, seed: int, method: str, epsilon: float) -> int:
    """A 63-bit seed for the noise of the run (``seed``, ``method``, ``epsilon``), unrelated to the batch seed.

    Example:
        >>> a = noise_seed(seed=0, method="dpsgd", epsilon=1.0)
        >>> a == noise_seed(seed=0, method="dpsgd", epsilon=1.0), a != noise_seed(seed=0, method="dpsgd", epsilon=3.0)
        (True, True)
    """
    eps = "inf" if not math.isfinite(float(epsilon)) else repr(float(epsilon))
    digest = hashlib.blake2b(f"dpfair-noise|{int(seed)}|{method}|{eps}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def noise_generator(*, seed: int, method: str, epsilon: float, secure_mode: bool = False) -> torch.Generator | None:
    """The run's noise generator; None in secure mode (the Opacus engine's secure RNG draws the noise then)."""
    if secure_mode:
        return None
    return torch.Generator().manual_seed(noise_seed(seed=seed, method=method, epsilon=epsilon))


def make_engine(config):
    """An Opacus ``PrivacyEngine`` with the run's accountant and ``privacy.secure_mode``.

    Raises:
        ConfigError: secure mode without ``torchcsprng`` (Opacus's secure RNG) installed.
    """
    from opacus import PrivacyEngine

    try:
        return PrivacyEngine(accountant=config.accountant, secure_mode=bool(config.secure_mode))
    except ImportError as exc:
        raise ConfigError(
            "privacy.secure_mode: true needs Opacus's secure RNG, the torchcsprng package, which is not installed "
            "(no wheel exists for every torch release; build it from https://github.com/pytorch/csprng), "
            "or set privacy.secure_mode: false"
        ) from exc


def secure_generator(config) -> torch.Generator:
    """Opacus's secure RNG (``torchcsprng`` on ``/dev/urandom``), for every random draw of a secure-mode run."""
    return make_engine(config).secure_rng


def derived_generator(noise: torch.Generator | None, *, secure_mode: bool = False) -> torch.Generator | None:
    """A second noise stream of the run (a mitigation's noisy counts), its seed drawn from the run's noise stream.

    In secure mode the secure RNG itself is returned: a seeded generator would not be secure. ``noise``
    None (a direct caller without a run's stream) draws the seed from torch's global generator.
    """
    if secure_mode:
        return noise
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=noise)))


def numpy_rng(noise: torch.Generator | None):
    """A NumPy generator seeded by a draw from the run's noise stream (label randomisation draws from it).

    ``noise`` None (a direct caller without a run's stream) draws the seed from torch's global generator.
    """
    import numpy as np

    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=noise)))
