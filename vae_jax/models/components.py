"""The parts every family is built from, chosen by name from the config: encoder torsos and
Gaussian encoders, decoder networks, likelihoods, priors; and `Decoder` (network + likelihood).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import (discretized_logistic, distributions, encoders, flows,  # pylint: disable=unused-import
                     likelihoods, networks, options, priors, registries)
from vae_jax.errors import UserError
from vae_jax.options import SHAPES_STATE, Option

ENCODER_KINDS = ('mlp', 'conv')
DECODER_KINDS = ('mlp', 'conv')
LATENT_KINDS = ('gaussian', 'categorical')

registries.register_kind('likelihood', 'p(x|z) from the decoder network\'s output',
                         lambda config: (config.model.likelihood.kind,))
registries.register_kind('prior', 'p(z) over Gaussian latents',
                         lambda config: (config.model.prior.kind,)
                         if config.model.latent_kind == 'gaussian' else ())
registries.register_kind('categorical_prior', 'p(z) over categorical latents',
                         lambda config: (config.model.prior.kind,)
                         if config.model.latent_kind == 'categorical' else ())


class Decoder(nn.Module):
  """`p(x|z)`: a decoder network followed by a likelihood."""

  net: nn.Module
  likelihood: nn.Module

  def __call__(self, z: jax.Array):
    return self.likelihood(self.net(z))


def build_decoder(model_config, data_shape) -> Decoder:
  """`p(x|z)`: the configured decoder network and likelihood."""
  likelihood = build_likelihood(model_config.likelihood, data_shape)
  return Decoder(build_decoder_net(model_config.decoder, data_shape,
                                   raw_channels(likelihood, data_shape), model_config.kernel_init,
                                   model_config.compute_dtype), likelihood)


def raw_channels(likelihood: nn.Module, data_shape) -> int:
  """How many raw values per pixel the decoder outputs for `likelihood`."""
  return likelihood.raw_channels(data_shape[-1])


def build_encoder_torso(config, data_shape, kernel_init: str, dtype: str = 'float32') -> nn.Module:
  if config.kind == 'mlp':
    return networks.MLP(config.hidden_sizes, config.activation, flatten_ndims=len(data_shape),
                        kernel_init=kernel_init, dtype=dtype, bias_init=config.bias_init,
                        gate_kernels=config.gate_kernels)
  if config.kind == 'conv':
    return networks.ConvEncoderTorso(config.conv_channels, config.hidden_sizes, config.activation,
                                     kernel_init=kernel_init, dtype=dtype,
                                     gate_kernels=config.gate_kernels)
  raise ValueError(f'Unknown encoder kind {config.kind!r}; choose one of {ENCODER_KINDS}.')


def build_encoder(config, latent_dim: int, data_shape, kernel_init: str = 'lecun_normal',
                  dtype: str = 'float32') -> nn.Module:
  """A Gaussian `q(z|x)`, or with `flow_steps` an inverse autoregressive flow on top of one."""
  torso = build_encoder_torso(config, data_shape, kernel_init, dtype)
  if config.flow_steps:
    return flows.IAFEncoder(torso, latent_dim, config.flow_steps, config.flow_hidden_size,
                            min_scale=config.min_scale, kernel_init=kernel_init)
  return encoders.GaussianEncoder(torso, latent_dim, min_scale=config.min_scale,
                                  kernel_init=kernel_init,
                                  log_variance_range=tuple(config.log_variance_range),
                                  bias_init=config.bias_init)


def build_decoder_net(config, data_shape, output_channels: int,
                      kernel_init: str = 'lecun_normal', dtype: str = 'float32') -> nn.Module:
  *spatial_shape, _ = data_shape
  output_shape = (*spatial_shape, output_channels)
  if config.kind == 'mlp':
    return networks.MLPDecoderNet(output_shape, config.hidden_sizes, config.activation,
                                  kernel_init=kernel_init, dtype=dtype,
                                  bias_init=config.bias_init, gate_kernels=config.gate_kernels)
  if config.kind == 'conv':
    return networks.ConvDecoderNet(output_shape, config.conv_channels, config.hidden_sizes,
                                   config.activation, kernel_init=kernel_init, dtype=dtype,
                                   gate_kernels=config.gate_kernels)
  raise ValueError(f'Unknown decoder kind {config.kind!r}; choose one of {DECODER_KINDS}.')


def build_likelihood(config, data_shape) -> nn.Module:
  """The registered likelihood `config.kind` (`config`: the `model.likelihood` block), its
  distribution's contract checked."""
  likelihood = registries.build('likelihood', config.kind, config, data_shape)
  raw = jnp.zeros((1, *data_shape[:-1], raw_channels(likelihood, data_shape)))
  check_distribution('likelihood', config.kind, likelihood, raw)
  return likelihood


OUTPUT_BIAS_INITS = likelihoods.OUTPUT_BIAS_INITS


def with_data_mean_output_bias(params, mean_image: np.ndarray):
  """`params` with the decoder's output bias set to the logit of `mean_image`, the per-pixel
  mean of the training images (`data.mean_image`), clipped to [0.001, 0.999] (Burda et al.'s code, datasets.py / iwae.py): an
  untrained model then predicts the mean image. For a Bernoulli likelihood whose decoder ends in
  the dense layer `decoder/net/output` (the MLP decoders of the vae and hierarchical families)."""
  mean = np.clip(np.asarray(mean_image, np.float64), 0.001, 0.999)
  bias = np.log(mean) - np.log1p(-mean)
  decoder_output = params['params']['decoder']['net']['output']
  if decoder_output['bias'].size != bias.size:
    raise ValueError(f'The decoder output bias has {decoder_output["bias"].size} entries, the '
                     f'images {bias.size} pixels.')
  new_output = dict(decoder_output, bias=jnp.asarray(bias.reshape(decoder_output['bias'].shape),
                                                     decoder_output['bias'].dtype))
  new_net = dict(params['params']['decoder']['net'], output=new_output)
  new_decoder = dict(params['params']['decoder'], net=new_net)
  return dict(params, params=dict(params['params'], decoder=new_decoder))


def build_prior(config, latent_dim: int, data_shape) -> nn.Module:
  """The registered prior over Gaussian latents `config.kind` (`config`: `model.prior`), its
  distribution's contract checked (`check_distribution`)."""
  prior = registries.build('prior', config.kind, config, latent_dim, data_shape)
  posterior_at = lambda x: distributions.DiagonalGaussian(  # what `prior(encoder)` may call
      jnp.zeros((x.shape[0], latent_dim)), jnp.ones((x.shape[0], latent_dim)))
  check_distribution('prior', config.kind, prior, posterior_at)
  return prior


def build_categorical_prior(config, num_variables: int, num_categories: int) -> nn.Module:
  """The registered prior over categorical latents `config.kind` (`config`: `model.prior`),
  its distribution's contract checked."""
  prior = registries.build('categorical_prior', config.kind, config, num_variables,
                           num_categories)
  check_distribution('categorical_prior', config.kind, prior)
  return prior


def check_distribution(kind: str, name: str, module: nn.Module, *args) -> None:
  """Refuses, in one line, a module whose call returns a distribution without what its kind
  needs (`registries.CONTRACTS['<kind>()']`: a prior's `log_prob` and `sample`), before any
  data is read: the module is traced once, abstractly (nothing is computed)."""
  problems = []

  def probe(key):
    distribution, _ = module.init_with_output(key, *args)
    problems.append(registries.contract_problem(f'{kind}()', name, distribution))
    return 0

  try:
    jax.eval_shape(probe, jax.random.key(0))
  except Exception:  # pylint: disable=broad-exception-caught
    return  # it needs what the probe lacks (the model's real encoder, ...): checked when used
  if problems and problems[0]:
    raise UserError(problems[0])


def _model_problems(config):
  model = config.model
  prior_kind = 'categorical_prior' if model.latent_kind == 'categorical' else 'prior'
  if model.latent_kind in LATENT_KINDS and model.prior.kind not in registries.names(prior_kind):
    yield (f'model.prior.kind={model.prior.kind!r} '
           f'{registries.unknown(prior_kind, model.prior.kind)}')
  for part in ('encoder', 'decoder'):
    if model[part].kind == 'conv' and not model[part].conv_channels:
      yield f'model.{part}.kind=conv needs at least one entry in model.{part}.conv_channels.'
  log_variance_range = tuple(model.encoder.log_variance_range)
  if log_variance_range and (len(log_variance_range) != 2 or
                             not log_variance_range[0] < log_variance_range[1]):
    yield (f'model.encoder.log_variance_range={log_variance_range} must be () or (low, high) '
           'with low < high.')
  elif log_variance_range and model.encoder.flow_steps:
    yield ('model.encoder.log_variance_range applies to the Gaussian encoder, not to an IAF '
           'encoder (model.encoder.flow_steps > 0): use one or the other.')
  if model.encoder.flow_steps and model.latent_kind != 'gaussian':
    yield 'model.encoder.flow_steps needs Gaussian latents.'
  yield from _bias_init_problems(model)


def _bias_init_problems(model):
  """'torch_uniform' biases are built by the MLP networks and the Gaussian encoder's heads only:
  refuse a model where some layer would silently keep zero biases."""
  from vae_jax.models import families  # pylint: disable=import-outside-toplevel
  parts = [part for part in ('encoder', 'decoder') if model[part].bias_init != 'zeros']
  if not parts:
    return
  if families.family_name(model) != 'vae':
    yield (f'model.{parts[0]}.bias_init={model[parts[0]].bias_init!r} is built for the vae '
           f'family only (this model is {families.family_name(model)!r}).')
  for part in parts:
    if model[part].kind != 'mlp':
      yield f'model.{part}.bias_init={model[part].bias_init!r} needs model.{part}.kind=mlp.'
  if 'encoder' in parts and model.encoder.flow_steps:
    yield ("model.encoder.bias_init applies to the Gaussian encoder, not to an IAF encoder "
           '(model.encoder.flow_steps > 0).')


def _network_options(part: str, hidden_sizes, conv_channels, conv_doc: str) -> dict:
  return options.at(
      f'model.{part}', traits=(SHAPES_STATE,),
      kind=Option('mlp', "'mlp' | 'conv'", options.one_of(*ENCODER_KINDS)),
      hidden_sizes=Option(hidden_sizes, f'dense layers ({conv_doc})', options.each_at_least(1)),
      activation=Option('tanh', 'tanh, relu, elu, gelu, softplus, swish, leaky_relu, or '
                        "'gated'", options.one_of(*networks.ACTIVATION_CHOICES)),
      conv_channels=Option(conv_channels, 'strided 3x3 convolutions, each halving H and W '
                           "('conv'; the decoder's run coarse to fine)",
                           options.each_at_least(1)),
      gate_kernels=Option('joint', "'gated' layers: 'joint', one layer of 2n units halved into "
                          "values and gates; 'separate', two layers of n (<name>_h, <name>_g), "
                          "as the VampPrior code's GatedDense: normalize_gradients then "
                          'normalises them as two tensors', options.one_of(*networks.GATE_KERNELS)),
      bias_init=Option('zeros', "'zeros' | 'torch_uniform': PyTorch's nn.Linear default, "
                       "uniform(±1/sqrt(fan_in)), kept by the VampPrior code ('mlp' parts of "
                       'the vae family; the Gaussian head and the output layer included)',
                       options.one_of(*networks.BIAS_INITS)))


# The model keys every family shares: latents, networks, the choice of prior and likelihood.
registries.add(registries.Component('run', 'model', None, {
    **options.at(
        'model', traits=(SHAPES_STATE,),
        family=Option('auto', "a registered family, or 'auto': 'discrete' for categorical "
                      "latents, 'hierarchical' with upper layers, else 'vae'",
                      registries.registered('family', 'auto')),
        latent_kind=Option('gaussian', "'gaussian' | 'categorical'",
                           options.one_of(*LATENT_KINDS)),
        latent_dim=Option(50, 'Gaussian units, or categorical variables D', options.at_least(1)),
        kernel_init=Option('lecun_normal', "weights: also 'glorot_uniform', 'he_normal', "
                           "'normal_0.01'", options.one_of(*networks.KERNEL_INITS)),
        compute_dtype=Option('float32', "'bfloat16': networks compute in bfloat16 (for "
                             'accelerators); parameters, distributions and the loss stay float32',
                             options.one_of(*networks.COMPUTE_DTYPES))),
    # Not a shape: how accurately matrix products and convolutions are computed (XLA's
    # precision config, `jax.default_matmul_precision`). 'default' lets GPUs use TF32 and TPUs
    # bfloat16 passes; vdvae-jax needed 'highest' on TPU to reach VDVAE's 2.87 bits/dim.
    'model.matmul_precision': Option(
        'default', "'default' | 'high' | 'highest': the precision of every matrix product and "
        'convolution in training and evaluation', options.one_of(*networks.MATMUL_PRECISIONS)),
    **_network_options('encoder', (200, 200), (32, 64), "after the convolutions, for 'conv'"),
    **options.at(
        'model.encoder', traits=(SHAPES_STATE,),
        min_scale=Option(1e-4, 'floor of the posterior standard deviation', options.positive),
        log_variance_range=Option((), 'log σ² = clip(·, low, high) instead (VampPrior code: '
                                  '(-6, 2)); (): softplus'),
        flow_steps=Option(0, 'inverse-autoregressive-flow steps on q(z|x) (Kingma et al. 2016; '
                          'vae_jax/flows.py); 0: the Gaussian itself', options.non_negative),
        flow_hidden_size=Option(200, "hidden units of each flow step's MADE",
                                options.at_least(1))),
    **_network_options('decoder', (200, 200), (64, 32),
                       "before the transposed convolutions, for 'conv'"),
    **options.at('model.prior', traits=(SHAPES_STATE,), kind=Option(
        'standard_normal', 'a registered prior: for Gaussian latents standard_normal, '
        'learned_gaussian, mixture, vamp; for categorical ones uniform, learned_categorical')),
    **options.at('model.likelihood', traits=(SHAPES_STATE,), kind=Option(
        'bernoulli', "'bernoulli' (binary pixels) | 'gaussian' | 8-bit pixels: "
        "'discretized_logistic' | 'discretized_logistic_mixture' (PixelCNN++ / VDVAE)",
        registries.registered('likelihood'))),
}, (_model_problems,)))
