"""Benchmark definitions: validate a config against the JSON schema, then check what the schema can't.

Errors name the config key and the allowed values, and are raised before any job runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from dpfair.data.registry import available_datasets, datasets_dir, get_dataset
from dpfair.errors import ConfigError, DatasetError
from dpfair.models import available_models, get_model
from dpfair.privacy import check_accountant, format_epsilon, parse_epsilon

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
OPTIMIZER_NAMES: tuple[str, ...] = ("adam", "sgd")
#: Per-sample clipping paths: dpfair's book-keeping path and Opacus's grad-sample modes ("auto" picks).
GRAD_SAMPLE_MODES: tuple[str, ...] = ("auto", "bookkeeping", "hooks", "functorch", "ew", "ghost")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; identical across the ε grid of a (dataset, model) cell."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "auto"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ConfigError(f"training.optimizer = {self.optimizer!r}; allowed: {list(OPTIMIZER_NAMES)}")
        if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
            raise ConfigError(
                f"training.grad_sample_mode = {self.grad_sample_mode!r}; allowed: {list(GRAD_SAMPLE_MODES)}"
            )
        check_accountant(self.accountant)
        for key in ("epochs", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"training.{key} must be a whole number >= 1, got {value!r}")
        if not self.lr > 0 or not self.max_grad_norm > 0:
            raise ConfigError("training.lr and privacy.max_grad_norm must be > 0")




@dataclass(frozen=True)
class Run:
    dataset: str
    model: str
    epsilon: str  # formatted: "1", "3", "inf"
    seed: int


@dataclass
class Benchmark:
    """A validated benchmark: the config with defaults filled in, and its grid."""

    config: dict
    modalities: dict[str, str]

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def datasets(self) -> list[str]:
        return list(self.config["datasets"])

    @property
    def epsilons(self) -> list[str]:
        return [format_epsilon(e) for e in self.config["epsilons"]]

    @property
    def seeds(self) -> list[int]:
        return list(self.config["seeds"])

    def models_for(self, dataset: str) -> list[str]:
        wanted = self.dataset_settings(dataset).get("models") or self.config["models"]
        return [m for m in wanted if self.modalities[dataset] in get_model(m).modalities]

    def cells(self) -> list[tuple[str, str]]:
        return [(d, m) for d in self.datasets for m in self.models_for(d)]

    def runs(self) -> list[Run]:
        return [Run(d, m, e, s) for d, m in self.cells() for e in self.epsilons for s in self.seeds]

    def dataset_settings(self, dataset: str) -> dict:
        return self.config["datasets"][dataset] or {}

    def module(self, dataset: str) -> str:
        """The dataset module behind a config entry (the entry's name unless it sets ``module``)."""
        return self.dataset_settings(dataset).get("module", dataset)

    def training(self, dataset: str) -> TrainConfig:
        merged = {**self.config["training"], **self.dataset_settings(dataset).get("training", {})}
        privacy = self.privacy(dataset)
        return TrainConfig(**merged, max_grad_norm=privacy["max_grad_norm"], accountant=privacy["accountant"])

    def privacy(self, dataset: str) -> dict:
        return {**self.config["privacy"], **self.dataset_settings(dataset).get("privacy", {})}


def load_yaml(path: str | Path) -> dict:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def validate_config(config: dict, *, schema_path: str | Path = SCHEMA_PATH) -> Benchmark:
    """Validate ``config`` in place (filling schema defaults) and return the :class:`Benchmark`.

    Example:
        >>> b = validate_config({"datasets": {"support2": None}, "models": ["mlp", "cnn"],
        ...                      "epsilons": [1, "inf"], "seeds": [0]})
        >>> b.cells(), b.epsilons
        ([('support2', 'mlp')], ['1', 'inf'])
    """
    schema = load_yaml(schema_path)
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
    attributes = {a for name in benchmark.datasets for a in get_dataset(benchmark.module(name), root).card.sensitive_attributes}
    for i, combo in enumerate(config["evaluation"]["intersections"]):
        unknown = [a for a in combo if a not in attributes]
        if unknown:
            raise ConfigError(
                f"evaluation.intersections[{i}] names {unknown}, which no dataset of this benchmark has; "
                f"its datasets' attributes: {sorted(attributes)}"
            )
    for name in benchmark.datasets:
        if not benchmark.models_for(name):
            raise ConfigError(
                f"datasets.{name}: no model in models {config['models']} accepts {modalities[name]!r} inputs; "
                f"add one that does ({[m for m in known_models if modalities[name] in get_model(m).modalities]})"
            )
        benchmark.training(name)  # TrainConfig checks the merged values
    return benchmark


def load_benchmark(path: str | Path) -> Benchmark:
    return validate_config(copy.deepcopy(load_yaml(path)))


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
