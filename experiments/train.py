r"""Trains a VAE: `python -m experiments.train --config=configs/mnist.py [--workdir=DIR]`.

Every setting is in the config (override any key with `--config.KEY=VALUE`); everything the run
writes goes to the workdir (default: runs/<config>[-<variant>] below the current directory).
Rerunning the same command resumes from the latest checkpoint.
"""

import sys

import jax
from absl import flags, logging
from ml_collections import config_flags

from experiments import launch
from vae_jax import training

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file, optionally with a variant: configs/mnist.py:conv.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where checkpoints, metrics and images go (default: runs/<config>[-<variant>] '
    'below the current directory; resumed when it holds a run).')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume a workdir whose saved config differs in values that '
    'keep the state\'s shapes (e.g. num_epochs, a learning rate). Shape changes are refused.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-host: call jax.distributed.initialize() first (it reads the '
    'coordinator and process ids from the cluster environment: TPU pods, SLURM, or the '
    'JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables).')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  config = _CONFIG.value
  launch.set_data_location(config.data, launch.DATA_DIR.value, launch.DATA_PATH.value)
  workdir = _WORKDIR.value or launch.default_workdir(
      config_flags.get_config_filename(flags.FLAGS['config']))
  logging.info('Workdir: %s', workdir)
  if not _WORKDIR.value:
    print(f'Workdir: {workdir} (the default for this config; --workdir chooses another)',
          flush=True)
  try:
    training.train_and_evaluate(config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except training.TrainingInterrupted as interrupted:
    logging.warning('%s', interrupted)
    sys.exit(128 + interrupted.signal_number)


if __name__ == '__main__':
  launch.run(main)
