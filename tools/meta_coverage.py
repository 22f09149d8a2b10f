"""Print the coverage of the pooled interval of dpfair.findings.meta by seeded simulation, per design.

    PYTHONPATH=workflow python tools/meta_coverage.py [--reps 2000] [--seed 5]

Each design draws k = 7 per-dataset estimates y_i = mu + u_i + e_i, u_i ~ N(0, tau²), e_i ~ N(0, se_i²) with the
se_i spread evenly over a range, and counts how often each interval (Wald, HKSJ, HKSJ floored at Wald) holds mu.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from dpfair.findings.meta import random_effects

DESIGNS = [  # (smallest se, largest se, tau)
    (0.02, 0.04, 0.02),
    (0.01, 0.05, 0.02),
    (0.01, 0.05, 0.0),
    (0.003, 0.03, 0.006),
    (0.003, 0.03, 0.01),
    (0.004, 0.04, 0.01),
]
INTERVALS = ("z", "hksj", "hksj_floored")


def coverage(se: np.ndarray, tau: float, *, reps: int, seed: int, mu: float = -0.03) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ys = mu + rng.normal(0, tau, (reps, se.size)) + rng.normal(0, 1, (reps, se.size)) * se
    out = {}
    for interval in INTERVALS:
        fits = [random_effects(y, se, interval=interval) for y in ys]
        out[interval] = float(np.mean([f.ci_low <= mu <= f.ci_high for f in fits]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--k", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"k = {args.k}, {args.reps} draws per design, seed {args.seed}, 95% intervals, REML tau²")
    print(f"{'se range':>14} {'tau':>6} " + " ".join(f"{i:>13}" for i in INTERVALS))
    for low, high, tau in DESIGNS:
        se = np.linspace(low, high, args.k)
        c = coverage(se, tau, reps=args.reps, seed=args.seed)
        print(f"{low:>6.3f}-{high:<7.3f} {tau:>6.3f} " + " ".join(f"{c[i]:>13.3f}" for i in INTERVALS))


if __name__ == "__main__":
    main()
