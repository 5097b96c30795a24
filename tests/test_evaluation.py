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
    for name in ('elbo', 'log_likelihood', 'kl'):
      np.testing.assert_allclose(result[name], results[0][name], rtol=1e-6)


def test_prior_samples_and_reconstructions_have_data_shape():
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  samples = evaluation.prior_samples(model, params, jax.random.key(0), num_samples=5)
  assert samples.shape == (5, 3)
  recons = evaluation.reconstructions(model, params, jnp.zeros((4, 3)))
  assert recons.shape == (4, 3)


def test_importance_sampling_with_the_exact_posterior_is_exact_in_ragged_chunks():
  # Every weight equals p(x): the estimate is log p(x) and its standard error 0, whatever the
  # chunking (10 samples in chunks of 3: the last chunk has 2 masked draws).
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=10, chunk_size=3)
  result = evaluation.map_examples(fn, params, x, batch_size=4, rng=jax.random.key(0))
  np.testing.assert_allclose(result['log_likelihood'], linear_gaussian.exact_log_marginal(x),
                             rtol=1e-5)
  np.testing.assert_allclose(result['standard_error'], 0.0, atol=2e-3)


def test_importance_sampled_estimate_converges_to_the_exact_log_marginal():
  # A shift of about 0.7 posterior standard deviations per unit: KL(q ‖ p(z|x)) ≈ 0.5 nats.
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.2)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  exact = linear_gaussian.exact_log_marginal(x)
  fn = evaluation.make_importance_sampling_fn(model, num_samples=20_000, chunk_size=1000)
  result = evaluation.map_examples(fn, params, x, batch_size=2, rng=jax.random.key(1))
  assert np.all(result['standard_error'] < 0.02)
  np.testing.assert_allclose(result['log_likelihood'], exact,
                             atol=5 * result['standard_error'].max() + 1e-3)
  elbo = evaluation.evaluate_elbo(evaluation.make_elbo_fn(model, num_samples=10_000, analytic_kl=True),
                                  params, x, batch_size=2, rng=jax.random.key(2))['elbo']
  assert elbo < np.mean(result['log_likelihood']) - 0.3


def test_evaluate_split_reports_every_quantity(tmp_path):
  del tmp_path
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.3)  # pylint: disable=protected-access
  x = np.random.default_rng(2).normal(size=(12, 3)).astype(np.float32)
  result = evaluation.evaluate_split(model, params, x, rng=jax.random.key(3),
                                     num_importance_samples=100, chunk_size=30, batch_size=5)
  assert result['num_examples'] == 12
  assert result['elbo']['elbo'] < result['importance_sampled']['log_likelihood']
  assert result['importance_sampled']['num_samples'] == 100
  # The per-unit KLs add up to the KL term.
  np.testing.assert_allclose(sum(result['kl_per_dimension']), result['elbo']['kl'], rtol=1e-5)
  assert result['active_units'] == {'z': 2}
  assert set(result['seconds']) == {'elbo', 'posterior', 'importance_sampled'}


def test_active_units_use_the_variance_of_posterior_means_across_data():
  rng = np.random.default_rng(4)
  means = np.stack([rng.normal(scale=0.5, size=1000),  # variance 0.25: active
                    rng.normal(scale=0.05, size=1000),  # variance 0.0025: inactive
                    np.full(1000, 3.0)], axis=1)  # constant: inactive
  summary = evaluation.posterior_summary({'means/z': means})
  assert summary['active_units'] == {'z': 1}
  np.testing.assert_allclose(summary['posterior_mean_variance']['z'], np.var(means, axis=0))


class _KnownUnitsEncoder(linear_gaussian.nn.Module):
  """q(z|x) with means 2·x₀ (variance across data ≈ 4: active), 0.05·x₁ (≈ 0.0025: inactive)
  and a constant (0: inactive)."""

  def __call__(self, x):
    mean = jnp.stack([2.0 * x[..., 0], 0.05 * x[..., 1], jnp.full(x.shape[:-1], 0.7)], axis=-1)
    return linear_gaussian.distributions.DiagonalGaussian(mean, jnp.full(mean.shape, 0.5))


class _AnyDecoder(linear_gaussian.nn.Module):

  def __call__(self, z):
    return linear_gaussian.distributions.DiagonalGaussian(z, jnp.ones_like(z))


def test_active_units_on_a_model_built_with_one_active_unit():
  model = linear_gaussian.models.VAE(_KnownUnitsEncoder(), _AnyDecoder(),
                                     linear_gaussian.priors.StandardNormalPrior(3))
  params = model.init(jax.random.key(0), jnp.zeros((1, 3)))
  x = np.random.default_rng(5).normal(size=(2000, 3)).astype(np.float32)
  result = evaluation.evaluate_split(model, params, x, rng=jax.random.key(0),
                                     num_importance_samples=0, chunk_size=1, batch_size=500)
  assert result['active_units'] == {'z': 1}
  np.testing.assert_allclose(result['posterior_mean_variance']['z'], [4.0, 0.0025, 0.0],
                             rtol=0.1, atol=1e-6)
  assert 'importance_sampled' not in result
