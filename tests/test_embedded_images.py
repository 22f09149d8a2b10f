"""The embedded PneumoniaMNIST copy: the file is the one its card names, a changed copy is refused."""

import shutil

import numpy as np
import pytest
from dpfair.data import get_dataset
from dpfair.errors import DatasetError


def test_the_embedded_file_matches_its_card_and_keeps_the_official_splits():
    spec = get_dataset("pneumoniamnist")
    module_sha = spec.card.source.split("sha256 ")[1].split(")")[0]
    raw = spec.load()
    splits, counts = np.unique(raw.split, return_counts=True)
    # MedMNIST v2's official val and test splits hold 524 and 624 PneumoniaMNIST images (Yang et al. 2023, Table 1)
    assert dict(zip(splits, counts)) == {"train": 3882, "val": 524, "test": 624}
    assert raw.inputs.shape[1:] == (1, 28, 28) and 0 <= raw.inputs.min() and raw.inputs.max() <= 1
    from dpfair_dataset_modules.pneumoniamnist import FILE, sha256

    assert sha256(FILE) == module_sha


def test_a_changed_copy_is_refused_with_the_file_named(tmp_path):
    spec = get_dataset("pneumoniamnist")
    from dpfair_dataset_modules.pneumoniamnist import FILE

    copy = tmp_path / "pneumoniamnist.npz"
    shutil.copy(FILE, copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"pneumoniamnist: {copy} has sha256 [0-9a-f]{{64}}, not the embedded"):
        spec.load(path=str(copy))
    with pytest.raises(DatasetError, match="must name a file called pneumoniamnist.npz"):
        spec.load(path=str(tmp_path / "other.npz"))
