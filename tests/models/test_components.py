"""vae_jax/models/components.py: encoders, decoders, likelihoods and priors built by name, with
the shapes every combination gives."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnist, vampprior
from tests.helpers import small_model_config as _model_config
from vae_jax import models
from vae_jax.engine import config_checks


@pytest.mark.parametrize('data_shape', [(28, 28, 1), (28, 20, 1), (8, 8, 1)])
# conv encoder + MLP decoder only in the whole suite: its parts are in the other two cases.
@pytest.mark.parametrize('encoder,decoder', [
    ('mlp', 'mlp'), ('conv', 'conv'), pytest.param('conv', 'mlp', marks=pytest.mark.slow)])
def test_encode_decode_shapes(data_shape, encoder, decoder):
  model = models.build_model(_model_config(encoder, decoder), data_shape)

  @jax.jit  # one compilation, not one per operation (convolutions compile slowly on CPU)
  def encode_decode(x):
    params = model.init(jax.random.key(0), x[:1])
    posterior = model.apply(params, x, method='encode')
    z = posterior.sample(jax.random.key(1), (2,))  # [S, B, D]: samples of a batch
    likelihood = model.apply(params, z, method='decode')
    return posterior.mean, posterior.scale, likelihood.logits, likelihood.log_prob(x)

  x = jnp.zeros((5, *data_shape))
  mean, scale, logits, log_prob = encode_decode(x)
  assert mean.shape == scale.shape == (5, 3)
  assert np.all(scale > 0)
  assert logits.shape == (2, 5, *data_shape)
  assert log_prob.shape == (2, 5)


def test_priors():
  fixed = models.build_model(_model_config(prior='standard_normal'), (4, 4, 1))
  learned = models.build_model(_model_config(prior='learned_gaussian'), (4, 4, 1))
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
    models.build_model(config, (4, 4, 1))


def test_separate_gates_reach_the_convolutional_networks():
  config = _model_config(encoder='conv', decoder='conv')
  for part in (config.encoder, config.decoder):
    part.activation, part.gate_kernels = 'gated', 'separate'
  model = models.build_model(config, (8, 8, 1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))['params']
  torso, net = params['encoder']['torso'], params['decoder']['net']
  assert {'conv_0_h', 'conv_0_g', 'conv_1_h', 'conv_1_g', 'mlp'} <= set(torso)
  assert {'to_feature_map_h', 'to_feature_map_g', 'deconv_0_h', 'deconv_1_g'} <= set(net)
  assert torso['conv_0_h']['kernel'].shape == torso['conv_0_g']['kernel'].shape == (3, 3, 1, 4)


@pytest.mark.parametrize('key,value,message', [
    ('model.encoder.kind', 'conv', 'model.encoder.bias_init=\'torch_uniform\' needs model.encoder.kind=mlp'),
    ('model.latent_kind', 'categorical', 'is built for the vae family only'),
    ('model.encoder.flow_steps', 2, 'not to an IAF encoder'),
])
def test_torch_biases_are_refused_where_a_layer_would_keep_zero_biases(key, value, message):
  config = mnist.get_config()
  config.model.encoder.bias_init = 'torch_uniform'
  *parents, leaf = key.split('.')
  block = config
  for parent in parents:
    block = block[parent]
  block[leaf] = value
  with pytest.raises(config_checks.ConfigError, match=re.escape(message)):
    config_checks.validate_config(config)
  config_checks.validate_config(vampprior.get_config('standard'))  # mlp, vae: accepted
