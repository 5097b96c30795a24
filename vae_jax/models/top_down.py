"""A deep top-down hierarchical VAE for images: the ladder-VAE / NVAE / VDVAE family.

A bottom-up ResNet encoder keeps its activations at every resolution. A top-down decoder of
residual blocks starts from a learned tensor at the coarsest resolution; each stochastic group
`l` computes, from the residual stream `h` (a function of `z_<l`), a prior `p(z_l | z_<l)` and,
with the encoder's activation at that resolution, a posterior `q(z_l | z_<l, x)` (diagonal
Gaussians over `[r, r, latent_channels]`); the sample of `z_l` (from q when inferring, from p
when generating) is projected and added back into the stream. Resolutions are joined by average
pooling going up and nearest-neighbour unpooling coming down (Child 2021, "Very deep VAEs").

The ELBO's KL is the sum of the groups' closed-form `KL(q(z_l|·) ‖ p(z_l|·))` at the sampled
`z_<l`, each an unbiased estimate of its group's expected KL; each is also a named term
(`kl/<group>`), logged in training and evaluation. Importance sampling uses the full posterior
`q(z|x) = Π_l q(z_l|z_<l, x)` as its proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions, networks, options
from vae_jax.options import SHAPES_STATE, Option
from vae_jax.models import components, families


class ResBlock(nn.Module):
  """VDVAE's block: GELU, 1×1 conv to `middle` channels, two 3×3 convs, 1×1 conv to `out`,
  added to the input when `residual`. `last_scale` shrinks the last conv's initial weights, so
  that a deep stack starts close to the identity."""

  middle: int
  out: int
  residual: bool = True
  last_scale: float = 1.0
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = networks.COMPUTE_DTYPES[self.dtype]
    conv = lambda features, size, **kwargs: nn.Conv(features, (size, size), dtype=dtype,
                                                    **kwargs)
    h = conv(self.middle, 1)(nn.gelu(x))
    h = conv(self.middle, 3)(nn.gelu(h))
    h = conv(self.middle, 3)(nn.gelu(h))
    last_init = nn.initializers.variance_scaling(self.last_scale**2, 'fan_in', 'truncated_normal')
    h = conv(self.out, 1, kernel_init=last_init)(nn.gelu(h))
    return x + h if self.residual else h


def _gaussian(raw: jax.Array, min_scale: float) -> distributions.DiagonalGaussian:
  """Mean and a bounded scale (`min_scale + softplus`, in float32) from `[..., 2·C]`."""
  mean, raw_scale = jnp.split(raw.astype(jnp.float32), 2, axis=-1)
  return distributions.DiagonalGaussian(mean, min_scale + nn.softplus(raw_scale), event_ndims=3)


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


class BottomUp(nn.Module):
  """The encoder: `{resolution: activation [B, r, r, width]}` for every resolution."""

  width: int
  middle: int
  resolutions: Sequence[int]  # finest first
  blocks: Sequence[int]  # residual blocks at each resolution
  patch_size: int = 1  # the image is read in patches of p×p pixels
  block: type = ResBlock
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[int, jax.Array]:
    dtype = networks.COMPUTE_DTYPES[self.dtype]
    x = space_to_depth(2.0 * x - 1.0, self.patch_size)  # pixels centred on 0
    h = nn.Conv(self.width, (3, 3), dtype=dtype)(x)
    scale = 1 / np.sqrt(max(sum(self.blocks), 1))
    activations = {}
    for index, (resolution, count) in enumerate(zip(self.resolutions, self.blocks)):
      for block_index in range(count):  # named: the same parameters with or without remat
        h = self.block(self.middle, self.width, last_scale=scale, dtype=self.dtype,
                       name=f'block_r{resolution}_{block_index}')(h)
      activations[resolution] = h
      if index + 1 < len(self.resolutions):
        factor = resolution // self.resolutions[index + 1]
        h = nn.avg_pool(h, (factor, factor), strides=(factor, factor))
    return activations


class StochasticGroup(nn.Module):
  """One group `z_l`: its prior and posterior heads, and the block that absorbs `z_l`."""

  width: int
  middle: int
  latent_channels: int
  min_scale: float
  last_scale: float
  block: type = ResBlock
  dtype: str = 'float32'

  def setup(self):
    channels = self.latent_channels
    self.posterior_net = self.block(self.middle, 2 * channels, residual=False, dtype=self.dtype)
    # Its last layer starts at zero: the prior starts as N(0, softplus(0) + min) and the
    # stream is left unchanged, whatever the depth.
    self.prior_net = self.block(self.middle, 2 * channels + self.width, residual=False,
                                last_scale=1e-10, dtype=self.dtype)
    self.z_projection = nn.Conv(self.width, (1, 1), dtype=networks.COMPUTE_DTYPES[self.dtype],
                                kernel_init=nn.initializers.variance_scaling(
                                    self.last_scale**2, 'fan_in', 'truncated_normal'))
    self.residual = self.block(self.middle, self.width, last_scale=self.last_scale,
                               dtype=self.dtype)

  def prior(self, h: jax.Array):
    """`p(z_l | z_<l)` and the stream with the prior net's features added."""
    out = self.prior_net(h)
    raw, features = out[..., :2 * self.latent_channels], out[..., 2 * self.latent_channels:]
    return _gaussian(raw, self.min_scale), h + features

  def posterior(self, h: jax.Array, activation: jax.Array):
    """`q(z_l | z_<l, x)`, from the stream and the encoder's activation."""
    return _gaussian(self.posterior_net(jnp.concatenate([h, activation], axis=-1)),
                     self.min_scale)

  def absorb(self, h: jax.Array, z: jax.Array) -> jax.Array:
    return self.residual(h + self.z_projection(z.astype(h.dtype)))


def _unpool(h: jax.Array, factor: int) -> jax.Array:
  return jnp.repeat(jnp.repeat(h, factor, axis=-3), factor, axis=-2)


class TopDownVAE(nn.Module):
  """Stochastic groups at `group_resolutions` (coarse to fine) between a bottom-up encoder and
  an output head at the data resolution (see the module docstring)."""

  encoder: BottomUp
  groups: Sequence[StochasticGroup]
  group_resolutions: Sequence[int]  # coarsest first, non-decreasing
  data_resolution: int  # of the patch grid: the image size / patch_size
  output_channels: int  # raw values the likelihood reads, per pixel
  likelihood: nn.Module
  width: int
  patch_size: int = 1

  def setup(self):
    start = self.group_resolutions[0]
    self.initial_stream = self.param('initial_stream', nn.initializers.zeros,
                                     (start, start, self.width))
    self.output_head = nn.Conv(self.output_channels * self.patch_size**2, (1, 1))

  @property
  def group_names(self) -> tuple[str, ...]:
    """`g<index>_r<resolution>`, coarse to fine."""
    return tuple(f'g{index:02d}_r{resolution}'
                 for index, resolution in enumerate(self.group_resolutions))

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    return self.sample_log_weight_terms(x, jax.random.key(0)), self.generate(jax.random.key(0), 1)

  def _top_down(self, batch_size: int, choose_z, activations=None):
    """Runs the decoder. `choose_z(index, prior, posterior)` returns group `index`'s z (the
    posterior is None without `activations`). Returns the likelihood and each group's
    `(z, prior, posterior)`."""
    h = jnp.broadcast_to(self.initial_stream, (batch_size, *self.initial_stream.shape))
    resolution, chosen = self.group_resolutions[0], []
    for index, (group, group_resolution) in enumerate(zip(self.groups, self.group_resolutions)):
      if group_resolution != resolution:
        h, resolution = _unpool(h, group_resolution // resolution), group_resolution
      prior, h = group.prior(h)
      posterior = None if activations is None else group.posterior(h, activations[resolution])
      z = choose_z(index, prior, posterior)
      chosen.append((z, prior, posterior))
      h = group.absorb(h, z)
    if resolution != self.data_resolution:
      h = _unpool(h, self.data_resolution // resolution)
    raw = depth_to_space(self.output_head(nn.gelu(h)).astype(jnp.float32), self.patch_size)
    return self.likelihood(raw), chosen

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(self.groups))
    likelihood, chosen = self._top_down(
        x.shape[0], lambda index, prior, posterior: posterior.sample(keys[index]),
        self.encoder(x))
    terms = {'reconstruction': likelihood.log_prob(x), 'log_prior': 0.0, 'log_posterior': 0.0,
             'analytic_kl': 0.0}
    for name, (z, prior, posterior) in zip(self.group_names, chosen):
      kl = distributions.kl_divergence(posterior, prior)
      terms['log_prior'] += prior.log_prob(z)
      terms['log_posterior'] += posterior.log_prob(z)
      terms['analytic_kl'] += kl
      terms[f'kl/{name}'] = kl
    return terms

  def encode_context(self, x: jax.Array) -> dict[int, jax.Array]:
    return self.encoder(x)

  def draw_latents(self, key: jax.Array, context, num: int, from_prior: bool) -> tuple:
    keys = jax.random.split(key, len(self.groups))

    def draw(index, prior, posterior):
      return (prior if from_prior else posterior).sample(keys[index])

    _, chosen = self._top_down(num, draw, None if from_prior else context)
    return tuple(z for z, _, _ in chosen)

  def latent_log_densities(self, x: jax.Array, groups, context) -> dict[str, jax.Array]:
    likelihood, chosen = self._top_down(x.shape[0], lambda index, prior, posterior: groups[index],
                                        context)
    return {'reconstruction': likelihood.log_prob(x),
            'log_prior': sum(prior.log_prob(z) for z, prior, _ in chosen),
            'log_posterior': sum(posterior.log_prob(z) for z, _, posterior in chosen)}

  def simulate(self, key: jax.Array, num: int) -> tuple[jax.Array, tuple]:
    keys = jax.random.split(key, len(self.groups) + 1)
    likelihood, chosen = self._top_down(
        num, lambda index, prior, posterior: prior.sample(keys[index]))
    return likelihood.sample(keys[-1]), tuple(z for z, _, _ in chosen)

  def analytic_kl(self, x: jax.Array) -> None:
    del x  # each group's KL is closed-form only given the z above it
    return None

  def kl_per_dimension(self, x: jax.Array) -> None:
    del x
    return None

  def _posterior_mean_path(self, x: jax.Array):
    return self._top_down(x.shape[0], lambda index, prior, posterior: posterior.mean,
                          self.encoder(x))

  def posterior_means(self, x: jax.Array) -> dict[str, jax.Array]:
    """Each group's posterior mean `[B, r·r·C]` with every group above it at its posterior
    mean (a plug-in approximation of `E_q[z_l|x]`); each latent value is one unit."""
    _, chosen = self._posterior_mean_path(x)
    return {name: z.reshape(z.shape[0], -1) for name, (z, _, _) in zip(self.group_names, chosen)}

  def reconstruct(self, x: jax.Array) -> jax.Array:
    return self._posterior_mean_path(x)[0].mean

  def generate(self, key: jax.Array, num_samples: int, temperature: float = 1.0) -> jax.Array:
    """Mean of `p(x|z)` for `z ~ p(z)` with every prior's scale multiplied by `temperature`
    (below 1: smoother, more typical samples, as in VDVAE and NVAE)."""
    keys = jax.random.split(key, len(self.groups))

    def sample_prior(index, prior, posterior):
      del posterior
      return prior.mean + temperature * prior.scale * jax.random.normal(keys[index],
                                                                        prior.mean.shape)

    return self._top_down(num_samples, sample_prior)[0].mean


@families.register_check('top_down')
def config_problems(model_config, data_shape) -> list[str]:
  """The layout must fit the images: one count per resolution, each resolution dividing the
  one before, the first the image size over the patch size."""
  config, problems = model_config.top_down, []
  resolutions = tuple(config.resolutions)
  for key in ('encoder_blocks', 'decoder_groups'):
    if len(config[key]) != len(resolutions) or min(config[key], default=0) < 0:
      problems.append(f'model.top_down.{key}={tuple(config[key])} needs one count (>= 0) per '
                      f'resolution of {resolutions}.')
  if not sum(config.decoder_groups):
    problems.append('model.top_down.decoder_groups holds no group: the model needs a latent.')
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    problems.append(f'model.family=top_down needs square images (H, W, C); the data is '
                    f'{data_shape}.')
  elif not resolutions or resolutions[0] * config.patch_size != data_shape[0]:
    problems.append(f'model.top_down.resolutions={resolutions} must start at the image size '
                    f'{data_shape[0]} over patch_size={config.patch_size}.')
  if any(finer % coarser for finer, coarser in zip(resolutions, resolutions[1:])):
    problems.append(f'model.top_down.resolutions={resolutions}: each must divide the one before.')
  for key in ('width', 'latent_channels', 'patch_size'):
    if config[key] < 1:
      problems.append(f'model.top_down.{key}={config[key]} must be at least 1.')
  return problems


OPTIONS = options.at(
    'model.top_down', traits=(SHAPES_STATE,),
    resolutions=Option((28, 14, 7), 'the resolutions of the hierarchy, finest first: the first '
                       'is the image size over patch_size, each next one divides the one before'),
    encoder_blocks=Option((2, 2, 2), 'residual blocks per resolution in the encoder'),
    decoder_groups=Option((2, 2, 2), 'stochastic groups per resolution in the decoder'),
    width=Option(32, 'channels of the residual streams'),
    bottleneck_ratio=Option(0.25, "a residual block's middle channels: width × this",
                            options.positive),
    latent_channels=Option(4, "channels of each group's z, per position"),
    min_scale=Option(1e-3, 'floor of every prior and posterior standard deviation',
                     options.positive),
    patch_size=Option(1, 'p: the network sees p×p pixel patches (a 28×28 image as 14×14 for '
                      'p = 2)'),
    remat=Option(False, "recompute each block's activations in the backward pass (less "
                 'memory)'))


@families.register('top_down', options=OPTIONS)
def build(model_config, data_shape) -> TopDownVAE:
  """The layout of `model.top_down`: `resolutions` (finest first, the first the image size over
  `patch_size`), `encoder_blocks` and `decoder_groups` per resolution, `width` channels,
  residual blocks of `width · bottleneck_ratio` middle channels, `latent_channels` per group
  and position."""
  problems = config_problems(model_config, data_shape)
  if problems:
    raise ValueError(' '.join(problems))
  config = model_config.top_down
  resolutions = tuple(config.resolutions)
  middle = max(1, int(config.width * config.bottleneck_ratio))
  block = nn.remat(ResBlock) if config.remat else ResBlock
  group_resolutions = tuple(resolution for resolution, count in
                            reversed(list(zip(resolutions, config.decoder_groups)))
                            for _ in range(count))
  last_scale = 1 / np.sqrt(len(group_resolutions))
  dtype = model_config.compute_dtype
  likelihood = components.build_likelihood(model_config.likelihood, data_shape)
  return TopDownVAE(
      encoder=BottomUp(config.width, middle, resolutions, tuple(config.encoder_blocks),
                       config.patch_size, block=block, dtype=dtype),
      groups=tuple(StochasticGroup(config.width, middle, config.latent_channels,
                                   config.min_scale, last_scale, block=block, dtype=dtype)
                   for _ in group_resolutions),
      group_resolutions=group_resolutions,
      data_resolution=resolutions[0],
      output_channels=components.raw_channels(likelihood, data_shape),
      likelihood=likelihood,
      width=config.width,
      patch_size=config.patch_size)
