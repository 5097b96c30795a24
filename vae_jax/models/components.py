"""The parts every family is built from, chosen by name from the config: encoder torsos and
Gaussian encoders, decoder networks, likelihoods, priors; and `Decoder` (network + likelihood).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import discretized_logistic, encoders, flows, likelihoods, networks, priors

ENCODER_KINDS = ('mlp', 'conv')
DECODER_KINDS = ('mlp', 'conv')
LATENT_KINDS = ('gaussian', 'categorical')
PRIOR_KINDS = ('standard_normal', 'learned_gaussian', 'mixture', 'vamp')  # gaussian latents
CATEGORICAL_PRIOR_KINDS = ('uniform', 'learned_categorical')  # categorical latents
LIKELIHOOD_KINDS = ('bernoulli', 'gaussian', 'discretized_logistic', 'discretized_logistic_mixture')



class Decoder(nn.Module):
  """`p(x|z)`: a decoder network followed by a likelihood."""

  net: nn.Module
  likelihood: nn.Module

  def __call__(self, z: jax.Array):
    return self.likelihood(self.net(z))


def build_decoder(model_config, data_shape) -> Decoder:
  """`p(x|z)`: the configured decoder network and likelihood."""
  likelihood = build_likelihood(model_config.likelihood, data_shape)
  return Decoder(build_decoder_net(model_config.decoder, data_shape,
                                   raw_channels(likelihood, data_shape), model_config.kernel_init,
                                   model_config.compute_dtype), likelihood)


def raw_channels(likelihood: nn.Module, data_shape) -> int:
  """How many raw values per pixel the decoder outputs for `likelihood`."""
  return likelihood.raw_channels(data_shape[-1])


def build_encoder_torso(config, data_shape, kernel_init: str, dtype: str = 'float32') -> nn.Module:
  if config.kind == 'mlp':
    return networks.MLP(config.hidden_sizes, config.activation, flatten_ndims=len(data_shape),
                        kernel_init=kernel_init, dtype=dtype)
  if config.kind == 'conv':
    return networks.ConvEncoderTorso(config.conv_channels, config.hidden_sizes, config.activation,
                                     kernel_init=kernel_init, dtype=dtype)
  raise ValueError(f'Unknown encoder kind {config.kind!r}; choose one of {ENCODER_KINDS}.')


def build_encoder(config, latent_dim: int, data_shape, kernel_init: str = 'lecun_normal',
                  dtype: str = 'float32') -> nn.Module:
  """A Gaussian `q(z|x)`, or with `flow_steps` an inverse autoregressive flow on top of one."""
  torso = build_encoder_torso(config, data_shape, kernel_init, dtype)
  if config.flow_steps:
    return flows.IAFEncoder(torso, latent_dim, config.flow_steps, config.flow_hidden_size,
                            min_scale=config.min_scale, kernel_init=kernel_init)
  return encoders.GaussianEncoder(torso, latent_dim, min_scale=config.min_scale,
                                  kernel_init=kernel_init,
                                  log_variance_range=tuple(config.log_variance_range))


def build_decoder_net(config, data_shape, output_channels: int,
                      kernel_init: str = 'lecun_normal', dtype: str = 'float32') -> nn.Module:
  *spatial_shape, _ = data_shape
  output_shape = (*spatial_shape, output_channels)
  if config.kind == 'mlp':
    return networks.MLPDecoderNet(output_shape, config.hidden_sizes, config.activation,
                                  kernel_init=kernel_init, dtype=dtype)
  if config.kind == 'conv':
    return networks.ConvDecoderNet(output_shape, config.conv_channels, config.hidden_sizes,
                                   config.activation, kernel_init=kernel_init, dtype=dtype)
  raise ValueError(f'Unknown decoder kind {config.kind!r}; choose one of {DECODER_KINDS}.')


def build_likelihood(config, data_shape) -> nn.Module:
  if config.kind == 'bernoulli':
    return likelihoods.BernoulliLikelihood(event_ndims=len(data_shape))
  if config.kind == 'gaussian':
    return likelihoods.GaussianLikelihood(
        event_ndims=len(data_shape), scale=config.scale, fixed_scale=config.fixed_scale,
        min_scale=config.min_scale, mean_activation=config.mean_activation)
  if config.kind == 'discretized_logistic':
    return discretized_logistic.DiscretizedLogisticMixtureLikelihood(num_components=1)
  if config.kind == 'discretized_logistic_mixture':
    return discretized_logistic.DiscretizedLogisticMixtureLikelihood(config.num_components)
  raise ValueError(f'Unknown likelihood kind {config.kind!r}; choose one of {LIKELIHOOD_KINDS}.')


OUTPUT_BIAS_INITS = ('zeros', 'data_mean_logit')


def with_data_mean_output_bias(params, mean_image: np.ndarray):
  """`params` with the decoder's output bias set to the logit of `mean_image`, the per-pixel
  mean of the training images (`data.mean_image`), clipped to [0.001, 0.999] (Burda et al.'s code, datasets.py / iwae.py): an
  untrained model then predicts the mean image. For a Bernoulli likelihood whose decoder ends in
  the dense layer `decoder/net/output` (the MLP decoders of the vae and hierarchical families)."""
  mean = np.clip(np.asarray(mean_image, np.float64), 0.001, 0.999)
  bias = np.log(mean) - np.log1p(-mean)
  decoder_output = params['params']['decoder']['net']['output']
  if decoder_output['bias'].size != bias.size:
    raise ValueError(f'The decoder output bias has {decoder_output["bias"].size} entries, the '
                     f'images {bias.size} pixels.')
  new_output = dict(decoder_output, bias=jnp.asarray(bias.reshape(decoder_output['bias'].shape),
                                                     decoder_output['bias'].dtype))
  new_net = dict(params['params']['decoder']['net'], output=new_output)
  new_decoder = dict(params['params']['decoder'], net=new_net)
  return dict(params, params=dict(params['params'], decoder=new_decoder))


def build_prior(config, latent_dim: int, data_shape) -> nn.Module:
  if config.kind == 'standard_normal':
    return priors.StandardNormalPrior(latent_dim)
  if config.kind == 'learned_gaussian':
    return priors.LearnedGaussianPrior(latent_dim)
  if config.kind == 'mixture':
    return priors.MixtureOfGaussiansPrior(latent_dim, config.num_components)
  if config.kind == 'vamp':
    return priors.VampPrior(config.num_components, tuple(data_shape),
                            config.pseudo_input_mean, config.pseudo_input_std)
  raise ValueError(f'Unknown prior kind {config.kind!r}; choose one of {PRIOR_KINDS}.')
