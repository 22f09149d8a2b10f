"""Many models per step: one vmapped DP-SGD step for M models against M steps one after another.

    python tools/bench_batched.py [--members 3 10] [--steps 20] [--threads 1] [--device cpu]

Each of M members of a cell (its seeds) keeps its own Poisson batch (a binomial number of rows, so the
batched path pads to the largest and masks the padding), its own per-sample clipping and its own noise. Three
ways of taking one step for every member are timed, interleaved round by round:

- ``bookkeeping``: the grid's path, one :func:`dpfair.training.steps.make_private` trainer per member,
  stepped one after another;
- ``functorch``: per-sample gradients by ``torch.func.vmap(grad(·))`` per member, one after another;
- ``vmap``: the same per-sample gradients for all members at once, over parameters stacked with
  ``torch.func.stack_module_state`` (one more ``vmap`` over the members), clipped and noised per member.

The models are the default grid's (``cnn`` on 1×32×32 images, batch 128; ``mlp`` on SUPPORT2's 53 features,
batch 256) at the grid's sampling rate. Before timing, the vmapped clipped sums are checked against the
per-member ones (the largest absolute difference is printed: batching changes the summation order only).
Prints the median seconds per member-step of each way; a measurement, nothing is asserted. Device-agnostic:
``--device cuda`` times the same code on a GPU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.func import functional_call, grad, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
from dpfair.models import build_model  # noqa: E402

CELLS = {"cnn": ((1, 32, 32), "image", 128, 2100), "mlp": ((53,), "tabular", 256, 6373)}
CLIP, SIGMA = 1.0, 1.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {device}; seconds per member-step, median")
    for model_name, (shape, modality, batch, n_train) in CELLS.items():
        for members in args.members:
            row = measure(model_name, shape, modality, batch, n_train, members, args.steps, device)
            print(
                f"{model_name:4s} M={members:2d}: bookkeeping {row['bookkeeping']:.4f}  functorch {row['functorch']:.4f}"
                f"  vmap {row['vmap']:.4f}  (vmap / bookkeeping {row['vmap'] / row['bookkeeping']:.2f};"
                f" max |vmap - functorch| of the clipped sums {row['max_diff']:.1e})",
                flush=True,
            )
    return 0


def measure(model_name, shape, modality, batch, n_train, members, steps, device) -> dict:
    torch.manual_seed(0)
    models = [build_model(model_name, input_shape=shape, modality=modality).to(device) for _ in range(members)]
    q = batch / n_train
    # the batches of one round: each member's own Poisson batch, of its own size
    rounds = []
    for _ in range(steps + 2):
        sizes = torch.distributions.Binomial(n_train, torch.full((members,), q)).sample().long().clamp(min=1)
        rounds.append(
            [
                (torch.randn(int(b), *shape, device=device), torch.randint(0, 2, (int(b),), device=device).float())
                for b in sizes
            ]
        )
    generators = [torch.Generator(device=device).manual_seed(1000 + m) for m in range(members)]
    ways = {
        "bookkeeping": bookkeeping_way(models, n_train, batch, device),
        "functorch": functorch_way(models, generators),
        "vmap": vmap_way(models, generators),
    }
    max_diff = check(models, rounds[0])
    times = {name: [] for name in ways}
    for i, batches in enumerate(rounds):
        order = list(ways)[i % 3 :] + list(ways)[: i % 3]
        for name in order:
            start = time.perf_counter()
            ways[name](batches)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # two warm-up rounds
                times[name].append((time.perf_counter() - start) / members)
    return {**{k: statistics.median(v) for k, v in times.items()}, "max_diff": max_diff}


def bookkeeping_way(models, n_train, batch, device):
    from dpfair.training.steps import make_private
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    trainers = []
    for model in models:
        model = copy.deepcopy(model)
        data = DataLoader(TensorDataset(torch.zeros(n_train, 1), torch.zeros(n_train)), batch_size=batch)
        trainers.append(
            make_private(engine=PrivacyEngine(), model=model, data_loader=data, mode="bookkeeping",
                         optimizer=torch.optim.Adam(model.parameters(), 1e-3), noise_multiplier=SIGMA,
                         max_grad_norm=CLIP)
        )  # fmt: skip

    def step(batches):
        for trainer, (x, y) in zip(trainers, batches):
            trainer.step(x, y)

    return step


def _loss(model):
    def loss(params, buffers, x, y):
        out = functional_call(model, (params, buffers), (x.unsqueeze(0),)).reshape(())
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y)

    return loss


def clipped_sum(per_sample: dict, mask: torch.Tensor) -> dict:
    """Σ_i min(1, C/‖g_i‖) g_i over the unmasked rows; leading dims (members, rows) or (rows,)."""
    lead = mask.dim()
    norms = torch.sqrt(sum(g.flatten(lead).pow(2).sum(-1) for g in per_sample.values()))
    factor = (CLIP / (norms + 1e-6)).clamp(max=1.0) * mask
    return {
        k: torch.einsum("...b,...bp->...p", factor, g.flatten(lead)).reshape(g.shape[: lead - 1] + g.shape[lead:])
        for k, g in per_sample.items()
    }


def functorch_way(models, generators):
    states = [({k: v.detach() for k, v in m.named_parameters()}, {k: v for k, v in m.named_buffers()}) for m in models]
    losses = [vmap(grad(_loss(m)), in_dims=(None, None, 0, 0)) for m in models]

    def step(batches):
        for (params, buffers), per_row, gen, (x, y) in zip(states, losses, generators, batches):
            summed = clipped_sum(per_row(params, buffers, x, y), torch.ones(len(y), device=x.device))
            for k, p in params.items():
                p.sub_(
                    1e-3 * (summed[k] + SIGMA * CLIP * torch.randn(p.shape, generator=gen, device=p.device)) / len(y)
                )

    return step


def vmap_way(models, generators):
    params, buffers = stack_module_state(copy.deepcopy(models))
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    per_member = vmap(vmap(grad(_loss(base)), in_dims=(None, None, 0, 0)), in_dims=(0, 0, 0, 0))

    def step(batches):
        x, y, mask = pad(batches)
        summed = clipped_sum(per_member(params, buffers, x, y), mask)
        sizes = mask.sum(1)
        for k, p in params.items():
            # each member's noise from its own stream, as the sequential ways draw it
            noise = torch.stack([torch.randn(p.shape[1:], generator=g, device=p.device) for g in generators])
            p.sub_(1e-3 * (summed[k] + SIGMA * CLIP * noise) / sizes.view(-1, *[1] * (p.dim() - 1)))

    step.per_member = per_member
    step.state = (params, buffers)
    return step


def pad(batches):
    """Stack the members' batches, padded to the largest with zero rows, and a mask of the real rows."""
    largest = max(len(y) for _, y in batches)
    x = torch.zeros(len(batches), largest, *batches[0][0].shape[1:], device=batches[0][0].device)
    y = torch.zeros(len(batches), largest, device=x.device)
    mask = torch.zeros(len(batches), largest, device=x.device)
    for m, (xb, yb) in enumerate(batches):
        x[m, : len(yb)], y[m, : len(yb)], mask[m, : len(yb)] = xb, yb, 1.0
    return x, y, mask


def check(models, batches) -> float:
    """Largest |vmapped clipped sum − per-member clipped sum| over every member and parameter."""
    batched = vmap_way(models, [])
    params, buffers = batched.state
    x, y, mask = pad(batches)
    together = clipped_sum(batched.per_member(params, buffers, x, y), mask)
    worst = 0.0
    for m, (model, (xb, yb)) in enumerate(zip(models, batches)):
        own = vmap(grad(_loss(model)), in_dims=(None, None, 0, 0))
        alone = clipped_sum(
            own(dict(model.named_parameters()), dict(model.named_buffers()), xb, yb), torch.ones(len(yb))
        )
        worst = max(worst, *(float((together[k][m] - alone[k].detach()).abs().max()) for k in alone))
    return worst


if __name__ == "__main__":
    sys.exit(main())
