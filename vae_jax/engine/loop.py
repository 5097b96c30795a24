"""The training loop's schedule of work: steps (by the runner), logs, evaluations, checkpoints,
the guards that stop a run going wrong (non-finite steps, divergence), and clean stops on
SIGTERM and SIGINT (`StopRequests`)."""

from __future__ import annotations

import functools
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import evaluators, optimizers, progress
from vae_jax.engine import runners, steps
from vae_jax.engine.runs import Run, last_checkpoint_sentence, write_image_grids
from vae_jax.errors import TrainingInterrupted, UserError


class NonFiniteTrainingError(UserError, FloatingPointError):
  """Too many consecutive steps had a non-finite loss or gradient."""


class DivergenceError(UserError, FloatingPointError):
  """The loss rose far above its first logged value (`divergence_factor`)."""


class StalledTrainingError(UserError, RuntimeError):
  """More than `max_skipped_share` of the updates since the last log were skipped."""


class Loop:
  """Steps, logs, evaluates and checkpoints a group of runs (vmapped when there are several)."""

  def __init__(self, config, runs, dataset, model, optimizer, settings, schedule, mesh,
               during_training=None):
    self.config, self.runs, self.dataset, self.model = config, runs, dataset, model
    self.schedule, self.mesh = schedule, mesh
    self.vectorised = len(runs) > 1
    step_fn = functools.partial(steps.train_step, model=model, optimizer=optimizer,
                                settings=settings)
    self.runner = runners.create(config, dataset, schedule, mesh, step_fn,
                                 [run.keys for run in runs], [run.hyperparams for run in runs],
                                 self._group_execution())
    # Built once for the group: each is compiled once, whatever the number of runs.
    self.evaluators = (during_training if during_training is not None else
                       evaluators.create(model, config, dataset, during_training=True))
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

  def run(self, initial_step: int | None, stop_requests: StopRequests) -> None:
    schedule, runs = self.schedule, self.runs
    if initial_step is None:
      logging.info('Nothing to train: every run stopped early (%s).', ', '.join(
          f'{run.log_name} at step {run.stopping.stopped_step}, best at step '
          f'{run.stopping.best_step}' for run in runs))
      return
    state = runners.stack([run.state for run in runs], self.vectorised)
    self._settle_execution(state, initial_step)
    step_progress = progress.StepProgress(schedule.num_train_steps, initial_step)
    # The runs' counts of consecutive skipped updates, kept on the host from each call's
    # metrics: the state itself is donated to the next call before this one is checked.
    self._streaks = np.atleast_1d(np.asarray(state.consecutive_skipped_steps))
    # pending_metrics: the calls since the last log; the first `checked` of them passed the
    # divergence check made before a checkpoint.
    pending_metrics, checked, step = [], 0, initial_step
    # A call that ends at no evaluation, checkpoint or stop request is checked and logged only
    # once the next call is dispatched, so that the device works while the host does.
    unchecked_call = None
    if step == schedule.num_train_steps:
      logging.info('Nothing to train: the checkpoint is at the final step %d.', step)
    while step < schedule.num_train_steps and self._active():
      state, metrics, step = self.runner(state, step, schedule.next_stop(step))
      if unchecked_call is not None:
        if self._check_and_log(*unchecked_call, pending_metrics, step_progress):
          checked = 0
        unchecked_call = None
      interrupted = stop_requests.signal_number is not None
      if not (schedule.is_eval(step) or schedule.is_checkpoint(step) or interrupted):
        unchecked_call = (metrics, step)
        continue
      # A stop request still finishes this step's log and evaluation: the checkpoint saved
      # below is at this step, so a resumed run would never make them.
      if self._check_and_log(metrics, step, pending_metrics, step_progress):
        checked = 0
      active = self._active()
      for index in active:  # hand each run its own state
        runs[index].state = (jax.tree.map(lambda x, i=index: x[i], state) if self.vectorised
                             else state)
      elbo_checked = set()  # runs whose parameters to be saved passed a test-ELBO check
      if schedule.is_eval(step):
        for index in active:
          metrics, params_checked = self._evaluate(runs[index], step)
          if params_checked:
            elbo_checked.add(index)
          if runs[index].criterion is not None:
            runs[index].record_evaluation(step, metrics)
      if schedule.is_checkpoint(step) or interrupted:
        self._check_before_saving(state, pending_metrics[checked:], step, active, elbo_checked)
        checked = len(pending_metrics)
        for index in active:
          runs[index].save(step, self.data_iterators[index])
      if interrupted:
        raise TrainingInterrupted(step, stop_requests.signal_number)
    if unchecked_call is not None:  # the last call ended at no checkpoint
      self._check_and_log(*unchecked_call, pending_metrics, step_progress)

  def _check_and_log(self, metrics, step: int, pending_metrics: list, step_progress) -> bool:
    """A finished call's checks, and the log when `step` is a log step (then `pending_metrics`,
    to which the call's metrics are added, is emptied): whether it logged."""
    pending_metrics.append(metrics)
    self._check_finite(metrics, step)
    if not self.schedule.is_log(step):
      return False
    self._write_train_metrics(step, pending_metrics, step_progress, self._active())
    pending_metrics.clear()
    return True

  def _check_finite(self, metrics, step: int) -> None:
    """Raises once `max_consecutive_nonfinite_steps` updates in a row were skipped (checked
    after every compiled call, i.e. every `steps_per_call` steps at most, while the next call
    runs). Skipped updates leave the parameters as they were, so the last checkpoint holds the
    last good state."""
    limit = self.config.max_consecutive_nonfinite_steps
    skipped = np.asarray(metrics['skipped']).reshape(len(self.runs), -1)  # waits for the call
    self._streaks = streaks = consecutive_after(self._streaks, skipped)
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
        f'{last_checkpoint_sentence(self.runs[run], "holds the last good state")} Lower '
        'optimizer.learning_rate, set '
        'optimizer.grad_clip_norm, or check the data.')

  def _check_before_saving(self, state, unchecked_metrics, step: int, active,
                           elbo_checked=frozenset()) -> None:
    """Nothing unchecked is saved, so rotation never replaces a good checkpoint with a
    diverged one: the parameters must be finite, and pass the divergence check twice: the mean
    training loss since the last log or checkpoint (`unchecked_metrics`), and the negative ELBO
    of the very parameters to be saved on one batch of the first evaluation split (the training
    losses are those of the parameters before each update); runs in `elbo_checked` had theirs
    checked on whole splits by this step's evaluation."""
    finite = np.atleast_1d(jax.device_get(_all_finite(state.params, self.vectorised)))
    for index in active:
      if not finite[index]:
        raise NonFiniteTrainingError(
            f'{self.runs[index].workdir}: training stopped at step {step}: the parameters are '
            'not finite, so they were not checkpointed. '
            f'{last_checkpoint_sentence(self.runs[index], "holds the last good state")} Lower '
            'optimizer.learning_rate or set optimizer.grad_clip_norm.')
    if unchecked_metrics:
      losses = np.atleast_1d(jax.device_get(jnp.concatenate(
          [metrics['loss'] for metrics in unchecked_metrics], axis=-1).mean(-1)))
      for index in active:
        self._check_divergence(self.runs[index], step,
                               'the mean training loss since the last log or checkpoint',
                               float(losses[index]))
    elbo = self.evaluators.get('elbo')
    unchecked = [index for index in active if index not in elbo_checked]
    if elbo is None or not self.config.divergence_factor or not unchecked:
      return
    split_name, split = next(iter(self.dataset.eval_splits().items()))
    batch = split.take(slice(0, self.config.eval_batch_size))
    for index in unchecked:
      run = self.runs[index]
      result = elbo(run.state.params, batch, run.keys.for_evaluator(elbo))
      self._check_divergence(run, step, f'the negative {split_name} ELBO of the parameters to '
                             f'be saved ({len(batch)} examples)', -float(result['elbo']))

  def _check_divergence(self, run: Run, step: int, name: str, loss: float) -> None:
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
          f'{last_checkpoint_sentence(run, "is the last one saved")} Lower '
          'optimizer.learning_rate or set '
          'optimizer.grad_clip_norm (divergence_factor=0 disables this check).')

  def _check_skipped_share(self, run: Run, step: int, skipped, grad_norms, index: int) -> None:
    """Raises `StalledTrainingError` when more than `max_skipped_share` of the updates since
    the last log were skipped: a gradient norm that settled above `optimizer.skip_threshold`
    skips most updates without ever skipping `max_consecutive_nonfinite_steps` in a row, and
    the run would go on without learning (openai/vdvae#25)."""
    if self.vectorised:
      skipped, grad_norms = skipped[index], grad_norms[index]
    skipped = np.asarray(skipped, bool)
    limit = self.config.max_skipped_share
    if not skipped.size or skipped.mean() <= limit:
      return
    norms = np.asarray(grad_norms, np.float64)[skipped]
    finite = norms[np.isfinite(norms)]
    threshold = self.config.optimizer.skip_threshold
    seen = (f'their gradient norms ran from {finite.min():.4g} to {finite.max():.4g} (median '
            f'{np.median(finite):.4g}) against optimizer.skip_threshold={threshold:g}'
            if finite.size else 'every one had a non-finite loss or gradient')
    nonfinite = (f', and {norms.size - finite.size} had a non-finite loss or gradient'
                 if finite.size and finite.size < norms.size else '')
    advice = (f'Raise optimizer.skip_threshold (above {np.quantile(finite, 0.9):.4g} it would '
              'have accepted 90% of them), lower ' if finite.size and threshold else 'Lower ')
    raise StalledTrainingError(
        f'{run.workdir}: training stopped at step {step}: {int(skipped.sum())} of the last '
        f'{skipped.size} updates ({skipped.mean():.0%}) were skipped, more than '
        f'max_skipped_share={limit:g}: {seen}{nonfinite}. {advice}'
        'optimizer.learning_rate or set optimizer.grad_clip_norm (max_skipped_share=1 trains on '
        f'regardless). {last_checkpoint_sentence(run, "holds the last state before")}')

  def _write_train_metrics(self, step, pending_metrics, step_progress, active) -> None:
    # Each leaf is [steps] (one run) or [runs, steps]: the mean over the steps since the last log.
    # On the host: a computation on the device would wait behind the training call dispatched
    # since (devices run their programs in order), and so would this log.
    calls = jax.device_get(pending_metrics)
    per_step = {name: np.concatenate([metrics[name] for metrics in calls], axis=-1)
                for name in calls[0]}
    means = {name: values.mean(-1) for name, values in per_step.items()}
    first_losses = np.atleast_1d(per_step['loss'][..., 0])
    timing = step_progress.report(step, examples_per_step=self.config.batch_size * len(self.runs))
    num_steps = per_step['skipped'].shape[-1]
    if num_steps != self.schedule.log_every:  # after a resume between logs, or the last log
      timing['train/steps_in_mean'] = num_steps
    for index in active:
      run = self.runs[index]
      summary = {f'train/{name}': float(value[index] if self.vectorised else value)
                 for name, value in means.items()}
      summary.update(timing, epoch=step / self.schedule.steps_per_epoch)
      if run.initial_loss is None:  # the first log of a new run: its first step is step 0
        run.initial_loss = summary['train/initial_loss'] = float(first_losses[index])
      run.writer.write_scalars(step, summary)
      self._check_divergence(run, step, 'the mean training loss', summary['train/loss'])
      self._check_skipped_share(run, step, per_step['skipped'], per_step['grad_norm'], index)

  def _evaluate(self, run: Run, step: int) -> tuple[dict[str, float], bool]:
    """Runs the training-time evaluators of `config.evals` on each evaluation split, writes
    their numbers as `<split>/...` metrics and their images under `WORKDIR/images/`, and
    returns the numbers, and whether the divergence check passed a split's ELBO of the
    parameters a checkpoint saves (not so when a moving average is evaluated)."""
    params = optimizers.evaluation_params(run.state.params, run.state.opt_state)
    written, elbo_checked = {}, False
    for split_name, split in self.dataset.eval_splits().items():
      metrics = {}
      for name, evaluator in self.evaluators.items():
        splits = run.config.evals[name].get('splits')
        if splits is not None and split_name not in splits:
          continue
        with progress.tracking(f'{split_name}/{name}'):
          result = evaluator(params, split, run.keys.for_evaluator(evaluator))
        metrics.update(evaluators.scalars(result))
        write_image_grids(run, step, split_name, evaluators.images_of(result))
      split_metrics = {f'{split_name}/{name}': value for name, value in metrics.items()}
      run.writer.write_scalars(step, split_metrics)
      written.update(split_metrics)
      if 'elbo' in metrics:
        self._check_divergence(run, step, f'the negative {split_name} ELBO', -metrics['elbo'])
        elbo_checked = elbo_checked or params is run.state.params
    return written, elbo_checked


def consecutive_after(streaks: np.ndarray, skipped: np.ndarray) -> np.ndarray:
  """Each run's count of consecutive skipped updates after steps whose `skipped` flags are
  `[runs, steps]`, from the counts `streaks` before them (as `TrainState` counts them)."""
  num_steps = skipped.shape[-1]
  trailing = np.argmin(skipped[:, ::-1], axis=-1)  # skipped steps at the end
  everyone = skipped.all(-1)
  return np.where(everyone, streaks + num_steps, trailing)


@functools.partial(jax.jit, static_argnums=1)
def _all_finite(params, vectorised: bool) -> jax.Array:
  """Whether every parameter is finite: a bool, or one per run of a vectorised group."""
  leaves = [jnp.isfinite(leaf).reshape(leaf.shape[0], -1).all(-1) if vectorised
            else jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(params)]
  return jnp.stack(leaves).all(0)


class StopRequests:
  """Records SIGTERM and SIGINT instead of dying at once, so that the loop can checkpoint
  first (a preempted job then resumes where it stopped). Installed only in the main thread."""

  def __init__(self):
    self.signal_number, self._previous = None, {}

  def __enter__(self) -> StopRequests:
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


