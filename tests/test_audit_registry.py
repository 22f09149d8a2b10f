"""Adding an attack is one file: every registered attack keeps the stage's contract, and an attack written in a
temporary module (the worked example of docs/adding-an-attack.md among them) reaches the config check, the
plan, the audit table and the report without an edit anywhere else."""

import importlib
import json
import re
import sys

import dpfair.audit.attacks
import numpy as np
import pandas as pd
import pytest
from dpfair.audit.plan import audit_plan
from dpfair.audit.registry import NEEDS, available_attacks, get_attack, unregister_attack
from dpfair.audit.stage import AUDIT_COLUMNS, ROC_COLUMNS, audit_cell, stack_audit_tables
from dpfair.pipeline.benchmark import validate_config
from dpfair.report.audit import audit_section, claim_rows
from scipy.special import expit

SEEDS, REFERENCE_SEED = (0, 1), 0
SETTINGS = {"confidence": 0.95, "n_bootstrap": 50, "guess_counts": [10, 20, 50], "rmia_gamma": 1.0}
PLAN_CONFIG = {
    "audit": {"reference_models": 2, "reference_seeds": [REFERENCE_SEED], "canaries": 200},
    "evaluation": {"membership_inference": True},
}
BENCHMARK = {
    "datasets": {"synthetic_lesions": {"params": {"n_samples": 100}}},
    "models": ["cnn"],
    "epsilons": [1],
    "seeds": [0],
}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """One audited cell without training: two seeds' runs with logits that favour members a little, the
    reference models and the canary run of the reference seed (the files audit_train writes)."""
    folder = tmp_path_factory.mktemp("cell")
    rng = np.random.default_rng(0)
    n_train, n_held_out = 300, 200
    n = n_train + n_held_out
    split = np.array(["train"] * n_train + ["val"] * (n_held_out // 2) + ["test"] * (n_held_out // 2))
    label = rng.integers(0, 2, n)
    member = split == "train"
    (folder / "meta.json").write_text(json.dumps({"card": {"sensitive_attributes": ["sex"]}}))
    runs = []
    for seed in SEEDS:
        logit = (2 * label - 1) * (rng.normal(1.0, 1.0, n) + 0.4 * member)
        pd.DataFrame(
            {
                "split": split,
                "label": label,
                "score": expit(logit),
                "logit": logit,
                "sex": np.where(np.arange(n) % 3 == 0, "F", "M"),
            }
        ).to_csv(folder / f"scores-{seed}.csv", index=False)
        (folder / f"run-{seed}.json").write_text(json.dumps({"dataset": "toy", "model": "mlp", "seed": seed}))
        (folder / f"card-{seed}.json").write_text(json.dumps({"target_epsilon": 1.0, "delta": 1e-5, "unit": "record"}))
        runs.append(
            {
                "scores": folder / f"scores-{seed}.csv",
                "record": folder / f"run-{seed}.json",
                "card": folder / f"card-{seed}.json",
            }
        )
    references = {"row": np.arange(n)}
    for k in range(2):
        inside = rng.uniform(size=n) < 0.5
        references[f"in_{k}"] = inside.astype(int)
        references[f"logit_{k}"] = (2 * label - 1) * (rng.normal(1.0, 1.0, n) + 0.4 * inside)
    pd.DataFrame(references).to_csv(folder / NEEDS["reference_models"].file, index=False)
    rows = np.sort(rng.choice(np.arange(n_train, n), size=150, replace=False))
    included, flipped = rng.integers(0, 2, len(rows)), 1 - label[rows]
    logit = (2 * flipped - 1) * rng.normal(0.3 * included - 0.5, 1.0, len(rows))
    pd.DataFrame(
        {
            "row": rows,
            "included": included,
            "label": flipped,
            "logit": logit,
            "score": -np.logaddexp(0, -(2 * flipped - 1) * logit),
        }
    ).to_csv(folder / NEEDS["canaries"].file, index=False)
    trained = {name: {REFERENCE_SEED: folder / need.file} for name, need in NEEDS.items()}
    return {"folder": folder, "runs": runs, "meta": folder / "meta.json", "trained": trained}


def run_stage(cell, attacks, out):
    """The audit stage on the cell with ``attacks``; returns its table and ROC points as written."""
    out.mkdir(parents=True, exist_ok=True)
    outputs = {"table": out / "audit.csv", "roc": out / "roc.csv"}
    audit_cell(
        runs=cell["runs"],
        meta=cell["meta"],
        settings={**SETTINGS, "attacks": list(attacks)},
        trained=cell["trained"],
        outputs=outputs,
    )
    read = {"keep_default_na": False, "na_values": ["", "nan", "NaN"], "dtype": {"group": str, "attribute": str}}
    table = pd.read_csv(outputs["table"], **read)
    return table.fillna({"attribute": "", "group": ""}), pd.read_csv(outputs["roc"])


def check_stage_contract(table, roc, name):
    """What the stage and the report rely on from any attack's rows."""
    attack = get_attack(name)
    rows = table[table["attack"] == name]
    assert not rows.empty, f"attack {name} wrote no rows"
    assert list(table.columns) == AUDIT_COLUMNS and list(roc.columns) == ROC_COLUMNS
    # an attack with needs runs where they were trained (the reference seed), one without on every seed
    assert set(rows["seed"]) == ({REFERENCE_SEED} if attack.needs else set(SEEDS))
    assert rows["metric"].map(lambda m: isinstance(m, str) and m != "").all()
    assert pd.to_numeric(rows["value"], errors="coerce").notna().sum() > 0
    bounded = rows.dropna(subset=["ci_low", "ci_high"])
    assert (bounded["ci_low"] <= bounded["ci_high"]).all()
    per_group = rows[rows["attribute"] != ""]
    assert per_group["group"].ne("").all() and set(per_group["attribute"]) <= {"sex"}


@pytest.mark.parametrize("name", available_attacks())
def test_every_registered_attack_runs_in_the_stage_and_keeps_its_contract(cell, tmp_path, name):
    table, roc = run_stage(cell, [name], tmp_path)
    check_stage_contract(table, roc, name)
    assert set(table["attack"]) == {name} and set(roc["attack"]) <= {name}


# --- an attack in a temporary module --------------------------------------------------------------------


@pytest.fixture
def add_attack_module(tmp_path, monkeypatch):
    """``add(source) -> [names]``: ``source`` as a module of the attacks package, found by the registry's own discovery.

    The module's file lies under tmp_path, which joins the package's search path (as a file in
    dpfair/audit/attacks/ would be found); afterwards the path, the module and its attacks are removed.
    """
    folder = tmp_path / "more_attacks"
    folder.mkdir()
    monkeypatch.setattr(dpfair.audit.attacks, "__path__", [*dpfair.audit.attacks.__path__, str(folder)])
    modules, added = [], []

    def add(source: str) -> list[str]:
        before = set(available_attacks())
        module = f"tmp_attack_{len(modules)}"
        (folder / f"{module}.py").write_text(source)
        importlib.invalidate_caches()  # the folder was listed before the file existed
        modules.append(f"{dpfair.audit.attacks.__name__}.{module}")
        names = sorted(set(available_attacks()) - before)
        added.extend(names)
        return names

    yield add
    for name in added:
        unregister_attack(name)
    for module in modules:
        sys.modules.pop(module, None)


def documented_attack(repo) -> str:
    doc = (repo / "docs" / "adding-an-attack.md").read_text()
    return next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "register_attack" in b)


def test_the_documented_attack_is_one_file_and_reaches_every_output(repo, cell, tmp_path, add_attack_module):
    doc = (repo / "docs" / "adding-an-attack.md").read_text()
    assert add_attack_module(documented_attack(repo)) == ["confidence"]
    assert "attacks: [loss, rmia, one_run, confidence]" in doc  # the YAML line the doc shows
    attack = get_attack("confidence")
    assert attack.label == "confidence threshold" and attack.needs == frozenset()

    # the config check and the plan know it from the registry
    benchmark = validate_config({**BENCHMARK, "audit": {"attacks": ["loss", "rmia", "one_run", "confidence"]}})
    assert benchmark.config["audit"]["attacks"][-1] == "confidence"
    plan = audit_plan(
        {**PLAN_CONFIG, "audit": {**PLAN_CONFIG["audit"], "attacks": ["confidence"]}},
        seeds=list(SEEDS),
        epsilons=["1"],
        cells=[("d", "m")],
    )
    assert plan.trained_seeds == [] and plan.training_settings == {"n_reference": 0, "n_canaries": 0}

    # the stage writes its rows beside the built-in attacks' rows, which do not change
    defaults = ["loss", "rmia", "one_run"]
    table, roc = run_stage(cell, [*defaults, "confidence"], tmp_path / "with")
    alone, alone_roc = run_stage(cell, defaults, tmp_path / "without")
    check_stage_contract(table, roc, "confidence")
    pd.testing.assert_frame_equal(table[table["attack"] != "confidence"].reset_index(drop=True), alone)
    pd.testing.assert_frame_equal(roc[roc["attack"] != "confidence"].reset_index(drop=True), alone_roc)
    assert "confidence" in set(roc["attack"])

    # the summary table and the report carry it, by its label
    stacked = stack_audit_tables(
        tables=[tmp_path / "with" / "audit.csv"],
        rocs=[tmp_path / "with" / "roc.csv"],
        outputs={"table": tmp_path / "summary.csv", "roc": tmp_path / "summary_roc.csv"},
    )
    assert "confidence" in set(stacked["attack"])
    claims = claim_rows(stacked)
    assert [a["name"] for a in claims[0]["attacks"]] == ["confidence threshold", "loss threshold", "RMIA"]
    section = audit_section(
        audit=stacked, roc=pd.read_csv(tmp_path / "summary_roc.csv"), to_uri=lambda figure: "figure"
    )
    assert "confidence threshold" in {g["attack"] for g in section["groups"]}


CANARY_COUNTER = '''
from dpfair.audit.registry import AttackResult, register_attack


@register_attack("canary_share", label="included canaries", needs={"canaries"})
def canary_share(ctx):
    """Share of the canaries the canary run included (no auroc: the report shows a dash)."""
    return AttackResult(rows=[{"metric": "included_share", "value": float(ctx.canaries["included"].mean()),
                               "n": len(ctx.canaries)}])
'''


def test_what_a_new_attack_needs_drives_the_plan_and_the_stage(cell, tmp_path, add_attack_module):
    assert add_attack_module(CANARY_COUNTER) == ["canary_share"]
    plan = audit_plan(
        {**PLAN_CONFIG, "audit": {**PLAN_CONFIG["audit"], "attacks": ["loss", "canary_share"]}},
        seeds=list(SEEDS),
        epsilons=["1"],
        cells=[("d", "m")],
    )
    # canaries are trained on the reference seed, reference models not at all: no attack needs them
    assert plan.trained_seeds == [REFERENCE_SEED] and plan.training_settings == {"n_reference": 0, "n_canaries": 200}
    table, roc = run_stage(cell, ["loss", "canary_share"], tmp_path)
    check_stage_contract(table, roc, "canary_share")
    share = table.query("attack == 'canary_share'")
    included = pd.read_csv(cell["trained"]["canaries"][REFERENCE_SEED])["included"]
    assert share["value"].tolist() == [pytest.approx(included.mean())] and share["n"].tolist() == [len(included)]
    row = next(a for a in claim_rows(table)[0]["attacks"] if a["name"] == "included canaries")
    assert row["auroc"] == "—" and row["n_seeds"] == 1
