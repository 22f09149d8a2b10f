"""Attack registry, RMIA against a slow reference, per-group intervals, the audit plan and the metrics join."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dpfair.audit.groups import auroc_by_group, auroc_with_interval
from dpfair.audit.plan import audit_plan
from dpfair.audit.registry import NEEDS, available_attacks, get_attack, register_attack
from dpfair.audit.rmia import rmia_scores, true_label_log_prob
from dpfair.errors import ConfigError
from dpfair.pipeline.benchmark import SCHEMA_PATH
from dpfair.tables.columns import join_loss_columns
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

CONFIG = {
    "audit": {"attacks": ["loss", "rmia", "one_run"], "reference_models": 2, "reference_seeds": [0], "canaries": 500},
    "evaluation": {"membership_inference": True},
}
ATTACKS_DIR = Path(__file__).resolve().parents[1] / "workflow" / "dpfair" / "audit" / "attacks"

# --- registry -----------------------------------------------------------------------------------------


def test_the_built_in_attacks_are_found_by_discovery_and_declare_what_they_need():
    """No list names them: the registry imports each module of dpfair/audit/attacks/ (the package imports nothing)."""
    assert {"loss", "one_run", "rmia"} <= set(available_attacks())
    assert {a: get_attack(a).needs for a in ("loss", "rmia", "one_run")} == {
        "loss": frozenset(),
        "rmia": frozenset({"reference_models"}),
        "one_run": frozenset({"canaries"}),
    }
    package = ast.parse((ATTACKS_DIR / "__init__.py").read_text()).body
    assert len(package) == 1 and isinstance(package[0].value, ast.Constant)  # a docstring, no imports
    # the schema leaves attack names to the registry (validate_config checks them)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["properties"]["audit"]["properties"]["attacks"]["items"] == {"type": "string"}


@pytest.mark.parametrize("name", available_attacks())
def test_every_registered_attack_keeps_the_registry_contract(name):
    """Each attack (a new file included, found at collection) has a label, known needs, and plans what it needs."""
    attack = get_attack(name)
    assert attack.name == name and isinstance(attack.label, str) and attack.label
    assert attack.needs <= set(NEEDS) and callable(attack.run)
    plan = audit_plan(
        {**CONFIG, "audit": {**CONFIG["audit"], "attacks": [name]}}, seeds=[0, 1], epsilons=["1"], cells=[("d", "m")]
    )
    assert plan.needs == attack.needs and plan.trained_seeds == ([0] if attack.needs else [])
    # a need's name is also the audit setting of its count; what no configured attack needs is not trained
    assert plan.training_settings == {NEEDS[n].parameter: CONFIG["audit"][n] if n in attack.needs else 0 for n in NEEDS}


def test_registry_is_loud_on_unknown_names_duplicates_and_bad_needs():
    with pytest.raises(ConfigError, match=r"unknown attack 'lira'; allowed: \[.*'loss'.*'one_run'.*'rmia'"):
        get_attack("lira")
    with pytest.raises(ValueError, match="already registered"):
        register_attack("loss")(lambda ctx: None)
    with pytest.raises(
        ValueError, match=r"needs \['weights'\] are not known; allowed: \['reference_models', 'canaries'\]"
    ):
        register_attack("new", needs={"weights"})
    with pytest.raises(ConfigError, match=r"audit.attacks\[1\] = 'lira' is not a known attack; allowed: \["):
        audit_plan(
            {**CONFIG, "audit": {**CONFIG["audit"], "attacks": ["loss", "lira"]}},
            seeds=[0],
            epsilons=["1"],
            cells=[("d", "m")],
        )


# --- RMIA ---------------------------------------------------------------------------------------------


def slow_rmia(target, refs, labels, population, gamma):
    """Zarifzadeh et al.'s score written out pair by pair."""

    def p(logit, y):
        s = 1 / (1 + math.exp(-logit))
        return s if y == 1 else 1 - s

    ratio = [p(target[i], labels[i]) / np.mean([p(r[i], labels[i]) for r in refs]) for i in range(len(labels))]
    out = []
    for x in range(len(labels)):
        zs = [z for z in range(len(labels)) if population[z] and z != x]
        out.append(np.mean([ratio[x] / ratio[z] >= gamma for z in zs]))
    return np.array(out)


@pytest.mark.parametrize("gamma", [1.0, 1.3])
def test_rmia_matches_the_pairwise_definition(gamma):
    rng = np.random.default_rng(0)
    n = 60
    labels = rng.integers(0, 2, n)
    target, refs = rng.normal(0, 2, n), rng.normal(0, 2, (3, n))
    population = rng.uniform(size=n) < 0.5
    fast = rmia_scores(target_logits=target, reference_logits=refs, labels=labels, population=population, gamma=gamma)
    assert fast == pytest.approx(slow_rmia(target, refs, labels, population, gamma))


def test_rmia_removes_per_example_difficulty_that_fools_the_loss_attack():
    """Members fit slightly better than the references predict; difficulty varies a lot across rows."""
    rng = np.random.default_rng(1)
    n = 2000
    labels = np.ones(n, dtype=int)
    difficulty = rng.normal(0, 3, n)
    member = rng.uniform(size=n) < 0.5
    target = difficulty + 0.8 * member + rng.normal(0, 0.2, n)
    refs = difficulty + 0.4 + rng.normal(0, 0.2, (2, n))  # each reference sees x half the time: +0.4 on average
    scores = rmia_scores(target_logits=target, reference_logits=refs, labels=labels, population=~member)
    loss = true_label_log_prob(logits=target, labels=labels)
    assert roc_auc_score(member, scores) > 0.8 > 0.6 > roc_auc_score(member, loss)


def test_rmia_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match="same rows"):
        rmia_scores(
            target_logits=np.zeros(3),
            reference_logits=np.zeros((2, 4)),
            labels=np.zeros(3),
            population=np.ones(3, bool),
        )
    with pytest.raises(ValueError, match="empty"):
        rmia_scores(
            target_logits=np.zeros(3),
            reference_logits=np.zeros((2, 3)),
            labels=np.zeros(3),
            population=np.zeros(3, bool),
        )


# --- per-group attack success with intervals ----------------------------------------------------------


def test_group_auroc_equals_sklearn_within_each_group():
    rng = np.random.default_rng(2)
    membership = rng.integers(0, 2, 400)
    scores = rng.normal(size=400) + membership * (rng.uniform(size=400) < 0.5)
    groups = pd.DataFrame({"sex": rng.choice(["F", "M"], 400), "site": rng.choice(["A", "B", "C"], 400)})
    table = auroc_by_group(membership=membership, scores=scores, groups=groups, n_boot=100)
    assert len(table) == 5
    for r in table.to_dict("records"):
        mask = (groups[r["attribute"]] == r["group"]).to_numpy()
        assert r["value"] == pytest.approx(roc_auc_score(membership[mask], scores[mask]))
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == mask.sum()


def test_group_without_non_members_has_no_auroc():
    table = auroc_by_group(
        membership=[1, 1, 1, 0], scores=[1, 2, 3, 0], groups=pd.DataFrame({"g": ["a", "a", "b", "b"]})
    )
    assert math.isnan(table.set_index("group").loc["a", "value"])


def test_auroc_interval_covers_the_true_auroc():
    """Seeded simulation: binormal scores with a known AUROC Φ(d/√2); the 95% interval should cover ~95%."""
    d, n, true = 0.5, 150, norm.cdf(0.5 / math.sqrt(2))
    rng = np.random.default_rng(3)
    hits = 0
    for k in range(200):
        membership = np.r_[np.ones(n, int), np.zeros(n, int)]
        scores = np.r_[rng.normal(d, 1, n), rng.normal(0, 1, n)]
        _, low, high = auroc_with_interval(membership=membership, scores=scores, n_boot=200, seed=k)
        hits += low <= true <= high
    assert 0.89 <= hits / 200 <= 0.99


# --- plan and the metrics.csv join --------------------------------------------------------------------


def test_plan_trains_reference_seeds_only_and_checks_them():
    plan = audit_plan(CONFIG, seeds=[0, 1, 2], epsilons=["1", "inf"], cells=[("support2", "mlp")])
    assert len(plan.cells) == 2 and plan.trained_seeds == [0]
    assert plan.training_settings == {"n_reference": 2, "n_canaries": 500}
    loss_only = audit_plan(
        {**CONFIG, "audit": {**CONFIG["audit"], "attacks": ["loss"]}}, seeds=[0], epsilons=["1"], cells=[("d", "m")]
    )
    assert loss_only.trained_seeds == [] and loss_only.trained_files == ()
    for attacks, counts in (
        (["loss", "rmia"], {"n_reference": 2, "n_canaries": 0}),
        (["one_run"], {"n_reference": 0, "n_canaries": 500}),
    ):
        plan = audit_plan(
            {**CONFIG, "audit": {**CONFIG["audit"], "attacks": attacks}}, seeds=[0], epsilons=["1"], cells=[("d", "m")]
        )
        assert plan.trained_seeds == [0] and plan.training_settings == counts
    with pytest.raises(ConfigError, match=r"audit.reference_seeds\[0\] = 7 is not one of seeds"):
        audit_plan(
            {**CONFIG, "audit": {**CONFIG["audit"], "reference_seeds": [7]}},
            seeds=[0],
            epsilons=["1"],
            cells=[("d", "m")],
        )
    off = audit_plan(
        {**CONFIG, "evaluation": {"membership_inference": False}}, seeds=[0], epsilons=["1"], cells=[("d", "m")]
    )
    assert off.cells == [] and off.trained_seeds == []


def test_metrics_get_the_loss_attack_columns_and_subgroups_its_group_auroc():
    keys = {"dataset": "d", "model": "m", "method": "dpsgd", "epsilon": 1.0, "seed": 0}
    audit = pd.DataFrame(
        [
            {**keys, "attack": "loss", "metric": "auroc", "value": 0.53, "attribute": "", "group": ""},
            {**keys, "attack": "loss", "metric": "tpr_at_1pct_fpr", "value": np.nan, "attribute": "", "group": ""},
            {**keys, "attack": "loss", "metric": "tpr_at_0p1pct_fpr", "value": np.nan, "attribute": "", "group": ""},
            {**keys, "attack": "loss", "metric": "bound_violated", "value": 0.0, "attribute": "", "group": ""},
            {**keys, "attack": "loss", "metric": "epsilon_empirical", "value": 0.1, "attribute": "", "group": ""},
            {**keys, "attack": "rmia", "metric": "auroc", "value": 0.9, "attribute": "", "group": ""},
            {**keys, "attack": "loss", "metric": "auroc", "value": 0.6, "attribute": "sex", "group": "F"},
        ]
    )
    metrics = pd.DataFrame(
        [
            {"dataset": "d", "model": "m", "epsilon": 1.0, "seed": 0, "attribute": "sex", "auroc": 0.7},
            {"dataset": "d", "model": "m", "epsilon": 1.0, "seed": 0, "attribute": "race", "auroc": 0.7},
        ]
    )
    subgroups = pd.DataFrame(
        [{"dataset": "d", "model": "m", "epsilon": 1.0, "seed": 0, "attribute": "sex", "group": g} for g in "FM"]
    )
    merged, sub = join_loss_columns(metrics=metrics, subgroups=subgroups, audit=audit)
    assert merged["mia_auroc"].tolist() == [0.53, 0.53] and merged["mia_bound_violated"].tolist() == [False, False]
    assert merged["mia_epsilon_empirical"].tolist() == [0.1, 0.1] and merged["mia_tpr_at_1pct_fpr"].isna().all()
    assert sub.set_index("group")["mia_auroc"].iloc[0] == 0.6 and math.isnan(
        sub.set_index("group")["mia_auroc"].iloc[1]
    )
