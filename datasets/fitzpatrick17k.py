"""Fitzpatrick 17k: 16,577 clinical (non-dermatoscopic) skin images, each annotated with a Fitzpatrick skin type.

The images come from two online dermatology atlases.
Label 1: the condition is malignant, i.e. ``three_partition_label == "malignant"`` (the source's own
grouping of its 114 conditions, e.g. melanoma, basal cell carcinoma, actinic keratosis, Kaposi sarcoma).
Label 0 covers ``benign`` and ``non-neoplastic`` (e.g. inflammatory conditions, genodermatoses).

Data the user brings, in the published layout: ``<root>/fitzpatrick17k.csv`` from
https://github.com/mattgroh/fitzpatrick17k (columns ``md5hash``, ``fitzpatrick_scale``, ``label``,
``nine_partition_label``, ``three_partition_label``, ``url``, ...) and the images as
``<root>/images/<md5hash>.jpg`` (downloaded from the ``url`` column, or the authors' archive on request).
Some source URLs no longer resolve: ``missing_images="skip"`` drops rows whose image is absent (their
count is in ``extras["n_missing_images"]``); the default raises.

Sensitive attribute ``skin_type`` from ``fitzpatrick_scale`` (1-6; -1 = not annotated -> unknown). With
``skin_type_groups="three"`` (default) the levels are grouped as ``I-II`` (lightest), ``III-IV`` and
``V-VI`` (darkest), since the darkest types are rare in the atlases; ``"six"`` keeps ``I`` ... ``VI``.
There are no patient ids (images come from atlases) and no official split: the pipeline splits
stratified by label and skin type. The source has some near-duplicate images across rows.

Images are RGB, resized to ``image_size`` x ``image_size`` (bilinear, aspect ratio not kept) and scaled
to [0, 1], shape (N, 3, H, W). ``max_images`` keeps a random subset (``seed``) before images are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, register_dataset
from dpfair.data.images import check_image_params, read_images, read_table, subsample_rows
from dpfair.errors import DatasetError

CARD = DatasetCard(
    patient_ids=False,
    name="fitzpatrick17k",
    modality="image",
    task="binary classification: malignant vs non-malignant skin condition from a clinical photograph",
    outcome="1 if three_partition_label is 'malignant'; 0 if 'benign' or 'non-neoplastic'",
    sensitive_attributes=("skin_type",),
    license="CC BY-NC-SA 3.0 (annotations; images from DermaAmin and Atlas Dermatologico)",
    citation=(
        "Groh M, Harris C, Soenksen L, et al. Evaluating deep neural networks trained on clinical images in "
        "dermatology with the Fitzpatrick 17k dataset. CVPR Workshops (ISIC) 2021. arXiv:2104.09957"
    ),
    homepage="https://github.com/mattgroh/fitzpatrick17k",
    source="user-supplied: <root>/fitzpatrick17k.csv and <root>/images/<md5hash>.jpg (downloaded from the csv's url column)",
    notes="skin_type grouped I-II / III-IV / V-VI by default; no patient ids; split stratified by label and skin type",
    row_unit="image",
)

CSV = "fitzpatrick17k.csv"
COLUMNS: tuple[str, ...] = ("md5hash", "fitzpatrick_scale", "three_partition_label")
PARTITIONS: tuple[str, ...] = ("benign", "malignant", "non-neoplastic")
ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
GROUPS = {
    "three": {1: "I-II", 2: "I-II", 3: "III-IV", 4: "III-IV", 5: "V-VI", 6: "V-VI"},
    "six": ROMAN,
}


@register_dataset(CARD)
def load(
    *,
    root,
    skin_type_groups: str = "three",
    image_size: int = 64,
    missing_images: str = "error",
    max_images: int | None = None,
    seed: int = 0,
) -> RawDataset:
    """Read Fitzpatrick 17k under ``root``; label 1 = malignant (see the module docstring)."""
    if skin_type_groups not in GROUPS:
        raise DatasetError(f"fitzpatrick17k: params.skin_type_groups is {skin_type_groups!r}; use 'three' or 'six'")
    if missing_images not in ("error", "skip"):
        raise DatasetError(f"fitzpatrick17k: params.missing_images is {missing_images!r}; use 'error' or 'skip'")
    check_image_params(dataset="fitzpatrick17k", image_size=image_size, max_images=max_images)
    root = Path(root).expanduser()
    path = root / CSV
    table = read_table(
        path,
        dataset="fitzpatrick17k",
        columns=COLUMNS,
        fix=(
            f"download {CSV} from {CARD.homepage} into params.root and the images (its url column) into "
            f"{root / 'images'}/<md5hash>.jpg"
        ),
    )
    partition = table["three_partition_label"].astype(str).str.strip().str.lower()
    bad = sorted(set(partition) - set(PARTITIONS))
    if bad:
        raise DatasetError(
            f"fitzpatrick17k: column three_partition_label of {path} holds {bad[:5]}; expected {list(PARTITIONS)}"
        )
    table = table.assign(_partition=partition)
    pick = subsample_rows(len(table), max_images=max_images, seed=seed)
    if pick is not None:
        table = table.iloc[pick]
    table = table.reset_index(drop=True)

    files = [root / "images" / f"{str(h).strip()}.jpg" for h in table["md5hash"]]
    present = np.array([f.is_file() for f in files], dtype=bool)
    if not present.all():
        first = files[int(np.argmin(present))]
        if missing_images == "error":
            raise DatasetError(
                f"fitzpatrick17k: {int((~present).sum())} image(s) listed in {CSV} are missing, e.g. {first}; download "
                f"them from the csv's url column into {root / 'images'}, or set params.missing_images: skip to drop those rows"
            )
        table = table[present].reset_index(drop=True)
        files = [f for f, keep in zip(files, present) if keep]
    if table.empty:
        raise DatasetError(f"fitzpatrick17k: none of the images listed in {path} is in {root / 'images'}")

    scale = pd.to_numeric(table["fitzpatrick_scale"], errors="coerce")
    skin_type = scale.map(GROUPS[skin_type_groups]).fillna("unknown").astype(str)
    return RawDataset(
        inputs=read_images(
            files, size=image_size, mode="RGB", dataset="fitzpatrick17k", fix=f"download it again from its url in {CSV}"
        ),
        labels=(table["_partition"] == "malignant").to_numpy(np.int64),
        attributes=pd.DataFrame({"skin_type": skin_type.to_numpy()}),
        extras={
            "n_missing_images": int((~present).sum()),
            "condition": table["label"].astype(str).to_numpy() if "label" in table.columns else None,
        },
    )


def make_example(root: Path) -> dict:
    """Write a tiny Fitzpatrick 17k copy (csv, images/) under ``root``; return loader params."""
    import hashlib

    from PIL import Image

    rng = np.random.RandomState(0)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    conditions = [
        ("psoriasis", "inflammatory", "non-neoplastic"),
        ("melanoma", "malignant melanoma", "malignant"),
        ("dermatofibroma", "benign dermal", "benign"),
        ("basal cell carcinoma", "malignant epidermal", "malignant"),
        ("acne vulgaris", "inflammatory", "non-neoplastic"),
        ("kaposi sarcoma", "malignant dermal", "malignant"),
    ]
    scales = [1, 2, 3, 4, 5, 6, -1]
    rows = []
    for i in range(36):
        md5 = hashlib.md5(f"example-{i}".encode()).hexdigest()
        Image.fromarray(rng.randint(0, 256, size=(10, 13, 3)).astype(np.uint8)).save(root / "images" / f"{md5}.jpg")
        label, nine, three = conditions[i % len(conditions)]
        url = f"https://www.dermaamin.com/site/images/clinical-pic/x/example/example{i}.jpg"
        rows.append(
            {
                "md5hash": md5,
                "fitzpatrick_scale": scales[i % len(scales)],
                "fitzpatrick_centaur": scales[(i + 1) % len(scales)],
                "label": label,
                "nine_partition_label": nine,
                "three_partition_label": three,
                "qc": "",
                "url": url,
                "url_alphanum": "".join(c for c in url if c.isalnum()) + ".jpg",
            }
        )
    pd.DataFrame(rows).to_csv(root / CSV, index=False)
    return {"root": str(root), "image_size": 16}
