"""The privacy card of a run: every parameter a reader needs to interpret its ε, checked for consistency.

The card is built from the run's ledger (``dpfair.privacy.ledger``), its record and the dataset's metadata; ε under
each accountant is a replay of the ledger. The run's mechanism supplies the text (its ``statement``, handed in by the runner): how
it clips, what its unit is and how it is enforced, what the guarantee covers. A run whose settings
contradict its accounting fails here with an error, not a footnote.
"""

from __future__ import annotations

import math

import dp_accounting

from dpfair.errors import PrivacyError
from dpfair.privacy.ledger import (
    ACCOUNTANTS,
    event_from_json,
    event_to_json,
    ledger_gaussians,
    ledger_steps_and_rates,
    poisson_gaussian,
    replay_epsilon,
)

#: Accountants every card reports (ε replayed from the ledger; NaN where one cannot replay its events).
CARD_ACCOUNTANTS = {k: ACCOUNTANTS[k] for k in ("rdp", "prv", "pld")}
#: A synthesis ledger's: the three above cannot replay its zCDP events (NaN), dp-accounting's RDP can.
SYNTHESIS_ACCOUNTANTS = {**CARD_ACCOUNTANTS, "rdp_google": ACCOUNTANTS["rdp_google"]}
#: A site-level federated ledger's (Gaussian releases without sampling): Opacus's cannot replay it (NaN);
#: dp-accounting's RDP is what Flower's accountant composes.
FEDERATED_SITE_ACCOUNTANTS = SYNTHESIS_ACCOUNTANTS
#: The run record's synthesis fields (dpfair.training.mechanisms.synthesis) the card repeats.
SYNTHESIS_FIELDS = ("synthesis_library", "synthesis_rho", "synthesis_rounds", "synthesis_seconds")


def build_privacy_card(record: dict, meta: dict, *, statement: dict) -> dict:
    """Assemble and check the card of one finished run from its training record and dataset metadata.

    ``statement`` is what the run's mechanism states (``Mechanism.statement``: ``unit``, ``relation``,
    ``clipping``, ``privacy_unit_enforcement``, ``guarantee_covers``, ``group_privacy``).

    Raises:
        PrivacyError: δ ≥ 1/n_units, non-Poisson sampling, ε spent above the target, steps or sample rate
            inconsistent with the schedule or the ledger, or an independent accountant that contradicts the target.
    """
    epsilon = float(record["epsilon"])
    private = math.isfinite(epsilon)
    method = record.get("method", "dpsgd")
    tuning = record.get("tuning")
    n_train = int(record["n_train"])
    n_units = int(record.get("n_units", n_train))
    delta = float(record["delta"])
    text = statement
    federated = record.get("federated") if private else None
    site_level = bool(federated) and statement["unit"] == "site"
    # a DP synthesizer's release (dpfair.synthesis): its ledger is zCDP events, which only RDP replays
    synthesis = {}
    if private and record.get("synthesizer"):
        synthesis = {"synthesizer": record["synthesizer"], "rows": record.get("synthetic_rows")}
        synthesis.update({k[len("synthesis_") :]: record.get(k) for k in SYNTHESIS_FIELDS})
    card = {
        "method": method,
        "target_epsilon": epsilon,
        "epsilon_spent": float(record["epsilon_spent"]),
        "accountant": record["accountant"],
        "accountant_implementation": (
            "none (non-private)"
            if not private
            else f"dp-accounting {record.get('dp_accounting_version', '')} PLDAccountant (ComposedDpEvent of every trial)"
            if tuning
            else f"dp-accounting {record.get('dp_accounting_version', '')} RdpAccountant (a GaussianDpEvent per marginal "
            "measured, a ZCDpEvent per exponential-mechanism selection)"
            if synthesis
            else f"dp-accounting {record.get('dp_accounting_version', '')} RdpAccountant over the rounds (Flower's "
            "RdpAccountant beside it, in the federated block)"
            if site_level
            else f"opacus {record['opacus_version']} per site, each site's steps over all rounds"
            if federated
            else f"opacus {record['opacus_version']}"
        ),
        "delta": delta,
        "unit": statement["unit"],
        "privacy_unit": statement["unit"],
        "n_units": n_units,
        "delta_below_one_over_n": delta < 1.0 / n_units,
        "one_over_n_units": 1.0 / n_units,
        "neighboring_relation": record.get("neighboring_relation", statement["relation"]),
        "ledger": record.get("ledger") if private else None,
        "noise_multiplier": float(record["noise_multiplier"]),
        "max_grad_norm": float(record["max_grad_norm"]),
        "clipping": text["clipping"] if private else "none",
        "clipping_backend": record.get("clipping_backend"),
        "sampling": record["sampling"],
        "sample_rate": float(record["sample_rate"]),
        "accounted_sample_rate": float(record.get("accounted_sample_rate", record["sample_rate"])),
        "expected_batch_size": float(record["expected_batch_size"]),
        "epochs": int(record["epochs"]),
        "steps": int(record["steps"]),
        "n_train": n_train,
        "privacy_unit_enforcement": text["privacy_unit_enforcement"],
        "guarantee_covers": text["guarantee_covers"],
        "hyperparameter_selection": _selection_text(tuning, private),
        "secure_rng": bool(record.get("secure_mode", False)),
        "randomness": _randomness_text(record, private),
        "released_outside_guarantee": released_outside_guarantee(record, meta, statement) if private else [],
        "nonfinite_units": int(record.get("nonfinite_units", 0)),
        "independent_accountants": SYNTHESIS_ACCOUNTANTS
        if synthesis
        else FEDERATED_SITE_ACCOUNTANTS
        if site_level
        else CARD_ACCOUNTANTS,
    }
    if synthesis:
        card["synthesis"] = synthesis
    if record.get("federated"):
        card["federated"] = record["federated"]
    if tuning:
        card["tuning"] = tuning
    # public weights the run started from, and what it trained (dpfair.training.warm_start); none: from scratch
    card["public_pretraining"] = record.get("public_pretraining")
    if (
        "aux_noise_multiplier" in record
    ):  # a mitigation: its auxiliary release and the budget split (dpfair.privacy.clipping.adaptive)
        card["mitigation"] = {
            "attribute": record.get("mitigation_attribute"),
            "groups": record.get("mitigation_groups"),
            "aux_budget_share": record.get("aux_budget_share"),
            "noise_multiplier_gradient": record.get("noise_multiplier"),
            "noise_multiplier_aux": record.get("aux_noise_multiplier"),
            "noise_multiplier_effective": record.get("noise_multiplier_total"),
            "noise_bound_mean": record.get("noise_bound_mean"),
            "noise_bound_max": record.get("noise_bound_max"),
            "ledger_note": "one PoissonSampled(Gaussian(σ_eff)) per step: the gradient and the counts read the same batch",
        }
    if statement.get("group_privacy") is not None:
        card["group_privacy"] = statement["group_privacy"]
    if private:
        if card["ledger"] is None:
            raise PrivacyError(f"private run of method {method!r} recorded no ledger")
        card.update(
            {
                f"epsilon_{name}": replay_epsilon(
                    card["ledger"], accountant=name, delta=delta, relation=card["neighboring_relation"]
                )
                for name in card["independent_accountants"]
            }
        )
    else:
        card.update({f"epsilon_{name}": math.inf for name in card["independent_accountants"]})
    check_privacy_card(card)
    return card


def _selection_text(tuning: dict | None, private: bool) -> str:
    if not tuning:
        return "none on private data: hyperparameters are fixed in the benchmark definition; no budget spent"
    if not private:
        return (
            f"random search over {tuning['trials_run']} trials (as many as the private arm), selected on "
            "validation AUROC; non-private"
        )
    return (
        f"private random search over a fixed, public number of trials ({tuning['trials_run']}); the ledger composes "
        "every trial's event, so each trial, its recipe, σ and validation AUROC, is covered and listed; the "
        "selected trial is chosen on validation AUROC, post-processing of covered releases and the validation split"
    )


def _randomness_text(record: dict, private: bool) -> str:
    if not private:
        return "non-private"
    if record.get("federated"):
        return (
            "seeded: each site's batches and noise from streams of the run's own per (site, round), the server's "
            "noise from NumPy's generator seeded by the run's noise seed; reproducible, and the guarantee assumes "
            "the seeds stay secret: the recorded seed regenerates the noise. privacy.secure_mode is refused for "
            "federated methods (Flower's server noise is not drawn from a secure RNG), so this run is not for a release"
        )
    if record.get("secure_mode"):
        return (
            "Opacus's secure RNG (torchcsprng): Gaussian noise and Poisson batches from it, label flips from a "
            "PCG64 generator seeded by one draw of it; not reproducible"
        )
    return (
        "seeded: batches from the run's seed, noise from a stream of the run's own (seeded by its seed, method "
        "and ε); reproducible, and the guarantee assumes the seeds stay secret: the recorded seed regenerates "
        "the noise (privacy.secure_mode: true for a release)"
    )


def _monitor_text(record: dict) -> str:
    every = int(record.get("monitor_every", 1) or 1)
    return "every epoch" if every == 1 else f"every {every} epochs and after the last"


def released_outside_guarantee(record: dict, meta: dict, statement: dict) -> list[str]:
    """What the run releases, or lets shape the released model, that its ε does not cover; one phrase each.

    Generated from what the run did (its record and dataset), so a new option cannot leave the card silent.
    """
    out = []
    n_val = int(record.get("n_val", 0) or 0)
    if n_val:
        out.append(
            f"the validation split ({n_val} rows) has no DP protection; it is scored {_monitor_text(record)} "
            "(validation loss and AUROC in the run's history)"
        )
    if record.get("tuning"):
        out.append("the selected trial, chosen on validation AUROC")
    if record.get("select_best"):
        out.append("the released epoch (best_epoch in the run record), chosen on validation AUROC")
    if record.get("class_weight") == "balanced":
        out.append("the positive class weight, (1 - p)/p from the validation prevalence p")
    if record.get("method") == "label_rr":
        out.append("the label prior of randomized response, the validation prevalence")
    preprocessing = str(meta.get("preprocessing", ""))
    if "validation" in preprocessing:
        out.append(f"the input preprocessing: {preprocessing}")
    if "nonfinite_units" in record:
        out.append("the exact count of training units dropped for a non-finite gradient norm (nonfinite_units)")
    out += list(statement.get("also_releases") or [])
    out.append("timings (train_seconds), which follow the Poisson batch sizes and the machine")
    out.append(
        "the training split's size, prevalence and group sizes (the data card); the split itself; the membership "
        "audit's statistics (the audit trains its own models on these rows)"
    )
    out.append(
        "the data themselves: results/ holds the prepared rows and each run's scores.csv (every row's label, "
        "attributes and the model's score and logit, training rows included, for the audit); share a run's "
        "model and card, not its folder"
    )
    return out


def check_privacy_card(card: dict) -> None:
    """Raise :class:`PrivacyError` if the card's settings contradict its accounting."""
    if not card["delta_below_one_over_n"]:
        raise PrivacyError(
            f"delta {card['delta']:g} is not below 1/n_units = {card['one_over_n_units']:.3g} ({card['unit']}s)"
        )
    site_level = card["unit"] == "site" and math.isfinite(card["target_epsilon"])
    if site_level and card["sampling"] != "every site every round":
        raise PrivacyError(f"sampling is {card['sampling']!r} but the site-level ledger assumes every site every round")
    if not site_level and card["sampling"] != "poisson":
        raise PrivacyError(f"sampling is {card['sampling']!r} but the accountants assume Poisson sampling")
    expected_steps = card["epochs"] * int(1 / card["sample_rate"])  # Opacus's Poisson sampler: int(1/q) batches
    if card["steps"] != expected_steps:
        raise PrivacyError(f"{card['steps']} steps recorded; epochs × int(1/q) gives {expected_steps}")
    if not math.isfinite(card["target_epsilon"]):
        if card["noise_multiplier"] != 0 or math.isfinite(card["max_grad_norm"]) or card["ledger"] is not None:
            raise PrivacyError("a non-private run must not record noise, clipping or a ledger")
        return
    ledger = event_from_json(card["ledger"])
    if card.get("tuning"):
        _check_tuned_ledger(card, ledger)
    ledger_steps, rates = ledger_steps_and_rates(ledger)
    if card.get("federated"):
        _check_federated(card, ledger)
    if card.get("synthesis"):
        _check_synthesis_ledger(card, ledger)
    elif card["unit"] in ("record", "patient") and not rates:
        # DP-SGD over records or patients is charged per step: a ledger without its steps claims nothing ran
        raise PrivacyError(
            f"a {card['unit']}-level run's ledger must charge its Poisson-subsampled Gaussian steps; it holds {card['ledger']}"
        )
    # a gradient mechanism: the ledger must charge every step the loop took, at the loader's rate
    if rates and not card.get("tuning"):
        if ledger_steps != card["steps"]:
            raise PrivacyError(f"the ledger charges {ledger_steps} steps but training took {card['steps']}")
        if min(rates) < card["sample_rate"]:
            raise PrivacyError(
                f"the ledger charges q {min(rates):.6g}, below the sampling rate {card['sample_rate']:.6g}"
            )
        if card["accounted_sample_rate"] < card["sample_rate"]:
            raise PrivacyError(
                f"accounted q {card['accounted_sample_rate']:.6g} is below the sampling rate {card['sample_rate']:.6g}"
            )
        if not card["noise_multiplier"] > 0:
            raise PrivacyError(
                f"target epsilon {card['target_epsilon']} but noise multiplier {card['noise_multiplier']}"
            )
        sigmas = {sigma for sigma, _, _ in ledger_gaussians(ledger)}
        charged = card["noise_multiplier"]
        if card.get("mitigation"):  # the gradient and the noisy counts of one batch: one Gaussian at σ_eff
            from dpfair.privacy.clipping.adaptive import effective_sigma

            charged = effective_sigma(card["noise_multiplier"], card["mitigation"]["noise_multiplier_aux"])
        if len(sigmas) != 1 or not math.isclose(next(iter(sigmas)), charged, rel_tol=1e-9):
            raise PrivacyError(
                f"the ledger charges noise multiplier(s) {sorted(sigmas)} but the optimizer used {charged}"
            )
    replayed = card.get(f"epsilon_{card['accountant']}", math.nan)
    if replayed is None or not math.isfinite(replayed):  # the run's accountant cannot replay it: PLD did
        replayed = card["epsilon_pld"]
    if not math.isclose(card["epsilon_spent"], replayed, rel_tol=1e-6, abs_tol=1e-9):
        raise PrivacyError(
            f"epsilon spent {card['epsilon_spent']:.6g} is not the ledger's replay under {card['accountant']} ({replayed:.6g})"
        )
    if not card["epsilon_spent"] <= card["target_epsilon"] * (1 + 1e-6):  # NaN must fail too
        raise PrivacyError(f"epsilon spent {card['epsilon_spent']:.4f} exceeds the target {card['target_epsilon']}")
    # the independent accountant must confirm the target itself, as tools/replay_ledgers.py does: no tolerance
    if card.get("synthesis") or site_level:
        if not card["epsilon_rdp_google"] <= card["target_epsilon"]:
            raise PrivacyError(
                f"dp-accounting's RDP accountant gives epsilon {card['epsilon_rdp_google']:.4f} for the synthesis "
                f"ledger, above the target {card['target_epsilon']}"
            )
    elif not card["epsilon_pld"] <= card["target_epsilon"]:
        raise PrivacyError(
            f"the independent PLD accountant gives epsilon {card['epsilon_pld']:.4f} for target {card['target_epsilon']}"
        )


def _check_federated(card: dict, ledger) -> None:
    """A federated card's ledger is all its rounds: per site for the record level, per round for the site level.

    Record level: every site's ledger replays (PLD) to at most the target, the card's ledger is the site with
    the largest ε, and the sites' rows add up to the card's units. Site level: the ledger is one Gaussian of
    the card's σ per round, for every round, and Flower's own accountant gives the card's RDP ε.
    """
    fed = card["federated"]
    if card["unit"] == "site":
        rounds = int(fed["rounds"])
        if not (
            isinstance(ledger, dp_accounting.SelfComposedDpEvent)
            and isinstance(ledger.event, dp_accounting.GaussianDpEvent)
            and ledger.count == rounds
            and math.isclose(ledger.event.noise_multiplier, card["noise_multiplier"], rel_tol=1e-12)
        ):
            raise PrivacyError(
                f"a site-level ledger must be one Gaussian(σ = {card['noise_multiplier']}) per round for "
                f"{rounds} rounds; it holds {card['ledger']}"
            )
        if card["n_units"] != int(fed["n_sites"]):
            raise PrivacyError(f"a site-level card counts {card['n_units']} units for {fed['n_sites']} sites")
        flower = fed.get("flower_accountant") or {}
        if not math.isclose(float(flower.get("epsilon", math.nan)), card["epsilon_rdp_google"], rel_tol=1e-9):
            raise PrivacyError(
                f"Flower's accountant reports epsilon {flower.get('epsilon')}, the ledger replays to "
                f"{card['epsilon_rdp_google']} under dp-accounting's RDP"
            )
        return
    sites = fed.get("sites") or []
    if len(sites) != int(fed.get("n_sites", -1)):
        raise PrivacyError(
            f"a record-level federated card lists {len(sites)} site ledgers for {fed.get('n_sites')} sites"
        )
    epochs = int(fed["rounds"]) * int(fed["local_epochs"])
    for s in sites:  # each site's ledger is every step it ran, at its own q and σ, for the whole schedule
        q, sigma, steps = float(s["sample_rate"]), float(s["noise_multiplier"]), int(s["steps"])
        if steps != epochs * int(1 / q):
            raise PrivacyError(
                f"site {s['site']} ran {steps} steps; {epochs} epochs × int(1/q) gives {epochs * int(1 / q)}"
            )
        if not sigma > 0 or s["ledger"] != event_to_json(
            poisson_gaussian(noise_multiplier=sigma, sample_rate=q, steps=steps)
        ):
            raise PrivacyError(f"site {s['site']}'s ledger is not its {steps} steps at q = {q:.6g}, σ = {sigma}")
        replayed = replay_epsilon(s["ledger"], accountant=s["accountant"], delta=card["delta"])
        if not math.isclose(replayed, float(s["epsilon"]), rel_tol=1e-6):
            raise PrivacyError(f"site {s['site']} states epsilon {s['epsilon']}; its ledger replays to {replayed}")
    replayed = {s["site"]: replay_epsilon(s["ledger"], accountant="pld", delta=card["delta"]) for s in sites}
    over = {k: v for k, v in replayed.items() if not v <= card["target_epsilon"]}
    if over:
        raise PrivacyError(f"site ledgers replay above the target {card['target_epsilon']}: {over}")
    if sum(int(s["n_units"]) for s in sites) != card["n_units"]:
        raise PrivacyError(
            f"the sites' rows add up to {sum(int(s['n_units']) for s in sites)}, not n_units {card['n_units']}"
        )
    worst = max(sites, key=lambda s: s["epsilon"])
    if worst["ledger"] != card["ledger"]:
        raise PrivacyError(f"the card's ledger is not that of site {worst['site']}, whose ε is the largest")


def _check_synthesis_ledger(card: dict, ledger) -> None:
    """A synthesis ledger charges measurements and selections only, each with noise, and at least one."""
    events = ledger.events if isinstance(ledger, dp_accounting.ComposedDpEvent) else [ledger]
    kinds = {type(e).__name__ for e in events}
    if not events or not kinds <= {"GaussianDpEvent", "ZCDpEvent"}:
        raise PrivacyError(
            f"a synthesis ledger must compose Gaussian measurements and zCDP selections; it holds {kinds}"
        )
    if not all(e.noise_multiplier > 0 for e in events if isinstance(e, dp_accounting.GaussianDpEvent)):
        raise PrivacyError("a synthesis ledger holds a marginal measured without noise")


def _check_tuned_ledger(card: dict, ledger) -> None:
    """A tuned run's ledger must compose exactly the trials its card lists, the released one among them."""
    trials = card["tuning"]["trials"]
    listed = [(float(t["noise_multiplier"]), float(t["sample_rate"]), int(t["steps"])) for t in trials]
    if len(trials) != int(card["tuning"]["trials_run"]):
        raise PrivacyError(f"the tuned run ran {card['tuning']['trials_run']} trials but its card lists {len(trials)}")
    if not all(sigma > 0 for sigma, _, _ in listed):
        raise PrivacyError(f"a private tuning trial ran without noise: {listed}")
    parts = ledger_gaussians(ledger)
    if type(ledger).__name__ != "ComposedDpEvent" or parts != listed:
        raise PrivacyError(
            f"the tuned run's ledger composes {parts}, not the {len(listed)} trials its card lists {listed}"
        )
    chosen = listed[int(card["tuning"]["selected_trial"])]
    if chosen[1] < card["sample_rate"]:
        raise PrivacyError(
            f"the selected trial is charged q {chosen[1]:.6g}, below its sampling rate {card['sample_rate']:.6g}"
        )
    released = (card["noise_multiplier"], card["accounted_sample_rate"], card["steps"])
    if not (
        math.isclose(chosen[0], released[0], rel_tol=1e-9)
        and math.isclose(chosen[1], released[1], rel_tol=1e-12)
        and chosen[2] == released[2]
    ):
        raise PrivacyError(
            f"the released trial ran (σ, q, steps) = {released}, but the ledger's selected trial is {chosen}"
        )
