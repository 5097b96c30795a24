"""Errors a user can fix (a config value, a missing file, a busy workdir).

Launchers print the message of a `UserError` alone, without a traceback (unless `--traceback`),
and exit with status 1; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A problem with what the user asked for; the message names it and how to fix it."""
