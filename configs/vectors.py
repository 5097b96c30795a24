r"""Vectors: a table of real-valued features (a .csv/.tsv with a header row, or a .npy/.npz
array [N, D]) and an MLP VAE with a Gaussian likelihood, one learned variance per feature.

  python -m experiments.train --config=configs/vectors.py --config.data.name=table.csv \
      --workdir=/tmp/vectors
  python -m experiments.evaluate --workdir=/tmp/vectors

Each feature is standardised with the mean and standard deviation of the training split
(saved in the workdir as standardization.json); the test split is a tenth of the rows, drawn
with data.split_seed. `experiments.evaluate` reports log p(x) both for the standardised vectors
and in the data's own units: log p(x) = log p(x_std) − Σ_d log σ_d.

Variants:
  ''        Gaussian likelihood, 8 latent units.
  latent2   two latent units: quadrature gives log p(x) exactly (--evals=quadrature).
  binary    a table of 0/1 values: Bernoulli likelihood, no standardisation.
"""

from configs import default


def get_config(variant: str = '') -> 'ml_collections.ConfigDict':
  config = default.get_config()
  config.data.update(name='table.csv', binarization='none', standardize=True)
  config.model.latent_dim = 8
  config.model.encoder.hidden_sizes = (64, 64)
  config.model.decoder.hidden_sizes = (64, 64)
  config.model.likelihood.update(kind='gaussian', scale='learned', mean_activation='identity')
  config.evals.images.num_images = 0  # vectors: no image grids
  config.batch_size = 32
  config.num_epochs = 200
  config.eval_every_epochs = 50
  config.eval_batch_size = 500
  config.log_every_steps = 200
  config.checkpoint_every_steps = 2000
  if variant == 'latent2':
    config.model.latent_dim = 2
  elif variant == 'binary':
    # Static binarisation leaves 0/1 values as they are (a Bernoulli draw of 0 or 1).
    config.data.update(binarization='static', standardize=False)
    config.model.likelihood.kind = 'bernoulli'
  elif variant:
    raise ValueError(f'Unknown variant {variant!r} of configs/vectors.py; choose latent2, '
                     'binary or none.')
  return config
