"""The worked example of docs/adding-a-mechanism.md runs as written: its module registers a mechanism that
meets the contract, its check block trains within ε, and its `methods:` line puts it in a benchmark's grid."""

import functools
import math
import re
import types

import pytest
import yaml
from dpfair.pipeline.cli import main
from dpfair.privacy.ledger import PLD_DISCRETIZATION, event_from_json, replay_epsilon
from dpfair.training.mechanisms import UNITS, Mechanism, available_mechanisms, base, get_mechanism, register_mechanism

DOC = "docs/adding-a-mechanism.md"
NAME = "dpsgd_last_layer"


def blocks(repo, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (repo / DOC).read_text(), re.S)


def module_block(repo) -> str:
    return next(b for b in blocks(repo, "python") if "@register_mechanism(" in b)


def check_block(repo) -> str:
    return next(b for b in blocks(repo, "python") if "@register_mechanism(" not in b and "train(" in b)


@pytest.fixture
def doc_mechanism(repo, monkeypatch):
    """The page's module, executed as a module of its own and registered with force; unregistered after."""
    previous = base._MECHANISMS.get(NAME)
    module = types.ModuleType(f"docs_example_{NAME}")
    with monkeypatch.context() as patch:  # only while the block runs: the registry tests still see the real one
        patch.setattr(base, "register_mechanism", functools.partial(base.register_mechanism, force=True))
        exec(compile(module_block(repo), f"{DOC} ({NAME}.py)", "exec"), module.__dict__)
    yield module
    base._MECHANISMS.pop(NAME, None)
    if previous is not None:
        base._MECHANISMS[NAME] = previous


def test_the_module_is_one_registered_mechanism(doc_mechanism):
    assert NAME in available_mechanisms()
    mechanism = get_mechanism(NAME)
    assert isinstance(mechanism, Mechanism) and mechanism.name == NAME
    assert mechanism.unit in UNITS and mechanism.relation in ("add_or_remove_one", "replace_one")
    # the capabilities the page says it leaves unset
    assert not mechanism.uses_groups and not mechanism.targets_attribute and mechanism.nonprivate_arm_of is None
    with pytest.raises(ValueError, match="already registered"):
        register_mechanism(NAME)(type("Again", (Mechanism,), {}))


def test_the_module_states_its_card(doc_mechanism):
    # as tests/test_ledger.py asks of every mechanism
    meta = {"card": {"patient_unit": "lesion"}, "train_patients": {"n": 10, "max_rows": 3}}
    record = {"clipping_backend": "bookkeeping", "epsilon": 3.0, "delta": 1e-5}
    mechanism = get_mechanism(NAME)
    text = mechanism.card_text(meta=meta, record=record)
    assert set(text) == {"clipping", "privacy_unit_enforcement", "guarantee_covers"} and all(text.values())
    assert "only the last linear layer is trained" in text["clipping"]
    statement = mechanism.statement(meta=meta, record=record)
    assert statement["unit"] == "record" and statement["relation"] == "add_or_remove_one"
    assert {"clipping", "privacy_unit_enforcement", "guarantee_covers", "group_privacy"} <= set(statement)


def test_the_check_block_runs_and_its_ledger_replays_within_epsilon(doc_mechanism, repo):
    namespace: dict = {}
    exec(compile(check_block(repo), f"{DOC} (check)", "exec"), namespace)  # its own asserts must hold
    record = namespace["result"].record
    assert record["method"] == NAME and record["privacy_unit"] == "record"
    # the ledger, replayed by dp-accounting alone, is within the target (PLD rounds up by its discretization)
    event = event_from_json(record["ledger"])
    assert replay_epsilon(event, accountant="pld", delta=record["delta"]) <= record["epsilon"] + PLD_DISCRETIZATION
    # only the last layer is trainable (what the run record counts as its parameters)
    last = [m for m in namespace["result"].model.modules() if m.__class__.__name__ == "Linear"][-1]
    assert record["n_parameters"] == sum(p.numel() for p in last.parameters())


def test_the_nonprivate_arm_trains_the_last_layer_too(doc_mechanism):
    import torch
    from dpfair.models import build_model
    from dpfair.training.config import TrainConfig
    from dpfair.training.loop import train

    x, y = torch.randn(200, 6), torch.randint(0, 2, (200,)).float()
    result = train(
        model_name="mlp",
        modality="tabular",
        x_train=x,
        y_train=y,
        epsilon=math.inf,
        delta=1e-4,
        config=TrainConfig(epochs=1, batch_size=50),
        seed=0,
        method=NAME,
    )
    torch.manual_seed(0)
    initial = build_model("mlp", input_shape=(6,), modality="tabular").state_dict()
    changed = [k for k, v in result.model.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed == ["output.weight", "output.bias"] and result.record["ledger"] is None


def test_the_methods_line_puts_it_in_a_benchmark(doc_mechanism, repo, tmp_path, capsys):
    line = next(b for b in blocks(repo, "yaml") if "methods:" in b)
    config = yaml.safe_load((repo / "benchmarks" / "label_dp.yaml").read_text())
    config.update(yaml.safe_load(line))
    assert NAME in config["methods"]
    path = tmp_path / "last_layer.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    promised = re.search(r"(\d+) training runs", next(b for b in blocks(repo, "bash") if "config check" in b))
    assert promised and f"{promised.group(1)} training runs" in out, out
