"""experiments/visualize.py and vae_jax/figures.py: every figure is written, sized and not blank."""

import numpy as np
import pytest
from PIL import Image

from experiments import visualize
from tests.conftest import make_tiny_config
from vae_jax import figures
from vae_jax.engine import training


def _check_image(path, min_height=28, min_width=28):
  image = np.asarray(Image.open(path))
  assert image.dtype == np.uint8 and image.shape[0] >= min_height and image.shape[1] >= min_width
  assert image.std() > 5  # not blank
  return image


@pytest.fixture(scope='module')
def two_d_workdir(tmp_path_factory):
  config = make_tiny_config()  # digits, 2-D Gaussian latent, 2 epochs
  workdir = str(tmp_path_factory.mktemp('two_d'))
  training.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_every_figure_of_a_2d_gaussian_model(two_d_workdir):
  paths = visualize.write_figures(two_d_workdir, num_points=297)
  assert set(paths) == {'samples', 'reconstructions', 'traversals', 'interpolations', 'manifold',
                        'latent_space', 'training_curves'}
  for path in paths.values():
    _check_image(path)
  # 8x8 digits are enlarged to 32-pixel tiles; 20x20 manifold, 2 units x 11 values traversals.
  assert _check_image(paths['manifold']).shape[:2] == (20 * 32, 20 * 32)
  assert _check_image(paths['traversals']).shape[:2] == (2 * 33 + 1, 11 * 33 + 1)
  assert _check_image(paths['interpolations']).shape[:2] == (8 * 33 + 1, 12 * 33 + 1)


@pytest.mark.slow
def test_hierarchical_and_discrete_models_get_the_figures_that_apply(trained_workdir, tmp_path):
  assert 'manifold' not in visualize.write_figures(trained_workdir, num_points=200)
  config = make_tiny_config()
  config.model.update(latent_kind='categorical', latent_dim=1, num_categories=6)
  config.model.prior.kind = 'uniform'
  training.train_and_evaluate(config, str(tmp_path))
  paths = visualize.write_figures(str(tmp_path), num_points=200)
  assert 'categories' in paths and 'traversals' not in paths
  assert _check_image(paths['categories']).shape[:2] == (33 + 1, 6 * 33 + 1)


def test_projections_and_training_curves():
  rng = np.random.default_rng(0)
  means = rng.normal(size=(300, 5)) * np.array([5.0, 1.0, 0.1, 0.1, 0.1])
  points, title = figures.project_2d(means, 'pca')
  assert points.shape == (300, 2) and 'PCA' in title
  np.testing.assert_allclose(np.var(points[:, 0]), np.var(means[:, 0]), rtol=0.05)
  assert figures.latent_scatter(means, rng.integers(0, 10, 300)).std() > 5
  metrics = [{'step': 10, 'epoch': 1.0, 'train/elbo': -100.0, 'train/kl': 5.0},
             {'step': 10, 'test/elbo': -101.0, 'test/active_units/z': 3},
             {'step': 20, 'epoch': 2.0, 'train/elbo': -90.0, 'train/kl': 6.0},
             {'step': 20, 'test/elbo': -95.0, 'test/active_units/z': 4}]
  assert figures.training_curves(metrics).std() > 5
