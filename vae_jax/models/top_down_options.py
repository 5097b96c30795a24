"""The top-down family's options (`model.top_down`), the checks of a layout against the
images, and VDVAE's block strings read as a layout (vae_jax/models/top_down.py builds the model
from them)."""

from __future__ import annotations

from vae_jax import options
from vae_jax.options import SHAPES_STATE, Option
from vae_jax.models.top_down_blocks import (ENCODER_OUTPUTS, INITS, OUTPUT_HEADS,
                                            POSTERIOR_INPUTS, SCALE_FUNCTIONS, STREAM_BIASES)


def vdvae_layout(enc_blocks: str, dec_blocks: str) -> dict:
  """`model.top_down`'s layout from VDVAE's strings (its `hps.py`): `resolutions`,
  `encoder_blocks` (a down-sampling block `rdk` counted at its resolution r) and
  `decoder_groups` (a mixing block `rmk` is a group at r); e.g. cifar10's
  `'32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3'`, `'1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21'`."""

  def counts(spec: str) -> dict[int, int]:
    result = {}
    for part in spec.split(','):
      resolution, _, number = part.replace('d', 'm').replace('x', 'm').partition('m')
      result[int(resolution)] = result.get(int(resolution), 0) + (
          int(number) if 'x' in part else 1)
    return result

  encoder, decoder = counts(enc_blocks), counts(dec_blocks)
  resolutions = tuple(sorted(set(encoder) | set(decoder), reverse=True))
  return {'resolutions': resolutions,
          'encoder_blocks': tuple(encoder.get(r, 0) for r in resolutions),
          'decoder_groups': tuple(decoder.get(r, 0) for r in resolutions)}


def _grid_size(config, data_shape) -> int:
  """The side the network sees: the padded image size, or the image's own."""
  return config.padded_size or data_shape[0]


def config_problems(model_config, data_shape) -> list[str]:
  """The layout must fit the images: one count per resolution, each resolution dividing the
  one before, the first the (padded) image size over the patch size."""
  config, problems = model_config.top_down, []
  resolutions = tuple(config.resolutions)
  for key in ('encoder_blocks', 'decoder_groups'):
    if len(config[key]) != len(resolutions) or min(config[key], default=0) < 0:
      problems.append(f'model.top_down.{key}={tuple(config[key])} needs one count (>= 0) per '
                      f'resolution of {resolutions}.')
  if config.widths and len(config.widths) != len(resolutions):
    problems.append(f'model.top_down.widths={tuple(config.widths)} needs one width per '
                    f'resolution of {resolutions} (or () for model.top_down.width everywhere).')
  if not sum(config.decoder_groups):
    problems.append('model.top_down.decoder_groups holds no group: the model needs a latent.')
  if (config.encoder_output == 'before_down_block' and len(config.encoder_blocks) == len(resolutions)
      and min(tuple(config.encoder_blocks)[:-1], default=1) < 1):
    problems.append("model.top_down.encoder_output='before_down_block' needs at least one "
                    'encoder block at every resolution but the coarsest (its down-sampling '
                    f'block); encoder_blocks={tuple(config.encoder_blocks)}.')
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    problems.append(f'model.family=top_down needs square images (H, W, C); the data is '
                    f'{data_shape}.')
  else:
    size = _grid_size(config, data_shape)
    if config.padded_size and (size < data_shape[0] or (size - data_shape[0]) % 2):
      problems.append(f'model.top_down.padded_size={size} must be 0 or the image size '
                      f'{data_shape[0]} plus an even margin.')
    elif not resolutions or resolutions[0] * config.patch_size != size:
      problems.append(f'model.top_down.resolutions={resolutions} must start at the '
                      f'{"padded " if config.padded_size else ""}image size {size} over '
                      f'patch_size={config.patch_size}.')
  if any(finer % coarser for finer, coarser in zip(resolutions, resolutions[1:])):
    problems.append(f'model.top_down.resolutions={resolutions}: each must divide the one before.')
  for key in ('width', 'latent_channels', 'patch_size'):
    if config[key] < 1:
      problems.append(f'model.top_down.{key}={config[key]} must be at least 1.')
  return problems


OPTIONS = options.at(
    'model.top_down', traits=(SHAPES_STATE,),
    resolutions=Option((28, 14, 7), 'the resolutions of the hierarchy, finest first: the first '
                       'is the (padded) image size over patch_size, each next one divides the '
                       'one before (VDVAE strings: top_down_options.vdvae_layout)'),
    encoder_blocks=Option((2, 2, 2), 'residual blocks per resolution in the encoder'),
    decoder_groups=Option((2, 2, 2), 'stochastic groups per resolution in the decoder'),
    width=Option(32, 'channels of the residual streams'),
    widths=Option((), 'channels per resolution, finest first (VDVAE custom_width_str); () -> '
                  'width everywhere', options.each_at_least(1)),
    bottleneck_ratio=Option(0.25, "a residual block's middle channels: width × this",
                            options.positive),
    latent_channels=Option(4, "channels of each group's z, per position"),
    scale_function=Option('softplus', "std from the nets' raw value: 'softplus' | 'exp' "
                          "(VDVAE) | 'unit_softplus' (Efficient-VDVAE: softplus with β = ln 2)",
                          options.one_of(*SCALE_FUNCTIONS)),
    min_scale=Option(1e-3, 'added to every prior and posterior standard deviation (VDVAE: 0)',
                     options.non_negative),
    encoder_output=Option('last_block', "the activation a resolution's groups read: "
                          "'last_block' | 'before_down_block' (VDVAE: its last block only "
                          'feeds the next resolution)', options.one_of(*ENCODER_OUTPUTS)),
    pointwise_up_to=Option(0, "blocks at resolutions up to this use 1×1 middle convs (VDVAE: "
                           '2)', options.non_negative),
    stream_biases=Option('coarsest', "learned stream biases: 'coarsest' (the start) | "
                         "'per_resolution' (VDVAE: added where the decoder enters each)",
                         options.one_of(*STREAM_BIASES)),
    no_bias_above=Option(64, "'per_resolution': no bias at resolutions above this (VDVAE)",
                         options.at_least(1)),
    posterior_input=Option('stream_with_prior_features', "the stream q(z_l|·) reads: "
                           "'stream_with_prior_features' | 'stream' (VDVAE: before the prior "
                           "net's features join it)", options.one_of(*POSTERIOR_INPUTS)),
    output_head=Option('gelu_conv', "'gelu_conv' | 'gain_bias_conv' (VDVAE: per-channel gain "
                       'and bias, then a 1×1 conv)', options.one_of(*OUTPUT_HEADS)),
    gelu=Option('tanh', "GELU: 'tanh' (the approximation, Flax's default) | 'erf' (exact: "
                "PyTorch's default, VDVAE)", options.one_of('tanh', 'erf')),
    init=Option('lecun_normal', "conv weights: 'lecun_normal' | 'torch' (PyTorch's default, "
                'VDVAE); biases start at 0', options.one_of(*INITS)),
    input_mean=Option(0.5, 'pixels x in [0, 1] enter the encoder as (x − mean) / std (VDVAE '
                      'CIFAR-10: 120.63838/255)'),
    input_std=Option(0.5, '(VDVAE CIFAR-10: 64.16736/255)', options.positive),
    padded_size=Option(0, 'zero-pad the images to this size for the network, the likelihood '
                       'on the original pixels (MNIST 28 -> 32); 0: no padding',
                       options.non_negative),
    patch_size=Option(1, 'p: the network sees p×p pixel patches (a 28×28 image as 14×14 for '
                      'p = 2)'),
    remat=Option(False, "recompute each block's activations in the backward pass (less "
                 'memory)'),
    scan=Option(True, "run each resolution's repeated blocks and groups as one scanned block "
                '(their parameters stacked): compiles in about the same time at any depth; '
                'False: unrolled, one module each (the layout before 2026-12)'))
