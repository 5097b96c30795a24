"""Encoders `q_φ(z|x)`: a torso (`vae_jax.networks`) followed by a head that outputs a distribution."""

from __future__ import annotations

import flax.linen as nn
import jax

from vae_jax import distributions


class GaussianEncoder(nn.Module):
  """`q(z|x) = N(μ(x), diag σ(x)²)`, σ = softplus(·) + min_scale so it is positive and bounded below."""

  torso: nn.Module
  latent_dim: int
  min_scale: float = 1e-4

  @nn.compact
  def __call__(self, x: jax.Array) -> distributions.DiagonalGaussian:
    features = self.torso(x)
    mean = nn.Dense(self.latent_dim, name='mean')(features)
    raw_scale = nn.Dense(self.latent_dim, name='raw_scale')(features)
    return distributions.DiagonalGaussian(mean, nn.softplus(raw_scale) + self.min_scale)
