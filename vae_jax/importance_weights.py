"""The terms of the log importance weights `log p(x, z) − log q(z|x)` at draws z ~ q(z|x), for
any family (`LatentVariableModel.sample_log_weight_terms`). Apart from `objectives` because
model families use them too (the discrete family's score-function estimator): this module
imports no models, so a family can import it while `objectives` imports the families.
"""

from __future__ import annotations

import jax


def log_weight_terms(model, params, x: jax.Array, rng: jax.Array,
                     num_samples: int) -> dict[str, jax.Array]:
  """`log p(x|z)`, `log p(z)` and `log q(z|x)` (and the closed-form KL, if any) for
  `num_samples` draws `z ~ q(z|x)`, vmapped over the draws: each `[num_samples, B]`."""

  def single_sample(key):
    return model.apply(params, x, key, method='sample_log_weight_terms')

  keys = jax.random.split(rng, num_samples)
  if num_samples == 1:  # the same draw without vmap: XLA:CPU runs unbatched matmuls faster
    return jax.tree.map(lambda value: value[None], single_sample(keys[0]))
  return jax.vmap(single_sample)(keys)


def log_weights(terms: dict[str, jax.Array], beta: float | jax.Array = 1.0) -> jax.Array:
  """`log p(x|z) + β[log p(z) − log q(z|x)]`; the importance weights' logs when β = 1."""
  return terms['reconstruction'] + beta * (terms['log_prior'] - terms['log_posterior'])
