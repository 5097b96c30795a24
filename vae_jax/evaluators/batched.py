"""Per-example functions applied to a whole split in fixed-size batches.

Every per-example function draws example `i`'s noise from `fold_in(rng, i)`, so results depend
on (params, images, rng) only, never on the batch size. Batches are zero-padded to one size (one
compiled program per split) and the padding rows are dropped before averaging.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from vae_jax import networks, progress


def jit_at_full_precision(fn, compiler_options: dict | None = None):
  """`jax.jit(fn)`, every matrix product and convolution in it at full float32 precision on
  every backend (no TF32 or bfloat16 passes on GPUs and TPUs), whatever
  `model.matmul_precision` says: what an estimate of log p(x) needs. `compiler_options`: the
  run's (`vae_jax.compiler_options.for_run`)."""

  @functools.wraps(fn)
  def at_full_precision(*args):
    with networks.matmul_precision('highest'):
      return fn(*args)

  return jax.jit(at_full_precision, compiler_options=compiler_options)


def per_example_keys(rng: jax.Array, example_ids: jax.Array) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, example_ids)


def map_examples(fn, params, images: np.ndarray, *, batch_size: int, rng: jax.Array):
  """Applies `fn(params, batch, example_ids, rng)` to `images` in padded batches; returns its
  per-example outputs for the real examples only, as float64 host arrays. Reports its progress
  (`vae_jax.progress`)."""
  outputs = []
  progress.start_pass(len(images))
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    example_ids = np.arange(start, start + batch_size)
    outputs.append(jax.device_get(fn(params, _pad_to(batch, batch_size), example_ids, rng)))
    progress.advance(start + len(batch))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:len(images)].astype(np.float64),
                      *outputs)


def _pad_to(batch: np.ndarray, size: int) -> np.ndarray:
  if len(batch) == size:
    return batch
  padding = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
  return np.concatenate([batch, padding])


def test_set_error(per_example: np.ndarray) -> float | None:
  """Standard error of a split mean from the examples' spread (None for one example)."""
  if len(per_example) < 2:
    return None
  return float(np.std(per_example, ddof=1) / np.sqrt(len(per_example)))
