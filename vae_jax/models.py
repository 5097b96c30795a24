"""The VAE: an encoder, a decoder and a prior, built from a config.

Objectives (`vae_jax.objectives`) call the three parts through `model.apply(params, ...,
method=...)`, so each is a pure function of the parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from vae_jax import encoders, likelihoods, networks, priors


class VAE(nn.Module):
  """`q_φ(z|x)` (encoder), `p_θ(x|z)` (decoder) and `p(z)` (prior)."""

  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    posterior = self.encoder(x)
    return posterior, self.decoder(posterior.mean), self.prior()

  def encode(self, x: jax.Array):
    """`q(z|x)` for x `[..., *data_shape]`; a distribution with batch shape `[...]`."""
    return self.encoder(x)

  def decode(self, z: jax.Array):
    """`p(x|z)` for z `[..., latent_dim]`; a distribution over `[..., *data_shape]`."""
    return self.decoder(z)

  def prior_distribution(self):
    """`p(z)`, a distribution over `[latent_dim]`."""
    return self.prior()


class Decoder(nn.Module):
  """`p(x|z)`: a decoder network followed by a likelihood."""

  net: nn.Module
  likelihood: nn.Module

  def __call__(self, z: jax.Array):
    return self.likelihood(self.net(z))


ENCODER_KINDS = ('mlp', 'conv')
DECODER_KINDS = ('mlp', 'conv')
PRIOR_KINDS = ('standard_normal', 'learned_gaussian')
LIKELIHOOD_KINDS = ('bernoulli', 'gaussian')


def build_vae(model_config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> VAE:
  """Builds the VAE that `model_config` describes for data of shape `data_shape` (e.g. (28, 28, 1))."""
  likelihood = build_likelihood(model_config.likelihood, data_shape)
  return VAE(
      encoder=build_encoder(model_config.encoder, model_config.latent_dim, data_shape),
      decoder=Decoder(build_decoder_net(model_config.decoder, data_shape,
                                        likelihood.params_per_channel), likelihood),
      prior=build_prior(model_config.prior, model_config.latent_dim),
  )


def build_encoder(config, latent_dim: int, data_shape) -> encoders.GaussianEncoder:
  if config.kind == 'mlp':
    torso = networks.MLP(config.hidden_sizes, config.activation, flatten_ndims=len(data_shape))
  elif config.kind == 'conv':
    torso = networks.ConvEncoderTorso(config.conv_channels, config.hidden_sizes, config.activation)
  else:
    raise ValueError(f'Unknown encoder kind {config.kind!r}; choose one of {ENCODER_KINDS}.')
  return encoders.GaussianEncoder(torso, latent_dim, min_scale=config.min_scale)


def build_decoder_net(config, data_shape, params_per_channel: int) -> nn.Module:
  *spatial_shape, channels = data_shape
  output_shape = (*spatial_shape, channels * params_per_channel)
  if config.kind == 'mlp':
    return networks.MLPDecoderNet(output_shape, config.hidden_sizes, config.activation)
  if config.kind == 'conv':
    return networks.ConvDecoderNet(output_shape, config.conv_channels, config.hidden_sizes,
                                   config.activation)
  raise ValueError(f'Unknown decoder kind {config.kind!r}; choose one of {DECODER_KINDS}.')


def build_likelihood(config, data_shape) -> nn.Module:
  if config.kind == 'bernoulli':
    return likelihoods.BernoulliLikelihood(event_ndims=len(data_shape))
  if config.kind == 'gaussian':
    return likelihoods.GaussianLikelihood(
        event_ndims=len(data_shape), scale=config.scale, fixed_scale=config.fixed_scale,
        min_scale=config.min_scale, mean_activation=config.mean_activation)
  raise ValueError(f'Unknown likelihood kind {config.kind!r}; choose one of {LIKELIHOOD_KINDS}.')


def build_prior(config, latent_dim: int) -> nn.Module:
  if config.kind == 'standard_normal':
    return priors.StandardNormalPrior(latent_dim)
  if config.kind == 'learned_gaussian':
    return priors.LearnedGaussianPrior(latent_dim)
  raise ValueError(f'Unknown prior kind {config.kind!r}; choose one of {PRIOR_KINDS}.')

