"""Benchmark configs: every shipped one validates; bad ones fail naming the key and the allowed values."""

import copy

import pytest
from dpfair.errors import ConfigError
from dpfair.pipeline.benchmark import load_benchmark, load_yaml, validate_config

GOOD = {
    "datasets": {"synthetic_lesions": {"params": {"n_samples": 100}}},
    "models": ["cnn"],
    "epsilons": [1, "inf"],
    "seeds": [0],
}


def config(**changes):
    c = copy.deepcopy(GOOD)
    c.update(changes)
    return c


def test_every_shipped_benchmark_validates(repo):
    paths = sorted((repo / "benchmarks").glob("*.yaml"))
    assert paths
    for path in paths:
        assert load_benchmark(path).runs(), path


def test_default_grid(repo):
    b = load_benchmark(repo / "benchmarks" / "default.yaml")
    assert b.cells() == [("synthetic_lesions", "cnn"), ("support2", "mlp")]
    assert b.epsilons == ["1", "3", "10", "inf"] and b.seeds == list(range(12))
    # the primary question only: dpsgd on both cells, 12 seeds per arm (96 runs)
    assert len(b.runs()) == 2 * 4 * 12
    assert b.methods_for("synthetic_lesions") == ["dpsgd"] and b.methods_for("support2") == ["dpsgd"]
    assert b.split("synthetic_lesions")["test_fraction"] == 0.5 and b.split("support2")["test_fraction"] == 0.35
    assert b.dataset_settings("synthetic_lesions")["primary"]["attributes"] == ["site"]
    assert b.runs()[0].path == "synthetic_lesions/cnn/dpsgd/eps-1/seed-0"
    assert b.config["privacy"]["accountant"] == "prv"


def test_methods_grid(repo):
    b = load_benchmark(repo / "benchmarks" / "methods.yaml")
    assert b.seeds == [0, 1, 2]
    # dpsgd on both cells (24 runs), dpsgd_patient on the images (12), two fairness mitigations on the
    # images at every finite ε only (their ε = ∞ arm is dpsgd's): 18, and dpsgd privately tuned on the
    # images at every ε, its own ε = ∞ arm included (equal effort): 12
    assert len(b.runs()) == 24 + 12 + 2 * 3 * 3 + 12
    assert b.methods_for("synthetic_lesions") == [
        "dpsgd",
        "dpsgd_patient",
        "dpsgd_f",
        "dpsgd_global_adapt",
        "dpsgd-tuned",
    ]
    assert b.tuning("synthetic_lesions") == {"enabled": True, "trials": 2} and not b.tuning("support2")["enabled"]
    assert b.methods_for("support2") == ["dpsgd"] and b.mitigation("synthetic_lesions")["attribute"] == "site"


def test_a_dataset_split_and_primary_family_are_checked():
    with pytest.raises(ConfigError, match=r"datasets.synthetic_lesions.split: val_fraction 0.3 \+ test_fraction 0.7"):
        validate_config(config(datasets={"synthetic_lesions": {"split": {"val_fraction": 0.3, "test_fraction": 0.7}}}))
    with pytest.raises(ConfigError, match=r"datasets.synthetic_lesions.primary.attributes\[0\] = 'sex' is not"):
        validate_config(config(datasets={"synthetic_lesions": {"primary": {"attributes": ["sex"]}}}))
    with pytest.raises(ConfigError, match=r"primary.method = 'dpsgd_f' is not run on synthetic_lesions"):
        validate_config(config(datasets={"synthetic_lesions": {"primary": {"method": "dpsgd_f"}}}))
    with pytest.raises(ConfigError, match=r"primary.metric = 'loss' is not a gap metric"):
        validate_config(config(datasets={"synthetic_lesions": {"primary": {"metric": "loss"}}}))


def test_renamed_and_unknown_method_keys_give_clear_errors():
    with pytest.raises(ConfigError, match="training.grad_sample_mode was renamed to training.clipping_backend"):
        validate_config(config(training={"grad_sample_mode": "hooks"}))
    with pytest.raises(ConfigError, match="datasets.synthetic_lesions.training.grad_sample_mode was renamed"):
        validate_config(config(datasets={"synthetic_lesions": {"training": {"grad_sample_mode": "auto"}}}))
    with pytest.raises(ConfigError, match=r"methods\[0\] = 'dp_sgd' is not a known method; allowed: \['dpsgd'"):
        validate_config(config(methods=["dp_sgd"]))


def test_module_alias_lets_two_entries_share_a_module():
    b = validate_config(config(datasets={"a": {"module": "synthetic_lesions"}, "b": {"module": "synthetic_lesions"}}))
    assert b.cells() == [("a", "cnn"), ("b", "cnn")] and b.module("a") == "synthetic_lesions"
    with pytest.raises(ConfigError, match=r"datasets.a.module: unknown dataset 'nope'"):
        validate_config(config(datasets={"a": {"module": "nope"}}))


def test_defaults_are_filled_but_dataset_overrides_stay_partial():
    b = validate_config(config(training={"lr": 0.01}, datasets={"synthetic_lesions": {"training": {"epochs": 3}}}))
    t = b.training("synthetic_lesions")
    assert (t.epochs, t.lr, t.batch_size) == (3, 0.01, 128)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            dict(datasets={"mnist3d": None}),
            r"datasets.mnist3d: unknown dataset 'mnist3d'; allowed: \[.*'synthetic_lesions'",
        ),
        (
            dict(models=["cnn", "vit"]),
            r"models\[1\] = 'vit' is not a known model; allowed: \['cnn', 'densenet121', 'mlp', 'resnet18'\]",
        ),
        (dict(epsilons=[1, 0]), r"epsilons\[1\]: epsilon must be > 0"),
        (dict(epsilons=[-3]), r"epsilons\[0\]: epsilon must be > 0"),
        (dict(epsilons=["three"]), r"epsilons\[0\]: 'three' is not a number"),
        (dict(epsilons=[1, 1.0]), r"epsilons has duplicates"),
        (
            dict(privacy={"accountant": "gdp"}),
            r"^privacy.accountant = 'gdp' is not a known accountant; allowed: \['prv', 'rdp'\]$",
        ),
        (
            dict(datasets={"synthetic_lesions": {"privacy": {"accountant": "gdp"}}}),
            r"^datasets.synthetic_lesions.privacy.accountant = 'gdp' is not a known accountant; allowed: \['prv', 'rdp'\]$",
        ),
        (
            dict(privacy={"clip_policy": "auto"}),
            r"^privacy.clip_policy = 'auto' is not a known clip policy; allowed: \['flat', 'normalized'\]$",
        ),
        (
            dict(datasets={"synthetic_lesions": {"privacy": {"clip_policy": "auto"}}}),
            r"^datasets.synthetic_lesions.privacy.clip_policy = 'auto' is not a known clip policy; allowed: \['flat', 'normalized'\]$",
        ),
        (
            dict(tuning={"search_space": {"clip_policy": ["flat", "nope"]}}),
            r"^tuning.search_space.clip_policy\[1\] = 'nope' is not a known clip policy; allowed: \['flat', 'normalized'\]$",
        ),
        (
            dict(datasets={"synthetic_lesions": {"tuning": {"nonprivate_search_space": {"clip_policy": ["nope"]}}}}),
            r"^datasets.synthetic_lesions.tuning.nonprivate_search_space.clip_policy\[0\] = 'nope' is not a known clip policy",
        ),
        (
            dict(audit={"attacks": ["loss", "lira"]}),
            r"^audit.attacks\[1\] = 'lira' is not a known attack; allowed: \[.*'loss', 'one_run', 'rmia'",
        ),
        (dict(privacy={"delta": 2}), r"privacy.delta"),
        (
            dict(training={"epoch": 3}),
            r"training: Additional properties .*'epoch' was unexpected.*allowed keys: \[.*'batch_size', .*'epochs'",
        ),
        (dict(models=["mlp"]), r"datasets.synthetic_lesions: no model in models \['mlp'\] accepts 'image'"),
        (dict(epsilons=[0.123456789]), r"epsilons\[0\] = 0.123456789 has more than 6 significant digits"),
        (dict(seeds=[0.0]), r"seeds\[0\] = 0.0: write seeds as whole numbers"),
        (dict(training={"batch_size": 64.0}), r"training.batch_size must be a whole number >= 1, got 64.0"),
        (
            dict(evaluation={"intersections": [["site", "agegroup"]]}),
            r"evaluation.intersections\[0\] names \['agegroup'\]",
        ),
        (dict(device="gpu"), r"device: 'gpu' does not match"),
        (
            dict(evaluation={"intersections": [["site", "site"]]}),
            r"^evaluation.intersections\[0\] = \['site', 'site'\] names \['site'\] more than once; an intersection "
            r"combines two or more different attributes",
        ),
        (
            dict(
                datasets={"synthetic_lesions": None, "support2": None},
                models=["cnn", "mlp"],
                evaluation={"intersections": [["sex", "age_group"], ["age_group", "sex"]]},
            ),
            r"^evaluation.intersections\[1\] = \['age_group', 'sex'\] repeats evaluation.intersections\[0\] = "
            r"\['sex', 'age_group'\] \(the same groups\); list each intersection once$",
        ),
        (
            dict(seeds=[0, 1], audit={"reference_seeds": [1, 7]}),
            r"^audit.reference_seeds\[1\] = 7 is not one of seeds \[0, 1\]; pick seeds the benchmark trains, or "
            r"leave audit.reference_seeds unset \(the first seed, 0\)$",
        ),
        (dict(audit={"reference_seeds": [0, 0]}), r"^audit.reference_seeds has duplicates: \[0, 0\]"),
    ],
)
def test_bad_config_names_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config(**changes))


def test_audit_defaults_follow_the_seeds_and_are_not_checked_with_the_audit_off():
    """Seeds without 0 were refused through audit.reference_seeds, a key the user never set (issue 27)."""
    b = validate_config(config(seeds=[3, 4]))
    assert b.seeds == [3, 4] and b.config["audit"]["reference_seeds"] == [3]
    assert validate_config(config(seeds=[3, 4], audit={"reference_seeds": [4]})).config["audit"]["reference_seeds"] == [
        4
    ]
    # the audit off (either way): a reference seed that is not trained is never used, so it is not refused
    for off in ({"evaluation": {"membership_inference": False}}, {"audit": {"attacks": []}}):
        changes = {**off, "audit": {**off.get("audit", {}), "reference_seeds": [7]}}
        validate_config(config(seeds=[3, 4], **changes))


def test_speed_runs_only_when_a_benchmark_asks(repo):
    assert validate_config(config()).config["speed"]["enabled"] is False
    asking = [
        p.stem for p in sorted((repo / "benchmarks").glob("*.yaml")) if load_benchmark(p).config["speed"]["enabled"]
    ]
    assert asking == ["speed"]


@pytest.mark.parametrize("key", ["datasets", "models", "epsilons", "seeds"])
def test_missing_key_is_named(key):
    c = config()
    del c[key]
    with pytest.raises(ConfigError, match=f"'{key}' is a required property"):
        validate_config(c)


def test_broken_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line 2, column 1: not valid YAML"):
        load_yaml(path)


def test_parsing_the_workflow_does_not_import_opacus():
    """Importing opacus configures the root logger, which doubles every line Snakemake prints."""
    import subprocess
    import sys

    code = (
        "import sys, dpfair.pipeline.benchmark, dpfair.models; print(any(m.startswith('opacus') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_evaluate_jobs_import_no_torch_and_nothing_imports_monai_before_a_model_is_built():
    """An evaluate job (dpfair.pipeline.evaluation) starts without torch, Opacus or MONAI (docs/speed.md)."""
    import subprocess
    import sys

    code = (
        "import sys, dpfair.pipeline.evaluation; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'opacus', 'monai'}));"
        "import dpfair.models, dpfair.pipeline.runner; print('monai' in sys.modules);"
        "dpfair.models.build_model('mlp', input_shape=(3,), modality='tabular'); print('monai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False", "True"]


def test_registry_names_are_checked_against_the_registries_not_the_schema(repo):
    """The schema has no enum for attacks, clip policies or accountants; each registry decides what is allowed."""
    from dpfair.audit.registry import available_attacks
    from dpfair.pipeline.benchmark import SCHEMA_PATH
    from dpfair.privacy.clipping import adaptive  # noqa: F401  (registers the mechanisms' own group-adaptive policies)
    from dpfair.privacy.clipping.policy import available_clip_policies, configurable_clip_policies

    schema = load_yaml(SCHEMA_PATH)
    assert "enum" not in schema["definitions"]["privacy"]["properties"]["accountant"]
    assert "enum" not in schema["definitions"]["privacy"]["properties"]["clip_policy"]
    assert schema["definitions"]["search_space"]["properties"]["clip_policy"]["items"] == {"type": "string"}
    assert schema["properties"]["audit"]["properties"]["attacks"]["items"] == {"type": "string"}
    for name in available_attacks():
        validate_config(config(audit={"attacks": [name]}))
    for name in configurable_clip_policies():
        assert validate_config(config(privacy={"clip_policy": name})).training("synthetic_lesions").clip_policy == name
    # a policy its mechanism builds (with groups and noise) is registered but not a benchmark's choice
    assert "group_adaptive" in available_clip_policies() and "group_adaptive" not in configurable_clip_policies()
    with pytest.raises(ConfigError, match=r"privacy.clip_policy = 'group_adaptive' is not a known clip policy"):
        validate_config(config(privacy={"clip_policy": "group_adaptive"}))


def test_federated_methods_need_a_site_attribute_seeded_noise_and_the_loss_attack_only():
    sites = {"synthetic_lesions": {"params": {"n_samples": 100, "n_sites": 4}}}
    b = validate_config(
        config(datasets=sites, methods=["dpsgd", "fed_dpsgd", "fed_dp_site"], audit={"attacks": ["loss"]})
    )
    assert b.federated("synthetic_lesions") == {"rounds": 5, "local_epochs": 1, "update_clip": 1.0}
    # fed_dp_site's ε = ∞ arm is fed_dpsgd's FedAvg: trained once
    assert {r.method for r in b.runs() if r.epsilon == "inf"} == {"dpsgd", "fed_dpsgd"}
    with pytest.raises(
        ConfigError,
        match=r"datasets.support2: method fed_dpsgd partitions the training rows by site, and support2 declares no site attribute",
    ):
        validate_config(
            config(datasets={"support2": {}}, models=["mlp"], methods=["fed_dpsgd"], audit={"attacks": ["loss"]})
        )
    with pytest.raises(ConfigError, match=r"audit.attacks \['rmia'\] retrain each audited run's mechanism"):
        validate_config(config(datasets=sites, methods=["fed_dpsgd"], audit={"attacks": ["loss", "rmia"]}))
    with pytest.raises(ConfigError, match=r"privacy.secure_mode is on, and fed_dp_site's server noise"):
        validate_config(
            config(datasets=sites, methods=["fed_dp_site"], audit={"attacks": ["loss"]}, privacy={"secure_mode": True})
        )
    with pytest.raises(ConfigError, match=r"federated.rounds"):
        validate_config(config(datasets=sites, methods=["fed_dpsgd"], federated={"rounds": 0}))
