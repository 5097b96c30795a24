"""What every source's splits go through: a fixed random test split for data without one, the
validation split carved from the end of train, and binarisation (`data.binarization`):

  * 'dynamic': training images stay grey-level and each training step draws a fresh Bernoulli
    sample (`binarize`, called inside the compiled step); validation and test images are
    binarised once with `binarization_seed`, so evaluation is deterministic.
  * 'static': every split is binarised once with `binarization_seed`.
  * 'none': continuous values (in [0, 1] for images).
"""

from __future__ import annotations

import jax
import numpy as np

from vae_jax.data.dataset import DataError, Dataset, RecordSplit, Split

BINARIZATIONS = ('dynamic', 'static', 'none')
STREAMED_RECORDS_CHECKED = 1000


def binarize(rng: jax.Array, images: jax.Array) -> jax.Array:
  """A Bernoulli sample with the pixel intensities as probabilities (same dtype as `images`)."""
  return jax.random.bernoulli(rng, images).astype(images.dtype)


def random_flip(rng: jax.Array, images: jax.Array) -> jax.Array:
  """Each image `[B, H, W, C]` mirrored left-right with probability ½ (`data.random_flip`)."""
  flipped = jax.random.bernoulli(rng, 0.5, images.shape[:1])
  return jax.numpy.where(flipped[:, None, None, None], images[:, :, ::-1], images)


def binarize_split(split: Split, seed: int, split_index: int) -> Split:
  key = jax.random.fold_in(jax.random.key(seed), split_index)
  return Split(np.asarray(binarize(key, split.images)), split.labels)


def default_test_size(num_examples: int, test_size: int) -> int:
  """`data.test_size`, or a tenth of the examples (at least one) when it is 0."""
  return test_size or max(1, num_examples // 10)


def test_order(num_examples: int, test_size: int, seed: int) -> np.ndarray:
  """A fixed random order of the examples whose first `test_size` are the test split."""
  if not 0 < test_size < num_examples:
    raise DataError(f'data.test_size={test_size} must be in (0, {num_examples}).')
  return np.random.default_rng(seed).permutation(num_examples)


def split_by_seed(images, labels, test_size: int, seed: int) -> tuple[Split, Split]:
  """A fixed random train/test split, for datasets that come without one."""
  split = Split(images, labels).take(test_order(len(images), test_size, seed))
  return split.take(slice(test_size, None)), split.take(slice(0, test_size))


def carve_validation(train: Split | RecordSplit, validation_size: int, name: str
                     ) -> tuple[Split | RecordSplit, Split | None]:
  """(train without its last `validation_size` examples, those examples), or (train, None)."""
  if not 0 <= validation_size < len(train):
    raise DataError(f'data.validation_size={validation_size} must be in [0, {len(train)}) for '
                    f'{name} (train has {len(train)} examples).')
  if not validation_size:
    return train, None
  validation = train.take(slice(-validation_size, None))
  if isinstance(train, RecordSplit):
    return RecordSplit(train.source, len(train) - validation_size), validation
  return train.take(slice(0, -validation_size)), validation


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
