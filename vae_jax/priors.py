"""Priors `p(z)`: Flax modules that return a distribution over z.

Every prior is called as `prior(encoder)`: the VampPrior is built from the encoder's posteriors;
the others ignore it.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vae_jax import distributions

_SOFTPLUS_INVERSE_OF_ONE = 0.5413248546129181  # log(e − 1): a fresh learned scale is 1


class StandardNormalPrior(nn.Module):
  """The fixed prior `N(0, I)`."""

  latent_dim: int

  def __call__(self, encoder=None) -> distributions.DiagonalGaussian:
    del encoder
    return distributions.DiagonalGaussian(jnp.zeros(self.latent_dim), jnp.ones(self.latent_dim))


class LearnedGaussianPrior(nn.Module):
  """`N(μ, diag σ²)` with learned μ and σ, initialised at `N(0, I)`."""

  latent_dim: int

  @nn.compact
  def __call__(self, encoder=None) -> distributions.DiagonalGaussian:
    del encoder
    mean = self.param('mean', nn.initializers.zeros, (self.latent_dim,))
    raw_scale = self.param('raw_scale', nn.initializers.constant(_SOFTPLUS_INVERSE_OF_ONE),
                           (self.latent_dim,))
    return distributions.DiagonalGaussian(mean, nn.softplus(raw_scale))


class MixtureOfGaussiansPrior(nn.Module):
  """`Σ_k π_k N(μ_k, diag σ_k²)` with learned weights, means and scales. The means start as
  draws from N(0, I), so the components start apart; weights start uniform, scales at 1."""

  latent_dim: int
  num_components: int

  @nn.compact
  def __call__(self, encoder=None) -> distributions.MixtureOfDiagonalGaussians:
    del encoder
    shape = (self.num_components, self.latent_dim)
    logits = self.param('logits', nn.initializers.zeros, (self.num_components,))
    means = self.param('means', nn.initializers.normal(stddev=1.0), shape)
    raw_scales = self.param('raw_scales', nn.initializers.constant(_SOFTPLUS_INVERSE_OF_ONE), shape)
    return distributions.MixtureOfDiagonalGaussians(logits, means, nn.softplus(raw_scales))


class VampPrior(nn.Module):
  """Tomczak & Welling (2018): `p(z) = (1/K) Σ_k q(z | u_k)`, the encoder's posteriors at K
  learned pseudo-inputs `u_k`. Pseudo-inputs start as N(init_mean, init_std²) pixels and are
  clipped to [0, 1] (a hard tanh, as in the paper's code)."""

  num_pseudo_inputs: int
  data_shape: tuple[int, ...]
  init_mean: float = 0.05
  init_std: float = 0.01

  @nn.compact
  def __call__(self, encoder) -> distributions.MixtureOfDiagonalGaussians:
    def init_pseudo_inputs(key, shape):
      return self.init_mean + self.init_std * nn.initializers.normal(stddev=1.0)(key, shape)

    pseudo_inputs = self.param('pseudo_inputs', init_pseudo_inputs,
                               (self.num_pseudo_inputs, *self.data_shape))
    components = encoder(jnp.clip(pseudo_inputs, 0.0, 1.0))  # q(z|u_k): means, scales [K, D]
    return distributions.MixtureOfDiagonalGaussians(
        jnp.zeros(self.num_pseudo_inputs), components.mean, components.scale)


class CategoricalPrior(nn.Module):
  """`num_variables` independent categoricals: uniform, or with learned logits (starting uniform)."""

  num_variables: int
  num_categories: int
  learned: bool = False

  @nn.compact
  def __call__(self, encoder=None) -> distributions.Categorical:
    del encoder
    shape = (self.num_variables, self.num_categories)
    if self.learned:
      return distributions.Categorical(self.param('logits', nn.initializers.zeros, shape))
    return distributions.Categorical(jnp.zeros(shape))
