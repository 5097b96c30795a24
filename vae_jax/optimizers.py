"""The optax optimizer and learning-rate schedule a config describes.

Numeric hyperparameters (learning rate, b1, b2, eps, weight decay) are injected into the
optimizer state (`optax.inject_hyperparams`): runs that differ only in them share one compiled
update, and a vectorised sweep trains them together with `vmap` over stacked states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

OPTIMIZERS = ('adam', 'adamw', 'adagrad')
SCHEDULES = ('constant', 'iwae')
IWAE_NUM_STAGES = 8  # stages i = 0..7 of 3^i epochs: 3,280 epochs in all
# Optimizer keys that live in the optimizer state as arrays (sweepable without recompiling).
INJECTED_HYPERPARAMETERS = ('learning_rate', 'b1', 'b2', 'eps', 'weight_decay')
_INJECTED_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def create_optimizer(config: ml_collections.ConfigDict,
                     num_train_steps: int) -> optax.GradientTransformation:
  """`config` is the `optimizer` block: name, learning_rate, schedule, b1, b2, eps,
  weight_decay, grad_clip_norm (0 disables clipping).

  `weight_decay` is decoupled for 'adamw'; for 'adam' and 'adagrad' it adds `weight_decay·θ` to
  the gradient, i.e. an L2 penalty — with weight_decay = 1/N_train, the per-example share of a
  N(0, I) prior on the weights (Kingma & Welling 2013).
  """
  if config.name not in OPTIMIZERS:
    raise ValueError(f'Unknown optimizer {config.name!r}; choose one of {OPTIMIZERS}.')
  multiplier = learning_rate_multiplier(config.schedule, num_train_steps)

  def make_optimizer(learning_rate, b1, b2, eps, weight_decay):
    schedule = lambda count: learning_rate * multiplier(count)
    if config.name == 'adamw':
      return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    base = (optax.adam(schedule, b1=b1, b2=b2, eps=eps) if config.name == 'adam'
            else optax.adagrad(schedule, eps=eps))
    return optax.chain(optax.add_decayed_weights(weight_decay), base)

  optimizer = optax.inject_hyperparams(make_optimizer)(
      **{name: config[name] for name in INJECTED_HYPERPARAMETERS})
  if config.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  return optimizer


def with_config_hyperparams(opt_state, config: ml_collections.ConfigDict):
  """`opt_state` with its injected hyperparameters set to the config's (`config`: the
  `optimizer` block). A restored state carries the values it was saved with; a resume that
  changes them (`--allow_config_change`) must train with the new ones, not the saved ones."""

  def reset(node):
    if not isinstance(node, _INJECTED_STATES):
      return node
    hyperparams = {name: jnp.asarray(config[name], dtype=jnp.asarray(value).dtype)
                   for name, value in node.hyperparams.items()}
    return node._replace(hyperparams=hyperparams)

  return jax.tree.map(reset, opt_state,
                      is_leaf=lambda node: isinstance(node, _INJECTED_STATES))


def learning_rate_multiplier(schedule: str, num_train_steps: int):
  """The learning rate's factor at each step: 1 throughout for 'constant'; for 'iwae',
  Burda et al.'s 8 stages, stage i lasting a 3^i/3280 share of training at `10^(−i/7)`. With
  3,280 epochs of training that is the paper's schedule exactly; with fewer, the same schedule
  compressed in proportion."""
  if schedule == 'constant':
    return optax.constant_schedule(1.0)
  if schedule == 'iwae':
    scales = {}
    for boundary in iwae_stage_boundaries(num_train_steps):  # very short runs merge stages
      scales[int(boundary)] = scales.get(int(boundary), 1.0) * 10 ** (-1 / 7)
    return optax.piecewise_constant_schedule(1.0, scales)
  raise ValueError(f'Unknown schedule {schedule!r}; choose one of {SCHEDULES}.')


def learning_rate_schedule(config: ml_collections.ConfigDict, num_train_steps: int):
  """The learning rate at each step."""
  multiplier = learning_rate_multiplier(config.schedule, num_train_steps)
  return lambda count: config.learning_rate * multiplier(count)


def iwae_stage_boundaries(num_train_steps: int) -> np.ndarray:
  """The steps at which stages 1..7 of the IWAE schedule begin."""
  stage_lengths = 3.0 ** np.arange(IWAE_NUM_STAGES)
  starts = np.cumsum(stage_lengths)[:-1] / stage_lengths.sum()
  return np.round(starts * num_train_steps).astype(int)
