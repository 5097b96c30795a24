"""Priors `p(z)`: Flax modules that return a distribution over z.

Every prior is called as `prior(encoder)`: the VampPrior is built from the encoder's posteriors;
the others ignore it.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vae_jax import distributions, options, registries
from vae_jax.options import SHAPES_STATE, Option

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


# Builders by `model.prior.kind`: `prior` for Gaussian latents, called as
# `build(config, latent_dim, data_shape)`; `categorical_prior` for categorical latents, called as
# `build(config, num_variables, num_categories)`.

_NUM_COMPONENTS = options.at('model.prior', traits=(SHAPES_STATE,), num_components=Option(
    500, 'mixture: Gaussians; vamp: pseudo-inputs', options.at_least(1)))


@registries.register('prior', 'standard_normal')
def build_standard_normal(config, latent_dim: int, data_shape) -> StandardNormalPrior:
  del config, data_shape
  return StandardNormalPrior(latent_dim)


@registries.register('prior', 'learned_gaussian')
def build_learned_gaussian(config, latent_dim: int, data_shape) -> LearnedGaussianPrior:
  del config, data_shape
  return LearnedGaussianPrior(latent_dim)


@registries.register('prior', 'mixture', options=_NUM_COMPONENTS)
def build_mixture(config, latent_dim: int, data_shape) -> MixtureOfGaussiansPrior:
  del data_shape
  return MixtureOfGaussiansPrior(latent_dim, config.num_components)


def _vamp_problems(config):
  if config.model.get('upper_layers', {}).get('latent_dims'):
    yield ('model.prior.kind=vamp is built from the encoder of a one-layer VAE; with '
           'model.upper_layers.latent_dims set, use another prior or remove the upper layers.')
  if config.model.encoder.flow_steps:
    yield ('model.encoder.flow_steps needs a prior other than vamp (the VampPrior evaluates q '
           "at any z; a flow's density is known at its samples only).")


@registries.register('prior', 'vamp', checks=(_vamp_problems,), options={
    **_NUM_COMPONENTS, **options.at(
        'model.prior', traits=(SHAPES_STATE,),
        pseudo_input_mean=Option(0.05, 'pseudo-inputs start as N(mean, std^2) pixels'),
        pseudo_input_std=Option(0.01, 'see pseudo_input_mean'))})
def build_vamp(config, latent_dim: int, data_shape) -> VampPrior:
  del latent_dim
  return VampPrior(config.num_components, tuple(data_shape), config.pseudo_input_mean,
                   config.pseudo_input_std)


@registries.register('categorical_prior', 'uniform')
def build_uniform(config, num_variables: int, num_categories: int) -> CategoricalPrior:
  del config
  return CategoricalPrior(num_variables, num_categories)


@registries.register('categorical_prior', 'learned_categorical')
def build_learned_categorical(config, num_variables: int, num_categories: int) -> CategoricalPrior:
  del config
  return CategoricalPrior(num_variables, num_categories, learned=True)
