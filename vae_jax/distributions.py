"""Probability distributions for latents and observations, as JAX pytrees.

Each distribution is a `flax.struct.dataclass`, so a Flax module can return it and it passes
through `jit` and `vmap`. The trailing `event_ndims` axes of its parameters form one event:
`log_prob` sums over them and returns one value per batch element, in nats. Parameters
broadcast against the value, so a prior with `mean.shape == (D,)` scores `z` of shape
`(S, B, D)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct


def sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
  """Sums the trailing `event_ndims` axes: per-element terms -> per-event total."""
  if event_ndims == 0:
    return values
  return values.sum(axis=tuple(range(-event_ndims, 0)))


@struct.dataclass
class DiagonalGaussian:
  """Gaussian with diagonal covariance: `N(mean, diag(scale²))`."""

  mean: jax.Array
  scale: jax.Array
  event_ndims: int = struct.field(pytree_node=False, default=1)

  def log_prob(self, x: jax.Array) -> jax.Array:
    return sum_event(jax.scipy.stats.norm.logpdf(x, self.mean, self.scale), self.event_ndims)

  def sample(self, rng: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """Reparameterised sample `mean + scale * ε`: gradients flow to mean and scale."""
    shape = sample_shape + jnp.broadcast_shapes(self.mean.shape, self.scale.shape)
    noise = jax.random.normal(rng, shape, dtype=self.mean.dtype)
    return self.mean + self.scale * noise

  def entropy(self) -> jax.Array:
    per_dim = 0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(self.scale)
    shape = jnp.broadcast_shapes(self.mean.shape, self.scale.shape)
    return sum_event(jnp.broadcast_to(per_dim, shape), self.event_ndims)

  @property
  def mode(self) -> jax.Array:
    return self.mean


@struct.dataclass
class Bernoulli:
  """Independent Bernoulli variables parameterised by logits (never by probabilities)."""

  logits: jax.Array
  event_ndims: int = struct.field(pytree_node=False, default=1)

  def log_prob(self, x: jax.Array) -> jax.Array:
    # x·l − log(1 + eˡ), computed stably by optax for any logit magnitude.
    return sum_event(-optax.sigmoid_binary_cross_entropy(self.logits, x), self.event_ndims)

  def sample(self, rng: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """A (non-reparameterisable) 0/1 sample, in the logits' dtype."""
    shape = sample_shape + self.logits.shape
    return jax.random.bernoulli(rng, jax.nn.sigmoid(self.logits), shape).astype(self.logits.dtype)

  def entropy(self) -> jax.Array:
    probs = jax.nn.sigmoid(self.logits)
    return sum_event(optax.sigmoid_binary_cross_entropy(self.logits, probs), self.event_ndims)

  @property
  def mean(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)

  @property
  def mode(self) -> jax.Array:
    return (self.logits > 0).astype(self.logits.dtype)


def has_analytic_kl(q, p) -> bool:
  """Whether `kl_divergence(q, p)` has a closed form here."""
  return (type(q), type(p)) in _ANALYTIC_KL


def kl_divergence(q, p) -> jax.Array:
  """Closed-form KL(q ‖ p), summed over the event axes of `q`."""
  try:
    kl_fn = _ANALYTIC_KL[type(q), type(p)]
  except KeyError:
    raise NotImplementedError(
        f'No closed-form KL({type(q).__name__} ‖ {type(p).__name__}); use a Monte-Carlo '
        'estimate (objectives.elbo_terms does so when analytic_kl=False).') from None
  return kl_fn(q, p)


def _kl_gaussian_gaussian(q: DiagonalGaussian, p: DiagonalGaussian) -> jax.Array:
  variance_ratio = jnp.square(q.scale / p.scale)
  mahalanobis = jnp.square((q.mean - p.mean) / p.scale)
  per_dim = 0.5 * (variance_ratio + mahalanobis - 1.0 - jnp.log(variance_ratio))
  return sum_event(per_dim, q.event_ndims)


def _kl_bernoulli_bernoulli(q: Bernoulli, p: Bernoulli) -> jax.Array:
  q_probs = jax.nn.sigmoid(q.logits)
  # Σ_x q(x)[log q(x) − log p(x)], with both log-probabilities taken from logits.
  per_dim = (q_probs * (jax.nn.log_sigmoid(q.logits) - jax.nn.log_sigmoid(p.logits))
             + (1 - q_probs) * (jax.nn.log_sigmoid(-q.logits) - jax.nn.log_sigmoid(-p.logits)))
  return sum_event(per_dim, q.event_ndims)


_ANALYTIC_KL = {
    (DiagonalGaussian, DiagonalGaussian): _kl_gaussian_gaussian,
    (Bernoulli, Bernoulli): _kl_bernoulli_bernoulli,
}
