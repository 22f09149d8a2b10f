"""dpfair: the privacy-utility-fairness benchmark for DP deep learning on medical data.

The library is plain Python and importable without Snakemake; the workflow's rule scripts are thin
adapters around it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dpfair")
except PackageNotFoundError:  # imported from a checkout without installing
    __version__ = "unknown"
