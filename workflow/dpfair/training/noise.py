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

#: Training settings that change how a release is computed, not what it is: every clipping backend gives
#: the same clipped sum, so two backends of one run release the same model and share its noise.
COMPUTATION_ONLY: tuple[str, ...] = ("clipping_backend",)


def noise_seed(*, seed: int, method: str, epsilon: float, key: str = "") -> int:
    """A 63-bit seed for the noise of one run, unrelated to its batch seed.

    ``key`` names everything else that makes the run a different release: the dataset entry, the model,
    the training settings and, for a tuning trial, the tuned arm and the trial (the loop builds it, see
    :func:`run_key`). Two runs that differ in any of these, or in ``seed``, ``method`` or ``epsilon``,
    draw unrelated noise.

    Example:
        >>> a = noise_seed(seed=0, method="dpsgd", epsilon=1.0)
        >>> a == noise_seed(seed=0, method="dpsgd", epsilon=1.0), a != noise_seed(seed=0, method="dpsgd", epsilon=3.0)
        (True, True)
        >>> a != noise_seed(seed=0, method="dpsgd", epsilon=1.0, key="support2|mlp")
        True
    """
    eps = "inf" if not math.isfinite(float(epsilon)) else repr(float(epsilon))
    text = f"dpfair-noise|{int(seed)}|{method}|{eps}|{key}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def run_key(*, model_name: str, config, context: str = "") -> str:
    """The part of a run's noise key beyond (seed, method, ε).

    It holds ``context`` (the dataset entry, a tuning trial), the model and every training setting, so that
    two releases that differ anywhere differ in noise.
    """
    skipped = set(COMPUTATION_ONLY) | _unreleased_monitoring(config)
    settings = ",".join(f"{k}={v!r}" for k, v in sorted(vars(config).items()) if k not in skipped)
    return f"{context}|{model_name}|{settings}"


def _unreleased_monitoring(config) -> set[str]:
    """``monitor_every`` when it does not change the release: the validation monitor only reads the weights.

    Without ``select_best`` the released model is the last epoch's whatever epochs were scored, so a run
    that monitors less is the same release and keeps its noise (and its key from before the setting
    existed). With ``select_best`` the scored epochs are the candidates, so it names a different release.

    Example:
        >>> from types import SimpleNamespace as C
        >>> _unreleased_monitoring(C(monitor_every=5, select_best=False)), _unreleased_monitoring(C(monitor_every=5, select_best=True))
        ({'monitor_every'}, set())
    """
    every = getattr(config, "monitor_every", 1)
    return {"monitor_every"} if every == 1 or not getattr(config, "select_best", False) else set()


def noise_generator(
    *, seed: int, method: str, epsilon: float, key: str = "", device: str | torch.device = "cpu"
) -> torch.Generator:
    """The run's seeded noise generator, on ``device``, where Opacus draws the noise (beside the gradients).

    A secure-mode run uses :func:`secure_generator` instead.
    """
    return torch.Generator(device=device).manual_seed(noise_seed(seed=seed, method=method, epsilon=epsilon, key=key))


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


def _draw_seed(noise: torch.Generator | None) -> int:
    """A 62-bit seed drawn from ``noise`` (on its device), or from torch's global generator for None."""
    device = noise.device if noise is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=noise, device=device).item())


def derived_generator(noise: torch.Generator | None, *, secure_mode: bool = False) -> torch.Generator | None:
    """A second noise stream of the run (a mitigation's noisy counts, drawn on the CPU), seeded from its noise stream.

    In secure mode the secure RNG itself is returned: a seeded generator would not be secure. ``noise``
    None (a direct caller without a run's stream) draws the seed from torch's global generator.
    """
    if secure_mode:
        return noise
    return torch.Generator().manual_seed(_draw_seed(noise))


def numpy_rng(noise: torch.Generator | None):
    """A NumPy generator seeded by a draw from the run's noise stream (label randomisation draws from it).

    In secure mode the seed is one draw of the secure RNG (the flips then come from PCG64 seeded by it).
    ``noise`` None (a direct caller without a run's stream) draws the seed from torch's global generator.
    """
    import numpy as np

    return np.random.default_rng(_draw_seed(noise))
