"""Reads the tensors of a file written by `torch.save` (a state_dict) into numpy arrays, without
PyTorch.

Since PyTorch 1.6 `torch.save` writes a zip archive: `<name>/data.pkl` pickles the object, each
tensor's storage being a persistent id `('storage', <torch.FloatStorage>, key, location, numel)`
whose bytes are the archive member `<name>/data/<key>`, and each tensor a call
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`. The unpickler here
allows those few names and nothing else, so reading a file runs no code from it. Files in the
older (pre-1.6, non-zip) format need PyTorch itself: they are read with `torch.load` if it is
installed.
"""

from __future__ import annotations

import collections
import pickle
import zipfile

import ml_dtypes
import numpy as np

from vae_jax.errors import UserError

STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}


class TorchFileError(UserError, ValueError):
  pass


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """A tensor as `_rebuild_tensor_v2` makes it: `size` elements of `storage` from `offset`,
  `stride` elements apart, as a new contiguous array."""
  del unused  # requires_grad, backward hooks, metadata
  if not size:
    return np.array(storage[offset])
  strides = tuple(step * storage.itemsize for step in stride)
  return np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), strides).copy()


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _StorageType:

  def __init__(self, name: str):
    self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Unpickler(pickle.Unpickler):
  """Unpickles a state_dict's `data.pkl`, its storages read from the archive."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(file)
    self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
    self._storages = {}

  def find_class(self, module: str, name: str):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return _rebuild_tensor
    if (module, name) == ('torch._utils', '_rebuild_parameter'):
      return _rebuild_parameter
    if module == 'torch' and name in STORAGE_DTYPES:
      return _StorageType(name)
    raise TorchFileError(f'The torch file holds a {module}.{name}, which is not part of a '
                         'state_dict of tensors; load it with PyTorch instead.')

  def persistent_load(self, pid):
    kind, storage_type, key, _, _ = pid
    if kind != 'storage' or not isinstance(storage_type, _StorageType):
      raise TorchFileError(f'Unknown storage record {pid!r} in the torch file.')
    if key not in self._storages:
      raw = self._archive.read(f'{self._prefix}/data/{key}')
      dtype = storage_type.dtype.newbyteorder('<' if self._byteorder == 'little' else '>')
      self._storages[key] = np.frombuffer(raw, dtype).astype(storage_type.dtype)
    return self._storages[key]


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """`{name: array}` of a state_dict saved with `torch.save` (see the module docstring)."""
  if not zipfile.is_zipfile(path):
    return _load_with_torch(path)
  state = load_object(path)
  if not isinstance(state, dict):
    raise TorchFileError(f'{path} holds a {type(state).__name__}, not a state_dict.')
  return {name: np.asarray(value) for name, value in state.items()}


def load_object(path: str):
  """The object `torch.save` wrote to `path` (zip format), its tensors as numpy arrays: a
  state_dict, or an optimizer's (`{'state': {index: {name: tensor}}, 'param_groups': [...]}`)."""
  if not zipfile.is_zipfile(path):
    raise TorchFileError(f'{path} is not in the zip format torch.save writes since PyTorch 1.6.')
  with zipfile.ZipFile(path) as archive:
    pickles = [name for name in archive.namelist() if name.endswith('/data.pkl')]
    if len(pickles) != 1:
      raise TorchFileError(f'{path} is a zip file but not one torch.save wrote (no single '
                           '<name>/data.pkl in it).')
    prefix = pickles[0][:-len('/data.pkl')]
    byteorder_name = f'{prefix}/byteorder'
    byteorder = (archive.read(byteorder_name).decode().strip()
                 if byteorder_name in archive.namelist() else 'little')
    with archive.open(pickles[0]) as file:
      return _Unpickler(file, archive, prefix, byteorder).load()


def _load_with_torch(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise TorchFileError(f'{path} is not in the zip format torch.save writes since PyTorch 1.6; '
                         'reading the older format needs PyTorch: pip install torch, or re-save '
                         'it with torch.save(torch.load(path), path).') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise TorchFileError(f'{path} is not a file torch.save wrote, or not a state_dict of '
                         f'tensors ({type(error).__name__}).') from None
  return {name: value.detach().float().numpy() if value.is_floating_point() else
          value.numpy() for name, value in state.items()}
