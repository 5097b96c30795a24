"""The grain streaming pipeline: its batches (every example once an epoch, per-process shares
that add up to the single-process batch, static binarisation fixed per record), a TFDS dataset
streamed from its array_record files by the launcher, and resumes that refuse a silent change
of batch order. (A run killed mid-epoch resuming bitwise: tests/scenarios/test_reliability.py.)"""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from scripts import synthetic_tfds
from tests.conftest import REPO_ROOT, make_tiny_config
from vae_jax import data
from vae_jax.engine import checkpointing, metric_writers, streaming, training


def _split(num_records=50, shape=(4, 4, 1)):
  images = np.random.default_rng(0).integers(0, 256, (num_records, *shape), dtype=np.uint8)
  return data.RecordSplit(data.ArraySource(images, None), num_records), images


def _batches(split, **overrides):
  options = dict(seed=7, steps_per_epoch=4, batch_size=10, num_epochs=3, binarization='none',
                 binarization_seed=0)
  options.update(overrides)
  return streaming.training_batches(split, **options)


def _row_ids(batch, images):
  """Which records a batch holds (the images are distinct)."""
  flat = images.reshape(len(images), -1).astype(np.float32) / 255
  return [int(np.flatnonzero((flat == row.reshape(-1)).all(1))[0]) for row in batch]


def test_each_epoch_draws_distinct_records_in_a_new_order():
  split, images = _split(num_records=45)
  batches = _batches(split)
  assert len(batches) == 12 and batches[0].shape == (10, 4, 4, 1)
  epochs = [sum((_row_ids(batches[s], images) for s in range(e * 4, e * 4 + 4)), [])
            for e in range(3)]
  for epoch in epochs:
    assert len(set(epoch)) == 40 and max(epoch) < 45  # 40 distinct records; 5 dropped
  assert epochs[0] != epochs[1] and set(epochs[0]) != set(epochs[1])  # reshuffled
  # A pure function of (records, seed, step): built again, the same batches.
  np.testing.assert_array_equal(_batches(split)[5], batches[5])
  assert not np.array_equal(_batches(split, seed=8)[5], batches[5])


@pytest.mark.parametrize('process_count', [2, 5])
def test_the_processes_rows_in_process_order_are_the_single_process_batch(process_count):
  split, _ = _split()
  single = _batches(split)
  shares = [_batches(split, process_index=p, process_count=process_count)
            for p in range(process_count)]
  for step in (0, 3, 6, 11):  # each row in its place: it meets the same noise in the step
    np.testing.assert_array_equal(np.concatenate([share[step] for share in shares]),
                                  single[step])
  with pytest.raises(ValueError, match='multiple of the 3 processes'):
    _batches(split, process_count=3)


def test_static_binarisation_is_fixed_per_record_and_follows_the_intensities():
  intensity = np.full((400, 8, 8, 1), 0.3, np.float32)
  split = data.RecordSplit(data.ArraySource(intensity, None), 400)
  batches = _batches(split, batch_size=100, binarization='static', binarization_seed=3)
  first, second = np.concatenate([batches[s] for s in range(4)]), np.concatenate(
      [batches[s] for s in range(4, 8)])
  assert set(np.unique(first)) == {0.0, 1.0}
  assert abs(first.mean() - 0.3) < 0.01  # 25,600 Bernoulli(0.3) pixels: sd 0.003
  # The same records, drawn once: both epochs hold the same multiset of binary images.
  as_sorted = lambda x: sorted(map(bytes, x.astype(np.uint8).reshape(len(x), -1)))
  assert as_sorted(first) == as_sorted(second)


def test_a_streamed_split_reads_like_the_in_memory_one():
  config = make_tiny_config().data
  config.validation_size = 100
  in_memory = data.load_dataset(config)
  streamed = data.load_dataset(config, stream_train=True)
  assert isinstance(streamed.train, data.RecordSplit)
  assert len(streamed.train) == len(in_memory.train)
  np.testing.assert_array_equal(streamed.train.take(slice(3, 9)).images,
                                in_memory.train.images[3:9])
  np.testing.assert_array_equal(streamed.validation.images, in_memory.validation.images)
  np.testing.assert_array_equal(streamed.test.images, in_memory.test.images)
  np.testing.assert_allclose(streamed.train.mean_image(chunk_size=97),
                             in_memory.train.images.astype(np.float64).mean(0), rtol=1e-12)


def test_a_resume_that_switches_to_or_from_grain_is_refused(tmp_path):
  config = make_tiny_config()
  checkpointing.save_config(config, str(tmp_path))
  for pipeline, refused in (('host', False), ('grain', True)):
    changed = make_tiny_config()
    changed.input_pipeline = pipeline
    if refused:
      with pytest.raises(checkpointing.WorkdirConfigMismatchError, match='input_pipeline'):
        checkpointing.check_config(changed, str(tmp_path), defaults=default.get_config())
    else:
      checkpointing.check_config(changed, str(tmp_path), defaults=default.get_config())


@pytest.fixture(scope='module')
def synthetic_data_dir(tmp_path_factory):
  return synthetic_tfds.prepare(str(tmp_path_factory.mktemp('tfds')), train_records=700,
                                test_records=100)


@pytest.mark.slow
def test_the_launcher_streams_a_tfds_dataset_from_its_array_record_files(
    tmp_path, synthetic_data_dir):
  workdir = str(tmp_path / 'run')
  command = [sys.executable, '-m', 'experiments.train', '--config=configs/quickstart.py',
             f'--workdir={workdir}', f'--data_dir={synthetic_data_dir}',
             '--config.data.name=synthetic_digits', '--config.data.validation_size=100',
             '--config.input_pipeline=grain', '--config.streaming.worker_processes=0',
             '--config.num_epochs=2', '--config.model.latent_dim=2',
             '--config.model.encoder.hidden_sizes=(16,)',
             '--config.model.decoder.hidden_sizes=(16,)', '--config.evals.images.num_images=0']
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'train 600, validation 100, test 100 examples of shape (28, 28, 1)' in result.stderr
  assert 'grain-fed' in result.stderr
  metrics = metric_writers.read_metrics(workdir)
  assert np.isfinite([m['test/elbo'] for m in metrics if 'test/elbo' in m]).all()
  steps = sorted(int(name) for name in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert os.path.isfile(os.path.join(workdir, 'checkpoints', str(steps[-1]), 'data_iterator',
                                     'process_0-of-1.json'))


@pytest.mark.slow
def test_streaming_with_worker_processes_trains_like_streaming_with_threads(tmp_path):
  config = make_tiny_config()
  config.input_pipeline, config.num_epochs, config.evals.images.num_images = 'grain', 1, 0
  threads = training.train_and_evaluate(config, str(tmp_path / 'threads'))
  config.streaming.worker_processes = 2
  workers = training.train_and_evaluate(config, str(tmp_path / 'workers'))
  for a, b in zip(*(jax_leaves(state.params) for state in (threads, workers))):
    np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
  import jax  # pylint: disable=import-outside-toplevel
  return [np.asarray(leaf) for leaf in jax.tree.leaves(tree)]
