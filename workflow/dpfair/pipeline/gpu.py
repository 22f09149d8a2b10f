"""How many train jobs can share one GPU: a per-job memory claim for Snakemake's ``gpu_mem_mb`` resource.

``profiles/gpu`` caps the sum of the running train jobs' claims at the card's memory, so small models run
several at a time on one card and large ones one by one. The claims are deliberately generous estimates,
not measurements: no GPU was available while writing this, so they are scaled from CPU peak memory of the
speed benchmark (README, "Speed of DP-SGD"; DenseNet-121 GroupNorm, 64×64, batch 128: 2.2 GB non-private,
6.2 GB with Opacus hooks) plus the CUDA context. Where a job needs more, raise its claim with
``--set-resources train:gpu_mem_mb=N``; ``make bench`` on the card measures ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import math

#: CUDA context and allocator slack of one process (MB).
CONTEXT_MB = 1000
#: Peak MB per sample of a 64×64 single-channel image (per feature row for the MLP), with margin for hooks.
PER_SAMPLE_MB = {"mlp": 0.05, "cnn": 4.0, "resnet18": 30.0, "densenet121": 60.0}
REFERENCE_PIXELS = 64 * 64


def train_gpu_memory_mb(*, model: str, batch_size: int, image_size: int | None = None) -> int:
    """A generous estimate of one train job's peak GPU memory in MB (context + activations and per-sample state).

    Example:
        >>> train_gpu_memory_mb(model="mlp", batch_size=256)
        1013
        >>> train_gpu_memory_mb(model="densenet121", batch_size=64, image_size=64)
        4840
    """
    per_sample = PER_SAMPLE_MB.get(model, max(PER_SAMPLE_MB.values()))  # an unknown model: the largest claim
    scale = (image_size or 64) ** 2 / REFERENCE_PIXELS if model != "mlp" else 1.0
    return math.ceil(CONTEXT_MB + per_sample * batch_size * scale)
