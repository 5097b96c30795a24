r"""Writes PNG figures of what a trained model learned.

  python -m experiments.visualize --workdir=/tmp/mnist [--step=N] [--projection=pca|tsne]

Reads the workdir's config (its data from where it was trained, or --data_dir / --data_path)
and latest readable (or --step) checkpoint and writes to WORKDIR/figures/:
  samples.png          decoder means at draws from the prior
  reconstructions.png  test images (odd rows) above their reconstructions
  traversals.png       Gaussian latents: one row per most-varying unit, swept over the prior's
                       5%-95% quantiles, the others fixed at a test image's posterior mean
  interpolations.png   Gaussian latents: decodings along straight lines between the posterior
                       means of pairs of test images (the images at the ends of each row)
  manifold.png         2-D Gaussian latents: decodings of a grid of prior quantiles (Kingma &
                       Welling 2013, Figure 4)
  categories.png       one categorical latent: the decoding of each of its values
  temperatures.png     a hierarchy: prior samples at temperatures 1.0, 0.9, 0.8, 0.7, 0.6, 0.4,
                       0.2 (one row each, the same noise; VDVAE draws at 1.0, 0.9, 0.8, 0.7),
                       each the likelihood's mean
  kl_per_group.png     a hierarchy: the test KL of each latent group (first 1000 images)
  latent_space.png     test posterior means coloured by label (2-D, else PCA or t-SNE)
  training_curves.png  ELBO, its reconstruction term, KL and active units against epochs
For vectors, samples.csv and reconstructions.csv (data rows, each followed by its
reconstruction) replace the image grids, in the data's own units (standardisation inverted).
"""

import os

import jax
import numpy as np
from absl import flags, logging
from scipy import stats

from experiments import launch
from vae_jax import data, figures, images, models
from vae_jax.engine import metric_writers
from vae_jax.evaluators import batched, elbo, posterior

# Prior scales × t; the first four are VDVAE's (train.py, write_images).
TEMPERATURES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.4, 0.2)


def define_flags() -> None:
  """The command line (defined only when run as a program, so tests can import this module)."""
  flags.DEFINE_string('workdir', None, 'A training workdir.', required=True)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
  flags.DEFINE_enum('projection', 'pca', ['pca', 'tsne'],
                    'How latents of more than 2 dimensions are drawn in 2-D.')
  flags.DEFINE_integer('num_points', 5000, 'Test images in the latent-space plot.')
  flags.DEFINE_integer('seed', 0, 'Seed of the samples.')


def write_figures(workdir: str, *, step: int | None = None, projection: str = 'pca',
                  num_points: int = 5000, seed: int = 0, data_dir: str | None = None,
                  data_path: str | None = None) -> dict[str, str]:
  """Writes every figure that applies to the model; returns {name: path}."""
  config, dataset, model, _, params = launch.load_trained(workdir, step, data_dir=data_dir,
                                                          data_path=data_path)
  test = dataset.test
  key = jax.random.key(seed)
  paths = {}
  if dataset.kind == data.VECTORS:  # tables and feature plots, in the data's own units
    paths.update(write_vector_tables(workdir, model, params, key, dataset))
    arrays = vector_figures(model, params, key, dataset)
  else:
    arrays = figures.model_image_grids(model, params, key, test.images, count=64)
  hierarchy = isinstance(model, models.Hierarchy)
  # One latent code, decoded to images.
  gaussian = (config.model.latent_kind == 'gaussian' and not hierarchy and
              dataset.kind == data.IMAGES)
  if hierarchy:
    arrays['temperatures'] = figures.temperature_samples(model, params, key, TEMPERATURES)
    terms = elbo.evaluate_elbo(elbo.make_elbo_fn(model, num_samples=1, analytic_kl=True), params,
                               test.images[:1000], batch_size=100, rng=key)
    arrays['kl_per_group'] = figures.group_kl_bars(
        {name.removeprefix('kl/'): value for name, value in terms.items()
         if name.startswith('kl/')}, f'KL per group, test (total {terms["kl"]:.1f} nats)')
  if gaussian:
    units = figures.most_informative_units(model, params, test.images[:1000], count=10)
    arrays['traversals'] = figures.traversals(model, params, test.images[0], units,
                                              stats.norm.ppf(np.linspace(0.05, 0.95, 11)))
    arrays['interpolations'] = figures.interpolations(model, params, test.images[0:8],
                                                      test.images[8:16])
    if config.model.latent_dim == 2 and not config.model.upper_layers.latent_dims:
      arrays['manifold'] = figures.manifold(model, params)
  statistics = batched.map_examples(posterior.make_posterior_statistics_fn(model), params,
                                    test.images[:num_points], batch_size=500, rng=key)
  means = posterior.posterior_features(statistics)
  labels = None if test.labels is None else test.labels[:num_points]
  arrays['latent_space'] = figures.latent_scatter(means, labels, projection)
  if os.path.exists(os.path.join(workdir, metric_writers.METRICS_FILENAME)):  # not if imported
    arrays['training_curves'] = figures.training_curves(metric_writers.read_metrics(workdir))
  for name, array in arrays.items():
    paths[name] = os.path.join(workdir, 'figures', f'{name}.png')
    images.save_png(paths[name], array)
  return paths


def vector_figures(model, params, key, dataset, count: int = 1000) -> dict[str, np.ndarray]:
  """Reconstructions against the data per feature, and pairwise marginals of samples against
  the data, for up to `count` test vectors, in the data's units."""
  to_data, names = _units_and_names(dataset)
  inputs = dataset.test.images[:count]
  samples = to_data(np.asarray(figures.prior_samples(model, params, key, num_samples=len(inputs))))
  recons = to_data(np.asarray(figures.reconstructions(model, params, inputs)))
  return {'feature_reconstructions': figures.feature_reconstructions(to_data(inputs), recons,
                                                                     names),
          'pairwise_marginals': figures.pairwise_marginals(to_data(inputs), samples, names)}


def _units_and_names(dataset):
  """The map back to the data's units (the run's standardisation inverted) and the features'
  names."""
  standardization = dataset.standardization
  to_data = standardization.invert if standardization is not None else np.asarray
  names = list(standardization.feature_names if standardization is not None else ())
  return to_data, names or [f'feature_{d}' for d in range(dataset.data_shape[0])]


def write_vector_tables(workdir: str, model, params, key, dataset, count: int = 64
                        ) -> dict[str, str]:
  """`samples.csv` (decoder means at `count` draws from the prior) and `reconstructions.csv`
  (the first `count` test vectors, each followed by its reconstruction), in the data's units
  (the run's standardisation inverted)."""
  to_data, names = _units_and_names(dataset)
  inputs = dataset.test.images[:count]
  samples = to_data(np.asarray(figures.prior_samples(model, params, key, num_samples=count)))
  recons = to_data(np.asarray(figures.reconstructions(model, params, inputs)))
  rows = np.stack([to_data(inputs), recons], axis=1).reshape(-1, len(names))
  which = np.tile(['data', 'reconstruction'], len(inputs))[:, None]
  folder = os.path.join(workdir, 'figures')
  os.makedirs(folder, exist_ok=True)
  paths = {name: os.path.join(folder, f'{name}.csv') for name in ('samples', 'reconstructions')}
  np.savetxt(paths['samples'], samples, delimiter=',', header=','.join(names), comments='')
  np.savetxt(paths['reconstructions'], np.hstack([which, rows.astype(str)]), fmt='%s',
             delimiter=',', header=','.join(['which', *names]), comments='')
  return paths


def main(argv):
  del argv
  options = flags.FLAGS
  paths = write_figures(options.workdir, step=options.step, projection=options.projection,
                        num_points=options.num_points, seed=options.seed,
                        data_dir=options.data_dir, data_path=options.data_path)
  for name, path in paths.items():
    logging.info('%s: %s', name, path)
    print(path)


if __name__ == '__main__':
  define_flags()
  launch.run(main)
