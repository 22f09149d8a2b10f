"""The noise regime behind the private search space (dpfair.training.tuning.regime), against the accountants.

The recipe rule uses the DP-SGD central limit theorem only to plan; these tests hold its pieces against
dp-accounting: μ-GDP's (ε, δ) curve against the PLD of a Gaussian, and the planned σ of a recipe against the
σ dp-accounting calibrates for the same steps and rate.
"""

import math

import dp_accounting
import pytest
from dpfair.training.tuning.accounting import clt_sigma
from dpfair.training.tuning.regime import MIN_SIGMA, gdp_delta, gdp_mu, private_recipe


@pytest.mark.parametrize("epsilon", [0.5, 1.0, 3.0, 10.0])
def test_gdp_mu_is_the_gaussian_mechanism_at_that_epsilon(epsilon):
    """μ-GDP is the Gaussian mechanism of sensitivity 1 and noise 1/μ: its PLD ε at δ must be the target."""
    delta = 1e-5
    mu = gdp_mu(epsilon, delta)
    assert gdp_delta(mu, epsilon) == pytest.approx(delta, rel=1e-6)
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier=1.0 / mu))
    assert accountant.get_epsilon(delta) == pytest.approx(epsilon, rel=2e-3)


def test_the_planned_sigma_is_the_clt_sigma_of_the_planned_steps():
    """The recipe's σ is the CLT's for its own rate and steps: q·√(T(e^{σ⁻²} − 1)) = μ of one trial."""
    recipe = private_recipe(epsilon=3.0, delta=1e-5, n=3125, n_params=23_000, trials=2, noise_ratio=2.0, epochs=15)
    q = 1.0 / math.ceil(3125 / recipe["expected_batch_size"])
    sigma = recipe["sigma_planned"]
    assert sigma == pytest.approx(clt_sigma(gdp_mu(3.0, 1e-5) / math.sqrt(2), sample_rate=q, steps=recipe["steps"]))
    assert q * math.sqrt(recipe["steps"] * math.expm1(sigma**-2)) == pytest.approx(gdp_mu(3.0, 1e-5) / math.sqrt(2))


@pytest.mark.parametrize("epsilon", [1.0, 3.0, 10.0])
def test_a_planned_recipe_is_near_what_the_accountant_calibrates(epsilon):
    """The CLT plans the steps; the real σ for them (dp-accounting, PLD) must be close to the planned one,
    or the noise ratio the space claims to offer would not be what the runs get."""
    n, d = 3125, 23_000
    recipe = private_recipe(epsilon=epsilon, delta=1e-5, n=n, n_params=d, trials=2, noise_ratio=1.0, epochs=15)
    batches = math.ceil(n / recipe["expected_batch_size"])
    q, steps = 1.0 / batches, recipe["epochs"] * batches
    assert steps == recipe["steps"] and recipe["sigma_planned"] >= MIN_SIGMA * 0.9

    def composed(sigma):
        event = dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
        )
        return dp_accounting.ComposedDpEvent([event, event])  # the two trials' equal shares

    sigma = dp_accounting.calibrate_dp_mechanism(
        lambda: dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3),
        composed,
        epsilon,
        1e-5,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(0.3, 3.0),
    )
    assert sigma == pytest.approx(recipe["sigma_planned"], rel=0.15)


def test_the_space_moves_with_epsilon_as_the_regime_asks():
    """Smaller ε: fewer steps and larger batches (up to the whole split); larger ε: many steps, σ at its floor."""
    n, d = 3125, 23_000
    recipes = {
        e: private_recipe(epsilon=e, delta=1e-5, n=n, n_params=d, trials=2, noise_ratio=1.0, epochs=15)
        for e in (1.0, 3.0, 10.0)
    }
    steps = [recipes[e]["steps"] for e in (1.0, 3.0, 10.0)]
    batches = [recipes[e]["expected_batch_size"] for e in (1.0, 3.0, 10.0)]
    assert steps == sorted(steps) and steps[0] < steps[2] and batches == sorted(batches, reverse=True)
    # at ε = 10 the batch shrinks until σ meets its floor, not below
    assert MIN_SIGMA <= recipes[10.0]["sigma_planned"] < 1.1 * MIN_SIGMA
    # at ε = 1 the noise ratio is the one drawn (the floor does not bind), at ε = 10 it is below it
    assert recipes[1.0]["noise_ratio_planned"] == pytest.approx(1.0, rel=0.25)
    assert recipes[10.0]["noise_ratio_planned"] < 1.0
    # a noisier draw (κ = 2) buys more steps at the same ε: T grows as κ²
    loud = private_recipe(epsilon=1.0, delta=1e-5, n=n, n_params=d, trials=2, noise_ratio=2.0, epochs=15)
    assert loud["steps"] > recipes[1.0]["steps"]
    # full batch where the steps are fewer than the epochs asked for
    tiny = private_recipe(epsilon=0.2, delta=1e-5, n=n, n_params=d, trials=2, noise_ratio=0.5, epochs=15)
    assert tiny["expected_batch_size"] == n and tiny["epochs"] == tiny["steps"]
