"""Model building: shapes for every encoder, decoder, likelihood and prior, any batch axes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from vae_jax import distributions, models


def _model_config(encoder='mlp', decoder='mlp', likelihood='bernoulli', scale='decoded',
                  prior='standard_normal'):
  config = default.get_config().model
  config.latent_dim = 3
  config.encoder.kind, config.decoder.kind = encoder, decoder
  config.encoder.hidden_sizes = config.decoder.hidden_sizes = (8,)
  config.encoder.conv_channels, config.decoder.conv_channels = (4, 8), (8, 4)
  config.likelihood.kind, config.likelihood.scale = likelihood, scale
  config.prior.kind = prior
  return config


@pytest.mark.parametrize('data_shape', [(28, 28, 1), (28, 20, 1), (8, 8, 1)])
@pytest.mark.parametrize('encoder,decoder', [('mlp', 'mlp'), ('conv', 'conv'), ('conv', 'mlp')])
def test_encode_decode_shapes(data_shape, encoder, decoder):
  model = models.build_vae(_model_config(encoder, decoder), data_shape)
  params = model.init(jax.random.key(0), jnp.zeros((1, *data_shape)))
  x = jnp.zeros((5, *data_shape))
  posterior = model.apply(params, x, method='encode')
  assert posterior.mean.shape == posterior.scale.shape == (5, 3)
  assert np.all(posterior.scale > 0)
  z = posterior.sample(jax.random.key(1), (2,))  # [S, B, D]: samples of a batch
  likelihood = model.apply(params, z, method='decode')
  assert likelihood.logits.shape == (2, 5, *data_shape)
  assert likelihood.log_prob(x).shape == (2, 5)


@pytest.mark.parametrize('scale,num_outputs', [('decoded', 2), ('learned', 1), ('fixed', 1)])
def test_gaussian_likelihood_scales(scale, num_outputs):
  model = models.build_vae(_model_config(likelihood='gaussian', scale=scale), (4, 4, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
  output_kernel = params['params']['decoder']['net']['output']['kernel']
  assert output_kernel.shape == (8, 16 * num_outputs)
  assert ('raw_scale' in params['params']['decoder'].get('likelihood', {})) == (scale == 'learned')
  likelihood = model.apply(params, jnp.zeros((7, 3)), method='decode')
  assert isinstance(likelihood, distributions.DiagonalGaussian)
  assert likelihood.mean.shape == likelihood.scale.shape == (7, 4, 4, 1)
  assert np.all((likelihood.mean > 0) & (likelihood.mean < 1))  # sigmoid mean
  assert np.all(likelihood.scale >= 1e-3)


def test_priors():
  fixed = models.build_vae(_model_config(prior='standard_normal'), (4, 4, 1))
  learned = models.build_vae(_model_config(prior='learned_gaussian'), (4, 4, 1))
  for model, has_params in ((fixed, False), (learned, True)):
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    assert ('prior' in params['params']) == has_params
    prior = model.apply(params, method='prior_distribution')
    np.testing.assert_allclose(prior.mean, np.zeros(3))
    np.testing.assert_allclose(prior.scale, np.ones(3), rtol=1e-3)


def test_unknown_kinds_name_the_choices():
  with pytest.raises(ValueError, match="Unknown encoder kind 'resnet'.*'mlp', 'conv'"):
    config = _model_config()
    config.encoder.kind = 'resnet'
    models.build_vae(config, (4, 4, 1))
