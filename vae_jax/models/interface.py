"""What a model family provides, as protocols: the interface every family implements, and the
capabilities only some have, which objectives and evaluators test with `isinstance`.

Every family (`LatentVariableModel`) is called through `model.apply(params, ..., method=...)`:

  sample_log_weight_terms(x, key)  one z ~ q(z|x): `reconstruction` log p(x|z), `log_prior`
                                   log p(z), `log_posterior` log q(z|x), each [B], and
                                   `analytic_kl`, KL(q(z|x) ‖ p(z)) in closed form, when there
                                   is one (a hierarchy adds each group's as `kl/<group>`)
  analytic_kl(x)                   KL(q(z|x) ‖ p(z)) in closed form [B], or None
  kl_per_dimension(x)              the closed-form KL of each latent unit [B, D], or None
  posterior_means(x)               {layer name: E_q[z|x] [B, D]} ([B, D, K] for categorical z)
  reconstruct(x)                   mean of p(x|z) at the posterior mean
  generate(key, num_samples)       mean of p(x|z) for z ~ p(z)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax


@runtime_checkable
class LatentVariableModel(Protocol):
  """The methods every family provides (see the module docstring)."""

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]: ...

  def analytic_kl(self, x: jax.Array) -> jax.Array | None: ...

  def kl_per_dimension(self, x: jax.Array) -> jax.Array | None: ...

  def posterior_means(self, x: jax.Array) -> dict[str, jax.Array]: ...

  def reconstruct(self, x: jax.Array) -> jax.Array: ...

  def generate(self, key: jax.Array, num_samples: int) -> jax.Array: ...


@runtime_checkable
class CategoricalLatents(Protocol):
  """z is `num_variables` categorical variables of `num_categories` values each."""

  num_variables: int
  num_categories: int

  def relaxed_terms(self, x: jax.Array, key: jax.Array, temperature: jax.Array,
                    hard: bool) -> dict[str, jax.Array]: ...


@runtime_checkable
class Hierarchy(Protocol):
  """Groups of latents `z_1 … z_L`, each with its own closed-form KL term `kl/<group>` in
  `sample_log_weight_terms`, and prior samples at a temperature."""

  group_names: tuple[str, ...]

  def generate(self, key: jax.Array, num_samples: int, temperature: float = 1.0) -> jax.Array: ...


@runtime_checkable
class Enumerable(Protocol):
  """A latent space that can be listed: log p(x), p(z|x) and the ELBO are exact sums over z
  (`exact_terms`) when `is_enumerable` (the space is small enough)."""

  is_enumerable: bool

  def all_latent_values(self) -> jax.Array: ...

  def exact_terms(self, x: jax.Array) -> dict[str, jax.Array]: ...


@runtime_checkable
class LatentDensities(Protocol):
  """Continuous latents whose densities can be evaluated at any z, what annealed importance
  sampling, bidirectional Monte Carlo and quadrature need. z is the family's pytree of latent
  arrays (one per layer or group), batch axis first.

    encode_context(x)                  what q(z|x) needs from x, computed once per example
    draw_latents(key, context, num, from_prior)
                                       z ~ q(z|x) (num must match the context's batch) or
                                       z ~ p(z)
    latent_log_densities(x, z, context)
                                       `reconstruction` log p(x|z), `log_prior` log p(z) and,
                                       where q(z|x) has a density at any z (not an IAF flow),
                                       `log_posterior` log q(z|x), each [B]
    simulate(key, num)                 exact draws from the model: (x ~ p(x|z), z ~ p(z))
  """

  def encode_context(self, x: jax.Array): ...

  def draw_latents(self, key: jax.Array, context, num: int, from_prior: bool): ...

  def latent_log_densities(self, x: jax.Array, z, context) -> dict[str, jax.Array]: ...

  def simulate(self, key: jax.Array, num: int): ...


@runtime_checkable
class Integrable(Protocol):
  """One latent layer, z a single array `[..., model.latent_dim]` (not a pytree of layers),
  with p(z) and p(x|z) as distributions: with `LatentDensities` (to draw from p(z) and q(z|x)),
  what quadrature needs to integrate log p(x) = log ∫ p(x|z) p(z) dz over a grid of z.
  `single_latent_layer = True` declares it: a hierarchy has methods of the same names over its
  top layer's prior and its bottom layer's decoder.

    prior_distribution()  p(z): `log_prob(z [P, D]) -> [P]`
    decode(z)             p(x|z) for z `[P, D]`: `log_prob(x)` or `pairwise_log_prob(x) -> [B, P]`
  """

  single_latent_layer: bool

  def prior_distribution(self): ...

  def decode(self, z: jax.Array): ...


@runtime_checkable
class PairwiseLogProb(Protocol):
  """A distribution of batch `[P]` that scores every example against every member at once
  (one matrix product): what `decode(z)` may return, and quadrature uses where it does."""

  def pairwise_log_prob(self, x: jax.Array) -> jax.Array: ...


def can_integrate(model) -> bool:
  """Whether log p(x) is an integral over one latent array whose densities can be evaluated
  (quadrature, where that array has 1 or 2 units)."""
  return (isinstance(model, Integrable) and isinstance(model, LatentDensities)
          and model.single_latent_layer)


def can_enumerate(model) -> bool:
  """Whether log p(x) and p(z|x) are exact sums for this model (small discrete latent spaces)."""
  return isinstance(model, Enumerable) and model.is_enumerable
