"""Private hyperparameter tuning: a random search whose cost is counted (Papernot & Steinke, ICLR 2022).

- :mod:`dpfair.training.tuning.search_space`: the candidate values per hyperparameter (defaults per modality) and
  the public draw of one trial's recipe.
- :mod:`dpfair.training.tuning.accounting`: the repeat-and-select ledger and the per-trial noise that keeps the whole
  procedure within the target ε.
- :mod:`dpfair.training.tuning.procedure`: one job runs all trials of a (cell, method, ε, seed) and returns the
  selected trial as the run, with the procedure recorded.
"""
