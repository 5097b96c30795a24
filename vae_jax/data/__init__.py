"""Datasets as host arrays, from data sources (a registry kind, `vae_jax.data.sources`): each
split decoded once, images `[N, H, W, C]` float32 in [0, 1] or vectors `[N, D]`; or, for the
streaming pipeline (`input_pipeline='grain'`), a training split that stays on disk
(`RecordSplit`, read record by record by `vae_jax.engine.streaming`) beside in-memory
evaluation splits.

The sources, one module each, chosen by `data.name` (see `sources` for the order):
  tfds_source   any TFDS dataset with an `image` feature (`mnist`, `fashion_mnist`, ...)
  digits        scikit-learn's bundled 8×8 handwritten digits (no download; the quickstart)
  frey_face     Frey Face, from a `frey_rawface.mat` file the user supplies
  image_folder  a folder of PNG/JPEG files (`faces/`)
  array_file    a .npy/.npz array of images `[N, H, W(, C)]` or vectors `[N, D]`
  table         a .csv/.tsv table of vectors with a header row
What every source shares: `dataset` (the types), `splits` (test and validation splits,
binarisation), `standardization` (of vectors), `loading` (`load_dataset`).
"""

from vae_jax.data.dataset import (IMAGES, VECTORS, ArraySource, DataError,  # noqa: F401
                                  DataUnavailableError, Dataset, RecordSplit, Split, Traits,
                                  mean_image, record_image)
from vae_jax.data.sources import Source, register_source, source_name  # noqa: F401
from vae_jax.data.splits import (BINARIZATIONS, STREAMED_RECORDS_CHECKED, binarize,  # noqa: F401
                                 checked_values, random_flip)
from vae_jax.data.standardization import Standardization  # noqa: F401
from vae_jax.data.loading import (declared_shape, load_dataset, location_flags,  # noqa: F401
                                  with_resolved_location)
# Each import registers its source; the path-shaped and catch-all ones claim names last.
from vae_jax.data import digits, frey_face, array_file, table, image_folder  # noqa: F401,E402
from vae_jax.data import tfds_source  # noqa: F401,E402
from vae_jax.data.tfds_source import test_split, tfds_data_dir  # noqa: F401,E402
