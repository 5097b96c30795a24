"""vae_jax/annealing.py: HMC transitions leave their target invariant, and AIS is unbiased for the
normaliser of a Gaussian-times-Gaussian model whose marginal is known in closed form (forward:
a lower bound; reverse from exact draws: an upper bound)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vae_jax import annealing

# Target f_1(z) = N(z; 0, I) N(y; A z, s² I): a 2-D latent, 3-D observation.
A = np.array([[1.0, 0.5], [-0.3, 1.2], [0.8, -0.7]], np.float32)
S = 0.4
Y = np.array([0.9, -1.1, 0.4], np.float32)


def _log_densities(z):
  """(log N(z; 0, I), log N(z; 0, I) + log N(y; Az, s²I)) for one chain."""
  log_prior = jnp.sum(jax.scipy.stats.norm.logpdf(z))
  log_likelihood = jnp.sum(jax.scipy.stats.norm.logpdf(Y, A @ z, S))
  return log_prior, log_prior + log_likelihood


def _exact_posterior():
  precision = np.eye(2) + A.T @ A / S**2
  covariance = np.linalg.inv(precision)
  return covariance @ A.T @ Y / S**2, covariance


def _log_normaliser():
  return stats.multivariate_normal(np.zeros(3), A @ A.T + S**2 * np.eye(3)).logpdf(Y)


def test_hmc_transitions_leave_a_gaussian_target_invariant():
  # Start 4000 chains at exact draws of the posterior and run 40 transitions at β = 1 (step sizes
  # adapting): the chains' mean and covariance stay those of the target.
  mean, covariance = _exact_posterior()
  z0 = np.random.default_rng(0).multivariate_normal(mean, covariance, 4000).astype(np.float32)
  log_w, z, info = annealing.anneal(jax.random.key(1), jnp.asarray(z0), _log_densities,
                              np.ones(41, np.float32), leapfrog_steps=5, step_size=0.3)
  np.testing.assert_array_equal(log_w, 0.0)  # β never moves: no weight
  assert 0.5 < info['acceptance_rate'] < 0.95
  z = np.asarray(z)
  assert np.mean(np.abs(z - z0) > 1e-3) > 0.5  # the chains moved
  standard_error = np.sqrt(np.diag(covariance) / len(z))
  assert np.all(np.abs(z.mean(axis=0) - mean) < 4 * standard_error)
  np.testing.assert_allclose(np.cov(z.T), covariance, rtol=0.1, atol=0.1 * covariance.max())


def _forward_weights(num_chains, num_steps, adapt, seed=0):
  z0 = jax.random.normal(jax.random.key(seed), (num_chains, 2))
  log_w, _, _ = annealing.anneal(jax.random.key(seed + 1), z0, _log_densities,
                        annealing.sigmoid_schedule(num_steps), leapfrog_steps=3, step_size=0.3,
                        adapt_step_size=adapt)
  return np.asarray(log_w, np.float64)


@pytest.mark.slow  # many chains: statistical, not quick
def test_ais_is_unbiased_for_the_normaliser_of_a_gaussian_model():
  # E[w] = Z: the mean of 4000 chains' weights is within 4 standard errors of the closed form,
  # with few intermediate distributions (where the weights vary a lot) and with many.
  exact = _log_normaliser()
  for num_steps in (3, 50):
    log_w = _forward_weights(4000, num_steps, adapt=False)
    weights = np.exp(log_w - exact)
    assert abs(weights.mean() - 1.0) < 4 * weights.std() / np.sqrt(len(weights)), num_steps
  # More steps: each chain's log-weight concentrates at log Z (the bound tightens; with 200
  # steps the log-weights' spread is about 0.5 nats, their mean about 0.05 below log Z).
  few, many = _forward_weights(200, 3, adapt=False), _forward_weights(200, 200, adapt=False)
  assert np.std(many) < 0.2 * np.std(few)
  assert np.mean(few) < np.mean(many) < exact + 4 * np.std(many) / np.sqrt(len(many))
  assert exact - np.mean(many) < 0.15


@pytest.mark.slow  # many chains: statistical, not quick
def test_adapted_step_sizes_keep_the_weights_unbiased_within_their_error():
  # Step sizes set from the chain's own past bias AIS in principle; here E[w]/Z stays within 4
  # standard errors (about 3% at these settings) of 1.
  exact = _log_normaliser()
  weights = np.exp(_forward_weights(4000, 20, adapt=True) - exact)
  standard_error = weights.std() / np.sqrt(len(weights))
  assert standard_error < 0.05
  assert abs(weights.mean() - 1.0) < 4 * standard_error


@pytest.mark.slow  # many chains: statistical, not quick
def test_reverse_chains_from_exact_draws_bound_log_z_from_above():
  mean, covariance = _exact_posterior()
  z_star = np.random.default_rng(3).multivariate_normal(mean, covariance, 200).astype(np.float32)
  exact = _log_normaliser()
  gaps = []
  for num_steps in (3, 300):
    betas = annealing.sigmoid_schedule(num_steps)
    forward = _forward_weights(200, num_steps, adapt=True)
    reverse, _, _ = annealing.anneal(jax.random.key(9), jnp.asarray(z_star), _log_densities, betas[::-1],
                               leapfrog_steps=3, step_size=0.3)
    lower, upper = float(np.mean(forward)), float(-np.mean(np.asarray(reverse)))
    assert lower <= exact + 1e-3 and upper >= exact - 1e-3, (num_steps, lower, upper, exact)
    gaps.append(upper - lower)
  # The gap between the bounds closes as the chains lengthen.
  assert gaps[0] > 1.0 > 0.2 > gaps[1], gaps


def test_sigmoid_schedule_runs_from_zero_to_one_increasing():
  betas = annealing.sigmoid_schedule(100)
  assert betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) > 0)
  # Dense at both ends: the first and last steps are the smallest.
  assert np.diff(betas)[0] < np.diff(betas)[50] > np.diff(betas)[-1]
