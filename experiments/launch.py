"""What every launcher does before its work."""

import logging as python_logging

import jax
from absl import app, logging

from configs import default
from vae_jax import checkpointing, config_checks, data, models, optimizers, steps


def start(argv: list[str]) -> None:
  """Refuses stray positional arguments (a flag missing its `--`, say) and quiets orbax."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  quiet_orbax_info_logs()


def quiet_orbax_info_logs() -> None:
  """Orbax logs each checkpoint step by step at INFO; keep its warnings and errors only."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)


def load_trained(workdir: str, step: int | None = None):
  """A trained workdir's config (with defaults for keys added since), its data, its model and
  the train state of checkpoint `step` (default: the latest)."""
  config = checkpointing.load_config(workdir, defaults=default.get_config())
  dataset = data.load_dataset(config.data)
  config_checks.validate_config_for_data(config, dataset)
  model = models.build_model(config.model, dataset.data_shape)
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps=1)
  target = steps.create_train_state(model, optimizer, dataset.data_shape, jax.random.key(0))
  return config, dataset, model, checkpointing.restore_state(workdir, target, step)
