"""Progress of a long evaluation: examples done, rate and time left, logged while it runs.

The caller (the training loop, `experiments.evaluate`) names the work in hand with
`tracking(label)`; the loops that do it (`evaluators.batched.map_examples`, and any evaluator's
own loop) call `start_pass(total)` before a pass over examples and `advance(done)` after each
batch. Outside `tracking` both do nothing, so library functions stay silent when called
directly. A line is logged at most every
`every_seconds` (and never for work that ends sooner), so short evaluations print nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Callable, Iterator

from absl import logging

DEFAULT_EVERY_SECONDS = 10.0


@dataclasses.dataclass
class Tracker:
  """Times one labelled piece of work, made of one or more passes over examples."""
  label: str
  every_seconds: float
  log: Callable[..., None]
  clock: Callable[[], float] = time.perf_counter
  passes: int = 0

  def start_pass(self, total: int) -> None:
    self.passes += 1
    self._total, self._pass_start = total, self.clock()
    self._last_line = self._pass_start

  def advance(self, done: int) -> None:
    now = self.clock()
    if now - self._last_line < self.every_seconds:
      return
    self._last_line = now
    rate = done / max(now - self._pass_start, 1e-9)
    pass_note = f' (pass {self.passes})' if self.passes > 1 else ''
    self.log('%s: %d/%d examples%s, %.1f examples/s, %s left.', self.label, done, self._total,
             pass_note, rate, format_duration((self._total - done) / max(rate, 1e-9)))


_CURRENT: contextvars.ContextVar[Tracker | None] = contextvars.ContextVar('progress', default=None)


@contextlib.contextmanager
def tracking(label: str, *, every_seconds: float = DEFAULT_EVERY_SECONDS,
             log: Callable[..., None] = logging.info) -> Iterator[Tracker]:
  """Progress of the work inside the block is logged under `label`."""
  tracker = Tracker(label, every_seconds, log)
  token = _CURRENT.set(tracker)
  try:
    yield tracker
  finally:
    _CURRENT.reset(token)


def start_pass(total: int) -> None:
  """A pass over `total` examples begins now."""
  tracker = _CURRENT.get()
  if tracker is not None:
    tracker.start_pass(total)


def advance(done: int) -> None:
  """`done` examples of the current pass are finished."""
  tracker = _CURRENT.get()
  if tracker is not None:
    tracker.advance(done)


def format_duration(seconds: float) -> str:
  """'1:02:03' (hours:minutes:seconds)."""
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'


class StepProgress:
  """Step rate and time to completion over the interval since the last report."""

  def __init__(self, num_train_steps: int, initial_step: int):
    self._num_train_steps = num_train_steps
    self._last_step = initial_step
    self._last_time = time.perf_counter()

  def report(self, step: int, *, examples_per_step: int) -> dict[str, float]:
    """Logs progress; returns the interval's `steps_per_sec`, `examples_per_sec` and
    `interval_seconds` (wall time since the last report, evaluations included)."""
    now = time.perf_counter()
    interval_seconds = max(now - self._last_time, 1e-9)
    steps_per_sec = (step - self._last_step) / interval_seconds
    self._last_step, self._last_time = step, now
    eta_seconds = (self._num_train_steps - step) / max(steps_per_sec, 1e-9)
    logging.info('Step %d/%d (%.1f%%), %.1f steps/s, ETA %s.', step, self._num_train_steps,
                 100 * step / max(self._num_train_steps, 1), steps_per_sec,
                 format_duration(eta_seconds))
    return {'steps_per_sec': steps_per_sec, 'examples_per_sec': steps_per_sec * examples_per_step,
            'interval_seconds': interval_seconds}
