"""The training loop: `train_and_evaluate(config, workdir)` and its vectorised form
`train_and_evaluate_group(configs, workdirs)`.

The loop schedules: it logs, evaluates, checkpoints and stops. How steps are executed —
device-resident scans or host-fed steps, one run or a vectorised group of runs that differ only
in values (seed, optimizer numbers, β, ...) — is a runner's business (`vae_jax.runners`); the
steps themselves are in `vae_jax.steps`. Each run of a group keeps its own workdir, metrics and
checkpoints. With several devices, each batch is sharded over a 'batch' mesh axis and
parameters are replicated: the same code runs on 1 or N devices (and N hosts, see
`experiments.train`).
"""

from __future__ import annotations

import copy
import functools
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from vae_jax import (checkpointing, config_checks, data, early_stopping, evaluators, images,
                     metric_writers, models, optimizers, options, progress, registries, runners,
                     steps, streaming, workdir_lock)
from vae_jax.errors import TrainingInterrupted, UserError
from vae_jax.options import OPERATIONAL, SWEEPABLE, Option


class NonFiniteTrainingError(UserError, FloatingPointError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class DivergenceError(UserError, FloatingPointError):
  """The loss rose far above its first logged value (`divergence_factor`)."""


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
  dataset = data.load_dataset(config.data, stream_train=config.input_pipeline == 'grain')
  config_checks.validate_config_for_data(config, dataset)
  schedule = _Schedule(config, len(dataset.train))
  model = models.build_model(config.model, dataset.data_shape)
  settings = steps.StepSettings.from_config(config, model)
  jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *dataset.data_shape)))  # shapes
  with workdir_lock.hold(workdirs if main_process else []):
    if main_process:  # checked again: the workdir may have changed before it was locked
      _check_workdir_configs(configs, workdirs, allow_config_change, defaults, announce=True)
      for run_config, workdir in zip(configs, workdirs):
        checkpointing.save_config(run_config, workdir)
    return _train_group(configs, workdirs, dataset, model, settings, schedule)


def _with_resolved_data_location(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  resolved = copy.deepcopy(config)
  resolved.data = data.with_resolved_location(config.data)
  return resolved


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


def _train_group(configs, workdirs, dataset, model, settings, schedule) -> list[steps.TrainState]:
  config = configs[0]
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('batch',))
  log_names = ([os.path.basename(os.path.normpath(w)) for w in workdirs] if len(workdirs) > 1
               else [None])
  runs = [_Run.create(run_config, workdir, dataset, model, schedule, mesh, log_name)
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
  loop = _Loop(config, runs, dataset, model, settings, schedule, mesh)
  try:
    with _StopRequests() as stop_requests:
      loop.run(initial_steps.pop() if initial_steps else None, stop_requests)
  finally:
    for run in runs:
      run.close()
  return [run.state for run in runs]


class _Schedule:
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


class _Run:
  """One run's own pieces: config, workdir, keys, hyperparameters, checkpoints, writer, state."""

  def __init__(self, config, workdir, keys, hyperparams, checkpoints, state, log_name=None,
               stopping_criterion=None):
    self.config, self.workdir, self.keys = config, workdir, keys
    self.hyperparams, self.checkpoints, self.state = hyperparams, checkpoints, state
    self.writer = metric_writers.MetricWriter(workdir, resume_step=int(state.step),
                                              enabled=jax.process_index() == 0, name=log_name)
    self.log_name = log_name or workdir
    # Early stopping: the record is replayed from the metrics the run logged up to its
    # checkpoint (the writer has just dropped any later ones), so it resumes exactly.
    self.criterion, self.best_checkpoints = stopping_criterion, None
    self.stopping = early_stopping.Record()
    if stopping_criterion is not None:
      if int(state.step):
        self.stopping = early_stopping.replay(
            stopping_criterion, metric_writers.read_metrics(workdir), int(state.step))
      self.best_checkpoints = checkpointing.create_checkpoint_manager(
          workdir, max_to_keep=1, folder=checkpointing.BEST_CHECKPOINT_DIRNAME)
      for later in [s for s in self.best_checkpoints.all_steps() if s > int(state.step)]:
        # Written by the stretch a killed run lost; the resumed run replays it (and saves again).
        logging.info('%s: removing the best checkpoint at step %d, after the resumed step %d.',
                     workdir, later, int(state.step))
        self.best_checkpoints.delete(later)
    if not int(state.step):
      self.writer.write_text(0, 'config', f'```\n{config}\n```')
    # The divergence check's reference: the loss at step 0, logged once as train/initial_loss
    # (None until then; workdirs from before it existed fall back on their first logged loss).
    self.initial_loss = None
    if int(state.step):
      self.initial_loss = next((value for value in (
          metric_writers.first_value(workdir, name) for name in ('train/initial_loss', 'train/loss'))
          if value is not None), None)

  @classmethod
  def create(cls, config, workdir, dataset, model, schedule, mesh, log_name=None) -> _Run:
    keys = steps.RunKeys.from_seed(config.seed)
    optimizer = optimizers.create_optimizer(config.optimizer, schedule.num_train_steps)
    state = steps.create_train_state(model, optimizer, dataset.data_shape, keys.init)
    if config.model.likelihood.output_bias_init == 'data_mean_logit':
      params = models.with_data_mean_output_bias(state.params,
                                                 data.mean_image(dataset.train))
      state = state.replace(params=params, opt_state=optimizer.init(params))
    # Replicated over the mesh before restoring: orbax then restores straight into that
    # sharding (with several processes, a restored array on one device cannot be moved there).
    replicated = NamedSharding(mesh, PartitionSpec())
    state = jax.device_put(state, replicated)
    checkpoints = checkpointing.create_training_checkpoint_manager(workdir,
                                                                  config.checkpoints_to_keep)
    restored = checkpointing.restore_latest_readable(checkpoints, state, workdir)
    if restored is not None:
      # The optimizer's numbers follow the config, not the checkpoint (--allow_config_change).
      state = jax.device_put(restored.replace(opt_state=optimizers.with_config_hyperparams(
          restored.opt_state, config.optimizer)), replicated)
      logging.info('%s: resumed from the checkpoint at step %d.', workdir, int(state.step))
    hyperparams = steps.LossHyperparams.from_config(config, schedule.steps_per_epoch)
    criterion = early_stopping.Criterion.from_config(config, schedule.steps_per_epoch)
    return cls(config, workdir, keys, hyperparams, checkpoints, state, log_name, criterion)

  def save(self, step: int, data_iterator=None) -> None:
    """Checkpoints the state at `step`, and the data iterator (grain) that yields step `step`'s
    batch next."""
    checkpointing.save_training_checkpoint(self.checkpoints, step, self.state, data_iterator)

  def restore_data_iterator(self, data_iterator) -> None:
    """Moves a grain iterator to this run's step: restored from the checkpoint the state came
    from, or (a checkpoint saved by a run fed another way) positioned at the step."""
    step = int(self.state.step)
    if not step:
      return
    if not checkpointing.restore_data_iterator(self.checkpoints, step, data_iterator):
      logging.warning('%s: the checkpoint at step %d holds no data iterator (it was saved by a '
                      'run fed another way); streaming from step %d of the grain order.',
                      self.log_name, step, step)
      streaming.set_next_step(data_iterator, step)
    if streaming.next_step(data_iterator) != step:
      raise checkpointing.CheckpointError(
          f'{self.workdir}: the data iterator saved at step {step} is at step '
          f'{streaming.next_step(data_iterator)}. Resume with the batch_size and dataset the '
          'run was trained with.')

  def save_best(self, step: int) -> None:
    """The state at `step` as the best checkpoint (the one before it is deleted)."""
    self.best_checkpoints.save(step, args=ocp.args.StandardSave(self.state))

  def record_evaluation(self, step: int, metrics: dict[str, float]) -> None:
    """Updates the early-stopping record with the evaluation at `step`: keeps the checkpoint of
    a new best, and says when the run stops."""
    name = self.criterion.metric
    if name not in metrics:
      raise config_checks.ConfigError(
          f'early_stopping.metric={name!r} is not among the metrics of the evaluation at step '
          f'{step}: {sorted(metrics)}. Choose one of them.')
    previous = self.stopping
    self.stopping = early_stopping.update(previous, self.criterion, step, metrics[name])
    if self.stopping.best_step == step and previous.best_step != step:
      self.save_best(step)
    if self.stopping.stopped:
      logging.info('%s: stopped early at step %d: %s has not improved on %.6g (step %d) for '
                   'more than %d steps. The best checkpoint is in %s.', self.log_name, step,
                   name, self.stopping.best_value, self.stopping.best_step,
                   self.criterion.patience_steps,
                   os.path.join(self.workdir, checkpointing.BEST_CHECKPOINT_DIRNAME))
      self.writer.write_scalars(step, {'early_stopping/best_step': self.stopping.best_step,
                                       'early_stopping/best_value': self.stopping.best_value})

  def close(self) -> None:
    for manager in (self.checkpoints, self.best_checkpoints):
      if manager is not None:
        manager.wait_until_finished()
        manager.close()
    self.writer.close()


class _Loop:
  """Steps, logs, evaluates and checkpoints a group of runs (vmapped when there are several)."""

  def __init__(self, config, runs, dataset, model, settings, schedule, mesh):
    self.config, self.runs, self.dataset, self.model = config, runs, dataset, model
    self.schedule, self.mesh = schedule, mesh
    self.vectorised = len(runs) > 1
    optimizer = optimizers.create_optimizer(config.optimizer, schedule.num_train_steps)
    step_fn = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                settings=settings)
    self.runner = runners.create(config, dataset, schedule, mesh, step_fn,
                                 [run.keys for run in runs], [run.hyperparams for run in runs],
                                 self._group_execution())
    # Built once for the group: each is compiled once, whatever the number of runs.
    self.evaluators = evaluators.create(model, config, dataset, during_training=True)
    # Streamed runs save and restore the grain iterator with their state.
    self.data_iterators = getattr(self.runner, 'data_iterators', [None] * len(runs))
    for run, data_iterator in zip(runs, self.data_iterators):
      if data_iterator is not None and not run.stopping.stopped:
        run.restore_data_iterator(data_iterator)

  def _group_execution(self) -> str:
    """How the group's runs are applied in one program: `config.sweep_execution` ('auto' is
    settled by timing when training starts, `_settle_execution`)."""
    if self.config.sweep_execution == 'auto' and jax.process_count() > 1:
      # Each process would time its own program and might choose differently.
      logging.info('sweep_execution=auto: vmap (not timed with several processes).')
      return 'vmap'
    return self.config.sweep_execution

  def _settle_execution(self, state, step: int) -> None:
    if self.runner.execution != 'auto':
      return
    seconds = self.runner.choose_execution(state, step)
    logging.info('A group of %d runs on %s, one training call (as training makes it): vmapped '
                 '%.3g s, looped (lax.map) %.3g s; training them %s (sweep_execution=auto).',
                 len(self.runs), jax.devices()[0].device_kind, seconds['vmap'], seconds['map'],
                 'vmapped' if self.runner.execution == 'vmap' else 'looped')

  def _active(self) -> list[int]:
    """The runs still training: not stopped early. A stopped run's slice of a vectorised
    group's state goes on being computed (the group trains until every run has stopped), but
    it is never handed back, logged, evaluated or saved: the run stays as it stopped."""
    return [index for index, run in enumerate(self.runs) if not run.stopping.stopped]

  def run(self, initial_step: int | None, stop_requests: _StopRequests) -> None:
    schedule, runs = self.schedule, self.runs
    if initial_step is None:
      logging.info('Nothing to train: every run stopped early (%s).', ', '.join(
          f'{run.log_name} at step {run.stopping.stopped_step}, best at step '
          f'{run.stopping.best_step}' for run in runs))
      return
    state = runners.stack([run.state for run in runs], self.vectorised)
    self._settle_execution(state, initial_step)
    progress = ProgressReporter(schedule.num_train_steps, initial_step)
    pending_metrics, step = [], initial_step
    if step == schedule.num_train_steps:
      logging.info('Nothing to train: the checkpoint is at the final step %d.', step)
    while step < schedule.num_train_steps and self._active():
      state, metrics, step = self.runner(state, step, schedule.next_stop(step))
      pending_metrics.append(metrics)
      self._check_finite(state, metrics, step)
      interrupted = stop_requests.signal_number is not None
      if not (schedule.is_log(step) or schedule.is_checkpoint(step) or interrupted):
        continue
      active = self._active()
      for index in active:  # hand each run its own state
        runs[index].state = (jax.tree.map(lambda x, i=index: x[i], state) if self.vectorised
                             else state)
      if interrupted:
        for index in active:
          runs[index].save(step, self.data_iterators[index])
        raise TrainingInterrupted(step, stop_requests.signal_number)
      if schedule.is_log(step):
        self._write_train_metrics(step, pending_metrics, progress, active)
        pending_metrics = []
      if schedule.is_eval(step):
        for index in active:
          metrics = self._evaluate(runs[index], step)
          if runs[index].criterion is not None:
            runs[index].record_evaluation(step, metrics)
      if schedule.is_checkpoint(step):
        for index in active:
          runs[index].save(step, self.data_iterators[index])

  def _check_finite(self, state, metrics, step: int) -> None:
    """Raises once `max_consecutive_nonfinite_steps` updates in a row were skipped (checked
    after every compiled call, i.e. every `steps_per_call` steps at most). Skipped updates leave
    the parameters as they were, so the last checkpoint holds the last good state."""
    limit = self.config.max_consecutive_nonfinite_steps
    streaks = np.atleast_1d(np.asarray(state.consecutive_skipped_steps))
    active = self._active()
    if streaks[active].max() < limit:
      return
    run = active[int(streaks[active].argmax())]
    last = lambda name: np.asarray(metrics[name]).reshape(len(streaks), -1)[run][-1]
    threshold = self.config.optimizer.skip_threshold
    if not last('loss_is_finite'):
      cause = 'had a non-finite loss'
    elif not np.isfinite(last('grad_norm')):
      cause = 'had a non-finite gradient'
    else:
      cause = (f'had a gradient norm above optimizer.skip_threshold={threshold:g} (the last '
               f'{last("grad_norm"):.4g}; or raise the threshold)')
    raise NonFiniteTrainingError(
        f'{self.runs[run].workdir}: training stopped at step {step}: the last {streaks[run]} '
        f'steps (from step {step - streaks[run] + 1}) {cause}, and their '
        f'updates were skipped (max_consecutive_nonfinite_steps={limit}). '
        f'{_last_checkpoint_sentence(self.runs[run], "holds the last good state")} Lower '
        'optimizer.learning_rate, set '
        'optimizer.grad_clip_norm, or check the data.')

  def _check_divergence(self, run: _Run, step: int, name: str, loss: float) -> None:
    """Raises `DivergenceError` when `loss` (a training loss, or a negative ELBO) exceeds the
    run's loss at step 0 by `divergence_factor` times its magnitude."""
    factor = self.config.divergence_factor
    if not factor or run.initial_loss is None or not np.isfinite([run.initial_loss, loss]).all():
      return  # non-finite losses are the skipped-update counter's business
    limit = run.initial_loss + factor * max(abs(run.initial_loss), 1.0)
    if loss > limit:
      raise DivergenceError(
          f'{run.workdir}: the run diverged: {name} {loss:.4g} at step {step} exceeds the loss '
          f'at step 0, {run.initial_loss:.4g}, by more than divergence_factor={factor:g} times '
          f'its size. Training stopped there, without checkpointing. '
          f'{_last_checkpoint_sentence(run, "is the last one saved")} Lower '
          'optimizer.learning_rate or set '
          'optimizer.grad_clip_norm (divergence_factor=0 disables this check).')

  def _write_train_metrics(self, step, pending_metrics, progress, active) -> None:
    # Each leaf is [steps] (one run) or [runs, steps]: the mean over the steps since the last log.
    means = jax.device_get(jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=-1).mean(-1),
                                        *pending_metrics))
    first_losses = np.atleast_1d(jax.device_get(pending_metrics[0]['loss'][..., 0]))
    timing = progress.report(step, examples_per_step=self.config.batch_size * len(self.runs))
    for index in active:
      run = self.runs[index]
      summary = {f'train/{name}': float(value[index] if self.vectorised else value)
                 for name, value in means.items()}
      summary.update(timing, epoch=step / self.schedule.steps_per_epoch)
      if run.initial_loss is None:  # the first log of a new run: its first step is step 0
        run.initial_loss = summary['train/initial_loss'] = float(first_losses[index])
      run.writer.write_scalars(step, summary)
      self._check_divergence(run, step, 'the mean training loss', summary['train/loss'])

  def _evaluate(self, run: _Run, step: int) -> dict[str, float]:
    """Runs the training-time evaluators of `config.evals` on each evaluation split, writes
    their numbers as `<split>/...` metrics and their images under `WORKDIR/images/`, and
    returns the numbers."""
    params = optimizers.evaluation_params(run.state.params, run.state.opt_state)
    written = {}
    for split_name, split in self.dataset.eval_splits().items():
      metrics = {}
      for name, evaluator in self.evaluators.items():
        splits = run.config.evals[name].get('splits')
        if splits is not None and split_name not in splits:
          continue
        with progress.tracking(f'{split_name}/{name}'):
          result = evaluator(params, split, run.keys.for_evaluator(evaluator))
        metrics.update(evaluators.scalars(result))
        _write_image_grids(run, step, split_name, evaluators.images_of(result))
      split_metrics = {f'{split_name}/{name}': value for name, value in metrics.items()}
      run.writer.write_scalars(step, split_metrics)
      written.update(split_metrics)
      if 'elbo' in metrics:
        self._check_divergence(run, step, f'the negative {split_name} ELBO', -metrics['elbo'])
    return written


def _last_checkpoint_sentence(run: _Run, what_it_is: str) -> str:
  latest = run.checkpoints.latest_step()
  if latest is None:
    return 'No checkpoint was written before that.'
  return f'The checkpoint at step {latest} {what_it_is}.'


class _StopRequests:
  """Records SIGTERM and SIGINT instead of dying at once, so that the loop can checkpoint
  first (a preempted job then resumes where it stopped). Installed only in the main thread."""

  def __init__(self):
    self.signal_number, self._previous = None, {}

  def __enter__(self) -> _StopRequests:
    if threading.current_thread() is threading.main_thread():
      for signal_number in (signal.SIGTERM, signal.SIGINT):
        self._previous[signal_number] = signal.signal(signal_number, self._record)
    return self

  def _record(self, signal_number, frame) -> None:
    del frame
    logging.warning('Received %s: checkpointing after the current steps, then stopping.',
                    signal.Signals(signal_number).name)
    self.signal_number = signal_number

  def __exit__(self, *exc_info) -> None:
    for signal_number, handler in self._previous.items():
      signal.signal(signal_number, handler)


def _write_image_grids(run: _Run, step: int, split_name: str, grids: dict) -> None:
  """Writes image grids as PNG files under `WORKDIR/images/` (`<name>_<step>.png` for the test
  split, `<split>_<name>_<step>.png` for others) and as TensorBoard images."""
  if not grids:
    return
  prefix = '' if split_name == 'test' else f'{split_name}_'
  if jax.process_index() == 0:
    for name, grid in grids.items():
      images.save_png(os.path.join(run.workdir, 'images', f'{prefix}{name}_{step:08d}.png'), grid)
  run.writer.write_images(step, {f'{prefix}{name}': grid for name, grid in grids.items()})


class ProgressReporter:
  """Step rate and time to completion over the interval since the last report."""

  def __init__(self, num_train_steps: int, initial_step: int):
    self._num_train_steps = num_train_steps
    self._last_step = initial_step
    self._last_time = time.perf_counter()

  def report(self, step: int, *, examples_per_step: int) -> dict[str, float]:
    """Logs progress; returns the interval's `steps_per_sec`, `examples_per_sec` and
    `interval_seconds` (wall time since the last report, evaluations included)."""
    now = time.perf_counter()
    interval_seconds = max(now - self._last_time, 1e-9)
    steps_per_sec = (step - self._last_step) / interval_seconds
    self._last_step, self._last_time = step, now
    eta_seconds = (self._num_train_steps - step) / max(steps_per_sec, 1e-9)
    logging.info('Step %d/%d (%.1f%%), %.1f steps/s, ETA %s.', step, self._num_train_steps,
                 100 * step / max(self._num_train_steps, 1), steps_per_sec,
                 progress.format_duration(eta_seconds))
    return {'steps_per_sec': steps_per_sec, 'examples_per_sec': steps_per_sec * examples_per_step,
            'interval_seconds': interval_seconds}



def _engine_problems(config):
  num_devices = jax.device_count()
  if config.batch_size % num_devices:
    yield (f'batch_size={config.batch_size} must be divisible by the {num_devices} devices that '
           'share each batch.')


# The run-level options: what the engine reads.
registries.add(registries.Component('run', 'engine', None, {
    'seed': Option(0, 'every random stream of the run (init, data order, noise) derives from it',
                   traits=frozenset({SWEEPABLE})),
    'batch_size': Option(100, 'per step, over all devices (each gets batch_size / device count)',
                         options.at_least(1)),
    'num_epochs': Option(10, 'passes over the training split (the remainder batch is dropped)',
                         options.non_negative),
    'imports': Option((), 'modules to import before building: they register components from '
                      "outside vae_jax (e.g. ('my_lab.prior',); docs/extending.md)"),
    'input_pipeline': Option(
        'device', "'device': the training split lives on the accelerator, steps_per_call steps "
        "per compiled call; 'host': the host feeds every batch; 'grain': grain streams the "
        'batches from the records on disk (its own batch order)',
        lambda value: options.one_of(*runners.INPUT_PIPELINES)(value),
        resumable_between=(frozenset({'device', 'host'}),)),  # the same batches
    **options.at(
        '', traits=(OPERATIONAL,),
        steps_per_call=Option(100, "'device': steps per compiled call (single steps up to "
                              'log/eval points)', options.at_least(1)),
        sweep_execution=Option('auto', "a group of runs (experiments.sweep) runs 'vmap'ped, "
                               "'map'ped (looped inside one program), or 'auto': both timed "
                               'when the group starts, the faster kept',
                               lambda value: options.one_of(*runners.EXECUTIONS)(value)),
        eval_every_epochs=Option(1, 'config.evals marked during_training, and a checkpoint',
                                 options.at_least(1)),
        eval_batch_size=Option(1000, 'examples per evaluation batch (does not change the '
                               'results)', options.at_least(1)),
        log_every_steps=Option(100, 'training metrics (means since the last log) and progress',
                               options.at_least(1)),
        checkpoint_every_steps=Option(1000, 'also at every evaluation and at the end',
                                      options.at_least(1)),
        checkpoints_to_keep=Option(3, 'the latest ones; older checkpoints are deleted',
                                   options.at_least(1)),
        max_consecutive_nonfinite_steps=Option(
            20, 'updates with a non-finite loss or gradient are skipped and counted; this many '
            'in a row stop the run with an error', options.at_least(1)),
        divergence_factor=Option(
            10.0, 'the run stops with an error once its mean training loss, or its negative '
            'test ELBO, exceeds the loss at step 0, L0, by this many times max(|L0|, 1); 0: '
            'never', options.non_negative)),
    # The published result this config reproduces, shown beside ours by
    # scripts/results_table.py.
    **options.at(
        'paper', traits=(OPERATIONAL,),
        source=Option('', "e.g. 'Burda et al. 2015, Table 1'"),
        test_log_likelihood=Option(config_dict.placeholder(float),
                                   'nats (negative: -NLL)'),
        active_units=Option(config_dict.placeholder(str), "as printed, e.g. '19' or '16+5'"),
        binarization=Option(config_dict.placeholder(str),
                            "the data the published number is on: 'dynamic', or 'static' (the "
                            'fixed binarisation of Larochelle & Murray)'),
        num_samples=Option(config_dict.placeholder(int),
                           'k of the published importance-sampled log p(x)')),
}, (_engine_problems,)))
