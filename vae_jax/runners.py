"""How training steps are executed, behind one call: `runner(state, step, stop)` advances the
state from `step` towards `stop` and returns `(state, metrics, new_step)`, each metric with a
trailing axis over the steps taken (and a leading axis over the runs of a vectorised group).

  DeviceRunner  the training split lives on the device; up to `steps_per_call` steps run in one
                compiled `lax.scan` (`steps.run_steps`), inside one epoch
  HostRunner    the host gathers each batch and feeds one step at a time
  GrainRunner   grain streams each batch from the training records (`vae_jax.streaming`), one
                step at a time; its iterators' state is checkpointed with the runs

The first two see the same batches and noise (`steps` derives them from (seed, step)), so they
train identically; the grain runner draws its batches in grain's own order. With several runs, the state, keys and hyperparameters are stacked and every
function is vmapped over them; with several devices, batches are sharded over the mesh's
'batch' axis. The training loop only schedules; it never asks how steps are executed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vae_jax import steps, streaming


def stack(values: list, vectorised: bool):
  """One value, or the values stacked on a leading runs axis."""
  if not vectorised:
    return values[0]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *values)


def create(config, dataset, schedule, mesh, step_fn, run_keys: list[steps.RunKeys],
           hyperparams: list[steps.LossHyperparams]):
  """The runner `config.input_pipeline` names, for one run or a vectorised group."""
  runner_class = {'device': DeviceRunner, 'host': HostRunner,
                  'grain': GrainRunner}[config.input_pipeline]
  return runner_class(config, dataset, schedule, mesh, step_fn, run_keys, hyperparams)


class DeviceRunner:
  """Steps in compiled `lax.scan` calls over a device-resident training split."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams):
    vectorised = len(run_keys) > 1
    self._steps_per_call, self._steps_per_epoch = config.steps_per_call, schedule.steps_per_epoch
    self._train_images = jax.device_put(dataset.train.images,
                                        NamedSharding(mesh, PartitionSpec()))
    run_fn = functools.partial(steps.run_steps, step_fn=step_fn,
                               steps_per_epoch=schedule.steps_per_epoch,
                               batch_size=config.batch_size,
                               batch_sharding=NamedSharding(mesh, PartitionSpec('batch')))
    order_fn = functools.partial(steps.epoch_order, num_examples=len(dataset.train))
    if vectorised:
      run_fn = _vmap_with_static(run_fn, in_axes=(0, None, 0, 0, 0))
      order_fn = jax.vmap(order_fn, in_axes=(0, None))
    self._run_fn = jax.jit(run_fn, static_argnames='num_steps', donate_argnums=0)
    self._order_fn = jax.jit(order_fn)
    self._data_order_keys = stack([keys.data_order for keys in run_keys], vectorised)
    self._train_keys = stack([keys.train for keys in run_keys], vectorised)
    self._hyperparams = stack(hyperparams, vectorised)
    self._order, self._order_epoch = None, None

  def __call__(self, state, step: int, stop: int):
    epoch = step // self._steps_per_epoch
    if epoch != self._order_epoch:  # one permutation per epoch, shared by its calls
      self._order, self._order_epoch = self._order_fn(self._data_order_keys, epoch), epoch
    # Full calls of steps_per_call steps, and any remainder one step at a time: two compiled
    # programs at most, however the log, evaluation and checkpoint periods cut the epochs (each
    # other length would compile a program of its own).
    num_steps = self._steps_per_call if stop - step >= self._steps_per_call else 1
    state, metrics = self._run_fn(state, self._train_images, self._order, self._train_keys,
                                  self._hyperparams, num_steps=num_steps)
    return state, metrics, step + num_steps


class HostRunner:
  """One compiled step per call, on a batch the host gathers (and, on several hosts, each
  process feeds its own rows of)."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams):
    self._vectorised = len(run_keys) > 1
    batch_axis = PartitionSpec(None, 'batch') if self._vectorised else PartitionSpec('batch')
    self._batch_sharding = NamedSharding(mesh, batch_axis)
    self._host_batches = [steps.HostBatches(dataset.train.images, keys.data_order,
                                            steps_per_epoch=schedule.steps_per_epoch,
                                            batch_size=config.batch_size) for keys in run_keys]
    self._step_fn = jax.jit(jax.vmap(step_fn) if self._vectorised else step_fn,
                            donate_argnums=0)
    self._train_keys = stack([keys.train for keys in run_keys], self._vectorised)
    self._hyperparams = stack(hyperparams, self._vectorised)

  def __call__(self, state, step: int, stop: int):
    del stop  # one step at a time
    batch = stack([batches(step) for batches in self._host_batches], self._vectorised)
    batch = jax.make_array_from_process_local_data(self._batch_sharding,
                                                   _process_rows(batch, self._vectorised))
    state, metrics = self._step_fn(state, batch, self._train_keys, self._hyperparams)
    return state, jax.tree.map(lambda value: value[..., None], metrics), step + 1


class GrainRunner:
  """One compiled step per call, on batches grain streams from the training records; each
  process reads its own rows. `data_iterators[i]` is run i's iterator, saved with its
  checkpoints and restored from them by the training loop."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams):
    self._vectorised = len(run_keys) > 1
    batch_axis = PartitionSpec(None, 'batch') if self._vectorised else PartitionSpec('batch')
    self._batch_sharding = NamedSharding(mesh, batch_axis)
    self.data_iterators = [streaming.iterator(streaming.training_batches(
        dataset.train, seed=streaming.shuffle_seed(keys.data_order),
        steps_per_epoch=schedule.steps_per_epoch, batch_size=config.batch_size,
        num_epochs=config.num_epochs, binarization=config.data.binarization,
        binarization_seed=config.data.binarization_seed, process_index=jax.process_index(),
        process_count=jax.process_count()), config.streaming) for keys in run_keys]
    self._step_fn = jax.jit(jax.vmap(step_fn) if self._vectorised else step_fn,
                            donate_argnums=0)
    self._train_keys = stack([keys.train for keys in run_keys], self._vectorised)
    self._hyperparams = stack(hyperparams, self._vectorised)

  def __call__(self, state, step: int, stop: int):
    del stop  # one step at a time
    batches = [next(iterator) for iterator in self.data_iterators]
    batch = np.stack(batches) if self._vectorised else batches[0]
    batch = jax.make_array_from_process_local_data(self._batch_sharding, batch)
    state, metrics = self._step_fn(state, batch, self._train_keys, self._hyperparams)
    return state, jax.tree.map(lambda value: value[..., None], metrics), step + 1


def _process_rows(batch: np.ndarray, vectorised: bool) -> np.ndarray:
  """This process's share of a global batch (all of it on one host): each host feeds its own
  rows, in process order, of the batch every host computes identically."""
  count, index = jax.process_count(), jax.process_index()
  axis = 1 if vectorised else 0
  rows = batch.shape[axis] // count
  return np.take(batch, np.arange(index * rows, (index + 1) * rows), axis=axis)


def _vmap_with_static(fn, in_axes):
  """`jax.vmap(fn)` that passes keyword arguments (the static ones) through unmapped."""

  def mapped(*args, **static_kwargs):
    return jax.vmap(functools.partial(fn, **static_kwargs), in_axes=in_axes)(*args)

  return mapped
