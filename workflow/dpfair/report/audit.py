"""The report's audit section, built from results/summary/audit.csv and audit_roc.csv (one dataset at a time).

Claimed ε beside the certified lower bound (per audit seed: no maximum over seeds, which would need a
correction) and the attacks' empirical estimates (means over seeds); low-FPR ROC curves on log axes;
per-group attack AUROC with intervals. TPR at low FPR is shown empty where the tail holds fewer than 10
held-out rows.

Nothing here names an attack: an attack whose rows carry the metric ``epsilon_lower_bound`` (the one-run
canary audit) is a certified bound, every other one an empirical attack, and each is called by its
registry ``label`` (:mod:`dpfair.audit.registry`), so a new attack shows up without an edit here. An
attack the stage did not run because it does not test the run's privacy unit (a ``skipped`` row) is listed
with the stage's stated reason, and a certified bound says which canary design (which relation) it tests.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dpfair.audit.membership import MIN_TAIL
from dpfair.audit.registry import SKIPPED_METRIC, available_attacks, get_attack
from dpfair.report.fmt import epsilon_label, number
from dpfair.tables.seeds import seed_summary

#: The metric of a certified bound on ε (as opposed to an attack's empirical estimate).
CERTIFIED_METRIC = "epsilon_lower_bound"
#: Line styles of the ROC figure's attacks, in order of attack name (dotted is the diagonal's).
ROC_STYLES = ("-", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))


def attack_label(name: str) -> str:
    """What the report calls attack ``name``: its registry label, or the name for one no longer registered.

    Example:
        >>> attack_label("rmia"), attack_label("retired_attack")
        ('RMIA', 'retired_attack')
    """
    return get_attack(name).label if name in available_attacks() else name


def _overall(audit: pd.DataFrame) -> pd.DataFrame:
    return audit[audit["attribute"].fillna("") == ""]


def _notes(part: pd.DataFrame) -> list[str]:
    """The distinct non-empty notes of ``part``'s rows, in order (none for a table without ``note``)."""
    if "note" not in part.columns:
        return []
    return list(dict.fromkeys(n for n in part["note"].fillna("").astype(str) if n))


def _skipped_entry(attack: str, part: pd.DataFrame) -> dict:
    """A claims-table entry for an attack the stage did not run on these runs: its reason, no figures."""
    reasons = _notes(part) or ["not run"]
    return {
        "name": f"{attack_label(attack)} ({'; '.join(reasons)})",
        "n_seeds": part["seed"].nunique(),
        "auroc": "—",
        "tpr1": "—",
        "tpr01": "—",
        "eps_empirical": "—",
        "violated": "—",
    }


def claim_rows(audit: pd.DataFrame, level: float = 0.95) -> list[dict]:
    """Per (model, method, ε): claimed ε, certified bound per audit seed, each empirical attack's AUROC and ε.

    The certified bounds are the rows with metric :data:`CERTIFIED_METRIC` (followed by the canary design
    their rows note, e.g. ``label canaries``); the empirical attacks are the attacks that report none, in
    order of name. An attack whose rows are all ``skipped`` is listed with the stage's reason and no figures.
    """
    overall = _overall(audit)
    # an attack certifies if it reports a bound anywhere (a seed without its run has no row at all)
    certifying = set(overall.loc[overall["metric"] == CERTIFIED_METRIC, "attack"])
    rows = []
    for (model, method, eps), part in overall.groupby(["model", "method", "epsilon"], sort=True):
        row = {"model": model, "method": method, "epsilon": epsilon_label(eps), "attacks": []}
        bound = part[part["metric"] == CERTIFIED_METRIC]
        row["certified"] = ", ".join(f"{number(v, 2)} (seed {s})" for s, v in zip(bound["seed"], bound["value"])) or "—"
        designs = [n.split(":")[0] for n in _notes(bound)]  # "membership canaries", "label canaries"
        if designs and not bound.empty:
            row["certified"] += f"; {', '.join(designs)}"
        row["exceeds"] = bool(math.isfinite(eps) and (bound["value"] > eps).any())
        for attack in sorted(set(part["attack"])):
            a = part[part["attack"] == attack]
            if (a["metric"] == SKIPPED_METRIC).all():
                row["attacks"].append(_skipped_entry(attack, a))
                continue
            if attack in certifying:
                continue
            wide = a.pivot_table(index="seed", columns="metric", values="value", aggfunc="first").reset_index()
            if "auroc" in wide:
                # each seed's bootstrap interval carries the held-out rows' sampling variance into the mean's interval
                auc_ci = a[a["metric"] == "auroc"].set_index("seed")[["ci_low", "ci_high"]].add_prefix("auroc_")
                wide = wide.join(auc_ci, on="seed")
                auc = seed_summary(wide.assign(k=0), "auroc", ["k"], level).iloc[0]
                auroc = f"{number(auc['mean'])} [{number(auc['low'])}, {number(auc['high'])}]"
            else:
                auroc = "—"
            violated = int((wide.get("bound_violated", pd.Series(dtype=float)) > 0).sum())
            row["attacks"].append(
                {
                    "name": attack_label(attack),
                    "n_seeds": len(wide),
                    "auroc": auroc,
                    "tpr1": number(wide["tpr_at_1pct_fpr"].mean()) if "tpr_at_1pct_fpr" in wide else "—",
                    "tpr01": number(wide["tpr_at_0p1pct_fpr"].mean()) if "tpr_at_0p1pct_fpr" in wide else "—",
                    "eps_empirical": number(wide["epsilon_empirical"].mean(), 2)
                    if "epsilon_empirical" in wide
                    else "—",
                    "violated": f"{violated} of {len(wide)}",
                }
            )
        rows.append(row)
    return rows


def roc_figure(roc: pd.DataFrame) -> plt.Figure | None:
    """TPR against FPR on log axes, one panel per model, one colour per ε, one line style per attack.

    Attacks take :data:`ROC_STYLES` in order of name (loss solid, RMIA dashed), the same in every panel.
    """
    if roc.empty:
        return None
    seed = int(roc["seed"].min())
    roc = roc[roc["seed"] == seed]
    models = sorted(roc["model"].unique())
    epsilons = sorted(roc["epsilon"].unique())
    styles = {a: ROC_STYLES[i % len(ROC_STYLES)] for i, a in enumerate(sorted(roc["attack"].unique()))}
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(epsilons)))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = roc[roc["model"] == model]
        for colour, eps in zip(colours, epsilons):
            for attack, style in styles.items():
                line = part[(part["epsilon"] == eps) & (part["attack"] == attack)].sort_values("fpr")
                if not line.empty:
                    ax.plot(
                        line["fpr"],
                        line["tpr"].clip(lower=1e-4),
                        linestyle=style,
                        color=colour,
                        label=f"ε = {epsilon_label(eps)}, {attack_label(attack)}",
                    )
        grid = np.logspace(-3, 0, 50)
        ax.plot(grid, grid, ":", color="grey", linewidth=1)
        n = part["n_nonmembers"].min()
        if n and MIN_TAIL / n < 1:
            ax.axvspan(1e-3, MIN_TAIL / n, color="grey", alpha=0.12, linewidth=0)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlim(1e-3, 1), ax.set_ylim(1e-3, 1)
        ax.set_xlabel("false-positive rate"), ax.set_ylabel("true-positive rate")
        ax.set_title(f"{model} (seed {seed})", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def group_rows(audit: pd.DataFrame) -> list[dict]:
    """Per-group attack AUROC [interval] (first audited seed), one row per (model, attack, attribute, group), ε as columns."""
    groups = audit[audit["attribute"].fillna("") != ""]
    if groups.empty:
        return []
    groups = groups[groups["seed"] == groups["seed"].min()]
    epsilons = sorted(groups["epsilon"].unique())
    rows = []
    for (model, attack, attribute, group), part in groups.groupby(["model", "attack", "attribute", "group"], sort=True):
        by_eps = {e: r for e, r in zip(part["epsilon"], part.to_dict("records"))}
        cells = [
            f"{number(by_eps[e]['value'], 2)} [{number(by_eps[e]['ci_low'], 2)}, {number(by_eps[e]['ci_high'], 2)}]"
            if e in by_eps
            else "—"
            for e in epsilons
        ]
        n = int(part["n"].iloc[0]) if part["n"].notna().any() else 0
        rows.append(
            {
                "model": model,
                "attack": attack_label(attack),
                "attribute": attribute,
                "group": group,
                "n": n,
                "cells": cells,
            }
        )
    return rows


def audit_section(*, audit: pd.DataFrame, roc: pd.DataFrame, level: float = 0.95, to_uri=None) -> dict | None:
    """Everything the template's audit block shows for one dataset; None when it was not audited."""
    if audit.empty:
        return None
    figure = roc_figure(roc)
    groups = audit[audit["attribute"].fillna("") != ""]
    return {
        "claims": claim_rows(audit, level),
        "roc_figure": to_uri(figure) if (figure is not None and to_uri) else None,
        "groups": group_rows(audit),
        "group_epsilons": [epsilon_label(e) for e in sorted(groups["epsilon"].unique())] if not groups.empty else [],
        "min_tail": MIN_TAIL,
    }
