"""FLCHAIN: serum free light chain assays of 7,874 residents of Olmsted County, Minnesota, aged 50+.

A stratified random half of the study of Dispenzieri et al. (2012), who assayed serum free light chains
(FLC) on blood samples taken in 1995-2003 for Kyle's MGUS prevalence study, and followed the residents
for survival.

Outcome (label 1): death from any cause before the last contact date (the source's ``event``; ``time``
is days from the blood sample to death or last contact, at most 5,215 days, ~14.3 years; median
4,302 days). It is not mortality at a fixed horizon: people sampled later were followed for less time.
Three people died on the day their sample was taken and have ``time`` 0. Prevalence is about 0.28.

Features are the values at the blood sample: age, sex, kappa and lambda FLC, the FLC decile group of the
original analysis, serum creatinine (missing for ~17%), MGUS found at the sample, and the sample's
calendar year. The sample year predicts length of follow-up and so, a little, the outcome; it is a
baseline fact and is kept. Removed:

- ``pid`` (a row id) and ``time`` (follow-up length);
- ``fac_chapter``: ICD-9 chapter of the cause of death, "missing" for everyone alive (the outcome itself);
- ``fac_sample_yr``: a categorical copy of ``num_sample_yr``.

Sensitive attributes: ``sex`` (source F/M -> female/male) and ``age_group`` (age at the sample; no one
is under 50, so ``<40`` is empty).
"""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset

ID_OUTCOME_OR_COPY_COLUMNS = ("pid", "event", "time", "fac_chapter", "fac_sample_yr")

CARD = DatasetCard(
    patient_ids=False,
    name="flchain",
    modality="tabular",
    task="binary classification: death during follow-up from serum free light chain and baseline data",
    outcome=(
        "death from any cause before last contact (follow-up from the 1995-2003 blood sample up to "
        "~14.3 years, median ~11.8); SurvSet column `event`"
    ),
    sensitive_attributes=("sex", "age_group"),
    license="data: R survival package data set (LGPL-2 or later); survset package: GPL-3.0",
    citation=(
        "Dispenzieri A et al. Use of nonclonal serum immunoglobulin free light chains to predict overall "
        "survival in the general population. Mayo Clin Proc 2012;87(6):517-523. "
        "Drysdale E. SurvSet: An open-source time-to-event dataset repository. arXiv:2203.03094"
    ),
    homepage="https://stat.ethz.ch/R-manual/R-devel/library/survival/html/flchain.html",
    source="survset package: SurvSet.data.SurvLoader().load_dataset('flchain')",
    dropped=tuple(ID_OUTCOME_OR_COPY_COLUMNS),
)


@register_dataset(CARD)
def load() -> RawDataset:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:  # GPL package lives in an optional extra
        raise ImportError("flchain needs the survset package: pip install 'dpfair[cohorts]'") from exc
    df = SurvLoader().load_dataset("flchain")["df"].reset_index(drop=True)
    attributes = pd.DataFrame(
        {
            "sex": df["fac_sex"].astype(str).map({"F": "female", "M": "male"}).fillna("unknown"),
            "age_group": age_group(df["num_age"]),
        }
    )
    features = df.drop(columns=list(ID_OUTCOME_OR_COPY_COLUMNS))
    return RawDataset(inputs=features, labels=df["event"].to_numpy(np.int64), attributes=attributes)
