"""The optax optimizer a config describes."""

from __future__ import annotations

import ml_collections
import optax

OPTIMIZERS = ('adam', 'adamw')


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`config` is the `optimizer` block: name, learning_rate, b1, b2, eps, weight_decay,
  grad_clip_norm (0 disables clipping)."""
  if config.name == 'adam':
    optimizer = optax.adam(config.learning_rate, b1=config.b1, b2=config.b2, eps=config.eps)
  elif config.name == 'adamw':
    optimizer = optax.adamw(config.learning_rate, b1=config.b1, b2=config.b2, eps=config.eps,
                            weight_decay=config.weight_decay)
  else:
    raise ValueError(f'Unknown optimizer {config.name!r}; choose one of {OPTIMIZERS}.')
  if config.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
  return optimizer
