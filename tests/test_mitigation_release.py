"""What the mitigations' cards say about what the guarantee covers: group privacy where a patient has several
rows, the group levels and where they came from, and no exact training statistic in the run record unlisted."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from dpfair.errors import ConfigError
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.mechanisms import TrainingData, available_mechanisms, get_mechanism
from dpfair.training.mechanisms.mitigation import LEVELS_DECLARED, LEVELS_FROM_TRAINING, group_codes
from test_privacy_card import card_of
from torch import nn

METHODS = ("dpsgd_f", "dpsgd_global_adapt")
#: A dataset whose training patients have up to 3 rows.
SEVERAL_ROWS = {"card": {}, "train_patients": {"n": 120, "max_rows": 3}, "max_records_per_patient": 3}
#: Every key a mitigation adds to the run record, each a public setting or a function of the noisy counts
#: (the groups: listed by also_releases where read from the training rows). A new key must be judged here.
COVERED_STATS = {
    "mitigation_attribute",
    "mitigation_groups",
    "mitigation_groups_source",
    "aux_budget_share",
    "noise_multiplier_total",
    "aux_noise_multiplier",
    "noise_bound_mean",
    "noise_bound_max",
    "final_group_bounds",
    "global_threshold_final",
    "global_threshold_mean",
}


def run(method, *, groups, epsilon=2.0, n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).float()
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=epsilon,
        delta=1e-3,
        config=TrainConfig(epochs=1, batch_size=50, mitigation={"attribute": "site"}),
        seed=seed,
        method=method,
        groups=groups,
    )
    return {**result.record, "dataset": "d", "model": "mlp"}


def sites(n, levels=("A", "B"), categories=None):
    values = np.asarray(levels)[np.arange(n) % len(levels)]
    column = pd.Categorical(values, categories=categories) if categories is not None else values
    return pd.DataFrame({"site": column})


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings(v)]
    return []


# ---------------------------------------------------------------------------------------- group privacy


@pytest.mark.parametrize("method", METHODS)
def test_a_mitigation_card_on_several_rows_per_patient_has_its_group_privacy(method):
    record = run(method, groups=sites(400))
    card = card_of(record, SEVERAL_ROWS)
    assert "see group_privacy" in card["privacy_unit_enforcement"]
    gp = card["group_privacy"]
    assert gp["k"] == 3 and gp["epsilon"] == pytest.approx(3 * 2.0)
    assert gp["delta"] == pytest.approx(3 * math.exp(2 * 2.0) * 1e-3)


@pytest.mark.parametrize("method", sorted(available_mechanisms()))
def test_every_card_that_mentions_group_privacy_has_one(method):
    statement = get_mechanism(method).statement(
        meta=SEVERAL_ROWS,
        record={"epsilon": 1.0, "delta": 1e-5, "clipping_backend": "bookkeeping", "mitigation_attribute": "site"},
    )
    text = [s for key, value in statement.items() if key != "group_privacy" for s in strings(value)]
    mentions = any("group_privacy" in s for s in text)
    if mentions:
        assert statement["group_privacy"] is not None, f"{method}'s card refers to a group_privacy it lacks"


# ------------------------------------------------------------------------------------------ group levels


def test_levels_read_from_the_training_rows_are_listed_outside_the_guarantee():
    record = run("dpsgd_f", groups=sites(400))
    assert record["mitigation_groups"] == ["A", "B"]
    assert record["mitigation_groups_source"] == LEVELS_FROM_TRAINING
    card = card_of(record, {})
    listed = [r for r in card["released_outside_guarantee"] if "levels of site present in the training rows" in r]
    assert len(listed) == 1 and "(A, B)" in listed[0]
    assert "read from the training rows and not covered" in card["guarantee_covers"]


def test_declared_levels_do_not_depend_on_the_training_rows():
    # the training rows hold A and B, or A only; the declared levels, what the run releases, are the same
    declared = ["A", "B", "C"]
    both = run("dpsgd_f", groups=sites(400, ("A", "B"), categories=declared))
    only_a = run("dpsgd_f", groups=sites(400, ("A",), categories=declared))
    for record in (both, only_a):
        assert record["mitigation_groups"] == declared
        assert record["mitigation_groups_source"] == LEVELS_DECLARED
        assert len(record["final_group_bounds"]) == 3  # K is the declared number, not the one present
        card = card_of(record, {})
        assert not any("levels of site" in r for r in card["released_outside_guarantee"])
        assert "declared without the training rows" in card["guarantee_covers"]
        assert card["mitigation"]["groups"] == declared


def test_a_training_row_outside_the_declared_levels_is_refused():
    # a value outside the declared categories is a missing one in a categorical column
    frame = pd.DataFrame({"site": pd.Categorical(["A", "B", np.nan], categories=["A", "B"])})
    with pytest.raises(ConfigError, match="not among its declared levels"):
        group_codes(frame, "site", method="dpsgd_f")


def test_an_intersection_of_declared_attributes_takes_their_product():
    frame = pd.DataFrame(
        {
            "sex": pd.Categorical(["female", "male"], categories=["female", "male"]),
            "site": pd.Categorical(["A", "A"], categories=["A", "B"]),
        }
    )
    codes, levels, source = group_codes(frame, "sex:site", method="dpsgd_f")
    assert levels == ["female:A", "female:B", "male:A", "male:B"] and codes.tolist() == [0, 2]
    assert source == LEVELS_DECLARED
    # one attribute undeclared: no public list for the intersection, the training rows' own
    mixed = frame.assign(site=frame["site"].astype(str))
    assert group_codes(mixed, "sex:site", method="dpsgd_f")[1:] == (["female:A", "male:A"], LEVELS_FROM_TRAINING)


def test_global_adapt_reads_no_groups_and_lists_nothing_of_its_own():
    record = run("dpsgd_global_adapt", groups=sites(400))
    assert record["mitigation_groups"] == [] and record["mitigation_groups_source"] is None
    assert get_mechanism("dpsgd_global_adapt").also_releases(meta={}, record=record) == []


# -------------------------------------------------------------------- no exact training statistic unlisted


@pytest.mark.parametrize("method", METHODS)
def test_the_record_adds_only_covered_statistics(method):
    x = torch.randn(300, 4)
    model = nn.Linear(4, 1)
    trainer = get_mechanism(method).make_trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data=TrainingData(x=x, y=(x[:, 0] > 0).float(), groups=sites(300)),
        config=TrainConfig(epochs=1, batch_size=50, mitigation={"attribute": "site"}),
        epsilon=1.0,
        delta=1e-4,
        generator=torch.Generator().manual_seed(0),
        noise_generator=torch.Generator().manual_seed(1),
    )
    for batch in trainer.loader:
        trainer.step(*batch)
    stats = trainer.stats()
    # nonfinite_units is the clipper's exact count, which the card lists itself
    assert set(stats) - {"nonfinite_units"} <= COVERED_STATS, set(stats) - COVERED_STATS
    json.dumps(stats)  # all of it goes to run.json


def test_the_noise_bounds_follow_the_noisy_counts_not_the_rows():
    # DPSGD-F's bounds (final_group_bounds, noise_bound_*) are a function of the noisy counts only: two
    # batches with other norms but the same per-group counts, under the same noise draws, give the same bounds
    from dpfair.privacy.clipping.adaptive import GroupAdaptiveClip

    norms = torch.tensor([0.5, 2.0, 3.0, 0.1])
    groups = torch.tensor([0, 0, 1, 1])
    a = GroupAdaptiveClip(
        base_norm=1.0, n_groups=2, aux_noise_multiplier=1.0, generator=torch.Generator().manual_seed(3)
    )
    b = GroupAdaptiveClip(
        base_norm=1.0, n_groups=2, aux_noise_multiplier=1.0, generator=torch.Generator().manual_seed(3)
    )
    a.factors(norms, max_grad_norm=a.bound_cap, groups=groups)
    # a different batch with the same per-group counts (one above C and one below in each group)
    b.factors(torch.tensor([1.5, 0.2, 0.3, 9.0]), max_grad_norm=b.bound_cap, groups=groups)
    assert torch.equal(a.bounds, b.bounds) and a.noise_bound() == b.noise_bound()
