"""dpfair: the privacy-utility-fairness benchmark for DP deep learning on medical data.

The library is plain Python and importable without Snakemake; the workflow's rule scripts are thin
adapters around it.
"""

__version__ = "0.1.0"
