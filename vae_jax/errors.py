"""Errors a user can fix (a config value, a missing file, a busy workdir), and the clean stop
of an interrupted run.

Launchers print the message of a `UserError` alone, without a traceback (unless `--traceback`),
and exit with status 1; every other exception is a bug and keeps its traceback. A
`TrainingInterrupted` exits with 128 + its signal. (Here, not in `training`, so that launchers
catch both without importing the training loop.)
"""

import signal


class UserError(Exception):
  """A problem with what the user asked for; the message names it and how to fix it."""


class TrainingInterrupted(Exception):
  """SIGTERM or SIGINT arrived; every run was checkpointed at `step` first."""

  def __init__(self, step: int, signal_number: int):
    super().__init__(f'Interrupted by {signal.Signals(signal_number).name} at step {step}; every '
                     'run was checkpointed there. Rerun the same command to resume.')
    self.step, self.signal_number = step, signal_number
