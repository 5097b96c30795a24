"""`frey_face`: 1,965 grey faces of 28×20 pixels (Kingma & Welling 2013's continuous data), from
a `frey_rawface.mat` file the user supplies (`data.path`, or `--data_path`). No labels; the
test split is `data.test_size` faces drawn with `data.split_seed`."""

from __future__ import annotations

import os

import numpy as np

from vae_jax import options
from vae_jax.data import sources, splits
from vae_jax.data.dataset import DataUnavailableError, Split, Traits
from vae_jax.options import OPERATIONAL, Option

URL = 'https://cs.nyu.edu/~roweis/data/frey_rawface.mat'


@sources.register_source('frey_face', options=options.at(
    'data', traits=(OPERATIONAL,),
    path=Option('', 'the data file, for datasets read from one (frey_face)')))
class FreyFaceSource(sources.Source):

  def traits(self) -> Traits:
    return Traits(shape=(28, 20, 1), labels=False)

  def load(self, *, stream_train: bool) -> tuple[Split, Split]:
    del stream_train  # held in memory
    return splits.split_by_seed(self._faces(), None, self.config.test_size,
                                self.config.split_seed)

  def resolve_location(self, config):
    if config.path:
      config.path = os.path.abspath(os.path.expanduser(config.path))
    return config

  def location_flags(self, resolved) -> list[str]:
    return [f'--data_path={resolved.path}'] if resolved.path else []

  def _faces(self) -> np.ndarray:
    """`[1965, 28, 20, 1]` float32 in [0, 1] from variable `ff` (one image per column)."""
    path = self.config.path
    if not path:
      raise DataUnavailableError(
          'Frey Face is not bundled with vae_jax. Download frey_rawface.mat from '
          f'{URL} and pass its path: --data_path=/path/to/frey_rawface.mat')
    if not os.path.isfile(path):
      raise DataUnavailableError(f'data.path={path!r} is not a file. Download frey_rawface.mat '
                                 f'from {URL} and pass its path with --data_path.')
    from scipy import io  # pylint: disable=import-outside-toplevel
    faces = io.loadmat(path)['ff'].T.reshape(-1, 28, 20, 1)  # uint8, rows of 20 pixels
    return (faces / 255.0).astype(np.float32)
