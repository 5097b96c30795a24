"""The Dataset type: splits of examples held in memory (`Split`) or read record by record
(`RecordSplit`), and what a source declares of its data (`Traits`).

Examples are images `[N, H, W, C]` float32 in [0, 1], or vectors `[N, D]` float32 (a table's
rows, standardised when the source fits a `Standardization`). The field holding them is
`images` for both kinds, so that every evaluator reads one field.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from vae_jax.errors import UserError

IMAGES, VECTORS = 'images', 'vectors'


class DataUnavailableError(UserError, RuntimeError):
  """The dataset is not on disk and cannot be fetched; the message says how to get it."""


class DataError(UserError, ValueError):
  """The data cannot be used as it is (a file, a folder, a table); the message says what to
  change."""


@dataclasses.dataclass(frozen=True)
class Traits:
  """What a source yields, declared before its examples are read.

  kind: IMAGES (`[H, W, C]` in [0, 1]) or VECTORS (`[D]` real values);
  shape: one example's shape, where known without reading the data (else None);
  bits: bits per value of the stored data (8 for uint8 images), None for real values;
  labels: whether examples come with integer labels (None: as the records say);
  streams: whether the training split can stay on disk (`input_pipeline='grain'` reads it
    record by record); other sources are read into memory and streamed from there."""
  kind: str = IMAGES
  shape: tuple[int, ...] | None = None
  bits: int | None = 8
  labels: bool | None = None
  streams: bool = False


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # [N, H, W, C] float32 in [0, 1], or vectors [N, D] float32
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
    return records_to_split(self.source.__getitems__(range(self.num_records)[index]))

  def mean_image(self, chunk_size: int = 10_000) -> np.ndarray:
    """The mean training image (float64), read in chunks: host memory stays bounded."""
    total = 0.0
    for start in range(0, self.num_records, chunk_size):
      total = total + self.take(slice(start, start + chunk_size)).images.sum(0, dtype=np.float64)
    return total / self.num_records


class ArraySource:
  """In-memory examples as a random-access record source (the bundled datasets, streamed)."""

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


# Each of the 256 levels divided by 255 in float32, as `uint8.astype(float32) / 255` gives it.
_UINT8_AS_FLOAT32 = np.arange(256, dtype=np.float32) / np.float32(255.0)


def record_image(record: dict) -> np.ndarray:
  """A record's image as float32 `[H, W, C]` in [0, 1] (a vector `[D]` as it is, in float32)."""
  image = np.asarray(record['image'])
  if image.ndim == 2:  # a single-channel image feature stored without its channel axis
    image = image[..., None]
  if image.dtype == np.uint8:  # one lookup: the split's float32 copy is allocated once, not twice
    return _UINT8_AS_FLOAT32[image]
  return image.astype(np.float32)


def records_to_split(records: list[dict]) -> Split:
  images = np.stack([record_image(record) for record in records])
  labels = None
  if records and 'label' in records[0]:
    labels = np.asarray([record['label'] for record in records], np.int32)
  return Split(images, labels)


def mean_image(split: Split | RecordSplit) -> np.ndarray:
  """The mean image (or vector) of a split, in memory or streamed."""
  if isinstance(split, RecordSplit):
    return split.mean_image()
  return np.asarray(split.images, np.float64).mean(0)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The splits of a run's data, what its source declared of it, and (for standardised vectors)
  the standardisation fitted on the training split: the model sees `(x − mean) / scale`."""
  name: str
  train: Split | RecordSplit
  validation: Split | None
  test: Split
  traits: Traits | None = None
  standardization: Any = None  # vae_jax.data.standardization.Standardization, or None

  @property
  def data_shape(self) -> tuple[int, ...]:
    return tuple(self.test.images.shape[1:])

  @property
  def kind(self) -> str:
    """IMAGES or VECTORS (declared by the source; else read from the examples' rank)."""
    if self.traits is not None:
      return self.traits.kind
    return VECTORS if len(self.data_shape) == 1 else IMAGES

  def eval_splits(self) -> dict[str, Split]:
    """The splits to evaluate, by name."""
    splits = {'test': self.test}
    if self.validation is not None:
      splits['validation'] = self.validation
    return splits
