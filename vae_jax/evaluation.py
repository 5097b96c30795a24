"""Evaluation on whole splits: deterministic, exact for a ragged last batch, in nats per example."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import objectives


def make_elbo_sums_fn(model, *, num_samples: int, analytic_kl: bool):
  """A jitted `(params, images [B, ...], example_ids [B], mask [B], rng) -> {term: masked sum}`.

  Example `i` draws its samples of z from `fold_in(rng, i)`, so a result does not depend on
  how the split is cut into batches.
  """

  def example_terms(params, image, key):
    terms = objectives.elbo_terms(model, params, image[None], key, num_samples=num_samples,
                                  analytic_kl=analytic_kl)
    return jax.tree.map(lambda value: value[0], terms)

  @jax.jit
  def elbo_sums(params, images, example_ids, mask, rng):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, example_ids)
    terms = jax.vmap(example_terms, in_axes=(None, 0, 0))(params, images, keys)
    return {name: jnp.sum(jnp.where(mask, value, 0.0)) for name, value in terms.items()}

  return elbo_sums


def evaluate_elbo(elbo_sums_fn, params, images: np.ndarray, *, batch_size: int,
                  rng: jax.Array) -> dict[str, float]:
  """Mean ELBO terms over `images` (nats per example).

  Every batch has `batch_size` rows (the last is zero-padded and masked), so one compiled
  program serves the whole split; sums are divided once, so the mean is exact. The result
  depends only on (params, images, rng), not on `batch_size`.
  """
  totals = None
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    example_ids = np.arange(start, start + batch_size)
    mask = example_ids < len(images)
    sums = elbo_sums_fn(params, _pad_to(batch, batch_size), example_ids, mask, rng)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  return {name: float(total) / len(images) for name, total in jax.device_get(totals).items()}


def _pad_to(batch: np.ndarray, size: int) -> np.ndarray:
  if len(batch) == size:
    return batch
  padding = np.zeros((size - len(batch), *batch.shape[1:]), batch.dtype)
  return np.concatenate([batch, padding])


@functools.partial(jax.jit, static_argnames=('model', 'num_samples'))
def prior_samples(model, params, rng: jax.Array, *, num_samples: int) -> jax.Array:
  """Mean of `p(x|z)` for `num_samples` draws `z ~ p(z)`: `[num_samples, *data_shape]`."""
  z = model.apply(params, method='prior_distribution').sample(rng, (num_samples,))
  return model.apply(params, z, method='decode').mean


@functools.partial(jax.jit, static_argnames=('model',))
def reconstructions(model, params, images: jax.Array) -> jax.Array:
  """Mean of `p(x|z)` at the posterior mean `z = E_q[z|x]`, for each image."""
  z = model.apply(params, images, method='encode').mean
  return model.apply(params, z, method='decode').mean
