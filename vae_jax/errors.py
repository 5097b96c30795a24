"""Errors a user can fix (a config value, a missing file, a busy workdir), and the clean stop
of an interrupted run.

Launchers print the message of a `UserError` alone, without a traceback (unless `--traceback`),
and exit with status 1; every other exception is a bug and keeps its traceback. A
`TrainingInterrupted` exits with 128 + its signal. (Here, not in `training`, so that launchers
catch both without importing the training loop.)
"""

import errno
import os
import signal


class UserError(Exception):
  """A problem with what the user asked for; the message names it and how to fix it."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT arrived; every run was checkpointed at `step` first."""

  def __init__(self, step: int, signal_number: int):
    super().__init__(f'Interrupted by {signal.Signals(signal_number).name} at step {step}; every '
                     'run was checkpointed there. Rerun the same command to resume.')
    self.step, self.signal_number = step, signal_number


# The OS errors a user can fix, and how: each becomes one line naming the file.
_OS_ERROR_ADVICE = {
    errno.ENOSPC: 'free some space there or choose another folder',
    errno.EDQUOT: 'free some space there (a disk quota is full) or choose another folder',
    errno.EROFS: 'the file system is read-only: choose a writable folder',
    errno.EACCES: 'check its permissions or choose another folder',
    errno.EPERM: 'check its permissions or choose another folder',
    errno.ENOTDIR: 'a file stands where a folder is needed: choose another path',
    errno.EEXIST: 'a file stands where a folder is needed: choose another path',
    errno.EISDIR: 'a folder stands where a file is needed: choose another path',
}


def os_error_message(error: BaseException) -> str | None:
  """One line for an OS error the user can fix (no space, read-only, permission, a file where a
  folder belongs) found in `error` or the exceptions it was raised from (libraries such as
  orbax wrap them); None for any other error."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _OS_ERROR_ADVICE:
      where = f': {error.filename}' if error.filename else ''
      return (f'{error.strerror or os.strerror(error.errno)}{where} '
              f'({_OS_ERROR_ADVICE[error.errno]}).')
    error = error.__cause__ or error.__context__
  return None
