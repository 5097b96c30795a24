"""Encoders `q_φ(z|x)`: a torso (`vae_jax.networks`) followed by a head that outputs a distribution."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions, networks


class GaussianEncoder(nn.Module):
  """`q(z|x) = N(μ(x), diag σ(x)²)`, σ = softplus(·) + min_scale so it is positive and bounded
  below; or, with `log_variance_range=(lo, hi)`, log σ² = clip(·, lo, hi), as Tomczak & Welling's
  VampPrior code bounds it (a hard tanh to [-6, 2]; no gradient outside the range)."""

  torso: nn.Module
  latent_dim: int
  min_scale: float = 1e-4
  kernel_init: str = 'lecun_normal'
  log_variance_range: tuple[float, ...] = ()
  bias_init: str = 'zeros'  # networks.BIAS_INITS

  @nn.compact
  def __call__(self, x: jax.Array) -> distributions.DiagonalGaussian:
    features = self.torso(x).astype(jax.numpy.float32)  # posterior parameters in float32
    dense = lambda name: nn.Dense(
        self.latent_dim, kernel_init=networks.get_kernel_init(self.kernel_init),
        bias_init=networks.get_bias_init(self.bias_init, features.shape[-1]), name=name)
    mean = dense('mean')(features)
    if self.log_variance_range:
      low, high = self.log_variance_range
      log_variance = dense('log_variance')(features)
      return distributions.DiagonalGaussian(mean, jnp.exp(0.5 * jnp.clip(log_variance, low, high)))
    raw_scale = dense('raw_scale')(features)
    return distributions.DiagonalGaussian(mean, nn.softplus(raw_scale) + self.min_scale)


class CategoricalEncoder(nn.Module):
  """`q(z|x)`: `num_variables` independent categoricals over `num_categories` values each."""

  torso: nn.Module
  num_variables: int
  num_categories: int
  kernel_init: str = 'lecun_normal'

  @nn.compact
  def __call__(self, x: jax.Array) -> distributions.Categorical:
    features = self.torso(x).astype(jax.numpy.float32)  # posterior parameters in float32
    logits = nn.Dense(self.num_variables * self.num_categories,
                      kernel_init=networks.get_kernel_init(self.kernel_init), name='logits')(features)
    return distributions.Categorical(
        logits.reshape(logits.shape[:-1] + (self.num_variables, self.num_categories)))
