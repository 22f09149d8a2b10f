"""SUPPORT2: in-hospital cohort of 9,105 critically ill adults (SUPPORT study, 1989-1994).

Outcome (label 1): the patient died at any time during the study's follow-up, which lasted up to about
5.5 years after study entry (the source's ``event``; ``time`` is days to death or censoring). It is not
in-hospital or 6-month mortality. Prevalence is about 0.68.

Features are the baseline measurements taken at study entry (day 3 of the stay): age, comorbidities,
physiology, labs, functional scores and disease group. Removed because they leak the outcome or were
recorded after baseline:

- ``time`` (follow-up length) and ``pid`` (a row id);
- ``num_surv2m`` and ``num_surv6m``: the SUPPORT prognostic model's 2- and 6-month survival estimates,
  and ``num_sps``, its physiology score. The model and the score were fitted and derived on this same
  cohort's outcomes (Knaus et al. 1995), so they carry every other patient's outcome into each row (a
  cross-row leak), and alone they predict the label about as well as a private model does
  (``num_surv6m`` alone: AUROC 0.741);
- ``fac_sfdm2``: functional status at 2 months, whose "<2 mo. follow-up" level means the patient died;
- ``fac_dnr``: its "dnr after sadm" level is a do-not-resuscitate order written after study entry,
  often shortly before death;
- ``fac_num_co``: a categorical copy of ``num_num_co``.

Sensitive attributes: ``sex``, ``race`` (source codes; missing -> ``unknown``) and ``age_group``.
"""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset

LEAKY_OR_ID_COLUMNS = (
    "pid",
    "event",
    "time",
    "fac_sfdm2",
    "fac_dnr",
    "fac_num_co",
    "num_surv2m",
    "num_surv6m",
    "num_sps",  # fitted or derived on this cohort's outcomes
)

CARD = DatasetCard(
    patient_ids=False,
    name="support2",
    modality="tabular",
    task="binary classification: death during follow-up from baseline ICU-stay data",
    outcome="death at any time during follow-up (up to ~5.5 years after study entry); SurvSet column `event`",
    sensitive_attributes=("sex", "race", "age_group"),
    license="data: public (Vanderbilt Biostatistics / HBiostat); survset package: GPL-3.0",
    citation=(
        "Knaus WA et al. The SUPPORT prognostic model. Ann Intern Med 1995;122(3):191-203. "
        "Drysdale E. SurvSet: An open-source time-to-event dataset repository. arXiv:2203.03094"
    ),
    homepage="https://hbiostat.org/data/repo/Csupport2.html",
    source="survset package: SurvSet.data.SurvLoader().load_dataset('support2')",
    dropped=tuple(LEAKY_OR_ID_COLUMNS),
)


@register_dataset(CARD)
def load() -> RawDataset:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:  # GPL package lives in an optional extra
        raise ImportError("support2 needs the survset package: pip install 'dpfair[cohorts]'") from exc
    df = SurvLoader().load_dataset("support2")["df"].reset_index(drop=True)
    attributes = pd.DataFrame(
        {
            "sex": df["fac_sex"].astype(str),
            "race": df["fac_race"].astype(str).replace({"missing": "unknown", "nan": "unknown"}),
            "age_group": age_group(df["num_age"]),
        }
    )
    features = df.drop(columns=list(LEAKY_OR_ID_COLUMNS))
    return RawDataset(inputs=features, labels=df["event"].to_numpy(np.int64), attributes=attributes)
