"""vae_jax/image_files.py: your own images, from a folder of PNG/JPEG files or a .npy/.npz
array; the checks that name what is wrong."""

import numpy as np
import pytest
from PIL import Image

from vae_jax import data, image_files
from configs import quickstart


def _folder(tmp_path, count=12, size=(8, 8), mode='L'):
  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for index in range(count):
    pixels = rng.integers(0, 256, (size[1], size[0], *((3,) if mode == 'RGB' else ())), np.uint8)
    Image.fromarray(pixels, mode).save(folder / f'{index:03d}.png')
  return folder


def _data_config(name, **overrides):
  config = quickstart.get_config().data
  config.update(**{'name': str(name), 'binarization': 'none', 'test_size': 0, **overrides})
  return config


def test_a_folder_is_read_split_and_scaled_as_the_files_hold_it(tmp_path):
  folder = _folder(tmp_path, count=20)
  dataset = data.load_dataset(_data_config(folder))
  assert len(dataset.train) == 18 and len(dataset.test) == 2  # a tenth for testing by default
  assert dataset.data_shape == (8, 8, 1) and dataset.train.labels is None
  from_file = np.asarray(Image.open(folder / '000.png'), np.float32)[..., None] / 255
  every = np.concatenate([dataset.train.images, dataset.test.images])
  assert min(np.abs(every - from_file).max(axis=(1, 2, 3))) == 0  # one of them, exactly
  streamed = data.load_dataset(_data_config(folder), stream_train=True)
  assert isinstance(streamed.train, data.RecordSplit) and len(streamed.train) == 18
  np.testing.assert_array_equal(streamed.train.take(slice(0, 18)).images, dataset.train.images)


def test_arrays_from_npy_and_npz_files_with_labels(tmp_path):
  images = np.random.default_rng(1).integers(0, 256, (30, 6, 6, 3), np.uint8)
  np.save(tmp_path / 'faces.npy', images)
  np.savez(tmp_path / 'faces.npz', images=images, labels=np.arange(30) % 3)
  from_npy = data.load_dataset(_data_config(tmp_path / 'faces.npy', test_size=5))
  from_npz = data.load_dataset(_data_config(tmp_path / 'faces.npz', test_size=5))
  assert from_npy.data_shape == (6, 6, 3) and len(from_npy.test) == 5
  np.testing.assert_array_equal(from_npy.train.images, from_npz.train.images)
  assert from_npz.train.images.max() <= 1 and set(from_npz.train.labels) == {0, 1, 2}


def test_each_unusable_input_gets_one_message_naming_it(tmp_path):
  mixed = _folder(tmp_path)
  Image.fromarray(np.zeros((9, 8), np.uint8)).save(mixed / 'zzz.png')
  with pytest.raises(image_files.ImageFilesError,
                     match=r'differ in size.*000.png is \(8, 8, 1\).*zzz.png is \(9, 8, 1\)'):
    data.load_dataset(_data_config(mixed))
  deep = tmp_path / 'sixteen_bit'
  deep.mkdir()
  Image.fromarray(np.zeros((8, 8), np.uint16)).save(deep / 'a.png')
  with pytest.raises(image_files.ImageFilesError, match=r"a.png is 'I;16', not 8-bit grey"):
    data.load_dataset(_data_config(deep))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(image_files.ImageFilesError, match='holds no PNG or JPEG file'):
    data.load_dataset(_data_config(empty))
  np.save(tmp_path / 'flat.npy', np.zeros((4, 64)))
  with pytest.raises(image_files.ImageFilesError, match=r'shape \(4, 64\): expected images'):
    data.load_dataset(_data_config(tmp_path / 'flat.npy'))


def test_a_bare_name_is_never_a_folder_even_where_one_of_that_name_exists(tmp_path, monkeypatch):
  (tmp_path / 'mnist').mkdir()
  monkeypatch.chdir(tmp_path)
  assert not image_files.names_image_files('mnist')  # TFDS's MNIST, not the folder
  assert image_files.names_image_files('mnist/') and image_files.names_image_files('./mnist')
  assert image_files.names_image_files('faces.npz')
