r"""Trains a VAE: `python -m experiments.train --config=configs/mnist.py --workdir=DIR`.

Every setting is in the config (override any key with `--config.KEY=VALUE`); everything the run
writes goes to the workdir. Rerunning the same command resumes from the latest checkpoint.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import launch
from vae_jax import training

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file, optionally with a variant: configs/mnist.py:conv.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where checkpoints, metrics and images go.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume a workdir whose saved config differs in values that '
    'keep the state\'s shapes (e.g. num_epochs, a learning rate). Shape changes are refused.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host: call jax.distributed.initialize() first (it reads the '
    'coordinator and process ids from the cluster environment: TPU pods, SLURM, or the '
    'JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  launch.start(argv)
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  logging.info('Config:\n%s', _CONFIG.value)
  try:
    training.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except training.TrainingInterrupted as interrupted:
    logging.warning('%s', interrupted)
    sys.exit(128 + interrupted.signal_number)


if __name__ == '__main__':
  app.run(main)
