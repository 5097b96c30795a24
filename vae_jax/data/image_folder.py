"""A folder of PNG or JPEG files, named by a path: `faces/`, `./faces`, `/data/faces`, `~/faces`,
or an existing folder `data/faces` (a bare name is never a folder: a folder `mnist/` under the
current directory must not shadow TFDS's MNIST, nor does `imagenet_resized/32x32` unless such
a folder exists). The test split is `data.test_size` files (default a tenth) drawn with
`data.split_seed`; the training files are read on demand when the run streams
(`input_pipeline='grain'`: memory flat in the number of files).

As torchvision's ImageFolder reads a folder:
  * files directly in the folder, sorted by name, are unlabelled; or sub-folders, one per
    class, whose sorted names are the labels 0..K−1 (files beside sub-folders are an error);
  * each file is turned as its EXIF orientation says;
  * a folder with any colour file (a palette file counts as colour) is colour: its grey files
    are converted to RGB (counted in the log line); transparency (RGBA, LA, a palette's) is
    flattened onto white (white, not black: the background of most drawings and scans);
  * with `data.image_size=N`, each image's shorter side is resized to N (Lanczos, which
    antialiases) and the centre N×N square is kept, so images of any size train together;
    without it every file must have one size (the message says so).
16-bit and other non-8-bit files are refused. Every file's header is checked before training,
with one message for what is wrong. Each decoded image then goes through
`ImageFiles.transform` (a researcher's own step), whose output shape belongs in `traits`.
Horizontal flips (`data.random_flip`) are drawn inside the training step, not here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
from absl import logging

from vae_jax import options
from vae_jax.data import sources, splits
from vae_jax.data.dataset import DataError, RecordSplit, Split, Traits, records_to_split
from vae_jax.options import SHAPES_STATE, Option

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')
_GREY_MODES = ('1', 'L', 'LA', 'La')  # 8 bits (or fewer) per value
_COLOUR_MODES = ('RGB', 'RGBA', 'RGBa', 'RGBX', 'P', 'PA', 'CMYK', 'YCbCr')
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112

ImageFilesError = DataError  # the name tests and callers used before the data package


def names_folder(name: str) -> bool:
  """Whether `data.name` is written as a path (it is then read as a folder of images)."""
  if name.endswith(('/', os.sep)) or name.startswith(('/', './', '../', '~', os.sep)):
    return True
  return ('/' in name or os.sep in name) and os.path.isdir(name)


def _images_in(folder: str) -> list[str]:
  return sorted(os.path.join(folder, entry) for entry in os.listdir(folder)
                if entry.lower().endswith(IMAGE_SUFFIXES)
                and os.path.isfile(os.path.join(folder, entry)))


def labelled_paths(folder: str) -> tuple[list[str], np.ndarray | None, tuple[str, ...]]:
  """(image paths, their labels `[N]` int32 or None, the class names): the PNG and JPEG files
  directly in `folder`, sorted by name and unlabelled; or those in its sub-folders, labelled by
  the sub-folder's place among their sorted names (torchvision's ImageFolder)."""
  if not os.path.isdir(folder):
    raise DataError(f'data.name={folder!r} is not a folder, nor a .npy, .npz, .csv or .tsv file.')
  classes = tuple(sorted(entry for entry in os.listdir(folder) if not entry.startswith('.')
                         and os.path.isdir(os.path.join(folder, entry))))
  loose = _images_in(folder)
  if classes and loose:
    raise DataError(
        f'data.name={folder!r} holds both image files ({os.path.basename(loose[0])}, ...) and '
        f'sub-folders ({classes[0]}/, ...): for classes, move every file into the sub-folder '
        'of its class; for no classes, move the sub-folders out.')
  if not classes:
    if not loose:
      raise DataError(f'data.name={folder!r} holds no PNG or JPEG file '
                      f'({", ".join(IMAGE_SUFFIXES)}).')
    return loose, None, ()
  paths, labels = [], []
  for label, name in enumerate(classes):
    found = _images_in(os.path.join(folder, name))
    if not found:
      raise DataError(f'The class sub-folder {os.path.join(folder, name)!r} holds no PNG or '
                      f'JPEG file: add its images, or remove it.')
    paths += found
    labels += [label] * len(found)
  return paths, np.asarray(labels, np.int32), classes


def image_paths(folder: str) -> list[str]:
  """The image files of `folder` (see `labelled_paths`)."""
  return labelled_paths(folder)[0]


@dataclasses.dataclass(frozen=True)
class FolderSummary:
  """What the headers of a folder's files say: one image's shape `(H, W, C)` as the model sees
  it, and how many files are converted to get there."""
  shape: tuple[int, int, int]
  grey_converted: int = 0  # grey files in a colour folder, converted to RGB
  transparent: int = 0  # files whose transparency is flattened onto white


def _header(path: str) -> tuple[tuple[int, int], str, bool]:
  """((H, W) once turned as EXIF says, mode, has transparency), without decoding the pixels."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  try:
    with Image.open(path) as image:
      width, height = image.size
      mode = image.mode
      alpha = 'A' in mode or 'a' in mode or 'transparency' in image.info
      orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
  except OSError as error:
    raise DataError(f'{path} cannot be read as an image ({error}).') from error
  if orientation in _TRANSPOSED:
    width, height = height, width
  return (height, width), mode, alpha


def check_image_files(paths: list[str], image_size: int = 0) -> FolderSummary:
  """The shape every image will have, reading the files' headers only; one message for the first
  file that is not 8-bit grey or colour, cannot be read, or (without `image_size`) differs in
  size from the first."""
  headers = []
  for path in paths:
    size, mode, alpha = _header(path)
    if mode not in _GREY_MODES + _COLOUR_MODES:
      raise DataError(
          f'{path} is {mode!r}, not 8-bit grey (L) or colour (RGB, with or without alpha, or a '
          "palette): convert it, e.g. with PIL's image.convert('L') or image.convert('RGB').")
    headers.append((path, size, mode in _COLOUR_MODES, alpha))
  colour = any(is_colour for _, _, is_colour, _ in headers)
  channels = 3 if colour else 1
  if not image_size:
    first, shape = headers[0][0], (*headers[0][1], channels)
    for path, size, _, _ in headers:
      if (*size, channels) != shape:
        raise DataError(
            f'The images differ in size or channels: {first} is {shape} (H, W, C), {path} is '
            f'{(*size, channels)}. Resize them to one size first, or set '
            '--config.data.image_size=N to resize and centre-crop each to N×N.')
  else:
    shape = (image_size, image_size, channels)
  return FolderSummary(shape, grey_converted=sum(colour and not is_colour
                                                 for _, _, is_colour, _ in headers),
                       transparent=sum(alpha for _, _, _, alpha in headers))


def resized_and_cropped(image, size: int):
  """A PIL image whose shorter side is resized to `size` (Lanczos: antialiased when shrinking),
  then its centre `size`×`size` square."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  width, height = image.size
  scale = size / min(width, height)
  new = (max(size, round(width * scale)), max(size, round(height * scale)))
  if new != image.size:
    image = image.resize(new, Image.Resampling.LANCZOS)
  left, top = (new[0] - size) // 2, (new[1] - size) // 2
  return image.crop((left, top, left + size, top + size))


def decoded(path: str, *, channels: int, image_size: int = 0) -> np.ndarray:
  """A file's pixels `[H, W, channels]` uint8: turned as its EXIF orientation says,
  transparency flattened onto white, grey or colour as asked, resized and cropped to
  `image_size` when set."""
  from PIL import Image, ImageOps  # pylint: disable=import-outside-toplevel
  with Image.open(path) as image:
    image = ImageOps.exif_transpose(image)
    if 'A' in image.mode or 'a' in image.mode or 'transparency' in image.info:
      white = Image.new('RGBA', image.size, (255, 255, 255, 255))
      image = Image.alpha_composite(white, image.convert('RGBA'))
    image = image.convert('RGB' if channels == 3 else 'L')
    if image_size:
      image = resized_and_cropped(image, image_size)
    pixels = np.asarray(image, np.uint8)
  return pixels[..., None] if pixels.ndim == 2 else pixels


class ImageFiles:
  """Image files as a random-access record source (grain reads it record by record): each file
  `decoded` to `[H, W, channels]` uint8, then through `transform` when one is given; with its
  label when `labels` are given."""

  def __init__(self, paths: list[str], transform: Callable[[np.ndarray], np.ndarray] | None = None,
               *, labels: np.ndarray | None = None, channels: int | None = None,
               image_size: int = 0):
    self._paths, self._transform = list(paths), transform
    self._labels, self._channels, self._image_size = labels, channels, image_size

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    path = self._paths[index]
    if self._channels is None:  # as the file holds it (a caller from before the options)
      from PIL import Image  # pylint: disable=import-outside-toplevel
      with Image.open(path) as image:
        pixels = np.asarray(image, np.uint8)
      pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    else:
      pixels = decoded(path, channels=self._channels, image_size=self._image_size)
    record = {'image': self._transform(pixels) if self._transform else pixels}
    if self._labels is not None:
      record['label'] = self._labels[index]
    return record

  def __getitems__(self, indices) -> list[dict[str, np.ndarray]]:
    return [self[index] for index in indices]

  def read_all(self) -> list[dict[str, np.ndarray]]:
    return self.__getitems__(range(len(self)))


@sources.register_source('image_folder', claims=names_folder, order=sources.BY_PATH,
                         options=options.at('data', image_size=Option(
                             0, 'a folder of images: resize the shorter side to this and keep '
                             'the centre square (0: every file must have one size)',
                             options.non_negative, traits=frozenset({SHAPES_STATE}))))
class ImageFolder(sources.Source):
  """The folder `data.name` names; its files are listed and checked once, when first asked."""

  _paths: list[str] | None = None
  _labels: np.ndarray | None = None
  _summary: FolderSummary | None = None

  def traits(self) -> Traits:
    return Traits(shape=self._checked().shape, labels=self._labels is not None, streams=True)

  def load(self, *, stream_train: bool) -> tuple[Split | RecordSplit, Split]:
    summary = self._checked()
    paths, labels = self._paths, self._labels
    test_size = splits.default_test_size(len(paths), self.config.test_size)
    order = splits.test_order(len(paths), test_size, self.config.split_seed)
    train_files, test_files = (
        ImageFiles([paths[i] for i in indices], labels=None if labels is None else labels[indices],
                   channels=summary.shape[2], image_size=self._image_size())
        for indices in (order[test_size:], order[:test_size]))
    test = records_to_split(test_files.read_all())
    if stream_train:
      return RecordSplit(train_files, len(train_files)), test
    return records_to_split(train_files.read_all()), test

  def resolve_location(self, config):
    config.name = os.path.abspath(os.path.expanduser(config.name))
    return config

  def _image_size(self) -> int:
    return int(self.config.get('image_size', 0) or 0)

  def _checked(self) -> FolderSummary:
    if self._summary is None:
      self._paths, self._labels, classes = labelled_paths(os.path.expanduser(self.config.name))
      self._summary = check_image_files(self._paths, self._image_size())
      summary = self._summary
      logging.info(
          'Image folder %s: %d files%s, each %s (H, W, C)%s; %d grey file(s) converted to RGB, '
          '%d with transparency flattened onto white.', self.config.name, len(self._paths),
          f' in {len(classes)} classes' if classes else '', summary.shape,
          ' after resizing and centre-cropping' if self._image_size() else '',
          summary.grey_converted, summary.transparent)
    return self._summary
