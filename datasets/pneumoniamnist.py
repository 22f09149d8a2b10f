"""PneumoniaMNIST, checksummed: real 28 px chest X-rays (pneumonia vs normal) that the user brings.

The file is ``<root>/pneumoniamnist.npz`` (default ``data/medmnist/``, git-ignored: data stay out of the
repository) in the MedMNIST v2 npz layout: the official val (524) and test (624) splits and the 3,882-image
subset of the official train split (388 normal, 3,494 pneumonia) the findings benchmark was measured on. It is
read with the ``medmnist`` module's loader, so the layout checks, label coding and image scaling are the ones
every MedMNIST flag gets; this module adds the checksum, so a changed, truncated or other copy is refused
instead of silently benchmarked against figures measured on this one (``sha256=None`` skips it, for another
copy of PneumoniaMNIST; ``medmnist`` with ``flag: pneumoniamnist`` reads the official release). Label 1 is
pneumonia (the source's class 1).

MedMNIST carries no demographics: runs on it measure utility under DP only (no subgroup metrics).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dpfair.data import DatasetCard, RawDataset, get_dataset, register_dataset
from dpfair.errors import DatasetError

FILE_NAME = "pneumoniamnist.npz"
DEFAULT_ROOT = "data/medmnist"
SHA256 = "a554d2332488d3ddc075125e66a1af77ec379fd2bafc09108ab95a37e2bd9c26"

CARD = DatasetCard(
    name="pneumoniamnist",
    modality="image",
    task="pneumonia vs normal from a paediatric chest X-ray (28 x 28 px, grey)",
    outcome="1 = pneumonia (bacterial or viral; MedMNIST class 1), 0 = normal",
    sensitive_attributes=(),
    license="CC BY 4.0 (MedMNIST v2; source images Kermany et al. 2018, CC BY 4.0)",
    citation=(
        "Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D "
        "biomedical image classification. Scientific Data 2023;10:41. Source images: Kermany DS, Goldbaum M, "
        "Cai W, et al. Cell 2018;172(5):1122-1131."
    ),
    homepage="https://medmnist.com/",
    source=(
        f"user-supplied: <root>/{FILE_NAME} (default {DEFAULT_ROOT}/), sha256 {SHA256}: MedMNIST v2 npz layout "
        "(https://zenodo.org/records/10519652), official val (524) and test (624) splits, a 3,882-image subset "
        "of the official train split (388 normal, 3,494 pneumonia)"
    ),
    notes=(
        "official MedMNIST val/test splits; train is a subset of the official one (more imbalanced than the "
        "split MedMNIST's baselines used); no demographics, so no subgroup metrics; no patient ids"
    ),
    row_unit="image",
    patient_ids=False,
)


def sha256(path: Path) -> str:
    """The file's sha256 in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register_dataset(CARD)
def load(*, root: str = DEFAULT_ROOT, sha256_expected: str | None = SHA256) -> RawDataset:
    """Read ``<root>/pneumoniamnist.npz`` after checking its sha256 (``sha256_expected=None``: no check)."""
    file = Path(root) / FILE_NAME
    if not file.is_file():
        raise DatasetError(
            f"pneumoniamnist: {file} is missing; put the PneumoniaMNIST file (sha256 {SHA256}) there, or set "
            "params.root to its folder"
        )
    if sha256_expected is not None:
        found = sha256(file)
        if found != sha256_expected:
            raise DatasetError(
                f"pneumoniamnist: {file} has sha256 {found}, not {sha256_expected}; use the file the benchmark "
                "was measured on, or params.sha256_expected: null for another copy"
            )
    medmnist = get_dataset("medmnist", Path(__file__).parent)
    return medmnist.load(root=file.parent, flag="pneumoniamnist", size=28)


def make_example(root: Path) -> dict:
    """A tiny PneumoniaMNIST-layout file (the ``medmnist`` module's) and loader params that read it unchecked."""
    params = get_dataset("medmnist", Path(__file__).parent).make_example(root, flag="pneumoniamnist")
    return {"root": params["root"], "sha256_expected": None}
