"""vae_jax/evaluators/elbo.py: exact with a ragged last batch, independent of batch size."""

import jax
import numpy as np
import pytest

from tests import test_objectives as linear_gaussian
from vae_jax import data
from vae_jax.evaluators import elbo as evaluation


@pytest.mark.parametrize('batch_size', [1, 4, 7, 32])
def test_ragged_batches_give_the_exact_mean(batch_size):
  # With the exact posterior and the sampled KL, every sample gives log p(x) exactly, so the
  # mean over a split has a known value whatever the batching.
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  elbo_fn = evaluation.make_elbo_fn(model, num_samples=1, analytic_kl=False)
  result = evaluation.evaluate_elbo(elbo_fn, params, x, batch_size=batch_size,
                                    rng=jax.random.key(0))
  np.testing.assert_allclose(result['elbo'], linear_gaussian.exact_log_marginal(x).mean(),
                             rtol=1e-5)


def test_result_does_not_depend_on_the_batch_size():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.5)  # pylint: disable=protected-access
  x = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
  elbo_fn = evaluation.make_elbo_fn(model, num_samples=2, analytic_kl=True)
  results = [evaluation.evaluate_elbo(elbo_fn, params, x, batch_size=size, rng=jax.random.key(1))
             for size in (2, 9, 16)]
  for result in results[1:]:
    for name in ('elbo', 'reconstruction', 'kl'):
      np.testing.assert_allclose(result[name], results[0][name], rtol=1e-6)


def test_the_evaluator_adds_bits_per_dimension_of_the_elbo():
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  evaluator = evaluation.ElboEvaluator(
      evaluation.make_elbo_fn(model, num_samples=1, analytic_kl=False), batch_size=4)
  result = evaluator(params, data.Split(x, None), jax.random.key(0))
  expected = linear_gaussian.exact_log_marginal(x).mean()
  np.testing.assert_allclose(result['elbo'], expected, rtol=1e-5)
  np.testing.assert_allclose(result['bits_per_dim'], -expected / (3 * np.log(2)), rtol=1e-5)
