"""HAM10000 (ISIC 2018 task 3 training set): 10,015 dermatoscopic images of pigmented skin lesions.

Label 1: the lesion is malignant, i.e. its diagnosis ``dx`` is one of ``positive_dx``, by default
melanoma (``mel``), basal cell carcinoma (``bcc``) and actinic keratosis / intraepithelial carcinoma
(Bowen's disease) (``akiec``). Label 0 covers the benign classes: melanocytic nevi (``nv``), benign
keratosis-like lesions (``bkl``), dermatofibroma (``df``) and vascular lesions (``vasc``). About 19.5% of
images are positive. Diagnoses are confirmed by histopathology for over half of the lesions, otherwise by
follow-up, expert consensus or confocal microscopy (``dx_type``).

Data the user brings, in the Harvard Dataverse layout (https://doi.org/10.7910/DVN/DBW86T):
``<root>/HAM10000_metadata.csv`` (columns ``lesion_id``, ``image_id``, ``dx``, ``dx_type``, ``age``, ``sex``,
``localization``) and the images ``<root>/HAM10000_images_part_1/<image_id>.jpg`` and
``<root>/HAM10000_images_part_2/<image_id>.jpg`` (the two zip files unpacked; lower-case folder names,
as on Kaggle, also work).

Grouping: HAM10000 has no patient ids, but several images often show the same lesion (``lesion_id``).
``lesion_id`` is returned as ``patient_id``, so a lesion's images never span train/val/test (the same
patient may still have other lesions in other splits). No official split is returned (the ISIC 2018 test set is a separate
download): the pipeline splits by lesion. ``max_images`` keeps a random subset of that many images
(``seed``), drawn before any image is read.

Images are RGB, resized to ``image_size`` x ``image_size`` (bilinear; the 600x450 originals are squashed,
as in DermaMNIST) and scaled to [0, 1], shape (N, 3, H, W).

Sensitive attributes: ``sex`` (male / female; the source's ``unknown`` and blanks -> unknown) and
``age_group`` (``age`` in years, given in 5-year steps; missing -> unknown).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset
from dpfair.data.images import check_image_params, read_images, read_table, subsample_rows
from dpfair.errors import DatasetError

CARD = DatasetCard(
    patient_ids=True,
    name="ham10000",
    modality="image",
    task="binary classification: malignant vs benign pigmented skin lesion from a dermatoscopic image",
    outcome="1 if the diagnosis `dx` is in `positive_dx` (default mel, bcc, akiec: malignant or pre-malignant); 0 for nv, bkl, df, vasc",
    sensitive_attributes=("sex", "age_group"),
    license="CC BY-NC 4.0",
    citation=(
        "Tschandl P, Rosendahl C, Kittler H. The HAM10000 dataset, a large collection of multi-source "
        "dermatoscopic images of common pigmented skin lesions. Sci Data 2018;5:180161."
    ),
    homepage="https://doi.org/10.7910/DVN/DBW86T",
    source=(
        "user-supplied: <root>/HAM10000_metadata.csv and <root>/HAM10000_images_part_1|2/<image_id>.jpg "
        "from https://doi.org/10.7910/DVN/DBW86T"
    ),
    notes="lesion_id is used as patient_id (a lesion never spans splits); split by lesion, no official split",
    patient_unit="lesion",
)

DIAGNOSES: dict[str, str] = {
    "akiec": "actinic keratoses and intraepithelial carcinoma / Bowen's disease",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesions",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevi",
    "vasc": "vascular lesions",
}
MALIGNANT: tuple[str, ...] = ("mel", "bcc", "akiec")
METADATA = "HAM10000_metadata.csv"
IMAGE_DIRS: tuple[str, ...] = (
    "HAM10000_images_part_1",
    "HAM10000_images_part_2",
    "ham10000_images_part_1",
    "ham10000_images_part_2",
)
COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "age", "sex")


@register_dataset(CARD)
def load(
    *,
    root,
    positive_dx=MALIGNANT,
    image_size: int = 64,
    max_images: int | None = None,
    seed: int = 0,
) -> RawDataset:
    """Read HAM10000 under ``root``; label 1 = ``dx`` in ``positive_dx`` (see the module docstring)."""
    if isinstance(positive_dx, str):
        positive_dx = [positive_dx]
    positive = sorted(set(positive_dx))
    unknown = [d for d in positive if d not in DIAGNOSES]
    if not positive or unknown or len(positive) == len(DIAGNOSES):
        raise DatasetError(
            f"ham10000: params.positive_dx is {list(positive_dx)!r}; give a non-empty proper subset of the "
            f"diagnosis codes {sorted(DIAGNOSES)} (default {list(MALIGNANT)})"
        )
    check_image_params(dataset="ham10000", image_size=image_size, max_images=max_images)
    root = Path(root).expanduser()
    path = root / METADATA
    meta = read_table(
        path,
        dataset="ham10000",
        columns=COLUMNS,
        fix=(
            f"download HAM10000_metadata (as the original .csv) and the two image zips from {CARD.homepage}, put the "
            "csv in params.root and unpack the zips there as HAM10000_images_part_1/ and HAM10000_images_part_2/"
        ),
    )
    dx = meta["dx"].astype(str).str.strip().str.lower()
    bad = sorted(set(dx) - set(DIAGNOSES))
    if bad:
        raise DatasetError(
            f"ham10000: column dx of {path} holds unknown code(s) {bad[:5]}; expected {sorted(DIAGNOSES)}"
        )
    pick = subsample_rows(len(meta), max_images=max_images, seed=seed)
    if pick is not None:
        meta, dx = meta.iloc[pick], dx.iloc[pick]
    meta = meta.reset_index(drop=True)
    labels = dx.isin(positive).to_numpy(np.int64)
    sex = meta["sex"].astype(str).str.strip().str.lower().map({"female": "female", "male": "male"}).fillna("unknown")
    attributes = pd.DataFrame(
        {"sex": sex.to_numpy(), "age_group": age_group(pd.to_numeric(meta["age"], errors="coerce")).to_numpy()}
    )
    images = read_images(
        _image_paths(root, meta["image_id"].astype(str).str.strip().tolist()),
        size=image_size,
        mode="RGB",
        dataset="ham10000",
        fix=f"download it again from {CARD.homepage}",
    )
    return RawDataset(
        inputs=images,
        labels=labels,
        attributes=attributes,
        patient_id=meta["lesion_id"].astype(str).to_numpy(),
        extras={"positive_dx": positive, "dx": dx.to_numpy(), "image_id": meta["image_id"].astype(str).to_numpy()},
    )


def _image_paths(root: Path, image_ids: list[str]) -> list[Path]:
    dirs = [root / d for d in IMAGE_DIRS if (root / d).is_dir()]
    if not dirs:
        raise DatasetError(
            f"ham10000: no image folder in {root}; unpack HAM10000_images_part_1.zip and HAM10000_images_part_2.zip "
            f"from {CARD.homepage} into {root / 'HAM10000_images_part_1'} and {root / 'HAM10000_images_part_2'}"
        )
    paths = []
    for image_id in image_ids:
        path = next((d / f"{image_id}.jpg" for d in dirs if (d / f"{image_id}.jpg").is_file()), None)
        if path is None:
            raise DatasetError(
                f"ham10000: image {image_id}.jpg (listed in {METADATA}) is in none of {[str(d) for d in dirs]}; "
                f"unpack both image zips from {CARD.homepage} into {root}"
            )
        paths.append(path)
    return paths


def make_example(root: Path) -> dict:
    """Write a tiny HAM10000 copy (metadata CSV, two image folders) under ``root``; return loader params."""
    from PIL import Image

    rng = np.random.RandomState(0)
    root = Path(root)
    dxs = ["nv", "mel", "bkl", "bcc", "nv", "akiec", "df", "vasc"]
    localizations = ["back", "face", "lower extremity", "trunk"]
    rows = []
    image_number = 24306
    for lesion in range(20):
        n_images = 1 + (lesion % 3 == 0) + (lesion % 6 == 0)  # 1 to 3 images per lesion
        for _ in range(n_images):
            image_id = f"ISIC_{image_number:07d}"
            folder = root / IMAGE_DIRS[image_number % 2]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.randint(0, 256, size=(9, 12, 3)).astype(np.uint8)).save(folder / f"{image_id}.jpg")
            rows.append(
                {
                    "lesion_id": f"HAM_{lesion:07d}",
                    "image_id": image_id,
                    "dx": dxs[lesion % len(dxs)],
                    "dx_type": ["histo", "follow_up", "consensus", "confocal"][lesion % 4],
                    "age": [35.0, 50.0, 65.0, 85.0, np.nan][lesion % 5],
                    "sex": ["male", "female", "male", "female", "unknown"][lesion % 5 if lesion % 7 else 4],
                    "localization": localizations[lesion % len(localizations)],
                }
            )
            image_number += 1
    pd.DataFrame(rows).to_csv(root / METADATA, index=False)
    return {"root": str(root), "image_size": 16}
