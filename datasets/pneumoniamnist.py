"""PneumoniaMNIST, embedded: real 28 px chest X-rays (pneumonia vs normal) that ship with the repository.

The file is ``datasets/embedded/pneumoniamnist.npz`` (see ``datasets/embedded/README.md`` for its
provenance): MedMNIST v2's official val and test splits and a 3,882-image subset of its train split. It is
read with the ``medmnist`` module's loader, so the layout checks, label coding and image scaling are the
ones every MedMNIST flag gets; this module adds the checksum, so a changed or truncated copy is refused
instead of silently benchmarked. Label 1 is pneumonia (the source's class 1).

MedMNIST carries no demographics: runs on it measure utility under DP only (no subgroup metrics).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dpfair.data import DatasetCard, RawDataset, get_dataset, register_dataset
from dpfair.errors import DatasetError

FILE = Path(__file__).parent / "embedded" / "pneumoniamnist.npz"
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
        f"embedded: datasets/embedded/pneumoniamnist.npz (sha256 {SHA256}), MedMNIST v2 npz layout from "
        "https://zenodo.org/records/10519652: official val (524) and test (624) splits, a 3,882-image subset "
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
def load(*, path: str | None = None) -> RawDataset:
    """Read the embedded file (or a copy at ``path``) after checking its sha256; official splits kept."""
    file = Path(path) if path else FILE
    if file.name != "pneumoniamnist.npz":  # the medmnist loader reads <root>/<flag>.npz
        raise DatasetError(f"pneumoniamnist: params.path must name a file called pneumoniamnist.npz, got {file}")
    if not file.is_file():
        raise DatasetError(
            f"pneumoniamnist: {file} is missing; it ships with the repository (git checkout -- {FILE.name})"
        )
    found = sha256(file)
    if found != SHA256:
        raise DatasetError(
            f"pneumoniamnist: {file} has sha256 {found}, not the embedded file's {SHA256}; restore it from the "
            "repository, or use the `medmnist` module for another copy of PneumoniaMNIST"
        )
    medmnist = get_dataset("medmnist", Path(__file__).parent)
    return medmnist.load(root=file.parent, flag="pneumoniamnist", size=28)
