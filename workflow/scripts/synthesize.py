"""Run one DP synthesizer (smartnoise-synth's AIM or MST) on coded training rows; runs in ``.venv-synth``.

smartnoise-synth 1.0.8 pins ``opacus<0.15`` and ``mbi<2``, which cannot share the main environment (Opacus
1.6), so this script runs in an environment of its own (``make install`` builds ``.venv-synth``) and
imports nothing of dpfair: it reads the codes and domain sizes the main environment wrote
(``dpfair.synthesis.release.write_table``), and writes synthetic codes and the noise it drew. The main
environment decodes the rows and builds and replays the ledger (``dpfair.synthesis.budget``).

What is ours and why:
- the budget: the synthesizer is handed the ρ dp-accounting certifies (the plan's, for ``--epsilon``), in place of
  smartnoise-synth's OpenDP conversion of (ε, δ) (``cdp_rho``), so the accountant that checks the ledger is
  the one that set it;
- the noise record: the library's Gaussian-noise and exponential-mechanism calls are wrapped to record each
  draw's σ or ε₀ (the ledger is built from what was drawn, not from what was planned);
- the noise source: Gaussian noise comes from a NumPy generator seeded by ``--seed-key`` (a reproducible run,
  as DP-SGD's noise is by default), and selections and sampling from NumPy's global generator seeded by it;
  the library's OpenDP sampler would not be reproducible.

The domain is never inferred: the codes arrive with their sizes, so no category or bound is read here.

Usage: synthesize.py --table T.npz --plan P.json --epsilon E --method aim|mst [--rounds-per-column R] --seed-key K
                     --out-codes C.npz --out-log L.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np
import pandas as pd


def _seed(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")


def synthesize(codes, sizes, *, method, rho, seed_key, rounds=None, rows=None):
    """Synthetic codes (rows × columns) and the noise log of one run of ``method`` at ``rho``-zCDP."""
    from mbi import Dataset, Domain
    from snsynth.aim import aim as aim_module
    from snsynth.mst import mst as mst_module

    log: list[dict] = []
    rng = np.random.default_rng(_seed("noise:" + seed_key))
    np.random.seed(_seed("select:" + seed_key))

    def gaussian_noise(sigma, size=None):
        log.append({"kind": "gaussian", "sigma": float(sigma), "size": 1 if size is None else int(size)})
        return rng.normal(0.0, sigma) if size is None else rng.normal(0.0, sigma, size).tolist()

    names = [f"c{i}" for i in range(len(sizes))]
    data = Dataset(pd.DataFrame(np.asarray(codes, dtype=np.int64), columns=names), domain=Domain(names, sizes))
    n = len(codes) if rows is None else rows
    if method == "aim":
        aim_module.gaussian_noise = gaussian_noise
        library_em = aim_module.exponential_mechanism

        def exponential_mechanism(qualities, epsilon, sensitivity=1.0, base_measure=None):
            log.append({"kind": "exponential", "epsilon": float(epsilon), "sensitivity": float(sensitivity)})
            return library_em(qualities, epsilon, sensitivity, base_measure)

        aim_module.exponential_mechanism = exponential_mechanism
        synth = aim_module.AIMSynthesizer(epsilon=1.0, delta=1e-9, rounds=rounds)
        synth.rho = rho  # what fit() would set from (ε, δ) with OpenDP
        workload = synth.get_workload(data, degree=2, max_cells=synth.max_cells)
        synth.AIM(data, workload)
        out = synth.synthesizer.synthetic_data(rows=n).df[names]
    elif method == "mst":
        mst_module.gaussian_noise = gaussian_noise
        mst_module.cdp_rho = lambda epsilon, delta: rho
        synth = mst_module.MSTSynthesizer(epsilon=1.0, delta=1e-9)
        library_em = synth.exponential_mechanism

        def exponential_mechanism(q, eps, sensitivity, **kw):
            log.append({"kind": "exponential", "epsilon": float(eps), "sensitivity": float(sensitivity)})
            return library_em(q, eps, sensitivity, **kw)

        synth.exponential_mechanism = exponential_mechanism
        synth.MST(data, 1.0, 1e-9)
        out = synth.undo_compress_fn(synth.synthesizer.synthetic_data(rows=n)).df[names]
    else:
        raise SystemExit(f"error: unknown synthesizer {method!r}; use aim or mst")
    return out.to_numpy(dtype=np.int64), log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--method", required=True, choices=["aim", "mst"])
    parser.add_argument("--plan", required=True, help="the plan.json of dpfair.synthesis.release.write_plan")
    parser.add_argument("--epsilon", required=True, type=float)
    parser.add_argument("--seed-key", required=True)
    parser.add_argument("--rounds-per-column", type=int, default=2, help="AIM's rounds per column (at least 1)")
    parser.add_argument("--out-codes", required=True)
    parser.add_argument("--out-log", required=True)
    args = parser.parse_args(argv)
    table = np.load(args.table)
    with open(args.plan) as f:
        rho = json.load(f)["rho"][str(float(args.epsilon))]
    # AIM measures every one-way marginal at the per-round noise first, 0.9 × columns / rounds of its budget:
    # under a round per column it would overspend (its book-keeping goes negative), so it is refused
    if args.rounds_per_column < 1:
        raise SystemExit(
            f"error: --rounds-per-column {args.rounds_per_column}: AIM needs at least one round per column"
        )
    rounds = args.rounds_per_column * len(table["sizes"])
    start = time.perf_counter()
    out, log = synthesize(
        table["codes"],
        [int(s) for s in table["sizes"]],
        method=args.method,
        rho=rho,
        seed_key=args.seed_key,
        rounds=rounds if args.method == "aim" else None,
    )
    np.savez_compressed(args.out_codes, codes=out)
    with open(args.out_log, "w") as f:
        json.dump(
            {
                "synthesizer": args.method,
                "library": _library_version(),
                "rho": rho,
                "epsilon": args.epsilon,
                "rounds": rounds if args.method == "aim" else None,
                "rows": int(len(out)),
                "seconds": time.perf_counter() - start,
                "noise": log,
            },
            f,
        )
    return 0


def _library_version() -> str:
    from importlib.metadata import version

    return f"smartnoise-synth {version('smartnoise-synth')}, mbi {version('mbi')}"


if __name__ == "__main__":
    sys.exit(main())
