"""The building blocks of the top-down family (vae_jax/models/top_down.py): VDVAE's residual
block, the bottom-up encoder, one stochastic group, and the image and channel reshapes that join
resolutions. Each choice VDVAE's code makes is a field here and an option there."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import convolutions, distributions, networks

INITS = ('lecun_normal', 'torch')
SCALE_FUNCTIONS = ('softplus', 'exp', 'unit_softplus')
OUTPUT_HEADS = ('gelu_conv', 'gain_bias_conv')
STREAM_BIASES = ('coarsest', 'per_resolution')
POSTERIOR_INPUTS = ('stream_with_prior_features', 'stream')
ENCODER_OUTPUTS = ('last_block', 'before_down_block')


def kernel_init(init: str, scale: float = 1.0):
  """A convolution's initial weights: 'lecun_normal' (Flax's default) or 'torch' (PyTorch's
  default, uniform with variance 1/(3·fan_in), which VDVAE keeps), times `scale` (0: zeros);
  from the one table of initialisers, `networks.KERNEL_INITS`."""
  return networks.get_kernel_init(init, scale)


class ResBlock(nn.Module):
  """VDVAE's block: GELU, 1×1 conv to `middle` channels, two `kernel`×`kernel` convs, 1×1 conv
  to `out`, added to the input when `residual`. `last_scale` shrinks the last conv's initial
  weights, so that a deep stack starts close to the identity."""

  middle: int
  out: int
  residual: bool = True
  last_scale: float = 1.0
  kernel: int = 3
  init_scheme: str = 'lecun_normal'
  exact_gelu: bool = False  # erf (PyTorch's default, VDVAE) instead of the tanh approximation
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = networks.COMPUTE_DTYPES[self.dtype]
    gelu = lambda h: nn.gelu(h, approximate=not self.exact_gelu)

    def conv(features, size, scale=1.0):
      return nn.Conv(features, (size, size), dtype=dtype,
                     kernel_init=kernel_init(self.init_scheme, scale),
                     conv_general_dilated=convolutions.conv_general_dilated)

    h = conv(self.middle, 1)(gelu(x))
    h = conv(self.middle, self.kernel)(gelu(h))
    h = conv(self.middle, self.kernel)(gelu(h))
    h = conv(self.out, 1, self.last_scale)(gelu(h))
    return x + h if self.residual else h


def scale_from_raw(raw: jax.Array, function: str) -> jax.Array:
  """A standard deviation from an unbounded value: 'softplus'; 'exp' (VDVAE: the value is a log
  standard deviation); 'unit_softplus' (Efficient-VDVAE: softplus with β = ln 2, so 1 at 0)."""
  if function == 'exp':
    return jnp.exp(raw)
  if function == 'unit_softplus':
    return nn.softplus(np.log(2.0) * raw) / np.log(2.0)
  return nn.softplus(raw)


def _gaussian(raw: jax.Array, function: str, min_scale: float) -> distributions.DiagonalGaussian:
  """Mean and scale (`min_scale + scale_from_raw`, in float32) from `[..., 2·C]`."""
  mean, raw_scale = jnp.split(raw.astype(jnp.float32), 2, axis=-1)
  return distributions.DiagonalGaussian(mean, min_scale + scale_from_raw(raw_scale, function),
                                        event_ndims=3)


def space_to_depth(x: jax.Array, patch: int) -> jax.Array:
  """`[B, H, W, C] -> [B, H/p, W/p, p·p·C]`: each p×p patch becomes one position."""
  if patch == 1:
    return x
  b, h, w, c = x.shape
  x = x.reshape(b, h // patch, patch, w // patch, patch, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // patch, w // patch, patch * patch * c)


def depth_to_space(x: jax.Array, patch: int) -> jax.Array:
  """The inverse of `space_to_depth`."""
  if patch == 1:
    return x
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, patch, patch, c // (patch * patch))
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * patch, w * patch, c // (patch * patch))


def fit_channels(h: jax.Array, width: int) -> jax.Array:
  """`h` with `width` channels: zero-padded when it has fewer, its first `width` when more (as
  VDVAE joins resolutions of different widths)."""
  channels = h.shape[-1]
  if channels >= width:
    return h[..., :width]
  return jnp.pad(h, [(0, 0)] * (h.ndim - 1) + [(0, width - channels)])


def pad_images(x: jax.Array, size: int) -> jax.Array:
  """Images `[B, H, W, C]` zero-padded evenly on every side to `size`×`size`."""
  margin = (size - x.shape[-3]) // 2
  if margin <= 0:
    return x
  return jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(margin, margin), (margin, margin), (0, 0)])


def crop_images(x: jax.Array, size: int) -> jax.Array:
  """The central `size`×`size` of `[..., H, W, C]`: the inverse of `pad_images`."""
  margin = (x.shape[-3] - size) // 2
  return x[..., margin:margin + size, margin:margin + size, :] if margin > 0 else x


class BottomUp(nn.Module):
  """The encoder: `{resolution: activation [B, r, r, width_r]}` for every resolution.

  With `scan`, the blocks of one resolution run as one scanned block (`blocks_r<r>`, their
  parameters stacked on a leading axis), so the program does not grow with depth; without it,
  one module per block (`block_r<r>_<index>`)."""

  widths: Sequence[int]  # per resolution
  bottleneck_ratio: float
  resolutions: Sequence[int]  # finest first
  blocks: Sequence[int]  # residual blocks at each resolution
  patch_size: int = 1  # the image is read in patches of p×p pixels
  input_mean: float = 0.5  # the pixels (in [0, 1]) enter as (x − mean) / std
  input_std: float = 0.5
  before_down_block: bool = False  # VDVAE: a resolution's activation skips its last block
  pointwise_up_to: int = 0  # 1×1 middle convs at resolutions up to this
  init_scheme: str = 'lecun_normal'
  exact_gelu: bool = False
  block: type = ResBlock
  dtype: str = 'float32'
  scan: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[int, jax.Array]:
    dtype = networks.COMPUTE_DTYPES[self.dtype]
    x = space_to_depth((x - self.input_mean) / self.input_std, self.patch_size)
    h = nn.Conv(self.widths[0], (3, 3), dtype=dtype, kernel_init=kernel_init(self.init_scheme),
                conv_general_dilated=convolutions.conv_general_dilated)(x)
    scale = 1 / np.sqrt(max(sum(self.blocks), 1))
    activations = {}
    last = len(self.resolutions) - 1
    for index, (resolution, count, width) in enumerate(zip(self.resolutions, self.blocks,
                                                           self.widths)):
      h = fit_channels(h, width)
      block = functools.partial(
          self.block, max(1, int(width * self.bottleneck_ratio)), width, last_scale=scale,
          kernel=1 if resolution <= self.pointwise_up_to else 3, init_scheme=self.init_scheme,
          exact_gelu=self.exact_gelu, dtype=self.dtype)
      if self.scan and count:
        h, before_last = scan_blocks(block(name=f'blocks_r{resolution}'), h, count)
        if self.before_down_block and index < last:
          activations[resolution] = before_last  # the down-sampling block feeds only the next
      for block_index in range(0 if self.scan else count):  # named: the same with or without remat
        if self.before_down_block and index < last and block_index == count - 1:
          activations[resolution] = h  # the down-sampling block feeds only the next resolution
        h = block(name=f'block_r{resolution}_{block_index}')(h)
      activations.setdefault(resolution, h)
      if index < last:
        factor = resolution // self.resolutions[index + 1]
        h = nn.avg_pool(h, (factor, factor), strides=(factor, factor))
    return activations


def saving_convolutions(step):
  """A scan's body (a function of a module) that keeps only its matrix products' and
  convolutions' outputs for the backward pass (`dots_saveable`) and recomputes the elementwise
  ops between them. Unrolled, XLA fuses those ops away; a scan would store each step's in
  stacked buffers: the mnist step took 1.7 times as long and twice the memory on XLA:CPU
  (2026-12). On XLA:CPU the convolutions are custom VJPs (`vae_jax/convolutions.py`), which the
  policy does not see, so they are recomputed too: saving them (named) gave 2 to 2.6 times the
  temporaries for no faster a step (docs/results/speed.md, 2026-12-05)."""
  return nn.checkpoint(step, policy=jax.checkpoint_policies.dots_saveable, prevent_cse=False)


def scan_blocks(block: nn.Module, h: jax.Array, count: int) -> tuple[jax.Array, jax.Array]:
  """`count` residual blocks of `block`'s shape in turn, as one scanned block whose parameters
  have a leading axis of `count`: the stream after the last, and as the last one read it."""

  def step(module, carry, _):
    h, _ = carry
    return (module(h), h), None

  scanned = nn.scan(saving_convolutions(step), variable_axes={'params': 0},
                    split_rngs={'params': True}, length=count)
  (h, before_last), _ = scanned(block, (h, h), None)
  return h, before_last


class StochasticGroup(nn.Module):
  """One group `z_l`: its prior and posterior heads, and the block that absorbs `z_l`."""

  width: int
  middle: int
  latent_channels: int
  min_scale: float
  last_scale: float
  scale_function: str = 'softplus'
  kernel: int = 3
  init_scheme: str = 'lecun_normal'
  exact_gelu: bool = False
  block: type = ResBlock
  dtype: str = 'float32'

  def setup(self):
    channels = self.latent_channels
    kwargs = dict(kernel=self.kernel, init_scheme=self.init_scheme, exact_gelu=self.exact_gelu,
                  dtype=self.dtype)
    self.posterior_net = self.block(self.middle, 2 * channels, residual=False, **kwargs)
    # Its last layer starts at zero: the prior starts as N(0, scale(0) + min) and the stream
    # is left unchanged, whatever the depth.
    self.prior_net = self.block(self.middle, 2 * channels + self.width, residual=False,
                                last_scale=0.0, **kwargs)
    self.z_projection = nn.Conv(self.width, (1, 1), dtype=networks.COMPUTE_DTYPES[self.dtype],
                                kernel_init=kernel_init(self.init_scheme, self.last_scale),
                                conv_general_dilated=convolutions.conv_general_dilated)
    self.residual = self.block(self.middle, self.width, last_scale=self.last_scale, **kwargs)

  def _gaussian(self, raw: jax.Array) -> distributions.DiagonalGaussian:
    return _gaussian(raw, self.scale_function, self.min_scale)

  def prior(self, h: jax.Array):
    """`p(z_l | z_<l)`, and the prior net's features that join the stream."""
    out = self.prior_net(h)
    return self._gaussian(out[..., :2 * self.latent_channels]), out[..., 2 * self.latent_channels:]

  def posterior(self, h: jax.Array, activation: jax.Array):
    """`q(z_l | z_<l, x)`, from the stream and the encoder's activation."""
    return self._gaussian(self.posterior_net(jnp.concatenate([h, activation], axis=-1)))

  def absorb(self, h: jax.Array, z: jax.Array) -> jax.Array:
    return self.residual(h + self.z_projection(z.astype(h.dtype)))


def _unpool(h: jax.Array, factor: int) -> jax.Array:
  return jnp.repeat(jnp.repeat(h, factor, axis=-3), factor, axis=-2)
