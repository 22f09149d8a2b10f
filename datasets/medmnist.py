"""MedMNIST v2, 2D datasets: small standardised biomedical images with the source's official splits.

One module serves every 2D flag (``pathmnist``, ``chestmnist``, ``dermamnist``, ``octmnist``,
``pneumoniamnist``, ``retinamnist``, ``breastmnist``, ``bloodmnist``, ``tissuemnist``, ``organamnist``,
``organcmnist``, ``organsmnist``) at 28, 64, 128 or 224 pixels; a benchmark picks one with ``flag``.

Label 1 depends on the flag:

- binary flags (``pneumoniamnist``, ``breastmnist``): the source's class 1 unless ``positive_labels``
  says otherwise. PneumoniaMNIST's class 1 is *pneumonia*; BreastMNIST's class 1 is *normal or benign*
  (class 0 is malignant), so pass ``positive_labels=[0]`` to make malignancy the positive class.
- multi-class and ordinal flags: 1 if the image's class is one of ``positive_labels`` (required), e.g.
  ``dermamnist`` with ``[4]`` is melanoma vs the rest, ``retinamnist`` with ``[2, 3, 4]`` is
  diabetic retinopathy grade 2 or worse.
- ``chestmnist`` (14 findings per image, multi-label): 1 if any of the ``positive_labels`` findings is
  present, e.g. ``[2]`` for effusion.

The data are the ``.npz`` files of the MedMNIST v2 release on Zenodo (https://zenodo.org/records/10519652),
read directly with numpy (the ``medmnist`` package is not needed): ``<root>/<flag>.npz`` for 28 px and
``<root>/<flag>_<size>.npz`` for 64, 128 and 224 px. The official train/val/test splits are kept
(``RawDataset.split``); the file's sizes are not checked, so a subset of a split works too. Images are
scaled to [0, 1], channels first (1 channel for grey flags, 3 for RGB ones).

MedMNIST carries no demographics, so there are no sensitive attributes: runs on it measure utility
under DP only. Nor does it carry patient ids; its splits are the source's, patient-wise where the
source's were (e.g. ChestMNIST follows NIH ChestX-ray14's patient-wise split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, register_dataset
from dpfair.errors import DatasetError

CARD = DatasetCard(
    patient_ids=False,
    name="medmnist",
    modality="image",
    task="binary classification of one MedMNIST v2 2D dataset (chosen by `flag`), classes grouped by `positive_labels`",
    outcome=(
        "1 if the image's class is one of `positive_labels` (chestmnist: any of those findings present); "
        "binary flags default to the source's class 1: pneumonia for pneumoniamnist, "
        "normal-or-benign (not malignant) for breastmnist"
    ),
    sensitive_attributes=(),
    license="CC BY 4.0 (MedMNIST v2; source datasets' licenses also apply)",
    citation=(
        "Yang J, Shi R, Wei D, et al. MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D "
        "biomedical image classification. Scientific Data 2023;10:41. Cite each flag's source dataset too."
    ),
    homepage="https://medmnist.com/",
    source=(
        "user-supplied: <root>/<flag>.npz (28 px) or <root>/<flag>_<size>.npz (64/128/224 px) "
        "from https://zenodo.org/records/10519652"
    ),
    notes="official MedMNIST train/val/test splits; no demographics, so no subgroup metrics",
    row_unit="image",
)

ZENODO = "https://zenodo.org/records/10519652"
SIZES: tuple[int, ...] = (28, 64, 128, 224)
SPLITS: tuple[str, ...] = ("train", "val", "test")

_ORGANS = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)

#: Every 2D flag: (task, number of channels, class names by index), as in MedMNIST v2's INFO.
FLAGS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "pathmnist": (
        "multi-class",
        3,
        (
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ),
    ),
    "chestmnist": (
        "multi-label",
        1,
        (
            "atelectasis",
            "cardiomegaly",
            "effusion",
            "infiltration",
            "mass",
            "nodule",
            "pneumonia",
            "pneumothorax",
            "consolidation",
            "edema",
            "emphysema",
            "fibrosis",
            "pleural",
            "hernia",
        ),
    ),
    "dermamnist": (
        "multi-class",
        3,
        (
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ),
    ),
    "octmnist": ("multi-class", 1, ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal")),
    "pneumoniamnist": ("binary", 1, ("normal", "pneumonia")),
    "retinamnist": ("ordinal", 3, ("DR grade 0", "DR grade 1", "DR grade 2", "DR grade 3", "DR grade 4")),
    "breastmnist": ("binary", 1, ("malignant", "normal, benign")),
    "bloodmnist": (
        "multi-class",
        3,
        (
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes (myelocytes, metamyelocytes and promyelocytes)",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ),
    ),
    "tissuemnist": (
        "multi-class",
        1,
        (
            "collecting duct, connecting tubule",
            "distal convoluted tubule",
            "glomerular endothelial cells",
            "interstitial endothelial cells",
            "leukocytes",
            "podocytes",
            "proximal tubule segments",
            "thick ascending limb",
        ),
    ),
    "organamnist": ("multi-class", 1, _ORGANS),
    "organcmnist": ("multi-class", 1, _ORGANS),
    "organsmnist": ("multi-class", 1, _ORGANS),
}

#: A sensible example per flag for error messages (class indices that count as label 1).
_EXAMPLES = {
    "pathmnist": [8],
    "chestmnist": [2],
    "dermamnist": [4],
    "octmnist": [0, 1, 2],
    "retinamnist": [2, 3, 4],
    "bloodmnist": [2],
    "tissuemnist": [4],
    "organamnist": [3],
    "organcmnist": [3],
    "organsmnist": [3],
}


def file_name(flag: str, size: int = 28) -> str:
    """The release's file name for a flag and size, e.g. ``pathmnist_64.npz``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@register_dataset(CARD)
def load(*, root, flag: str, size: int = 28, positive_labels=None) -> RawDataset:
    """Read ``<root>/<flag>[_<size>].npz``; label 1 = class in ``positive_labels`` (see the module docstring)."""
    if flag not in FLAGS:
        raise DatasetError(
            f"medmnist: unknown flag {flag!r}; params.flag must be one of the 2D flags {sorted(FLAGS)} "
            "(3D flags are not supported)"
        )
    if isinstance(size, bool) or size not in SIZES:
        raise DatasetError(f"medmnist: params.size is {size!r}; MedMNIST+ files come in sizes {list(SIZES)}")
    task, channels, classes = FLAGS[flag]
    positive = _positive_labels(flag, task, classes, positive_labels)

    path = Path(root).expanduser() / file_name(flag, size)
    if not path.is_file():
        raise DatasetError(
            f"medmnist ({flag}, {size} px): data file {path} not found; download {file_name(flag, size)} from "
            f"{ZENODO} and put it in params.root ({Path(root).expanduser()})"
        )
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DatasetError(
            f"medmnist: cannot read {path} as a numpy .npz file ({exc}); download it again from {ZENODO}"
        ) from exc
    with npz:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in npz.files]
        if missing:
            raise DatasetError(
                f"medmnist: {path} lacks key(s) {missing} (found {npz.files}); it is not a MedMNIST v2 file, "
                f"download {file_name(flag, size)} from {ZENODO}"
            )
        images, labels, split = [], [], []
        for part in SPLITS:
            x = _images(npz[f"{part}_images"], path=path, part=part, size=size, channels=channels)
            y = _labels(
                npz[f"{part}_labels"], path=path, part=part, n=len(x), task=task, classes=classes, positive=positive
            )
            images.append(x)
            labels.append(y)
            split.append(np.full(len(x), part))
    labels = np.concatenate(labels)
    return RawDataset(
        inputs=np.concatenate(images),
        labels=labels,
        attributes=pd.DataFrame(index=pd.RangeIndex(len(labels))),
        split=np.concatenate(split),
        extras={
            "flag": flag,
            "size": size,
            "task": task,
            "positive_labels": positive,
            "positive_classes": [classes[i] for i in positive],
        },
    )


def _positive_labels(flag: str, task: str, classes: tuple[str, ...], positive_labels) -> list[int]:
    listing = ", ".join(f"{i}={name}" for i, name in enumerate(classes))
    if positive_labels is None:
        if task == "binary":
            return [1]
        example = _EXAMPLES[flag]
        what = "findings (label 1 if any is present)" if task == "multi-label" else "classes"
        raise DatasetError(
            f"medmnist: {flag} is {task} with {len(classes)} classes ({listing}); set params.positive_labels "
            f"to the list of {what} that count as label 1, e.g. positive_labels: {example}"
        )
    if isinstance(positive_labels, (int, np.integer)) and not isinstance(positive_labels, bool):
        positive_labels = [positive_labels]
    try:
        chosen = sorted({int(i) for i in positive_labels if not isinstance(i, bool) and int(i) == i})
        valid = len(chosen) == len(set(positive_labels))
    except (TypeError, ValueError):
        valid = False
    if not valid or not chosen or any(i < 0 or i >= len(classes) for i in chosen):
        raise DatasetError(
            f"medmnist: params.positive_labels is {positive_labels!r}; give a non-empty list of class indices "
            f"of {flag} ({listing})"
        )
    if task != "multi-label" and len(chosen) == len(classes):
        raise DatasetError(
            f"medmnist: params.positive_labels {chosen} lists every class of {flag}, so no image would be label 0; "
            "leave some classes out"
        )
    return chosen


def _images(x: np.ndarray, *, path: Path, part: str, size: int, channels: int) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W): grey
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):  # (N, H, W, C)
        x = np.moveaxis(x, -1, 1)
    else:
        raise DatasetError(
            f"medmnist: {path} key {part}_images has shape {x.shape}; expected (N, H, W) or (N, H, W, 3)"
        )
    if x.shape[1] != channels or x.shape[2:] != (size, size):
        raise DatasetError(
            f"medmnist: {path} key {part}_images holds {x.shape[1]}-channel {x.shape[2]}x{x.shape[3]} images; "
            f"expected {channels}-channel {size}x{size} for this flag and size; check the file name matches its content"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise DatasetError(f"medmnist: {path} key {part}_images is {x.dtype} outside [0, 1]; expected uint8 images")
    return x


def _labels(y: np.ndarray, *, path: Path, part: str, n: int, task: str, classes, positive: list[int]) -> np.ndarray:
    if len(y) != n:
        raise DatasetError(f"medmnist: {path} has {n} {part}_images but {len(y)} {part}_labels")
    y = _integer_codes(
        y, path=path, part=part, allowed="0/1 finding flags" if task == "multi-label" else "class indices"
    )
    if task == "multi-label":
        if y.ndim != 2 or y.shape[1] != len(classes):
            raise DatasetError(f"medmnist: {path} key {part}_labels has shape {y.shape}; expected (N, {len(classes)})")
        if bad := sorted(set(np.unique(y).tolist()) - {0, 1}):
            raise DatasetError(f"medmnist: {path} key {part}_labels has finding flags {bad[:10]}; expected 0 or 1")
        return (y[:, positive] == 1).any(axis=1).astype(np.int64)
    y = y.reshape(n, -1)
    if y.shape[1] != 1:
        raise DatasetError(f"medmnist: {path} key {part}_labels has shape {y.shape}; expected (N,) or (N, 1)")
    y = y[:, 0]
    bad = sorted(set(np.unique(y).tolist()) - set(range(len(classes))))
    if bad:
        raise DatasetError(
            f"medmnist: {path} key {part}_labels has class indices {bad[:10]} outside 0..{len(classes) - 1}"
        )
    return np.isin(y, positive).astype(np.int64)


def _integer_codes(y: np.ndarray, *, path: Path, part: str, allowed: str) -> np.ndarray:
    """The labels as int64 when every value is a whole number; otherwise refuse, showing the values.

    A cast alone would truncate 0.7 to 0 and 1.5 to 1, silently changing the outcome.
    """
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind != "f":
        shown = sorted({str(v) for v in np.ravel(y)})[:10]
        raise DatasetError(
            f"medmnist: {path} key {part}_labels holds {y.dtype} values {shown}; expected integer {allowed}"
        )
    fractional = np.ravel(y)[~np.isfinite(np.ravel(y)) | (np.ravel(y) % 1 != 0)]
    if len(fractional):
        shown = sorted({float(v) for v in fractional})[:10]
        raise DatasetError(
            f"medmnist: {path} key {part}_labels has {len(fractional)} value(s) that are not whole {allowed}, "
            f"e.g. {shown}; expected integer {allowed}"
        )
    return y.astype(np.int64)


def make_example(root: Path, *, flag: str = "dermamnist", size: int = 28, n_per_split: int = 12) -> dict:
    """Write a tiny ``<flag>[_<size>].npz`` in the release's layout and return loader params that read it.

    Every split holds every class (so every choice of ``positive_labels`` gives both labels).
    """
    task, channels, classes = FLAGS[flag]
    rng = np.random.RandomState(0)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part in SPLITS:
        n = max(n_per_split, len(classes))
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        arrays[f"{part}_images"] = rng.randint(0, 256, size=shape).astype(np.uint8)
        if task == "multi-label":
            y = np.zeros((n, len(classes)), dtype=np.uint8)
            y[np.arange(n), np.arange(n) % len(classes)] = 1
            y[::3] = 0  # some images with no finding
        else:
            y = (np.arange(n) % len(classes)).astype(np.uint8)[:, None]
        arrays[f"{part}_labels"] = y
    np.savez_compressed(root / file_name(flag, size), **arrays)
    params = {"root": str(root), "flag": flag, "size": size}
    if task != "binary":
        params["positive_labels"] = _EXAMPLES[flag]
    return params
