"""The importance-sampled estimate of log p(x), with its Monte-Carlo standard error."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import objectives
from vae_jax.evaluators import batched, registry


def make_importance_sampling_fn(model, *, num_samples: int, chunk_size: int):
  """A jitted `(params, images [B, ...], example_ids [B], rng) -> {'log_likelihood': [B],
  'standard_error': [B]}`: the importance-sampled estimate

      log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x),   K = num_samples,

  (the IWAE bound with K samples, which tends to log p(x) from below as K grows). The K draws
  are made `chunk_size` at a time inside a `lax.scan`, keeping running log-sums of the weights
  and of their squares, so memory is set by `chunk_size`, not K. The standard error is the
  delta-method Monte-Carlo error of log p̂: the sample standard deviation of the weights over
  √K times their mean.
  """
  chunk_size = min(chunk_size, num_samples)
  num_chunks = math.ceil(num_samples / chunk_size)

  def example_estimate(params, image, key):
    x = image[None]

    def add_chunk(carry, chunk_index):
      log_sum_w, log_sum_w2 = carry
      terms = objectives.log_weight_terms(model, params, x, jax.random.fold_in(key, chunk_index),
                                          chunk_size)
      log_w = objectives.log_weights(terms)[:, 0]
      in_range = chunk_index * chunk_size + jnp.arange(chunk_size) < num_samples
      log_w = jnp.where(in_range, log_w, -jnp.inf)
      return (jnp.logaddexp(log_sum_w, jax.scipy.special.logsumexp(log_w)),
              jnp.logaddexp(log_sum_w2, jax.scipy.special.logsumexp(2 * log_w))), None

    init = (jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(-jnp.inf, jnp.float32))
    (log_sum_w, log_sum_w2), _ = jax.lax.scan(add_chunk, init, jnp.arange(num_chunks))
    # Var(w) / mean(w)² = K Σw² / (Σw)² − 1.
    relative_variance = jnp.maximum(num_samples * jnp.exp(log_sum_w2 - 2 * log_sum_w) - 1.0, 0.0)
    return {'log_likelihood': log_sum_w - math.log(num_samples),
            'standard_error': jnp.sqrt(relative_variance / num_samples)}

  @jax.jit
  def importance_sampling_fn(params, images, example_ids, rng):
    keys = batched.per_example_keys(rng, example_ids)
    return jax.vmap(example_estimate, in_axes=(None, 0, 0))(params, images, keys)

  return importance_sampling_fn


def importance_sampled_log_likelihood(importance_sampling_fn, params, images: np.ndarray, *,
                                      batch_size: int, rng: jax.Array) -> dict[str, float]:
  """Mean estimate of log p(x) over `images`, the Monte-Carlo standard error of that mean, and
  the per-example estimates' standard deviation across the split."""
  result = batched.map_examples(importance_sampling_fn, params, images, batch_size=batch_size,
                                rng=rng)
  estimates = result['log_likelihood']
  return {
      'log_likelihood': float(np.mean(estimates)),
      'standard_error': float(np.sqrt(np.sum(result['standard_error']**2)) / len(estimates)),
      'std_across_examples': float(np.std(estimates)),
  }


@dataclasses.dataclass
class ImportanceSamplingEvaluator:
  """`{'importance_sampled': {log_likelihood, standard_error, std_across_examples,
  num_samples}}`."""
  importance_sampling_fn: object
  num_samples: int
  batch_size: int

  def __call__(self, params, split, rng) -> dict:
    estimate = importance_sampled_log_likelihood(self.importance_sampling_fn, params,
                                                 split.images, batch_size=self.batch_size,
                                                 rng=rng)
    return {'importance_sampled': {**estimate, 'num_samples': self.num_samples}}


@registry.register('importance_sampled')
def create(model, config, dataset) -> ImportanceSamplingEvaluator | None:
  del dataset
  options = config.evals.importance_sampled
  if not options.num_samples:
    return None
  return ImportanceSamplingEvaluator(
      make_importance_sampling_fn(model, num_samples=options.num_samples,
                                  chunk_size=options.chunk_size),
      options.num_samples, config.eval_batch_size)
