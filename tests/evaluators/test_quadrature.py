"""vae_jax/evaluators/quadrature.py: the oracle against closed forms — a linear-Gaussian VAE's
marginal with one and with two latent units — and its convergence record, which counts mass in
the box's edge cells."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from configs import default
from tests import test_objectives as linear_gaussian
from tests.helpers import small_model_config
from vae_jax import distributions, models, priors
from vae_jax.evaluators import quadrature

OPTIONS = dict(points_per_dim=32, max_refinements=4, tolerance=1e-3, posterior_widths=10.0,
               batch_size=2)
W1 = np.array([[1.5], [-0.5], [2.0]])  # one latent unit


class OneUnitDecoder(nn.Module):

  def __call__(self, z):
    mean = z @ jnp.asarray(W1.T, jnp.float32) + jnp.asarray(linear_gaussian.B, jnp.float32)
    return distributions.DiagonalGaussian(mean, jnp.full(mean.shape, linear_gaussian.SIGMA))


class ShiftedEncoder(nn.Module):
  """A deliberately poor q: the grid must not depend on q being right."""

  def __call__(self, x):
    return distributions.DiagonalGaussian(jnp.ones((x.shape[0], 1)), jnp.full((x.shape[0], 1),
                                                                                0.3))


def test_quadrature_matches_the_closed_form_marginal_with_two_latent_units():
  model, params = linear_gaussian._linear_gaussian_vae(mean_shift=0.7)  # pylint: disable=protected-access
  x = np.asarray(linear_gaussian.X, np.float32)
  result = quadrature.integrate(model, params, x, **OPTIONS)
  np.testing.assert_allclose(result['per_example'], linear_gaussian.exact_log_marginal(x),
                             atol=2e-3)
  assert result['change'].max() < OPTIONS['tolerance']
  assert result['edge_share'].max() < np.log(1e-8)
  # The box holds the prior's draws and every posterior mean ± 10 standard deviations.
  mean, scale = linear_gaussian.exact_posterior(x)
  assert np.all(result['box'][:, 0] <= (mean + 0.7 - 10 * scale).min(axis=0))


def test_quadrature_matches_the_closed_form_marginal_with_one_latent_unit():
  model = models.VAE(ShiftedEncoder(), OneUnitDecoder(), priors.StandardNormalPrior(1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 3)))
  x = np.asarray(linear_gaussian.X, np.float32)
  covariance = W1 @ W1.T + linear_gaussian.SIGMA**2 * np.eye(3)
  exact = stats.multivariate_normal(linear_gaussian.B, covariance).logpdf(x)
  result = quadrature.integrate(model, params, x, **OPTIONS)
  np.testing.assert_allclose(result['per_example'], exact, atol=2e-3)


def test_the_report_says_when_the_grid_has_not_converged():
  model, params = linear_gaussian._linear_gaussian_vae()  # pylint: disable=protected-access
  split = type('Split', (), {'images': np.asarray(linear_gaussian.X, np.float32)})
  coarse = quadrature.QuadratureEvaluator(model, {**OPTIONS, 'points_per_dim': 4,
                                                  'max_refinements': 1})
  report = coarse(params, split, jax.random.key(0))['quadrature']
  assert not report['converged'] and report['num_unconverged'] >= 1
  assert [level['points_per_dim'] for level in report['refinements']] == [4, 8]
  fine = quadrature.QuadratureEvaluator(model, OPTIONS)(params, split, jax.random.key(0))
  assert fine['quadrature']['converged']
  np.testing.assert_allclose(fine['quadrature']['log_likelihood'],
                             np.mean(linear_gaussian.exact_log_marginal(split.images)), atol=2e-3)


def test_a_posterior_beyond_the_box_is_not_converged_however_fine_the_grid():
  # One latent unit, an image whose posterior sits at z ≈ 8.3 (sd 0.26) while q(z|x) says 1 and
  # the prior's draws reach about ±3.5: the box, about [−5.3, 5.3], holds only p(x, z)'s tail.
  # Refining settles that wrong value (the old flag said converged); the edge band holds
  # nearly all of it, which now marks the example unconverged.
  model = models.VAE(ShiftedEncoder(), OneUnitDecoder(), priors.StandardNormalPrior(1))
  params = model.init(jax.random.key(0), jnp.zeros((1, 3)))
  x = np.asarray(linear_gaussian.B + 9.0 * W1[:, 0], np.float32)[None]
  split = type('Split', (), {'images': x})
  report = quadrature.QuadratureEvaluator(model, {**OPTIONS, 'max_refinements': 8}, num_dims=1)(
      params, split, jax.random.key(0))['quadrature']  # up to 8192 cells: the steep tail settles
  covariance = W1 @ W1.T + linear_gaussian.SIGMA**2 * np.eye(3)
  exact = stats.multivariate_normal(linear_gaussian.B, covariance).logpdf(x[0])
  assert report['max_change'] < OPTIONS['tolerance']  # the grid itself has settled
  assert report['log_likelihood'] < exact - 1.0  # on a value that misses most of p(x)
  assert report['max_edge_share'] > 0.5
  assert not report['converged'] and report['num_mass_at_edge'] == report['num_unconverged'] == 1
  assert 'edge band, where the box may cut off mass' in quadrature.report_lines(
      {'quadrature': report}, 1.0)[0]


def test_unconverged_counts_moved_values_and_mass_at_the_edge_against_one_tolerance():
  moved, at_edge = quadrature.unconverged(np.array([0.0, 0.02, 0.0, 0.0]),
                                          np.log([1e-6, 1e-6, 0.011, 0.009]), tolerance=0.01)
  np.testing.assert_array_equal(moved, [False, True, False, False])
  np.testing.assert_array_equal(at_edge, [False, False, True, False])  # log(1.011) > 0.01
  moved, _ = quadrature.unconverged(None, np.log([1e-6]), tolerance=0.01)
  assert moved.all()  # one grid only: nothing says it has settled


def test_grid_cells_are_midpoints_with_the_outer_ring_marked():
  cells, log_volume, on_edge = quadrature.grid_cells(np.array([[0.0, 1.0], [-2.0, 2.0]]), 4)
  assert cells.shape == (16, 2) and on_edge.sum() == 12
  np.testing.assert_allclose(sorted(set(cells[:, 0])), [0.125, 0.375, 0.625, 0.875])
  np.testing.assert_allclose(log_volume, np.log(0.25 * 1.0))
  # The edge band is the outer 1/32 of the box at any resolution: 2 cells of 64 on each side.
  _, _, on_edge = quadrature.grid_cells(np.array([[0.0, 1.0]]), 64)
  np.testing.assert_array_equal(np.flatnonzero(on_edge), [0, 1, 62, 63])


class OneLayerFamily(nn.Module):
  """Not a models.VAE: a family of its own (here wrapping one) that declares what quadrature
  needs — one latent array, its densities — and nothing else."""
  inner: nn.Module
  single_latent_layer = True

  def __call__(self, x):
    return self.inner(x)

  def prior_distribution(self):
    return self.inner.prior_distribution()

  def decode(self, z):
    return self.inner.decode(z)

  def encode_context(self, x):
    return self.inner.encode_context(x)

  def draw_latents(self, key, context, num, from_prior):
    return self.inner.draw_latents(key, context, num, from_prior)

  def latent_log_densities(self, x, z, context):
    return self.inner.latent_log_densities(x, z, context)

  def simulate(self, key, num):
    return self.inner.simulate(key, num)


def _quadrature_config(latent_dim):
  config = default.get_config()
  config.model.latent_dim = latent_dim
  config.evals.quadrature.update(OPTIONS)
  return config


def test_quadrature_applies_to_any_family_that_declares_one_integrable_latent_layer():
  family = OneLayerFamily(models.VAE(ShiftedEncoder(), OneUnitDecoder(),
                                     priors.StandardNormalPrior(1)))
  assert models.can_integrate(family) and not isinstance(family, models.VAE)
  params = family.init(jax.random.key(0), jnp.zeros((1, 3)))
  evaluator = quadrature.create(family, _quadrature_config(latent_dim=1), dataset=None)
  split = type('Split', (), {'images': np.asarray(linear_gaussian.X, np.float32)})
  covariance = W1 @ W1.T + linear_gaussian.SIGMA**2 * np.eye(3)
  exact = stats.multivariate_normal(linear_gaussian.B, covariance).logpdf(split.images)
  report = evaluator(params, split, jax.random.key(0))['quadrature']
  np.testing.assert_allclose(report['per_example_log_likelihood'], exact, atol=2e-3)


def test_quadrature_skips_what_does_not_declare_it_and_latents_of_more_than_two_units():
  config = small_model_config()
  config.update(latent_dim=1)
  config.upper_layers.update(latent_dims=(1,), hidden_sizes=(4,))
  hierarchy = models.build_model(config, (6,))  # the methods' names, over two layers
  assert not models.can_integrate(hierarchy)
  assert quadrature.create(hierarchy, _quadrature_config(latent_dim=1), dataset=None) is None
  config.upper_layers.latent_dims = ()
  one_layer = models.build_model(config, (6,))
  assert quadrature.create(one_layer, _quadrature_config(latent_dim=1), dataset=None)
  assert quadrature.create(one_layer, _quadrature_config(latent_dim=3), dataset=None) is None
