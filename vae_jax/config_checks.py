"""Validates a run's config before any data is read or anything is compiled.

Every problem found is reported at once, each naming the key, the value and what is allowed.
Types and unknown keys are already refused by ml_collections (configs are locked).
"""

from __future__ import annotations

import json

import jax
import ml_collections
import numpy as np

from vae_jax import (checkpointing, data, evaluators, likelihoods, models, networks, objectives,
                     optimizers)
from vae_jax.errors import UserError


class ConfigError(UserError, ValueError):
  """The config cannot describe a valid run; the message lists every problem."""


# Keys whose values reach the compiled train step as arrays: runs that differ only in these
# train together in one vectorised program (experiments.sweep). 'paper.*' changes nothing.
SWEEPABLE_KEYS = frozenset({
    'seed', 'optimizer.learning_rate', 'optimizer.b1', 'optimizer.b2', 'optimizer.eps',
    'optimizer.weight_decay', 'objective.beta', 'objective.kl_warmup_epochs',
    'objective.temperature.initial', 'objective.temperature.minimum',
    'objective.temperature.anneal_rate',
})


def group_differences(configs: list[ml_collections.ConfigDict]) -> list[str]:
  """The keys outside `SWEEPABLE_KEYS` (and `paper.*`) in which the configs differ."""
  first = json.loads(configs[0].to_json())
  keys = set()
  for other in configs[1:]:
    for key, _, _ in checkpointing.config_differences(first, json.loads(other.to_json())):
      if key not in SWEEPABLE_KEYS and not key.startswith('paper.'):
        keys.add(key)
  return sorted(keys)


def check_same_group(configs: list[ml_collections.ConfigDict]) -> None:
  differences = group_differences(configs)
  if differences:
    raise ConfigError(
        f'These runs cannot be trained in one vectorised program: they differ in {differences}, '
        f'which change the computation; only {sorted(SWEEPABLE_KEYS)} may differ.')


def listing(heading: str, problems: list[str]) -> str:
  """'heading: problem' on one line for one problem; a heading and one line each for more."""
  if len(problems) == 1:
    return f'{heading}: {problems[0]}'
  return f'{heading} ({len(problems)} problems):\n  ' + '\n  '.join(problems)


def validate_config(config: ml_collections.ConfigDict) -> None:
  problems = [*_choice_problems(config), *_range_problems(config), *evaluator_problems(config),
              *_consistency_problems(config)]
  if problems:
    raise ConfigError(listing('Invalid config', problems))


def validate_config_for_data(config: ml_collections.ConfigDict, dataset: data.Dataset) -> None:
  """Checks that need the data: its shape, its size, and that every value lies in the support
  of the likelihood (a log-density outside it would be garbage, not an error, in the step)."""
  problems = [*_support_problems(config, dataset),
              *models.registry.config_problems(config.model, dataset.data_shape)]
  split = config.early_stopping.metric.partition('/')[0]
  if config.early_stopping.metric and split not in dataset.eval_splits():
    problems.append(f'early_stopping.metric={config.early_stopping.metric!r} needs a {split} '
                    f'split, which {dataset.name} lacks here: set data.validation_size > 0.')
  if config.batch_size > len(dataset.train):
    problems.append(f'batch_size={config.batch_size} exceeds the {len(dataset.train)} training '
                    f'examples of {dataset.name}.')
  for part in ('encoder', 'decoder'):
    part_config = config.model[part]
    if part_config.kind != 'conv':
      continue
    factor = 2 ** len(part_config.conv_channels)
    shape = dataset.data_shape
    if len(shape) != 3 or shape[0] % factor or shape[1] % factor:
      problems.append(
          f'model.{part}.kind=conv with {len(part_config.conv_channels)} strided layers needs '
          f'images (H, W, C) with H and W divisible by {factor}; {dataset.name} is {shape}. '
          f'Use fewer model.{part}.conv_channels or kind=mlp.')
  if problems:
    raise ConfigError(listing('Invalid config for this dataset', problems))


STREAMED_RECORDS_CHECKED = 1000


def _support_problems(config, dataset: data.Dataset):
  binarised = {'static': ('train', 'validation', 'test'), 'dynamic': ('validation', 'test'),
               'none': ()}[config.data.binarization]
  if isinstance(dataset.train, data.RecordSplit):  # binarised as it streams
    binarised = tuple(name for name in binarised if name != 'train')
  for name in ('train', 'validation', 'test'):
    split = getattr(dataset, name)
    if split is None:
      continue
    # A streamed split is checked on its first records, not read whole.
    values = (split.take(slice(0, STREAMED_RECORDS_CHECKED)).images
              if isinstance(split, data.RecordSplit) else split.images)
    finite = np.all(np.isfinite(values))
    if not finite or values.min() < 0 or values.max() > 1:
      found = 'non-finite values' if not finite else f'[{values.min()}, {values.max()}]'
      yield (f'{dataset.name} {name} images must be finite and in [0, 1] (binarisation reads '
             f'them as probabilities, the likelihoods as intensities); found {found}.')
    elif (config.model.likelihood.kind == 'bernoulli' and name in binarised
          and not np.all((values == 0) | (values == 1))):
      yield (f'model.likelihood.kind=bernoulli needs binary data, but the {name} split of '
             f'{dataset.name} holds other values.')
    elif (config.model.likelihood.kind.startswith('discretized') and
          not np.allclose(values * 255, np.round(values * 255), atol=1e-3)):
      yield (f'model.likelihood.kind={config.model.likelihood.kind} needs 8-bit images '
             f'(k / 255), but the {name} split of {dataset.name} holds other values'
             f'{" (data.binarization is not none)" if binarised else ""}.')


def evaluator_problems(config):
  unknown = [name for name in config.evals if name not in evaluators.EVALUATORS]
  if unknown:
    yield (f'config.evals names no evaluator {unknown}; the evaluators are '
           f'{sorted(evaluators.EVALUATORS)}.')
  for name, options in config.evals.items():
    if 'splits' in options and not set(options.splits) <= {'validation', 'test'}:
      yield f"evals.{name}.splits={tuple(options.splits)} may hold only 'validation' and 'test'."
  if 'ais' in config.evals:
    yield from evaluators.ais.option_problems(config)
  if 'quadrature' in config.evals:
    yield from evaluators.quadrature.option_problems(config)
  if config.evals.get('importance_sampled', {}).get('num_repeats', 1) < 1:
    yield 'evals.importance_sampled.num_repeats must be at least 1.'


def _choice_problems(config):
  model = config.model
  choices = [
      ('data.binarization', config.data.binarization, data.BINARIZATIONS),
      ('model.encoder.kind', model.encoder.kind, models.ENCODER_KINDS),
      ('model.decoder.kind', model.decoder.kind, models.DECODER_KINDS),
      ('model.encoder.activation', model.encoder.activation, networks.ACTIVATION_CHOICES),
      ('model.decoder.activation', model.decoder.activation, networks.ACTIVATION_CHOICES),
      ('model.upper_layers.activation', model.upper_layers.activation,
       networks.ACTIVATION_CHOICES),
      ('model.family', model.family, ('auto', *models.registry.BUILDERS)),
      ('model.latent_kind', model.latent_kind, models.LATENT_KINDS),
      ('model.prior.kind', model.prior.kind,
       models.CATEGORICAL_PRIOR_KINDS if model.latent_kind == 'categorical'
       else models.PRIOR_KINDS),
      ('model.likelihood.kind', model.likelihood.kind, models.LIKELIHOOD_KINDS),
      ('model.likelihood.scale', model.likelihood.scale, likelihoods.GAUSSIAN_SCALES),
      ('model.likelihood.mean_activation', model.likelihood.mean_activation,
       tuple(likelihoods.MEAN_ACTIVATIONS)),
      ('optimizer.name', config.optimizer.name, optimizers.OPTIMIZERS),
      ('optimizer.schedule', config.optimizer.schedule, optimizers.SCHEDULES),
      ('model.kernel_init', model.kernel_init, tuple(networks.KERNEL_INITS)),
      ('model.compute_dtype', model.compute_dtype, tuple(networks.COMPUTE_DTYPES)),
      ('objective.kind', config.objective.kind, objectives.OBJECTIVES),
      ('objective.gradient_estimator', config.objective.gradient_estimator,
       objectives.gradient_estimators()),
      ('input_pipeline', config.input_pipeline, ('device', 'host', 'grain')),
      ('sweep_execution', config.sweep_execution, ('auto', 'vmap', 'map')),
  ]
  for key, value, allowed in choices:
    if value not in allowed:
      yield f'{key}={value!r} is not one of {list(allowed)}.'


def _range_problems(config):
  at_least_one = {
      'batch_size': config.batch_size,
      'eval_batch_size': config.eval_batch_size,
      'eval_every_epochs': config.eval_every_epochs,
      'log_every_steps': config.log_every_steps,
      'checkpoint_every_steps': config.checkpoint_every_steps,
      'checkpoints_to_keep': config.checkpoints_to_keep,
      'model.latent_dim': config.model.latent_dim,
      'objective.num_samples': config.objective.num_samples,
      'evals.elbo.num_samples': config.evals.elbo.num_samples,
      'evals.importance_sampled.chunk_size': config.evals.importance_sampled.chunk_size,
      'model.max_enumeration': config.model.max_enumeration,
      'model.encoder.flow_hidden_size': config.model.encoder.flow_hidden_size,
      'steps_per_call': config.steps_per_call,
      'streaming.read_threads': config.streaming.read_threads,
      'streaming.prefetch_batches': config.streaming.prefetch_batches,
      'max_consecutive_nonfinite_steps': config.max_consecutive_nonfinite_steps,
  }
  for key, value in at_least_one.items():
    if value < 1:
      yield f'{key}={value} must be at least 1.'
  non_negative = {
      'num_epochs': config.num_epochs,
      'model.encoder.flow_steps': config.model.encoder.flow_steps,
      'optimizer.warmup_steps': config.optimizer.warmup_steps,
      'optimizer.skip_threshold': config.optimizer.skip_threshold,
      'evals.images.num_images': config.evals.images.num_images,
      'evals.importance_sampled.num_samples': config.evals.importance_sampled.num_samples,
      'evals.linear_probe.train_examples': config.evals.linear_probe.train_examples,
      'divergence_factor': config.divergence_factor,
      'streaming.worker_processes': config.streaming.worker_processes,
      'objective.beta': config.objective.beta,
      'objective.kl_warmup_epochs': config.objective.kl_warmup_epochs,
      'optimizer.weight_decay': config.optimizer.weight_decay,
      'optimizer.grad_clip_norm': config.optimizer.grad_clip_norm,
      'data.validation_size': config.data.validation_size,
      'objective.temperature.anneal_rate': config.objective.temperature.anneal_rate,
  }
  for key, value in non_negative.items():
    if value < 0:
      yield f'{key}={value} must be non-negative.'
  positive = {
      'optimizer.learning_rate': config.optimizer.learning_rate,
      'optimizer.eps': config.optimizer.eps,
      'model.encoder.min_scale': config.model.encoder.min_scale,
      'model.likelihood.fixed_scale': config.model.likelihood.fixed_scale,
      'model.likelihood.min_scale': config.model.likelihood.min_scale,
      'objective.temperature.initial': config.objective.temperature.initial,
      'objective.temperature.minimum': config.objective.temperature.minimum,
  }
  for key, value in positive.items():
    if not value > 0:
      yield f'{key}={value} must be positive.'
  sized_keys = [('encoder', 'hidden_sizes'), ('encoder', 'conv_channels'),
                ('decoder', 'hidden_sizes'), ('decoder', 'conv_channels'),
                ('upper_layers', 'latent_dims'), ('upper_layers', 'hidden_sizes')]
  for part, key in sized_keys:
    sizes = config.model[part][key]
    if any(size < 1 for size in sizes):
      yield f'model.{part}.{key}={tuple(sizes)}: every size must be at least 1.'
  for part in ('encoder', 'decoder'):
    if config.model[part].kind == 'conv' and not config.model[part].conv_channels:
      yield f'model.{part}.kind=conv needs at least one entry in model.{part}.conv_channels.'


def _consistency_problems(config):
  yield from _gradient_estimator_problems(config)
  yield from _early_stopping_problems(config)
  num_devices = jax.device_count()
  if config.batch_size % num_devices:
    yield (f'batch_size={config.batch_size} must be divisible by the {num_devices} devices that '
           'share each batch.')
  prior = config.model.prior
  if prior.kind in ('mixture', 'vamp') and prior.num_components < 1:
    yield f'model.prior.num_components={prior.num_components} must be at least 1 for {prior.kind}.'
  if prior.kind == 'vamp' and config.model.upper_layers.latent_dims:
    yield ('model.prior.kind=vamp is built from the encoder of a one-layer VAE; with '
           'model.upper_layers.latent_dims set, use another prior or remove the upper layers.')
  if config.model.likelihood.kind == 'bernoulli' and config.data.binarization == 'none':
    yield ('model.likelihood.kind=bernoulli needs binary data, but data.binarization=none keeps '
           'grey levels. Set data.binarization to dynamic or static, or use '
           'model.likelihood.kind=gaussian.')
  log_variance_range = tuple(config.model.encoder.log_variance_range)
  if log_variance_range and (len(log_variance_range) != 2 or
                             not log_variance_range[0] < log_variance_range[1]):
    yield (f'model.encoder.log_variance_range={log_variance_range} must be () or (low, high) '
           'with low < high.')
  elif log_variance_range and config.model.encoder.flow_steps:
    yield ('model.encoder.log_variance_range applies to the Gaussian encoder, not to an IAF '
           'encoder (model.encoder.flow_steps > 0): use one or the other.')
  yield from _output_bias_problems(config.model)
  if config.model.encoder.flow_steps and (config.model.latent_kind != 'gaussian'
                                          or prior.kind == 'vamp'):
    yield ('model.encoder.flow_steps needs Gaussian latents and a prior other than vamp (the '
           "VampPrior evaluates q at any z; a flow's density is known at its samples only).")
  likelihood = config.model.likelihood
  if likelihood.kind.startswith('discretized') and config.data.binarization != 'none':
    yield (f'model.likelihood.kind={likelihood.kind} models the 256 grey levels of 8-bit images, '
           f'but data.binarization={config.data.binarization} makes them binary. Set '
           'data.binarization=none, or use model.likelihood.kind=bernoulli.')
  if likelihood.kind == 'discretized_logistic_mixture' and likelihood.num_components < 1:
    yield f'model.likelihood.num_components={likelihood.num_components} must be at least 1.'


def _gradient_estimator_problems(config):
  model, objective = config.model, config.objective
  estimator = objective.gradient_estimator
  if objective.kind == 'marginal' and (model.latent_kind != 'categorical' or
                                       estimator not in ('exact', 'auto')):
    yield ('objective.kind=marginal trains the exact log p(x): it needs '
           'model.latent_kind=categorical and objective.gradient_estimator=exact.')
  if model.latent_kind == 'gaussian':
    if estimator not in ('auto', 'reparameterized'):
      yield (f'objective.gradient_estimator={estimator} is for categorical latents; Gaussian '
             "latents use 'reparameterized' (or 'auto').")
    return
  if model.num_categories < 2:
    yield f'model.num_categories={model.num_categories} must be at least 2.'
  if model.upper_layers.latent_dims:
    yield 'model.latent_kind=categorical has one stochastic layer; clear model.upper_layers.latent_dims.'
  if estimator == 'reparameterized':
    yield ("objective.gradient_estimator=reparameterized needs Gaussian latents; categorical ones "
           "take 'exact', 'gumbel_softmax', 'straight_through' or 'score_function' (or 'auto').")
  num_values = model.num_categories ** model.latent_dim
  if estimator == 'exact' and num_values > model.max_enumeration:
    yield (f'objective.gradient_estimator=exact sums over {model.num_categories}^{model.latent_dim} '
           f'= {num_values} latent values, more than model.max_enumeration='
           f'{model.max_enumeration}. Raise the limit, shrink the latent space, or use '
           'gumbel_softmax, straight_through or score_function.')
  if objective.kind == 'marginal' and num_values > model.max_enumeration:
    yield (f'objective.kind=marginal sums over {num_values} latent values, more than '
           f'model.max_enumeration={model.max_enumeration}.')
  if objective.kind == 'iwae':
    yield ('objective.kind=iwae trains reparameterised Gaussian latents; categorical latents '
           'train the ELBO (objective.kind=elbo) or, when enumerable, the exact log p(x) '
           '(objective.kind=marginal).')
  if estimator == 'score_function' and objective.num_samples < 2:
    yield (f'objective.gradient_estimator=score_function needs objective.num_samples >= 2 for its '
           f'leave-one-out baseline (got {objective.num_samples}).')


def _early_stopping_problems(config):
  options = config.early_stopping
  if not options.metric:
    return
  split, _, name = options.metric.partition('/')
  if split not in ('validation', 'test') or not name:
    yield (f"early_stopping.metric={options.metric!r} must be '<split>/<name>' of a training-time "
           "evaluation, e.g. 'validation/elbo'.")
  elif split == 'test':
    yield (f'early_stopping.metric={options.metric!r} would choose the checkpoint on the test '
           "set; stop on the validation split ('validation/...', with data.validation_size > 0).")
  if options.mode not in ('max', 'min'):
    yield f"early_stopping.mode={options.mode!r} is not one of ['max', 'min']."
  for key in ('patience_epochs', 'start_epoch', 'min_delta'):
    if options[key] < 0:
      yield f'early_stopping.{key}={options[key]} must be non-negative.'
  if options.patience_epochs < config.eval_every_epochs:
    yield (f'early_stopping.patience_epochs={options.patience_epochs} is shorter than '
           f'eval_every_epochs={config.eval_every_epochs}: evaluate at least once per patience.')


def _output_bias_problems(model):
  init = model.likelihood.output_bias_init
  if init not in models.OUTPUT_BIAS_INITS:
    yield (f'model.likelihood.output_bias_init={init!r} is not one of '
           f'{list(models.OUTPUT_BIAS_INITS)}.')
  elif init == 'data_mean_logit' and (
      model.likelihood.kind != 'bernoulli' or model.decoder.kind != 'mlp' or
      model.family not in ('auto', 'vae', 'hierarchical') or model.latent_kind != 'gaussian'):
    yield ('model.likelihood.output_bias_init=data_mean_logit sets the output bias of an MLP '
           'decoder with a Bernoulli likelihood (families vae and hierarchical); use zeros here.')
