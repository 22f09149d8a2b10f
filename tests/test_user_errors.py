"""What a new user sees when something is wrong: one `error:` line naming the file or key, never a traceback."""

import json

import numpy as np
import pytest
from dpfair.data import get_dataset
from dpfair.errors import ConfigError, DatasetError
from dpfair.logs import error_record_path
from dpfair.pipeline.benchmark import load_benchmark, load_yaml, validate_config
from dpfair.pipeline.cli import main
from dpfair.pipeline.outcome import run_status, write_notice
from dpfair.pipeline.preflight import check_delta_against_prepared, check_device
from dpfair.report.page import safe_url

RAISING = """
from dpfair.data import DatasetCard, register_dataset

CARD = DatasetCard(name="raising", modality="tabular", task="t", outcome="o", sensitive_attributes=(),
                   license="l", citation="c", homepage="https://example.org")


@register_dataset(CARD)
def load():
    raise FileNotFoundError("/data/raising.csv")
"""


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error"), err
    assert "Traceback" not in err
    return lines[0]


def test_config_check_on_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path / "nope.yaml")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "nope.yaml: cannot read the file (No such file or directory)" in line


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bench.yaml"
    bad.write_text("name: x\nmodels: [mlp\nepsilons: [1]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"bench.yaml, line 3, column \d+: not valid YAML"):
        load_yaml(bad)
    assert main(["config", "check", str(bad)]) == 2
    assert "bench.yaml, line 3" in one_error_line(capsys.readouterr().err)


def test_a_key_written_twice_names_the_key_and_both_lines(tmp_path, capsys):
    bad = tmp_path / "bench.yaml"
    bad.write_text(
        "datasets:\n  support2:\n    primary: {attributes: [sex]}\n    primary: {attributes: [race]}\n"
        "models: [mlp]\nepsilons: [1]\nseeds: [0]\n"
    )
    with pytest.raises(ConfigError, match=r"bench.yaml, line 4, column 5: not valid YAML: key 'primary' appears twice"):
        load_yaml(bad)
    assert main(["config", "check", str(bad)]) == 2
    assert "(first on line 3)" in one_error_line(capsys.readouterr().err)


def test_schema_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bench.yaml"
    bad.write_text(
        "datasets: {support2: null}\nmodels: [mlp]\nepsilons: [1]\nseeds: [0]\nepochs: 3\ntraining: {lr: fast}\n"
    )
    assert main(["config", "check", str(bad)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "epochs" in line and "training.lr" in line


@pytest.mark.parametrize(
    "section, message",
    [
        ("audit: {attacks: [loss, lira]}", "audit.attacks[1] = 'lira' is not a known attack; allowed: ['loss', "),
        (
            "privacy: {clip_policy: auto}",
            "privacy.clip_policy = 'auto' is not a known clip policy; allowed: ['flat', 'normalized']",
        ),
        ("privacy: {accountant: gdp}", "privacy.accountant = 'gdp' is not a known accountant; allowed: ['prv', 'rdp']"),
    ],
)
def test_names_unknown_to_their_registry_are_one_line(tmp_path, capsys, section, message):
    bad = tmp_path / "bench.yaml"
    bad.write_text(f"datasets: {{support2: null}}\nmodels: [mlp]\nepsilons: [1]\nseeds: [0]\n{section}\n")
    assert main(["config", "check", str(bad)]) == 2
    assert message in one_error_line(capsys.readouterr().err)


def test_datasets_check_on_a_raising_loader_is_one_line(tmp_path, capsys):
    (tmp_path / "raising.py").write_text(RAISING)
    assert main(["datasets", "check", "raising", "--datasets-dir", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "raising.py: the loader raised FileNotFoundError: /data/raising.csv" in line


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([[0.0], [0.7], [1.0]] * 12), r"value\(s\) that are not whole class indices, e\.g\. \[0\.7\]"),
        (np.array([[0.0], [1.5], [1.0]] * 12), r"e\.g\. \[1\.5\]"),
        (np.array([["benign"], ["malignant"], ["benign"]] * 12), r"holds <U9 values \['benign', 'malignant'\]"),
    ],
)
def test_medmnist_refuses_labels_that_are_not_class_codes(tmp_path, labels, message):
    """0.7 used to become class 0 ("one class only"), 1.5 class 1, and text a raw ValueError."""
    medmnist = get_dataset("medmnist")
    params = medmnist.make_example(tmp_path, flag="pneumoniamnist", n_per_split=36)
    path = tmp_path / "pneumoniamnist.npz"
    arrays = dict(np.load(path))
    arrays["train_labels"] = labels
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message):
        medmnist.load(**params)


def test_multilabel_flags_must_be_0_or_1(tmp_path):
    medmnist = get_dataset("medmnist")
    params = medmnist.make_example(tmp_path, flag="chestmnist")
    path = tmp_path / "chestmnist.npz"
    arrays = dict(np.load(path))
    arrays["val_labels"] = arrays["val_labels"].astype(np.int64) * 2
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=r"val_labels has finding flags \[2\]; expected 0 or 1"):
        medmnist.load(**params)


def test_homepage_links_only_for_http_urls():
    assert safe_url("https://www.physionet.org/content/x/") == "https://www.physionet.org/content/x/"
    for bad in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>",
        "//evil.org",
        "",
        'https://a.org" onmouseover="x',
        "file:///etc/passwd",
        None,
    ):
        assert safe_url(bad) is None, bad


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device: 'cuda:1' but this machine has no CUDA GPU"):
        check_device("cuda:1", cuda_available=torch.cuda.is_available())
    check_device("auto", cuda_available=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_device("cuda", cuda_available=torch.cuda.is_available())


def test_device_auto_picks_cuda_when_present(monkeypatch):
    import torch
    from dpfair.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_delta_is_checked_against_a_prepared_dataset_before_any_job(tmp_path):
    config = {
        "datasets": {"synthetic_lesions": {"params": {"n_samples": 300}}},
        "models": ["cnn"],
        "epsilons": [1],
        "seeds": [0],
        "privacy": {"delta": 0.01},
    }
    meta = tmp_path / "dataset.json"
    benchmark = validate_config(json.loads(json.dumps(config)))
    check_delta_against_prepared(benchmark, meta_path=lambda name: meta)  # not prepared yet: the job checks
    meta.write_text(json.dumps({"module": "synthetic_lesions", "params": {"n_samples": 300}, "n": {"train": 210}}))
    with pytest.raises(
        ConfigError, match=r"privacy.delta = 0.01 but this dataset has n_train = 210.*nothing was run or deleted"
    ):
        check_delta_against_prepared(benchmark, meta_path=lambda name: meta)
    # prepared with other params: its n_train says nothing about this config's
    meta.write_text(json.dumps({"module": "synthetic_lesions", "params": {"n_samples": 5000}, "n": {"train": 3500}}))
    check_delta_against_prepared(benchmark, meta_path=lambda name: meta)


def test_every_shipped_benchmark_passes_the_preflight(repo):
    for path in sorted((repo / "benchmarks").glob("*.yaml")):
        check_delta_against_prepared(load_benchmark(path), meta_path=lambda name: repo / "no-such-dir" / name)


def _failed_job_log(path, error: str):
    """A job log with the error record its job leaves when it raises."""
    path.write_text("...")
    error_record_path(path).write_text(json.dumps({"error": error}))
    return path


def test_run_status_names_the_failed_job_and_its_error(tmp_path):
    done = tmp_path / "a.csv"
    done.write_text("x")
    log = _failed_job_log(tmp_path / "train.log", "PrivacyError: epsilon spent 1.2 above target 1")
    killed = tmp_path / "killed.log"
    killed.write_text("epoch 1/3")
    runs = [
        {"label": "d/m/eps-1/seed-0", "outputs": [str(done)], "logs": []},
        {
            "label": "d/m/eps-1/seed-1",
            "outputs": [str(tmp_path / "missing.csv")],
            "logs": [str(tmp_path / "p.log"), str(log)],
        },
        {"label": "d/m/eps-1/seed-2", "outputs": [str(tmp_path / "missing.csv")], "logs": [str(killed)]},
        {
            "label": "d/m/eps-1/seed-3",
            "outputs": [str(tmp_path / "missing.csv")],
            "logs": [str(tmp_path / "never.log")],
        },
    ]
    status = run_status(runs)
    assert (status["expected"], status["finished"], status["complete"]) == (4, 1, False)
    reasons = {f["run"]: (f["reason"], f["log"]) for f in status["failed"]}
    assert reasons["d/m/eps-1/seed-1"] == ("PrivacyError: epsilon spent 1.2 above target 1", str(log))
    assert "recorded no error (killed" in reasons["d/m/eps-1/seed-2"][0]
    assert reasons["d/m/eps-1/seed-3"][0].startswith("not run")


def test_a_report_that_cannot_render_replaces_the_old_page(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<h1>dpfair: last-week</h1>")
    status = {
        "expected": 2,
        "finished": 0,
        "complete": False,
        "failed": [{"run": "d/<m>", "reason": "OSError: <disk>", "log": "x.log"}],
    }
    write_notice(output=page, benchmark={"name": "this-week"}, status=status, error="RuntimeError: no run finished")
    html = page.read_text()
    assert "last-week" not in html and "this-week: no report" in html and "0 of 2 runs" in html
    assert "&lt;disk&gt;" in html and "<disk>" not in html


def test_a_failed_audit_is_listed_although_every_run_finished(tmp_path):
    from dpfair.pipeline.outcome import stage_status

    done = tmp_path / "metrics.csv"
    done.write_text("x")
    train_log = _failed_job_log(tmp_path / "audit_train.log", "ConfigError: mitigation.attribute = 'site' ...")
    runs = [{"label": "d/cnn/dpsgd_f/eps-1/seed-0", "outputs": [str(done)], "logs": []}]
    audits = [
        {
            "label": "audit: d/cnn/dpsgd_f/eps-1",
            "outputs": [str(tmp_path / "audit.csv")],
            "logs": [str(train_log), str(tmp_path / "audit.log")],
        }
    ]
    status = stage_status(runs, audits)
    assert (status["expected"], status["finished"], status["complete"]) == (1, 1, False)
    assert status["failed"] == [
        {
            "run": "audit: d/cnn/dpsgd_f/eps-1",
            "reason": "ConfigError: mitigation.attribute = 'site' ...",
            "log": str(train_log),
        }
    ]
