"""The `LatentDensities` methods of every continuous family agree with the sampling path the
training loss uses: the same key draws the same z, whose densities are the same terms."""

import jax
import numpy as np
import pytest

from tests import helpers
from tests.models import test_top_down
from vae_jax import models


def _family(name):
  if name == 'top_down':
    return test_top_down._tiny()  # pylint: disable=protected-access
  config = helpers.small_model_config()
  if name == 'hierarchical':
    config.upper_layers.latent_dims = (2,)
    config.upper_layers.hidden_sizes = (8,)
  if name == 'vampprior':
    config.prior.kind = 'vamp'
  shape = (4, 4, 1)
  model = models.build_model(config, shape)
  x = (np.random.default_rng(0).uniform(size=(3, *shape)) > 0.5).astype(np.float32)
  return model, model.init(jax.random.key(0), x[:1]), x


TOP_DOWN = pytest.param('top_down', marks=pytest.mark.slow)  # 30 s of compilation


@pytest.mark.parametrize('name', ['vae', 'vampprior', 'hierarchical', TOP_DOWN])
def test_densities_at_the_drawn_z_are_the_sampled_terms(name):
  model, params, x = _family(name)
  assert isinstance(model, models.LatentDensities)
  key = jax.random.key(3)
  terms = model.apply(params, x, key, method='sample_log_weight_terms')
  context = model.apply(params, x, method='encode_context')
  z = model.apply(params, key, context, len(x), False, method='draw_latents')
  densities = model.apply(params, x, z, context, method='latent_log_densities')
  for term in ('reconstruction', 'log_prior', 'log_posterior'):
    np.testing.assert_allclose(densities[term], terms[term], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('name', ['vae', 'hierarchical', TOP_DOWN])
def test_simulated_data_come_with_prior_draws_of_the_right_shapes(name):
  model, params, x = _family(name)
  simulated, z = model.apply(params, jax.random.key(0), 5, method='simulate')
  assert simulated.shape == (5, *x.shape[1:])
  assert set(np.unique(simulated)) <= {0.0, 1.0}  # Bernoulli pixels
  prior_z = model.apply(params, jax.random.key(0), None, 5, True, method='draw_latents')
  assert jax.tree.map(np.shape, z) == jax.tree.map(np.shape, prior_z)
  densities = model.apply(params, simulated, z, model.apply(params, simulated,
                                                            method='encode_context'),
                          method='latent_log_densities')
  assert all(np.all(np.isfinite(value)) for value in densities.values())


def test_discrete_latents_have_no_densities_at_any_z():
  config = helpers.small_model_config()
  config.latent_kind, config.prior.kind = 'categorical', 'uniform'
  model = models.build_model(config, (4, 4, 1))
  assert not isinstance(model, models.LatentDensities)


@pytest.mark.slow
def test_ais_runs_on_the_top_down_family():
  # (The one-layer and two-layer families run AIS and BDMC in tests/evaluators and
  # tests/experiments/test_evaluate.py; BDMC's chains are AIS's.)
  from vae_jax.evaluators import ais  # pylint: disable=import-outside-toplevel
  model, params, x = _family('top_down')
  annealed = jax.device_get(ais.make_ais_fn(
      model, num_steps=3, num_chains=2, leapfrog_steps=1, step_size=0.01, pilot_chains=2,
      initial='mixture')(
          params, x, np.arange(len(x)), jax.random.key(0)))
  assert np.all(np.isfinite(annealed['log_likelihood']))
