"""Joining a multi-process job, and saying so in one line when another process is lost.

A process of a `jax.distributed` job learns that another one died in one of two ways. If it
is in a collective, the collective fails at once (`JaxRuntimeError`, e.g. Gloo's "Connection
closed by peer"): the launcher then calls `stop_for_lost_process`, one `error:` line that says
what happened and what to do, and exit code 1. Otherwise (compiling, saving a checkpoint,
waiting at a barrier), JAX's coordination service notices the missing heartbeats after
`--heartbeat_timeout_seconds` and aborts this process itself, with its own message ("The
following tasks are unhealthy (stopped sending heartbeats): 1 ...") and a stack dump: JAX
offers no hook to replace that (its client's `missed_heartbeat_callback` cannot be given from
Python in jaxlib 0.10: the status it passes does not convert).
"""

from __future__ import annotations

import os
import sys

import jax
from absl import logging

from vae_jax.engine import checkpointing

ERROR_EXIT_CODE = 1
_job = {'workdir': None, 'process': None, 'processes': None}


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, heartbeat_timeout_seconds: int) -> None:
  """`jax.distributed.initialize`, logging where this process stands. Call before anything
  starts JAX's backend."""
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  _job.update(process=jax.process_index(), processes=jax.process_count())
  logging.info('Process %d of %d; %d devices in all, %d here.', jax.process_index(),
               jax.process_count(), jax.device_count(), jax.local_device_count())


def set_workdir(workdir: str) -> None:
  """The workdir whose latest checkpoint a lost-process report names."""
  _job['workdir'] = workdir


def stop_for_lost_process(detail: str) -> None:
  """Writes one line (the lost contact, the last checkpoint, how to resume) and exits with 1
  at once: this process cannot go on without the others."""
  latest = None
  if _job['workdir'] is not None:
    latest = max(checkpointing.step_folders(_job['workdir']), default=None)
  saved = (f'the checkpoint at step {latest} is intact' if latest is not None
           else 'no checkpoint was written yet')
  sys.stderr.write(
      f'error: process {_job["process"]} of {_job["processes"]} lost contact with another '
      f'process of this job ({detail[:300]}); training stopped and {saved}. Find the process '
      'that failed in its own log, then relaunch every process with the same command to '
      'resume.\n')
  sys.stderr.flush()
  os._exit(ERROR_EXIT_CODE)  # pylint: disable=protected-access
