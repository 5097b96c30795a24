"""Training objectives, as pure functions of (params, batch, rng). All values are in nats.

Each returns its terms per example, so every term can be logged and a ragged evaluation batch
can be masked before reduction. The model is any of `vae_jax.models`. What is generic lives
here (the ELBO and IWAE bounds with reparameterised gradients); estimators that only some
families support are registered by those families (`estimators=` of `models.families.register`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from vae_jax import options, registries
from vae_jax.options import SWEEPABLE, Option

from vae_jax import models
from vae_jax.importance_weights import log_weight_terms, log_weights  # also objectives.*

OBJECTIVES = ('elbo', 'iwae', 'marginal')  # 'marginal': the discrete family's exact estimator


def gradient_estimators() -> tuple[str, ...]:
  """'auto', 'reparameterized' (every family), then those the families register."""
  return ('auto', 'reparameterized', *models.families.estimators())


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
    `reconstruction`, `kl` and `elbo`, each `[B]`, and a hierarchy's per-group KLs `kl/<group>`.
  """
  terms = log_weight_terms(model, params, x, rng, num_samples)
  reconstruction = terms['reconstruction'].mean(axis=0)
  if analytic_kl and 'analytic_kl' in terms:
    # The same for every draw of a one-layer model (the first is taken: no rounding); a
    # hierarchy's depends on the draws above each group, and is averaged.
    kl = (terms['analytic_kl'].mean(axis=0) if isinstance(model, models.Hierarchy)
          else terms['analytic_kl'][0])
  else:
    kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  groups = {name: value.mean(axis=0) for name, value in terms.items() if name.startswith('kl/')}
  return {'reconstruction': reconstruction, 'kl': kl, 'elbo': reconstruction - kl, **groups}


def iwae_bound(log_w: jax.Array) -> jax.Array:
  """`log (1/k) Σ_i w_i` over the leading axis of k log-weights (Burda et al. 2015, eq. 8)."""
  return jax.scipy.special.logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def iwae_terms(model, params, x: jax.Array, rng: jax.Array, *, num_samples: int,
               beta: float | jax.Array = 1.0) -> dict[str, jax.Array]:
  """The k-sample importance-weighted bound `iwae` `[B]`, with the ELBO terms estimated from
  the same k draws (`reconstruction`, `kl`, `elbo`) for logging. With β ≠ 1 the weights are
  `p(x|z)·(p(z)/q(z|x))^β` (KL warm-up applied to the IWAE)."""
  terms = log_weight_terms(model, params, x, rng, num_samples)
  reconstruction = terms['reconstruction'].mean(axis=0)
  kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  return {'iwae': iwae_bound(log_weights(terms, beta)), 'reconstruction': reconstruction,
          'kl': kl, 'elbo': reconstruction - kl}


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
    categorical model stuck with a one-hot q(z|x) (docs/results/discrete.md).
  The reparameterised losses are here; the others are the discrete family's
  (`vae_jax/models/discrete.py`), found by name in `models.families.estimators()`.
  """
  if estimator == 'reparameterized':
    if objective == 'elbo':
      terms = elbo_terms(model, params, x, rng, num_samples=num_samples, analytic_kl=analytic_kl)
      return -jnp.mean(terms['reconstruction'] - beta * terms['kl']), terms
    if objective == 'iwae':
      terms = iwae_terms(model, params, x, rng, num_samples=num_samples, beta=beta)
      return -jnp.mean(terms['iwae']), terms
    raise ValueError(f'Unknown objective {objective!r}; choose one of {OBJECTIVES}.')
  if estimator not in models.families.estimators():
    raise ValueError(f'Unknown gradient estimator {estimator!r}; choose one of '
                     f'{gradient_estimators()}.')
  if objective == 'marginal' and estimator != 'exact':
    raise ValueError("objective 'marginal' needs the 'exact' estimator (an enumerable z).")
  if objective not in ('elbo', 'marginal'):
    raise ValueError(f'The {estimator} estimator trains the ELBO; objective={objective!r} needs '
                     "estimator 'reparameterized'.")
  return models.families.estimators()[estimator](
      model, params, x, rng, objective=objective, num_samples=num_samples, beta=beta,
      analytic_kl=analytic_kl, temperature=temperature)


def bits_per_dim(log_prob_nats: jax.Array, num_dims: int) -> jax.Array:
  """Converts a log-probability of one example (nats) to bits per data dimension."""
  return -log_prob_nats / (num_dims * math.log(2.0))


def _objective_problems(config):
  model, objective = config.model, config.objective
  estimator = objective.gradient_estimator
  if estimator not in gradient_estimators():
    yield (f'objective.gradient_estimator={estimator!r} is not one of '
           f'{list(gradient_estimators())}.')
  if objective.kind == 'marginal' and (model.latent_kind != 'categorical' or
                                       estimator not in ('exact', 'auto')):
    yield ('objective.kind=marginal trains the exact log p(x): it needs '
           'model.latent_kind=categorical and objective.gradient_estimator=exact.')
  if model.latent_kind == 'gaussian' and estimator not in ('auto', 'reparameterized'):
    yield (f'objective.gradient_estimator={estimator} is for categorical latents; Gaussian '
           "latents use 'reparameterized' (or 'auto').")


registries.add(registries.Component('run', 'objective', None, {
    **options.at(
        'objective',
        kind=Option('elbo', "'elbo' (k-sample VAE objective) | 'iwae' (k-sample importance-"
                    "weighted) | 'marginal' (exact log p(x), an enumerable discrete z)",
                    options.one_of(*OBJECTIVES)),
        num_samples=Option(1, 'k: samples of z per example in the training objective',
                           options.at_least(1)),
        analytic_kl=Option(True, 'closed-form KL when one exists, else Monte-Carlo'),
        gradient_estimator=Option(
            'auto', "how gradients pass through z: 'reparameterized' (Gaussian latents); for "
            "categorical latents 'exact', 'gumbel_softmax', 'straight_through' or "
            "'score_function'; 'auto': reparameterized, or exact if enumerable, else "
            'gumbel_softmax'),
        kl_warmup_schedule=Option(
            'per_step', "'per_step': beta rises at every step, from 0; 'per_epoch': beta = "
            'epoch / kl_warmup_epochs for the whole epoch, epochs counted from 1 (the VampPrior '
            "code's utils/training.py: 0.01 in the first of 100 epochs)",
            options.one_of('per_step', 'per_epoch'))),
    **options.at(
        'objective', traits=(SWEEPABLE,),
        beta=Option(1.0, 'weight of the KL term in the training loss (the reported ELBO is '
                    'unweighted)', options.non_negative),
        kl_warmup_epochs=Option(0, 'beta rises linearly from 0 over this many epochs (0: off)',
                                options.non_negative)),
    # The relaxed estimators' temperature (gradient_estimator gumbel_softmax or
    # straight_through): max(minimum, initial * exp(-anneal_rate * step)).
    **options.at('objective.temperature', traits=(SWEEPABLE,),
                 initial=Option(1.0, 'Gumbel-softmax temperature at step 0', options.positive),
                 minimum=Option(0.5, 'never annealed below this', options.positive),
                 anneal_rate=Option(3e-5, 'per step, in the exponent', options.non_negative)),
}, (_objective_problems,)))
