"""`load_dataset`: asks the source `data.name` chooses for its splits, once, and puts them
through what every source shares (validation split, standardisation of vectors, binarisation).
"""

from __future__ import annotations

import copy

import ml_collections

from vae_jax import options, registries
from vae_jax.data import sources, splits
from vae_jax.data.dataset import (VECTORS, ArraySource, DataError, Dataset, RecordSplit, Split,
                                  Traits)
from vae_jax.data.standardization import Standardization
from vae_jax.options import SHAPES_STATE, SPLITS, Option


def load_dataset(config: ml_collections.ConfigDict, *, stream_train: bool = False,
                 standardization: Standardization | None = None) -> Dataset:
  """Loads, splits and (if asked) binarises the dataset that `config` (the `data` block) names.

  With `stream_train`, the training split is a `RecordSplit`: it stays on disk where the source
  streams (TFDS, an image folder), else it is read from memory; `vae_jax.engine.streaming`
  reads it and binarises it as it goes. The validation split (the last `validation_size`
  training records) and the test split are read into memory either way. Vectors are
  standardised with `standardization` (a run's saved one), else one fitted on the training
  split when `data.standardize` is set.
  """
  source = sources.build(config)
  traits = source.traits()
  train, test = source.load(stream_train=stream_train and traits.streams)
  _check_declared(config.name, traits, test)
  if config.get('random_flip', False) and traits.kind == VECTORS:
    raise DataError(f'data.random_flip flips images; data.name={config.name!r} holds vectors: '
                    'set --config.data.random_flip=False.')
  if stream_train and isinstance(train, Split):
    train = RecordSplit(ArraySource(train.images, train.labels), len(train))
  train, validation = splits.carve_validation(train, config.validation_size, config.name)
  if traits.kind == VECTORS and (standardization or config.get('standardize', False)):
    train_values = train.images if isinstance(train, Split) else train.take(slice(None)).images
    standardization = standardization or Standardization.fit(
        train_values, sources.optional(source, 'feature_names')())
    train, validation, test = (_standardized(split, standardization)
                               for split in (train, validation, test))
  else:
    standardization = None
  if config.binarization == 'static' and not stream_train:
    train = splits.binarize_split(train, config.binarization_seed, 0)
  if config.binarization in ('static', 'dynamic'):
    test = splits.binarize_split(test, config.binarization_seed, 1)
    if validation is not None:
      validation = splits.binarize_split(validation, config.binarization_seed, 2)
  return Dataset(config.name, train, validation, test, traits, standardization)


def _standardized(split, standardization: Standardization):
  if split is None:
    return None
  if isinstance(split, RecordSplit):
    split = split.take(slice(None))
    return RecordSplit(ArraySource(standardization.apply(split.images), split.labels), len(split))
  return Split(standardization.apply(split.images), split.labels)


def _check_declared(name: str, traits: Traits, test: Split) -> None:
  """The examples are what the source declared (a source from outside the package may err)."""
  shape = tuple(test.images.shape[1:])
  rank = 1 if traits.kind == VECTORS else 3
  if len(shape) != rank or (traits.shape is not None and tuple(traits.shape) != shape):
    raise DataError(f'The data source of data.name={name!r} declared {traits.kind} of shape '
                    f'{traits.shape}, but its examples have shape {shape}.')


def declared_shape(config: ml_collections.ConfigDict) -> tuple[int, ...] | None:
  """One example's shape as the source declares it without reading the data (None when it
  cannot tell: then only `load_dataset` knows)."""
  source = sources.build(config)
  shape = source.traits().shape
  declare = getattr(source, 'declared_shape', None)  # optional: TFDS's builders know it
  return tuple(shape) if shape is not None else declare() if declare is not None else None


def with_resolved_location(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of the `data` block whose data location is absolute (the TFDS data dir chosen now,
  the data file or folder), as its source resolves it. Saved with a run, it lets evaluation find
  the data from any directory and any shell."""
  resolved = copy.deepcopy(config)
  return sources.optional(sources.build(config), 'resolve_location')(resolved)


def location_flags(config: ml_collections.ConfigDict) -> list[str]:
  """The launcher flags (`--data_dir=...`, `--data_path=...`) that give the resolved location
  of the data `config` (the `data` block) names."""
  resolved = with_resolved_location(config)
  return sources.optional(sources.build(resolved), 'location_flags')(resolved)


registries.add(registries.Component('run', 'data', None, {
    **options.at('data', name=Option(
        'mnist', "a TFDS image dataset, 'digits' / 'frey_face', a registered data source, or a "
        'path: a folder of PNG/JPEG files, a .npy or .npz array, a .csv or .tsv table '
        '(vae_jax/data/)', traits=frozenset({SHAPES_STATE}))),
    **options.at(
        'data',
        binarization=Option('dynamic', "'dynamic' | 'static' | 'none'",
                            options.one_of(*splits.BINARIZATIONS)),
        binarization_seed=Option(0, "static binarisation, and eval splits under 'dynamic'"),
        validation_size=Option(0, 'examples carved from the end of train for validation',
                               options.non_negative, traits=frozenset({SPLITS})),
        test_size=Option(0, 'test examples, for datasets without a test split (digits, '
                         'frey_face, files)', traits=frozenset({SPLITS})),
        split_seed=Option(0, 'the train/test split of those datasets',
                          traits=frozenset({SPLITS})),
        random_flip=Option(False, 'images: mirror each training image left-right with '
                           'probability 1/2, drawn in the training step from (seed, step)')),
}, ()))
