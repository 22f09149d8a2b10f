"""Render ``report/index.html``: one self-contained page (figures inlined as PNG, no network loads)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Iterable

import jinja2
import matplotlib.pyplot as plt
import opacus
import pandas as pd
import torch

import dpfair
from dpfair.metrics import NO_ATTRIBUTE
from dpfair.fairness import METRIC_LABELS
from dpfair.plots import epsilon_label, gap_figure, reliability_figure, seed_summary, subgroup_figure, utility_figure
from dpfair.summary import read_summary

PRIVACY_COLUMNS = [
    ("model", "model"), ("epsilon", "target ε"), ("seed", "seed"), ("epsilon_spent", "ε spent"),
    ("epsilon_rdp", "ε RDP"), ("epsilon_prv", "ε PRV"), ("epsilon_pld", "ε PLD"),
    ("delta", "δ"), ("noise_multiplier", "σ"), ("max_grad_norm", "C"), ("sample_rate", "q"),
    ("expected_batch_size", "E[batch]"), ("sampling", "sampling"), ("epochs", "epochs"), ("steps", "steps"),
    ("accountant", "accountant"), ("n_train", "n_train"), ("privacy_unit", "unit"), ("train_seconds", "train s"),
]


def figure_to_data_uri(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2g}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{value:.0f}"
    return str(value)


#: Fields of the privacy card that are the same for every private run of a dataset, shown once.
CARD_TEXT_FIELDS = [
    ("clipping", "Clipping"), ("sampling", "Sampling"), ("privacy_unit_enforcement", "Privacy unit"),
    ("guarantee_covers", "What the guarantee covers"), ("hyperparameter_selection", "Hyperparameter selection"),
    ("accountant_implementation", "Accountant"), ("secure_rng", "Cryptographically secure RNG"),
]


def _cards_by_dataset(paths: Iterable[str | Path]) -> dict[str, list[tuple[str, str]]]:
    """One private run's card per dataset (paths look like results/runs/<dataset>/<model>/eps-<e>/seed-<s>/…)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        path = Path(path)
        dataset = path.parents[3].name
        card = json.loads(path.read_text())
        if dataset in out or card["accountant"] == "none":
            continue
        out[dataset] = [(label, str(card[key])) for key, label in CARD_TEXT_FIELDS]
    return out


#: Gaps whose change with ε the report shows first; the rest are in a collapsed table.
HEADLINE_GAPS = ("auroc", "tpr")


def gap_change_rows(changes: pd.DataFrame) -> dict[str, list[dict]]:
    """Gap changes vs ε = ∞ as table rows, headline metrics first."""
    rows = {"headline": [], "other": []}
    for r in changes.sort_values(["model", "attribute", "metric", "epsilon"]).to_dict("records"):
        row = {
            "model": r["model"], "attribute": r["attribute"], "metric": METRIC_LABELS.get(r["metric"], r["metric"]),
            "epsilon": epsilon_label(r["epsilon"]), "change": f"{fmt(r['gap_change'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
            "verdict": r["verdict"],
        }
        rows["headline" if r["metric"] in HEADLINE_GAPS else "other"].append(row)
    return rows


def audit_rows(metrics: pd.DataFrame, level: float = 0.95) -> list[dict]:
    """Per (model, ε): attack AUROC over seeds, TPR at low FPR, bound violations and the empirical ε lower bound."""
    runs = metrics.drop_duplicates(["model", "epsilon", "seed"])
    rows = []
    for (model, eps), part in runs.groupby(["model", "epsilon"], sort=True):
        auc = seed_summary(part, "mia_auroc", ["model"], level).iloc[0]
        violated = part["mia_bound_violated"].astype(str).str.lower().eq("true")
        rows.append({
            "model": model, "epsilon": epsilon_label(eps),
            "auroc": f"{fmt(auc['mean'])} [{fmt(auc['low'])}, {fmt(auc['high'])}]",
            "tpr1": fmt(part["mia_tpr_at_1pct_fpr"].mean()), "tpr01": fmt(part["mia_tpr_at_0p1pct_fpr"].mean()),
            "violated": f"{int(violated.sum())} of {len(part)}",
            "eps_lower": fmt(part["mia_epsilon_lower_bound"].max()),
        })
    return rows


def summary_rows(metrics: pd.DataFrame, epsilons: list[float], level: float = 0.95) -> list[dict]:
    """Per (model, ε): AUROC mean [interval] over seeds, ε spent, and per attribute the gap and worst group."""
    rows = []
    runs = metrics.drop_duplicates(["model", "epsilon", "seed"])
    for (model, eps), part in runs.groupby(["model", "epsilon"], sort=True):
        auroc = seed_summary(part, "auroc", ["model"], level).iloc[0]
        row = {
            "model": model,
            "epsilon": epsilon_label(eps),
            "auroc": f"{fmt(auroc['mean'])} [{fmt(auroc['low'])}, {fmt(auroc['high'])}]",
            "epsilon_spent": fmt(part["epsilon_spent"].max()),
            "n_seeds": int(auroc["n_seeds"]),
            "attributes": [],
        }
        cell = metrics[(metrics["model"] == model) & (metrics["epsilon"] == eps) & (metrics["attribute"] != NO_ATTRIBUTE)]
        for attr, m in cell.groupby("attribute", sort=True):
            gap = seed_summary(m, "auroc_gap", ["attribute"], level).iloc[0]
            worst = m["worst_group_auroc"].mean()
            row["attributes"].append({"name": attr, "gap": f"{fmt(gap['mean'])} [{fmt(gap['low'])}, {fmt(gap['high'])}]", "worst": fmt(worst)})
        rows.append(row)
    return rows


def render_report(
    *,
    metrics: str | Path,
    subgroups: str | Path,
    dataset_meta: Iterable[str | Path],
    benchmark: dict,
    output: str | Path,
    privacy_cards: Iterable[str | Path] = (),
    gap_changes: str | Path | None = None,
    reliability: str | Path | None = None,
) -> str:
    """Build every figure and table from the summary CSVs and write one HTML file."""
    metrics_df = read_summary(metrics)
    subgroups_df = read_summary(subgroups)
    changes_df = read_summary(gap_changes) if gap_changes else pd.DataFrame(columns=["dataset"])
    reliability_df = read_summary(reliability) if reliability else pd.DataFrame(columns=["dataset"])
    metas = {m["name"]: m for m in (json.loads(Path(p).read_text()) for p in dataset_meta)}
    cards = _cards_by_dataset(privacy_cards)
    level = float(benchmark.get("evaluation", {}).get("ci_level", 0.95))
    sections = []
    for name, meta in metas.items():
        m = metrics_df[metrics_df["dataset"] == name]
        g = subgroups_df[subgroups_df["dataset"] == name]
        if m.empty:
            continue
        epsilons = sorted(m["epsilon"].unique())
        runs = m.drop_duplicates(["model", "epsilon", "seed"]).sort_values(["model", "epsilon", "seed"])
        sections.append(
            {
                "name": name,
                "meta": meta,
                "group_sizes": {
                    attr: sorted(sizes["test"].items()) for attr, sizes in meta["group_sizes"].items()
                },
                "summary": summary_rows(m, epsilons, level),
                "attributes": sorted(g["attribute"].unique()),
                "figures": {
                    "utility": figure_to_data_uri(utility_figure(m, epsilons, level=level)),
                    "subgroups": figure_to_data_uri(subgroup_figure(g, epsilons)) if not g.empty else None,
                    "gap": figure_to_data_uri(gap_figure(m, epsilons, level=level)) if not g.empty else None,
                },
                "card": cards.get(name, {}),
                "gap_changes": gap_change_rows(changes_df[changes_df["dataset"] == name]),
                "reliability": figure_to_data_uri(reliability_figure(r)) if not (r := reliability_df[reliability_df["dataset"] == name]).empty else None,
                "audit": audit_rows(m, level) if "mia_auroc" in m and m["mia_auroc"].notna().any() else [],
                "audit_figure": (
                    figure_to_data_uri(utility_figure(m, epsilons, value="mia_auroc", ylabel="membership attack AUROC", reference=0.5, level=level))
                    if "mia_auroc" in m and m["mia_auroc"].notna().any() else None
                ),
                "privacy_header": [label for _, label in PRIVACY_COLUMNS],
                "privacy_rows": [
                    [fmt(r[c]) if c != "epsilon" else epsilon_label(r[c]) for c, _ in PRIVACY_COLUMNS]
                    for r in runs.to_dict("records")
                ],
            }
        )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dpfair", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("report.html.j2").render(
        benchmark=benchmark,
        sections=sections,
        level=f"{100 * level:g}",
        epsilons=", ".join(epsilon_label(float(e)) for e in benchmark.get("epsilons", [])),
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        environment={
            "dpfair": dpfair.__version__,
            "torch": torch.__version__,
            "opacus": opacus.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
            + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        },
        fmt=fmt,
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(html, encoding="utf-8")
    return html
