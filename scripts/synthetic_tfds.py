r"""Writes a synthetic TFDS dataset in array_record format, of any size, without TensorFlow:

  python -m scripts.synthetic_tfds --data_dir=/tmp/synthetic --train_records=360000

`synthetic_digits`: 28×28×1 uint8 images (MNIST's shape and type) of random strokes,
labels 0–9, a train split of `--train_records` and a test split of `--test_records`. vae_jax
reads it like any prepared TFDS dataset (`--config.data.name=synthetic_digits
--data_dir=DIR`), which makes it the test bed of the streaming pipeline: a training split
several times larger than MNIST's arrays, on a machine without internet.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags

NAME = 'synthetic_digits'


class SyntheticDigits(tfds.core.GeneratorBasedBuilder):
  """Random grey-level 28×28 images; the image is a plain uint8 tensor feature (PNG encoding
  would need TensorFlow to prepare)."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, train_records: int = 1000, test_records: int = 200, **kwargs):
    self._records = {'train': train_records, 'test': test_records}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split, count) for split, count in self._records.items()}

  def _generate_examples(self, split: str, count: int):
    rng = np.random.default_rng(0 if split == 'train' else 1)
    # Drawing strokes costs more than writing a record: shifted copies of a pool of drawings.
    pool = [_stroke_image(rng) for _ in range(min(count, 2000))]
    for index in range(count):
      shift = rng.integers(-3, 4, 2)
      image = np.roll(pool[rng.integers(len(pool))], tuple(shift), axis=(0, 1))
      yield index, {'image': image, 'label': index % 10}


def _stroke_image(rng: np.random.Generator) -> np.ndarray:
  """A few bright random segments on black: sparse, digit-like intensities."""
  image = np.zeros((28, 28), np.float32)
  for _ in range(3):
    start, end = rng.uniform(4, 24, 2), rng.uniform(4, 24, 2)
    for t in np.linspace(0, 1, 30):
      row, column = np.round(start + t * (end - start)).astype(int)
      image[row - 1:row + 2, column - 1:column + 2] += 0.5
  return (np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None]


def prepare(data_dir: str, train_records: int, test_records: int = 200) -> str:
  """Prepares the dataset in `data_dir` (once: a prepared one is reused); returns `data_dir`."""
  builder = SyntheticDigits(data_dir=data_dir, train_records=train_records,
                            test_records=test_records, file_format='array_record')
  builder.download_and_prepare()
  return data_dir


def main(argv) -> None:
  del argv
  options = flags.FLAGS
  prepare(options.data_dir, options.train_records, options.test_records)
  print(f'{NAME} prepared in {options.data_dir}: {options.train_records} train and '
        f'{options.test_records} test records.')


if __name__ == '__main__':  # flags defined here only: tests and benchmarks import this module
  flags.DEFINE_string('data_dir', None, 'Where to write the dataset.', required=True)
  flags.DEFINE_integer('train_records', 360_000, 'Training records.')
  flags.DEFINE_integer('test_records', 10_000, 'Test records.')
  app.run(main)
