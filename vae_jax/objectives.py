"""Training objectives, as pure functions of (params, batch, rng). All values are in nats.

`elbo_terms` returns each term of the bound per example, so every term can be logged and a
ragged evaluation batch can be masked before reduction.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vae_jax import distributions


def elbo_terms(model, params, x: jax.Array, rng: jax.Array, *, num_samples: int = 1,
               analytic_kl: bool = True) -> dict[str, jax.Array]:
  """Per-example terms of `ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))`.

  The expectation is estimated with `num_samples` reparameterised samples `z ~ q(z|x)`,
  vmapped. The KL is in closed form when `analytic_kl` and one exists for (q, p); otherwise it
  is the Monte-Carlo estimate `log q(z|x) − log p(z)` on the same samples, which is unbiased.

  Args:
    model: a `vae_jax.models.VAE`.
    params: its variables.
    x: a batch `[B, *data_shape]`.
    rng: a PRNG key for the samples of z.

  Returns:
    `log_likelihood`, `kl` and `elbo`, each `[B]`.
  """
  posterior = model.apply(params, x, method='encode')
  prior = model.apply(params, method='prior_distribution')
  use_analytic_kl = analytic_kl and distributions.has_analytic_kl(posterior, prior)

  def single_sample_terms(key):
    z = posterior.sample(key)  # [B, D]
    log_likelihood = model.apply(params, z, method='decode').log_prob(x)
    # Unused (and removed by XLA) when the KL is analytic.
    log_density_ratio = posterior.log_prob(z) - prior.log_prob(z)
    return log_likelihood, log_density_ratio

  log_likelihood, log_density_ratio = jax.vmap(single_sample_terms)(
      jax.random.split(rng, num_samples))
  log_likelihood = log_likelihood.mean(axis=0)
  if use_analytic_kl:
    kl = distributions.kl_divergence(posterior, prior)
  else:
    kl = log_density_ratio.mean(axis=0)
  return {'log_likelihood': log_likelihood, 'kl': kl, 'elbo': log_likelihood - kl}


def beta_weighted_loss(terms: dict[str, jax.Array], beta: float | jax.Array = 1.0) -> jax.Array:
  """The minimised loss, `−mean_x[E_q log p(x|z) − β·KL]`; the ELBO itself when β = 1."""
  return -jnp.mean(terms['log_likelihood'] - beta * terms['kl'])


def bits_per_dim(log_prob_nats: jax.Array, num_dims: int) -> jax.Array:
  """Converts a log-probability of one example (nats) to bits per data dimension."""
  return -log_prob_nats / (num_dims * math.log(2.0))
