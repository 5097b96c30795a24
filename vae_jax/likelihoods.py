"""Likelihoods `p_θ(x|z)`: map a decoder network's raw output to a distribution over `x`.

A decoder network outputs `raw_channels(C)` raw values per pixel of C channels, stacked on the
last axis (`[..., H, W, C·P]`); the likelihood splits and transforms them. The likelihoods of
8-bit images are in `discretized_logistic.py`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions

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
