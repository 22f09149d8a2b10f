"""Benchmark definitions: validate a config against the JSON schema, then check what the schema can't.

Errors name the config key and the allowed values, and are raised before any job runs. Names that a
registry owns (methods, models, datasets, attacks, clip policies, accountants) are plain strings in the
schema and checked here against their registries, so adding one to its registry is all it takes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from dpfair.data.registry import available_datasets, datasets_dir, get_dataset
from dpfair.errors import ConfigError, DatasetError
from dpfair.jobs import EpsilonGroup, JobGroup, SeedGroup, epsilon_groups, seed_groups
from dpfair.models import available_models, get_model
from dpfair.privacy.clipping.policy import configurable_clip_policies
from dpfair.privacy.params import ACCOUNTANTS, format_epsilon, parse_epsilon
from dpfair.training.config import CLIPPING_BACKENDS, TrainConfig
from dpfair.training.tuning.names import split_method, tuned_methods

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
DEFAULT_METHODS: tuple[str, ...] = ("dpsgd",)


@dataclass(frozen=True)
class Run:
    """One run of the grid: dataset, model, method, formatted ε and seed."""

    dataset: str
    model: str
    method: str
    epsilon: str  # formatted: "1", "3", "inf"
    seed: int

    @property
    def path(self) -> str:
        """The run's folder below results/runs/ (and its log and benchmark stem)."""
        return f"{self.dataset}/{self.model}/{self.method}/eps-{self.epsilon}/seed-{self.seed}"


@dataclass
class Benchmark:
    """A validated benchmark: the config with defaults filled in, and its grid."""

    config: dict
    modalities: dict[str, str]

    @property
    def name(self) -> str:
        """The benchmark's ``name``."""
        return self.config["name"]

    @property
    def datasets(self) -> list[str]:
        """The dataset entries, in config order."""
        return list(self.config["datasets"])

    @property
    def epsilons(self) -> list[str]:
        """The target ε values as paths and tables spell them (``1``, ``0.5``, ``inf``)."""
        return [format_epsilon(e) for e in self.config["epsilons"]]

    @property
    def seeds(self) -> list[int]:
        """The training seeds of every cell."""
        return list(self.config["seeds"])

    @property
    def seeds_per_job(self) -> int | str:
        """``execution.seeds_per_job``: ``"all"`` or a whole number."""
        return (self.config.get("execution") or {}).get("seeds_per_job", "all")

    @property
    def epsilons_per_job(self) -> int | str:
        """``execution.epsilons_per_job``: ``"all"`` (one train and evaluate job for every ε of a (dataset, model, method)) or 1."""
        return (self.config.get("execution") or {}).get("epsilons_per_job", "all")

    def epsilon_groups(self) -> list[EpsilonGroup]:
        """The ε groups of this benchmark's train and evaluate jobs (:func:`dpfair.jobs.epsilon_groups`)."""
        epsilons_of: dict[tuple[str, str], list[str]] = {}
        for run in self.runs():
            values = epsilons_of.setdefault((run.dataset, run.method), [])
            if run.epsilon not in values:
                values.append(run.epsilon)
        return epsilon_groups(epsilons_of, self.epsilons_per_job)

    def job_groups(self) -> list[JobGroup]:
        """What each train and evaluate rule's jobs run: every ε group times every seed group."""
        return [JobGroup(e, s) for e in self.epsilon_groups() for s in self.seed_groups()]

    def seed_groups(self, seeds: list[int] | None = None) -> list[SeedGroup]:
        """The seed groups of this benchmark's jobs: of its ``seeds``, or of ``seeds`` (the audit's reference seeds)."""
        return seed_groups(self.seeds if seeds is None else list(seeds), self.seeds_per_job)

    def models_for(self, dataset: str) -> list[str]:
        """Models run on ``dataset`` (its own ``models`` or the benchmark's), those that accept its modality."""
        wanted = self.dataset_settings(dataset).get("models") or self.config["models"]
        return [m for m in wanted if self.modalities[dataset] in get_model(m).modalities]

    def methods_for(self, dataset: str) -> list[str]:
        """Privacy mechanisms run on ``dataset`` (its own ``methods`` or the benchmark's).

        With tuning enabled, each tunable method ``m`` also runs as ``m-tuned`` (``dpfair.training.tuning``): the
        fixed recipe and the privately tuned one side by side.
        """
        methods = list(self.dataset_settings(dataset).get("methods") or self.config["methods"])
        if self.tuning(dataset).get("enabled"):
            methods += tuned_methods(methods)
        return methods

    @property
    def methods(self) -> list[str]:
        """Every method some dataset runs (tuned arms included), sorted."""
        return sorted({m for d in self.datasets for m in self.methods_for(d)})

    def cells(self) -> list[tuple[str, str]]:
        """The grid's (dataset, model) pairs, in config order."""
        return [(d, m) for d in self.datasets for m in self.models_for(d)]

    def runs(self) -> list[Run]:
        """Every run of the grid.

        A method whose ε = ∞ arm is another method's (``nonprivate_arm_of``, e.g. the fairness mitigations
        run dpsgd's non-private loop) skips ε = ∞ where that method runs too.
        """
        return [
            Run(d, m, method, e, s)
            for d, m in self.cells()
            for method in self.methods_for(d)
            for e in self.epsilons
            for s in self.seeds
            if not (e == "inf" and _nonprivate_arm_of(method) in self.methods_for(d))
        ]

    def dataset_settings(self, dataset: str) -> dict:
        """The dataset's own config entry (empty for a bare entry)."""
        return self.config["datasets"][dataset] or {}

    def module(self, dataset: str) -> str:
        """The dataset module behind a config entry (the entry's name unless it sets ``module``)."""
        return self.dataset_settings(dataset).get("module", dataset)

    def training(self, dataset: str) -> TrainConfig:
        """The dataset's :class:`TrainConfig`: its ``training:`` over the benchmark's.

        The config also carries the privacy settings training needs (clipping bound, accountant, rows per
        patient, clip policy) and the mitigation settings.
        """
        merged = {**self.config["training"], **self.dataset_settings(dataset).get("training", {})}
        privacy = self.privacy(dataset)
        return TrainConfig(
            **merged,
            max_grad_norm=privacy["max_grad_norm"],
            accountant=privacy["accountant"],
            max_rows_per_patient=privacy.get("max_rows_per_patient"),
            clip_policy=privacy.get("clip_policy", "flat"),
            secure_mode=bool(privacy.get("secure_mode", False)),
            mitigation=self.mitigation(dataset),
        )

    def tuning(self, dataset: str) -> dict:
        """The dataset's ``tuning:`` block merged over the benchmark's (``enabled: false`` when neither sets one)."""
        merged = {**(self.config.get("tuning") or {}), **(self.dataset_settings(dataset).get("tuning") or {})}
        if "expected_trials" in merged:
            where = (
                f"datasets.{dataset}.tuning"
                if "expected_trials" in (self.dataset_settings(dataset).get("tuning") or {})
                else "tuning"
            )
            raise ConfigError(
                f"{where}.expected_trials was removed: a random number of trials is private only while it is "
                f"secret, and a benchmark publishes it; set {where}.trials (a fixed, public K; every trial is charged)"
            )
        return merged

    def mitigation(self, dataset: str) -> dict:
        """The mitigation settings of ``dataset`` (its own over the benchmark's ``mitigation:``)."""
        return {**(self.config.get("mitigation") or {}), **(self.dataset_settings(dataset).get("mitigation") or {})}

    def synthesis(self, dataset: str) -> dict:
        """The synthesis settings of ``dataset`` (its own over the benchmark's ``synthesis:``, over the defaults)."""
        defaults = {"n_bins": 8, "aim_rounds_per_column": 2}
        return {
            **defaults,
            **(self.config.get("synthesis") or {}),
            **(self.dataset_settings(dataset).get("synthesis") or {}),
        }

    def federated(self, dataset: str) -> dict:
        """The federated settings of ``dataset`` (its own over the benchmark's ``federated:``, over the defaults)."""
        from dpfair.federated.settings import FederatedSettings

        own = self.dataset_settings(dataset).get("federated") or {}
        where = f"datasets.{dataset}.federated" if own else "federated"
        merged = {**(self.config.get("federated") or {}), **own}
        return FederatedSettings.from_config(merged, where=where).params()

    def findings(self) -> dict | None:
        """The findings stage's settings (``findings:``), each dataset's model and gap attribute resolved; None when off.

        A dataset's model is its only one or ``findings.models.<dataset>``; its gap attribute is
        ``findings.attributes.<dataset>``, else the first attribute of its ``primary`` block (none: the dataset
        enters findings 1 and 2 only, as MedMNIST does, which has no demographics).
        """
        spec = dict(self.config.get("findings") or {})
        if not spec.get("enabled"):
            return None
        models, attributes = {}, {}
        for dataset in self.datasets:
            chosen = (spec.get("models") or {}).get(dataset)
            runs = self.models_for(dataset)
            if chosen is None and len(runs) > 1:
                raise ConfigError(
                    f"findings.models: {dataset} runs models {runs}; name the one its findings read, e.g. "
                    f"findings: {{models: {{{dataset}: {runs[0]}}}}}"
                )
            chosen = chosen or runs[0]
            if chosen not in runs:
                raise ConfigError(f"findings.models.{dataset} is {chosen!r}, not one of the models it runs {runs}")
            models[dataset] = chosen
            primary = (self.dataset_settings(dataset).get("primary") or {}).get("attributes") or []
            attribute = (spec.get("attributes") or {}).get(dataset) or (primary[0] if primary else None)
            if attribute is not None:
                attributes[dataset] = attribute
        unknown = sorted(set(spec.get("models") or {}) - set(self.datasets))
        if unknown:
            raise ConfigError(f"findings.models names datasets the benchmark does not run: {unknown}")
        return {**spec, "models": models, "attributes": attributes}

    def split(self, dataset: str) -> dict:
        """The dataset's ``split:`` fractions over the benchmark's (seed: the benchmark's)."""
        return {**self.config["split"], **self.dataset_settings(dataset).get("split", {})}

    def privacy(self, dataset: str) -> dict:
        """The dataset's ``privacy:`` settings over the benchmark's."""
        return {**self.config["privacy"], **self.dataset_settings(dataset).get("privacy", {})}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping.

    YAML parsers keep the last of two equal keys without a word, so a benchmark that declares, say, two
    ``primary:`` families for one dataset would run with whichever came last.
    """

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; bad input is a ConfigError naming the file.

    A missing file, a syntax error (with its line and column), a key written twice in one mapping (with both
    lines) or a document that is not a mapping.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context = getattr(exc, "context", None)
        raise ConfigError(f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a benchmark definition is a YAML mapping of keys, got a {type(data).__name__}")
    return data


def validate_config(config: dict, *, schema_path: str | Path = SCHEMA_PATH) -> Benchmark:
    """Validate ``config`` in place (filling schema defaults) and return the :class:`Benchmark`.

    Example:
        >>> b = validate_config({"datasets": {"support2": None}, "models": ["mlp", "cnn"],
        ...                      "epsilons": [1, "inf"], "seeds": [0]})
        >>> b.cells(), b.epsilons
        ([('support2', 'mlp')], ['1', 'inf'])
    """
    schema = load_yaml(schema_path)
    _check_renamed_keys(config)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid benchmark config:\n" + "\n".join(_describe(e) for e in errors))
    # Defaults fill the top level only: a per-dataset override holds just the keys it overrides.
    top_level = copy.deepcopy(schema)
    top_level["properties"]["datasets"] = {"type": "object"}
    filler = _validator_with_defaults()(top_level)
    for _ in range(2):  # the second pass fills inside objects the first pass defaulted
        filler.validate(config)

    for i, eps in enumerate(config["epsilons"]):
        value = parse_epsilon(eps, where=f"epsilons[{i}]")
        if float(format_epsilon(value)) != value:  # ε reaches training through its path form
            raise ConfigError(f"epsilons[{i}] = {eps!r} has more than 6 significant digits; round it")
    for i, seed in enumerate(config["seeds"]):
        if isinstance(seed, float):
            raise ConfigError(f"seeds[{i}] = {seed!r}: write seeds as whole numbers (0, not 0.0)")
    if len(set(format_epsilon(e) for e in config["epsilons"])) != len(config["epsilons"]):
        raise ConfigError(f"epsilons has duplicates: {config['epsilons']}")
    if len(set(config["seeds"])) != len(config["seeds"]):
        raise ConfigError(f"seeds has duplicates: {config['seeds']}")
    _fill_and_check_reference_seeds(config)

    # the mechanisms import Opacus, which configures the root logger: load them when validating, not on import
    from dpfair.training.mechanisms import available_mechanisms

    known_methods = available_mechanisms()
    method_lists = [("methods", config["methods"])] + [
        (f"datasets.{name}.methods", (settings or {}).get("methods", []))
        for name, settings in config["datasets"].items()
    ]
    for where, methods in method_lists:
        for i, m in enumerate(methods):
            if m not in known_methods:
                raise ConfigError(f"{where}[{i}] = {m!r} is not a known method; allowed: {known_methods}")
        if len(set(methods)) != len(methods):
            raise ConfigError(f"{where} has duplicates: {methods}")
    _check_registered_names(config)
    known_models = available_models()
    for i, m in enumerate(config["models"]):
        if m not in known_models:
            raise ConfigError(f"models[{i}] = {m!r} is not a known model; allowed: {known_models}")
    root = datasets_dir(config["datasets_dir"])
    known = available_datasets(root)
    modalities = {}
    for name, settings in config["datasets"].items():
        module = (settings or {}).get("module", name)
        if module not in known:
            key = f"datasets.{name}.module" if module != name else f"datasets.{name}"
            raise ConfigError(f"{key}: unknown dataset {module!r}; allowed: {known} (modules in {root})")
        try:
            modalities[name] = get_dataset(module, root).card.modality
        except DatasetError as exc:
            raise ConfigError(f"datasets.{name}: {exc}") from exc
        for i, m in enumerate((settings or {}).get("models", [])):
            if m not in known_models:
                raise ConfigError(f"datasets.{name}.models[{i}] = {m!r} is not a known model; allowed: {known_models}")
    benchmark = Benchmark(config=config, modalities=modalities)
    attributes = {
        a for name in benchmark.datasets for a in get_dataset(benchmark.module(name), root).card.sensitive_attributes
    }
    _check_intersections(config["evaluation"]["intersections"], attributes)
    for name in benchmark.datasets:
        if not benchmark.models_for(name):
            raise ConfigError(
                f"datasets.{name}: no model in models {config['models']} accepts {modalities[name]!r} inputs; "
                f"add one that does ({[m for m in known_models if modalities[name] in get_model(m).modalities]})"
            )
        benchmark.training(name)  # TrainConfig checks the merged values
        _check_mitigation(benchmark, name, get_dataset(benchmark.module(name), root).card.sensitive_attributes)
        _check_modalities(benchmark, name)
        _check_primary(benchmark, name, get_dataset(benchmark.module(name), root).card.sensitive_attributes)
        split = benchmark.split(name)
        if split["val_fraction"] + split["test_fraction"] > 0.9:
            raise ConfigError(
                f"datasets.{name}.split: val_fraction {split['val_fraction']} + test_fraction "
                f"{split['test_fraction']} leaves under 10% of the rows to train on; lower one of them"
            )
    benchmark.epsilon_groups()  # a grid whose jobs one rule per ε group cannot tell apart is refused here too
    benchmark.findings()  # each dataset's model and gap attribute for the findings, refused here if ambiguous
    return benchmark


def load_benchmark(path: str | Path) -> Benchmark:
    """Read the benchmark definition at ``path`` and validate it (:func:`validate_config`)."""
    return validate_config(copy.deepcopy(load_yaml(path)))


def _check_modalities(benchmark: Benchmark, name: str) -> None:
    """Refuse a method on a modality it cannot run on, and a synthesis method with the retraining attacks.

    DP synthesis makes tabular rows only; the audit's reference-model and canary attacks retrain the run's
    mechanism, which for a synthesis method would need a synthesis of its own per model.
    """
    from dpfair.training.mechanisms import get_mechanism

    modality = benchmark.modalities[name]
    for method in benchmark.methods_for(name):
        mechanism = get_mechanism(split_method(method)[0])
        if mechanism.modalities is not None and modality not in mechanism.modalities:
            raise ConfigError(
                f"datasets.{name}: method {method} runs on {'/'.join(mechanism.modalities)} data only and {name} is "
                f"{modality}; list the methods of {name} without it (datasets.{name}.methods)"
            )
        if mechanism.synthesizes and benchmark.privacy(name).get("secure_mode"):
            raise ConfigError(
                f"datasets.{name}: privacy.secure_mode is on, and {method}'s synthesizer draws its noise from a seeded "
                "NumPy generator (reproducible, not a secure sampler); switch secure_mode off for this dataset or drop "
                f"{method}"
            )
        if mechanism.federated:
            _check_federated(benchmark, name, method)
        if mechanism.synthesizes and _audits(benchmark.config):
            retraining = [a for a in benchmark.config["audit"]["attacks"] if a != "loss"]
            if retraining:
                raise ConfigError(
                    f"audit.attacks {retraining} retrain each audited run's mechanism, which for {method} would need a "
                    f"synthesis per model; audit it with attacks: [loss] (the membership of the real training rows "
                    "against the model trained on synthetic rows)"
                )


def _check_federated(benchmark: Benchmark, name: str, method: str) -> None:
    """A federated method needs a dataset with a declared site attribute, seeded noise and the loss attack only."""
    card = get_dataset(benchmark.module(name), datasets_dir(benchmark.config["datasets_dir"])).card
    if not card.site_attribute:
        raise ConfigError(
            f"datasets.{name}: method {method} partitions the training rows by site, and {card.name} declares no "
            f"site attribute (card.site_attribute); drop it from this dataset's methods (datasets.{name}.methods)"
        )
    benchmark.federated(name)  # the settings' own checks, with their key
    if benchmark.privacy(name).get("secure_mode"):
        raise ConfigError(
            f"datasets.{name}: privacy.secure_mode is on, and {method}'s server noise comes from Flower's seeded NumPy "
            "generator; switch secure_mode off for this dataset or drop the federated methods"
        )
    if _audits(benchmark.config):
        retraining = [a for a in benchmark.config["audit"]["attacks"] if a != "loss"]
        if retraining:
            raise ConfigError(
                f"audit.attacks {retraining} retrain each audited run's mechanism, which for {method} would be a "
                "federated simulation per model; audit it with attacks: [loss]"
            )


def _audits(config: dict) -> bool:
    return bool(config["evaluation"].get("membership_inference", True)) and bool(config["audit"].get("attacks"))


def _nonprivate_arm_of(method: str) -> str | None:
    from dpfair.training.mechanisms import get_mechanism

    base, tuned = split_method(method)
    if tuned:  # a tuned arm's ε = ∞ run is its own search (equal effort), never another method's
        return None
    return get_mechanism(base).nonprivate_arm_of


def _fill_and_check_reference_seeds(config: dict) -> None:
    """``audit.reference_seeds`` defaults to the first seed; set ones must be trained (unchecked with the audit off)."""
    # the audit plan imports the attack registry (scikit-learn, fairlearn): load it when validating, not on import
    from dpfair.audit.plan import check_reference_seeds, reference_seeds

    config["audit"]["reference_seeds"] = reference_seeds(config, config["seeds"])
    check_reference_seeds(config, config["seeds"])


def _check_intersections(intersections: list[list[str]], attributes: set[str]) -> None:
    """Each intersection names distinct attributes some dataset has, and no two name the same attributes."""
    seen: dict[frozenset, int] = {}
    for i, combo in enumerate(intersections):
        unknown = [a for a in combo if a not in attributes]
        if unknown:
            raise ConfigError(
                f"evaluation.intersections[{i}] names {unknown}, which no dataset of this benchmark has; "
                f"its datasets' attributes: {sorted(attributes)}"
            )
        repeated = sorted({a for a in combo if combo.count(a) > 1})
        if repeated:
            raise ConfigError(
                f"evaluation.intersections[{i}] = {combo} names {repeated} more than once; an intersection "
                f"combines two or more different attributes, e.g. [sex, age_group]"
            )
        key = frozenset(combo)
        if key in seen:
            raise ConfigError(
                f"evaluation.intersections[{i}] = {combo} repeats evaluation.intersections[{seen[key]}] = "
                f"{intersections[seen[key]]} (the same groups); list each intersection once"
            )
        seen[key] = i


def _check_registered_names(config: dict) -> None:
    """Attacks, clip policies and accountants, wherever the config names them, against their registries.

    Each error is one line naming the key and the allowed values. Per-dataset overrides are checked under
    their own key (``datasets.<name>.privacy.clip_policy``), not only once merged into a run's settings.
    """
    # the attack registry imports its attack modules (scikit-learn, fairlearn): load it when validating, not on import
    from dpfair.audit.registry import check_attack_names

    check_attack_names(config["audit"]["attacks"], where="audit.attacks")
    policies, accountants = configurable_clip_policies(), list(ACCOUNTANTS)
    sections = [("", config)] + [(f"datasets.{name}.", settings or {}) for name, settings in config["datasets"].items()]
    for prefix, section in sections:
        privacy = section.get("privacy") or {}
        if "accountant" in privacy:
            _check_known(f"{prefix}privacy.accountant", privacy["accountant"], accountants, "accountant")
        if "clip_policy" in privacy:
            _check_known(f"{prefix}privacy.clip_policy", privacy["clip_policy"], policies, "clip policy")
        tuning = section.get("tuning") or {}
        for space in ("search_space", "nonprivate_search_space", "private_search_space"):
            for i, policy in enumerate((tuning.get(space) or {}).get("clip_policy", [])):
                _check_known(f"{prefix}tuning.{space}.clip_policy[{i}]", policy, policies, "clip policy")


def _check_known(where: str, name: str, known: list[str], kind: str) -> None:
    if name not in known:
        raise ConfigError(f"{where} = {name!r} is not a known {kind}; allowed: {known}")


def _check_mitigation(benchmark: Benchmark, name: str, attributes) -> None:
    """A dataset running a fairness mitigation must name one of its sensitive attributes as the target."""
    from dpfair.training.mechanisms import get_mechanism

    mitigations = [m for m in benchmark.methods_for(name) if get_mechanism(split_method(m)[0]).targets_attribute]
    if not mitigations:
        return
    attribute = benchmark.mitigation(name).get("attribute")
    if not attribute or any(a not in attributes for a in str(attribute).split(":")):
        raise ConfigError(
            f"datasets.{name}.mitigation.attribute = {attribute!r}: methods {mitigations} need the sensitive attribute "
            f"they target; allowed: {list(attributes)}"
        )


def _check_primary(benchmark: Benchmark, name: str, attributes) -> None:
    """A declared primary family must name a method the dataset runs, a gap metric and its own attributes."""
    from dpfair.fairness import gap_metric_names

    spec = benchmark.dataset_settings(name).get("primary")
    if not spec:
        return
    where = f"datasets.{name}.primary"
    method = spec.get("method", "dpsgd")
    if method not in benchmark.methods_for(name):
        raise ConfigError(f"{where}.method = {method!r} is not run on {name}; allowed: {benchmark.methods_for(name)}")
    metric = spec.get("metric", "auroc")
    if metric not in gap_metric_names():
        raise ConfigError(f"{where}.metric = {metric!r} is not a gap metric; allowed: {list(gap_metric_names())}")
    for i, attribute in enumerate(spec.get("attributes") or []):
        if any(part not in attributes for part in str(attribute).split(":")):
            raise ConfigError(
                f"{where}.attributes[{i}] = {attribute!r} is not a sensitive attribute of {name}; "
                f"allowed: {list(attributes)}"
            )


def _check_renamed_keys(config: dict) -> None:
    """Keys that were renamed get an error naming the new key, not a generic 'unexpected key'."""
    places = [("training", config.get("training"))] + [
        (f"datasets.{name}.training", (settings or {}).get("training"))
        for name, settings in (config.get("datasets") or {}).items()
        if isinstance(settings, dict)
    ]
    for where, section in places:
        if isinstance(section, dict) and "grad_sample_mode" in section:
            raise ConfigError(
                f"{where}.grad_sample_mode was renamed to {where}.clipping_backend (same values: "
                f"{list(CLIPPING_BACKENDS)}); which DP method runs is set by 'methods:'"
            )


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        message += f"; allowed keys: {allowed}"
    elif error.validator == "enum":
        message += f"; allowed values: {error.validator_value}"
    return f"- {where}: {message}"


def _validator_with_defaults():
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})
