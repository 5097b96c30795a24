"""Latent-variable model families, one module each, built by name from the config.

  vae.py           VAE: one Gaussian stochastic layer, any prior
  hierarchical.py  HierarchicalVAE: stacked Gaussian layers (Burda et al. 2015)
  discrete.py      DiscreteVAE: categorical latents, exact sums over small latent spaces
  top_down.py      TopDownVAE: deep top-down hierarchy of conv groups (VDVAE / NVAE family)
  components.py    encoders, decoder networks, likelihoods and priors by name
  interface.py     what every family provides, and the capability protocols
  families.py      `register(name)` and `build_model(model_config, data_shape)`
"""

from vae_jax.models import discrete, hierarchical, top_down, vae  # registers the families
from vae_jax.models.components import (DECODER_KINDS, ENCODER_KINDS, LATENT_KINDS,
                                       OUTPUT_BIAS_INITS, Decoder, with_data_mean_output_bias)
from vae_jax.models.discrete import DiscreteVAE
from vae_jax.models.hierarchical import HierarchicalVAE
from vae_jax.models.interface import (CategoricalLatents, Enumerable, Hierarchy, Integrable,
                                      LatentDensities, LatentVariableModel, PairwiseLogProb,
                                      can_enumerate, can_integrate)
from vae_jax.models.top_down import TopDownVAE
from vae_jax.models.families import build_model, family_name, register
from vae_jax.models.vae import VAE

__all__ = [
    'DECODER_KINDS', 'ENCODER_KINDS', 'LATENT_KINDS', 'OUTPUT_BIAS_INITS', 'CategoricalLatents', 'Decoder', 'DiscreteVAE',
    'Enumerable', 'Hierarchy', 'HierarchicalVAE', 'LatentDensities', 'LatentVariableModel', 'TopDownVAE', 'VAE',
    'Integrable', 'PairwiseLogProb', 'build_model', 'can_enumerate', 'can_integrate', 'discrete', 'family_name',
    'hierarchical', 'register',
    'top_down', 'vae', 'with_data_mean_output_bias',
]
