"""A folder of PNG or JPEG files, named by a path: `faces/`, `./faces`, `/data/faces`, `~/faces`,
or an existing folder `data/faces` (a bare name is never a folder: a folder `mnist/` under the
current directory must not shadow TFDS's MNIST, nor does `imagenet_resized/32x32` unless such
a folder exists). Files are sorted by name; no labels. The test split is `data.test_size` files
(default a tenth) drawn with `data.split_seed`; the training files are read on demand when the
run streams (`input_pipeline='grain'`).

Every file is checked before training (one size, 8 bits per channel, grey or colour) with one
message for what is wrong. Each decoded image goes through `ImageFiles.transform` (none yet): a
step that resizes, crops or flips belongs there, and its output shape in `traits`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from vae_jax.data import sources, splits
from vae_jax.data.dataset import DataError, RecordSplit, Split, Traits, records_to_split

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
_CHANNELS = {'L': 1, 'RGB': 3}  # 8 bits per channel, grey or colour

ImageFilesError = DataError  # the name tests and callers used before the data package


def names_folder(name: str) -> bool:
  """Whether `data.name` is written as a path (it is then read as a folder of images)."""
  if name.endswith(('/', os.sep)) or name.startswith(('/', './', '../', '~', os.sep)):
    return True
  return ('/' in name or os.sep in name) and os.path.isdir(name)


def image_paths(folder: str) -> list[str]:
  """The PNG and JPEG files directly in `folder`, sorted by name."""
  if not os.path.isdir(folder):
    raise DataError(f'data.name={folder!r} is not a folder, nor a .npy, .npz, .csv or .tsv file.')
  paths = sorted(os.path.join(folder, entry) for entry in os.listdir(folder)
                 if entry.lower().endswith(IMAGE_SUFFIXES))
  if not paths:
    raise DataError(f'data.name={folder!r} holds no PNG or JPEG file '
                    f'({", ".join(IMAGE_SUFFIXES)}).')
  return paths


def check_image_files(paths: list[str]) -> tuple[int, int, int]:
  """The shared (H, W, C) of the files, reading their headers only; one message for the first
  file that differs in size, is not 8-bit grey or colour, or cannot be read."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  shape = None
  for path in paths:
    try:
      with Image.open(path) as image:
        size, mode = image.size, image.mode
    except OSError as error:
      raise DataError(f'{path} cannot be read as an image ({error}).') from error
    if mode not in _CHANNELS:
      raise DataError(
          f'{path} is {mode!r}, not 8-bit grey (L) or colour (RGB): convert it, e.g. with '
          "PIL's image.convert('L') or image.convert('RGB').")
    this = (size[1], size[0], _CHANNELS[mode])
    if shape is None:
      shape, first = this, path
    elif this != shape:
      raise DataError(
          f'The images differ in size or channels: {first} is {shape} (H, W, C), {path} is '
          f'{this}. Resize them to one size first.')
  return shape


class ImageFiles:
  """Image files as a random-access record source (grain reads it record by record); each
  decoded uint8 image `[H, W, C]` goes through `transform` when one is given."""

  def __init__(self, paths: list[str], transform: Callable[[np.ndarray], np.ndarray] | None = None):
    self._paths, self._transform = list(paths), transform

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(self._paths[index]) as image:
      pixels = np.asarray(image, np.uint8)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    return {'image': self._transform(pixels) if self._transform else pixels}

  def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
    return [self[index] for index in indices]

  def read_all(self) -> list[dict[str, np.ndarray]]:
    return self.__getitems__(range(len(self)))


@sources.register_source('image_folder', claims=names_folder, order=sources.BY_PATH)
class ImageFolder(sources.Source):
  """The folder `data.name` names; its files are listed and checked once, when first asked."""

  _paths: list[str] | None = None
  _shape: tuple[int, int, int] | None = None

  def traits(self) -> Traits:
    return Traits(shape=self._checked_shape(), labels=False, streams=True)

  def load(self, *, stream_train: bool) -> tuple[Split | RecordSplit, Split]:
    self._checked_shape()
    paths = self._paths
    test_size = splits.default_test_size(len(paths), self.config.test_size)
    order = splits.test_order(len(paths), test_size, self.config.split_seed)
    train_files, test_files = (ImageFiles([paths[i] for i in indices])
                               for indices in (order[test_size:], order[:test_size]))
    test = records_to_split(test_files.read_all())
    if stream_train:
      return RecordSplit(train_files, len(train_files)), test
    return records_to_split(train_files.read_all()), test

  def resolve_location(self, config):
    config.name = os.path.abspath(os.path.expanduser(config.name))
    return config

  def _checked_shape(self) -> tuple[int, int, int]:
    if self._shape is None:
      self._paths = image_paths(os.path.expanduser(self.config.name))
      self._shape = check_image_files(self._paths)
    return self._shape
