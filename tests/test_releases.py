"""Nothing a private run writes is a training-set statistic that its card does not cover or list.

Every key of ``run.json`` must be classified here: a setting or public fact, a function of what the
mechanism released (covered by ε), or a release its card lists under ``released_outside_guarantee``. A new
key fails the test until someone decides which it is, so a new statistic cannot slip out unnoticed.
"""

from __future__ import annotations

import json
import logging
import math

import pytest
from dpfair.data.prepare import prepare_dataset
from dpfair.pipeline.runner import train_run
from dpfair.training.config import TrainConfig

#: Settings, versions, accounting facts and identifiers: not statistics of the training rows.
PUBLIC = {
    "accountant",
    "accounted_sample_rate",
    "augmult",
    "batches_per_epoch",
    "class_weight",
    "clip_policy",
    "clipping_backend",
    "dataset",
    "definition",
    "delta",
    "device",
    "dp_accounting_version",
    "ema_decay",
    "epochs",
    "epsilon",
    "epsilon_per_trial",
    "epsilon_pld",
    "epsilon_prv",
    "epsilon_rdp",
    "epsilon_spent",
    "expected_batch_size",
    "ledger",
    "lr",
    "lr_schedule",
    "monitor_every",  # how often validation was scored: a setting, like the recipe
    "max_grad_norm",
    "max_rows_per_patient",
    "method",
    "model",
    "n_parameters",
    "neighboring_relation",
    "noise_multiplier",
    "noise_seed",
    "opacus_version",
    "optimizer",
    "preprocessing",
    "privacy_unit",
    "sample_rate",
    "sampling",
    "secure_mode",
    "seed",
    "select_best",
    "steps",
    "torch_version",
    "tuning_trials",
    "train_seconds",
    "run_seconds",  # the run's wall time in its job, as train_seconds is the loop's
    # mitigations: the budget split and the noise scales are settings and calibration
    "aux_budget_share",
    "aux_noise_multiplier",
    "noise_multiplier_total",
    "mitigation_attribute",
    # label_rr: the expected number of flips is a function of n, ε and the public prior
    "labels_flipped_expected",
    "mitigation_groups_source",
    "trial_seed",  # a tuned run: the selected trial's training seed, a function of the public run seed
    # DP synthesis: the synthesizer, its library, ρ (calibrated from ε and δ), AIM's rounds (per column, public
    # domain) and the release's wall time, as train_seconds is the loop's
    "synthesizer",
    "synthesis_library",
    "synthesis_rho",
    "synthesis_rounds",
    "synthesis_seconds",
    # a warm start: which parameters trained, and the public weights' sha256 and provenance (public data)
    "trainable",
    "public_weights",
    "public_pretraining",
}
#: The federated block: the schedule, Flower's own ε, each site's σ, q, steps, ε and ledger (accounting facts),
#: and each site's row count, which the card lists (``site_rows``, ``sites[].n_units``).
#: Functions of the mechanism's noisy releases only (post-processing, covered by ε).
COVERED = {
    "noise_bound_mean",
    "noise_bound_max",  # of DPSGD-F's / Global-Adapt's noisy counts
    "global_threshold_final",
    "global_threshold_mean",
    "final_group_bounds",
}
#: Releases outside the guarantee, each named by the card's ``released_outside_guarantee``.
LISTED = {
    "n_train": "training split's size",
    "n_units": "training split's size",
    "synthetic_rows": "training split's size",  # a synthesis release has as many rows as the training split
    "n_val": "validation split",
    "best_epoch": "released epoch",
    "final_val_loss": "validation split",
    "final_train_loss": None,  # must be NaN for a private run
    "nonfinite_units": "non-finite gradient norm",
    "mitigation_groups": "levels",
    "history": "validation split",
    "selected_trial": "selected trial",
    "tuning": "selected trial",  # every trial's recipe, σ, q, steps are covered by the composed ledger
    "federated": "training-row count",  # the federated block holds each site's rows; the rest is schedule and accounting
}


@pytest.fixture(scope="module")
def prepared():
    return prepare_dataset(name="synthetic_lesions", params={"n_samples": 400, "image_size": 16}, min_group_size=5)


@pytest.fixture(scope="module")
def prepared_sites():
    """Three sites, for the federated methods (a site-level guarantee needs at least three)."""
    return prepare_dataset(
        name="synthetic_lesions", params={"n_samples": 400, "image_size": 16, "n_sites": 3}, min_group_size=5
    )


CASES = {
    "dpsgd-tuned": TrainConfig(epochs=1, batch_size=50),
    "dpsgd_global_adapt": TrainConfig(epochs=2, batch_size=50, mitigation={"attribute": "site"}),
    "dpsgd": TrainConfig(epochs=2, batch_size=50, select_best=True, class_weight="balanced"),
    "dpsgd_patient": TrainConfig(epochs=2, batch_size=50),
    "label_rr": TrainConfig(epochs=2, batch_size=50),
    "dpsgd_f": TrainConfig(epochs=2, batch_size=50, mitigation={"attribute": "site"}),
    "fed_dpsgd": TrainConfig(epochs=1, batch_size=50),
    "fed_dp_site": TrainConfig(epochs=1, batch_size=50),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_every_record_key_is_public_covered_or_listed(prepared, prepared_sites, tmp_path, method, caplog):
    caplog.set_level(logging.INFO)
    federated = method.startswith("fed_")
    train_run(
        prepared=prepared_sites if federated else prepared,
        model_name="cnn",
        epsilon=3.0,
        seed=0,
        method=method,
        config=CASES[method],
        tuning={"enabled": True, "trials": 2, "search_space": {"epochs": [1], "expected_batch_size": [50, 100]}},
        federated={"rounds": 2, "local_epochs": 1} if federated else None,
        device="cpu",
        model_path=tmp_path / "m.pt",
        scores_path=tmp_path / "s.csv",
        record_path=tmp_path / "r.json",
        card_path=tmp_path / "c.json",
    )
    record = json.loads((tmp_path / "r.json").read_text())
    card = json.loads((tmp_path / "c.json").read_text())
    listed = " ".join(card["released_outside_guarantee"])
    unclassified = set(record) - PUBLIC - COVERED - set(LISTED)
    assert not unclassified, f"run.json keys nobody classified: {sorted(unclassified)}"
    for key, phrase in LISTED.items():
        if record.get(key) not in (None, []) and phrase is not None:
            assert phrase in listed, f"{key} is released but the card does not list '{phrase}'"
    if record["class_weight"] == "balanced":
        assert "positive class weight" in listed
    if method == "label_rr":
        assert "label prior" in listed
    # the training loss is a mean of unbounded per-row losses that no event charges
    assert record["final_train_loss"] is None or math.isnan(record["final_train_loss"])  # NaN is null in JSON
    assert all(
        set(entry) <= {"epoch", "steps", "epsilon_so_far", "val_auroc", "val_loss"} for entry in record["history"]
    )
    assert "train_loss" not in caplog.text and "labels_flipped " not in caplog.text
    assert "labels_flipped" not in record
