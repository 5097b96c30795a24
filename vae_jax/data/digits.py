"""`digits`: scikit-learn's 1,797 bundled 8×8 handwritten digits (the UCI optdigits test set),
intensities 0..16 scaled to [0, 1], with their labels; no download (the quickstart's data).
The test split is `data.test_size` digits drawn with `data.split_seed`."""

from __future__ import annotations

import numpy as np

from vae_jax.data import sources, splits
from vae_jax.data.dataset import Split, Traits


@sources.register_source('digits')
class DigitsSource(sources.Source):

  def traits(self) -> Traits:
    return Traits(shape=(8, 8, 1), bits=None, labels=True)  # 17 grey levels, not 8 bits

  def load(self, *, stream_train: bool) -> tuple[Split, Split]:
    del stream_train  # held in memory
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    return splits.split_by_seed(images, digits.target.astype(np.int32), self.config.test_size,
                                self.config.split_seed)
