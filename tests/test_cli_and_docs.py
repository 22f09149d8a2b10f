"""The worked example in docs/adding-a-dataset.md runs as written, through the `dpfair` CLI; the README
reaches every docs page, each section of the old long README is where the README sends a reader, and every
relative link (with its #anchor) resolves."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dpfair.pipeline.cli import main


@pytest.fixture
def heart_module(repo, tmp_path):
    doc = (repo / "docs" / "adding-a-dataset.md").read_text()
    module = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "register_dataset" in b)
    folder = tmp_path / "datasets"
    folder.mkdir()
    (folder / "heart_cohort.py").write_text(module)
    return folder


def heart_csv(path, n=400, nan_labels=0):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(30, 95, n),
            "sex": rng.choice(["F", "M"], n),
            "ejection_fraction": rng.normal(38, 10, n).round(),
            "serum_creatinine": rng.lognormal(0.2, 0.4, n).round(2),
            "smoking": rng.choice(["yes", "no"], n),
            "time": rng.integers(4, 280, n),
        }
    )
    frame["death"] = (rng.uniform(size=n) < 1 / (1 + np.exp((frame["ejection_fraction"] - 30) / 8))).astype(float)
    frame.loc[: nan_labels - 1, "death"] = np.nan
    frame.to_csv(path, index=False)
    return path


def test_doc_example_module_checks_out(heart_module, tmp_path, capsys):
    csv = heart_csv(tmp_path / "heart.csv")
    code = main(["datasets", "check", "heart_cohort", "--param", f"path={csv}", "--datasets-dir", str(heart_module)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "heart_cohort: OK" in out
    assert re.search(r"rows:\s+train 279\s+val 61\s+test 60", out)
    assert "age_group (train / val / test):" in out and "female" in out


def test_doc_example_error_is_the_documented_one(heart_module, tmp_path, capsys):
    csv = heart_csv(tmp_path / "heart.csv", nan_labels=3)
    code = main(["datasets", "check", "heart_cohort", "--param", f"path={csv}", "--datasets-dir", str(heart_module)])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: dataset 'heart_cohort': labels has 3 NaN or non-numeric value(s)" in err


def test_config_check_prints_the_grid(repo, capsys):
    assert main(["config", "check", str(repo / "benchmarks" / "default.yaml")]) == 0
    # dpsgd on both cells (24), dpsgd_patient on the images (12), dpsgd_f and dpsgd_global_adapt at finite ε (18),
    # dpsgd-tuned on the images at every ε (12)
    assert "96 training runs" in capsys.readouterr().out  # 2 cells × 4 ε × 12 seeds


def test_list_shows_every_module(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_lesions" in out and "support2" in out


DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"

#: The sections of the former 757-line README and where each one lives now (file, heading).
MOVED = {
    "Quick start": ("README.md", "Quick start"),
    "The default benchmark": ("docs/results.md", "The default benchmark"),
    "Running other benchmarks": ("docs/running.md", "Running other benchmarks"),
    "On a GPU": ("docs/running.md", "On a GPU"),
    "On a SLURM cluster": ("docs/running.md", "On a SLURM cluster"),
    "When things go wrong": ("docs/running.md", "When things go wrong"),
    "Recipes and private tuning": ("docs/tuning.md", "Recipes and private tuning"),
    "Output contract": ("docs/outputs.md", "The output contract"),
    "Speed of DP-SGD": ("docs/speed.md", "Speed of DP-SGD"),
    "What the fairness numbers mean": ("docs/fairness.md", "What the fairness numbers mean"),
    "What the privacy numbers mean": ("docs/privacy.md", "What the privacy numbers mean"),
    "What the privacy numbers mean: the audit": ("docs/audit.md", "The privacy audit"),
    "Fairness mitigations: DPSGD-F and DPSGD-Global-Adapt": (
        "docs/mitigations.md",
        "Fairness mitigations: DPSGD-F and DPSGD-Global-Adapt",
    ),
    "Datasets and benchmark definitions": ("docs/datasets.md", "Datasets"),
    "Datasets and benchmark definitions: the definitions": ("README.md", "Benchmarks"),
    "Adding a dataset": ("docs/adding-a-dataset.md", "Adding a dataset"),
    "Layout": ("README.md", "Package map"),
    "Licenses of data": ("docs/datasets.md", "Licenses of data"),
}


def headings(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [h.strip() for h in re.findall(r"^#{1,6} (.+)$", text, re.M)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def links(path: Path) -> list[tuple[str, str]]:
    """Relative Markdown links of ``path`` as (target file, anchor)."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        found.append((file, anchor))
    return found


def test_readme_links_every_docs_page():
    linked = {(README.parent / f).resolve() for f, _ in links(README) if f}
    unlinked = sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked)
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for file, anchor in links(page):
        target = (page.parent / file).resolve() if file else page
        assert target.exists(), f"{page.name} links {file}, which does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in {slug(h) for h in headings(target)}, f"{page.name} links {file}#{anchor}: no such heading"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_each_former_readme_section_is_reachable(old):
    file, heading = MOVED[old]
    target = README.parent / file
    assert heading in headings(target), f"{old!r}: {file} has no heading {heading!r}"
    if target != README:
        assert target.resolve() in {(README.parent / f).resolve() for f, _ in links(README) if f}


def test_the_docs_say_what_the_code_does_about_tuning_and_validation():
    def flat(path):
        return " ".join(path.read_text().split())

    privacy = flat(DOCS / "privacy.md")
    everything = " ".join(flat(p) for p in [README, *DOCS.glob("*.md")])
    assert "No hyperparameter search runs on private data" not in everything
    assert "it never selects a model" not in everything
    assert "Fixed-recipe runs (" in privacy and "do no hyperparameter search" in privacy
    assert "run a random search over a fixed, public number of trials" in privacy and "inside the target ε" in privacy
    assert "validation split gets no DP protection" in privacy
