"""vae_jax/evaluators/importance_sampling.py: exact with the exact posterior in ragged chunks,
and converging to log p(x) within its reported error otherwise."""

import jax
import numpy as np

from tests import test_objectives as linear_gaussian
from vae_jax.evaluators import batched, elbo
from vae_jax.evaluators import importance_sampling as evaluation


def test_importance_sampling_with_the_exact_posterior_is_exact_in_ragged_chunks():
  # Every weight equals p(x): the estimate is log p(x) and its standard error 0, whatever the
  # chunking (10 samples in chunks of 3: the last chunk has 2 masked draws).
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=10, chunk_size=3)
  result = batched.map_examples(fn, params, x, batch_size=4, rng=jax.random.key(0))
  np.testing.assert_allclose(result['log_likelihood'], linear_gaussian.exact_log_marginal(x),
                             rtol=1e-5)
  np.testing.assert_allclose(result['standard_error'], 0.0, atol=2e-3)


def test_importance_sampled_estimate_converges_to_the_exact_log_marginal():
  # A shift of about 0.7 posterior standard deviations per unit: KL(q ‖ p(z|x)) ≈ 0.5 nats.
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.2)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  exact = linear_gaussian.exact_log_marginal(x)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=20_000, chunk_size=1000)
  result = batched.map_examples(fn, params, x, batch_size=2, rng=jax.random.key(1))
  assert np.all(result['standard_error'] < 0.02)
  np.testing.assert_allclose(result['log_likelihood'], exact,
                             atol=5 * result['standard_error'].max() + 1e-3)
  elbo_value = elbo.evaluate_elbo(elbo.make_elbo_fn(model, num_samples=10_000, analytic_kl=True),
                                  params, x, batch_size=2, rng=jax.random.key(2))['elbo']
  assert elbo_value < np.mean(result['log_likelihood']) - 0.3


class _ScaledPosteriorEncoder(linear_gaussian.FixedGaussianEncoder):
  """The exact posterior with its scale multiplied by `factor`."""

  factor: float = 1.0

  def __call__(self, x):
    exact = super().__call__(x)
    return type(exact)(exact.mean, exact.scale * self.factor)


def _scaled_posterior_vae(factor):
  from vae_jax import models, priors  # pylint: disable=import-outside-toplevel
  model = models.VAE(_ScaledPosteriorEncoder(factor=factor), linear_gaussian.LinearGaussianDecoder(),
                     priors.StandardNormalPrior(2))
  return model, model.init(jax.random.key(0), np.zeros((1, 3), np.float32))


def test_diagnostics_flag_a_q_narrower_than_the_posterior_and_pass_a_wider_one():
  # q with a third of the posterior's scale: the weights' tail is heavy (their variance is
  # infinite once q's scale is below 1/√2 of p(z|x)'s), k̂ well above 0.7 and few effective
  # samples. q 1.5 times wider: light tails, k̂ below 0.5 and most samples effective.
  x = np.asarray(linear_gaussian.X, np.float32)
  results = {}
  for factor in (1 / 3, 1.5):
    model, params = _scaled_posterior_vae(factor)
    fn = evaluation.make_importance_sampling_fn(model, num_samples=5000, chunk_size=500)
    results[factor] = batched.map_examples(fn, params, x, batch_size=2, rng=jax.random.key(0))
  narrow, wide = results[1 / 3], results[1.5]
  assert np.all(narrow['pareto_k'] > 0.7) and np.all(narrow['effective_sample_size'] < 500)
  assert np.all(wide['pareto_k'] < 0.5) and np.all(wide['effective_sample_size'] > 2500)
  summary = evaluation.summarize({key: value[None] for key, value in narrow.items()})
  assert summary['unreliable_fraction'] == 1.0 and summary['monte_carlo_error'] is None
  assert {e['index'] for e in summary['worst_examples']} == {0, 1}


def test_large_k_in_many_chunks_stays_exact_in_float32():
  # 50,000 equal weights accumulated over 100 chunks: the running log-sums lose nothing
  # measurable (the estimate is log p(x) to float32 rounding of its magnitude).
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=50_000, chunk_size=500)
  result = batched.map_examples(fn, params, x, batch_size=2, rng=jax.random.key(0))
  np.testing.assert_allclose(result['log_likelihood'], linear_gaussian.exact_log_marginal(x),
                             rtol=2e-6)
  np.testing.assert_allclose(result['effective_sample_size'], 50_000, rtol=1e-3)


def test_repeated_seeds_measure_the_monte_carlo_error_of_the_mean():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.3)  # pylint: disable=protected-access
  x = np.repeat(np.asarray(linear_gaussian.X, np.float32), 20, axis=0)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=20, chunk_size=20)
  runs = evaluation.repeated_estimates(fn, params, x, batch_size=40, rng=jax.random.key(0),
                                       num_repeats=8)
  summary = evaluation.summarize(runs)
  # The seed-to-seed spread of the split means agrees with the reported error of one seed's
  # mean (√R times the error of the reported mean over R seeds), within a factor of two.
  seed_spread = np.std(summary['seed_means'], ddof=1)
  assert 0.5 < seed_spread / (summary['monte_carlo_error'] * np.sqrt(8)) < 2.0
  assert summary['log_likelihood'] == np.mean(summary['seed_means'])
  assert summary['test_set_error'] > summary['monte_carlo_error']


def test_a_k_that_could_not_be_fitted_counts_as_unreliable_and_is_listed_first():
  # Example 3's k̂ is NaN (a tail that could not be fitted), example 5's huge: both are among
  # the worst, NaN first, and both count in the unreliable share; the report says which is which.
  num_examples = 12
  pareto_k = np.linspace(0.1, 0.6, num_examples)
  pareto_k[3], pareto_k[5] = np.nan, 2.4
  runs = {'log_likelihood': np.full((1, num_examples), -90.0),
          'standard_error': np.full((1, num_examples), 0.01),
          'pareto_k': pareto_k[None], 'effective_sample_size': np.full((1, num_examples), 50.0)}
  summary = evaluation.summarize(runs)
  assert summary['unreliable_fraction'] == 2 / num_examples
  assert [e['index'] for e in summary['worst_examples'][:3]] == [3, 5, 11]
  assert len(summary['worst_examples']) == evaluation.WORST_EXAMPLES
  lines = evaluation.report_lines({'importance_sampled': {**summary, 'num_samples': 5000}}, 1.0)
  assert '#3 (k̂ no fit), #5 (k̂ 2.40)' in '\n'.join(lines)
  assert any('the delta method within a run' in line for line in lines)
  # Fewer than 25 samples: no k̂ anywhere, so nothing is counted either way.
  runs['pareto_k'] = np.full((1, num_examples), np.nan)
  summary = evaluation.summarize(runs)
  assert summary['unreliable_fraction'] is None and summary['median_pareto_k'] is None
  assert 'k̂ needs k ≥ 25' in '\n'.join(
      evaluation.report_lines({'importance_sampled': {**summary, 'num_samples': 20}}, 1.0))
