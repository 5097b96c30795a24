"""vae_jax/evaluators/ais.py and bdmc.py: AIS from each initial distribution converges to a
linear-Gaussian VAE's closed-form log p(x) where importance sampling from a poor q does not;
its weights' mean is p(x) to within a fraction of a per cent, for any number of chains from the
mixture start (where the old split of ⌊C/2⌋ from q was off), and so are BDMC's forward and
reverse weights' (1/p(x)); BDMC brackets log p(x) on simulated data; options are checked
before any compute."""

import jax
import jax.numpy as jnp
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
                       pilot_chains=4, initial=initial)
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
                           step_size=0.1, pilot_chains=4, initial='posterior')
    bounds = jax.device_get(fn(params, jax.random.key(1), np.arange(20)))
    gaps.append(bounds['upper_bound'] - bounds['lower_bound'])
  # Both bounds are stochastic: the mean gap is non-negative up to 3 of its standard errors.
  standard_error = np.std(gaps[1]) / np.sqrt(len(gaps[1]))
  assert np.mean(gaps[0]) > 0.1 > np.mean(gaps[1]) > -3 * standard_error
  assert np.mean(gaps[1]) < 0.3 * np.mean(gaps[0])


@pytest.mark.slow  # many chains: statistical, not quick
def test_the_simulated_data_bounds_agree_with_the_closed_form():
  # The evaluator draws x from the model; the closed form of log p(x) at those x lies between
  # the averaged bounds, within three standard errors of each bound's mean distance from it.
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  fn = bdmc.make_bdmc_fn(model, num_steps=100, num_chains=8, leapfrog_steps=3, step_size=0.1,
                         pilot_chains=4, initial='prior')
  ids = np.arange(100)
  bounds = jax.device_get(fn(params, jax.random.key(2), ids))
  simulated = bdmc.simulated_images(model, params, jax.random.key(2), ids)
  exact = linear_gaussian.exact_log_marginal(np.asarray(simulated, np.float64))
  below, above = bounds['lower_bound'] - exact, bounds['upper_bound'] - exact
  assert np.mean(below) <= 3 * np.std(below) / np.sqrt(len(ids))
  assert np.mean(above) >= -3 * np.std(above) / np.sqrt(len(ids))
  assert np.mean(bounds['upper_bound'] - bounds['lower_bound']) < 0.3


@pytest.mark.slow  # statistical: hundreds of chains per estimate
def test_ais_beats_importance_sampling_where_q_misses_the_posterior():
  # q four posterior standard deviations off: k = 300 importance samples fall short by 3 to 9
  # nats, AIS at a few hundred gradients (50 steps × 2 chains, a pilot of 2) by a fraction of
  # a nat. Two chains are noisy (single estimates are off by up to 1.5 nats), so the claim is
  # on the mean over four seeds.
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=1.2)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  exact = linear_gaussian.exact_log_marginal(x)
  sampled = batched.map_examples(
      importance_sampling.make_importance_sampling_fn(model, num_samples=300, chunk_size=100),
      params, x, batch_size=2, rng=jax.random.key(0))
  fn = ais.make_ais_fn(model, num_steps=50, num_chains=2, leapfrog_steps=2, step_size=0.1,
                       pilot_chains=2, initial='posterior')
  annealed = np.stack([batched.map_examples(fn, params, x, batch_size=2,
                                            rng=jax.random.key(seed))['log_likelihood']
                       for seed in range(4)])
  assert np.all(exact - sampled['log_likelihood'] > 0.5)
  assert np.all(sampled['pareto_k'] > 0.7)  # and its diagnostics say so
  ais_error = np.mean(np.abs(exact - annealed))
  assert ais_error < 1.0 and ais_error < 0.2 * np.mean(exact - sampled['log_likelihood'])


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
  config.evals.ais.num_chains, config.evals.ais.pilot_chains = 3, 0
  assert ais.option_problems(config) == ['evals.ais.pilot_chains=0 must be at least 1.']


def _mean_ratio(log_ratio):
  """The mean of exp(log_ratio) and its standard error, in float64."""
  ratio = np.exp(np.asarray(log_ratio, np.float64))
  return ratio.mean(), ratio.std() / np.sqrt(len(ratio))


@pytest.mark.slow  # 150,000 examples for each of three chain counts: about 20 s on one core
@pytest.mark.parametrize('num_chains', [1, 2, 3])
def test_the_mixture_start_is_unbiased_for_odd_and_even_chain_counts(num_chains):
  # One temperature step: each weight is p(x, z)/(½q(z|x) + ½p(z)) at its start z, so E[p̂]
  # = p(x) exactly when the starts are drawn from the mixture. q is the exact posterior, which
  # bounds the weights by 2 p(x): the standard error of the mean of p̂/p(x) over 150,000
  # examples is under 0.25%, and the 4-SE tolerance under 1%.
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X[:1], np.float32)
  exact = float(linear_gaussian.exact_log_marginal(linear_gaussian.X[0]))
  fn = ais.make_ais_fn(model, num_steps=1, num_chains=num_chains, leapfrog_steps=1,
                       step_size=0.1, pilot_chains=1, initial='mixture')
  num_examples = 150_000
  estimates = fn(params, np.repeat(x, num_examples, axis=0), np.arange(num_examples),
                 jax.random.key(num_chains))['log_likelihood']
  mean, error = _mean_ratio(estimates - exact)
  assert error < 0.0025
  assert abs(mean - 1.0) < 4 * error, (mean, error)


@pytest.mark.slow  # 150,000 examples: about 10 s on one core
def test_starting_every_chain_of_an_odd_count_from_one_component_is_biased():
  # What the mixture start did with one chain (⌊C/2⌋ = 0 from q, so all from p(z)): with the
  # mixture's density in the weights, E[w] falls far below p(x).
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = jnp.asarray(linear_gaussian.X[:1], jnp.float32)
  exact = float(linear_gaussian.exact_log_marginal(linear_gaussian.X[0]))
  context = model.apply(params, x, method='encode_context')
  z0 = ais.initial_draws(model, params, jax.random.key(0), context, 150_000, 'prior')
  log_densities = ais.chain_log_densities(model, params, x, context, 'mixture')
  log_f0, log_f1 = jax.vmap(log_densities)(z0)
  mean, error = _mean_ratio(log_f1 - log_f0 - exact)
  assert mean < 0.9 and abs(mean - 1.0) > 10 * error, (mean, error)


@pytest.mark.slow  # 40,000 examples × 20 temperatures: about 15 s on one core
def test_ais_with_its_pilot_tuned_steps_is_unbiased_for_p_x():
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X[:1], np.float32)
  exact = float(linear_gaussian.exact_log_marginal(linear_gaussian.X[0]))
  fn = ais.make_ais_fn(model, num_steps=20, num_chains=3, leapfrog_steps=2, step_size=0.1,
                       pilot_chains=2, initial='mixture')
  num_examples = 40_000
  result = fn(params, np.repeat(x, num_examples, axis=0), np.arange(num_examples),
              jax.random.key(0))
  mean, error = _mean_ratio(result['log_likelihood'] - exact)
  assert error < 0.0025
  assert abs(mean - 1.0) < 4 * error, (mean, error)
  assert not np.allclose(result['step_size'], 0.1)  # the pilot moved the steps


@pytest.mark.slow  # 20,000 simulated examples, forward and reverse: about 30 s on one core
def test_bdmc_weights_are_unbiased_for_p_x_forward_and_its_inverse_in_reverse():
  # Forward: E[p̂] = p(x). Reverse from the exact posterior draw: E[1/p̂] = 1/p(x), i.e. the
  # upper bound's exp(−bound) is unbiased for 1/p(x) (Grosse et al. 2015). From q(z|x) a
  # posterior standard deviation off, where both directions' weights have light tails (from
  # the mixture the reverse weights are heavy-tailed: at these settings their standard error
  # was 17 times the forward weights').
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.3)  # pylint: disable=protected-access
  fn = bdmc.make_bdmc_fn(model, num_steps=20, num_chains=2, leapfrog_steps=2, step_size=0.1,
                         pilot_chains=2, initial='posterior')
  ids, rng = np.arange(20_000), jax.random.key(4)
  bounds = jax.device_get(fn(params, rng, ids))
  exact = linear_gaussian.exact_log_marginal(
      np.asarray(bdmc.simulated_images(model, params, rng, ids), np.float64))
  for log_ratio in (bounds['lower_bound'] - exact, exact - bounds['upper_bound']):
    mean, error = _mean_ratio(log_ratio)
    assert error < 0.0025
    assert abs(mean - 1.0) < 4 * error, (mean, error)
