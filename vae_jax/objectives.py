"""Training objectives, as pure functions of (params, batch, rng). All values are in nats.

Each returns its terms per example, so every term can be logged and a ragged evaluation batch
can be masked before reduction. The model is any of `vae_jax.models`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vae_jax import models

OBJECTIVES = ('elbo', 'iwae', 'marginal')
GRADIENT_ESTIMATORS = ('auto', 'reparameterized', 'exact', 'gumbel_softmax', 'straight_through',
                       'score_function')


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
  return terms['log_likelihood'] + beta * (terms['log_prior'] - terms['log_posterior'])


def elbo_terms(model, params, x: jax.Array, rng: jax.Array, *, num_samples: int = 1,
               analytic_kl: bool = True) -> dict[str, jax.Array]:
  """Per-example terms of `ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))`.

  The expectation is estimated with `num_samples` reparameterised draws `z ~ q(z|x)`. The KL is
  in closed form when `analytic_kl` and the model has one; otherwise it is the Monte-Carlo
  estimate `mean(log q(z|x) − log p(z))` on the same draws, which is unbiased because the
  draws come from q itself — so it is valid for any prior (mixtures, the VampPrior, a
  hierarchy), and is what the analytic value averages to.

  Args:
    model: a model from `vae_jax.models`.
    params: its variables.
    x: a batch `[B, *data_shape]`.
    rng: a PRNG key for the draws of z.

  Returns:
    `log_likelihood`, `kl` and `elbo`, each `[B]`.
  """
  terms = log_weight_terms(model, params, x, rng, num_samples)
  log_likelihood = terms['log_likelihood'].mean(axis=0)
  if analytic_kl and 'analytic_kl' in terms:
    kl = terms['analytic_kl'][0]  # the same for every draw
  else:
    kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  return {'log_likelihood': log_likelihood, 'kl': kl, 'elbo': log_likelihood - kl}


def iwae_bound(log_w: jax.Array) -> jax.Array:
  """`log (1/k) Σ_i w_i` over the leading axis of k log-weights (Burda et al. 2015, eq. 8)."""
  return jax.scipy.special.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def iwae_terms(model, params, x: jax.Array, rng: jax.Array, *, num_samples: int,
               beta: float | jax.Array = 1.0) -> dict[str, jax.Array]:
  """The k-sample importance-weighted bound `iwae` `[B]`, with the ELBO terms estimated from
  the same k draws (`log_likelihood`, `kl`, `elbo`) for logging. With β ≠ 1 the weights are
  `p(x|z)·(p(z)/q(z|x))^β` (KL warm-up applied to the IWAE)."""
  terms = log_weight_terms(model, params, x, rng, num_samples)
  log_likelihood = terms['log_likelihood'].mean(axis=0)
  kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  return {'iwae': iwae_bound(log_weights(terms, beta)), 'log_likelihood': log_likelihood,
          'kl': kl, 'elbo': log_likelihood - kl}


def resolve_gradient_estimator(name: str, model) -> str:
  """'auto' -> 'reparameterized' for Gaussian latents; for discrete latents 'exact' when z can
  be enumerated, else 'gumbel_softmax'. Other names are returned as they are."""
  if name != 'auto':
    return name
  if not isinstance(model, models.Enumerable):
    return 'reparameterized'
  return 'exact' if model.is_enumerable else 'gumbel_softmax'


def training_loss(model, params, x: jax.Array, rng: jax.Array, *, objective: str,
                  num_samples: int, beta: float | jax.Array, analytic_kl: bool,
                  estimator: str = 'reparameterized',
                  temperature: float | jax.Array = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The minimised loss and its per-example terms.

  objective 'elbo': `−mean(E_q log p(x|z) − β·KL)`, with the expectation's gradient by
    'reparameterized' (Gaussian z); 'exact' (a sum over every discrete z, no variance);
    'gumbel_softmax' / 'straight_through' (relaxed discrete samples at `temperature`: biased,
    low variance); 'score_function' (REINFORCE with a leave-one-out baseline over the k draws:
    unbiased, k ≥ 2).
  objective 'iwae': `−mean(IWAE_k)`, reparameterized.
  objective 'marginal' (enumerable discrete latents, estimator 'exact'): the exact
    `−mean(log p(x))` for the decoder and prior — maximum likelihood, the gradient of EM —
    and, for the encoder, the cross-entropy from the exact posterior `−Σ_z p(z|x) log q(z|x)`
    (held fixed), which fits q to p(z|x). On MNIST, training the ELBO instead leaves a
    categorical model stuck with a one-hot q(z|x) (docs/results.md, "Discrete latent variables").
  """
  if estimator == 'reparameterized':
    if objective == 'elbo':
      terms = elbo_terms(model, params, x, rng, num_samples=num_samples, analytic_kl=analytic_kl)
      return -jnp.mean(terms['log_likelihood'] - beta * terms['kl']), terms
    if objective == 'iwae':
      terms = iwae_terms(model, params, x, rng, num_samples=num_samples, beta=beta)
      return -jnp.mean(terms['iwae']), terms
    raise ValueError(f'Unknown objective {objective!r}; choose one of {OBJECTIVES}.')
  if objective == 'marginal':
    if estimator != 'exact':
      raise ValueError("objective 'marginal' needs the 'exact' estimator (an enumerable z).")
    exact = model.apply(params, x, method='exact_terms')
    terms = {name: exact[name] for name in ('log_likelihood', 'kl', 'elbo', 'log_marginal')}
    return -jnp.mean(exact['log_marginal'] + exact['encoder_fit']), terms
  if objective != 'elbo':
    raise ValueError(f'The {estimator} estimator trains the ELBO; objective={objective!r} needs '
                     "estimator 'reparameterized'.")
  if estimator == 'exact':
    exact = model.apply(params, x, method='exact_terms')
    terms = {name: exact[name] for name in ('log_likelihood', 'kl', 'elbo', 'log_marginal')}
  elif estimator in ('gumbel_softmax', 'straight_through'):
    hard = estimator == 'straight_through'
    relaxed = jax.vmap(lambda key: model.apply(params, x, key, temperature, hard,
                                               method='relaxed_terms'))(
                                                   jax.random.split(rng, num_samples))
    terms = {name: value.mean(axis=0) for name, value in relaxed.items()}
    terms['elbo'] = terms['log_likelihood'] - terms['kl']
  elif estimator == 'score_function':
    return _score_function_loss(model, params, x, rng, num_samples=num_samples, beta=beta,
                                analytic_kl=analytic_kl)
  else:
    raise ValueError(f'Unknown gradient estimator {estimator!r}; choose one of '
                     f'{GRADIENT_ESTIMATORS}.')
  return -jnp.mean(terms['log_likelihood'] - beta * terms['kl']), terms


def _score_function_loss(model, params, x, rng, *, num_samples: int, beta, analytic_kl: bool):
  """REINFORCE for the ELBO: `∇ E_q[f] = E_q[(f − b) ∇ log q] + E_q[∇ f]` over k draws, with
  the baseline `b_i = mean_{j≠i} f_j` for draw i — independent of z_i, so the estimate stays
  unbiased (the leave-one-out baseline of Mnih & Rezende 2016). `f = log p(x|z)` with the KL
  added in closed form when `analytic_kl` (lower variance), else `f = log p(x|z) + β(log p(z)
  − log q(z|x))`. The surrogate's value equals the ELBO estimate."""
  if num_samples < 2:
    raise ValueError('The score-function estimator needs objective.num_samples >= 2 for its '
                     'leave-one-out baseline.')
  terms = log_weight_terms(model, params, x, rng, num_samples)  # each [k, B]
  closed_form_kl = terms['analytic_kl'][0] if analytic_kl and 'analytic_kl' in terms else None
  f = terms['log_likelihood'] if closed_form_kl is not None else log_weights(terms, beta)
  baseline = (jnp.sum(f, axis=0, keepdims=True) - f) / (num_samples - 1)
  log_q = terms['log_posterior']
  surrogate = jax.lax.stop_gradient(f - baseline) * (log_q - jax.lax.stop_gradient(log_q)) + f
  loss = -jnp.mean(surrogate)
  log_likelihood = terms['log_likelihood'].mean(axis=0)
  if closed_form_kl is not None:
    kl = closed_form_kl
    loss += beta * jnp.mean(kl)
  else:
    kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  return loss, {'log_likelihood': log_likelihood, 'kl': kl, 'elbo': log_likelihood - kl}


def bits_per_dim(log_prob_nats: jax.Array, num_dims: int) -> jax.Array:
  """Converts a log-probability of one example (nats) to bits per data dimension."""
  return -log_prob_nats / (num_dims * math.log(2.0))
