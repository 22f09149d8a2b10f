"""DP synthetic data: a public domain, a dp-accounting budget, and the release a synthesis method trains on.

The synthesizers themselves (smartnoise-synth's AIM and MST) run in an environment of their own
(``workflow/scripts/synthesize.py``); this package is the main environment's side: :mod:`.domain` (codes
from public facts), :mod:`.budget` (ρ and the ledger), :mod:`.release` (the files between the two) and
:mod:`.fidelity` (how well the synthetic rows keep the real ones' marginals, group by group).
"""
