r"""Trains a VAE: `python -m experiments.train --config=configs/mnist.py [--workdir=DIR]`.

Every setting is in the config (override any key with `--config.KEY=VALUE`); everything the run
writes goes to the workdir (default: runs/<config>[-<variant>] below the current directory).
Rerunning the same command resumes from the latest checkpoint.
"""

import jax
from absl import flags, logging
from ml_collections import config_flags

from configs import default
from experiments import distributed, launch
from vae_jax.engine import training

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
    'distributed', False, 'Multi-process (multi-host): call jax.distributed.initialize() first. '
    'On a cluster JAX detects (SLURM, TPU pods, ...) nothing else is needed; elsewhere give '
    '--coordinator_address, --num_processes and --process_id to every process.')
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, 'With --distributed: host:port of process 0 (e.g. '
    '127.0.0.1:12345 for processes on one machine). Default: detected from the cluster.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      'With --distributed: the number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   'With --distributed: this process\'s index, from 0.')
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    'heartbeat_timeout_seconds', 100, 'With --distributed: how long the others wait for a '
    'silent process before stopping with an error that names it.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  if _DISTRIBUTED.value:
    # Before anything starts JAX's backend (vae_jax imports none that does).
    distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           _HEARTBEAT_TIMEOUT.value)
  config = launch.with_imports(_CONFIG.value)
  launch.set_data_location(config.data, launch.DATA_DIR.value, launch.DATA_PATH.value)
  workdir = _WORKDIR.value or launch.default_workdir(
      config_flags.get_config_filename(flags.FLAGS['config']))
  logging.info('Workdir: %s', workdir)
  distributed.set_workdir(workdir)
  if not _WORKDIR.value:
    print(f'Workdir: {workdir} (the default for this config; --workdir chooses another)',
          flush=True)
  try:
    training.train_and_evaluate(config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                                defaults=default.get_config(config.imports))
  except jax.errors.JaxRuntimeError as error:
    if jax.process_count() == 1:
      raise
    # A failed collective: another process died or lost its connection.
    distributed.stop_for_lost_process(f'{type(error).__name__}: {str(error).strip()}')


if __name__ == '__main__':
  launch.run(main)
