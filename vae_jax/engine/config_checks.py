"""Validates a run's config before any data is read or anything is compiled.

Every problem found is reported at once, each naming the key, the value and what is allowed.
Types and unknown keys are already refused by ml_collections (configs are locked).
"""

from __future__ import annotations

import json

import ml_collections
import numpy as np

from vae_jax import data, models, optimizers, options, registries
from vae_jax.engine import checkpointing
from vae_jax.models import components
from vae_jax.errors import UserError


class ConfigError(UserError, ValueError):
  """The config cannot describe a valid run; the message lists every problem."""


def sweepable_keys() -> frozenset[str]:
  """Keys whose values reach the compiled train step as arrays: runs that differ only in these
  train together in one vectorised program (experiments.sweep). Declared by each option's
  `SWEEPABLE` trait; 'paper.*' changes nothing."""
  return registries.keys_with(options.SWEEPABLE)


def group_differences(configs: list[ml_collections.ConfigDict]) -> list[str]:
  """The keys outside `sweepable_keys()` (and `paper.*`) in which the configs differ."""
  first = json.loads(configs[0].to_json())
  sweepable, keys = sweepable_keys(), set()
  for other in configs[1:]:
    for key, _, _ in checkpointing.config_differences(first, json.loads(other.to_json())):
      if key not in sweepable and not key.startswith('paper.'):
        keys.add(key)
  return sorted(keys)


def check_same_group(configs: list[ml_collections.ConfigDict]) -> None:
  differences = group_differences(configs)
  if differences:
    raise ConfigError(
        f'These runs cannot be trained in one vectorised program: they differ in {differences}, '
        f'which change the computation; only {sorted(sweepable_keys())} may differ.')


def listing(heading: str, problems: list[str]) -> str:
  """'heading: problem' on one line for one problem; a heading and one line each for more."""
  if len(problems) == 1:
    return f'{heading}: {problems[0]}'
  return f'{heading} ({len(problems)} problems):\n  ' + '\n  '.join(problems)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Every option's check on its value, then the checks of the components the config uses."""
  problems = [*_unknown_evaluators(config), *registries.value_problems(config),
              *registries.component_problems(config)]
  if problems:
    raise ConfigError(listing('Invalid config', problems))
  check_contracts(config)


def check_contracts(config: ml_collections.ConfigDict) -> None:
  """Builds the chosen optimizer, schedule, gradient transforms, likelihood and prior once,
  before any data is read, so that one from outside the package that breaks its kind's
  contract (`registries.CONTRACTS`) is refused in one line (a UserError) naming what it lacks.
  The data source, the family and the evaluators are checked when built, once the data's
  shape is known, before anything is written."""
  optimizers.create_optimizer(config.optimizer, num_train_steps=1)
  data_shape = (1, 1, 1)  # a stand-in: the data's shape is not known before it is read
  model = config.model
  if model.latent_kind == 'categorical':
    components.build_categorical_prior(model.prior, model.latent_dim, model.num_categories)
  else:
    components.build_prior(model.prior, model.latent_dim, data_shape)
  components.build_likelihood(model.likelihood, data_shape)


def _unknown_evaluators(config) -> list[str]:
  unknown = [name for name in config.evals if name not in registries.names('evaluator')]
  return [f'config.evals names {name!r}, which {registries.unknown("evaluator", name)}'
          for name in unknown]


def validate_config_for_data(config: ml_collections.ConfigDict, dataset: data.Dataset) -> None:
  """Checks that need the data: its shape, its size, and that every value lies in the support
  of the likelihood (a log-density outside it would be garbage, not an error, in the step)."""
  image_only = _image_only_problems(config, dataset)
  if image_only:  # the family's own shape checks would only repeat it
    raise ConfigError(listing('Invalid config for this dataset', image_only))
  problems = [*_support_problems(config, dataset),
              *models.families.config_problems(config.model, dataset.data_shape)]
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


def _image_only_problems(config, dataset: data.Dataset) -> list[str]:
  """Vectors given to a family or network that reads images (a registered family declares
  `images_only=True`; convolutional encoders and decoders)."""
  if dataset.kind != data.VECTORS:
    return []
  found = []
  family = models.families.family_name(config.model)
  if registries.get('family', family).extras.get('images_only'):
    fitting = [name for name in registries.names('family')
               if not registries.get('family', name).extras.get('images_only')]
    found.append(f'model.family={family} reads images, but {dataset.name} holds vectors of '
                 f'shape {dataset.data_shape}: use a family for vectors ({", ".join(fitting)}; '
                 'configs/vectors.py trains the MLP VAE).')
  for part in ('encoder', 'decoder'):
    if config.model[part].kind == 'conv':
      found.append(f'model.{part}.kind=conv reads images, but {dataset.name} holds vectors of '
                   f'shape {dataset.data_shape}: use model.{part}.kind=mlp (configs/vectors.py).')
  return found


def _support_problems(config, dataset: data.Dataset):
  """Every value finite, and in [0, 1] for images and vectors to be binarised; and what the
  chosen components need of the data (the Bernoulli likelihood binary pixels, the discretised
  logistics 8-bit grey levels: their data checks)."""
  out_of_range = []
  in_unit_range = dataset.kind == data.IMAGES or config.data.binarization != 'none'
  for name, values, _ in data.checked_values(dataset, config.data.binarization):
    finite = np.all(np.isfinite(values))
    if not finite or (in_unit_range and (values.min() < 0 or values.max() > 1)):
      found = 'non-finite values' if not finite else f'[{values.min()}, {values.max()}]'
      why = ('must be finite and in [0, 1] (binarisation reads them as probabilities, the '
             'likelihoods as intensities)' if in_unit_range else 'must be finite')
      out_of_range.append(f'{dataset.name} {name} {dataset.kind} {why}; found {found}.')
  return out_of_range or registries.data_problems(config, dataset)


def evaluator_problems(config) -> list[str]:
  """What is wrong with the options of the evaluators in `config.evals` (after
  `experiments.evaluate --options` changed them)."""
  unknown = _unknown_evaluators(config)
  if unknown:
    return unknown
  found = [problem for problem in registries.value_problems(config)
           if problem.startswith('evals.')]
  return found + [problem for component in registries.chosen(config)
                  if component.kind == 'evaluator'
                  for check in component.checks for problem in check(config)]
