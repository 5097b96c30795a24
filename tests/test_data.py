"""The data pipeline: mocked TFDS, the bundled digits, real MNIST and Frey Face from ../shared."""

import time

import jax
import numpy as np
import pytest

from configs import default
from vae_jax import data


def _data_config(**overrides):
  config = default.get_config().data
  config.update(overrides)
  return config


def test_tfds_pipeline_on_mocked_mnist(mock_tfds):
  with mock_tfds(num_examples=40):
    dataset = data.load_dataset(_data_config(name='mnist', validation_size=10,
                                             binarization='dynamic', tfds_data_dir='/nonexistent'))
  assert dataset.data_shape == (28, 28, 1)
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (30, 10, 40)
  for split in (dataset.train, dataset.validation, dataset.test):
    assert split.images.dtype == np.float32 and split.labels.dtype == np.int32
    assert split.images.min() >= 0.0 and split.images.max() <= 1.0
  # Dynamic: training images keep their grey levels; evaluation splits are binarised once.
  assert len(np.unique(dataset.train.images)) > 2
  for split in (dataset.validation, dataset.test):
    assert set(np.unique(split.images)) <= {0.0, 1.0}


def test_static_binarisation_is_fixed_by_its_seed(mock_tfds):
  with mock_tfds(num_examples=20):
    first = data.load_dataset(_data_config(binarization='static', binarization_seed=3))
    again = data.load_dataset(_data_config(binarization='static', binarization_seed=3))
    other = data.load_dataset(_data_config(binarization='static', binarization_seed=4))
  assert set(np.unique(first.train.images)) <= {0.0, 1.0}
  np.testing.assert_array_equal(first.train.images, again.train.images)
  assert not np.array_equal(first.train.images, other.train.images)


def test_continuous_data_is_left_unbinarised(mock_tfds):
  with mock_tfds(num_examples=20):
    dataset = data.load_dataset(_data_config(binarization='none'))
  assert len(np.unique(dataset.test.images)) > 2


@pytest.mark.parametrize('name,shape', [('cifar10', (32, 32, 3)), ('mnist', (28, 28, 1)),
                                        ('svhn_cropped', (32, 32, 3))])
def test_8bit_tfds_images_keep_their_256_levels(mock_tfds, name, shape):
  # Any TFDS image dataset by name: with binarization=none the pixels stay k / 255 exactly,
  # as the discretised-logistic likelihoods expect.
  with mock_tfds(num_examples=12):
    dataset = data.load_dataset(_data_config(name=name, binarization='none'))
  assert dataset.data_shape == shape and dataset.train.labels is not None
  levels = dataset.train.images * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  assert len(np.unique(levels)) > 2


def test_an_8bit_image_becomes_each_level_over_255_in_float32():
  # Every level k as float32(k) / float32(255), bit for bit, whatever the image's shape.
  levels = np.arange(256, dtype=np.uint8)
  expected = levels.astype(np.float32) / np.float32(255)
  image = data.record_image({'image': levels.reshape(16, 16)})
  assert image.dtype == np.float32 and image.shape == (16, 16, 1)
  np.testing.assert_array_equal(image.ravel().view(np.uint32), expected.view(np.uint32))


def test_dynamic_binarisation_statistics():
  # Each pixel is 1 with probability equal to its intensity, independently per key.
  images = np.linspace(0.0, 1.0, 11, dtype=np.float32)[None].repeat(20_000, 0)
  samples = np.asarray(data.binarize(jax.random.key(0), images))
  assert set(np.unique(samples)) <= {0.0, 1.0}
  np.testing.assert_allclose(samples.mean(0), images[0], atol=0.015)
  other = np.asarray(data.binarize(jax.random.key(1), images))
  assert 0.05 < np.mean(samples != other) < 0.5


def test_bundled_digits_need_no_download():
  dataset = data.load_dataset(_data_config(name='digits', test_size=297, validation_size=100))
  assert dataset.data_shape == (8, 8, 1)
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (1400, 100, 297)
  assert sorted(np.unique(dataset.test.labels)) == list(range(10))
  # The split is a function of split_seed only.
  again = data.load_dataset(_data_config(name='digits', test_size=297, validation_size=100))
  np.testing.assert_array_equal(dataset.test.labels, again.test.labels)


def test_missing_tfds_data_fails_fast_with_instructions(tmp_path):
  start = time.perf_counter()
  with pytest.raises(data.DataUnavailableError) as error:
    data.load_dataset(_data_config(name='mnist', tfds_data_dir=str(tmp_path), download=False))
  assert time.perf_counter() - start < 30
  message = str(error.value)
  assert str(tmp_path) in message and 'TFDS_DATA_DIR' in message and 'tfds build mnist' in message


def test_missing_tfds_data_with_download_and_no_tensorflow_fails_fast(tmp_path):
  try:
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    pytest.skip('TensorFlow is installed, so preparing would be attempted.')
  except ImportError:
    pass
  with pytest.raises(data.DataUnavailableError, match=r"TensorFlow.*pip install '.\[prepare\]'"):
    data.load_dataset(_data_config(name='mnist', tfds_data_dir=str(tmp_path), download=True))


def test_tfds_data_dir_comes_from_config_then_environment(monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', '/from/env')
  assert data.tfds_data_dir(_data_config(tfds_data_dir='/from/config')) == '/from/config'
  assert data.tfds_data_dir(_data_config()) == '/from/env'
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert data.tfds_data_dir(_data_config()).endswith('tensorflow_datasets')


def test_frey_face_needs_a_path():
  with pytest.raises(data.DataUnavailableError, match='frey_rawface.mat'):
    data.load_dataset(_data_config(name='frey_face', binarization='none', test_size=200))


@pytest.mark.slow
def test_real_frey_face(shared_frey_face):
  dataset = data.load_dataset(_data_config(name='frey_face', path=shared_frey_face,
                                           binarization='none', test_size=200))
  assert dataset.data_shape == (28, 20, 1)
  assert (len(dataset.train), len(dataset.test)) == (1765, 200)
  assert dataset.train.labels is None
  # Values 8..238 of 255 in the file (its README).
  all_images = np.concatenate([dataset.train.images, dataset.test.images])
  np.testing.assert_allclose([all_images.min(), all_images.max()], [8 / 255, 238 / 255], rtol=1e-6)


@pytest.mark.slow
def test_real_mnist(shared_tfds_dir):
  dataset = data.load_dataset(_data_config(name='mnist', tfds_data_dir=shared_tfds_dir,
                                           binarization='dynamic', validation_size=10_000))
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (50_000, 10_000,
                                                                              10_000)
  assert dataset.data_shape == (28, 28, 1) and dataset.train.images.dtype == np.float32
  assert dataset.train.images.min() == 0.0 and dataset.train.images.max() == 1.0
  # Label counts of the test split, as published (../shared/tensorflow_datasets/README.md).
  np.testing.assert_array_equal(np.bincount(dataset.test.labels),
                                [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  assert dataset.test.labels[0] == 2  # TFDS's record order: test record 0 is a "2"
  # The binarised test set keeps the mean intensity of the grey-level images (about 0.13).
  grey_test = data.load_dataset(_data_config(name='mnist', tfds_data_dir=shared_tfds_dir,
                                             binarization='none')).test.images
  assert set(np.unique(dataset.test.images)) == {0.0, 1.0}
  np.testing.assert_allclose(dataset.test.images.mean(), grey_test.mean(), rtol=0.005)
  assert 0.12 < grey_test.mean() < 0.14


@pytest.mark.slow
def test_a_decoded_tfds_split_is_kept_and_read_back_bit_for_bit(shared_tfds_dir, tmp_path):
  from vae_jax.data import dataset as dataset_module, tfds_source  # pylint: disable=import-outside-toplevel
  config = _data_config(name='mnist', tfds_data_dir=shared_tfds_dir, binarization='none',
                        decoded_cache=str(tmp_path))
  first = data.load_dataset(config)  # decodes, and keeps both splits
  kept = sorted(path.name for path in tmp_path.iterdir())
  assert len(kept) == 2 and kept[0].startswith('mnist_3.0.1_test_'), kept
  source = tfds_source.TfdsSource(config)._open('test')  # pylint: disable=protected-access
  decoded = dataset_module.records_to_split(source.__getitems__(range(len(source))))
  np.testing.assert_array_equal(first.test.images, decoded.images)  # as decoded before the cache
  np.testing.assert_array_equal(first.test.labels, decoded.labels)
  path = tmp_path / kept[0]
  with np.load(path) as arrays:
    changed = {'images': 255 - arrays['images'], 'labels': arrays['labels']}
  np.savez(path, **changed)
  second = data.load_dataset(config)  # read from the cache: sees the change
  np.testing.assert_allclose(second.test.images, 1 - first.test.images, atol=1e-6)


class _DamagedSource:
  """A TFDS data source whose record file is cut short."""

  class dataset_info:  # pylint: disable=invalid-name
    data_dir, name = '/data/mnist/3.0.1', 'mnist'

  split = 'test'

  def __len__(self):
    return 3

  def __getitems__(self, keys):
    raise RuntimeError('Invalid Riegeli/records file: chunk boundary is 1245184 ...')


def test_a_damaged_tfds_record_file_is_named_in_one_line():
  from vae_jax.data import tfds_source  # pylint: disable=import-outside-toplevel
  source = tfds_source.TfdsSource(_data_config(name='mnist', decoded_cache='none'))
  with pytest.raises(data.DataError, match=r'^The TFDS split cannot be read: '
                     r'/data/mnist/3.0.1/mnist-test.\* is damaged \(Invalid Riegeli'):
    source._read_all(_DamagedSource())  # pylint: disable=protected-access
