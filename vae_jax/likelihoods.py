"""Likelihoods `p_θ(x|z)`: map a decoder network's raw output to a distribution over `x`.

A decoder network outputs `raw_channels(C)` raw values per pixel of C channels, stacked on the
last axis (`[..., H, W, C·P]`); the likelihood splits and transforms them. The likelihoods of
8-bit images are in `discretized_logistic.py`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data, distributions, options, registries
from vae_jax.options import SHAPES_STATE, Option

GAUSSIAN_SCALES = ('decoded', 'learned', 'fixed')
MEAN_ACTIVATIONS = {'sigmoid': nn.sigmoid, 'identity': lambda x: x}


class BernoulliLikelihood(nn.Module):
  """Binary data; the decoder outputs one logit per pixel."""

  event_ndims: int = 3

  def raw_channels(self, channels: int) -> int:
    return channels

  def __call__(self, raw: jax.Array) -> distributions.Bernoulli:
    return distributions.Bernoulli(raw, event_ndims=self.event_ndims)


class GaussianLikelihood(nn.Module):
  """Continuous data: `N(mean, scale²)` per pixel.

  scale: 'decoded' — the decoder outputs a scale per pixel, a function of z (Kingma & Welling
    2013); 'learned' — one learned scale per pixel, shared by all z; 'fixed' — `fixed_scale`.
  Learned and decoded scales are softplus(·) + min_scale: a floor keeps the density bounded
  (a Gaussian on data with few grey levels can otherwise shrink its variance without limit).
  """

  event_ndims: int = 3
  scale: str = 'decoded'
  fixed_scale: float = 1.0
  min_scale: float = 1e-3
  mean_activation: str = 'sigmoid'

  def raw_channels(self, channels: int) -> int:
    return 2 * channels if self.scale == 'decoded' else channels

  @nn.compact
  def __call__(self, raw: jax.Array) -> distributions.DiagonalGaussian:
    squash = MEAN_ACTIVATIONS[self.mean_activation]
    if self.scale == 'decoded':
      raw_mean, raw_scale = jnp.split(raw, 2, axis=-1)
      scale = nn.softplus(raw_scale) + self.min_scale
    elif self.scale == 'learned':
      raw_mean = raw
      event_shape = raw.shape[raw.ndim - self.event_ndims:]
      raw_scale = self.param('raw_scale', nn.initializers.zeros, event_shape)
      scale = nn.softplus(raw_scale) + self.min_scale
    elif self.scale == 'fixed':
      raw_mean, scale = raw, jnp.asarray(self.fixed_scale, raw.dtype)
    else:
      raise ValueError(f'Unknown Gaussian scale {self.scale!r}; choose one of {GAUSSIAN_SCALES}.')
    mean = squash(raw_mean)
    return distributions.DiagonalGaussian(mean, jnp.broadcast_to(scale, mean.shape),
                                          event_ndims=self.event_ndims)


OUTPUT_BIAS_INITS = ('zeros', 'data_mean_logit')


def _bernoulli_problems(config):
  if config.data.binarization == 'none':
    yield ('model.likelihood.kind=bernoulli needs binary data, but data.binarization=none keeps '
           'grey levels. Set data.binarization to dynamic or static, or use '
           'model.likelihood.kind=gaussian.')
  model = config.model
  families = [component for component in registries.chosen(config) if component.kind == 'family']
  if model.likelihood.output_bias_init == 'data_mean_logit' and (
      model.decoder.kind != 'mlp' or model.latent_kind != 'gaussian' or
      not all(family.extras.get('data_mean_output_bias') for family in families)):
    supported = [name for name in registries.names('family')
                 if registries.get('family', name).extras.get('data_mean_output_bias')]
    yield ('model.likelihood.output_bias_init=data_mean_logit sets the output bias of an MLP '
           f'decoder with a Bernoulli likelihood (families {" and ".join(supported)}); use zeros '
           'here.')


def _binary_data_problems(config, dataset):
  for name, values, binarised in data.checked_values(dataset, config.data.binarization):
    if binarised and not np.all((values == 0) | (values == 1)):
      yield (f'model.likelihood.kind=bernoulli needs binary data, but the {name} split of '
             f'{dataset.name} holds other values.')


@registries.register('likelihood', 'bernoulli', checks=(_bernoulli_problems,),
                     data_checks=(_binary_data_problems,), options=options.at(
    'model.likelihood', traits=(SHAPES_STATE,),
    output_bias_init=Option('zeros', "MLP decoder: 'zeros', or 'data_mean_logit': the output bias "
                            "starts at the logit of the mean training image (Burda et al.'s IWAE "
                            'code)', options.one_of(*OUTPUT_BIAS_INITS))))
def build_bernoulli(config, data_shape) -> BernoulliLikelihood:
  del config
  return BernoulliLikelihood(event_ndims=len(data_shape))


@registries.register('likelihood', 'gaussian', options=options.at(
    'model.likelihood', traits=(SHAPES_STATE,),
    scale=Option('decoded', "'decoded' (per pixel, from z) | 'learned' | 'fixed'",
                 options.one_of(*GAUSSIAN_SCALES)),
    fixed_scale=Option(1.0, "the scale when scale='fixed'", options.positive),
    min_scale=Option(1e-3, 'floor of the learned or decoded scale', options.positive),
    mean_activation=Option('sigmoid', "'sigmoid' (data in [0, 1]) | 'identity'",
                           options.one_of(*MEAN_ACTIVATIONS))))
def build_gaussian(config, data_shape) -> GaussianLikelihood:
  return GaussianLikelihood(event_ndims=len(data_shape), scale=config.scale,
                            fixed_scale=config.fixed_scale, min_scale=config.min_scale,
                            mean_activation=config.mean_activation)
