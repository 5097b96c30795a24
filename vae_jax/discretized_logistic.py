"""Likelihoods for 8-bit images: the discretised mixture of logistics (Salimans et al. 2017,
PixelCNN++; the output layer of VDVAE and NVAE) and the plain discretised logistic (one
component).

Pixels arrive as `k / 255` (k = 0 … 255) and are rescaled to `x = 2k/255 − 1` in [−1, 1]. The
probability of a value is the logistic's mass on its bin `[x − 1/255, x + 1/255]`; the edge bins
take the tails, `(−∞, −1 + 1/255]` for k = 0 and `[1 − 1/255, ∞)` for k = 255, so the 256
probabilities of a pixel sum to 1 exactly. For colour images the mixture is autoregressive over
the channels, as in PixelCNN++: within a component, the green mean is `μ_g + α·x_r` and the blue
mean `μ_b + β·x_r + γ·x_g`, so the channels of a pixel are correlated.

`num_bits` b < 8 models the top b bits of each value (VDVAE's FFHQ-256: 5): `j = ⌊k/2^(8−b)⌋`
on the grid `x = 2j/(2^b − 1) − 1`, bins of half-width `1/(2^b − 1)` (VDVAE's, 1/31), the edge
bins taking the tails; the encoder still sees the 8-bit image. (VDVAE's own 5-bit targets sit
at `16j/255 − 1`, its top value at 0.945 rather than 1: its 32 bins overlap slightly and its
top bin does not take the upper tail.)

`small_bins='midpoint_density'` is PixelCNN++'s and VDVAE's convention (vae_helpers.py
`discretized_mix_logistic_loss`): an inner bin whose probability is at most 1e-5 scores the
logistic's density at the bin's value times the bin's width, `log pdf(x) − log((2^b − 1)/2)`
(`− log 127.5` for 8 bits, `− log 15.5` for 5), instead of the bin's probability. The two
differ where a logistic is much narrower than a bin and the value is far from its mean (a sharp
model's unlikely subpixels), by about `log(sinh(a)/a)` per subpixel, `a` the bin's half-width
over the scale (2.1 nats at the floor, log-scale −7): the midpoint density times the width is
the smaller (the tail is convex over the bin), so VDVAE's log-likelihood is the lower, and the
2^b values of a pixel sum to less than 1. The default, 'exact', keeps the bin probability.
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
SMALL_BINS = ('exact', 'midpoint_density')
SMALL_BIN_PROBABILITY = 1e-5  # PixelCNN++/VDVAE: below it, 'midpoint_density' takes over


def _log_bin_mass(centered: jax.Array, upper: jax.Array, lower: jax.Array,
                  log_cdf_upper: jax.Array, log_survival_lower: jax.Array) -> jax.Array:
  """`log(σ(b⁺) − σ(b⁻))` for a bin inside (−1, 1), given `b⁺ = upper`, `b⁻ = lower` and
  `log σ(b⁺)`, `log σ(−b⁻)`, without cancellation: on the right of the mean the difference is
  taken as `σ(−b⁻) − σ(−b⁺)`, whose terms are small, and `log(σ(u) − σ(v)) = log σ(u) +
  log(−expm1(log σ(v) − log σ(u)))`. `log σ(u)` is one of the two given (the edge bins' own
  log-probabilities), not computed again: a third of the log-sigmoids."""
  right = centered > 0
  log_u = jnp.where(right, log_survival_lower, log_cdf_upper)
  log_v = jax.nn.log_sigmoid(jnp.where(right, -upper, lower))
  return log_u + jnp.log(-jnp.expm1(jnp.minimum(log_v - log_u, -1e-30)))


def logistic_bin_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array, *,
                          num_bits: int = 8, small_bins: str = 'exact') -> jax.Array:
  """Log-probability of the `num_bits` value `x` (in [−1, 1]) under the discretised logistic;
  `small_bins`: see the module docstring."""
  half_width = 1.0 / (2**num_bits - 1)
  centered = x - mean
  inverse_scale = jnp.exp(-log_scale)
  upper = inverse_scale * (centered + half_width)
  lower = inverse_scale * (centered - half_width)
  lowest = jax.nn.log_sigmoid(upper)  # k = 0: CDF
  highest = jax.nn.log_sigmoid(-lower)  # k = 255: 1 − CDF
  inside = _log_bin_mass(centered, upper, lower, lowest, highest)
  if small_bins == 'midpoint_density':
    middle = inverse_scale * centered
    log_density_times_width = (middle - log_scale - 2.0 * jax.nn.softplus(middle)
                               + np.log(2 * half_width))
    inside = jnp.where(inside > np.log(SMALL_BIN_PROBABILITY), inside, log_density_times_width)
  elif small_bins != 'exact':
    raise ValueError(f'Unknown small_bins {small_bins!r}; choose one of {SMALL_BINS}.')
  return jnp.where(x < -1 + half_width, lowest, jnp.where(x > 1 - half_width, highest, inside))


@struct.dataclass
class DiscretizedLogisticMixture:
  """A mixture of `M` discretised logistics per pixel over images `[..., H, W, C]` in [0, 1].

  logit_weights `[..., H, W, M]`; means, log_scales `[..., H, W, C, M]`; coefficients
  `[..., H, W, 3, M]` (colour: α, β, γ above; unused for one channel). `num_bits`,
  `small_bins`: see the module docstring.
  """

  logit_weights: jax.Array
  means: jax.Array
  log_scales: jax.Array
  coefficients: jax.Array
  num_bits: int = struct.field(pytree_node=False, default=8)
  small_bins: str = struct.field(pytree_node=False, default='exact')

  def _levels(self) -> int:
    return 2**self.num_bits - 1

  def _rescaled(self, images: jax.Array) -> jax.Array:
    """8-bit images `k / 255` as the likelihood's values `x` in [−1, 1] (see the module
    docstring: the top `num_bits` bits of k)."""
    if self.num_bits == 8:
      return 2.0 * images - 1.0
    top_bits = jnp.floor(jnp.round(images * 255.0) / 2**(8 - self.num_bits))
    return 2.0 * top_bits / self._levels() - 1.0

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
    x = self._rescaled(images)
    per_channel = logistic_bin_log_prob(x[..., None], self._channel_means(x), self.log_scales,
                                        num_bits=self.num_bits, small_bins=self.small_bins)
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
    """Samples `k / (2^num_bits − 1)` (8 bits: `k / 255`) of the images' shape: a component
    per pixel, then a logistic draw per channel (in order, for colour), rounded to its bin."""
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
    k = jnp.round((jnp.clip(x, -1, 1) + 1) * self._levels() / 2)
    return k / self._levels()


class DiscretizedLogisticMixtureLikelihood(nn.Module):
  """`num_components` discretised logistics per pixel (1: the plain discretised logistic). The
  decoder outputs `raw_channels(C)` values per pixel."""

  num_components: int = 10
  num_bits: int = 8
  small_bins: str = 'exact'

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
    return DiscretizedLogisticMixture(logit_weights, means, log_scales, coefficients,
                                      num_bits=self.num_bits, small_bins=self.small_bins)


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


# Declared by both discretised likelihoods (one config key each).
_BIN_OPTIONS = options.at(
    'model.likelihood',
    num_bits=Option(8, 'model the top num_bits bits of each 8-bit value (VDVAE FFHQ-256: 5)',
                    lambda value: None if 1 <= value <= 8 else 'must be between 1 and 8.'),
    small_bins=Option('exact', "an inner bin of probability below 1e-5 scores: 'exact' (its "
                      "probability) | 'midpoint_density' (the density at its value times its "
                      'width: PixelCNN++, VDVAE)', options.one_of(*SMALL_BINS)))


@registries.register('likelihood', 'discretized_logistic', checks=(_eight_bit_problems,),
                     data_checks=(_eight_bit_data_problems,), options=_BIN_OPTIONS)
def build_logistic(config, data_shape) -> DiscretizedLogisticMixtureLikelihood:
  del data_shape
  return DiscretizedLogisticMixtureLikelihood(num_components=1, num_bits=config.num_bits,
                                              small_bins=config.small_bins)


@registries.register('likelihood', 'discretized_logistic_mixture', checks=(_eight_bit_problems,),
                     data_checks=(_eight_bit_data_problems,),
                     options={**options.at('model.likelihood', traits=(SHAPES_STATE,),
                                           num_components=Option(
                                               10, 'logistics per pixel (VDVAE: 10)',
                                               options.at_least(1))),
                              **_BIN_OPTIONS})
def build_logistic_mixture(config, data_shape) -> DiscretizedLogisticMixtureLikelihood:
  del data_shape
  return DiscretizedLogisticMixtureLikelihood(config.num_components, num_bits=config.num_bits,
                                              small_bins=config.small_bins)
