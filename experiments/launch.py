"""What every launcher does before its work."""

import logging as python_logging

from absl import logging


def quiet_orbax_info_logs() -> None:
  """Orbax logs each checkpoint step by step at INFO; keep its warnings and errors only."""
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname)
