"""Likelihoods for 8-bit images: the discretised mixture of logistics (Salimans et al. 2017,
PixelCNN++; the output layer of VDVAE and NVAE) and the plain discretised logistic (one
component).

Pixels arrive as `k / 255` (k = 0 … 255) and are rescaled to `x = 2k/255 − 1` in [−1, 1]. The
probability of a value is the logistic's mass on its bin `[x − 1/255, x + 1/255]`; the edge bins
take the tails, `(−∞, −1 + 1/255]` for k = 0 and `[1 − 1/255, ∞)` for k = 255, so the 256
probabilities of a pixel sum to 1 exactly. For colour images the mixture is autoregressive over
the channels, as in PixelCNN++: within a component, the green mean is `μ_g + α·x_r` and the blue
mean `μ_b + β·x_r + γ·x_g`, so the channels of a pixel are correlated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vae_jax import data, options, registries
from vae_jax.options import SHAPES_STATE, Option

BIN_HALF_WIDTH = 1.0 / 255.0
MIN_LOG_SCALE = -7.0  # bounds the logistic's scale below (exp(−7) ≈ 0.0009, under half a bin)


def _log_bin_mass(centered: jax.Array, log_scale: jax.Array) -> jax.Array:
  """`log(σ(b⁺) − σ(b⁻))`, `b± = (centered ± 1/255)/s`, for a bin inside (−1, 1), without
  cancellation: on the right of the mean the difference is taken as `σ(−b⁻) − σ(−b⁺)`, whose
  terms are small, and `log(σ(u) − σ(v)) = log σ(u) + log(−expm1(log σ(v) − log σ(u)))`."""
  inverse_scale = jnp.exp(-log_scale)
  upper = inverse_scale * (centered + BIN_HALF_WIDTH)
  lower = inverse_scale * (centered - BIN_HALF_WIDTH)
  right = centered > 0
  u, v = jnp.where(right, -lower, upper), jnp.where(right, -upper, lower)
  log_u, log_v = jax.nn.log_sigmoid(u), jax.nn.log_sigmoid(v)
  return log_u + jnp.log(-jnp.expm1(jnp.minimum(log_v - log_u, -1e-30)))


def logistic_bin_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array) -> jax.Array:
  """Log-probability of the 8-bit value `x` (in [−1, 1]) under the discretised logistic."""
  centered = x - mean
  inverse_scale = jnp.exp(-log_scale)
  lowest = jax.nn.log_sigmoid(inverse_scale * (centered + BIN_HALF_WIDTH))  # k = 0: CDF
  highest = jax.nn.log_sigmoid(-inverse_scale * (centered - BIN_HALF_WIDTH))  # k = 255: 1 − CDF
  inside = _log_bin_mass(centered, log_scale)
  return jnp.where(x < -1 + BIN_HALF_WIDTH, lowest, jnp.where(x > 1 - BIN_HALF_WIDTH, highest,
                                                               inside))


@struct.dataclass
class DiscretizedLogisticMixture:
  """A mixture of `M` discretised logistics per pixel over images `[..., H, W, C]` in [0, 1].

  logit_weights `[..., H, W, M]`; means, log_scales `[..., H, W, C, M]`; coefficients
  `[..., H, W, 3, M]` (colour: α, β, γ above; unused for one channel).
  """

  logit_weights: jax.Array
  means: jax.Array
  log_scales: jax.Array
  coefficients: jax.Array

  def _channel_means(self, x: jax.Array) -> jax.Array:
    """Each component's means `[..., H, W, C, M]` given the pixel `x` `[..., H, W, C]`."""
    if self.means.shape[-2] != 3:
      return self.means
    x = x[..., None]  # [..., C, 1]
    alpha, beta, gamma = (self.coefficients[..., i, :] for i in range(3))
    red = self.means[..., 0, :]
    green = self.means[..., 1, :] + alpha * x[..., 0, :]
    blue = self.means[..., 2, :] + beta * x[..., 0, :] + gamma * x[..., 1, :]
    return jnp.stack([red, green, blue], axis=-2)

  def log_prob(self, images: jax.Array) -> jax.Array:
    """`log p(x)` in nats, summed over pixels and channels: `[...]`."""
    x = 2.0 * images - 1.0
    per_channel = logistic_bin_log_prob(x[..., None], self._channel_means(x), self.log_scales)
    per_component = per_channel.sum(axis=-2) + jax.nn.log_softmax(self.logit_weights, axis=-1)
    return jax.scipy.special.logsumexp(per_component, axis=-1).sum(axis=(-2, -1))

  @property
  def mean(self) -> jax.Array:
    """The mixture's mean in [0, 1], ignoring the clipping of the tails into the edge bins."""
    weights = jax.nn.softmax(self.logit_weights, axis=-1)[..., None, :]  # [..., 1, M]
    means = self.means
    if means.shape[-2] == 3:  # within a component: E[x_g] = μ_g + α E[x_r], ...
      alpha, beta, gamma = (self.coefficients[..., i, :] for i in range(3))
      red = means[..., 0, :]
      green = means[..., 1, :] + alpha * red
      means = jnp.stack([red, green, means[..., 2, :] + beta * red + gamma * green], axis=-2)
    return (jnp.clip(jnp.sum(weights * means, axis=-1), -1.0, 1.0) + 1.0) / 2.0

  def sample(self, rng: jax.Array) -> jax.Array:
    """8-bit samples `k / 255` of the images' shape: a component per pixel, then a logistic
    draw per channel (in order, for colour), rounded to its bin."""
    component_key, logistic_key = jax.random.split(rng)
    component = jax.random.categorical(component_key, self.logit_weights)
    pick = lambda values: jnp.take_along_axis(values, component[..., None, None], -1)[..., 0]
    means, log_scales = pick(self.means), pick(self.log_scales)
    noise = jax.random.logistic(logistic_key, means.shape)
    x = means + jnp.exp(log_scales) * noise
    if means.shape[-1] == 3:
      alpha, beta, gamma = (pick(self.coefficients)[..., i] for i in range(3))
      red = jnp.clip(x[..., 0], -1, 1)
      green = jnp.clip(x[..., 1] + alpha * red, -1, 1)
      blue = jnp.clip(x[..., 2] + beta * red + gamma * green, -1, 1)
      x = jnp.stack([red, green, blue], axis=-1)
    k = jnp.round((jnp.clip(x, -1, 1) + 1) * 127.5)
    return k / 255.0


class DiscretizedLogisticMixtureLikelihood(nn.Module):
  """`num_components` discretised logistics per pixel (1: the plain discretised logistic). The
  decoder outputs `raw_channels(C)` values per pixel."""

  num_components: int = 10

  def raw_channels(self, channels: int) -> int:
    # weights, and per channel a mean and a log-scale; α, β, γ for colour
    return self.num_components * (1 + 2 * channels + (3 if channels == 3 else 0))

  def __call__(self, raw: jax.Array) -> DiscretizedLogisticMixture:
    m = self.num_components
    channels = next(c for c in (1, 3) if self.raw_channels(c) == raw.shape[-1])
    logit_weights, rest = raw[..., :m], raw[..., m:]
    shape = (*raw.shape[:-1], channels, m)
    means = rest[..., :channels * m].reshape(shape)
    log_scales = jnp.maximum(rest[..., channels * m:2 * channels * m].reshape(shape),
                             MIN_LOG_SCALE)
    coefficients = (jnp.tanh(rest[..., 2 * channels * m:].reshape((*raw.shape[:-1], 3, m)))
                    if channels == 3 else jnp.zeros((*raw.shape[:-1], 3, m), raw.dtype))
    return DiscretizedLogisticMixture(logit_weights, means, log_scales, coefficients)


def _eight_bit_problems(config):
  likelihood = config.model.likelihood
  if config.data.binarization != 'none':
    yield (f'model.likelihood.kind={likelihood.kind} models the 256 grey levels of 8-bit images, '
           f'but data.binarization={config.data.binarization} makes them binary. Set '
           'data.binarization=none, or use model.likelihood.kind=bernoulli.')


def _eight_bit_data_problems(config, dataset):
  kind = config.model.likelihood.kind
  for name, values, binarised in data.checked_values(dataset, config.data.binarization):
    if not np.allclose(values * 255, np.round(values * 255), atol=1e-3):
      yield (f'model.likelihood.kind={kind} needs 8-bit images (k / 255), but the {name} split '
             f'of {dataset.name} holds other values'
             f'{" (data.binarization is not none)" if binarised else ""}.')


@registries.register('likelihood', 'discretized_logistic', checks=(_eight_bit_problems,),
                     data_checks=(_eight_bit_data_problems,))
def build_logistic(config, data_shape) -> DiscretizedLogisticMixtureLikelihood:
  del config, data_shape
  return DiscretizedLogisticMixtureLikelihood(num_components=1)


@registries.register('likelihood', 'discretized_logistic_mixture', checks=(_eight_bit_problems,),
                     data_checks=(_eight_bit_data_problems,),
                     options=options.at('model.likelihood', traits=(SHAPES_STATE,),
                                        num_components=Option(
                                            10, 'logistics per pixel (VDVAE: 10)',
                                            options.at_least(1))))
def build_logistic_mixture(config, data_shape) -> DiscretizedLogisticMixtureLikelihood:
  del data_shape
  return DiscretizedLogisticMixtureLikelihood(config.num_components)
