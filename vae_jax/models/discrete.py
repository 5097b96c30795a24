"""Discrete latents: categorical variables (binary units when K = 2), with the exact sums over
z that a small latent space allows."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions, encoders, importance_weights, options
from vae_jax.options import SHAPES_STATE, Option
from vae_jax.models import components, families


class DiscreteVAE(nn.Module):
  """Discrete latents: z is `num_variables` categorical variables with `num_categories` values
  each (binary units when 2), one-hot `[..., D, K]`; the decoder reads z flattened to `D·K`.

  When the `K^D` values of z can be enumerated (at most `max_enumeration`), `exact_terms` gives
  log p(x) = log Σ_z p(z) p(x|z), the posterior p(z|x) by Bayes' rule, and the ELBO as an exact
  sum over z; `relaxed_terms` gives the Gumbel-softmax estimate for spaces too large to sum.
  """

  encoder: nn.Module  # x -> Categorical q(z|x)
  decoder: nn.Module  # z flattened [..., D·K] -> p(x|z)
  prior: nn.Module  # () -> Categorical p(z)
  num_variables: int
  num_categories: int
  max_enumeration: int = 4096

  @property
  def num_latent_values(self) -> int:
    return self.num_categories ** self.num_variables

  @property
  def is_enumerable(self) -> bool:
    return self.num_latent_values <= self.max_enumeration

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    posterior = self.encoder(x)
    return posterior, self.decode(posterior.probs), self.prior()

  def encode(self, x: jax.Array) -> distributions.Categorical:
    return self.encoder(x)

  def decode(self, z: jax.Array):
    """`p(x|z)` for one-hot or relaxed z `[..., D, K]`."""
    return self.decoder(z.reshape(z.shape[:-2] + (-1,)))

  def prior_distribution(self) -> distributions.Categorical:
    return self.prior()

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    posterior, prior = self.encoder(x), self.prior()
    z = posterior.sample(key)
    return {'reconstruction': self.decode(z).log_prob(x), 'log_prior': prior.log_prob(z),
            'log_posterior': posterior.log_prob(z),
            'analytic_kl': distributions.kl_divergence(posterior, prior)}

  def analytic_kl(self, x: jax.Array) -> jax.Array:
    return distributions.kl_divergence(self.encoder(x), self.prior())

  def kl_per_dimension(self, x: jax.Array) -> jax.Array:
    """The KL of each categorical variable, `[B, D]`."""
    return distributions.elementwise_kl_divergence(self.encoder(x), self.prior())

  def posterior_means(self, x: jax.Array) -> dict[str, jax.Array]:
    """`E_q[z|x]`, the one-hot probabilities `[B, D, K]`: one K-vector per variable."""
    return {'z': self.encoder(x).probs}

  def reconstruct(self, x: jax.Array) -> jax.Array:
    return self.decode(self.encoder(x).mode).mean

  def generate(self, key: jax.Array, num_samples: int) -> jax.Array:
    return self.decode(self.prior().sample(key, (num_samples,))).mean

  def all_latent_values(self) -> jax.Array:
    """Every value of z, one-hot `[K^D, D, K]`, in mixed-radix order (variable 0 slowest)."""
    if not self.is_enumerable:
      raise ValueError(
          f'{self.num_categories}^{self.num_variables} = {self.num_latent_values} latent values '
          f'exceed max_enumeration={self.max_enumeration}; use a sampled or relaxed estimator.')
    indices = np.indices((self.num_categories,) * self.num_variables).reshape(
        self.num_variables, -1).T
    return jax.nn.one_hot(indices, self.num_categories)

  def exact_terms(self, x: jax.Array) -> dict[str, jax.Array]:
    """Exact quantities by enumerating z, each `[B]` (`posterior` is `[B, K^D]`):

      log_likelihood   log p(x) = logsumexp_z [log p(z) + log p(x|z)]
      posterior        p(z|x) = p(z) p(x|z) / p(x), Bayes' rule
      reconstruction   E_q[log p(x|z)] = Σ_z q(z|x) log p(x|z)
      kl               KL(q(z|x) ‖ p(z)) in closed form
      elbo             reconstruction − kl, with no sampling
      kl_to_posterior  KL(q(z|x) ‖ p(z|x)) = Σ_z q (log q − log p(z|x)), computed on its own
      posterior_entropy, q_entropy: H[p(z|x)], H[q(z|x)]
      encoder_fit      Σ_z p(z|x) log q(z|x) with p(z|x) held fixed: −KL(p(z|x) ‖ q) up to a
                       constant; its gradient (p − q in the logits) moves only q, towards the
                       exact posterior, and does not vanish when q is confidently wrong
    """
    z = self.all_latent_values()  # [Z, D, K]
    posterior_q = self.encoder(x)  # logits [B, D, K]
    prior = self.prior()
    log_px_given_z = self.decode(z).pairwise_log_prob(x)  # [B, Z]
    log_joint = log_px_given_z + prior.log_prob(z)  # [B, Z]
    log_marginal = jax.scipy.special.logsumexp(log_joint, axis=-1)
    log_posterior = log_joint - log_marginal[:, None]
    log_q = jnp.einsum('zdk,bdk->bz', z, posterior_q.log_probs)
    q = jnp.exp(log_q)
    kl = distributions.kl_divergence(posterior_q, prior)
    reconstruction = jnp.sum(q * log_px_given_z, axis=-1)
    posterior = jnp.exp(log_posterior)
    return {
        'log_likelihood': log_marginal,
        'posterior': posterior,
        'reconstruction': reconstruction,
        'kl': kl,
        'elbo': reconstruction - kl,
        'kl_to_posterior': jnp.sum(q * (log_q - log_posterior), axis=-1),
        'posterior_entropy': -jnp.sum(posterior * log_posterior, axis=-1),
        'q_entropy': posterior_q.entropy(),
        'encoder_fit': jnp.sum(jax.lax.stop_gradient(posterior) * log_q, axis=-1),
    }

  def relaxed_terms(self, x: jax.Array, key: jax.Array, temperature: jax.Array,
                    hard: bool) -> dict[str, jax.Array]:
    """`log p(x|z̃)` at a Gumbel-softmax sample z̃ (straight-through if `hard`) and the
    closed-form KL, each `[B]`: the relaxed ELBO's terms."""
    posterior = self.encoder(x)
    z = posterior.relaxed_sample(key, temperature, hard=hard)
    return {'reconstruction': self.decode(z).log_prob(x),
            'kl': distributions.kl_divergence(posterior, self.prior())}


def _discrete_problems(config):
  """What the discrete family's objectives and gradient estimators cannot do."""
  model, objective = config.model, config.objective
  estimator = objective.gradient_estimator
  if model.get('upper_layers', {}).get('latent_dims'):
    yield ('model.latent_kind=categorical has one stochastic layer; clear '
           'model.upper_layers.latent_dims.')
  if estimator == 'reparameterized':
    yield ("objective.gradient_estimator=reparameterized needs Gaussian latents; categorical ones "
           "take 'exact', 'gumbel_softmax', 'straight_through' or 'score_function' (or 'auto').")
  num_values = model.num_categories ** model.latent_dim
  if estimator == 'exact' and num_values > model.max_enumeration:
    yield (f'objective.gradient_estimator=exact sums over {model.num_categories}^{model.latent_dim} '
           f'= {num_values} latent values, more than model.max_enumeration='
           f'{model.max_enumeration}. Raise the limit, shrink the latent space, or use '
           'gumbel_softmax, straight_through or score_function.')
  if objective.kind == 'marginal' and num_values > model.max_enumeration:
    yield (f'objective.kind=marginal sums over {num_values} latent values, more than '
           f'model.max_enumeration={model.max_enumeration}.')
  if objective.kind == 'iwae':
    yield ('objective.kind=iwae trains reparameterised Gaussian latents; categorical latents '
           'train the ELBO (objective.kind=elbo) or, when enumerable, the exact log p(x) '
           '(objective.kind=marginal).')
  if estimator == 'score_function' and objective.num_samples < 2:
    yield (f'objective.gradient_estimator=score_function needs objective.num_samples >= 2 for its '
           f'leave-one-out baseline (got {objective.num_samples}).')


OPTIONS = {
    **options.at(
        'model', traits=(SHAPES_STATE,),
        num_categories=Option(2, 'categorical: values per variable K (2: binary units)',
                              options.at_least(2)),
        max_enumeration=Option(4096, 'categorical: sum over z exactly when K^D <= this',
                               options.at_least(1))),
}


def build(model_config, data_shape) -> DiscreteVAE:
  """`latent_dim` categorical variables of `num_categories` values each."""
  torso = components.build_encoder_torso(model_config.encoder, data_shape, model_config.kernel_init,
                              model_config.compute_dtype)
  num_variables, num_categories = model_config.latent_dim, model_config.num_categories
  return DiscreteVAE(
      encoder=encoders.CategoricalEncoder(torso, num_variables, num_categories,
                                          kernel_init=model_config.kernel_init),
      decoder=components.build_decoder(model_config, data_shape),
      prior=components.build_categorical_prior(model_config.prior, num_variables, num_categories),
      num_variables=num_variables, num_categories=num_categories,
      max_enumeration=model_config.max_enumeration)


# The gradient estimators this family owns (`objective.gradient_estimator`, registered with
# the family below); each returns the minimised loss and the per-example terms, like
# `objectives.training_loss`.

def exact_loss(model, params, x, rng, *, objective: str, num_samples: int, beta,
               analytic_kl: bool, temperature):
  """A sum over every value of z: no sampling variance. objective 'elbo': `−mean(E_q log p(x|z)
  − β·KL)` exactly; objective 'marginal': the exact `−mean(log p(x))` for the decoder and prior
  — maximum likelihood, the gradient of EM — and, for the encoder, the cross-entropy from the
  exact posterior `−Σ_z p(z|x) log q(z|x)` (held fixed), which fits q to p(z|x)."""
  del rng, num_samples, analytic_kl, temperature
  exact = model.apply(params, x, method='exact_terms')
  terms = {name: exact[name] for name in ('reconstruction', 'kl', 'elbo', 'log_likelihood')}
  if objective == 'marginal':
    return -jnp.mean(exact['log_likelihood'] + exact['encoder_fit']), terms
  return -jnp.mean(terms['reconstruction'] - beta * terms['kl']), terms


def _relaxed_loss(model, params, x, rng, *, objective: str, num_samples: int, beta,
                  analytic_kl: bool, temperature, hard: bool):
  """The ELBO at Gumbel-softmax samples of z at `temperature` (straight-through one-hot
  samples if `hard`): biased, low variance."""
  del objective, analytic_kl
  relaxed = jax.vmap(lambda key: model.apply(params, x, key, temperature, hard,
                                             method='relaxed_terms'))(
                                                 jax.random.split(rng, num_samples))
  terms = {name: value.mean(axis=0) for name, value in relaxed.items()}
  terms['elbo'] = terms['reconstruction'] - terms['kl']
  return -jnp.mean(terms['reconstruction'] - beta * terms['kl']), terms


def score_function_loss(model, params, x, rng, *, objective: str, num_samples: int, beta,
                        analytic_kl: bool, temperature):
  """REINFORCE for the ELBO: `∇ E_q[f] = E_q[(f − b) ∇ log q] + E_q[∇ f]` over k draws, with
  the baseline `b_i = mean_{j≠i} f_j` for draw i — independent of z_i, so the estimate stays
  unbiased (the leave-one-out baseline of Mnih & Rezende 2016). `f = log p(x|z)` with the KL
  added in closed form when `analytic_kl` (lower variance), else `f = log p(x|z) + β(log p(z)
  − log q(z|x))`. The surrogate's value equals the ELBO estimate."""
  del objective, temperature
  if num_samples < 2:
    raise ValueError('The score-function estimator needs objective.num_samples >= 2 for its '
                     'leave-one-out baseline.')
  terms = importance_weights.log_weight_terms(model, params, x, rng, num_samples)  # [k, B]
  closed_form_kl = terms['analytic_kl'][0] if analytic_kl and 'analytic_kl' in terms else None
  f = (terms['reconstruction'] if closed_form_kl is not None
       else importance_weights.log_weights(terms, beta))
  baseline = (jnp.sum(f, axis=0, keepdims=True) - f) / (num_samples - 1)
  log_q = terms['log_posterior']
  surrogate = jax.lax.stop_gradient(f - baseline) * (log_q - jax.lax.stop_gradient(log_q)) + f
  loss = -jnp.mean(surrogate)
  reconstruction = terms['reconstruction'].mean(axis=0)
  if closed_form_kl is not None:
    kl = closed_form_kl
    loss += beta * jnp.mean(kl)
  else:
    kl = (terms['log_posterior'] - terms['log_prior']).mean(axis=0)
  return loss, {'reconstruction': reconstruction, 'kl': kl, 'elbo': reconstruction - kl}


families.register('discrete', options=OPTIONS, checks=(_discrete_problems,), estimators={
    'exact': exact_loss,
    'gumbel_softmax': functools.partial(_relaxed_loss, hard=False),
    'straight_through': functools.partial(_relaxed_loss, hard=True),
    'score_function': score_function_loss})(build)
