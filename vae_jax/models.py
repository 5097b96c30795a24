"""Latent-variable models built from encoders, decoders and priors, and `build_model(config)`.

Both models expose the same methods, so objectives and evaluation work with either through
`model.apply(params, ..., method=...)`:

  sample_log_weight_terms(x, key)  one z ~ q(z|x): log p(x|z), log p(z), log q(z|x), each [B],
                                   and KL(q(z|x) ‖ p(z)) in closed form when there is one
  analytic_kl(x)                   KL(q(z|x) ‖ p(z)) in closed form [B], or None
  kl_per_dimension(x)              the closed-form KL of each latent unit [B, D], or None
  posterior_means(x)               {layer name: E_q[z|x] [B, D]} ([B, D, K] for categorical z)
  reconstruct(x)                   mean of p(x|z) at the posterior mean
  generate(key, num_samples)       mean of p(x|z) for z ~ p(z)
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae_jax import distributions, encoders, likelihoods, networks, priors


class VAE(nn.Module):
  """One stochastic layer: `q_φ(z|x)` (encoder), `p_θ(x|z)` (decoder) and `p(z)` (prior)."""

  encoder: nn.Module
  decoder: nn.Module
  prior: nn.Module

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
    z = posterior.sample(key)
    terms = {
        'log_likelihood': self.decoder(z).log_prob(x),
        'log_prior': prior.log_prob(z),
        'log_posterior': posterior.log_prob(z),
    }
    if distributions.has_analytic_kl(posterior, prior):
      terms['analytic_kl'] = distributions.kl_divergence(posterior, prior)
    return terms

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
      posterior = encoder(below)
      below = posterior.sample(layer_key)
      log_posterior += posterior.log_prob(below)
      layers.append(below)
    log_prior = self.prior().log_prob(layers[-1])
    for conditional, lower, upper in zip(self.conditional_priors, layers[:-1], layers[1:]):
      log_prior += conditional(upper).log_prob(lower)
    return {'log_likelihood': self.decoder(layers[0]).log_prob(x), 'log_prior': log_prior,
            'log_posterior': log_posterior}

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
    return {'log_likelihood': self.decode(z).log_prob(x), 'log_prior': prior.log_prob(z),
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

      log_marginal     log p(x) = logsumexp_z [log p(z) + log p(x|z)]
      posterior        p(z|x) = p(z) p(x|z) / p(x), Bayes' rule
      log_likelihood   E_q[log p(x|z)] = Σ_z q(z|x) log p(x|z)
      kl               KL(q(z|x) ‖ p(z)) in closed form
      elbo             log_likelihood − kl, with no sampling
      kl_to_posterior  KL(q(z|x) ‖ p(z|x)) = Σ_z q (log q − log p(z|x)), computed on its own
      posterior_entropy, q_entropy: H[p(z|x)], H[q(z|x)]
      encoder_fit      Σ_z p(z|x) log q(z|x) with p(z|x) held fixed: −KL(p(z|x) ‖ q) up to a
                       constant; its gradient (p − q in the logits) moves only q, towards the
                       exact posterior, and does not vanish when q is confidently wrong
    """
    z = self.all_latent_values()  # [Z, D, K]
    posterior_q = self.encoder(x)  # logits [B, D, K]
    prior = self.prior()
    log_likelihood = self.decode(z).pairwise_log_prob(x)  # [B, Z]
    log_joint = log_likelihood + prior.log_prob(z)  # [B, Z]
    log_marginal = jax.scipy.special.logsumexp(log_joint, axis=-1)
    log_posterior = log_joint - log_marginal[:, None]
    log_q = jnp.einsum('zdk,bdk->bz', z, posterior_q.log_probs)
    q = jnp.exp(log_q)
    kl = distributions.kl_divergence(posterior_q, prior)
    expected_log_likelihood = jnp.sum(q * log_likelihood, axis=-1)
    posterior = jnp.exp(log_posterior)
    return {
        'log_marginal': log_marginal,
        'posterior': posterior,
        'log_likelihood': expected_log_likelihood,
        'kl': kl,
        'elbo': expected_log_likelihood - kl,
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
    return {'log_likelihood': self.decode(z).log_prob(x),
            'kl': distributions.kl_divergence(posterior, self.prior())}


class Decoder(nn.Module):
  """`p(x|z)`: a decoder network followed by a likelihood."""

  net: nn.Module
  likelihood: nn.Module

  def __call__(self, z: jax.Array):
    return self.likelihood(self.net(z))


ENCODER_KINDS = ('mlp', 'conv')
DECODER_KINDS = ('mlp', 'conv')
LATENT_KINDS = ('gaussian', 'categorical')
PRIOR_KINDS = ('standard_normal', 'learned_gaussian', 'mixture', 'vamp')  # gaussian latents
CATEGORICAL_PRIOR_KINDS = ('uniform', 'learned_categorical')
LIKELIHOOD_KINDS = ('bernoulli', 'gaussian')


def build_model(model_config: ml_collections.ConfigDict, data_shape: tuple[int, ...]) -> nn.Module:
  """The model `model_config` describes, for data of shape `data_shape` (e.g. (28, 28, 1)):
  a `DiscreteVAE` for categorical latents; for Gaussian latents a `VAE`, or a
  `HierarchicalVAE` when `upper_layers.latent_dims` is not empty."""
  init, dtype = model_config.kernel_init, model_config.compute_dtype
  likelihood = build_likelihood(model_config.likelihood, data_shape)
  decoder = Decoder(build_decoder_net(model_config.decoder, data_shape,
                                      likelihood.params_per_channel, init, dtype), likelihood)
  if model_config.latent_kind == 'categorical':
    return build_discrete_vae(model_config, data_shape, decoder)
  encoder = build_encoder(model_config.encoder, model_config.latent_dim, data_shape, init, dtype)
  upper = model_config.upper_layers
  if not upper.latent_dims:
    return VAE(encoder, decoder, build_prior(model_config.prior, model_config.latent_dim,
                                             data_shape))
  dims = (model_config.latent_dim, *upper.latent_dims)

  def conditional_gaussian(latent_dim):
    torso = networks.MLP(upper.hidden_sizes, upper.activation, kernel_init=init, dtype=dtype)
    return encoders.GaussianEncoder(torso, latent_dim, min_scale=model_config.encoder.min_scale,
                                    kernel_init=init)

  return HierarchicalVAE(
      encoders=(encoder, *(conditional_gaussian(dim) for dim in dims[1:])),
      conditional_priors=tuple(conditional_gaussian(dim) for dim in dims[:-1]),
      decoder=decoder,
      prior=build_prior(model_config.prior, dims[-1], data_shape))


def build_discrete_vae(model_config, data_shape, decoder: nn.Module) -> DiscreteVAE:
  torso = build_encoder_torso(model_config.encoder, data_shape, model_config.kernel_init,
                              model_config.compute_dtype)
  num_variables, num_categories = model_config.latent_dim, model_config.num_categories
  if model_config.prior.kind not in CATEGORICAL_PRIOR_KINDS:
    raise ValueError(f'Unknown prior kind {model_config.prior.kind!r} for categorical latents; '
                     f'choose one of {CATEGORICAL_PRIOR_KINDS}.')
  return DiscreteVAE(
      encoder=encoders.CategoricalEncoder(torso, num_variables, num_categories,
                                          kernel_init=model_config.kernel_init),
      decoder=decoder,
      prior=priors.CategoricalPrior(num_variables, num_categories,
                                    learned=model_config.prior.kind == 'learned_categorical'),
      num_variables=num_variables, num_categories=num_categories,
      max_enumeration=model_config.max_enumeration)


def build_encoder_torso(config, data_shape, kernel_init: str, dtype: str = 'float32') -> nn.Module:
  if config.kind == 'mlp':
    return networks.MLP(config.hidden_sizes, config.activation, flatten_ndims=len(data_shape),
                        kernel_init=kernel_init, dtype=dtype)
  if config.kind == 'conv':
    return networks.ConvEncoderTorso(config.conv_channels, config.hidden_sizes, config.activation,
                                     kernel_init=kernel_init, dtype=dtype)
  raise ValueError(f'Unknown encoder kind {config.kind!r}; choose one of {ENCODER_KINDS}.')


def build_encoder(config, latent_dim: int, data_shape, kernel_init: str = 'lecun_normal',
                  dtype: str = 'float32') -> encoders.GaussianEncoder:
  torso = build_encoder_torso(config, data_shape, kernel_init, dtype)
  return encoders.GaussianEncoder(torso, latent_dim, min_scale=config.min_scale,
                                  kernel_init=kernel_init)


def build_decoder_net(config, data_shape, params_per_channel: int,
                      kernel_init: str = 'lecun_normal', dtype: str = 'float32') -> nn.Module:
  *spatial_shape, channels = data_shape
  output_shape = (*spatial_shape, channels * params_per_channel)
  if config.kind == 'mlp':
    return networks.MLPDecoderNet(output_shape, config.hidden_sizes, config.activation,
                                  kernel_init=kernel_init, dtype=dtype)
  if config.kind == 'conv':
    return networks.ConvDecoderNet(output_shape, config.conv_channels, config.hidden_sizes,
                                   config.activation, kernel_init=kernel_init, dtype=dtype)
  raise ValueError(f'Unknown decoder kind {config.kind!r}; choose one of {DECODER_KINDS}.')


def build_likelihood(config, data_shape) -> nn.Module:
  if config.kind == 'bernoulli':
    return likelihoods.BernoulliLikelihood(event_ndims=len(data_shape))
  if config.kind == 'gaussian':
    return likelihoods.GaussianLikelihood(
        event_ndims=len(data_shape), scale=config.scale, fixed_scale=config.fixed_scale,
        min_scale=config.min_scale, mean_activation=config.mean_activation)
  raise ValueError(f'Unknown likelihood kind {config.kind!r}; choose one of {LIKELIHOOD_KINDS}.')


def build_prior(config, latent_dim: int, data_shape) -> nn.Module:
  if config.kind == 'standard_normal':
    return priors.StandardNormalPrior(latent_dim)
  if config.kind == 'learned_gaussian':
    return priors.LearnedGaussianPrior(latent_dim)
  if config.kind == 'mixture':
    return priors.MixtureOfGaussiansPrior(latent_dim, config.num_components)
  if config.kind == 'vamp':
    return priors.VampPrior(config.num_components, tuple(data_shape),
                            config.pseudo_input_mean, config.pseudo_input_std)
  raise ValueError(f'Unknown prior kind {config.kind!r}; choose one of {PRIOR_KINDS}.')
