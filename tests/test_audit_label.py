"""label_rr is audited under the relation it claims: replace one label (label-only DP).

Membership attacks test a relation label_rr does not claim (its features are not protected), so the stage
skips them with a stated reason that reaches audit.csv and the report. The one-run audit (Steinke, Nasr &
Jagielski 2023) runs with label canaries: every canary is trained on, its bit choosing its label between y
and 1 − y, and the attack guesses the label. Honest label_rr passes it; label_rr with its randomized response
switched off while it claims ε = 1 fails it.
"""

import json
import math

import dpfair.training.mechanisms.label_rr as label_rr
import numpy as np
import pandas as pd
import pytest
import torch
from dpfair.audit.one_run import canary_design
from dpfair.audit.registry import SKIPPED_METRIC, available_attacks, get_attack, skip_reason
from dpfair.audit.stage import audit_cell
from dpfair.audit.train_models import train_audit_models
from dpfair.audit.training_adapter import run_settings
from dpfair.data.prepare import PreparedDataset
from dpfair.errors import PrivacyError
from dpfair.pipeline.runner import train_run
from dpfair.report.audit import claim_rows
from dpfair.report.methods import checklist
from scipy.special import expit

N_TRAIN, N_HELD_OUT, DELTA = 1000, 400, 1e-5
TRAINING = {"epochs": 20, "batch_size": 50, "lr": 1e-2}
SETTINGS = {"confidence": 0.95, "n_bootstrap": 50, "guess_counts": [10, 20, 50, 100]}
LABEL_CARD = {"target_epsilon": 1.0, "delta": DELTA, "unit": "label", "neighboring_relation": "replace_one"}


# --- which attacks test which relation, without training ------------------------------------------------


def test_membership_attacks_do_not_test_a_label_guarantee_and_the_canary_audit_does():
    for name in available_attacks():
        attack = get_attack(name)
        assert attack.tests("record") and attack.tests("patient"), name
    assert not get_attack("loss").tests("label") and not get_attack("rmia").tests("label")
    assert get_attack("one_run").tests("label")
    reason = skip_reason(get_attack("rmia"), unit="label", relation="replace_one", method="label_rr")
    assert "label_rr" in reason and "label" in reason and "replace_one" in reason and "membership" in reason
    assert canary_design(unit="label", relation="replace_one") == "label"
    assert canary_design(unit="patient", relation="add_or_remove_one") == "membership"
    with pytest.raises(ValueError, match="no one-run canary design"):
        canary_design(unit="record", relation="replace_one")


@pytest.fixture(scope="module")
def label_cell(tmp_path_factory):
    """A label_rr run's files and both kinds of canary file, without training."""
    folder = tmp_path_factory.mktemp("label")
    rng = np.random.default_rng(0)
    n = 500
    split = np.array(["train"] * 300 + ["val"] * 100 + ["test"] * 100)
    label = rng.integers(0, 2, n)
    logit = (2 * label - 1) * (rng.normal(1.0, 1.0, n) + 1.0 * (split == "train"))  # membership leaks
    pd.DataFrame(
        {"split": split, "label": label, "score": expit(logit), "logit": logit, "sex": np.where(label, "F", "M")}
    ).to_csv(folder / "scores.csv", index=False)
    (folder / "run.json").write_text(json.dumps({"dataset": "toy", "model": "mlp", "seed": 0}))
    (folder / "card.json").write_text(json.dumps(LABEL_CARD))
    (folder / "meta.json").write_text(json.dumps({"card": {"sensitive_attributes": ["sex"]}}))
    rows = np.arange(300, 500)
    bits = rng.integers(0, 2, len(rows))
    flipped = 1 - label[rows]
    canary_logit = (2 * flipped - 1) * rng.normal(0.2 * bits - 0.5, 1.0, len(rows))
    canaries = pd.DataFrame(
        {
            "row": rows,
            "included": bits,
            "label": flipped,
            "logit": canary_logit,
            "score": -np.logaddexp(0, -(2 * flipped - 1) * canary_logit),
        }
    )
    for design in ("label", "membership"):
        canaries.assign(design=design).to_csv(folder / f"canaries-{design}.csv", index=False)
    references = {"row": np.arange(n), "in_0": rng.integers(0, 2, n), "logit_0": rng.normal(size=n)}
    pd.DataFrame(references).to_csv(folder / "references.csv", index=False)
    return folder


def run_label_stage(folder, *, canaries, out, card=None):
    card_path = folder / "card.json"
    if card is not None:
        card_path = out / "card.json"
        card_path.write_text(json.dumps(card))
    audit_cell(
        runs=[{"scores": folder / "scores.csv", "record": folder / "run.json", "card": card_path}],
        meta=folder / "meta.json",
        settings={**SETTINGS, "attacks": ["loss", "rmia", "one_run"]},
        trained={
            "reference_models": {0: folder / "references.csv"},
            "canaries": {0: folder / f"canaries-{canaries}.csv"},
        },
        outputs={"table": out / "audit.csv", "roc": out / "roc.csv"},
        method="label_rr",
    )
    return pd.read_csv(out / "audit.csv", keep_default_na=False, na_values=[""])


def test_the_stage_skips_membership_attacks_on_label_rr_with_the_reason_and_runs_the_label_audit(label_cell, tmp_path):
    table = run_label_stage(label_cell, canaries="label", out=tmp_path)
    for name in ("loss", "rmia"):
        rows = table[table["attack"] == name]
        assert rows["metric"].tolist() == [SKIPPED_METRIC], name  # one row, no figure
        assert rows["value"].isna().all()
        assert "label_rr" in rows["note"].item() and "covers one label (replace_one)" in rows["note"].item()
    bound = table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")
    assert len(bound) == 1 and bound["note"].item().startswith("label canaries")
    roc = pd.read_csv(tmp_path / "roc.csv")
    assert roc.empty  # no membership curve stands for label_rr

    claims = claim_rows(table.assign(attribute=table["attribute"].astype(object)))
    (row,) = claims
    assert row["certified"].endswith("; label canaries")
    skipped = {a["name"]: a for a in row["attacks"]}
    notes = dict(zip(table["attack"], table["note"]))
    assert set(skipped) == {f"loss threshold ({notes['loss']})", f"RMIA ({notes['rmia']})"}
    assert all(a["auroc"] == "—" and a["violated"] == "—" for a in skipped.values())


def test_a_canary_file_of_the_wrong_design_is_refused(label_cell, tmp_path):
    # membership canaries would certify a relation label_rr does not claim; label canaries one dpsgd does not
    with pytest.raises(ValueError, match="holds membership canaries but a label-level run"):
        run_label_stage(label_cell, canaries="membership", out=tmp_path)
    record_card = {**LABEL_CARD, "unit": "record", "neighboring_relation": "add_or_remove_one"}
    with pytest.raises(ValueError, match="holds label canaries but a record-level run"):
        run_label_stage(label_cell, canaries="label", out=tmp_path, card=record_card)


# --- end to end on real label_rr --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared():
    """A linear label on 50 features with a margin (as tests/test_audit_stage.py): only memorising fits a flipped label."""
    g = torch.Generator().manual_seed(0)
    n = N_TRAIN + N_HELD_OUT
    w = torch.nn.functional.normalize(torch.randn(50, generator=g), dim=0)
    x = torch.randn(n, 50, generator=g)
    y = (x @ w > 0).float()
    x += torch.outer(2 * y - 1, w) * 2.0
    split = ["train"] * N_TRAIN + ["val"] * (N_HELD_OUT // 2) + ["test"] * (N_HELD_OUT // 2)
    samples = pd.DataFrame({"split": split, "label": y.int().numpy(), "sex": np.where(np.arange(n) % 3 == 0, "F", "M")})
    meta = {
        "name": "toy",
        "modality": "tabular",
        "delta": DELTA,
        "privacy_unit": "record",
        "preprocessing": {},
        "card": {"sensitive_attributes": ["sex"]},
    }
    return PreparedDataset(x=x, y=y, samples=samples, meta=meta)


def audit_label_rr(prepared, folder, *, epsilon, confidence=0.95):
    """Train label_rr at ``epsilon``, its audit models (reference models asked for too) and run every attack."""
    paths = {k: folder / k for k in ("model.pt", "scores.csv", "run.json", "card.json", "meta.json")}
    paths["meta.json"].write_text(json.dumps(prepared.meta))
    train_run(
        prepared=prepared,
        model_name="mlp",
        epsilon=epsilon,
        seed=0,
        config=TRAINING,
        method="label_rr",
        device="cpu",
        model_path=paths["model.pt"],
        scores_path=paths["scores.csv"],
        record_path=paths["run.json"],
        card_path=paths["card.json"],
    )
    settings = run_settings(
        model="mlp", modality="tabular", epsilon=epsilon, delta=DELTA, training=TRAINING, method="label_rr"
    )
    outputs = {k: folder / f for k, f in (("references", "r.csv.gz"), ("canaries", "c.csv"), ("record", "m.json"))}
    records = train_audit_models(
        prepared=prepared, settings=settings, seed=0, n_reference=2, n_canaries=N_HELD_OUT, outputs=outputs
    )
    table = audit_cell(
        runs=[{"scores": paths["scores.csv"], "record": paths["run.json"], "card": paths["card.json"]}],
        meta=paths["meta.json"],
        settings={**SETTINGS, "attacks": ["loss", "rmia", "one_run"], "confidence": confidence},
        trained={"reference_models": {0: outputs["references"]}, "canaries": {0: outputs["canaries"]}},
        outputs={"table": folder / "audit.csv", "roc": folder / "roc.csv"},
        method="label_rr",
    )
    return records, pd.read_csv(outputs["canaries"]), table


def test_honest_label_rr_passes_its_label_audit(prepared, tmp_path):
    # randomized response is the worst case of its ε and a model fits the labels it is given, so this audit is
    # nearly tight (bounds of 0.4 to 0.9 at ε = 1 and 95% over seeds): at 99.9% an honest run stays clear of 1
    records, canaries, table = audit_label_rr(prepared, tmp_path, epsilon=1.0, confidence=0.999)
    assert records["references"] == []  # only membership attacks read them, and those are skipped
    assert "label-level" in records["not_trained"]["reference_models"]
    run = records["canary_run"]
    assert run["design"] == "label" and run["method"] == "label_rr"
    assert run["n_train"] == N_TRAIN + N_HELD_OUT  # every canary trained on, whatever its bit
    assert (canaries["design"] == "label").all() and len(canaries) == N_HELD_OUT
    bound = table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item()
    assert bound <= 1.0
    assert set(table.query("metric == @SKIPPED_METRIC")["attack"]) == {"loss", "rmia"}


def test_label_rr_without_its_randomized_response_fails_the_label_audit(prepared, tmp_path, monkeypatch):
    # the bug: the labels are recorded as randomized (and the ledger charged) but trained on as they are
    monkeypatch.setattr(label_rr, "randomize_labels", lambda labels, **_: np.asarray(labels).astype(int))
    with pytest.raises(PrivacyError, match="certified lower bound .* exceeds the target"):
        audit_label_rr(prepared, tmp_path, epsilon=1.0)
    table = pd.read_csv(tmp_path / "audit.csv")
    bound = table.query("attack == 'one_run' and metric == 'epsilon_lower_bound'")["value"].item()
    assert bound > 1.0 and math.isfinite(bound)


def test_the_methods_checklist_says_which_attacks_were_not_run_on_label_rr(label_cell, tmp_path):
    table = run_label_stage(label_cell, canaries="label", out=tmp_path)
    metrics = pd.DataFrame(columns=["dataset", "model", "method", "epsilon", "seed", "attribute"])
    empty = pd.DataFrame()
    items = checklist(
        metrics=metrics,
        subgroups=empty,
        changes=empty,
        reliability=empty,
        cards=[],
        metas={},
        audit=table,
        compute_cost=False,
    )
    (audit_item,) = [i for i in items if i["item"] == "Empirical privacy audit"]
    assert audit_item["status"] == "present"
    assert audit_item["note"].startswith("attacks: one_run; not run on label_rr")
    assert audit_item["note"].endswith("loss, rmia")
