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
