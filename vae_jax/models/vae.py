"""The one-stochastic-layer VAE (Kingma & Welling 2013): `q_φ(z|x)`, `p_θ(x|z)`, `p(z)`."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from vae_jax import distributions
from vae_jax.models import components, families


class VAE(nn.Module):
  """One stochastic layer: `q_φ(z|x)` (encoder), `p_θ(x|z)` (decoder) and `p(z)` (prior)."""

  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module
  single_latent_layer: ClassVar[bool] = True  # interface.Integrable: z is one array

  def __call__(self, x: jax.Array):
    """Touches every parameter; used by `init`."""
    posterior = self.encoder(x)
    return posterior, self.decoder(posterior.mean), self.prior_distribution()

  def encode(self, x: jax.Array):
    """`q(z|x)` for x `[..., *data_shape]`; a distribution with batch shape `[...]`."""
    return self.encoder(x)

  def decode(self, z: jax.Array):
    """`p(x|z)` for z `[..., latent_dim]`; a distribution over `[..., *data_shape]`."""
    return self.decoder(z)

  def prior_distribution(self):
    """`p(z)`, a distribution over `[latent_dim]`."""
    return self.prior(self.encoder)

  def sample_log_weight_terms(self, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    # One pass through the encoder serves every term (XLA does not merge two applies).
    posterior, prior = self.encoder(x), self.prior_distribution()
    z, log_posterior = posterior.sample_and_log_prob(key)  # a flow's density: at its samples
    terms = {
        'reconstruction': self.decoder(z).log_prob(x),
        'log_prior': prior.log_prob(z),
        'log_posterior': log_posterior,
    }
    if distributions.has_analytic_kl(posterior, prior):
      terms['analytic_kl'] = distributions.kl_divergence(posterior, prior)
    return terms

  def encode_context(self, x: jax.Array):
    return self.encoder(x)

  def draw_latents(self, key: jax.Array, context, num: int, from_prior: bool) -> jax.Array:
    if from_prior:
      return self.prior_distribution().sample(key, (num,))
    return context.sample_and_log_prob(key)[0]

  def latent_log_densities(self, x: jax.Array, z: jax.Array, context) -> dict[str, jax.Array]:
    terms = {'reconstruction': self.decoder(z).log_prob(x),
             'log_prior': self.prior_distribution().log_prob(z)}
    if context.density_anywhere:  # not an IAF posterior: its density is at its samples only
      terms['log_posterior'] = context.log_prob(z)
    return terms

  def simulate(self, key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
    prior_key, data_key = jax.random.split(key)
    z = self.prior_distribution().sample(prior_key, (num,))
    return self.decoder(z).sample(data_key), z

  def analytic_kl(self, x: jax.Array) -> jax.Array | None:
    posterior, prior = self.encoder(x), self.prior_distribution()
    if not distributions.has_analytic_kl(posterior, prior):
      return None
    return distributions.kl_divergence(posterior, prior)

  def kl_per_dimension(self, x: jax.Array) -> jax.Array | None:
    posterior, prior = self.encoder(x), self.prior_distribution()
    if not distributions.has_analytic_kl(posterior, prior):
      return None
    return distributions.elementwise_kl_divergence(posterior, prior)

  def posterior_means(self, x: jax.Array) -> dict[str, jax.Array]:
    return {'z': self.encoder(x).mean}

  def reconstruct(self, x: jax.Array) -> jax.Array:
    return self.decoder(self.encoder(x).mean).mean

  def generate(self, key: jax.Array, num_samples: int) -> jax.Array:
    return self.decoder(self.prior_distribution().sample(key, (num_samples,))).mean


@families.register('vae', data_mean_output_bias=True)
def build(model_config, data_shape) -> VAE:
  """Gaussian latents of `latent_dim` units, with any of the Gaussian priors."""
  encoder = components.build_encoder(model_config.encoder, model_config.latent_dim, data_shape,
                                     model_config.kernel_init, model_config.compute_dtype)
  prior = components.build_prior(model_config.prior, model_config.latent_dim, data_shape)
  return VAE(encoder, components.build_decoder(model_config, data_shape), prior)
