"""ACTG 175: randomised trial of antiretroviral therapy in 2,139 adults with HIV-1 (1991-1994).

Outcome (label 1): the trial's primary event was observed during follow-up (the source's ``cens``):
a decline in CD4 count of at least 50%, an AIDS-defining event, or death, whichever came first
(median follow-up about 2.5 years). Prevalence is about 0.24.

Features are baseline: age, weight, haemophilia, homosexual activity, intravenous drug use, Karnofsky
score, prior antiretroviral therapy (``oprior``, ``z30``, ``preanti``, ``str2``, ``strat``), symptoms,
baseline CD4 (``cd40``) and CD8 (``cd80``) counts, and the randomised arm (``arms``, as a category).
Removed because they are ids, the outcome or measured after baseline: ``pidnum``; ``days`` (time to
event or censoring); ``cd420``, ``cd496``, ``r`` (CD4 at 20 and 96 weeks and whether the latter was
measured), ``cd820`` (CD8 at 20 weeks); ``offtrt`` (went off treatment before 96 weeks); ``treat``
(a coarsening of ``arms``); ``zprior`` (constant).

Codings (speff2trial documentation): ``gender`` 0 = female, 1 = male; ``race`` 0 = white, 1 = non-white.
Sensitive attributes: ``sex``, ``race`` (white / non_white) and ``age_group``.

Source: the CSV that the ``lifelines`` wheel ships (``lifelines/datasets/ACTG175.csv``), read straight
from the wheel file. lifelines itself is never installed or imported: it pins ``pandas<3``, which would
hold the whole stack back. ``make install`` puts the wheel under ``<venv>/share/dpfair``; elsewhere run
``pip download --no-deps lifelines==0.30.3 -d <dir>`` and pass ``wheel_dir=<dir>``.
"""

import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset
from dpfair.errors import DatasetError

DROPPED = ["pidnum", "days", "cd420", "cd496", "r", "cd820", "offtrt", "treat", "zprior", "cens"]

CARD = DatasetCard(
    patient_ids=False,
    name="actg175",
    modality="tabular",
    task="binary classification: primary trial event during follow-up from baseline data",
    outcome=(
        "the ACTG 175 primary event was observed during follow-up: CD4 decline of at least 50%, "
        "an AIDS-defining event, or death (column `cens`)"
    ),
    sensitive_attributes=("sex", "race", "age_group"),
    license="data: speff2trial R package (GPL-2), also UCI ML repository (CC BY 4.0); lifelines wheel: MIT",
    citation=(
        "Hammer SM et al. A trial comparing nucleoside monotherapy with combination therapy in HIV-infected "
        "adults with CD4 cell counts from 200 to 500 per cubic millimeter. N Engl J Med 1996;335:1081-1090"
    ),
    homepage="https://archive.ics.uci.edu/dataset/890/aids+clinical+trials+group+study+175",
    source="lifelines 0.30.3 wheel (lifelines/datasets/ACTG175.csv), read as a zip without installing lifelines",
    dropped=tuple(DROPPED),
)

WHEEL = "lifelines-0.30.3-py3-none-any.whl"
MEMBER = "lifelines/datasets/ACTG175.csv"


@register_dataset(CARD)
def load(*, wheel_dir: str | None = None) -> RawDataset:
    folder = Path(wheel_dir) if wheel_dir else Path(sys.prefix) / "share" / "dpfair"
    wheel = folder / WHEEL
    if not wheel.is_file():
        raise DatasetError(
            f"dataset 'actg175': {wheel} not found; fetch it with "
            f"`pip download --no-deps lifelines==0.30.3 -d {folder}` (make install does this)"
        )
    with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as handle:
        df = pd.read_csv(handle, index_col=0)
    attributes = pd.DataFrame(
        {
            "sex": df["gender"].map({0: "female", 1: "male"}).fillna("unknown"),
            "race": df["race"].map({0: "white", 1: "non_white"}).fillna("unknown"),
            "age_group": age_group(df["age"]),
        }
    ).reset_index(drop=True)
    features = df.drop(columns=DROPPED).assign(arms=lambda d: "arm" + d["arms"].astype(str)).reset_index(drop=True)
    return RawDataset(inputs=features, labels=df["cens"].to_numpy(np.int64), attributes=attributes)
