"""One federated run on Flower's simulation engine, returned as the central loop's :class:`TrainResult`.

The driver (this module) plans the privacy before the first round (each site's σ for all its steps, or
the server's z for all rounds), writes what the clients need to a file, runs Flower's ``run_simulation``
with one Ray worker (the clients of a round run one after another: a 2-core machine gains nothing from
more), and then builds the ledgers from what the clients report they ran. A site that ran more steps
than planned, or with another σ or rate, fails the run; so does a round a site missed.

The run record has the central loop's keys, so scores, metrics, gaps, the audit's loss attack and the
report treat a federated run as any other. Its ``federated`` block lists each site's rows, steps, rate,
σ, ε and ledger (record level), or Flower's own accountant's ε beside dpfair's (site level).
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import opacus
import torch
from opacus.validators import ModuleValidator

from dpfair.errors import ConfigError, PrivacyError
from dpfair.federated.accounting import record_level_plan, site_level_ledger, site_level_sigma
from dpfair.federated.client import make_client_app
from dpfair.federated.environment import check_quiet, isolated, quiet
from dpfair.federated.server import make_server_app
from dpfair.federated.settings import MIN_SITES, FederatedSettings
from dpfair.federated.sites import partition
from dpfair.models import build_model, count_parameters
from dpfair.privacy.ledger import event_to_json, replay_epsilon
from dpfair.privacy.params import is_private
from dpfair.training.loop import TrainResult, replayed_by
from dpfair.training.mechanisms import get_mechanism, require_plain_recipe
from dpfair.training.noise import noise_seed, run_key
from dpfair.training.steps import resolve_mode

log = logging.getLogger(__name__)


def _versions() -> dict:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return {"flwr": version("flwr"), "ray": version("ray"), "dp_accounting": version("dp-accounting")}


def train_federated(
    *,
    model_name: str,
    modality: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    epsilon: float,
    delta: float,
    config,
    seed: int,
    site,
    federated: dict | FederatedSettings | None = None,
    method: str = "fed_dpsgd",
    device="cpu",
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    noise_context: str = "",
    dataset: str = "",
    **_unused,
) -> TrainResult:
    """Train ``model_name`` by FedAvg over the sites of ``site`` (each training row's site) at target ``epsilon``.

    ``method`` is ``fed_dpsgd`` (DP-SGD at every site, record level) or ``fed_dp_site`` (server-side clipping
    and noise, site level); ε = ∞ is plain FedAvg with the same local training for both. The model starts
    from the weights central training starts from (``torch.manual_seed(seed)``). Runs on the CPU.

    Raises:
        ConfigError: no site attribute, too few sites for a site-level guarantee, secure mode, or recipe
            options the federated loop does not implement.
        PrivacyError: a ledger above its target, or clients that ran other than planned.
    """
    mechanism = get_mechanism(method)
    settings = federated if isinstance(federated, FederatedSettings) else FederatedSettings.from_config(federated)
    _check_recipe(config, method)
    private = is_private(epsilon)
    sites = partition(site, method=method, dataset=dataset)
    names = list(sites)
    site_level = mechanism.unit == "site"
    if site_level and len(names) < MIN_SITES:
        raise ConfigError(
            f"datasets.{dataset or '?'}: method {method} gives a guarantee per site and the training rows hold "
            f"{len(names)} site(s); it needs at least {MIN_SITES} (use fed_dpsgd, record level, for fewer)"
        )
    plans, site_sigma = {}, None
    if private and not site_level:
        plans = record_level_plan(
            site_rows={s: len(rows) for s, rows in sites.items()},
            batch_size=config.batch_size,
            rounds=settings.rounds,
            local_epochs=settings.local_epochs,
            epsilon=epsilon,
            delta=delta,
            accountant=config.accountant,
        )
    if private and site_level:
        site_sigma = site_level_sigma(epsilon=epsilon, delta=delta, rounds=settings.rounds)

    torch.manual_seed(seed)
    model = build_model(model_name, input_shape=tuple(x_train.shape[1:]), modality=modality)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        raise ConfigError(f"model {model_name!r} is not DP-SGD compatible: {errors}")
    key = run_key(model_name=model_name, config=config, context=f"{noise_context}|federated={settings.params()}")
    spec = {
        "model_name": model_name,
        "modality": modality,
        "input_shape": list(x_train.shape[1:]),
        "config": config.params(),
        "local_epochs": settings.local_epochs,
        "rounds": settings.rounds,
        "update_clip": float(settings.update_clip),
        "epsilon": epsilon,
        "delta": delta,
        "method": method,
        "seed": seed,
        "noise_key": key,
        "sites": names,
        "x": {s: x_train[rows].contiguous() for s, rows in sites.items()},
        "y": {s: y_train[rows].float().contiguous() for s, rows in sites.items()},
        "sigma": {s: (plans[s].noise_multiplier if plans else None) for s in names},
        "label_prior": float(y_val.float().mean()) if y_val is not None and len(y_val) else None,
        "site_noise_multiplier": site_sigma,
        "server_noise_seed": noise_seed(seed=seed, method=method, epsilon=epsilon, key=f"{key}|server"),
        "initial_state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "x_val": x_val,
        "y_val": y_val,
    }
    outcome = {"replies": [], "history": [], "state": None, "error": None}
    start = time.perf_counter()
    numpy_state = np.random.get_state()  # the server seeds NumPy's global generator (Flower's noise): restored after
    try:
        with tempfile.TemporaryDirectory(prefix="dpfair-federated-") as tmp:
            spec_path = str(Path(tmp) / "spec.pt")
            torch.save({k: v for k, v in spec.items() if k not in ("x_val", "y_val", "initial_state")}, spec_path)
            _simulate(spec_path, spec=spec, outcome=outcome, n_sites=len(names))
    finally:
        np.random.set_state(numpy_state)
    seconds = time.perf_counter() - start
    if outcome["error"] or outcome["state"] is None:
        raise RuntimeError(
            f"the federated simulation failed on the server:\n{outcome['error'] or 'no weights came back'}"
        )
    model.load_state_dict(outcome["state"])

    ran = _site_steps(outcome["replies"], names=names, settings=settings, plans=plans)
    record_fields, federated_block, history = _account(
        mechanism=mechanism,
        private=private,
        site_level=site_level,
        names=names,
        sites=sites,
        ran=ran,
        plans=plans,
        site_sigma=site_sigma,
        settings=settings,
        outcome=outcome,
        epsilon=epsilon,
        delta=delta,
        config=config,
    )
    versions = _versions()
    federated_block.update(
        {
            "framework": f"flwr {versions['flwr']} (simulation engine, Ray {versions['ray']})",
            "rounds": settings.rounds,
            "local_epochs": settings.local_epochs,
            "n_sites": len(names),
            "site_rows": {s: len(rows) for s, rows in sites.items()},
            "weighting": "equal: every site's update weighs 1/m in the average",
            "seconds": seconds,
        }
    )
    record = {
        "method": method,
        "epsilon": epsilon,
        "delta": delta,
        "privacy_unit": mechanism.unit,
        "neighboring_relation": mechanism.relation,
        **record_fields,
        "secure_mode": False,
        "noise_seed": None if not private else spec["server_noise_seed"] if site_level else "per site and round",
        "clipping_backend": resolve_mode(config.clipping_backend, model) if private and not site_level else "none",
        "max_rows_per_patient": config.max_rows_per_patient,
        "n_train": len(y_train),
        "n_val": len(y_val) if y_val is not None else 0,
        "train_seconds": seconds,
        "seed": seed,
        "optimizer": config.optimizer,
        "lr": config.lr,
        "n_parameters": count_parameters(model),
        "device": "cpu",
        "torch_version": torch.__version__,
        "opacus_version": opacus.__version__,
        "dp_accounting_version": versions["dp_accounting"],
        "final_val_loss": history[-1]["val_loss"] if history and "val_loss" in history[-1] else math.nan,
        "monitor_every": 1,
        "final_train_loss": math.nan,  # no site reports a training loss, private or not
        "lr_schedule": config.lr_schedule,
        "ema_decay": None,
        "select_best": False,
        "best_epoch": None,
        "class_weight": config.class_weight,
        "clip_policy": config.clip_policy if private and not site_level else "none",
        "augmult": 1,
        "tuning_trials": 0,
        "epsilon_per_trial": epsilon,
        "nonfinite_units": sum(r["nonfinite_units"] for r in ran.values()),
        "federated": federated_block,
    }
    return TrainResult(model=model, record=record, history=history)


def _check_recipe(config, method: str) -> None:
    """The federated loop runs a constant lr on the last round's weights: refuse what it would silently ignore."""
    require_plain_recipe(config, method=method)
    given = {
        k: v
        for k, v in {"ema_decay": config.ema_decay, "select_best": config.select_best}.items()
        if v not in (None, False)
    }
    if config.lr_schedule != "constant":
        given["lr_schedule"] = config.lr_schedule
    if config.init_weights is not None or config.trainable != "all":  # the sites build their own models
        given.update(init_weights=config.init_weights, trainable=config.trainable)
    if given:
        raise ConfigError(
            f"method {method} does not implement the training options {given}; leave them at their defaults"
        )
    if config.secure_mode:
        raise ConfigError(
            f"method {method}: privacy.secure_mode is on, and Flower's server noise comes from NumPy's seeded "
            "generator; switch secure_mode off for this dataset or drop the federated methods"
        )


def _simulate(spec_path: str, *, spec: dict, outcome: dict, n_sites: int) -> None:
    """Flower's simulation engine over ``n_sites`` virtual nodes, one Ray worker, telemetry off, loopback only."""
    quiet()
    from flwr.simulation import run_simulation

    check_quiet()
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": 1,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": "ERROR",
            "log_to_driver": False,
        },
    }
    with isolated():  # Ray's processes start inside: HTTP(S) of theirs has nowhere to go but loopback
        run_simulation(
            server_app=make_server_app(spec=spec, outcome=outcome),
            client_app=make_client_app(spec_path),
            num_supernodes=n_sites,
            backend_config=backend,
        )


def _site_steps(replies: list[list[dict]], *, names, settings: FederatedSettings, plans: dict) -> dict[str, dict]:
    """Each site's steps over the run from the clients' reports; every round must hold every site once, as planned."""
    if len(replies) != settings.rounds:
        raise PrivacyError(f"the server aggregated {len(replies)} rounds, not the {settings.rounds} planned")
    ran = {s: {"steps": 0, "rates": set(), "sigmas": set(), "nonfinite_units": 0} for s in names}
    for r, round_replies in enumerate(replies, start=1):
        seen = sorted(int(m["site"]) for m in round_replies)
        if seen != list(range(len(names))):
            raise PrivacyError(f"round {r} aggregated the replies of sites {seen}, not of all {len(names)} sites once")
        for m in round_replies:
            site = names[int(m["site"])]
            ran[site]["steps"] += int(m["steps"])
            ran[site]["rates"].add(float(m["sample_rate"]))
            ran[site]["sigmas"].add(float(m["noise_multiplier"]))
            ran[site]["nonfinite_units"] += int(m.get("nonfinite_units", 0))
    for site, plan in plans.items():
        got = ran[site]
        if got["steps"] != plan.steps:
            raise PrivacyError(
                f"site {site} ran {got['steps']} local steps, not the {plan.steps} its σ was calibrated for"
            )
        if got["sigmas"] != {plan.noise_multiplier}:
            raise PrivacyError(
                f"site {site} trained with noise multiplier(s) {sorted(got['sigmas'])}, not the {plan.noise_multiplier} "
                "calibrated for all its rounds"
            )
        if got["rates"] != {plan.sample_rate}:
            raise PrivacyError(
                f"site {site} was charged q = {sorted(got['rates'])}, not the planned {plan.sample_rate}"
            )
    return ran


def _account(
    *, mechanism, private, site_level, names, sites, ran, plans, site_sigma, settings, outcome, epsilon, delta, config
):
    """The record's privacy fields, the ``federated`` block and the per-round history of one finished run."""
    history = []
    block: dict = {"unit": "site" if site_level else "record at each site"}
    if not private:
        # the ε = ∞ arm: plain FedAvg; the record names site 0's schedule, as a private run names its worst site
        first = names[0]
        steps = ran[first]["steps"]
        q = min(ran[first]["rates"])
        fields = _fields(steps=steps, q=q, epochs=settings.rounds * settings.local_epochs, rows=len(sites[first]))
        fields.update(noise_multiplier=0.0, max_grad_norm=math.nan, ledger=None, epsilon_spent=math.inf)
        fields.update(accountant="none", n_units=sum(len(r) for r in sites.values()))
        for entry in outcome["history"]:
            history.append({**entry, "steps": entry["epoch"] * steps // settings.rounds, "epsilon_so_far": math.inf})
        return fields, block, history
    if site_level:
        flower = outcome.get("flower_privacy") or {}
        releases = int(flower.get("releases", -1))
        if releases != settings.rounds:
            raise PrivacyError(
                f"Flower's accountant composed {releases} releases, not the {settings.rounds} rounds run"
            )
        ledger = site_level_ledger(site_sigma, settings.rounds)
        spent = replay_epsilon(ledger, accountant="rdp_google", delta=delta)
        if not spent <= epsilon * (1 + 1e-6):
            raise PrivacyError(f"the site-level ledger replays to epsilon {spent:.4f}, above the target {epsilon}")
        if not math.isclose(spent, flower["epsilon"], rel_tol=1e-9, abs_tol=1e-12):
            raise PrivacyError(
                f"Flower's accountant reports epsilon {flower['epsilon']:.6g}; the ledger replays to {spent:.6g}"
            )
        fields = _fields(steps=settings.rounds, q=1.0, epochs=settings.rounds, rows=len(names))
        fields.update(
            noise_multiplier=float(site_sigma),
            max_grad_norm=float(settings.update_clip),
            ledger=event_to_json(ledger),
            epsilon_spent=spent,
            accountant="rdp_google",
            n_units=len(names),
            sampling="every site every round",
            expected_batch_size=float(len(names)),
        )
        block.update({"update_clip": float(settings.update_clip), "flower_accountant": flower})
        for entry in outcome["history"]:
            r = entry["epoch"]
            eps_r = replay_epsilon(site_level_ledger(site_sigma, r), accountant="rdp_google", delta=delta)
            history.append({**entry, "steps": r, "epsilon_so_far": eps_r})
        return fields, block, history
    per_site = []
    for site in names:
        plan = plans[site]
        steps = ran[site]["steps"]
        ledger = plan.ledger(steps)
        accountant, eps = replayed_by(mechanism, ledger, accountant=config.accountant, delta=delta)
        if not eps <= epsilon * (1 + 1e-6):
            raise PrivacyError(
                f"site {site}'s ledger of all its {steps} local steps over {settings.rounds} rounds replays to epsilon "
                f"{eps:.4f}, above the target {epsilon}"
            )
        per_site.append(
            {
                "site": site,
                "n_units": plan.rows,
                "steps": steps,
                "planned_steps": plan.steps,
                "sample_rate": plan.sample_rate,
                "noise_multiplier": plan.noise_multiplier,
                "epsilon": eps,
                "accountant": accountant,
                "ledger": event_to_json(ledger),
            }
        )
    worst = max(per_site, key=lambda s: s["epsilon"])
    plan = plans[worst["site"]]
    fields = _fields(
        steps=worst["steps"], q=plan.sample_rate, epochs=settings.rounds * settings.local_epochs, rows=plan.rows
    )
    fields.update(
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=float(config.max_grad_norm),
        ledger=worst["ledger"],
        epsilon_spent=worst["epsilon"],
        accountant=worst["accountant"],
        n_units=sum(s["n_units"] for s in per_site),
    )
    block.update({"sites": per_site, "reported_site": worst["site"]})
    per_round = plan.steps // settings.rounds
    for entry in outcome["history"]:
        r = entry["epoch"]
        eps_r = replay_epsilon(plan.ledger(r * per_round), accountant=worst["accountant"], delta=delta)
        history.append({**entry, "steps": r * per_round, "epsilon_so_far": eps_r})
    return fields, block, history


def _fields(*, steps: int, q: float, epochs: int, rows: int) -> dict:
    return {
        "sample_rate": q,
        "accounted_sample_rate": q,
        "expected_batch_size": q * rows,
        "batches_per_epoch": int(round(1 / q)),
        "sampling": "poisson",
        "epochs": epochs,
        "steps": steps,
    }
