"""Writing files whole or not at all: the one atomic writer for what a run keeps (config.json,
metrics.jsonl rewrites, evaluation reports, the standardisation of vectors)."""

import contextlib
import os
import tempfile


def write_text_atomically(path: str, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, syncs it and renames it over `path`: a
  reader sees the old file or the new one, never half of one. On failure (a full or read-only
  disk) the temporary file is removed and the OSError names `path`."""
  folder = os.path.dirname(path) or '.'
  temporary = None
  try:
    os.makedirs(folder, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f'.{os.path.basename(path)}.')
    with os.fdopen(descriptor, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException as error:
    if temporary is not None:
      with contextlib.suppress(OSError):
        os.unlink(temporary)
    if isinstance(error, OSError) and not error.filename:  # a failed write names no file
      error.filename = path
    raise
