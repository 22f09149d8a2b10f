"""NHEFS: 1,629 adult smokers from the NHANES I Epidemiologic Follow-up Study (Hernán & Robins subset).

The cohort is the one analysed in Hernán & Robins, *Causal Inference: What If*: cigarette smokers aged
25-74 examined at the NHANES I baseline (1971-75) who were interviewed again in 1982. Every person in
it was therefore alive at the 1982 interview.

Outcome (label 1): death from any cause by the end of 1992 (the source's ``death``). Because the cohort
was alive in 1982, every recorded death falls in 1983-1992 (``yrdth``), i.e. within about 10 years of
the 1982 interview and about 20 years after the baseline examination. Prevalence is about 0.20.

Features are what was known at the 1971-75 baseline: age, sex, race, income, marital status, schooling,
height and weight, smoking intensity and years, alcohol use, self-reported diagnoses and medication use,
activity and exercise, pregnancies and birth-control use, serum cholesterol, and the state's 1971
tobacco price and tax. Removed because they are ids, part of the outcome, or recorded after baseline:

- ``seqn`` (personal identifier) and ``id`` (a row number 1..1629);
- ``yrdth``, ``modth``, ``dadth``: the date of death, defined only for those who died;
- ``qsmk``: quit smoking between baseline and 1982;
- ``sbp``, ``dbp``: blood pressure, which the codebook dates to 1982;
- ``wt82``, ``wt82_71``, ``smkintensity82_71``: 1982 weight, weight change and change in cigarettes/day;
- ``hightax82``, ``price82``, ``tax82``, ``price71_82``, ``tax71_82``: 1982 state tobacco price and tax
  and their changes since 1971;
- ``censored``: 1 where the 1982 weight is missing (a follow-up variable);
- ``older``: a copy of ``age > 50``.

Codings, checked against ``causaldata.nhefs_codebook``: ``sex`` 0 = male, 1 = female; ``race`` 0 = white,
1 = black or other. The yes/no history items ``alcoholpy``, ``birthcontrol``, ``boweltrouble``,
``diabetes``, ``hbp``, ``hbpmed`` and ``pica`` use 2 for "missing", and ``marital``, ``birthplace``
(a state code), ``education``, ``active``, ``exercise``, ``alcoholfreq`` and ``alcoholtype`` are
nominal codes; these are passed on as categories, not numbers.

Sensitive attributes: ``sex`` (female/male), ``race`` (white / black_or_other: the source merges
everyone who is not white into one group) and ``age_group`` (age at baseline; no one is 80+).
"""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset

ID_OUTCOME_OR_FOLLOW_UP_COLUMNS = (
    "seqn",
    "id",
    "death",
    "yrdth",
    "modth",
    "dadth",
    "qsmk",
    "sbp",
    "dbp",
    "wt82",
    "wt82_71",
    "smkintensity82_71",
    "hightax82",
    "price82",
    "tax82",
    "price71_82",
    "tax71_82",
    "censored",
    "older",
)

CARD = DatasetCard(
    patient_ids=False,
    name="nhefs",
    modality="tabular",
    task="binary classification: death by 1992 from 1971-75 baseline data of adult smokers",
    outcome=(
        "death from any cause by the end of 1992 (deaths fall in 1983-1992, ~10 years after the 1982 "
        "interview that every member of the cohort attended; ~20 years after baseline); causaldata column `death`"
    ),
    sensitive_attributes=("sex", "race", "age_group"),
    license="data: US public domain (CDC/NCHS NHEFS); causaldata package: MIT",
    citation=(
        "Hernán MA, Robins JM. Causal Inference: What If. Boca Raton: Chapman & Hall/CRC, 2020. "
        "National Center for Health Statistics. NHANES I Epidemiologic Follow-up Study (NHEFS). "
        "Huntington-Klein N. causaldata: Example Data Sets for Causal Inference (Python package)"
    ),
    homepage="https://www.hsph.harvard.edu/miguel-hernan/causal-inference-book/",
    source="causaldata package: causaldata.nhefs.load_pandas().data",
    notes="race is the source's binary white vs black-or-other; only 215 people are in the second group",
    dropped=tuple(ID_OUTCOME_OR_FOLLOW_UP_COLUMNS),
)

#: Codes that name categories (or use 2 for "missing"), not quantities.
CATEGORICAL_COLUMNS = (
    "marital",
    "birthplace",
    "education",
    "active",
    "exercise",
    "alcoholfreq",
    "alcoholtype",
    "alcoholpy",
    "birthcontrol",
    "boweltrouble",
    "diabetes",
    "hbp",
    "hbpmed",
    "pica",
)


@register_dataset(CARD)
def load() -> RawDataset:
    try:
        from causaldata import nhefs
    except ImportError as exc:  # data package lives in the optional extra
        raise ImportError("nhefs needs the causaldata package: pip install 'dpfair[cohorts]'") from exc
    df = nhefs.load_pandas().data.reset_index(drop=True)
    sex = pd.to_numeric(df["sex"].astype(str))
    race = pd.to_numeric(df["race"].astype(str))
    attributes = pd.DataFrame(
        {
            "sex": sex.map({0: "male", 1: "female"}).fillna("unknown").astype(str),
            "race": race.map({0: "white", 1: "black_or_other"}).fillna("unknown").astype(str),
            "age_group": age_group(df["age"]),
        }
    )
    features = df.drop(columns=list(ID_OUTCOME_OR_FOLLOW_UP_COLUMNS))
    features["sex"] = sex
    features["race"] = race
    for col in CATEGORICAL_COLUMNS:
        codes = pd.to_numeric(features[col].astype(str), errors="coerce")
        features[col] = codes.map(lambda v: "missing" if pd.isna(v) else str(int(v))).astype(object)
    return RawDataset(inputs=features, labels=df["death"].to_numpy(np.int64), attributes=attributes)
