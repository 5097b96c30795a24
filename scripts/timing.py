"""Timing compiled calls: each call waited for, after a warm-up call that is waited for too."""

import time

import jax


def seconds_of_calls(call, count: int) -> list[float]:
  """Seconds of each of `count` calls `call(index)`, after one warm-up `call(None)`. JAX
  dispatches a call and returns at once, so each call's outputs are waited for
  (`jax.block_until_ready`), the warm-up's before the clock starts: otherwise the first timed
  call would also be timing the rest of the warm-up."""
  jax.block_until_ready(call(None))
  seconds = []
  for index in range(count):
    start = time.perf_counter()
    jax.block_until_ready(call(index))
    seconds.append(time.perf_counter() - start)
  return seconds
