"""Timing compiled calls: each call waited for, after a warm-up call that is waited for too."""

import time

import jax


def seconds_of_calls(call, count: int) -> tuple[float, list[float]]:
  """The seconds of a warm-up call `call(None)` (compilation included), and of each of `count`
  calls `call(index)` after it. JAX dispatches a call and returns at once, so each call's
  outputs are waited for (`jax.block_until_ready`), the warm-up's before the next clock starts:
  otherwise the first timed call would also be timing the rest of the warm-up."""
  seconds = []
  for index in [None, *range(count)]:
    start = time.perf_counter()
    jax.block_until_ready(call(index))
    seconds.append(time.perf_counter() - start)
  return seconds[0], seconds[1:]
