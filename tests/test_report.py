"""The report's summary, trade-off, methods and navigation, on tables in the new contracts' form and in today's."""

import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from dpfair.report.frames import read_cards, slug
from dpfair.report.methods import definition_hash
from dpfair.report.page import render_report
from dpfair.report.tradeoff import auroc_costs
from dpfair.report.tradeoff_figures import Styles
from report_fixtures import DATASETS, EPSILONS, METHODS, SEEDS, WIDENS, write_fixture

BANNER = "<strong>Benchmark fixture</strong>: 54 of 54 runs finished"


class Page(HTMLParser):
    """Ids, internal links, sections and images of a page, in document order."""

    def __init__(self, html: str):
        super().__init__()
        self.ids, self.links, self.sections, self.images = [], [], [], []
        self._in_summary = 0
        self.summary_links = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "section":
            self.sections.append(a.get("id"))
            self._in_summary = a.get("id") == "summary"
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
            if self._in_summary:
                self.summary_links.append(a["href"][1:])
        if tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag == "section":
            self._in_summary = False


def summary_of(html: str, dataset: str) -> str:
    """The text of one dataset's summary block, tags removed."""
    block = html[html.index('<section id="summary">') : html.index('<section id="across">')]
    part = block[block.index(f'<h3><a href="#{dataset}">') :]
    part = part[: part.index("</div>\n</div>") if "</div>\n</div>" in part else part.index("</div>")]
    return " ".join(re.sub(r"<[^>]+>", "", part).split())


@pytest.fixture(scope="module")
def new_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("new")
    kwargs = write_fixture(root)
    html = render_report(output=root / "index.html", banner=BANNER, **kwargs)
    return html, kwargs


@pytest.fixture(scope="module")
def old_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("old")
    kwargs = write_fixture(root, with_new_columns=False)
    kwargs.pop("audit"), kwargs.pop("definition")
    return render_report(output=root / "index.html", **kwargs), kwargs


def test_summary_comes_first_after_the_banner_and_every_link_lands(new_report):
    html, _ = new_report
    page = Page(html)
    assert page.sections[0] == "summary" and html.index('id="banner"') < html.index('id="summary"')
    assert BANNER in html  # trusted HTML from the ops banner, rendered as is
    assert not set(page.links) - set(page.ids), sorted(set(page.links) - set(page.ids))[:5]
    assert len(page.ids) == len(set(page.ids))  # ids are unique
    assert len(page.summary_links) > 40
    for needle in ("<script src", "<link ", 'src="http', "@import", "url("):
        assert needle not in html
    assert all(i["src"].startswith("data:image/png;base64,") and i["alt"] for i in page.images)


def test_summary_says_what_the_tables_say(new_report):
    html, _ = new_report
    tabular, imaging = summary_of(html, "tabular"), summary_of(html, "imaging")
    # the planted cost: about −0.15 at ε = 1 on imaging, within 0.02 at ε = 10 on tabular
    cost = re.search(
        r"cnn \(dpsgd\): test AUROC [\d.]+ \[[\d.]+, [\d.]+\] without privacy \(ε = ∞\); DP changes it by "
        r"(−[\d.]+) \[(−[\d.]+), (−[\d.]+)\] at ε = 1",
        imaging,
    )
    assert cost and -0.2 < float(cost.group(1).replace("−", "-")) < -0.1
    assert (
        "1 of 24 headline gap changes (AUROC and TPR gap per attribute and ε) detected, after multiplicity control"
        in tabular
    )
    assert (
        "none of 12 headline gap changes (AUROC and TPR gap per attribute and ε) is detected, after multiplicity control"
        in imaging
    )
    widened = slug("gc", *WIDENS)
    assert f'href="#{widened}">DP at ε = 1 widens the age_group gap' in html and f'<tr id="{widened}">' in html
    assert "certified ε ≥ 0.4 at claimed ε = 1" in imaging and "(loss, one_run, rmia)" in imaging
    assert re.search(r"at ε = 1 \(mlp\), \w+ had the highest AUROC", tabular)
    assert "for tabular/mlp (dpsgd)" in html and "it does not for imaging/cnn (dpsgd)" in html
    # caveats: small groups, record-level protection of 3-row patients, tuning
    assert "site = g3 (n = 8)" in imaging and "up to 3 rows is protected at ε = 3" in imaging
    assert "no meaningful patient-level guarantee" in imaging and "up to 3 rows" not in tabular
    assert "tuned on private data with up to 8 trials, ε per trial 0.12–1.25" in tabular


def test_each_dataset_has_a_tradeoff_figure_with_its_points(new_report):
    html, _ = new_report
    for dataset, (model, attributes, _) in DATASETS.items():
        block = html[html.index(f'id="tradeoff-{dataset}"') :]
        img = re.search(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)"', block)
        assert img and img.group(1).startswith("Trade-off of test AUROC") and dataset in img.group(1)
        for method in METHODS:
            for attr in attributes:
                for eps in EPSILONS:
                    assert f'<tr id="{slug("to", dataset, model, method, attr, eps)}">' in block
    assert 'id="across"' in html and "AUROC cost against target epsilon" in html


def test_methods_list_every_runs_privacy_statement_and_the_definition_hash(new_report):
    html, kwargs = new_report
    rows = re.findall(r'<tr id="(ps-[^"]+)">', html)
    assert len(rows) == len(DATASETS) * len(METHODS) * len(EPSILONS) * len(SEEDS)
    assert html.count("ledger (dp-accounting events)") == len(DATASETS) * len(METHODS) * 2 * len(SEEDS)  # private runs
    assert "dpsgd_patient on imaging/cnn, target ε = 10, seed 2: N = 2000 training rows" in html
    assert "unit of privacy: one patient, 666 units" in html and "by the prv accountant (opacus 1.6.0)" in html
    digest = definition_hash(kwargs["definition"])
    assert digest in html and definition_hash({**kwargs["definition"], "datasets_dir": "/elsewhere"}) == digest
    assert definition_hash({**kwargs["definition"], "seeds": [0]}) != digest
    for package in ("python", "torch", "opacus", "dp-accounting", "fairlearn", "snakemake", "dpfair"):
        assert f'<span class="pkg">{package}</span> ' in html
    checklist = dict(re.findall(r'<td class="l"><a href="#[^"]+">([^<]+)</a></td><td class="l">(\w+)</td>', html))
    assert checklist["Multiplicity control for fairness claims"] == "present"
    assert (
        checklist["Empirical privacy audit"] == "present"
        and checklist["Privacy cost of hyperparameter tuning stated"] == "present"
    )
    assert checklist["Several training seeds"] == "present"


def test_todays_tables_render_and_say_what_is_missing(old_report):
    html, _ = old_report
    page = Page(html)
    assert page.sections[0] == "summary" and 'id="banner"' not in html
    assert not set(page.links) - set(page.ids)
    tabular = summary_of(html, "tabular")
    assert "with no multiplicity control" in tabular and "1 of 8 headline gap changes" in tabular
    assert (
        "Privacy audit (loss-threshold attack)" in tabular and "Best trade-off: one method (dpsgd) ran here" in tabular
    )
    assert "Tuning cost" not in html
    assert "Not available for this run: the report was rendered without the benchmark definition" in html
    checklist = dict(re.findall(r'<td class="l"><a href="#[^"]+">([^<]+)</a></td><td class="l">(\w+)</td>', html))
    assert checklist["Multiplicity control for fairness claims"] == "absent"
    assert checklist["Empirical privacy audit"] == "partial"
    assert len(re.findall(r'<tr id="(ps-[^"]+)">', html)) == len(DATASETS) * len(EPSILONS) * len(SEEDS)


def test_auroc_cost_interval_covers_the_planted_cost():
    """Seeded simulation: three seeds per arm, seed-paired, a shared test set; the interval should cover ≥ 95%."""
    rng = np.random.default_rng(1)
    true_cost, covered, n_sim = -0.05, 0, 200
    for _ in range(n_sim):
        test = rng.normal(0, 0.02)  # the shared test set's draw moves both arms alike
        seed_effect = rng.normal(0, 0.01, 3)
        rows = []
        for eps, mean in ((1.0, 0.80 + true_cost), (math.inf, 0.80)):
            for s in range(3):
                auroc = mean + test + seed_effect[s] + rng.normal(0, 0.01) + rng.normal(0, 0.01)
                rows.append(
                    {
                        "dataset": "d",
                        "model": "m",
                        "method": "dpsgd",
                        "epsilon": eps,
                        "seed": s,
                        "auroc": auroc,
                        "auroc_ci_low": auroc - 1.96 * 0.02,
                        "auroc_ci_high": auroc + 1.96 * 0.02,
                    }
                )
        cost = auroc_costs(pd.DataFrame(rows)).iloc[0]
        covered += cost["cost_low"] <= true_cost <= cost["cost_high"]
    assert covered / n_sim >= 0.95


def test_styles_keep_epsilon_order_in_greyscale():
    styles = Styles(epsilons=[1, 3, 10, math.inf], methods=["dpsgd", "label_rr", "new_method"])
    grey = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b, _ in (styles.colour(e) for e in (1, 3, 10))]
    assert all(b - a > 0.1 for a, b in zip(grey, grey[1:]))  # lighter with each larger ε, visibly apart
    assert styles.colour(math.inf)[:3] == (0, 0, 0) and min(grey) > 0.1
    assert len({styles.marker(m) for m in ("dpsgd", "label_rr", "new_method")}) == 3


def test_cards_are_keyed_from_the_card_the_record_or_the_folders(tmp_path):
    with_method = tmp_path / "results/runs/d/m/label_rr/eps-3/seed-2/privacy_card.json"
    without = tmp_path / "results/runs/d/m/eps-inf/seed-0/privacy_card.json"
    recorded = tmp_path / "elsewhere/privacy_card.json"
    for path in (with_method, without, recorded):
        path.parent.mkdir(parents=True)
    with_method.write_text(json.dumps({"target_epsilon": 3.0, "method": "label_rr"}))
    without.write_text(json.dumps({"target_epsilon": "inf"}))
    recorded.write_text(json.dumps({"target_epsilon": 1}))
    recorded.with_name("run.json").write_text(json.dumps({"dataset": "x", "model": "y", "epsilon": 1, "seed": 4}))
    keys = [
        {k: c[k] for k in ("dataset", "model", "method", "epsilon", "seed")}
        for c in read_cards([with_method, without, recorded])
    ]
    assert keys == [
        {"dataset": "d", "model": "m", "method": "label_rr", "epsilon": 3.0, "seed": 2},
        {"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": math.inf, "seed": 0},
        {"dataset": "x", "model": "y", "method": "dpsgd", "epsilon": 1.0, "seed": 4},
    ]


def test_run_status_heads_the_banner_and_a_card_link_must_be_http(tmp_path):
    kwargs = write_fixture(tmp_path)
    meta_path = kwargs["dataset_meta"][0]
    meta = json.loads(meta_path.read_text())
    meta["card"]["homepage"] = "javascript:alert(1)"
    meta_path.write_text(json.dumps(meta))
    status = {
        "complete": False,
        "finished": 53,
        "expected": 54,
        "failed": [{"run": "d/cnn/dpsgd/eps-1/seed-0", "reason": "<b>out of memory</b>", "log": "results/logs/x.log"}],
    }
    html = render_report(output=tmp_path / "index.html", status=status, **kwargs)
    banner = html[html.index('<div id="banner"') : html.index('<section id="summary">')]
    assert "Benchmark fixture: INCOMPLETE, 53 of 54 runs finished" in banner and 'id="incomplete"' in banner
    assert "&lt;b&gt;out of memory&lt;/b&gt;" in banner and "<code>results/logs/x.log</code>" in banner
    assert "javascript:alert(1)" in html and 'href="javascript:' not in html and 'href="https://example.org"' in html
    complete = render_report(
        output=tmp_path / "complete.html",
        status={"complete": True, "finished": 54, "expected": 54, "failed": []},
        **kwargs,
    )
    assert "Benchmark fixture: complete, 54 of 54 runs." in complete and 'id="incomplete"' not in complete


@pytest.fixture(scope="module")
def verdict_report(tmp_path_factory):
    """The fixture's runs with ``auroc_changes.csv`` computed from them (one shared test set of 200 resamples)."""
    from dpfair.tables.utility_changes import auroc_changes

    root = tmp_path_factory.mktemp("verdicts")
    kwargs = write_fixture(root)
    metrics = pd.read_csv(kwargs["metrics"])
    keys = ["dataset", "model", "method", "epsilon", "seed"]
    shared = np.random.default_rng(3).normal(0, 0.01, 200)
    replicates = pd.concat(
        pd.DataFrame({**{k: r[k] for k in keys}, "attribute": "overall", "group": "overall", "metric": "auroc",
                      "replicate": range(200), "value": r["auroc"] + shared})
        for r in metrics.drop_duplicates(keys).to_dict("records")
    )  # fmt: skip
    table = auroc_changes(estimates=metrics, replicates=replicates)
    table.to_csv(root / "auroc_changes.csv", index=False)
    html = render_report(output=root / "index.html", auroc_changes=root / "auroc_changes.csv", **kwargs)
    return html, table[table["metric"] == "auroc"]


def test_auroc_sentences_and_rule_of_thumb_follow_the_verdicts(verdict_report):
    html, table = verdict_report
    assert "point estimates, no verdict" not in html
    imaging = summary_of(html, "imaging")
    one = table[(table["dataset"] == "imaging") & (table["method"] == "dpsgd") & (table["epsilon"] == 1.0)].iloc[0]
    assert one["verdict_class"] == "costs"  # the planted −0.15 at three seeds
    cost = re.search(
        r"cnn \(dpsgd\): test AUROC [\d.]+ \[[\d.]+, [\d.]+\] without privacy \(ε = ∞\); against it, ε = 1 costs ([\d.]+) \[",
        imaging,
    )
    assert cost and abs(float(cost.group(1)) + one["change"]) < 5e-4
    ten = table[table["epsilon"] == 10.0]
    holds = int((ten["verdict_class"] == "equivalent").sum())
    assert f"holds for {holds} of {len(ten)}" in html
    # every AUROC row's verdict is in its cost-table row, and an equivalence never reads as a cost
    for r in table.to_dict("records"):
        row = html[html.index(f'<tr id="{slug("cost", r["dataset"], r["model"], r["method"], r["epsilon"])}">') :]
        row = row[: row.index("</tr>")]
        assert r["verdict_class"] in row, (r["dataset"], r["method"], r["epsilon"], r["verdict_class"])
    for r in ten[ten["verdict_class"] != "equivalent"].to_dict("records"):
        assert f"{r['dataset']}/{r['model']} ({r['method']}): ε = 10 keeps" not in html


def test_a_tuned_arm_heads_what_dp_costs_and_the_fixed_recipe_is_its_reference(verdict_report, tmp_path):
    """When a benchmark tunes, the headline compares tuned against tuned; the fixed recipe follows as a reference.
    A dataset none of whose arms was tuned says its numbers are one fixed recipe's."""
    from dpfair.report import summary as report_summary

    html, table = verdict_report
    imaging = summary_of(html, "imaging")
    assert report_summary.FIXED_RECIPE_ONLY.split(".")[0] in imaging.replace("&#39;", "'")
    metrics = pd.read_csv(write_fixture(tmp_path)["metrics"])
    tuned_rows = table[(table["dataset"] == "imaging") & (table["method"] == "dpsgd")].assign(
        method="dpsgd-tuned", change=lambda t: t["change"] / 2
    )
    utility = pd.concat([table, tuned_rows])
    imaging_runs = metrics[(metrics["dataset"] == "imaging") & (metrics["method"] == "dpsgd")]
    runs = pd.concat([metrics, imaging_runs.assign(method="dpsgd-tuned")])
    sentences = [
        str(s)
        for s in report_summary.cost_sentences("imaging", pd.DataFrame(), runs[runs["dataset"] == "imaging"],
                                               level=0.95, utility=utility)
    ]  # fmt: skip
    tuned = [i for i, s in enumerate(sentences) if "dpsgd-tuned, privately tuned at every ε and at ε = ∞" in s]
    fixed = [i for i, s in enumerate(sentences) if "(dpsgd, one fixed recipe: reference)" in s]
    assert tuned and fixed and max(tuned) < min(fixed)
    assert not any(report_summary.FIXED_RECIPE_ONLY in s for s in sentences)
    # the rule of thumb counts the tuned arm, not its fixed twin
    rule = str(report_summary.rule_of_thumb(pd.DataFrame(), utility))
    assert "imaging/cnn (dpsgd-tuned)" in rule and "imaging/cnn (dpsgd)" not in rule
