"""Training: the pure, jitted train step and the loop `train_and_evaluate(config, workdir)`.

Randomness is a function of (seed, step) only: step `s` uses the key `fold_in(train_key, s)`
and epoch `e` visits the training set in the order `permutation(fold_in(data_key, e))`. A run
resumed from a checkpoint at step `s` therefore continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import struct

from vae_jax import (checkpointing, config_checks, data, evaluation, images, metric_writers,
                     models, objectives, optimizers)


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of updates applied so far
  params: Any
  opt_state: Any


@struct.dataclass
class RunKeys:
  """Independent PRNG streams derived from the config's seed."""

  init: jax.Array
  data_order: jax.Array
  train: jax.Array
  eval: jax.Array
  images: jax.Array

  @classmethod
  def from_seed(cls, seed: int) -> RunKeys:
    return cls(*jax.random.split(jax.random.key(seed), 5))


def create_train_state(model, optimizer: optax.GradientTransformation,
                       data_shape: tuple[int, ...], rng: jax.Array) -> TrainState:
  params = model.init(rng, jnp.zeros((1, *data_shape), jnp.float32))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """What the train step computes, from the config (hashable: part of the compiled step)."""

  objective: str  # 'elbo' | 'iwae'
  num_samples: int
  beta: float
  kl_warmup_steps: int  # β rises linearly from 0 over this many steps; 0: constant β
  analytic_kl: bool
  dynamic_binarization: bool
  gradient_estimator: str = 'reparameterized'  # resolved: never 'auto'
  temperature: tuple[float, float, float] = (1.0, 0.5, 0.0)  # initial, minimum, anneal_rate

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, steps_per_epoch: int,
                  model) -> StepSettings:
    objective = config.objective
    return cls(objective=objective.kind, num_samples=objective.num_samples,
               beta=objective.beta, kl_warmup_steps=objective.kl_warmup_epochs * steps_per_epoch,
               analytic_kl=objective.analytic_kl,
               dynamic_binarization=config.data.binarization == 'dynamic',
               gradient_estimator=objectives.resolve_gradient_estimator(
                   objective.gradient_estimator, model),
               temperature=(objective.temperature.initial, objective.temperature.minimum,
                            objective.temperature.anneal_rate))

  def beta_at(self, step: jax.Array) -> jax.Array:
    if not self.kl_warmup_steps:
      return jnp.asarray(self.beta, jnp.float32)
    return self.beta * jnp.minimum(1.0, step / self.kl_warmup_steps)

  def temperature_at(self, step: jax.Array) -> jax.Array:
    """The Gumbel-softmax temperature `max(minimum, initial · exp(−anneal_rate · step))`."""
    initial, minimum, anneal_rate = self.temperature
    return jnp.maximum(minimum, initial * jnp.exp(-anneal_rate * step))


def train_step(state: TrainState, images: jax.Array, train_key: jax.Array, *, model,
               optimizer: optax.GradientTransformation,
               settings: StepSettings) -> tuple[TrainState, dict]:
  """One optimizer update on the objective of a batch of images `[B, *data_shape]`."""
  binarize_key, sample_key = jax.random.split(jax.random.fold_in(train_key, state.step))
  x = data.binarize(binarize_key, images) if settings.dynamic_binarization else images
  beta, temperature = settings.beta_at(state.step), settings.temperature_at(state.step)

  def loss_fn(params):
    return objectives.training_loss(model, params, x, sample_key, objective=settings.objective,
                                    num_samples=settings.num_samples, beta=beta,
                                    analytic_kl=settings.analytic_kl,
                                    estimator=settings.gradient_estimator,
                                    temperature=temperature)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {name: jnp.mean(value) for name, value in terms.items()}
  metrics.update(loss=loss, grad_norm=optax.global_norm(grads), beta=beta)
  if settings.gradient_estimator in ('gumbel_softmax', 'straight_through'):
    metrics['temperature'] = temperature
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(model, optimizer, settings: StepSettings):
  """The train step, jitted, with the state's buffers donated to the update."""
  step_fn = functools.partial(train_step, model=model, optimizer=optimizer, settings=settings)
  return jax.jit(step_fn, donate_argnums=0)


def epoch_order(data_order_key: jax.Array, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which epoch `epoch` visits the training set; each epoch is cut into
  `num_examples // batch_size` batches in this order, and the remainder is dropped."""
  return np.asarray(jax.random.permutation(jax.random.fold_in(data_order_key, epoch), num_examples))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains the model `config` describes, writing checkpoints, metrics and images to `workdir`.

  Resumes from the latest checkpoint in `workdir` if there is one. Returns the final state.
  """
  config_checks.validate_config(config)
  dataset = data.load_dataset(config.data)
  config_checks.validate_config_for_data(config, dataset)
  os.makedirs(workdir, exist_ok=True)
  checkpointing.save_or_check_config(config, workdir)
  logging.info('Data %s: train %d, validation %d, test %d examples of shape %s.', dataset.name,
               len(dataset.train), len(dataset.validation or ()), len(dataset.test),
               dataset.data_shape)

  steps_per_epoch = len(dataset.train) // config.batch_size
  num_train_steps = config.num_epochs * steps_per_epoch
  eval_every_steps = config.eval_every_epochs * steps_per_epoch
  keys = RunKeys.from_seed(config.seed)
  model = models.build_model(config.model, dataset.data_shape)
  optimizer = optimizers.create_optimizer(config.optimizer, num_train_steps)
  state = create_train_state(model, optimizer, dataset.data_shape, keys.init)
  checkpoints = checkpointing.create_checkpoint_manager(workdir, config.checkpoints_to_keep)
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(checkpoints.latest_step(), args=ocp.args.StandardRestore(state))
    logging.info('Resumed from the checkpoint at step %d.', int(state.step))
  initial_step = int(state.step)
  logging.info('%d parameters; %d steps (%d epochs of %d steps).',
               sum(x.size for x in jax.tree.leaves(state.params)), num_train_steps,
               config.num_epochs, steps_per_epoch)

  train_step_fn = make_train_step(model, optimizer,
                                  StepSettings.from_config(config, steps_per_epoch, model))
  elbo_fn = evaluation.make_elbo_fn(model, num_samples=config.eval_num_samples,
                                    analytic_kl=config.objective.analytic_kl)
  posterior_statistics_fn = evaluation.make_posterior_statistics_fn(model)
  exact_fn = (evaluation.make_exact_fn(model) if evaluation.supports_exact_evaluation(model)
              else None)
  num_dims = int(np.prod(dataset.data_shape))

  def run_evaluation(step: int, params, writer: metric_writers.MetricWriter) -> None:
    for split_name, split in dataset.eval_splits().items():
      terms = evaluation.evaluate_elbo(elbo_fn, params, split.images,
                                       batch_size=config.eval_batch_size, rng=keys.eval)
      terms['bits_per_dim'] = float(objectives.bits_per_dim(terms['elbo'], num_dims))
      statistics = evaluation.map_examples(posterior_statistics_fn, params, split.images,
                                           batch_size=config.eval_batch_size, rng=keys.eval)
      for layer, count in evaluation.posterior_summary(statistics)['active_units'].items():
        terms[f'active_units/{layer}'] = count
      if exact_fn is not None:
        exact = evaluation.exact_summary(evaluation.map_examples(
            exact_fn, params, split.images, batch_size=config.eval_batch_size, rng=keys.eval))
        terms.update({f'exact/{name}': value for name, value in exact.items()})
      writer.write_scalars(step, {f'{split_name}/{name}': value for name, value in terms.items()})
    if config.num_image_samples:
      _write_image_grids(workdir, writer, step, model, params, dataset.test.images,
                         config.num_image_samples, keys.images)

  with metric_writers.MetricWriter(workdir, resume_step=initial_step or None) as writer:
    if initial_step == 0:
      writer.write_text(0, 'config', f'```\n{config}\n```')
    progress = ProgressReporter(num_train_steps, initial_step)
    train_metrics = []
    for step in range(initial_step, num_train_steps):
      epoch, batch_index = divmod(step, steps_per_epoch)
      if batch_index == 0 or step == initial_step:
        order = epoch_order(keys.data_order, epoch, len(dataset.train))
      batch = dataset.train.images[order[batch_index * config.batch_size:
                                         (batch_index + 1) * config.batch_size]]
      state, metrics = train_step_fn(state, batch, keys.train)
      train_metrics.append(metrics)
      done = step + 1
      if done % config.log_every_steps == 0 or done == num_train_steps:
        summary = {f'train/{k}': float(v) for k, v in
                   jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)),
                                               *train_metrics)).items()}
        summary.update(progress.report(done, examples_per_step=config.batch_size))
        summary['epoch'] = done / steps_per_epoch
        writer.write_scalars(done, summary)
        train_metrics = []
      if done % eval_every_steps == 0 or done == num_train_steps:
        run_evaluation(done, state.params, writer)
      if (done % config.checkpoint_every_steps == 0 or done % eval_every_steps == 0
          or done == num_train_steps):
        checkpoints.save(done, args=ocp.args.StandardSave(state))
    if initial_step == num_train_steps:
      logging.info('Nothing to train: the checkpoint is at the final step %d.', num_train_steps)
  checkpoints.wait_until_finished()
  checkpoints.close()
  return state


def _write_image_grids(workdir, writer, step, model, params, test_images, count, images_key):
  """Writes samples from the prior and reconstructions of the first test images, as PNG files
  under `WORKDIR/images/` and as TensorBoard images. The same key every time, so successive
  sample grids show how the decoding of fixed z changes during training."""
  samples = evaluation.prior_samples(model, params, images_key, num_samples=count)
  inputs = test_images[:count]
  recons = evaluation.reconstructions(model, params, inputs)
  columns = int(np.ceil(np.sqrt(count)))
  grids = {
      'samples': images.make_grid(np.asarray(samples), columns, min_tile_size=28),
      'reconstructions': images.make_grid(
          images.interleave_rows(inputs, np.asarray(recons), columns), columns, min_tile_size=28),
  }
  if getattr(model, 'num_variables', None) == 1:  # a single categorical latent: each value
    means = np.asarray(evaluation.category_means(model, params))
    grids['categories'] = images.make_grid(means, int(np.ceil(np.sqrt(len(means)))),
                                           min_tile_size=28)
  for name, grid in grids.items():
    images.save_png(os.path.join(workdir, 'images', f'{name}_{step:08d}.png'), grid)
  writer.write_images(step, grids)


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
                 _format_duration(eta_seconds))
    return {'steps_per_sec': steps_per_sec, 'examples_per_sec': steps_per_sec * examples_per_step,
            'interval_seconds': interval_seconds}


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'
