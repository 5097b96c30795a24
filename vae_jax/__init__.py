"""vae_jax: latent-variable generative models in JAX and Flax."""

__version__ = '0.1.0'
