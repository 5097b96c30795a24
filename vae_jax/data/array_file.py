"""An array in a .npy or .npz file, named by `data.name`: images `[N, H, W]` or `[N, H, W, C]`
(C = 1 or 3; uint8 0..255 or floats in [0, 1]), or vectors `[N, D]` (any real numbers,
standardised per feature on the training split unless `data.standardize=False`). A .npz holds
them as 'images' or 'x' (with 'labels' [N] beside them), or as its only array. The test split
is `data.test_size` examples (default a tenth) drawn with `data.split_seed`.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from vae_jax.data import sources, splits, table
from vae_jax.data.dataset import IMAGES, VECTORS, DataError, Split, Traits

SUFFIXES = ('.npy', '.npz')
_KEYS = ('images', 'x')


def load_array(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  """The examples (as stored) and labels (or None) of a .npy or .npz file."""
  if not os.path.isfile(path):
    raise DataError(f'data.name={path!r} is not a file.')
  try:
    return _read_array(path)
  except DataError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # truncated, not numpy
    reason = ('not a NumPy file' if 'pickled' in str(error) else
              str(error).splitlines()[0] if str(error) else type(error).__name__)
    raise DataError(f'{path} cannot be read as a .npy/.npz array ({reason}): it is damaged, cut '
                    'short or of another format. Write it again with numpy.save or '
                    'numpy.savez.') from error


def _read_array(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  if not path.endswith('.npz'):
    return np.load(path), None
  with np.load(path) as arrays:
    key = next((key for key in _KEYS if key in arrays), None)
    if key is None and len(arrays.files) == 1:
      key = arrays.files[0]
    if key is None:
      raise DataError(f'{path} holds arrays {arrays.files}: name the images \'images\' or the '
                      "vectors 'x' (and the labels 'labels').")
    labels = arrays['labels'] if 'labels' in arrays and key != 'labels' else None
    return arrays[key], None if labels is None else np.asarray(labels, np.int32)


def as_unit_images(images: np.ndarray, path: str) -> np.ndarray:
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
    raise DataError(f'{path} holds an array of shape {images.shape}: expected images '
                    '[N, H, W] or [N, H, W, C] with C = 1 or 3, or vectors [N, D]; N > 0.')
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255.0)
  if not np.issubdtype(images.dtype, np.floating):
    raise DataError(f'{path} holds {images.dtype} images: expected uint8 (0..255) or '
                    'floats in [0, 1].')
  return images.astype(np.float32)


def as_vectors(vectors: np.ndarray, path: str) -> np.ndarray:
  if not (np.issubdtype(vectors.dtype, np.number) or vectors.dtype == np.bool_):
    raise DataError(f'{path} holds {vectors.dtype} vectors: expected numbers.')
  vectors = vectors.astype(np.float32)
  table.check_finite(vectors, path, row_offset=0)
  return vectors


@sources.register_source('array_file', claims=lambda name: name.endswith(SUFFIXES),
                         options=table.VECTOR_OPTIONS)
class ArrayFile(sources.Source):
  """The array `data.name` names: vectors when it has two axes, images when three or four."""

  _read: tuple | None = None
  _bits: int | None = None  # 8 for uint8 images

  def traits(self) -> Traits:
    examples, labels = self._arrays()
    kind = VECTORS if examples.ndim == 2 else IMAGES
    return Traits(kind=kind, shape=examples.shape[1:], labels=labels is not None,
                  bits=self._bits)

  def load(self, *, stream_train: bool) -> tuple[Split, Split]:
    del stream_train  # held in memory
    examples, labels = self._arrays()
    return splits.split_by_seed(examples, labels,
                                splits.default_test_size(len(examples), self.config.test_size),
                                self.config.split_seed)

  def resolve_location(self, config):
    config.name = os.path.abspath(os.path.expanduser(config.name))
    return config

  def _arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
    """The examples, float32 (images `[N, H, W, C]` in [0, 1], vectors `[N, D]`), and labels."""
    if self._read is None:
      path = os.path.expanduser(self.config.name)
      examples, labels = load_array(path)
      self._bits = 8 if examples.dtype == np.uint8 and examples.ndim > 2 else None
      examples = (as_vectors(examples, path) if examples.ndim == 2 and len(examples)
                  else as_unit_images(examples, path))
      self._read = examples, labels
    return self._read
