"""Your own images: a folder of PNG or JPEG files, or an array in a .npy or .npz file, named by
`data.name` (a path). Every file is checked before training (one size, 8 bits per channel,
grey or colour) with one message for what is wrong; a folder's images are read on demand
(`ImageFolderSource`), so the grain pipeline streams them from disk.

  --config.data.name=/data/faces/          PNG/JPEG files (sorted by name; no labels; a folder
                                           is named with a '/', e.g. faces/ or ./faces)
  --config.data.name=/data/faces.npz       'images' [N, H, W(, C)] (+ 'labels' [N]), or one array
  --config.data.name=/data/faces.npy       [N, H, W(, C)]

Arrays are uint8 (0..255) or floats in [0, 1]. The test split is `data.test_size` images drawn
with `data.split_seed` (default: a tenth of them).
"""

from __future__ import annotations

import os

import numpy as np

from vae_jax.errors import UserError

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
ARRAY_SUFFIXES = ('.npy', '.npz')
_CHANNELS = {'L': 1, 'RGB': 3}  # 8 bits per channel, grey or colour


class ImageFilesError(UserError, ValueError):
  """The images cannot be used as they are; the message says what to change."""


def names_image_files(name: str) -> bool:
  """Whether `data.name` is a path to images (a .npy/.npz file, a folder written as one:
  `faces/`, `./faces`, `/data/faces`, `~/faces`, or an existing folder `data/faces`) rather than
  the name of a TFDS or bundled dataset. A bare name is never a folder (a folder `mnist/` under
  the current directory must not shadow TFDS's MNIST), nor is a TFDS config name such as
  `imagenet_resized/32x32` unless such a folder exists."""
  if name.endswith(ARRAY_SUFFIXES) or name.endswith(('/', os.sep)):
    return True
  if name.startswith(('/', './', '../', '~', os.sep)):
    return True
  return ('/' in name or os.sep in name) and os.path.isdir(name)


def image_paths(folder: str) -> list[str]:
  """The PNG and JPEG files directly in `folder`, sorted by name."""
  if not os.path.isdir(folder):
    raise ImageFilesError(f'data.name={folder!r} is not a folder, nor a .npy or .npz file.')
  paths = sorted(os.path.join(folder, entry) for entry in os.listdir(folder)
                 if entry.lower().endswith(IMAGE_SUFFIXES))
  if not paths:
    raise ImageFilesError(f'data.name={folder!r} holds no PNG or JPEG file '
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
      raise ImageFilesError(f'{path} cannot be read as an image ({error}).') from error
    if mode not in _CHANNELS:
      raise ImageFilesError(
          f'{path} is {mode!r}, not 8-bit grey (L) or colour (RGB): convert it, e.g. with '
          "PIL's image.convert('L') or image.convert('RGB').")
    this = (size[1], size[0], _CHANNELS[mode])
    if shape is None:
      shape, first = this, path
    elif this != shape:
      raise ImageFilesError(
          f'The images differ in size or channels: {first} is {shape} (H, W, C), {path} is '
          f'{this}. Resize them to one size first.')
  return shape


class ImageFolderSource:
  """Image files as a random-access record source (grain reads it record by record)."""

  def __init__(self, paths: list[str]):
    self._paths = list(paths)

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(self._paths[index]) as image:
      pixels = np.asarray(image, np.uint8)
    return {'image': pixels[..., None] if pixels.ndim == 2 else pixels}

  def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
    return [self[index] for index in indices]

  def read_all(self) -> list[dict[str, np.ndarray]]:
    return self.__getitems__(range(len(self)))


def load_array(path: str) -> tuple[np.ndarray, np.ndarray | None]:
  """Images `[N, H, W, C]` float32 in [0, 1] and labels (or None) from a .npy or .npz file."""
  if not os.path.isfile(path):
    raise ImageFilesError(f'data.name={path!r} is not a file.')
  labels = None
  if path.endswith('.npz'):
    with np.load(path) as arrays:
      if 'images' in arrays:
        images = arrays['images']
        labels = arrays['labels'] if 'labels' in arrays else None
      elif len(arrays.files) == 1:
        images = arrays[arrays.files[0]]
      else:
        raise ImageFilesError(f'{path} holds arrays {arrays.files}: name the images one '
                              "'images' (and the labels 'labels').")
  else:
    images = np.load(path)
  return _as_unit_images(images, path), None if labels is None else np.asarray(labels, np.int32)


def _as_unit_images(images: np.ndarray, path: str) -> np.ndarray:
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3) or not len(images):
    raise ImageFilesError(f'{path} holds an array of shape {images.shape}: expected images '
                          '[N, H, W] or [N, H, W, C] with C = 1 or 3, N > 0.')
  if images.dtype == np.uint8:
    return images.astype(np.float32) / np.float32(255.0)
  if not np.issubdtype(images.dtype, np.floating):
    raise ImageFilesError(f'{path} holds {images.dtype} images: expected uint8 (0..255) or '
                          'floats in [0, 1].')
  return images.astype(np.float32)


def default_test_size(num_images: int, test_size: int) -> int:
  """`data.test_size`, or a tenth of the images (at least one) when it is 0."""
  return test_size or max(1, num_images // 10)
