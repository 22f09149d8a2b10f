"""The privacy ledger: DpEvent <-> JSON, replay under each accountant, and the registry of mechanisms."""

import json
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dpfair.errors import ConfigError, PrivacyError
from dpfair.privacy.ledger import (
    PLD_DISCRETIZATION,
    event_from_json,
    event_to_json,
    poisson_gaussian,
    replay_epsilon,
    supported_accountants,
)
from dpfair.training.mechanisms import Mechanism, available_mechanisms, get_mechanism, register_mechanism
from dpfair.training.mechanisms.label_rr import RR_MARGIN, randomize_labels, rr_event, rr_with_prior_k

EVENTS = [
    poisson_gaussian(noise_multiplier=1.1, sample_rate=1 / 17, steps=255),
    dp_accounting.ComposedDpEvent(
        [
            poisson_gaussian(noise_multiplier=0.9, sample_rate=0.01, steps=100),
            dp_accounting.SelfComposedDpEvent(dp_accounting.LaplaceDpEvent(2.0), 3),
        ]
    ),
    dp_accounting.RandomizedResponseDpEvent(noise_parameter=0.3, num_buckets=2),
    dp_accounting.NoOpDpEvent(),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_survive_json(event):
    text = json.dumps(event_to_json(event))  # plain JSON, no custom encoder
    assert event_from_json(json.loads(text)) == event


def test_json_shape_is_the_documented_one():
    assert event_to_json(EVENTS[0]) == {
        "type": "SelfComposedDpEvent",
        "count": 255,
        "event": {
            "type": "PoissonSampledDpEvent",
            "sampling_probability": 1 / 17,
            "event": {"type": "GaussianDpEvent", "noise_multiplier": 1.1},
        },
    }


def test_unknown_or_incomplete_events_are_refused():
    with pytest.raises(PrivacyError, match="unknown event type"):
        event_from_json({"type": "MadeUpDpEvent"})
    with pytest.raises(PrivacyError, match="lacks field 'noise_multiplier'"):
        event_from_json({"type": "GaussianDpEvent"})


def test_replay_equals_dp_accounting_composed_directly():
    event, delta = EVENTS[0], 1e-5
    pld = PLDAccountant(value_discretization_interval=1e-4)
    pld.compose(event)
    rdp = RdpAccountant()
    rdp.compose(event)
    assert replay_epsilon(event_to_json(event), accountant="pld", delta=delta) == pytest.approx(
        pld.get_epsilon(delta), rel=1e-9
    )
    assert replay_epsilon(event, accountant="rdp_google", delta=delta) == pytest.approx(
        rdp.get_epsilon(delta), rel=1e-9
    )
    # Opacus's PRV agrees with the independent PLD to about 0.01; its RDP is an upper bound on both
    prv = replay_epsilon(event, accountant="prv", delta=delta)
    assert abs(prv - pld.get_epsilon(delta)) < 0.02 and replay_epsilon(event, accountant="rdp", delta=delta) > prv


def test_opacus_accountants_only_replay_poisson_gaussians():
    assert supported_accountants(EVENTS[0]) == ["rdp", "prv", "pld", "rdp_google"]
    assert math.isnan(replay_epsilon(EVENTS[1], accountant="prv", delta=1e-5))
    assert replay_epsilon(EVENTS[1], accountant="pld", delta=1e-5) > 0


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0, 8.0])
def test_label_rr_event_is_worth_its_epsilon(epsilon):
    event = rr_event(epsilon=epsilon, prior=0.5)
    assert isinstance(event, dp_accounting.RandomizedResponseDpEvent)
    # neighbours differ in one label: pure ε-DP, so ε at any δ is ε (PLD rounds up by its discretization)
    got = replay_epsilon(event, accountant="pld", delta=1e-8, relation="replace_one")
    assert epsilon - 1e-6 <= got <= epsilon + PLD_DISCRETIZATION
    keep = 1 - event.noise_parameter + event.noise_parameter / 2  # dp-accounting: uniform bucket w.p. p
    assert keep == pytest.approx(math.exp(epsilon) / (1 + math.exp(epsilon)))
    # what the mechanism records (RR at ε − margin) replays to at most the target
    recorded = rr_event(epsilon=epsilon - RR_MARGIN, prior=0.5)
    assert epsilon - 1e-3 < replay_epsilon(recorded, accountant="pld", delta=1e-8, relation="replace_one") <= epsilon


@pytest.mark.parametrize("epsilon", [0.5, 2.0])
def test_label_rr_flip_rate_matches_epsilon(epsilon):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200_000)
    noisy = randomize_labels(y, epsilon=epsilon, prior=0.5, rng=rng)
    n = len(y)
    for label in (0, 1):
        rows = y == label
        flip = float((noisy[rows] != label).mean())
        want = 1 / (1 + math.exp(epsilon))
        assert abs(flip - want) < 4 * math.sqrt(want * (1 - want) / rows.sum()), (label, flip, want)
    # the empirical likelihood ratio of an output under the two labels is e^ε
    ratio = (noisy[y == 1] == 1).mean() / (noisy[y == 0] == 1).mean()
    assert math.log(ratio) == pytest.approx(epsilon, abs=0.05)
    assert n == 200_000


def test_rr_with_prior_ignores_labels_when_the_prior_is_sharper_than_the_noise():
    assert rr_with_prior_k(epsilon=0.5, prior=0.9) == 1  # e^0.5/(1+e^0.5) = 0.62 < 0.9
    y = np.array([0, 1] * 50)
    out = randomize_labels(y, epsilon=0.5, prior=0.9, rng=np.random.default_rng(0))
    assert (out == 1).all() and isinstance(rr_event(epsilon=0.5, prior=0.9), dp_accounting.NoOpDpEvent)


def test_registry_lists_the_mechanisms_and_refuses_unknown_names():
    assert {"dpsgd", "dpsgd_patient", "label_rr"} <= set(available_mechanisms())
    assert [get_mechanism(m).unit for m in ("dpsgd", "dpsgd_patient", "label_rr")] == ["record", "patient", "label"]
    with pytest.raises(ConfigError, match=r"unknown method 'dpsgd_typo'; allowed: \[.*'dpsgd'"):
        get_mechanism("dpsgd_typo")
    with pytest.raises(ValueError, match="already registered"):
        register_mechanism("dpsgd")(type("Again", (Mechanism,), {}))
    with pytest.raises(ValueError, match="unit 'row'"):
        register_mechanism("bad_unit")(type("Bad", (Mechanism,), {"unit": "row"}))


@pytest.mark.parametrize("method", ["dpsgd", "dpsgd_patient", "label_rr"])
def test_every_mechanism_states_its_card_text(method):
    meta = {"card": {"patient_unit": "lesion"}, "train_patients": {"n": 10, "max_rows": 3}}
    text = get_mechanism(method).card_text(meta=meta, record={"clipping_backend": "bookkeeping"})
    assert set(text) == {"clipping", "privacy_unit_enforcement", "guarantee_covers"} and all(text.values())
    if method == "label_rr":
        assert "NOT protected" in text["guarantee_covers"]
    if method == "dpsgd_patient":
        assert "lesion ids, not patient ids" in text["privacy_unit_enforcement"]


def test_cached_replay_is_the_accountants_own_answer_for_each_distinct_ledger():
    """replay_epsilon caches by the ledger's JSON: every ledger, even one count or digit apart, gets its own ε."""
    events = [
        poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps)
        for sigma, q, steps in ((2.0, 0.01, 40), (2.0, 0.01, 41), (2.0000001, 0.01, 40), (2.0, 0.0100001, 40))
    ]
    fresh = [
        PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION).compose(e).get_epsilon(1e-5) for e in events
    ]
    answers = [replay_epsilon(e, accountant="pld", delta=1e-5) for e in events * 2]  # the second pass: cached
    assert answers == pytest.approx(fresh * 2, rel=1e-12)
    assert len(set(answers[:4])) == 4 and answers[:4] == answers[4:]
    assert replay_epsilon(event_to_json(events[0]), accountant="pld", delta=1e-5) == answers[0]  # JSON form too
    assert replay_epsilon(events[0], accountant="pld", delta=2e-5) < answers[0]  # δ is part of the key
    # Opacus's PRV through the same cache, against a PRVAccountant of our own
    from opacus.accountants import PRVAccountant

    for sigma, q, steps in ((2.0, 0.01, 40), (2.0, 0.01, 41)):
        own = PRVAccountant()
        own.history = [(sigma, q, steps)]
        event = poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps)
        for _ in range(2):
            assert replay_epsilon(event, accountant="prv", delta=1e-5) == pytest.approx(own.get_epsilon(1e-5), rel=1e-9)


def test_a_non_finite_event_value_survives_the_json_round_trip():
    event = dp_accounting.GaussianDpEvent(math.inf)  # σ = ∞: no privacy loss at all
    assert event_to_json(event)["noise_multiplier"] == "inf"
    assert event_from_json(event_to_json(event)) == event
    # the cache's key is that JSON: a NaN σ comes back a float, never the string "nan"
    assert math.isnan(event_from_json(event_to_json(dp_accounting.GaussianDpEvent(math.nan))).noise_multiplier)
