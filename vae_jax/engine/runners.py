"""How training steps are executed, behind one call: `runner(state, step, stop)` advances the
state from `step` towards `stop` and returns `(state, metrics, new_step)`, each metric with a
trailing axis over the steps taken (and a leading axis over the runs of a vectorised group).

  DeviceRunner  the training split lives on the device; up to `steps_per_call` steps run in one
                compiled `lax.scan` (`steps.run_steps`), inside one epoch
  HostRunner    the host gathers each batch and feeds one step at a time
  GrainRunner   grain streams each batch from the training records (`vae_jax.engine.streaming`), one
                step at a time; its iterators' state is checkpointed with the runs

The first two see the same batches and noise (`steps` derives them from (seed, step)), so they
train identically; the grain runner draws its batches in grain's own order.

With several runs, the state, keys and hyperparameters are stacked and every function is
applied over them in one compiled program, either vmapped ('vmap': batched matrix products) or
looped ('map': `lax.map`, one run after another inside the program). With 'auto' a runner
compiles both and `runner.choose_execution` times each as training calls it, keeping the
faster. With several devices, batches are sharded over the mesh's 'batch' axis. The training
loop only schedules; it never asks how steps are executed.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vae_jax import compiler_options
from vae_jax.engine import steps, streaming


def stack(values: list, vectorised: bool):
  """One value, or the values stacked on a leading runs axis."""
  if not vectorised:
    return values[0]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *values)


EXECUTIONS = ('auto', 'vmap', 'map')  # `config.sweep_execution`


def create(config, dataset, schedule, mesh, step_fn, run_keys: list[steps.RunKeys],
           hyperparams: list[steps.LossHyperparams], execution: str = 'vmap'):
  """The runner `config.input_pipeline` names (`RUNNERS`), for one run or a group of runs
  executed as `execution` says ('vmap', 'map', or 'auto': both compiled until
  `choose_execution`)."""
  return RUNNERS[config.input_pipeline](config, dataset, schedule, mesh, step_fn, run_keys,
                                        hyperparams, execution)


def over_runs(fn, in_axes: tuple, execution: str):
  """`fn` applied to each run of stacked arguments (those whose axis in `in_axes` is 0; the
  others are shared): `jax.vmap`, or for 'map' a `lax.map` loop over the runs. Keyword
  arguments (static ones) are passed through to every run."""

  def each_run(*args, **static_kwargs):
    one = functools.partial(fn, **static_kwargs)
    if execution == 'vmap':
      return jax.vmap(one, in_axes=in_axes)(*args)
    stacked = [arg for arg, axis in zip(args, in_axes) if axis == 0]

    def run(run_args):
      run_args = iter(run_args)
      return one(*[next(run_args) if axis == 0 else arg for arg, axis in zip(args, in_axes)])

    return jax.lax.map(run, stacked)

  return each_run


def compiled_programs(fn, in_axes: tuple, execution: str, vectorised: bool,
                      **jit_kwargs) -> dict:
  """`fn` jitted for each execution a runner may use: both for a group left to 'auto', else
  the one named; a single run is never stacked, so it has one program, under 'vmap'."""
  if not vectorised:
    return {'vmap': jax.jit(fn, **jit_kwargs)}
  candidates = ('vmap', 'map') if execution == 'auto' else (execution,)
  return {candidate: jax.jit(over_runs(fn, in_axes, candidate), **jit_kwargs)
          for candidate in candidates}


def fastest_program(programs: dict, state, *args, repeats: int = 2,
                    **kwargs) -> tuple[str, dict[str, float]]:
  """The name of the program that advances a copy of `state` fastest here, and each one's
  seconds per call (the least of `repeats` calls after the one that compiles). Each program
  is `program(state, *args, **kwargs) -> (state, metrics)` and may donate its state."""
  seconds = {}
  for name, program in programs.items():
    copy = jax.block_until_ready(program(jax.tree.map(jnp.copy, state), *args, **kwargs)[0])
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      copy = jax.block_until_ready(program(copy, *args, **kwargs)[0])
      times.append(time.perf_counter() - start)
    seconds[name] = min(times)
  return min(seconds, key=seconds.get), seconds


class _Runner:
  """The executions a runner can apply its program in, and the choice among them. Subclasses
  fill `self._programs` (execution -> compiled program) and define `_timing_args`."""

  _programs: dict

  @property
  def execution(self) -> str:
    """'vmap' or 'map' once chosen; 'auto' while both programs are kept."""
    return next(iter(self._programs)) if len(self._programs) == 1 else 'auto'

  def choose_execution(self, state, step: int) -> dict[str, float]:
    """With 'auto', times each execution's own compiled program — a full call, as training
    makes it (for the device runner a scan of `steps_per_call` steps: a single step outside
    the scan can rank them the other way) — on a copy of the stacked `state`, keeps the
    faster, and returns the seconds per call of each."""
    args, kwargs = self._timing_args(state, step)
    choice, seconds = fastest_program(self._programs, state, *args, **kwargs)
    self._programs = {choice: self._programs[choice]}
    return seconds

  def _timing_args(self, state, step: int) -> tuple[tuple, dict]:
    raise NotImplementedError

  @property
  def _program(self):
    if len(self._programs) != 1:
      raise RuntimeError('choose_execution() must run before the first step of an auto group.')
    return next(iter(self._programs.values()))


class DeviceRunner(_Runner):
  """Steps in compiled `lax.scan` calls over a device-resident training split."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams,
               execution='vmap'):
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
      order_fn = jax.vmap(order_fn, in_axes=(0, None))
    self._programs = compiled_programs(run_fn, (0, None, 0, 0, 0), execution, vectorised,
                                       static_argnames='num_steps', donate_argnums=0,
                                       compiler_options=compiler_options.for_run(config))
    self._order_fn = jax.jit(order_fn)
    self._data_order_keys = stack([keys.data_order for keys in run_keys], vectorised)
    self._train_keys = stack([keys.train for keys in run_keys], vectorised)
    self._hyperparams = stack(hyperparams, vectorised)
    self._order, self._order_epoch = None, None

  def _epoch_order(self, step: int):
    epoch = step // self._steps_per_epoch
    if epoch != self._order_epoch:  # one permutation per epoch, shared by its calls
      self._order, self._order_epoch = self._order_fn(self._data_order_keys, epoch), epoch
    return self._order

  def _timing_args(self, state, step: int) -> tuple[tuple, dict]:
    return ((self._train_images, self._epoch_order(step), self._train_keys, self._hyperparams),
            {'num_steps': self._steps_per_call})

  def __call__(self, state, step: int, stop: int):
    order = self._epoch_order(step)
    # Full calls of steps_per_call steps, and any remainder one step at a time: two compiled
    # programs at most, however the log, evaluation and checkpoint periods cut the epochs (each
    # other length would compile a program of its own).
    num_steps = self._steps_per_call if stop - step >= self._steps_per_call else 1
    state, metrics = self._program(state, self._train_images, order, self._train_keys,
                                   self._hyperparams, num_steps=num_steps)
    return state, metrics, step + num_steps


class _OneStepRunner(_Runner):
  """One compiled step per call, on the batch `_local_batch(step)` gives: this process's rows
  (all of them on one host), with a leading runs axis for a group."""

  def __init__(self, config, mesh, step_fn, run_keys, hyperparams, execution, data_shape):
    self._vectorised = len(run_keys) > 1
    batch_axis = PartitionSpec(None, 'batch') if self._vectorised else PartitionSpec('batch')
    self._batch_sharding = NamedSharding(mesh, batch_axis)
    self._programs = compiled_programs(step_fn, (0, 0, 0, 0), execution, self._vectorised,
                                       donate_argnums=0,
                                       compiler_options=compiler_options.for_run(config))
    self._local_batch_shape = (*((len(run_keys),) if self._vectorised else ()),
                               config.batch_size // jax.process_count(), *data_shape)
    self._train_keys = stack([keys.train for keys in run_keys], self._vectorised)
    self._hyperparams = stack(hyperparams, self._vectorised)

  def _local_batch(self, step: int) -> np.ndarray:
    raise NotImplementedError

  def _timing_args(self, state, step: int) -> tuple[tuple, dict]:
    del step  # a zero batch: reading one would move the input pipeline
    batch = jax.make_array_from_process_local_data(
        self._batch_sharding, np.zeros(self._local_batch_shape, np.float32))
    return (batch, self._train_keys, self._hyperparams), {}

  def _stack(self, batches: list[np.ndarray]) -> np.ndarray:
    return np.stack(batches) if self._vectorised else batches[0]

  def __call__(self, state, step: int, stop: int):
    del stop  # one step at a time
    batch = jax.make_array_from_process_local_data(self._batch_sharding, self._local_batch(step))
    state, metrics = self._program(state, batch, self._train_keys, self._hyperparams)
    return state, jax.tree.map(lambda value: value[..., None], metrics), step + 1


class HostRunner(_OneStepRunner):
  """Batches the host gathers from the training split in memory (on several hosts, each
  process feeds its own rows of the batch every host computes identically)."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams,
               execution='vmap'):
    super().__init__(config, mesh, step_fn, run_keys, hyperparams, execution,
                     dataset.data_shape)
    self._host_batches = [steps.HostBatches(dataset.train.images, keys.data_order,
                                            steps_per_epoch=schedule.steps_per_epoch,
                                            batch_size=config.batch_size) for keys in run_keys]

  def _local_batch(self, step: int) -> np.ndarray:
    batch = self._stack([batches(step) for batches in self._host_batches])
    return _process_rows(batch, self._vectorised)


class GrainRunner(_OneStepRunner):
  """Batches grain streams from the training records; each process reads its own rows.
  `data_iterators[i]` is run i's iterator, saved with its checkpoints and restored from them
  by the training loop."""

  def __init__(self, config, dataset, schedule, mesh, step_fn, run_keys, hyperparams,
               execution='vmap'):
    super().__init__(config, mesh, step_fn, run_keys, hyperparams, execution,
                     dataset.data_shape)
    process_index, process_count = streaming.process_shard()
    self.data_iterators = [streaming.iterator(streaming.training_batches(
        dataset.train, seed=streaming.shuffle_seed(keys.data_order),
        steps_per_epoch=schedule.steps_per_epoch, batch_size=config.batch_size,
        num_epochs=config.num_epochs, binarization=config.data.binarization,
        binarization_seed=config.data.binarization_seed, process_index=process_index,
        process_count=process_count), config.streaming) for keys in run_keys]

  def _local_batch(self, step: int) -> np.ndarray:
    del step  # the iterators are at it
    return self._stack([next(iterator) for iterator in self.data_iterators])


# The input pipelines (`config.input_pipeline`), each with the runner that executes it.
RUNNERS = {'device': DeviceRunner, 'host': HostRunner, 'grain': GrainRunner}
INPUT_PIPELINES = tuple(RUNNERS)


def _process_rows(batch: np.ndarray, vectorised: bool) -> np.ndarray:
  """This process's share of a global batch (all of it on one host): each host feeds its own
  rows, in process order, of the batch every host computes identically."""
  count, index = jax.process_count(), jax.process_index()
  axis = 1 if vectorised else 0
  rows = batch.shape[axis] // count
  return np.take(batch, np.arange(index * rows, (index + 1) * rows), axis=axis)
