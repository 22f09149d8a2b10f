"""The worked example in docs/adding-a-dataset.md runs as written, through the `dpfair` CLI."""

import re

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
    frame = pd.DataFrame({
        "age": rng.integers(30, 95, n),
        "sex": rng.choice(["F", "M"], n),
        "ejection_fraction": rng.normal(38, 10, n).round(),
        "serum_creatinine": rng.lognormal(0.2, 0.4, n).round(2),
        "smoking": rng.choice(["yes", "no"], n),
        "time": rng.integers(4, 280, n),
    })
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
    assert "66 training runs" in capsys.readouterr().out


def test_list_shows_every_module(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_lesions" in out and "support2" in out
