"""tools/replay_ledgers.py: a run's privacy claim confirmed by dp-accounting alone, and an overstated one caught."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dpfair.data.prepare import PreparedDataset
from dpfair.pipeline.runner import train_run

TOOL = Path(__file__).resolve().parents[1] / "tools" / "replay_ledgers.py"


def _card(tmp_path: Path, method: str) -> Path:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = (x[:, 0] > 0).float()
    samples = pd.DataFrame(
        {
            "split": ["train"] * 400 + ["val"] * 100 + ["test"] * 100,
            "label": y.int().numpy(),
            "patient_id": np.arange(600) // 2,
        }
    )
    meta = {
        "name": "toy",
        "modality": "tabular",
        "delta": 1e-4,
        "privacy_unit": "record",
        "preprocessing": {},
        "card": {"sensitive_attributes": []},
    }
    out = tmp_path / method
    out.mkdir()
    train_run(
        prepared=PreparedDataset(x=x, y=y, samples=samples, meta=meta),
        model_name="mlp",
        epsilon=1.0,
        seed=0,
        method=method,
        config={"epochs": 2, "batch_size": 50},
        device="cpu",
        model_path=out / "m.pt",
        scores_path=out / "s.csv",
        record_path=out / "r.json",
        card_path=out / "privacy_card.json",
    )
    return out / "privacy_card.json"


def _tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_every_method_s_claim_replays_without_dpfair_and_an_overstated_one_fails(tmp_path):
    for method in ("dpsgd", "dpsgd_patient", "label_rr"):
        _card(tmp_path, method)
    ok = _tool(tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 ledgers replayed" in ok.stdout and "0 over target" in ok.stdout
    assert "unit patient" in ok.stdout and ok.stdout.count("pld epsilon") == 3
    card = json.loads((tmp_path / "dpsgd" / "privacy_card.json").read_text())
    card["target_epsilon"] = 0.5  # the same ledger, claimed as ε = 0.5
    forged = tmp_path / "forged" / "privacy_card.json"
    forged.parent.mkdir()
    forged.write_text(json.dumps(card))
    bad = _tool(forged)
    assert bad.returncode == 1 and "OVER" in bad.stdout and "1 over target" in bad.stdout
    # a private claim whose ledger is missing is not "nothing to replay"
    card["target_epsilon"], card["ledger"] = 2.0, None
    forged.write_text(json.dumps(card))
    missing = _tool(forged)
    assert missing.returncode == 1 and "but no ledger" in missing.stdout
