"""The optax optimizer and learning-rate schedule a config describes."""

from __future__ import annotations

import ml_collections
import numpy as np
import optax

OPTIMIZERS = ('adam', 'adamw', 'adagrad')
SCHEDULES = ('constant', 'iwae')
IWAE_NUM_STAGES = 8  # stages i = 0..7 of 3^i epochs: 3,280 epochs in all


def create_optimizer(config: ml_collections.ConfigDict,
                     num_train_steps: int) -> optax.GradientTransformation:
  """`config` is the `optimizer` block: name, learning_rate, schedule, b1, b2, eps,
  weight_decay, grad_clip_norm (0 disables clipping).

  `weight_decay` is decoupled for 'adamw'; for 'adam' and 'adagrad' it adds `weight_decay·θ` to
  the gradient, i.e. an L2 penalty — with weight_decay = 1/N_train, the per-example share of a
  N(0, I) prior on the weights (Kingma & Welling 2013).
  """
  learning_rate = learning_rate_schedule(config, num_train_steps)
  if config.name == 'adam':
    optimizer = optax.adam(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps)
  elif config.name == 'adamw':
    optimizer = optax.adamw(learning_rate, b1=config.b1, b2=config.b2, eps=config.eps,
                            weight_decay=config.weight_decay)
  elif config.name == 'adagrad':
    optimizer = optax.adagrad(learning_rate, eps=config.eps)
  else:
    raise ValueError(f'Unknown optimizer {config.name!r}; choose one of {OPTIMIZERS}.')
  transforms = []
  if config.grad_clip_norm:
    transforms.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.weight_decay and config.name != 'adamw':
    transforms.append(optax.add_decayed_weights(config.weight_decay))
  return optax.chain(*transforms, optimizer) if transforms else optimizer


def learning_rate_schedule(config: ml_collections.ConfigDict, num_train_steps: int):
  """'constant', or 'iwae': Burda et al.'s 8 stages, stage i lasting a 3^i/3280 share of
  training at `learning_rate · 10^(−i/7)`. With 3,280 epochs of training that is the paper's
  schedule exactly; with fewer, the same schedule compressed in proportion."""
  if config.schedule == 'constant':
    return config.learning_rate
  if config.schedule == 'iwae':
    scales = {}
    for boundary in iwae_stage_boundaries(num_train_steps):  # very short runs merge stages
      scales[int(boundary)] = scales.get(int(boundary), 1.0) * 10 ** (-1 / 7)
    return optax.piecewise_constant_schedule(config.learning_rate, scales)
  raise ValueError(f'Unknown schedule {config.schedule!r}; choose one of {SCHEDULES}.')


def iwae_stage_boundaries(num_train_steps: int) -> np.ndarray:
  """The steps at which stages 1..7 of the IWAE schedule begin."""
  stage_lengths = 3.0 ** np.arange(IWAE_NUM_STAGES)
  starts = np.cumsum(stage_lengths)[:-1] / stage_lengths.sum()
  return np.round(starts * num_train_steps).astype(int)
