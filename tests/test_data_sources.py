"""vae_jax/data/'s sources: how data.name chooses one; your own images (a folder of PNG/JPEG
files, a .npy/.npz array) and vectors (a .csv/.tsv table, a [N, D] array); the checks that name
what is wrong."""

import numpy as np
import pytest
from PIL import Image

from vae_jax import data
from vae_jax.errors import UserError
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
  with pytest.raises(data.DataError,
                     match=r'differ in size.*000.png is \(8, 8, 1\).*zzz.png is \(9, 8, 1\)'):
    data.load_dataset(_data_config(mixed))
  deep = tmp_path / 'sixteen_bit'
  deep.mkdir()
  Image.fromarray(np.zeros((8, 8), np.uint16)).save(deep / 'a.png')
  with pytest.raises(data.DataError, match=r"a.png is 'I;16', not 8-bit grey"):
    data.load_dataset(_data_config(deep))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(data.DataError, match='holds no PNG or JPEG file'):
    data.load_dataset(_data_config(empty))
  np.save(tmp_path / 'deep.npy', np.zeros((4, 2, 2, 2, 2)))
  with pytest.raises(data.DataError, match=r'shape \(4, 2, 2, 2, 2\): expected images'):
    data.load_dataset(_data_config(tmp_path / 'deep.npy'))


def test_a_bare_name_is_never_a_folder_even_where_one_of_that_name_exists(tmp_path, monkeypatch):
  (tmp_path / 'mnist').mkdir()
  monkeypatch.chdir(tmp_path)
  assert data.source_name('mnist') == 'tfds'  # TFDS's MNIST, not the folder
  assert data.source_name('mnist/') == data.source_name('./mnist') == 'image_folder'
  assert data.source_name('faces.npz') == data.source_name('/data/x.npy') == 'array_file'


def _table(tmp_path, rows, header='a,b,c', name='table.csv'):
  path = tmp_path / name
  path.write_text('\n'.join([header, *rows]) + '\n', encoding='utf-8')
  return path


def test_a_table_is_read_as_vectors_standardised_on_its_training_split(tmp_path):
  rng = np.random.default_rng(0)
  values = rng.normal([1.0, -5.0, 30.0], [0.5, 2.0, 10.0], (40, 3))
  labels = rng.integers(0, 3, 40)
  path = _table(tmp_path, [f'{x:.6f},{label},{y:.6f},{z:.6f}' for (x, y, z), label
                           in zip(values, labels)], header='x,kind,y,z')
  dataset = data.load_dataset(_data_config(path, test_size=8, label_column='kind',
                                           validation_size=4))
  assert dataset.kind == data.VECTORS and dataset.data_shape == (3,)
  assert dataset.standardization.feature_names == ('x', 'y', 'z')
  assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (28, 4, 8)
  np.testing.assert_allclose(dataset.train.images.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(dataset.train.images.std(0), 1, atol=1e-5)
  # The training rows in the data's units, recovered by inverting the standardisation, are the
  # file's rows; the Jacobian is numpy's −Σ log sd of those rows.
  raw = dataset.standardization.invert(dataset.train.images)
  rows = [np.flatnonzero(np.all(np.isclose(values, row, atol=1e-4), axis=1)) for row in raw]
  assert all(len(found) == 1 for found in rows)
  train_raw = values[np.concatenate(rows)]
  assert dataset.standardization.log_jacobian == pytest.approx(
      -np.log(train_raw.std(axis=0)).sum(), rel=1e-5)
  np.testing.assert_array_equal(dataset.train.labels, labels[np.concatenate(rows)])
  tsv = _table(tmp_path, [row.replace(',', '\t') for row in path.read_text().splitlines()[1:]],
               header='x\tkind\ty\tz', name='table.tsv')
  again = data.load_dataset(_data_config(tsv, test_size=8, label_column='kind',
                                         validation_size=4))
  np.testing.assert_array_equal(again.test.images, dataset.test.images)


def test_the_jacobian_makes_a_density_of_standardised_vectors_one_in_the_data_units():
  from scipy import stats  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(1)
  x = rng.normal([3.0, -1.0], [4.0, 0.1], (50, 2))
  fitted = data.Standardization.fit(x)
  # N(0, I) over x_std is N(mean, diag sd²) over x: log p(x) = log p(x_std) + log_jacobian.
  over_x = stats.multivariate_normal(fitted.mean, np.diag(fitted.scale**2)).logpdf(x)
  over_standardised = stats.multivariate_normal(np.zeros(2)).logpdf(fitted.apply(x))
  np.testing.assert_allclose(over_standardised + fitted.log_jacobian, over_x, rtol=1e-5)


def test_an_array_of_two_axes_is_vectors_and_of_three_or_four_images(tmp_path):
  np.savez(tmp_path / 'vectors.npz', x=np.arange(60.0).reshape(20, 3), labels=np.arange(20))
  np.save(tmp_path / 'only.npy', np.arange(60.0).reshape(20, 3))
  np.savez(tmp_path / 'images.npz', np.zeros((20, 4, 4), np.uint8))
  vectors = data.load_dataset(_data_config(tmp_path / 'vectors.npz', test_size=5))
  only = data.load_dataset(_data_config(tmp_path / 'only.npy', test_size=5))
  images = data.load_dataset(_data_config(tmp_path / 'images.npz', test_size=5))
  assert vectors.kind == only.kind == data.VECTORS and vectors.data_shape == (3,)
  assert vectors.train.labels is not None and only.train.labels is None
  assert images.kind == data.IMAGES and images.data_shape == (4, 4, 1)
  raw = data.load_dataset(_data_config(tmp_path / 'only.npy', test_size=5, standardize=False))
  assert raw.standardization is None and raw.test.images.max() > 1


def test_a_bad_table_gets_one_message_naming_the_row_and_column(tmp_path):
  words = _table(tmp_path, ['1,2,3', '4,red,6'], name='words.csv')
  with pytest.raises(data.DataError, match=r"column 'b' is not numeric \(row 2 holds 'red'\)"):
    data.load_dataset(_data_config(words))
  missing = _table(tmp_path, ['1,2,3', '4,5,nan', '7,8,9'], name='missing.csv')
  with pytest.raises(data.DataError, match=r"row 2, column 'c' holds nan"):
    data.load_dataset(_data_config(missing))
  np.save(tmp_path / 'infinite.npy', np.array([[0.0, 1.0], [np.inf, 2.0]]))
  with pytest.raises(data.DataError, match=r"row 1, column 'number 1' holds inf"):
    data.load_dataset(_data_config(tmp_path / 'infinite.npy'))
  with pytest.raises(data.DataError, match=r'data.test_size=5 must be in \(0, 3\)'):
    data.load_dataset(_data_config(_table(tmp_path, ['1,2,3'] * 3, name='few.csv'),
                                   test_size=5))


def test_vectors_for_an_image_only_family_name_the_families_that_fit(tmp_path):
  from vae_jax.engine import config_checks  # pylint: disable=import-outside-toplevel
  path = _table(tmp_path, [f'{i},{i % 3},{i % 5}' for i in range(40)])
  config = quickstart.get_config()
  config.data.update(name=str(path), binarization='none', test_size=0)
  dataset = data.load_dataset(config.data)
  config.model.family = 'top_down'
  with pytest.raises(config_checks.ConfigError, match=r'model.family=top_down reads images.*'
                     r'use a family for vectors \(.*vae.*configs/vectors.py'):
    config_checks.validate_config_for_data(config, dataset)
  config.model.family = 'auto'
  config.model.decoder.kind = 'conv'
  with pytest.raises(config_checks.ConfigError, match=r'model.decoder.kind=conv reads images'):
    config_checks.validate_config_for_data(config, dataset)
  config.model.decoder.kind = 'mlp'
  config.batch_size = 50
  with pytest.raises(config_checks.ConfigError, match='batch_size=50 exceeds the 36 training'):
    config_checks.validate_config_for_data(config, dataset)


def test_a_source_that_breaks_the_contract_is_named_with_the_missing_method():
  from vae_jax import registries  # pylint: disable=import-outside-toplevel

  @data.register_source('no_load_source')
  class NoLoad:  # pylint: disable=unused-variable
    def __init__(self, config):
      del config

    def traits(self):
      return data.Traits()

  try:
    config = quickstart.get_config()
    config.data.name = 'no_load_source'
    assert data.source_name('no_load_source') == 'no_load_source'
    with pytest.raises(UserError, match=r"^data_source 'no_load_source' \(module "
                       r"tests.test_data_sources\) builds a NoLoad without load\(\*, "
                       r"stream_train\): "):
      data.load_dataset(config.data)
  finally:
    del registries.COMPONENTS['data_source']['no_load_source']


def test_a_saved_standardisation_is_reloaded_and_used_instead_of_a_refit(tmp_path):
  np.save(tmp_path / 'vectors.npy', np.random.default_rng(2).normal(5.0, 3.0, (30, 4)))
  fitted = data.load_dataset(_data_config(tmp_path / 'vectors.npy', test_size=5)).standardization
  fitted.save(str(tmp_path))
  saved = data.Standardization.load(str(tmp_path))
  np.testing.assert_array_equal(saved.mean, fitted.mean)
  np.testing.assert_array_equal(saved.scale, fitted.scale)
  assert data.Standardization.load(str(tmp_path / 'elsewhere')) is None
  np.save(tmp_path / 'vectors.npy', np.random.default_rng(3).normal(0.0, 1.0, (30, 4)))
  reloaded = data.load_dataset(_data_config(tmp_path / 'vectors.npy', test_size=5),
                               standardization=saved)
  assert reloaded.standardization is saved  # not refitted on the changed file
  test_rows = np.load(tmp_path / 'vectors.npy')[np.random.default_rng(0).permutation(30)[:5]]
  np.testing.assert_allclose(reloaded.standardization.invert(reloaded.test.images), test_rows,
                             rtol=1e-5, atol=1e-5)


# Images of any size (data.image_size), as torchvision's ImageFolder and transforms read them.

def _save(path, pixels, **options):
  Image.fromarray(np.asarray(pixels, np.uint8)).save(path, **options)
  return path


def test_image_size_resizes_the_shorter_side_with_lanczos_and_keeps_the_centre_square(tmp_path):
  rng = np.random.default_rng(3)
  folder = tmp_path / 'mixed'
  folder.mkdir()
  wide = _save(folder / 'a_wide.png', rng.integers(0, 256, (24, 40, 3)))
  tall = _save(folder / 'b_tall.png', rng.integers(0, 256, (37, 21, 3)))
  _save(folder / 'c_small.png', rng.integers(0, 256, (6, 5, 3)))  # enlarged to 8
  with pytest.raises(data.DataError, match=r'differ in size.*--config\.data\.image_size=N'):
    data.load_dataset(_data_config(folder, test_size=1))
  dataset = data.load_dataset(_data_config(folder, test_size=1, image_size=8))
  assert dataset.data_shape == (8, 8, 3)

  def reference(path, new_size, box):  # resized by PIL, then cropped by numpy
    image = Image.open(path).resize(new_size, Image.Resampling.LANCZOS)
    top, left = box
    return np.asarray(image, np.float32)[top:top + 8, left:left + 8] / 255

  every = np.concatenate([dataset.train.images, dataset.test.images])
  for expected in (reference(wide, (13, 8), (0, 2)), reference(tall, (8, 14), (3, 0))):
    assert min(np.abs(every - expected).max(axis=(1, 2, 3))) == 0  # one of them, exactly


def test_exif_orientation_grey_and_transparent_files_in_a_colour_folder(tmp_path):
  rng = np.random.default_rng(4)
  folder = tmp_path / 'colour'
  folder.mkdir()
  colour = rng.integers(0, 256, (6, 4, 3))
  _save(folder / 'a_colour.png', colour)
  grey = rng.integers(0, 256, (6, 4))
  _save(folder / 'b_grey.png', grey)
  rgba = np.concatenate([rng.integers(0, 256, (6, 4, 3)), np.zeros((6, 4, 1))], axis=-1)
  rgba[:3, :, 3] = 255  # the top half opaque, the bottom half transparent
  _save(folder / 'c_rgba.png', rgba)
  exif = Image.Exif()
  exif[0x0112] = 6  # stored 4 high and 6 wide, shown turned 90° clockwise: 6 high, 4 wide
  stored = rng.integers(0, 256, (4, 6, 3))
  _save(folder / 'd_rotated.png', stored, exif=exif.tobytes())
  paths = sorted(str(path) for path in folder.iterdir())
  from vae_jax.data import image_folder
  summary = image_folder.check_image_files(paths)
  assert (summary.shape, summary.grey_converted, summary.transparent) == ((6, 4, 3), 1, 1)
  images = image_folder.ImageFiles(paths, channels=3).read_all()
  np.testing.assert_array_equal(images[0]['image'], colour)
  np.testing.assert_array_equal(images[1]['image'], np.repeat(grey[..., None], 3, axis=-1))
  np.testing.assert_array_equal(images[2]['image'][:3], rgba[:3, :, :3])
  np.testing.assert_array_equal(images[2]['image'][3:], 255)  # flattened onto white
  np.testing.assert_array_equal(images[3]['image'], np.rot90(stored, k=-1))


def test_class_sub_folders_are_labels_in_their_sorted_order(tmp_path):
  folder = tmp_path / 'classes'
  for name, count in (('zebra', 3), ('cat', 4), ('dog', 5)):
    (folder / name).mkdir(parents=True)
    for index in range(count):
      _save(folder / name / f'{index}.png', np.full((5, 5), {'cat': 0, 'dog': 1, 'zebra': 2}[
          name] * 100))
  dataset = data.load_dataset(_data_config(folder, test_size=3))
  assert dataset.traits.labels
  for split in (dataset.train, dataset.test):  # cat 0, dog 1, zebra 2: the pixels say which
    np.testing.assert_array_equal(split.labels, np.round(split.images[:, 0, 0, 0] * 255 / 100))
  assert sorted(np.concatenate([dataset.train.labels, dataset.test.labels])) == [0] * 4 + [
      1] * 5 + [2] * 3
  _save(folder / 'loose.png', np.zeros((5, 5)))
  with pytest.raises(data.DataError, match=r'both image files \(loose.png.*sub-folders \(cat/'):
    data.load_dataset(_data_config(folder, test_size=3))


def test_an_empty_class_folder_and_flips_asked_of_vectors_are_refused_naming_the_fix(tmp_path):
  folder = tmp_path / 'classes'
  (folder / 'cat').mkdir(parents=True)
  (folder / 'dog').mkdir()
  _save(folder / 'cat' / '0.png', np.zeros((5, 5)))
  with pytest.raises(data.DataError, match=r"class sub-folder '.*dog' holds no PNG or JPEG file"):
    data.load_dataset(_data_config(folder))
  path = _table(tmp_path, [f'{i},{i % 3}' for i in range(20)], header='a,b')
  with pytest.raises(data.DataError, match=r'data.random_flip flips images.*random_flip=False'):
    data.load_dataset(_data_config(path, random_flip=True))
