r"""Trains a VAE: `python -m experiments.train --config=configs/mnist.py --workdir=DIR`.

Every setting is in the config (override any key with `--config.KEY=VALUE`); everything the run
writes goes to the workdir. Rerunning the same command resumes from the latest checkpoint.
"""

import logging as python_logging

from absl import app, flags, logging
from ml_collections import config_flags

from vae_jax import training

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file, optionally with a variant: configs/mnist.py:conv.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and images go.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Orbax logs each checkpoint step by step at INFO; keep its warnings and errors only.
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)
  logging.info('Config:\n%s', _CONFIG.value)
  training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
