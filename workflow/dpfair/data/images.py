"""Shared pieces of the loaders for image datasets users bring (CheXpert, HAM10000, Fitzpatrick 17k).

Each loader finds its own files and writes its own advice; these functions check the parameters every
image loader takes, read the CSV that lists the images, draw the seeded row subset, and read the images
into the float32 (N, C, H, W) array in [0, 1] that the dataset contract asks for. Errors are
``DatasetError``s that name the dataset, the parameter or file at fault, and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from dpfair.errors import DatasetError

MODES: dict[str, int] = {"L": 1, "RGB": 3}
MIN_IMAGE_SIZE = 8


def check_image_params(*, dataset: str, image_size, max_images) -> None:
    """Raise a ``DatasetError`` unless ``image_size`` is an int >= 8 and ``max_images`` a positive int or None.

    Example:
        >>> check_image_params(dataset="ham10000", image_size=64, max_images=None)
        >>> check_image_params(dataset="ham10000", image_size=64, max_images=0)
        Traceback (most recent call last):
        ...
        dpfair.errors.DatasetError: ham10000: params.max_images is 0; use a positive integer or leave it out
    """
    # bool is an int subclass, but True as a size or count is a config slip, not a number
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise DatasetError(
            f"{dataset}: params.image_size is {image_size!r}; use an integer of at least {MIN_IMAGE_SIZE} pixels"
        )
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise DatasetError(f"{dataset}: params.max_images is {max_images!r}; use a positive integer or leave it out")


def read_table(path: Path, *, dataset: str, columns: Iterable[str], fix: str) -> pd.DataFrame:
    r"""Read the CSV at ``path``; a ``DatasetError`` if it is absent (``fix`` says what to do) or lacks ``columns``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "labels.csv"
        ...     _ = path.write_text("image_id,dx\nISIC_1,mel\n")
        ...     print(read_table(path, dataset="demo", columns=["image_id", "dx"], fix="download it").shape)
        ...     try:
        ...         read_table(path, dataset="demo", columns=["image_id", "sex"], fix="download it")
        ...     except DatasetError as exc:
        ...         print(str(exc).replace(str(path), "labels.csv"))
        (1, 2)
        demo: labels.csv lacks column(s) ['sex']; found ['image_id', 'dx']
    """
    if not path.is_file():
        raise DatasetError(f"{dataset}: {path} not found; {fix}")
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        # a wrong file can be very wide; its first columns are enough to recognise it
        raise DatasetError(f"{dataset}: {path} lacks column(s) {missing}; found {list(table.columns)[:20]}")
    return table


def subsample_rows(n: int, *, max_images: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of ``max_images`` of ``n`` rows drawn without replacement by ``seed``; None keeps all rows.

    Loaders call this before reading any image, so a small ``max_images`` makes a large dataset cheap to load,
    and sorting keeps the rows in file order.

    Example:
        >>> subsample_rows(10, max_images=4, seed=0).tolist()
        [2, 4, 8, 9]
        >>> subsample_rows(10, max_images=10, seed=0) is None
        True
    """
    if max_images is None or max_images >= n:
        return None
    return np.sort(np.random.RandomState(seed).choice(n, size=max_images, replace=False))


def read_images(paths: Iterable[Path], *, size: int, mode: str, dataset: str, fix: str) -> np.ndarray:
    """Read image files as float32 (N, C, size, size) in [0, 1]; C is 1 for ``mode="L"`` (grey), 3 for ``"RGB"``.

    Each image is converted to ``mode`` with Pillow and resized to ``size`` x ``size`` (bilinear; the aspect
    ratio is not kept). A file that cannot be read raises ``DatasetError("<dataset>: cannot read image
    <path>: <reason>; <fix>")``; callers that can explain a missing file better check for it first.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "white.png"
        ...     Image.new("RGB", (12, 10), (255, 255, 255)).save(path)
        ...     images = read_images([path], size=8, mode="L", dataset="demo", fix="download it again")
        >>> images.shape, images.dtype, float(images.max())
        ((1, 1, 8, 8), dtype('float32'), 1.0)
    """
    # Pillow is not a declared dependency (it comes with matplotlib), so only reading images needs it
    from PIL import Image

    if mode not in MODES:
        raise ValueError(f"read_images: mode is {mode!r}; use one of {list(MODES)}")
    paths = list(paths)
    out = np.empty((len(paths), MODES[mode], size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
        except OSError as exc:
            raise DatasetError(f"{dataset}: cannot read image {path}: {exc}; {fix}") from exc
        array = np.asarray(pixels, dtype=np.float32)
        # Pillow gives grey images as (H, W) and colour ones as (H, W, C); the contract wants channels first
        out[i] = array[np.newaxis] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    out /= np.float32(255.0)
    return out
