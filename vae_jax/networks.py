"""Deterministic networks: encoder torsos and decoder networks (Flax linen).

Encoder torsos map data `[..., *data_shape]` to features `[..., F]`; the encoder head
(`vae_jax.encoders`) turns those into `q(z|x)`. Decoder networks map latents `[..., D]` to raw
likelihood parameters `[..., H, W, C·P]` (P parameters per channel); the likelihood module
(`vae_jax.likelihoods`) turns those into `p(x|z)`. Any number of leading batch axes is allowed,
so the same network serves a batch `[B, ...]` and samples of a batch `[S, B, ...]`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

ACTIVATIONS = {
    'tanh': nn.tanh,
    'relu': nn.relu,
    'elu': nn.elu,
    'gelu': nn.gelu,
    'softplus': nn.softplus,
    'swish': nn.swish,
    'leaky_relu': nn.leaky_relu,
}


def get_activation(name: str):
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f'Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.') from None


class MLP(nn.Module):
  """Dense layers, each followed by the activation. `[..., *event] -> [..., hidden_sizes[-1]]`."""

  hidden_sizes: Sequence[int]
  activation: str = 'tanh'
  flatten_ndims: int = 1  # trailing input axes that form one example (3 for an image)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[:x.ndim - self.flatten_ndims] + (-1,))
    activation = get_activation(self.activation)
    for i, size in enumerate(self.hidden_sizes):
      x = activation(nn.Dense(size, name=f'dense_{i}')(x))
    return x


class ConvEncoderTorso(nn.Module):
  """Strided 3×3 convolutions (each halves H and W), then dense layers. `[..., H, W, C] -> [..., F]`."""

  channels: Sequence[int] = (32, 64)
  hidden_sizes: Sequence[int] = ()
  activation: str = 'relu'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    activation = get_activation(self.activation)
    for i, channels in enumerate(self.channels):
      x = activation(nn.Conv(channels, (3, 3), strides=(2, 2), name=f'conv_{i}')(x))
    return MLP(self.hidden_sizes, self.activation, flatten_ndims=3, name='mlp')(x)


class MLPDecoderNet(nn.Module):
  """Dense layers, then a linear map to the raw likelihood parameters. `[..., D] -> [..., *output_shape]`."""

  output_shape: tuple[int, ...]
  hidden_sizes: Sequence[int]
  activation: str = 'tanh'

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = MLP(self.hidden_sizes, self.activation, name='mlp')(z)
    raw = nn.Dense(math.prod(self.output_shape), name='output')(h)
    return raw.reshape(raw.shape[:-1] + tuple(self.output_shape))


class ConvDecoderNet(nn.Module):
  """Dense layers to a coarse feature map, transposed convolutions that each double H and W,
  and a 3×3 convolution to the raw likelihood parameters. `[..., D] -> [..., H, W, C·P]`.

  `channels` runs from coarse to fine; H and W must be divisible by `2 ** len(channels)`.
  """

  output_shape: tuple[int, int, int]
  channels: Sequence[int] = (64, 32)
  hidden_sizes: Sequence[int] = ()
  activation: str = 'relu'

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    activation = get_activation(self.activation)
    height, width, out_channels = self.output_shape
    factor = 2 ** len(self.channels)
    coarse_shape = (height // factor, width // factor, self.channels[0])
    h = MLP(self.hidden_sizes, self.activation, name='mlp')(z)
    h = activation(nn.Dense(math.prod(coarse_shape), name='to_feature_map')(h))
    h = h.reshape(h.shape[:-1] + coarse_shape)
    for i, channels in enumerate(self.channels):
      h = activation(nn.ConvTranspose(channels, (3, 3), strides=(2, 2), name=f'deconv_{i}')(h))
    return nn.Conv(out_channels, (3, 3), name='output')(h)
