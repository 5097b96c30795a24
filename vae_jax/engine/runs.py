"""One run of the training loop: its config, workdir, keys, checkpoints, metric writer, state
and early-stopping record (`Run`), and the build path shared by training and
`experiments.launch.load_trained` (`create_state`)."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from vae_jax import compiler_options, data, images, models, optimizers
from vae_jax.engine import (checkpointing, config_checks, early_stopping, metric_writers, steps,
                            streaming)


def create_state(config, dataset, model, optimizer, init_key: jax.Array) -> steps.TrainState:
  """A fresh train state of `model`: parameters drawn with `init_key` (and, with
  `output_bias_init='data_mean_logit'`, the decoder's output bias at the logit of the mean
  training image), the optimizer's state, and its hyperparameters set to `config.optimizer`'s
  (one optimizer serves every run of a group)."""
  state = steps.create_train_state(model, optimizer, dataset.data_shape, init_key,
                                   compiler_options.for_run(config))
  if config.model.likelihood.get('output_bias_init') == 'data_mean_logit':  # Bernoulli's option
    params = models.with_data_mean_output_bias(state.params, data.mean_image(dataset.train))
    state = state.replace(params=params, opt_state=optimizer.init(params))
  return state.replace(opt_state=optimizers.with_config_hyperparams(state.opt_state,
                                                                    config.optimizer))


class Run:
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
  def create(cls, config, workdir, dataset, model, optimizer, schedule, mesh,
             log_name=None) -> Run:
    keys = steps.RunKeys.from_seed(config.seed)
    state = create_state(config, dataset, model, optimizer, keys.init)
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


def last_checkpoint_sentence(run: Run, what_it_is: str) -> str:
  latest = run.checkpoints.latest_step()
  if latest is None:
    return 'No checkpoint was written before that.'
  return f'The checkpoint at step {latest} {what_it_is}.'


def write_image_grids(run: Run, step: int, split_name: str, grids: dict) -> None:
  """Writes image grids as PNG files under `WORKDIR/images/` (`<name>_<step>.png` for the test
  split, `<split>_<name>_<step>.png` for others) and as TensorBoard images."""
  if not grids:
    return
  prefix = '' if split_name == 'test' else f'{split_name}_'
  if jax.process_index() == 0:
    for name, grid in grids.items():
      images.save_png(os.path.join(run.workdir, 'images', f'{prefix}{name}_{step:08d}.png'), grid)
  run.writer.write_images(step, {f'{prefix}{name}': grid for name, grid in grids.items()})


