"""Pure training steps: one update from a fed batch, or many updates on a device-resident split.

Randomness is a function of (seed, step) only: step `s` uses the key `fold_in(train_key, s)`
and epoch `e` visits the training set in the order `permutation(fold_in(data_order_key, e))`,
cut into `num_examples // batch_size` batches (the remainder is dropped). The host-fed step and
the device-resident scan therefore see the same batches and make the same updates, and a run
resumed at step `s` continues exactly as an uninterrupted one.

Values a sweep may vary without recompiling — the seed's keys, the optimizer's numeric
hyperparameters (in its state) and the loss's (`LossHyperparams`) — are arrays passed to the
step; everything that shapes the computation is a static `StepSettings`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from vae_jax import compiler_options, data, models, objectives, optimizers

FLIP_STREAM = 1  # data.random_flip's key: fold_in(step key, FLIP_STREAM)


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: number of steps taken, skipped ones included
  params: Any
  opt_state: Any
  skipped_steps: jax.Array  # int32: steps whose update was skipped (non-finite, or too large)
  consecutive_skipped_steps: jax.Array  # int32: the current run of skipped steps


@struct.dataclass
class RunKeys:
  """Independent PRNG streams derived from a run's seed."""

  init: jax.Array
  data_order: jax.Array
  train: jax.Array
  eval: jax.Array
  separate_eval: jax.Array  # for evaluators that declare `draws_from_separate_key`

  @classmethod
  def from_seed(cls, seed: int) -> RunKeys:
    return cls(*jax.random.split(jax.random.key(seed), 5))

  def for_evaluator(self, evaluator) -> jax.Array:
    """The key `evaluator` draws from at every evaluation: the evaluation key, or the separate
    one where the evaluator declares `draws_from_separate_key = True` (its draws then stay the
    same whatever the other evaluators draw)."""
    return self.separate_eval if getattr(evaluator, 'draws_from_separate_key', False) else self.eval


@struct.dataclass
class LossHyperparams:
  """The loss's numeric hyperparameters, as arrays (per run in a sweep)."""

  beta: jax.Array
  kl_warmup_steps: jax.Array  # β rises linearly from 0 over this many steps; 0: constant β
  temperature_initial: jax.Array
  temperature_minimum: jax.Array
  temperature_anneal_rate: jax.Array
  # Per-epoch warm-up (objective.kl_warmup_schedule='per_epoch'): the steps in an epoch, over
  # which β is held; 0: β rises at every step.
  kl_warmup_epoch_steps: jax.Array | float = 0.0

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, steps_per_epoch: int) -> LossHyperparams:
    objective = config.objective
    per_epoch = objective.kl_warmup_schedule == 'per_epoch'
    values = (objective.beta, objective.kl_warmup_epochs * steps_per_epoch,
              objective.temperature.initial, objective.temperature.minimum,
              objective.temperature.anneal_rate, steps_per_epoch if per_epoch else 0)
    return cls(*(jnp.asarray(value, jnp.float32) for value in values))

  def beta_at(self, step: jax.Array) -> jax.Array:
    """`beta · min(1, s / warm-up steps)`: per step `s = step`; per epoch `s` is the end of the
    step's epoch, `(⌊step / epoch_steps⌋ + 1) · epoch_steps`, so epoch e = 1, 2, ... (counted
    from 1, as the VampPrior code does) has β = e / warm-up epochs throughout."""
    step = jnp.asarray(step)
    epoch_steps = jnp.asarray(self.kl_warmup_epoch_steps, jnp.float32)
    # An integer division: a float32 quotient can round up to the next epoch.
    whole_epochs = step.astype(jnp.int32) // jnp.maximum(epoch_steps, 1.0).astype(jnp.int32)
    progress = jnp.where(epoch_steps > 0, (whole_epochs + 1) * epoch_steps, step)
    warmup = jnp.minimum(1.0, progress / jnp.maximum(self.kl_warmup_steps, 1.0))
    return self.beta * jnp.where(self.kl_warmup_steps > 0, warmup, 1.0)

  def temperature_at(self, step: jax.Array) -> jax.Array:
    """The Gumbel-softmax temperature `max(minimum, initial · exp(−anneal_rate · step))`."""
    return jnp.maximum(self.temperature_minimum,
                       self.temperature_initial * jnp.exp(-self.temperature_anneal_rate * step))


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """What the train step computes (hashable: part of the compiled program)."""

  objective: str  # 'elbo' | 'iwae' | 'marginal'
  num_samples: int
  analytic_kl: bool
  dynamic_binarization: bool
  gradient_estimator: str = 'reparameterized'  # resolved: never 'auto'
  skip_threshold: float = 0.0  # skip updates whose gradient norm exceeds this (0: never)
  random_flip: bool = False  # mirror each training image left-right with probability 1/2

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, model) -> StepSettings:
    objective = config.objective
    return cls(objective=objective.kind, num_samples=objective.num_samples,
               analytic_kl=objective.analytic_kl,
               dynamic_binarization=config.data.binarization == 'dynamic',
               gradient_estimator=objectives.resolve_gradient_estimator(
                   objective.gradient_estimator, model),
               skip_threshold=config.optimizer.skip_threshold,
               random_flip=bool(config.data.get('random_flip', False)))


def create_train_state(model, optimizer: optax.GradientTransformation,
                       data_shape: tuple[int, ...], rng: jax.Array,
                       init_compiler_options: dict | None = None) -> TrainState:
  """Fresh parameters and optimizer state. With `init_compiler_options` the model's init is
  one program compiled with them (`compiler_options.for_run`); else `model.init` as it is."""
  init = jax.jit(model.init, compiler_options=init_compiler_options) if (
      init_compiler_options) else model.init
  params = init(rng, jnp.zeros((1, *data_shape), jnp.float32))
  zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers: each is donated to the update
  return TrainState(step=zero(), params=params, opt_state=optimizer.init(params),
                    skipped_steps=zero(), consecutive_skipped_steps=zero())


def train_step(state: TrainState, images: jax.Array, train_key: jax.Array,
               hyperparams: LossHyperparams, *, model, optimizer: optax.GradientTransformation,
               settings: StepSettings) -> tuple[TrainState, dict]:
  """One optimizer update on the objective of a batch of images `[B, *data_shape]`.

  If the loss or any gradient is not finite, or the gradient's global norm exceeds
  `settings.skip_threshold` (when set), the update is skipped (parameters and optimizer state
  are kept) and counted in `skipped_steps`; the step counter advances either way, so the data
  order and noise of later steps do not depend on it.
  """
  step_key = jax.random.fold_in(train_key, state.step)
  binarize_key, sample_key = jax.random.split(step_key)
  x = images
  if settings.random_flip:  # its own stream: the other keys are those of a run without flips
    x = data.random_flip(jax.random.fold_in(step_key, FLIP_STREAM), x)
  x = data.binarize(binarize_key, x) if settings.dynamic_binarization else x
  beta, temperature = hyperparams.beta_at(state.step), hyperparams.temperature_at(state.step)

  def loss_fn(params):
    return objectives.training_loss(model, params, x, sample_key, objective=settings.objective,
                                    num_samples=settings.num_samples, beta=beta,
                                    analytic_kl=settings.analytic_kl,
                                    estimator=settings.gradient_estimator,
                                    temperature=temperature)

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grad_norm = optax.global_norm(grads)
  loss_is_finite = jnp.isfinite(loss)
  accepted = loss_is_finite & jnp.isfinite(grad_norm)  # a NaN or inf anywhere makes the norm so
  if settings.skip_threshold:
    accepted &= grad_norm < settings.skip_threshold

  def update(_):
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates), opt_state

  # A conditional, not a select: the common, finite case pays nothing for the check.
  params, opt_state = jax.lax.cond(accepted, update, lambda _: (state.params, state.opt_state),
                                   None)
  metrics = {name: jnp.mean(value) for name, value in terms.items()}
  metrics.update(loss=loss, grad_norm=grad_norm, beta=beta, skipped=~accepted,
                 loss_is_finite=loss_is_finite)
  if settings.gradient_estimator in ('gumbel_softmax', 'straight_through'):
    metrics['temperature'] = temperature
  skipped = (~accepted).astype(jnp.int32)
  return TrainState(step=state.step + 1, params=params, opt_state=opt_state,
                    skipped_steps=state.skipped_steps + skipped,
                    consecutive_skipped_steps=(state.consecutive_skipped_steps + 1) * skipped), metrics


def epoch_order(data_order_key: jax.Array, epoch, num_examples: int) -> jax.Array:
  """The order in which epoch `epoch` visits the training set."""
  return jax.random.permutation(jax.random.fold_in(data_order_key, epoch), num_examples)


def batch_from_order(order: jax.Array, batch_index, batch_size: int) -> jax.Array:
  """Indices of batch `batch_index` of an epoch visited in `order`."""
  return jax.lax.dynamic_slice_in_dim(order, batch_index * batch_size, batch_size)


def run_steps(state: TrainState, train_images: jax.Array, order: jax.Array,
              train_key: jax.Array, hyperparams: LossHyperparams, *, num_steps: int,
              steps_per_epoch: int, batch_size: int, step_fn,
              batch_sharding=None) -> tuple[TrainState, dict]:
  """`num_steps` updates inside one `lax.scan`, on a training split held on the device.

  The steps must lie in one epoch, whose `epoch_order` is given (drawn once per epoch by the
  caller: the sort behind a permutation costs as much as several steps); each step gathers its
  batch's rows by index (no permuted copy of the split). Returns the final state and each
  step's metrics stacked `[num_steps]`. `batch_sharding` shards each batch over devices.
  """

  def one_step(state, _):
    indices = batch_from_order(order, state.step % steps_per_epoch, batch_size)
    batch = jnp.take(train_images, indices, axis=0)
    if batch_sharding is not None:
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    return step_fn(state, batch, train_key, hyperparams)

  return jax.lax.scan(one_step, state, length=num_steps)


class HostBatches:
  """The host-fed path's batches: step `s`'s batch gathered on the host from the same epoch
  permutation that `run_steps` draws on the device (computed once per epoch)."""

  def __init__(self, train_images: np.ndarray, data_order_key: jax.Array, *,
               steps_per_epoch: int, batch_size: int):
    self._images, self._key = train_images, data_order_key
    self._steps_per_epoch, self._batch_size = steps_per_epoch, batch_size
    self._epoch, self._order = None, None

  def __call__(self, step: int) -> np.ndarray:
    epoch, batch_index = divmod(step, self._steps_per_epoch)
    if epoch != self._epoch:
      self._epoch = epoch
      self._order = np.asarray(epoch_order(self._key, epoch, len(self._images)))
    start = batch_index * self._batch_size
    return self._images[self._order[start:start + self._batch_size]]


def standalone_step(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]):
  """A fresh state of the config's model and its training step, jitted with the state donated,
  outside any run (for benchmarks): `(state, step, hyperparams)`, called as
  `step(state, images, key, hyperparams)`."""
  model = models.build_model(config.model, data_shape)
  optimizer = optimizers.create_optimizer(config.optimizer, 1000)
  options = compiler_options.for_run(config)
  state = create_train_state(model, optimizer, data_shape, jax.random.key(0), options)
  step = jax.jit(functools.partial(train_step, model=model, optimizer=optimizer,
                                   settings=StepSettings.from_config(config, model)),
                 donate_argnums=0, compiler_options=options)
  return state, step, LossHyperparams.from_config(config, 100)
