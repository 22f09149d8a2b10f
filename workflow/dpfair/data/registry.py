"""Find dataset modules: one file per dataset in a datasets directory, no central list to edit.

A module registers its loader with :func:`register_dataset`. Modules are imported by path under a
private name, so the repository's ``datasets/`` folder never shadows HuggingFace's ``datasets``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from dpfair.data.contract import MODALITIES, SENSITIVE_ATTRIBUTES, DatasetCard, RawDataset
from dpfair.errors import DatasetError

#: Where dataset modules live unless ``DPFAIR_DATASETS_DIR`` or an explicit directory says otherwise.
DEFAULT_DATASETS_DIR = "datasets"


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its card, its loader, its file, and optionally ``make_example``.

    ``make_example(root: Path) -> dict`` is how a module whose data users bring joins the contract
    test: it writes a tiny copy of the data in the exact published layout under ``root`` and returns
    the loader parameters that read it.
    """

    card: DatasetCard
    load: Callable[..., RawDataset]
    path: Path
    make_example: Callable[[Path], dict] | None = None


_DATASETS: dict[str, DatasetSpec] = {}
_LOADING: list[Path] = []  # the file being imported, so registration knows where it came from


def register_dataset(card: DatasetCard):
    """Register a loader under ``card.name``. Use as a decorator in ``datasets/<name>.py``.

    Example:
        >>> card = DatasetCard(name="toy", modality="tabular", task="t", outcome="o",
        ...                    sensitive_attributes=("sex",), license="CC0", citation="", homepage="")
        >>> @register_dataset(card)
        ... def load(*, seed: int = 0) -> RawDataset: ...
    """
    if not isinstance(card, DatasetCard):
        raise DatasetError(f"register_dataset expects a DatasetCard, got {type(card).__name__}")
    path = _LOADING[-1] if _LOADING else Path("<interactive>")
    _check_card(card, path)

    def decorator(fn: Callable[..., RawDataset]) -> Callable[..., RawDataset]:
        # The card name equals the file stem, so a name can only recur from another datasets folder;
        # the folder being loaded now wins (get_dataset re-imports when the path differs).
        _DATASETS[card.name] = DatasetSpec(card=card, load=fn, path=path)
        return fn

    return decorator


def _check_card(card: DatasetCard, path: Path) -> None:
    if card.modality not in MODALITIES:
        raise DatasetError(f"{path}: card.modality is {card.modality!r}; use one of {list(MODALITIES)}")
    unknown = [a for a in card.sensitive_attributes if a not in SENSITIVE_ATTRIBUTES]
    if unknown:
        raise DatasetError(
            f"{path}: unknown sensitive attribute(s) {unknown} in card.sensitive_attributes; "
            f"use the harmonised names {list(SENSITIVE_ATTRIBUTES)}"
        )
    if path.suffix == ".py" and card.name != path.stem:
        raise DatasetError(f"{path}: card.name is {card.name!r} but the file is {path.name}; make them match")
    if card.site_attribute is not None and card.site_attribute not in card.sensitive_attributes:
        raise DatasetError(
            f"{path}: card.site_attribute is {card.site_attribute!r}, not one of card.sensitive_attributes "
            f"{list(card.sensitive_attributes)}; name the attribute that holds each row's site, or leave it None"
        )
    if isinstance(card.dropped, str) or not all(isinstance(c, str) for c in card.dropped):
        raise DatasetError(
            f"{path}: card.dropped is {card.dropped!r}; give the dropped columns' names as a tuple of strings, "
            "e.g. dropped=('pid', 'time')"
        )


def missing_package(exc: BaseException) -> str | None:
    """The package a failure comes from, if it (or an exception it was raised from) is a missing import.

    How an optional data package shows itself: the module imports it (at the top or in its loader), the
    import fails where the package's extra is not installed, and :func:`get_dataset` or
    :func:`dpfair.data.prepare.prepare_dataset` wraps the :class:`ModuleNotFoundError` in a
    :class:`DatasetError`. The contract test skips such modules instead of failing.

    Example:
        >>> try:
        ...     import surely_not_installed_here
        ... except ImportError as exc:
        ...     missing_package(exc)
        'surely_not_installed_here'
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            top = exc.name.split(".")[0]
            if importlib.util.find_spec(top) is None:
                return top
        exc = exc.__cause__ or exc.__context__
    return None


def datasets_dir(directory: str | os.PathLike | None = None) -> Path:
    """Resolve the datasets directory: the argument, else ``$DPFAIR_DATASETS_DIR``, else ``./datasets``."""
    return Path(directory or os.environ.get("DPFAIR_DATASETS_DIR") or DEFAULT_DATASETS_DIR).resolve()


def available_datasets(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the dataset modules in the directory (file stems, without importing them)."""
    root = datasets_dir(directory)
    if not root.is_dir():
        raise DatasetError(
            f"datasets directory {root} does not exist; run from the repository root or set DPFAIR_DATASETS_DIR"
        )
    return sorted(p.stem for p in root.glob("*.py") if not p.name.startswith("_"))


def get_dataset(name: str, directory: str | os.PathLike | None = None) -> DatasetSpec:
    """Import ``<datasets dir>/<name>.py`` and return its registered spec.

    Raises:
        DatasetError: unknown name (the message lists the known ones), or a module that fails to
            import or registers nothing.
    """
    root = datasets_dir(directory)
    path = root / f"{name}.py"
    if not path.is_file():
        raise DatasetError(f"unknown dataset {name!r}: no file {path}; known datasets: {available_datasets(root)}")
    if name in _DATASETS and _DATASETS[name].path == path:
        return _DATASETS[name]
    module = _import_by_path(path)
    if name not in _DATASETS or _DATASETS[name].path != path:
        raise DatasetError(
            f"{path}: the module registers no dataset named {name!r}; decorate its loader with "
            f"@register_dataset(DatasetCard(name={name!r}, ...))"
        )
    _DATASETS[name] = replace(_DATASETS[name], make_example=getattr(module, "make_example", None))
    return _DATASETS[name]


def _import_by_path(path: Path):
    module_name = f"dpfair_dataset_modules.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    _LOADING.append(path)
    try:
        spec.loader.exec_module(module)
    except DatasetError:
        raise
    except Exception as exc:  # a broken module must name itself, whatever it raised
        raise DatasetError(f"{path}: importing the dataset module failed: {type(exc).__name__}: {exc}") from exc
    finally:
        _LOADING.pop()
    sys.modules[module_name] = module
    return module
