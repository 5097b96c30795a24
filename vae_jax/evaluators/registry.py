"""Evaluators by name, as `config.evals` lists them (the habit of big_vision's `evaluators/`).

An evaluator is built once per run by `create(model, config, dataset)` — or not at all where
the model lacks what it needs (`None`: exact enumeration of a Gaussian latent) — and is then
called on a split as `evaluator(params, split, rng) -> result`. A result is a dict of numbers
(written as metrics `<split>/<name>`), nested dicts of numbers (`<split>/<key>/<name>`),
lists (kept in the JSON report only) and uint8 images `[H, W, C]` (written as PNG files and
TensorBoard images). The training loop and `experiments.evaluate` run the same evaluators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import jax
import numpy as np

from vae_jax import registries


class Evaluator(Protocol):

  def __call__(self, params, split, rng: jax.Array) -> dict: ...


EVALUATORS: dict[str, Callable] = {}


def register(name: str):
  """Registers `create(model, config, dataset) -> Evaluator | None` under `name`."""
  return registries.registrar(EVALUATORS, 'Evaluator', name)


def create(model, config, dataset, *, names=None,
           during_training: bool = False) -> dict[str, Evaluator]:
  """The evaluators of `config.evals` that apply to `model`: those named in `names`; with
  `during_training`, those whose `during_training` option is set; else all but those whose
  `by_default` option is False (costly ones, run when named)."""
  chosen = {}
  # The ELBO first (the headline of every log line and report), then the config's order.
  for name, options in sorted(config.evals.items(), key=lambda item: item[0] != 'elbo'):
    if (names is not None and name not in names) or (
        during_training and not options.during_training) or (
            names is None and not during_training and not options.get('by_default', True)):
      continue
    evaluator = EVALUATORS[name](model, config, dataset)
    if evaluator is not None:
      chosen[name] = evaluator
  return chosen


def scalars(result: dict, prefix: str = '') -> dict[str, float]:
  """The numbers of a result (nested dicts joined with '/'), for metric writers."""
  flat = {}
  for key, value in result.items():
    if isinstance(value, dict):
      flat.update(scalars(value, f'{prefix}{key}/'))
    elif isinstance(value, (int, float, np.number)):
      flat[f'{prefix}{key}'] = value.item() if isinstance(value, np.number) else value
  return flat


def images_of(result: dict) -> dict[str, np.ndarray]:
  """The uint8 images `[H, W, C]` of a result."""
  return {key: value for key, value in result.items()
          if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3}
