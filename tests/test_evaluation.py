"""Evaluation over whole splits: exact with a ragged last batch, independent of batch size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import test_objectives as linear_gaussian
from vae_jax import evaluation


@pytest.mark.parametrize('batch_size', [1, 4, 7, 32])
def test_ragged_batches_give_the_exact_mean(batch_size):
  # With the exact posterior and the sampled KL, every sample gives log p(x) exactly, so the
  # mean over a split has a known value whatever the batching.
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
  sums_fn = evaluation.make_elbo_sums_fn(model, num_samples=1, analytic_kl=False)
  result = evaluation.evaluate_elbo(sums_fn, params, x, batch_size=batch_size,
                                    rng=jax.random.key(0))
  np.testing.assert_allclose(result['elbo'], linear_gaussian.exact_log_marginal(x).mean(),
                             rtol=1e-5)


def test_result_does_not_depend_on_the_batch_size():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.5)  # pylint: disable=protected-access
  x = np.random.default_rng(1).normal(size=(9, 3)).astype(np.float32)
  sums_fn = evaluation.make_elbo_sums_fn(model, num_samples=2, analytic_kl=True)
  results = [evaluation.evaluate_elbo(sums_fn, params, x, batch_size=size, rng=jax.random.key(1))
             for size in (2, 9, 16)]
  for result in results[1:]:
    for name in ('elbo', 'log_likelihood', 'kl'):
      np.testing.assert_allclose(result[name], results[0][name], rtol=1e-6)


def test_prior_samples_and_reconstructions_have_data_shape():
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  samples = evaluation.prior_samples(model, params, jax.random.key(0), num_samples=5)
  assert samples.shape == (5, 3)
  recons = evaluation.reconstructions(model, params, jnp.zeros((4, 3)))
  assert recons.shape == (4, 3)
