"""Diabetes (Efron et al. 2004): 442 diabetes patients, the small data set for fast tests.

The data of the Least Angle Regression paper, as shipped with scikit-learn
(``load_diabetes(scaled=False)``: raw values, not the standardised copy).

Outcome (label 1): the quantitative measure of disease progression one year after baseline (sklearn's
``target``, range 25-346) is above its median over the 442 patients (140.5). The measure is not
described further by the source; label 1 is "more progression than the median patient", by
construction prevalence 0.5.

Features are the ten baseline variables: age (years), sex, BMI, average blood pressure, and six serum
measurements (total cholesterol, LDL, HDL, total/HDL ratio, log triglycerides (probably), glucose). The
target is the only column removed.

Sex coding is uncertain. The source codes sex 1/2 and neither Efron et al., the original data page
(Boos, NCSU) nor scikit-learn says which is which. This module reads 1 = female and 2 = male, because
group 1 has markedly higher HDL (mean 54.4 vs 44.6 mg/dL) and lower blood pressure (91.5 vs 98.2), the
direction of the well-known sex differences in adults. It is an inference, flagged in the card's notes;
sex-gap results on this data set must not be read as facts about women and men.

Sensitive attributes: ``sex`` (see above) and ``age_group`` (age at baseline, 19-79; no one is 80+).
"""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset

CARD = DatasetCard(
    patient_ids=False,
    name="diabetes",
    modality="tabular",
    task="binary classification: above-median one-year disease progression from baseline data",
    outcome=(
        "the source's quantitative measure of disease progression one year after baseline is above its "
        "median (140.5) over the 442 patients; sklearn's `target`"
    ),
    sensitive_attributes=("sex", "age_group"),
    license="data: no explicit license (published with Efron et al. 2004); scikit-learn package: BSD-3-Clause",
    citation=("Efron B, Hastie T, Johnstone I, Tibshirani R. Least Angle Regression. Ann Statist 2004;32(2):407-499"),
    homepage="https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html",
    source="scikit-learn: sklearn.datasets.load_diabetes(scaled=False, as_frame=True)",
    notes=(
        "sex coding is undocumented in the source (1/2); read here as 1=female, 2=male from HDL and blood "
        "pressure differences between the groups: uncertain, do not interpret sex gaps as facts about sex"
    ),
)

SEX_CODES = {1: "female", 2: "male"}  # inferred, see the module docstring


#: Median of the 442 patients' progression measure (sklearn's `target`), fixed as the label cut.
MEDIAN_PROGRESSION = 140.5


@register_dataset(CARD)
def load() -> RawDataset:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False, as_frame=True)
    features = bunch.data.reset_index(drop=True).copy()
    target = bunch.target.reset_index(drop=True)
    # A fixed cut (the published median), not one computed from the rows: a data-dependent threshold
    # would let one training patient's value flip other rows' labels, outside the per-row guarantee.
    labels = (target > MEDIAN_PROGRESSION).to_numpy(np.int64)
    attributes = pd.DataFrame(
        {
            "sex": features["sex"].round().astype("Int64").map(SEX_CODES).fillna("unknown").astype(str),
            "age_group": age_group(features["age"]),
        }
    )
    return RawDataset(inputs=features, labels=labels, attributes=attributes)
