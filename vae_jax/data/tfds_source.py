"""TFDS: any TFDS dataset with a uint8 `image` feature (`mnist`, `fashion_mnist`,
`imagenet_resized/32x32`, the tests' `synthetic_digits`, ...), read through `tfds.data_source`
(array_record, no TensorFlow needed). The catch-all source: every name no other source claims.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import socket

import numpy as np

from vae_jax import options
from vae_jax.data import sources
from vae_jax.data.dataset import (DataError, DataUnavailableError, RecordSplit, Split, Traits,
                                  records_to_split)
from vae_jax.options import OPERATIONAL, Option


def test_split(name: str) -> str:
  """The TFDS split a dataset's test numbers come from: 'validation' for downsampled ImageNet
  (no test split; as VDVAE and the PixelCNN papers report), else 'test'."""
  without_test = name.split('/')[0] in ('imagenet_resized', 'downsampled_imagenet')
  return 'validation' if without_test else 'test'


def tfds_data_dir(config) -> str:
  """The TFDS data dir: the config's, else $TFDS_DATA_DIR, else TFDS's default."""
  if config.tfds_data_dir:
    return os.path.expanduser(config.tfds_data_dir)
  if os.environ.get('TFDS_DATA_DIR'):
    return os.path.expanduser(os.environ['TFDS_DATA_DIR'])
  return os.path.expanduser(os.path.join('~', 'tensorflow_datasets'))


@sources.register_source('tfds', order=sources.FALLBACK, options=options.at(
    'data', traits=(OPERATIONAL,),
    tfds_data_dir=Option('', "'' -> $TFDS_DATA_DIR -> ~/tensorflow_datasets"),
    download=Option(True, 'prepare a missing TFDS dataset (needs TensorFlow and internet)')))
class TfdsSource(sources.Source):
  """A TFDS dataset's train split and the split its papers test on; its training split streams
  from disk."""

  def traits(self) -> Traits:
    return Traits(streams=True)  # uint8 images of the dataset's shape; labels where it has them

  def load(self, *, stream_train: bool) -> tuple[Split | RecordSplit, Split]:
    train = self._open('train')
    test = records_to_split(_read_all(self._open(test_split(self.config.name))))
    if stream_train:
      return RecordSplit(train, len(train)), test
    return records_to_split(_read_all(train)), test

  def resolve_location(self, config):
    config.tfds_data_dir = os.path.abspath(tfds_data_dir(config))
    return config

  def location_flags(self, resolved) -> list[str]:
    return [f'--data_dir={resolved.tfds_data_dir}']

  def _open(self, split: str):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    name = self.config.name
    source = _open_tfds_source(tfds, name, split, tfds_data_dir(self.config),
                               self.config.download)
    dtype = np.asarray(source[0]['image']).dtype
    if dtype != np.uint8:
      raise DataError(f'TFDS {name} images are {dtype}; vae_jax expects uint8 images.')
    return source


def _read_all(source) -> list[dict]:
  return source.__getitems__(range(len(source)))


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
  named = sources.named_sources()
  known = [*tfds.list_builders(with_community_datasets=False), *named]
  close = difflib.get_close_matches(name, known, n=3)
  hint = f' Did you mean {" or ".join(map(repr, close))}?' if close else ''
  return (f'data.name={name!r} is neither a TFDS dataset, nor one of {named}, '
          'nor a path to data (a folder of images, a .npy or .npz array, a .csv or .tsv table).'
          f'{hint} (`tfds.list_builders()` lists the TFDS ones; a data source of your own is '
          'registered by a module named in config.imports.)')


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
