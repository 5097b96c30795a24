"""vae_jax/evaluators/ais.py and bdmc.py: AIS from each initial distribution converges to a
linear-Gaussian VAE's closed-form log p(x) where importance sampling from a poor q does not;
BDMC brackets log p(x) on simulated data; options are checked before any compute."""

import jax
import numpy as np
import pytest

from configs import default
from tests import test_objectives as linear_gaussian
from vae_jax.evaluators import ais, batched, bdmc, importance_sampling


@pytest.mark.slow  # statistical: hundreds of chains per estimate
@pytest.mark.parametrize('initial', ['posterior', 'prior', 'mixture'])
def test_ais_converges_to_the_closed_form_log_marginal(initial):
  # q is shifted by 1.5 posterior standard deviations per unit.
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.5)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  exact = linear_gaussian.exact_log_marginal(x)
  fn = ais.make_ais_fn(model, num_steps=300, num_chains=32, leapfrog_steps=3, step_size=0.1,
                       initial=initial)
  result = batched.map_examples(fn, params, x, batch_size=2, rng=jax.random.key(0))
  assert np.all(result['standard_error'] < 0.15)
  np.testing.assert_allclose(result['log_likelihood'], exact,
                             atol=4 * result['standard_error'].max() + 0.01)
  assert np.all(result['acceptance_rate'] > 0.4)


@pytest.mark.slow  # many chains: statistical, not quick
def test_bdmc_brackets_log_p_x_on_simulated_data_and_the_gap_closes():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.5)  # pylint: disable=protected-access
  gaps = []
  for num_steps in (2, 100):
    fn = bdmc.make_bdmc_fn(model, num_steps=num_steps, num_chains=8, leapfrog_steps=3,
                           step_size=0.1, initial='posterior')
    bounds = jax.device_get(fn(params, jax.random.key(1), np.arange(20)))
    gaps.append(bounds['upper_bound'] - bounds['lower_bound'])
  # Both bounds are stochastic: the mean gap is non-negative up to 3 of its standard errors.
  standard_error = np.std(gaps[1]) / np.sqrt(len(gaps[1]))
  assert np.mean(gaps[0]) > 0.1 > np.mean(gaps[1]) > -3 * standard_error
  assert np.mean(gaps[1]) < 0.3 * np.mean(gaps[0])


@pytest.mark.slow  # many chains: statistical, not quick
def test_the_simulated_data_bounds_agree_with_the_closed_form():
  # The evaluator draws x from the model; the closed form of log p(x) at those x lies between
  # the averaged bounds (within their spread).
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  fn = bdmc.make_bdmc_fn(model, num_steps=100, num_chains=8, leapfrog_steps=3, step_size=0.1,
                         initial='prior')
  bounds = jax.device_get(fn(params, jax.random.key(2), np.arange(20)))
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.key(2), np.arange(20))
  simulated = np.stack([np.asarray(model.apply(params, jax.random.split(key, 4)[0], 1,
                                               method='simulate')[0][0]) for key in keys])
  exact = linear_gaussian.exact_log_marginal(simulated)
  assert np.mean(bounds['lower_bound']) <= np.mean(exact) + 0.02
  assert np.mean(bounds['upper_bound']) >= np.mean(exact) - 0.02
  assert np.mean(bounds['upper_bound'] - bounds['lower_bound']) < 0.3


@pytest.mark.slow  # statistical: hundreds of chains per estimate
def test_ais_beats_importance_sampling_where_q_misses_the_posterior():
  # q four posterior standard deviations off: k = 100 importance samples fall short by nats,
  # AIS at a comparable count of density evaluations does not.
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=1.2)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  exact = linear_gaussian.exact_log_marginal(x)
  sampled = batched.map_examples(
      importance_sampling.make_importance_sampling_fn(model, num_samples=300, chunk_size=100),
      params, x, batch_size=2, rng=jax.random.key(0))
  annealed = batched.map_examples(
      ais.make_ais_fn(model, num_steps=50, num_chains=2, leapfrog_steps=2, step_size=0.1,
                      initial='posterior'), params, x, batch_size=2, rng=jax.random.key(0))
  assert np.all(exact - sampled['log_likelihood'] > 0.5)
  assert np.all(sampled['pareto_k'] > 0.7)  # and its diagnostics say so
  assert np.all(np.abs(exact - annealed['log_likelihood']) < 0.3)


def test_ais_options_are_checked_with_the_fix_named():
  config = default.get_config()
  config.evals.ais.initial = 'uniform'
  assert any("choose from ('mixture', 'posterior', 'prior')" in p
             for p in ais.option_problems(config))
  config.evals.ais.initial = 'mixture'
  config.model.encoder.flow_steps = 2
  assert any("set evals.ais.initial='prior'" in p for p in ais.option_problems(config))
  config.evals.ais.initial, config.evals.ais.num_chains = 'prior', 0
  assert ais.option_problems(config) == ['evals.ais.num_chains=0 must be at least 1.']
