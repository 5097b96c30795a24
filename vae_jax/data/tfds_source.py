"""TFDS: any TFDS dataset with a uint8 `image` feature (`mnist`, `fashion_mnist`,
`imagenet_resized/32x32`, the tests' `synthetic_digits`, ...), read through `tfds.data_source`
(array_record, no TensorFlow needed). The catch-all source: every name no other source claims.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import os
import socket
import tempfile

import numpy as np
from absl import logging

from vae_jax import options
from vae_jax.data import sources
from vae_jax.data.dataset import (DataError, DataUnavailableError, RecordSplit, Split, Traits,
                                  record_image)
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
    decoded_cache=Option('', "folder keeping each TFDS split decoded, read in a second instead "
                         "of decoding its images again ('' -> ~/.cache/vae_jax/decoded_tfds; "
                         "'none': off)"),
    download=Option(True, 'prepare a missing TFDS dataset (needs TensorFlow and internet)')))
class TfdsSource(sources.Source):
  """A TFDS dataset's train split and the split its papers test on; its training split streams
  from disk."""

  def traits(self) -> Traits:
    return Traits(streams=True)  # uint8 images of the dataset's shape; labels where it has them

  def load(self, *, stream_train: bool) -> tuple[Split | RecordSplit, Split]:
    train = self._open('train')
    test = self._read_all(self._open(test_split(self.config.name)))
    if stream_train:
      return RecordSplit(train, len(train)), test
    return self._read_all(train), test

  def _read_all(self, source) -> Split:
    """Every record of `source`, decoded once and then read from the decoded cache."""
    path = decoded_cache_path(self.config.decoded_cache, source)
    if path is not None and os.path.exists(path):
      with np.load(path) as arrays:
        return _as_split(arrays['images'], arrays['labels'] if 'labels' in arrays else None)
    with _damage_named(source):
      records = source.__getitems__(range(len(source)))
    images = np.stack([np.asarray(record['image']) for record in records])
    labels = (np.asarray([record['label'] for record in records], np.int32)
              if records and 'label' in records[0] else None)
    if path is not None:
      _write_atomically(path, images, labels)
    return _as_split(images, labels)

  def declared_shape(self) -> tuple[int, ...] | None:
    """The image shape TFDS's builder declares, known without the data on disk (None where
    it varies or the builder is unknown)."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    try:
      shape = tfds.builder(self.config.name, data_dir=tfds_data_dir(self.config)
                           ).info.features['image'].shape
    except Exception:  # pylint: disable=broad-except  # an unknown name: loading will say so
      return None
    return None if any(size is None for size in shape) else tuple(shape)

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
    with _damage_named(source):
      dtype = np.asarray(source[0]['image']).dtype
    if dtype != np.uint8:
      raise DataError(f'TFDS {name} images are {dtype}; vae_jax expects uint8 images.')
    return source


@contextlib.contextmanager
def _damage_named(source):
  """A damaged record file (cut short, overwritten) as one line naming the split's files."""
  try:
    yield
  except (RuntimeError, OSError, ValueError) as error:
    info = getattr(source, 'dataset_info', None)
    where = (os.path.join(info.data_dir, f'{info.name}-{source.split}.*') if info is not None
             else 'its files')
    raise DataError(
        f'The TFDS split cannot be read: {where} is damaged ({str(error).splitlines()[0]}). '
        'Prepare the dataset again: delete its folder and rerun (or copy it again).') from error


def decoded_cache_path(folder: str, source) -> str | None:
  """Where the decoded split of `source` is kept (None: the cache is off), named for the
  dataset, version and split, and keyed by its files' paths, sizes and times, so that a
  dataset prepared again is decoded again."""
  if folder == 'none':
    return None
  folder = os.path.expanduser(folder or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'), 'vae_jax', 'decoded_tfds'))
  try:
    info, split = source.dataset_info, str(source.split)
    files = sorted(name for name in os.listdir(info.data_dir) if f'-{split}.' in name)
    stamp = [os.path.abspath(info.data_dir), split, len(source)] + [
        (name, os.stat(os.path.join(info.data_dir, name)).st_size,
         os.stat(os.path.join(info.data_dir, name)).st_mtime_ns) for name in files]
  except (AttributeError, OSError, TypeError):  # no files behind it (a mocked source): no cache
    return None
  if not files:
    return None
  key = hashlib.sha256(repr(stamp).encode()).hexdigest()[:16]
  return os.path.join(folder, f"{info.name}_{info.version}_{split}_{key}.npz")


def _as_split(images: np.ndarray, labels: np.ndarray | None) -> Split:
  """uint8 images as float32 in [0, 1] with a channel axis, as `records_to_split` makes them."""
  return Split(record_image({'image': images[..., None] if images.ndim == 3 else images}),
               labels)


def _write_atomically(path: str, images: np.ndarray, labels: np.ndarray | None) -> None:
  """Writes the cache file whole or not at all; a cache that cannot be written is skipped."""
  arrays = {'images': images} if labels is None else {'images': images, 'labels': labels}
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), suffix='.npz',
                                     delete=False) as f:
      np.savez(f, **arrays)
    os.replace(f.name, path)
  except OSError as error:
    logging.warning('The decoded split could not be cached in %s (%s); it is decoded again '
                    'next time.', os.path.dirname(path), error)


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
