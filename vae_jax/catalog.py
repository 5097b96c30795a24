"""Every built-in component, registered: importing this module imports each module that
registers one (`vae_jax.registries`), so that the default config and the checks see them all.
"""

from __future__ import annotations

import ml_collections

# Each import registers the module's components (families, likelihoods, priors, evaluators,
# optimizers, schedules, and the run-level parts: engine, data, streaming, early stopping).
from vae_jax import (data, discretized_logistic, evaluators, likelihoods, models,  # pylint: disable=unused-import
                     objectives, optimizers, priors, registries)
from vae_jax.engine import early_stopping, run_options, streaming  # pylint: disable=unused-import


def default_config(imports: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """Every registered option at its default, after importing `imports` (modules outside
  vae_jax that register components of their own); `config.imports` records them."""
  registries.import_modules(imports)
  config = registries.default_config()
  config.imports = tuple(imports)
  return config
