"""vae_jax/annealing.py: HMC transitions leave their target invariant, and AIS is unbiased for the
normaliser of a Gaussian-times-Gaussian model whose marginal is known in closed form (forward:
a lower bound; reverse from exact draws: an upper bound) with step sizes frozen before the run,
and measurably biased with step sizes each chain adapts during it."""

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
  # Start 4000 chains at exact draws of the posterior and run 40 transitions at β = 1: the
  # chains' mean and covariance stay those of the target.
  mean, covariance = _exact_posterior()
  z0 = np.random.default_rng(0).multivariate_normal(mean, covariance, 4000).astype(np.float32)
  log_w, z, info = annealing.anneal(jax.random.key(1), jnp.asarray(z0), _log_densities,
                              np.ones(41, np.float32), leapfrog_steps=5, step_sizes=0.3)
  np.testing.assert_array_equal(log_w, 0.0)  # β never moves: no weight
  assert 0.5 < info['acceptance_rate'] < 0.95
  z = np.asarray(z)
  assert np.mean(np.abs(z - z0) > 1e-3) > 0.5  # the chains moved
  standard_error = np.sqrt(np.diag(covariance) / len(z))
  assert np.all(np.abs(z.mean(axis=0) - mean) < 4 * standard_error)
  np.testing.assert_allclose(np.cov(z.T), covariance, rtol=0.1, atol=0.1 * covariance.max())


def _forward_weights(num_chains, num_steps, seed=0):
  z0 = jax.random.normal(jax.random.key(seed), (num_chains, 2))
  log_w, _, _ = annealing.anneal(jax.random.key(seed + 1), z0, _log_densities,
                                 annealing.sigmoid_schedule(num_steps), leapfrog_steps=3,
                                 step_sizes=0.3)
  return np.asarray(log_w, np.float64)


@pytest.mark.slow  # many chains: statistical, not quick
def test_ais_is_unbiased_for_the_normaliser_of_a_gaussian_model():
  # E[w] = Z: the mean of 4000 chains' weights is within 4 standard errors of the closed form,
  # with few intermediate distributions (where the weights vary a lot) and with many.
  exact = _log_normaliser()
  for num_steps in (3, 50):
    log_w = _forward_weights(4000, num_steps)
    weights = np.exp(log_w - exact)
    assert abs(weights.mean() - 1.0) < 4 * weights.std() / np.sqrt(len(weights)), num_steps
  # More steps: each chain's log-weight concentrates at log Z (the bound tightens; with 200
  # steps the log-weights' spread is about 0.5 nats, their mean about 0.05 below log Z).
  few, many = _forward_weights(200, 3), _forward_weights(200, 200)
  assert np.std(many) < 0.2 * np.std(few)
  assert np.mean(few) < np.mean(many) < exact + 4 * np.std(many) / np.sqrt(len(many))
  assert exact - np.mean(many) < 0.15


# 1-D: f_0 = N(0, 1), f_1(z) = N(z; 0, 1) N(y; z, s²), so Z = N(y; 0, 1 + s²), and the posterior
# (standard deviation 0.2) is five times narrower than f_0: the step size has to move.
S_1D, Y_1D = 0.2, 1.0


def _log_densities_1d(z):
  log_prior = jnp.sum(jax.scipy.stats.norm.logpdf(z))
  return log_prior, log_prior + jnp.sum(jax.scipy.stats.norm.logpdf(Y_1D, z, S_1D))


@pytest.mark.slow  # 200,000 chains × 100 steps, three runs: about 30 s on one core
def test_frozen_step_sizes_keep_ais_unbiased_where_adapting_ones_do_not():
  # E[w]/Z from 200,000 chains: its standard error is about 0.13%, so the 4-SE tolerance
  # (about 0.5%) sees a 1% bias. Step sizes each chain adapts from its own acceptances (the
  # scheme AIS used before: ×1.02 or ×0.98 a step) read about 3.6% high; the same rule run as a
  # pilot on other draws, its schedule then frozen, is within the tolerance.
  exact = stats.norm(0.0, np.sqrt(1 + S_1D**2)).logpdf(Y_1D)
  betas, num_chains = annealing.sigmoid_schedule(100), 200_000
  settings = dict(log_densities=_log_densities_1d, betas=betas, leapfrog_steps=2)
  adapting = jax.jit(lambda key, z0: annealing.anneal_adapting(key, z0=z0, initial_step_size=0.3,
                                                               **settings))
  frozen = jax.jit(lambda key, z0, steps: annealing.anneal(key, z0=z0, step_sizes=steps,
                                                           **settings))
  z0 = jax.random.normal(jax.random.key(0), (num_chains, 1))
  pilot_z0 = jax.random.normal(jax.random.key(2), (num_chains, 1))  # the pilot's own draws
  step_sizes = adapting(jax.random.key(3), pilot_z0)[2]['step_sizes']

  def mean_and_error(log_w):
    w = np.exp(np.asarray(log_w, np.float64) - exact)
    return w.mean(), w.std() / np.sqrt(num_chains)

  adapted, adapted_error = mean_and_error(adapting(jax.random.key(1), z0)[0])
  unbiased, error = mean_and_error(frozen(jax.random.key(1), z0, step_sizes)[0])
  assert error < 0.002 and adapted_error < 0.002
  assert abs(unbiased - 1.0) < 4 * error, (unbiased, error)
  assert adapted - 1.0 > 4 * adapted_error and adapted - 1.0 > 0.01, (adapted, adapted_error)
  # The schedule moved: wider steps where f_β is wide, narrower at the posterior.
  step_sizes = np.asarray(step_sizes)
  assert step_sizes.shape == (101,) and step_sizes.max() > 1.5 * step_sizes[-1]


def test_the_pilot_schedule_is_aligned_with_the_betas_and_reverses_with_them():
  betas = annealing.sigmoid_schedule(30)
  z0 = jax.random.normal(jax.random.key(0), (8, 1))
  step_sizes = annealing.pilot_step_sizes(jax.random.key(1), z0, _log_densities_1d, betas,
                                          leapfrog_steps=2, initial_step_size=0.3)
  assert step_sizes.shape == betas.shape
  np.testing.assert_allclose(step_sizes[:2], 0.3, rtol=1e-6)  # the first transition's start
  # Each pilot chain moves by ×(1 ± r) per transition: their geometric mean too, at most.
  rate = annealing.PILOT_ADAPTATION_RATE
  ratios = np.asarray(step_sizes[2:] / step_sizes[1:-1])
  assert np.all((ratios > 1 - rate - 1e-5) & (ratios < 1 + rate + 1e-5))
  assert np.any(np.abs(ratios - 1) > 0.01)  # and the schedule moved
  # A frozen run takes the schedule as given, every chain the same step at each β.
  _, _, info = annealing.anneal(jax.random.key(2), z0, _log_densities_1d, betas[::-1],
                                leapfrog_steps=2, step_sizes=step_sizes[::-1])
  np.testing.assert_allclose(info['step_sizes'][1:], step_sizes[::-1][1:], rtol=1e-6)


@pytest.mark.slow  # many chains: statistical, not quick
def test_reverse_chains_from_exact_draws_bound_log_z_from_above():
  mean, covariance = _exact_posterior()
  z_star = np.random.default_rng(3).multivariate_normal(mean, covariance, 200).astype(np.float32)
  exact = _log_normaliser()
  gaps = []
  for num_steps in (3, 300):
    betas = annealing.sigmoid_schedule(num_steps)
    forward = _forward_weights(200, num_steps)
    reverse, _, _ = annealing.anneal(jax.random.key(9), jnp.asarray(z_star), _log_densities, betas[::-1],
                               leapfrog_steps=3, step_sizes=0.3)
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
