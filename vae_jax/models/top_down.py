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

Where VDVAE's code (openai/vdvae) made a choice, `model.top_down` has it as an option, and
`configs/top_down.py:cifar10` sets VDVAE's value: widths per resolution (zero-padded going up,
cut going down), the encoder activation a resolution's groups read taken before its
down-sampling block, 1×1 middle convolutions at resolutions ≤ 2, a learned stream bias per
resolution, the posterior reading the stream before the prior's features join it, `exp` scales,
PyTorch's initialisation, the input normalisation and the output head (gain, bias, 1×1 conv).
Images can be zero-padded (MNIST 28 → 32) with the likelihood on the original pixels.

With `model.top_down.scan` (the default) the consecutive groups of one resolution run as one
scanned group (`groups_r<r>`, parameters stacked on a leading axis over the groups, coarse to
fine), as do the encoder's blocks of one resolution, so the program holds one copy of each
resolution's blocks whatever the depth (docs/results/speed.md: cifar10 compiles in half the
time); each group's z, prior, posterior, key and KL are the same as unrolled. A resolution
whose groups differ in shape runs unrolled (`groups_<index>`), said once in the log.
`vae_jax/models/top_down_layout.py` converts parameters between the two layouts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import convolutions, distributions
from vae_jax.models import components, families, top_down_layout
from vae_jax.models.top_down_options import OPTIONS, config_problems
from vae_jax.models.top_down_blocks import (BottomUp, ResBlock, StochasticGroup, _unpool,
                                            crop_images, depth_to_space, fit_channels,
                                            kernel_init, pad_images, saving_convolutions)


class TopDownVAE(nn.Module):
  """Stochastic groups at `group_resolutions` (coarse to fine) between a bottom-up encoder and
  an output head at the data resolution (see the module docstring)."""

  encoder: BottomUp
  groups: Sequence[StochasticGroup]
  group_resolutions: Sequence[int]  # coarsest first, non-decreasing
  widths: tuple[tuple[int, int], ...]  # (resolution, stream channels), hashable
  data_resolution: int  # of the patch grid: the (padded) image size / patch_size
  image_size: int  # the images' own size (the likelihood's), before any padding
  output_channels: int  # raw values the likelihood reads, per pixel
  likelihood: nn.Module
  patch_size: int = 1
  stream_biases: str = 'coarsest'
  no_bias_above: int = 64
  posterior_input: str = 'stream_with_prior_features'
  output_head_kind: str = 'gelu_conv'
  init_scheme: str = 'lecun_normal'
  exact_gelu: bool = False
  scan: bool = True  # each resolution's groups as one scanned group, where they share a shape

  def setup(self):
    self.runs = group_runs(self.groups, self.group_resolutions, self.scan)
    for start, stop, scanned in self.runs:
      if scanned:  # fresh modules of the run's shape, named per resolution; `groups` unused
        setattr(self, f'groups_r{self.group_resolutions[start]}',
                type(self.groups[start])(**module_fields(self.groups[start])))
    start = self.group_resolutions[0]
    if self.stream_biases == 'coarsest':
      self.initial_stream = self.param('initial_stream', nn.initializers.zeros,
                                       (start, start, self._width(start)))
      self.biases = {}
    else:
      self.biases = {str(r): self.param(f'bias_r{r}', nn.initializers.zeros,
                                        (r, r, self._width(r)))
                     for r in sorted(set(self.group_resolutions)) if r <= self.no_bias_above}
    if self.output_head_kind == 'gain_bias_conv':
      width = self._width(self.data_resolution)
      self.output_gain = self.param('output_gain', nn.initializers.ones, (width,))
      self.output_bias = self.param('output_bias', nn.initializers.zeros, (width,))
    self.output_head = nn.Conv(self.output_channels * self.patch_size**2, (1, 1),
                               kernel_init=kernel_init(self.init_scheme),
                               conv_general_dilated=convolutions.conv_general_dilated)

  def _width(self, resolution: int) -> int:
    return dict(self.widths)[resolution]

  @property
  def group_names(self) -> tuple[str, ...]:
    """`g<index>_r<resolution>`, coarse to fine."""
    return tuple(f'g{index:02d}_r{resolution}'
                 for index, resolution in enumerate(self.group_resolutions))

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    return self.sample_log_weight_terms(x, jax.random.key(0))

  def init(self, rngs, *args, **kwargs):
    """`nn.Module.init`, jitted: run eagerly, each scan it meets would be compiled on its own,
    and each of the unrolled layout's many small ops dispatched one by one."""
    return jax.jit(functools.partial(super().init, **kwargs))(rngs, *args)

  def _stream_start(self, resolution: int, batch_size: int) -> jax.Array:
    if self.stream_biases == 'coarsest':
      start = self.initial_stream
    else:
      start = self.biases.get(str(resolution), jnp.zeros((resolution, resolution,
                                                           self._width(resolution))))
    return jnp.broadcast_to(start, (batch_size, *start.shape))

  def _enter(self, h: jax.Array, resolution: int) -> jax.Array:
    """The stream unpooled to `resolution`, fitted to its width, plus its bias (if any)."""
    h = fit_channels(_unpool(h, resolution // h.shape[-2]), self._width(resolution))
    bias = self.biases.get(str(resolution))
    return h if bias is None else h + bias

  def encode_context(self, x: jax.Array) -> dict[int, jax.Array]:
    return self.encoder(pad_images(x, self.data_resolution * self.patch_size))

  def _output(self, h: jax.Array):
    if self.output_head_kind == 'gain_bias_conv':
      h = h * self.output_gain + self.output_bias
    else:
      h = nn.gelu(h, approximate=not self.exact_gelu)
    raw = depth_to_space(self.output_head(h).astype(jnp.float32), self.patch_size)
    return self.likelihood(crop_images(raw, self.image_size))

  def _scanned_run(self, start: int, stop: int, h: jax.Array, given, choose_z, activation,
                   measure):
    """Groups `start:stop` as one scan over their stacked parameters and their slices of
    `given`; each group's output (see `_top_down`) unstacked."""

    def step(group, h, given_one):
      return group_step(group, h, given_one, choose_z, activation, self.posterior_input,
                        measure)

    scanned = nn.scan(saving_convolutions(step), variable_axes={'params': 0},
                      split_rngs={'params': True}, length=stop - start)
    module = getattr(self, f'groups_r{self.group_resolutions[start]}')
    h, stacked = scanned(module, h, _stacked(given, start, stop))
    return h, [jax.tree.map(lambda a, i=i: a[i], stacked) for i in range(stop - start)]

  def _top_down(self, batch_size: int, choose_z, activations=None, given=None, measure=None):
    """Runs the decoder. `choose_z(given, prior, posterior)` returns a group's z from its entry
    of `given` (a key, a z, ...: an array or tuple with one entry per group, or None) and its
    prior and posterior (None without `activations`). Returns the likelihood and each group's
    `(z, prior, posterior)`, or `measure(z, prior, posterior)` when given (computed inside
    the scan: one copy of its code per resolution, not per group)."""
    resolution, chosen = self.group_resolutions[0], []
    h = self._stream_start(resolution, batch_size)
    for start, stop, scanned in self.runs:
      if self.group_resolutions[start] != resolution:
        resolution = self.group_resolutions[start]
        h = self._enter(h, resolution)
      activation = None if activations is None else activations[resolution]
      if scanned:
        h, outputs = self._scanned_run(start, stop, h, given, choose_z, activation, measure)
        chosen += outputs
        continue
      for index in range(start, stop):
        h, output = group_step(self.groups[index], h, None if given is None else given[index],
                               choose_z, activation, self.posterior_input, measure)
        chosen.append(output)
    if resolution != self.data_resolution:
      h = fit_channels(_unpool(h, self.data_resolution // resolution),
                       self._width(self.data_resolution))
    return self._output(h), chosen

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    likelihood, measured = self._top_down(
        x.shape[0], lambda key, prior, posterior: posterior.sample(key), self.encode_context(x),
        jax.random.split(key, len(self.groups)), _group_terms)
    terms = {'reconstruction': likelihood.log_prob(x), 'log_prior': 0.0, 'log_posterior': 0.0,
             'analytic_kl': 0.0}
    for name, (kl, log_prior, log_posterior) in zip(self.group_names, measured):
      terms['log_prior'] += log_prior
      terms['log_posterior'] += log_posterior
      terms['analytic_kl'] += kl
      terms[f'kl/{name}'] = kl
    return terms

  def draw_latents(self, key: jax.Array, context, num: int, from_prior: bool) -> tuple:
    def draw(key, prior, posterior):
      return (prior if from_prior else posterior).sample(key)

    _, chosen = self._top_down(num, draw, None if from_prior else context,
                               jax.random.split(key, len(self.groups)))
    return tuple(z for z, _, _ in chosen)

  def latent_log_densities(self, x: jax.Array, groups, context) -> dict[str, jax.Array]:
    likelihood, measured = self._top_down(x.shape[0], lambda z, prior, posterior: z, context,
                                          tuple(groups), _group_terms)
    return {'reconstruction': likelihood.log_prob(x),
            'log_prior': sum(log_prior for _, log_prior, _ in measured),
            'log_posterior': sum(log_posterior for _, _, log_posterior in measured)}

  def simulate(self, key: jax.Array, num: int) -> tuple[jax.Array, tuple]:
    keys = jax.random.split(key, len(self.groups) + 1)
    likelihood, chosen = self._top_down(num, lambda key, prior, posterior: prior.sample(key),
                                        given=keys[:-1])
    return likelihood.sample(keys[-1]), tuple(z for z, _, _ in chosen)

  def analytic_kl(self, x: jax.Array) -> None:
    del x  # each group's KL is closed-form only given the z above it
    return None

  def kl_per_dimension(self, x: jax.Array) -> None:
    del x
    return None

  def _posterior_mean_path(self, x: jax.Array):
    return self._top_down(x.shape[0], lambda given, prior, posterior: posterior.mean,
                          self.encode_context(x))

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
    def sample_prior(key, prior, posterior):
      del posterior
      return prior.mean + temperature * prior.scale * jax.random.normal(key, prior.mean.shape)

    return self._top_down(num_samples, sample_prior,
                          given=jax.random.split(key, len(self.groups)))[0].mean


def group_step(group: StochasticGroup, h: jax.Array, given, choose_z, activation,
               posterior_input: str, measure=None):
  """One group: the stream after it absorbs its z, and `(z, prior, posterior)` (or
  `measure` of them)."""
  prior, features = group.prior(h)
  if posterior_input == 'stream_with_prior_features':
    h = h + features
  posterior = None if activation is None else group.posterior(h, activation)
  if posterior_input == 'stream':
    h = h + features
  z = choose_z(given, prior, posterior)
  output = (z, prior, posterior) if measure is None else measure(z, prior, posterior)
  return group.absorb(h, z), output


def _group_terms(z, prior, posterior) -> tuple[jax.Array, jax.Array, jax.Array]:
  """A group's `(KL(q ‖ p), log p(z), log q(z))` at its z (`[B]` each)."""
  return (distributions.kl_divergence(posterior, prior), prior.log_prob(z),
          posterior.log_prob(z))


def module_fields(module: nn.Module) -> dict:
  """The fields that make a module what it is (not its place in a tree: parent, name)."""
  return {field.name: getattr(module, field.name) for field in dataclasses.fields(module)
          if field.init and field.name not in ('parent', 'name')}


_LOGGED = set()


def group_runs(groups: Sequence[nn.Module], resolutions: Sequence[int], scan: bool
               ) -> tuple[tuple[int, int, bool], ...]:
  """`(start, stop, scanned)` for each resolution's consecutive groups: scanned when `scan`
  and they are all of one shape (else unrolled, said once in the log)."""
  runs, start = [], 0
  for stop in range(1, len(resolutions) + 1):
    if stop < len(resolutions) and resolutions[stop] == resolutions[start]:
      continue
    same = all(module_fields(group) == module_fields(groups[start])
               for group in groups[start:stop])
    if scan and not same and (resolutions[start], stop - start) not in _LOGGED:
      _LOGGED.add((resolutions[start], stop - start))
      logging.warning('The %d stochastic groups at resolution %d differ in shape: they run '
                      'unrolled (groups_%d to groups_%d), not as one scanned group.',
                      stop - start, resolutions[start], start, stop - 1)
    runs.append((start, stop, scan and same))
    start = stop
  return tuple(runs)


def _stacked(given, start: int, stop: int):
  """Groups `start:stop`'s entries of `given` (an array, or a tuple of pytrees) stacked."""
  if given is None or isinstance(given, jax.Array):
    return None if given is None else given[start:stop]
  return jax.tree.map(lambda *entries: jnp.stack(entries), *given[start:stop])


@families.register('top_down', options=OPTIONS, images_only=True,
                   shape_checks=(config_problems,),
                   earlier_layouts=(families.EarlierLayout(
                       'the top-down parameters unrolled (one module per group and block, as '
                       'before model.top_down.scan): converted to the stacked layout '
                       '(vae_jax/models/top_down_layout.py)', top_down_layout.has_stacks,
                       top_down_layout.unstacked_state, top_down_layout.stacked_state),))
def build(model_config, data_shape) -> TopDownVAE:
  """The layout of `model.top_down` (see top_down_options.OPTIONS): `resolutions` (finest first),
  `encoder_blocks` and `decoder_groups` per resolution, `width(s)` channels, residual blocks of
  `width · bottleneck_ratio` middle channels, `latent_channels` per group and position."""
  problems = config_problems(model_config, data_shape)
  if problems:
    raise ValueError(' '.join(problems))
  config = model_config.top_down
  resolutions = tuple(config.resolutions)
  widths = tuple(config.widths) or (config.width,) * len(resolutions)
  block = nn.remat(ResBlock) if config.remat else ResBlock
  group_resolutions = tuple(resolution for resolution, count in
                            reversed(list(zip(resolutions, config.decoder_groups)))
                            for _ in range(count))
  last_scale = 1 / np.sqrt(len(group_resolutions))
  dtype = model_config.compute_dtype
  width_at = dict(zip(resolutions, widths))
  exact_gelu = config.gelu == 'erf'
  likelihood = components.build_likelihood(model_config.likelihood, data_shape)

  def group(resolution):
    width = width_at[resolution]
    return StochasticGroup(width, max(1, int(width * config.bottleneck_ratio)),
                           config.latent_channels, config.min_scale, last_scale,
                           scale_function=config.scale_function,
                           kernel=1 if resolution <= config.pointwise_up_to else 3,
                           init_scheme=config.init, exact_gelu=exact_gelu, block=block,
                           dtype=dtype)

  return TopDownVAE(
      encoder=BottomUp(widths, config.bottleneck_ratio, resolutions,
                       tuple(config.encoder_blocks), config.patch_size,
                       input_mean=config.input_mean, input_std=config.input_std,
                       before_down_block=config.encoder_output == 'before_down_block',
                       pointwise_up_to=config.pointwise_up_to, init_scheme=config.init,
                       exact_gelu=exact_gelu, block=block, dtype=dtype, scan=config.scan),
      groups=tuple(group(resolution) for resolution in group_resolutions),
      group_resolutions=group_resolutions,
      widths=tuple(width_at.items()),
      data_resolution=resolutions[0],
      image_size=data_shape[0],
      output_channels=components.raw_channels(likelihood, data_shape),
      likelihood=likelihood,
      patch_size=config.patch_size,
      stream_biases=config.stream_biases,
      no_bias_above=config.no_bias_above,
      posterior_input=config.posterior_input,
      output_head_kind=config.output_head,
      init_scheme=config.init,
      exact_gelu=exact_gelu,
      scan=config.scan)
