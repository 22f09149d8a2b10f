"""Federated DP (``fed_dpsgd``, ``fed_dp_site``): Flower simulations, their accounting, their isolation.

Each simulation here is a real Flower ``run_simulation`` on Ray (about 10 s, most of it Ray starting), on a
small tabular problem split over three sites.
"""

from __future__ import annotations

import ipaddress
import json
import math
import subprocess
import sys
import threading
import time

import dp_accounting
import numpy as np
import psutil
import pytest
import torch
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dpfair.errors import ConfigError, PrivacyError
from dpfair.federated import simulation, train_federated
from dpfair.federated.accounting import record_level_plan
from dpfair.federated.environment import NO_EXIT_ENV, QUIET_ENV, check_quiet
from dpfair.federated.settings import FederatedSettings
from dpfair.privacy.card import build_privacy_card, check_privacy_card
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.mechanisms import get_mechanism
from tiny_grid import REPO

ROUNDS = 3
DELTA = 1e-4
CONFIG = TrainConfig(epochs=1, batch_size=40, optimizer="sgd", lr=0.5)
META = {"card": {"row_unit": "person"}, "preprocessing": ""}
#: Ray's agents, which its raylet starts with an environment of its own.
RAY_AGENTS = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}


def toy(n: int = 480, sites: str = "ABC", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()
    site = np.array(list(sites))[np.arange(n) % len(sites)]
    x_val = torch.randn(160, 6, generator=g)
    return x, y, site, x_val, (x_val[:, 0] > 0).float()


def run(method: str, epsilon: float, *, sites: str = "ABC", rounds: int = ROUNDS, local_epochs: int = 1, config=CONFIG):
    x, y, site, x_val, y_val = toy(sites=sites)
    return train_federated(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=epsilon,
        delta=DELTA,
        config=config,
        seed=0,
        site=site,
        federated={"rounds": rounds, "local_epochs": local_epochs, "update_clip": 1.0},
        method=method,
        x_val=x_val,
        y_val=y_val,
        dataset="toy",
    )


def card_of(result, method: str) -> dict:
    record = {**result.record, "dataset": "toy", "model": "mlp"}
    return build_privacy_card(record, META, statement=get_mechanism(method).statement(meta=META, record=record))


class Watcher:
    """Every inet socket of this process and its children (Ray's), and the children's environments, sampled."""

    def __init__(self):
        self.sockets, self.environments, self._stop = set(), [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        me = psutil.Process()
        while not self._stop.is_set():
            for p in [me, *me.children(recursive=True)]:
                try:
                    for c in p.net_connections(kind="inet"):
                        self.sockets.add(
                            (p.name(), c.status, c.laddr.ip if c.laddr else None, c.raddr.ip if c.raddr else None)
                        )
                    # a fork of this process before its exec shows this process's environment at its own start
                    # (/proc holds the block exec was given, not os.environ since): only exec'ed processes count
                    if p.pid != me.pid and p.cmdline() != me.cmdline():
                        self.environments.append((p.name(), p.environ()))
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def record_level():
    with Watcher() as watcher:
        result = run("fed_dpsgd", 3.0)
    return result, watcher


@pytest.fixture(scope="module")
def site_level():
    return run("fed_dp_site", 3.0)


def test_each_sites_epsilon_composes_all_its_local_steps_over_all_rounds(record_level):
    result, _ = record_level
    fed = result.record["federated"]
    assert [s["site"] for s in fed["sites"]] == ["A", "B", "C"]
    for site in fed["sites"]:
        q, sigma = site["sample_rate"], site["noise_multiplier"]
        per_round = site["steps"] // ROUNDS
        assert site["steps"] == site["planned_steps"] == ROUNDS * 1 * round(1 / q)
        # dp-accounting alone, from the parameters the site ran with: all rounds' steps against one round's
        step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
        all_rounds = PLDAccountant().compose(step, site["steps"]).get_epsilon(DELTA)
        one_round = PLDAccountant().compose(step, per_round).get_epsilon(DELTA)
        assert all_rounds <= 3.0 and one_round < 0.7 * all_rounds
        assert site["epsilon"] == pytest.approx(all_rounds, abs=0.05)  # PRV (the run's accountant) against PLD
    assert result.record["epsilon_spent"] == max(s["epsilon"] for s in fed["sites"])
    assert result.record["ledger"] == max(fed["sites"], key=lambda s: s["epsilon"])["ledger"]
    # the history's ε grows round by round to the spent ε
    eps = [h["epsilon_so_far"] for h in result.history]
    assert len(eps) == ROUNDS and eps == sorted(eps) and eps[-1] == pytest.approx(result.record["epsilon_spent"])


def test_a_record_level_card_checks_and_replays_every_site(record_level, tmp_path):
    result, _ = record_level
    card = card_of(result, "fed_dpsgd")
    assert card["n_units"] == 480 and card["federated"]["n_sites"] == 3
    assert "site A: n = 160" in card["privacy_unit_enforcement"]
    path = tmp_path / "privacy_card.json"
    path.write_text(json.dumps(card))
    replay = subprocess.run(
        [sys.executable, str(REPO / "tools/replay_ledgers.py"), str(path)], capture_output=True, text=True
    )
    assert replay.returncode == 0 and "1 ledgers replayed" in replay.stdout, replay.stdout

    # a site ledger cut to one round's steps (what a per-round accountant would write) is not a claim the card
    # may carry, nor one with a lower rate, a missing site or a forged ε
    def forged(change):
        copy = json.loads(json.dumps(card))
        change(copy["federated"]["sites"])
        return copy

    cuts = {
        "one round": (lambda sites: sites[1]["ledger"].update(count=sites[1]["steps"] // ROUNDS), "is not its"),
        "lower q": (lambda sites: sites[2]["ledger"]["event"].update(sampling_probability=0.05), "is not its"),
        "a site left out": (lambda sites: sites.pop(), "lists 2 site ledgers for 3 sites"),
        "forged ε": (lambda sites: sites[0].update(epsilon=0.5), "states epsilon 0.5"),
    }
    for change, message in cuts.values():
        with pytest.raises(PrivacyError, match=message):
            check_privacy_card(forged(change))
    # the independent replay sees an under-noised site ledger, whatever the card's other fields say
    loud = forged(lambda sites: sites[1]["ledger"]["event"]["event"].update(noise_multiplier=0.3))
    path.write_text(json.dumps(loud))
    replay = subprocess.run(
        [sys.executable, str(REPO / "tools/replay_ledgers.py"), str(path)], capture_output=True, text=True
    )
    assert replay.returncode == 1 and "OVER" in replay.stdout


def test_no_socket_leaves_loopback_and_telemetry_is_off(record_level):
    _, watcher = record_level
    ray_listening = [s for s in watcher.sockets if s[1] == "LISTEN" and s[0] != "python"]
    assert ray_listening, f"the watcher saw none of Ray's listening sockets: {sorted(watcher.sockets)}"
    addresses = {ip for _, _, local, remote in watcher.sockets for ip in (local, remote) if ip}
    outside = {ip for ip in addresses if not ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback}
    assert not outside, (
        f"sockets beyond loopback: {sorted(s for s in watcher.sockets if s[2] in outside or s[3] in outside)}"
    )
    # the processes that run Flower's code (the client actors) and Ray's own services inherit the quiet
    # environment; Ray's raylet starts its two agents with an environment of its own, and short-lived helpers
    # (a shell) come and go: their sockets are checked above with every other process's
    ray_envs = [
        (name, env)
        for name, env in watcher.environments
        if env and name not in RAY_AGENTS and (name in ("raylet", "gcs_server") or name.startswith(("ray::", "python")))
    ]
    expected = {**QUIET_ENV, **NO_EXIT_ENV}
    loud = {name for name, env in ray_envs if any(env.get(k) != v for k, v in expected.items())}
    assert not loud, f"processes without the quiet environment: {sorted(loud)}"
    check_quiet()  # and as imported in this process


def test_flower_imported_with_telemetry_on_is_refused():
    code = (
        "import os; os.environ.pop('FLWR_TELEMETRY_ENABLED', None); import flwr.supercore.telemetry\n"
        "from dpfair.federated.environment import check_quiet\n"
        "try:\n    check_quiet()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in QUIET_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "ConfigError" in out.stdout and "Flower telemetry is on" in out.stdout, out.stdout + out.stderr


def test_the_site_level_ledger_is_flowers_accountant(site_level):
    record = site_level.record
    z, fed = record["noise_multiplier"], record["federated"]
    assert record["privacy_unit"] == "site" and record["n_units"] == 3 and record["steps"] == ROUNDS
    direct = RdpAccountant()
    direct.compose(dp_accounting.GaussianDpEvent(z), ROUNDS)  # every site every round: no amplification
    from dpfair.federated.accounting import flower_accountant
    from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

    flower = flower_accountant(delta=DELTA, n_sites=3)
    for _ in range(ROUNDS):
        flower.compose(GaussianPrivacyEvent(noise_multiplier=z, sample_size=3, population_size=3))
    assert record["epsilon_spent"] == pytest.approx(direct.get_epsilon(DELTA), rel=1e-12)
    assert fed["flower_accountant"]["epsilon"] == pytest.approx(flower.get_privacy_spent().epsilon, rel=1e-12)
    assert fed["flower_accountant"]["releases"] == ROUNDS and record["epsilon_spent"] <= 3.0
    card = card_of(site_level, "fed_dp_site")
    assert card["sampling"] == "every site every round" and card["epsilon_pld"] <= card["epsilon_rdp_google"] <= 3.0
    assert "this guarantee is weak" in card["privacy_unit_enforcement"]


def test_one_site_without_noise_reproduces_central_training_in_its_first_round():
    federated = run("fed_dpsgd", math.inf, sites="A", rounds=1, local_epochs=2)
    x, y, _, x_val, y_val = toy(sites="A")
    central = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=DELTA,
        config=TrainConfig(epochs=2, batch_size=40, optimizer="sgd", lr=0.5),
        seed=0,
    )
    got, want = federated.model.state_dict(), central.model.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-7)
    assert federated.record["steps"] == central.record["steps"]
    # and the weights did move: the comparison is of trained models, not of two initialisations
    assert not torch.equal(next(iter(want.values())), next(iter(_initial_state().values())))


def test_each_round_of_each_site_draws_batches_of_its_own():
    """No stored state: a round's Poisson batches come from (seed, site, round), so no round replays another's."""
    from dpfair.federated.client import local_update

    x, y, _, _, _ = toy(n=200, sites="A")
    spec = {
        "model_name": "mlp", "modality": "tabular", "input_shape": [6], "config": CONFIG.params(), "local_epochs": 1,
        "epsilon": math.inf, "delta": DELTA, "method": "fed_dpsgd", "seed": 0, "noise_key": "", "sites": ["A", "B"],
        "x": {"A": x, "B": x}, "y": {"A": y, "B": y}, "sigma": {"A": None, "B": None}, "label_prior": None,
    }  # fmt: skip
    start = _initial_state()
    updates = {(i, r): local_update(spec, i, r, start)[0] for i in (0, 1) for r in (1, 2)}
    first = next(iter(start))
    values = [u[first] for u in updates.values()]
    assert all(not torch.equal(a, b) for j, a in enumerate(values) for b in values[j + 1 :])
    assert torch.equal(local_update(spec, 1, 2, start)[0][first], updates[(1, 2)][first])  # and reproducible


def _initial_state() -> dict:
    from dpfair.models import build_model

    torch.manual_seed(0)
    return build_model("mlp", input_shape=(6,), modality="tabular").state_dict()


def test_the_server_adds_noise_of_the_calibrated_scale():
    """One round, a clip no update reaches: the private model minus plain FedAvg's is Flower's noise alone, N(0, (zC/m)²)."""
    clip = 100.0
    x, y, site, x_val, y_val = toy()
    common = dict(model_name="mlp", modality="tabular", x_train=x, y_train=y, delta=DELTA, config=CONFIG, seed=0,
                  site=site, x_val=x_val, y_val=y_val, dataset="toy")  # fmt: skip
    fed = {"rounds": 1, "local_epochs": 1, "update_clip": clip}
    noised = train_federated(**common, epsilon=3.0, method="fed_dp_site", federated=fed)
    plain = train_federated(**common, epsilon=math.inf, method="fed_dpsgd", federated=fed)
    residual = torch.cat(
        [(noised.model.state_dict()[k] - v).flatten() for k, v in plain.model.state_dict().items()]
    ).double()
    expected = noised.record["noise_multiplier"] * clip / 3
    assert len(residual) > 2000 and abs(float(residual.std()) / expected - 1) < 0.05
    assert abs(float(residual.mean())) < 4 * expected / math.sqrt(len(residual))


def test_an_accountant_reset_every_round_is_caught(monkeypatch):
    """Flower's Opacus example builds a PrivacyEngine per round: σ fit for one round's steps. The run must refuse it."""

    def per_round(**kwargs):
        return record_level_plan(**{**kwargs, "rounds": 1})

    monkeypatch.setattr(simulation, "record_level_plan", per_round)
    # σ planned for one round's 4 steps, 12 run: refused by the step count, and its ledger would replay above ε
    with pytest.raises(PrivacyError, match=r"site A ran 12 local steps, not the 4 its σ was calibrated for"):
        run("fed_dpsgd", 3.0)
    plan = record_level_plan(site_rows={"A": 160}, batch_size=40, rounds=1, local_epochs=1, epsilon=3.0, delta=DELTA,
                             accountant="prv")["A"]  # fmt: skip
    assert PLDAccountant().compose(plan.ledger(3 * plan.steps)).get_epsilon(DELTA) > 3.0 * 1.3


def test_bad_federated_input_is_one_clear_error():
    x, y, site, _, _ = toy(sites="AB")
    common = dict(model_name="mlp", modality="tabular", x_train=x, y_train=y, epsilon=3.0, delta=DELTA, seed=0)
    with pytest.raises(ConfigError, match="needs at least 3"):
        train_federated(**common, config=CONFIG, site=site, method="fed_dp_site", dataset="toy")
    with pytest.raises(ConfigError, match="declares no site attribute"):
        train_federated(**common, config=CONFIG, site=None, method="fed_dpsgd", dataset="toy")
    with pytest.raises(ConfigError, match="secure_mode"):
        train_federated(**common, config=TrainConfig(secure_mode=True), site=site, method="fed_dpsgd")
    with pytest.raises(ConfigError, match="does not implement the training options"):
        train_federated(**common, config=TrainConfig(ema_decay=0.9), site=site, method="fed_dpsgd")
    with pytest.raises(ConfigError, match=r"federated.rounds must be a whole number >= 1, got 0"):
        FederatedSettings.from_config({"rounds": 0})
    with pytest.raises(ConfigError, match=r"federated: unknown key\(s\) \['round'\]"):
        FederatedSettings.from_config({"round": 3})
    with pytest.raises(ConfigError, match="trains by federated simulation"):
        get_mechanism("fed_dpsgd").make_trainer()
