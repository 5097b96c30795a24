"""Datasets as host arrays: each split decoded once, images `[N, H, W, C]` float32 in [0, 1];
or, for the streaming pipeline (`input_pipeline='grain'`), a training split that stays on disk
(`RecordSplit`, read record by record by `vae_jax.engine.streaming`) beside in-memory evaluation splits.

Sources:
  * any TFDS dataset with an `image` feature (`mnist`, `fashion_mnist`, ...), read through
    `tfds.data_source` (array_record, no TensorFlow needed);
  * `digits`: scikit-learn's bundled 8×8 handwritten digits (no download; the quickstart);
  * `frey_face`: Frey Face, from a `frey_rawface.mat` file the user supplies.

Binarisation (`config.binarization`):
  * 'dynamic': training images stay grey-level and each training step draws a fresh Bernoulli
    sample (`binarize`, called inside the compiled step); validation and test images are
    binarised once with `binarization_seed`, so evaluation is deterministic.
  * 'static': every split is binarised once with `binarization_seed`.
  * 'none': continuous values in [0, 1].
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import os
import socket
from typing import Any

import jax
import ml_collections
import numpy as np

from vae_jax import image_files, options, registries
from vae_jax.errors import UserError
from vae_jax.options import OPERATIONAL, SHAPES_STATE, Option

BINARIZATIONS = ('dynamic', 'static', 'none')
LOCAL_DATASETS = ('digits', 'frey_face')
FREY_FACE_URL = 'https://cs.nyu.edu/~roweis/data/frey_rawface.mat'


class DataUnavailableError(UserError, RuntimeError):
  """The dataset is not on disk and cannot be fetched; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # [N, H, W, C] float32 in [0, 1]
  labels: np.ndarray | None  # [N] int32, or None for unlabelled data

  def __len__(self) -> int:
    return len(self.images)

  def take(self, index) -> Split:
    return Split(self.images[index], None if self.labels is None else self.labels[index])


@dataclasses.dataclass(frozen=True)
class RecordSplit:
  """A split read record by record, never held in memory whole: records `[0, num_records)` of a
  random-access source (a `tfds.data_source`, or `ArraySource`) whose records are dicts with
  an `image` (uint8 in [0, 255], or float in [0, 1]) and perhaps a `label`."""
  source: Any
  num_records: int

  def __len__(self) -> int:
    return self.num_records

  def take(self, index: slice) -> Split:
    """The records `index` selects, read into memory (e.g. a linear probe's training subset)."""
    return _records_to_split(self.source.__getitems__(range(self.num_records)[index]))

  def mean_image(self, chunk_size: int = 10_000) -> np.ndarray:
    """The mean training image (float64), read in chunks: host memory stays bounded."""
    total = 0.0
    for start in range(0, self.num_records, chunk_size):
      total = total + self.take(slice(start, start + chunk_size)).images.sum(0, dtype=np.float64)
    return total / self.num_records


class ArraySource:
  """In-memory images as a random-access record source (the bundled datasets, streamed)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray | None):
    self._images, self._labels = images, labels

  def __len__(self) -> int:
    return len(self._images)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    record = {'image': self._images[index]}
    if self._labels is not None:
      record['label'] = self._labels[index]
    return record

  def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
    return [self[index] for index in indices]


def record_image(record: dict) -> np.ndarray:
  """A record's image as float32 `[H, W, C]` in [0, 1]."""
  image = np.asarray(record['image'])
  if image.ndim == 2:  # a single-channel image feature stored without its channel axis
    image = image[..., None]
  if image.dtype == np.uint8:
    return image.astype(np.float32) / np.float32(255.0)
  return image.astype(np.float32)


def _records_to_split(records: list[dict]) -> Split:
  images = np.stack([record_image(record) for record in records])
  labels = None
  if records and 'label' in records[0]:
    labels = np.asarray([record['label'] for record in records], np.int32)
  return Split(images, labels)


def mean_image(split: Split | RecordSplit) -> np.ndarray:
  """The mean image of a split, in memory or streamed."""
  if isinstance(split, RecordSplit):
    return split.mean_image()
  return np.asarray(split.images, np.float64).mean(0)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split | RecordSplit
  validation: Split | None
  test: Split

  @property
  def data_shape(self) -> tuple[int, ...]:
    return tuple(self.test.images.shape[1:])

  def eval_splits(self) -> dict[str, Split]:
    """The splits to evaluate, by name."""
    splits = {'test': self.test}
    if self.validation is not None:
      splits['validation'] = self.validation
    return splits


def binarize(rng: jax.Array, images: jax.Array) -> jax.Array:
  """A Bernoulli sample with the pixel intensities as probabilities (same dtype as `images`)."""
  return jax.random.bernoulli(rng, images).astype(images.dtype)


def load_dataset(config: ml_collections.ConfigDict, *, stream_train: bool = False) -> Dataset:
  """Loads, splits and (if asked) binarises the dataset that `config` (the `data` block) names.

  With `stream_train`, the training split is a `RecordSplit` that stays on disk (TFDS) or
  where it is (the bundled datasets); `vae_jax.engine.streaming` reads it and binarises it as it
  goes. The validation split (the last `validation_size` training records) and the test split
  are read into memory either way.
  """
  if stream_train and image_files.names_image_files(config.name):
    train, test = _open_image_files(config, stream_train=True)
  elif stream_train and not is_local(config.name):
    train, test = _open_tfds_train(config), _load_tfds_split(config.name, 'test', config)
  else:
    train, test = _load_train_and_test(config)
    if stream_train:
      train = RecordSplit(ArraySource(train.images, train.labels), len(train))
  if not 0 <= config.validation_size < len(train):
    raise ValueError(f'data.validation_size={config.validation_size} must be in '
                     f'[0, {len(train)}) for {config.name} (train has {len(train)} examples).')
  validation = None
  if config.validation_size:
    validation = train.take(slice(-config.validation_size, None))
    train = (RecordSplit(train.source, len(train) - config.validation_size) if stream_train
             else train.take(slice(0, -config.validation_size)))
  if config.binarization == 'static' and not stream_train:
    train = _binarize_split(train, config.binarization_seed, 0)
  if config.binarization in ('static', 'dynamic'):
    test = _binarize_split(test, config.binarization_seed, 1)
    if validation is not None:
      validation = _binarize_split(validation, config.binarization_seed, 2)
  return Dataset(config.name, train, validation, test)


def _binarize_split(split: Split, seed: int, split_index: int) -> Split:
  key = jax.random.fold_in(jax.random.key(seed), split_index)
  return Split(np.asarray(binarize(key, split.images)), split.labels)


def is_local(name: str) -> bool:
  """Whether `data.name` is read without TFDS: a bundled dataset, or a path to images."""
  return name in LOCAL_DATASETS or image_files.names_image_files(name)


def _open_image_files(config, *, stream_train: bool) -> tuple[Split | RecordSplit, Split]:
  """Train and test splits of the images `data.name` points at (`vae_jax/image_files.py`):
  `data.test_size` of them (default a tenth), drawn with `data.split_seed`, for the test split;
  a folder's training images stay on disk when streamed."""
  if config.name.endswith(image_files.ARRAY_SUFFIXES):
    images, labels = image_files.load_array(config.name)
    return _split_by_seed(images, labels,
                          image_files.default_test_size(len(images), config.test_size),
                          config.split_seed)
  paths = image_files.image_paths(config.name)
  image_files.check_image_files(paths)
  test_size = image_files.default_test_size(len(paths), config.test_size)
  if not 0 < test_size < len(paths):
    raise ValueError(f'data.test_size={test_size} must be in (0, {len(paths)}).')
  order = np.random.default_rng(config.split_seed).permutation(len(paths))
  train_source, test_source = (image_files.ImageFolderSource([paths[i] for i in indices])
                               for indices in (order[test_size:], order[:test_size]))
  test = _records_to_split(test_source.read_all())
  if stream_train:
    return RecordSplit(train_source, len(train_source)), test
  return _records_to_split(train_source.read_all()), test


def _load_train_and_test(config) -> tuple[Split, Split]:
  if image_files.names_image_files(config.name):
    return _open_image_files(config, stream_train=False)
  if config.name == 'digits':
    return _split_by_seed(*_load_sklearn_digits(), config.test_size, config.split_seed)
  if config.name == 'frey_face':
    return _split_by_seed(_load_frey_face(config.path), None, config.test_size, config.split_seed)
  return tuple(_load_tfds_split(config.name, split, config) for split in ('train', 'test'))


def test_split(name: str) -> str:
  """The TFDS split a dataset's test numbers come from: 'validation' for downsampled ImageNet
  (no test split; as VDVAE and the PixelCNN papers report), else 'test'."""
  without_test = name.split('/')[0] in ('imagenet_resized', 'downsampled_imagenet')
  return 'validation' if without_test else 'test'


def _split_by_seed(images, labels, test_size: int, seed: int) -> tuple[Split, Split]:
  """A fixed random train/test split, for datasets that come without one."""
  if not 0 < test_size < len(images):
    raise ValueError(f'data.test_size={test_size} must be in (0, {len(images)}).')
  order = np.random.default_rng(seed).permutation(len(images))
  split = Split(images, labels).take(order)
  return split.take(slice(test_size, None)), split.take(slice(0, test_size))


def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1,797 bundled 8×8 digits (UCI optdigits test set), intensities 0..16."""
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  digits = datasets.load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]
  return images, digits.target.astype(np.int32)


def _load_frey_face(path: str | None) -> np.ndarray:
  """1,965 faces of 28×20 pixels from `frey_rawface.mat` (variable `ff`, one image per column)."""
  if not path:
    raise DataUnavailableError(
        'Frey Face is not bundled with vae_jax. Download frey_rawface.mat from '
        f'{FREY_FACE_URL} and pass its path: --data_path=/path/to/frey_rawface.mat')
  if not os.path.isfile(path):
    raise DataUnavailableError(f'data.path={path!r} is not a file. Download frey_rawface.mat '
                               f'from {FREY_FACE_URL} and pass its path with --data_path.')
  from scipy import io  # pylint: disable=import-outside-toplevel
  faces = io.loadmat(path)['ff'].T.reshape(-1, 28, 20, 1)  # uint8, rows of 20 pixels
  return (faces / 255.0).astype(np.float32)


def with_resolved_location(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of the `data` block whose data location is absolute: the TFDS data dir chosen now
  (the config's, else $TFDS_DATA_DIR, else the default) and the data file. Saved with a run, it
  lets evaluation find the data from any directory and any shell."""
  resolved = copy.deepcopy(config)
  if image_files.names_image_files(config.name):
    resolved.name = os.path.abspath(os.path.expanduser(config.name))
  elif config.name not in LOCAL_DATASETS:
    resolved.tfds_data_dir = os.path.abspath(tfds_data_dir(config))
  if config.path:
    resolved.path = os.path.abspath(os.path.expanduser(config.path))
  return resolved


def tfds_data_dir(config) -> str:
  """The TFDS data dir: the config's, else $TFDS_DATA_DIR, else TFDS's default."""
  if config.tfds_data_dir:
    return os.path.expanduser(config.tfds_data_dir)
  if os.environ.get('TFDS_DATA_DIR'):
    return os.path.expanduser(os.environ['TFDS_DATA_DIR'])
  return os.path.expanduser(os.path.join('~', 'tensorflow_datasets'))


def _load_tfds_split(name: str, split: str, config) -> Split:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  split = test_split(name) if split == 'test' else split  # the split its papers test on
  source = _open_tfds_source(tfds, name, split, tfds_data_dir(config), config.download)
  _check_uint8_images(name, source)
  return _records_to_split(source.__getitems__(range(len(source))))


def _open_tfds_train(config) -> RecordSplit:
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  source = _open_tfds_source(tfds, config.name, 'train', tfds_data_dir(config), config.download)
  _check_uint8_images(config.name, source)
  return RecordSplit(source, len(source))


def _check_uint8_images(name: str, source) -> None:
  dtype = np.asarray(source[0]['image']).dtype
  if dtype != np.uint8:
    raise ValueError(f'TFDS {name} images are {dtype}; vae_jax expects uint8 images.')


def _open_tfds_source(tfds, name: str, split: str, data_dir: str, download: bool):
  """`tfds.data_source` for one split, preparing the dataset first only when that can work."""
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataUnavailableError(_unknown_dataset_message(tfds, name)) from None
  except Exception as error:  # pylint: disable=broad-except
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
      if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataUnavailableError(
            f'TFDS {name} in {data_dir} is prepared as {builder.info.file_format.value}; '
            'random access needs array_record. Prepare it again with '
            f'`tfds build {name} --data_dir=NEW_DIR --file_format=array_record` and point '
            'vae_jax to NEW_DIR.') from error
      raise
    if not download:
      raise DataUnavailableError(_not_prepared_message(name, data_dir, 'data.download=False')) from error
  _check_can_prepare(name, data_dir)
  builder.download_and_prepare(file_format='array_record')
  return tfds.data_source(name, split=split, data_dir=data_dir, download=False)


def _unknown_dataset_message(tfds, name: str) -> str:
  """One line, instead of TFDS's list of every dataset it knows."""
  known = [*tfds.list_builders(with_community_datasets=False), *LOCAL_DATASETS]
  close = difflib.get_close_matches(name, known, n=3)
  hint = f' Did you mean {" or ".join(map(repr, close))}?' if close else ''
  return (f'data.name={name!r} is neither a TFDS dataset, nor one of {list(LOCAL_DATASETS)}, '
          'nor a path to images (a folder, or a .npy or .npz file).'
          f'{hint} (`tfds.list_builders()` lists the TFDS ones.)')


def _check_can_prepare(name: str, data_dir: str) -> None:
  """Fails at once, instead of hanging on a download, when preparing cannot succeed."""
  if importlib.util.find_spec('tensorflow') is None:
    raise DataUnavailableError(_not_prepared_message(
        name, data_dir, 'preparing it needs TensorFlow, which is not installed '
        "(pip install '.[prepare]' installs it)"))
  try:
    socket.create_connection(('storage.googleapis.com', 443), timeout=5).close()
  except OSError as error:
    raise DataUnavailableError(_not_prepared_message(
        name, data_dir, f'the download host cannot be reached ({error})')) from error


def _not_prepared_message(name: str, data_dir: str, reason: str) -> str:
  return (
      f'TFDS dataset {name!r} is not prepared in {data_dir}, and it cannot be fetched now: '
      f'{reason}.\nEither point vae_jax at a prepared data dir (--data_dir=DIR, or '
      'TFDS_DATA_DIR=DIR), or prepare one on a machine with internet access:\n'
      f"  pip install '.[prepare]' && tfds build {name} --data_dir=DIR --file_format=array_record")


STREAMED_RECORDS_CHECKED = 1000


def checked_values(dataset: Dataset, binarization: str):
  """`(split name, images, binarised)` of each split, for checks of the data's values: whether
  binarisation makes the split binary before the model sees it. A streamed split is checked
  on its first records, not read whole (and is binarised as it streams)."""
  binarised = {'static': ('train', 'validation', 'test'), 'dynamic': ('validation', 'test'),
               'none': ()}[binarization]
  for name in ('train', 'validation', 'test'):
    split = getattr(dataset, name)
    if split is None:
      continue
    if isinstance(split, RecordSplit):
      yield name, split.take(slice(0, STREAMED_RECORDS_CHECKED)).images, False
    else:
      yield name, split.images, name in binarised


registries.add(registries.Component('run', 'data', None, {
    **options.at('data', name=Option('mnist', "a TFDS image dataset, 'digits' / 'frey_face', or "
                                     'a path: a folder of PNG/JPEG files, a .npy or .npz array '
                                     '(vae_jax/image_files.py)',
                                     traits=frozenset({SHAPES_STATE}))),
    **options.at(
        'data', traits=(OPERATIONAL,),
        tfds_data_dir=Option('', "'' -> $TFDS_DATA_DIR -> ~/tensorflow_datasets"),
        download=Option(True, 'prepare a missing TFDS dataset (needs TensorFlow and internet)'),
        path=Option('', 'the data file, for datasets read from one (frey_face)')),
    **options.at(
        'data',
        binarization=Option('dynamic', "'dynamic' | 'static' | 'none'",
                            options.one_of(*BINARIZATIONS)),
        binarization_seed=Option(0, "static binarisation, and eval splits under 'dynamic'"),
        validation_size=Option(0, 'examples carved from the end of train for validation',
                               options.non_negative),
        test_size=Option(0, 'test examples, for datasets without a test split (digits, '
                         'frey_face)'),
        split_seed=Option(0, 'the train/test split of those datasets')),
}, ()))
