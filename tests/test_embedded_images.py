"""The checksummed PneumoniaMNIST module: a missing file or a changed copy is refused with the file named."""

import numpy as np
import pytest
from dpfair.data import get_dataset
from dpfair.errors import DatasetError


def test_a_copy_with_another_checksum_is_refused_and_a_missing_file_named(tmp_path):
    spec = get_dataset("pneumoniamnist")
    params = spec.make_example(tmp_path)
    raw = spec.load(**params)  # the tiny copy, unchecked, goes through the medmnist loader
    assert raw.inputs.shape[1:] == (1, 28, 28) and set(np.unique(raw.split)) == {"train", "val", "test"}
    copy = tmp_path / "pneumoniamnist.npz"
    with pytest.raises(DatasetError, match=rf"pneumoniamnist: {copy} has sha256 [0-9a-f]{{64}}, not a554d233"):
        spec.load(root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"pneumoniamnist: .*nowhere/pneumoniamnist.npz is missing; put"):
        spec.load(root=str(tmp_path / "nowhere"))


def test_the_checksum_is_the_files_own(tmp_path):
    """The check hashes the bytes: one flipped byte changes the digest the loader reports."""
    from dpfair_dataset_modules.pneumoniamnist import sha256

    spec = get_dataset("pneumoniamnist")
    spec.make_example(tmp_path)
    file = tmp_path / "pneumoniamnist.npz"
    before = sha256(file)
    data = bytearray(file.read_bytes())
    data[-100] ^= 1
    file.write_bytes(bytes(data))
    assert sha256(file) != before
    with pytest.raises(DatasetError, match=rf"has sha256 {sha256(file)}, not {before}"):
        spec.load(root=str(tmp_path), sha256_expected=before)
