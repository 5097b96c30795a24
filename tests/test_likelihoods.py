"""vae_jax/likelihoods.py: the Gaussian likelihood's scale options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import small_model_config as _model_config
from vae_jax import distributions, models


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
