"""Priors `p(z)`: Flax modules called with no input that return a distribution over z."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vae_jax import distributions

_SOFTPLUS_INVERSE_OF_ONE = 0.5413248546129181  # log(e − 1), so a fresh learned scale is 1


class StandardNormalPrior(nn.Module):
  """The fixed prior `N(0, I)`."""

  latent_dim: int

  def __call__(self) -> distributions.DiagonalGaussian:
    return distributions.DiagonalGaussian(jnp.zeros(self.latent_dim), jnp.ones(self.latent_dim))


class LearnedGaussianPrior(nn.Module):
  """`N(μ, diag σ²)` with learned μ and σ, initialised at `N(0, I)`."""

  latent_dim: int
  min_scale: float = 1e-4

  @nn.compact
  def __call__(self) -> distributions.DiagonalGaussian:
    mean = self.param('mean', nn.initializers.zeros, (self.latent_dim,))
    raw_scale = self.param('raw_scale', nn.initializers.constant(_SOFTPLUS_INVERSE_OF_ONE),
                           (self.latent_dim,))
    return distributions.DiagonalGaussian(mean, nn.softplus(raw_scale) + self.min_scale)
