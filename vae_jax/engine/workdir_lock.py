"""One training process per workdir: an advisory lock held while a run trains.

The lock is `fcntl.flock` on WORKDIR/.lock. The kernel releases it when its process ends, however
it ends (SIGKILL, a crash, a preempted node), so a lock left by a dead process never blocks: the
file stays, only a live holder refuses. The file records who holds it, for the refusal message.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket

from vae_jax.errors import UserError

try:
  import fcntl
except ImportError:  # Windows: no flock; workdirs are not locked there
  fcntl = None

LOCK_FILENAME = '.lock'


class WorkdirInUseError(UserError, RuntimeError):
  """Another live process is training in this workdir."""


@contextlib.contextmanager
def hold(workdirs: list[str]):
  """Locks every workdir (creating it) for the duration of the `with` block, or raises
  `WorkdirInUseError` naming the process that holds one, having locked none."""
  with contextlib.ExitStack() as stack:
    for workdir in workdirs:
      stack.enter_context(_hold_one(workdir))
    yield


@contextlib.contextmanager
def _hold_one(workdir: str):
  os.makedirs(workdir, exist_ok=True)
  if fcntl is None:
    yield
    return
  with open(os.path.join(workdir, LOCK_FILENAME), 'a+', encoding='utf-8') as lock_file:
    try:
      fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      lock_file.seek(0)
      holder = lock_file.read().strip() or 'another process'
      raise WorkdirInUseError(
          f'{workdir} is in use: {holder} is training in it. Wait for that run to finish or stop '
          'it (it checkpoints on SIGTERM), or pass another --workdir.') from None
    started = datetime.datetime.now().isoformat(timespec='seconds')
    try:  # who holds it, for another launch's refusal; unbuffered: a full disk fails here only
      os.truncate(lock_file.fileno(), 0)
      os.pwrite(lock_file.fileno(), f'process {os.getpid()} on {socket.gethostname()} '
                f'(since {started})\n'.encode(), 0)
    except OSError:
      pass  # the lock holds without the note; the run's first write will name the problem
    try:
      yield
    finally:
      fcntl.flock(lock_file, fcntl.LOCK_UN)
