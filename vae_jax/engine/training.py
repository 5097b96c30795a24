"""The training loop: `train_and_evaluate(config, workdir)` and its vectorised form
`train_and_evaluate_group(configs, workdirs)`.

The loop schedules: it logs, evaluates, checkpoints and stops. How steps are executed —
device-resident scans or host-fed steps, one run or a vectorised group of runs that differ only
in values (seed, optimizer numbers, β, ...) — is a runner's business (`vae_jax.engine.runners`); the
steps themselves are in `vae_jax.engine.steps`. Each run of a group keeps its own workdir, metrics and
checkpoints. With several devices, each batch is sharded over a 'batch' mesh axis and
parameters are replicated: the same code runs on 1 or N devices (and N hosts, see
`experiments.train`).
"""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from vae_jax import data, evaluators, models, networks, optimizers
from vae_jax.engine import (checkpointing, config_checks, metric_writers, run_options, steps,  # pylint: disable=unused-import
                            workdir_lock)
from vae_jax.engine.loop import (DivergenceError, Loop, NonFiniteTrainingError,  # pylint: disable=unused-import
                                 StalledTrainingError, StopRequests)
from vae_jax.engine.runs import Run
from vae_jax.errors import TrainingInterrupted  # pylint: disable=unused-import


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       defaults: ml_collections.ConfigDict | None = None) -> steps.TrainState:
  """Trains the model `config` describes, writing checkpoints, metrics and images to `workdir`.

  Resumes from the latest readable checkpoint in `workdir` if there is one (see
  `checkpointing.check_config` for which config changes a resume accepts, and how `defaults`,
  the default config, fills in the keys a saved config predates). Everything (config, data,
  shapes) is checked before anything is written to the workdir, which is locked while
  the run trains. Returns the final state. Raises `TrainingInterrupted` after checkpointing on
  SIGTERM/SIGINT, `NonFiniteTrainingError` after `max_consecutive_nonfinite_steps` skipped
  updates in a row, and `DivergenceError` when the loss runs away (`divergence_factor`).
  """
  return train_and_evaluate_group([config], [workdir], allow_config_change=allow_config_change,
                                  defaults=defaults)[0]


def train_and_evaluate_group(configs: list[ml_collections.ConfigDict], workdirs: list[str], *,
                             allow_config_change: bool = False,
                             defaults: ml_collections.ConfigDict | None = None
                             ) -> list[steps.TrainState]:
  """Trains several runs together, vmapped over their stacked states; each run reads and writes
  only its own workdir, exactly as if trained alone. The configs may differ only in values
  that keep the computation's shapes (`config_checks.sweepable_keys()`). Returns the final states.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError('Give one workdir per config (and at least one of each).')
  configs = [_with_resolved_data_location(config) for config in configs]
  for config in configs:
    config_checks.validate_config(config)
  config_checks.check_same_group(configs)
  main_process = jax.process_index() == 0
  if main_process:  # refuse a mismatched workdir before reading any data
    _check_workdir_configs(configs, workdirs, allow_config_change, defaults, announce=False)
  config = configs[0]
  dataset = data.load_dataset(config.data, stream_train=config.input_pipeline == 'grain',
                              standardization=_saved_standardization(workdirs[0]))
  config_checks.validate_config_for_data(config, dataset)
  schedule = Schedule(config, len(dataset.train))
  model = models.build_model(config.model, dataset.data_shape)
  settings = steps.StepSettings.from_config(config, model)
  jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *dataset.data_shape)))  # shapes
  # Built once for the group (each compiled once, whatever the number of runs), and before
  # anything is written: one that breaks its contract is refused first.
  during_training = evaluators.create(model, config, dataset, during_training=True)
  with workdir_lock.hold(workdirs if main_process else []):
    if main_process:  # checked again: the workdir may have changed before it was locked
      _check_workdir_configs(configs, workdirs, allow_config_change, defaults, announce=True)
      for workdir in workdirs:
        _check_something_to_train(workdir, schedule)
        _check_no_earlier_record(workdir, schedule)
      for run_config, workdir in zip(configs, workdirs):
        checkpointing.save_config(run_config, workdir)
        if dataset.standardization is not None:  # evaluation maps numbers back with it
          dataset.standardization.save(workdir)
    return _train_group(configs, workdirs, dataset, model, settings, schedule,
                        during_training)


def _with_resolved_data_location(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  resolved = copy.deepcopy(config)
  resolved.data = data.with_resolved_location(config.data)
  return resolved


def _saved_standardization(workdir: str) -> data.Standardization | None:
  """A resumed run's standardisation of vectors, as fitted when it started."""
  if checkpointing.holds_trained_state(workdir):
    return data.Standardization.load(workdir)
  return None


def _check_workdir_configs(configs, workdirs, allow_config_change: bool, defaults, *,
                           announce: bool) -> None:
  """Refuses to resume a workdir with a config that differs in what was trained. A workdir
  whose config nothing depends on yet (no checkpoint: an earlier launch failed or was stopped
  before its first one) is a new run, whatever its saved config says."""
  for config, workdir in zip(configs, workdirs):
    if checkpointing.holds_trained_state(workdir):
      checkpointing.check_config(config, workdir, defaults=defaults,
                                 allow_changes=allow_config_change, warn=announce)
    elif announce and os.path.exists(os.path.join(workdir, checkpointing.CONFIG_FILENAME)):
      logging.info('%s holds a config but no checkpoint: starting it as a new run.', workdir)


def _check_something_to_train(workdir: str, schedule: Schedule) -> None:
  """Refuses a resume whose schedule ends before its checkpoint (a smaller num_epochs, a
  larger validation split): it would train nothing yet rewrite config.json to describe it."""
  latest = max(checkpointing.step_folders(workdir), default=0)
  if latest > schedule.num_train_steps:
    raise config_checks.ConfigError(
        f'{workdir}: its checkpoint is at step {latest}, past the {schedule.num_train_steps} '
        f'steps this config trains (num_epochs={schedule.num_train_steps // schedule.steps_per_epoch}'
        f' of {schedule.steps_per_epoch} steps): nothing would be trained. Raise '
        'num_epochs to train on, or evaluate the run as it is (python -m experiments.evaluate).')


def _check_no_earlier_record(workdir: str, schedule: Schedule) -> None:
  """Refuses to start a new run over the metrics of an earlier one (its checkpoints were
  removed, or it is another folder's record): a new run would truncate metrics.jsonl. Metrics
  up to the second checkpoint's step are a killed launch's own, redone bitwise, and are
  replaced: saves are asynchronous, so the first checkpoint may still be unfinished when the
  lines up to the second are written (the second save waits for the first to finish)."""
  if (checkpointing.holds_trained_state(workdir)
      or not os.path.exists(os.path.join(workdir, metric_writers.METRICS_FILENAME))):
    return
  checkpoint_steps = [step for step in range(1, schedule.num_train_steps + 1)
                      if schedule.is_checkpoint(step)][:2]
  later = [m['step'] for m in metric_writers.read_metrics(workdir)
           if m.get('step', 0) > checkpoint_steps[-1]]
  if later:
    path = os.path.join(workdir, metric_writers.METRICS_FILENAME)
    raise checkpointing.WorkdirConfigMismatchError(
        f'{path} holds metrics up to step {max(later)} of an earlier run, but {workdir} has no '
        'checkpoint to resume it from: a new run would overwrite that record. Move '
        f'{metric_writers.METRICS_FILENAME} (and images/) elsewhere to start again here, or '
        'train in a new --workdir.')


def _train_group(configs, workdirs, dataset, model, settings, schedule,
                 during_training) -> list[steps.TrainState]:
  config = configs[0]
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('batch',))
  log_names = ([os.path.basename(os.path.normpath(w)) for w in workdirs] if len(workdirs) > 1
               else [None])
  # One optimizer for the group (its runs differ only in the hyperparameters it keeps in each
  # run's state).
  optimizer = optimizers.create_optimizer(config.optimizer, schedule.num_train_steps)
  runs = [Run.create(run_config, workdir, dataset, model, optimizer, schedule, mesh, log_name)
          for run_config, workdir, log_name in zip(configs, workdirs, log_names)]
  logging.info('Data %s: train %d, validation %d, test %d examples of shape %s. %d run(s) of '
               '%d parameters; %d steps (%d epochs of %d steps) on %d device(s), %s-fed.',
               dataset.name, len(dataset.train), len(dataset.validation or ()),
               len(dataset.test), dataset.data_shape, len(runs),
               sum(x.size for x in jax.tree.leaves(runs[0].state.params)),
               schedule.num_train_steps, config.num_epochs, schedule.steps_per_epoch,
               mesh.size, config.input_pipeline)
  # Runs stopped early keep the step they stopped at; the others resume together.
  initial_steps = {int(run.state.step) for run in runs if not run.stopping.stopped}
  if len(initial_steps) > 1:
    raise ValueError(f'The runs were checkpointed at different steps {sorted(initial_steps)}; '
                     'resume them one by one with experiments.train.')
  loop = Loop(config, runs, dataset, model, optimizer, settings, schedule, mesh,
              during_training)
  try:
    with StopRequests() as stop_requests, networks.matmul_precision(
        config.model.matmul_precision):
      loop.run(initial_steps.pop() if initial_steps else None, stop_requests)
  finally:
    for run in runs:
      run.close()
  return [run.state for run in runs]


class Schedule:
  """Steps per epoch, the number of training steps, and when to log, evaluate and save."""

  def __init__(self, config, num_train_examples: int):
    self.steps_per_epoch = num_train_examples // config.batch_size
    self.num_train_steps = config.num_epochs * self.steps_per_epoch
    self.log_every = config.log_every_steps
    self.eval_every = config.eval_every_epochs * self.steps_per_epoch
    self.checkpoint_every = config.checkpoint_every_steps

  def next_stop(self, step: int) -> int:
    """The first step after `step` at which the loop must regain control: an epoch's end (a
    device-resident call stays in one epoch), a log, evaluation or checkpoint, or the end."""
    periods = (self.steps_per_epoch, self.log_every, self.eval_every, self.checkpoint_every)
    return min(self.num_train_steps, *((step // period + 1) * period for period in periods))

  def is_log(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.num_train_steps

  def is_eval(self, step: int) -> bool:
    return step % self.eval_every == 0 or step == self.num_train_steps

  def is_checkpoint(self, step: int) -> bool:
    return step % self.checkpoint_every == 0 or self.is_eval(step)
