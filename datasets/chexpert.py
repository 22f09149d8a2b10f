"""CheXpert v1.0 (small or full): chest radiographs from Stanford Hospital with 14 observation labels.

Label 1: the ``target`` observation (default ``Pleural Effusion``) is positive in the source's labels,
which for ``train.csv`` were extracted from radiology reports by the CheXpert labeler and for
``valid.csv`` were set by radiologists. The label columns hold ``1.0`` (positive), ``0.0`` (negative),
``-1.0`` (uncertain) or blank (not mentioned in the report). Blank counts as 0, as in the CheXpert
paper and most work on it (an observation the report does not mention is taken as absent). Uncertain
follows ``uncertain``: ``"zeros"`` (U-Zeros, the default: uncertain = 0), ``"ones"`` (U-Ones:
uncertain = 1) or ``"ignore"`` (U-Ignore: uncertain rows are dropped).

Data the user brings, in the published layout: ``<root>/train.csv`` and ``<root>/valid.csv`` (``root`` is
the ``CheXpert-v1.0-small`` or ``CheXpert-v1.0`` folder). Their ``Path`` column (e.g.
``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``) is relative to the folder that
holds ``root``; a renamed ``root`` also works (the path is then tried without its first component).

Rows: both CSVs, frontal views only by default (``frontal_only``). ``valid.csv`` patients are disjoint
from ``train.csv`` ones; CheXpert's official test set is not part of this release, so no official split
is returned and the pipeline splits by patient. ``patient_id`` is the ``patientNNNNN`` folder of the
path, so a patient's images (all studies and views) never span splits. ``max_images`` keeps a random
subset of that many images (``seed``), drawn before any image is read.

Images are read as grey with Pillow, resized to ``image_size`` x ``image_size`` (bilinear; the aspect
ratio is not kept, as is usual for CheXpert) and scaled to [0, 1], shape (N, 1, H, W).

Sensitive attributes: ``sex`` (``Sex``: Female/Male -> female/male, Unknown -> unknown), ``age_group``
(``Age``; ages <= 0, a handful of data-entry errors, are unknown) and ``race``. Race comes from the
separately released CheXpert demographics (Stanford AIMI, ``CHEXPERT DEMO.xlsx``, columns ``PATIENT``,
``PRIMARY_RACE``, ``ETHNICITY``), read from ``<root>/CHEXPERT DEMO.csv``, ``<root>/CHEXPERT DEMO.xlsx``
(only if openpyxl is installed) or the ``demographics`` parameter. ``PRIMARY_RACE`` is mapped to

- ``white``: values containing "White" (e.g. "White", "White, non-Hispanic", "White or Caucasian");
- ``black``: values containing "Black" (e.g. "Black or African American", "Black, Hispanic");
- ``asian``: values containing "Asian" (e.g. "Asian", "Asian, non-Hispanic", "Asian - Historical Conv");
- ``unknown``: blank, "Unknown", "Race and Ethnicity Unknown", "Patient Refused", "Declined to State";
- ``other``: everything else (Native American, American Indian or Alaska Native, Native Hawaiian or
  Pacific Islander, "Other", "Other, Hispanic", ...), and patients missing from the demographics file
  are ``unknown``. ``ETHNICITY`` is not used.

Without a demographics file every row's race is ``unknown``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset
from dpfair.data.images import check_image_params, read_images, read_table, subsample_rows
from dpfair.errors import DatasetError

CARD = DatasetCard(
    patient_ids=True,
    name="chexpert",
    modality="image",
    task="binary classification of one CheXpert observation (default Pleural Effusion) from a chest radiograph",
    outcome=(
        "1 if the `target` observation is labelled positive (1.0); blank (not mentioned) = 0; "
        "uncertain (-1.0) = 0 under the default U-Zeros (`uncertain`: ones -> 1, ignore -> row dropped)"
    ),
    sensitive_attributes=("sex", "age_group", "race"),
    license="Stanford University School of Medicine CheXpert Dataset Research Use Agreement (non-commercial research)",
    citation=(
        "Irvin J, Rajpurkar P, Ko M, et al. CheXpert: A large chest radiograph dataset with uncertainty labels "
        "and expert comparison. AAAI 2019;33:590-597. Demographics: CheXpert demographic data, Stanford AIMI."
    ),
    homepage="https://stanfordmlgroup.github.io/competitions/chexpert/",
    source=(
        "user-supplied: <root>/train.csv, <root>/valid.csv and the images they list (CheXpert-v1.0-small or "
        "CheXpert-v1.0 from https://stanfordaimi.azurewebsites.net/datasets); optional <root>/CHEXPERT DEMO.csv"
    ),
    notes="train.csv + valid.csv, frontal views by default; split by patient (no official test set in the release)",
)

HOMEPAGE = "https://stanfordaimi.azurewebsites.net/datasets"
OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CSV_FILES: tuple[str, ...] = ("train.csv", "valid.csv")
REQUIRED_COLUMNS: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral")
UNCERTAIN: tuple[str, ...] = ("zeros", "ones", "ignore")
DEMOGRAPHICS_FILES: tuple[str, ...] = ("CHEXPERT DEMO.csv", "CHEXPERT DEMO.xlsx")
_PATIENT = re.compile(r"(patient\d+)")
_UNKNOWN_RACE = ("unknown", "refused", "declined", "not reported", "unavailable")


def race_group(primary_race: pd.Series) -> pd.Series:
    """Map CheXpert ``PRIMARY_RACE`` values to white / black / asian / other / unknown.

    Example:
        >>> race_group(pd.Series(["White, non-Hispanic", "Black or African American", "Asian - Historical Conv",
        ...                       "Native Hawaiian or Other Pacific Islander", "Patient Refused", None])).tolist()
        ['white', 'black', 'asian', 'other', 'unknown', 'unknown']
    """

    def one(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "unknown"
        text = str(value).strip().lower()
        if not text or any(word in text for word in _UNKNOWN_RACE):
            return "unknown"
        for group in ("white", "black", "asian"):
            if group in text:
                return group
        return "other"

    return pd.Series([one(v) for v in primary_race], index=primary_race.index, dtype=object)


@register_dataset(CARD)
def load(
    *,
    root,
    target: str = "Pleural Effusion",
    uncertain: str = "zeros",
    frontal_only: bool = True,
    image_size: int = 64,
    max_images: int | None = None,
    seed: int = 0,
    demographics=None,
) -> RawDataset:
    """Read CheXpert's CSVs and images under ``root``; label 1 = ``target`` positive (see the module docstring)."""
    if target not in OBSERVATIONS:
        raise DatasetError(f"chexpert: params.target is {target!r}; use one of the observations {list(OBSERVATIONS)}")
    if uncertain not in UNCERTAIN:
        raise DatasetError(
            f"chexpert: params.uncertain is {uncertain!r}; use 'zeros' (U-Zeros), 'ones' (U-Ones) or 'ignore' (drop)"
        )
    check_image_params(dataset="chexpert", image_size=image_size, max_images=max_images)
    root = Path(root).expanduser()
    table = _read_tables(root, target)
    if frontal_only:
        table = table[table["Frontal/Lateral"].astype(str).str.strip().str.lower() == "frontal"]
    values = pd.to_numeric(table[target], errors="coerce")
    bad = sorted(set(values.dropna().unique().tolist()) - {1.0, 0.0, -1.0})
    if bad:
        raise DatasetError(f"chexpert: column {target!r} holds value(s) {bad[:5]}; expected 1.0, 0.0, -1.0 or blank")
    if uncertain == "ignore":
        keep = values != -1.0
        table, values = table[keep], values[keep]
    labels = ((values == 1.0) | ((values == -1.0) & (uncertain == "ones"))).astype(np.int64)
    pick = subsample_rows(len(table), max_images=max_images, seed=seed)
    if pick is not None:
        table, labels = table.iloc[pick], labels.iloc[pick]
    table = table.reset_index(drop=True)
    if table.empty:
        raise DatasetError(f"chexpert: no rows left in {root}/train.csv and valid.csv after the filters; check params")

    patient = table["Path"].astype(str).str.extract(_PATIENT, expand=False)
    if patient.isna().any():
        example = table.loc[patient.isna(), "Path"].iloc[0]
        raise DatasetError(
            f"chexpert: column Path has no patientNNNNN folder in e.g. {example!r}; is the CSV from CheXpert v1.0?"
        )
    sex = table["Sex"].astype(str).str.strip().str.lower().map({"female": "female", "male": "male"}).fillna("unknown")
    age = pd.to_numeric(table["Age"], errors="coerce")
    race = _race(root, demographics, patient)
    attributes = pd.DataFrame(
        {"sex": sex.to_numpy(), "age_group": age_group(age.where(age > 0)).to_numpy(), "race": race}
    )
    images = read_images(
        _image_paths(root, table["Path"].astype(str).tolist()),
        size=image_size,
        mode="L",
        dataset="chexpert",
        fix=f"download it again from {HOMEPAGE}",
    )
    return RawDataset(
        inputs=images,
        labels=labels.to_numpy(np.int64),
        attributes=attributes,
        patient_id=patient.to_numpy(dtype=str),
        extras={"target": target, "uncertain": uncertain, "source_csv": table["source_csv"].to_numpy()},
    )


def _read_tables(root: Path, target: str) -> pd.DataFrame:
    frames = []
    for name in CSV_FILES:
        frame = read_table(
            root / name,
            dataset="chexpert",
            columns=(*REQUIRED_COLUMNS, target),
            fix=(
                "params.root must be the CheXpert-v1.0-small (or CheXpert-v1.0) folder holding train.csv and "
                f"valid.csv, downloaded from {HOMEPAGE}"
            ),
        )
        frame["source_csv"] = name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _race(root: Path, demographics, patient: pd.Series) -> np.ndarray:
    path = Path(demographics).expanduser() if demographics is not None else None
    if path is None:
        path = next((root / f for f in DEMOGRAPHICS_FILES if (root / f).is_file()), None)
        if path is None:
            return np.full(len(patient), "unknown", dtype=object)
    elif not path.is_file():
        raise DatasetError(
            f"chexpert: params.demographics file {path} not found; give the CheXpert demographics file "
            f"(CHEXPERT DEMO.xlsx, or a CSV export of it) from {HOMEPAGE}, or leave the parameter out"
        )
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            import openpyxl  # noqa: F401
        except ImportError as exc:
            raise DatasetError(
                f"chexpert: reading {path} needs openpyxl, which is not installed; save the sheet as "
                f"'{root / 'CHEXPERT DEMO.csv'}' (or pip install openpyxl)"
            ) from exc
        demo = pd.read_excel(path)
    else:
        demo = pd.read_csv(path)
    missing = [c for c in ("PATIENT", "PRIMARY_RACE") if c not in demo.columns]
    if missing:
        raise DatasetError(
            f"chexpert: demographics file {path} lacks column(s) {missing}; found {list(demo.columns)[:10]}"
        )
    ids = demo["PATIENT"].astype(str).str.strip().str.extract(_PATIENT, expand=False)
    groups = pd.Series(race_group(demo["PRIMARY_RACE"]).to_numpy(), index=ids).loc[lambda s: s.index.notna()]
    groups = groups[~groups.index.duplicated()]
    return patient.map(groups).fillna("unknown").to_numpy(dtype=object)


def _image_path(root: Path, rel: str) -> Path:
    direct = root.parent / rel
    if direct.is_file():
        return direct
    parts = Path(rel).parts
    renamed = root.joinpath(*parts[1:]) if len(parts) > 1 else direct
    return renamed if renamed.is_file() else direct


def _image_paths(root: Path, rels: list[str]) -> list[Path]:
    paths = [_image_path(root, rel) for rel in rels]
    # checked before reading so that a missing file gets the advice about where the CSV paths point
    for path, rel in zip(paths, rels):
        if not path.exists():
            raise DatasetError(
                f"chexpert: image {path} (Path {rel!r} in the CSV) not found; the CSV paths are relative to the folder "
                f"holding params.root ({root.parent}); unpack the whole download from {HOMEPAGE} there"
            )
    return paths


def make_example(root: Path) -> dict:
    """Write a tiny CheXpert-v1.0-small copy (CSVs, images, demographics CSV) under ``root``; return loader params."""
    from PIL import Image

    rng = np.random.RandomState(0)
    data_dir = Path(root) / "CheXpert-v1.0-small"
    races = ["White", "Black or African American", "Asian, non-Hispanic", "Other", "Patient Refused"]
    demo_rows = []
    for csv_name, folder, first, n_patients in (("train.csv", "train", 1, 16), ("valid.csv", "valid", 64541, 8)):
        rows = []
        for k in range(n_patients):
            pid = f"patient{first + k:05d}"
            demo_rows.append(
                {
                    "PATIENT": pid,
                    "GENDER": "",
                    "AGE_AT_CXR": "",
                    "PRIMARY_RACE": races[k % len(races)],
                    "ETHNICITY": "Non-Hispanic/Non-Latino",
                }
            )
            sex = ["Female", "Male"][k % 2] if k != 5 else "Unknown"
            age = [25, 45, 67, 85][k % 4]
            views = [("frontal", "Frontal", "PA"), ("lateral", "Lateral", "")]
            if k % 3 == 0:  # some patients have a second frontal view
                views.insert(1, ("frontal", "Frontal", "AP"))
            for v, (view, fl, appa) in enumerate(views, start=1):
                rel = f"CheXpert-v1.0-small/{folder}/{pid}/study1/view{v}_{view}.jpg"
                path = Path(root) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                h, w = (12, 10) if fl == "Frontal" else (10, 12)
                Image.fromarray(rng.randint(0, 256, size=(h, w)).astype(np.uint8)).save(path)
                obs = {o: "" for o in OBSERVATIONS}
                obs["Pleural Effusion"] = [1.0, 0.0, "", -1.0][(k + v) % 4]
                obs["Cardiomegaly"] = [0.0, 1.0][k % 2]
                obs["Support Devices"] = 1.0 if k % 5 == 0 else ""
                rows.append({"Path": rel, "Sex": sex, "Age": age, "Frontal/Lateral": fl, "AP/PA": appa, **obs})
        pd.DataFrame(rows, columns=["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]).to_csv(
            data_dir / csv_name, index=False
        )
    pd.DataFrame(demo_rows).to_csv(data_dir / "CHEXPERT DEMO.csv", index=False)
    return {"root": str(data_dir), "image_size": 16}
