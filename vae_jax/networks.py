"""Deterministic networks: encoder torsos and decoder networks (Flax linen).

Encoder torsos map data `[..., *data_shape]` to features `[..., F]`; the encoder head
(`vae_jax.encoders`) turns those into `q(z|x)`. Decoder networks map latents `[..., D]` to raw
likelihood parameters `[..., H, W, C·P]` (P parameters per channel); the likelihood module
(`vae_jax.likelihoods`) turns those into `p(x|z)`. Any number of leading batch axes is allowed,
so the same network serves a batch `[B, ...]` and samples of a batch `[S, B, ...]`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

from vae_jax.convolutions import ConvTranspose, conv_general_dilated

ACTIVATIONS = {
    'tanh': nn.tanh,
    'relu': nn.relu,
    'elu': nn.elu,
    'gelu': nn.gelu,
    'softplus': nn.softplus,
    'swish': nn.swish,
    'leaky_relu': nn.leaky_relu,
}
# 'gated': a layer of 2n units whose halves a, g give a·sigmoid(g) (a gated linear unit, the
# GatedDense layer of Tomczak & Welling's VampPrior code).
ACTIVATION_CHOICES = (*ACTIVATIONS, 'gated')
COMPUTE_DTYPES = {'float32': jax.numpy.float32, 'bfloat16': jax.numpy.bfloat16}
MATMUL_PRECISIONS = ('default', 'high', 'highest')


def matmul_precision(name: str):
  """A context in which every matrix product and convolution traced runs at precision `name`
  ('default' leaves the backend's choice: TF32 on recent NVIDIA GPUs, bfloat16 passes on
  TPUs)."""
  if name not in MATMUL_PRECISIONS:
    raise ValueError(f'Unknown precision {name!r}; choose one of {MATMUL_PRECISIONS}.')
  return contextlib.nullcontext() if name == 'default' else jax.default_matmul_precision(name)
# Each initialiser by name, as a function of `scale`, which multiplies the weights (scale 1:
# the initialiser as named; a top-down block's last conv starts smaller, 1/sqrt(depth)).
KERNEL_INITS = {
    'lecun_normal': lambda scale: nn.initializers.variance_scaling(  # Flax's default
        scale**2, 'fan_in', 'truncated_normal'),
    'glorot_uniform': lambda scale: nn.initializers.variance_scaling(  # Burda et al. 2015
        scale**2, 'fan_avg', 'uniform'),
    # Truncated at ±2σ (rescaled to variance 2/fan_in).
    'he_normal': lambda scale: nn.initializers.variance_scaling(
        2.0 * scale**2, 'fan_in', 'truncated_normal'),
    # Tomczak & Welling's he_init (utils/nn.py): weight.normal_(0, sqrt(2 / fan_in)), no truncation.
    'he_normal_untruncated': lambda scale: nn.initializers.variance_scaling(
        2.0 * scale**2, 'fan_in', 'normal'),
    # Kingma & Welling 2013: "N(0, 0.01)".
    'normal_0.01': lambda scale: nn.initializers.normal(stddev=0.01 * scale),
    # PyTorch's default for nn.Linear and nn.Conv2d (uniform, variance 1/(3·fan_in)), which
    # VDVAE keeps.
    'torch': lambda scale: nn.initializers.variance_scaling(scale**2 / 3, 'fan_in', 'uniform'),
}


def get_kernel_init(name: str, scale: float = 1.0):
  """The initialiser `name` of `KERNEL_INITS`, its weights times `scale` (0: zeros)."""
  if name not in KERNEL_INITS:
    raise ValueError(f'Unknown kernel_init {name!r}; choose one of {sorted(KERNEL_INITS)}.')
  return nn.initializers.zeros if scale == 0 else KERNEL_INITS[name](scale)


# Biases: 'zeros' (Flax's default), or 'torch_uniform', PyTorch's default for nn.Linear,
# uniform(±1/√fan_in), which the VampPrior code keeps (its he_init resets only the weights).
BIAS_INITS = ('zeros', 'torch_uniform')
# A gated layer's values and gates: 'joint', one layer of 2n units split in halves; 'separate',
# two layers of n named `<name>_h` and `<name>_g` (the VampPrior code's GatedDense has two
# nn.Linear, so its AdamNormGrad normalises their gradients as separate tensors).
GATE_KERNELS = ('joint', 'separate')


def get_bias_init(name: str, fan_in: int):
  """The bias initialiser `name` of a layer with `fan_in` inputs."""
  if name == 'zeros':
    return nn.initializers.zeros
  if name == 'torch_uniform':
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jax.numpy.float32: jax.random.uniform(
        key, shape, dtype, -bound, bound)
  raise ValueError(f'Unknown bias_init {name!r}; choose one of {BIAS_INITS}.')


def activated_layer(layer: Callable[..., nn.Module], features: int, activation: str,
                    x: jax.Array, gate_kernels: str = 'joint') -> jax.Array:
  """`activation(layer(features)(x))`, or for 'gated' `a·sigmoid(g)`: with `gate_kernels`
  'joint' `[a, g] = layer(2·features)(x)`, with 'separate' `a = layer(features, '_h')(x)` and
  `g = layer(features, '_g')(x)` (`layer(n, suffix)` names its module with the suffix)."""
  if activation == 'gated':
    if gate_kernels == 'separate':
      return layer(features, '_h')(x) * nn.sigmoid(layer(features, '_g')(x))
    if gate_kernels != 'joint':
      raise ValueError(f'Unknown gate_kernels {gate_kernels!r}; choose one of {GATE_KERNELS}.')
    values, gates = jax.numpy.split(layer(2 * features)(x), 2, axis=-1)
    return values * nn.sigmoid(gates)
  if activation not in ACTIVATIONS:
    raise ValueError(f'Unknown activation {activation!r}; choose one of {list(ACTIVATION_CHOICES)}.')
  return ACTIVATIONS[activation](layer(features)(x))


class MLP(nn.Module):
  """Dense layers, each followed by the activation. `[..., *event] -> [..., hidden_sizes[-1]]`."""

  hidden_sizes: Sequence[int]
  activation: str = 'tanh'
  flatten_ndims: int = 1  # trailing input axes that form one example (3 for an image)
  kernel_init: str = 'lecun_normal'
  dtype: str = 'float32'  # computation dtype; parameters stay float32
  bias_init: str = 'zeros'
  gate_kernels: str = 'joint'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[:x.ndim - self.flatten_ndims] + (-1,))
    for i, size in enumerate(self.hidden_sizes):
      dense = lambda n, suffix='', i=i, fan_in=x.shape[-1]: nn.Dense(
          n, kernel_init=get_kernel_init(self.kernel_init),
          bias_init=get_bias_init(self.bias_init, fan_in), dtype=COMPUTE_DTYPES[self.dtype],
          name=f'dense_{i}{suffix}')
      x = activated_layer(dense, size, self.activation, x, self.gate_kernels)
    return x


class ConvEncoderTorso(nn.Module):
  """Strided 3×3 convolutions (each halves H and W), then dense layers. `[..., H, W, C] -> [..., F]`."""

  channels: Sequence[int] = (32, 64)
  hidden_sizes: Sequence[int] = ()
  activation: str = 'relu'
  kernel_init: str = 'lecun_normal'
  dtype: str = 'float32'
  gate_kernels: str = 'joint'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, channels in enumerate(self.channels):
      conv = lambda n, suffix='', i=i: nn.Conv(n, (3, 3), strides=(2, 2),
                                               kernel_init=get_kernel_init(self.kernel_init),
                                               dtype=COMPUTE_DTYPES[self.dtype],
                                               conv_general_dilated=conv_general_dilated,
                                               name=f'conv_{i}{suffix}')
      x = activated_layer(conv, channels, self.activation, x, self.gate_kernels)
    return MLP(self.hidden_sizes, self.activation, flatten_ndims=3, kernel_init=self.kernel_init,
               dtype=self.dtype, gate_kernels=self.gate_kernels, name='mlp')(x)


class MLPDecoderNet(nn.Module):
  """Dense layers, then a linear map to the raw likelihood parameters. `[..., D] -> [..., *output_shape]`."""

  output_shape: tuple[int, ...]
  hidden_sizes: Sequence[int]
  activation: str = 'tanh'
  kernel_init: str = 'lecun_normal'
  dtype: str = 'float32'
  bias_init: str = 'zeros'
  gate_kernels: str = 'joint'

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = MLP(self.hidden_sizes, self.activation, kernel_init=self.kernel_init, dtype=self.dtype,
            bias_init=self.bias_init, gate_kernels=self.gate_kernels, name='mlp')(z)
    raw = nn.Dense(math.prod(self.output_shape), kernel_init=get_kernel_init(self.kernel_init),
                   bias_init=get_bias_init(self.bias_init, h.shape[-1]),
                   dtype=COMPUTE_DTYPES[self.dtype], name='output')(h)
    # Likelihoods are evaluated in float32 whatever the computation dtype.
    return raw.reshape(raw.shape[:-1] + tuple(self.output_shape)).astype(jax.numpy.float32)


class ConvDecoderNet(nn.Module):
  """Dense layers to a coarse feature map, transposed convolutions that each double H and W,
  and a 3×3 convolution to the raw likelihood parameters (both with `vae_jax.convolutions`'
  gradients on XLA:CPU). `[..., D] -> [..., H, W, C·P]`.

  `channels` runs from coarse to fine; H and W must be divisible by `2 ** len(channels)`.
  """

  output_shape: tuple[int, int, int]
  channels: Sequence[int] = (64, 32)
  hidden_sizes: Sequence[int] = ()
  activation: str = 'relu'
  kernel_init: str = 'lecun_normal'
  dtype: str = 'float32'
  gate_kernels: str = 'joint'

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    init, dtype = get_kernel_init(self.kernel_init), COMPUTE_DTYPES[self.dtype]
    height, width, out_channels = self.output_shape
    factor = 2 ** len(self.channels)
    coarse_shape = (height // factor, width // factor, self.channels[0])
    h = MLP(self.hidden_sizes, self.activation, kernel_init=self.kernel_init, dtype=self.dtype,
            gate_kernels=self.gate_kernels, name='mlp')(z)
    to_map = lambda n, suffix='': nn.Dense(n, kernel_init=init, dtype=dtype,
                                           name=f'to_feature_map{suffix}')
    h = activated_layer(to_map, math.prod(coarse_shape), self.activation, h, self.gate_kernels)
    h = h.reshape(h.shape[:-1] + coarse_shape)
    for i, channels in enumerate(self.channels):
      deconv = lambda n, suffix='', i=i: ConvTranspose(n, (3, 3), strides=(2, 2),
                                                       kernel_init=init, dtype=dtype,
                                                       name=f'deconv_{i}{suffix}')
      h = activated_layer(deconv, channels, self.activation, h, self.gate_kernels)
    raw = nn.Conv(out_channels, (3, 3), kernel_init=init, dtype=dtype,
                  conv_general_dilated=conv_general_dilated, name='output')(h)
    return raw.astype(jax.numpy.float32)  # likelihoods are evaluated in float32
