"""Stacked stochastic layers (Burda et al. 2015's two-layer models): a bottom-up chain of
Gaussian encoders and a top-down chain of conditional Gaussian priors."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from vae_jax import encoders, networks, options
from vae_jax.options import SHAPES_STATE, Option
from vae_jax.models import components, families


class HierarchicalVAE(nn.Module):
  """Stochastic layers `h_1 … h_L` (Burda et al. 2015, section 5; L = 2 there):

    q(h_1|x) q(h_2|h_1) … q(h_L|h_{L−1})       the encoders, bottom up
    p(h_L) p(h_{L−1}|h_L) … p(h_1|h_2) p(x|h_1)  the prior, conditional priors, decoder

  The conditional priors are the same conditional-Gaussian modules as the encoders.
  """

  encoders: Sequence[nn.Module]  # q(h_1|x), q(h_2|h_1), …
  conditional_priors: Sequence[nn.Module]  # p(h_1|h_2), p(h_2|h_3), …
  decoder: nn.Module  # p(x|h_1)
  prior: nn.Module  # p(h_L)

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    means = self.posterior_means(x)
    layers = list(means.values())
    conditionals = [p(upper) for p, upper in zip(self.conditional_priors, layers[1:])]
    return means, conditionals, self.decoder(layers[0]), self.prior()

  def encode(self, x: jax.Array):
    """`q(h_1|x)`, the bottom layer's posterior."""
    return self.encoders[0](x)

  def decode(self, h1: jax.Array):
    """`p(x|h_1)`."""
    return self.decoder(h1)

  def prior_distribution(self):
    """`p(h_L)`, the top layer's prior."""
    return self.prior()

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    keys = jax.random.split(key, len(self.encoders))
    layers, log_posterior, below = [], 0.0, x
    for encoder, layer_key in zip(self.encoders, keys):
      below, log_q = encoder(below).sample_and_log_prob(layer_key)
      log_posterior += log_q
      layers.append(below)
    log_prior = self.prior().log_prob(layers[-1])
    for conditional, lower, upper in zip(self.conditional_priors, layers[:-1], layers[1:]):
      log_prior += conditional(upper).log_prob(lower)
    return {'reconstruction': self.decoder(layers[0]).log_prob(x), 'log_prior': log_prior,
            'log_posterior': log_posterior}

  def encode_context(self, x: jax.Array):
    return self.encoders[0](x)

  def draw_latents(self, key: jax.Array, context, num: int, from_prior: bool) -> tuple:
    keys = jax.random.split(key, len(self.encoders))
    if from_prior:
      layers = [self.prior().sample(keys[-1], (num,))]
      for conditional, layer_key in zip(reversed(self.conditional_priors), reversed(keys[:-1])):
        layers.insert(0, conditional(layers[0]).sample(layer_key))
      return tuple(layers)
    layers = [context.sample(keys[0])]
    for encoder, layer_key in zip(self.encoders[1:], keys[1:]):
      layers.append(encoder(layers[-1]).sample(layer_key))
    return tuple(layers)

  def latent_log_densities(self, x: jax.Array, layers, context) -> dict[str, jax.Array]:
    log_prior = self.prior().log_prob(layers[-1])
    for conditional, lower, upper in zip(self.conditional_priors, layers[:-1], layers[1:]):
      log_prior += conditional(upper).log_prob(lower)
    log_posterior = context.log_prob(layers[0])
    for encoder, lower, upper in zip(self.encoders[1:], layers[:-1], layers[1:]):
      log_posterior += encoder(lower).log_prob(upper)
    return {'reconstruction': self.decoder(layers[0]).log_prob(x), 'log_prior': log_prior,
            'log_posterior': log_posterior}

  def simulate(self, key: jax.Array, num: int) -> tuple[jax.Array, tuple]:
    latent_key, data_key = jax.random.split(key)
    layers = self.draw_latents(latent_key, None, num, from_prior=True)
    return self.decoder(layers[0]).sample(data_key), layers

  def analytic_kl(self, x: jax.Array) -> None:
    del x  # q(h_2|x) is a continuous mixture over h_1: no closed form
    return None

  def kl_per_dimension(self, x: jax.Array) -> None:
    del x
    return None

  def posterior_means(self, x: jax.Array) -> dict[str, jax.Array]:
    """`E_q[h_1|x]`, then each upper layer's conditional mean at the mean below it (a plug-in
    approximation of `E_q[h_l|x]` for l ≥ 2)."""
    means, below = {}, x
    for index, encoder in enumerate(self.encoders):
      below = encoder(below).mean
      means[f'h{index + 1}'] = below
    return means

  def reconstruct(self, x: jax.Array) -> jax.Array:
    return self.decoder(self.encoders[0](x).mean).mean

  def generate(self, key: jax.Array, num_samples: int) -> jax.Array:
    keys = jax.random.split(key, len(self.encoders))
    h = self.prior().sample(keys[-1], (num_samples,))
    for conditional, layer_key in zip(reversed(self.conditional_priors), reversed(keys[:-1])):
      h = conditional(h).sample(layer_key)
    return self.decoder(h).mean


OPTIONS = options.at(
    'model.upper_layers', traits=(SHAPES_STATE,),
    latent_dims=Option((), "stochastic layers above the first (Burda et al.'s two-layer "
                       'models): h2, h3, ... sizes; (): a one-layer VAE', options.each_at_least(1)),
    hidden_sizes=Option((100, 100), 'dense layers of every q(h_l|h_l-1) and p(h_l-1|h_l)',
                        options.each_at_least(1)),
    activation=Option('tanh', 'their activation', options.one_of(*networks.ACTIVATION_CHOICES)))


@families.register('hierarchical', options=OPTIONS, data_mean_output_bias=True)
def build(model_config, data_shape) -> HierarchicalVAE:
  """Layers of `latent_dim`, then `upper_layers.latent_dims` units; every q(h_l|h_l-1) and
  p(h_l-1|h_l) an MLP of `upper_layers.hidden_sizes`."""
  init, dtype, upper = model_config.kernel_init, model_config.compute_dtype, model_config.upper_layers
  dims = (model_config.latent_dim, *upper.latent_dims)

  def conditional_gaussian(latent_dim):
    torso = networks.MLP(upper.hidden_sizes, upper.activation, kernel_init=init, dtype=dtype)
    return encoders.GaussianEncoder(torso, latent_dim, min_scale=model_config.encoder.min_scale,
                                    kernel_init=init)

  encoder = components.build_encoder(model_config.encoder, model_config.latent_dim, data_shape,
                                     init, dtype)
  return HierarchicalVAE(
      encoders=(encoder, *(conditional_gaussian(dim) for dim in dims[1:])),
      conditional_priors=tuple(conditional_gaussian(dim) for dim in dims[:-1]),
      decoder=components.build_decoder(model_config, data_shape),
      prior=components.build_prior(model_config.prior, dims[-1], data_shape))
