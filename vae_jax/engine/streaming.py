"""Streaming input with grain (`input_pipeline='grain'`): the training split is read record by
record from its source (a TFDS `data_source` over array_record files), so host memory does not
grow with the dataset.

    record indices ─ shuffled per epoch ─ an epoch's first steps_per_epoch × batch_size
      ─ blocks of this process's rows ─ repeat ─ read and decode each block of records
      (uint8 → [0, 1]; static binarisation per record) ─ threads read and prefetch ahead

Element `s` of the batched `MapDataset` is step `s`'s batch: the pipeline is a pure function of
(records, seed, step), whatever the number of threads or worker processes. With P processes,
process p reads the p-th of P equal blocks of each batch, so the per-process rows, in process
order, are the single-process batch: a multi-host run trains on the batches of a single-host
one. The iterator's state (`grain.checkpoint`) is saved with every
checkpoint, so a resumed run continues on the very next batch.

Grain's shuffle (a per-epoch `index_shuffle`, O(1) memory) orders the data differently from the
in-memory pipelines' `steps.epoch_order`: 'grain' runs train on other batches than 'device' or
'host' runs of the same seed (identically across their own resumes, processes and threads).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import ml_collections
import numpy as np
from absl import flags

from vae_jax import data, options, registries
from vae_jax.options import OPERATIONAL, Option

if TYPE_CHECKING:
  import grain

# grain is imported where a streamed run uses it, not with this module: every launch imports
# the engine, and grain costs 0.2 s to import.


class _ReadImages:
  """A batch of record indices → their images, float32 `[B, H, W, C]` in [0, 1], read in one
  call (array_record reads a batch of records several times faster than one at a time). With
  static binarisation, each record's Bernoulli draw is fixed by `binarization_seed` and its
  index."""

  def __init__(self, source, num_records: int, static_binarization_seed: int | None):
    self._source, self._num_records = source, num_records
    self._seed = static_binarization_seed

  def __call__(self, indices: np.ndarray) -> np.ndarray:
    indices = [int(index) % self._num_records for index in indices]  # later epochs: + k × size
    images = np.stack([data.record_image(record)
                       for record in self._source.__getitems__(indices)])
    if self._seed is None:
      return images
    uniform = np.stack([np.random.default_rng((self._seed, index)).random(images.shape[1:],
                                                                           np.float32)
                        for index in indices])
    return (uniform < images).astype(np.float32)


def shuffle_seed(data_order_key: jax.Array) -> int:
  """Grain's shuffle seed (an unsigned 32-bit integer) from a run's data-order key."""
  return int(jax.random.bits(data_order_key, dtype=np.uint32))


def process_shard() -> tuple[int, int]:
  """(this process's index, the number of processes), as grain's `ShardByJaxProcess` says."""
  import grain  # pylint: disable=import-outside-toplevel
  shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
  return shard.shard_index, shard.shard_count


def training_batches(split: data.RecordSplit, *, seed: int, steps_per_epoch: int,
                     batch_size: int, num_epochs: int, binarization: str,
                     binarization_seed: int, process_index: int = 0,
                     process_count: int = 1) -> 'grain.MapDataset':
  """The batches of one run, as a `MapDataset` whose element `s` is this process's rows
  (`batch_size // process_count` images) of step `s`'s batch."""
  import grain  # pylint: disable=import-outside-toplevel
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} must be a multiple of the {process_count} '
                     'processes: each feeds an equal share of every batch.')
  static_seed = binarization_seed if binarization == 'static' else None
  order = grain.MapDataset.range(split.num_records).shuffle(seed=seed)
  epoch = order[:steps_per_epoch * batch_size]  # the remainder of each epoch is dropped
  # The epoch in blocks of batch_size / P indices: step s's batch is blocks sP .. sP + P - 1,
  # and process p reads block sP + p, so the processes' rows, in process order, are exactly
  # the single-process batch (each row keeps its place, and with it its noise).
  blocks = epoch.batch(batch_size // process_count, drop_remainder=True)
  index_batches = blocks[process_index::process_count].repeat(num_epochs)
  return index_batches.map(_ReadImages(split.source, split.num_records, static_seed))


def iterator(batches: 'grain.MapDataset', config: ml_collections.ConfigDict):
  """A checkpointable iterator over `batches`, read by threads (and worker processes) ahead of
  the training step, as `config` (the `streaming` block) says."""
  import grain  # pylint: disable=import-outside-toplevel
  dataset = batches.to_iter_dataset(grain.ReadOptions(
      num_threads=config.read_threads, prefetch_buffer_size=config.prefetch_batches))
  if config.worker_processes:
    if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags (a notebook, a test)
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.worker_processes))
  return iter(dataset)


def next_step(batch_iterator) -> int:
  """The step whose batch `batch_iterator` yields next."""
  import grain  # pylint: disable=import-outside-toplevel
  return int(grain.experimental.get_next_index(batch_iterator))


def set_next_step(batch_iterator, step: int) -> None:
  """Makes `batch_iterator` yield step `step`'s batch next."""
  import grain  # pylint: disable=import-outside-toplevel
  grain.experimental.set_next_index(batch_iterator, step)


# input_pipeline='grain': how the records are read ahead of the step (none of these change the
# batches).
registries.add(registries.Component('run', 'streaming', None, options.at(
    'streaming', traits=(OPERATIONAL,),
    read_threads=Option(4, 'threads reading and decoding records', options.at_least(1)),
    prefetch_batches=Option(8, 'batches read ahead', options.at_least(1)),
    worker_processes=Option(0, '>0: that many processes read instead (for costly decoding)',
                            options.non_negative)), ()))
