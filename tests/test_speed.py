"""The speed benchmark's table: what it measures and how it labels it. No timing is asserted."""

import pandas as pd
import pytest
from dpfair import models
from dpfair.models import register_model
from dpfair.training.speed import SPEED_COLUMNS, benchmark_cells, measure_speed
from torch import nn


def test_measure_speed_rows_and_ratios():
    table = measure_speed(
        model_name="mlp",
        modality="tabular",
        input_shape=(6,),
        batch_size=16,
        modes=["bookkeeping", "hooks", "ghost"],
        warmup_steps=1,
        timed_steps=3,
        dataset="d",
    )
    assert list(table.columns) == SPEED_COLUMNS
    assert list(table["mode"]) == ["nonprivate", "bookkeeping", "hooks", "ghost"]
    assert (table["status"] == "ok").all() and table["is_default"].sum() == 1
    assert table.loc[table["is_default"], "mode"].item() == "bookkeeping"
    base = table.iloc[0]
    assert base["time_ratio"] == 1.0 and base["memory_ratio"] == 1.0
    for _, row in table.iterrows():  # ratios are this row over the non-private row, not made up
        assert row["time_ratio"] == pytest.approx(row["step_seconds_median"] / base["step_seconds_median"])
        assert row["step_seconds_p25"] <= row["step_seconds_median"] <= row["step_seconds_p75"]
    assert table["input_size"].eq("6").all() and table["threads"].ge(1).all()


def test_a_path_that_cannot_run_the_model_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))  # the test model stays out of the registry

    @register_model("prelu_mlp", modalities=["tabular"])
    def _prelu_mlp(*, input_shape):
        return nn.Sequential(nn.Linear(input_shape[0], 4), nn.PReLU(), nn.Linear(4, 1))

    table = measure_speed(
        model_name="prelu_mlp",
        modality="tabular",
        input_shape=(5,),
        batch_size=8,
        modes=["bookkeeping", "hooks"],
        warmup_steps=0,
        timed_steps=3,
    )
    rows = table.set_index("mode")
    assert (
        rows.loc["bookkeeping", "status"].startswith("unsupported: ValueError")
        and "PReLU" in rows.loc["bookkeeping", "status"]
    )
    assert pd.isna(rows.loc["bookkeeping", "step_seconds_median"]) and pd.isna(rows.loc["bookkeeping", "time_ratio"])
    assert rows.loc["hooks", "status"] == "ok" and rows.loc["hooks", "is_default"]  # auto falls back to hooks


def test_benchmark_cells_writes_one_table(tmp_path):
    import json

    import torch

    torch.save({"x": torch.randn(20, 6), "y": torch.zeros(20)}, tmp_path / "data.pt")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "toy", "modality": "tabular"}))
    out = tmp_path / "speed.csv"
    benchmark_cells(
        cells=[{"dataset": "toy", "model": "mlp", "batch_size": 8, "clipping_backend": "hooks"}],
        data=[tmp_path / "data.pt"],
        meta=[tmp_path / "dataset.json"],
        settings={"modes": ["bookkeeping", "hooks"], "warmup_steps": 0, "timed_steps": 3},
        device="cpu",
        output=out,
    )
    table = pd.read_csv(out)
    assert list(table["dataset"]) == ["toy"] * 3 and table.loc[table["is_default"], "mode"].item() == "hooks"
