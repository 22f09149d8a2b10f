"""DP synthesis (synth_aim, synth_mst): the public domain, the budget, the ledger and the release, checked.

The synthesizers are smartnoise-synth's, run in ``.venv-synth`` (``make install`` builds it) through
``workflow/scripts/synthesize.py``; every ledger is replayed by dp-accounting's own RDP accountant here,
not by dpfair's replay code.
"""

import json
import math
import subprocess
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.rdp import RdpAccountant
from dpfair.data.prepare import prepare_dataset
from dpfair.errors import ConfigError, PrivacyError
from dpfair.pipeline.benchmark import validate_config
from dpfair.pipeline.runner import train_run
from dpfair.privacy.card import build_privacy_card
from dpfair.synthesis.budget import release_event, spent_rho, zcdp_budget, zcdp_epsilon
from dpfair.synthesis.domain import build_domain, decode, encode
from dpfair.synthesis.fidelity import fidelity_rows
from dpfair.synthesis.release import load_release, plan_synthesis, read_plan, synth_python
from dpfair.training.config import TrainConfig
from dpfair.training.loop import train
from dpfair.training.mechanisms import get_mechanism, run_delta

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "workflow" / "scripts" / "synthesize.py"


@pytest.fixture(scope="module")
def diabetes():
    return prepare_dataset(name="diabetes")


def rdp_epsilon(ledger: dp_accounting.DpEvent, delta: float) -> float:
    acc = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc.compose(ledger)
    return acc.get_epsilon(delta)


def synthesize(prepared, tmp: Path, *, method: str, epsilons, epsilon, seed_key="test", rounds_per_column=1):
    """One release through the synthesis environment, as rule synthesize makes it; its files."""
    plan_synthesis(prepared, epsilons=epsilons, n_bins=8, table=tmp / "table.npz", plan=tmp / "plan.json")
    codes, log = tmp / f"{method}-{epsilon}.npz", tmp / f"{method}-{epsilon}.json"
    subprocess.run(
        [synth_python(REPO), str(SCRIPT), "--table", str(tmp / "table.npz"), "--plan", str(tmp / "plan.json"),
         "--epsilon", str(epsilon), "--method", method, "--rounds-per-column", str(rounds_per_column),
         "--seed-key", seed_key, "--out-codes", str(codes), "--out-log", str(log)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return {"codes": codes, "log": log, "plan": tmp / "plan.json"}


# --- the domain ------------------------------------------------------------------------------------------------


def test_the_domain_reads_no_training_row(diabetes):
    before = build_domain(diabetes).to_dict()
    train_rows = np.flatnonzero((diabetes.samples["split"] == "train").to_numpy())
    val_rows = np.flatnonzero((diabetes.samples["split"] == "val").to_numpy())
    numeric = next(
        i for i, f in enumerate(diabetes.meta["features"]) if f == diabetes.meta["columns"][0]["features"][0]
    )

    changed = diabetes.x.clone()
    changed[train_rows[0], numeric] = 1e6  # a training row's extreme value
    moved = type(diabetes)(x=changed, y=diabetes.y, samples=diabetes.samples, meta=diabetes.meta)
    assert build_domain(moved).to_dict() == before
    # the extreme training value lands in the open top bin, moving no edge
    top = len(before["columns"][0]["edges"])
    assert encode(build_domain(moved), moved)[0, 0] == top

    # the domain does read the validation split: the same change there moves it (the check above can fail)
    changed_val = diabetes.x.clone()
    changed_val[val_rows, numeric] = changed_val[val_rows, numeric] * 3 + 1
    val_moved = type(diabetes)(x=changed_val, y=diabetes.y, samples=diabetes.samples, meta=diabetes.meta)
    assert build_domain(val_moved).to_dict() != before


def test_codes_decode_to_the_model_inputs_of_their_bins(diabetes):
    domain = build_domain(diabetes)
    codes = encode(domain, diabetes, split="val")
    x, y, groups = decode(domain, codes)
    val = torch.from_numpy((diabetes.samples["split"] == "val").to_numpy(copy=True))
    assert torch.equal(y, diabetes.y[val])
    assert x.shape == diabetes.x[val].shape
    # a categorical column decodes to its one-hot level exactly; a numeric one to a value inside its bin
    for j, col in enumerate(domain.columns):
        if col.kind == "categorical":
            idx = [domain.features.index(f) for f in col.features]
            assert torch.equal(x[:, idx], diabetes.x[val][:, idx])
        elif col.kind == "numeric":
            i = domain.features.index(col.features[0])
            assert np.array_equal(np.searchsorted(col.edges, x[:, i].numpy(), side="right"), codes[:, j])
    attribute = diabetes.meta["card"]["sensitive_attributes"][0]
    assert list(groups[attribute]) == list(diabetes.samples.loc[val.numpy(), attribute])


def test_an_image_dataset_is_refused():
    config = {
        "datasets": {"synthetic_lesions": {"params": {"n_samples": 200, "image_size": 16}}},
        "models": ["cnn"],
        "methods": ["dpsgd", "synth_mst"],
        "epsilons": [1, "inf"],
        "seeds": [0],
    }
    with pytest.raises(ConfigError, match=r"synth_mst runs on tabular data only and synthetic_lesions is image"):
        validate_config(config)
    prepared = prepare_dataset(name="synthetic_lesions", params={"n_samples": 200, "image_size": 16})
    with pytest.raises(ConfigError, match="tabular rows only"):
        build_domain(prepared)


def test_the_audit_s_retraining_attacks_are_refused_for_synthesis():
    config = {
        "datasets": {"diabetes": {}},
        "models": ["mlp"],
        "methods": ["dpsgd", "synth_aim"],
        "epsilons": [1, "inf"],
        "seeds": [0],
    }
    with pytest.raises(ConfigError, match=r"attacks: \[loss\]"):
        validate_config(config)
    validate_config({**config, "audit": {"attacks": ["loss"]}})


# --- the budget -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0, 10.0])
def test_the_budget_is_the_largest_rho_dp_accounting_certifies(epsilon):
    delta = 1e-5
    rho = zcdp_budget(epsilon, delta)
    assert rdp_epsilon(dp_event.ZCDpEvent(rho), delta) <= epsilon
    assert rdp_epsilon(dp_event.ZCDpEvent(rho * 1.001), delta) > epsilon  # tight: no budget left on the table
    # at least the textbook conversion's ρ (ε = ρ + 2√(ρ log 1/δ), Bun & Steinke 2016, Prop. 1.3)
    log_inv = math.log(1 / delta)
    textbook = (math.sqrt(log_inv + epsilon) - math.sqrt(log_inv)) ** 2
    assert rho >= textbook
    assert zcdp_epsilon(rho, delta) == pytest.approx(rdp_epsilon(dp_event.ZCDpEvent(rho), delta))


def test_the_ledger_charges_every_draw():
    log = [
        {"kind": "gaussian", "sigma": 4.0, "size": 8},
        {"kind": "gaussian", "sigma": 4.0, "size": 3},
        {"kind": "exponential", "epsilon": 0.2},
    ]
    event = release_event(log)
    assert spent_rho(log) == pytest.approx(2 * 0.5 / 16 + 0.2**2 / 8)
    # dp-accounting's RDP of the ledger is that of the ρ the draws add up to
    assert rdp_epsilon(event, 1e-5) == pytest.approx(rdp_epsilon(dp_event.ZCDpEvent(spent_rho(log)), 1e-5))
    with pytest.raises(PrivacyError, match="without noise"):
        release_event([{"kind": "gaussian", "sigma": 0.0, "size": 8}])


# --- releases through smartnoise-synth ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mst", "aim"])
def test_a_release_s_ledger_replays_to_at_most_its_target(diabetes, tmp_path, method):
    delta, _ = run_delta(diabetes, get_mechanism(f"synth_{method}"))
    files = synthesize(diabetes, tmp_path, method=method, epsilons=[1.0, 3.0], epsilon=1.0)
    info = json.loads(Path(files["log"]).read_text())
    release = load_release(**files, epsilon=1.0, delta=delta)
    assert rdp_epsilon(release.event, delta) <= 1.0
    # the synthesizer spent its budget (not a fraction of it) and measured every one-way marginal
    assert 0.99 * info["rho"] <= spent_rho(info["noise"]) <= info["rho"] * (1 + 1e-12)  # float rounding
    n_columns = len(read_plan(files["plan"])["domain"].columns)
    assert sum(e["kind"] == "gaussian" for e in info["noise"]) >= n_columns
    assert release.x.shape == (int((diabetes.samples["split"] == "train").sum()), diabetes.x.shape[1])
    # a release made for another ε is refused
    with pytest.raises(PrivacyError, match="another budget"):
        load_release(**files, epsilon=3.0, delta=delta)


def test_a_release_whose_noise_overspends_is_refused(diabetes, tmp_path):
    delta, _ = run_delta(diabetes, get_mechanism("synth_mst"))
    files = synthesize(diabetes, tmp_path, method="mst", epsilons=[1.0], epsilon=1.0)
    info = json.loads(Path(files["log"]).read_text())
    info["noise"][0]["sigma"] /= 10  # one marginal measured with a tenth of the noise its budget bought
    Path(files["log"]).write_text(json.dumps(info))
    with pytest.raises(PrivacyError, match="above its budget"):
        load_release(**files, epsilon=1.0, delta=delta)
    # a draw missing from the log (made outside the recorded calls) is refused too
    info["noise"][0]["sigma"] *= 10
    info["noise"] = info["noise"][1:]
    Path(files["log"]).write_text(json.dumps(info))
    with pytest.raises(PrivacyError, match="went unrecorded"):
        load_release(**files, epsilon=1.0, delta=delta)


@pytest.mark.slow
def test_at_a_very_large_epsilon_the_synthetic_marginals_are_the_real_ones(tmp_path):
    """Tolerance: total variation 0.02 per one-way marginal, group share within 0.02 (flchain, 5,511 rows)."""
    prepared = prepare_dataset(name="flchain")
    files = synthesize(prepared, tmp_path, method="mst", epsilons=[1e4], epsilon=1e4)
    delta, _ = run_delta(prepared, get_mechanism("synth_mst"))
    release = load_release(**files, epsilon=1e4, delta=delta)
    domain = read_plan(files["plan"])["domain"]
    rows = fidelity_rows(domain, encode(domain, prepared), release.codes)
    marginals = [r for r in rows if r["kind"] == "marginal"]
    assert len(marginals) == len(domain.columns)
    assert max(r["total_variation"] for r in marginals) <= 0.02, marginals
    groups = [r for r in rows if r["kind"] == "group"]
    assert max(abs(r["real_share"] - r["synthetic_share"]) for r in groups) <= 0.02
    # at a small ε the release is visibly noisier: the tolerance above is not met by any release
    (tmp_path / "small").mkdir()
    files_1 = synthesize(prepared, tmp_path / "small", method="mst", epsilons=[0.05], epsilon=0.05)
    noisy = load_release(**files_1, epsilon=0.05, delta=delta)
    rows_1 = fidelity_rows(domain, encode(domain, prepared), noisy.codes)
    assert max(r["total_variation"] for r in rows_1 if r["kind"] == "marginal") > 0.02


def test_a_synthesis_run_trains_on_the_release_and_its_card_holds(diabetes, tmp_path):
    delta, _ = run_delta(diabetes, get_mechanism("synth_mst"))
    files = synthesize(diabetes, tmp_path, method="mst", epsilons=[3.0], epsilon=3.0)
    release = load_release(**files, epsilon=3.0, delta=delta)
    x_train, y_train = diabetes.part("train")
    x_val, y_val = diabetes.part("val")
    common = dict(
        model_name="mlp", modality="tabular", x_train=x_train, y_train=y_train, delta=delta,
        config=TrainConfig(epochs=2, batch_size=32), seed=0, x_val=x_val, y_val=y_val,
    )  # fmt: skip
    result = train(**common, epsilon=3.0, method="synth_mst", synthetic=release)
    record = {**result.record, "dataset": "diabetes", "model": "mlp"}
    assert record["accountant"] == "rdp_google" and record["epsilon_spent"] <= 3.0
    assert record["synthesis_rho"] == release.rho
    card = build_privacy_card(
        record, diabetes.meta, statement=get_mechanism("synth_mst").statement(meta=diabetes.meta, record=record)
    )
    assert card["synthesis"]["synthesizer"].startswith("MST")
    assert card["epsilon_rdp_google"] <= 3.0 and math.isnan(card["epsilon_pld"])
    # the model saw the synthetic rows, not the real ones: trained on the real rows it differs
    real = train(**common, epsilon=math.inf, method="synth_mst")
    assert not all(
        torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), real.model.state_dict().values())
    )
    # without a release the run is refused, not trained on the real rows
    with pytest.raises(ConfigError, match="synthetic release"):
        train(**common, epsilon=3.0, method="synth_mst")


def test_every_record_key_of_a_synthesis_run_is_public_covered_or_listed(diabetes, tmp_path):
    """test_releases' classification, for a synthesis run (its release made first, as the workflow does)."""
    from test_releases import COVERED, LISTED, PUBLIC

    files = synthesize(diabetes, tmp_path, method="mst", epsilons=[3.0], epsilon=3.0)
    paths = {k: tmp_path / f"out.{k}" for k in ("model", "scores", "record", "card")}
    train_run(
        prepared=diabetes, model_name="mlp", epsilon=3.0, seed=0, method="synth_mst",
        config=TrainConfig(epochs=1, batch_size=32), device="cpu", synthetic=files,
        **{f"{k}_path": v for k, v in paths.items()},
    )  # fmt: skip
    record = json.loads(paths["record"].read_text())
    card = json.loads(paths["card"].read_text())
    assert not set(record) - PUBLIC - COVERED - set(LISTED), sorted(set(record) - PUBLIC - COVERED - set(LISTED))
    listed = " ".join(card["released_outside_guarantee"])
    for key, phrase in LISTED.items():
        if record.get(key) not in (None, []) and phrase is not None:
            assert phrase in listed, (key, phrase)
    assert "synthesis fidelity table" in listed
