"""vae_jax/evaluators/posterior.py: active units from the variance of posterior means across
the data (Burda et al.), on statistics and on a model built with one active unit."""

import jax
import jax.numpy as jnp
import numpy as np

from tests import test_objectives as linear_gaussian
from vae_jax import data, evaluators
from vae_jax.evaluators import posterior as evaluation


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
  evaluator = evaluation.ActiveUnitsEvaluator(evaluation.make_posterior_statistics_fn(model),
                                              batch_size=500)
  result = evaluator(params, data.Split(x, None), jax.random.key(0))
  assert result['active_units'] == {'z': 1}
  np.testing.assert_allclose(result['posterior_mean_variance']['z'], [4.0, 0.0025, 0.0],
                             rtol=0.1, atol=1e-6)
  # KL(N(m, 0.5²) ‖ N(0, 1)) = (0.25 + m² − 1 − log 0.25) / 2, averaged over E_x[m²].
  np.testing.assert_allclose(result['kl_per_dimension'],
                             0.5 * (0.25 + np.array([4.0, 0.0025, 0.49]) - 1 - np.log(0.25)),
                             rtol=0.1)
  assert evaluators.scalars(result) == {'active_units/z': 1}  # lists stay out of metrics
