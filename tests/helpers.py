"""Helpers shared by test modules: a small model config, pytrees compared leaf by leaf."""

import jax
import numpy as np

from configs import default


def small_model_config(encoder='mlp', decoder='mlp', likelihood='bernoulli', scale='decoded',
                  prior='standard_normal'):
  config = default.get_config().model
  config.latent_dim = 3
  config.encoder.kind, config.decoder.kind = encoder, decoder
  config.encoder.hidden_sizes = config.decoder.hidden_sizes = (8,)
  config.encoder.conv_channels, config.decoder.conv_channels = (4, 8), (8, 4)
  config.likelihood.kind, config.likelihood.scale = likelihood, scale
  config.prior.kind = prior
  return config


def assert_trees_close(a, b, **tolerance):
  """The same tree structure, and every pair of leaves close (`np.testing.assert_allclose`)."""
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **tolerance)
