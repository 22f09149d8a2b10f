"""Warm starts from public weights, and training only the classifier head: public pretraining for DP-SGD.

Pretraining on public data costs no privacy, and the DP literature finds it moves private accuracy more than ε
does: CheXpert results collected on the DP leaderboard rise from 76.9/77.8/78.8 AUROC at ε = 1/3/8 from scratch to
78.5/79.4/82.6 with ImageNet pretraining, and at small ε fine-tuning only the last layer of a public feature extractor beats
end-to-end training (Tramèr & Boneh 2021, "Differentially private learning needs better features (or much more
data)"; Mehta et al. 2023, "Towards large scale transfer learning for differentially private image
classification"). Both change what DP-SGD's noise acts on: it is added to every trainable coordinate, so the
noise in the averaged gradient grows with √d (``dpfair.training.tuning.regime``), and a head of 65 parameters
carries about 1/19 of the noise norm of the small CNN's 23,585.

``training.init_weights`` names a state dict the user brings (or one ``tools/public_weights.py`` made from another
dataset); the run loads it before the first step and records its sha256 in the run record and the privacy card
as ``public_pretraining``. Whether those weights are public is the user's claim, and the card says whose claim it
is. The check fails closed: a weights file needs a provenance file beside it (``<weights>.json``, which the tool
writes; a user writes ``{"trained_on": "<public dataset>"}``) whose sha256, where it gives one, is the file's;
a run's own ``model.pt`` has none and is refused. Weights whose provenance names the run's dataset (its entry
name or its source, :func:`data_source`, compared case-insensitively) are refused outright: they would put
private rows into the release without noise. ``training.trainable: head`` freezes every parameter but the last linear layer's (the
classifier head), public initialisation or warm start alike.

Loading and freezing are plain ``torch`` (``load_state_dict``, ``requires_grad_``): nothing here needs a library.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from dpfair.errors import ConfigError

#: What ``training.trainable`` may say: every parameter, or only the last linear layer's.
TRAINABLE: tuple[str, ...] = ("all", "head")
#: The provenance file ``tools/public_weights.py`` writes beside a weights file: ``<weights>.json``.
PROVENANCE_SUFFIX = ".json"


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def head_module(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier head: the last ``nn.Linear`` in the model's module order, with its name.

    Every registered model ends in one (the cnn's ``Linear(64, 1)``, ResNet's ``fc``, DenseNet's
    ``class_layers.out``, the mlp's output layer).
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"training.trainable: head needs a model that ends in a linear layer; {type(model).__name__} has none"
        )
    return linears[-1]


def freeze_to_head(model: nn.Module) -> list[str]:
    """Freeze every parameter outside the head (:func:`head_module`); returns the names left trainable."""
    name, head = head_module(model)
    kept = {id(p) for p in head.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in kept)
    return [f"{name}.{n}" for n, _ in head.named_parameters()]


def data_source(meta: dict) -> str:
    """Where a prepared dataset's rows come from: its module, and the file it reads where a module reads several.

    Two benchmark entries of one module hold the same rows under other names or parameters (a synthetic
    generator's seed, another image size of one file), so the module is the source; the medmnist module serves a
    different dataset per ``flag``, so there the flag joins it.
    """
    module = str(meta.get("module") or meta.get("name", "")).casefold()
    flag = (meta.get("params") or {}).get("flag")
    return f"{module}:{str(flag).casefold()}" if flag else module


def dataset_names(meta: dict) -> tuple[str, ...]:
    """The names a prepared dataset goes by, for the same-dataset refusal: its entry name and its source."""
    return tuple(dict.fromkeys((str(meta.get("name", "")).casefold(), data_source(meta))))


def provenance_of(path: str | Path) -> dict:
    """The provenance file written beside a weights file (``<weights>.json``); refused when absent or unusable."""
    side = Path(str(path) + PROVENANCE_SUFFIX)
    where = f"training.init_weights: {path}"
    if not side.is_file():
        raise ConfigError(
            f"{where} has no provenance file {side.name} beside it saying what the weights were trained on; write "
            '{"trained_on": "<public dataset>"} there, or make the weights with tools/public_weights.py'
        )
    try:
        provenance = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{side}: not JSON ({exc}); write it again with tools/public_weights.py") from exc
    if not isinstance(provenance, dict) or not str(provenance.get("trained_on") or "").strip():
        raise ConfigError(f'{side}: no "trained_on"; name the public dataset the weights were trained on')
    return provenance


def refuse_own_data(path: str | Path, provenance: dict, *, names: tuple[str, ...]) -> None:
    """Refuse weights whose provenance (its ``trained_on`` or ``source``) is one of ``names``, case-insensitively.

    ``names``: what the run's data go by (:func:`dataset_names` of its prepared dataset, or its entry name).
    """
    own = {n.casefold() for n in names if n}
    claimed = {str(provenance.get(k) or "").casefold() for k in ("trained_on", "source")} - {""}
    if own & claimed:
        raise ConfigError(
            f"training.init_weights: {path} was trained on {sorted(own & claimed)[0]!r} ({path}{PROVENANCE_SUFFIX}), "
            "the data this run trains on: its rows would reach the release without noise; pretrain on another dataset"
        )


def check_public_weights(path: str | Path | None, *, meta: dict) -> None:
    """Before a run trains: refuse ``training.init_weights`` without provenance or trained on this dataset's data.

    The training loop checks the entry name again when it loads the weights; this check also knows the
    dataset's source (:func:`data_source`), which only the prepared dataset's metadata holds.
    """
    if path is not None and Path(path).is_file():  # a missing file is the loader's error, with its fix
        refuse_own_data(path, provenance_of(path), names=dataset_names(meta))


def load_public_weights(model: nn.Module, path: str | Path, *, dataset: str | None = None) -> dict:
    """Load a state dict the user declares public into ``model``; returns the ``public_pretraining`` record.

    The file must hold every parameter of the model with the same shapes (Opacus's ``_module.`` prefix, which
    a saved DP model's keys carry, is dropped) and have its provenance file (:func:`provenance_of`).
    ``dataset``: the run's dataset entry; weights whose provenance names it are refused (they are not public to
    this run's guarantee). The run also checks the dataset's source first (:func:`check_public_weights`). None
    only for models nobody releases (the audit's).
    """
    path = Path(path)
    where = f"training.init_weights: {path}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist; give the path of a state dict (tools/public_weights.py makes one)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a file that is not a state dict
        raise ConfigError(f"{where} is not a torch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise ConfigError(f"{where} holds a {type(state).__name__}, not a state dict")
    state = {k.removeprefix("_module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or shapes:
        raise ConfigError(
            f"{where} does not fit the model: "
            + "; ".join(
                s
                for s in (
                    f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}" if missing else "",
                    f"other shapes for {shapes[:3]}" if shapes else "",
                )
                if s
            )
            + "; make the weights with the same model and input channels"
        )
    provenance = provenance_of(path)
    digest = sha256_file(path)
    if provenance.get("sha256") not in (None, digest):
        raise ConfigError(
            f"{where}: its provenance file gives sha256 {provenance['sha256']}, the file's is {digest}: the weights "
            "changed after it was written; write it again for these weights"
        )
    refuse_own_data(path, provenance, names=(dataset,) if dataset else ())
    model.load_state_dict({k: state[k] for k in expected})
    return {
        "path": str(path),
        "sha256": digest,
        "trained_on": provenance["trained_on"],
        "claim": "public by the user's declaration (training.init_weights); not covered by this run's ε",
    }


def apply_warm_start(
    model: nn.Module, *, init_weights: str | None, trainable: str, dataset: str | None = None
) -> dict | None:
    """Load ``init_weights`` (if given) and freeze to the head (if ``trainable == "head"``); the record's block.

    Returns None for a run from the model's own initialisation with every parameter trainable (what runs
    did before these options), else ``{"init_weights": ..., "trainable": ..., "trainable_parameters": [...]}``.
    """
    if trainable not in TRAINABLE:
        raise ConfigError(f"training.trainable = {trainable!r}; allowed: {list(TRAINABLE)}")
    if init_weights is None and trainable == "all":
        return None
    loaded = load_public_weights(model, init_weights, dataset=dataset) if init_weights is not None else None
    names = freeze_to_head(model) if trainable == "head" else [n for n, _ in model.named_parameters()]
    return {"init_weights": loaded, "trainable": trainable, "trainable_parameters": names}
