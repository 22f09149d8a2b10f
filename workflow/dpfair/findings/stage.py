"""The findings stage: read the summary tables and prepared metas, write findings.csv and the claims file."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import yaml

from dpfair.findings.claims import leaderboard_claims
from dpfair.findings.effects import dataset_info
from dpfair.findings.orientation import validation_aurocs
from dpfair.findings.table import findings_table

log = logging.getLogger(__name__)


def write_findings(
    *,
    auroc_changes: str | Path,
    gap_changes: str | Path,
    metrics: str | Path,
    metas: Sequence[str | Path],
    scores: Sequence[str | Path] = (),
    settings: Mapping,
    evaluation: Mapping,
    benchmark: str,
    table: str | Path,
    claims: str | Path,
) -> pd.DataFrame:
    """Write ``findings.csv`` and ``leaderboard_claims.yaml``; return the findings table.

    ``scores``: the ε = ∞ runs' ``scores.csv``, whose validation rows orient finding 3
    (:mod:`dpfair.findings.orientation`).
    """
    info = dataset_info({m["name"]: m for m in (json.loads(Path(p).read_text()) for p in metas)})
    attributes = settings.get("attributes") or {}
    out = findings_table(
        auroc_changes=pd.read_csv(auroc_changes),
        gap_changes=pd.read_csv(gap_changes),
        info=info,
        models=settings["models"],
        attributes=attributes,
        validation=validation_aurocs(scores, attributes),
        better_off=settings.get("better_off") or {},
        method=settings.get("method", "auto"),
        margin=float(settings.get("margin", 0.02)),
        equivalence_margin=float(evaluation.get("equivalence_margin", 0.03)),
        level=float(evaluation.get("ci_level", 0.95)),
        alpha=float(evaluation.get("alpha", 0.05)),
        power=float(evaluation.get("power", 0.8)),
        tau2_method=settings.get("tau2_method", "reml"),
        interval=settings.get("interval", "hksj_floored"),
    )
    out.to_csv(table, index=False)
    reports = leaderboard_claims(pd.read_csv(metrics), benchmark=benchmark)
    Path(claims).write_text(yaml.safe_dump(reports, sort_keys=False, allow_unicode=True))
    log.info("findings: %d rows over %d datasets; %d leaderboard reports", len(out), len(info), len(reports))
    return out
