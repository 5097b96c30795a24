"""A table of feature vectors: a .csv or .tsv file with a header row, one example per row, every
column a number (`data.label_column` names an integer column to hold out as labels). The test
split is `data.test_size` rows (default a tenth) drawn with `data.split_seed`; the vectors are
standardised per feature on the training split (`data.standardize`, the default).

A bad table stops the launch with one line, before anything is written: a column that is not
numeric (named), a NaN or infinite value (its row and column named).
"""

from __future__ import annotations

import csv
import os

import numpy as np

from vae_jax import options
from vae_jax.data import sources, splits
from vae_jax.data.dataset import VECTORS, DataError, Split, Traits
from vae_jax.options import SHAPES_STATE, Option

SUFFIXES = ('.csv', '.tsv')
VECTOR_OPTIONS = options.at(
    'data', standardize=Option(True, 'vectors: standardise each feature with the mean and '
                               'standard deviation of the training split (saved with the run)'))


def check_finite(vectors: np.ndarray, path: str, feature_names=(), row_offset: int = 1) -> None:
  """One message naming the first NaN or infinite value's row (from `row_offset`) and column."""
  bad = np.argwhere(~np.isfinite(vectors))
  if len(bad):
    row, column = bad[0]
    name = feature_names[column] if len(feature_names) > column else f'number {column + 1}'
    raise DataError(f'{path}: row {row + row_offset}, column {name!r} holds '
                    f'{vectors[row, column]}; every value must be a finite number '
                    f'({len(bad)} value(s) are not).')


def read_table(path: str, label_column: str = '') -> tuple[list[str], np.ndarray, np.ndarray | None]:
  """(feature names, vectors `[N, D]` float32, labels `[N]` int32 or None) of a table file."""
  if not os.path.isfile(path):
    raise DataError(f'data.name={path!r} is not a file.')
  try:
    with open(path, newline='', encoding='utf-8') as f:
      rows = list(csv.reader(f, delimiter='\t' if path.lower().endswith('.tsv') else ','))
  except (UnicodeDecodeError, csv.Error) as error:
    raise DataError(f'{path} cannot be read as a UTF-8 text table ({error}): it is damaged or '
                    'of another format. Write it again as comma- or tab-separated text with a '
                    'header row.') from None
  rows = [row for row in rows if row]
  if len(rows) < 2:
    raise DataError(f'{path} holds no rows below its header row.')
  header, body = [name.strip() for name in rows[0]], rows[1:]
  short = next((i for i, row in enumerate(body) if len(row) != len(header)), None)
  if short is not None:
    raise DataError(f'{path}: row {short + 1} has {len(body[short])} values, the header '
                    f'{len(header)}.')
  if label_column and label_column not in header:
    raise DataError(f'data.label_column={label_column!r} is not a column of {path}: '
                    f'{header}.')
  columns = {}
  for index, name in enumerate(header):
    try:
      columns[name] = np.asarray([float(row[index]) for row in body], np.float64)
    except ValueError:
      row = next(i for i, row in enumerate(body) if not _is_number(row[index]))
      raise DataError(f'{path}: column {name!r} is not numeric (row {row + 1} holds '
                      f'{body[row][index]!r}); drop it, encode it as numbers, or make it the '
                      'labels with data.label_column.') from None
  labels = None
  if label_column:
    labels = columns.pop(label_column)
    if not np.all(labels == np.round(labels)):
      raise DataError(f'data.label_column={label_column!r} of {path} holds non-integers.')
    labels = labels.astype(np.int32)
  names = list(columns)
  vectors = np.stack([columns[name] for name in names], axis=1)
  check_finite(vectors, path, names)
  return names, vectors.astype(np.float32), labels


def _is_number(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


@sources.register_source(
    'table', claims=lambda name: name.lower().endswith(SUFFIXES),
    options={**VECTOR_OPTIONS, **options.at('data', label_column=Option(
        '', 'tables: the integer column held out as labels (none by default)',
        traits=frozenset({SHAPES_STATE})))})
class Table(sources.Source):
  """The table `data.name` names, read once, when first asked."""

  _read: tuple | None = None

  def traits(self) -> Traits:
    names, vectors, labels = self._table()
    return Traits(kind=VECTORS, shape=(len(names),), bits=None, labels=labels is not None)

  def load(self, *, stream_train: bool) -> tuple[Split, Split]:
    del stream_train  # held in memory
    _, vectors, labels = self._table()
    test_size = splits.default_test_size(len(vectors), self.config.test_size)
    return splits.split_by_seed(vectors, labels, test_size, self.config.split_seed)

  def feature_names(self) -> tuple[str, ...]:
    return tuple(self._table()[0])

  def resolve_location(self, config):
    config.name = os.path.abspath(os.path.expanduser(config.name))
    return config

  def _table(self):
    if self._read is None:
      self._read = read_table(os.path.expanduser(self.config.name), self.config.label_column)
    return self._read
