"""vae_jax/likelihoods.py: the Gaussian likelihood's scale options; the Bernoulli likelihood's
pairwise log-probabilities against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.helpers import small_model_config as _model_config
from vae_jax import distributions, likelihoods, models


@pytest.mark.parametrize('scale,num_outputs', [('decoded', 2), ('learned', 1), ('fixed', 1)])
def test_gaussian_likelihood_scales(scale, num_outputs):
  model = models.build_model(_model_config(likelihood='gaussian', scale=scale), (4, 4, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  output_kernel = params['params']['decoder']['net']['output']['kernel']
  assert output_kernel.shape == (8, 16 * num_outputs)
  assert ('raw_scale' in params['params']['decoder'].get('likelihood', {})) == (scale == 'learned')
  likelihood = model.apply(params, jnp.zeros((7, 3)), method='decode')
  assert isinstance(likelihood, distributions.DiagonalGaussian)
  assert likelihood.mean.shape == likelihood.scale.shape == (7, 4, 4, 1)
  assert np.all((likelihood.mean > 0) & (likelihood.mean < 1))  # sigmoid mean
  assert np.all(likelihood.scale >= 1e-3)


def test_bernoulli_pairwise_log_prob_matches_scipy_in_float64():
  # What quadrature and exact enumeration sum: log p(x_b | z) for every image b and decoded z,
  # here 3 binary 28×28 images under 5 decoder outputs with logits up to ±12, against scipy's
  # Bernoulli log-pmf summed in float64. Float32 over 784 pixels leaves 5e-4 nats here; TF32
  # products (logits rounded to 10 bits, a GPU's default) would leave 0.03.
  rng = np.random.default_rng(0)
  logits = rng.uniform(-12.0, 12.0, (5, 28, 28, 1))
  x = (rng.uniform(size=(3, 28, 28, 1)) < 0.3).astype(np.float64)
  likelihood = likelihoods.BernoulliLikelihood(event_ndims=3).apply({}, jnp.asarray(logits,
                                                                                  jnp.float32))
  pairwise = np.asarray(jax.jit(likelihood.pairwise_log_prob)(jnp.asarray(x, jnp.float32)))
  logits32 = logits.astype(np.float32).astype(np.float64)  # the values the model holds
  expected = np.array([[stats.bernoulli(special.expit(l)).logpmf(image).sum() for l in logits32]
                       for image in x])
  assert pairwise.shape == (3, 5) and np.all(expected < -100)
  np.testing.assert_allclose(pairwise, expected, rtol=0, atol=2e-3)
  # The same as log_prob one image at a time.
  np.testing.assert_allclose(pairwise, np.stack([likelihood.log_prob(jnp.asarray(image[None],
                                                                                  jnp.float32))
                                                 for image in x]), rtol=1e-6)
